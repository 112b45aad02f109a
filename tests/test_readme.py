"""The README's commands, run as written in a fresh copy of the repository: an example cannot fail unnoticed.

Every command of the README's bash blocks is either run, and what the README says it does is checked, or
skipped with its reason in SKIPPED. A command that is neither fails the test (a new README command needs
a decision here), and so does an entry here that the README no longer has. Long-running services are
started in the background where a following command needs them, and stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from storyfilm.media import probe

from .helpers import REPO
from .test_prefect_server import client, finished_run, free_port, stop_group, wait_for

README = REPO / "README.md"

SKIPPED = {
    "pip install -e .[dev]": "the set-up: this test runs the storyfilm and prefect it installed",
    "pytest -m not slow": "the test command itself (its fast lane)",
    "pytest -n 4": "the test command itself",
    "python -m benchmarks": "takes 10-15 min; tests/test_benchmarks.py runs `python -m benchmarks --quick` (every "
                            "part on tiny inputs) and checks that the assembly contenders make the same film",
    "export WAVESPEED_API_KEY=...": "a real API key (a placeholder here); no command run here needs one",
    "storyfilm run storyboards/lighthouse.yaml --provider wavespeed --budget 10":
        "needs WAVESPEED_API_KEY and pays; `storyfilm plan` with the same --provider and --budget runs in its place "
        "(the host's limits and the budget, checked for free)",
    "export PGPASSWORD=...": "a placeholder for a team database's password",
    "storyfilm ledger copy output/lighthouse/ledger.sqlite postgresql+psycopg://films@db.internal:5432/storyfilm":
        "a team's PostgreSQL server (db.internal); tests/test_ledger_cli.py runs `ledger copy` against a real "
        "throwaway PostgreSQL",
    "storyfilm run storyboards/lighthouse.yaml --ledger postgresql+psycopg://films@db.internal:5432/storyfilm":
        "a team's PostgreSQL server (db.internal); tests/test_ledger_cli.py runs `storyfilm run --ledger URL` "
        "against a real throwaway PostgreSQL",
    "prefect server start --host 0.0.0.0": "a server on every interface, for other machines; the loopback server "
                                           "started above stands for it",
    "prefect worker start --pool storyfilm --limit 2": "a long-running worker for other machines; the worker "
                                                       "started above ran a film from the same pool",
}


def readme_commands(text: str) -> list[list[str]]:
    """The commands of the fenced bash blocks as the shell splits them, comments removed."""
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    return [words for block in blocks for line in block.splitlines() if (words := shlex.split(line, comments=True))]


def plan_seconds(text: str) -> float:
    """The film's duration as `storyfilm plan` states it ("film: 32 s ...")."""
    found = re.search(r"^film: ([\d.]+) s", text, flags=re.MULTILINE)
    assert found, text
    return float(found.group(1))


def check_film(path: Path, seconds: float) -> None:
    info = probe.probe(path)
    assert info.video is not None and info.audio is not None, path
    assert info.video.frames == round(seconds * 24), (path, info.video.frames, seconds)
    assert abs(info.audio.duration - seconds) <= 1 / 24


@dataclass
class Readme:
    """A fresh copy of the repository, an environment like a new user's, and the services started in it."""

    repo: Path
    env: dict[str, str]
    services: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api: str = ""  # the Prefect server's API URL, once started

    def run(self, command: list[str], timeout: float = 900) -> str:
        proc = subprocess.run(command, cwd=self.repo, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        said = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"`{shlex.join(command)}` exited with {proc.returncode}:\n{said[-4000:]}"
        assert "Traceback" not in said, said[-4000:]
        return said

    def start(self, command: list[str], name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.repo.parent / f"{name}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(command, cwd=self.repo, env=self.env, stdout=sink,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.services.append(proc)
        return proc, log

    def plan(self, storyboard: str, *options: str) -> float:
        return plan_seconds(self.run(["storyfilm", "plan", storyboard, *options]))

    def server_env(self) -> dict[str, str]:
        return {**self.env, "PREFECT_API_URL": self.api}


Step = Callable[[Readme, list[str]], None]


def files_under(directory: Path) -> set[Path]:
    return {p for p in directory.rglob("*") if p.is_file()} if directory.exists() else set()


def run_local_film(r: Readme, command: list[str]) -> None:
    said = r.run(command)
    assert said.startswith("film output/lighthouse/film.mp4"), said
    check_film(r.repo / "output" / "lighthouse" / "film.mp4", r.plan("storyboards/lighthouse.yaml"))
    assert (r.repo / "output" / "lighthouse" / "manifest.json").exists()


def lint(r: Readme, command: list[str]) -> None:
    assert "All checks passed!" in r.run(command)


def typecheck(r: Readme, command: list[str]) -> None:
    assert "Success: no issues found" in r.run(command)


def plan_on_a_host(r: Readme, command: list[str]) -> None:
    before = files_under(r.repo / "output")
    said = " ".join(r.run(command).split())  # rich wraps long lines in a pipe
    assert "The Lighthouse Keeper — wavespeed (standard)" in said and "5 new" in said
    cost = re.search(r"new cost \$([\d.]+)", said)
    assert cost and 0 < float(cost.group(1)) <= 10, said  # within the README's paid run's --budget 10
    r.run([*command, "--budget", "10"])  # that run's stand-in: a plan over the budget is refused
    assert files_under(r.repo / "output") == before  # free, and nothing written


def rehearse_on_apiframe(r: Readme, command: list[str]) -> None:
    other = r.repo / "output" / "lighthouse" / "film.mp4"
    before = other.read_bytes()
    said = r.run(command)
    assert "nothing is paid" in said and "film output/emulated/lighthouse/film.mp4" in said, said
    film_dir = r.repo / "output" / "emulated" / "lighthouse"
    check_film(film_dir / "film.mp4", r.plan("storyboards/lighthouse.yaml", "--provider", "apiframe"))
    manifest = json.loads((film_dir / "manifest.json").read_text())
    assert manifest["provider"] == "apiframe" and all(s["job_id"] for s in manifest["shots"])
    assert other.read_bytes() == before  # rehearsal shots never mix with the others


def start_server(r: Readme, command: list[str]) -> None:
    # On a free port, not 4200 (another server on this machine may hold it); commands naming 4200 get this one.
    port = free_port()
    proc, log = r.start([*command, "--port", str(port)], "server")
    r.api = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"{r.api}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for("the Prefect server", healthy, 120, log)


def set_api_url(r: Readme, command: list[str]) -> None:
    assert r.api, "no server started"
    r.run([word.replace("http://127.0.0.1:4200/api", r.api) for word in command])


def run_reporting_to_the_server(r: Readme, command: list[str]) -> None:
    film = r.repo / "output" / "lighthouse" / "film.mp4"
    before = film.read_bytes(), film.stat().st_mtime_ns
    said = " ".join(r.run(command).split())  # PREFECT_API_URL comes from the profile `prefect config set` wrote
    # nothing changed since the first run: "Unchanged means instant", no flow run, the film untouched
    assert "film output/lighthouse/film.mp4 is up to date (5 shots, 5 reused, $0.00 spent" in said, said
    assert (film.read_bytes(), film.stat().st_mtime_ns) == before
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with client(r.server_env()) as c:
        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["film:lighthouse"])))
    # the two runs made without a server: "`prefect server start` later shows them too"
    assert sorted((x.name, x.state_name) for x in runs) == [
        ("The Lighthouse Keeper", "Completed"), ("The Lighthouse Keeper (rehearsal, nothing paid)", "Completed")]
    assert sorted(tag for x in runs for tag in x.tags if tag.startswith("provider:")) == [
        "provider:apiframe", "provider:local"]


def create_work_pool(r: Readme, command: list[str]) -> None:
    r.run(command)
    with client(r.server_env()) as c:
        assert c.read_work_pool("storyfilm").type == "process"


def deploy(r: Readme, command: list[str]) -> None:
    r.run(command)
    with client(r.server_env()) as c:
        deployment = c.read_deployment_by_name("storyfilm/teaser-nightly")
    [schedule] = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 3 * * *", "UTC", True)
    assert str(r.repo) in str(deployment.pull_steps)  # workers run it from the directory it was deployed in


def start_worker(r: Readme, command: list[str]) -> None:
    proc, log = r.start(command, "worker")
    wait_for("the worker", lambda: proc.poll() is not None or "started!" in log.read_text(), 120, log)
    assert proc.poll() is None, log.read_text()[-3000:]


def run_the_deployment(r: Readme, command: list[str]) -> None:
    said = r.run(command)
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", said)
    assert run_id, said
    run = finished_run(r.server_env(), UUID(run_id.group(1)), 600, r.repo.parent / "worker.log")
    assert run.state.is_completed() and run.name == "Teaser", run.state  # the worker ran it
    check_film(r.repo / "output" / "teaser" / "film.mp4", r.plan("storyboards/teaser.yaml"))


def serve(r: Readme, command: list[str]) -> None:
    proc, log = r.start(command, "serve")

    def served() -> Any:
        assert proc.poll() is None, log.read_text()[-3000:]
        with client(r.server_env()) as c:
            try:
                deployment = c.read_deployment_by_name("storyfilm/lighthouse")
            except Exception:  # noqa: BLE001 - not created yet
                return None
        return deployment if not deployment.paused else None

    deployment = wait_for("the served deployment", served, 120, log)
    [schedule] = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 6 * * 1", "Europe/Berlin")
    proc.send_signal(signal.SIGTERM)  # stopping it pauses the schedule
    assert proc.wait(timeout=90) == 0, log.read_text()[-3000:]
    with client(r.server_env()) as c:
        assert c.read_deployment_by_name("storyfilm/lighthouse").paused


# Commands run, by their words joined with spaces, and what checks that each does what the README says.
RUN: dict[str, Step] = {
    "storyfilm run storyboards/lighthouse.yaml": run_local_film,
    "ruff check .": lint,
    "mypy": typecheck,
    "storyfilm plan storyboards/lighthouse.yaml --provider wavespeed": plan_on_a_host,
    "storyfilm run storyboards/lighthouse.yaml --provider apiframe --emulate": rehearse_on_apiframe,
    "prefect server start": start_server,
    "prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api": set_api_url,
    "prefect work-pool create storyfilm --type process": create_work_pool,
    "prefect --no-prompt deploy --all": deploy,
    "prefect worker start --pool storyfilm": start_worker,
    "prefect deployment run storyfilm/teaser-nightly": run_the_deployment,
    "storyfilm serve storyboards/lighthouse.yaml --cron 0 6 * * 1 --timezone Europe/Berlin": serve,
}
# A command run again where the README repeats it: `storyfilm run` after `prefect config set` reports to the server.
AGAIN: dict[str, Step] = {"storyfilm run storyboards/lighthouse.yaml": run_reporting_to_the_server}


def steps(commands: list[list[str]]) -> Iterator[tuple[list[str], Step | None, str]]:
    """(command, the step that runs it or None, why not) in README order; an unknown command fails here."""
    seen: set[str] = set()
    for words in commands:
        key = " ".join(words)
        if key in seen:
            yield (words, AGAIN[key], "") if key in AGAIN else (words, None, "the same command ran above")
        elif key in RUN:
            yield words, RUN[key], ""
        elif key in SKIPPED:
            yield words, None, SKIPPED[key]
        else:
            raise AssertionError(f"README command `{shlex.join(words)}` is neither run nor skipped by "
                                 "tests/test_readme.py: add it to RUN (checking what it promises) or to SKIPPED (why)")
        seen.add(key)


def test_every_readme_command_is_run_or_skipped_with_a_reason() -> None:
    plan = list(steps(readme_commands(README.read_text())))
    assert {" ".join(c) for c, _, _ in plan} == set(RUN) | set(SKIPPED), "an entry here the README no longer has"
    assert all(step or why for _, step, why in plan)
    assert [" ".join(c) for c, step, _ in plan if step] == [  # what runs, in this order
        "storyfilm run storyboards/lighthouse.yaml",
        "ruff check .",
        "mypy",
        "storyfilm plan storyboards/lighthouse.yaml --provider wavespeed",
        "storyfilm run storyboards/lighthouse.yaml --provider apiframe --emulate",
        "prefect server start",
        "prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api",
        "storyfilm run storyboards/lighthouse.yaml",
        "prefect work-pool create storyfilm --type process",
        "prefect --no-prompt deploy --all",
        "prefect worker start --pool storyfilm",
        "prefect deployment run storyfilm/teaser-nightly",
        "storyfilm serve storyboards/lighthouse.yaml --cron 0 6 * * 1 --timezone Europe/Berlin",
    ]


def fresh_copy(destination: Path) -> Path:
    """The repository's tracked files (as they are in the working tree), and nothing else."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path: Path, prefect_home: Path) -> None:
    keys = ("PREFECT_", "WAVESPEED_", "APIFRAME_", "SEEDANCE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(keys)}  # a new user's: no keys, no profile
    # (Prefect's database already migrated: test_temporary_server.py runs `storyfilm run` in an empty PREFECT_HOME)
    env |= {"PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    r = Readme(fresh_copy(tmp_path / "repo"), env)
    if (REPO / ".mypy_cache").is_dir():  # CI ran `mypy` in the checkout just before: its incremental cache gives
        # the same verdict (mypy checks again every file whose hash differs) for 1 s of CPU instead of 30
        shutil.copytree(REPO / ".mypy_cache", r.repo / ".mypy_cache")
    try:
        for command, step, _ in steps(readme_commands(README.read_text())):
            if step:
                step(r, command)
    finally:
        for proc in reversed(r.services):
            stop_group(proc)

"""Deployments on a real `prefect server start`: prefect.yaml on a process work pool, and `storyfilm serve`.

The server, the worker and serve are subprocesses in their own process groups, stopped even when a
test fails. Budget: server ~8 s, deploy ~2 s, worker ~6 s + a 3 s film, serve ~10 s.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from storyfilm.media import probe

from .helpers import REPO, write_storyboard
from .prefect_db import seed

pytestmark = pytest.mark.slow

TINY = """\
version: 1
title: Tiny Deployed Film
defaults: {duration: 1, resolution: 480p, seed: 5}
shots:
  - {id: one, prompt: A slow push-in on the harbour.}
  - {id: two, prompt: The camera pans right.}
  - {id: three, cut: true, prompt: Static shot of a lamp.}
"""

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_group(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM the process and everything it started, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)  # anyone left in the group (children outlive a dead parent)?
            except ProcessLookupError:
                return
            time.sleep(0.2)


def wait_for(what: str, check: Callable[[], T | None], timeout: float, log: Path | None = None) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None and value is not False:
            return value
        time.sleep(0.3)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, migrated_prefect_db: Path) -> Iterator[dict[str, str]]:
    """A real Prefect server on 127.0.0.1 with a throw-away PREFECT_HOME; yields the env to reach it."""
    home = seed(tmp_path_factory.mktemp("prefect-home"), migrated_prefect_db)
    url = f"http://127.0.0.1:{free_port()}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO"}
    log = home / "server.log"
    port = url.rsplit(":", 1)[1].split("/")[0]
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                 "--port", port, "--no-ui"], env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"prefect server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("the Prefect server", healthy, 120, log)
        yield env
    finally:
        stop_group(proc)


@contextmanager
def client(env: dict[str, str]) -> Iterator[Any]:
    """A client of the real server (not of the session's test harness, which may be running too)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as c:
        yield c


def prefect(env: dict[str, str], *args: str, cwd: Path, timeout: float = 120) -> str:
    """The prefect CLI; whatever it started (a worker's flow-run process) is stopped with it."""
    proc = subprocess.Popen([sys.executable, "-m", "prefect", *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, errors = proc.communicate(timeout=timeout)
    finally:
        stop_group(proc)
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{out[-3000:]}\n{errors[-3000:]}"
    return out


def finished_run(env: dict[str, str], run_id: Any, timeout: float, log: Path | None = None) -> Any:
    def final() -> Any:
        with client(env) as c:
            run = c.read_flow_run(run_id)
        return run if run.state and run.state.is_final() else None

    return wait_for(f"flow run {run_id}", final, timeout, log)


def check_film_run(env: dict[str, str], run: Any, film: Path) -> None:
    """What a user checks in the UI: the run, its shots, its artifacts, and the film itself."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

    assert run.state.is_completed(), run.state
    assert run.name == "Tiny Deployed Film"
    assert {"provider:local", "film:tiny"} <= set(run.tags)
    with client(env) as c:
        task_runs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        artifacts = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    assert sorted(t.name for t in task_runs) == ["assemble", "one", "three", "two"]
    assert all(t.state and t.state.is_completed() for t in task_runs)
    by_key = {a.key: a for a in artifacts}
    # no public URL on this worker: no link artifacts (a browser refuses file://), the summary shows the path
    assert set(by_key) == {"film-tiny", "film-tiny-shots", "film-tiny-progress"}
    assert by_key["film-tiny-progress"].data == 100
    assert f"`{film.resolve()}`" in str(by_key["film-tiny"].data)
    info = probe.probe(film)
    assert info.video is not None and info.audio is not None
    assert abs(info.video.duration - 3.0) <= 1 / 24


def test_the_prefect_yaml_deployment_is_scheduled_and_runs_on_a_process_work_pool(
        server: dict[str, str], tmp_path: Path) -> None:
    prefect(server, "work-pool", "create", "storyfilm", "--type", "process", cwd=tmp_path)
    prefect(server, "--no-prompt", "deploy", "--all", cwd=REPO)  # as the README says: from the project directory

    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with client(server) as c:
        deployment = c.read_deployment_by_name("storyfilm/teaser-nightly")
        [schedule] = deployment.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 3 * * *", "UTC", True)
        assert deployment.work_pool_name == "storyfilm" and deployment.entrypoint == "flows/film.py:film"
        assert deployment.global_concurrency_limit.limit == 1  # one run of a film at a time
        # the same deployment, run now on a tiny storyboard: what a user does from the UI's "Custom run"
        board = write_storyboard(tmp_path, TINY, "tiny.yaml")
        run = c.create_flow_run_from_deployment(
            deployment.id, parameters={"storyboard": str(board), "output_dir": str(tmp_path / "out")})

    prefect(server, "worker", "start", "--pool", "storyfilm", "--run-once", cwd=tmp_path, timeout=240)
    check_film_run(server, finished_run(server, run.id, 30), tmp_path / "out" / "tiny" / "film.mp4")

    def scheduled() -> list[Any]:
        with client(server) as c:
            runs = c.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
        return [r for r in runs if r.state_name == "Scheduled"]

    # The scheduler service made the upcoming runs (within its 5 s loop for new deployments; with
    # SQLAlchemy 2.1 it silently makes none), each at 03:00 UTC on a later day.
    upcoming = wait_for("scheduled runs", scheduled, 60)
    assert all((r.expected_start_time.hour, r.expected_start_time.minute) == (3, 0) for r in upcoming)


def test_storyfilm_serve_registers_its_schedule_runs_and_pauses_when_stopped(
        server: dict[str, str], tmp_path: Path) -> None:
    board = write_storyboard(tmp_path, TINY, "tiny.yaml")
    log = tmp_path / "serve.log"
    env = {**server, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}  # default 10 s between polls for due runs
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "storyfilm", "serve", str(board), "--cron", "*/15 * * * *",
                                 "--timezone", "Europe/Berlin", "--output", str(tmp_path / "out")],
                                env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def served() -> Any:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            with client(server) as c:
                try:
                    deployment = c.read_deployment_by_name("storyfilm/tiny")
                except Exception:  # noqa: BLE001 - not created yet
                    return None
            return deployment if not deployment.paused else None

        deployment = wait_for("the served deployment", served, 90, log)
        [schedule] = deployment.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == ("*/15 * * * *", "Europe/Berlin")
        assert deployment.parameters == {"storyboard": str(board.resolve()), "output_dir": str(tmp_path / "out")}
        assert deployment.global_concurrency_limit.limit == 1
        with client(server) as c:
            run = c.create_flow_run_from_deployment(deployment.id)
        check_film_run(server, finished_run(server, run.id, 180, log), tmp_path / "out" / "tiny" / "film.mp4")

        proc.send_signal(signal.SIGTERM)  # what a supervisor (systemd, docker stop) sends
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        with client(server) as c:
            assert c.read_deployment_by_name("storyfilm/tiny").paused  # no runs pile up while nobody serves
    finally:
        stop_group(proc)

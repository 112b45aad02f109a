"""`storyfilm run` in ephemeral mode starts Prefect's temporary server itself, first (temporary_server.py).

Real runs: the installed CLI in a subprocess, the emulator on loopback, Prefect with no PREFECT_API_URL and
a fresh PREFECT_HOME. What a user relies on: the film is made, the run is in the PREFECT_HOME database that
`prefect server start` shows later, and no server process outlives the command (after a normal end, after
SIGTERM, and after SIGKILL, where Prefect's own server used to be orphaned).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storyfilm.emulator import EmulatorConfig, EmulatorServer
from storyfilm.media import probe

from .helpers import write_storyboard

BOARD = """\
version: 1
title: Early Server
provider: wavespeed
model: fast
defaults: {duration: 4, resolution: 480p, aspect_ratio: "16:9", audio: false, seed: 3}
shots:
  - {id: one, prompt: Dawn over the harbour.}
"""


def servers(home: Path) -> list[int]:
    """Pids of live Prefect API servers using `home` (Prefect's or ours: the same command line)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if b"prefect.server.api.server:create_app" in cmdline and f"PREFECT_HOME={home}".encode() in environ:
            found.append(int(proc.name))
    return found


def parent_and_session(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[3])


def wait_until(what: str, check: Callable[[], object], timeout: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.communicate()}")
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout} s")


@pytest.fixture
def slow_host() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(latency=8.0)) as server:  # a job still running when the run is killed
        yield server


def start_run(tmp_path: Path, url: str) -> tuple[subprocess.Popen[str], Path, Path]:
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), WAVESPEED_BASE_URL=url, WAVESPEED_API_KEY="test-key-0123456789",
               STORYFILM_POLL_INTERVAL="0.1")
    board = write_storyboard(tmp_path, BOARD)
    exe = Path(sys.executable).parent / "storyfilm"
    proc = subprocess.Popen([str(exe), "run", str(board), "--output", str(tmp_path / "out")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, home, tmp_path / "out" / "board"


@pytest.mark.slow
def test_a_run_reports_to_the_server_it_started_first_and_leaves_none_behind(tmp_path: Path,
                                                                            emulator: EmulatorServer) -> None:
    proc, home, film_dir = start_run(tmp_path, emulator.url)
    seen: dict[int, tuple[int, int]] = {}

    def server_seen() -> bool:
        seen.update((pid, parent_and_session(pid)) for pid in servers(home) if pid not in seen)
        return bool(seen)

    try:
        wait_until("Prefect server", server_seen, 120, proc)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, (out, err)
    assert "did not start early" not in err
    # one server, started by the CLI in its own session (Prefect starts its own in the CLI's session)
    [(parent, session)] = seen.values()
    [pid] = seen
    assert parent == proc.pid and session == pid
    assert servers(home) == []
    info = probe.probe(film_dir / "film.mp4")
    assert info.video is not None and info.duration == pytest.approx(4.0, abs=0.1)
    with sqlite3.connect(home / "prefect.db") as db:  # what `prefect server start` with this PREFECT_HOME shows
        runs = db.execute("SELECT flow_run.name, flow_run.state_type FROM flow_run JOIN flow "
                          "ON flow.id = flow_run.flow_id WHERE flow.name = 'storyfilm'").fetchall()
        shots = db.execute("SELECT name, state_type FROM task_run WHERE name = 'one'").fetchall()
        # ephemeral mode to the flow too: no server-wide concurrency limit made (that is for a Prefect server)
        limits = db.execute("SELECT name FROM concurrency_limit_v2").fetchall()
    assert runs == [("Early Server", "COMPLETED")]
    assert shots == [("one", "COMPLETED")]
    assert limits == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_run_leaves_no_server(tmp_path: Path, slow_host: EmulatorServer, sig: signal.Signals) -> None:
    proc, home, _ = start_run(tmp_path, slow_host.url)
    try:
        wait_until("submitted job", lambda: slow_host.emulator.store.jobs, 120, proc)  # mid-run, server in use
        [pid] = servers(home)
        proc.send_signal(sig)
        proc.communicate(timeout=180)  # SIGTERM: after the shot in flight is done
        assert proc.returncode == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
        deadline = time.monotonic() + 15  # SIGKILL: the kernel tells the server its parent died
        while servers(home) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert servers(home) == [], f"server {pid} outlived the run"
    finally:
        proc.kill()
        for left in servers(home):
            os.kill(left, signal.SIGKILL)


def test_no_early_server_where_a_server_is_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile's PREFECT_API_URL (`prefect config set`) is seen before Prefect is imported: nothing starts."""
    from storyfilm.temporary_server import configured_elsewhere

    (tmp_path / "profiles.toml").write_text('active = "mine"\n[profiles.mine]\n'
                                            'PREFECT_API_URL = "http://127.0.0.1:4200/api"\n')
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILES_PATH", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    assert configured_elsewhere()
    monkeypatch.setenv("PREFECT_PROFILE", "ephemeral")
    assert not configured_elsewhere()
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert configured_elsewhere()


@pytest.mark.parametrize(("name", "text"), [
    (".env", "# a project's settings\nexport PREFECT_API_URL=http://127.0.0.1:4200/api\n"),
    ("prefect.toml", '[api]\nurl = "http://127.0.0.1:4200/api"\n'),
    ("pyproject.toml", '[project]\nname = "films"\n[tool.prefect.api]\nurl = "http://127.0.0.1:4200/api"\n'),
])
def test_no_early_server_where_the_project_configures_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          name: str, text: str) -> None:
    """The working directory's files Prefect reads its settings from: seen before Prefect is imported (a head
    start must not submit around a server's concurrency limit)."""
    from storyfilm.temporary_server import configured_elsewhere

    for variable in ("PREFECT_API_URL", "PREFECT_PROFILES_PATH", "PREFECT_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text("")
    assert not configured_elsewhere()  # the file without the setting
    (tmp_path / name).write_text(text)
    assert configured_elsewhere()


@pytest.mark.parametrize(("code", "said", "spawned"), [(3, "exited with code 3", 2), (1, "no database here", 1)])
def test_a_server_that_cannot_start_is_reported_not_waited_for(monkeypatch: pytest.MonkeyPatch, code: int, said: str,
                                                                spawned: int) -> None:
    """uvicorn's exit 3 (a port taken between our check and its bind) is retried once on another port; any
    other exit is an answer at once, with what the server said (the CLI then lets Prefect start its own)."""
    from storyfilm import temporary_server

    ports: list[int] = []

    def failing(port: int) -> list[str]:
        ports.append(port)
        return [sys.executable, "-c", f"import sys; sys.stderr.write('no database here'); sys.exit({code})"]

    monkeypatch.setattr(temporary_server, "command", failing)
    server = temporary_server.TemporaryServer()
    try:
        assert not server.ready(timeout=600)
        assert said in server.problem and len(ports) == spawned
    finally:
        server.stop()
    assert server.process.poll() is not None

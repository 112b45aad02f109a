"""`storyfilm run` starts Prefect's temporary server while it prepares (issue 14): a SIGTERM during that
start-up still stops the server (an orphaned ephemeral server is the known trap)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import write_storyboard
from .test_prefect_server import stop_group

ONE = """\
version: 1
title: Early
defaults: {duration: 1, resolution: 480p, seed: 4}
shots:
  - {id: one, prompt: A lamp is lit.}
"""


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is `pid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_sigterm_while_the_temporary_server_starts_leaves_no_server_behind(tmp_path: Path) -> None:
    board = write_storyboard(tmp_path, ONE)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    proc = subprocess.Popen([sys.executable, "-m", "storyfilm", "run", str(board), "--output", str(tmp_path / "out")],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        server: int | None = None
        deadline = time.monotonic() + 120
        while server is None and time.monotonic() < deadline and proc.poll() is None:
            server = next((pid for pid, cmd in _children(proc.pid) if "uvicorn" in cmd), None)
            time.sleep(0.02)
        assert server is not None, "no temporary server was started"
        assert not (tmp_path / "out" / "early" / "film.mp4").exists()  # still starting: nothing made yet
        proc.send_signal(signal.SIGTERM)  # what a supervisor sends
        assert proc.wait(timeout=90) == 143
        deadline = time.monotonic() + 30
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server), "the temporary server outlived `storyfilm run`"
    finally:
        stop_group(proc)

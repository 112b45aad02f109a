"""Prefect's temporary server, started by `storyfilm run` itself while it imports and plans.

Without PREFECT_API_URL, Prefect 3.8 starts its temporary server (uvicorn serving
prefect.server.api.server:create_app in a child python, `SubprocessASGIServer._run_uvicorn_command`) at the
flow's first API call: after this process has imported Prefect and the flow, and then this process also
imports Prefect's whole server package to start it. Its imports and database check then all sit between
`storyfilm run` and the first submit. Started here first, the same command, environment and database
(PREFECT_HOME) run on the other core meanwhile; the run then reports to it through PREFECT_API_URL and it
stops when the command ends, as Prefect's own does. Prefect is not imported here (it is what we overlap).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import IO

EARLY_ENV = "STORYFILM_EARLY_PREFECT_SERVER"  # "0": leave starting it to Prefect, at the first API call
ADOPTED_ENV = "STORYFILM_TEMPORARY_PREFECT_API_URL"  # PREFECT_API_URL is this server's: ephemeral mode, not a server
# what SubprocessASGIServer adds to the environment (no UI; the services ephemeral servers run)
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
STARTUP_FAILURE = 3  # uvicorn's exit code when it could not start (e.g. the port was taken meanwhile)
STOP_SECONDS = 5.0


def configured_elsewhere() -> bool:
    """Whether a Prefect API is configured, read as Prefect 3.8 reads it but without importing Prefect: its
    environment variable, the working directory's .env, prefect.toml ([api] url) and pyproject.toml
    ([tool.prefect.api] url), the active profile. (Prefect checks again once loaded: `_prefect.report_to`.)"""
    if os.environ.get("PREFECT_API_URL") or _in_project_files():
        return True
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    profile = profiles.get("profiles", {}).get(active, {})
    return bool(isinstance(profile, dict) and profile.get("PREFECT_API_URL"))


def _in_project_files() -> bool:
    import dotenv  # Prefect's own .env reader (python-dotenv, a Prefect dependency)

    if dotenv.dotenv_values(".env").get("PREFECT_API_URL"):
        return True
    for name, table in (("prefect.toml", ()), ("pyproject.toml", ("tool", "prefect"))):
        try:
            settings: object = tomllib.loads(Path(name).read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        for key in (*table, "api"):
            settings = settings.get(key, {}) if isinstance(settings, dict) else {}
        if isinstance(settings, dict) and settings.get("url"):
            return True
    return False


def _ephemeral_allowed() -> bool:
    value = os.environ.get("PREFECT_SERVER_EPHEMERAL_ENABLED", os.environ.get("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"))
    return value is None or value.strip().lower() not in {"0", "false", "no", "off"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(port: int) -> list[str]:
    """SubprocessASGIServer's command line (Prefect 3.8.8), found without importing Prefect."""
    spec = importlib.util.find_spec("prefect")
    assert spec is not None and spec.origin is not None, "prefect is a dependency"
    return [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parent.parent), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "error", "--lifespan", "on"]


def _die_with_parent() -> None:
    # Linux: the kernel sends SIGTERM when the thread that started it ends (this process's main thread: when
    # the CLI dies, even by SIGKILL), so no server is ever orphaned (Prefect's own is when its parent is killed).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TemporaryServer:
    """One uvicorn child serving Prefect's API on a free port of 127.0.0.1, stopped when this process exits.

    A thread waits for its /health and then sends it one request for no route: FastAPI builds every route's
    state at the first request that passes it (1-3 s of the server's CPU); done here while this process is
    still importing, the run's first API call does not wait for it. The thread sleeps on sockets: it takes
    nothing from this process's imports."""

    def __init__(self) -> None:
        self.port = 0
        self.problem = ""
        self._log: IO[bytes] = tempfile.TemporaryFile()  # its errors, for a clear message (a pipe could fill)
        self._stopped = threading.Event()
        self._answered = threading.Event()  # healthy, or `problem` says why not
        self.process = self._spawn()
        atexit.register(self.stop)  # registered before Prefect's own exit handlers: runs after they flush
        self._watched()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.port = _free_port()
        # its own session: a Ctrl-C reaches this process, which ends the run and then stops the server
        return subprocess.Popen(command(self.port), env={**os.environ, **SERVER_ENV}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _get(self, path: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", f"/api{path}")
            return conn.getresponse().status
        finally:
            conn.close()

    def _watch(self) -> None:
        while not self._stopped.is_set():
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self._get("/health") == 200:
                    with contextlib.suppress(OSError, http.client.HTTPException):
                        self._get("/storyfilm-warm-up")  # a 404, after trying every route
                    break
            self._stopped.wait(0.05)
        self._answered.set()

    def _watched(self) -> None:
        self._answered.clear()
        threading.Thread(target=self._watch, daemon=True, name="storyfilm-temporary-server").start()

    def ready(self, timeout: float) -> bool:
        """Wait until it answers; False (and `problem` says why) when it exited or `timeout` passed. A start
        lost to a port taken meanwhile is retried once, on another port (from this thread: the server dies
        with the thread that started it)."""
        deadline = time.monotonic() + timeout
        for retry in (True, False):
            if not self._answered.wait(max(0.0, deadline - time.monotonic())):
                self.problem = f"it did not answer within {timeout:.0f} s: {self._errors()}"
                return False
            code = self.process.poll()
            if code is None:
                return True
            if not (retry and code == STARTUP_FAILURE):
                break
            self.process = self._spawn()
            self._watched()
        self.problem = f"it exited with code {code}: {self._errors()}"
        return False

    def _errors(self) -> str:
        with contextlib.suppress(ValueError):  # closed: stopped already
            self._log.seek(0)
            return self._log.read()[-1000:].decode(errors="replace").strip() or "no output"
        return "no output"

    def stop(self) -> None:
        self._stopped.set()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def start() -> TemporaryServer | None:
    """The server, started now, when this run will use Prefect's ephemeral mode; None otherwise, and when
    Prefect is imported already (a run called in-process, as tests do: no import left to overlap, and this
    process's environment is not ours to change for later callers)."""
    if "prefect" in sys.modules or os.environ.get(EARLY_ENV, "1") == "0":
        return None
    if configured_elsewhere() or not _ephemeral_allowed():
        return None
    return TemporaryServer()

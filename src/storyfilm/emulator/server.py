"""Running the emulator: in a background thread on a free loopback port (tests, `run --emulate`), or in the
foreground (`storyfilm emulate`)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from storyfilm.emulator.app import create_app
from storyfilm.emulator.state import Emulator, EmulatorConfig
from storyfilm.errors import EmulatorError


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EmulatorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class EmulatorServer:
    """The emulator served by uvicorn in a daemon thread; `url` is its base URL for every provider.

        with EmulatorServer(EmulatorConfig(latency=0.2)) as emu:
            httpx.post(f"{emu.url}/api/v3/bytedance/seedance-2.0/text-to-video", ...)
    """

    def __init__(self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.app: FastAPI = create_app(config)
        self.host = host
        self._sock = _listen(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_config=None, log_level="warning",
                                                     access_log=False, timeout_graceful_shutdown=5))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"emulator-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return _url(self.host, self.port)

    @property
    def emulator(self) -> Emulator:
        emulator: Emulator = self.app.state.emulator  # Starlette's app.state is untyped
        return emulator

    def start(self, timeout: float = 15.0) -> EmulatorServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise EmulatorError(f"the emulator did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self._sock.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve_forever(config: EmulatorConfig, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve in the foreground until Ctrl-C, with uvicorn's access log; `announce` gets the base URL."""
    app = create_app(config)  # a bad fault spec fails here, before anything listens
    sock = _listen(host, port)
    try:
        announce(_url(host, sock.getsockname()[1]))
        uvicorn.Server(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5)).run(sockets=[sock])
    finally:
        sock.close()

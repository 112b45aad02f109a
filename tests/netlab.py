"""Loopback servers that count who connects: plain TCP listeners, and HTTPS file servers with a test CA.

127.0.0.1 and 127.0.0.2 are both loopback on Linux, so one port on each tells which address a client
really connected to.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ADDRESSES = ("127.0.0.1", "127.0.0.2")


def _bind_all(addresses: Sequence[str], make: Callable[[str, int], object]) -> tuple[int, list[object]]:
    """One object per address, all on the same free port (retrying if the port is taken on one of them)."""
    for _ in range(20):
        first = make(addresses[0], 0)
        port = _port_of(first)
        made = [first]
        try:
            for addr in addresses[1:]:
                made.append(make(addr, port))
        except OSError:
            for m in made:
                _close(m)
            continue
        return port, made
    raise OSError("no port free on every address")


def _port_of(obj: object) -> int:
    sock = obj if isinstance(obj, socket.socket) else obj.socket  # type: ignore[attr-defined]
    return int(sock.getsockname()[1])


def _close(obj: object) -> None:
    if isinstance(obj, socket.socket):
        obj.close()
    else:
        obj.server_close()  # type: ignore[attr-defined]


@dataclass
class Listeners:
    """Plain TCP listeners on `addresses` (one port), counting connections per address, closing each at once."""

    addresses: Sequence[str] = ADDRESSES
    counts: Counter[str] = field(default_factory=Counter)
    port: int = 0
    _socks: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Listeners:
        def make(addr: str, port: int) -> socket.socket:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.listen(64)
            s.settimeout(0.1)
            return s

        self.port, made = _bind_all(self.addresses, make)
        self._socks = [m for m in made if isinstance(m, socket.socket)]
        for addr, s in zip(self.addresses, self._socks, strict=True):
            threading.Thread(target=self._serve, args=(addr, s), daemon=True).start()
        return self

    def _serve(self, addr: str, s: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = s.accept()
            except (TimeoutError, OSError):
                continue
            self.counts[addr] += 1
            conn.close()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for s in self._socks:
            s.close()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


Route = Callable[[BaseHTTPRequestHandler], None]


def send(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)
    return route


def trickle(head: bytes, every: float = 0.2) -> Route:
    """A body that never ends: `head`, then one byte every `every` seconds (each read succeeds)."""
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        h.wfile.write(head)
        h.wfile.flush()
        try:
            while True:
                time.sleep(every)
                h.wfile.write(b"x")
                h.wfile.flush()
        except OSError:
            pass
    return route


@dataclass
class HttpsServers:
    """HTTPS servers on `addresses` (one port) serving `routes`, with a certificate from a test CA for
    `names`; counts connections and requests (with their Host header) per address. `ca_file` is the CA to
    trust (SSL_CERT_FILE)."""

    routes: dict[str, Route]
    directory: Path
    names: Sequence[str] = ("localhost", "assets.example", *ADDRESSES)
    addresses: Sequence[str] = ADDRESSES
    counts: Counter[str] = field(default_factory=Counter)
    hosts: list[tuple[str, str]] = field(default_factory=list)  # (address, Host header) per request
    port: int = 0
    ca_file: Path = Path()
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)

    def __enter__(self) -> HttpsServers:
        import trustme

        ca = trustme.CA()
        self.ca_file = self.directory / "test-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*self.names).configure_cert(context)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                addr = self.connection.getsockname()[0]
                outer.hosts.append((addr, self.headers.get("Host", "")))
                outer.routes.get(self.path, send(b"not found", 404))(self)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, object]:
                sock, peer = super().get_request()
                outer.counts[sock.getsockname()[0]] += 1
                # the handshake happens in the handler's thread: a client that never finishes it blocks no one
                return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), peer

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that refuses our certificate, or hangs up: expected in these tests

        self.port, made = _bind_all(self.addresses, lambda addr, port: Server((addr, port), Handler))
        self._servers = [m for m in made if isinstance(m, ThreadingHTTPServer)]
        for s in self._servers:
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@contextmanager
def trusting(ca_file: Path) -> Iterator[None]:
    """Clients in this process trust the test CA (httpx reads SSL_CERT_FILE), nothing else changed."""
    import os

    old = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(ca_file)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = old

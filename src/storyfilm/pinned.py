"""An httpx transport that connects only where the URL policy allows, to the address it checked.

The host of each request is resolved once (netpolicy.UrlPolicy.resolve) and the socket goes to an address
that passed the check, while the request keeps its URL's Host header and TLS server name (SNI and the
certificate check): HTTPS to a name works, and a DNS answer that changes between the check and the
connection (rebinding) reaches nothing new.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from storyfilm.netpolicy import Address, Target, UrlPolicy

_CACHE_SECONDS = 60.0  # how long a checked answer is used for requests that were not pinned first


@dataclass
class PinnedTransport(httpx.BaseTransport):
    """Connects only to addresses `policy` accepted, resolved once per host (and cached a minute).

    The request keeps its URL's Host header and TLS server name (SNI and certificate check), so HTTPS to
    a name works while the socket goes to the checked address."""

    policy: UrlPolicy
    inner: httpx.BaseTransport = field(default_factory=httpx.HTTPTransport)
    _pins: dict[tuple[str, int], tuple[float, tuple[Address, ...]]] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def pin(self, url: str) -> tuple[Address, ...]:
        """Resolve and check `url`'s host now (DownloadError if refused); later requests use this answer."""
        target, addrs = self.policy.resolve(url)
        with self._lock:
            self._pins[(target.host, target.port)] = (time.monotonic(), addrs)
        return addrs

    def _pinned(self, url: str) -> tuple[Target, Sequence[Address]]:
        target = Target.parse(url)
        with self._lock:
            found = self._pins.get((target.host, target.port))
        if found is not None and time.monotonic() - found[0] < _CACHE_SECONDS:
            return target, found[1]
        return target, self.pin(url)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target, addrs = self._pinned(str(request.url))
        extensions = dict(request.extensions)
        if target.literal is None:
            extensions["sni_hostname"] = target.host
        last: httpx.ConnectError | None = None
        for addr in addrs:  # in the resolver's order; the next one only if this one cannot be reached
            pinned = httpx.Request(request.method, request.url.copy_with(host=str(addr)), headers=request.headers,
                                   stream=request.stream, extensions=extensions)
            try:
                return self.inner.handle_request(pinned)
            except httpx.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    def close(self) -> None:
        self.inner.close()

"""The shared host client: which requests are retried, how long it waits, and what never leaks.

Retry logic is unit-tested on an httpx MockTransport (exact fault sequences); that providers really
work is proven against the emulator over loopback HTTP (test_providers.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from storyfilm.errors import (
    AuthError,
    DownloadError,
    InvalidRequest,
    ProviderError,
    RateLimited,
    UnexpectedResponse,
)
from storyfilm.providers.http import HostClient, RetryPolicy, check_url, retry_after_seconds, safe_job_id

SECRET = "sk-live-DO-NOT-LEAK-1234"


def client(handler: Callable[[httpx.Request], httpx.Response], sleeps: list[float],
           idempotency_header: str | None = None) -> HostClient:
    return HostClient("testhost", "https://api.example.com", {"Authorization": f"Bearer {SECRET}"},
                      secrets=[SECRET], transport=httpx.MockTransport(handler), sleep=sleeps.append,
                      retry=RetryPolicy(attempts=4, base_delay=0.01), idempotency_header=idempotency_header)


def scripted(*responses: httpx.Response | Exception) -> tuple[Callable[[httpx.Request], httpx.Response], list[str]]:
    seen: list[str] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def test_polls_retry_429_honouring_retry_after_then_5xx_then_succeed() -> None:
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "3"}, json={"error": "slow down"}),
                             httpx.Response(503, json={"error": "busy"}),
                             httpx.ConnectError("reset"),
                             httpx.Response(200, json={"ok": True}))
    sleeps: list[float] = []
    assert client(handler, sleeps).json("GET", "/jobs/1", retry=True) == {"ok": True}
    assert len(seen) == 4
    assert sleeps[0] == 3.0  # the host's Retry-After, exactly
    assert all(0 <= s <= 0.04 for s in sleeps[1:])  # jittered exponential backoff otherwise


def test_a_submit_is_retried_only_after_a_429() -> None:
    handler, seen = scripted(httpx.Response(503, json={"error": "busy"}), httpx.Response(200, json={}))
    with pytest.raises(ProviderError, match="HTTP 503: busy"):
        client(handler, []).submit("/submit", {"prompt": "x"}, shot="s1", idempotency_key="k1")
    assert seen == ["POST /submit"]  # a 5xx may come after the job was created: never repeated
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "slow"}),
                             httpx.Response(200, json={"id": "j"}))
    sleeps: list[float] = []
    assert client(handler, sleeps).submit("/submit", {}, shot="s1", idempotency_key="k1") == {"id": "j"}
    assert len(seen) == 2 and sleeps == [2.0]  # a 429 is a refusal: nothing was created
    handler, seen = scripted(httpx.ConnectError("reset"))
    with pytest.raises(ProviderError, match="not retried: the job may have been created"):
        client(handler, []).submit("/submit", {}, shot="s1", idempotency_key="k1")
    assert len(seen) == 1


def test_a_host_that_honours_an_idempotency_key_gets_the_submit_again_with_the_same_key() -> None:
    keys: list[str | None] = []
    replies = [httpx.ConnectError("reset"), httpx.Response(503, json={"error": "busy"}),
               httpx.Response(202, json={"jobId": "j"})]

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("Idempotency-Key"))
        item = replies.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    host = client(handler, [], idempotency_header="Idempotency-Key")
    assert host.submit("/v2/videos/generate", {"prompt": "x"}, shot="s1", idempotency_key="shot-key") == {"jobId": "j"}
    assert keys == ["shot-key"] * 3  # every try carries the key: the host returns the original job, billed once


def test_downloads_use_the_injected_transport_without_the_api_key(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "api.example.com":
            return httpx.Response(200, json={"url": "https://93.184.216.34/out.mp4"})  # a CDN (no DNS needed)
        return httpx.Response(200, content=MP4_HEAD + b"x" * 100)

    host = client(handler, [])
    answer = host.json("GET", "/jobs/1", retry=True)
    out = host.download(answer["url"], tmp_path / "out.mp4", kind="video")
    assert out.read_bytes() == MP4_HEAD + b"x" * 100
    assert [r.url.host for r in seen] == ["api.example.com", "93.184.216.34"]
    assert seen[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert "Authorization" not in seen[1].headers and SECRET not in str(seen[1].headers)  # a CDN gets no key


def test_retries_give_up_after_the_policy_with_a_typed_error() -> None:
    handler, seen = scripted(*[httpx.Response(429, json={"error": "quota"})] * 4)
    with pytest.raises(RateLimited) as info:
        client(handler, []).json("GET", "/jobs/1", retry=True, shot="s1")
    assert len(seen) == 4 and info.value.status == 429 and "shot 's1'" in str(info.value)


def test_a_retry_after_longer_than_the_cap_is_not_waited_for() -> None:
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "86400"}, json={"error": "tomorrow"}))
    sleeps: list[float] = []
    with pytest.raises(RateLimited) as info:
        client(handler, sleeps).json("GET", "/x", retry=True)
    assert sleeps == [] and info.value.retry_after == 86400


def test_errors_are_typed_and_carry_the_hosts_words_but_never_the_key() -> None:
    handler, _ = scripted(httpx.Response(401, json={"error": f"invalid key {SECRET}"}))
    with pytest.raises(AuthError) as info:
        client(handler, []).json("GET", "/x", retry=True)
    assert SECRET not in str(info.value) and "invalid key ***" in str(info.value)
    handler, _ = scripted(httpx.Response(400, json={"error": "Validation failed",
                                                    "details": {"seedanceParams.duration": ["too big"]}}))
    with pytest.raises(InvalidRequest, match="Validation failed.*seedanceParams.duration"):
        client(handler, []).json("POST", "/x", retry=False)


def test_retry_after_parses_seconds_and_dates() -> None:
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/y.mp4", "http://169.254.169.254/latest/meta-data",
                                 "http://metadata.google.internal/x", "http://[fe80::1]/a.mp4"])
def test_hostile_output_urls_are_refused(url: str) -> None:
    with pytest.raises(DownloadError, match="refusing"):
        check_url(url, allow_private=True)


def test_private_addresses_only_when_the_host_is_private() -> None:
    check_url("http://127.0.0.1:9/a.mp4", allow_private=True)
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1 \(loopback, this machine\) is not a public address"):
        check_url("http://127.0.0.1:9/a.mp4", allow_private=False)


# --- downloads over a real loopback socket -------------------------------------------------------


@pytest.fixture
def files_server() -> Iterator[tuple[str, dict[str, Callable[[BaseHTTPRequestHandler], None]]]]:
    routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            routes[self.path](self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", routes
    server.shutdown()
    server.server_close()


MP4_HEAD = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 8


def test_download_retries_a_dropped_transfer_and_caps_size(tmp_path: Path, files_server: tuple) -> None:
    base, routes = files_server
    drops = {"n": 0}

    def flaky(h: BaseHTTPRequestHandler) -> None:
        body = MP4_HEAD + b"x" * 5000
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if drops["n"] == 0:
            drops["n"] += 1
            h.wfile.write(body[:1000])  # then the connection closes half-way
            h.close_connection = True
            return
        h.wfile.write(body)

    def endless(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        h.wfile.write(MP4_HEAD)
        for _ in range(200):
            h.wfile.write(b"y" * 65536)

    def html(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        h.wfile.write(b"<html>not a video</html>" * 10)

    routes.update({"/flaky.mp4": flaky, "/endless.mp4": endless, "/page.mp4": html})
    host = HostClient("testhost", base, {}, retry=RetryPolicy(attempts=3, base_delay=0.01), sleep=lambda s: None)
    out = host.download(f"{base}/flaky.mp4", tmp_path / "a.mp4", kind="video")
    assert out.stat().st_size == len(MP4_HEAD) + 5000 and drops["n"] == 1
    with pytest.raises(DownloadError, match="cap"):
        host.download(f"{base}/endless.mp4", tmp_path / "b.mp4", kind="video", max_bytes=1_000_000)
    with pytest.raises(DownloadError, match="not an MP4"):
        host.download(f"{base}/page.mp4", tmp_path / "c.mp4", kind="video")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]  # nothing written from the bad ones


@pytest.mark.parametrize("value", ["../../_emulator/reset", "a/b", "x?y=1", "#frag", "", " id", "é", None, 42,
                                   ["abc"], {"id": "abc"}, "a" * 201])
def test_job_ids_that_would_reach_other_urls_are_refused(value: object) -> None:
    with pytest.raises(UnexpectedResponse, match="no usable job id"):
        safe_job_id(value, provider="testhost")


def test_real_job_ids_pass() -> None:
    for value in ("b73bfd6a-8e2c-4a51-9a5f-0c6d4e3b2a11", "task_862a169f0e3c4", "0c9e8b7a6d5f4e3c", "cgt-2025:01.x"):
        assert safe_job_id(value, provider="testhost") == value


def test_an_answer_that_lies_about_its_encoding_is_a_typed_error() -> None:
    handler, _ = scripted(httpx.Response(200, headers={"Content-Encoding": "gzip"},
                                         stream=httpx.ByteStream(b"not gzip at all")))
    with pytest.raises(UnexpectedResponse, match="cannot be decoded"):
        client(handler, []).json("GET", "/jobs/1", retry=True, shot="s1")

"""HTTP to the video hosts, written once: typed errors, retries with backoff, safe streamed downloads.

Rules every provider gets from here:
- A request is retried only when the caller says it is safe (polls, downloads, uploads) and only on 429,
  5xx or a connection failure; `Retry-After` is honoured.
- A submit (`HostClient.submit`) is repeated only after a 429, which creates nothing, unless the host
  honours an idempotency key (its spec's `idempotency_header`): then a repeat returns the original job.
- The API key goes with API calls only: downloads (output URLs are a CDN's) go through the same client and
  transport without it.
- Downloads stream to disk under a size cap and an overall deadline, go only where the URL policy allows
  (netpolicy.py: no link-local/metadata addresses, private/loopback ones only if the host itself lives
  there or the user allowed the network) and to the address it checked, and check the bytes are what we
  expect.
- An answer that cannot be read (not JSON, undecodable) is an UnexpectedResponse; job ids from a host are
  checked before they go into a URL.
- No message, log line or exception contains the API key.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin

import httpx

from storyfilm.errors import (
    AuthError,
    DownloadError,
    InvalidRequest,
    PaymentRequired,
    ProviderError,
    ProviderHTTPError,
    RateLimited,
    UnexpectedResponse,
)
from storyfilm.netpolicy import UrlPolicy
from storyfilm.pinned import PinnedTransport
from storyfilm.providers.base import JobStatus, Output, ShotRequest, seam_copy

log = logging.getLogger("storyfilm.providers")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_VIDEO_BYTES = 2_000_000_000
MAX_IMAGE_BYTES = 50_000_000
# A generated video is a few Mbit/s; 100 Mbit/s of footage plus a margin is a cap no honest output reaches,
# and an endless or lying download stops there instead of at MAX_VIDEO_BYTES.
VIDEO_BYTES_PER_SECOND = 12_500_000
VIDEO_BYTES_MARGIN = 16_000_000
# A whole download (every retry and redirect) ends by then: a server trickling bytes cannot hold a run.
DOWNLOAD_DEADLINE = {"video": 900.0, "image": 120.0}
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


def fetch_with_last_frame(client: HostClient, status: JobStatus, request: ShotRequest, dest_dir: Path) -> Output:
    """Download a finished job's video (capped by its length) and the last frame the host made, if any."""
    assert status.video_url is not None
    video = client.download(status.video_url, dest_dir / f"{status.job_id}.mp4", kind="video",
                            shot=request.shot_id, max_bytes=video_cap(request.duration))
    last = None
    if status.last_frame_url:
        last = client.download(status.last_frame_url, dest_dir / f"{status.job_id}.last.png", kind="image",
                               shot=request.shot_id)
    return Output(video=video, last_frame=last, last_frame_url=status.last_frame_url, seam_copy=seam_copy(request))


def video_cap(seconds: float) -> int:
    """The most bytes a video of `seconds` may take (see VIDEO_BYTES_PER_SECOND)."""
    return min(MAX_VIDEO_BYTES, int(VIDEO_BYTES_MARGIN + VIDEO_BYTES_PER_SECOND * max(seconds, 0.0)))


def safe_job_id(value: Any, *, provider: str, shot: str = "", what: str = "job id") -> str:
    """A job id from a host's answer, checked: it goes into our URLs (a '/', '..' or '?' would reach
    other endpoints with our key)."""
    if isinstance(value, str) and _JOB_ID.match(value) and ".." not in value:
        return value
    shown = "none" if value is None else f"{value!r}"[:80]
    raise UnexpectedResponse(f"the submit answer has no usable {what} ({shown})", provider=provider, shot=shot)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries in all
    base_delay: float = 0.5  # seconds; doubles each try, with full jitter
    max_delay: float = 30.0
    max_retry_after: float = 120.0  # a host asking for longer is treated as failing


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (it may be a number of seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def provider_message(response: httpx.Response) -> str:
    """The host's own words from an error response, whatever its error shape."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            msg = err.get("message") or err.get("msg") or str(err)
        else:
            msg = err or body.get("message") or body.get("detail") or body.get("msg")
        details = body.get("details")
        if details:
            msg = f"{msg} {details}"
        return str(msg)[:500] if msg else str(body)[:300]
    return str(body)[:300]


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that are not http(s), or that point at link-local/metadata (or private) addresses
    (the rules are netpolicy's)."""
    UrlPolicy.from_env(host_private=allow_private).resolve(url)


_MAGIC: dict[str, tuple[Callable[[bytes], bool], str]] = {
    "video": (lambda b: b[4:8] == b"ftyp" or b[:4] == b"\x1a\x45\xdf\xa3", "an MP4/WebM video"),
    "image": (lambda b: b[:8] == b"\x89PNG\r\n\x1a\n" or b[:3] == b"\xff\xd8\xff"
              or (b[:4] == b"RIFF" and b[8:12] == b"WEBP"), "a PNG/JPEG/WebP image"),
}


class HostClient:
    """One host's HTTP client: auth headers, typed errors, retries, downloads."""

    def __init__(self, provider: str, base_url: str, headers: Mapping[str, str], *,
                 secrets: Iterable[str] = (), retry: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None, timeout: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, idempotency_header: str | None = None,
                 policy: UrlPolicy | None = None):
        """`headers` go with every API call (auth), never with a download; `transport` carries both (downloads
        through the URL policy's pinned transport: netpolicy.py, pinned.py)."""
        self.provider = provider
        self.base_url = base_url.rstrip("/") + "/"
        self.secrets = tuple(s for s in secrets if s)
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.idempotency_header = idempotency_header
        self._api_headers = dict(headers)
        # where outputs may come from: netpolicy's rules; the connection goes to the address that was checked
        self._pinned = PinnedTransport(policy or UrlPolicy.for_host(self.base_url),
                                       inner=transport or httpx.HTTPTransport())
        self._downloads = httpx.Client(headers={"User-Agent": "storyfilm"}, transport=self._pinned,
                                       follow_redirects=False, trust_env=False)
        self._http = httpx.Client(headers={"User-Agent": "storyfilm"}, transport=transport, follow_redirects=False,
                                  timeout=httpx.Timeout(timeout, connect=15.0))

    def close(self) -> None:
        self._http.close()
        self._downloads.close()

    def url(self, path: str) -> str:
        return path if "://" in path else urljoin(self.base_url, path.lstrip("/"))

    # --- requests -------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, retry: bool, shot: str = "", retry_rate_limit: bool = False,
                ok: Iterable[int] = (200, 201, 202), **kwargs: Any) -> httpx.Response:
        """Send; raise a typed error unless the status is in `ok`.

        `retry`: safe to repeat (429, 5xx, connection failures). `retry_rate_limit`: only a 429 may be
        repeated: the host refused the request before doing anything (what a submit needs).
        """
        url = self.url(path)
        headers = {**self._api_headers, **kwargs.pop("headers", {})}
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(method, url, headers=headers, **kwargs)
            except httpx.DecodingError as exc:  # a body the host says is gzip/brotli but is not
                raise UnexpectedResponse(self._clean(f"{method} {path}: the answer cannot be decoded: {exc}"),
                                         provider=self.provider, shot=shot) from None
            except httpx.TransportError as exc:
                if retry and attempt < self.retry.attempts:
                    self._wait(attempt, None, f"{method} {path}: {type(exc).__name__}")
                    continue
                hint = "" if retry else " (not retried: the job may have been created; run again to check)"
                raise ProviderError(self._clean(f"{method} {path}: connection failed: {exc}{hint}"),
                                    provider=self.provider, shot=shot) from None
            if response.status_code in ok:
                return response
            delay = retry_after_seconds(response.headers.get("Retry-After"))
            retryable = response.status_code in RETRYABLE_STATUS if retry else \
                (retry_rate_limit and response.status_code == 429)
            if retryable and attempt < self.retry.attempts and (delay is None or delay <= self.retry.max_retry_after):
                self._wait(attempt, delay, f"{method} {path}: HTTP {response.status_code}")
                continue
            raise self._error(response, shot, delay)

    def json(self, method: str, path: str, *, retry: bool, shot: str = "", **kwargs: Any) -> Any:
        response = self.request(method, path, retry=retry, shot=shot, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise UnexpectedResponse(self._clean(f"{method} {path}: the host answered HTTP {response.status_code} "
                                                 f"with something that is not JSON: {response.text[:120]!r}"),
                                     provider=self.provider, shot=shot) from None

    def submit(self, path: str, body: Any, *, shot: str, idempotency_key: str) -> Any:
        """Start a paid job; the JSON answer. Repeated only when that cannot pay twice: after a 429 (the host
        refused before creating anything), or with the host's idempotency header (a repeat with the same key
        and body returns the original job, billed once). Anything else may have created the job."""
        if self.idempotency_header is None:
            return self.json("POST", path, retry=False, retry_rate_limit=True, shot=shot, json=body)
        return self.json("POST", path, retry=True, shot=shot, json=body,
                         headers={self.idempotency_header: idempotency_key[:255]})

    def _wait(self, attempt: int, retry_after: float | None, why: str) -> None:
        if retry_after is not None:
            delay = retry_after
        else:
            delay = random.uniform(0, min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1)))
        log.info("%s: %s; retry %d in %.2f s", self.provider, why, attempt, delay)
        self.sleep(delay)

    def _clean(self, text: str) -> str:
        return redact(text, self.secrets)

    def _error(self, response: httpx.Response, shot: str, retry_after: float | None) -> ProviderHTTPError:
        status = response.status_code
        message = self._clean(provider_message(response))
        where = {"provider": self.provider, "shot": shot}
        if status in (401, 403):
            return AuthError(f"{message} (check the API key)", status=status, **where)
        if status == 429:
            return RateLimited(message, retry_after=retry_after, status=status, **where)
        if status == 402:
            return PaymentRequired(message, status=status, **where)
        if status in (400, 404, 409, 413, 422):
            return InvalidRequest(message, status=status, **where)
        return ProviderHTTPError(message, status=status, **where)

    # --- downloads ------------------------------------------------------------------------------

    def download(self, url: str, dest: Path, *, kind: Literal["video", "image"], shot: str = "",
                 max_bytes: int | None = None, deadline: float | None = None) -> Path:
        """Stream `url` to `dest` (atomically), retrying drops and 429/5xx, within `deadline` seconds in all
        (DOWNLOAD_DEADLINE by default); check size and file type."""
        limit = max_bytes or (MAX_VIDEO_BYTES if kind == "video" else MAX_IMAGE_BYTES)
        ends = time.monotonic() + (deadline or DOWNLOAD_DEADLINE[kind])
        check, what = _MAGIC[kind]
        tmp = dest.with_name(f".{dest.name}.partial")
        dest.parent.mkdir(parents=True, exist_ok=True)
        attempt = 0
        while True:
            attempt += 1
            try:
                self._stream_to(url, tmp, limit, shot, ends)
                break
            except httpx.DecodingError as exc:
                tmp.unlink(missing_ok=True)
                raise DownloadError(self._clean(f"the output cannot be decoded: {exc}"), provider=self.provider,
                                    shot=shot) from None
            except (httpx.TransportError, _Retryable) as exc:
                tmp.unlink(missing_ok=True)
                if attempt >= self.retry.attempts:
                    raise DownloadError(self._clean(f"download of the output failed {attempt} times: {exc}"),
                                        provider=self.provider, shot=shot) from None
                self._wait(attempt, getattr(exc, "retry_after", None), f"download: {exc}")
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        with open(tmp, "rb") as f:
            head = f.read(16)
        if not check(head):
            tmp.unlink(missing_ok=True)
            raise DownloadError(self._clean(f"the downloaded output is not {what} (starts with {head[:8]!r})"),
                                provider=self.provider, shot=shot)
        tmp.replace(dest)
        return dest

    def _stream_to(self, url: str, tmp: Path, limit: int, shot: str, ends: float) -> None:
        current = url
        for _ in range(6):  # redirects, each hop checked
            left = self._time_left(ends, shot)
            try:
                self._pinned.pin(current)
            except DownloadError as exc:
                raise DownloadError(self._clean(str(exc)), provider=self.provider, shot=shot) from None
            # The output URL is a CDN's, not the API's: never send our API key there.
            timeout = httpx.Timeout(min(60.0, left), connect=min(15.0, left))
            with self._downloads.stream("GET", current, timeout=timeout) as resp:
                if resp.status_code in (301, 302, 303, 307, 308) and "location" in resp.headers:
                    current = urljoin(current, resp.headers["location"])
                    continue
                if resp.status_code in RETRYABLE_STATUS:
                    raise _Retryable(f"HTTP {resp.status_code}",
                                     retry_after_seconds(resp.headers.get("Retry-After")))
                if resp.status_code != 200:
                    raise DownloadError(f"output download answered HTTP {resp.status_code}",
                                        provider=self.provider, shot=shot)
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > limit:
                    raise DownloadError(f"the output is {int(declared)} bytes, over the {limit}-byte cap",
                                        provider=self.provider, shot=shot)
                size = 0
                with open(tmp, "wb") as f:
                    for chunk in resp.iter_bytes():  # as it arrives: a trickle meets the deadline
                        self._time_left(ends, shot)
                        size += len(chunk)
                        if size > limit:
                            raise DownloadError(f"the output exceeded the {limit}-byte cap",
                                                provider=self.provider, shot=shot)
                        f.write(chunk)
                if declared and declared.isdigit() and size != int(declared):
                    raise _Retryable(f"connection dropped after {size} of {declared} bytes", None)
                return
        raise DownloadError("too many redirects", provider=self.provider, shot=shot)

    def _time_left(self, ends: float, shot: str) -> float:
        left = ends - time.monotonic()
        if left <= 0:
            raise DownloadError("the download did not finish within its deadline", provider=self.provider, shot=shot)
        return left


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None):
        self.retry_after = retry_after
        super().__init__(message)

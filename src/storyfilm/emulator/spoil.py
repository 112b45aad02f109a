"""Spoiled answers: what a hostile or broken host sends instead of a proper one (faults.py names them).

The routers build their proper answer and hand it here with the fault it drew; everything that depends on
a host's wire shape stays in its router (the `make` and `error` callables).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from storyfilm.emulator.common import BadRequest, emulator, fault_header, json_object, retry_headers
from storyfilm.emulator.faults import Fault
from storyfilm.emulator.files import Dropped
from storyfilm.emulator.jobs import Job

ErrorFn = Callable[[int, str | None, dict[str, str] | None], Response]
MakeFn = Callable[[Any], Response]

HOSTILE_URLS = {
    "file": "file:///etc/passwd",
    "ftp": "ftp://{host}/outputs/{job}.mp4",
    "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "linklocal": "http://[fe80::1]/outputs/{job}.mp4",
}
UNKNOWN_STATUS = "reticulating"
BAD_ID = "../../../_emulator/reset?x="
_ID_KEYS = frozenset({"id", "jobId", "task_id"})
_KEEP_TYPES = frozenset({"status", "code", "message"})  # wrongtype keeps these: the rest must still be read
HUGE_BYTES = 10**12
ENDLESS_LIMIT = 1 << 40
_CHUNK = 1 << 20


def refusal(fault: Fault | None, request: Request, error: ErrorFn) -> Response | None:
    """The error answer of a fault that refuses the request, or None (the request goes on)."""
    if fault is None or not fault.refuses:
        return None
    if fault.status is not None:
        return error(fault.status, None, retry_headers(fault))
    # Some hosts quote what they were sent; a client must not pass it on to its logs.
    presented = request.headers.get("authorization") or request.headers.get("x-api-key") or ""
    return error(400, f"invalid request: credentials {presented!r} may not use this parameter set", None)


async def submission(request: Request, provider: str, error: ErrorFn,
                     refuse: ErrorFn | None = None) -> tuple[dict[str, Any], str, Fault | None] | Response:
    """A submit's JSON body, its prompt and the fault it draws; or the answer that ends it here (a body that is
    not a JSON object, a fault that refuses it: `refuse`, by default `error`)."""
    try:
        body = await json_object(request)
    except BadRequest as exc:
        return error(400, str(exc), None)
    prompt = body.get("prompt")
    prompt = prompt if isinstance(prompt, str) else ""
    fault = emulator(request).faults.submit(provider, fault_header(request), prompt)
    refused = refusal(fault, request, refuse or error)
    return refused if refused is not None else (body, prompt, fault)


async def answer(fault: Fault | None, body: Any, make: MakeFn) -> Response:
    """The proper answer `make(body)`, or the spoiled one the fault asks for."""
    if fault is not None and fault.slow is not None:
        await asyncio.sleep(fault.slow)
    kind = fault.answer if fault is not None else None
    if kind is None:
        return make(body)
    if kind in ("reset", "badjson"):
        proper = make(body)
        if kind == "reset":
            return Dropped(bytes(proper.body), "application/json", status=proper.status_code)
        cut = bytes(proper.body)[: max(1, len(proper.body) // 2)]  # a JSON object cut in half never parses
        return Response(cut, status_code=proper.status_code, media_type="application/json")
    return make(_mangled(body, kind))


def _mangled(value: Any, kind: str, key: str = "") -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if (kind == "noid" and k in _ID_KEYS) or (kind == "nostatus" and k == "status"):
                continue
            if kind == "badid" and k in _ID_KEYS and isinstance(v, str):
                out[k] = BAD_ID
            elif kind == "unknown" and k == "status":
                out[k] = UNKNOWN_STATUS
            else:
                out[k] = _mangled(v, kind, k)
        return out
    if kind != "wrongtype" or key in _KEEP_TYPES:
        return [_mangled(v, kind) for v in value] if isinstance(value, list) else value
    if isinstance(value, list):
        return {"items": value}
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return [value]
    return value


def poll_body(job: Job, body: Any, base: str) -> Any:
    """A completed job's answer with the output URL its `output-*` fault asks for (or none)."""
    kind = job.faults.output
    if kind is None or job.phase().state != "completed":
        return body
    ours = f"{base}files/outputs/{job.id}"
    url = "" if kind == "missing" else HOSTILE_URLS[kind].format(host=urlsplit(base).netloc, job=job.id)

    def swap(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items() if not (kind == "missing" and _ours(v, ours))}
        if isinstance(value, list):
            return [swap(v) for v in value if not (kind == "missing" and _ours(v, ours))]
        return url if _ours(value, ours) else value

    return swap(body)


def _ours(value: Any, prefix: str) -> bool:
    return isinstance(value, str) and value.startswith(prefix)


def download(kind: str, video: Path) -> Response:
    """A spoiled output download (`download-*` faults)."""
    real = video.read_bytes()
    if kind == "endless":
        async def forever() -> AsyncIterator[bytes]:
            yield real[:64]
            zeros = bytes(_CHUNK)
            for _ in range(ENDLESS_LIMIT // _CHUNK):  # "endless": far past any client's cap
                yield zeros
                await asyncio.sleep(0)  # lets the server notice the client hang up (a send to it does not)

        return StreamingResponse(forever(), media_type="video/mp4")
    if kind == "huge":
        return Dropped(real, "video/mp4", announced=HUGE_BYTES)
    if kind == "html":
        page = b"<!DOCTYPE html><html><head><title>502</title></head><body>Bad gateway</body></html>\n"
        return Response(page * 4, media_type="text/html")
    if kind == "garbage":
        return Response(os.urandom(len(real)), media_type="video/mp4")
    assert kind == "corrupt"
    return Response(real[:64] + os.urandom(len(real) - 64), media_type="video/mp4")

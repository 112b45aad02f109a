"""Small helpers shared by the provider routers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import cast

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from storyfilm.emulator.faults import HEADER, Fault
from storyfilm.emulator.jobs import Job
from storyfilm.emulator.state import Emulator

MAX_UPLOAD_BYTES = 200 * 1024 * 1024


class BadRequest(Exception):
    """A body that is not the JSON object (or the multipart form) the endpoint takes."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


def emulator(request: Request) -> Emulator:
    return cast(Emulator, request.app.state.emulator)


def fault_header(request: Request) -> str | None:
    return request.headers.get(HEADER)


def bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def base_url(request: Request) -> str:
    """Where this client reached us: every URL we hand out is built on it."""
    return str(request.base_url)


def output_url(base: str, job: Job, suffix: str = ".mp4") -> str:
    return f"{base}files/outputs/{job.id}{suffix}"


def upload_url(base: str, token: str, filename: str) -> str:
    return f"{base}files/uploads/{token}/{filename}"


def retry_headers(fault: Fault) -> dict[str, str]:
    return {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def json_object(request: Request) -> dict[str, object]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


async def form_file(request: Request) -> tuple[bytes, str]:
    """The multipart field `file`: its bytes and file name."""
    try:
        form = await request.form()
    except Exception as exc:  # noqa: BLE001 - starlette raises several types for a malformed form
        raise BadRequest(f"expected multipart/form-data with a `file` field ({exc})") from None
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise BadRequest("expected multipart/form-data with a `file` field")
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    await form.close()
    if len(data) > MAX_UPLOAD_BYTES:
        raise BadRequest(f"the file is larger than {MAX_UPLOAD_BYTES} bytes", status=413)
    if not data:
        raise BadRequest("the uploaded file is empty")
    return data, file.filename or "upload"


def pydantic_problems(exc: ValidationError) -> dict[str, list[str]]:
    """Validation errors by dotted path (the shape of Apiframe's `details`)."""
    out: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        path = ".".join(str(p) for p in error["loc"]) or "body"
        message = "Required" if error["type"] == "missing" else error["msg"]
        out.setdefault(path, []).append(message)
    return out


def first_problem(exc: ValidationError) -> str:
    (path, messages), *_ = pydantic_problems(exc).items()
    if messages[0] == "Required":
        return f"missing required parameter: {path}"
    return f"invalid parameter {path}: {messages[0]}"

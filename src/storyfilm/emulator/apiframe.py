"""Apiframe v2 (reference/providers.md §2): `X-API-Key`, 202 + job polling, strict bodies, credits, idempotency."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request

from storyfilm.emulator import catalog, spoil
from storyfilm.emulator.common import (
    BadRequest,
    base_url,
    emulator,
    fault_header,
    form_file,
    iso,
    output_url,
    pydantic_problems,
    upload_url,
)
from storyfilm.emulator.files import sniff
from storyfilm.emulator.jobs import Job, key_owner
from storyfilm.emulator.media import RenderRequest
from storyfilm.emulator.state import ResultShape

PROVIDER = "apiframe"
TIERS = {"seedance-2": "standard", "seedance-2-fast": "fast", "seedance-2-mini": "mini"}
RESOLUTIONS = {"seedance-2": ("480p", "720p", "1080p", "4k"), "seedance-2-fast": ("480p", "720p"),
               "seedance-2-mini": ("480p", "720p")}
DEFAULT_DURATION = 8  # the docs' default
UPLOAD_LIMITS = {"image": 25 * 1024 * 1024, "audio": 25 * 1024 * 1024, "video": 50 * 1024 * 1024}
_STATUS = {"queued": "QUEUED", "running": "PROCESSING", "completed": "COMPLETED", "failed": "FAILED",
           "cancelled": "CANCELLED"}
_MESSAGES = {401: "Invalid or missing API key", 404: "Not found", 429: "Rate limit exceeded",
             500: "Internal server error", 502: "Upstream provider error", 503: "Service temporarily unavailable",
             504: "Upstream timeout"}

router = APIRouter()


def reply(status: int, body: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"x-request-id": str(uuid.uuid4()), **(headers or {})})


def error(status: int, message: str | None = None, headers: dict[str, str] | None = None,
          **extra: object) -> JSONResponse:
    return reply(status, {"error": message or _MESSAGES.get(status, "Error"), **extra}, headers)


def invalid(details: dict[str, list[str]]) -> JSONResponse:
    return error(400, "Invalid request body", details=details)


def _uri(value: str) -> str:
    parts = urlsplit(value)
    if not parts.scheme or not (parts.netloc or parts.scheme == "asset"):
        raise ValueError("Invalid url")
    return value


Uri = Annotated[str, AfterValidator(_uri)]


class _Zod(BaseModel):
    """Like the host's schema: unknown keys are errors, types are not coerced, and null is not 'absent'."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("Expected a value, received null")
        return value


class SeedanceParams(_Zod):
    # The capability table's lengths (S-004 line 97), though the FAQ says "from 4 to 15" (line 255): the
    # client sends only these (providers/specs.py), and the emulator holds it to them.
    duration: Literal[4, 6, 8, 10, 12, 15] | None = None
    resolution: Literal["480p", "720p", "1080p", "4k"] | None = None
    aspect_ratio: Literal["21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "adaptive"] | None = None
    start_image: Uri | None = None
    end_image: Uri | None = None
    reference_image_urls: list[Uri] | None = Field(None, max_length=9)
    reference_video_urls: list[Uri] | None = Field(None, max_length=3)
    reference_audio_urls: list[Uri] | None = Field(None, max_length=3)
    generate_audio: bool | None = None
    return_last_frame: bool | None = None
    web_search: bool | None = None
    camera_fixed: bool | None = None
    seed: int | None = None


class GenerateVideo(_Zod):
    model: Literal["seedance-2", "seedance-2-fast", "seedance-2-mini"]
    prompt: str = Field(min_length=1, max_length=4000)
    seedanceParams: SeedanceParams | None = None  # noqa: N815 - the wire name
    webhookUrl: Uri | None = None  # noqa: N815
    webhookEvents: list[Literal["progress", "completed", "failed"]] | None = Field(None, min_length=1)  # noqa: N815


def validate(body: dict[str, object]) -> RenderRequest | dict[str, list[str]]:
    """The job this body asks for, or Apiframe's validation `details`."""
    try:
        given = GenerateVideo.model_validate(body)
    except ValidationError as exc:
        return pydantic_problems(exc)
    if given.webhookUrl is not None:
        return {"webhookUrl": ["webhooks are not emulated; poll GET /v2/jobs/{id} instead"]}
    p = given.seedanceParams or SeedanceParams()
    resolution = p.resolution or "720p"
    if resolution not in RESOLUTIONS[given.model]:
        return {"seedanceParams.resolution": [f"{given.model} supports {', '.join(RESOLUTIONS[given.model])}"]}
    refs = bool(p.reference_image_urls or p.reference_video_urls or p.reference_audio_urls)
    if (p.start_image or p.end_image) and refs:
        return {"seedanceParams": ["start_image/end_image cannot be combined with reference_image_urls, "
                                   "reference_video_urls or reference_audio_urls"]}
    if p.end_image and not p.start_image:
        return {"seedanceParams.end_image": ["end_image requires start_image"]}
    aspect = p.aspect_ratio or "16:9"
    return RenderRequest(
        kind="image" if p.start_image else "text", prompt=given.prompt, duration=p.duration or DEFAULT_DURATION,
        resolution=resolution, aspect_ratio=None if aspect == "adaptive" else aspect,
        audio=bool(p.generate_audio), seed=p.seed, camera_fixed=bool(p.camera_fixed), image=p.start_image,
        last_image=p.end_image, reference_images=tuple(p.reference_image_urls or ()),
        reference_videos=tuple(p.reference_video_urls or ()), reference_audios=tuple(p.reference_audio_urls or ()),
        last_frame=bool(p.return_last_frame))


def job_json(job: Job, base: str, shape: ResultShape = "object") -> dict[str, object]:
    phase = job.phase()
    failed = phase.state in ("failed", "cancelled")
    result: object = None
    if phase.state == "completed":
        # Where the host puts the last frame is not documented [?]: result.lastFrameUrl, or after the video.
        urls = [output_url(base, job)] + ([output_url(base, job, ".last.png")] if job.request.last_frame else [])
        result = {"list": urls, "string": urls[0],
                  "object": {"videoUrl": urls[0], **({"lastFrameUrl": urls[1]} if len(urls) > 1 else {})}}[shape]
    error_text = None
    if phase.state == "failed" and phase.failure is not None:
        error_text = f"Provider returned an error: {phase.failure.message}"
    elif phase.state == "cancelled":
        error_text = "Job was cancelled"
    return {
        "id": job.id, "status": _STATUS[phase.state], "model": job.model,
        "progress": None if failed else round(phase.progress * 100), "result": result, "error": error_text,
        "creditCost": 0 if failed else job.credits,  # failed jobs are refunded
        "webhookStatus": None, "createdAt": iso(job.created),
        "completedAt": iso(phase.finished_at) if phase.finished_at else None,
        "input": job.body, "expired": False,
    }


def _api_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key", "").strip()
    return key if emulator(request).authorized(PROVIDER, key) else None


@router.post("/v2/videos/generate")
async def generate(request: Request) -> Response:
    emu = emulator(request)
    response = await _generate(request)
    if response.status_code != 202:
        emu.store.reject(PROVIDER)
    return response


async def _generate(request: Request) -> Response:
    emu = emulator(request)
    key = _api_key(request)
    if key is None:
        return error(401)
    got = await spoil.submission(request, PROVIDER, error)
    if isinstance(got, Response):
        return got
    body, prompt, fault = got
    checked = validate(body)
    if isinstance(checked, dict):
        return invalid(checked)
    owner, idem = key_owner(key), request.headers.get("idempotency-key")
    digest = emu.body_digest(body)
    if idem is not None:
        if not 1 <= len(idem) <= 255:
            return invalid({"Idempotency-Key": ["must be 1 to 255 characters"]})
        # No await between this check and remember(): two requests with one key cannot both get through.
        replay = emu.replay(owner, idem)
        if replay is not None:
            if replay.digest != digest:
                return error(409, "Idempotency-Key was already used with a different request body")
            original = emu.store.get(replay.job_id)
            if original is not None:
                return await spoil.answer(fault, {"jobId": original.id, "status": _STATUS[original.phase().state]},
                                          _accepted)
    model = str(body["model"])
    tier = TIERS[model]
    usd = emulator(request).price(tier, checked.resolution, checked.duration)
    needed = catalog.credits(usd)
    available = emu.credits_available()
    if available is not None and needed > available:
        return error(402, "Insufficient credits", creditsRequired=needed, creditsAvailable=available)
    job = emu.accept(request, provider=PROVIDER, model=model, tier=tier, render=checked, body=body, api_key=key,
                     prompt=prompt, cost_usd=usd, credits=needed, idempotency_key=idem)
    if idem is not None:
        emu.remember(owner, idem, digest, job.id)
    return await spoil.answer(fault, {"jobId": job.id, "status": "QUEUED"}, _accepted)


def _accepted(body: object) -> JSONResponse:
    return reply(202, body)


@router.get("/v2/jobs/{job_id}")
async def get_job(job_id: str, request: Request) -> Response:
    emu = emulator(request)
    key = _api_key(request)
    if key is None:
        return error(401)
    try:
        uuid.UUID(job_id)
    except ValueError:
        return error(400, "Invalid job id", details={"id": ["Invalid uuid"]})
    job = emu.store.get(job_id)
    if job is None or job.provider != PROVIDER or job.owner != key_owner(key):
        return error(404, "Job not found")
    job.polls += 1
    fault = emu.faults.request("poll", PROVIDER, fault_header(request), job.faults)
    if (refused := spoil.refusal(fault, request, error)) is not None:
        return refused
    base = base_url(request)
    return await spoil.answer(fault, spoil.poll_body(job, job_json(job, base, emu.config.apiframe_result), base),
                              _found)


def _found(body: object) -> JSONResponse:
    return reply(200, body)


@router.post("/v2/uploads")
async def upload(request: Request) -> Response:
    emu = emulator(request)
    if _api_key(request) is None:
        return error(401)
    fault = emu.faults.request("upload", PROVIDER, fault_header(request))
    if (refused := spoil.refusal(fault, request, error)) is not None:
        return refused
    try:
        data, filename = await form_file(request)
    except BadRequest as exc:
        return error(exc.status, str(exc))
    sniffed = sniff(data)  # the declared content type is ignored, like the host
    if sniffed is None:
        return error(400, "Unsupported file type: PNG, JPEG, WebP, GIF, MP4, WebM, MOV, MP3, WAV, OGG or M4A")
    kind, content_type = sniffed
    if len(data) > UPLOAD_LIMITS[kind]:
        return error(413, f"File too large: {kind} uploads are limited to {UPLOAD_LIMITS[kind] // 2**20} MB")
    ttl = emu.config.upload_ttl
    token, stored = emu.files.save(data, filename, content_type, ttl=ttl)
    emu.store.uploaded(PROVIDER)
    return await spoil.answer(fault, {"id": str(uuid.uuid4()), "url": upload_url(base_url(request), token,
                                                                                stored.filename),
                                      "kind": kind, "contentType": content_type, "byteSize": len(data),
                                      "expiresAt": iso(time.time() + ttl)}, lambda body: reply(201, body))

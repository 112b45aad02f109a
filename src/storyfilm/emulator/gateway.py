"""The OpenAI-style gateway (reference/providers.md §3, seed S-003): Bearer auth, resolution in the model id.

Only the request fields and one completed poll body are documented; the submit response, the status
vocabulary, the error shapes and `last_frame_url` are inferred [I] (see the reference's §3.2).
"""

from __future__ import annotations

import re
from functools import partial
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.requests import Request

from storyfilm.emulator import spoil
from storyfilm.emulator.common import (
    base_url,
    bearer,
    emulator,
    fault_header,
    first_problem,
    output_url,
)
from storyfilm.emulator.jobs import Job
from storyfilm.emulator.media import RenderRequest

PROVIDER = "gateway"
MODEL = re.compile(r"^seedance2\.0(?:-(?P<tier>fast|mini))?-(?P<resolution>480p|720p|1080p|4k)$")
RESOLUTIONS = {"standard": ("480p", "720p", "1080p", "4k"), "fast": ("480p", "720p"), "mini": ("480p", "720p")}
MODELS = tuple(f"seedance2.0{'' if t == 'standard' else '-' + t}-{r}" for t, rs in RESOLUTIONS.items() for r in rs)
DURATIONS = (5, 15)
DEFAULT_DURATION = 5  # [I]: the page gives no default
ASPECT_RATIOS = ("9:16", "1:1", "16:9")
FAILURE_CODES = {"moderation": "content_policy_violation", "timeout": "timeout", "error": "internal_error",
                 "unreachable": "invalid_media_url", "invalid": "invalid_media"}
_STATUS = {"queued": "queued", "running": "in_progress", "completed": "completed", "failed": "failed",
           "cancelled": "cancelled"}
_ERRORS = {400: ("invalid_request_error", "invalid_request"), 401: ("authentication_error", "invalid_api_key"),
           404: ("invalid_request_error", "not_found"), 429: ("rate_limit_error", "rate_limit_exceeded")}

router = APIRouter()


def error(status: int, message: str, headers: dict[str, str] | None = None, param: str | None = None
          ) -> JSONResponse:
    kind, code = _ERRORS.get(status, ("server_error", "server_error"))
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


BoolOrString = StrictBool | StrictStr


class ExtraBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    generate_audio: StrictBool | None = None
    seed: StrictInt | None = None
    watermark: BoolOrString | None = None
    camera_fixed: BoolOrString | None = None
    return_last_frame: BoolOrString | None = None
    operation: Literal["reference_to_video", "edit_video", "extend_video", "first_last_frame"] | None = None


class Generation(BaseModel):
    # OpenAI-style gateways ignore fields they do not know [I].
    model_config = ConfigDict(extra="ignore")
    model: StrictStr
    prompt: StrictStr = Field(min_length=1)
    duration: StrictInt | StrictStr | None = None
    aspect_ratio: StrictStr | None = None
    image: StrictStr | None = None
    last_image: StrictStr | None = None
    images: list[StrictStr] = Field(default_factory=list, max_length=9)
    videos: list[StrictStr] = Field(default_factory=list, max_length=3)
    audios: list[StrictStr] = Field(default_factory=list, max_length=3)  # cap [I]: the upstream's
    extra_body: ExtraBody = Field(default_factory=ExtraBody)


def flag(value: bool | str | None, name: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"extra_body.{name} must be a boolean or 'true'/'false', got {value!r}")


def validate(body: dict[str, object]) -> tuple[str, RenderRequest] | tuple[str, str]:
    """(tier, job) for this body, or ("", the 400 message)."""
    try:
        given = Generation.model_validate(body)
    except ValidationError as exc:
        return "", first_problem(exc)
    m = MODEL.match(given.model)
    if m is None or m["resolution"] not in RESOLUTIONS[m["tier"] or "standard"]:
        return "", f"model {given.model!r} is not available; models: {', '.join(MODELS)}"
    tier, resolution = m["tier"] or "standard", m["resolution"]
    duration: int | str = DEFAULT_DURATION if given.duration is None else given.duration
    if isinstance(duration, str):
        if not duration.strip().isdigit():
            return "", f"duration must be an integer from 5 to 15, got {duration!r}"
        duration = int(duration)
    lo, hi = DURATIONS
    if not lo <= duration <= hi:
        return "", f"duration {duration} is outside 5 to 15"
    if given.aspect_ratio is not None and given.aspect_ratio not in ASPECT_RATIOS:
        return "", f"aspect_ratio {given.aspect_ratio!r} is not supported; use {', '.join(ASPECT_RATIOS)}"
    extra = given.extra_body
    try:
        camera_fixed = flag(extra.camera_fixed, "camera_fixed")
        last_frame = flag(extra.return_last_frame, "return_last_frame")
        flag(extra.watermark, "watermark")
    except ValueError as exc:
        return "", str(exc)
    # Images may be data: URIs: the upstream (Ark) takes base64 images and new-api style gateways pass them on [I].
    request = partial(RenderRequest, prompt=given.prompt, duration=duration, resolution=resolution,
                      audio=True if extra.generate_audio is None else extra.generate_audio,  # default [I]
                      seed=extra.seed, camera_fixed=camera_fixed, last_frame=last_frame, data_uris=True)
    if given.last_image and not given.image:
        return "", "last_image must be used with image"
    if extra.operation == "extend_video":
        # The one documented way to extend is this compatibility hint [?]: the video in `videos` is extended
        # like the upstream does (the original followed by the new segment).
        if len(given.videos) != 1 or given.image or given.images or given.audios:
            return "", "extend_video takes exactly one video in `videos` and no image, images or audios"
        return tier, request(kind="extend", aspect_ratio=None, video=given.videos[0], last_image=given.last_image)
    if given.image and (given.images or given.videos or given.audios):
        return "", "image/last_image (first/last frames) cannot be combined with images, videos or audios references"
    return tier, request(
        kind="image" if given.image else "text", aspect_ratio=given.aspect_ratio, image=given.image,
        last_image=given.last_image, reference_images=tuple(given.images), reference_videos=tuple(given.videos),
        reference_audios=tuple(given.audios), reference_video_seconds=(2.0, 15.0))


def task(job: Job, base: str, at: float | None = None) -> dict[str, object]:
    phase = job.phase(at)
    out: dict[str, object] = {
        "id": job.id, "task_id": job.id, "object": "video.generation.job", "model": job.model,
        "status": _STATUS[phase.state], "progress": round(phase.progress * 100), "created_at": int(job.created),
    }
    if phase.finished_at is not None:
        out["completed_at"] = int(phase.finished_at)
    if phase.state == "completed":
        out["video_url"] = output_url(base, job)
        if job.request.last_frame:
            out["last_frame_url"] = output_url(base, job, ".last.png")  # location inferred [I]
    elif phase.failure is not None:
        out["error"] = {"code": FAILURE_CODES[phase.failure.kind] if phase.state == "failed" else "cancelled",
                        "message": phase.failure.message}
    return out


def _key(request: Request) -> str | None:
    key = bearer(request)
    return key if emulator(request).authorized(PROVIDER, key) else None


@router.post("/v1/video/generations")
@router.post("/v1/videos/generations")
async def create(request: Request) -> Response:
    emu = emulator(request)
    response = await _create(request)
    if response.status_code != 200:
        emu.store.reject(PROVIDER)
    return response


async def _create(request: Request) -> Response:
    emu = emulator(request)
    key = _key(request)
    if key is None:
        return error(401, "invalid or missing API key")
    got = await spoil.submission(request, PROVIDER, _fault_error)
    if isinstance(got, Response):
        return got
    body, prompt, fault = got
    tier, checked = validate(body)
    if isinstance(checked, str):
        return error(400, checked)
    job = emu.accept(request, provider=PROVIDER, model=str(body["model"]), tier=tier, render=checked, body=body,
                     api_key=key, prompt=prompt,
                     cost_usd=emulator(request).price(tier, checked.resolution, checked.duration))
    # the job as accepted (queued), however long this busy server took to answer
    return await spoil.answer(fault, task(job, base_url(request), at=job.created), JSONResponse)


@router.get("/v1/videos/{task_id}")
async def retrieve(task_id: str, request: Request) -> Response:
    emu = emulator(request)
    if _key(request) is None:
        return error(401, "invalid or missing API key")
    job = emu.store.get(task_id)
    if job is None or job.provider != PROVIDER:
        return error(404, f"task {task_id} not found")
    job.polls += 1
    fault = emu.faults.request("poll", PROVIDER, fault_header(request), job.faults)
    if (refused := spoil.refusal(fault, request, _fault_error)) is not None:
        return refused
    base = base_url(request)
    return await spoil.answer(fault, spoil.poll_body(job, task(job, base), base), JSONResponse)


def _fault_error(status: int, message: str | None, headers: dict[str, str] | None) -> JSONResponse:
    return error(status, message or ("rate limit exceeded" if status == 429 else "upstream error"), headers)


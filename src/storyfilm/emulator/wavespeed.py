"""WaveSpeed v3 (reference/providers.md §1): `{code,message,data}` envelopes, Bearer auth, model path in the URL."""

from __future__ import annotations

from functools import partial
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from storyfilm.emulator import catalog, spoil
from storyfilm.emulator.common import (
    BadRequest,
    base_url,
    bearer,
    emulator,
    fault_header,
    first_problem,
    form_file,
    iso,
    json_object,
    output_url,
    upload_url,
)
from storyfilm.emulator.files import sniff
from storyfilm.emulator.jobs import Job
from storyfilm.emulator.media import RenderRequest

PROVIDER = "wavespeed"
TIERS = {"bytedance/seedance-2.0": "standard", "bytedance/seedance-2.0-fast": "fast",
         "bytedance/seedance-2.0-mini": "mini"}
KINDS: dict[str, Literal["text", "image", "extend"]] = {
    "text-to-video": "text", "image-to-video": "image", "video-extend": "extend"}
# What the host is taken to accept: the readings of its pages that providers/specs.py documents (seed lines
# there); tests/test_fidelity.py checks that the two agree.
RESOLUTIONS = {"standard": ("480p", "720p", "1080p"), "fast": ("480p", "720p", "1080p"), "mini": ("720p", "1080p")}
DURATIONS = {"standard": tuple(range(4, 16)), "fast": tuple(range(4, 16)), "mini": tuple(range(5, 13))}
IMAGE_DURATIONS = (5, 10, 15)  # image-to-video: what both its schemas take (the older `images[]` one: S-002)
ASPECT_RATIOS = {"standard": catalog.ASPECT_RATIOS, "fast": catalog.ASPECT_RATIOS,
                 "mini": tuple(r for r in catalog.ASPECT_RATIOS if r != "21:9")}
AUDIO_SWITCH_ON_EXTEND = {"mini"}  # the standard and fast extend schemas have no generate_audio: always on
MAX_REFERENCES = {"standard": (9, 3, 3), "fast": (9, 3, 3), "mini": (9, 9, 3)}  # images, videos, audios
BUSINESS_CODES = {"moderation": 1200, "invalid": 1401, "unreachable": 1402, "timeout": 5004, "error": 5000}
_STATUS = {"queued": "created", "running": "processing", "completed": "completed", "failed": "failed",
           "cancelled": "cancelled"}
_MESSAGES = {401: "Unauthorized: invalid or missing API key", 404: "Not found", 429: "Too many requests",
             500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable", 504: "Gateway timeout"}
_FRAME_KEYS = ("image", "last_image", "images", "video")
_REFERENCE_KEYS = ("reference_images", "reference_videos", "reference_audios")

router = APIRouter()


def envelope(data: object, *, code: int = 200, message: str = "success",
             headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "data": data}, status_code=code, headers=headers)


def error(status: int, message: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return envelope(None, code=status, message=message or _MESSAGES.get(status, "error"), headers=headers)


class _Input(BaseModel):
    # Unknown keys are ignored: the host's behaviour for them is not documented [?]. No `seed`: no WaveSpeed
    # Seedance 2.0 schema has one (S-000, S-001, S-002), so a seed sent is ignored like any unknown key.
    model_config = ConfigDict(extra="allow", strict=True)
    prompt: str = Field(min_length=1)
    duration: int = 5
    resolution: str = "720p"
    generate_audio: bool = True
    enable_web_search: bool = False


class TextToVideo(_Input):
    aspect_ratio: str = "16:9"
    reference_images: list[str] = Field(default_factory=list)
    reference_videos: list[str] = Field(default_factory=list)
    reference_audios: list[str] = Field(default_factory=list)


class ImageToVideo(_Input):
    image: str | None = None
    last_image: str | None = None
    images: list[str] | None = None  # the legacy form: images[0] is the first frame
    aspect_ratio: str | None = None  # None: follow the image


class VideoExtend(_Input):
    video: str
    last_image: str | None = None


_MODELS: dict[str, type[_Input]] = {"text": TextToVideo, "image": ImageToVideo, "extend": VideoExtend}


def model_of(path: str) -> tuple[str, Literal["text", "image", "extend"]] | None:
    family, _, kind = path.strip("/").rpartition("/")
    if family in TIERS and kind in KINDS:
        return TIERS[family], KINDS[kind]
    return None


def validate(tier: str, kind: Literal["text", "image", "extend"], body: dict[str, object]) -> RenderRequest | str:
    """The job this body asks for, or the 400 message."""
    if body.get("enable_sync_mode") or body.get("enable_base64_output"):
        return "enable_sync_mode and enable_base64_output are not emulated; poll the prediction instead"
    try:
        given = _MODELS[kind].model_validate(body)
    except ValidationError as exc:
        return first_problem(exc)
    if any(body.get(k) for k in _FRAME_KEYS) and any(body.get(k) for k in _REFERENCE_KEYS):
        return ("invalid parameter: first/last frame inputs (image, last_image, video) cannot be combined "
                "with reference_images, reference_videos or reference_audios")
    durations = DURATIONS[tier]
    if kind == "image":
        durations = tuple(d for d in IMAGE_DURATIONS if d in durations)
    if given.duration not in durations:
        return f"invalid parameter duration: {given.duration}; allowed {_lengths(durations)}"
    if given.resolution not in RESOLUTIONS[tier]:
        return f"invalid parameter resolution: {given.resolution!r}; allowed {', '.join(RESOLUTIONS[tier])}"
    aspect = getattr(given, "aspect_ratio", None)
    if aspect is not None and aspect not in ASPECT_RATIOS[tier]:
        return f"invalid parameter aspect_ratio: {aspect!r}; allowed {', '.join(ASPECT_RATIOS[tier])}"
    audio = given.generate_audio if kind != "extend" or tier in AUDIO_SWITCH_ON_EXTEND else True
    request = partial(RenderRequest, prompt=given.prompt, duration=given.duration, resolution=given.resolution,
                      audio=audio, seed=None)
    if isinstance(given, TextToVideo):
        counts = (len(given.reference_images), len(given.reference_videos), len(given.reference_audios))
        for n, cap, name in zip(counts, MAX_REFERENCES[tier], _REFERENCE_KEYS, strict=True):
            if n > cap:
                return f"invalid parameter {name}: {n} given; at most {cap}"
        return request(kind="text", aspect_ratio=given.aspect_ratio,
                       reference_images=tuple(given.reference_images),
                       reference_videos=tuple(given.reference_videos),
                       reference_audios=tuple(given.reference_audios))
    if isinstance(given, ImageToVideo):
        if given.images is not None and given.image is not None:
            return "invalid parameter: give either image (and last_image) or the legacy images[], not both"
        if given.images is not None and not 1 <= len(given.images) <= 4:
            return f"invalid parameter images: {len(given.images)} given; 1 to 4 allowed"
        image = given.images[0] if given.images else given.image
        if image is None:
            return "missing required parameter: image"
        return request(kind="image", aspect_ratio=given.aspect_ratio, image=image, last_image=given.last_image)
    assert isinstance(given, VideoExtend)
    return request(kind="extend", aspect_ratio=None, video=given.video, last_image=given.last_image)


def _lengths(durations: tuple[int, ...]) -> str:
    if durations == tuple(range(durations[0], durations[-1] + 1)) and len(durations) > 2:
        return f"{durations[0]}-{durations[-1]}"
    return f"{', '.join(map(str, durations[:-1]))} or {durations[-1]}"


def prediction(job: Job, base: str, at: float | None = None) -> dict[str, object]:
    phase = job.phase(at)
    done = phase.state == "completed"
    data: dict[str, object] = {
        "id": job.id, "model": job.model, "input": job.body,
        "outputs": [output_url(base, job)] if done else [],
        "urls": {"get": f"{base}api/v3/predictions/{job.id}/result"},
        "has_nsfw_contents": [False] if done else [],
        "status": _STATUS[phase.state], "created_at": iso(job.created),
        "error": phase.failure.message if phase.failure else "",
        "timings": {"inference": round((phase.finished_at - job.created) * 1000) if phase.finished_at else 0},
    }
    if phase.failure is not None and phase.state == "failed":
        data["code"] = BUSINESS_CODES[phase.failure.kind]
    return data


def _authorized(request: Request) -> bool:
    return emulator(request).authorized(PROVIDER, bearer(request))


# --- uploads (contract A: one multipart POST; contract B: a ticket, then a PUT without the key) ---


@router.post("/api/v3/media/upload/binary")
async def upload_binary(request: Request) -> Response:
    emu = emulator(request)
    if not _authorized(request):
        return error(401)
    fault = emu.faults.request("upload", PROVIDER, fault_header(request))
    if (refused := spoil.refusal(fault, request, error)) is not None:
        return refused
    try:
        data, filename = await form_file(request)
    except BadRequest as exc:
        return error(exc.status, str(exc))
    kind, content_type = sniff(data) or ("file", "application/octet-stream")
    token, stored = emu.files.save(data, filename, content_type)
    emu.store.uploaded(PROVIDER)
    return await spoil.answer(fault, {"type": kind, "download_url": upload_url(base_url(request), token,
                                                                              stored.filename),
                                      "filename": stored.filename, "size": stored.size}, envelope)


@router.post("/api/v3/media/uploads")
async def upload_ticket(request: Request) -> Response:
    emu = emulator(request)
    if not _authorized(request):
        return error(401)
    fault = emu.faults.request("upload", PROVIDER, fault_header(request))
    if (refused := spoil.refusal(fault, request, error)) is not None:
        return refused
    try:
        body = await json_object(request)
    except BadRequest as exc:
        return error(400, str(exc))
    filename, size = body.get("filename"), body.get("size")
    content_type = body.get("content_type") or "application/octet-stream"
    if not isinstance(filename, str) or not filename:
        return error(400, "missing required parameter: filename")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= 200 * 1024 * 1024:
        return error(400, "invalid parameter size: a byte count from 1 to 209715200")
    if not isinstance(content_type, str):
        return error(400, "invalid parameter content_type")
    token, stored = emu.files.ticket(filename, content_type, size)
    emu.store.uploaded(PROVIDER)
    base = base_url(request)
    kind = content_type.split("/")[0] if content_type.split("/")[0] in ("image", "video", "audio") else "file"
    return await spoil.answer(fault, {"type": kind, "filename": stored.filename, "size": size,
                                      "download_url": upload_url(base, token, stored.filename),
                                      "upload": {"method": "PUT", "url": f"{base}files/put/{token}",
                                                 "headers": {"Content-Type": content_type}}}, envelope)


# --- price quotes (two documented variants [?]: both served) ---


async def _quote(request: Request) -> tuple[str, float] | JSONResponse:
    if not _authorized(request):
        return error(401)
    try:
        body = await json_object(request)
    except BadRequest as exc:
        return error(400, str(exc))
    model_id, inputs = body.get("model_id"), body.get("inputs", {})
    found = model_of(model_id) if isinstance(model_id, str) else None
    if found is None or not isinstance(model_id, str):
        return error(404, f"model not found: {model_id}")
    if not isinstance(inputs, dict):
        return error(400, "invalid parameter inputs: an object")
    tier, kind = found
    # A quote needs no media: stand-ins for the required URLs, so only the priced inputs are checked.
    stand_ins = {"prompt": "price quote", **({"video": "http://quote/v.mp4"} if kind == "extend" else {}),
                 **({"image": "http://quote/i.png"} if kind == "image" and "images" not in inputs else {})}
    checked = validate(tier, kind, {**stand_ins, **inputs})
    if isinstance(checked, str):
        return error(400, checked)
    return model_id, emulator(request).price(tier, checked.resolution, checked.duration, kind)


@router.post("/api/v3/model/pricing")
async def pricing(request: Request) -> Response:
    quote = await _quote(request)
    if isinstance(quote, JSONResponse):
        return quote
    return envelope({"model_id": quote[0], "unit_price": quote[1], "currency": "USD"})


@router.post("/api/v3/model/price")
async def price(request: Request) -> Response:
    quote = await _quote(request)
    if isinstance(quote, JSONResponse):
        return quote
    return envelope({"model_id": quote[0], "price": quote[1], "discounted_price": quote[1],
                     "discount_rate": 1.0, "currency": "USD"})


# --- predictions ---


@router.get("/api/v3/predictions/{job_id}/result")
@router.get("/api/v3/predictions/{job_id}")
async def result(job_id: str, request: Request) -> Response:
    emu = emulator(request)
    if not _authorized(request):
        return error(401)
    job = emu.store.get(job_id)
    if job is None or job.provider != PROVIDER:
        return error(404, f"prediction not found: {job_id}")
    job.polls += 1
    fault = emu.faults.request("poll", PROVIDER, fault_header(request), job.faults)
    if (refused := spoil.refusal(fault, request, error)) is not None:
        return refused
    base = base_url(request)
    return await spoil.answer(fault, spoil.poll_body(job, prediction(job, base), base), envelope)


@router.post("/api/v3/{model_path:path}")
async def submit(model_path: str, request: Request) -> Response:
    emu = emulator(request)
    response = await _submit(model_path, request)
    if response.status_code != 200:
        emu.store.reject(PROVIDER)
    return response


async def _submit(model_path: str, request: Request) -> Response:
    emu = emulator(request)
    key = bearer(request)
    if not emu.authorized(PROVIDER, key):
        return error(401)
    found = model_of(model_path)
    if found is None:
        return error(404, f"model not found: {model_path} (emulated: "
                          f"{', '.join(f'{t}/{k}' for t in TIERS for k in KINDS)})")
    if request.query_params.get("webhook") or request.query_params.get("webhook_url"):
        return error(400, "webhooks are not emulated; poll the prediction instead")
    got = await spoil.submission(request, PROVIDER, error)
    if isinstance(got, Response):
        return got
    body, prompt, fault = got
    tier, kind = found
    checked = validate(tier, kind, body)
    if isinstance(checked, str):
        return error(400, checked)
    job = emu.accept(request, provider=PROVIDER, model=model_path.strip("/"), tier=tier, render=checked,
                     body=body, api_key=key or "", prompt=prompt,
                     cost_usd=emulator(request).price(tier, checked.resolution, checked.duration, kind))
    # the job as accepted (created), however long this busy server took to answer
    return await spoil.answer(fault, prediction(job, base_url(request), at=job.created), envelope)

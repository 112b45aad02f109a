"""WaveSpeed AI (v3): Seedance 2.0 text-to-video, image-to-video and video-extend.

Wire contract: reference/providers.md §1. The model path is in the URL, the body is the flat model input,
every answer is a `{code, message, data}` envelope; `data` is the prediction. What each endpoint takes
(and the readings behind it) is in specs.py.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from storyfilm.errors import ProviderError, UnexpectedResponse
from storyfilm.media import probe
from storyfilm.providers.base import JobStatus, Output, ShotRequest, seam_copy
from storyfilm.providers.factory import Setup
from storyfilm.providers.http import HostClient, safe_job_id, video_cap
from storyfilm.providers.specs import Endpoint, spec_for
from storyfilm.providers.wire import Answer, Flags, Number, Text, Url, read

MODEL_ROOT = {"standard": "bytedance/seedance-2.0", "fast": "bytedance/seedance-2.0-fast",
              "mini": "bytedance/seedance-2.0-mini"}
_PATHS: dict[Endpoint, str] = {"text": "text-to-video", "image": "image-to-video", "extend": "video-extend"}
_FAILED = {"failed", "cancelled", "canceled", "timeout", "deleted"}
MODERATION_CODE = 1200


class Envelope(Answer):
    code: Number = None  # mirrors the HTTP status; 200 on success
    message: Text = None
    data: dict[str, Any] | None = None


class Prediction(Answer):
    id: Any = None  # checked by safe_job_id: it goes into our URLs
    status: Text = None


class Finished(Answer):
    outputs: list[Any] = []  # URLs: the video is the first
    has_nsfw_contents: Flags = ()


class Failure(Answer):
    error: Text = None
    code: Text = None  # the business code (1200: moderation)
    has_nsfw_contents: Flags = ()


class Uploaded(Answer):
    download_url: Url = None


class Quote(Answer):
    discounted_price: Number = None
    price: Number = None
    unit_price: Number = None


def endpoint(request: ShotRequest) -> Endpoint:
    if request.start_video is not None:
        return "extend"
    if request.start_image is not None or request.start_image_url is not None:
        return "image"
    return "text"


def model_path(tier: str, request: ShotRequest) -> str:
    return f"{MODEL_ROOT[tier]}/{_PATHS[endpoint(request)]}"


def build(setup: Setup) -> WaveSpeedProvider:
    return WaveSpeedProvider(setup.client())


class WaveSpeedProvider:
    spec = spec_for("wavespeed")

    def __init__(self, client: HostClient):
        self.client = client

    def upload(self, path: Path, shot: str = "") -> str:
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            body = self.client.json("POST", "/api/v3/media/upload/binary", retry=True, shot=shot,
                                    files={"file": (path.name, f, mime)})
        url = read(Uploaded, _data(body, shot), provider=self.spec.name, what="upload", shot=shot).download_url
        if url is None:
            raise UnexpectedResponse(f"upload of {path.name} returned no download_url", provider=self.spec.name,
                                     shot=shot)
        return url

    def prepare(self, request: ShotRequest) -> dict[str, Any]:
        return {"path": f"/api/v3/{model_path(request.tier, request)}", "body": self.body(request)}

    def body(self, request: ShotRequest) -> dict[str, Any]:
        """The current schema of each endpoint (specs.py says why not the older `images[]` form). No seed:
        WaveSpeed takes none (the plan reports it). `generate_audio` only where the endpoint has it."""
        shot = request.shot_id
        limits = self.spec.limits(request.tier, endpoint(request))
        body: dict[str, Any] = {"prompt": request.prompt, "duration": request.duration,
                                "resolution": request.resolution, "enable_web_search": False}
        if limits.audio_switch:
            body["generate_audio"] = request.audio
        if request.start_video is not None:
            body["video"] = self.upload(request.start_video, shot)
        else:
            body["aspect_ratio"] = request.aspect_ratio
            if request.start_image_url is not None:
                body["image"] = request.start_image_url
            elif request.start_image is not None:
                body["image"] = self.upload(request.start_image, shot)
        if request.end_image is not None:
            body["last_image"] = self.upload(request.end_image, shot)
        if request.references:
            body["reference_images"] = [self.upload(p, shot) for p in request.references]
        if request.reference_clip is not None:
            body["reference_videos"] = [self.upload(request.reference_clip, shot)]
        return body

    def quote(self, prepared: dict[str, Any], request: ShotRequest) -> float | None:
        """The host's own price for exactly this request (free to ask); None when it will not say."""
        model_id = prepared["path"].removeprefix("/api/v3/")
        for path in ("/api/v3/model/price", "/api/v3/model/pricing"):  # two documented variants
            try:
                data = _data(self.client.json("POST", path, retry=True, shot=request.shot_id,
                                              json={"model_id": model_id, "inputs": prepared["body"]}),
                             request.shot_id)
            except ProviderError:
                continue
            quote = Quote.model_validate(data)
            for value in (quote.discounted_price, quote.price, quote.unit_price):
                if value is not None and 0 <= value < 10_000:
                    return value
        return None

    def submit(self, prepared: dict[str, Any], request: ShotRequest, idempotency_key: str) -> str:
        envelope = self.client.submit(prepared["path"], prepared["body"], shot=request.shot_id,
                                      idempotency_key=idempotency_key)
        data = read(Prediction, _data(envelope, request.shot_id), provider=self.spec.name, what="submit",
                    shot=request.shot_id)
        return safe_job_id(data.id, provider=self.spec.name, shot=request.shot_id, what="prediction id")

    def poll(self, job_id: str) -> JobStatus:
        data = _data(self.client.json("GET", f"/api/v3/predictions/{job_id}/result", retry=True), "")
        what = f"job {job_id}"
        raw = read(Prediction, data, provider=self.spec.name, what=what).status
        status = raw.lower() if raw else ""
        if status == "completed":
            done = read(Finished, data, provider=self.spec.name, what=what)
            url = done.outputs[0] if done.outputs and isinstance(done.outputs[0], str) else None
            return JobStatus(job_id, "completed", progress=100.0, video_url=url)  # no URL: generate says so
        if status in _FAILED:
            failure = read(Failure, data, provider=self.spec.name, what=what)
            return JobStatus(job_id, "failed", error=failure.error or status, error_code=failure.code,
                             moderation=failure.code == str(MODERATION_CODE) or any(failure.has_nsfw_contents))
        if status == "created" or status == "queued":
            return JobStatus(job_id, "queued")
        if status == "processing":
            return JobStatus(job_id, "running")
        # Not a failure we can prove: the caller polls again a few times (the deadline still applies).
        raise UnexpectedResponse(f"job {job_id}: unknown status {raw!r}", provider=self.spec.name)

    def fetch(self, status: JobStatus, request: ShotRequest, dest_dir: Path) -> Output:
        assert status.video_url is not None
        echo, seconds = 0, float(request.duration)
        if request.start_video is not None:  # video-extend returns the input again, then the new footage
            before = probe.probe(request.start_video)
            assert before.video is not None
            echo, seconds = before.video.frames, seconds + before.duration
        video = self.client.download(status.video_url, dest_dir / f"{status.job_id}.mp4", kind="video",
                                     shot=request.shot_id, max_bytes=video_cap(seconds))
        return Output(video=video, echo_frames=echo, seam_copy=seam_copy(request))


def _data(answer: Any, shot: str) -> dict[str, Any]:
    """The envelope's `data`; an API error carried in an HTTP 200 (`code` other than 200) is raised."""
    envelope = read(Envelope, answer, provider="wavespeed", what="answer", shot=shot)
    if envelope.code not in (200, 0, None):
        raise ProviderError(f"API error {envelope.code:g}: {envelope.message}", provider="wavespeed", shot=shot)
    if envelope.data is None:
        raise UnexpectedResponse(f"unexpected answer (no data object): {str(answer)[:200]}", provider="wavespeed",
                                 shot=shot)
    return envelope.data

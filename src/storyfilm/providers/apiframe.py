"""Apiframe (API v2): Seedance 2.0 through `POST /v2/videos/generate` and `GET /v2/jobs/{id}`.

Wire contract: reference/providers.md §2. `X-API-Key` auth, 202 + job id, strict validation
(`additionalProperties: false`), an `Idempotency-Key` honoured for 24 h: the only host where a submit
may be repeated safely (its spec says so; HostClient.submit applies it). Uploads expire in 1-2 h, so they
are made right before the submit.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator

from storyfilm.errors import UnexpectedResponse
from storyfilm.providers.base import JobStatus, Output, ShotRequest
from storyfilm.providers.factory import Setup
from storyfilm.providers.http import HostClient, fetch_with_last_frame, safe_job_id
from storyfilm.providers.specs import spec_for
from storyfilm.providers.wire import Answer, Number, Text, Url, read

MODEL = {"standard": "seedance-2", "fast": "seedance-2-fast", "mini": "seedance-2-mini"}
_STATES = {"QUEUED": "queued", "PROCESSING": "running", "COMPLETED": "completed", "FAILED": "failed",
           "CANCELLED": "failed", "CANCELED": "failed"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _urls(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str) and v.strip()) if isinstance(value, list) else ()


Urls = Annotated[tuple[str, ...], BeforeValidator(_urls)]


class Accepted(Answer):
    jobId: Any = None  # noqa: N815 - the wire name; checked by safe_job_id


class Job(Answer):
    status: Text = None
    progress: Number = None
    error: Text = None
    result: Any = None  # "the output URL(s)": see outputs()


class ResultObject(Answer):
    videoUrl: Url = None  # noqa: N815 - the wire names
    video_url: Url = None
    url: Url = None
    videos: Urls = ()
    urls: Urls = ()
    lastFrameUrl: Url = None  # noqa: N815
    last_frame_url: Url = None
    lastFrame: Url = None  # noqa: N815
    last_frame: Url = None


class Uploaded(Answer):
    url: Url = None


def outputs(result: Any) -> tuple[str | None, str | None]:
    """(video URL, last frame URL) of a completed job's `result`, which "holds the output URL(s)" (S-004
    line 161): `{videoUrl}` as the jobs page shows, a bare URL (one docs example), or a list of URLs; where
    the last frame goes is not documented [?]. A shape we do not know gives no URL: the job stays recorded
    and the next run asks again (never a failure of the paid job for a cosmetic difference)."""
    if isinstance(result, str):
        return (result, None) if result.strip() else (None, None)
    if isinstance(result, list):
        return _split(_urls(result))
    if isinstance(result, dict):
        r = ResultObject.model_validate(result)
        video, frame = _split(r.videos or r.urls)
        return (r.videoUrl or r.video_url or r.url or video,
                r.lastFrameUrl or r.last_frame_url or r.lastFrame or r.last_frame or frame)
    return None, None


def _split(urls: tuple[str, ...]) -> tuple[str | None, str | None]:
    """A list of outputs: the video is the first that is not an image; an image is the last frame."""
    images = [u for u in urls if urlsplit(u).path.lower().endswith(_IMAGE_SUFFIXES)]
    videos = [u for u in urls if u not in images]
    return (videos[0] if videos else None), (images[0] if images else None)


def build(setup: Setup) -> ApiframeProvider:
    return ApiframeProvider(setup.client())


class ApiframeProvider:
    spec = spec_for("apiframe")

    def __init__(self, client: HostClient):
        self.client = client

    def upload(self, path: Path, shot: str = "") -> str:
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            body = self.client.json("POST", "/v2/uploads", retry=True, shot=shot, files={"file": (path.name, f, mime)})
        url = read(Uploaded, body, provider=self.spec.name, what="upload", shot=shot).url
        if url is None:
            raise UnexpectedResponse(f"upload of {path.name} returned no url", provider=self.spec.name, shot=shot)
        return url

    def prepare(self, request: ShotRequest) -> dict[str, Any]:
        return self.body(request)

    def body(self, request: ShotRequest) -> dict[str, Any]:
        shot = request.shot_id
        params: dict[str, Any] = {"duration": request.duration, "resolution": request.resolution,
                                  "aspect_ratio": request.aspect_ratio, "generate_audio": request.audio,
                                  "return_last_frame": True, "camera_fixed": request.camera == "static"}
        if request.seed is not None:
            params["seed"] = request.seed
        if request.start_image_url is not None:
            params["start_image"] = request.start_image_url
        elif request.start_image is not None:
            params["start_image"] = self.upload(request.start_image, shot)
        if request.end_image is not None:
            params["end_image"] = self.upload(request.end_image, shot)
        if request.references:
            params["reference_image_urls"] = [self.upload(p, shot) for p in request.references]
        if request.reference_clip is not None:
            params["reference_video_urls"] = [self.upload(request.reference_clip, shot)]
        return {"model": MODEL[request.tier], "prompt": request.prompt, "seedanceParams": params}

    def submit(self, prepared: dict[str, Any], request: ShotRequest, idempotency_key: str) -> str:
        answer = self.client.submit("/v2/videos/generate", prepared, shot=request.shot_id,
                                    idempotency_key=idempotency_key)
        accepted = read(Accepted, answer, provider=self.spec.name, what="submit", shot=request.shot_id)
        return safe_job_id(accepted.jobId, provider=self.spec.name, shot=request.shot_id, what="jobId")

    def poll(self, job_id: str) -> JobStatus:
        job = read(Job, self.client.json("GET", f"/v2/jobs/{job_id}", retry=True), provider=self.spec.name,
                   what=f"job {job_id}")
        state = _STATES.get(job.status.upper()) if job.status else None
        if state is None:  # not a failure we can prove: the caller polls again a few times
            raise UnexpectedResponse(f"job {job_id}: unknown status {job.status!r}", provider=self.spec.name)
        if state == "failed":
            error = job.error or state
            return JobStatus(job_id, "failed", error=error, error_code=job.status,
                             moderation=any(w in error.lower() for w in ("moderation", "content policy", "nsfw")))
        if state == "completed":
            video, last = outputs(job.result)
            return JobStatus(job_id, "completed", progress=100.0, video_url=video, last_frame_url=last)
        return JobStatus(job_id, "running" if state == "running" else "queued", progress=job.progress)

    def fetch(self, status: JobStatus, request: ShotRequest, dest_dir: Path) -> Output:
        return fetch_with_last_frame(self.client, status, request, dest_dir)

"""An OpenAI-style gateway (`POST /v1/video/generations`, `GET /v1/videos/{task_id}`), as documented by UniAll.

Wire contract: reference/providers.md §3. Only one page documents it, so the answers are read tolerantly:
the task id from `task_id` or `id` (or inside `data`), statuses mapped case-insensitively from several
vocabularies, errors and last frames looked up in every documented or inferred place. No extend call:
chains continue from the last frame (the host's returned one when it gives it). No upload endpoint: local
images are hosted elsewhere (see `Setup.media_host` in providers/factory.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator

from storyfilm.errors import UnexpectedResponse
from storyfilm.providers.base import JobStatus, Output, ShotRequest
from storyfilm.providers.factory import MediaHost, Setup, data_uri
from storyfilm.providers.http import HostClient, fetch_with_last_frame, safe_job_id
from storyfilm.providers.specs import spec_for
from storyfilm.providers.wire import Answer, Number, Text, Url, read

_PREFIX = {"standard": "seedance2.0", "fast": "seedance2.0-fast", "mini": "seedance2.0-mini"}
_QUEUED = {"queued", "pending", "submitted", "not_start", "created"}
_RUNNING = {"in_progress", "processing", "running"}
_DONE = {"completed", "succeeded", "success"}
_FAILED = {"failed", "failure", "error", "cancelled", "canceled", "expired"}


class Links(Answer):
    video_url: Url = None
    url: Url = None
    last_frame_url: Url = None


def _object(value: object) -> object:
    return value if isinstance(value, dict) else None


def _error(value: object) -> object:
    return value if isinstance(value, dict | str) else None


class ErrorObject(Answer):
    message: Text = None
    code: Text = None


Nested = Annotated[Links | None, BeforeValidator(_object)]


class Task(Answer):
    task_id: Any = None  # ids are checked by safe_job_id
    id: Any = None
    status: Text = None
    progress: Number = None
    video_url: Url = None
    url: Url = None
    last_frame_url: Url = None
    content: Nested = None  # the upstream (Ark) shape
    output: Nested = None
    metadata: Nested = None
    error: Annotated[ErrorObject | str | None, BeforeValidator(_error)] = None
    fail_reason: Text = None
    message: Text = None
    code: Text = None

    @property
    def video(self) -> str | None:
        nested = [n for n in (self.content, self.output) if n is not None]
        return self.video_url or next((n.video_url or n.url for n in nested if n.video_url or n.url), None) \
            or self.url

    @property
    def last_frame(self) -> str | None:
        nested = [n.last_frame_url for n in (self.content, self.metadata) if n is not None and n.last_frame_url]
        return self.last_frame_url or (nested[0] if nested else None)

    @property
    def failure(self) -> tuple[str | None, str | None]:
        """(message, code) of a failed task."""
        if isinstance(self.error, ErrorObject):
            return self.error.message or self.fail_reason or self.message, self.error.code or self.code
        return self.error or self.fail_reason or self.message, self.code


class Submitted(Answer):
    task_id: Any = None
    id: Any = None
    data: Annotated[dict[str, Any] | None, BeforeValidator(_object)] = None

    @property
    def task(self) -> Any:
        inner = self.data or {}
        return next((v for v in (self.task_id, self.id, inner.get("task_id"), inner.get("id")) if v not in (None, "")),
                    None)


def model_id(tier: str, resolution: str) -> str:
    return f"{_PREFIX[tier]}-{resolution}"


def build(setup: Setup) -> GatewayProvider:
    return GatewayProvider(setup.client(), setup.media_host())


class GatewayProvider:
    spec = spec_for("gateway")

    def __init__(self, client: HostClient, media_host: MediaHost):
        self.client = client
        self.media_host = media_host

    def prepare(self, request: ShotRequest) -> dict[str, Any]:
        shot = request.shot_id
        extra: dict[str, Any] = {"generate_audio": request.audio, "camera_fixed": request.camera == "static",
                                 "watermark": False, "return_last_frame": True}
        if request.seed is not None:
            extra["seed"] = request.seed
        body: dict[str, Any] = {"model": model_id(request.tier, request.resolution), "prompt": request.prompt,
                                "duration": request.duration, "aspect_ratio": request.aspect_ratio,
                                "extra_body": extra}
        if request.start_image_url is not None:
            body["image"] = request.start_image_url
        elif request.start_image is not None:
            body["image"] = self.media_host(request.start_image, shot)
        if request.end_image is not None:
            body["last_image"] = self.media_host(request.end_image, shot)
        if request.references:
            body["images"] = [self.media_host(p, shot) for p in request.references]
        # A clip needs a host with uploads: data: URIs are for images only [I] (the plan notes it).
        if request.reference_clip is not None and self.media_host is not data_uri:
            body["videos"] = [self.media_host(request.reference_clip, shot)]
        return body

    def submit(self, prepared: dict[str, Any], request: ShotRequest, idempotency_key: str) -> str:
        answer = self.client.submit("/v1/video/generations", prepared, shot=request.shot_id,
                                    idempotency_key=idempotency_key)
        submitted = read(Submitted, answer, provider=self.spec.name, what="submit", shot=request.shot_id)
        return safe_job_id(submitted.task, provider=self.spec.name, shot=request.shot_id, what="task id")

    def poll(self, job_id: str) -> JobStatus:
        answer = self.client.json("GET", f"/v1/videos/{job_id}", retry=True)
        if isinstance(answer, dict) and isinstance(answer.get("data"), dict) and "status" not in answer:
            answer = answer["data"]
        task = read(Task, answer, provider=self.spec.name, what=f"job {job_id}")
        status = task.status.lower() if task.status else ""
        if status in _DONE:
            return JobStatus(job_id, "completed", progress=100.0, video_url=task.video,
                             last_frame_url=task.last_frame)
        if status in _FAILED:
            message, code = task.failure
            text = message or status
            return JobStatus(job_id, "failed", error=text, error_code=code,
                             moderation=any(w in text.lower() for w in ("moderation", "sensitive", "nsfw", "policy")))
        if status in _QUEUED:
            return JobStatus(job_id, "queued", progress=task.progress)
        if status in _RUNNING:
            return JobStatus(job_id, "running", progress=task.progress)
        # Not a failure we can prove: the caller polls again a few times (the deadline still applies).
        raise UnexpectedResponse(f"job {job_id}: unknown status {task.status!r}", provider=self.spec.name)

    def fetch(self, status: JobStatus, request: ShotRequest, dest_dir: Path) -> Output:
        return fetch_with_last_frame(self.client, status, request, dest_dir)

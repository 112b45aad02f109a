"""An OpenAI-style gateway (`POST /v1/video/generations`, `GET /v1/videos/{task_id}`), as documented by UniAll.

Wire contract: reference/providers.md §3. Only one page documents it, so the client is tolerant: task id
from `task_id` or `id`, statuses mapped case-insensitively from several vocabularies, errors and last
frames looked up in every documented or inferred place. No extend call: chains continue from the last
frame (the host's returned one when it gives it). No upload endpoint: local images are hosted elsewhere
(see `media_host` in providers/__init__.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from storyfilm.errors import UnexpectedResponse
from storyfilm.providers.base import (
    Capabilities,
    JobStatus,
    Output,
    ProviderSpec,
    ShotRequest,
    seedance_tiers,
)
from storyfilm.providers.http import HostClient, fetch_with_last_frame, first_of, safe_job_id

_RATIOS = ("16:9", "9:16", "1:1")

# The gateway publishes no prices ("depends on model tier, output resolution, duration ..."): the estimate
# is WaveSpeed's (SEEDANCE_USD_PER_SECOND).
SPEC = ProviderSpec(
    name="gateway",
    title="OpenAI-style gateway (Seedance 2.0)",
    capabilities=Capabilities(extend=False, return_last_frame=True),
    tiers=seedance_tiers((5, 15), _RATIOS, small=("480p", "720p")),
    api_key_env="SEEDANCE_GATEWAY_API_KEY",
    base_url_env="SEEDANCE_GATEWAY_BASE_URL",
    default_base_url=None,  # every gateway has its own address: configuration, not a default
)

_PREFIX = {"standard": "seedance2.0", "fast": "seedance2.0-fast", "mini": "seedance2.0-mini"}
_QUEUED = {"queued", "pending", "submitted", "not_start", "created"}
_RUNNING = {"in_progress", "processing", "running"}
_DONE = {"completed", "succeeded", "success"}
_FAILED = {"failed", "failure", "error", "cancelled", "canceled", "expired"}


def model_id(tier: str, resolution: str) -> str:
    return f"{_PREFIX[tier]}-{resolution}"



class GatewayProvider:
    spec = SPEC

    def __init__(self, client: HostClient, media_host: Callable[[Path, str], str]):
        self.client = client
        self.media_host = media_host

    def prepare(self, request: ShotRequest) -> dict[str, Any]:
        shot = request.shot_id
        body: dict[str, Any] = {
            "model": model_id(request.tier, request.resolution), "prompt": request.prompt,
            "duration": request.duration, "aspect_ratio": request.aspect_ratio,
            "extra_body": {"generate_audio": request.audio, "camera_fixed": request.camera == "static",
                           "watermark": False, "return_last_frame": True},
        }
        if request.seed is not None:
            body["extra_body"]["seed"] = request.seed
        if request.start_image_url or request.start_image:
            body["image"] = request.start_image_url or self.media_host(request.start_image, shot)  # type: ignore[arg-type]
        if request.end_image is not None:
            body["last_image"] = self.media_host(request.end_image, shot)
        if request.references:
            body["images"] = [self.media_host(p, shot) for p in request.references]
        return body

    def submit(self, prepared: dict[str, Any], request: ShotRequest, idempotency_key: str) -> str:
        # No idempotency documented: sent once, never retried.
        answer = self.client.json("POST", "/v1/video/generations", retry=False, retry_rate_limit=True,
                                    shot=request.shot_id, json=prepared)
        return safe_job_id(first_of(answer, ("task_id",), ("id",), ("data", "task_id"), ("data", "id")),
                           provider="gateway", shot=request.shot_id, what="task id")

    def poll(self, job_id: str) -> JobStatus:
        task = self.client.json("GET", f"/v1/videos/{job_id}", retry=True)
        if isinstance(task, dict) and isinstance(task.get("data"), dict) and "status" not in task:
            task = task["data"]
        if not isinstance(task, dict):
            raise UnexpectedResponse(f"unexpected task answer: {str(task)[:200]}", provider="gateway")
        raw = task.get("status")
        status = raw.lower() if isinstance(raw, str) else ""
        progress = task.get("progress") if isinstance(task.get("progress"), int | float) else None
        if status in _DONE:
            video = first_of(task, ("video_url",), ("content", "video_url"), ("url",), ("output", "url"))
            last = first_of(task, ("last_frame_url",), ("content", "last_frame_url"), ("metadata", "last_frame_url"))
            return JobStatus(job_id, "completed", progress=100.0, video_url=video if isinstance(video, str) else None,
                             last_frame_url=last if isinstance(last, str) else None)
        if status in _FAILED:
            error = first_of(task, ("error", "message"), ("fail_reason",), ("error",), ("message",)) or status
            code = first_of(task, ("error", "code"), ("code",))
            text = str(error)
            return JobStatus(job_id, "failed", error=text, error_code=str(code) if code else None,
                             moderation=any(w in text.lower() for w in ("moderation", "sensitive", "nsfw", "policy")))
        if status in _QUEUED:
            return JobStatus(job_id, "queued", progress=progress)
        if status in _RUNNING:
            return JobStatus(job_id, "running", progress=progress)
        # Not a failure we can prove: the caller polls again a few times (the deadline still applies).
        raise UnexpectedResponse(f"job {job_id}: unknown status {repr(raw)[:80]}", provider="gateway")

    def fetch(self, status: JobStatus, request: ShotRequest, dest_dir: Path) -> Output:
        return fetch_with_last_frame(self.client, status, request, dest_dir)

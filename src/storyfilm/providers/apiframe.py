"""Apiframe (API v2): Seedance 2.0 through `POST /v2/videos/generate` and `GET /v2/jobs/{id}`.

Wire contract: reference/providers.md §2. `X-API-Key` auth, 202 + job id, strict validation
(`additionalProperties: false`), an `Idempotency-Key` honoured for 24 h: the only host where a submit
may be retried safely. Uploads expire in 1-2 h, so they are made right before the submit.
"""

from __future__ import annotations

import mimetypes
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

_RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")

# Apiframe bills credits per second of output; no USD figures for Seedance are published: the estimate is
# WaveSpeed's (SEEDANCE_USD_PER_SECOND); the job's creditCost is recorded too.
SPEC = ProviderSpec(
    name="apiframe",
    title="Apiframe v2 (Seedance 2.0)",
    capabilities=Capabilities(extend=False, return_last_frame=True),
    tiers=seedance_tiers((4, 15), _RATIOS, small=("480p", "720p")),
    api_key_env="APIFRAME_API_KEY",
    base_url_env="APIFRAME_BASE_URL",
    default_base_url="https://api.apiframe.ai",
)

MODEL = {"standard": "seedance-2", "fast": "seedance-2-fast", "mini": "seedance-2-mini"}
_STATES = {"QUEUED": "queued", "PROCESSING": "running", "COMPLETED": "completed", "FAILED": "failed",
           "CANCELLED": "failed", "CANCELED": "failed"}



class ApiframeProvider:
    spec = SPEC

    def __init__(self, client: HostClient):
        self.client = client

    def upload(self, path: Path, shot: str = "") -> str:
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            body = self.client.json("POST", "/v2/uploads", retry=True, shot=shot, files={"file": (path.name, f, mime)})
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            raise UnexpectedResponse(f"upload of {path.name} returned no url", provider="apiframe", shot=shot)
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
        if request.start_image_url or request.start_image:
            params["start_image"] = request.start_image_url or self.upload(request.start_image, shot)  # type: ignore[arg-type]
        if request.end_image is not None:
            params["end_image"] = self.upload(request.end_image, shot)
        if request.references:
            params["reference_image_urls"] = [self.upload(p, shot) for p in request.references]
        return {"model": MODEL[request.tier], "prompt": request.prompt, "seedanceParams": params}

    def submit(self, prepared: dict[str, Any], request: ShotRequest, idempotency_key: str) -> str:
        # Safe to retry: a replay with the same key and body returns the original job, billed once.
        answer = self.client.json("POST", "/v2/videos/generate", retry=True, shot=request.shot_id,
                                  json=prepared, headers={"Idempotency-Key": idempotency_key[:255]})
        return safe_job_id(answer.get("jobId") if isinstance(answer, dict) else None, provider="apiframe",
                           shot=request.shot_id, what="jobId")

    def poll(self, job_id: str) -> JobStatus:
        job = self.client.json("GET", f"/v2/jobs/{job_id}", retry=True)
        if not isinstance(job, dict):
            raise UnexpectedResponse(f"unexpected job answer: {str(job)[:200]}", provider="apiframe")
        raw = job.get("status")
        state = _STATES.get(raw.upper()) if isinstance(raw, str) else None
        progress = job.get("progress") if isinstance(job.get("progress"), int | float) else None
        if state is None:  # not a failure we can prove: the caller polls again a few times
            raise UnexpectedResponse(f"job {job_id}: unknown status {repr(raw)[:80]}", provider="apiframe")
        if state == "failed":
            error = str(job.get("error") or state)
            return JobStatus(job_id, "failed", error=error, error_code=str(raw),
                             moderation=any(w in error.lower() for w in ("moderation", "content policy", "nsfw")))
        if state == "completed":
            result = job.get("result")
            video = result if isinstance(result, str) else first_of(result, ("videoUrl",), ("video_url",), ("url",),
                                                                    kind=str)
            videos = result.get("videos") if isinstance(result, dict) else None
            if video is None and isinstance(videos, list) and videos and isinstance(videos[0], str):
                video = videos[0]
            last = first_of(result, ("lastFrameUrl",), ("last_frame_url",), ("lastFrame",), ("last_frame",),
                            kind=str)
            return JobStatus(job_id, "completed", progress=100.0, video_url=video, last_frame_url=last)
        return JobStatus(job_id, state, progress=progress)  # type: ignore[arg-type]

    def fetch(self, status: JobStatus, request: ShotRequest, dest_dir: Path) -> Output:
        return fetch_with_last_frame(self.client, status, request, dest_dir)

"""WaveSpeed AI (v3): Seedance 2.0 text-to-video, image-to-video and video-extend.

Wire contract: reference/providers.md §1. The model path is in the URL, the body is the flat model input,
every answer is a `{code, message, data}` envelope; `data` is the prediction.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from storyfilm.errors import ProviderError, UnexpectedResponse
from storyfilm.media import probe
from storyfilm.providers.base import (
    Capabilities,
    JobStatus,
    Output,
    ProviderSpec,
    ShotRequest,
    seam_copy,
    seedance_tiers,
)
from storyfilm.providers.http import HostClient, safe_job_id, video_cap

_RATIOS = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")

SPEC = ProviderSpec(
    name="wavespeed",
    title="WaveSpeed AI (Seedance 2.0)",
    capabilities=Capabilities(extend=True, return_last_frame=False),
    tiers=seedance_tiers((4, 15), _RATIOS),
    api_key_env="WAVESPEED_API_KEY",
    base_url_env="WAVESPEED_BASE_URL",
    default_base_url="https://api.wavespeed.ai",
)

MODEL_ROOT = {"standard": "bytedance/seedance-2.0", "fast": "bytedance/seedance-2.0-fast",
              "mini": "bytedance/seedance-2.0-mini"}
_RUNNING = {"created": "queued", "queued": "queued", "processing": "running"}
_FAILED = {"failed", "cancelled", "canceled", "timeout", "deleted"}


def model_path(tier: str, request: ShotRequest) -> str:
    if request.start_video is not None:
        return f"{MODEL_ROOT[tier]}/video-extend"
    if request.start_image is not None or request.start_image_url is not None:
        return f"{MODEL_ROOT[tier]}/image-to-video"
    return f"{MODEL_ROOT[tier]}/text-to-video"


class WaveSpeedProvider:
    spec = SPEC

    def __init__(self, client: HostClient):
        self.client = client

    def upload(self, path: Path, shot: str = "") -> str:
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            body = self.client.json("POST", "/api/v3/media/upload/binary", retry=True, shot=shot,
                                    files={"file": (path.name, f, mime)})
        url = _data(body, shot).get("download_url")
        if not isinstance(url, str) or not url:
            raise UnexpectedResponse(f"upload of {path.name} returned no download_url", provider="wavespeed",
                                     shot=shot)
        return url

    def prepare(self, request: ShotRequest) -> dict[str, Any]:
        return {"path": f"/api/v3/{model_path(request.tier, request)}", "body": self.body(request)}

    def body(self, request: ShotRequest) -> dict[str, Any]:
        shot = request.shot_id
        body: dict[str, Any] = {"prompt": request.prompt, "duration": request.duration,
                                "resolution": request.resolution, "generate_audio": request.audio,
                                "enable_web_search": False}
        if request.start_video is not None:
            body["video"] = self.upload(request.start_video, shot)
        else:
            body["aspect_ratio"] = request.aspect_ratio
            if request.start_image_url or request.start_image:
                body["image"] = request.start_image_url or self.upload(request.start_image, shot)  # type: ignore[arg-type]
        if request.end_image is not None:
            body["last_image"] = self.upload(request.end_image, shot)
        if request.references:
            body["reference_images"] = [self.upload(p, shot) for p in request.references]
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
            for field in ("discounted_price", "price", "unit_price"):
                value = data.get(field)
                if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 10_000:
                    return float(value)
        return None

    def submit(self, prepared: dict[str, Any], request: ShotRequest, idempotency_key: str) -> str:
        # WaveSpeed has no idempotency key: a submit is sent once, never retried.
        envelope = self.client.json("POST", prepared["path"], retry=False, retry_rate_limit=True,
                                    shot=request.shot_id,
                                    json=prepared["body"])
        return safe_job_id(_data(envelope, request.shot_id).get("id"), provider="wavespeed",
                           shot=request.shot_id, what="prediction id")

    def poll(self, job_id: str) -> JobStatus:
        data = _data(self.client.json("GET", f"/api/v3/predictions/{job_id}/result", retry=True), "")
        raw = data.get("status")
        status = raw.lower() if isinstance(raw, str) else ""
        if status == "completed":
            outputs = data.get("outputs")
            if outputs is not None and not isinstance(outputs, list):
                raise UnexpectedResponse(f"job {job_id}: `outputs` is not a list: {str(outputs)[:120]}",
                                         provider="wavespeed")
            url = outputs[0] if outputs and isinstance(outputs[0], str) else None
            return JobStatus(job_id, "completed", progress=100.0, video_url=url)  # no URL: generate says so
        if status in _FAILED:
            code = data.get("code")
            nsfw = data.get("has_nsfw_contents")
            return JobStatus(job_id, "failed", error=str(data.get("error") or status), error_code=str(code),
                             moderation=code == 1200 or (isinstance(nsfw, list) and any(nsfw)))
        if status in _RUNNING:
            return JobStatus(job_id, _RUNNING[status])  # type: ignore[arg-type]
        # Not a failure we can prove: the caller polls again a few times (the deadline still applies).
        raise UnexpectedResponse(f"job {job_id}: unknown status {repr(raw)[:80]}", provider="wavespeed")

    def fetch(self, status: JobStatus, request: ShotRequest, dest_dir: Path) -> Output:
        assert status.video_url is not None
        echo, seconds = 0, float(request.duration)
        if request.start_video is not None:  # video-extend returns the input again, then the new footage
            before = probe.probe(request.start_video)
            echo, seconds = before.video.frames, seconds + before.duration  # type: ignore[union-attr]
        video = self.client.download(status.video_url, dest_dir / f"{status.job_id}.mp4", kind="video",
                                     shot=request.shot_id, max_bytes=video_cap(seconds))
        return Output(video=video, echo_frames=echo, seam_copy=seam_copy(request))


def _data(envelope: Any, shot: str) -> dict[str, Any]:
    if not isinstance(envelope, dict) or not isinstance(envelope.get("data"), dict):
        raise UnexpectedResponse(f"unexpected answer (no data object): {str(envelope)[:200]}",
                                 provider="wavespeed", shot=shot)
    code = envelope.get("code", 200)
    if code not in (200, 0, None):
        raise ProviderError(f"API error {code}: {envelope.get('message')}", provider="wavespeed", shot=shot)
    return envelope["data"]

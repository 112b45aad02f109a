"""The `local` provider: the offline animatic renderer behind the provider interface. Free.

STORYFILM_LOCAL_DRIFT (e.g. `contrast=0.06,saturation=0.05`, see drift.py) makes every shot rendered from a
start frame drift in colour as a real model's do, for rehearsing continuity offline.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from storyfilm.animatic import AnimaticSpec, render
from storyfilm.camera import resolve_camera
from storyfilm.drift import Drift, drift_from_env
from storyfilm.errors import ProviderError
from storyfilm.media import probe, rgb
from storyfilm.providers.base import JobStatus, Output, ShotRequest
from storyfilm.providers.factory import Setup
from storyfilm.providers.specs import spec_for


def build(setup: Setup) -> LocalProvider:
    return LocalProvider(setup.work_dir)


def load_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ProviderError(f"cannot read image {path}: {exc}", provider="local") from exc


class LocalProvider:
    """Renders at submit time; poll reports the job done; fetch hands over the files."""

    spec = spec_for("local")

    def __init__(self, work_dir: Path, drift: Drift | None = None):
        self.work_dir = Path(work_dir)
        self.drift = drift if drift is not None else drift_from_env()  # raises DriftSpecError for a bad value
        self._done: dict[str, tuple[Path, Path, int]] = {}

    def prepare(self, request: ShotRequest) -> dict[str, Any]:
        return {}  # nothing to upload: the renderer reads the local files

    def submit(self, prepared: dict[str, Any], request: ShotRequest, idempotency_key: str) -> str:
        job_id = f"local-{uuid.uuid4().hex[:12]}"
        start = None
        if request.start_image is not None:
            start = load_rgb(request.start_image)
        elif request.start_video is not None:
            start = rgb.last_frame(request.start_video)  # no rounding bias: it would drift
        continued = request.start_video is not None or request.continued
        lead = 1 if continued else 0
        spec = AnimaticSpec(
            fmt=request.fmt,
            frames=request.duration * request.fmt.fps + lead,
            prompt=request.prompt,
            seed=request.seed or 0,
            camera=resolve_camera(request.camera, request.prompt),
            start=start,
            end=load_rgb(request.end_image) if request.end_image is not None else None,
            references=tuple(load_rgb(p) for p in request.references),
            overlay=request.overlay,
            label=request.shot_id,
            audio=request.audio,
            keyframes=(1,) if lead else (),
            drift=self.drift,
        )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        video = self.work_dir / f"{job_id}.mp4"
        last = render(spec, video)
        last_png = probe.save_png(last, self.work_dir / f"{job_id}.last.png")
        self._done[job_id] = (video, last_png, lead)
        return job_id

    def poll(self, job_id: str) -> JobStatus:
        if job_id in self._done:
            return JobStatus(job_id=job_id, state="completed", progress=100.0, cost_usd=0.0)
        # A local job lives only as long as the process that rendered it: after a crash, render again.
        return JobStatus(job_id=job_id, state="failed", error="local render was lost (process restarted)",
                         error_code="lost")

    def fetch(self, status: JobStatus, request: ShotRequest, dest_dir: Path) -> Output:
        video, last_png, lead = self._done.pop(status.job_id)
        dest_dir.mkdir(parents=True, exist_ok=True)
        video_out = video.replace(dest_dir / video.name)
        last_out = last_png.replace(dest_dir / last_png.name)
        return Output(video=video_out, last_frame=last_out, seam_copy=lead)

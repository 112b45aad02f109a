"""One shot, start to finish: reuse a finished segment, or submit, poll, fetch and keep the result.

Shared by every provider: a provider module only translates requests and statuses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from storyfilm.errors import JobFailed, JobTimeout, ModerationFailed
from storyfilm.media import probe
from storyfilm.plan import ShotPlan
from storyfilm.providers.base import JobStatus, Provider, ShotRequest

Log = Callable[[str], None]


@dataclass(frozen=True)
class ShotResult:
    id: str
    key: str
    segment: str  # path of the shot's video as kept under shots/
    last_frame: str  # PNG the next shot continues from
    new_from_frame: int  # frames before this repeat footage the film already has
    frames: int  # frames in `segment`
    fps: float
    has_audio: bool
    provider: str
    job_id: str
    cost_usd: float
    seconds: float  # wall time spent generating (0 when reused)
    reused: bool = False

    @property
    def new_frames(self) -> int:
        return self.frames - self.new_from_frame

    @property
    def duration(self) -> float:
        return self.new_frames / self.fps

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def shot_paths(shots_dir: Path, shot_id: str) -> tuple[Path, Path, Path]:
    return shots_dir / f"{shot_id}.mp4", shots_dir / f"{shot_id}.last.png", shots_dir / f"{shot_id}.json"


def reusable(shot: ShotPlan, shots_dir: Path) -> ShotResult | None:
    """The kept result of this exact shot (same cache key), if its files are all still there."""
    video, last, record = shot_paths(shots_dir, shot.id)
    try:
        data = json.loads(record.read_text())
        result = ShotResult(**data)
    except (OSError, ValueError, TypeError):
        return None
    if result.key != shot.key or not video.is_file() or not last.is_file():
        return None
    return ShotResult(**{**asdict(result), "reused": True, "seconds": 0.0})


def build_request(shot: ShotPlan, assets: Mapping[str, Path], parent: ShotResult | None) -> ShotRequest:
    return ShotRequest(
        shot_id=shot.id, prompt=shot.prompt, tier=shot.tier, duration=shot.duration,
        resolution=shot.resolution, aspect_ratio=shot.aspect_ratio, fmt=shot.fmt, audio=shot.audio,
        seed=shot.seed, camera=shot.camera, overlay=shot.caption or shot.prompt,
        continued=parent is not None,
        start_image=(Path(parent.last_frame) if parent else
                     assets[shot.start.asset] if shot.start.asset else None),
        start_video=Path(parent.segment) if parent and shot.method == "extend" else None,
        end_image=assets[shot.end_image] if shot.end_image else None,
        references=tuple(assets[r] for r in shot.references),
    )


def wait_for_job(provider: Provider, job_id: str, shot_id: str, *, first_interval: float = 0.0,
                 max_interval: float = 15.0, timeout: float = 1800.0, log: Log | None = None) -> JobStatus:
    """Poll until the job finishes; raise JobFailed / ModerationFailed / JobTimeout."""
    interval = first_interval
    deadline = time.monotonic() + timeout
    name = provider.spec.name
    while True:
        status = provider.poll(job_id)
        if status.state == "completed":
            return status
        if status.state == "failed":
            error_cls = ModerationFailed if status.moderation else JobFailed
            raise error_cls(status.error or "no reason given", job_id=job_id, code=status.error_code,
                            provider=name, shot=shot_id)
        if time.monotonic() + interval > deadline:
            raise JobTimeout(f"job {job_id} still {status.state} after {timeout:.0f} s; it may still finish "
                             "and be billed: run again to resume polling it", provider=name, shot=shot_id)
        if log:
            pct = f" {status.progress:.0f}%" if status.progress is not None else ""
            log(f"{shot_id}: job {job_id} {status.state}{pct}")
        time.sleep(interval)
        interval = min(max_interval, max(0.5, interval * 1.5))


def generate(provider: Provider, shot: ShotPlan, request: ShotRequest, shots_dir: Path,
             log: Log | None = None) -> ShotResult:
    """Submit, poll, fetch; keep the segment, its last frame and a record under shots_dir."""
    started = time.monotonic()
    say = log or (lambda _msg: None)
    job_id = provider.submit(request)
    say(f"{shot.id}: submitted job {job_id} to {provider.spec.name}")
    status = wait_for_job(provider, job_id, shot.id, log=log)
    staging = shots_dir / ".staging"
    output = provider.fetch(status, request, staging)
    video, last, record = shot_paths(shots_dir, shot.id)
    info = probe.probe(output.video)
    if info.video is None:
        raise JobFailed("the output has no video stream", job_id=job_id, provider=provider.spec.name, shot=shot.id)
    if output.last_frame is not None:
        output.last_frame.replace(last)
    else:
        probe.save_png(probe.last_frame(output.video), last)
    output.video.replace(video)
    result = ShotResult(
        id=shot.id, key=shot.key, segment=str(video), last_frame=str(last),
        new_from_frame=output.new_from_frame, frames=info.video.frames, fps=float(info.video.fps),
        has_audio=info.audio is not None, provider=provider.spec.name, job_id=job_id,
        cost_usd=status.cost_usd if status.cost_usd is not None else shot.cost_usd,
        seconds=round(time.monotonic() - started, 3),
    )
    tmp = record.with_suffix(".json.partial")
    tmp.write_text(result.to_json())
    tmp.replace(record)
    say(f"{shot.id}: {result.duration:.2f} s of new footage in {result.seconds:.1f} s, ${result.cost_usd:.2f}")
    return result

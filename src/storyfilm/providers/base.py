"""What every provider offers: capabilities, limits and prices (the spec), and the job interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from storyfilm.media.ffmpeg import VideoFormat

JobState = Literal["queued", "running", "completed", "failed"]


@dataclass(frozen=True)
class Capabilities:
    text_to_video: bool = True
    image_to_video: bool = True
    extend: bool = False
    first_last_frame: bool = True
    references: bool = True
    audio: bool = True
    return_last_frame: bool = False


@dataclass(frozen=True)
class TierLimits:
    durations: tuple[int, int]  # inclusive range of seconds of new footage
    resolutions: tuple[str, ...]
    aspect_ratios: tuple[str, ...]
    max_references: int = 9
    usd_per_second: dict[str, float] = field(default_factory=dict)  # by resolution


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    title: str
    capabilities: Capabilities
    tiers: dict[str, TierLimits]
    api_key_env: str | None = None
    base_url_env: str | None = None
    default_base_url: str | None = None

    def limits(self, tier: str) -> TierLimits:
        return self.tiers[tier]

    def price(self, tier: str, resolution: str, seconds: float) -> float:
        return round(self.tiers[tier].usd_per_second.get(resolution, 0.0) * seconds, 4)

    @property
    def default_method(self) -> Literal["extend", "frame"]:
        return "extend" if self.capabilities.extend else "frame"


@dataclass(frozen=True)
class ShotRequest:
    """One shot as a provider sees it: the resolved parameters and local input files."""

    shot_id: str
    prompt: str
    tier: str
    duration: int
    resolution: str
    aspect_ratio: str
    fmt: VideoFormat
    audio: bool
    seed: int | None
    camera: str
    overlay: str
    continued: bool = False  # the start frame is the previous shot's last frame (a seam)
    start_image: Path | None = None  # first frame (image-to-video)
    start_video: Path | None = None  # the video to extend (method: extend)
    end_image: Path | None = None
    references: tuple[Path, ...] = ()


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: JobState
    progress: float | None = None
    video_url: str | None = None
    last_frame_url: str | None = None
    error: str | None = None
    error_code: str | None = None
    moderation: bool = False
    cost_usd: float | None = None


@dataclass(frozen=True)
class Output:
    """A downloaded result: the video as the provider made it, and where the new footage starts."""

    video: Path
    last_frame: Path | None  # the exact last frame, when the provider returns one
    new_from_frame: int = 0  # frames before this repeat the input (extend echo, or the start frame copy)


class Provider(Protocol):
    spec: ProviderSpec

    def submit(self, request: ShotRequest) -> str:
        """Start a (paid) job and return its id. Never retried blindly: the job may exist."""
        ...

    def poll(self, job_id: str) -> JobStatus:
        ...

    def fetch(self, status: JobStatus, request: ShotRequest, dest_dir: Path) -> Output:
        """Download the finished job's output into dest_dir."""
        ...

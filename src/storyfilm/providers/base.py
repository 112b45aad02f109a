"""What every provider offers: capabilities, limits and prices (the spec), and the job interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

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


# USD per second of new footage, by tier and resolution: WaveSpeed's figures. Standard: extend page (S-000) and
# i2v; fast 720p: docs; mini: "50% of standard" (S-001). Fast 480p/1080p are not published: scaled like
# standard (inferred). The other hosts publish no USD prices for Seedance: they are estimated with these.
SEEDANCE_USD_PER_SECOND = {
    "standard": {"480p": 0.12, "720p": 0.24, "1080p": 0.60},
    "fast": {"480p": 0.08, "720p": 0.16, "1080p": 0.40},
    "mini": {"480p": 0.06, "720p": 0.12, "1080p": 0.30},
}


def seedance_tiers(durations: tuple[int, int], aspect_ratios: tuple[str, ...],
                   small: tuple[str, ...] = ("480p", "720p", "1080p")) -> dict[str, TierLimits]:
    """Standard at 480p-1080p; fast and mini at the `small` resolutions; up to 9 references each."""
    def tier(name: str, resolutions: tuple[str, ...]) -> TierLimits:
        prices = {r: SEEDANCE_USD_PER_SECOND[name][r] for r in resolutions}
        return TierLimits(durations, resolutions, aspect_ratios, 9, prices)
    return {"standard": tier("standard", ("480p", "720p", "1080p")), "fast": tier("fast", small),
            "mini": tier("mini", small)}


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
    start_image_url: str | None = None  # the same frame already hosted (a host's returned last frame)
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
    """A downloaded result: the video as the provider made it, and what of it is not new footage."""

    video: Path
    last_frame: Path | None = None  # the exact last frame, when the provider returns one
    last_frame_url: str | None = None  # where the host keeps that frame (reusable as the next input)
    echo_frames: int = 0  # leading frames that are the input video again (video-extend): cut away
    seam_copy: int = 0  # leading frames repeating the previous shot's last frame: shown once in the film


def seam_copy(request: ShotRequest) -> int:
    """Image-to-video opens on its input image: continuing from a last frame, that frame is a copy."""
    return 1 if request.continued and request.start_video is None else 0


class Provider(Protocol):
    spec: ProviderSpec

    def prepare(self, request: ShotRequest) -> dict[str, Any]:
        """Upload local inputs and build the wire request (plain JSON data, no secrets)."""
        ...

    def submit(self, prepared: dict[str, Any], request: ShotRequest, idempotency_key: str) -> str:
        """Start a (paid) job and return its id. Never retried blindly: the job may exist.

        Hosts that honour `idempotency_key` (Apiframe) return the original job when the same prepared
        request is sent again with the same key; the others ignore it.
        """
        ...

    def poll(self, job_id: str) -> JobStatus:
        ...

    def fetch(self, status: JobStatus, request: ShotRequest, dest_dir: Path) -> Output:
        """Download the finished job's output into dest_dir."""
        ...

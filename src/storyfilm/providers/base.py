"""The job interface every provider implements (its limits and prices are its spec: specs.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from storyfilm.media.ffmpeg import VideoFormat
from storyfilm.providers.specs import ProviderSpec

JobState = Literal["queued", "running", "completed", "failed"]


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
    references: tuple[Path, ...] = ()  # reference images (never together with a first/last frame)
    reference_clip: Path | None = None  # a reference video (made from `clip_from` just before the submit)
    clip_from: ClipSource | None = None


@dataclass(frozen=True)
class ClipSource:
    """The last `seconds` of a kept segment, to be sent as a reference clip (`method: reference`)."""

    video: Path
    seconds: int


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

        Hosts whose spec has an `idempotency_header` return the original job when the same prepared request
        is sent again with the same key; the others ignore it (HostClient.submit applies the rule).
        """
        ...

    def poll(self, job_id: str) -> JobStatus:
        ...

    def fetch(self, status: JobStatus, request: ShotRequest, dest_dir: Path) -> Output:
        """Download the finished job's output into dest_dir."""
        ...


@runtime_checkable
class Uploads(Protocol):
    """A provider with an upload endpoint: a local file in, a URL its jobs (and other hosts) can fetch out."""

    def upload(self, path: Path, shot: str = "") -> str:
        ...


@runtime_checkable
class Quotes(Protocol):
    """A provider that prices a prepared request itself, for free, before it is submitted."""

    def quote(self, prepared: dict[str, Any], request: ShotRequest) -> float | None:
        """The host's price for exactly this request; None when it will not say."""
        ...

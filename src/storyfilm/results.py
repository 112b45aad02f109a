"""What a run produces, as plain data: a generated shot, the assembled film and where each piece landed in it.

A leaf: the modules that make these (generate, assemble, seams) and those that report them (report,
exports, session) all import this one, never each other, for the types. Names from other modules appear
only in annotations (not imported at run time), so importing this module imports nothing else of storyfilm.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storyfilm.audio import LoudnessResult
    from storyfilm.continuity import ChainReport
    from storyfilm.seams import Seam
    from storyfilm.transitions import Join


@dataclass(frozen=True)
class ShotResult:
    id: str
    key: str
    segment: str  # path of the shot's video as kept under shots/ (new footage only, plus a seam copy)
    last_frame: str  # PNG the next shot continues from
    new_from_frame: int  # leading frames that repeat the previous shot's last frame (shown once in the film)
    frames: int  # frames in `segment`
    fps: float
    has_audio: bool
    provider: str
    job_id: str
    cost_usd: float
    seconds: float  # wall time spent generating (0 when reused)
    reused: bool = False
    last_frame_url: str | None = None  # the host's copy of the last frame, usable as the next input
    sha256: str = ""  # of `segment` as kept: a file changed or damaged since is not reused
    last_frame_sha256: str = ""
    # continuity (continuity_hold.py): the colour statistics of the segment's first and last frames, the look
    # the shots after it in its chain hold to, how it was held (None: as the host made it), and the digest of
    # the host's original (kept under shots/.kept/ by the generation key) when the segment is not that
    first_stats: dict[str, float] | None = None
    last_stats: dict[str, float] | None = None
    anchor: dict[str, float] | None = None
    hold: dict[str, Any] | None = None
    host_sha256: str = ""
    # outputs at a URL: the film folder whose shots/.kept/ holds the files (a shared ledger's other films reuse
    # an identical shot from there; outputs.Mirror)
    kept_at: str | None = None
    # a shot with takes (take_pick.py): the take the film uses, how it was chosen, every take's score and file
    take: dict[str, Any] | None = None

    @property
    def new_frames(self) -> int:
        return self.frames - self.new_from_frame

    @property
    def duration(self) -> float:
        return self.new_frames / self.fps

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass(frozen=True)
class Placement:
    """Where a piece landed in the film, and where it came from."""

    label: str
    source: Path
    source_start: int  # first frame used, in the source's own frames
    source_frames: int  # frames in the source file
    source_fps: Fraction
    has_audio: bool
    first: int  # film frame where the piece begins (inside the overlap with the previous piece)
    frames: int  # film frames of this piece, overlaps included
    join: Join
    overlap: int  # film frames shared with the previous piece (its join's)

    @property
    def cut(self) -> int:
        """The editorial cut into this piece: the middle of its transition (an OTIO transition's in_offset)."""
        return self.first + self.overlap // 2

    @property
    def end(self) -> int:
        return self.first + self.frames


@dataclass(frozen=True)
class FilmInfo:
    path: Path
    frames: int
    fps: int
    width: int
    height: int
    normalised: list[str] = field(default_factory=list)  # labels of the segments that were re-encoded
    placements: list[Placement] = field(default_factory=list)
    copied_frames: int = 0  # video frames joined by stream copy
    encoded_frames: int = 0  # video frames encoded by the join (transitions and cuts off keyframes)
    loudness: LoudnessResult | None = None
    seam_crossfade_frames: int = 0  # length of the sound crossfade at continuous joins
    seconds: float = 0.0  # wall time of the assembly

    @property
    def duration(self) -> float:
        return self.frames / self.fps

    def shot_span(self, index: int) -> tuple[int, int]:
        """Film frames [start, end) that belong to placement `index` from cut to cut (for subtitles, OTIO)."""
        start = self.placements[index].cut
        end = self.placements[index + 1].cut if index + 1 < len(self.placements) else self.frames
        return start, end


@dataclass(frozen=True)
class Film:
    """A finished film folder: the film, its measured seams, and the exports written beside it."""

    info: FilmInfo
    seams: list[Seam]
    exports: dict[str, Path | None] = field(default_factory=dict)  # name -> file (None: nothing to write)
    continuity: tuple[ChainReport, ...] = ()  # one report per chain, in chain order

    @property
    def flagged(self) -> list[Seam]:
        return [s for s in self.seams if s.flags]

    @property
    def manifest(self) -> Path:
        path = self.exports.get("manifest")
        if path is None:
            raise ValueError(f"{self.info.path}: no manifest was written")
        return path

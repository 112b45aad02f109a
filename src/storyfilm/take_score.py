"""The score `pick: auto` chooses a take by: measured on each take's decoded frames, 0 (unusable) to 100.

Five measures, each turned into a factor from 0 (the take is unusable on this count) to 1 (no fault):

- frozen: the share of the take's new frames that repeat the frame before them (mean |Δluma| below
  seams.REPEAT, the seam report's "shown twice"): a render stuck on one picture scores 1.  Factor 1 - frozen.
- clipped: the mean share of pixels crushed to black or blown to white (luma at most 16 or at least 239 of
  255) over the new frames, beyond the least clipped take's (a night scene is dark in every take): a dark or
  washed-out render.  Factor 1 - clipped.
- seam (a shot that continues its parent on the exact frame only): how far the picture jumps from the
  parent's last frame to the take's first new frame beyond what the seam report tolerates (seams.JUMP
  levels, or seams.JUMP_RATIO x the take's own motion): seam = min(1, excess / SEAM_SPAN).  Factor 1 - seam.
- drift: the colour distance (CIEDE2000, continuity.py) of the take's last frame from its chain's anchor,
  beyond both the continuity report's threshold (3.0) and the closest take's distance (a camera move that
  every take makes is not a fault of one): drift = min(1, excess / DRIFT_SPAN).  Factor 1 - drift.
- sharpness: the variance of the Laplacian of luma (every SHARP_STEP-th new frame), against the sharpest
  take of the shot that moves (frozen under a half: a held start frame is sharper than any camera move's
  resampled frames, and no standard for them): blur = 1 - sharpness / best.  Factor 1 - blur / 2 (a softer
  take loses at most half).

    score = 100 x (1 - frozen) x (1 - clipped) x (1 - seam) x (1 - drift) x (1 - blur / 2)

The highest score wins; equal scores go to the lower take number (take 1 first: what may already be chained
after the shot). Pure numpy on frames decoded with PyAV; a take is measured once per pick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from storyfilm.continuity import ColourStats, Thresholds, delta_e
from storyfilm.results import ShotResult
from storyfilm.seams import JUMP, JUMP_RATIO, REPEAT

DARK, BRIGHT = 16, 239  # luma (0-255) at or beyond which a pixel counts as clipped
SEAM_SPAN = 20.0  # luma levels past the jump threshold at which the seam factor reaches 0
DRIFT_SPAN = 12.0  # ΔE00 past the continuity threshold at which the drift factor reaches 0
SHARP_STEP = 4
MEASURE_WIDTH = 640  # frames wider than this are measured scaled down (sharpness compares like with like)


@dataclass(frozen=True)
class Measures:
    """What is measured of one take, before it is compared with the others."""

    frozen: float
    clipped: float
    seam: float
    delta_e: float  # from the chain's anchor
    sharpness: float


@dataclass(frozen=True)
class TakeScore:
    take: int
    score: float
    frozen: float
    clipped: float
    seam: float
    drift: float
    blur: float
    sharpness: float
    delta_e: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _grey(frame: av.VideoFrame) -> np.ndarray:
    width = min(frame.width, MEASURE_WIDTH)
    height = max(2, round(frame.height * width / frame.width))
    return frame.to_ndarray(width=width, height=height, format="gray").astype(np.float32)


def _laplacian_variance(grey: np.ndarray) -> float:
    lap = (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1])
    return float(lap.var())


def _parent_grey(path: str | Path, size: tuple[int, int]) -> np.ndarray | None:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    except (OSError, ValueError):
        return None


def measure(result: ShotResult, parent: ShotResult | None = None, *, exact_seam: bool = False) -> Measures:
    """The measures of one take (`parent`: the result it continues, for the seam when `exact_seam`)."""
    steps: list[float] = []
    clipped: list[float] = []
    sharp: list[float] = []
    previous: np.ndarray | None = None
    first_new: np.ndarray | None = None
    with av.open(result.segment) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index < result.new_from_frame:
                continue
            grey = _grey(frame)
            n = index - result.new_from_frame
            if first_new is None:
                first_new = grey
            if previous is not None:
                steps.append(float(np.abs(grey - previous).mean()))
            clipped.append(float(((grey <= DARK) | (grey >= BRIGHT)).mean()))
            if n % SHARP_STEP == 0:
                sharp.append(_laplacian_variance(grey))
            previous = grey
    motion = float(np.median(steps)) if steps else 0.0
    frozen = sum(s < REPEAT for s in steps) / len(steps) if steps else 1.0
    seam = 0.0
    if exact_seam and parent is not None and first_new is not None:
        before = _parent_grey(parent.last_frame, (first_new.shape[1], first_new.shape[0]))
        if before is not None:
            change = float(np.abs(first_new - before).mean())
            seam = min(1.0, max(0.0, change - max(JUMP, JUMP_RATIO * motion)) / SEAM_SPAN)
    distance = 0.0
    if result.last_stats is not None and result.anchor is not None:
        distance = delta_e(ColourStats.from_dict(result.last_stats), ColourStats.from_dict(result.anchor))
    return Measures(frozen=frozen, clipped=float(np.mean(clipped)) if clipped else 1.0, seam=seam,
                    delta_e=distance, sharpness=float(np.mean(sharp)) if sharp else 0.0)


def score(measures: Sequence[Measures]) -> list[TakeScore]:
    """The scores of a shot's takes (take k is measures[k - 1]), each against the sharpest, the least clipped
    and the closest to the anchor."""
    moving = [m for m in measures if m.frozen < 0.5] or list(measures)
    best = max((m.sharpness for m in moving), default=0.0)
    least = min((m.clipped for m in measures), default=0.0)
    allowed = max(Thresholds().delta_e, min((m.delta_e for m in measures), default=0.0))
    out = []
    for k, m in enumerate(measures, start=1):
        blur = max(0.0, 1.0 - m.sharpness / best) if best > 0 else 0.0
        drift = min(1.0, max(0.0, m.delta_e - allowed) / DRIFT_SPAN)
        clipped = m.clipped - least
        value = 100 * (1 - m.frozen) * (1 - clipped) * (1 - m.seam) * (1 - drift) * (1 - blur / 2)
        out.append(TakeScore(take=k, score=round(value, 2), frozen=m.frozen, clipped=clipped, seam=m.seam,
                             drift=drift, blur=blur, sharpness=m.sharpness, delta_e=m.delta_e))
    return out


def best(scores: Sequence[TakeScore]) -> int:
    """The take the score prefers (the lower number of equals)."""
    return max(scores, key=lambda s: (s.score, -s.take)).take

"""From generated shots to a finished film folder: pieces in storyboard order, assembly, seams, exports.

The flow's assemble step calls `make_film` and then `write_exports`; both are plain functions (no Prefect).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from storyfilm import exports, seams
from storyfilm.assemble import FilmInfo, Piece, assemble
from storyfilm.generate import ShotResult
from storyfilm.plan import Plan
from storyfilm.seams import Seam


@dataclass(frozen=True)
class Film:
    info: FilmInfo
    seams: list[Seam]

    @property
    def flagged(self) -> list[Seam]:
        return seams.flagged(self.seams)


def pieces(plan: Plan, results: Sequence[ShotResult]) -> list[Piece]:
    """Each shot's new footage in storyboard order, with how it joins the shot before it."""
    by_id = {r.id: r for r in results}
    out: list[Piece] = []
    previous: str | None = None
    for s in plan.shots:
        r = by_id[s.id]
        # A shot contributes exactly its planned seconds: hosts may deliver a frame more (121 frames for 5 s).
        out.append(Piece(Path(r.segment), start_frame=r.new_from_frame, label=s.id,
                         frames=min(r.new_frames, round(s.duration * r.fps)),
                         join=s.transition.join(continues_previous=s.parent is not None and s.parent == previous)))
        previous = s.id
    return out


def make_film(plan: Plan, results: Sequence[ShotResult], film_dir: Path, *, loudness_lufs: float | None = None,
              log: Callable[[str], None] | None = None) -> Film:
    """Assemble film.mp4 (loudness: the argument, else the storyboard's) and measure its seams."""
    target = loudness_lufs if loudness_lufs is not None else plan.loudness_lufs
    info = assemble(pieces(plan, results), plan.film, film_dir / "film.mp4", film_dir / ".work",
                    on_progress=log, loudness_lufs=target)
    report = seams.analyse(info)
    if log:
        for s in seams.flagged(report):
            log(f"seam {s.before} -> {s.after} at {s.time:.2f} s: {'; '.join(s.flags)}")
    return Film(info, report)


def write_exports(plan: Plan, results: Sequence[ShotResult], film: Film, film_dir: Path,
                  asset_digests: Mapping[str, str] | None = None) -> dict[str, Path | None]:
    return exports.write_all(plan, results, film.info, film_dir, seams=film.seams, asset_digests=asset_digests)

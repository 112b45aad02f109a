"""The film's continuity: every chain's report (continuity.py) from its shots' measured frames, continuity.png,
the manifest's `continuity` section and the short lines the CLI and the Prefect summary show.

The statistics were measured when each segment arrived (continuity_hold.settle); a result kept before that
is measured here from its file. The anchors follow the storyboard's `color: free` shots (continuity.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storyfilm.continuity import ChainReport, ColourStats, ShotColour, Thresholds, chain_report, frame_stats
from storyfilm.continuity_picture import save_continuity_png
from storyfilm.media import rgb
from storyfilm.plan import Plan
from storyfilm.results import ShotResult

PICTURE = "continuity.png"


@dataclass(frozen=True)
class Continuity:
    reports: tuple[ChainReport, ...]
    picture: Path | None


def _colour(shot_id: str, free: bool, result: ShotResult) -> ShotColour:
    if result.first_stats is None or result.last_stats is None:
        first, last = rgb.first_and_last(Path(result.segment))
        return ShotColour(shot_id, frame_stats(first), frame_stats(last), free=free)
    return ShotColour(shot_id, ColourStats.from_dict(result.first_stats), ColourStats.from_dict(result.last_stats),
                      free=free)


def reports(plan: Plan, results: Sequence[ShotResult], thresholds: Thresholds | None = None) -> list[ChainReport]:
    """One report per chain, in the plan's chain order."""
    by_id = {r.id: r for r in results}
    return [chain_report([_colour(s.id, s.color == "free", by_id[s.id]) for s in chain], thresholds)
            for chain in plan.chains]


def measure(plan: Plan, results: Sequence[ShotResult], film_dir: Path) -> Continuity:
    """The reports, and continuity.png in `film_dir` (the anchors decoded from the chain heads' first frames)."""
    found = reports(plan, results)
    by_id = {r.id: r for r in results}
    anchors: dict[str, Path | np.ndarray] = {c.anchor: rgb.first_and_last(Path(by_id[c.anchor].segment))[0]
                                             for c in found}
    lasts: dict[str, Path | np.ndarray] = {r.id: Path(r.last_frame) for r in results}
    path = film_dir / PICTURE
    tmp = path.with_name(f".{path.name}.partial.png")
    save_continuity_png(found, lasts, anchors, tmp)
    tmp.replace(path)
    return Continuity(tuple(found), path)


def manifest_section(plan: Plan, found: Continuity, film_dir: Path) -> dict[str, Any]:
    """The manifest's `continuity`: per chain its anchor, hops, drift per hop and whether it is flagged."""
    thresholds = found.reports[0].thresholds if found.reports else Thresholds()
    colour = {s.id: s.color for s in plan.shots}
    chains = []
    for report in found.reports:
        data = report.as_dict()
        for hop in data["hops"]:
            hop["color"] = colour.get(hop["shot"])
        chains.append(data)
    return {
        "delta_e": "CIEDE2000 between the CIELAB means (D65) of the hop's last frame and its anchor",
        "anchor_rule": "a chain's head's first frame; after a `color: free` shot, that shot's last frame",
        "thresholds": {"delta_e": thresholds.delta_e, "contrast_ratio": [1 - thresholds.contrast_band,
                                                                          1 + thresholds.contrast_band],
                       "saturation_ratio": [1 - thresholds.saturation_band, 1 + thresholds.saturation_band]},
        "picture": _rel(found.picture, film_dir) if found.picture else None,
        "flagged_chains": [r.anchor for r in found.reports if r.flagged],
        "chains": chains,
    }


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def lines(found: Sequence[ChainReport]) -> list[str]:
    """One line per chain: its hops' ΔE and the verdict (for the CLI and the logs)."""
    out = []
    for r in found:
        hops = " ".join(f"{h.delta_e:.1f}{'*' if h.free else '!' if h.flagged else ''}" for h in r.hops)
        verdict = f"FLAGGED ({', '.join(h.shot for h in r.hops if h.flagged)})" if r.flagged else "holds"
        out.append(f"chain {r.anchor}: {len(r.hops)} shot(s), ΔE00 per hop {hops}; {r.drift_per_hop:.2f}/hop, "
                   f"{verdict}")
    return out


def markdown(found: Sequence[ChainReport], picture: str | None) -> str:
    """The Prefect summary's continuity section: a table of chains and continuity.png (`picture`: an image URI;
    the summary's list of files links the PNG itself)."""
    if not found:
        return ""
    rows = "\n".join(
        f"| {r.anchor} | {len(r.hops)} | {' / '.join(f'{h.delta_e:.1f}' for h in r.hops)} | "
        f"{r.drift_per_hop:.2f} | {r.max_delta_e:.1f} | {'**flagged**: ' + ', '.join(h.shot for h in r.hops if h.flagged) if r.flagged else 'holds'} |"  # noqa: E501
        for r in found)
    link = f"![continuity strips]({picture})\n\n" if picture else ""
    limit = found[0].thresholds
    return ("## Continuity\n\n" + link
            + f"ΔE00 of each shot's last frame from its chain's anchor; flagged above {limit.delta_e:g} or when "
              f"contrast or saturation move more than {limit.contrast_band:.0%}.\n\n"
              "| chain (anchor) | shots | ΔE per hop | drift/hop | max ΔE | verdict |\n|---|---|---|---|---|---|\n"
            + rows + "\n")

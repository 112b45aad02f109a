"""What a finished film reports to people: the summary and the shot table. Pure: no Prefect, no I/O.

`flow.py` publishes these as Prefect artifacts; the contents are plain data so they can be tested
(and reused by any other front end) without a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from storyfilm.plan import Plan
from storyfilm.results import FilmInfo, ShotResult


def spent_usd(results: Sequence[ShotResult]) -> float:
    """New spend of this run: reused shots were paid for by an earlier one."""
    return round(sum(r.cost_usd for r in results if not r.reused), 4)


def shot_rows(plan: Plan, results: Sequence[ShotResult]) -> list[dict[str, str | int | float]]:
    """One row per shot, in storyboard order (JSON-friendly: a Prefect table artifact)."""
    by_id = {r.id: r for r in results}
    rows: list[dict[str, str | int | float]] = []
    for s in plan.shots:
        r = by_id[s.id]
        rows.append({
            "shot": s.id, "chain": s.chain + 1, "start": s.start.describe(), "seconds": round(r.duration, 3),
            "status": "reused" if r.reused else "generated", "job": r.job_id,
            "generation_s": round(r.seconds, 1), "cost_usd": round(r.cost_usd, 4),
            "file": Path(r.segment).name,
        })
    return rows


def summary_markdown(plan: Plan, results: Sequence[ShotResult], film: FilmInfo, manifest: Path,
                     timeline: Path | None = None) -> str:
    reused = sum(r.reused for r in results)
    film_path, manifest_path = film.path.resolve(), manifest.resolve()
    picture = timeline.resolve() if timeline else None
    rows = "\n".join(
        f"| {row['shot']} | {row['start']} | {row['seconds']:.2f} s | {row['status']} | "
        f"{row['generation_s']} s | ${row['cost_usd']:.2f} |" for row in shot_rows(plan, results))
    return (
        f"# {plan.title}\n\n"
        f"**Film:** [{film_path}]({film_path.as_uri()})  \n"
        f"**Manifest:** [{manifest_path}]({manifest_path.as_uri()})  \n"
        + (f"**Timeline:** [{picture}]({picture.as_uri()}) (where the time went: shots per chain, waits for a "
           "provider slot shaded)  \n" if picture else "") +
        f"**Duration:** {film.duration:.3f} s ({film.frames} frames, {film.width}x{film.height} @ {film.fps} fps; "
        f"planned {plan.duration:.0f} s)  \n"
        f"**Shots:** {len(results)} in {len(plan.chains)} chain(s)  \n"
        f"**Cache hits:** {reused} of {len(results)} shots reused  \n"
        f"**Provider:** {plan.provider} ({plan.tier})  \n"
        f"**Spent this run:** ${spent_usd(results):.2f} (estimate for every shot ${plan.cost_usd:.2f}"
        + (f", budget ${plan.budget_usd:.2f}" if plan.budget_usd is not None else "") + ")\n\n"
        "| shot | start | seconds | status | generation | cost |\n|---|---|---|---|---|---|\n" + rows + "\n"
    )

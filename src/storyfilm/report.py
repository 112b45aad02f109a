"""What a run reports to people, finished or failed: the summary and the shot table. Pure: no Prefect, no I/O.

`flow.py` publishes these as Prefect artifacts; the contents are plain data so they can be tested
(and reused by any other front end) without a server. Pictures and links come in ready-made
(pictures.py, public_links.py): this module only lays them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from storyfilm.plan import Plan
from storyfilm.results import FilmInfo, ShotResult

# generated / reused: finished; failed: with its reason; not started: a shot it continues from failed;
# waiting: no outcome yet (the run stopped first)
ShotStatus = Literal["generated", "reused", "failed", "not started", "waiting"]


@dataclass(frozen=True)
class ShotOutcome:
    id: str
    status: ShotStatus
    result: ShotResult | None = None
    reason: str = ""  # failed: why; not started: which shot before it failed (a few words)
    waited_s: float = 0.0  # for a provider slot (not part of the generation time)
    next_run: str = ""  # what the next run will do with the shot


@dataclass(frozen=True)
class RunReport:
    """One run of one film, as far as it got."""

    plan: Plan
    outcomes: Sequence[ShotOutcome]  # storyboard order
    rehearsal: bool = False  # emulated hosts: nothing was paid, costs are list prices
    film: FilmInfo | None = None  # None: not assembled
    error: str = ""  # why the run failed ("" when it did not)
    links: Mapping[str, str] = field(default_factory=dict)  # label -> markdown link or copyable path
    thumbnails: Mapping[str, str] = field(default_factory=dict)  # shot id -> image URI
    contact_sheet: str | None = None  # image URI
    timeline: str | None = None  # image URI of timeline.png: where the run's time went
    up_to_date: bool = False  # the film was already what this run would make: nothing generated or assembled

    @property
    def results(self) -> list[ShotResult]:
        return [o.result for o in self.outcomes if o.result is not None]

    def count(self, *status: ShotStatus) -> int:
        return sum(o.status in status for o in self.outcomes)


def spent_usd(results: Sequence[ShotResult]) -> float:
    """New spend of this run: reused shots were paid for by an earlier one."""
    return round(sum(r.cost_usd for r in results if not r.reused), 4)


def _money(value: float) -> str:
    return f"${value:.2f}"


def shot_rows(report: RunReport) -> list[dict[str, str | int | float]]:
    """One row per shot, in storyboard order (JSON-friendly: a Prefect table artifact)."""
    rows: list[dict[str, str | int | float]] = []
    for s, o in zip(report.plan.shots, report.outcomes, strict=True):
        r = o.result
        rows.append({
            "shot": s.id, "chain": s.chain + 1, "start": s.start.describe(),
            "status": o.status + (f": {o.reason}" if o.reason else ""),
            "film seconds": round(r.duration, 3) if r else s.duration,
            "waited for slot": f"{o.waited_s:.1f} s", "generation": f"{r.seconds:.1f} s" if r else "",
            "cost": _money(r.cost_usd if r and not r.reused else 0.0), "job": r.job_id if r else "",
            "next run": o.next_run,
        })
    return rows


def progress_description(report: RunReport) -> str:
    """What the progress artifact says when the run ends."""
    total = len(report.outcomes)
    finished = report.count("generated", "reused")
    if report.up_to_date:
        return f"up to date: {total} of {total} shots reused, nothing assembled"
    if not report.error:
        return f"finished: {total} of {total} shots, film assembled"
    if finished == total:
        return f"failed at assembly after {total} of {total} shots"
    failed, blocked = report.count("failed"), report.count("not started")
    return (f"failed after {finished} of {total} shots: {failed} failed"
            + (f", {blocked} not started" if blocked else ""))


def _heading(report: RunReport) -> str:
    if report.up_to_date:
        state = "up to date (nothing generated, assembled or downloaded)"
    elif report.film is not None:
        state = "finished"
    elif report.error:
        state = "FAILED"
    else:
        state = "running"
    return f"# {report.plan.title}: {state}" + (" (rehearsal: nothing was paid)" if report.rehearsal else "")


def _money_lines(report: RunReport) -> str:
    plan, results = report.plan, report.results
    spent = spent_usd(results)
    earlier = round(sum(r.cost_usd for r in results if r.reused), 4)
    budget = f", budget {_money(plan.budget_usd)}" if plan.budget_usd is not None else ""
    if report.rehearsal:
        return (f"**Cost at list prices:** {_money(spent)} this run, nothing paid (the hosts were emulated); "
                f"estimate for every shot {_money(plan.cost_usd)}{budget}  \n")
    return (f"**Committed this run:** {_money(spent)} for {report.count('generated')} generated shot(s)"
            + (f"; {_money(earlier)} of reused shots was paid by earlier runs" if earlier else "")
            + f" (estimate for every shot {_money(plan.cost_usd)}{budget})  \n")


def _shot_table(report: RunReport) -> str:
    nxt = any(o.next_run for o in report.outcomes)  # said only when the run stopped
    # no start column (the table artifact has it): the UI does not wrap cells, and this one must fit
    lines = ["| | shot | status | film | waited | generation | cost |" + (" next run |" if nxt else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if nxt else "")]
    for s, o in zip(report.plan.shots, report.outcomes, strict=True):
        r = o.result
        picture = f"![{s.id}]({report.thumbnails[s.id]})" if s.id in report.thumbnails else ""
        # the UI does not wrap table cells: a failure's reason is in the list above the table
        status = f"**{o.status}**" + (f": {_cell(o.reason)}" if o.reason and o.status == "not started" else "")
        lines.append(f"| {picture} | {s.id} | {status} | "
                     f"{(r.duration if r else s.duration):.2f} s | {o.waited_s:.1f} s | "
                     f"{f'{r.seconds:.1f} s' if r else ''} | {_money(r.cost_usd if r and not r.reused else 0.0)} |"
                     + (f" {_cell(o.next_run.split('; ')[0])} |" if nxt else ""))
    # the UI does not wrap cells: what a stopped shot needs from the user goes under the table, in full
    hints = [f"- **{o.id}**, next run: {_cell(o.next_run)}" for o in report.outcomes if "; " in o.next_run]
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(hints) + "\n" if hints else "")


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell (one line, no column breaks, no HTML)."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def summary_markdown(report: RunReport, extra: str = "") -> str:
    """The run's summary: state, links, money, the contact sheet and every shot with its thumbnail."""
    plan, film = report.plan, report.film
    total = len(report.outcomes)
    parts = [_heading(report), ""]
    if report.error:
        first, *rest = report.error.splitlines()
        parts += [f"> **Why it failed:** {_cell(first)}"] + [f"> - {_cell(line)}" for line in rest] + [""]
    parts += [f"**{label}:** {link}  " for label, link in report.links.items()]
    if film is not None:
        parts.append(f"**Duration:** {film.duration:.3f} s ({film.frames} frames, {film.width}x{film.height} @ "
                     f"{film.fps} fps; planned {plan.duration:.0f} s)  ")
    parts.append(f"**Shots:** {total} in {len(plan.chains)} chain(s): {report.count('generated')} generated, "
                 f"{report.count('reused')} reused, {report.count('failed')} failed, "
                 f"{report.count('not started')} not started, {report.count('waiting')} waiting  ")
    parts.append(f"**Provider:** {plan.provider} ({plan.tier})  ")
    parts.append(_money_lines(report))
    if report.error:
        kept = report.count("generated", "reused")
        parts.append(f"**Next run:** the {kept} finished shot(s) are kept and reused (not paid again); see the "
                     "last column for each shot.\n")
    if report.contact_sheet:
        parts += ["", f"![contact sheet]({report.contact_sheet})", ""]
    if report.timeline:
        parts += ["", "Where the time went (one row per chain; waits for a provider slot shaded):", "",
                  f"![timeline]({report.timeline})", ""]
    parts += ["", _shot_table(report)]
    if extra:
        parts += ["", extra]
    body = "\n".join(parts)
    return body + f"\n\n_This summary is {len(body.encode()) / 1000:.0f} KB, pictures included._\n"

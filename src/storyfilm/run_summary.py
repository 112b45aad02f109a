"""A run's report put together from what is on disk: links, thumbnails, the contact sheet, the next run.

No Prefect: flow.py publishes the result (report.py lays it out). Reading a picture that is missing or
damaged leaves it out; a report never fails a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from storyfilm import pictures
from storyfilm.next_run import next_run
from storyfilm.public_links import markdown_link, public_url
from storyfilm.report import RunReport, ShotOutcome
from storyfilm.results import Film
from storyfilm.session import FilmJob
from storyfilm.up_to_date import MANIFEST, reused_results

# label in the summary -> the export's name in Film.exports ("film" is the film itself)
FILES = (("Film", "film"), ("Manifest", "manifest"), ("Subtitles", "subtitles"), ("Timeline", "timeline"),
         ("Timeline picture", "timeline_png"), ("Contact sheet", "contact_sheet"), ("Continuity", "continuity"))


def film_files(made: Film) -> dict[str, Path]:
    """Label -> file of a finished film, for the files that were written."""
    files = {"film": made.info.path, **{k: v for k, v in made.exports.items() if v is not None}}
    return {label: files[name] for label, name in FILES if name in files}


def public_links(made: Film | dict[str, Path], output_dir: Path | str, base: str | None) -> dict[str, str]:
    """Label -> http(s) URL of the film and its manifest (empty without a public base URL): link artifacts of
    their own; the summary links every file."""
    out: dict[str, str] = {}
    for label, path in (made if isinstance(made, dict) else film_files(made)).items():
        if label not in ("Film", "Manifest"):
            continue
        url = public_url(path, output_dir, base)
        if url is not None:
            out[label] = url
    return out


def build(job: FilmJob, outcomes: Sequence[ShotOutcome], *, made: Film | None, error: str, rehearsal: bool,
          output_dir: Path | str, base: str | None) -> RunReport:
    links: dict[str, str] = {}
    sheet: str | None = None
    timeline: str | None = None
    if made is not None:
        links = {label: markdown_link(path.name, path, output_dir, base)
                 for label, path in film_files(made).items()}
        sheet_path = made.exports.get("contact_sheet")
        sheet_jpeg = pictures.contact_sheet(sheet_path) if sheet_path else None
        sheet = pictures.data_uri(sheet_jpeg) if sheet_jpeg else None
        timeline_path = made.exports.get("timeline_png")
        timeline_jpeg = pictures.contact_sheet(timeline_path, max_bytes=40_000) if timeline_path else None
        timeline = pictures.data_uri(timeline_jpeg) if timeline_jpeg else None
    else:
        links = {"Film folder": markdown_link(job.film_dir.name, job.film_dir, output_dir, base)}
    thumbs = {o.id: pictures.data_uri(jpeg) for o in outcomes
              if o.result is not None and (jpeg := pictures.thumbnail(o.result.last_frame))}
    if error:  # what the next run would do, from the ledger as this run left it
        nxt = next_run(job)
        outcomes = [replace(o, next_run=nxt.get(o.id, "")) for o in outcomes]
    return RunReport(plan=job.plan, outcomes=outcomes, rehearsal=rehearsal, film=made.info if made else None,
                     error=error, links=links, thumbnails=thumbs, contact_sheet=sheet,
                     timeline=timeline)


def recorded_files(film_dir: Path, recorded: Mapping[str, Any]) -> dict[str, Path]:
    """Label -> file of a film as its manifest names them (their objects, for a film left in a bucket)."""
    files = {"film": recorded["film"]["file"], "manifest": MANIFEST,  # (it does not name itself)
             **{k: v for k, v in (recorded.get("exports") or {}).items() if v}}
    return {label: film_dir / files[name] for label, name in FILES if name in files}


def unchanged(job: FilmJob, recorded: Mapping[str, Any], *, rehearsal: bool, output_dir: Path | str,
              base: str | None) -> RunReport:
    """The report of a run that found the film up to date (bucket_up_to_date.py): every shot reused, the film's
    files linked where they are."""
    links = {label: markdown_link(path.name, path, output_dir, base)
             for label, path in recorded_files(job.film_dir, recorded).items()}
    outcomes = [ShotOutcome(r.id, "reused", replace(r, reused=True, seconds=0.0))
                for r in reused_results(job.plan, job.decisions) or []]
    return RunReport(plan=job.plan, outcomes=outcomes, rehearsal=rehearsal, links=links, up_to_date=True)

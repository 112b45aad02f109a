"""Is the film at the output URL already what a run would make? Then a run on a fresh worker leaves it alone.

A nightly deployment's worker starts with an empty scratch folder, so up_to_date.py's answer (the local
film.mp4 and manifest) cannot be had there; this one comes from the ledger and the bucket:

    every shot reusable as it is       the ledger says done, its kept files are in the bucket (listed, not read)
    the bucket's manifest.json         its film inputs (film_key: the segments' digests, order, joins, format,
                                       loudness; captions_key) equal what the plan and the ledger say now
    film.mp4 and every export          there, film.mp4 at the size the manifest recorded

-> "up to date": nothing is submitted, assembled or downloaded; the one file read is the manifest (a few KB:
what the film was made from is recorded nowhere else). Anything else, changed captions included, is a run,
which downloads only what it uses (outputs.py). Not caught: film.mp4 replaced in the bucket by another file of
the very same size (its sha256 cannot be known without downloading it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyfilm import takes
from storyfilm.decide import Reuse
from storyfilm.plan import Plan
from storyfilm.up_to_date import FILM, MANIFEST, Verdict, captions_key, film_key, reused_results

if TYPE_CHECKING:
    from storyfilm.outputs import Mirror
    from storyfilm.session import FilmJob, Options


def check(plan: Plan, decisions: Mapping[str, object], mirror: Mirror, loudness_lufs: float | None) -> Verdict:
    """What a run of `plan` would do to the film at `mirror`'s URL (see the module docstring)."""
    film = f"{mirror.url}/{FILM}"
    missing = [s.id for s in takes.jobs(plan) if not isinstance(decisions[s.id], Reuse)]
    if missing:
        return Verdict("run", film, f"{len(missing)} shot(s) to generate or fetch")
    results = reused_results(plan, decisions)
    if results is None:
        return Verdict("run", film, "takes to pick")
    recorded = mirror.read_json(MANIFEST)
    if recorded is None:
        return Verdict("run", film, "no manifest in the bucket")
    film_record = recorded.get("film") or {}
    made_from = film_record.get("inputs") or {}
    if made_from.get("film_key") != film_key(plan, results, loudness_lufs):
        return Verdict("run", film, "the film's inputs changed")
    if made_from.get("captions_key") != captions_key(plan):
        return Verdict("run", film, "the captions changed")
    if any(rel and not mirror.exists(rel) for rel in (recorded.get("exports") or {}).values()):
        return Verdict("run", film, "an export is missing from the bucket")
    if film_record.get("bytes") is None or mirror.size(FILM) != film_record["bytes"]:
        return Verdict("run", film, "film.mp4 is missing from the bucket or was changed")
    return Verdict("up to date", film, shots=len(plan.shots), recorded=recorded)


def unchanged(job: FilmJob) -> Verdict | None:
    """The verdict for a prepared run whose outputs are at a URL, when it is "up to date"; else None."""
    mirror = job.runner.mirror
    if mirror is None:
        return None
    target = job.loudness_lufs if job.loudness_lufs is not None else job.plan.loudness_lufs
    verdict = check(job.plan, job.decisions, mirror, target)
    if verdict.state != "up to date":
        job.runner.log(f"the film at {mirror.url} is made again: {verdict.why}")
        return None
    job.runner.log(f"{verdict.film} is up to date: nothing generated, assembled or downloaded but its manifest")
    return verdict


def before_run(path: str | Path, options: Options) -> Verdict:
    """`check` for a run of the storyboard at `path` with outputs at a URL (plan-only: nothing paid or written)."""
    from storyfilm import session
    from storyfilm.decide import Host
    from storyfilm.ledger import existing_ledger
    from storyfilm.outputs import Mirror
    from storyfilm.providers import spec_for

    film = session.plan_film(path, options)
    assert film.remote is not None
    ledger = existing_ledger(film.ledger_at)
    if ledger is None:
        return Verdict("run", f"{film.remote}/{FILM}", "no ledger")
    mirror = Mirror(film.remote, options.log)
    decisions = session.decide_all(film, ledger, Host.of(spec_for(film.plan.provider)), run_id=None,
                                   resume=options.resume, mirror=mirror)
    target = options.loudness_lufs if options.loudness_lufs is not None else film.plan.loudness_lufs
    return check(film.plan, decisions, mirror, target)


def result(verdict: Verdict) -> dict[str, Any]:
    """What the flow returns for an up-to-date film (the keys of a finished run's result)."""
    recorded = verdict.recorded or {}
    film = recorded.get("film") or {}
    return {"film": str(verdict.film), "duration": film.get("duration", 0.0), "frames": film.get("frames", 0),
            "manifest": f"{str(verdict.film).rsplit('/', 1)[0]}/{MANIFEST}",
            "shots": verdict.shots, "flagged_seams": len((recorded.get("seams") or {}).get("flagged") or []),
            "reused": verdict.shots, "spent_usd": 0.0, "continuity": [], "flagged_chains": 0, "up_to_date": True}

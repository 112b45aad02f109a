"""`storyfilm ledger copy SRC DST`: a film's history (jobs and events) from one ledger into another, e.g. from
its SQLite file into the team's PostgreSQL database, or back.

Safe to repeat: a job DST already has, identical, is skipped, and so is an event (same time, key, attempt,
state and detail). A job that DST has differently (another job id, a later state, ...) stops the copy
before anything is written: the two ledgers disagree about what was paid, and a person must decide which is
right. Claims are not copied: they belong to runs in progress on the source's machine. Picks (which take of
a shot with takes the film uses) are copied where DST has none for those takes; DST's own choices stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from storyfilm.errors import LedgerError
from storyfilm.ledger import Ledger
from storyfilm.ledger_schema import events, jobs, picks, transaction

_CHUNK = 500  # keys per IN (...) query
_EVENT_FIELDS = ("at", "key", "attempt", "shot_id", "state", "detail")


@dataclass(frozen=True)
class Copied:
    jobs: int
    events: int
    jobs_there: int  # identical jobs DST already had
    events_there: int


def copy_history(src: Ledger, dst: Ledger) -> Copied:
    """Every job and event of `src` into `dst`, in one transaction of `dst` (all or nothing)."""
    with transaction(src.engine, write=False) as db:
        src_jobs = [dict(r._mapping) for r in db.execute(sa.select(jobs).order_by(jobs.c.created_at, jobs.c.key,
                                                                                  jobs.c.attempt))]
        src_events = [tuple(r) for r in db.execute(sa.select(*(events.c[f] for f in _EVENT_FIELDS))
                                                   .order_by(events.c.id))]
        src_picks = [dict(r._mapping) for r in db.execute(sa.select(picks))]
    keys = sorted({j["key"] for j in src_jobs} | {e[1] for e in src_events})
    with transaction(dst.engine) as db:
        there = {(r.key, r.attempt): dict(r._mapping) for chunk in _chunks(keys)
                 for r in db.execute(sa.select(jobs).where(jobs.c.key.in_(chunk)))}
        conflicts = [(job, there[(job["key"], job["attempt"])]) for job in src_jobs
                     if (job["key"], job["attempt"]) in there and _differ(job, there[(job["key"], job["attempt"])])]
        if conflicts:
            raise LedgerError(_refusal(src, dst, conflicts))
        new_jobs = [job for job in src_jobs if (job["key"], job["attempt"]) not in there]
        seen = {tuple(r) for chunk in _chunks(keys)
                for r in db.execute(sa.select(*(events.c[f] for f in _EVENT_FIELDS)).where(events.c.key.in_(chunk)))}
        new_events = [dict(zip(_EVENT_FIELDS, e, strict=True)) for e in src_events if e not in seen]
        if new_jobs:
            db.execute(jobs.insert(), new_jobs)
        if new_events:
            db.execute(events.insert(), new_events)
        chosen = {r.key for chunk in _chunks([p["key"] for p in src_picks])
                  for r in db.execute(sa.select(picks.c.key).where(picks.c.key.in_(chunk)))}
        if new_picks := [p for p in src_picks if p["key"] not in chosen]:
            db.execute(picks.insert(), new_picks)
    return Copied(len(new_jobs), len(new_events), len(src_jobs) - len(new_jobs), len(src_events) - len(new_events))


def _chunks(keys: list[str]) -> list[list[str]]:
    return [keys[i:i + _CHUNK] for i in range(0, len(keys), _CHUNK)]


def _differ(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [name for name in a if a[name] != b.get(name)]


def _refusal(src: Ledger, dst: Ledger, conflicts: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    lines = []
    for job, other in conflicts[:5]:
        fields = ", ".join(f"{name} {_show(job[name])} here, {_show(other[name])} there"
                           for name in _differ(job, other) if name != "updated_at") or "updated at another time"
        lines.append(f"shot {job['shot_id']} (key {job['key'][:12]}, attempt {job['attempt']}): {fields}")
    more = f"\n  ... and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
    return (f"refusing to copy {src.location} into {dst.location}: {len(conflicts)} job(s) are recorded differently "
            "there, and copying would overwrite what one ledger knows was paid. Nothing was copied. Copy into an "
            "empty ledger, or keep the one that is right:\n  " + "\n  ".join(lines) + more)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

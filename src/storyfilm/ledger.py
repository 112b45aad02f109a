"""The pay-once ledger: for every shot cache key, what was asked of which host, the job id, the cost, the result.

A SQLite file (default `output/<slug>/ledger.sqlite`). Every state change is one committed transaction,
so a process killed at any instant leaves a ledger the next run understands:

    intent     the wire request is recorded; the submit is about to be sent (job id not known yet)
    submitted  the host returned a job id: from now on we only ever poll this job
    completed  the host finished the job (output URL recorded, so a lost file can be fetched again)
    done       the segment is on disk (result recorded): reused without any call
    failed     the job failed (or the submit was refused); `moderation` says whether inputs were refused
    rejected   the host refused the submit outright (nothing was created, nothing billed)

An `events` table keeps an append-only history for audits.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from storyfilm.errors import StoryfilmError
from storyfilm.plan import Plan
from storyfilm.providers.specs import spec_for

State = Literal["intent", "submitted", "completed", "done", "failed", "rejected"]
IN_FLIGHT: frozenset[str] = frozenset({"intent", "submitted", "completed"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    shot_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    run_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    prepared TEXT,
    job_id TEXT,
    cost_usd REAL NOT NULL DEFAULT 0,
    video_url TEXT,
    last_frame_url TEXT,
    error TEXT,
    moderation INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (key, attempt)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    shot_id TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT
);
"""


class LedgerError(StoryfilmError):
    pass


@dataclass(frozen=True)
class Record:
    key: str
    attempt: int
    shot_id: str
    provider: str
    model: str
    state: State
    run_id: str
    idempotency_key: str
    prepared: dict[str, Any] | None
    job_id: str | None
    cost_usd: float
    video_url: str | None
    last_frame_url: str | None
    error: str | None
    moderation: bool
    result: dict[str, Any] | None
    created_at: float
    updated_at: float

    @property
    def billed(self) -> bool:
        """Money is (or may be) committed: a job exists or may exist."""
        return self.state in ("intent", "submitted", "completed", "done")


class Ledger:
    """Thread-safe; one short connection per operation, so it also works across processes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            db = sqlite3.connect(self.path, timeout=30)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: not a readable ledger ({exc}); move it aside to start a new one "
                              "(jobs recorded in it would then be submitted again)") from None

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            try:
                db.execute("PRAGMA synchronous=FULL")
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            finally:
                db.close()

    # --- reading ---------------------------------------------------------------------------------

    def latest(self, key: str) -> Record | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE key = ? ORDER BY attempt DESC LIMIT 1", (key,)).fetchone()
            return _record(row) if row else None

    def records(self) -> list[Record]:
        with self._db() as db:
            return [_record(r) for r in db.execute("SELECT * FROM jobs ORDER BY created_at, key, attempt")]

    def spent(self, run_id: str | None = None) -> float:
        """Money committed (jobs that exist or may exist), for one run or in all."""
        query = "SELECT COALESCE(SUM(cost_usd), 0) FROM jobs WHERE state IN ('intent','submitted','completed','done')"
        args: tuple[Any, ...] = ()
        if run_id is not None:
            query += " AND run_id = ?"
            args = (run_id,)
        with self._db() as db:
            return float(db.execute(query, args).fetchone()[0])

    def events(self, key: str | None = None) -> list[tuple[str, int, str, str, str | None]]:
        with self._db() as db:
            sql = "SELECT key, attempt, shot_id, state, detail FROM events"
            rows = db.execute(sql + (" WHERE key = ? ORDER BY id" if key else " ORDER BY id"),
                              (key,) if key else ()).fetchall()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    # --- writing ---------------------------------------------------------------------------------

    def intent(self, *, key: str, shot_id: str, provider: str, model: str, run_id: str,
               prepared: dict[str, Any], cost_usd: float) -> Record:
        """Record that a submit is about to be sent (with a fresh attempt number and idempotency key)."""
        now = time.time()
        with self._db() as db:
            attempt = int(db.execute("SELECT COALESCE(MAX(attempt) + 1, 0) FROM jobs WHERE key = ?",
                                     (key,)).fetchone()[0])
            idempotency_key = f"storyfilm-{key[:40]}-{attempt}"
            db.execute("INSERT INTO jobs (key, attempt, shot_id, provider, model, state, run_id, idempotency_key, "
                       "prepared, cost_usd, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (key, attempt, shot_id, provider, model, "intent", run_id, idempotency_key,
                        json.dumps(prepared), cost_usd, now, now))
            self._event(db, key, attempt, shot_id, "intent", f"{provider} {model} ${cost_usd:.2f}")
            return _record(db.execute("SELECT * FROM jobs WHERE key = ? AND attempt = ?", (key, attempt)).fetchone())

    def update(self, key: str, attempt: int, state: State, **fields: Any) -> None:
        allowed = {"job_id", "cost_usd", "video_url", "last_frame_url", "error", "moderation", "result", "run_id"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown ledger fields {unknown}")
        if "result" in fields and fields["result"] is not None:
            fields["result"] = json.dumps(fields["result"])
        sets = ", ".join(f"{name} = ?" for name in ("state", "updated_at", *fields))
        with self._db() as db:
            cur = db.execute(f"UPDATE jobs SET {sets} WHERE key = ? AND attempt = ?",  # noqa: S608 (names fixed)
                             (state, time.time(), *fields.values(), key, attempt))
            if cur.rowcount != 1:
                raise LedgerError(f"no ledger record {key[:12]}#{attempt}")
            shot = db.execute("SELECT shot_id FROM jobs WHERE key = ? AND attempt = ?", (key, attempt)).fetchone()[0]
            detail = fields.get("job_id") or fields.get("error") or fields.get("video_url")
            self._event(db, key, attempt, shot, state, str(detail) if detail else None)

    @staticmethod
    def _event(db: sqlite3.Connection, key: str, attempt: int, shot_id: str, state: str, detail: str | None) -> None:
        db.execute("INSERT INTO events (at, key, attempt, shot_id, state, detail) VALUES (?,?,?,?,?,?)",
                   (time.time(), key, attempt, shot_id, state, detail))


def _record(row: sqlite3.Row) -> Record:
    return Record(
        key=row["key"], attempt=row["attempt"], shot_id=row["shot_id"], provider=row["provider"],
        model=row["model"], state=row["state"], run_id=row["run_id"], idempotency_key=row["idempotency_key"],
        prepared=json.loads(row["prepared"]) if row["prepared"] else None, job_id=row["job_id"],
        cost_usd=float(row["cost_usd"]), video_url=row["video_url"], last_frame_url=row["last_frame_url"],
        error=row["error"], moderation=bool(row["moderation"]),
        result=json.loads(row["result"]) if row["result"] else None,
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


ShotState = Literal["cached", "in flight", "failed", "new"]


def ledger_path(film_dir: Path, override: str | Path | None = None) -> Path:
    return Path(override) if override else film_dir / "ledger.sqlite"


def shot_states(plan: Plan, ledger: Ledger, redo: frozenset[str] = frozenset()) -> dict[str, ShotState]:
    """What a run would do with each shot: reuse it, resume its job, or submit it (new)."""
    out: dict[str, ShotState] = {}
    for shot in plan.shots:
        rec = ledger.latest(shot.key)
        if rec is None or rec.state == "rejected" or shot.id in redo:
            out[shot.id] = "new"
        elif rec.state == "done":
            out[shot.id] = "cached"
        elif rec.state in IN_FLIGHT:
            out[shot.id] = "in flight" if spec_for(plan.provider).paid else "new"  # a free job is redone
        else:
            out[shot.id] = "failed"
    return out


def new_cost(plan: Plan, ledger: Ledger, redo: frozenset[str] = frozenset()) -> float:
    """What a run would newly spend: shots that are neither finished nor already paid for and in flight."""
    states = shot_states(plan, ledger, redo)
    return round(sum(s.cost_usd for s in plan.shots if states[s.id] in ("new", "failed")), 4)

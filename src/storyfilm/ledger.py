"""The pay-once ledger: for every shot cache key, what was asked of which host, the job id, the cost, the result.

A SQLite file (default `output/<slug>/ledger.sqlite`) or a PostgreSQL database shared by many workers (any
location `ledger_url.parse` reads). Every state change is one committed transaction, so a process killed at
any instant leaves a ledger the next run understands:

    intent     the wire request is recorded; the submit is about to be sent (job id not known yet)
    submitted  the host returned a job id: from now on we only ever poll this job
    completed  the host finished the job (output URL recorded, so a lost file can be fetched again)
    done       the segment is on disk (result recorded): reused without any call
    failed     the job failed (or the submit was refused); `moderation` says whether inputs were refused
    rejected   the host refused the submit outright (nothing was created, nothing billed)

An `events` table keeps an append-only history for audits. Keys are content hashes of the request, so one
database can hold the ledgers of many films.

Claims: before its submit a run claims the shot's key; a claim is a row in `claims` with a lease, taken by one
atomic INSERT ... ON CONFLICT DO UPDATE ... WHERE the lease has expired (the database decides, on its own
clock, and exactly one of any number of racing runs gets the row). Why a leased row rather than a lock held
for the submit: it needs no connection or transaction kept open across HTTP calls (a worker polls for
minutes), it survives a dropped connection, it says who holds it and until when (a waiting run knows how
long to wait), a dead holder's claim expires by itself, and SQLite runs the same statement (PostgreSQL
advisory locks do not exist there, and a session lock is silently lost with its connection). Each claim
carries a fresh token: `renew`, `release` and `intent(claim=...)` act only while the token is still the
row's, so a holder that stalled past its lease and was taken over learns it (ClaimLost) before it records an
intent, and never submits beside the run that took over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from storyfilm import ledger_url
from storyfilm.errors import ClaimLost as ClaimLost  # re-exported: callers import them from here
from storyfilm.errors import LedgerError as LedgerError
from storyfilm.ledger_schema import claims, events, jobs, make_engine, migrate, now, picks, transaction, upsert

State = Literal["intent", "submitted", "completed", "done", "failed", "rejected"]
IN_FLIGHT: frozenset[State] = frozenset({"intent", "submitted", "completed"})
_UPDATABLE = frozenset({"job_id", "cost_usd", "video_url", "last_frame_url", "error", "moderation", "result", "run_id"})


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


@dataclass(frozen=True)
class Claim:
    """This run may submit the shot `key` until `until` (epoch seconds, the database's clock), unless renewed."""

    key: str
    run_id: str
    token: str
    until: float
    taken_over: str | None = None  # the run whose expired claim this one replaced: its job may be in flight


@dataclass(frozen=True)
class Held:
    """Another claim on the shot is live: `by` (a run id, on `owner`: host and pid) until `until`."""

    key: str
    by: str
    owner: str
    until: float


class Ledger:
    """Thread-safe and multi-process safe; `path` is a file path, `sqlite:///FILE` or `postgresql+psycopg://...`."""

    def __init__(self, path: str | Path):
        self.url = ledger_url.parse(path)
        self.path: Path | None = ledger_url.sqlite_file(self.url)
        self.location = ledger_url.redact(self.url) if self.path is None else str(self.path)
        # SQLite has one writer at a time: the threads of one process queue here rather than on its busy timeout.
        self._lock: threading.Lock | nullcontext[None] = threading.Lock() if self.path else nullcontext()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._engine = make_engine(self.url)
            self.schema = migrate(self._engine)
        except (SQLAlchemyError, LedgerError) as exc:
            if self.path is not None and isinstance(exc, DBAPIError) and "not a database" in str(exc.orig):
                raise LedgerError(f"{self.path}: not a readable ledger ({exc.orig}); move it aside to start a new "
                                  "one (jobs recorded in it would then be submitted again)") from None
            raise self._error(exc, "cannot open the ledger") from None

    @property
    def engine(self) -> sa.Engine:
        """For tools that move whole tables (`storyfilm ledger copy`); runs use the methods below."""
        return self._engine

    def close(self) -> None:
        """Close pooled connections (PostgreSQL); the ledger opens new ones if used again."""
        self._engine.dispose()

    def _error(self, exc: BaseException, doing: str) -> LedgerError:
        if isinstance(exc, LedgerError):
            return exc
        detail = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
        return LedgerError(f"{self.location}: {doing}: {ledger_url.scrub(detail.strip(), self.url)}")

    @contextmanager
    def _db(self, write: bool = True) -> Iterator[sa.Connection]:
        """One committed transaction (rolled back if the block raises)."""
        try:
            with self._lock, transaction(self._engine, write) as db:
                yield db
        except DBAPIError as exc:
            raise self._error(exc, "the database failed") from None

    # --- reading ---------------------------------------------------------------------------------

    def latest(self, key: str) -> Record | None:
        with self._db(write=False) as db:
            row = db.execute(sa.select(jobs).where(jobs.c.key == key).order_by(jobs.c.attempt.desc()).limit(1)).first()
            return _record(row) if row else None

    def records(self) -> list[Record]:
        with self._db(write=False) as db:
            return [_record(r) for r in db.execute(sa.select(jobs).order_by(jobs.c.created_at, jobs.c.key,
                                                                              jobs.c.attempt))]

    def spent(self, run_id: str | None = None) -> float:
        """Money committed (jobs that exist or may exist), for one run or in all."""
        query = sa.select(sa.func.coalesce(sa.func.sum(jobs.c.cost_usd), 0)).where(
            jobs.c.state.in_(("intent", "submitted", "completed", "done")))
        if run_id is not None:
            query = query.where(jobs.c.run_id == run_id)
        with self._db(write=False) as db:
            return float(db.execute(query).scalar_one())

    def events(self, key: str | None = None) -> list[tuple[str, int, str, str, str | None]]:
        query = sa.select(events.c.key, events.c.attempt, events.c.shot_id, events.c.state, events.c.detail)
        if key:
            query = query.where(events.c.key == key)
        with self._db(write=False) as db:
            return [tuple(r) for r in db.execute(query.order_by(events.c.id))]

    # --- writing ---------------------------------------------------------------------------------

    def intent(self, *, key: str, shot_id: str, provider: str, model: str, run_id: str,
               prepared: dict[str, Any], cost_usd: float, claim: Claim | None = None) -> Record:
        """Record that a submit is about to be sent (with a fresh attempt number and idempotency key).

        With `claim`, only while that claim is still this run's (else ClaimLost, and nothing is recorded).
        """
        now_s = time.time()
        with self._db() as db:
            if db.dialect.name == "postgresql":  # two runs numbering the same shot's attempt wait in turn
                db.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(key, 0))))
            if claim is not None:
                self._check(db, claim)
            attempt = int(db.execute(sa.select(sa.func.coalesce(sa.func.max(jobs.c.attempt) + 1, 0))
                                     .where(jobs.c.key == key)).scalar_one())
            row = db.execute(jobs.insert().values(
                key=key, attempt=attempt, shot_id=shot_id, provider=provider, model=model, state="intent",
                run_id=run_id, idempotency_key=f"storyfilm-{key[:40]}-{attempt}", prepared=json.dumps(prepared),
                cost_usd=cost_usd, created_at=now_s, updated_at=now_s).returning(*jobs.c)).one()
            _event(db, key, attempt, shot_id, "intent", f"{provider} {model} ${cost_usd:.2f}")
            return _record(row)

    def update(self, key: str, attempt: int, state: State, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"unknown ledger fields {unknown}")
        if "result" in fields and fields["result"] is not None:
            fields["result"] = json.dumps(fields["result"])
        if "moderation" in fields:
            fields["moderation"] = int(bool(fields["moderation"]))
        with self._db() as db:
            shot = db.execute(jobs.update().where(jobs.c.key == key, jobs.c.attempt == attempt)
                              .values(state=state, updated_at=time.time(), **fields)
                              .returning(jobs.c.shot_id)).scalar()
            if shot is None:
                raise LedgerError(f"no ledger record {key[:12]}#{attempt}")
            detail = fields.get("job_id") or fields.get("error") or fields.get("video_url")
            _event(db, key, attempt, shot, state, str(detail) if detail else None)

    # --- picks (takes.py) --------------------------------------------------------------------------

    def picks(self) -> dict[str, int]:
        """Every recorded choice among takes: pick key -> take."""
        with self._db(write=False) as db:
            return {r.key: int(r.take) for r in db.execute(sa.select(picks.c.key, picks.c.take))}

    def pick(self, key: str) -> tuple[int, str, list[dict[str, Any]]] | None:
        """The recorded choice for `key`: take, how it was chosen and the scores of every take."""
        with self._db(write=False) as db:
            row = db.execute(sa.select(picks).where(picks.c.key == key)).first()
        return (int(row.take), str(row.how), json.loads(row.scores)) if row else None

    def record_pick(self, *, key: str, shot_id: str, take: int, how: str, scores: list[dict[str, Any]],
                    run_id: str) -> None:
        """Record (or change) the take the film uses; the history stays in `events`."""
        with self._db() as db:
            stmt = upsert(db.dialect, picks).values(key=key, shot_id=shot_id, take=take, how=how,
                                                    scores=json.dumps(scores), run_id=run_id, at=time.time())
            db.execute(stmt.on_conflict_do_update(index_elements=[picks.c.key], set_={
                "take": stmt.excluded.take, "how": stmt.excluded.how, "scores": stmt.excluded.scores,
                "run_id": stmt.excluded.run_id, "at": stmt.excluded.at}))
            _event(db, key, 0, shot_id, "picked", f"take {take} ({how})")

    # --- claims ----------------------------------------------------------------------------------

    def claim(self, key: str, run_id: str, lease_s: float, owner: str | None = None) -> Claim | Held:
        """Take the shot `key` for `run_id` for `lease_s` seconds, unless another claim on it is live.

        A claim whose lease has run out is taken over (`taken_over` names its run). A run that asks again
        while its own claim is live is refused like any other: claims are told apart by token, not by run.
        """
        if lease_s <= 0:
            raise ValueError("a lease lasts more than 0 s")
        owner = owner or f"{socket.gethostname()} pid {os.getpid()}"
        token = uuid.uuid4().hex
        for _ in range(5):  # the holder may release between our attempt and our look: try again
            with self._db() as db:
                clock = now(db.dialect)
                stmt = upsert(db.dialect, claims).values(key=key, run_id=run_id, owner=owner, token=token,
                                                         claimed_at=clock, until=clock + lease_s, previous_run=None)
                won = db.execute(stmt.on_conflict_do_update(
                    index_elements=[claims.c.key],
                    set_={"run_id": run_id, "owner": owner, "token": token, "claimed_at": clock,
                          "until": clock + lease_s, "previous_run": claims.c.run_id},
                    where=claims.c.until < clock,
                ).returning(claims.c.until, claims.c.previous_run)).first()
                if won is not None:
                    return Claim(key, run_id, token, float(won.until), won.previous_run)
                held = self._holder(db, key)
            if held is not None:
                return held
        raise LedgerError(f"{self.location}: the claim on {key[:12]} kept changing hands; try again")

    def renew(self, claim: Claim, lease_s: float) -> Claim:
        """Extend the lease from now; ClaimLost if another run took the shot over meanwhile."""
        with self._db() as db:
            clock = now(db.dialect)
            until = db.execute(claims.update().where(claims.c.key == claim.key, claims.c.token == claim.token)
                               .values(until=clock + lease_s).returning(claims.c.until)).scalar()
            if until is None:
                raise self._lost(db, claim)
        return Claim(claim.key, claim.run_id, claim.token, float(until), claim.taken_over)

    def release(self, claim: Claim) -> bool:
        """Give the shot up (after its result is recorded); False if it was no longer this claim's."""
        with self._db() as db:
            gone = db.execute(claims.delete().where(claims.c.key == claim.key, claims.c.token == claim.token)
                              .returning(claims.c.key)).first()
        return gone is not None

    def holder(self, key: str) -> Held | None:
        """The live claim on `key`, if any (a waiting run looks here between polls of the record)."""
        with self._db(write=False) as db:
            return self._holder(db, key)

    def _holder(self, db: sa.Connection, key: str) -> Held | None:
        row = db.execute(sa.select(claims.c.run_id, claims.c.owner, claims.c.until)
                         .where(claims.c.key == key, claims.c.until >= now(db.dialect))).first()
        return Held(key, row.run_id, row.owner, float(row.until)) if row else None

    def _check(self, db: sa.Connection, claim: Claim) -> None:
        """Inside a write: the claim is still this token's, and stays so until the transaction ends."""
        mine = db.execute(sa.select(claims.c.key).where(claims.c.key == claim.key, claims.c.token == claim.token)
                          .with_for_update()).first()
        if mine is None:
            raise self._lost(db, claim)

    def _lost(self, db: sa.Connection, claim: Claim) -> ClaimLost:
        held = self._holder(db, claim.key)
        now_by = f"; run {held.by} ({held.owner}) holds it now" if held else ""
        return ClaimLost(f"run {claim.run_id} no longer holds its claim on shot {claim.key[:12]} (released, or its "
                         f"lease ran out and another run took it over{now_by}): it must not submit it")


def existing_ledger(target: str | Path) -> Ledger | None:
    """The ledger at `target`, or None where its file does not exist yet (looking creates nothing)."""
    path = ledger_url.sqlite_file(ledger_url.parse(target))
    return None if path is not None and not path.exists() else Ledger(target)


def _event(db: sa.Connection, key: str, attempt: int, shot_id: str, state: str, detail: str | None) -> None:
    db.execute(events.insert().values(at=time.time(), key=key, attempt=attempt, shot_id=shot_id, state=state,
                                      detail=detail))


def _record(row: sa.Row[Any]) -> Record:
    m = row._mapping
    return Record(
        key=m["key"], attempt=m["attempt"], shot_id=m["shot_id"], provider=m["provider"],
        model=m["model"], state=m["state"], run_id=m["run_id"], idempotency_key=m["idempotency_key"],
        prepared=json.loads(m["prepared"]) if m["prepared"] else None, job_id=m["job_id"],
        cost_usd=float(m["cost_usd"]), video_url=m["video_url"], last_frame_url=m["last_frame_url"],
        error=m["error"], moderation=bool(m["moderation"]),
        result=json.loads(m["result"]) if m["result"] else None,
        created_at=m["created_at"], updated_at=m["updated_at"],
    )



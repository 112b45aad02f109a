"""The ledger at a database URL: the same behaviour on a SQLite file and on a real PostgreSQL server, the
upgrade of a file written by the storyfilm before schema versions, claims, copies, and no password shown.

tests/data/ledger-v1.sqlite was written by storyfilm at commit 76889a1 (before schema versions): a real run of
three wavespeed shots against the emulator (done, with results), then one shot failed by moderation, one
intent (killed around its submit) and one submitted job, through that commit's Ledger.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from storyfilm.errors import ClaimLost, LedgerError
from storyfilm.ledger import Claim, Held, Ledger, existing_ledger
from storyfilm.ledger_copy import copy_history
from storyfilm.ledger_url import LEDGER_ENV, absolute, has_password, ledger_location, parse, redact, scrub

from .pgcluster import PASSWORD

OLD = Path(__file__).parent / "data" / "ledger-v1.sqlite"


def record(book: Ledger, key: str, shot: str, run: str = "r1", cost: float = 1.0) -> int:
    rec = book.intent(key=key, shot_id=shot, provider="wavespeed", model="standard", run_id=run,
                      prepared={"body": {"prompt": shot}}, cost_usd=cost)
    return rec.attempt


def raw(path: Path, table: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()  # noqa: S608
    finally:
        db.close()


def columns(path: Path, table: str) -> list[tuple[str, bool, int, str]]:
    """name, not null, primary-key position, type affinity (SQLite's rules: REAL for REAL, FLOAT, DOUBLE)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(f"PRAGMA table_info({table})").fetchall()
    finally:
        db.close()
    return [(r[1], bool(r[3]), r[5], "REAL" if r[2] in ("REAL", "FLOAT", "DOUBLE") else r[2]) for r in rows]


# --- the same behaviour on both -------------------------------------------------------------------


def test_states_attempts_spend_and_events(ledger_at: str) -> None:
    book = Ledger(ledger_at)
    first = book.intent(key="k", shot_id="s", provider="apiframe", model="fast", run_id="r1",
                        prepared={"model": "seedance-2-fast"}, cost_usd=0.8)
    assert (first.attempt, first.state, first.prepared) == (0, "intent", {"model": "seedance-2-fast"})
    book.update("k", 0, "submitted", job_id="J1")
    book.update("k", 0, "failed", error="moderation", moderation=True, cost_usd=0.0)
    second = book.intent(key="k", shot_id="s", provider="apiframe", model="fast", run_id="r2", prepared={},
                         cost_usd=0.8)
    assert second.attempt == 1 and second.idempotency_key != first.idempotency_key
    book.update("k", 1, "done", job_id="J2", result={"segment": "shots/s.mp4", "frames": 96})
    again = Ledger(ledger_at)  # another connection (another engine) sees every committed change
    latest = again.latest("k")
    assert latest is not None and (latest.attempt, latest.state, latest.job_id) == (1, "done", "J2")
    assert latest.result == {"segment": "shots/s.mp4", "frames": 96}
    failed = [r for r in again.records() if r.attempt == 0][0]
    assert failed.moderation is True and failed.state == "failed" and failed.cost_usd == 0.0
    assert again.spent() == pytest.approx(0.8) and again.spent("r1") == 0.0 and again.spent("r2") == pytest.approx(0.8)
    assert [e[3] for e in again.events("k")] == ["intent", "submitted", "failed", "intent", "done"]
    with pytest.raises(LedgerError, match="no ledger record"):
        book.update("nope", 0, "done")
    book.close()
    again.close()


# --- claims (one process; tests/test_claims.py races processes) ------------------------------------


def test_a_claim_is_exclusive_until_released_or_expired(ledger_at: str) -> None:
    book = Ledger(ledger_at)
    mine = book.claim("k", "run-a", lease_s=30)
    assert isinstance(mine, Claim) and mine.taken_over is None
    for run in ("run-b", "run-a"):  # the same run asking again is refused too: claims go by token
        other = book.claim("k", run, lease_s=30)
        assert isinstance(other, Held) and other.by == "run-a" and other.until == pytest.approx(mine.until)
    assert book.holder("k") == Held("k", "run-a", other.owner, mine.until)
    assert "pid" in other.owner
    renewed = book.renew(mine, lease_s=60)
    assert renewed.token == mine.token and renewed.until > mine.until + 20
    assert book.release(renewed) and book.holder("k") is None
    assert not book.release(renewed)  # once only
    assert isinstance(book.claim("k", "run-b", lease_s=30), Claim)
    book.close()


def test_an_expired_claim_is_taken_over_and_its_old_holder_cannot_submit(ledger_at: str) -> None:
    book = Ledger(ledger_at)
    dead = book.claim("k", "run-dead", lease_s=0.2)
    assert isinstance(dead, Claim)
    time.sleep(0.4)
    assert book.holder("k") is None  # expired: nobody holds it, though its row is still there
    taker = book.claim("k", "run-b", lease_s=30)
    assert isinstance(taker, Claim) and taker.taken_over == "run-dead"
    # the stalled holder wakes up: it may not renew, record an intent or release the taker's claim
    with pytest.raises(ClaimLost, match="run run-b"):
        book.renew(dead, lease_s=30)
    with pytest.raises(ClaimLost):
        book.intent(key="k", shot_id="s", provider="wavespeed", model="standard", run_id="run-dead",
                    prepared={}, cost_usd=1.0, claim=dead)
    assert book.latest("k") is None and book.events("k") == []  # nothing recorded for it
    assert not book.release(dead) and book.holder("k") is not None
    rec = book.intent(key="k", shot_id="s", provider="wavespeed", model="standard", run_id="run-b", prepared={},
                      cost_usd=1.0, claim=taker)
    assert rec.attempt == 0 and rec.run_id == "run-b"
    book.close()


def test_a_renewed_claim_outlives_its_first_lease(ledger_at: str) -> None:
    book = Ledger(ledger_at)
    mine = book.claim("k", "run-a", lease_s=0.3)
    assert isinstance(mine, Claim)
    book.renew(mine, lease_s=30)
    time.sleep(0.5)  # past the first lease
    held = book.claim("k", "run-b", lease_s=30)
    assert isinstance(held, Held) and held.by == "run-a"
    with pytest.raises(ValueError, match="more than 0"):
        book.claim("k", "run-b", lease_s=0)
    book.close()


# --- one machine: today's file ---------------------------------------------------------------------


def test_a_fresh_file_has_todays_tables_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    assert Ledger(path).schema == (0, 3)
    old = tmp_path / "old.sqlite"
    shutil.copy(OLD, old)
    for table in ("jobs", "events"):
        assert columns(path, table) == columns(old, table)
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0]
        assert "AUTOINCREMENT" in sql  # event ids never reused, as before
        assert db.execute("SELECT value FROM ledger_meta WHERE name = 'schema_version'").fetchone() == ("3",)
    finally:
        db.close()


def test_a_ledger_file_written_before_schema_versions_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    shutil.copy(OLD, path)
    jobs_before, events_before = raw(path, "jobs"), raw(path, "events")
    assert len(jobs_before) == 6 and len(events_before) == 18
    book = Ledger(path)
    assert book.schema == (1, 3)
    assert raw(path, "jobs") == jobs_before and raw(path, "events") == events_before  # not a byte of history lost
    states = {r.shot_id: r.state for r in book.records()}
    assert states == {"a1": "done", "a2": "done", "b1": "done", "x1": "failed", "x2": "intent", "x3": "submitted"}
    done = [r for r in book.records() if r.state == "done"]
    assert all(r.result and r.result["sha256"] and r.job_id and r.video_url for r in done)
    assert book.spent() == pytest.approx(sum(r.cost_usd for r in book.records() if r.billed))
    # it works as a new ledger does: the next attempt of a shot is numbered after the old ones, claims exist
    x1 = next(r for r in book.records() if r.shot_id == "x1")
    assert record(book, x1.key, "x1") == 1
    assert isinstance(book.claim(x1.key, "run-new", 30), Claim)
    assert Ledger(path).schema == (3, 3)  # upgraded once


def test_a_ledger_from_a_newer_storyfilm_is_refused(ledger_at: str) -> None:
    Ledger(ledger_at).close()
    engine = sa.create_engine(parse(ledger_at))
    with engine.begin() as db:
        db.execute(sa.text("UPDATE ledger_meta SET value = '4' WHERE name = 'schema_version'"))
    engine.dispose()
    with pytest.raises(LedgerError, match="version 4, written by a newer storyfilm"):
        Ledger(ledger_at)


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="not a readable ledger"):
        Ledger(path)


# --- locations ---------------------------------------------------------------------------------------


def test_where_the_ledger_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    film = tmp_path / "out" / "film"
    pg = "postgresql+psycopg://team@db.internal:5432/films"
    assert ledger_location(film, None, {}) == film / "ledger.sqlite"
    assert ledger_location(film, None, {LEDGER_ENV: pg}) == pg
    assert ledger_location(film, "other.sqlite", {LEDGER_ENV: pg}) == "other.sqlite"  # --ledger first
    monkeypatch.setenv(LEDGER_ENV, pg)
    assert ledger_location(film) == pg  # the process environment by default
    assert parse("postgresql://team@db:5432/films").drivername == "postgresql+psycopg"
    assert parse("postgres://team@db/films").drivername == "postgresql+psycopg"
    assert parse("sqlite:///out/l.sqlite").database == "out/l.sqlite"
    assert parse(tmp_path / "l.sqlite").database == str(tmp_path / "l.sqlite")
    monkeypatch.chdir(tmp_path)
    assert absolute("l.sqlite") == str(tmp_path / "l.sqlite")
    assert absolute("sqlite:///l.sqlite") == f"sqlite:///{tmp_path / 'l.sqlite'}"
    assert absolute(pg) == pg
    for bad, allowed in (("mysql://u@h/db", "SQLite files or PostgreSQL"), ("sqlite://", "in memory"),
                         ("postgresql+psycopg2://u@h/db", "SQLite files or PostgreSQL")):
        with pytest.raises(LedgerError, match=allowed):
            Ledger(bad)


def test_passwords_are_never_shown() -> None:
    url = "postgresql+psycopg://team:p%40ss-W0rd@db:5432/films?sslpassword=k3y-Secret"
    assert has_password(url) and not has_password("postgresql://team@db/films") and not has_password("a.sqlite")
    shown = redact(url)
    assert "W0rd" not in shown and "k3y" not in shown and shown.startswith("postgresql+psycopg://team:***@db:5432")
    assert scrub("auth failed for p@ss-W0rd (p%40ss-W0rd) and k3y-Secret", url) == "auth failed for *** (***) and ***"
    assert redact("postgresql://team:not a url@") == "postgresql://team:***@"


def test_a_wrong_password_or_server_is_an_error_without_the_password(pg_cluster) -> None:  # type: ignore[no-untyped-def]
    wrong = pg_cluster.url("postgres", password="Wrong-Secret-42")
    with pytest.raises(LedgerError) as caught:
        Ledger(wrong)
    message = str(caught.value)
    assert "password authentication failed" in message and "Wrong-Secret-42" not in message
    assert message.startswith(f"postgresql+psycopg://storyfilm:***@127.0.0.1:{pg_cluster.port}/postgres")
    with pytest.raises(LedgerError) as caught:
        Ledger(f"postgresql+psycopg://storyfilm:{PASSWORD}@127.0.0.1:1/films")  # nothing listens there
    assert PASSWORD not in str(caught.value) and "cannot open the ledger" in str(caught.value)
    ok = Ledger(pg_cluster.url("postgres"))
    assert PASSWORD not in ok.location and "***" in ok.location
    ok.close()


# --- copies ------------------------------------------------------------------------------------------


def test_a_films_history_moves_to_postgresql_and_back(tmp_path: Path, pg_url: str) -> None:
    old = tmp_path / "old.sqlite"
    shutil.copy(OLD, old)
    src, dst = Ledger(old), Ledger(pg_url)
    done = copy_history(src, dst)
    assert (done.jobs, done.events, done.jobs_there, done.events_there) == (6, 18, 0, 0)
    assert dst.records() == src.records() and dst.events() == src.events()
    again = copy_history(src, dst)  # idempotent
    assert (again.jobs, again.events, again.jobs_there, again.events_there) == (0, 0, 6, 18)
    # the team's database moves on; the file's row is now older: copying it again would overwrite that
    x3 = next(r for r in dst.records() if r.shot_id == "x3")
    dst.update(x3.key, x3.attempt, "completed", video_url="https://host/x3.mp4")
    record(src, "k-new", "new")
    with pytest.raises(LedgerError, match=r"refusing to copy .* 1 job\(s\) are recorded differently") as caught:
        copy_history(src, dst)
    assert "shot x3" in str(caught.value) and "'submitted' here, 'completed' there" in str(caught.value)
    assert dst.latest("k-new") is None and len(dst.events()) == 19  # nothing copied
    back = Ledger(tmp_path / "back.sqlite")
    assert copy_history(dst, back).jobs == 6
    assert back.records() == dst.records() and back.events() == dst.events()
    assert existing_ledger(tmp_path / "missing.sqlite") is None and not (tmp_path / "missing.sqlite").exists()
    src.close()
    dst.close()

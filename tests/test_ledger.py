"""The ledger: every state change durable, attempts numbered, spend counted, unreadable files refused."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from storyfilm.ledger import Ledger, LedgerError


def record_job(path: Path, key: str, n: int) -> None:
    book = Ledger(path)
    for i in range(n):
        rec = book.intent(key=f"{key}-{i}", shot_id=f"s{i}", provider="wavespeed", model="standard", run_id=key,
                          prepared={"body": {"prompt": "p"}}, cost_usd=1.0)
        book.update(rec.key, rec.attempt, "submitted", job_id=f"job-{key}-{i}")


def test_states_attempts_and_spend(tmp_path: Path) -> None:
    book = Ledger(tmp_path / "l.sqlite")
    first = book.intent(key="k", shot_id="s", provider="apiframe", model="fast", run_id="r1",
                        prepared={"model": "seedance-2-fast"}, cost_usd=0.8)
    assert (first.attempt, first.state) == (0, "intent") and first.idempotency_key.endswith("-0")
    book.update("k", 0, "submitted", job_id="J1")
    book.update("k", 0, "failed", error="moderation", moderation=True, cost_usd=0.0)
    second = book.intent(key="k", shot_id="s", provider="apiframe", model="fast", run_id="r2",
                         prepared={}, cost_usd=0.8)
    assert second.attempt == 1 and second.idempotency_key != first.idempotency_key
    book.update("k", 1, "submitted", job_id="J2")
    latest = Ledger(tmp_path / "l.sqlite").latest("k")  # a new connection sees it all
    assert latest is not None and (latest.attempt, latest.state, latest.job_id) == (1, "submitted", "J2")
    assert book.spent() == pytest.approx(0.8) and book.spent("r1") == 0.0
    assert [e[3] for e in book.events("k")] == ["intent", "submitted", "failed", "intent", "submitted"]


@pytest.mark.slow
def test_concurrent_writers_from_several_processes(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(path)
    procs = [multiprocessing.get_context("spawn").Process(target=record_job, args=(path, f"p{i}", 20))
             for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    book = Ledger(path)
    assert len(book.records()) == 60 and book.spent() == pytest.approx(60.0)


def test_an_unreadable_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="not a readable ledger"):
        Ledger(path)

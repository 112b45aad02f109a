"""Claims under real concurrency: separate processes (each with its own connections) race for the same shot,
round after round, against a real PostgreSQL server and against a SQLite file. Exactly one wins each fresh
shot; a claim whose holder died (lease run out) is taken over by exactly one, naming the dead run; a claim
renewed past its first lease is taken by none.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import pytest

from storyfilm.ledger import Claim, Ledger

pytestmark = pytest.mark.slow

RACERS = 4
ROUNDS = 30
MODES = ("fresh", "expired", "renewed")


def racer(target: str, barrier: Barrier, results: Queue[tuple[int, str, bool, str | None]]) -> None:
    book = Ledger(target)
    run = f"run-{os.getpid()}"
    for i in range(ROUNDS):
        barrier.wait(timeout=300)
        got = book.claim(f"shot-{i}", run, lease_s=60)
        if isinstance(got, Claim):
            results.put((i, run, True, got.taken_over))
        else:
            results.put((i, run, False, got.by))
    book.close()


def test_exactly_one_of_several_processes_wins_each_claim(ledger_at: str) -> None:
    book = Ledger(ledger_at)  # the schema exists before the racers start
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(RACERS + 1)
    results: Queue[tuple[int, str, bool, str | None]] = ctx.Queue()
    procs = [ctx.Process(target=racer, args=(ledger_at, barrier, results)) for _ in range(RACERS)]
    for p in procs:
        p.start()
    try:
        for i in range(ROUNDS):
            mode, key = MODES[i % 3], f"shot-{i}"
            if mode != "fresh":  # a run that claimed the shot earlier: dead (lease out) or alive (renewed)
                earlier = book.claim(key, f"run-{mode}", lease_s=0.2)
                assert isinstance(earlier, Claim)
                if mode == "renewed":
                    book.renew(earlier, lease_s=60)
                time.sleep(0.4)
            barrier.wait(timeout=300)
            got = [results.get(timeout=300) for _ in range(RACERS)]
            assert sorted(g[0] for g in got) == [i] * RACERS
            won = [g for g in got if g[2]]
            if mode == "renewed":
                assert won == [] and {g[3] for g in got} == {"run-renewed"}, got
                continue
            assert len(won) == 1, f"round {i} ({mode}): {len(won)} winners: {got}"
            assert won[0][3] == (None if mode == "fresh" else "run-expired")
            assert {g[3] for g in got if not g[2]} == {won[0][1]}  # the losers see the winner
            held = book.holder(key)
            assert held is not None and held.by == won[0][1]
    finally:
        for p in procs:
            p.join(60)
    assert [p.exitcode for p in procs] == [0] * RACERS
    book.close()


def record_many(target: str, key: str, n: int) -> None:
    book = Ledger(target)
    for _ in range(n):
        rec = book.intent(key=key, shot_id="s", provider="wavespeed", model="standard", run_id=str(os.getpid()),
                          prepared={}, cost_usd=1.0)
        book.update(key, rec.attempt, "submitted", job_id=f"job-{key}-{rec.attempt}")
    book.close()


def test_attempts_stay_numbered_when_processes_record_the_same_shot_at_once(ledger_at: str) -> None:
    """Without claims (an older storyfilm beside a newer one), two intents on one shot still get two attempts."""
    Ledger(ledger_at).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=record_many, args=(ledger_at, "same", 15)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    book = Ledger(ledger_at)
    assert sorted(r.attempt for r in book.records()) == list(range(45))
    assert sorted(r.job_id or "" for r in book.records()) == sorted(f"job-same-{i}" for i in range(45))
    assert book.spent() == 45.0
    book.close()

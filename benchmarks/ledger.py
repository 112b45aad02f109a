"""The ledger's overhead per shot: a SQLite file against a PostgreSQL server, in the same run.

    python -m benchmarks.ledger [--repeat 3] [--shots 100]
    python -m benchmarks --only ledger --out benchmarks/ledger-results.md   # how ledger-results.md is written

One shot's ledger work, as a run with claims does it: two reads of the shot's record (is it reusable? what
state is it in?), claim, intent (checking the claim), submitted, completed, done (with a result of the size a
real one has), release, and one more read (the next run's plan). Measured one shot after another, and with
four threads at once (four chains). SQLite is a file on this machine's disk (WAL, synchronous=FULL);
PostgreSQL is a throwaway server (Debian's, fsync on) on loopback, started by the benchmark. A team's server
is across a network: the round trips per shot, counted here, times its round-trip time is what that adds.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

from benchmarks.common import Section, log, repeat_main, table
from storyfilm.ledger import Claim, Ledger

RESULT = {"id": "s1", "key": "k" * 64, "segment": "output/film/shots/s1.mp4",
          "last_frame": "output/film/shots/s1.last.png", "new_from_frame": 1, "frames": 121, "fps": 24.0,
          "has_audio": True, "provider": "wavespeed", "job_id": "0123456789abcdef0123456789abcdef", "cost_usd": 0.6,
          "seconds": 61.2, "reused": False, "last_frame_url": "https://cdn.example/outputs/0123456789abcdef.png",
          "sha256": "a" * 64, "last_frame_sha256": "b" * 64}
PREPARED = {"url": "https://api.example/v3/bytedance/seedance-v2/i2v", "body": {
    "prompt": "The keeper climbs the spiral stairs, lamp in hand; the camera follows him up." * 2,
    "image": "https://cdn.example/uploads/0123456789abcdef.png", "duration": 5, "resolution": "720p"}}


def one_shot(book: Ledger, key: str, run_id: str) -> None:
    """The ledger calls of one shot generated from scratch (see the module's docstring)."""
    book.latest(key)
    book.latest(key)
    claim = book.claim(key, run_id, lease_s=120)
    assert isinstance(claim, Claim)
    rec = book.intent(key=key, shot_id=key[:8], provider="wavespeed", model="standard", run_id=run_id,
                      prepared=PREPARED, cost_usd=0.6, claim=claim)
    book.update(key, rec.attempt, "submitted", job_id="0123456789abcdef0123456789abcdef")
    book.update(key, rec.attempt, "completed", video_url="https://cdn.example/outputs/0123456789abcdef.mp4")
    book.update(key, rec.attempt, "done", result=RESULT)
    book.release(claim)
    book.latest(key)


def round_trips(book: Ledger) -> Counter[str]:
    """Count what reaches the database driver: statements, transactions, connection checkouts."""
    seen: Counter[str] = Counter()
    engine = book.engine
    sa.event.listen(engine, "before_cursor_execute", lambda *_a, **_k: seen.update(["statements"]))
    sa.event.listen(engine, "commit", lambda *_a: seen.update(["transactions"]))
    sa.event.listen(engine, "checkout", lambda *_a: seen.update(["checkouts"]))
    return seen


def timed(book: Ledger, shots: int, threads: int, tag: str) -> float:
    """Seconds per shot for `shots` shots, `threads` at a time."""
    keys = [f"{tag}-{i:05d}-" + "0" * 40 for i in range(shots)]
    start = time.perf_counter()
    if threads == 1:
        for key in keys:
            one_shot(book, key, tag)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda k: one_shot(book, k, tag), keys))
    return (time.perf_counter() - start) / shots


def per_call(book: Ledger, n: int, tag: str) -> dict[str, float]:
    """Median milliseconds of each kind of call, one at a time."""
    names = ("latest (read)", "claim", "intent (with the claim)", "update (a state change)", "release")
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        key = f"{tag}-call-{i:05d}-" + "0" * 40
        marks = [time.perf_counter()]
        book.latest(key)
        marks.append(time.perf_counter())
        claim = book.claim(key, tag, 120)
        assert isinstance(claim, Claim)
        marks.append(time.perf_counter())
        rec = book.intent(key=key, shot_id="s", provider="wavespeed", model="standard", run_id=tag, prepared=PREPARED,
                          cost_usd=0.6, claim=claim)
        marks.append(time.perf_counter())
        book.update(key, rec.attempt, "done", result=RESULT)
        marks.append(time.perf_counter())
        book.release(claim)
        marks.append(time.perf_counter())
        for name, start, end in zip(names, marks, marks[1:], strict=False):  # 5 names, 6 marks
            samples[name].append((end - start) * 1000)
    return {name: statistics.median(v) for name, v in samples.items()}


def run(repeat: int, shots: int = 100) -> list[Section]:
    from tests.pgcluster import cluster

    section = Section("Ledger: overhead per shot, PostgreSQL vs SQLite")
    seq: dict[str, list[float]] = {"SQLite": [], "PostgreSQL": []}
    par: dict[str, list[float]] = {"SQLite": [], "PostgreSQL": []}
    trips: dict[str, Counter[str]] = {}
    calls: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-ledger-") as tmp, cluster(fsync=True) as server, \
            server.database() as url:
        books = {"SQLite": Ledger(Path(tmp) / "ledger.sqlite"), "PostgreSQL": Ledger(url)}
        for name, book in books.items():  # warm up: connections, the schema's first look, the pool
            timed(book, 10, 1, f"warm-{name}")
            seen = round_trips(book)
            timed(book, 10, 1, f"count-{name}")
            trips[name] = Counter({k: v // 10 for k, v in seen.items()})
        for r in range(repeat):  # interleaved: both see the same load
            log(f"ledger: round {r + 1} of {repeat}, {shots} shots each way")
            for name, book in books.items():
                seq[name].append(timed(book, shots, 1, f"seq{r}-{name}"))
                par[name].append(timed(book, shots, 4, f"par{r}-{name}"))
        for name, book in books.items():
            calls[name] = per_call(book, shots, f"calls-{name}")
            book.close()

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.2f} ({min(values) * 1000:.2f}-{max(values) * 1000:.2f})"

    rows = []
    for label, data in (("one shot at a time", seq), ("4 shots at once (threads)", par)):
        ratio = statistics.median(data["PostgreSQL"]) / statistics.median(data["SQLite"])
        rows.append((label, ms(data["SQLite"]), ms(data["PostgreSQL"]), f"{ratio:.2f}x"))
    section.add(*table(("shots", "SQLite ms/shot, median (min-max)", "PostgreSQL ms/shot", "PostgreSQL / SQLite"),
                       rows), "")
    section.add(*table(("call", "SQLite ms", "PostgreSQL ms", "PostgreSQL / SQLite"),
                       [(name, f"{calls['SQLite'][name]:.2f}", f"{calls['PostgreSQL'][name]:.2f}",
                         f"{calls['PostgreSQL'][name] / calls['SQLite'][name]:.2f}x") for name in calls["SQLite"]]), "")
    pg = trips["PostgreSQL"]
    per_shot = pg["statements"] + 2 * pg["transactions"] + pg["checkouts"]
    section.add(
        f"{shots} shots per measurement, {repeat} rounds (SQLite and PostgreSQL interleaved); per call: {shots} of "
        "each, medians. One shot = 3 reads, claim, intent, 3 state changes, release: "
        f"{trips['SQLite']['transactions']} transactions.",
        f"- Round trips to PostgreSQL per shot: {pg['statements']} statements in {pg['transactions']} transactions "
        f"(BEGIN and COMMIT each one more) and {pg['checkouts']} connection checks (pool pre-ping): about "
        f"{per_shot}. Across a network with a 1 ms round trip that adds about {per_shot} ms per shot; the "
        "loopback numbers above are the server's own cost.",
        "- For scale: a hosted shot takes a minute or more to generate, and storyfilm's orchestration costs "
        "0.36-1 s per shot (benchmarks/results.md).")
    return [section]


if __name__ == "__main__":
    repeat_main(run, __doc__ or "", 3)

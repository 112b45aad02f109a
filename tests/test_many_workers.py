"""Many workers, one film: runs in separate processes with separate folders, sharing only a PostgreSQL ledger
(and, where said, a bucket), against the emulator with latency. Each shot is paid once, whoever runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from storyfilm.assets import file_digest

from .helpers import REPO, emulator_stats, point_hosts_at, write_storyboard

pytestmark = pytest.mark.slow

BOARD = """\
version: 1
title: Many
provider: apiframe
defaults: {duration: 4, resolution: 480p, aspect_ratio: "1:1", audio: false}
shots:
  - id: a1
    prompt: Dawn over the harbour.
  - id: a2
    prompt: The keeper walks the pier.
  - id: b1
    cut: true
    prompt: A ship in the storm.
"""
SHOTS = 3
INTERVAL = 0.5  # the runs' poll interval: a waiting run asks the ledger again this often
LEASE = 30.0  # far longer than a job here: a waiter that waited for the lease instead of the release shows


def spawn(board: Path, out: Path, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """tests/run_film.py: loads, then waits for a line on stdin; its own process group."""
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "run_film.py"), str(board), str(out), "--wait"],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"),
                            text=True, start_new_session=True)


def events(log: Path) -> list[tuple[float, str]]:
    return [(float(t), m) for t, m in (line.split(" ", 1) for line in log.read_text().splitlines()
                                       if re.match(r"^\d+\.\d+ ", line))]


def worker_env(emulator_url: str, pg_url: str, monkeypatch: pytest.MonkeyPatch, **extra: str) -> dict[str, str]:
    point_hosts_at(emulator_url, monkeypatch)
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "STORYFILM_LEDGER_URL": pg_url,
            "STORYFILM_POLL_INTERVAL": str(INTERVAL), "STORYFILM_CLAIM_LEASE": str(LEASE), **extra}


def test_two_runs_of_one_film_at_once_pay_each_shot_once(emulator, pg_url: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    env = worker_env(emulator.url, pg_url, monkeypatch)
    httpx.post(f"{emulator.url}/_emulator/config", json={"latency": 2.0}).raise_for_status()
    board = write_storyboard(tmp_path, BOARD, "many.yaml")
    runs = [spawn(board, tmp_path / name / "out", env, tmp_path / f"{name}.log") for name in ("A", "B")]
    for proc in runs:  # both loaded: start them at the same moment
        proc.stdin.write("go\n")  # type: ignore[union-attr]
    for proc in runs:
        proc.stdin.flush()  # type: ignore[union-attr]
    for proc, name in zip(runs, "AB", strict=True):
        proc.communicate(timeout=300)
        assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()

    stats = emulator_stats(emulator.url)
    assert stats["submissions"] == SHOTS, stats["submissions"]  # not one shot paid twice
    films = [tmp_path / name / "out" / "many" / "film.mp4" for name in "AB"]
    assert file_digest(films[0]) == file_digest(films[1])

    # Who generated what: every shot by exactly one run, and the other one waited for it, then reused it.
    logs = {name: events(tmp_path / f"{name}.log") for name in "AB"}
    made = {name: {m.split(":")[0] for _, m in log if "of new footage" in m} for name, log in logs.items()}
    assert made["A"].isdisjoint(made["B"]) and made["A"] | made["B"] == {"a1", "a2", "b1"}, made
    lags = []
    for name, log in logs.items():
        other = "B" if name == "A" else "A"
        for when, message in log:
            waited = re.match(r"(\w+): waited [\d.]+ s for run", message)
            if not waited:
                continue
            shot = waited.group(1)
            (done,) = [t for t, m in logs[other] if m.startswith(f"{shot}: ") and "of new footage" in m]
            lags.append(when - done)
    assert lags, "neither run waited for the other: they did not run at the same time"
    # a waiter moves on within a poll interval of the holder's result (load allows a few seconds more), not
    # when the holder's lease would have run out
    assert max(lags) < INTERVAL + 5.0 < LEASE, lags
    print(f"\nshots made by A: {sorted(made['A'])}, by B: {sorted(made['B'])}; a waiter's lag after the holder's "
          f"result: {', '.join(f'{lag:.2f}' for lag in lags)} s (poll interval {INTERVAL} s)")


def test_a_worker_killed_while_polling_is_finished_by_another_on_a_fresh_machine(
        emulator, pg_url: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker A is SIGKILLed while its jobs are polled; B (an empty scratch folder, only the PostgreSQL URL and
    the bucket shared) takes A's claims over once their lease runs out, resumes A's jobs and finishes the film.
    Then a nightly run C on another fresh folder, nothing changed, submits nothing and downloads only the
    bucket's manifest (what the film there was made from: it is up to date, so nothing is assembled)."""
    import signal
    import time

    import boto3

    from storyfilm.ledger import Ledger

    lease = 3.0  # how long A's death holds its shots up
    env = worker_env(emulator.url, pg_url, monkeypatch, STORYFILM_CLAIM_LEASE=str(lease))
    httpx.post(f"{emulator.url}/_emulator/config", json={"latency": 4.0}).raise_for_status()
    board = write_storyboard(tmp_path, BOARD, "many.yaml")
    url = f"s3://{bucket}/films"

    def worker(name: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "run_film.py"), str(board), url],
                                env={**env, "STORYFILM_SCRATCH": str(tmp_path / name)}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=(tmp_path / f"{name}.log").open("w"), text=True,
                                start_new_session=True)
        return proc

    a = worker("A")
    deadline = time.monotonic() + 120
    while emulator_stats(emulator.url)["submissions"] < 2 and a.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # both chains' first shots submitted: A is polling them
    assert a.poll() is None, (tmp_path / "A.log").read_text()
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(30)
    in_flight = emulator_stats(emulator.url)["submissions"]

    b = worker("B")
    b.communicate(timeout=300)
    assert b.returncode == 0, (tmp_path / "B.log").read_text()
    assert emulator_stats(emulator.url)["submissions"] == SHOTS  # A's jobs resumed, not paid again
    took_over = [m for _, m in events(tmp_path / "B.log") if "taking over its job" in m]
    assert len(took_over) == in_flight, took_over

    book = Ledger(pg_url)
    done = {r.shot_id: r.result for r in book.records() if r.state == "done"}
    book.close()
    assert set(done) == {"a1", "a2", "b1"}
    s3 = boto3.client("s3")

    def digest_of(key: str) -> str:
        import hashlib

        return hashlib.sha256(s3.get_object(Bucket=bucket, Key=f"films/many/{key}")["Body"].read()).hexdigest()

    for result in done.values():
        assert result is not None
        assert digest_of(f"shots/.kept/{result['key'][:32]}.mp4") == result["sha256"]
        assert digest_of(f"shots/.kept/{result['key'][:32]}.last.png") == result["last_frame_sha256"]
    film_b = next((tmp_path / "B").rglob("film.mp4"))
    assert digest_of("film.mp4") == file_digest(film_b)
    assert digest_of("manifest.json") == file_digest(film_b.with_name("manifest.json"))

    c = worker("C")  # the nightly run: nothing changed
    c.communicate(timeout=300)
    assert c.returncode == 0, (tmp_path / "C.log").read_text()
    assert emulator_stats(emulator.url)["submissions"] == SHOTS
    downloads = sorted(m.split("downloaded ", 1)[1].split(" ", 1)[0] for _, m in events(tmp_path / "C.log")
                       if ": downloaded " in m)
    assert downloads == ["manifest.json"], downloads
    assert not [p for p in (tmp_path / "C").rglob("*") if p.is_file() and p.suffix in (".mp4", ".png")]
    assert digest_of("film.mp4") == file_digest(film_b)  # left alone
    print(f"\nA killed with {in_flight} jobs in flight; B took them over and finished; the nightly run downloaded "
          f"{downloads} only (the film in the bucket is up to date)")

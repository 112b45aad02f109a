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

"""A run killed (SIGKILL, the whole process group) at many points, over and over, until the film is done.

After every kill: the ledger opens and holds only sane states; every segment it lists as done is on disk
byte for byte (its sha256) and decodes completely with its frame count; no half-written file sits at a
final path under shots/; film.mp4 is absent, the previous complete film or the new complete film. At the
end: every shot was submitted (paid) exactly once, however often its run was killed.

The runs are tests/run_film.py: the flow's core calls without Prefect, so a dozen kills take seconds, not
minutes (a SIGKILL of the real CLI's process group, Prefect's server included, is in test_pay_once.py).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from storyfilm.assets import file_digest
from storyfilm.ledger import Ledger
from storyfilm.media import probe
from storyfilm.storage import kept_paths

from .helpers import REPO, emulator_stats, point_hosts_at, write_storyboard

pytestmark = pytest.mark.slow

BOARD = """\
version: 1
title: Killed
provider: apiframe
defaults: {{duration: 4, resolution: 480p, aspect_ratio: "1:1", audio: false}}
shots:
  - id: a1
    prompt: Dawn over the harbour.
  - id: a2
    prompt: {a2}
  - id: b1
    cut: true
    prompt: {b1}
"""
V1 = BOARD.format(a2="The keeper walks the pier.", b1="A ship in the storm.")
V2 = BOARD.format(a2="The keeper walks the pier at night.", b1="A ship in the storm, lightning.")  # a2, b1 new
FRAMES = 3 * 4 * 24
# When each run is killed: as soon as the host has a new job (around a submit), as soon as an output is
# being downloaded (fetch, checks, keep), or after a random time (polling, assembling, exporting). Once every
# shot is done there is nothing left to submit or download: the remaining kills come at random times.
KILLS = ["submit", 0.3, "download", "download", 0.2, "download", *[None] * 4]
EVERY_SHOT_DONE = "every shot done (assembling or exporting)"


class Audit:
    """What must hold after any kill; counts what it checked."""

    def __init__(self, film_dir: Path):
        self.film_dir = film_dir
        self.decoded: dict[str, int] = {}  # sha256 -> frames, each distinct file decoded once
        self.films: set[str] = set()
        self.done: set[str] = set()

    def frames(self, path: Path, digest: str) -> int:
        if digest not in self.decoded:
            self.decoded[digest] = probe.decode_all(path)[0].video.frames  # type: ignore[union-attr]
        return self.decoded[digest]

    def check(self) -> str:
        """Assert the invariants; the stage the run was in, as the ledger shows it."""
        records = Ledger(self.film_dir / "ledger.sqlite").records()
        assert {r.state for r in records} <= {"intent", "submitted", "completed", "done"}
        done = {r.key: r.result for r in records if r.state == "done"}
        assert self.done <= set(done), "a finished shot is no longer finished"
        self.done = set(done)
        shots = self.film_dir / "shots"
        for key, result in done.items():
            assert result is not None
            kept_video, kept_last = kept_paths(shots, key)
            copies = [p for p in (Path(result["segment"]), kept_video)
                      if p.is_file() and file_digest(p) == result["sha256"]]
            assert copies, f"the segment of {result['id']} ({key[:8]}) is lost"
            assert self.frames(copies[0], result["sha256"]) == result["frames"]
            assert any(p.is_file() and file_digest(p) == result["last_frame_sha256"]
                       for p in (Path(result["last_frame"]), kept_last)), f"the last frame of {result['id']} is lost"
        finished = {r["sha256"] for r in done.values() if r}
        for path in shots.glob("*.mp4"):  # written by atomic renames only: never a partial file
            assert file_digest(path) in finished, f"{path.name} is no finished segment"
        film = self.film_dir / "film.mp4"
        if film.exists():
            digest = file_digest(film)
            assert self.frames(film, digest) == FRAMES
            self.films.add(digest)
        latest = {r.shot_id: r.state for r in records}  # records come oldest first
        waiting = sorted({s for s in latest.values() if s != "done"})
        return f"shots {'/'.join(waiting)}" if waiting else EVERY_SHOT_DONE


def spawn(board: Path, out: Path, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """A run that loads and then waits for a line on stdin; its own process group."""
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "run_film.py"), str(board), str(out), "--wait"],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("a"),
                            text=True, start_new_session=True)


def progress(url: str) -> tuple[int, int]:
    """(submissions, output downloads) the emulator has seen."""
    stats = emulator_stats(url)
    return stats["submissions"], sum(j["downloads"] for j in stats["jobs"])


def wait_for(when: str | float | None, url: str, before: tuple[int, int], rng: random.Random,
             proc: subprocess.Popen[str]) -> None:
    """Until the moment to kill: a new submission or download since `before`, or a time."""
    if not isinstance(when, str):
        time.sleep(rng.uniform(0.0, 0.8) if when is None else when)
        return
    which = 0 if when == "submit" else 1
    deadline = time.monotonic() + 10
    while progress(url)[which] == before[which] and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)


def kill(proc: subprocess.Popen[str]) -> bool:
    """SIGKILL the process group; False if the run had already finished."""
    finished = proc.poll() is not None
    if not finished:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    return not finished


def test_killed_again_and_again_loses_nothing_and_pays_once(emulator, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    point_hosts_at(emulator.url, monkeypatch)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    board, out, log = write_storyboard(tmp_path, V1, "killed.yaml"), tmp_path / "out", tmp_path / "runs.log"
    film_dir = out / "killed"
    audit = Audit(film_dir)

    first = spawn(board, out, env, log)
    stdout, _ = first.communicate("go\n", timeout=300)
    assert first.returncode == 0, log.read_text()
    audit.check()
    (previous,) = audit.films
    assert emulator_stats(emulator.url)["submissions"] == 3

    write_storyboard(tmp_path, V2, "killed.yaml")
    httpx.post(f"{emulator.url}/_emulator/config", json={"latency": 1.0}).raise_for_status()  # time to poll
    rng = random.Random(8)
    killed, finished_early, stages, stage = 0, 0, Counter(), "v2 not started"
    warm = spawn(board, out, env, log)
    while killed < len(KILLS) and finished_early < 8:  # (a run that finishes first is simply run again)
        when = KILLS[killed]
        if isinstance(when, str) and stage == EVERY_SHOT_DONE:
            when = None
        proc, warm = warm, spawn(board, out, env, log)  # the next run loads while this one works
        before = progress(emulator.url)
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        assert proc.stdout.readline().strip() == "ready", log.read_text()  # type: ignore[union-attr]
        wait_for(when, emulator.url, before, rng, proc)
        if kill(proc):
            killed += 1
            stage = audit.check()
            stages[stage] += 1
        else:
            finished_early += 1
            stage = audit.check()

    stdout, _ = warm.communicate("go\n", timeout=300)
    assert warm.returncode == 0, log.read_text()
    audit.check()
    new = file_digest(film_dir / "film.mp4")
    assert new != previous and audit.films == {previous, new}  # never anything but a complete film
    stats = emulator_stats(emulator.url)
    assert stats["submissions"] == 3 + 2  # v1's three shots, then a2 and b1 of v2: each paid once
    assert len({j["prompt"] for j in stats["jobs"]}) == 5
    assert list((film_dir / "shots" / ".staging").iterdir()) == []
    assert killed == len(KILLS), (killed, finished_early)
    print(f"\nkills: {killed} ({finished_early} runs finished before their kill) at {dict(stages)}; finished "
          f"segments checked: {len(audit.decoded)} distinct files, films seen: {len(audit.films)}, lost: nothing")

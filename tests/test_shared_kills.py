"""Two workers taking turns on one film, each run SIGKILLed (the whole process group) at a submit, at a download
or at a random time, over and over, until the film is done. They share nothing but the PostgreSQL ledger and
the bucket (moto's real S3 server): worker A keeps its scratch folder between runs, worker B starts every run
on an empty one (an ephemeral container).

After every kill: the ledger opens and holds only sane states; every shot it lists as done has its kept
segment and last frame in the bucket, byte for byte (sha256); the bucket's kept objects are all finished
shots' files; a film in the bucket is a complete one. At the end: every shot was paid exactly once, and the
bucket's film and manifest agree with each other and with the ledger. The randomness is seeded; the seed is
printed (STORYFILM_KILL_SEED=N repeats a run).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import boto3
import httpx
import pytest

from storyfilm.ledger import Ledger
from storyfilm.media import probe

from .helpers import REPO, emulator_stats, point_hosts_at, write_storyboard
from .test_kills import kill, progress, wait_for

pytestmark = pytest.mark.slow

BOARD = """\
version: 1
title: Shared
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
SHOTS, FRAMES = 3, 3 * 4 * 24
KILLS = ["submit", "download", 0.4, "download", None, None]
LEASE = 1.0  # how long a killed run's claims hold its shots up (the next run then takes its jobs over)


class Bucket:
    """What the bucket holds, checked against the ledger."""

    def __init__(self, bucket: str, prefix: str, pg_url: str):
        self.s3, self.bucket, self.prefix, self.pg_url = boto3.client("s3"), bucket, prefix, pg_url
        self.films: dict[str, int] = {}  # sha256 -> frames of each film seen in the bucket
        self.done: set[str] = set()

    def read(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")["Body"].read())

    def objects(self) -> dict[str, str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/").get("Contents", [])
        return {o["Key"].removeprefix(f"{self.prefix}/"): o["ETag"] for o in listed}

    def check(self, seed: int) -> str:
        """Assert the invariants; the stage the film was in, as the ledger shows it."""
        book = Ledger(self.pg_url)
        try:
            records = book.records()
        finally:
            book.close()
        assert {r.state for r in records} <= {"intent", "submitted", "completed", "done"}, seed
        done = {r.key: r.result for r in records if r.state == "done"}
        assert self.done <= set(done), f"a finished shot is no longer finished (seed {seed})"
        self.done = set(done)
        digests = set()
        for result in done.values():
            assert result is not None
            for suffix, digest in ((".mp4", result["sha256"]), (".last.png", result["last_frame_sha256"])):
                key = f"shots/.kept/{result['key'][:32]}{suffix}"
                assert hashlib.sha256(self.read(key)).hexdigest() == digest, f"{result['id']}{suffix} (seed {seed})"
                digests.add(digest)
        objects = self.objects()
        for key in objects:
            if key.startswith("shots/"):  # uploaded before "done": a kept object belongs to a finished shot
                data = self.read(key)
                assert hashlib.sha256(data).hexdigest() in digests or self._unfinished(records, key), (key, seed)
        if "film.mp4" in objects:
            data = self.read("film.mp4")
            digest = hashlib.sha256(data).hexdigest()
            if digest not in self.films:
                with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
                    tmp.write(data)
                    tmp.flush()
                    self.films[digest] = probe.decode_all(Path(tmp.name))[0].video.frames  # type: ignore[union-attr]
            assert self.films[digest] == FRAMES, f"an incomplete film in the bucket (seed {seed})"
        latest = {r.shot_id: r.state for r in records}
        waiting = sorted({s for s in latest.values() if s != "done"})
        return f"shots {'/'.join(waiting)}" if waiting else "every shot done"

    @staticmethod
    def _unfinished(records: list, key: str) -> bool:  # type: ignore[type-arg]
        """A kept object of a shot killed between its upload and its "done" (its next run finishes it)."""
        return any(r.key[:32] == Path(key).name.split(".")[0] and r.state != "done" for r in records)


def test_two_workers_killed_in_turn_lose_nothing_and_pay_each_shot_once(
        emulator, pg_url: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = int(os.environ.get("STORYFILM_KILL_SEED") or random.SystemRandom().randrange(10_000))
    print(f"\nseed {seed} (STORYFILM_KILL_SEED={seed} repeats it)")
    rng = random.Random(seed)
    point_hosts_at(emulator.url, monkeypatch)
    httpx.post(f"{emulator.url}/_emulator/config", json={"latency": 1.0}).raise_for_status()  # time to poll
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "STORYFILM_LEDGER_URL": pg_url,
           "STORYFILM_CLAIM_LEASE": str(LEASE)}
    board = write_storyboard(tmp_path, BOARD, "shared.yaml")
    url, log = f"s3://{bucket}/films", tmp_path / "runs.log"
    audit = Bucket(bucket, "films/shared", pg_url)
    runs = Counter[str]()

    def spawn(worker: str) -> subprocess.Popen[str]:
        runs[worker] += 1
        scratch = tmp_path / (worker if worker == "A" else f"B{runs[worker]}")  # B: a fresh folder every run
        return subprocess.Popen([sys.executable, str(REPO / "tests" / "run_film.py"), str(board), url, "--wait"],
                                env={**env, "STORYFILM_SCRATCH": str(scratch)}, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log.open("a"), text=True, start_new_session=True)

    killed, finished, stages, stage = 0, False, Counter[str](), "not started"
    worker = "A"
    warm = spawn(worker)
    while killed < len(KILLS) and not finished:  # a run that finishes before its kill has made the film
        when = KILLS[killed]
        if isinstance(when, str) and stage == "every shot done":
            when = None  # nothing left to submit or download: a random time
        worker = "B" if worker == "A" else "A"
        proc, warm = warm, spawn(worker)  # the other worker loads while this one works
        before = progress(emulator.url)
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        assert proc.stdout.readline().strip() == "ready", (seed, log.read_text())  # type: ignore[union-attr]
        wait_for(when, emulator.url, before, rng, proc)
        if kill(proc):
            killed += 1
        else:
            finished = True
            assert proc.returncode == 0, (seed, log.read_text())
        stage = audit.check(seed)
        stages[stage] += 1

    warm.communicate("go\n", timeout=300)
    assert warm.returncode == 0, (seed, log.read_text())
    assert audit.check(seed) == "every shot done"
    stats = emulator_stats(emulator.url)
    assert stats["submissions"] == SHOTS, (seed, stats["submissions"])  # each shot paid once, whoever ran it
    assert len({j["prompt"] for j in stats["jobs"]}) == SHOTS
    manifest = json.loads(audit.read("manifest.json"))
    film = audit.read("film.mp4")
    assert manifest["film"]["sha256"] == hashlib.sha256(film).hexdigest(), seed  # the manifest names this film
    assert manifest["film"]["bytes"] == len(film) and manifest["film"]["frames"] == FRAMES
    book = Ledger(pg_url)
    done = {r.shot_id: r.result for r in book.records() if r.state == "done"}
    book.close()
    assert {s["id"]: s["segment_sha256"] for s in manifest["shots"]} == {i: r["sha256"] for i, r in done.items() if r}
    print(f"kills: {killed} at {dict(stages)}; runs: "
          f"{dict(runs)}; films seen in the bucket: {len(audit.films)}; paid: {stats['submissions']} for {SHOTS} shots")

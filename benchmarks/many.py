"""Many machines' overhead per shot: a whole film run with the PostgreSQL ledger, and with outputs in a bucket,
against the same run on one machine (SQLite ledger, outputs on disk), interleaved in the same run.

    python -m benchmarks.many [--repeat 3]      # writes nothing; paste into benchmarks/many-results.md

The film: 6 shots (2 chains of 3, WaveSpeed, 5 s 480p) through tests/run_film.py (the flow's session without
Prefect, so Prefect's own cost does not blur the difference) against the emulator on loopback, latency 0,
its renders replaced by copies of clips made once (as benchmarks/orchestration.py does), polling every 0.1 s.
Every round starts from nothing: a fresh PostgreSQL database, a fresh bucket prefix, fresh folders. The
bucket is moto's S3-compatible server on loopback (a real S3 adds its network round trips and bandwidth:
counted below as uploads per shot). PostgreSQL is a throwaway server (Debian's, fsync on) on loopback.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.common import Section, log, repeat_main, table

SHOTS, CHAINS, SECONDS = 6, 2, 5
SETUPS = ("SQLite, disk", "PostgreSQL, disk", "PostgreSQL, bucket")


def board(path: Path) -> Path:
    lines = ["version: 1", "title: Many", "provider: wavespeed",
             f"defaults: {{duration: {SECONDS}, resolution: 480p, aspect_ratio: '16:9', audio: false}}", "shots:"]
    for c in range(CHAINS):
        for s in range(SHOTS // CHAINS):
            lines += [f"  - id: c{c}s{s}", f"    prompt: 'c{c}s{s}: the harbour, take {s}'"]
            if s == 0 and c:
                lines.append("    cut: true")
    path.write_text("\n".join(lines) + "\n")
    return path


def run(repeat: int) -> list[Section]:
    import boto3
    from tests.pgcluster import cluster
    from tests.run_film import run as make_film
    from tests.s3server import moto_server, s3_env

    from benchmarks.orchestration import cheap_renderer
    from storyfilm.emulator import EmulatorConfig, EmulatorServer
    from storyfilm.emulator import jobs as emulator_jobs
    from storyfilm.providers import SPECS

    section = Section("Many machines: overhead per shot of the PostgreSQL ledger and of a bucket")
    seconds: dict[str, list[float]] = {name: [] for name in SETUPS}
    uploads: list[int] = []
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-many-") as tmp, cluster(fsync=True) as server, \
            moto_server() as endpoint, EmulatorServer(EmulatorConfig(latency=0.0, render_workers=CHAINS)) as emu:
        root = Path(tmp)
        os.environ.update(s3_env(endpoint), STORYFILM_POLL_INTERVAL="0.1", STORYFILM_POLL_MAX_INTERVAL="0.1")
        for spec in SPECS.values():
            if spec.base_url_env and spec.api_key_env:
                os.environ[spec.base_url_env], os.environ[spec.api_key_env] = emu.url, "benchmark-key"
        boto3.client("s3").create_bucket(Bucket="bench")
        emulator_jobs.render_job = cheap_renderer(root, SECONDS, "480p")  # type: ignore[attr-defined]
        path = board(root / "many.yaml")
        for r in range(repeat + 1):  # round 0 warms up (imports, connections, the clips) and is not counted
            log(f"many: round {r} of {repeat}")
            for name in SETUPS:
                emu.emulator.reset()
                folder = root / f"{r}-{name.split(',')[0]}-{name.split(' ')[-1]}"
                with server.database() as url:
                    if name.startswith("PostgreSQL"):
                        os.environ["STORYFILM_LEDGER_URL"] = url
                    else:
                        os.environ.pop("STORYFILM_LEDGER_URL", None)
                    os.environ["STORYFILM_SCRATCH"] = str(folder / "scratch")
                    output = f"s3://bench/{uuid.uuid4().hex[:8]}" if name.endswith("bucket") else str(folder)
                    start = time.perf_counter()
                    job = make_film(path, output, lambda _m: None)
                    took = time.perf_counter() - start
                    job.runner.ledger.close()
                assert len(emu.emulator.store.jobs) == SHOTS
                if r:
                    seconds[name].append(took)
                    if job.runner.mirror:
                        uploads.append(len(job.runner.mirror.uploaded))
    base = statistics.median(seconds[SETUPS[0]])
    rows = []
    for name in SETUPS:
        mid = statistics.median(seconds[name])
        rows.append((name, f"{mid:.2f} ({min(seconds[name]):.2f}-{max(seconds[name]):.2f})",
                     f"{mid / SHOTS * 1000:.0f}", f"{(mid - base) / SHOTS * 1000:+.0f}", f"{mid / base:.2f}x"))
    section.add(*table(("setup", "s per film, median (min-max)", "ms per shot", "overhead ms per shot vs SQLite, "
                        "disk", "ratio"), rows), "")
    section.add(f"{repeat} rounds of the three setups, interleaved; {SHOTS} shots per film. A run on a bucket uploads "
                f"{statistics.median(uploads):.0f} objects per film: two per shot (its segment and last frame) and "
                "the film with its exports. The PostgreSQL runs take claims like any run; so do the SQLite runs.")
    return [section]


if __name__ == "__main__":
    repeat_main(run, __doc__ or "", 3)

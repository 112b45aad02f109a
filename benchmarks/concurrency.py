"""Local shots under a Prefect global concurrency limit vs an in-process semaphore (same limit).

    python benchmarks/concurrency.py [--shots 6] [--limit 2] [--rounds 3]

One process, one throw-away Prefect server (prefect_test_harness); the two modes alternate so both
see the same machine load. Measured per run: the span from the first shot taking a slot to the last
shot leaving it, and the busy time inside slots (the renders themselves). Results: concurrency.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="storyfilm-bench-"))


def board(n: int) -> str:
    shots = "".join(f"  - id: s{i}\n    cut: true\n    prompt: Shot {i}, the camera pans right.\n" for i in range(n))
    return f"version: 1\ntitle: Bench\ndefaults:\n  duration: 1\n  resolution: 480p\n  seed: 1\nshots:\n{shots}"


def one_run(path: Path, out: Path, limit: int, prefect_limit: bool) -> tuple[float, float]:
    from storyfilm import flow as flow_module
    from storyfilm.progress import Event, listening
    from storyfilm.providers.specs import SPECS

    spans: dict[str, list[float]] = {}
    lock = threading.Lock()

    def record(event: Event) -> None:
        if event.kind in ("shot-started", "shot-done") and event.shot:
            with lock:
                spans.setdefault(event.shot, []).append(time.monotonic())

    local = SPECS["local"]
    SPECS["local"] = dataclasses.replace(local, bounded_in_process=not prefect_limit)
    try:
        with listening(record):
            flow_module.film(storyboard=str(path), output_dir=str(out), concurrency=limit)
    finally:
        SPECS["local"] = local
    starts = [s[0] for s in spans.values()]
    ends = [s[1] for s in spans.values()]
    busy = sum(e - s for s, e in spans.values())
    return max(ends) - min(starts), busy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, default=6)
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    work = Path(tempfile.mkdtemp(prefix="storyfilm-bench-out-"))
    path = work / "bench.yaml"
    path.write_text(board(args.shots))
    results: dict[str, list[tuple[float, float]]] = {"semaphore": [], "prefect-gcl": []}
    with prefect_test_harness(server_startup_timeout=90):
        for i in range(args.rounds):
            for mode in ("semaphore", "prefect-gcl"):
                out = work / f"{mode}-{i}"  # a fresh output dir: nothing is reused
                results[mode].append(one_run(path, out, args.limit, mode == "prefect-gcl"))
    print(f"{args.shots} independent 1 s 480p local shots, limit {args.limit}, {args.rounds} rounds, "
          f"{os.cpu_count()} cores")
    print("| mode | span (median, s) | spans (s) | busy in slots (median, s) | span / (busy / limit) |")
    print("|---|---|---|---|---|")
    for mode, runs in results.items():
        span = statistics.median(r[0] for r in runs)
        busy = statistics.median(r[1] for r in runs)
        print(f"| {mode} | {span:.2f} | {', '.join(f'{r[0]:.2f}' for r in runs)} | {busy:.2f} | "
              f"{span / (busy / args.limit):.2f} |")


if __name__ == "__main__":
    main()

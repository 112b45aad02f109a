"""An unchanged rerun: `storyfilm run` of a finished 30-shot film against `storyfilm plan` of the same file.

    python -m benchmarks.rerun [--repeat 3]

The film (30 two-second local shots at 480p in 10 chains of 3) is made once, without Prefect; then `plan`
and `run` alternate, each in a fresh process as a user types them, with no Prefect server configured
(ephemeral mode). film.mp4 must keep its bytes and its mtime through every `run`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import Section, log, median, spread, table
from benchmarks.orchestration import QUIET_PREFECT
from benchmarks.startup import command

SHOTS, PER_CHAIN = 30, 3


def storyboard(path: Path, shots: int = SHOTS) -> Path:
    lines = ["version: 1", "title: Rerun", "defaults: {duration: 2, resolution: 480p, seed: 5}", "shots:"]
    for n in range(shots):
        lines.append(f"  - {{id: s{n + 1:02d}, prompt: 'shot {n + 1}: the harbour at dawn'"
                     + (", cut: true}" if n % PER_CHAIN == 0 and n else "}"))
    path.write_text("\n".join(lines) + "\n")
    return path


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed: {proc.stderr[-2000:]}")
    return seconds, proc.stdout


def run(repeat: int, shots: int = SHOTS) -> list[Section]:
    from storyfilm import session

    section = Section(f"Unchanged rerun: {shots} local shots")
    log(f"rerun: making a {shots}-shot film")
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-rerun-") as tmp:
        root = Path(tmp)
        board = storyboard(root / "rerun.yaml", shots)
        job = session.prepare(board, session.Options(output_dir=root / "output"))
        results = {}
        for shot in job.plan.shots:  # one after another: this is set-up, not measured
            results[shot.id] = job.make_shot(shot.id, results[shot.parent] if shot.parent else None)
        film = job.finish([results[s.id] for s in job.plan.shots]).info.path
        before = hashlib.sha256(film.read_bytes()).hexdigest(), film.stat().st_mtime_ns
        env = {**os.environ, **QUIET_PREFECT, "PREFECT_HOME": str(root / "prefect-home")}
        env.pop("PREFECT_API_URL", None)
        plans, runs = [], []
        for _ in range(repeat):
            plans.append(_timed([*command(), "plan", "rerun.yaml"], root, env)[0])
            seconds, out = _timed([*command(), "run", "rerun.yaml"], root, env)
            assert "is up to date" in out, out
            runs.append(seconds)
            assert (hashlib.sha256(film.read_bytes()).hexdigest(), film.stat().st_mtime_ns) == before
    ratio = median(runs) / median(plans)
    section.add(*table(("what", "seconds, median (min-max)"),
                       [("`storyfilm plan rerun.yaml`", spread(plans)),
                        ("`storyfilm run rerun.yaml`, nothing changed (up to date)", spread(runs))]), "",
                f"{repeat} runs each, alternating, in fresh processes, no Prefect server configured. film.mp4 kept "
                f"its sha256 and mtime through every run. The unchanged rerun took **{ratio:.2f}x** the time of "
                "`plan` (issue 14's measurement before: 18.8 s, 30x).")
    section.check(f"unchanged rerun of a {shots}-shot film: at most 4x `storyfilm plan`, film.mp4 untouched",
                  f"{ratio:.2f}x", ratio <= 4.0)
    return [section]


def main() -> None:
    from benchmarks.common import repeat_main

    repeat_main(run, __doc__ or "", 3)


if __name__ == "__main__":
    main()

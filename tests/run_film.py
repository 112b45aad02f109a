"""A film run without Prefect, for tests that kill runs many times: `python tests/run_film.py BOARD OUT [--wait]`.

It runs the flow's session (storyfilm.session: prepare, the bucket's up-to-date check, a shot at a time per
chain, finish), chains concurrently and the shots of a chain in order, but starts in a second instead of
waiting for Prefect's server. Prints `ready` when it starts generating; with --wait it first loads everything
and waits for a line on stdin (a test starts the next run early).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from storyfilm import bucket_up_to_date, output_url, session
from storyfilm.errors import StoryfilmError
from storyfilm.plan import ShotPlan
from storyfilm.results import ShotResult


def log(message: str) -> None:
    """What each shot does, on stderr with the time (tests read when a waiting run moved on)."""
    print(f"{time.time():.3f} {message}", file=sys.stderr, flush=True)


def run(board_path: Path, output: Path | str, say: session.Log = log) -> session.FilmJob:
    """The film made (or remade); the job, to look at what its run did."""
    job = session.prepare(board_path, session.Options(output_dir=output, log=say))
    results: dict[str, ShotResult] = {}

    def chain(shots: list[ShotPlan]) -> None:
        for shot in shots:
            results[shot.id] = job.make_shot(shot.id, results[shot.parent] if shot.parent else None)

    print("ready", flush=True)
    if bucket_up_to_date.unchanged(job) is not None:  # as the flow: the film in the bucket is what it would make
        return job
    with ThreadPoolExecutor(len(job.plan.chains)) as pool:
        list(pool.map(chain, job.plan.chains))
    job.finish([results[s.id] for s in job.plan.shots])
    return job


if __name__ == "__main__":
    if "--wait" in sys.argv:
        sys.stdin.readline()
    try:
        print(run(Path(sys.argv[1]), output_url.target(sys.argv[2])).film_dir / "film.mp4", flush=True)
    except StoryfilmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)

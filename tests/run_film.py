"""A film run without Prefect, for tests that kill runs many times: `python tests/run_film.py BOARD OUT [--wait]`.

It does what the flow does with the same core calls, chains concurrently and the shots of a chain in order,
but starts in a second instead of waiting for Prefect's server. Prints `ready` when it starts generating;
with --wait it first loads everything and waits for a line on stdin (a test starts the next run early).
"""

from __future__ import annotations

import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from storyfilm import assets
from storyfilm.errors import StoryfilmError
from storyfilm.finish import make_film, write_exports
from storyfilm.generate import PollSettings, ShotRunner, build_request
from storyfilm.ledger import Ledger
from storyfilm.plan import ShotPlan, make_plan
from storyfilm.providers import make_provider
from storyfilm.results import ShotResult
from storyfilm.storyboard import load_storyboard


def run(board_path: Path, output: Path) -> Path:
    board = load_storyboard(board_path)
    digests = assets.digests(board)
    plan = make_plan(board, digests)
    film_dir = output / plan.slug
    runner = ShotRunner(provider=make_provider(plan.provider, film_dir / ".work"),
                        ledger=Ledger(film_dir / "ledger.sqlite"), shots_dir=film_dir / "shots",
                        run_id=str(uuid.uuid4()), poll=PollSettings.from_env())
    local = assets.materialise(board, film_dir / "assets")
    results: dict[str, ShotResult] = {}

    def chain(shots: list[ShotPlan]) -> None:
        for shot in shots:
            parent = results[shot.parent] if shot.parent else None
            results[shot.id] = runner.run(shot, build_request(shot, local, parent), parent)

    print("ready", flush=True)
    with ThreadPoolExecutor(len(plan.chains)) as pool:
        list(pool.map(chain, plan.chains))
    ordered = [results[s.id] for s in plan.shots]
    made = make_film(plan, ordered, film_dir)
    write_exports(plan, ordered, made, film_dir, digests)
    return made.info.path


if __name__ == "__main__":
    if "--wait" in sys.argv:
        sys.stdin.readline()
    try:
        print(run(Path(sys.argv[1]), Path(sys.argv[2])), flush=True)
    except StoryfilmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)

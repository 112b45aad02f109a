"""The Prefect flow: thin tasks over the core modules. One task run per shot, named by its id.

Chains are independent and run concurrently; a shot waits only for the shot it continues from.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, tags, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.runtime.flow_run import get_id as flow_run_id
from prefect.task_runners import ThreadPoolTaskRunner

from storyfilm import assets as asset_store
from storyfilm import seams
from storyfilm.assemble import FilmInfo
from storyfilm.audio import check_target
from storyfilm.errors import ProviderError, StoryfilmError
from storyfilm.finish import Film, make_film, write_exports
from storyfilm.generate import BudgetGuard, PollSettings, ShotResult, ShotRunner, build_request
from storyfilm.ledger import Ledger, ledger_path, new_cost
from storyfilm.plan import Plan, check_budget, make_plan, redo_closure
from storyfilm.providers import make_provider
from storyfilm.storyboard import load_storyboard

# How many shots of one provider are generated at once in this process. The local renderer is
# CPU-bound; hosts queue or refuse work beyond a few concurrent jobs on ordinary accounts.
PROVIDER_CONCURRENCY = {"local": 2}
DEFAULT_CONCURRENCY = 4


@dataclass
class FilmRun:
    """What every task of one film run shares (in-process only: never hashed or persisted)."""

    plan: Plan
    film_dir: Path
    runner: ShotRunner
    assets: Mapping[str, Path]
    slots: threading.BoundedSemaphore = field(repr=False, default_factory=lambda: threading.BoundedSemaphore(2))

    @property
    def shots_dir(self) -> Path:
        return self.film_dir / "shots"


def _secret(name: str) -> str | None:
    """An API key kept in a Prefect Secret block, if there is one."""
    from prefect.blocks.system import Secret

    try:
        return Secret.load(name).get()
    except (ValueError, RuntimeError):
        return None


def _log(message: str) -> None:
    get_run_logger().info(message)


def _run_name() -> str:
    from prefect.runtime import flow_run

    path = str(flow_run.parameters.get("storyboard", "storyboard"))
    try:
        return load_storyboard(path).title
    except StoryfilmError:
        return Path(path).stem


@task(task_run_name="{shot_id}", cache_policy=NO_CACHE, persist_result=False)
def generate_shot(shot_id: str, run: FilmRun, parent: ShotResult | None) -> ShotResult:
    """Reuse the shot's kept segment, resume its job, or generate it (see generate.ShotRunner)."""
    shot = run.plan.shot(shot_id)
    with run.slots:
        return run.runner.run(shot, build_request(shot, run.assets, parent), parent)


@task(task_run_name="assemble", cache_policy=NO_CACHE, persist_result=False)
def assemble_film(run: FilmRun, results: list[ShotResult], loudness_lufs: float | None = None) -> Film:
    """Join the segments in storyboard order into film.mp4 and measure its seams."""
    logger = get_run_logger()
    made = make_film(run.plan, results, run.film_dir, loudness_lufs=loudness_lufs, log=logger.info)
    logger.info("film: %s, %.3f s, %d frames, %d of %d seams flagged", made.info.path, made.info.duration,
                made.info.frames, len(made.flagged), len(made.seams))
    return made


def _summary_markdown(plan: Plan, results: list[ShotResult], film: FilmInfo) -> str:
    rows = "\n".join(
        f"| {r.id} | {s.start.describe()} | {r.duration:.2f} s | {'reused' if r.reused else f'{r.seconds:.1f} s'} "
        f"| ${r.cost_usd:.2f} | {Path(r.segment).name} |"
        for s, r in zip(plan.shots, results, strict=True))
    spent = sum(r.cost_usd for r in results if not r.reused)
    return (f"# {plan.title}\n\n"
            f"**Film:** `{film.path.resolve()}`  \n**Duration:** {film.duration:.3f} s ({film.frames} frames, "
            f"{film.width}x{film.height} @ {film.fps} fps)  \n**Provider:** {plan.provider} ({plan.tier})  \n"
            f"**Spent this run:** ${spent:.2f} (estimate for all shots ${plan.cost_usd:.2f})  \n"
            f"**Reused shots:** {sum(r.reused for r in results)} of {len(results)}\n\n"
            "| shot | start | duration | generation | cost | file |\n|---|---|---|---|---|---|\n" + rows + "\n")


def _collect(plan: Plan, futures: dict[str, PrefectFuture[ShotResult]]) -> list[ShotResult]:
    results: list[ShotResult] = []
    failures: list[str] = []
    for shot in plan.shots:
        futures[shot.id].wait()
        if futures[shot.id].state.is_completed():
            results.append(futures[shot.id].result())
            continue
        try:
            futures[shot.id].result()
        except StoryfilmError as exc:
            failures.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - upstream failures surface as Prefect's own errors
            failures.append(f"shot '{shot.id}': not generated ({type(exc).__name__}: {exc})")
    if failures:
        kept = len(results)
        raise ProviderError(f"{len(failures)} shot(s) failed; {kept} finished shot(s) are kept and will be "
                            "reused on the next run:\n  " + "\n  ".join(failures))
    return results


@flow(name="storyfilm", flow_run_name=_run_name, task_runner=ThreadPoolTaskRunner(max_workers=32),
      validate_parameters=True)
def film(storyboard: str, provider: str | None = None, budget_usd: float | None = None,
         output_dir: str = "output", redo: list[str] | None = None, ledger: str | None = None,
         loudness_lufs: float | None = None) -> dict[str, Any]:
    """Turn a storyboard file into output/<slug>/film.mp4 with its manifest, timeline, subtitles and contact sheet.

    `redo` regenerates the named shots (and the shots chained after them) even if they are finished;
    `ledger` is the pay-once ledger's path (default output/<slug>/ledger.sqlite); `loudness_lufs`
    overrides the storyboard's loudness target (EBU R128, e.g. -14 for the web).
    """
    logger = get_run_logger()
    if loudness_lufs is not None:
        check_target(loudness_lufs)  # before anything is paid for
    board = load_storyboard(storyboard)
    digests = asset_store.digests(board)
    plan = make_plan(board, digests, provider=provider, budget_usd=budget_usd)
    film_dir = Path(output_dir) / plan.slug
    book = Ledger(ledger_path(film_dir, ledger))
    redo_ids = redo_closure(plan, redo or [])
    check_budget(plan, new_cost(plan, book, redo_ids))
    film_dir.mkdir(parents=True, exist_ok=True)
    used = {a for s in plan.shots for a in (s.start.asset, s.end_image, *s.references) if a}
    the_provider = make_provider(plan.provider, film_dir / ".work", key_lookup=_secret)
    runner = ShotRunner(provider=the_provider, ledger=book, shots_dir=film_dir / "shots",
                        run_id=str(flow_run_id() or uuid.uuid4()), budget=BudgetGuard(plan.budget_usd),
                        poll=PollSettings.from_env(), redo=redo_ids, log=_log,
                        # a rehearsal's emulator forgets its jobs when it stops: nothing paid, nothing to resume
                        resume=os.environ.get("STORYFILM_REHEARSAL") != "1")
    run = FilmRun(plan=plan, film_dir=film_dir, runner=runner,
                  assets=asset_store.materialise(board, film_dir / "assets", used),
                  slots=threading.BoundedSemaphore(PROVIDER_CONCURRENCY.get(plan.provider, DEFAULT_CONCURRENCY)))
    logger.info("%s: %d shots in %d chains on %s, %.0f s planned", plan.title, len(plan.shots),
                len(plan.chains), plan.provider, plan.duration)
    futures: dict[str, PrefectFuture[ShotResult]] = {}
    with tags(f"provider:{plan.provider}", f"film:{plan.slug}"):
        for shot in plan.shots:
            parent = futures[shot.parent] if shot.parent else None
            futures[shot.id] = generate_shot.submit(shot.id, run, parent)  # type: ignore[arg-type]
    results = _collect(plan, futures)
    made = assemble_film(run, results, loudness_lufs)
    info = made.info
    written = write_exports(plan, results, made, film_dir, digests)
    create_markdown_artifact(key=f"film-{plan.slug}"[:100],
                             markdown=_summary_markdown(plan, results, info) + "\n" + seams.markdown(made.seams),
                             description=f"storyfilm: {plan.title}")
    return {"film": str(info.path), "duration": info.duration, "frames": info.frames,
            "manifest": str(written["manifest"]), "shots": len(results),
            "flagged_seams": len(made.flagged),
            "reused": sum(r.reused for r in results),
            "spent_usd": round(sum(r.cost_usd for r in results if not r.reused), 4)}

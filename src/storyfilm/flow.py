"""The Prefect flow: thin tasks over the core modules. One task run per shot, named by its id.

Chains are independent and run concurrently; a shot waits only for the shot it continues from. What
a run reports goes three ways: Prefect logs and artifacts (the UI), and progress events
(`storyfilm.progress`, the CLI's progress bars).
"""

# No `from __future__ import annotations` here: `storyfilm serve` hands the flow to its run processes
# by cloudpickle, which keeps only the globals a function's body uses, so string annotations such as
# 'ProviderName' could no longer be resolved there to validate the parameters.

import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from storyfilm import _prefect
from storyfilm import assets as asset_store
from storyfilm.assemble import FilmInfo, Piece, assemble
from storyfilm.errors import ProviderError, StoryfilmError
from storyfilm.exports import manifest, write_json
from storyfilm.generate import ShotResult, build_request, generate, reusable
from storyfilm.plan import Plan, check_budget, make_plan
from storyfilm.progress import Event, emit
from storyfilm.providers import make_provider
from storyfilm.providers.base import Provider
from storyfilm.report import shot_rows, spent_usd, summary_markdown
from storyfilm.storyboard import ProviderName, load_storyboard

# Shots of one provider at a time. Hosted jobs run for minutes and an account's limit is shared by
# every run on every machine, so hosted providers take a slot of the Prefect global concurrency limit
# `storyfilm-<provider>` (created with HOSTED_CONCURRENCY, WaveSpeed's default-tier limit; tune it
# with `prefect gcl update` or `--concurrency`). The local renderer is CPU-bound, its shots take 1-3 s
# and it only shares this machine's cores, so it is bounded in-process: Prefect's limit waiters sleep
# for a server-chosen Retry-After, which left the slots idle 40-120% of the time on local shots where a
# semaphore kept them busy (benchmarks/concurrency.md).
IN_PROCESS_LIMITED = frozenset({"local"})
LOCAL_CONCURRENCY = 2
HOSTED_CONCURRENCY = 2

Slot = Callable[[], AbstractContextManager[object]]
RunLogger = Logger | LoggerAdapter[Logger]


@dataclass
class FilmRun:
    """What every task of one film run shares (in-process only: never hashed or persisted)."""

    plan: Plan
    film_dir: Path
    provider: Provider
    assets: Mapping[str, Path]
    slot: Slot = field(repr=False)
    progress: _prefect.ProgressArtifact = field(repr=False)

    @property
    def shots_dir(self) -> Path:
        return self.film_dir / "shots"


def _run_name() -> str:
    from prefect.runtime import flow_run

    path = str(flow_run.parameters.get("storyboard", "storyboard"))
    try:
        return load_storyboard(path).title
    except StoryfilmError:
        return Path(path).stem


def _tags(plan: Plan) -> tuple[str, str]:
    return f"provider:{plan.provider}", f"film:{plan.slug}"


def _slot(provider: str, concurrency: int | None, logger: RunLogger) -> Slot:
    """How a shot of `provider` takes its turn (see IN_PROCESS_LIMITED)."""
    if provider in IN_PROCESS_LIMITED:
        semaphore = threading.BoundedSemaphore(concurrency or LOCAL_CONCURRENCY)
        return lambda: semaphore
    name = _prefect.limit_name(provider)
    limit = _prefect.ensure_limit(name, default=HOSTED_CONCURRENCY, override=concurrency)
    logger.info("at most %d %s shot(s) at once (Prefect concurrency limit '%s')", limit, provider, name)
    return lambda: _prefect.limit_slot(name)


def _shot_log(shot_id: str, logger: RunLogger) -> Callable[[str], None]:
    def say(message: str) -> None:
        logger.info(message)
        emit(Event("shot-status", shot_id, message))

    return say


@task(task_run_name="{shot_id}", cache_policy=NO_CACHE, persist_result=False)
def generate_shot(shot_id: str, run: FilmRun, parent: ShotResult | None) -> ShotResult:
    """Reuse the shot's kept segment, or generate it."""
    logger = get_run_logger()
    shot = run.plan.shot(shot_id)
    kept = reusable(shot, run.shots_dir)
    if kept is not None:
        logger.info("%s: reusing shots/%s (unchanged since job %s)", shot_id, Path(kept.segment).name, kept.job_id)
        emit(Event("shot-reused", shot_id, seconds=kept.seconds, cost_usd=0.0))
        run.progress.advance()
        return kept
    request = build_request(shot, run.assets, parent)
    emit(Event("shot-waiting", shot_id))
    try:
        with run.slot():
            emit(Event("shot-started", shot_id))
            result = generate(run.provider, shot, request, run.shots_dir, log=_shot_log(shot_id, logger))
            emit(Event("shot-done", shot_id, seconds=result.seconds, cost_usd=result.cost_usd))  # in the slot
    except Exception as exc:
        emit(Event("shot-failed", shot_id, str(exc)))
        raise
    logger.info("%s: kept shots/%s (%d frames, %.1f s, $%.2f)", shot_id, Path(result.segment).name,
                result.frames, result.seconds, result.cost_usd)
    run.progress.advance()
    return result


@task(task_run_name="assemble", cache_policy=NO_CACHE, persist_result=False)
def assemble_film(run: FilmRun, results: list[ShotResult]) -> FilmInfo:
    """Join the segments in storyboard order into film.mp4."""
    logger = get_run_logger()

    def say(message: str) -> None:
        logger.info(message)
        emit(Event("assembly-status", message=message))

    emit(Event("assembly-started", message=f"joining {len(results)} segments"))
    # A shot contributes exactly its planned seconds: hosts may deliver a frame more (121 frames for 5 s).
    pieces = [Piece(Path(r.segment), start_frame=r.new_from_frame, label=r.id,
                    frames=min(r.new_frames, round(run.plan.shot(r.id).duration * r.fps)))
              for r in results]
    film = assemble(pieces, run.plan.film, run.film_dir / "film.mp4", run.film_dir / ".work", on_progress=say)
    logger.info("film: %s, %.3f s, %d frames", film.path, film.duration, film.frames)
    emit(Event("assembly-done", message=str(film.path), seconds=film.duration))
    run.progress.advance()
    return film


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


# JSON-friendly, typed parameters: the Prefect UI renders its run form from these.
Budget = Annotated[float, Field(ge=0, description="hard cap on new spend, USD")]
Concurrency = Annotated[int, Field(ge=1, le=64, description="shots of the provider generated at once")]


@flow(name="storyfilm", flow_run_name=_run_name, task_runner=ThreadPoolTaskRunner(max_workers=32),
      validate_parameters=True)
def film(storyboard: str, provider: ProviderName | None = None, budget_usd: Budget | None = None,
         output_dir: str = "output", concurrency: Concurrency | None = None) -> dict[str, Any]:
    """Turn a storyboard file into <output_dir>/<slug>/film.mp4 with its manifest.

    Args:
        storyboard: path of the storyboard YAML (relative to the run's working directory)
        provider: override the storyboard's provider
        budget_usd: hard cap on new spend, USD (overrides the storyboard's budget_usd)
        output_dir: where films are written (shared storage when workers run on several machines)
        concurrency: shots of this provider at once; for hosted providers this sets the Prefect
            concurrency limit `storyfilm-<provider>` that every run shares
    """
    logger = get_run_logger()
    board = load_storyboard(storyboard)
    plan = make_plan(board, asset_store.digests(board), provider=provider, budget_usd=budget_usd)
    check_budget(plan)
    _prefect.add_flow_run_tags(*_tags(plan))
    film_dir = Path(output_dir) / plan.slug
    film_dir.mkdir(parents=True, exist_ok=True)
    used = {a for s in plan.shots for a in (s.start.asset, s.end_image, *s.references) if a}
    run = FilmRun(plan=plan, film_dir=film_dir, provider=make_provider(plan.provider, film_dir / ".work"),
                  assets=asset_store.materialise(board, film_dir / "assets", used),
                  slot=_slot(plan.provider, concurrency, logger),
                  progress=_prefect.ProgressArtifact(_prefect.artifact_key("film", plan.slug, "progress"),
                                                     steps=len(plan.shots) + 1,  # + assembly
                                                     description=f"shots of {plan.title} finished, then assembly"))
    logger.info("%s: %d shots in %d chains on %s, %.0f s planned, estimate $%.2f", plan.title, len(plan.shots),
                len(plan.chains), plan.provider, plan.duration, plan.cost_usd)
    emit(Event("film-planned", message=plan.title, shots=tuple(s.id for s in plan.shots)))
    futures: dict[str, PrefectFuture[ShotResult]] = {}
    with tags(*_tags(plan)):
        for shot in plan.shots:
            parent = futures[shot.parent] if shot.parent else None
            futures[shot.id] = generate_shot.submit(shot.id, run, parent)  # type: ignore[arg-type]
        results = _collect(plan, futures)
        info = assemble_film(run, results)
    manifest_path = write_json(manifest(plan, results, info, film_dir), film_dir / "manifest.json")
    _prefect.publish_film(plan.slug, plan.title, summary_markdown(plan, results, info, manifest_path),
                          shot_rows(plan, results), info.path, manifest_path)
    spent = spent_usd(results)
    logger.info("done: %s (%.2f s), %d of %d shots reused, $%.2f spent", info.path, info.duration,
                sum(r.reused for r in results), len(results), spent)
    return {"film": str(info.path), "duration": info.duration, "frames": info.frames,
            "manifest": str(manifest_path), "shots": len(results),
            "reused": sum(r.reused for r in results), "spent_usd": spent}

"""The Prefect flow: thin tasks over the core modules. One task run per shot, named by its id.

Chains are independent and run concurrently; a shot waits only for the shot it continues from. What
a run reports goes three ways: Prefect logs and artifacts (the UI), and progress events
(`storyfilm.progress`, the CLI's progress bars).
"""

# No `from __future__ import annotations` here: `storyfilm serve` hands the flow to its run processes
# by cloudpickle, which keeps only the globals a function's body uses, so string annotations such as
# 'ProviderName' could no longer be resolved there to validate the parameters.

import os
import threading
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.runtime.flow_run import get_id as flow_run_id
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from storyfilm import _prefect, seams
from storyfilm import assets as asset_store
from storyfilm.audio import check_target
from storyfilm.errors import ProviderError, StoryfilmError
from storyfilm.finish import Film, make_film, write_exports
from storyfilm.generate import BudgetGuard, PollSettings, ShotResult, ShotRunner, build_request
from storyfilm.ledger import Ledger, new_cost
from storyfilm.ledger_url import ledger_location
from storyfilm.plan import Plan, check_budget, make_plan, redo_closure
from storyfilm.progress import Event, emit
from storyfilm.providers import make_provider
from storyfilm.report import shot_rows, spent_usd, summary_markdown
from storyfilm.storyboard import LOUDNESS_RANGE, ProviderName, load_storyboard

# Shots of one provider at a time. Hosted jobs run for minutes and an account's limit is shared by
# every run on every machine, so hosted providers take a slot of the Prefect global concurrency limit
# `storyfilm-<provider>` (created with HOSTED_CONCURRENCY, WaveSpeed's default-tier limit; tune it
# with `prefect gcl update` or `--concurrency`). The local renderer is CPU-bound, its shots take 1-3 s
# and it only shares this machine's cores, so it is bounded in-process: Prefect's limit waiters sleep
# for a server-chosen Retry-After, which left the slots idle 40-120% of the time on local shots where a
# semaphore kept them busy (benchmarks/concurrency.md).
# Without a server (ephemeral mode) hosted shots are bounded in-process too: there is no other run to
# share with, and the slots of a killed run would never come back (their leases lived in the temporary
# server that died with it; the limit's count stays full in the database: measured with SIGKILL).
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
    runner: ShotRunner
    assets: Mapping[str, Path]
    slot: Slot = field(repr=False)
    progress: _prefect.ProgressArtifact = field(repr=False)


def _secret(name: str) -> str | None:
    """An API key kept in a Prefect Secret block, if there is one."""
    from prefect.blocks.system import Secret

    try:
        return Secret.load(name).get()
    except (ValueError, RuntimeError):
        return None


def _log(message: str) -> None:
    """The ShotRunner's log, called inside a shot's task run: its Prefect log, and progress watchers."""
    from prefect.context import TaskRunContext

    get_run_logger().info(message)
    context = TaskRunContext.get()
    emit(Event("shot-status", context.parameters.get("shot_id") if context else None, message))


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
    if provider in IN_PROCESS_LIMITED or not _prefect.has_server():
        default = LOCAL_CONCURRENCY if provider in IN_PROCESS_LIMITED else HOSTED_CONCURRENCY
        semaphore = threading.BoundedSemaphore(concurrency or default)
        return lambda: semaphore
    name = _prefect.limit_name(provider)
    limit = _prefect.ensure_limit(name, default=HOSTED_CONCURRENCY, override=concurrency)
    logger.info("at most %d %s shot(s) at once (Prefect concurrency limit '%s')", limit, provider, name)
    return lambda: _prefect.limit_slot(name)


def _report(result: ShotResult) -> None:
    if result.reused:
        emit(Event("shot-reused", result.id, cost_usd=0.0))
    else:
        emit(Event("shot-done", result.id, seconds=result.seconds, cost_usd=result.cost_usd))


@task(task_run_name="{shot_id}", cache_policy=NO_CACHE, persist_result=False)
def generate_shot(shot_id: str, run: FilmRun, parent: ShotResult | None) -> ShotResult:
    """Reuse the shot's kept segment, resume its job, or generate it (see generate.ShotRunner)."""
    shot = run.plan.shot(shot_id)
    request = build_request(shot, run.assets, parent)
    try:
        if run.runner.reusable(shot):  # no host call: no need to wait for a provider slot
            result = run.runner.run(shot, request, parent)
            _report(result)
        else:
            emit(Event("shot-waiting", shot_id))
            with run.slot():
                emit(Event("shot-started", shot_id))
                result = run.runner.run(shot, request, parent)
                _report(result)  # still in the slot: watchers see the slot's whole span
    except Exception as exc:
        emit(Event("shot-failed", shot_id, str(exc)))
        raise
    run.progress.advance()
    return result


@task(task_run_name="assemble", cache_policy=NO_CACHE, persist_result=False)
def assemble_film(run: FilmRun, results: list[ShotResult], loudness_lufs: float | None = None) -> Film:
    """Join the segments in storyboard order into film.mp4 and measure its seams."""
    logger = get_run_logger()

    def say(message: str) -> None:
        logger.info(message)
        emit(Event("assembly-status", message=message))

    emit(Event("assembly-started", message=f"joining {len(results)} segments"))
    made = make_film(run.plan, results, run.film_dir, loudness_lufs=loudness_lufs, log=say)
    logger.info("film: %s, %.3f s, %d frames, %d of %d seams flagged", made.info.path, made.info.duration,
                made.info.frames, len(made.flagged), len(made.seams))
    emit(Event("assembly-done", message=str(made.info.path), seconds=made.info.duration))
    run.progress.advance()
    return made


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
Loudness = Annotated[float, Field(ge=LOUDNESS_RANGE[0], le=LOUDNESS_RANGE[1], description="film loudness, LUFS")]


@flow(name="storyfilm", flow_run_name=_run_name, task_runner=ThreadPoolTaskRunner(max_workers=32),
      validate_parameters=True)
def film(storyboard: str, provider: ProviderName | None = None, budget_usd: Budget | None = None,
         output_dir: str = "output", redo: list[str] | None = None, ledger: str | None = None,
         loudness_lufs: Loudness | None = None, concurrency: Concurrency | None = None) -> dict[str, Any]:
    """Turn a storyboard file into <output_dir>/<slug>/film.mp4 with its manifest, timeline, subtitles and
    contact sheet.

    Args:
        storyboard: path of the storyboard YAML (relative to the run's working directory)
        provider: override the storyboard's provider
        budget_usd: hard cap on new spend, USD (overrides the storyboard's budget_usd)
        output_dir: where films are written (shared storage when workers run on several machines)
        redo: regenerate these shots (and the shots chained after them) even if they are finished
        ledger: the pay-once ledger: a file, sqlite:///FILE or postgresql+psycopg://USER@HOST:PORT/DB (default:
            the worker's STORYFILM_LEDGER_URL, else <output_dir>/<slug>/ledger.sqlite); a password belongs in
            PGPASSWORD or STORYFILM_LEDGER_URL, never here (Prefect shows parameters)
        loudness_lufs: overrides the storyboard's loudness target (EBU R128, e.g. -14 for the web)
        concurrency: shots of this provider at once; for a hosted provider on a Prefect server this
            sets the concurrency limit `storyfilm-<provider>` that every run shares
    """
    logger = get_run_logger()
    if loudness_lufs is not None:
        check_target(loudness_lufs)  # before anything is paid for
    board = load_storyboard(storyboard)
    digests = asset_store.digests(board)
    plan = make_plan(board, digests, provider=provider, budget_usd=budget_usd)
    _prefect.add_flow_run_tags(*_tags(plan))
    film_dir = Path(output_dir) / plan.slug
    book = Ledger(ledger_location(film_dir, ledger))
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
        made = assemble_film(run, results, loudness_lufs)
    info = made.info
    manifest_path = write_exports(plan, results, made, film_dir, digests)["manifest"]
    assert manifest_path is not None
    _prefect.publish_film(plan.slug, plan.title,
                          summary_markdown(plan, results, info, manifest_path) + "\n" + seams.markdown(made.seams),
                          shot_rows(plan, results), info.path, manifest_path)
    spent = spent_usd(results)
    logger.info("done: %s (%.2f s), %d of %d shots reused, $%.2f spent", info.path, info.duration,
                sum(r.reused for r in results), len(results), spent)
    return {"film": str(info.path), "duration": info.duration, "frames": info.frames,
            "manifest": str(manifest_path), "shots": len(results), "flagged_seams": len(made.flagged),
            "reused": sum(r.reused for r in results), "spent_usd": spent}

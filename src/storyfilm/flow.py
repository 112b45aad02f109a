"""The Prefect flow: prepare the run, one task run per shot (named by its id), finish, publish.

The work is session.py's (no Prefect there); this module adds Prefect's part: tags, task runs, the
provider's concurrency slots, logs and artifacts. Chains are independent and run concurrently; a shot
waits only for the shot it continues from. What a run reports goes three ways: Prefect logs and
artifacts (the UI), and progress events (`storyfilm.progress`, the CLI's progress bars).
"""

# No `from __future__ import annotations` here: `storyfilm serve` hands the flow to its run processes
# by cloudpickle, which keeps only the globals a function's body uses, so string annotations such as
# 'ProviderName' could no longer be resolved there to validate the parameters.

import os
import threading
import uuid
from collections.abc import Callable
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

from storyfilm import _prefect, continuity_report, seams, session
from storyfilm.errors import ProviderError, StoryfilmError
from storyfilm.plan import Plan
from storyfilm.progress import Event, emit
from storyfilm.providers import spec_for
from storyfilm.report import shot_rows, spent_usd, summary_markdown
from storyfilm.results import Film, ShotResult
from storyfilm.session import FilmJob
from storyfilm.storyboard import LOUDNESS_RANGE, ProviderName

# Shots of one provider at a time: hosted shots take a slot of the Prefect global concurrency limit
# `storyfilm-<provider>` (tune it with `prefect gcl update` or `--concurrency`); local shots, and every
# shot without a server, are bounded in-process (why: ProviderSpec.bounded_in_process).
Slot = Callable[[], AbstractContextManager[object]]
RunLogger = Logger | LoggerAdapter[Logger]


@dataclass
class FilmRun:
    """What every task of one film run shares (in-process only: never hashed or persisted)."""

    job: FilmJob
    slot: Slot = field(repr=False)
    progress: _prefect.ProgressArtifact = field(repr=False)


def _secret(name: str) -> str | None:
    """An API key kept in a Prefect Secret block, if there is one."""
    from prefect.blocks.system import Secret

    try:
        block = Secret.load(name)
        value = block.get() if isinstance(block, Secret) else None  # a coroutine only when called from async code
    except (ValueError, RuntimeError):
        return None
    return value if isinstance(value, str) else None


def _log(message: str) -> None:
    """What a shot does, told inside its task run: its Prefect log, and progress watchers."""
    from prefect.context import TaskRunContext

    get_run_logger().info(message)
    context = TaskRunContext.get()
    emit(Event("shot-status", context.parameters.get("shot_id") if context else None, message))


def _run_name() -> str:
    from prefect.runtime import flow_run

    path = str(flow_run.parameters.get("storyboard", "storyboard"))
    try:
        return session.load_board(path).title  # parsed once: the flow's body finds it cached
    except StoryfilmError:
        return Path(path).stem


def _tags(plan: Plan) -> tuple[str, str]:
    return f"provider:{plan.provider}", f"film:{plan.slug}"


def _slot(provider: str, concurrency: int | None, logger: RunLogger) -> Slot:
    """How a shot of `provider` takes its turn (see ProviderSpec.bounded_in_process)."""
    spec = spec_for(provider)
    if spec.bounded_in_process or not _prefect.has_server():
        semaphore = threading.BoundedSemaphore(concurrency or spec.default_concurrency)
        return lambda: semaphore
    name = _prefect.limit_name(provider)
    limit = _prefect.ensure_limit(name, default=spec.default_concurrency, override=concurrency)
    logger.info("at most %d %s shot(s) at once (Prefect concurrency limit '%s')", limit, provider, name)
    return lambda: _prefect.limit_slot(name)


def _report(result: ShotResult) -> None:
    if result.reused:
        emit(Event("shot-reused", result.id, cost_usd=0.0))
    else:
        emit(Event("shot-done", result.id, seconds=result.seconds, cost_usd=result.cost_usd))


@task(task_run_name="{shot_id}", cache_policy=NO_CACHE, persist_result=False)
def generate_shot(shot_id: str, run: FilmRun, parent: ShotResult | None) -> ShotResult:
    """Reuse the shot's kept segment, resume its job, or generate it (see session.FilmJob.make_shot)."""
    try:
        if run.job.reusable(shot_id):  # no host call: no need to wait for a provider slot
            result = run.job.make_shot(shot_id, parent)
            _report(result)
        else:
            emit(Event("shot-waiting", shot_id))
            with run.slot():
                emit(Event("shot-started", shot_id))
                result = run.job.make_shot(shot_id, parent)
                _report(result)  # still in the slot: watchers see the slot's whole span
    except Exception as exc:
        emit(Event("shot-failed", shot_id, str(exc)))
        raise
    run.progress.advance()
    return result


@task(task_run_name="assemble", cache_policy=NO_CACHE, persist_result=False)
def assemble_film(run: FilmRun, results: list[ShotResult]) -> Film:
    """Join the segments in storyboard order into film.mp4, measure its seams, write its exports."""
    logger = get_run_logger()

    def say(message: str) -> None:
        logger.info(message)
        emit(Event("assembly-status", message=message))

    emit(Event("assembly-started", message=f"joining {len(results)} segments"))
    made = run.job.finish(results, log=say)
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


# ignore: Prefect's ThreadPoolTaskRunner does not match the decorator's type (TaskRunner is invariant in its future)
@flow(name="storyfilm", flow_run_name=_run_name,
      task_runner=ThreadPoolTaskRunner(max_workers=32),  # type: ignore[arg-type]
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
    job = session.prepare(storyboard, session.Options(
        provider=provider, budget_usd=budget_usd, output_dir=Path(output_dir), redo=tuple(redo or ()),
        ledger=ledger or None, loudness_lufs=loudness_lufs, run_id=str(flow_run_id() or uuid.uuid4()),
        # a rehearsal's emulator forgets its jobs when it stops: nothing paid, nothing to resume
        resume=os.environ.get("STORYFILM_REHEARSAL") != "1", key_lookup=_secret, log=_log,
        on_plan=lambda plan: _prefect.add_flow_run_tags(*_tags(plan))))
    plan = job.plan
    run = FilmRun(job=job, slot=_slot(plan.provider, concurrency, logger),
                  progress=_prefect.ProgressArtifact(_prefect.artifact_key("film", plan.slug, "progress"),
                                                     steps=len(plan.shots) + 1,  # + assembly
                                                     description=f"shots of {plan.title} finished, then assembly"))
    logger.info("%s: %d shots in %d chains on %s, %.0f s planned, estimate $%.2f", plan.title, len(plan.shots),
                len(plan.chains), plan.provider, plan.duration, plan.cost_usd)
    for note in plan.notes:  # once per run: what the provider does differently from what the storyboard asks
        logger.warning("note: %s", note)
    emit(Event("film-planned", message=plan.title, shots=tuple(s.id for s in plan.shots)))
    futures: dict[str, PrefectFuture[ShotResult]] = {}
    with tags(*_tags(plan)):
        for shot in plan.shots:
            parent = futures[shot.parent] if shot.parent else None
            # ignore: a parent future stands for its ShotResult (Prefect passes the result); the stubs do not say so
            futures[shot.id] = generate_shot.submit(shot.id, run, parent)  # type: ignore[arg-type]
        results = _collect(plan, futures)
        made = assemble_film(run, results)
    info = made.info
    _prefect.publish_film(plan.slug, plan.title,
                          summary_markdown(plan, results, info, made.manifest) + "\n" + seams.markdown(made.seams)
                          + "\n" + continuity_report.markdown(made.continuity, made.exports.get("continuity")),
                          shot_rows(plan, results), info.path, made.manifest)
    spent = spent_usd(results)
    logger.info("done: %s (%.2f s), %d of %d shots reused, $%.2f spent", info.path, info.duration,
                sum(r.reused for r in results), len(results), spent)
    return {"film": str(info.path), "duration": info.duration, "frames": info.frames,
            "manifest": str(made.manifest), "shots": len(results), "flagged_seams": len(made.flagged),
            "reused": sum(r.reused for r in results), "spent_usd": spent,
            "continuity": continuity_report.lines(made.continuity),
            "flagged_chains": sum(c.flagged for c in made.continuity)}

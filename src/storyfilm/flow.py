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
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture
from prefect.runtime.flow_run import get_id as flow_run_id
from prefect.states import Cancelled, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from storyfilm import (
    _prefect,
    animatic_preview,
    approval,
    bucket_up_to_date,
    continuity_report,
    head_start,
    output_url,
    pictures,
    run_summary,
    seams,
    session,
    take_review,
)
from storyfilm.errors import ApprovalError, ProviderError, StoryfilmError
from storyfilm.plan import Plan
from storyfilm.progress import Event, emit
from storyfilm.providers import spec_for
from storyfilm.public_links import markdown_link, object_url, public_base
from storyfilm.report import ShotOutcome, progress_description, shot_rows, spent_usd, summary_markdown
from storyfilm.results import Film, ShotResult
from storyfilm.session import FilmJob
from storyfilm.slot_gate import PriorityGate, ready_at_start, successors, urgencies
from storyfilm.storyboard import LOUDNESS_RANGE, ProviderName
from storyfilm.take_pick import ReviewPending, TakesToReview
from storyfilm.up_to_date import Verdict

# Shots of one provider at a time: hosted shots take a slot of the Prefect global concurrency limit
# `storyfilm-<provider>` (tune it with `prefect gcl update` or `--concurrency`); local shots, and every
# shot without a server, are bounded in-process (why: ProviderSpec.bounded_in_process). Either way a
# local gate orders this run's waiting shots, the most generation still ahead of them first (slot_gate.py).
Slot = Callable[[str], AbstractContextManager[object]]
RunLogger = Logger | LoggerAdapter[Logger]


@dataclass
class FilmRun:
    """What every task of one film run shares (in-process only: never hashed or persisted)."""

    job: FilmJob
    slot: Slot = field(repr=False)
    progress: _prefect.ProgressArtifact = field(repr=False)
    results: dict[str, ShotResult] = field(default_factory=dict, repr=False)  # finished shots, by id
    waited: dict[str, float] = field(default_factory=dict, repr=False)  # seconds each shot waited for a slot


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


def _review(asked: TakesToReview) -> int:
    """`pick: review`: a form in the paused run where a server shows it; else a question in the terminal."""
    if _prefect.has_server():
        timeout = int(os.environ.get("STORYFILM_REVIEW_TIMEOUT", "3600"))
        return _prefect.review_takes(asked.slug, asked.shot_id, take_review.markdown(asked), asked.suggested, timeout)
    return take_review.ask_in_terminal(asked)


def _rehearsal() -> bool:
    """`run --emulate`: every host is the emulator, nothing is paid."""
    return os.environ.get("STORYFILM_REHEARSAL") == "1"


def _run_name() -> str:
    from prefect.runtime import flow_run

    path = str(flow_run.parameters.get("storyboard", "storyboard"))
    try:
        name = session.load_board(path).title  # parsed once: the flow's body finds it cached
    except StoryfilmError:
        name = Path(path).stem
    return f"{name} (rehearsal, nothing paid)" if _rehearsal() else name


def _tags(plan: Plan) -> tuple[str, ...]:
    return f"provider:{plan.provider}", f"film:{plan.slug}", *(("rehearsal",) if _rehearsal() else ())


def _slot(job: FilmJob, concurrency: int | None, logger: RunLogger) -> Slot:
    """How a shot of the film's provider takes its turn (see ProviderSpec.bounded_in_process)."""
    spec = spec_for(job.plan.provider)
    server = not spec.bounded_in_process and _prefect.has_server()
    slots = concurrency or spec.default_concurrency
    if server:
        name = _prefect.limit_name(job.plan.provider)
        slots = _prefect.ensure_limit(name, default=spec.default_concurrency, override=concurrency)
        logger.info("at most %d %s shot(s) at once (Prefect concurrency limit '%s')", slots, job.plan.provider,
                    name)
    gate = PriorityGate(slots, urgencies(job.plan, job.generating), successors(job.plan),
                        first=ready_at_start(job.plan, job.generating), holding=job.ahead)
    if not server:
        return gate.turn

    leases = _prefect.LimitLeases(name)

    @contextmanager
    def gated_limit_slot(shot_id: str) -> Iterator[None]:
        # this run asks the server for slots in its order of urgency, at most `slots` of them at once; a slot
        # the gate keeps for a shot's successor keeps its server lease too
        gate.acquire(shot_id)
        released = False
        try:
            lease = leases.take(shot_id)
            passed = False
            try:
                yield
                passed = True
            finally:
                with leases.lock:  # the slot goes on to the shot the gate gives it to, or back to the server
                    wanted = bool(gate.waiting)
                    heir, released = gate.release(shot_id, hand_on=passed), True
                    leases.give(lease, heir, wanted=wanted)
        finally:
            if not released:  # a failure passes nothing on (its successors will not come)
                gate.release(shot_id, hand_on=False)

    return gated_limit_slot


def _report(result: ShotResult) -> None:
    if result.reused:
        emit(Event("shot-reused", result.id, cost_usd=0.0))
    else:
        emit(Event("shot-done", result.id, seconds=result.seconds, cost_usd=result.cost_usd))


@contextmanager
def _waiting_for_slot(run: FilmRun, shot_id: str) -> Iterator[None]:
    """Take a provider slot; a wait of more than a second is logged when it starts and measured apart from
    the shot's generation time."""
    logger = get_run_logger()
    provider = run.job.plan.provider
    emit(Event("shot-waiting", shot_id))
    run.job.clock.mark(shot_id, "queued")
    started = time.monotonic()
    notice = threading.Timer(1.0, logger.info, (f"{shot_id}: waiting for a {provider} slot (its concurrency "
                                                 "limit)",))
    notice.start()
    try:
        with run.slot(shot_id):
            run.job.clock.mark(shot_id, "started")
            notice.cancel()
            run.waited[shot_id] = waited = round(time.monotonic() - started, 1)
            if waited >= 1.0:
                logger.info("%s: got a %s slot after %.1f s", shot_id, provider, waited)
            emit(Event("shot-started", shot_id))
            yield
    finally:
        notice.cancel()


# Named by the shot from the moment it exists: its parent is waited for through `wait_for` (which Prefect
# resolves after naming the task run), not passed as a future parameter (resolved before).
@task(task_run_name="{shot_id}", cache_policy=NO_CACHE, persist_result=False)
def generate_shot(shot_id: str, run: FilmRun) -> ShotResult | State[Any]:
    """Reuse the shot's kept segment, resume its job, or generate it (see session.FilmJob.make_shot)."""
    parent_id = run.job.plan.shot(shot_id).parent
    parent = run.results[parent_id] if parent_id else None
    try:
        if run.job.reusable(shot_id):  # no host call: no need to wait for a provider slot
            result = run.job.make_shot(shot_id, parent)
            _report(result)
        else:
            try:
                with _waiting_for_slot(run, shot_id):
                    result = run.job.make_shot(shot_id, parent)
                    _report(result)  # still in the slot: watchers see the slot's whole span
            except ReviewPending:  # its takes are kept: a person chooses one outside the provider slot
                result = run.job.make_shot(shot_id, parent)
                _report(result)
    except StoryfilmError as exc:  # a host's refusal or a user's mistake: one clear message, not a traceback
        emit(Event("shot-failed", shot_id, str(exc)))
        return Failed(message=str(exc), data=exc)
    except Exception as exc:
        emit(Event("shot-failed", shot_id, str(exc)))
        raise
    run.results[shot_id] = result
    run.progress.advance()
    return result


@task(task_run_name="assemble", cache_policy=NO_CACHE, persist_result=False)
def assemble_film(run: FilmRun, results: list[ShotResult]) -> Film | State[Any]:
    """Join the segments in storyboard order into film.mp4, measure its seams, write its exports."""
    logger = get_run_logger()

    def say(message: str) -> None:
        logger.info(message)
        emit(Event("assembly-status", message=message))

    emit(Event("assembly-started", message=f"joining {len(results)} segments"))
    try:
        made = run.job.finish(results, log=say)
    except StoryfilmError as exc:
        return Failed(message=str(exc), data=exc)
    logger.info("film: %s, %.3f s, %d frames, %d of %d seams flagged", made.info.path, made.info.duration,
                made.info.frames, len(made.flagged), len(made.seams))
    emit(Event("assembly-done", message=str(made.info.path), seconds=made.info.duration))
    run.progress.advance()
    return made


def _outcomes(plan: Plan, futures: dict[str, PrefectFuture[Any]], run: FilmRun) -> list[ShotOutcome]:
    """Every shot's outcome, in storyboard order, once each has one."""
    out: dict[str, ShotOutcome] = {}
    for shot in plan.shots:
        futures[shot.id].wait()
        state = futures[shot.id].state
        waited = run.waited.get(shot.id, 0.0)
        if state.is_completed() and shot.id in run.results:
            result = run.results[shot.id]
            out[shot.id] = ShotOutcome(shot.id, "reused" if result.reused else "generated", result, waited_s=waited)
        elif state.is_failed() or state.is_crashed():
            out[shot.id] = ShotOutcome(shot.id, "failed", reason=str(state.message or state.name),
                                       waited_s=waited)
        elif shot.parent and out[shot.parent].status in ("failed", "not started"):
            out[shot.id] = ShotOutcome(shot.id, "not started", reason=f"'{shot.parent}' "
                                       f"{'failed' if out[shot.parent].status == 'failed' else 'did not start'}")
        else:
            out[shot.id] = ShotOutcome(shot.id, "waiting", reason=str(state.message or ""))
    return [out[s.id] for s in plan.shots]


def _failure(outcomes: list[ShotOutcome]) -> ProviderError:
    bad = [o for o in outcomes if o.status != "generated" and o.status != "reused"]
    kept = len(outcomes) - len(bad)
    return ProviderError(f"{sum(o.status == 'failed' for o in bad)} shot(s) failed; {kept} finished shot(s) are "
                         "kept and will be reused on the next run:\n  "
                         + "\n  ".join(o.reason if o.status == "failed" else f"shot '{o.id}': {o.status} ({o.reason})"
                                        for o in bad))


def _publish(run: FilmRun, outcomes: list[ShotOutcome], made: Film | None, error: str, output_dir: Path | str,
             base: str | None) -> None:
    """The summary, the shot table and the links, finished or failed; and how the progress bar ended."""
    plan = run.job.plan
    with _prefect.reporting("build the run's summary"):
        report = run_summary.build(run.job, outcomes, made=made, error=error, rehearsal=_rehearsal(),
                                   output_dir=output_dir, base=base)
        extra = ""
        if made is not None:
            strips = made.exports.get("continuity")
            jpeg = pictures.contact_sheet(strips, max_bytes=40_000) if strips else None
            extra = (seams.markdown(made.seams) + "\n"
                     + continuity_report.markdown(made.continuity, pictures.data_uri(jpeg) if jpeg else None))
        _prefect.publish_run(plan.slug, plan.title, summary_markdown(report, extra), shot_rows(report),
                             run_summary.public_links(made, output_dir, base) if made else {})
        run.progress.finish(progress_description(report))


def _approval(job: FilmJob, storyboard: str, required: bool, output_dir: Path | str, base: str | None,
              logger: RunLogger) -> State[Any] | None:
    """Hold the run for approval when asked (approval.py); None: go on. Runs after planning, before any paid call."""
    plan, new = job.plan, job.new_cost_usd
    if not approval.held(required or job.approve, new) or approval.approved_in_terminal(plan, new):
        return None
    if not _prefect.has_server():  # ephemeral mode: no other process can reach this run to answer it
        raise ApprovalError(approval.NO_SERVER)
    timeout, poll = approval.settings()
    logger.info("making the free animatic preview")
    preview = None
    try:
        made = animatic_preview.make(storyboard, job.film_dir)
        sheet = pictures.contact_sheet(made.contact_sheet, max_bytes=60_000) if made.contact_sheet else None
        preview = approval.PreviewLink(markdown_link("film.mp4", made.film, output_dir, base),
                                       pictures.data_uri(sheet) if sheet else None, made.reused)
    except StoryfilmError as exc:  # a preview that cannot be made must not stop the producer from deciding
        logger.warning("no animatic preview: %s", exc)
    _prefect.publish_plan(plan.slug, plan.title, approval.plan_markdown(
        plan, {k: session.shot_state(d) for k, d in job.decisions.items()}, new, preview=preview,
        storyboard=storyboard, timeout_s=timeout, rehearsal=_rehearsal()))
    where = _prefect.flow_run_url(flow_run_id() or "")
    logger.info("waiting for approval: $%.2f new; answer in the Prefect UI%s or with `storyfilm approve %s`", new,
                f" ({where})" if where else "", storyboard)
    emit(Event("approval-waiting", message=where or ""))
    form = _prefect.approval_form(approval.Answer, approval.form_description(plan, new))
    message = f"not approved within {timeout} s; nothing was paid"
    answer = _prefect.wait_for_answer(form, timeout=timeout, poll=poll, unanswered=message)
    if answer is None:
        _prefect.publish_refusal(plan.slug, plan.title, message)
        return Failed(message=message, data=ApprovalError(message))
    got = approval.Answer.model_validate(answer.model_dump())
    verdict = approval.verdict(got, plan, new)
    logger.info("%s", verdict.message)
    if not verdict.go:
        _prefect.publish_refusal(plan.slug, plan.title, verdict.message)
        rejected = ApprovalError(verdict.message)
        return (Cancelled(name="Rejected", message=verdict.message, data=rejected) if got.answer == "reject"
                else Failed(message=verdict.message, data=rejected))
    job.approve_budget(verdict.budget_usd)
    return None


def _unchanged(job: FilmJob, kept: Verdict, output_dir: str, base: str | None) -> dict[str, Any]:
    """The film at the output URL is what this run would make: report it, link its objects, touch nothing."""
    assert kept.recorded is not None
    where = output_url.target(output_dir)
    with _prefect.reporting("build the run's summary"):
        report = run_summary.unchanged(job, kept.recorded, rehearsal=_rehearsal(), output_dir=where, base=base)
        files = run_summary.recorded_files(job.film_dir, kept.recorded)
        _prefect.publish_run(job.plan.slug, job.plan.title, summary_markdown(report), shot_rows(report),
                             run_summary.public_links(files, where, base))
    return bucket_up_to_date.result(kept)


# JSON-friendly, typed parameters: the Prefect UI renders its run form from these.
# Descriptions state the ranges; no angle brackets (the UI renders descriptions as HTML-capable markdown).
Budget = Annotated[float, Field(ge=0, description="hard cap on new spend, USD, 0 or more")]
Concurrency = Annotated[int, Field(ge=1, le=64, description="shots of the provider generated at once, 1 to 64")]
Loudness = Annotated[float, Field(ge=LOUDNESS_RANGE[0], le=LOUDNESS_RANGE[1],
                                  description=f"film loudness, LUFS, {LOUDNESS_RANGE[0]:g} to {LOUDNESS_RANGE[1]:g}")]


# ignore: Prefect's ThreadPoolTaskRunner does not match the decorator's type (TaskRunner is invariant in its future)
@flow(name="storyfilm", flow_run_name=_run_name,
      task_runner=ThreadPoolTaskRunner(max_workers=32),  # type: ignore[arg-type]
      validate_parameters=True)
def film(storyboard: str, provider: ProviderName | None = None, budget_usd: Budget | None = None,
         output_dir: str = "output", redo: list[str] | None = None, ledger: str | None = None,
         loudness_lufs: Loudness | None = None, concurrency: Concurrency | None = None, approve: bool = False
         ) -> dict[str, Any] | State[Any]:
    """Turn a storyboard file into OUTPUT_DIR/SLUG/film.mp4 with its manifest, timeline, subtitles and
    contact sheet (SLUG: the storyboard's title, lowercased with dashes).

    Args:
        storyboard: path of the storyboard YAML (relative to the run's working directory)
        provider: override the storyboard's provider
        budget_usd: hard cap on new spend, USD, 0 or more (overrides the storyboard's budget_usd)
        output_dir: where films are written: a folder, or a URL such as s3://bucket/prefix (workers without
            a lasting disk; credentials from the worker's AWS_* variables or profile)
        redo: regenerate these shots (and the shots chained after them) even if they are finished
        ledger: the pay-once ledger: a file, sqlite:///FILE or postgresql+psycopg://USER@HOST:PORT/DB (default:
            the worker's STORYFILM_LEDGER_URL, else OUTPUT_DIR/SLUG/ledger.sqlite); a password belongs in
            PGPASSWORD or STORYFILM_LEDGER_URL, never here (Prefect shows parameters)
        loudness_lufs: overrides the storyboard's loudness target, -40 to -5 LUFS (EBU R128, e.g. -14 for the web)
        concurrency: shots of this provider at once, 1 to 64; for a hosted provider on a Prefect server this
            sets the concurrency limit storyfilm-PROVIDER that every run shares
        approve: before anything is paid, show the plan and a free animatic and wait for a producer's answer
            (this run's Resume form, or `storyfilm approve`); the storyboard's `approve: true` asks for it too

    Links: set STORYFILM_PUBLIC_URL (in the worker's environment) to the http(s) URL at which output_dir is
    served, and the summary links the film and its files there; without it, it shows their paths.
    """
    logger = get_run_logger()
    planned: list[Plan] = []

    def on_plan(plan: Plan) -> None:
        planned.append(plan)
        _prefect.add_flow_run_tags(*_tags(plan))

    try:
        base = public_base()  # a wrong STORYFILM_PUBLIC_URL stops the run here, before anything is paid
        options = session.Options(
            provider=provider, budget_usd=budget_usd, output_dir=output_url.target(output_dir), redo=tuple(redo or ()),
            ledger=ledger or None, loudness_lufs=loudness_lufs, run_id=str(flow_run_id() or uuid.uuid4()),
            # a rehearsal's emulator forgets its jobs when it stops: nothing paid, nothing to resume
            resume=not _rehearsal(), key_lookup=_secret, log=_log, on_plan=on_plan, review=_review)
        # prepared by `storyfilm run` while Prefect started, its first job maybe submitted (head_start.py)
        job = head_start.take(storyboard, options) or session.prepare(storyboard, options)
        if (kept := bucket_up_to_date.unchanged(job)) is not None:  # a nightly run on a fresh worker, nothing changed
            return _unchanged(job, kept, output_dir, base)
        if (held := _approval(job, storyboard, approve, output_url.target(output_dir), base, logger)) is not None:
            return held
    except StoryfilmError as exc:  # refused before anything was paid: a user's mistake, not a bug
        if planned:
            _prefect.publish_refusal(planned[0].slug, planned[0].title, str(exc))
        return Failed(message=str(exc), data=exc)
    plan = job.plan
    run = FilmRun(job=job, slot=_slot(job, concurrency, logger),
                  progress=_prefect.ProgressArtifact(_prefect.artifact_key("film", plan.slug, "progress"),
                                                     steps=len(plan.shots) + 1,  # + assembly
                                                     description=f"shots of {plan.title} finished, then assembly"))
    logger.info("%s: %d shots in %d chains on %s, %.0f s planned, estimate $%.2f%s", plan.title, len(plan.shots),
                len(plan.chains), plan.provider, plan.duration, plan.cost_usd,
                " at list prices (rehearsal: nothing is paid)" if _rehearsal() else "")
    for note in plan.notes:  # once per run: what the provider does differently from what the storyboard asks
        logger.warning("note: %s", note)
    emit(Event("film-planned", message=plan.title, shots=tuple(s.id for s in plan.shots)))
    futures: dict[str, PrefectFuture[Any]] = {}
    with tags(*_tags(plan)), _prefect.tag_limits_checked_ahead():
        for shot in plan.shots:
            # ignore: `wait_for` is a keyword of Prefect's submit that its overloads' stubs leave out
            futures[shot.id] = generate_shot.submit(  # type: ignore[call-overload]
                shot.id, run, wait_for=[futures[shot.parent]] if shot.parent else None)
        outcomes = _outcomes(plan, futures, run)
        made: Film | None = None
        failure: StoryfilmError | None = None
        if any(o.result is None for o in outcomes):
            failure = _failure(outcomes)
        else:
            try:
                assembled = assemble_film(run, [o.result for o in outcomes if o.result])
                made = assembled if isinstance(assembled, Film) else None
            except StoryfilmError as exc:  # the task's Failed state, raised here with its error
                failure = exc
    if made is None:
        assert failure is not None
        _publish(run, outcomes, None, str(failure), output_url.target(output_dir), base)
        return Failed(message=str(failure), data=failure)
    _publish(run, outcomes, made, "", output_url.target(output_dir), base)
    info = made.info
    results = [o.result for o in outcomes if o.result]
    spent = spent_usd(results)
    logger.info("done: %s (%.2f s), %d of %d shots reused, $%.2f %s", info.path, info.duration,
                sum(r.reused for r in results), len(results), spent,
                "at list prices (rehearsal: nothing was paid)" if _rehearsal() else "spent")
    where = output_url.target(output_dir)  # with outputs at a URL the film and manifest are named by their objects
    return {"film": object_url(info.path, where, None) or str(info.path), "duration": info.duration,
            "frames": info.frames, "manifest": object_url(made.manifest, where, None) or str(made.manifest),
            "shots": len(results), "flagged_seams": len(made.flagged),
            "reused": sum(r.reused for r in results), "spent_usd": spent,
            "continuity": continuity_report.lines(made.continuity),
            "flagged_chains": sum(c.flagged for c in made.continuity)}

"""`storyfilm run`'s head start: the run prepared, and its most urgent shot's job submitted, before Prefect is up.

In Prefect's ephemeral mode the run cannot start until Prefect's temporary server answers (its imports alone
take 3-6 s on a 2-core machine; temporary_server.py starts it early, on the other core). Nothing of a
hosted job needs that server, so meanwhile this process does what the flow would do first: `session.prepare`
(plan, ledger, decisions, budget check, provider, assets) and, for a paid host, the submits of the shots
the flow's slot gate would serve first (slot_gate.py: the most generation ahead of them, one per slot; each
ready at the start, a new job, one take, continuing no shot). The host works on them while Prefect starts.
The flow then takes the prepared job over (`take`) instead of preparing again, the gate counts those slots
as taken, and each of those shots' tasks finishes its job the same way it finishes a resumed one: same
claim, same ledger rows, never paid twice (the job id is recorded before anything else happens, so a run
killed in between resumes it).

Only where nothing the flow would do first could stop the submit: not with --redo, --emulate, approval,
takes, outputs at a URL or a Prefect server (whose concurrency limit rations the host's slots between
runs; in-process the gate counts the head start's slot as taken). A job submitted ahead is recorded under
this process's run id (the Prefect flow run's id is not known yet); the rest of the run uses the flow run's.
The jobs are not polled until the flow is up: a job that finishes before Prefect does waits for it.
A failed submit (a refusal, the budget) is raised by the shot's task, where it would have happened anyway.
`STORYFILM_HEAD_START=0` turns it off.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from storyfilm import session
from storyfilm.decide import Submit
from storyfilm.errors import StoryfilmError
from storyfilm.session import FilmJob, Options
from storyfilm.slot_gate import ready_at_start, urgencies
from storyfilm.storyboard import Storyboard

ENV = "STORYFILM_HEAD_START"  # "0": the flow prepares and submits everything, as before

_Key = tuple[Path, str | None, float | None, str, str | None, float | None]


def _key(path: str | Path, options: Options) -> _Key | None:
    """What a prepared job depends on among the options (None: a run this module leaves to the flow)."""
    if options.redo or not options.resume:
        return None
    ledger = str(options.ledger) if options.ledger else None
    return (Path(path).absolute(), options.provider, options.budget_usd, str(options.output_dir), ledger,
            options.loudness_lufs)


@dataclass
class _Handed:
    key: _Key
    board: Storyboard  # the parsed storyboard the job was prepared from (the same object while the file is unchanged)
    job: FilmJob


_lock = threading.Lock()
_handed: _Handed | None = None


def begin(path: str | Path, options: Options, slots: int | None = None) -> FilmJob | None:
    """Prepare the run now and submit its first jobs ahead (`slots`: --concurrency, else the provider's
    default); the job, handed to the flow's `take`. None when this run is left to the flow (a user's mistake
    found here is reported by the flow, as without it)."""
    global _handed
    key = _key(path, options)
    if key is None or os.environ.get(ENV, "1") == "0":
        return None
    from storyfilm.public_links import public_base

    try:
        public_base()  # the flow's first check: a wrong STORYFILM_PUBLIC_URL stops it before anything is paid
        board = session.load_board(path)
        job = session.prepare(path, options)  # (a key kept only in a Prefect Secret block: found by the flow)
    except StoryfilmError:
        return None
    if (job.approve or job.runner.mirror is not None
            or any(s.takes > 1 for s in job.plan.shots)):
        return None  # asked for approval, outputs at a URL, takes to pick: the flow does these first
    if job.runner.paid:
        _submit_ahead(job, slots or job.runner.provider.spec.default_concurrency)
    with _lock:
        _handed = _Handed(key, board, job)
    return job


def _submit_ahead(job: FilmJob, slots: int) -> None:
    """The jobs of the shots the slot gate would serve first (the `slots` most urgent ready at the start), as
    far as each is a plain new job: one that is not stops the rest (its slot is not another's to take)."""
    from storyfilm.generate import build_request

    order = urgencies(job.plan, job.generating)
    ahead: set[str] = set()
    for shot_id in sorted(ready_at_start(job.plan, job.generating), key=order.__getitem__)[:slots]:
        shot = job.plan.shot(shot_id)
        if shot.parent is not None or shot.takes > 1 or not isinstance(job.decisions[shot.id], Submit):
            break
        began = datetime.now(UTC)
        if not job.runner.submit_ahead(shot, build_request(shot, job.assets, None)):
            break  # another run holds it, or it changed meanwhile: the flow decides
        job.clock.mark(shot.id, "queued", began)
        job.clock.mark(shot.id, "started", began)
        ahead.add(shot.id)
    job.ahead = frozenset(ahead)


def take(path: str | Path, options: Options) -> FilmJob | None:
    """The job `begin` prepared for this run (the flow's own options applied), or None: prepare it anew.

    A job prepared for other options, or from an older version of the storyboard, is dropped, its job
    submitted ahead released to be resumed by the fresh preparation (never submitted again)."""
    global _handed
    with _lock:
        handed, _handed = _handed, None
    if handed is None:
        return None
    key = _key(path, options)
    fresh = key == handed.key and _same_board(path, handed.board)
    if not fresh:
        handed.job.runner.release_ahead()
        return None
    job = handed.job
    if options.run_id:
        job.runner.run_id = options.run_id
    job.runner.log = options.log
    options.on_plan(job.plan)
    return job


def _same_board(path: str | Path, board: Storyboard) -> bool:
    try:
        return session.load_board(path) is board  # parsed once per version of the file (and of its images)
    except StoryfilmError:
        return False


def release(job: FilmJob | None) -> None:
    """At the end of the command: claims of jobs submitted ahead that no task took over are given up (the
    jobs stay recorded: the next run resumes them, never pays for them again)."""
    global _handed
    with _lock:
        _handed = None
    if job is not None:
        job.runner.release_ahead()

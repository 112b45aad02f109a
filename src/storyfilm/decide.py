"""What to do with a shot, never paying twice: reuse, resume, replay, submit or refuse. Pure: no I/O.

`decide` reads plain facts: the shot's latest ledger record, the state of its kept files (gathered by
`storage.gather`: one ledger read, one hash of each kept file), the run's options and what the provider
is (`Host`). The runner (generate.py) carries the decision out; `storyfilm plan` shows the same decisions
(cached, in flight, new, failed, refused) and their cost, so a plan and the run after it agree.

    done in the ledger, files on disk  -> reused, no call at all (the segment's sha256 must still match)
    done, only the .kept/ copy intact  -> reused, the kept copy put back under shots/ (an undone edit)
    done, files lost or changed        -> downloaded again from the recorded output URL (none: submitted again)
    submitted / completed              -> poll (or fetch) that job id again
    intent (killed around the submit)  -> a host honouring Idempotency-Key (Apiframe): replayed with the same
                                          key and body (billed once), only within its 24 h window less a margin;
                                          other hosts, or later: refused, ask the user (a blind resubmit may pay twice)
    intent / submitted / completed of a free provider (its jobs die with the process) or with resume off
    (a rehearsal, whose emulator forgot its jobs)   -> submitted again
    failed by moderation               -> refused (same inputs, same refusal); --redo tries once more
    failed, rejected, nothing          -> budget check, intent, submit, job id, poll, fetch, done
    --redo (any state of an earlier run) -> a new job, paid again (a record of this same run is the redone
                                          shot itself: it is reused or resumed as above)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from storyfilm.ledger import IN_FLIGHT, Record
from storyfilm.results import ShotResult

if TYPE_CHECKING:
    from storyfilm.providers.specs import ProviderSpec

# What is on disk of a finished shot: as kept under shots/ (intact), only under shots/.kept/ (restorable: a
# later version replaced it, or it was deleted), or neither (lost: missing or changed).
Files = Literal["intact", "restorable", "lost"]

# Apiframe returns the original job for a replayed Idempotency-Key within 24 h (reference/providers.md §2.5,
# from its OpenAPI spec); later, the same key may create and bill a second job. The margin covers clocks
# that differ between the machine that recorded the intent and the one resuming it (shared storage), and
# the time the replay takes to arrive.
IDEMPOTENCY_WINDOW_S = 24 * 3600.0
REPLAY_MARGIN_S = 3600.0


@dataclass(frozen=True)
class Host:
    """What a decision needs to know of the provider."""

    paid: bool  # its jobs cost money and outlive our process: resumed, never blindly submitted again
    idempotent: bool  # a submit repeated with the same Idempotency-Key and body returns the original job

    @classmethod
    def of(cls, spec: ProviderSpec) -> Host:
        return cls(paid=spec.paid, idempotent=spec.idempotent_submit)


@dataclass(frozen=True)
class Reuse:
    """The finished segment, without any call."""

    result: ShotResult
    restore: bool  # put the .kept/ copy back under shots/ first


@dataclass(frozen=True)
class Resume:
    """A job recorded earlier: never paid again.

    poll: wait for it, then fetch its output; fetch: the host finished it, fetch the recorded output (and
    ask the host again if that URL fails); refetch: it was kept but its files are lost, fetch it again.
    """

    record: Record
    job_id: str
    step: Literal["poll", "fetch", "refetch"]


@dataclass(frozen=True)
class Replay:
    """A submit whose answer was lost, sent again with the same Idempotency-Key and body: billed once."""

    record: Record
    prepared: dict[str, Any]


@dataclass(frozen=True)
class Submit:
    """A new (paid) job."""

    note: str = ""  # why the record there is not used, for the log
    after_failure: bool = False  # the last job for these inputs failed


@dataclass(frozen=True)
class Refuse:
    """Stop the shot: going on could pay twice, or pay for a certain refusal. `reason` says what to do."""

    reason: str
    provider: str
    moderation: bool  # the host's moderation refused these inputs (else: a submit whose job may exist)


Decision = Reuse | Resume | Replay | Submit | Refuse


def replay_deadline(record: Record) -> float:
    """Until when an intent may be replayed with its Idempotency-Key (epoch seconds)."""
    return record.created_at + IDEMPOTENCY_WINDOW_S - REPLAY_MARGIN_S


def decide(record: Record | None, shot_id: str, *, redo: frozenset[str], run_id: str | None, host: Host,
           resume: bool, files: Files | None, now: float) -> Decision:
    """The decision for one shot (see the table above).

    record: the latest ledger record of the shot's cache key; run_id: this run's (None: a plan, before any
    run); files: the state of a done record's kept files (None when there are none to look at); now: epoch
    seconds, for the replay window.
    """
    if record is None:
        return Submit()
    if shot_id in redo and record.run_id != run_id:
        return Submit(f"--redo: generating again (previous job {record.job_id or 'unknown'}, {record.state})")
    if record.state == "done":
        if record.result is not None and files in ("intact", "restorable"):
            return Reuse(ShotResult(**record.result), restore=files == "restorable")
        if record.video_url and record.job_id:
            return Resume(record, record.job_id, "refetch")
        return Submit("its kept files are gone or changed; generating again")
    if record.state in IN_FLIGHT and host.paid and resume:
        if record.job_id:
            fetch = record.state == "completed" and record.video_url
            return Resume(record, record.job_id, "fetch" if fetch else "poll")
        return _lost_submit(record, shot_id, host, now)
    if record.state == "failed" and record.moderation:
        return Refuse(f"the host's moderation refused this shot in job {record.job_id}: {record.error}. The same "
                      "inputs would be refused again: change the prompt or images, or run with --redo "
                      f"{shot_id} to try once more", record.provider, moderation=True)
    return Submit(after_failure=record.state == "failed")


def _lost_submit(record: Record, shot_id: str, host: Host, now: float) -> Replay | Refuse:
    """An intent: the submit was sent (or about to be) when the run stopped, its answer never recorded."""
    if host.idempotent and record.prepared is not None and now < replay_deadline(record):
        return Replay(record, record.prepared)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created_at))
    late = (f" The host honours its Idempotency-Key for {IDEMPOTENCY_WINDOW_S / 3600:.0f} h only, so it is not "
            "sent again now." if host.idempotent and record.prepared is not None else "")
    return Refuse(f"a submit for this shot was sent at {when} but the run stopped before its job id was recorded, "
                  f"so it may have been created and billed.{late} Check the host's dashboard; to submit it again "
                  f"anyway (it may be paid twice) run with --redo {shot_id}", record.provider, moderation=False)

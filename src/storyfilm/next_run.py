"""What the next run of a film will do with each shot, said after a run stopped (its summary's last column).

The same decisions `storyfilm plan` shows (decide.py), taken from the ledger and the kept files as they
are now, for a run without --redo.
"""

from __future__ import annotations

import time
from typing import assert_never

from storyfilm import takes
from storyfilm.decide import Decision, Refuse, Replay, Resume, Reuse, Submit, decide
from storyfilm.errors import StoryfilmError
from storyfilm.session import FilmJob
from storyfilm.storage import gather


def describe(decision: Decision, cost_usd: float) -> str:
    """A few words (a table cell): the log and the run's error say the rest."""
    match decision:
        case Reuse():
            return "reuse (not paid again)"
        case Resume(step="refetch"):
            return "download again (not paid again)"
        case Resume():
            return "resume its job (not paid again)"
        case Replay():
            return "resume its submit (billed once)"
        case Submit():
            return f"generate (${cost_usd:.2f})"
        case Refuse():
            return ("stop: refused by moderation; edit the prompt or --redo" if decision.moderation
                    else "stop: its submit may have reached the host; see the error")
        case _:
            assert_never(decision)


def next_run(job: FilmJob) -> dict[str, str]:
    """Shot id -> what the next run will do; "" for a shot whose facts cannot be read now (a report never fails)."""
    runner = job.runner
    out: dict[str, str] = {}
    now = time.time()
    for shot in job.plan.shots:
        try:
            decisions = []
            for take in takes.takes_of(shot):  # a shot with takes: what is left to do of its takes, if anything
                facts = gather(runner.ledger, runner.shots_dir, take.key, shot_id=take.id)
                decisions.append(decide(facts.record, shot.id, redo=frozenset(), run_id=None, host=runner.host,
                                        resume=runner.resume, files=facts.files, now=now))
        except (StoryfilmError, OSError):
            out[shot.id] = ""
            continue
        todo = [d for d in decisions if not isinstance(d, Reuse)]
        out[shot.id] = describe(todo[0] if todo else decisions[0],
                                shot.cost_usd * max(1, sum(isinstance(d, Submit) for d in todo)))
    return out

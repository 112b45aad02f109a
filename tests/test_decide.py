"""The pay-once decision as a table: every ledger state x --redo x provider x resume x kept files x replay window.

No I/O: `decide` is a pure function of plain facts. The rows of RULES read like the state table in
decide.py's docstring; every combination of the facts must match exactly one row, and `decide` must
return what that row says.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import pytest

from storyfilm.decide import (
    IDEMPOTENCY_WINDOW_S,
    REPLAY_MARGIN_S,
    Decision,
    Files,
    Host,
    Refuse,
    Replay,
    Resume,
    Reuse,
    Submit,
    decide,
    replay_deadline,
)
from storyfilm.ledger import Record
from storyfilm.providers import SPECS
from storyfilm.results import ShotResult

SHOT = "s1"
THIS_RUN, EARLIER_RUN = "run-2", "run-1"
CREATED = 1_700_000_000.0  # when the record's intent was written
PREPARED = {"prompt": "a calm sea", "duration": 5}
RESULT = ShotResult(id=SHOT, key="k" * 64, segment="shots/s1.mp4", last_frame="shots/s1.last.png", new_from_frame=0,
                    frames=121, fps=24.0, has_audio=True, provider="wavespeed", job_id="job-1", cost_usd=1.2,
                    seconds=40.0, sha256="a" * 64, last_frame_sha256="b" * 64)

STATES = ("none", "intent", "submitted", "completed", "done", "failed", "failed by moderation", "rejected")
REDO = ("no", "same run", "earlier run")  # --redo of this shot: not asked / the record is this run's / an earlier one's
FILES = ("intact", "restorable", "lost, URL recorded", "lost, no URL")  # of a done record's kept files
WINDOW = ("within", "after")  # of the intent's Idempotency-Key replay window (Apiframe: 24 h)

ANY = None
IN_FLIGHT = ("intent", "submitted", "completed")
NOT_REDONE = ("no", "same run")

# ANY: whatever the value. Decisions: reuse (no call), reuse, restored (the .kept/ copy put back); resume:
# poll / fetch (the recorded job or its recorded output) / refetch (a kept shot's output downloaded again);
# replay (the same Idempotency-Key and body); submit (a new job; --redo, lost: its kept files and URL are
# gone, retry: after a failed job); refuse: filter (moderation), billed? (the job may exist), late (the
# replay window has passed).
# state                    redo           paid   idem   resume  files                  window    -> decision
RULES: list[tuple[object, ...]] = [
    ("none",                 ANY,           ANY,   ANY,   ANY,    ANY,                   ANY,      "submit"),
    (STATES[1:],             "earlier run", ANY,   ANY,   ANY,    ANY,                   ANY,      "submit: --redo"),
    ("done",                 NOT_REDONE,    ANY,   ANY,   ANY,    "intact",              ANY,      "reuse"),
    ("done",                 NOT_REDONE,    ANY,   ANY,   ANY,    "restorable",          ANY,      "reuse, restored"),
    ("done",                 NOT_REDONE,    ANY,   ANY,   ANY,    "lost, URL recorded",  ANY,      "resume: refetch"),
    ("done",                 NOT_REDONE,    ANY,   ANY,   ANY,    "lost, no URL",        ANY,      "submit: lost"),
    ("submitted",            NOT_REDONE,    True,  ANY,   True,   ANY,                   ANY,      "resume: poll"),
    ("completed",            NOT_REDONE,    True,  ANY,   True,   ANY,                   ANY,      "resume: fetch"),
    ("intent",               NOT_REDONE,    True,  True,  True,   ANY,                   "within", "replay"),
    ("intent",               NOT_REDONE,    True,  True,  True,   ANY,                   "after",  "refuse: late"),
    ("intent",               NOT_REDONE,    True,  False, True,   ANY,                   ANY,      "refuse: billed?"),
    (IN_FLIGHT,              NOT_REDONE,    False, ANY,   ANY,    ANY,                   ANY,      "submit"),
    (IN_FLIGHT,              NOT_REDONE,    True,  ANY,   False,  ANY,                   ANY,      "submit"),
    ("failed by moderation", NOT_REDONE,    ANY,   ANY,   ANY,    ANY,                   ANY,      "refuse: filter"),
    ("failed",               NOT_REDONE,    ANY,   ANY,   ANY,    ANY,                   ANY,      "submit: retry"),
    ("rejected",             NOT_REDONE,    ANY,   ANY,   ANY,    ANY,                   ANY,      "submit"),
]


@dataclass(frozen=True)
class Case:
    state: str
    redo: str
    paid: bool
    idempotent: bool
    resume: bool
    files: str
    window: str

    def values(self) -> tuple[object, ...]:
        return self.state, self.redo, self.paid, self.idempotent, self.resume, self.files, self.window


CASES = [Case(*combo) for combo in itertools.product(STATES, REDO, (True, False), (True, False), (True, False),
                                                      FILES, WINDOW)]


def matches(pattern: object, value: object) -> bool:
    return pattern is ANY or pattern == value or (isinstance(pattern, tuple) and value in pattern)


def rows_for(case: Case) -> list[tuple[object, ...]]:
    return [row for row in RULES if all(matches(p, v) for p, v in zip(row[:-1], case.values(), strict=True))]


def record(case: Case) -> Record | None:
    """The latest ledger record of the shot in `case.state`, as the runner writes it."""
    if case.state == "none":
        return None
    state = "failed" if case.state == "failed by moderation" else case.state
    job_id = None if state in ("intent", "rejected") else "job-1"
    has_url = state == "completed" or (state == "done" and case.files != "lost, no URL")
    return Record(key=RESULT.key, attempt=0, shot_id=SHOT, provider="wavespeed", model="standard",
                  state=state,  # type: ignore[arg-type]
                  run_id=THIS_RUN if case.redo == "same run" else EARLIER_RUN, idempotency_key="storyfilm-k-0",
                  prepared=PREPARED, job_id=job_id, cost_usd=0.0 if state in ("failed", "rejected") else 1.2,
                  video_url="https://cdn.example/out.mp4" if has_url else None, last_frame_url=None,
                  error="refused by the filter" if case.state == "failed by moderation" else None,
                  moderation=case.state == "failed by moderation", result=asdict(RESULT) if state == "done" else None,
                  created_at=CREATED, updated_at=CREATED + 60)


def decision_for(case: Case) -> Decision:
    files: dict[str, Files] = {"intact": "intact", "restorable": "restorable", "lost, URL recorded": "lost",
                               "lost, no URL": "lost"}
    now = CREATED + (3600 if case.window == "within" else 25 * 3600)
    return decide(record(case), SHOT, redo=frozenset() if case.redo == "no" else frozenset({SHOT}), run_id=THIS_RUN,
                  host=Host(paid=case.paid, idempotent=case.idempotent), resume=case.resume,
                  files=files[case.files], now=now)


def describe(decision: Decision) -> str:
    """The decision in the words of RULES."""
    match decision:
        case Reuse():
            assert decision.result == RESULT
            return "reuse, restored" if decision.restore else "reuse"
        case Resume():
            assert decision.job_id == "job-1" and decision.record.job_id == "job-1"
            return f"resume: {decision.step}"
        case Replay():
            assert decision.prepared == PREPARED and decision.record.idempotency_key == "storyfilm-k-0"
            return "replay"
        case Submit():
            if decision.note.startswith("--redo"):
                return "submit: --redo"
            if "kept files are gone" in decision.note:
                return "submit: lost"
            assert not decision.note
            return "submit: retry" if decision.after_failure else "submit"
        case Refuse():
            assert decision.provider == "wavespeed" and f"--redo {SHOT}" in decision.reason
            if decision.moderation:
                assert "refused by the filter" in decision.reason
                return "refuse: filter"
            assert "may have been created and billed" in decision.reason
            return "refuse: late" if "24 h only" in decision.reason else "refuse: billed?"
    raise AssertionError(decision)


def test_every_combination_of_facts_matches_exactly_one_rule() -> None:
    assert len(CASES) == 8 * 3 * 2 * 2 * 2 * 4 * 2
    unmatched = [c for c in CASES if len(rows_for(c)) != 1]
    assert unmatched == []
    used = {row for c in CASES for row in rows_for(c)}
    assert [row for row in RULES if row not in used] == []  # no rule is dead


@pytest.mark.parametrize("state", STATES)
def test_decide_does_what_the_table_says(state: str) -> None:
    wrong = [(c, describe(decision_for(c)), rows_for(c)[0][-1]) for c in CASES if c.state == state
             and describe(decision_for(c)) != rows_for(c)[0][-1]]
    assert wrong == []


def test_a_replay_stops_an_hour_before_the_idempotency_key_expires() -> None:
    case = Case("intent", "no", True, True, True, "intact", "within")
    rec = record(case)
    assert rec is not None
    deadline = replay_deadline(rec)
    assert deadline == CREATED + IDEMPOTENCY_WINDOW_S - REPLAY_MARGIN_S == CREATED + 23 * 3600
    host = Host(paid=True, idempotent=True)

    def at(now: float) -> Decision:
        return decide(rec, SHOT, redo=frozenset(), run_id=THIS_RUN, host=host, resume=True, files=None, now=now)

    assert isinstance(at(deadline - 1), Replay)
    assert isinstance(at(deadline), Refuse)


def test_an_intent_without_its_request_cannot_be_replayed() -> None:
    rec = record(Case("intent", "no", True, True, True, "intact", "within"))
    assert rec is not None
    bare = Record(**{**asdict(rec), "prepared": None})
    decision = decide(bare, SHOT, redo=frozenset(), run_id=THIS_RUN, host=Host(paid=True, idempotent=True),
                      resume=True, files=None, now=CREATED + 60)
    assert isinstance(decision, Refuse) and not decision.moderation and "24 h only" not in decision.reason


def test_which_providers_are_paid_and_idempotent() -> None:
    hosts = {name: Host.of(spec) for name, spec in SPECS.items()}
    assert hosts == {"local": Host(paid=False, idempotent=False), "wavespeed": Host(paid=True, idempotent=False),
                     "gateway": Host(paid=True, idempotent=False), "apiframe": Host(paid=True, idempotent=True)}

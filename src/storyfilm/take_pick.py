"""A shot with takes, at run time: each take generated (or reused) as a shot of its own, one picked, the pick
recorded, and the shots chained after it planned again from the picked take. No Prefect: the flow hands a
`Review` in for `pick: review` (a form in the Prefect UI, or a question in the terminal).

The takes of a shot are generated one after the other in its task, inside its one provider slot: a shot
with 3 takes holds its slot three times as long, never three slots (the provider's concurrency limit holds).
A person's choice is not waited for inside the slot: with a `Review`, the first `make` of a shot to review
keeps its takes and raises ReviewPending; the caller leaves the slot and calls `make` again, which finds the
takes kept and asks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from storyfilm import take_score, takes
from storyfilm.decide import Reuse
from storyfilm.errors import ReviewError
from storyfilm.plan import Plan, ShotPlan, make_plan
from storyfilm.results import ShotResult
from storyfilm.session import decide_all
from storyfilm.take_score import TakeScore

if TYPE_CHECKING:
    from storyfilm.ledger import Ledger
    from storyfilm.session import FilmJob, PlannedFilm


@dataclass(frozen=True)
class TakesToReview:
    """What a person is shown to choose a take: each take's last frame and score, and the score's choice."""

    title: str
    slug: str
    shot_id: str
    prompt: str
    last_frames: tuple[str, ...]  # take k's is last_frames[k - 1]
    scores: tuple[TakeScore, ...]
    suggested: int


Review = Callable[[TakesToReview], int]  # the take chosen (1..N); raises ReviewError when none is


class ReviewPending(Exception):  # noqa: N818 - a signal to the caller, not an error
    """The shot's takes are kept; call `make` again outside the provider slot to ask a person."""


def with_picks(film: PlannedFilm, ledger: Ledger | None) -> PlannedFilm:
    """The film planned with the takes picked earlier (their chained shots start from the picked take)."""
    if ledger is None or all(s.takes == 1 or s.chosen for s in film.plan.shots):
        return film
    recorded = ledger.picks()
    if not recorded:
        return film
    return replace(film, plan=_replanned(film, recorded))


def _replanned(film: PlannedFilm, recorded: Mapping[str, int]) -> Plan:
    plan = film.plan
    return make_plan(film.board, film.digests, provider=plan.provider, tier=plan.tier, budget_usd=plan.budget_usd,
                     picks=recorded)


def _scores(rows: Sequence[Mapping[str, Any]]) -> list[TakeScore]:
    return [TakeScore(**{k: v for k, v in row.items() if k in TakeScore.__dataclass_fields__}) for row in rows]


class Picker:
    """Generates a shot's takes and picks one (see the module's docstring); shared by the run's tasks."""

    def __init__(self, film: PlannedFilm, review: Review | None):
        self.film = film
        self.review = review
        self._lock = threading.Lock()  # one re-plan at a time: each reads every pick recorded before it
        self._deferred: dict[str, list[ShotResult]] = {}  # takes of shots whose review waits until out of the slot

    def make(self, job: FilmJob, shot: ShotPlan, parent: ShotResult | None) -> ShotResult:
        from storyfilm.generate import build_request

        results = self._deferred.pop(shot.id, None)  # made before the caller left the slot: asked now
        if results is None:
            runs = takes.takes_of(shot)
            decisions = [job.decisions[t.id] for t in runs]
            if not all(isinstance(d, Reuse) for d in decisions):
                job.clock.mark(shot.id, "queued")
                job.clock.mark(shot.id, "started")
            results = [job.runner.run(t, build_request(t, job.assets, parent), parent,
                                      d if isinstance(d, Reuse) else None)
                       for t, d in zip(runs, decisions, strict=True)]
            if self._defer(job, shot):
                self._deferred[shot.id] = results
                if any(not r.reused for r in results):
                    job.clock.mark(shot.id, "finished")
                raise ReviewPending(shot.id)
        new = [r for r in results if not r.reused]
        chosen, how, scores = self._choose(job, shot, parent, results)
        if chosen != shot.chosen:
            self._replan(job)
        picked = results[chosen - 1]
        if new:
            job.clock.mark(shot.id, "finished")
        job.runner.log(f"{shot.id}: take {chosen} of {shot.takes} picked ({how}; scores "
                       + ", ".join(f"{s.take}: {s.score:g}" for s in scores) + ")")
        return replace(picked, id=shot.id, reused=not new, seconds=round(sum(r.seconds for r in results), 3),
                       cost_usd=round(sum(r.cost_usd for r in (new or results)), 4),
                       take={"take": chosen, "of": shot.takes, "how": how,
                             "scores": [s.as_dict() for s in scores],
                             "files": [r.segment for r in results]})

    def _defer(self, job: FilmJob, shot: ShotPlan) -> bool:
        """Whether a person will be asked (then not inside the provider slot)."""
        if shot.pick != "review" or self.review is None:
            return False
        recorded = job.runner.ledger.pick(takes.pick_key(shot))
        return recorded is None or recorded[1] != "review"

    def _choose(self, job: FilmJob, shot: ShotPlan, parent: ShotResult | None,
                results: Sequence[ShotResult]) -> tuple[int, str, list[TakeScore]]:
        """The take, how it was chosen, and every take's score; recorded in the ledger when it changed."""
        ledger = job.runner.ledger
        key = takes.pick_key(shot)
        recorded = ledger.pick(key)
        scores = _scores(recorded[2]) if recorded and len(recorded[2]) == shot.takes else None
        if scores is None:
            scores = take_score.score([take_score.measure(r, parent, exact_seam=shot.exact_seam) for r in results])
        if isinstance(shot.pick, int):
            chosen, how = shot.pick, "storyboard"
        elif recorded is not None and recorded[1] == shot.pick:
            chosen, how = recorded[0], recorded[1]
        elif shot.pick == "auto":
            chosen, how = take_score.best(scores), "auto"
        else:
            chosen, how = self._ask(job, shot, results, scores), "review"
        if recorded is None or recorded[:2] != (chosen, how):
            ledger.record_pick(key=key, shot_id=shot.id, take=chosen, how=how, scores=[s.as_dict() for s in scores],
                               run_id=job.runner.run_id)
        return chosen, how, scores

    def _ask(self, job: FilmJob, shot: ShotPlan, results: Sequence[ShotResult], scores: list[TakeScore]) -> int:
        suggested = take_score.best(scores)
        if self.review is None:
            raise ReviewError(f"shot '{shot.id}' has `pick: review`: a person chooses among its {shot.takes} takes "
                              "(they are kept, paid once), and this run has nobody to ask. Run it with a Prefect "
                              "server to answer in the UI, or from a terminal, or write `pick: auto` or a take "
                              f"number (the score prefers take {suggested})")
        asked = TakesToReview(title=job.plan.title, slug=job.plan.slug, shot_id=shot.id, prompt=shot.prompt,
                              last_frames=tuple(r.last_frame for r in results), scores=tuple(scores),
                              suggested=suggested)
        started = time.monotonic()
        chosen = self.review(asked)
        if not 1 <= chosen <= shot.takes:
            raise ReviewError(f"shot '{shot.id}': take {chosen} does not exist; allowed 1 to {shot.takes}")
        job.runner.log(f"{shot.id}: take {chosen} chosen by review after {time.monotonic() - started:.0f} s")
        return chosen

    def _replan(self, job: FilmJob) -> None:
        """The plan again with every pick recorded so far, and the decisions of the jobs whose keys changed."""
        with self._lock:
            plan = _replanned(self.film, job.runner.ledger.picks())
            before = {t.id: t.key for t in takes.jobs(job.plan)}
            changed = [t for t in takes.jobs(plan) if before.get(t.id) != t.key]
            runner = job.runner
            again = decide_all(replace(self.film, plan=plan), runner.ledger, runner.host, run_id=runner.run_id,
                               resume=runner.resume, mirror=runner.mirror, only=changed)
            job.decisions = {**job.decisions, **again}
            job.plan = plan

"""One film run, set up once and finished once. No Prefect.

`prepare` does, in this order: the storyboard (parsed once per run), asset digests, the plan, the
ledger, the --redo closure, what to do with each shot (decide.py) and so the new cost, the budget
check, then the provider, the shot runner and the assets. `FilmJob.make_shot` generates (or reuses) one
shot; `FilmJob.finish` assembles film.mp4, measures its seams and writes the exports beside it.

The flow (flow.py) is prepare / a task per shot / finish / publish; `storyfilm plan` shows a `preview`
(the same decisions, nothing written, no provider or API key needed); `storyfilm serve` checks
`plan_film`; tests/run_film.py runs a film from `prepare` without Prefect.

The modules a run needs (media, providers, assembly) are imported by `prepare` and `FilmJob`, not at the
top: `storyfilm plan` imports this module and stays light.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from storyfilm import assets as asset_store
from storyfilm import film_folder, output_url, takes
from storyfilm.decide import Decision, Host, Refuse, Replay, Resume, Reuse, Submit, decide
from storyfilm.ledger import Ledger, existing_ledger
from storyfilm.ledger_url import ledger_location
from storyfilm.netpolicy import ALLOW_NETWORKS_ENV
from storyfilm.plan import Plan, ShotPlan, check_budget, make_plan, redo_closure
from storyfilm.results import Film, ShotResult
from storyfilm.shot_times import ShotClock
from storyfilm.storage import Facts, gather
from storyfilm.storyboard import ASSET_ROOTS_ENV, Storyboard, asset_location, load_storyboard

if TYPE_CHECKING:
    from storyfilm.assemble import Piece
    from storyfilm.generate import PollSettings, ShotRunner
    from storyfilm.outputs import Mirror
    from storyfilm.providers.factory import KeyLookup
    from storyfilm.take_pick import Picker, Review

Log = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


def _nothing(_plan: Plan) -> None:
    pass


@dataclass(frozen=True)
class Options:
    """How to run a film: the CLI's options, the flow's parameters."""

    provider: str | None = None  # overrides the storyboard's
    budget_usd: float | None = None  # overrides the storyboard's
    output_dir: Path | str = Path("output")  # a folder, or a URL (outputs.py: s3://bucket/prefix, ...)
    redo: tuple[str, ...] = ()
    ledger: str | Path | None = None  # a file or an SQLAlchemy URL (precedence: ledger_url.py)
    loudness_lufs: float | None = None  # overrides the storyboard's
    run_id: str | None = None  # default: a new one
    resume: bool = True  # False: jobs of earlier runs are not resumed (a rehearsal's emulator forgot them)
    poll: PollSettings | None = None  # default: from the environment
    key_lookup: KeyLookup | None = field(default=None, repr=False)  # API keys kept outside the environment
    log: Log = field(default=_quiet, repr=False)  # what each shot does, as it happens
    on_plan: Callable[[Plan], None] = field(default=_nothing, repr=False)  # called once the plan is made
    review: Review | None = field(default=None, repr=False)  # asks a person to pick a take (`pick: review`)


# --- the storyboard, parsed once per run ----------------------------------------------------------

_Signature = tuple[int, int, int] | None  # inode, size, mtime_ns
_CACHED_BOARDS = 8
_boards: OrderedDict[tuple[str, Path, str, str], tuple[_Signature, tuple[_Signature, ...], Storyboard]] = OrderedDict()
_boards_lock = threading.Lock()


def _signature(path: Path) -> _Signature:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _asset_signatures(board: Storyboard) -> tuple[_Signature, ...]:
    return tuple(_signature(loc) for ref in board.asset_refs().values()
                 if isinstance(loc := asset_location(ref, board.base_dir), Path))


def load_board(path: str | Path) -> Storyboard:
    """The storyboard at `path`, parsed (and its asset images validated) once per version of the file.

    One `storyfilm run` reads it three times in one process: the CLI's check before Prefect starts, the
    flow run's name, the flow. The parse is cached by the path as given and the file's inode, size and
    mtime; a hit also needs its local assets' signatures unchanged, so an edited storyboard or a replaced
    image is parsed and validated again (an edit that keeps the size within one tick of the file system's
    clock, a few ms, would go unseen by a process that read the file just before). Boards are shared:
    callers must not modify them.
    """
    p = Path(path)
    # a relative path names another file from another working directory; the user's opt-ins (networks,
    # asset folders) decide what the storyboard may name
    key = (str(p), p.absolute(), os.environ.get(ALLOW_NETWORKS_ENV, ""), os.environ.get(ASSET_ROOTS_ENV, ""))
    signature = _signature(p)
    with _boards_lock:
        hit = _boards.get(key)
    if signature is not None and hit is not None and hit[0] == signature and hit[1] == _asset_signatures(hit[2]):
        return hit[2]
    board = load_storyboard(p)
    if signature is not None and _signature(p) == signature:  # not rewritten while it was read
        with _boards_lock:
            _boards[key] = (signature, _asset_signatures(board), board)
            _boards.move_to_end(key)
            while len(_boards) > _CACHED_BOARDS:
                _boards.popitem(last=False)
    return board


# --- the plan and what a run would do -----------------------------------------------------------


@dataclass(frozen=True)
class PlannedFilm:
    """A storyboard planned for a run: nothing written, no provider."""

    board: Storyboard
    digests: Mapping[str, str]  # asset name -> sha256 of its bytes
    plan: Plan
    redo: frozenset[str]  # the shots to generate again (--redo and the shots chained after them)
    film_dir: Path  # where the run writes (with outputs at a URL: a local scratch folder)
    ledger_at: str | Path  # a file or an SQLAlchemy URL
    remote: str | None = None  # the film's folder at the output URL


def plan_film(path: str | Path, options: Options) -> PlannedFilm:
    board = load_board(path)
    digests = asset_store.digests(board)
    plan = make_plan(board, digests, provider=options.provider, budget_usd=options.budget_usd)
    options.on_plan(plan)
    local, remote = output_url.split(options.output_dir)
    film_dir = local / plan.slug
    return PlannedFilm(board, digests, plan, takes.with_takes(redo_closure(plan, options.redo), plan), film_dir,
                       ledger_location(film_dir, options.ledger), f"{remote}/{plan.slug}" if remote else None)


ShotState = Literal["cached", "in flight", "new", "failed", "refused"]


def shot_state(decision: Decision) -> ShotState:
    """How `storyfilm plan` shows a decision."""
    match decision:
        case Reuse() | Resume(step="refetch"):
            return "cached"
        case Resume() | Replay():
            return "in flight"
        case Refuse():
            return "refused"
        case Submit():
            return "failed" if decision.after_failure else "new"


def new_cost(plan: Plan, decisions: Mapping[str, Decision]) -> float:
    """What a run would newly spend: the jobs (shots and their takes) it would submit."""
    return round(sum(s.cost_usd for s in takes.jobs(plan) if isinstance(decisions[s.id], Submit)), 4)


def decide_all(film: PlannedFilm, ledger: Ledger | None, host: Host, *, run_id: str | None,
               resume: bool, mirror: Mirror | None = None, only: Sequence[ShotPlan] | None = None
               ) -> dict[str, Decision]:
    """Every job's decision (a shot's, each of its takes'; or `only` those) from facts gathered now (a job: one
    ledger read, one hash of each of its kept files)."""
    now = time.time()
    out: dict[str, Decision] = {}
    for shot in takes.jobs(film.plan) if only is None else only:
        facts = (gather(ledger, film.film_dir / "shots", shot.key, mirror.has if mirror else None, shot.id) if ledger
                 else Facts(None, None))
        out[shot.id] = decide(facts.record, shot.id, redo=film.redo, run_id=run_id, host=host, resume=resume,
                              files=facts.files, now=now)
    return out


@dataclass(frozen=True)
class Preview:
    """What a run would do with each shot, and what it would newly spend."""

    film: PlannedFilm
    decisions: Mapping[str, Decision]

    @property
    def plan(self) -> Plan:
        return self.film.plan

    @property
    def states(self) -> dict[str, ShotState]:
        return {shot_id: shot_state(d) for shot_id, d in self.decisions.items()}

    @property
    def new_cost_usd(self) -> float:
        return new_cost(self.plan, self.decisions)

    @property
    def refusals(self) -> dict[str, str]:
        """Shots a run would stop at, and why."""
        return {shot_id: d.reason for shot_id, d in self.decisions.items() if isinstance(d, Refuse)}


def preview(path: str | Path, options: Options) -> Preview:
    """A plan-only prepare: the ledger is read if there is one; nothing is written, no provider is built."""
    from storyfilm.providers import spec_for
    from storyfilm.take_pick import with_picks

    film = plan_film(path, options)
    ledger = existing_ledger(film.ledger_at)
    film = with_picks(film, ledger)
    return Preview(film, decide_all(film, ledger, Host.of(spec_for(film.plan.provider)), run_id=None,
                                    resume=options.resume))


# --- a run ------------------------------------------------------------------------------------


def prepare(path: str | Path, options: Options) -> FilmJob:
    """Everything a run of the film needs; a plan over its budget stops here, before anything is paid."""
    from storyfilm.audio import check_target
    from storyfilm.generate import BudgetGuard, PollSettings, ShotRunner
    from storyfilm.outputs import Mirror
    from storyfilm.providers import make_provider, spec_for
    from storyfilm.take_pick import Picker, with_picks

    if options.loudness_lufs is not None:
        check_target(options.loudness_lufs)
    film = plan_film(path, options)
    plan = film.plan
    film_folder.claim(film.film_dir, path)  # before the ledger is made: never another storyboard's folder
    ledger = Ledger(film.ledger_at)
    film = with_picks(film, ledger)
    plan = film.plan
    run_id = options.run_id or str(uuid.uuid4())
    mirror = Mirror(film.remote, options.log) if film.remote else None
    decisions = decide_all(film, ledger, Host.of(spec_for(plan.provider)), run_id=run_id, resume=options.resume,
                           mirror=mirror)
    check_budget(plan, new_cost(plan, decisions))
    film.film_dir.mkdir(parents=True, exist_ok=True)
    provider = make_provider(plan.provider, film.film_dir / ".work", key_lookup=options.key_lookup)
    runner = ShotRunner(provider=provider, ledger=ledger, shots_dir=film.film_dir / "shots", run_id=run_id,
                        budget=BudgetGuard(plan.budget_usd), poll=options.poll or PollSettings.from_env(),
                        redo=film.redo, log=options.log, resume=options.resume, mirror=mirror)
    used = {a for s in plan.shots for a in (s.start.asset, s.end_image, *s.references) if a}
    assets = asset_store.materialise(film.board, film.film_dir / "assets", used)
    return FilmJob(plan=plan, digests=film.digests, film_dir=film.film_dir, runner=runner, assets=assets,
                   decisions=decisions, loudness_lufs=options.loudness_lufs, approve=film.board.approve,
                   picker=Picker(film, options.review) if any(s.takes > 1 for s in plan.shots) else None)


@dataclass
class FilmJob:
    """One run of one film, prepared: what its shots and its assembly share (in-process only)."""

    plan: Plan
    digests: Mapping[str, str]
    film_dir: Path
    runner: ShotRunner
    assets: Mapping[str, Path]  # local files of the assets the shots use
    decisions: Mapping[str, Decision]  # taken in `prepare`
    loudness_lufs: float | None = None  # overrides the storyboard's
    approve: bool = False  # the storyboard asks for approval before anything is paid (approval.py)
    picker: Picker | None = None  # chooses among the takes of shots that have several (take_pick.py)
    ahead: frozenset[str] = frozenset()  # shots whose jobs were submitted before the run's tasks (head_start.py)
    clock: ShotClock = field(init=False)  # when each shot was ready, took its slot, was kept

    def __post_init__(self) -> None:
        self.clock = ShotClock({s.id: s.parent for s in self.plan.shots})

    @property
    def generating(self) -> frozenset[str]:
        """The shots this run asks the host for (resumes and refusals included: they take a slot too)."""
        return frozenset(takes.shot_of(job_id) for job_id, d in self.decisions.items() if not isinstance(d, Reuse))

    @property
    def new_cost_usd(self) -> float:
        return new_cost(self.plan, self.decisions)

    def approve_budget(self, budget_usd: float | None) -> None:
        """Approved with this budget (nothing paid yet): the plan and the check before every submit take it."""
        from storyfilm.approval import with_budget
        from storyfilm.generate import BudgetGuard

        self.plan = with_budget(self.plan, budget_usd)
        self.runner.budget = BudgetGuard(budget_usd)

    def reusable(self, shot_id: str) -> bool:
        """The shot's kept segment (each take's) is reused: no call to the host, so no provider slot to wait for."""
        return all(isinstance(self.decisions[t.id], Reuse) for t in takes.takes_of(self.plan.shot(shot_id)))

    def make_shot(self, shot_id: str, parent: ShotResult | None = None) -> ShotResult:
        """The shot, reused, resumed or generated (`parent`: the result of the shot it continues)."""
        from storyfilm.generate import build_request

        shot = self.plan.shot(shot_id)
        if self.picker is not None and shot.takes > 1:
            return self.picker.make(self, shot, parent)
        decision = self.decisions[shot_id]
        if isinstance(decision, Reuse):  # carried out as decided (its files were hashed then); no time span
            return self.runner.run(shot, build_request(shot, self.assets, parent), parent, decision)
        self.clock.mark(shot_id, "queued")  # no-ops where the flow marked them (it holds a provider slot)
        self.clock.mark(shot_id, "started")
        # Decided again now: waiting for a provider slot may take minutes, and another run may have moved on.
        result = self.runner.run(shot, build_request(shot, self.assets, parent), parent)
        if not result.reused:
            self.clock.mark(shot_id, "finished")
        return result

    def finish(self, results: Sequence[ShotResult], log: Log | None = None) -> Film:
        """film.mp4 from the shots' new footage in storyboard order, its seams measured, its exports written."""
        from storyfilm import continuity_report, exports, manifest_links, seams, up_to_date
        from storyfilm.assemble import assemble
        from storyfilm.public_links import public_base

        target = self.loudness_lufs if self.loudness_lufs is not None else self.plan.loudness_lufs
        mirror = self.runner.mirror
        if mirror:  # the segments (assembly) and last frames (continuity report), where only in the bucket
            for result in results:
                mirror.ensure(self.runner.shots_dir, result)
        info = assemble(pieces(self.plan, results), self.plan.film, self.film_dir / "film.mp4",
                        self.film_dir / ".work", on_progress=log, loudness_lufs=target)
        report = seams.analyse(info)
        if log:
            for s in seams.flagged(report):
                log(f"seam {s.before} -> {s.after} at {s.time:.2f} s: {'; '.join(s.flags)}")
        look = continuity_report.measure(self.plan, results, self.film_dir)
        if log:
            for line in continuity_report.lines(look.reports):
                log(f"continuity: {line}")
        written = exports.write_all(self.plan, results, info, self.film_dir, seams=report,
                                    asset_digests=self.digests, spans=self.clock.spans(),
                                    inputs=up_to_date.inputs(self.plan, results, target),
                                    continuity=continuity_report.manifest_section(self.plan, look, self.film_dir))
        manifest_links.add(written["manifest"], self.film_dir, mirror.url if mirror else None, public_base())
        if mirror:
            mirror.publish(self.film_dir, [info.path, *written.values()])
        return Film(info, report, written, look.reports)


def pieces(plan: Plan, results: Sequence[ShotResult]) -> list[Piece]:
    """Each shot's new footage in storyboard order, with how it joins the shot before it."""
    from storyfilm.assemble import Piece

    by_id = {r.id: r for r in results}
    out: list[Piece] = []
    previous: str | None = None
    for s in plan.shots:
        r = by_id[s.id]
        # A shot contributes exactly its planned seconds: hosts may deliver a frame more (121 frames for 5 s).
        out.append(Piece(Path(r.segment), start_frame=r.new_from_frame, label=s.id,
                         frames=min(r.new_frames, round(s.duration * r.fps)),
                         join=s.transition.join(continues_previous=s.exact_seam and s.parent == previous,
                                                match=s.by_reference and s.parent == previous)))
        previous = s.id
    return out

"""Takes: a shot generated as N jobs (`takes: N`), one of them kept in the film (`pick`). Pure: no I/O.

Take 1 is the shot itself: its cache key is the shot's own, so adding `takes: 3` to a finished shot keeps
what was paid for as take 1 and pays for takes 2 and 3 only. Take k > 1 has a key of its own, derived from
the shot's (`take_key`), so each take is a ledger entry of its own: paid once, resumed after a kill, reused
by every later run, exactly as a shot is. Its files are shots/<id>.take<k>.mp4 (take 1: shots/<id>.mp4).
Where the provider takes a seed, take k is sent seed + k - 1 (seed 0 + k - 1 for a shot without one), so
that a deterministic renderer (the local animatic) makes different takes; a host without seeds makes each
its own anyway.

Which take the film uses is the shot's pick: a take number written in the storyboard, or the one chosen by
the score (`pick: auto`, take_score.py) or by a person (`pick: review`), recorded in the ledger under
`pick_key` (the takes' inputs and their number: a fourth take is a new choice). The shots chained after the
shot start from the picked take's last frame, so their keys follow the pick: choosing another take later
generates only them again, never a take.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storyfilm.plan import Plan, ShotPlan

SEP = ".take"  # take ids: <shot id>.take<k>; shot ids cannot contain a dot, so none is a shot's id


def take_id(shot_id: str, k: int) -> str:
    return shot_id if k == 1 else f"{shot_id}{SEP}{k}"


def shot_of(job_id: str) -> str:
    """The shot a take id (or a shot id) belongs to."""
    return job_id.split(SEP, 1)[0]


def take_key(key: str, k: int) -> str:
    """The cache key of take k of the shot whose key is `key` (take 1: the shot's own)."""
    from storyfilm.plan import cache_key

    return key if k == 1 else cache_key({"take_of": key, "take": k})


def take(shot: ShotPlan, k: int) -> ShotPlan:
    """Take k of `shot` as a shot of its own: its id, key and seed."""
    if k == 1:
        return shot
    return replace(shot, id=take_id(shot.id, k), key=take_key(shot.key, k),
                   seed=((shot.seed or 0) + k - 1) % 2**32)


def takes_of(shot: ShotPlan) -> list[ShotPlan]:
    return [take(shot, k) for k in range(1, shot.takes + 1)]


def jobs(plan: Plan) -> Iterator[ShotPlan]:
    """Every job the plan pays for: each shot, and its takes after the first."""
    for shot in plan.shots:
        yield from takes_of(shot)


def pick_key(shot: ShotPlan) -> str:
    """What a recorded choice among the shot's takes stands for: their inputs, what is kept of them, how many."""
    from storyfilm.plan import cache_key

    return cache_key({"picks_of": shot.output_key, "takes": shot.takes})


def resolve(shot: ShotPlan, recorded: Mapping[str, int]) -> ShotPlan:
    """The shot with the take it is known to use: written in the storyboard, or picked earlier."""
    if shot.takes == 1:
        return shot
    chosen = shot.pick if isinstance(shot.pick, int) else recorded.get(pick_key(shot))
    return replace(shot, chosen=chosen if chosen is not None and 1 <= chosen <= shot.takes else None)


def chain_key(shot: ShotPlan) -> str:
    """What the shots continuing `shot` start from: the output of its chosen take (take 1 until one is)."""
    return take(shot, shot.chosen or 1).output_key


def with_takes(redo: frozenset[str], plan: Plan) -> frozenset[str]:
    """The --redo set with the take ids of its shots (each take is redone with its shot)."""
    return redo | {t.id for s in plan.shots if s.id in redo for t in takes_of(s)}

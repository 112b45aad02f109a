"""Which waiting shot gets the next provider slot: the one with the most generation still ahead of it.

A shot's *work ahead* is its own planned seconds plus those of every shot that continues from it, directly
or further down (only shots this run generates count: a reused shot takes no slot and no time). Chains
are sequential, so a shot with much work behind it that waits delays the film's end by as long as it
waits, while a short chain's shot can wait with no harm. Waiting shots go by the most work ahead first,
ties in storyboard order (highest-level-first list scheduling; with equal shot lengths and one chain per
root it is the critical path first).

`PriorityGate` hands out a fixed number of slots in that order, in-process, from any thread. When a shot
finishes and the most urgent shot continuing from it beats every shot waiting now, the slot is kept for
that shot (it arrives a moment later, once its task has started) instead of going to a shot that merely
happened to be waiting already: a shot never loses its place to one that comes after it with less work
behind it. The gate stands in front of whatever slot the provider needs (a Prefect global concurrency
limit, see flow.py), so this process asks for those slots in its own order of urgency.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager

from storyfilm.plan import Plan

Urgency = tuple[float, int]  # (-work ahead in planned seconds, storyboard index): the smallest goes first


def work_ahead(plan: Plan, generating: Collection[str]) -> dict[str, float]:
    """Planned seconds each generating shot still has ahead of it: its own and its descendants' (generating)."""
    below: dict[str, float] = {}  # shot -> work ahead of the shots continuing from it
    ahead: dict[str, float] = {}
    for shot in reversed(plan.shots):  # a shot continues from an earlier one: its successors come first here
        ahead[shot.id] = (float(shot.duration) if shot.id in generating else 0.0) + below.get(shot.id, 0.0)
        if shot.parent:
            below[shot.parent] = below.get(shot.parent, 0.0) + ahead[shot.id]
    return {s.id: ahead[s.id] for s in plan.shots if s.id in generating}


def urgencies(plan: Plan, generating: Collection[str]) -> dict[str, Urgency]:
    ahead = work_ahead(plan, generating)
    return {s.id: (-ahead[s.id], s.index) for s in plan.shots if s.id in ahead}


def ready_at_start(plan: Plan, generating: Collection[str]) -> set[str]:
    """The generating shots that continue no generating shot: ready as soon as the run starts."""
    return {s.id for s in plan.shots if s.id in generating and (s.parent is None or s.parent not in generating)}


def successors(plan: Plan) -> dict[str, list[str]]:
    """The shots continuing directly from each shot."""
    out: dict[str, list[str]] = {s.id: [] for s in plan.shots}
    for s in plan.shots:
        if s.parent:
            out[s.parent].append(s.id)
    return out


class PriorityGate:
    """`capacity` slots, given to waiting names by their urgency (smallest first); thread-safe.

    A name without an urgency waits behind every name that has one (in arrival order among themselves).
    """

    def __init__(self, capacity: int, urgency: Mapping[str, Urgency],
                 next_of: Mapping[str, Sequence[str]] | None = None, *, first: Collection[str] = (),
                 settle: float = 5.0, holding: Collection[str] = ()):
        if capacity < 1:
            raise ValueError(f"a gate needs at least one slot, not {capacity}")
        if len(holding) > capacity:
            raise ValueError(f"{len(holding)} names hold slots of a gate of {capacity}")
        self.capacity = capacity
        self._urgency = dict(urgency)
        self._next = {k: list(v) for k, v in (next_of or {}).items()}
        self._free = capacity - len(holding)
        self._waiting: list[tuple[Urgency, int, str]] = []  # a heap
        # names a finished predecessor kept its slot for, and `holding`: names whose slots were taken before
        # the gate existed (a job submitted ahead of the run, head_start.py): their `acquire` returns at once
        self._kept: set[str] = set(holding)
        self._arrivals = itertools.count()
        self._lock = threading.Condition()
        # The shots ready at the start arrive within moments of each other, in storyboard order: the first
        # slots wait for all of them (at most `settle` seconds after the first), or a long chain that comes
        # last in the storyboard would start behind short ones.
        self._pending = set(first) - set(holding)
        self._settle = settle
        self._deadline: float | None = None

    def _key(self, name: str) -> Urgency:
        return self._urgency.get(name, (float("inf"), 0))

    @property
    def free(self) -> int:
        with self._lock:
            return self._free

    @property
    def waiting(self) -> list[str]:
        """Names waiting now, in the order they would get slots."""
        with self._lock:
            return [name for *_, name in sorted(self._waiting)]

    def acquire(self, name: str) -> None:
        with self._lock:
            self._pending.discard(name)
            if self._deadline is None:
                self._deadline = time.monotonic() + self._settle
            if name in self._kept:
                self._kept.discard(name)
                return
            entry = (self._key(name), next(self._arrivals), name)
            heapq.heappush(self._waiting, entry)
            self._lock.notify_all()
            try:
                while True:
                    if self._pending and time.monotonic() >= self._deadline:
                        self._pending.clear()  # the others are late: go without them
                    if self._free > 0 and self._waiting[0] is entry and not self._pending:
                        break
                    self._lock.wait(max(0.0, self._deadline - time.monotonic()) if self._pending else None)
            except BaseException:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
                self._lock.notify_all()
                raise
            heapq.heappop(self._waiting)
            self._free -= 1
            self._lock.notify_all()  # the next in line may find a slot free too

    def release(self, name: str, *, hand_on: bool = True) -> str | None:
        """Give the slot back; with `hand_on`, keep it for the most urgent successor if it beats every waiter.
        Returns the successor the slot is kept for, if any."""
        with self._lock:
            heir = min(((self._key(n), n) for n in self._next.get(name, ()) if n in self._urgency), default=None)
            kept = None
            if hand_on and heir is not None and (not self._waiting or heir[0] < self._waiting[0][0]):
                self._kept.add(heir[1])
                kept = heir[1]
            else:
                self._free += 1
            self._lock.notify_all()
            return kept

    @contextmanager
    def turn(self, name: str) -> Iterator[None]:
        """Hold a slot for `name`; a failure passes nothing on (its successors will not come)."""
        self.acquire(name)
        passed = False
        try:
            yield
            passed = True
        finally:
            self.release(name, hand_on=passed)

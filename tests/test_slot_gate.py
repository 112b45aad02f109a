"""The provider-slot gate: the shot with the most generation still ahead of it goes first (pure, threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from storyfilm.plan import Plan, make_plan
from storyfilm.slot_gate import PriorityGate, successors, urgencies, work_ahead
from storyfilm.storyboard import load_storyboard

from .helpers import write_storyboard

# chains: L (3 shots), S (1), T (2), U (1) in storyboard order; `lb` branches off l1
BOARD = """\
version: 1
title: Gate
defaults: {duration: 2, resolution: 480p}
shots:
  - {id: l1, prompt: One.}
  - {id: l2, prompt: Two., duration: 3}
  - {id: l3, prompt: Three.}
  - {id: s1, cut: true, prompt: Short.}
  - {id: t1, cut: true, prompt: Tee.}
  - {id: t2, prompt: Tee two.}
  - {id: u1, cut: true, prompt: You.}
  - {id: lb, continue_from: l1, prompt: Branch., duration: 4}
"""


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    path = write_storyboard(tmp_path_factory.mktemp("gate"), BOARD)
    return make_plan(load_storyboard(Path(path)), {})


def test_work_ahead_is_a_shots_own_and_its_descendants_planned_seconds(plan: Plan) -> None:
    every = {s.id for s in plan.shots}
    assert work_ahead(plan, every) == {"l1": 2 + 3 + 2 + 4, "l2": 5, "l3": 2, "s1": 2, "t1": 4, "t2": 2, "u1": 2,
                                       "lb": 4}
    # a reused shot takes no slot and no time: it is not counted, and it waits for nothing
    ahead = work_ahead(plan, every - {"l2", "t1"})
    assert ahead["l1"] == 2 + 2 + 4 and ahead["t2"] == 2 and "l2" not in ahead and "t1" not in ahead
    order = sorted(urgencies(plan, every), key=urgencies(plan, every).__getitem__)
    assert order == ["l1", "l2", "t1", "lb", "l3", "s1", "t2", "u1"]  # ties (2 s) in storyboard order
    assert successors(plan)["l1"] == ["l2", "lb"] and successors(plan)["l3"] == []


class Harness:
    """Each shot a thread: wait for a slot, record the grant, hold the slot until told, release, start the
    shots continuing from it (as the flow does: a child's task starts once its parent is done)."""

    def __init__(self, plan: Plan, capacity: int):
        self.gate = PriorityGate(capacity, urgencies(plan, {s.id for s in plan.shots}), successors(plan))
        self.next = successors(plan)
        self.granted: list[str] = []
        self.done = {s.id: threading.Event() for s in plan.shots}
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def start(self, shot: str, delay: float = 0.0) -> None:
        def body() -> None:
            time.sleep(delay)  # a child's task takes a moment to start: the gate must not give its slot away
            with self.gate.turn(shot):
                with self.lock:
                    self.granted.append(shot)
                assert self.done[shot].wait(10)
            for child in self.next[shot]:
                self.start(child, delay=0.2)

        thread = threading.Thread(target=body, daemon=True)
        self.threads.append(thread)
        thread.start()

    def until(self, what: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10
        while not what():
            assert time.monotonic() < deadline, f"granted so far: {self.granted}, waiting {self.gate.waiting}"
            time.sleep(0.005)

    def finish(self, shot: str, then_granted: int) -> None:
        self.done[shot].set()
        self.until(lambda: len(self.granted) >= then_granted)


def test_slots_go_to_the_most_work_ahead_and_a_finished_shot_keeps_its_slot_for_its_urgent_successor(
        plan: Plan) -> None:
    h = Harness(plan, capacity=2)
    for root in ("s1", "t1", "u1", "l1"):  # the long chain's first shot arrives last
        h.start(root)
        h.until(lambda root=root: root in h.granted or root in h.gate.waiting)  # type: ignore[misc]
    h.until(lambda: len(h.granted) == 2)
    assert h.granted == ["s1", "t1"]  # free slots go to whoever asks while they are free
    assert h.gate.waiting == ["l1", "u1"]  # 11 s ahead before 2 s
    h.finish("s1", 3)
    assert h.granted[2] == "l1"  # not u1, which came before it with less behind it
    # l1 finishes while u1 (2 s ahead) waits: its slot is kept for l2 (5 s ahead), whose task starts 0.2 s later;
    # lb (4 s) comes after it, and u1 waits on
    h.finish("l1", 4)
    assert h.granted[3] == "l2"
    h.until(lambda: "lb" in h.gate.waiting)  # lb's thread has arrived
    assert h.gate.waiting == ["lb", "u1"]
    # t1 finishes: its successor t2 (2 s, index 5) does not beat lb (4 s), so the slot goes to lb at once
    h.finish("t1", 5)
    assert h.granted[4] == "lb"
    h.until(lambda: "t2" in h.gate.waiting)  # t2's thread has arrived
    assert h.gate.waiting == ["t2", "u1"]  # ties in storyboard order
    h.finish("lb", 6)
    assert h.granted[5] == "t2"
    h.finish("l2", 7)  # l3 (2 s, index 2) beats u1 (2 s, index 6): kept for it
    assert h.granted[6] == "l3"
    for shot in ("t2", "l3"):
        h.done[shot].set()
    h.until(lambda: len(h.granted) == 8)
    assert h.granted[7] == "u1"
    h.done["u1"].set()
    for thread in h.threads:
        thread.join(5)
    assert h.gate.free == 2 and not h.gate.waiting  # every slot given back


def test_a_failed_shot_gives_its_slot_to_the_waiters_not_to_successors_that_will_not_come(plan: Plan) -> None:
    gate = PriorityGate(1, urgencies(plan, {s.id for s in plan.shots}), successors(plan))
    with pytest.raises(RuntimeError), gate.turn("l1"):
        raise RuntimeError("the host refused it")
    assert gate.free == 1
    with gate.turn("l1"):  # a success keeps the slot for l2 (nobody waits)
        pass
    assert gate.free == 0
    with gate.turn("l2"):
        assert gate.free == 0
    assert gate.free == 0  # kept again, for l3
    with gate.turn("l3"):
        pass
    assert gate.free == 1  # the chain's end: given back


def test_a_waiter_that_gives_up_leaves_the_line() -> None:
    gate = PriorityGate(1, {"a": (-5.0, 0), "b": (-1.0, 1)})
    gate.acquire("x")  # unknown names wait behind every known one, and may still hold a slot
    stop = threading.Event()
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            gate.acquire("a")
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion below
            errors.append(exc)

    original = gate._lock.wait

    def interrupted(timeout: float | None = None) -> bool:
        if stop.is_set():
            raise KeyboardInterrupt
        return original(0.01)

    gate._lock.wait = interrupted  # type: ignore[method-assign]
    thread = threading.Thread(target=waiter)
    thread.start()
    deadline = time.monotonic() + 10
    while gate.waiting != ["a"] and time.monotonic() < deadline:  # the waiter has joined the line
        time.sleep(0.005)
    assert gate.waiting == ["a"]
    stop.set()
    thread.join(5)
    assert errors and isinstance(errors[0], KeyboardInterrupt) and gate.waiting == []
    gate._lock.wait = original  # type: ignore[method-assign]
    gate.release("x")
    assert gate.free == 1


def test_the_first_slots_wait_for_every_shot_ready_at_the_start(plan: Plan) -> None:
    """Roots arrive in storyboard order; the long chain's root, last of them, still goes first."""
    urgency = urgencies(plan, {s.id for s in plan.shots})
    gate = PriorityGate(1, urgency, successors(plan), first={"s1", "l1"}, settle=30)
    granted: list[str] = []
    threads = [threading.Thread(target=lambda n=n: (gate.acquire(n), granted.append(n))) for n in ("s1", "l1")]
    threads[0].start()
    deadline = time.monotonic() + 10
    while gate.waiting != ["s1"] and time.monotonic() < deadline:  # s1 has asked
        time.sleep(0.005)
    time.sleep(0.1)  # and still has no slot a moment later
    assert granted == [] and gate.waiting == ["s1"]  # a slot is free, but l1 is expected
    threads[1].start()
    threads[1].join(5)
    assert granted == ["l1"]
    gate.release("l1", hand_on=False)
    threads[0].join(5)
    assert granted == ["l1", "s1"]

    late = PriorityGate(1, urgency, successors(plan), first={"s1", "l1"}, settle=0.2)
    start = time.monotonic()
    late.acquire("s1")  # l1 never comes: s1 goes after the settling time
    assert time.monotonic() - start >= 0.2

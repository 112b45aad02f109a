"""Progress events for whoever watches a film being made (the CLI's progress bars). No Prefect here.

The flow runs in the caller's process and its tasks in worker threads, so listeners are process-wide
and called from any thread. A listener that raises is logged and dropped from that event: a broken
display must never fail (or re-pay) a film.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

EventKind = Literal[
    "approval-waiting",  # paused before paying until a producer answers; message: the run's page in the UI
    "film-planned",  # shots: every shot id in storyboard order; message: the film's title
    "shot-waiting",  # queued behind the provider's concurrency limit
    "shot-started",  # generating (holds a provider slot)
    "shot-status",  # message: what is happening (submitted job id, polling, ...)
    "shot-done",  # seconds: wall time; cost_usd: spent
    "shot-reused",  # unchanged since the last run: nothing generated
    "shot-failed",  # message: why
    "assembly-started",
    "assembly-status",
    "assembly-done",  # message: the film's path; seconds: its duration
]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    shot: str | None = None
    message: str = ""
    shots: tuple[str, ...] = ()
    seconds: float | None = None
    cost_usd: float | None = None


Listener = Callable[[Event], None]

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_listeners: list[Listener] = []


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call `listener` with every event emitted in this process while the block runs."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def emit(event: Event) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # noqa: BLE001 - see the module docstring
            _log.warning("progress listener %r failed on %s", listener, event.kind, exc_info=True)

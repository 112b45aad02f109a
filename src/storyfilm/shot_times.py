"""When each shot of a run became ready, took its slot and was kept: the timestamps of the manifest and the timeline.

- queued: ready to go (the shot it continues from is kept; a first shot: its task started);
- started: it took its provider slot (or began generating, where there is no slot);
- finished: its segment is kept.

A reused shot has none of them: it generated nothing. Times are UTC; the first call for a shot and a
step counts (a step is recorded once). Thread-safe: shots are made by concurrent tasks.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

Step = Literal["queued", "started", "finished"]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Span:
    """One generated shot's times."""

    queued: datetime
    started: datetime
    finished: datetime

    @property
    def waited(self) -> float:
        return (self.started - self.queued).total_seconds()

    @property
    def generating(self) -> float:
        return (self.finished - self.started).total_seconds()

    def as_dict(self) -> dict[str, str]:
        return {f"{step}_at": t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
                for step, t in (("queued", self.queued), ("started", self.started), ("finished", self.finished))}


class ShotClock:
    """Records the steps of the shots of one run (`parents`: the shot each one continues from)."""

    def __init__(self, parents: Mapping[str, str | None] | None = None) -> None:
        self._parents = dict(parents or {})
        self._times: dict[str, dict[Step, datetime]] = {}
        self._lock = threading.Lock()

    def mark(self, shot_id: str, step: Step, at: datetime | None = None) -> datetime:
        """Record `step` for the shot, once (a later call keeps the first time); the time recorded.

        A shot is queued when the shot it continues was kept in this run (if it was), else now."""
        with self._lock:
            if at is None and step == "queued" and (parent := self._parents.get(shot_id)):
                at = self._times.get(parent, {}).get("finished")
            return self._times.setdefault(shot_id, {}).setdefault(step, at or _now())

    def spans(self) -> dict[str, Span]:
        """Every shot that went through all three steps."""
        with self._lock:
            return {shot: Span(t["queued"], t["started"], t["finished"]) for shot, t in self._times.items()
                    if {"queued", "started", "finished"} <= t.keys()}


def span_fields(spans: Mapping[str, Span], shot_id: str) -> dict[str, str | None]:
    """The manifest's timestamps of a shot: ISO 8601 UTC, or None for a shot that generated nothing."""
    span = spans.get(shot_id)
    if span is None:
        return {"queued_at": None, "started_at": None, "finished_at": None}
    return dict(span.as_dict())

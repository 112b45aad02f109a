"""Rich progress bars for `storyfilm run` in a terminal, driven by `storyfilm.progress` events.

One row for the film, one per shot (waiting, generating with the provider's latest status, done or
reused) and one for assembly. Events arrive from the flow's worker threads; rich's Progress locks.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from storyfilm.progress import Event

ASSEMBLY = "\0assembly"  # never a shot id ([a-z0-9_-])


class FilmProgress:
    def __init__(self, console: Console):
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"), TextColumn("{task.description}"), BarColumn(bar_width=16),
            TextColumn("{task.fields[status]}", markup=False), TimeElapsedColumn(), console=console,
        )
        self._rows: dict[str, TaskID] = {}
        self._film: TaskID | None = None

    def __enter__(self) -> FilmProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def _set(self, key: str | None, **fields: object) -> None:
        row = self._rows.get(key or "")
        if row is not None:
            # ignore: rich's update() names each keyword's type; callers pass those (description, completed, ...)
            self.progress.update(row, **fields)  # type: ignore[arg-type]

    def _start(self, key: str) -> None:
        if key in self._rows:
            self.progress.start_task(self._rows[key])

    def _finish(self, key: str, status: str) -> None:
        row = self._rows.get(key)
        if row is None:
            return
        self.progress.update(row, completed=1, status=status)
        self.progress.stop_task(row)
        if self._film is not None:
            self.progress.advance(self._film)

    def __call__(self, event: Event) -> None:
        kind, shot = event.kind, event.shot or ""
        if kind == "film-planned":
            self._film = self.progress.add_task(f"[bold]{event.message}[/]", total=len(event.shots) + 1,
                                                status=f"{len(event.shots)} shots")
            width = max([len(s) for s in event.shots] + [8])
            for s in event.shots:
                self._rows[s] = self.progress.add_task(f"  {s:<{width}}", total=1, start=False, status="queued")
            self._rows[ASSEMBLY] = self.progress.add_task(f"  {'assemble':<{width}}", total=1, start=False,
                                                          status="after the shots")
        elif kind == "shot-waiting":
            self._set(shot, status="waiting for a provider slot")
        elif kind == "shot-started":
            self._start(shot)
            self._set(shot, status="generating")
        elif kind == "shot-status":
            self._set(shot, status=event.message.removeprefix(f"{shot}: "))
        elif kind == "shot-done":
            self._finish(shot, f"generated in {event.seconds or 0:.1f} s, ${event.cost_usd or 0:.2f}")
        elif kind == "shot-reused":
            self._finish(shot, "reused (unchanged)")
        elif kind == "shot-failed":
            self._set(shot, status=f"failed: {event.message.splitlines()[0] if event.message else ''}")
            if shot in self._rows:
                self.progress.stop_task(self._rows[shot])
        elif kind == "assembly-started":
            self._start(ASSEMBLY)
            self._set(ASSEMBLY, status=event.message)
        elif kind == "assembly-status":
            self._set(ASSEMBLY, status=event.message)
        elif kind == "assembly-done":
            self._finish(ASSEMBLY, f"{event.seconds or 0:.2f} s film")

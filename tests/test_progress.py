"""Progress events (no Prefect) and the terminal view the CLI drives with them."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from storyfilm import cli, progress
from storyfilm.cli import progress_view
from storyfilm.console_progress import FilmProgress
from storyfilm.progress import Event, emit, listening

from .helpers import write_storyboard


def test_listeners_get_events_from_any_thread_only_while_listening() -> None:
    seen: list[Event] = []
    lock = threading.Lock()

    def record(event: Event) -> None:
        with lock:
            seen.append(event)

    emit(Event("shot-started", "before"))
    with listening(record):
        threads = [threading.Thread(target=emit, args=(Event("shot-done", f"s{i}"),)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    emit(Event("shot-started", "after"))
    assert sorted(e.shot for e in seen) == [f"s{i}" for i in range(8)]
    assert not progress._listeners


def test_a_broken_listener_does_not_stop_the_others() -> None:
    seen: list[str] = []

    def broken(_event: Event) -> None:
        raise RuntimeError("display bug")

    with listening(broken), listening(lambda e: seen.append(e.kind)):
        emit(Event("assembly-started"))
    assert seen == ["assembly-started"]


def render(events: list[Event]) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    with FilmProgress(console) as view:
        for event in events:
            view(event)
    return buffer.getvalue()


def test_the_view_shows_every_shot_its_outcome_and_the_assembly() -> None:
    text = render([
        Event("film-planned", message="Harbour", shots=("dawn", "gulls", "pier")),
        Event("shot-reused", "dawn"),
        Event("shot-waiting", "gulls"),
        Event("shot-started", "gulls"),
        Event("shot-status", "gulls", "gulls: job j-1 running 40%"),
        Event("shot-done", "gulls", seconds=61.0, cost_usd=1.2),
        Event("shot-started", "pier"),
        Event("shot-failed", "pier", "shot 'pier' [wavespeed]: job j-2 failed: moderation\nmore detail"),
        Event("assembly-started", message="joining 3 segments"),
        Event("assembly-done", message="output/harbour/film.mp4", seconds=12.0),
    ])
    final = text.split("Harbour")[-1]  # the last refresh
    lines = [line for line in final.splitlines() if line.strip()]
    assert any("dawn" in line and "reused (unchanged)" in line for line in lines)
    assert any("gulls" in line and "generated in 61.0 s, $1.20" in line for line in lines)
    assert any("pier" in line and "failed: shot 'pier' [wavespeed]: job j-2 failed: moderation" in line
               for line in lines)
    assert "more detail" not in final
    assert any("assemble" in line and "12.00 s film" in line for line in lines)


def test_the_view_shows_the_providers_latest_status_while_a_shot_runs() -> None:
    view = FilmProgress(Console(file=io.StringIO(), force_terminal=True))
    view(Event("film-planned", message="Harbour", shots=("gulls",)))
    view(Event("shot-started", "gulls"))
    view(Event("shot-status", "gulls", "gulls: job j-1 running 40%"))
    [row] = [t for t in view.progress.tasks if "gulls" in t.description]
    assert row.fields["status"] == "job j-1 running 40%" and row.started and not row.finished


def test_progress_only_in_a_terminal() -> None:
    assert progress_view(Console(file=io.StringIO(), force_terminal=False)) is None
    assert isinstance(progress_view(Console(file=io.StringIO(), force_terminal=True)), FilmProgress)


@pytest.mark.slow
def test_run_in_a_terminal_shows_each_shot_and_the_assembly(prefect_server: None, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=screen, force_terminal=True, width=120, color_system=None))
    board = write_storyboard(tmp_path, "version: 1\ntitle: Terminal Film\ndefaults: {duration: 1, resolution: 480p}\n"
                                       "shots:\n  - {id: first, prompt: A harbour.}\n"
                                       "  - {id: second, prompt: Boats.}\n")
    result = CliRunner().invoke(cli.app, ["run", str(board), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    final = screen.getvalue().split("Terminal Film")[-1]
    assert any("first" in line and "generated in" in line for line in final.splitlines())
    assert any("second" in line and "generated in" in line for line in final.splitlines())
    assert any("assemble" in line and "2.00 s film" in line for line in final.splitlines())
    assert "film " in final and "manifest " in final  # the result follows the bars

"""The film's summary and shot table (what the Prefect artifacts show), from plain data: no Prefect."""

from __future__ import annotations

from pathlib import Path

import pytest

from storyfilm.plan import make_plan
from storyfilm.report import shot_rows, spent_usd, summary_markdown
from storyfilm.results import FilmInfo, ShotResult
from storyfilm.storyboard import load_storyboard

from .helpers import write_storyboard

BOARD = """\
version: 1
title: Report Film
budget_usd: 9
defaults: {duration: 2, resolution: 480p}
shots:
  - {id: first, prompt: A harbour.}
  - {id: second, prompt: Boats.}
  - {id: other, cut: true, prompt: A storm.}
"""


def result(shot_id: str, key: str, *, reused: bool, cost: float, seconds: float) -> ShotResult:
    return ShotResult(id=shot_id, key=key, segment=f"/films/report-film/shots/{shot_id}.mp4",
                      last_frame=f"/films/report-film/shots/{shot_id}.last.png", new_from_frame=1 if shot_id ==
                      "second" else 0, frames=49 if shot_id == "second" else 48, fps=24.0, has_audio=True,
                      provider="local", job_id=f"job-{shot_id}", cost_usd=cost, seconds=seconds, reused=reused)


def test_summary_and_table_say_what_was_made_reused_and_paid(tmp_path: Path) -> None:
    plan = make_plan(load_storyboard(write_storyboard(tmp_path, BOARD)), {})
    # storyboard order differs from completion order: the table follows the storyboard
    results = [result("other", plan.shots[2].key, reused=False, cost=1.5, seconds=70.0),
               result("first", plan.shots[0].key, reused=True, cost=2.0, seconds=0.0),
               result("second", plan.shots[1].key, reused=False, cost=0.75, seconds=65.2)]
    film = FilmInfo(path=tmp_path / "film.mp4", frames=144, fps=24, width=854, height=480)
    rows = shot_rows(plan, results)
    assert [r["shot"] for r in rows] == ["first", "second", "other"]
    assert rows[0] == {"shot": "first", "chain": 1, "start": "text-to-video", "seconds": 2.0, "status": "reused",
                       "job": "job-first", "generation_s": 0.0, "cost_usd": 2.0, "file": "first.mp4"}
    assert rows[1]["start"] == "last frame of 'first'" and rows[1]["seconds"] == 2.0  # the seam frame is not new
    assert rows[2]["chain"] == 2
    assert spent_usd(results) == 2.25  # the reused shot was paid for by an earlier run

    md = summary_markdown(plan, results, film, tmp_path / "manifest.json")
    assert md.startswith("# Report Film\n")
    assert f"[{tmp_path / 'film.mp4'}]({(tmp_path / 'film.mp4').as_uri()})" in md
    assert f"({(tmp_path / 'manifest.json').as_uri()})" in md
    assert "**Duration:** 6.000 s (144 frames, 854x480 @ 24 fps; planned 6 s)" in md
    assert "**Shots:** 3 in 2 chain(s)" in md
    assert "**Cache hits:** 1 of 3 shots reused" in md
    assert "**Spent this run:** $2.25 (estimate for every shot $0.00, budget $9.00)" in md
    assert "| second | last frame of 'first' | 2.00 s | generated | 65.2 s | $0.75 |" in md


def test_a_prefect_api_failure_while_reporting_does_not_fail_the_film(monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Progress and artifacts are for watching: losing them must not fail (and so re-pay) a shot."""
    import httpx

    from storyfilm import _prefect

    def down(*_args: object, **_kwargs: object) -> None:
        raise httpx.ConnectError("connection refused")

    for name in ("create_progress_artifact", "update_progress_artifact", "create_markdown_artifact"):
        monkeypatch.setattr(_prefect, name, down)
    progress = _prefect.ProgressArtifact("film-x-progress", steps=2, description="x")
    assert progress.advance() == 50.0 and progress.advance() == 100.0
    _prefect.publish_film("x", "X", "# X", [], Path("film.mp4"), Path("manifest.json"))
    assert [r.getMessage() for r in caplog.records] == [
        "could not create the progress artifact in the Prefect API: connection refused",
        "could not publish the film's artifacts in the Prefect API: connection refused"]

"""The run's summary and shot table (what the Prefect artifacts show), from plain data: no Prefect."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from storyfilm import pictures
from storyfilm.errors import ConfigurationError
from storyfilm.plan import make_plan
from storyfilm.public_links import markdown_link, public_base, public_url
from storyfilm.report import RunReport, ShotOutcome, progress_description, shot_rows, spent_usd, summary_markdown
from storyfilm.results import FilmInfo, ShotResult
from storyfilm.storyboard import load_storyboard

from .helpers import write_image, write_storyboard

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


def test_a_finished_run_says_what_was_made_reused_waited_for_and_paid(tmp_path: Path) -> None:
    plan = make_plan(load_storyboard(write_storyboard(tmp_path, BOARD)), {})
    first = result("first", plan.shots[0].key, reused=True, cost=2.0, seconds=0.0)
    second = result("second", plan.shots[1].key, reused=False, cost=0.75, seconds=65.2)
    other = result("other", plan.shots[2].key, reused=False, cost=1.5, seconds=70.0)
    outcomes = [ShotOutcome("first", "reused", first), ShotOutcome("second", "generated", second, waited_s=12.5),
                ShotOutcome("other", "generated", other)]
    film = FilmInfo(path=tmp_path / "film.mp4", frames=144, fps=24, width=854, height=480)
    report = RunReport(plan, outcomes, film=film, links={"Film": "[film.mp4](https://f.example/report-film/film.mp4)"},
                       thumbnails={"second": "data:image/jpeg;base64,AAAA"})
    rows = shot_rows(report)
    assert [r["shot"] for r in rows] == ["first", "second", "other"]
    assert rows[0] == {"shot": "first", "chain": 1, "start": "text-to-video", "status": "reused",
                       "film seconds": 2.0, "waited for slot": "0.0 s", "generation": "0.0 s", "cost": "$0.00",
                       "job": "job-first", "next run": ""}  # paid by an earlier run: nothing this run
    assert rows[1]["waited for slot"] == "12.5 s" and rows[1]["generation"] == "65.2 s"  # kept apart
    assert rows[1]["start"] == "last frame of 'first'" and rows[1]["film seconds"] == 2.0  # the seam frame is not new
    assert rows[2]["chain"] == 2 and rows[2]["cost"] == "$1.50"
    assert spent_usd(report.results) == 2.25

    md = summary_markdown(report)
    assert md.startswith("# Report Film: finished\n")
    assert "**Film:** [film.mp4](https://f.example/report-film/film.mp4)" in md
    assert "**Duration:** 6.000 s (144 frames, 854x480 @ 24 fps; planned 6 s)" in md
    assert "**Shots:** 3 in 2 chain(s): 2 generated, 1 reused, 0 failed, 0 not started, 0 waiting" in md
    assert ("**Committed this run:** $2.25 for 2 generated shot(s); $2.00 of reused shots was paid by earlier runs "
            "(estimate for every shot $0.00, budget $9.00)") in md
    thumb = "![second](data:image/jpeg;base64,AAAA)"
    assert f"| {thumb} | second | **generated** | 2.00 s | 12.5 s | 65.2 s | $0.75 |" in md
    assert "next run" not in md and "Why it failed" not in md
    assert progress_description(report) == "finished: 3 of 3 shots, film assembled"
    assert md.rstrip().endswith("KB, pictures included._")


def test_a_failed_run_says_which_shots_are_kept_which_failed_and_why_and_what_comes_next(tmp_path: Path) -> None:
    plan = make_plan(load_storyboard(write_storyboard(tmp_path, BOARD)), {})
    first = result("first", plan.shots[0].key, reused=False, cost=0.96, seconds=30.0)
    why = "shot 'other' [wavespeed]: job j-9 failed: content policy violation | <flagged>"
    outcomes = [ShotOutcome("first", "generated", first, next_run="reuse (not paid again)"),
                ShotOutcome("second", "waiting", next_run="generate ($0.96)"),
                ShotOutcome("other", "failed", reason=why, next_run="stop: refused by moderation")]
    report = RunReport(plan, outcomes, error="1 shot(s) failed; 1 finished shot(s) are kept:\n  " + why)
    md = summary_markdown(report)
    assert md.startswith("# Report Film: FAILED\n")
    assert "> **Why it failed:** 1 shot(s) failed; 1 finished shot(s) are kept:" in md
    assert "> - shot 'other' [wavespeed]: job j-9 failed: content policy violation \\| &lt;flagged&gt;" in md
    assert "**Committed this run:** $0.96 for 1 generated shot(s)" in md
    # the UI does not wrap table cells: the reason is in the list above, the table says what comes next
    assert "| other | **failed** | 2.00 s | 0.0 s |  | $0.00 | stop: refused by moderation |" in md
    assert md.count("| next run |") == 1 and "| **waiting** | 2.00 s | 0.0 s |  | $0.00 | generate ($0.96) |" in md
    assert progress_description(report) == "failed after 1 of 3 shots: 1 failed"
    blocked = RunReport(plan, [outcomes[0], ShotOutcome("second", "not started", reason="'first' failed"),
                               outcomes[2]], error="x")
    assert progress_description(blocked) == "failed after 1 of 3 shots: 1 failed, 1 not started"
    assembly = RunReport(plan, [ShotOutcome(o.id, "generated", first) for o in outcomes], error="ffmpeg failed")
    assert progress_description(assembly) == "failed at assembly after 3 of 3 shots"


def test_a_rehearsal_says_nothing_was_paid(tmp_path: Path) -> None:
    plan = make_plan(load_storyboard(write_storyboard(tmp_path, BOARD.replace("budget_usd: 9\n", ""))), {})
    first = result("first", plan.shots[0].key, reused=False, cost=0.6, seconds=3.0)
    md = summary_markdown(RunReport(plan, [ShotOutcome("first", "generated", first)] +
                                    [ShotOutcome(s.id, "waiting") for s in plan.shots[1:]], rehearsal=True))
    assert md.startswith("# Report Film: running (rehearsal: nothing was paid)\n")
    assert "**Cost at list prices:** $0.60 this run, nothing paid (the hosts were emulated)" in md
    assert "Committed" not in md


def test_public_links_are_http_under_the_base_and_paths_otherwise(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "output"
    film = out / "night storm" / "film.mp4"
    assert public_base("") is None and public_base("https://films.example/out/") == "https://films.example/out"
    monkeypatch.setenv("STORYFILM_PUBLIC_URL", "http://127.0.0.1:8000")
    assert public_base() == "http://127.0.0.1:8000"
    for bad in ("file:///srv/films", "films.example/out", "https://films.example/out?x=1"):
        with pytest.raises(ConfigurationError, match="STORYFILM_PUBLIC_URL=.*http\\(s\\) URL at which the output"):
            public_base(bad)
    assert public_url(film, out, "https://f.example") == "https://f.example/night%20storm/film.mp4"
    assert public_url(tmp_path / "elsewhere.mp4", out, "https://f.example") is None  # outside the served folder
    assert markdown_link("film.mp4", film, out, "https://f.example") == \
        "[film.mp4](https://f.example/night%20storm/film.mp4)"
    assert markdown_link("film.mp4", film, out, None) == f"`{film.resolve()}`"  # to copy, not a dead file:// link


def test_pictures_are_small_jpegs_and_a_missing_one_is_left_out(tmp_path: Path) -> None:
    frame = write_image(tmp_path / "last.png", size=(854, 480), seed=3)
    thumb = pictures.thumbnail(frame)
    assert thumb is not None and thumb[:3] == b"\xff\xd8\xff" and len(thumb) < 12_000
    sheet_png = write_image(tmp_path / "sheet.png", size=(2600, 1400), seed=4)  # noise: the worst case for JPEG
    sheet = pictures.contact_sheet(sheet_png)
    assert sheet is not None and len(sheet) <= pictures.SHEET_MAX_BYTES
    with Image.open(__import__("io").BytesIO(sheet)) as img:
        assert img.format == "JPEG" and img.width <= pictures.SHEET_WIDTH
    assert pictures.data_uri(b"\xff\xd8").startswith("data:image/jpeg;base64,")
    assert pictures.thumbnail(tmp_path / "missing.png") is None
    (tmp_path / "junk.png").write_bytes(b"not a picture")
    assert pictures.contact_sheet(tmp_path / "junk.png") is None


def test_a_prefect_api_failure_while_reporting_does_not_fail_the_film(monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Progress and artifacts are for watching: losing them must not fail (and so re-pay) a shot."""
    import httpx

    from storyfilm import _prefect

    def down(*_args: object, **_kwargs: object) -> None:
        raise httpx.ConnectError("connection refused")

    for name in ("create_progress_artifact", "update_progress_artifact", "create_markdown_artifact",
                 "create_link_artifact"):
        monkeypatch.setattr(_prefect, name, down)
    progress = _prefect.ProgressArtifact("film-x-progress", steps=2, description="x")
    assert progress.advance() == 50.0 and progress.advance() == 100.0
    progress.finish("finished")
    _prefect.publish_run("x", "X", "# X", [], {"Film": "https://f.example/x/film.mp4"})
    assert [r.getMessage() for r in caplog.records] == [
        "could not create the progress artifact in the Prefect API: connection refused",
        "could not publish the film's artifacts in the Prefect API: connection refused"]

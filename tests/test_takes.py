"""Takes: N paid jobs for a shot, one picked by a documented score (or by the storyboard), the pick recorded,
and a later re-pick paying only for the shots chained after it. Real renders, real ffmpeg, the emulator over
loopback HTTP for the paid runs."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from storyfilm import session, take_score
from storyfilm.animatic import AnimaticSpec, render
from storyfilm.emulator.faults import Flaw
from storyfilm.emulator.flaws import flawed
from storyfilm.emulator.media import Rendered
from storyfilm.errors import BudgetExceeded, JobFailed, ReviewError, StoryboardError
from storyfilm.ledger import Ledger
from storyfilm.media import ffmpeg, probe
from storyfilm.media.ffmpeg import VideoFormat
from storyfilm.plan import check_budget
from storyfilm.results import ShotResult
from storyfilm.storyboard import parse_storyboard
from storyfilm.take_pick import TakesToReview
from storyfilm.take_review import ask_in_terminal, markdown

from .emu import set_faults
from .helpers import emulator_stats, point_hosts_at, write_storyboard


def board(*, takes: int = 3, pick: str = "auto", budget: float | None = None, only_a: bool = False) -> str:
    head = "version: 1\ntitle: Takes\nprovider: apiframe\n" + (f"budget_usd: {budget}\n" if budget else "")
    shots = "  - id: a\n    prompt: A ship in the storm, push in.\n"
    if not only_a:
        shots += (f"  - id: b\n    cut: true\n    prompt: The keeper walks the pier, push in.\n    takes: {takes}\n"
                  f"    pick: {pick}\n  - id: c\n    prompt: He climbs the stairs, pan right.\n")
    return head + "defaults: {duration: 4, resolution: 480p, aspect_ratio: '1:1'}\nshots:\n" + shots


# --- the storyboard and the plan (no media) ---------------------------------------------------------


@pytest.mark.parametrize(("shot", "message"), [
    ("takes: 5", r"shots\[0\].takes \(shot 'x'\): 5 takes; allowed 1 to 4"),
    ("takes: 0", r"shots\[0\].takes \(shot 'x'\): 0 takes; allowed 1 to 4"),
    ("takes: 2\n    pick: 3", r"shots\[0\].pick \(shot 'x'\): take 3 does not exist: the shot has takes 1 to 2"),
    ("pick: review", r"shots\[0\].pick \(shot 'x'\): `pick: review` needs takes to choose from"),
    ("takes: 2\n    pick: best", r"shots\[0\].pick \(shot 'x'\): 'best' is not a choice; allowed: auto, review"),
    ("takes: 2\n    pick: true", r"shots\[0\].pick \(shot 'x'\): True is not a choice"),
])
def test_takes_and_pick_are_checked_with_the_shot_named(shot: str, message: str) -> None:
    text = f"version: 1\ntitle: T\nshots:\n  - id: x\n    prompt: p\n    {shot}\n"
    with pytest.raises(StoryboardError) as info:
        parse_storyboard(text, "t.yaml")
    assert len(info.value.problems) == 1 and re.search(message, str(info.value)), str(info.value)


def test_plan_and_budget_count_every_take(tmp_path: Path) -> None:
    path = write_storyboard(tmp_path, board(budget=2.0), "takes.yaml")
    seen = session.preview(path, session.Options(output_dir=tmp_path / "out"))
    assert [s.takes for s in seen.plan.shots] == [1, 3, 1]
    assert set(seen.decisions) == {"a", "b", "b.take2", "b.take3", "c"}
    assert seen.plan.cost_usd == pytest.approx(5 * 0.48) and seen.new_cost_usd == pytest.approx(5 * 0.48)
    with pytest.raises(BudgetExceeded, match=r"new spend is \$2.40, over the budget of \$2.00"):
        check_budget(seen.plan, seen.new_cost_usd)
    from storyfilm.cli import app

    result = CliRunner().invoke(app, ["plan", str(path), "--output", str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "b.take2" in result.output and "b.take3" in result.output and "take 3 of 3" in result.output
    assert "jobs: 5 for 3 shots; takes: b 3 (pick auto)" in result.output
    assert "5 new" in result.output and "new cost $2.40" in result.output


# --- the score on real media ------------------------------------------------------------------------


def _take(path: Path, tmp: Path, flaw: Flaw | None = None, blur: bool = False) -> ShotResult:
    """A half-second 480p animatic (moving: push in), made frozen, dark or blurred after its first frame."""
    fmt = VideoFormat(480, 480, 24)
    source = tmp / "source.mp4"
    if not source.exists():
        render(AnimaticSpec(fmt=fmt, frames=13, prompt="A lighthouse at dusk", camera="push_in", audio=False), source)
    video = source
    if flaw is not None:
        video = flawed(Rendered(source, None), flaw, 12, tmp, path.stem).video
    if blur:
        video = tmp / f"{path.stem}.mp4"
        ffmpeg.run(["-y", "-i", str(source), "-vf", "gblur=sigma=3", *ffmpeg.x264_args(fmt, [0]), str(video)])
    frames = probe.probe(video).video
    assert frames is not None
    return ShotResult(id=path.stem, key=path.stem, segment=str(video), last_frame="", new_from_frame=1,
                      frames=frames.frames, fps=24.0, has_audio=False, provider="local", job_id="", cost_usd=0.0,
                      seconds=0.0)


def test_the_score_prefers_the_moving_the_exposed_and_the_sharp_take(tmp_path: Path) -> None:
    good = _take(tmp_path / "good", tmp_path)
    frozen = _take(tmp_path / "frozen", tmp_path, flaw="frozen")
    dark = _take(tmp_path / "dark", tmp_path, flaw="dark")
    blurred = _take(tmp_path / "blurred", tmp_path, blur=True)
    measured = [take_score.measure(r) for r in (good, frozen, dark, blurred)]
    assert measured[0].frozen == 0.0 and measured[1].frozen == 1.0  # every new frame repeats the one before
    assert measured[2].clipped > 0.9 and measured[0].clipped < 0.3  # crushed to black (a dusk: dark hills)
    assert measured[3].sharpness < 0.5 * measured[0].sharpness
    scores = take_score.score(measured)
    assert [s.take for s in sorted(scores, key=lambda s: -s.score)][0] == 1 and take_score.best(scores) == 1
    assert scores[1].score == 0.0 and scores[2].score < 20 and 50 < scores[3].score < scores[0].score == 100.0
    # alone against each other: the blurred take still loses to the sharp one, and equal takes go to the first
    assert take_score.best(take_score.score([measured[3], measured[0]])) == 2
    assert take_score.best(take_score.score([measured[0], measured[0]])) == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_review_in_a_terminal_asks_and_without_one_refuses_clearly() -> None:
    scores = take_score.score([take_score.Measures(0.0, 0.0, 0.0, 0.0, 10.0),
                               take_score.Measures(1.0, 0.0, 0.0, 0.0, 10.0)])
    asked = TakesToReview(title="T", slug="t", shot_id="b", prompt="p", last_frames=("b.png", "b.take2.png"),
                          scores=tuple(scores), suggested=take_score.best(scores))
    said = io.StringIO()
    assert ask_in_terminal(asked, _Terminal("7\n2\n"), said) == 2
    assert "'7' is not a take; allowed 1 to 2" in said.getvalue() and "take 1: score 100 (the score's choice)" in \
        said.getvalue()
    assert ask_in_terminal(asked, _Terminal("\n"), io.StringIO()) == 1  # Enter: the score's choice
    with pytest.raises(ReviewError, match="shot 'b' has `pick: review` and this run has no terminal to ask in"):
        ask_in_terminal(asked, io.StringIO("2\n"), io.StringIO())
    with pytest.raises(ReviewError, match="no take was chosen"):
        ask_in_terminal(asked, _Terminal(""), io.StringIO())
    assert markdown(asked).count("| **") == 2 and "**1** (the score's choice)" in markdown(asked)


# --- paid runs against the emulator ------------------------------------------------------------------


def _frames(film: Path, first: int, count: int) -> np.ndarray:
    return np.stack([f.astype(np.float32) for f in probe.read_frames(film, list(range(first, first + count)))])


def _jobs(url: str, prompt: str) -> list[dict]:
    return [j for j in emulator_stats(url)["jobs"] if j["prompt"] == prompt]


@pytest.mark.slow
def test_three_takes_cost_three_jobs_the_score_avoids_the_dark_one_and_a_repick_pays_only_the_tail(
        emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from .run_film import run

    point_hosts_at(emulator.url, monkeypatch)
    out = tmp_path / "out"
    path = write_storyboard(tmp_path, board(only_a=True), "takes.yaml")
    run(path, out, say=lambda _m: None)  # shot a first: the next job the emulator renders is b's take 1
    assert emulator_stats(emulator.url)["submissions"] == 1
    set_faults(emulator.url, "render-dark")

    write_storyboard(tmp_path, board(), "takes.yaml")
    job = run(path, out, say=lambda _m: None)
    stats = emulator_stats(emulator.url)
    b_jobs = _jobs(emulator.url, "The keeper walks the pier, push in.")
    assert stats["submissions"] == 1 + 3 + 1 and len(b_jobs) == 3  # a reused; b's three takes; c
    manifest = json.loads((job.film_dir / "manifest.json").read_text())
    b = manifest["shots"][1]
    ledger = Ledger(job.film_dir / "ledger.sqlite")
    take_jobs = {r.shot_id: r.job_id for r in ledger.records() if r.state == "done"}
    dark_take = next(k for k, t in ((1, "b"), (2, "b.take2"), (3, "b.take3")) if take_jobs[t] == b_jobs[0]["id"])
    assert dark_take == 1  # the first take submitted got the fault
    scores = {s["take"]: s["score"] for s in b["takes"]["scores"]}
    assert b["takes"]["how"] == "auto" and b["takes"]["take"] != dark_take
    assert scores[dark_take] < 0.5 * min(v for k, v in scores.items() if k != dark_take)
    picked = b["takes"]["take"]
    assert b["file"] == f"shots/b.take{picked}.mp4" and b["job_id"] == take_jobs[f"b.take{picked}"]
    film = job.film_dir / "film.mp4"
    b_first = manifest["shots"][1]["in_film"]["first_frame"]
    dark_file = job.film_dir / "shots" / "b.mp4"
    in_film = _frames(film, b_first + 1, 24)
    assert in_film.mean() > 3 * _frames(dark_file, 1, 24).mean()  # the film's frames of b are not the dark take
    before = _frames(film, 0, b_first)

    # the producer prefers take 1 after all: only c (chained after b) is paid for again
    write_storyboard(tmp_path, board(pick=str(dark_take)), "takes.yaml")
    seen = session.preview(path, session.Options(output_dir=out))
    assert seen.states == {"a": "cached", "b": "cached", "b.take2": "cached", "b.take3": "cached", "c": "new"}
    job = run(path, out, say=lambda _m: None)
    stats = emulator_stats(emulator.url)
    assert stats["submissions"] == 6 and stats["jobs"][-1]["prompt"] == "He climbs the stairs, pan right."
    assert len(_jobs(emulator.url, "The keeper walks the pier, push in.")) == 3  # no take paid twice
    again = json.loads((job.film_dir / "manifest.json").read_text())
    assert again["shots"][1]["takes"]["take"] == dark_take and again["shots"][1]["takes"]["how"] == "storyboard"
    assert ledger.pick(next(iter(ledger.picks())))[:2] == (dark_take, "storyboard")
    assert np.array_equal(_frames(film, 0, b_first), before)  # the film before b is unchanged
    assert _frames(film, b_first + 1, 24).mean() < 0.3 * in_film.mean()  # from b on it is the chosen take
    assert again["shots"][2]["job_id"] != manifest["shots"][2]["job_id"]  # c made again, from take 1's last frame

    # a fourth take whose job fails: the next run pays for that take alone, as it would for a failed shot
    set_faults(emulator.url, "error")
    write_storyboard(tmp_path, board(takes=4, pick=str(dark_take)), "takes.yaml")
    with pytest.raises(JobFailed):
        run(path, out, say=lambda _m: None)
    assert {r.shot_id: r.state for r in ledger.records()}["b.take4"] == "failed"
    run(path, out, say=lambda _m: None)
    b_jobs = _jobs(emulator.url, "The keeper walks the pier, push in.")
    assert emulator_stats(emulator.url)["submissions"] == 8 and len(b_jobs) == 5  # takes 1-3 once, take 4 twice
    assert [j["status"] for j in b_jobs[3:]] == ["failed", "completed"]
    assert json.loads((job.film_dir / "manifest.json").read_text())["shots"][1]["takes"]["of"] == 4


@pytest.mark.slow
def test_pick_review_pauses_the_run_with_the_takes_and_resumes_with_the_choice(prefect_server: None,
                                                                              tmp_path: Path) -> None:
    """A real Prefect server: the run pauses with the takes artifact (thumbnails, scores) and a typed form; the
    answer given through the API, as the UI gives it, is the take the film uses, and it is recorded."""
    import threading
    import time

    from prefect import get_client
    from prefect.flow_runs import resume_flow_run
    from typer.testing import CliRunner

    from storyfilm.cli import app
    from storyfilm.flow import film

    text = ("version: 1\ntitle: Review\nprovider: local\ndefaults: {duration: 1, resolution: 480p, "
            "aspect_ratio: '1:1'}\nshots:\n  - id: a\n    prompt: A ship in the storm, push in.\n    takes: 2\n"
            "    pick: review\n  - id: b\n    prompt: The keeper walks the pier.\n")
    path = write_storyboard(tmp_path, text, "review.yaml")
    out = tmp_path / "out"
    done: dict[str, object] = {}
    runner = threading.Thread(target=lambda: done.setdefault("result", film(storyboard=str(path),
                                                                             output_dir=str(out))))
    runner.start()
    paused = None
    deadline = time.monotonic() + 240
    with get_client(sync_client=True) as client:
        while paused is None and time.monotonic() < deadline and runner.is_alive():
            paused = next((r for r in client.read_flow_runs() if r.name == "Review" and r.state
                           and r.state.is_paused()), None)
            time.sleep(0.5)
        assert paused is not None, "the run never paused"
        artifact = client.read_latest_artifacts()
        takes_md = next(a for a in artifact if a.key == "takes-review-a")
        assert str(takes_md.data).count("data:image/jpeg;base64,") == 2 and "the score's choice" in str(takes_md.data)
        assert not (out / "review" / "shots" / "b.mp4").exists()  # b waits for the choice
        # `storyfilm approve` answers approvals only: it says what the run waits for and leaves it paused
        said = CliRunner().invoke(app, ["approve", str(path)])
        assert said.exit_code == 1 and "no flow run of 'Review'" in said.output, said.output
        assert "waiting for a take of shot 'a'" in " ".join(said.output.split()), said.output
        assert client.read_flow_run(paused.id).state.is_paused()
        resume_flow_run(paused.id, run_input={"take": 2})
    runner.join(120)
    result = done["result"]
    assert isinstance(result, dict), result
    assert result["reused"] == 0  # asked after its slot was left, the shot still counts as made by this run
    manifest = json.loads(Path(str(result["manifest"])).read_text())
    assert manifest["shots"][0]["takes"]["take"] == 2 and manifest["shots"][0]["takes"]["how"] == "review"
    assert manifest["shots"][0]["file"] == "shots/a.take2.mp4"
    seen = session.preview(path, session.Options(output_dir=out))  # recorded: the next run asks nobody
    assert seen.plan.shots[0].chosen == 2 and set(seen.states.values()) == {"cached"}

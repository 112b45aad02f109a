"""One film session: the storyboard parsed once per run, a plan that needs no key and writes nothing, and
`storyfilm plan` showing what the run will do (the same decisions), on real files and a real ledger."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storyfilm import session, storage
from storyfilm.cli import app
from storyfilm.decide import Refuse, Reuse, Submit
from storyfilm.errors import ConfigurationError, LedgerError, StoryboardError
from storyfilm.ledger import Ledger
from storyfilm.storage import kept_paths, shot_paths

from .helpers import write_image, write_storyboard

LOCAL = """\
version: 1
title: Session Film
defaults: {duration: 1, resolution: 480p, seed: 2}
assets:
  a: refs/a.png
shots:
  - id: one
    image: a
    prompt: A harbour at dawn.
  - id: two
    prompt: The boats rock.
"""

HOSTED = """\
version: 1
title: Hosted Film
provider: wavespeed
defaults: {duration: 4, resolution: 480p}
shots:
  - id: s1
    prompt: One.
  - id: s2
    prompt: Two.
"""


def test_a_board_is_parsed_again_only_when_it_or_its_assets_change(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write_image(tmp_path / "refs" / "a.png", seed=1)
    path = write_storyboard(tmp_path, LOCAL)
    parsed: list[Path] = []
    load = session.load_storyboard
    monkeypatch.setattr(session, "load_storyboard", lambda p: parsed.append(Path(p)) or load(p))

    first = session.load_board(path)
    assert session.load_board(path) is first and session.load_board(str(path)) is first and len(parsed) == 1

    write_storyboard(tmp_path, LOCAL.replace("Session Film", "Session Film, edited"))
    assert session.load_board(path).title == "Session Film, edited" and len(parsed) == 2

    text = path.read_text()
    write_storyboard(tmp_path, text.replace("edited", "EDITED"))  # the same size: the mtime tells
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert session.load_board(path).title == "Session Film, EDITED" and len(parsed) == 3

    (tmp_path / "refs" / "a.png").write_bytes(b"not an image any more")  # the asset is validated again
    with pytest.raises(StoryboardError, match="a.png"):
        session.load_board(path)
    write_image(tmp_path / "refs" / "a.png", seed=3)
    assert session.load_board(path).title == "Session Film, EDITED" and len(parsed) == 5


def test_a_plan_needs_no_key_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    path = write_storyboard(tmp_path, HOSTED)
    out = tmp_path / "out"
    seen = session.preview(path, session.Options(output_dir=out))
    assert seen.states == {"s1": "new", "s2": "new"} and seen.new_cost_usd == seen.plan.cost_usd == 0.96
    assert not out.exists()
    with pytest.raises(ConfigurationError, match="WAVESPEED_API_KEY"):  # a run needs the key
        session.prepare(path, session.Options(output_dir=out))


def test_plan_shows_what_the_run_does_with_each_shot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_image(tmp_path / "refs" / "a.png", seed=1)
    path = write_storyboard(tmp_path, LOCAL)
    options = session.Options(output_dir=tmp_path / "out")
    job = session.prepare(path, options)
    one = job.make_shot("one")
    job.make_shot("two", one)
    assert session.preview(path, options).states == {"one": "cached", "two": "cached"}

    hashed: Counter[str] = Counter()  # a reused shot's files are hashed once in a run (by prepare)
    digest = storage.file_digest
    monkeypatch.setattr(storage, "file_digest", lambda p: hashed.update([Path(p).name]) or digest(p))
    rerun = session.prepare(path, options)
    assert rerun.make_shot("one").reused and rerun.make_shot("two", one).reused
    assert hashed == {"one.mp4": 1, "one.last.png": 1, "two.mp4": 1, "two.last.png": 1}
    monkeypatch.undo()

    shots = job.film_dir / "shots"
    shot_paths(shots, "two")[0].unlink()  # the kept copy brings it back
    kept = kept_paths(shots, job.plan.shot("one").key)[0]
    kept.unlink()  # a hard link to shots/one.mp4: that one stays intact
    kept.write_bytes(b"damaged")
    seen = session.preview(path, options)
    assert seen.states == {"one": "cached", "two": "cached"} and seen.new_cost_usd == 0
    again = session.prepare(path, options)
    assert again.decisions["one"] == Reuse(again.decisions["one"].result, restore=False)  # type: ignore[union-attr]
    assert again.decisions["two"] == Reuse(again.decisions["two"].result, restore=True)  # type: ignore[union-attr]
    assert again.make_shot("two", one).reused and shot_paths(shots, "two")[0].is_file()

    shot_paths(shots, "one")[0].write_bytes(b"changed")  # and its kept copy is damaged: rendered again
    assert session.preview(path, options).states["one"] == "new"
    assert isinstance(session.prepare(path, options).decisions["one"], Submit)


def test_plan_shows_a_refused_shot_and_does_not_count_its_cost(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", "test-key-0123456789")
    path = write_storyboard(tmp_path, HOSTED)
    options = session.Options(output_dir=tmp_path / "out")
    plan = session.preview(path, options).plan
    book = Ledger(tmp_path / "out" / plan.slug / "ledger.sqlite")
    s1 = plan.shot("s1")
    rec = book.intent(key=s1.key, shot_id="s1", provider="wavespeed", model="standard", run_id="run-0",
                      prepared={"prompt": "One."}, cost_usd=s1.cost_usd)
    book.update(rec.key, rec.attempt, "submitted", job_id="job-1")
    book.update(rec.key, rec.attempt, "failed", error="refused by the filter", moderation=True, cost_usd=0.0)

    seen = session.preview(path, options)
    assert seen.states == {"s1": "refused", "s2": "new"} and seen.new_cost_usd == plan.shot("s2").cost_usd
    decision = session.prepare(path, options).decisions["s1"]
    assert isinstance(decision, Refuse) and decision.reason == seen.refusals["s1"]
    result = CliRunner().invoke(app, ["plan", str(path), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "1 new, 1 refused" in result.output and "refused s1: the host's moderation refused" in result.output
    assert "new cost $0.48" in result.output
    # --redo pays for it again, and the plan says so
    redone = session.preview(path, session.Options(output_dir=tmp_path / "out", redo=("s1",)))
    assert redone.states == {"s1": "new", "s2": "new"} and redone.new_cost_usd == 0.96


@pytest.mark.slow
def test_a_run_parses_its_storyboard_once(prefect_server: None, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    write_image(tmp_path / "refs" / "a.png", seed=1)
    path = write_storyboard(tmp_path, LOCAL, "once.yaml")
    parsed: list[str] = []
    load = session.load_storyboard
    monkeypatch.setattr(session, "load_storyboard", lambda p: parsed.append(str(p)) or load(p))
    result = CliRunner().invoke(app, ["run", str(path), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "once" / "film.mp4").is_file()
    assert parsed == [str(path)]  # the CLI's check, the flow run's name and the flow: one parse


@pytest.mark.parametrize("lease", ["soon", "0", "-5", "inf", "nan"])
def test_a_bad_claim_lease_stops_a_run_before_anything_is_paid(lease: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write_image(tmp_path / "refs" / "a.png", seed=1)
    path = write_storyboard(tmp_path, LOCAL, "lease.yaml")
    monkeypatch.setenv("STORYFILM_CLAIM_LEASE", lease)
    with pytest.raises(LedgerError, match=rf"STORYFILM_CLAIM_LEASE='{lease}' is not a claim lease: .* a number "
                                          r"more than 0 \(default 60"):
        session.prepare(path, session.Options(output_dir=tmp_path / "out"))
    assert not list((tmp_path / "out").rglob("*.mp4"))

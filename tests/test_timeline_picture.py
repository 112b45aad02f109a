"""timeline.png: a bar for every shot that generated, in its chain's row, waiting shaded; nothing for reused shots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from storyfilm.plan import Plan, make_plan
from storyfilm.shot_times import ShotClock, Span
from storyfilm.storyboard import load_storyboard
from storyfilm.timeline_picture import _BG, _COLOURS, _WAIT, bars, layout, timeline_picture

from .helpers import write_storyboard

BOARD = """\
version: 1
title: Picture
defaults: {duration: 2, resolution: 480p}
shots:
  - {id: a1, prompt: One.}
  - {id: a2, prompt: Two.}
  - {id: b1, cut: true, prompt: Three.}
  - {id: c1, cut: true, prompt: Four.}
"""
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def spans_in(manifest: dict[str, Any]) -> dict[str, Span]:
    """The spans a manifest records (ISO 8601 UTC)."""
    def t(stamp: str) -> datetime:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert parsed.utcoffset() == timedelta(0)
        return parsed

    return {s["id"]: Span(t(s["queued_at"]), t(s["started_at"]), t(s["finished_at"]))
            for s in manifest["shots"] if s["started_at"]}


def assert_bars(picture: Path | Image.Image, plan: Plan, spans: dict[str, Span]) -> None:
    """Every generated shot has its bar, in its chain's colour; nothing else is drawn where no shot generated."""
    img = np.asarray(Image.open(picture).convert("RGB") if isinstance(picture, Path) else picture)
    boxes = bars(plan, spans)
    assert set(boxes) == set(spans)
    for row, chain in enumerate(plan.chains):
        for shot in chain:
            if shot.id not in spans:
                continue
            left, top, right, bottom = boxes[shot.id]
            # the bar's middle row, away from its outline and its label's text (at its top left)
            y = round(bottom) - 3
            xs = range(int(left) + 2, int(right) - 1)
            if len(xs) == 0:
                xs = range(int(left), int(left) + 1)
            colours = {tuple(img[y, x]) for x in xs}
            assert colours == {_COLOURS[row % len(_COLOURS)]}, (shot.id, colours)


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return make_plan(load_storyboard(write_storyboard(tmp_path_factory.mktemp("pic"), BOARD)), {})


def test_bars_for_generated_shots_waiting_shaded_reused_shots_not_drawn(plan: Plan) -> None:
    spans = {"a1": Span(at(0), at(0), at(5)), "a2": Span(at(5), at(5.5), at(11)),  # a2 waited 0.5 s
             "c1": Span(at(0), at(5), at(9))}  # c1 waited for a slot 5 s; b1 was reused
    img = timeline_picture(plan, spans)
    assert_bars(img, plan, spans)
    pixels = np.asarray(img)
    where = layout(plan, spans)
    wait, _ = where.boxes(spans["c1"], 2)
    stretch = pixels[round((wait[1] + wait[3]) / 2), int(wait[0]) + 1:int(wait[2]) - 1]
    assert {tuple(p) for p in stretch} & {_WAIT}  # shaded where c1 waited
    b_row = where.row_top(1) + 15  # b1's row: reused, no bar anywhere along the time axis
    assert {tuple(p) for p in pixels[b_row, int(where.x(0)) + 3:int(where.x(where.total)) - 3]} <= {
        _BG, (52, 52, 60)}  # background and grid lines only


def test_a_run_that_generated_nothing_still_gets_a_picture(plan: Plan, tmp_path: Path) -> None:
    from storyfilm.timeline_picture import write_timeline_png

    path = write_timeline_png(plan, {}, tmp_path)
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 100 and not ({tuple(p) for p in img.reshape(-1, 3)} & set(_COLOURS))


def test_the_clock_records_each_step_once_and_a_shot_is_ready_when_its_parent_is_kept() -> None:
    clock = ShotClock({"a2": "a1"})
    clock.mark("a1", "queued", at(0))
    clock.mark("a1", "started", at(1))
    clock.mark("a1", "finished", at(4))
    assert clock.mark("a1", "finished", at(9)) == at(4)  # the first time stands
    assert clock.mark("a2", "queued") == at(4)  # ready when a1 was kept, not when its task got round to it
    clock.mark("a2", "started", at(6))
    assert set(clock.spans()) == {"a1"}  # a2 is not finished: no span yet
    clock.mark("a2", "finished", at(8))
    assert clock.spans()["a2"].waited == 2.0
    assert clock.spans()["a2"].as_dict() == {"queued_at": "2026-01-01T00:00:04.000Z",
                                             "started_at": "2026-01-01T00:00:06.000Z",
                                             "finished_at": "2026-01-01T00:00:08.000Z"}

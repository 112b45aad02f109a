"""The seam report: measured on the film, it flags joins made bad on purpose and none of the clean ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storyfilm import seams
from storyfilm.animatic import AnimaticSpec, render
from storyfilm.assemble import Piece, assemble
from storyfilm.media import ffmpeg
from storyfilm.transitions import CONTINUE, Crossfade, Fade

from .helpers import make_clip
from .test_assemble import SMALL, render_chain


@pytest.mark.slow
def test_clean_joins_of_every_kind_are_not_flagged(tmp_path: Path) -> None:
    a, b, c, d = render_chain(tmp_path)
    silent = tmp_path / "silent.mp4"
    render(AnimaticSpec(fmt=SMALL, frames=48, prompt="quiet lamp", camera="static", audio=False), silent)
    pieces = [Piece(a, label="a"), Piece(b, start_frame=1, label="b", join=CONTINUE),
              Piece(c, label="c", join=Crossfade(0.5)), Piece(d, label="d", join=Fade(0.5)),
              Piece(silent, label="silent"), Piece(a, label="a-again")]
    report = seams.analyse(assemble(pieces, SMALL, tmp_path / "film.mp4", tmp_path / "work"))
    assert [(s.before, s.after, s.join) for s in report] == [
        ("a", "b", "continue"), ("b", "c", "crossfade"), ("c", "d", "fade"), ("d", "silent", "cut"),
        ("silent", "a-again", "cut")]
    assert seams.flagged(report) == [], [s.flags for s in report]
    cont = report[0]
    assert cont.repeated_frames == 0 and cont.picture_change < 2 and cont.audio_gap_ms < 5
    assert report[3].picture_change > 20  # a cut may change everything: measured, not flagged
    assert report[3].audio_gap_ms > 400  # the silent shot's silence is by design: measured, not flagged
    assert "all 5 clean" in seams.markdown(report)


@pytest.mark.slow
def test_bad_joins_are_flagged_with_what_is_wrong(tmp_path: Path) -> None:
    a, b, c, d = render_chain(tmp_path)
    elsewhere = tmp_path / "elsewhere.mp4"  # claims to continue but starts on another picture
    render(AnimaticSpec(fmt=SMALL, frames=49, prompt="other", start=np.full((180, 320, 3), 90, np.uint8),
                        keyframes=(1,)), elsewhere)
    short = tmp_path / "short.mp4"  # its sound stops 0.8 s before its pictures do
    ffmpeg.run(["-y", "-i", str(c), "-c:v", "copy", "-af", "atrim=0:1.2", "-c:a", "aac", str(short)])
    pieces = [Piece(a, label="a"),
              Piece(b, start_frame=0, label="b", join=CONTINUE),  # the seam copy not dropped: shown twice
              Piece(elsewhere, start_frame=1, label="elsewhere", join=CONTINUE),
              Piece(short, label="short"),
              Piece(d, label="d")]
    report = seams.analyse(assemble(pieces, SMALL, tmp_path / "film.mp4", tmp_path / "work"))
    flags = {s.after: s.flags for s in report}
    assert [s.after for s in seams.flagged(report)] == ["b", "elsewhere", "d"]
    assert report[0].repeated_frames == 1 and "shown twice" in flags["b"][0]
    assert report[1].picture_change > 20 and "jumps" in flags["elsewhere"][0]
    assert flags["short"] == ()  # a clean cut between two bad ones
    assert "silence" in flags["d"][0] and 750 < report[3].audio_gap_ms < 850
    md = seams.markdown(report)
    assert "3 of 4 flagged" in md and "| a → b | continue |" in md


def test_the_crossfade_at_continuous_joins_removes_the_click(tmp_path: Path) -> None:
    # A steady tone under a steady picture; the continuation starts 120 degrees later in its cycle.
    a = make_clip(tmp_path / "a.mp4", 1, (160, 90), colour="red", tone=440)
    b = make_clip(tmp_path / "b.mp4", 1 + 1 / 24, (160, 90), colour="red", tone=440)
    pieces = [Piece(a, label="a"), Piece(b, start_frame=1, label="b", join=CONTINUE)]
    fmt = SMALL.__class__(160, 90, 24)
    hard = seams.analyse(assemble(pieces, fmt, tmp_path / "hard.mp4", tmp_path / "w", seam_crossfade_frames=0))
    soft = seams.analyse(assemble(pieces, fmt, tmp_path / "soft.mp4", tmp_path / "w"))
    assert hard[0].audio_step > 8 and any("click" in f for f in hard[0].flags)
    assert soft[0].audio_step < 2 and soft[0].flags == ()

"""Six-shot chains through the local renderer with drift, measured, held hop by hop, and drawn.

Each chain is made as the shot runner will make it: every shot starts from the last frame the previous one
handed over (the held one when held), and the seams of the film are checked frame by frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storyfilm.animatic import AnimaticSpec, render, title_card
from storyfilm.assemble import Piece, assemble, copy_blockers
from storyfilm.colour_hold import correct_frame, fit_transfer, hold_segment, lut_table
from storyfilm.continuity import delta_e, frame_stats
from storyfilm.continuity_picture import save_continuity_png
from storyfilm.drift import parse_drift
from storyfilm.errors import MediaError
from storyfilm.media import probe, rgb
from storyfilm.transitions import CONTINUE, CUT

from .chains import SIZE, Chain, render_chain
from .helpers import make_clip

pytestmark = pytest.mark.slow

DRIFT = parse_drift("contrast=0.06,saturation=0.05")
SUNSET = parse_drift("warmth=0.3,brightness=-0.1")  # the intended change of a `color: free` shot


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chains")


@pytest.fixture(scope="module")
def start(work: Path) -> Path:
    return probe.save_png(title_card("dusk over the harbour", 3, SIZE), work / "start.png")


@pytest.fixture(scope="module")
def chains(work: Path, start: Path) -> Iterator[dict[str, Chain]]:
    yield {
        "clean": render_chain(work / "clean", start, drift=parse_drift(""), camera="static", name="clean"),
        "drift": render_chain(work / "drift", start, drift=DRIFT, camera="static", name="drift"),
        "held": render_chain(work / "held", start, drift=DRIFT, hold="meanstd", camera="static", name="held"),
        "free": render_chain(work / "free", start, drift=DRIFT, hold="meanstd", camera="static", free={3: SUNSET},
                             name="free"),
    }


def _assert_seams_exact(chain: Chain) -> None:
    for before, after in zip(chain.segments, chain.segments[1:], strict=False):
        assert np.array_equal(rgb.first_and_last(after)[0], rgb.first_and_last(before)[1]), (before, after)


def test_a_drifting_chain_is_flagged_and_a_clean_one_is_not(chains: dict[str, Chain]) -> None:
    drift, clean = chains["drift"].report, chains["clean"].report
    assert drift is not None and clean is not None
    assert drift.flagged and not clean.flagged
    first, last = drift.hops[0].delta_e, drift.hops[-1].delta_e
    assert first > 0.5 and last >= 3 * first  # drift accumulates hop after hop
    assert [h.delta_e for h in drift.hops] == sorted(h.delta_e for h in drift.hops)
    assert drift.drift_per_hop > 0.5 and clean.drift_per_hop < 0.2 and clean.max_delta_e < 0.5
    assert drift.hops[-1].contrast_ratio > 1.15 and drift.hops[-1].saturation_ratio > 1.15
    _assert_seams_exact(chains["drift"])


def test_holding_each_segment_keeps_the_look_and_every_seam_exact(chains: dict[str, Chain], work: Path) -> None:
    held, unheld = chains["held"], chains["drift"]
    assert held.report is not None and unheld.report is not None
    last = held.report.hops[-1].delta_e
    assert last <= 2.0 and last <= unheld.report.hops[-1].delta_e / 4
    assert not held.report.flagged
    _assert_seams_exact(held)
    for i, (segment, rendered, result) in enumerate(zip(held.segments, held.rendered, held.holds, strict=True)):
        assert result is not None and segment == result.path
        info, original = probe.probe(segment), probe.probe(rendered)
        assert info.video is not None and original.video is not None
        assert info.video.frames == original.video.frames == result.frames  # same length
        assert copy_blockers(info, SIZE) == []  # the house format: it joins a film by stream copy
        assert np.array_equal(probe.read_audio(segment), probe.read_audio(rendered))  # the sound untouched
        assert np.array_equal(rgb.first_and_last(segment)[0], rgb.first_and_last(rendered)[0])  # the seam frame
        keys = probe.keyframe_indices(segment)
        assert keys[0] == 0 and info.video.frames - 1 in keys and (i == 0 or 1 in keys)
        # the last frame handed on decodes from the file as it was given (an IDR frame at constant QP)
        assert result.last_png is not None
        assert np.array_equal(np.asarray(Image.open(result.last_png)), result.last_frame)
    pieces = [Piece(p, start_frame=1 if i else 0, label=f"s{i}", join=CONTINUE if i else CUT)
              for i, p in enumerate(held.segments)]
    film = assemble(pieces, SIZE, work / "held-film.mp4", work / "assembly")
    assert film.normalised == [] and film.encoded_frames == 0 and film.copied_frames == film.frames


def test_the_correction_ramps_in_over_the_segment(chains: dict[str, Chain], work: Path) -> None:
    rendered, anchor = chains["drift"].rendered[3], chains["drift"].shots[0].first
    raw = list(rgb.frames(rendered))
    held = list(rgb.frames(hold_segment(rendered, work / "ramp.mp4", anchor, SIZE).path))
    change = [delta_e(frame_stats(a), frame_stats(b)) for a, b in zip(raw, held, strict=True)]
    n = len(raw)
    assert change[0] == 0 and change[-1] > 1
    assert 0.3 < change[n // 2] / change[-1] < 0.7  # half way through, about half the correction
    short = list(rgb.frames(hold_segment(rendered, work / "short.mp4", anchor, SIZE, ramp_frames=6).path))
    table = lut_table(fit_transfer(frame_stats(raw[-1]), anchor))
    full = correct_frame(raw[12], table).astype(np.int16)
    assert np.abs(short[12] - full).mean() < 1.5  # full correction from frame 6 on
    assert np.abs(held[12] - full).mean() > 2 * np.abs(short[12] - full).mean()


def test_a_free_shot_is_not_pulled_back_and_the_next_shots_hold_its_look(chains: dict[str, Chain]) -> None:
    chain = chains["free"]
    report = chain.report
    assert report is not None
    free = report.hops[3]
    assert free.free and chain.holds[3] is None and chain.segments[3] == chain.rendered[3]  # not held
    assert free.delta_e > 10 and not free.flagged  # the sunset, measured, intended
    sunset = chain.shots[3].last
    for hop, shot in zip(report.hops[4:], chain.shots[4:], strict=True):
        assert hop.anchor == "free3" and hop.delta_e <= 2.0  # held to the sunset
        assert delta_e(shot.last, sunset) <= 2.0 and delta_e(shot.last, report.anchor_stats) > 10
    assert all(h.delta_e <= 2.0 for h in report.hops[:3]) and not report.flagged
    _assert_seams_exact(chain)


def test_a_moving_camera_chain_is_held_too(work: Path, start: Path) -> None:
    unheld = render_chain(work / "moving", start, drift=DRIFT, camera="handheld").report
    held = render_chain(work / "moving-held", start, drift=DRIFT, hold="meanstd", camera="handheld").report
    assert unheld is not None and held is not None and unheld.flagged
    assert held.hops[-1].delta_e <= min(2.0, unheld.hops[-1].delta_e / 4) and not held.flagged


def test_a_silent_segment_is_held_and_stays_silent(tmp_path: Path) -> None:
    segment, card = tmp_path / "silent.mp4", title_card("night", 1, SIZE)
    render(AnimaticSpec(fmt=SIZE, frames=25, prompt="x", start=card, camera="static", audio=False, drift=DRIFT),
           segment)
    result = hold_segment(segment, tmp_path / "held.mp4", frame_stats(card), SIZE)
    info = probe.probe(result.path)
    assert info.audio is None and info.video is not None and info.video.frames == 25
    assert copy_blockers(info, SIZE) == []


def test_hold_refuses_a_segment_not_in_the_house_format(tmp_path: Path) -> None:
    foreign = make_clip(tmp_path / "foreign.mp4", 1.0, size=(SIZE.width, SIZE.height))
    with pytest.raises(MediaError, match="not in the house format .*normalise it before holding"):
        hold_segment(foreign, tmp_path / "out.mp4", frame_stats(title_card("night", 1, SIZE)), SIZE)
    assert not (tmp_path / "out.mp4").exists()


def _runs(line: np.ndarray) -> list[tuple[int, int, tuple[int, ...]]]:
    """(start, length, colour) of each run of one colour along a line of pixels."""
    runs: list[tuple[int, int, tuple[int, ...]]] = []
    for i, px in enumerate(tuple(int(v) for v in p) for p in line):
        if runs and runs[-1][2] == px:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, px)
        else:
            runs.append((i, 1, px))
    return runs


def test_continuity_png_has_one_strip_per_chain_and_a_frame_per_hop(chains: dict[str, Chain], work: Path) -> None:
    names = ("drift", "held", "free")
    reports, lasts, anchors = [], {}, {}
    for name in names:
        chain = chains[name]
        assert chain.report is not None
        reports.append(chain.report)
        anchors[chain.report.anchor] = rgb.first_and_last(chain.segments[0])[0]
        lasts.update({h.shot: rgb.first_and_last(s)[1] for h, s in zip(chain.report.hops, chain.segments, strict=True)})
    path = save_continuity_png(reports, lasts, anchors, work / "continuity.png")
    img = np.asarray(Image.open(path).convert("RGB"))
    grey, red, green, blue = (150, 150, 158), (226, 70, 62), (72, 190, 110), (86, 150, 240)
    # down the left edge: one anchor frame (its grey border, taller than any text) per chain
    strips = [(start, length) for start, length, colour in _runs(img[:, 13]) if colour == grey and length > 50]
    assert len(strips) == len(names)
    # across each strip, just inside the top border: the anchor, then one bordered frame per hop ...
    for (y, height), report in zip(strips, reports, strict=True):
        cells = [(x, width, colour) for x, width, colour in _runs(img[y + 1]) if width > 100]
        assert [c for _, _, c in cells] == [grey, *(red if h.flagged else blue if h.free else green
                                                    for h in report.hops)]
        # ... showing that shot's last frame (the anchor's first frame)
        frames = [anchors[report.anchor], *(lasts[h.shot] for h in report.hops)]
        for (x, width, _), frame in zip(cells, frames, strict=True):
            thumb = img[y + 5:y + height - 5, x + 5:x + width - 5].reshape(-1, 3).mean(axis=0)
            assert np.abs(thumb - frame.reshape(-1, 3).mean(axis=0)).max() < 3

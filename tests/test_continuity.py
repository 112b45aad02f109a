"""Colour statistics, ΔE and the chain report: checked against published reference values and synthetic chains."""

from __future__ import annotations

import json

import numpy as np
import pytest

from storyfilm.colour_hold import correct_frame, fit_transfer, lut_table
from storyfilm.continuity import (
    ColourStats,
    ShotColour,
    Thresholds,
    chain_report,
    ciede2000,
    delta_e,
    frame_stats,
    lab_to_srgb,
    msvbench_change,
    srgb_to_lab,
)

# Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes, supplementary
# test data and mathematical observations", table 1 (pairs 1, 7, 9, 11, 13, 17, 19, 25, 29, 34).
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0011), 7.2195),
    ((50.0, -0.001, 2.49), (50.0, 0.0009, -2.49), 4.8045),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


@pytest.mark.parametrize(("lab1", "lab2", "expected"), SHARMA)
def test_ciede2000_matches_sharmas_test_data(lab1: tuple[float, ...], lab2: tuple[float, ...],
                                             expected: float) -> None:
    assert float(ciede2000(np.array(lab1), np.array(lab2))) == pytest.approx(expected, abs=1e-4)
    assert float(ciede2000(np.array(lab2), np.array(lab1))) == pytest.approx(expected, abs=1e-4)  # symmetric


def test_srgb_to_lab_reference_colours_and_round_trip() -> None:
    # D65 sRGB primaries and white in CIELAB (Lindbloom's calculator values)
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]], dtype=np.uint8)
    expected = [[53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86], [100, 0, 0], [0, 0, 0]]
    assert np.allclose(srgb_to_lab(rgb), expected, atol=0.01)
    every = np.random.default_rng(1).integers(0, 256, (5000, 3)).astype(np.uint8)
    assert np.abs(lab_to_srgb(srgb_to_lab(every)) * 255 - every).max() < 1e-6


def test_frame_stats_of_known_frames() -> None:
    grey = np.full((90, 160, 3), 119, np.uint8)  # sRGB 119 is L* 50.0
    s = frame_stats(grey)
    assert s.l_mean == pytest.approx(50.0, abs=0.05) and s.l_std == pytest.approx(0, abs=1e-9)
    assert s.chroma == pytest.approx(0, abs=1e-6) and s.saturation == 0 and s.contrast == 0
    assert s.brightness == pytest.approx(119)
    half = grey.copy()
    half[:, 80:] = (200, 40, 40)  # half grey, half red
    h = frame_stats(half)
    # MSVBench: OpenCV grey 0.299 R + 0.587 G + 0.114 B; HSV S = (max - min) / max * 255
    red_grey = 0.299 * 200 + 0.587 * 40 + 0.114 * 40
    assert h.brightness == pytest.approx((119 + red_grey) / 2)
    assert h.contrast == pytest.approx(abs(119 - red_grey) / 2)
    assert h.saturation == pytest.approx(160 / 200 * 255 / 2)
    red = srgb_to_lab(np.array([200, 40, 40], np.uint8))
    assert h.l_std == pytest.approx(abs(red[0] - s.l_mean) / 2) and h.a_mean == pytest.approx(red[1] / 2)
    assert h.chroma == pytest.approx(np.hypot(red[1], red[2]) / 2)
    assert msvbench_change(s, h) == pytest.approx(abs(s.brightness - h.brightness) + h.contrast + h.saturation)
    back = ColourStats.from_dict(h.as_dict(quantiles=True))
    assert np.allclose(back.quantiles, h.quantiles, atol=1e-3)
    assert np.allclose(back.lab_mean, h.lab_mean, atol=1e-3)
    with pytest.raises(ValueError, match="RGB uint8"):
        frame_stats(grey.astype(np.float32))


def _stats(l_mean: float, a_mean: float = 0.0, b_mean: float = 0.0, l_std: float = 20.0,
           chroma: float = 20.0) -> ColourStats:
    return ColourStats(l_mean=l_mean, a_mean=a_mean, b_mean=b_mean, l_std=l_std, a_std=10, b_std=10,
                       chroma=chroma, brightness=0, contrast=0, saturation=0)


def test_a_steadily_drifting_chain_is_flagged_with_its_drift_per_hop() -> None:
    anchor = _stats(50)
    shots, first = [], anchor
    for i in range(1, 7):  # each hop adds 1.5 units of b* (warmer) and 4 % contrast
        last = _stats(50, b_mean=1.5 * i, l_std=20 * 1.04**i, chroma=20 + 1.5 * i)
        shots.append(ShotColour(f"s{i}", first, last))
        first = last
    report = chain_report(shots)
    des = [h.delta_e for h in report.hops]
    assert des == sorted(des) and des[-1] > 3 * des[0]
    assert report.flagged and report.hops[0].flags == () and report.hops[-1].flagged
    assert report.drift_per_hop == pytest.approx(np.polyfit(np.arange(1, 7), des, 1)[0], rel=0.2)
    assert report.hops[1].seam_delta_e == 0 and report.hops[0].seam_delta_e is None  # exact seams
    assert all(h.anchor == "s1" for h in report.hops)
    data = json.loads(json.dumps(report.as_dict()))
    assert data["anchor"] == "s1" and len(data["hops"]) == 6 and data["flagged"] is True
    assert set(data["hops"][0]) >= {"shot", "delta_e", "contrast_ratio", "saturation_ratio", "first", "last"}


def test_thresholds_decide_each_flag() -> None:
    anchor = _stats(50)
    shots = [ShotColour("a", anchor, anchor), ShotColour("b", anchor, _stats(50, l_std=24.0)),
             ShotColour("c", anchor, _stats(50, chroma=16.0)), ShotColour("d", anchor, _stats(53.5))]
    flags = [h.flags for h in chain_report(shots).hops]
    assert flags[0] == () and "contrast x1.20" in flags[1][0] and "saturation x0.80" in flags[2][0]
    assert flags[3][0].startswith("ΔE 3.")
    assert not chain_report(shots, Thresholds(delta_e=5, contrast_band=0.25, saturation_band=0.25)).flagged


def test_a_free_shot_is_never_flagged_and_becomes_the_anchor() -> None:
    day, sunset = _stats(60), _stats(45, a_mean=20, b_mean=30, chroma=40)
    shots = [ShotColour("s1", day, day), ShotColour("s2", day, sunset, free=True),
             ShotColour("s3", sunset, _stats(45, a_mean=20.5, b_mean=30, chroma=40)),
             ShotColour("s4", sunset, sunset)]
    report = chain_report(shots)
    s2, s3, s4 = report.hops[1:]
    assert s2.free and s2.delta_e > 20 and not s2.flagged  # measured against the day, but intended
    assert (s3.anchor, s4.anchor) == ("s2", "s2") and s3.hops_from_anchor == 1
    assert s3.delta_e < 1 and s4.delta_e == 0 and not report.flagged


def test_meanstd_transfer_gives_a_frame_the_target_statistics() -> None:
    rng = np.random.default_rng(3)
    # a drifted frame (smooth gradients, colours well inside the gamut) and the look it should have
    y, x = np.mgrid[0:180, 0:320] / np.array([180.0, 320.0])[:, None, None]
    base = np.stack([90 + 80 * x, 70 + 60 * y, 80 + 40 * x * y], axis=-1)
    target_frame = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
    drifted = np.clip((base - 110) * 1.2 + 110 + [12, 0, -10], 0, 255).astype(np.uint8)
    target, source = frame_stats(target_frame), frame_stats(drifted)
    assert delta_e(source, target) > 5
    held = frame_stats(correct_frame(drifted, lut_table(fit_transfer(source, target, "meanstd"))))
    assert delta_e(held, target) < 0.5
    assert held.l_std == pytest.approx(target.l_std, rel=0.03)
    half = frame_stats(correct_frame(drifted, lut_table(fit_transfer(source, target, "meanstd"), weight=0.5)))
    assert 0.3 * delta_e(source, target) < delta_e(half, target) < 0.7 * delta_e(source, target)
    assert fit_transfer(source, target, "meanstd").as_dict()["gain"][0] == pytest.approx(
        target.l_std / source.l_std, abs=1e-4)  # rounded for the manifest

"""Drift like a real model's: the option, the renderer's frames, the local provider and the emulator over HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from storyfilm.animatic import AnimaticSpec, render, title_card
from storyfilm.continuity import contrast_ratio, delta_e, frame_stats, saturation_ratio
from storyfilm.drift import Drift, drift_from_mapping, parse_drift
from storyfilm.emulator import EmulatorServer
from storyfilm.errors import DriftSpecError
from storyfilm.media import rgb
from storyfilm.media.ffmpeg import VideoFormat
from storyfilm.providers.local import LocalProvider

from .emu import EXTEND, I2V, download, load_rgb, mean_diff, ws_submit, ws_upload, ws_wait
from .helpers import write_image

FMT = VideoFormat(320, 180)


@pytest.mark.parametrize(("text", "drift"), [
    ("contrast=0.06,saturation=0.05", Drift(contrast=0.06, saturation=0.05)),
    (" brightness = -0.02 , warmth=0.03 ", Drift(brightness=-0.02, warmth=0.03)),
    ("", Drift()), ("off", Drift()),
])
def test_drift_specs_parse_and_print_back(text: str, drift: Drift) -> None:
    assert parse_drift(text) == drift
    assert parse_drift(drift.spec()) == drift


@pytest.mark.parametrize(("text", "message"), [
    ("contrast", "item 'contrast' is not NAME=AMOUNT; expected NAME=AMOUNT items separated by commas, NAME one of "
                 "contrast, saturation, brightness, warmth"),
    ("hue=0.1", "unknown drift 'hue'; allowed: contrast, saturation, brightness, warmth"),
    ("contrast=lots", "contrast='lots' is not a number"),
    ("contrast=0.6", "contrast=0.6 is out of range; allowed -0.5 to 0.5 per segment"),
    ("contrast=nan", "out of range"),
    ("contrast=0.1,contrast=0.2", "contrast is given twice"),
])
def test_bad_drift_specs_name_the_item_and_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(DriftSpecError, match="^--drift") as caught:
        parse_drift(text, source="--drift")
    assert message in str(caught.value)


def test_json_drift_is_checked_like_the_spec() -> None:
    assert drift_from_mapping({"contrast": 0.06, "warmth": 0}) == Drift(contrast=0.06)
    assert drift_from_mapping(None) == Drift()
    for bad, message in (({"contrast": True}, "must be a number"), ({"glow": 1}, "unknown drift 'glow'"),
                         ([0.1], "must be an object")):
        with pytest.raises(DriftSpecError, match=message):
            drift_from_mapping(bad)  # type: ignore[arg-type]


def _render(tmp: Path, name: str, start: np.ndarray, drift: Drift | None, camera: str = "static") -> Path:
    out = tmp / f"{name}.mp4"
    render(AnimaticSpec(fmt=FMT, frames=25, prompt="the keeper", start=start, camera=camera,  # type: ignore[arg-type]
                        keyframes=(1,), drift=drift), out)
    return out


def test_a_segment_drifts_from_its_start_frame_which_stays_exact(tmp_path: Path) -> None:
    start = load_rgb(write_image(tmp_path / "start.png", (320, 180), seed=4))
    plain = _render(tmp_path, "plain", start, None)
    off = _render(tmp_path, "off", start, Drift())
    drifted = _render(tmp_path, "drifted", start, parse_drift("contrast=0.06,saturation=0.05"))
    plain_frames, off_frames = list(rgb.frames(plain)), list(rgb.frames(off))
    assert all(np.array_equal(a, b) for a, b in zip(plain_frames, off_frames, strict=True))  # no drift: unchanged
    first, last = rgb.first_and_last(drifted)
    assert np.array_equal(first, plain_frames[0])  # frame 0 is the start frame, exactly as without drift
    s0, s_plain, s_last = frame_stats(first), frame_stats(plain_frames[-1]), frame_stats(last)
    assert delta_e(s_plain, s0) < 0.3 and contrast_ratio(s_plain, s0) == pytest.approx(1, abs=0.01)
    assert 1.03 < contrast_ratio(s_last, s0) < 1.10  # the segment's 6 % contrast, in L* std
    assert 1.03 < saturation_ratio(s_last, s0) < 1.09  # its 5 % saturation, in mean chroma
    # gradual: half way there by the middle frame
    middle = frame_stats(list(rgb.frames(drifted))[12])
    assert 0.35 < (saturation_ratio(middle, s0) - 1) / (saturation_ratio(s_last, s0) - 1) < 0.65


@pytest.mark.parametrize(("name", "moves"), [
    ("brightness", lambda a, b: b.l_mean - a.l_mean > 1.5),  # 0.03 x 255 levels brighter
    ("warmth", lambda a, b: b.b_mean - a.b_mean > 2 and b.a_mean > a.a_mean),  # redder and yellower
])
def test_brightness_and_warmth_move_the_look_their_way(tmp_path: Path, name: str, moves: object) -> None:
    start = load_rgb(write_image(tmp_path / "start.png", (320, 180), seed=4))
    first, last = rgb.first_and_last(_render(tmp_path, name, start, parse_drift(f"{name}=0.03")))
    assert moves(frame_stats(first), frame_stats(last))  # type: ignore[operator]


def test_the_local_provider_takes_its_drift_from_the_environment(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYFILM_LOCAL_DRIFT", "contrast=0.06,saturation=0.05")
    assert LocalProvider(tmp_path).drift == Drift(contrast=0.06, saturation=0.05)
    monkeypatch.setenv("STORYFILM_LOCAL_DRIFT", "contrast=6%")
    with pytest.raises(DriftSpecError, match=r"^STORYFILM_LOCAL_DRIFT 'contrast=6%': contrast='6%' is not a number"):
        LocalProvider(tmp_path)
    monkeypatch.delenv("STORYFILM_LOCAL_DRIFT")
    assert LocalProvider(tmp_path).drift == Drift()


def _i2v(emulator: EmulatorServer, image_url: str, tmp_path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    resp = ws_submit(emulator.url, I2V, {"prompt": "static shot of the lamp", "image": image_url, "duration": 5,
                                         "resolution": "480p", "aspect_ratio": "1:1", "generate_audio": False})
    final, _ = ws_wait(emulator.url, resp.json()["data"]["id"])
    assert final["status"] == "completed", final
    return rgb.first_and_last(download(final["outputs"][0], tmp_path / f"{name}.mp4"))


@pytest.mark.slow
def test_the_emulator_drifts_when_configured_and_not_otherwise(emulator: EmulatorServer, tmp_path: Path) -> None:
    image = write_image(tmp_path / "start.png", (480, 480), seed=6)
    url = ws_upload(emulator.url, image)
    answer = httpx.post(f"{emulator.url}/_emulator/config", json={"drift": {"contrast": 0.06, "saturation": 0.05}})
    assert answer.status_code == 200
    assert answer.json()["drift"] == {"contrast": 0.06, "saturation": 0.05, "brightness": 0.0, "warmth": 0.0}
    first, last = _i2v(emulator, url, tmp_path, "drift")
    assert mean_diff(first, load_rgb(image)) < 3  # frame 0 is still the start image
    s0, s1 = frame_stats(first), frame_stats(last)
    assert 1.03 < contrast_ratio(s1, s0) < 1.10 and 1.03 < saturation_ratio(s1, s0) < 1.09 and delta_e(s1, s0) > 0.5
    # an extension drifts from the input's last frame
    clip = tmp_path / "in.mp4"
    render(AnimaticSpec(fmt=VideoFormat(480, 480), frames=48, prompt="dusk", start=title_card("dusk", 1, FMT),
                        camera="static"), clip)
    resp = ws_submit(emulator.url, EXTEND, {"prompt": "static shot", "video": ws_upload(emulator.url, clip),
                                            "duration": 4, "resolution": "480p"})
    final, _ = ws_wait(emulator.url, resp.json()["data"]["id"])
    extended = list(rgb.frames(download(final["outputs"][0], tmp_path / "extended.mp4")))
    assert len(extended) == 48 + 96
    e0, e1 = frame_stats(extended[47]), frame_stats(extended[-1])
    assert 1.03 < contrast_ratio(e1, e0) < 1.10 and 1.03 < saturation_ratio(e1, e0) < 1.15  # a darker picture

    httpx.post(f"{emulator.url}/_emulator/config", json={"drift": "off"}).raise_for_status()
    first, last = _i2v(emulator, url, tmp_path, "plain")
    s0, s1 = frame_stats(first), frame_stats(last)
    assert delta_e(s1, s0) < 0.3 and contrast_ratio(s1, s0) == pytest.approx(1, abs=0.01)

    bad = httpx.post(f"{emulator.url}/_emulator/config", json={"drift": {"contrast": "lots"}})
    assert bad.status_code == 400 and "contrast='lots' is not a number" in bad.json()["error"]
    bad = httpx.post(f"{emulator.url}/_emulator/config", json={"drift": {"hue": 0.1}})
    assert bad.status_code == 400 and "unknown drift 'hue'; allowed: contrast, saturation" in bad.json()["error"]


@pytest.mark.slow
def test_a_bad_drift_stops_the_emulator_with_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "storyfilm", "emulate", "--drift", "contrast=0.9"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "--drift 'contrast=0.9': contrast=0.9 is out of range" in proc.stderr and "Traceback" not in proc.stderr

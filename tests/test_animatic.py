"""The local renderer: real video at the requested format, exact chaining, no piled-up overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storyfilm.animatic import AnimaticSpec, audio_bed, camera_from_prompt, fit_cover, render
from storyfilm.media import probe
from storyfilm.media.ffmpeg import VideoFormat

from .helpers import write_image

FMT = VideoFormat(480, 270, 24)


def load(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_renders_the_requested_format_with_audio(tmp_path: Path) -> None:
    fmt = VideoFormat(480, 854, 24)  # 480p 9:16
    render(AnimaticSpec(fmt=fmt, frames=48, prompt="a gull over the sea", seed=3), tmp_path / "s.mp4")
    info = probe.probe(tmp_path / "s.mp4")
    assert info.video and info.audio
    assert (info.video.codec, info.video.width, info.video.height, info.video.frames) == ("h264", 480, 854, 48)
    assert info.video.pix_fmt == "yuv420p" and info.video.profile == "High"
    assert info.audio.codec == "aac" and info.audio.duration == pytest.approx(2.0, abs=1 / 24)
    audio = probe.read_audio(tmp_path / "s.mp4")
    assert audio is not None and float(np.sqrt(np.mean(audio**2))) > 0.01  # an audible bed


def test_no_audio_when_not_asked(tmp_path: Path) -> None:
    render(AnimaticSpec(fmt=FMT, frames=24, prompt="x", audio=False), tmp_path / "s.mp4")
    assert probe.probe(tmp_path / "s.mp4").audio is None


def test_a_continued_shot_starts_on_exactly_the_previous_last_frame(tmp_path: Path) -> None:
    start = load(write_image(tmp_path / "a.png", (640, 360)))
    last_a = render(AnimaticSpec(fmt=FMT, frames=48, prompt="push-in on the harbour", camera="push_in",
                                 start=start, overlay="caption A", label="a"), tmp_path / "a.mp4")
    render(AnimaticSpec(fmt=FMT, frames=49, prompt="pan right", camera="pan_right", start=last_a,
                        overlay="caption B", label="b", keyframes=(1,)), tmp_path / "b.mp4")
    a_last, b_first = probe.last_frame(tmp_path / "a.mp4"), probe.first_frame(tmp_path / "b.mp4")
    assert np.array_equal(a_last, b_first)
    assert 1 in probe.keyframe_indices(tmp_path / "b.mp4")  # the copy can be dropped by stream copy
    # and the camera did move: the shot's end is not its start
    assert np.abs(a_last.astype(int) - probe.first_frame(tmp_path / "a.mp4")).mean() > 5


def test_overlays_never_reach_the_last_frame(tmp_path: Path) -> None:
    start = load(write_image(tmp_path / "a.png", (480, 270)))
    last = render(AnimaticSpec(fmt=FMT, frames=24, prompt="static", camera="static", start=start,
                               overlay="A LONG CAPTION " * 5, label="shot-id"), tmp_path / "s.mp4")
    assert np.array_equal(last, fit_cover(start, FMT))  # static camera: the raw last frame is the start
    middle = probe.read_frames(tmp_path / "s.mp4", [12])[0]
    assert np.abs(middle.astype(int) - start).mean() > 3  # the caption was shown in between


def test_end_image_is_the_last_frame(tmp_path: Path) -> None:
    end = load(write_image(tmp_path / "end.png", (800, 600), seed=5))
    last = render(AnimaticSpec(fmt=FMT, frames=36, prompt="towards the door", end=end), tmp_path / "s.mp4")
    assert np.array_equal(last, fit_cover(end, FMT))
    decoded = probe.last_frame(tmp_path / "s.mp4")
    assert np.abs(decoded.astype(int) - fit_cover(end, FMT)).mean() < 3


def test_audio_bed_is_deterministic_from_the_seed() -> None:
    a, b = audio_bed("storm", 1, 1.0), audio_bed("storm", 1, 1.0)
    assert np.array_equal(a, b) and a.shape == (48000, 2)
    assert not np.array_equal(a, audio_bed("storm", 2, 1.0))


@pytest.mark.parametrize(("prompt", "move"), [
    ("Close-up, he lights the lamp", "push_in"), ("the camera pans left over the bay", "pan_left"),
    ("Handheld camera follows him inside", "handheld"), ("static shot of the sea", "static"),
    ("slow pull back to reveal the island", "pull_out"), ("He looks up at the tower", "tilt_up"),
])
def test_camera_move_from_the_prompt(prompt: str, move: str) -> None:
    assert camera_from_prompt(prompt) == move

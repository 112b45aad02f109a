"""Probing, exact last frames without decoding everything, and the ffmpeg runner."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from storyfilm.errors import FFmpegError, ProbeError
from storyfilm.media import ffmpeg, probe, rgb

from .helpers import make_clip


def test_probe_reports_streams_and_frames(tmp_path: Path) -> None:
    info = probe.probe(make_clip(tmp_path / "c.mp4", 2, (320, 180), 25))
    assert info.video is not None and info.audio is not None
    assert (info.video.width, info.video.height, info.video.fps, info.video.frames) == (320, 180, Fraction(25), 50)
    assert info.video.duration == pytest.approx(2.0)
    assert (info.audio.codec, info.audio.sample_rate, info.audio.channels) == ("aac", 48000, 2)


@pytest.mark.parametrize("gop", [250, 24])
def test_last_frame_is_exact(tmp_path: Path, gop: int) -> None:
    clip = make_clip(tmp_path / "c.mp4", 6, gop=gop)
    every = probe.read_frames(clip)
    assert len(every) == 144
    assert np.array_equal(probe.last_frame(clip), every[-1])


def test_last_frame_when_audio_runs_past_the_video(tmp_path: Path) -> None:
    # ffmpeg's -sseof is relative to the container and writes nothing here; we seek from the video's end.
    clip = make_clip(tmp_path / "c.mp4", 3, audio_seconds=5)
    assert probe.probe(clip).duration > 4.5
    assert np.array_equal(probe.last_frame(clip), probe.read_frames(clip)[-1])


def test_a_checked_segments_last_frame_is_converted_without_the_rounding_bias(tmp_path: Path) -> None:
    # the frame a chain continues from: the default converter would darken every generation by about a level
    clip = make_clip(tmp_path / "c.mp4", 2)
    _, last = probe.decode_all(clip)
    assert np.array_equal(last, rgb.last_frame(clip))
    assert not np.array_equal(last, probe.last_frame(clip))  # the biased conversion differs on this clip


def test_keyframes_are_found_without_decoding(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", 4, gop=24)
    assert probe.keyframe_indices(clip) == [0, 24, 48, 72]
    # the assembly's one opening per segment gives what the two calls give
    info, keyframes = probe.probe_keyframes(clip)
    assert (info, keyframes) == (probe.probe(clip), [0, 24, 48, 72]) and info.video and info.video.frames == 96


def test_not_media_is_a_probe_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(ProbeError, match="x.mp4"):
        probe.probe(bad)


def test_ffmpeg_failure_carries_its_stderr(tmp_path: Path) -> None:
    with pytest.raises(FFmpegError) as info:
        ffmpeg.run(["-i", str(tmp_path / "missing.mp4"), str(tmp_path / "out.mp4")])
    assert "missing.mp4" in str(info.value) and info.value.returncode != 0


def test_ffmpeg_binary_override_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FFMPEG_BINARY", str(tmp_path / "no-such-ffmpeg"))
    ffmpeg.ffmpeg_exe.cache_clear()
    try:
        with pytest.raises(FFmpegError, match="no-such-ffmpeg"):
            ffmpeg.run(["-version"])
    finally:
        ffmpeg.ffmpeg_exe.cache_clear()

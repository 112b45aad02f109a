"""Assembly: exact durations, seams shown once, audio encoded once and in sync, mixed inputs normalised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storyfilm.animatic import AnimaticSpec, render
from storyfilm.assemble import Piece, assemble
from storyfilm.errors import IncompatibleSegments
from storyfilm.media import probe
from storyfilm.media.ffmpeg import VideoFormat

from .helpers import make_clip, write_image

FMT = VideoFormat(480, 270, 24)


def dominant_hz(samples: np.ndarray) -> float:
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.fft.rfftfreq(len(mono), 1 / 48000)[int(np.argmax(spectrum))])


def test_chained_segments_join_by_copy_showing_the_seam_frame_once(tmp_path: Path) -> None:
    from PIL import Image

    start = np.asarray(Image.open(write_image(tmp_path / "s.png", (480, 270))).convert("RGB"))
    last = render(AnimaticSpec(fmt=FMT, frames=48, prompt="a", start=start, camera="push_in"), tmp_path / "a.mp4")
    render(AnimaticSpec(fmt=FMT, frames=49, prompt="b", start=last, camera="pan_left", keyframes=(1,)),
           tmp_path / "b.mp4")
    film = assemble([Piece(tmp_path / "a.mp4", label="a"), Piece(tmp_path / "b.mp4", start_frame=1, label="b")],
                    FMT, tmp_path / "film.mp4", tmp_path / "work")
    assert film.normalised == [] and film.frames == 96
    info = probe.probe(tmp_path / "film.mp4")
    assert info.video and info.audio and info.video.frames == 96
    assert info.audio.duration == pytest.approx(4.0, abs=1 / 24)
    frames = probe.read_frames(tmp_path / "film.mp4")
    a, b = probe.read_frames(tmp_path / "a.mp4"), probe.read_frames(tmp_path / "b.mp4")
    assert np.array_equal(frames[47], a[-1]) and np.array_equal(frames[48], b[1])  # no frozen frame at the seam
    assert all(np.array_equal(x, y) for x, y in zip(frames, a + b[1:], strict=True))  # copied, not re-encoded


def test_mixed_sizes_rates_and_missing_audio_are_normalised(tmp_path: Path) -> None:
    pieces = [
        Piece(make_clip(tmp_path / "a.mp4", 2, (480, 270), 24, tone=300), label="a"),
        Piece(make_clip(tmp_path / "b.mp4", 2, (320, 240), 25, audio=False), label="b"),
        Piece(make_clip(tmp_path / "c.mp4", 1, (640, 360), 30, tone=1200), label="c"),
    ]
    film = assemble(pieces, FMT, tmp_path / "film.mp4", tmp_path / "work")
    assert set(film.normalised) >= {"b", "c"}
    info = probe.probe(tmp_path / "film.mp4")
    assert info.video and info.audio
    assert (info.video.width, info.video.height, info.video.fps) == (480, 270, 24)
    assert info.video.duration == pytest.approx(5.0, abs=1 / 24)
    audio = probe.read_audio(tmp_path / "film.mp4")
    assert audio is not None
    assert abs(len(audio) / 48000 - info.video.duration) < 1 / 24 + 0.03  # AAC's last frame of padding
    # each segment's sound sits under its own pictures: tone, silence, tone
    assert dominant_hz(audio[int(0.1 * 48000):int(1.9 * 48000)]) == pytest.approx(300, abs=5)
    assert float(np.sqrt(np.mean(audio[int(2.1 * 48000):int(3.9 * 48000)] ** 2))) < 1e-3
    assert dominant_hz(audio[int(4.05 * 48000):int(4.95 * 48000)]) == pytest.approx(1200, abs=5)


def test_audio_stays_in_sync_over_many_segments(tmp_path: Path) -> None:
    tones = [300 + 100 * i for i in range(12)]
    pieces = [Piece(make_clip(tmp_path / f"{i}.mp4", 1, (480, 270), 24, tone=t), label=str(i))
              for i, t in enumerate(tones)]
    assemble(pieces, FMT, tmp_path / "film.mp4", tmp_path / "work")
    audio = probe.read_audio(tmp_path / "film.mp4")
    assert audio is not None
    for i, tone in enumerate(tones):  # 60 ms windows hugging both edges of every segment
        head = audio[int((i + 0.03) * 48000):int((i + 0.09) * 48000)]
        tail = audio[int((i + 0.91) * 48000):int((i + 0.97) * 48000)]
        assert dominant_hz(head) == pytest.approx(tone, abs=20) and dominant_hz(tail) == pytest.approx(tone, abs=20)


def test_a_failed_assembly_keeps_the_previous_film(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "a.mp4", 1, (480, 270))
    assemble([Piece(clip)], FMT, tmp_path / "film.mp4", tmp_path / "work")
    before = (tmp_path / "film.mp4").read_bytes()
    with pytest.raises(IncompatibleSegments, match="has 24"):
        assemble([Piece(clip), Piece(clip, start_frame=10, frames=20)], FMT, tmp_path / "film.mp4", tmp_path / "w")
    assert (tmp_path / "film.mp4").read_bytes() == before

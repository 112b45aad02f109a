"""Assembly: exact durations, seams shown once, audio encoded once and in sync, mixed inputs normalised."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from storyfilm.animatic import AnimaticSpec, render
from storyfilm.assemble import Piece, assemble
from storyfilm.errors import IncompatibleSegments
from storyfilm.media import ffmpeg, probe
from storyfilm.media.ffmpeg import VideoFormat
from storyfilm.transitions import CONTINUE, Crossfade, Fade

from .helpers import make_clip, write_image

FMT = VideoFormat(480, 270, 24)


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


def test_a_failed_assembly_keeps_the_previous_film(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "a.mp4", 1, (480, 270))
    assemble([Piece(clip)], FMT, tmp_path / "film.mp4", tmp_path / "work")
    before = (tmp_path / "film.mp4").read_bytes()
    with pytest.raises(IncompatibleSegments, match="has 24"):
        assemble([Piece(clip), Piece(clip, start_frame=10, frames=20)], FMT, tmp_path / "film.mp4", tmp_path / "w")
    assert (tmp_path / "film.mp4").read_bytes() == before


# --- transitions, mixed inputs, extend echoes, sync over many joins ---------------------------------

SMALL = VideoFormat(320, 180, 24)


def tone_level(samples: np.ndarray, hz: float, window: int = 960) -> np.ndarray:
    """How much of a tone there is around each sample (20 ms window: tones 50 Hz apart do not leak)."""
    mono = samples.mean(axis=1)
    z = mono * np.exp(-2j * np.pi * hz * np.arange(len(mono)) / 48000)
    return np.abs(np.convolve(z, np.ones(window) / window, mode="same"))


def tone_switch(audio: np.ndarray, before_hz: float, after_hz: float, around: float) -> float:
    """When (s) the sound switches from one tone to the other, looking 40 ms either side of `around`."""
    lo = int((around - 0.04) * 48000)
    seg = audio[lo:lo + int(0.08 * 48000)]
    return (lo + int(np.argmax(tone_level(seg, after_hz) > tone_level(seg, before_hz)))) / 48000


def render_chain(directory: Path, fmt: VideoFormat = SMALL) -> list[Path]:
    """Four small animatic shots: a, b continuing a, then c and d (independent)."""
    last = render(AnimaticSpec(fmt=fmt, frames=48, prompt="dawn harbour", camera="push_in", overlay="a"),
                  directory / "a.mp4")
    render(AnimaticSpec(fmt=fmt, frames=49, prompt="gulls", start=last, camera="pan_left", keyframes=(1,),
                        overlay="b"), directory / "b.mp4")
    render(AnimaticSpec(fmt=fmt, frames=48, prompt="night storm", camera="tilt_up", overlay="c"), directory / "c.mp4")
    render(AnimaticSpec(fmt=fmt, frames=48, prompt="forest garden", camera="pan_right", overlay="d"),
           directory / "d.mp4")
    return [directory / f"{x}.mp4" for x in "abcd"]


@pytest.mark.slow
def test_crossfade_and_fade_overlap_and_only_frames_near_them_are_encoded(tmp_path: Path) -> None:
    a, b, c, d = render_chain(tmp_path)
    pieces = [Piece(a, label="a"), Piece(b, start_frame=1, label="b", join=CONTINUE),
              Piece(c, label="c", join=Crossfade(0.5)), Piece(d, label="d", join=Fade(0.5))]
    film = assemble(pieces, SMALL, tmp_path / "film.mp4", tmp_path / "work")
    assert film.frames == 48 * 4 - 24 and [p.first for p in film.placements] == [0, 48, 84, 120]
    info = probe.probe(film.path)
    assert info.video and info.audio and info.video.frames == 168
    assert abs(info.audio.duration - 7.0) < 0.03
    frames = probe.read_frames(film.path)
    src = {k: probe.read_frames(p) for k, p in zip("abcd", (a, b, c, d), strict=True)}
    # a is copied (pixel-identical); b has no keyframe between its first frame and the crossfade, so it is
    # encoded with the transition; d ends on a keyframe-led frame that is copied again
    assert all(np.array_equal(x, y) for x, y in zip(frames[:48], src["a"], strict=True))
    assert (film.copied_frames, film.encoded_frames) == (49, 119)

    def err(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.abs(x.astype(np.float32) - y.astype(np.float32)).mean())

    assert err(frames[48], src["b"][1]) < 1.5  # the seam frame is still shown once
    assert np.array_equal(frames[167], src["d"][47])

    for j in range(12):  # crossfade: b's last 12 frames dissolve into c's first 12
        p = (j + 1) / 13
        expected = src["b"][37 + j].astype(np.float32) * (1 - p) + src["c"][j].astype(np.float32) * p
        assert err(frames[84 + j], expected) < 1.5
    for j in range(12):  # fade: c's end goes to black at the middle, then d comes up from it
        p = (j + 1) / 13
        expected = src["c"][36 + j] * (1 - 2 * p) if p < 0.5 else src["d"][j] * (2 * p - 1)
        assert err(frames[120 + j], np.asarray(expected)) < 1.5
    assert max(f.mean() for f in frames[125:127]) < 20  # black (limited range decodes to ~0)
    # everything outside the transitions is each segment's own frames, re-encoded where it had to be
    assert err(frames[96], src["c"][12]) < 1.5 and err(frames[167], src["d"][47]) < 1.5


def test_without_transitions_a_matching_film_is_pure_stream_copy(tmp_path: Path) -> None:
    a, b, c, _ = render_chain(tmp_path)
    film = assemble([Piece(a), Piece(b, start_frame=1, join=CONTINUE), Piece(c)], SMALL, tmp_path / "f.mp4",
                    tmp_path / "work")
    assert (film.encoded_frames, film.copied_frames, film.normalised) == (0, 144, [])


@pytest.mark.slow
def test_mixed_rates_sizes_audio_and_an_extend_echo_trimmed_to_the_frame(tmp_path: Path) -> None:
    fmt = VideoFormat(854, 480, 24)
    echoed = make_clip(tmp_path / "old.mp4", 1, (640, 360), 25, tone=1200)
    new = make_clip(tmp_path / "new.mp4", 1, (640, 360), 25, tone=700, colour="blue")
    extended = tmp_path / "extended.mp4"  # what an extend call returns: the input again, then the new part
    ffmpeg.run(["-y", "-i", str(echoed), "-i", str(new), "-filter_complex", "[0:v][0:a][1:v][1:a]concat=n=2:v=1:a=1",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "250", "-c:a", "aac", str(extended)])
    pieces = [
        Piece(make_clip(tmp_path / "a.mp4", 1, (854, 480), 24, tone=300), label="a"),
        Piece(make_clip(tmp_path / "b.mp4", 1, (1280, 720), 30, audio=False), label="b"),
        Piece(echoed, label="c"),
        Piece(extended, start_frame=25, label="echo", join=CONTINUE),
    ]
    film = assemble(pieces, fmt, tmp_path / "film.mp4", tmp_path / "work")
    assert film.normalised == ["a", "b", "c", "echo"]  # other encoders' parameter sets, sizes, rates
    with av.open(str(film.path)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        v, a = c.streams.video[0].codec_context, c.streams.audio[0].codec_context
        assert (v.name, v.width, v.height, v.pix_fmt) == ("h264", 854, 480, "yuv420p")
        assert (a.name, a.sample_rate, a.channels) == ("aac", 48000, 2)
    info = probe.probe(film.path)
    assert info.video and info.video.fps == 24 and abs(info.video.frames - 96) <= 1
    assert [p.first for p in film.placements] == [0, 24, 48, 72]
    frames = probe.read_frames(film.path)
    blue = np.array([0, 0, 255])
    # the echo is gone to the frame: the shot before ends on the old picture, the next frame is new
    assert np.abs(frames[71].mean(axis=(0, 1)) - blue).max() > 60
    assert all(np.abs(f.mean(axis=(0, 1)) - blue).max() < 12 for f in frames[72:])
    audio = probe.read_audio(film.path)
    assert audio is not None
    assert float(np.sqrt(np.mean(audio[int(1.05 * 48000):int(1.95 * 48000)] ** 2))) < 1e-3
    # the new part's sound starts under its first frame: the 1-frame crossfade from the echo's own sound
    # (the same as the shot before: crossfaded at constant amplitude, no bump) ends exactly there
    assert abs(tone_switch(audio, 1200, 700, 3.0) - 3.0) < 0.001
    assert tone_level(audio[int(3.05 * 48000):int(3.95 * 48000)], 1200).max() < 0.01


@pytest.mark.slow
def test_sound_and_pictures_stay_in_sync_over_32_mixed_segments(tmp_path: Path) -> None:
    colours = ["red", "lime", "blue", "yellow", "cyan", "magenta", "white"]
    rgb = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
                    (255, 255, 255)], dtype=np.float32)
    tones = [400 + 200 * (i % 7) for i in range(32)]
    pieces = [Piece(make_clip(tmp_path / f"{i}.mp4", 1, (160, 90), (24, 25, 30)[i % 3], tone=tones[i],
                              colour=colours[i % 7]), label=str(i)) for i in range(32)]
    fmt = VideoFormat(160, 90, 24)
    film = assemble(pieces, fmt, tmp_path / "film.mp4", tmp_path / "work")
    assert film.frames == 32 * 24 and all(p.frames == 24 for p in film.placements)
    frames = probe.read_frames(film.path)
    shown = [int(np.argmin(np.abs(rgb - f.reshape(-1, 3).mean(axis=0)).max(axis=1))) for f in frames]
    assert shown == [i // 24 % 7 for i in range(len(frames))]  # every picture switches on its frame
    audio = probe.read_audio(film.path)
    assert audio is not None and abs(len(audio) / 48000 - 32.0) < 0.03
    lags = [tone_switch(audio, tones[k - 1], tones[k], k) - k for k in range(1, 32)]
    assert max(abs(x) for x in lags) < 0.001, lags  # and every sound with it, to the millisecond, no drift

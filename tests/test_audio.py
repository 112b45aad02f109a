"""The film's sound track: exact lengths, crossfade laws, and EBU R128 loudness (measured by ffmpeg's meter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storyfilm import audio
from storyfilm.animatic import write_wav
from storyfilm.assemble import Piece, assemble
from storyfilm.audio import AudioPart
from storyfilm.errors import MediaError
from storyfilm.media import ffmpeg, probe
from storyfilm.transitions import CONTINUE, Crossfade, Fade, equal_power

from .test_assemble import SMALL, render_chain

SR = 48000


def noise(seconds: float, level: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((int(seconds * SR), 2)) * level).astype(np.float32)


def clip_with_sound(path: Path, pcm: np.ndarray) -> Path:
    wav = write_wav(pcm, path.with_suffix(".wav"))
    ffmpeg.run(["-y", "-f", "lavfi", "-i", f"color=c=gray:size=160x90:rate=24:d={len(pcm) / SR}", "-i", str(wav),
                "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "256k", str(path)])
    return path


def test_equal_power_crossfade_keeps_the_level_of_unrelated_sounds(tmp_path: Path) -> None:
    a = clip_with_sound(tmp_path / "a.mp4", noise(1, 0.1, 1))
    b = clip_with_sound(tmp_path / "b.mp4", noise(1, 0.1, 2))
    parts = [AudioPart(a, 0.0, 0, 24), AudioPart(b, 0.0, 12, 24, Crossfade(0.5))]
    track = audio.film_track(parts, 36, 24)
    assert track.shape == (36 * 2000, 2)
    rms = [float(np.sqrt(np.mean(track[i * 2000:(i + 1) * 2000] ** 2))) for i in range(36)]
    assert max(rms) / min(rms) < 1.25  # no dip or bump through the crossfade (frames 12-23)
    gain_out, gain_in = equal_power(1000)
    assert np.allclose(gain_out ** 2 + gain_in ** 2, 1.0, atol=1e-6)


def test_a_crossfade_between_the_same_sound_is_seamless(tmp_path: Path) -> None:
    same = noise(2, 0.1, 3)
    a = clip_with_sound(tmp_path / "a.mp4", same)
    parts = [AudioPart(a, 0.0, 0, 24), AudioPart(a, 1.0, 24, 24, CONTINUE)]  # an extend echo's pre-roll
    track = audio.film_track(parts, 48, 24)
    whole = probe.read_audio(a)
    assert whole is not None
    assert np.abs(track - whole[:96000]).max() < 1e-5  # constant-amplitude law: the sound itself, no bump


def test_fade_goes_through_silence_and_cuts_do_not_touch_the_sound(tmp_path: Path) -> None:
    a = clip_with_sound(tmp_path / "a.mp4", noise(1, 0.1, 4))
    b = clip_with_sound(tmp_path / "b.mp4", noise(1, 0.1, 5))
    faded = audio.film_track([AudioPart(a, 0, 0, 24), AudioPart(b, 0, 12, 24, Fade(0.5))], 36, 24)
    assert np.abs(faded[35990:36010]).max() < 0.01  # the middle of the fade (frame 18) is silent
    cut = audio.film_track([AudioPart(a, 0, 0, 24), AudioPart(b, 0, 24, 24)], 48, 24)
    sa, sb = probe.read_audio(a), probe.read_audio(b)
    assert sa is not None and sb is not None
    assert np.array_equal(cut[:48000], sa[:48000]) and np.array_equal(cut[48000:], sb[:48000])


@pytest.mark.parametrize("target", [-23.0, -14.0])
def test_loudness_reaches_the_target_by_gain_alone(target: float) -> None:
    t = np.arange(10 * SR) / SR
    pcm = np.stack([0.02 * np.sin(2 * np.pi * 330 * t)] * 2, axis=1).astype(np.float32) + noise(10, 0.01, 6)
    out, result = audio.normalise(pcm, target)
    assert not result.limited and abs(result.after.integrated - target) <= 0.3
    assert abs(audio.measure(out).integrated - target) <= 0.3 and result.after.true_peak <= audio.TRUE_PEAK_CEILING
    assert np.allclose(out / pcm, out[0] / pcm[0], rtol=1e-4)  # one gain, nothing else


def test_loud_peaks_are_limited_without_moving_the_sound() -> None:
    pcm = noise(10, 0.02, 7)
    bursts = np.arange(0, 10 * SR, SR // 2)
    for start in bursts:  # short loud clicks over quiet noise: a gain to -14 LUFS would clip them
        pcm[start:start + 48] = 0.9
    out, result = audio.normalise(pcm, -14.0)
    assert result.limited and abs(result.after.integrated + 14.0) <= 1.0
    assert result.after.true_peak <= audio.TRUE_PEAK_CEILING
    loudest = np.argsort(np.abs(out[:, 0]))[-200:]  # the loudest samples are still the bursts, in place
    assert all(any(0 <= s - b < 48 for b in bursts) for s in loudest)


@pytest.mark.slow
def test_a_film_is_normalised_to_the_target_and_stays_in_sync(tmp_path: Path) -> None:
    a, b, c, _ = render_chain(tmp_path)
    pieces = [Piece(a), Piece(b, start_frame=1, join=CONTINUE), Piece(c)]
    plain = assemble(pieces, SMALL, tmp_path / "plain.mp4", tmp_path / "w")
    loud = assemble(pieces, SMALL, tmp_path / "loud.mp4", tmp_path / "w", loudness_lufs=-20)
    assert plain.loudness is None and loud.loudness is not None and loud.frames == plain.frames
    before, after = probe.read_audio(plain.path), probe.read_audio(loud.path)
    assert before is not None and after is not None
    assert abs(audio.measure(after).integrated + 20) <= 0.5  # as decoded from the film
    assert not loud.loudness.limited
    expected = before * 10 ** (loud.loudness.gain_db / 20)
    got = after[:len(before)]
    # the same sound, louder (up to AAC's own noise), and in place: best aligned at lag 0
    assert np.sqrt(np.mean((got - expected) ** 2) / np.mean(expected ** 2)) < 0.1
    lags = {lag: float(np.sum(got[2000 + lag:-2000 + lag] * expected[2000:-2000])) for lag in range(-24, 25)}
    assert max(lags, key=lambda k: lags[k]) == 0


def test_targets_outside_the_sensible_range_are_refused() -> None:
    with pytest.raises(MediaError, match="outside -40..-5 LUFS"):
        audio.check_target(-3)

"""The film's sound encoded in chunks at once: the same packets as one encoder, no click where chunks meet."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av
import numpy as np
import pytest

from storyfilm.media import aac
from storyfilm.media.ffmpeg import SAMPLE_RATE

CHUNK = 192 * aac.FRAME  # ~4.1 s: a 13 s track in 3 chunks


def _music(seconds: float) -> np.ndarray:
    """Tones, which AAC codes cleanly once settled: a click or an unsettled encoder stands out."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    left = 0.3 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    left += 0.1 * np.sin(2 * np.pi * (220 + 40 * t) * t)
    right = 0.25 * np.sin(2 * np.pi * 660 * t + 1.0) + 0.05 * np.sin(2 * np.pi * 3000 * t)
    return np.stack([left, right], axis=1).astype(np.float32)


def _encode(pcm: np.ndarray, chunk: int) -> list[av.Packet[Any]]:
    with ThreadPoolExecutor(2) as pool:
        return list(aac.encode(pcm, pool, chunk).packets())


def _decode(packets: list[av.Packet[Any]]) -> np.ndarray:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=SAMPLE_RATE, layout=aac.LAYOUT)
        stream.bit_rate = aac.encoder_bit_rate()
        for packet in packets:
            packet.stream = stream
            out.mux(packet)
    buf.seek(0)
    with av.open(buf) as film:
        return np.concatenate([f.to_ndarray() for f in film.decode(audio=0)], axis=1).T


def _noise(pcm: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """Worst coding error in each AAC frame of the track (its last two frames left out: the stream's end)."""
    err = np.abs(decoded[:len(pcm)] - pcm).max(axis=1)
    frames = len(pcm) // aac.FRAME - 2
    return err[:frames * aac.FRAME].reshape(frames, aac.FRAME).max(axis=1)


def _excess(pcm: np.ndarray, chunk: int) -> tuple[float, list[Any], list[Any]]:
    """How far the chunked encode's coding noise rises above one encoder's, anywhere in the track."""
    one, chunked = _encode(pcm, 1 << 40), _encode(pcm, chunk)
    single, decoded = _decode(one), _decode(chunked)
    # the priming is trimmed by the edit list; the decoder keeps the last frame's padding, as for one encoder
    assert len(decoded) == len(single) and 0 <= len(decoded) - len(pcm) < aac.FRAME
    excess = _noise(pcm, decoded) - 2 * _noise(pcm, single)
    return float(excess.max()), one, chunked


def test_chunks_make_the_packets_one_encoder_makes_and_sound_as_good() -> None:
    pcm = _music(13)
    excess, one, chunked = _excess(pcm, CHUNK)
    assert [p.pts for p in chunked] == [p.pts for p in one]  # the same grid, nothing missing or doubled
    assert [p.pts for p in chunked][:2] == [-aac.FRAME, 0]
    assert len({p.pts for p in chunked}) == len(chunked)
    # settled, these tones code to ~0.0006 (full scale 1); an edge without enough pre-roll gives 0.02-0.05
    assert excess < 0.002, excess


def test_the_check_hears_chunks_without_enough_pre_roll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aac, "PRE_ROLL", 24 * aac.FRAME)  # 0.5 s: the encoder is still settling at the edge
    excess, _, _ = _excess(_music(9), CHUNK)
    assert excess > 0.005, excess


def test_chunk_sizes() -> None:
    minute = 60 * SAMPLE_RATE
    assert aac.chunk_size(5 * SAMPLE_RATE, 2) >= 5 * SAMPLE_RATE  # short: one chunk
    assert aac.chunk_size(150 * SAMPLE_RATE, 1) >= 150 * SAMPLE_RATE  # one worker: one chunk
    for samples, workers, count in ((150 * SAMPLE_RATE, 2, 4), (10 * minute, 2, 12), (10 * minute, 4, 12)):
        size = aac.chunk_size(samples, workers)
        assert size % aac.FRAME == 0 and size <= aac.LONGEST
        assert -(-samples // size) == count, (samples, workers, size)
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="AAC frames"):
        aac.encode(_music(1), pool, aac.FRAME + 1)

"""The film's sound to AAC on every core: chunks encoded at once, stitched on AAC's frame grid.

Encoding AAC is most of a join's time (the pictures are copied) and FFmpeg's encoder uses one core. The
track is cut into chunks whose edges fall on the 1024-sample frame grid of one encoder over the whole track;
each chunk is encoded by its own encoder (PyAV releases the GIL while FFmpeg encodes), starting a few
seconds before the chunk (pre-roll: the encoder's rate control settles on the real sound) and running a
little past it (the last kept frame's window and look-ahead are real sound too); only the chunk's own
frames are kept. The packets are those one encoder makes, at the same timestamps, and the coding noise at
and after each edge is that of one encoder (tests/test_aac.py compares both with the source PCM).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from storyfilm.media.ffmpeg import AUDIO_BITRATE, CHANNELS, SAMPLE_RATE

FRAME = 1024  # samples per AAC-LC frame; FFmpeg's encoder primes with one frame (packets start at -1024)
# FFmpeg's encoder takes ~3 s to settle its rate control on a tonal sound (its first seconds carry up to
# 100x the coding noise of what follows): each chunk starts that long before its own first frame.
PRE_ROLL = 144 * FRAME  # 3.07 s
POST_ROLL = 4 * FRAME
LONGEST = 2812 * FRAME  # ~60 s per chunk at most
SHORTEST = 12 * SAMPLE_RATE  # a shorter track is one chunk: its pre-rolls would cost more than they save
FEED = 48 * FRAME  # samples per frame handed to the encoder
LAYOUT = "stereo" if CHANNELS == 2 else "mono"


def _encoder() -> av.AudioCodecContext:
    cc = av.AudioCodecContext.create("aac", "w")
    cc.sample_rate = SAMPLE_RATE
    cc.layout = LAYOUT
    cc.format = "fltp"
    cc.bit_rate = encoder_bit_rate()
    cc.time_base = Fraction(1, SAMPLE_RATE)
    cc.open()
    return cc


def _encode(pcm: np.ndarray, lo: int, hi: int, keep: tuple[int, int]) -> list[av.Packet[Any]]:
    """Encode samples [lo, hi) of the track; keep the packets whose timestamps fall in `keep`."""
    cc = _encoder()
    packets: list[av.Packet[Any]] = []
    for at in range(lo, hi, FEED):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[at:min(at + FEED, hi)].T), format="fltp",
                                           layout=LAYOUT)
        frame.sample_rate, frame.pts = SAMPLE_RATE, at
        packets += cc.encode(frame)
    packets += cc.encode(None)
    return [p for p in packets if p.pts is not None and keep[0] <= p.pts < keep[1]]


@dataclass(frozen=True)
class Chunks:
    """The encoded track: packets in timestamp order (time base 1/SAMPLE_RATE), chunk by chunk as they finish."""

    parts: tuple[Future[list[av.Packet[Any]]], ...]

    def packets(self) -> Iterator[av.Packet[Any]]:
        for part in self.parts:
            yield from part.result()


def chunk_size(samples: int, workers: int) -> int:
    """Equal chunks, a multiple of `workers` of them, each at most LONGEST (all workers finish together)."""
    count = 1 if samples < SHORTEST or workers < 2 else workers * -(-samples // (workers * LONGEST))
    return max(1, -(-samples // (count * FRAME))) * FRAME


def encode(pcm: np.ndarray, pool: Executor, chunk: int) -> Chunks:
    """Start encoding the (samples, channels) float32 track on `pool` in chunks of `chunk` samples; returns at once."""
    if chunk <= 0 or chunk % FRAME:
        raise ValueError(f"chunk of {chunk} samples is not a whole number of AAC frames ({FRAME})")
    n = len(pcm)
    starts = list(range(0, n, chunk)) or [0]
    parts = []
    for i, start in enumerate(starts):
        last = i == len(starts) - 1
        end = n if last else starts[i + 1]
        lo = max(0, start - PRE_ROLL)
        keep = (-FRAME if i == 0 else start - FRAME, 2**62 if last else end - FRAME)
        parts.append(pool.submit(_encode, pcm, lo, n if last else min(n, end + POST_ROLL), keep))
    return Chunks(tuple(parts))


def encoder_bit_rate() -> int:
    return int(AUDIO_BITRATE.rstrip("k")) * 1000

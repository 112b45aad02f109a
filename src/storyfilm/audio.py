"""The film's sound: one PCM track built from every segment, with crossfades at the joins, and loudness.

Every part is cut to exactly its pictures' length (silence where a segment has none), so the track stays
in sync over any number of joins. At a continuous join the incoming segment's pre-roll (the sound under
the frame that was dropped because it repeats the previous shot's last frame) is crossfaded under the end
of the outgoing part: the join is smoothed without moving or stretching anything. Crossfade and fade
transitions overlap the two parts exactly as the pictures do. Crossfades are equal-power (unrelated
sounds keep their level), or constant-amplitude when both sides are the same sound (an extend's echo),
which equal power would bump by 3 dB.

Loudness is measured with ffmpeg's EBU R128 meter (`ebur128`: integrated loudness, true peak) and set by
one gain for the whole film; a limiter (`alimiter`, latency-compensated so nothing moves) only touches
the peaks that gain pushes over the true-peak ceiling, and the ceiling is never exceeded (loudness gives
way instead, and the result says so).
"""

from __future__ import annotations

import math
import re
import subprocess
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storyfilm.errors import FFmpegError, MediaError
from storyfilm.media import probe
from storyfilm.media.ffmpeg import CHANNELS, SAMPLE_RATE, ffmpeg_exe
from storyfilm.storyboard import LOUDNESS_RANGE
from storyfilm.transitions import CUT, Join

# The crossfade at a continuous join: one film frame, the length of the dropped seam frame's sound.
SEAM_CROSSFADE_FRAMES = 1
CORRELATED = 0.5  # above this, the two sides of a crossfade are one sound: crossfade at constant amplitude
# dBTP. EBU R128 allows -1 for delivery; the AAC encode that follows adds up to ~0.5 dB of overshoot.
TRUE_PEAK_CEILING = -1.5
LIMIT_ROUNDS = 4


@dataclass(frozen=True)
class AudioPart:
    """One segment's sound in the film: `frames` film frames from `start` seconds into `source`."""

    source: Path
    start: float
    first: int  # film frame where the part begins (inside the overlap with the previous part)
    frames: int
    join: Join = CUT  # how it joins the previous part (a crossfade or fade shares frames with it)


def samples_per_frame(fps: int) -> int:
    if SAMPLE_RATE % fps:
        raise MediaError(f"{fps} fps does not divide {SAMPLE_RATE} Hz: audio could not cut on frame boundaries")
    return SAMPLE_RATE // fps


def _excerpt(audio: np.ndarray | None, first: int, n: int) -> np.ndarray:
    """n samples of `audio` from sample `first` (which may be negative); silence wherever there is none."""
    out = np.zeros((n, CHANNELS), dtype=np.float32)
    if audio is None:
        return out
    lo, hi = max(first, 0), min(first + n, len(audio))
    if hi > lo:
        out[lo - first:hi - first] = audio[lo:hi]
    return out


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    energy = float(np.sqrt(np.sum(a.astype(np.float64) ** 2) * np.sum(b.astype(np.float64) ** 2)))
    return float(np.sum(a.astype(np.float64) * b)) / energy if energy > 0 else 0.0


READ_AHEAD = 3  # segments decoded ahead of the one being mixed (memory: a few segments' PCM)


def _sounds(parts: Sequence[AudioPart], pool: Executor | None) -> Iterator[np.ndarray | None]:
    """Each part's source decoded, in order (parts in a row from one file share it); with a pool, the next
    few files decode while one is mixed."""
    runs = [part.source for i, part in enumerate(parts) if i == 0 or part.source != parts[i - 1].source]
    ahead: deque[Future[np.ndarray | None]] = deque()
    pending = iter(runs)
    audio: np.ndarray | None = None
    for i, part in enumerate(parts):
        if i and part.source == parts[i - 1].source:
            yield audio
            continue
        if pool is None:
            audio = probe.read_audio(part.source)
        else:
            while len(ahead) < READ_AHEAD and (source := next(pending, None)) is not None:
                ahead.append(pool.submit(probe.read_audio, source))
            audio = ahead.popleft().result()
        yield audio


def film_track(parts: Sequence[AudioPart], total_frames: int, fps: int,
               seam_crossfade_frames: int = SEAM_CROSSFADE_FRAMES, pool: Executor | None = None) -> np.ndarray:
    """The whole film's sound as float32 (samples, channels), exactly `total_frames` frames long."""
    spf = samples_per_frame(fps)
    track = np.zeros((total_frames * spf, CHANNELS), dtype=np.float32)
    for i, (part, audio) in enumerate(zip(parts, _sounds(parts, pool), strict=True)):
        start = round(part.start * SAMPLE_RATE)
        # a continuous join takes its crossfade from the incoming segment's pre-roll
        pre = min(seam_crossfade_frames * spf, start) if part.join.continuous and i else 0
        chunk = _excerpt(audio, start - pre, pre + part.frames * spf)
        head = pre or part.join.frames(fps) * spf
        at = part.first * spf - pre
        if head:
            outgoing = track[at:at + head]  # already in the track
            head_gain, tail_gain = part.join.sound_gains(head, _correlation(outgoing, chunk[:head]) > CORRELATED)
            chunk[:head] *= head_gain[:, None]
            outgoing *= tail_gain[:, None]
        track[at:at + len(chunk)] += chunk
    return track


# --- loudness --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loudness:
    integrated: float  # LUFS (-inf for silence)
    true_peak: float  # dBTP


@dataclass(frozen=True)
class LoudnessResult:
    target: float
    before: Loudness
    after: Loudness
    gain_db: float
    limited: bool  # the true-peak limiter had to act

    def as_dict(self) -> dict[str, object]:
        def num(x: float) -> float | None:
            return round(x, 2) if math.isfinite(x) else None

        return {"target_lufs": self.target, "measured_lufs": num(self.before.integrated),
                "achieved_lufs": num(self.after.integrated), "true_peak_dbtp": num(self.after.true_peak),
                "gain_db": num(self.gain_db), "peak_limited": self.limited}


def check_target(lufs: float) -> float:
    lo, hi = LOUDNESS_RANGE
    if not lo <= lufs <= hi:
        raise MediaError(f"loudness target {lufs:g} LUFS is outside {lo:g}..{hi:g} LUFS "
                         "(-14 for the web, -16 for podcasts, -23 for broadcast)")
    return lufs


def _filter(pcm: np.ndarray, af: str, *, output: bool) -> tuple[np.ndarray | None, str]:
    """Run an ffmpeg audio filter over float32 PCM; return the filtered PCM (if asked) and ffmpeg's log."""
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
            "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", str(CHANNELS), "-i", "pipe:0", "-af", af]
    argv += ["-f", "f32le", "-ar", str(SAMPLE_RATE), "pipe:1"] if output else ["-f", "null", "-"]
    proc = subprocess.run(argv, input=np.ascontiguousarray(pcm, dtype=np.float32).tobytes(),
                          capture_output=True, check=False)
    log = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise FFmpegError(argv, proc.returncode, log)
    if not output:
        return None, log
    out = np.frombuffer(proc.stdout, dtype=np.float32).reshape(-1, CHANNELS)
    if len(out) != len(pcm):
        raise MediaError(f"ffmpeg filter {af} returned {len(out)} samples for {len(pcm)}")
    return out.copy(), log


def measure(pcm: np.ndarray) -> Loudness:
    """EBU R128 integrated loudness and true peak."""
    if not len(pcm):
        return Loudness(-math.inf, -math.inf)
    _, log = _filter(pcm, "ebur128=peak=true:framelog=quiet", output=False)
    summary = log[log.rfind("Summary:"):]
    loud = re.search(r"I:\s+(-?[\d.]+|-inf|nan) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?[\d.]+|-inf|nan) dBFS", summary)
    if not loud or not peak:
        raise MediaError("ffmpeg's ebur128 meter printed no summary")

    def value(text: str) -> float:
        x = float(text)
        return -math.inf if math.isnan(x) or x < -70 else x  # below the absolute gate: silence

    return Loudness(value(loud.group(1)), value(peak.group(1)))


def normalise(pcm: np.ndarray, target: float, ceiling: float = TRUE_PEAK_CEILING) -> tuple[np.ndarray, LoudnessResult]:
    """Bring the track to `target` LUFS by one gain; limit only the peaks that gain pushes over `ceiling`."""
    check_target(target)
    before = measure(pcm)
    if not math.isfinite(before.integrated):  # silence stays silence
        return pcm, LoudnessResult(target, before, before, 0.0, False)
    gain_db = target - before.integrated
    out = pcm * np.float32(10 ** (gain_db / 20))
    limited = False
    # Limiting a peak takes a little loudness away: gain again and limit again, a few rounds at most.
    # alimiter limits sample peaks: it aims below the ceiling by a margin for the peaks between samples.
    margin = 0.5
    for round_ in range(LIMIT_ROUNDS):
        if measure(out).true_peak <= ceiling:
            break
        limited = True
        limit = 10 ** ((ceiling - margin) / 20)
        limited_pcm, _ = _filter(out, f"alimiter=limit={limit:.6f}:level=false:latency=true:attack=5:release=50",
                                 output=True)
        assert limited_pcm is not None
        out = limited_pcm
        now = measure(out)
        if now.true_peak > ceiling:  # overs between samples: limit lower next round
            margin += now.true_peak - ceiling + 0.1
            continue
        short = target - now.integrated
        if short <= 0.2 or round_ == LIMIT_ROUNDS - 1:
            break
        out *= np.float32(10 ** (short / 20))
        gain_db += short
    over = measure(out).true_peak - ceiling
    if over > 0:  # never deliver over the ceiling: give up loudness instead
        out *= np.float32(10 ** (-over / 20))
        gain_db -= over
    return out, LoudnessResult(target, before, measure(out), gain_db, limited)

"""Last-frame extraction: `storyfilm.media.probe.last_frame` against decoding the whole clip.

    python -m benchmarks.lastframe [--repeat 5]

Clips of 5, 15 and 60 s at 720p with sound (ffmpeg's testsrc2, which moves in every frame), encoded twice:
with storyfilm's house settings (x264 veryfast, a keyframe every 48 frames) and with x264's default keyframe
interval (250 frames, plus scene cuts), as another encoder might deliver them. All methods run in this process,
interleaved, and must return the same picture.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from benchmarks.common import Section, log, median, repeat_main, table
from storyfilm.media import ffmpeg, probe
from storyfilm.media.ffmpeg import VideoFormat

FMT = VideoFormat(1280, 720, 24)
LENGTHS = (5, 15, 60)


def make_clip(path: Path, seconds: int, fmt: VideoFormat, gop: int | None) -> Path:
    video = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    video += (["-qp", str(ffmpeg.VIDEO_QP), "-g", str(gop)] if gop else [])
    ffmpeg.run(["-y", "-f", "lavfi", "-i", f"testsrc2=size={fmt.width}x{fmt.height}:rate={fmt.fps}:duration={seconds}",
                "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                *video, *ffmpeg.aac_args(), "-shortest", str(path)])
    return path


def decode_all(path: Path) -> np.ndarray:
    """The naive way: decode every frame, keep the last."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        last = None
        for frame in c.decode(vs):
            last = frame
        assert last is not None
        return last.to_ndarray(format="rgb24")


def seek_end_minus_one_second(path: Path) -> np.ndarray:
    """storyfilm's method before this benchmark: seek to the keyframe before (video end - 1 s), decode to the end."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        assert vs.duration is not None and vs.time_base is not None
        end = float(((vs.start_time or 0) + vs.duration) * vs.time_base)
        c.seek(int(max(0.0, end - 1.0) / vs.time_base), stream=vs, backward=True, any_frame=False)
        last = None
        for frame in c.decode(vs):
            last = frame
        assert last is not None
        return last.to_ndarray(format="rgb24")


METHODS: dict[str, Callable[[Path], np.ndarray]] = {
    "probe.last_frame": probe.last_frame,
    "seek to end - 1 s (before)": seek_end_minus_one_second,
    "decode the whole clip": decode_all,
}


ENCODINGS: tuple[tuple[int | None, str], ...] = ((ffmpeg.GOP, f"house (GOP {ffmpeg.GOP})"),
                                                  (None, "x264 default GOP (250)"))


def run(repeat: int, lengths: tuple[int, ...] = LENGTHS, fmt: VideoFormat = FMT) -> list[Section]:
    section = Section(f"Last-frame extraction, {', '.join(map(str, lengths))} s clips at {fmt.width}x{fmt.height}")
    rows, ratios = [], []
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-lastframe-") as tmp:
        clips: dict[tuple[str, int], Path] = {}
        truth: dict[Path, np.ndarray] = {}
        for gop, label in ENCODINGS:
            for seconds in lengths:
                log(f"last frame: making a {seconds} s clip, {label}")
                clip = make_clip(Path(tmp) / f"{seconds}-{gop}.mp4", seconds, fmt, gop)
                clips[(label, seconds)], truth[clip] = clip, decode_all(clip)
        # every clip and method once per round, so changes in the machine's load hit them all alike
        times: dict[tuple[str, str, int], list[float]] = {}
        for r in range(repeat):
            log(f"last frame: round {r + 1} of {repeat}")
            for (label, seconds), clip in clips.items():
                for name, method in METHODS.items():
                    t = time.perf_counter()
                    got = method(clip)
                    times.setdefault((label, name, seconds), []).append(time.perf_counter() - t)
                    assert np.array_equal(got, truth[clip]), f"{name} returned another frame of {clip.name}"
        for (label, seconds), clip in clips.items():
            keys = probe.keyframe_indices(clip)
            frames = probe.probe(clip).video.frames  # type: ignore[union-attr]
            rows.append((label, f"{seconds} s ({frames} frames, last keyframe {keys[-1]})",
                         *(f"{median(times[(label, name, seconds)]) * 1000:.0f}" for name in METHODS),
                         f"{frames - keys[-1]}"))
        first, longest = lengths[0], lengths[-1]
        for _, label in ENCODINGS:
            for name in METHODS:
                ratio = median(times[(label, name, longest)]) / median(times[(label, name, first)])
                ratios.append(f"- {label}, {name}: {longest} s clip / {first} s clip = {ratio:.2f}x")
                if name == "probe.last_frame":
                    section.check(f"last frame of a {longest} s clip within 1.5x of a {first} s clip ({label})",
                                  f"{ratio:.2f}x", ratio <= 1.5)
    section.add(*table(("encoding", "clip", *(f"{m}, ms" for m in METHODS), "frames decoded by probe.last_frame"),
                       rows), "", f"Medians of {repeat} rounds in one process; each round runs every method on every "
                                  "clip, and every method returned the same picture. Cost of the longest clip "
                                  "relative to the shortest:", "", *ratios)
    return [section]


if __name__ == "__main__":
    repeat_main(run, __doc__ or "", 5)

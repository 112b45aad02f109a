"""The house format: what a segment must be to join a film by stream copy (the format itself is
`ffmpeg.VideoFormat`; our own encoder's settings are `ffmpeg.x264_args`).

Checked twice: on arrival of a host's output (generate.py re-encodes it once if it does not match) and
before assembly (assemble.py normalises what still does not).
"""

from __future__ import annotations

import functools
import tempfile
from fractions import Fraction
from pathlib import Path

from storyfilm.media import ffmpeg, probe
from storyfilm.media.ffmpeg import VideoFormat
from storyfilm.media.probe import MediaInfo


def house_differences(info: MediaInfo, fmt: VideoFormat) -> list[str]:
    """Why a segment cannot be stream-copied into a film of format `fmt` (empty: it can)."""
    v = info.video
    if v is None:
        return ["no video stream"]
    diffs = []
    if v.codec != "h264":
        diffs.append(f"codec {v.codec} (film: h264)")
    if (v.width, v.height) != (fmt.width, fmt.height):
        diffs.append(f"size {v.width}x{v.height} (film: {fmt.width}x{fmt.height})")
    if v.pix_fmt != "yuv420p":
        diffs.append(f"pixel format {v.pix_fmt} (film: yuv420p)")
    if v.fps != fmt.fps:
        diffs.append(f"{float(v.fps):g} fps (film: {fmt.fps})")
    if v.time_base != Fraction(1, fmt.timescale):
        diffs.append(f"timescale {v.time_base} (film: 1/{fmt.timescale})")
    if v.sar != 1:
        diffs.append(f"sample aspect ratio {v.sar} (film: 1)")
    return diffs


@functools.cache
def house_parameter_sets(fmt: VideoFormat) -> str:
    """The H.264 parameter sets (hash) of our own encodes at `fmt`: what every copied segment must have."""
    with tempfile.TemporaryDirectory(prefix="storyfilm-house-") as tmp:
        src, dst = Path(tmp) / "black.mp4", Path(tmp) / "house.mp4"
        ffmpeg.run(["-y", "-f", "lavfi", "-i", f"color=black:size={fmt.width}x{fmt.height}:rate={fmt.fps}:d=0.1",
                    "-c:v", "libx264", "-preset", "ultrafast", str(src)])
        ffmpeg.run(ffmpeg.normalize_args(src, dst, fmt))
        made = probe.probe(dst).video
        assert made is not None  # normalize_args maps the video stream
        return made.extradata_sha


def copy_blockers(info: MediaInfo, fmt: VideoFormat) -> list[str]:
    """Why a segment must be re-encoded before it can join a film of format `fmt` by stream copy (empty: it
    need not): its format, or H.264 parameter sets (SPS/PPS) other than our encoder's, of which a film
    may have only one set."""
    diffs = house_differences(info, fmt)
    if not diffs and info.video is not None and info.video.extradata_sha != house_parameter_sets(fmt):
        diffs.append("H.264 parameter sets of another encoder")
    return diffs

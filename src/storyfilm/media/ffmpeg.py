"""ffmpeg: the binary, one runner that raises FFmpegError, and pure argv builders.

The binary is the one shipped by the imageio-ffmpeg wheel (no system ffmpeg is assumed);
`FFMPEG_BINARY` overrides it.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from storyfilm.errors import FFmpegError

# 48 kHz stereo AAC everywhere: 2000 samples per frame at 24 fps, so audio and video cut on the same instants.
SAMPLE_RATE = 48_000
CHANNELS = 2
AUDIO_BITRATE = "192k"
# Constant QP (not CRF): an intra frame then depends only on its own pixels, so two encodes of the same
# picture decode identically. That is what makes a chained shot's first frame pixel-identical to the
# last frame of the shot it continues.
VIDEO_QP = 20
X264_PRESET = "veryfast"
GOP = 48


@functools.cache
def ffmpeg_exe() -> str:
    override = os.environ.get("FFMPEG_BINARY")
    if override:
        return override
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def run(argv: Sequence[str], *, timeout: float | None = None) -> None:
    """Run ffmpeg (argv without the binary); raise FFmpegError with the stderr tail on failure."""
    full = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *argv]
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise FFmpegError(full, 127, f"ffmpeg binary not found: {full[0]} ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise FFmpegError(full, -1, f"timed out after {timeout} s") from exc
    if proc.returncode != 0:
        raise FFmpegError(full, proc.returncode, proc.stderr)


def start_encoder(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ffmpeg reading raw frames on stdin; finish with `finish_encoder`."""
    full = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *argv]
    return subprocess.Popen(full, stdin=subprocess.PIPE, stderr=subprocess.PIPE)


def finish_encoder(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.wait() != 0:
        args = proc.args if isinstance(proc.args, list | tuple) else [proc.args]
        raise FFmpegError([str(a) for a in args], proc.returncode, stderr)


@dataclass(frozen=True)
class VideoFormat:
    """The house format every segment of a film is made to match."""

    width: int
    height: int
    fps: int = 24

    @property
    def timescale(self) -> int:
        return self.fps * 512


def keyframe_expr(frames: Sequence[int]) -> str:
    return "expr:" + "+".join(f"eq(n,{n})" for n in sorted(set(frames))) if frames else "expr:0"


def x264_args(fmt: VideoFormat, keyframes: Sequence[int] = ()) -> list[str]:
    """Video encoder settings shared by the renderer and the normaliser, so their outputs join by copy."""
    return [
        "-c:v", "libx264", "-preset", X264_PRESET, "-qp", str(VIDEO_QP),
        "-profile:v", "high", "-pix_fmt", "yuv420p", "-g", str(GOP),
        "-force_key_frames", keyframe_expr(keyframes),
        # Explicit colour signalling: the parameter sets (SPS) then do not depend on what the input was
        # tagged with, so every house encode can be joined by stream copy.
        "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv",
        "-video_track_timescale", str(fmt.timescale),
    ]


def aac_args() -> list[str]:
    return ["-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", str(SAMPLE_RATE), "-ac", str(CHANNELS)]


HOUSE_PIXELS = "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,setsar=1"


def raw_video_input_args(fmt: VideoFormat) -> list[str]:
    return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{fmt.width}x{fmt.height}",
            "-r", str(fmt.fps), "-i", "pipe:0"]


def fit_filter(fmt: VideoFormat) -> str:
    """Scale into the frame keeping the aspect ratio, pad the rest black, square pixels, house pix_fmt."""
    w, h = fmt.width, fmt.height
    return (f"fps={fmt.fps},scale={w}:{h}:force_original_aspect_ratio=decrease:flags=bicubic,"
            f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,{HOUSE_PIXELS}")


def normalize_args(src: Path, dst: Path, fmt: VideoFormat, *, start_frame: int = 0,
                   frames: int | None = None) -> list[str]:
    """Re-encode one segment's video into the house format, keeping frames [start_frame, start_frame+frames)."""
    vf = f"trim=start_frame={start_frame}" + (f":end_frame={start_frame + frames}" if frames else "")
    vf += f",setpts=PTS-STARTPTS,{fit_filter(fmt)}"
    return ["-y", "-i", str(src), "-map", "0:v:0", "-vf", vf, "-an", *x264_args(fmt, [0]),
            "-movflags", "+faststart", str(dst)]


def cut_args(src: Path, dst: Path, fmt: VideoFormat, start_frame: int, fps: float | Fraction) -> list[str]:
    """Re-encode a segment from frame `start_frame` on (video and audio), frame-accurately, in the house format.

    Frame-accurate cuts need a re-encode: a stream-copied cut starts at a keyframe or hides a pre-roll
    behind an edit list that the concat step then leaks.
    """
    vf = f"trim=start_frame={start_frame},setpts=PTS-STARTPTS,{fit_filter(fmt)}"
    af = f"atrim=start={start_frame / float(fps):.6f},asetpts=PTS-STARTPTS"
    return ["-y", "-i", str(src), "-map", "0:v:0", "-map", "0:a:0?", "-vf", vf, "-af", af,
            *x264_args(fmt, [0]), *aac_args(), "-movflags", "+faststart", str(dst)]

"""Segments -> film: normalise what does not match, join the video by stream copy, encode the audio once.

The join is a PyAV remux rather than ffmpeg's concat demuxer: the demuxer offsets every file by its AAC
priming (21 ms of A/V skew at the start), while a remux places each packet at exactly the frame it
belongs to. The film's audio is built as one PCM track (each segment's audio cut to exactly its video
length, silence where a segment has none) and encoded once: concatenated AAC clicks and drifts.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from storyfilm.errors import IncompatibleSegments, MediaError
from storyfilm.media import ffmpeg, probe
from storyfilm.media.ffmpeg import AUDIO_BITRATE, CHANNELS, SAMPLE_RATE, VideoFormat
from storyfilm.media.probe import MediaInfo


@dataclass(frozen=True)
class Piece:
    """One segment's part of the film: frames [start_frame, start_frame + frames) of `path`."""

    path: Path
    start_frame: int = 0  # frames before this repeat footage already in the film (extend echo, seam copy)
    frames: int | None = None  # None: everything after start_frame
    label: str = ""


@dataclass(frozen=True)
class FilmInfo:
    path: Path
    frames: int
    fps: int
    width: int
    height: int
    normalised: list[str] = field(default_factory=list)  # labels of the segments that were re-encoded

    @property
    def duration(self) -> float:
        return self.frames / self.fps


@dataclass(frozen=True)
class _Ready:
    piece: Piece
    path: Path  # house-format file to copy from
    start_frame: int  # in `path`'s frames
    frames: int
    audio_from: Path  # where the audio comes from (the original segment)
    audio_start: float  # seconds into audio_from


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
        return probe.probe(dst).video.extradata_sha  # type: ignore[union-attr]


def _plan_pieces(pieces: Sequence[Piece], fmt: VideoFormat) -> list[tuple[Piece, MediaInfo, list[str]]]:
    infos = []
    for piece in pieces:
        info = probe.probe(piece.path)
        if info.video is None:
            raise IncompatibleSegments(piece.path, ["no video stream"])
        available = info.video.frames - piece.start_frame
        want = piece.frames if piece.frames is not None else available
        if piece.start_frame < 0 or want <= 0 or want > available:
            raise IncompatibleSegments(piece.path, [f"wants frames {piece.start_frame}..{piece.start_frame + want}"
                                                    f" but the file has {info.video.frames}"])
        diffs = house_differences(info, fmt)
        if not diffs and piece.start_frame and piece.start_frame not in probe.keyframe_indices(piece.path):
            diffs.append(f"no keyframe at frame {piece.start_frame} (cannot cut by copy)")
        infos.append((piece, info, diffs))
    # Stream copy needs one set of parameter sets (SPS/PPS) in the whole film: our encoder's.
    reference = house_parameter_sets(fmt)
    for _, info, diffs in infos:
        if not diffs and info.video and info.video.extradata_sha != reference:
            diffs.append("H.264 parameter sets of another encoder")
    return infos


def assemble(pieces: Sequence[Piece], fmt: VideoFormat, out: Path, work_dir: Path,
             on_progress: Callable[[str], None] | None = None) -> FilmInfo:
    """Join the pieces into `out` (written atomically: the old film stays until the new one is complete)."""
    if not pieces:
        raise MediaError("nothing to assemble: no segments")
    work_dir.mkdir(parents=True, exist_ok=True)
    infos = _plan_pieces(pieces, fmt)
    ready: list[_Ready] = []
    normalised: list[str] = []
    for i, (piece, info, diffs) in enumerate(infos):
        assert info.video is not None
        src_fps = info.video.fps
        want = piece.frames if piece.frames is not None else info.video.frames - piece.start_frame
        if diffs:
            if on_progress:
                on_progress(f"normalising {piece.label or piece.path.name}: {'; '.join(diffs)}")
            dst = work_dir / f"norm-{i:04d}.mp4"
            ffmpeg.run(ffmpeg.normalize_args(piece.path, dst, fmt, start_frame=piece.start_frame, frames=want))
            frames = probe.probe(dst).video.frames  # type: ignore[union-attr]
            ready.append(_Ready(piece, dst, 0, frames, piece.path, float(piece.start_frame / src_fps)))
            normalised.append(piece.label or piece.path.name)
        else:
            ready.append(_Ready(piece, piece.path, piece.start_frame, want, piece.path,
                                float(piece.start_frame / src_fps)))
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        total = _write(ready, fmt, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return FilmInfo(path=out, frames=total, fps=fmt.fps, width=fmt.width, height=fmt.height,
                    normalised=normalised)


def segment_audio(path: Path, start: float, frames: int, fps: int) -> np.ndarray:
    """Exactly `frames` video frames' worth of the segment's audio from `start` s; silence where it has none."""
    n = frames * SAMPLE_RATE // fps
    out = np.zeros((n, CHANNELS), dtype=np.float32)
    audio = probe.read_audio(path)
    if audio is not None:
        first = round(start * SAMPLE_RATE)
        chunk = audio[first:first + n]
        out[: len(chunk)] = chunk
    return out


def _write(ready: Sequence[_Ready], fmt: VideoFormat, dst: Path) -> int:
    ticks = fmt.timescale // fmt.fps  # per frame
    with av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}) as film:
        with av.open(str(ready[0].path)) as first:
            vout = film.add_stream_from_template(first.streams.video[0])
        vout.time_base = Fraction(1, fmt.timescale)
        aout = film.add_stream("aac", rate=SAMPLE_RATE, layout="stereo" if CHANNELS == 2 else "mono")
        aout.bit_rate = int(AUDIO_BITRATE.rstrip("k")) * 1000
        offset = 0  # film frames written so far
        sample = 0
        for r in ready:
            with av.open(str(r.path)) as src:
                vs = src.streams.video[0]
                src_ticks = Fraction(1, fmt.fps) / vs.time_base
                first_pts = vs.start_time or 0
                base = first_pts + r.start_frame * src_ticks
                copied = 0
                for packet in src.demux(vs):
                    if packet.pts is None or packet.dts is None or not packet.size:
                        continue
                    index = round((packet.pts - first_pts) / src_ticks)
                    if not r.start_frame <= index < r.start_frame + r.frames:
                        continue
                    packet.pts = round((packet.pts - base) / src_ticks * ticks) + offset * ticks
                    packet.dts = round((packet.dts - base) / src_ticks * ticks) + offset * ticks
                    packet.time_base = vout.time_base
                    packet.stream = vout
                    film.mux(packet)
                    copied += 1
            if copied != r.frames:
                raise MediaError(f"{r.piece.path}: copied {copied} frames, expected {r.frames}")
            pcm = segment_audio(r.audio_from, r.audio_start, r.frames, fmt.fps)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T), format="fltp",
                                               layout="stereo" if CHANNELS == 2 else "mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = sample
            sample += pcm.shape[0]
            for packet in aout.encode(frame):
                film.mux(packet)
            offset += r.frames
        for packet in aout.encode(None):
            film.mux(packet)
    return offset


"""Probing and frame access with PyAV (in-process; the imageio-ffmpeg wheel ships no ffprobe)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from storyfilm.errors import ProbeError
from storyfilm.media.ffmpeg import CHANNELS, SAMPLE_RATE
from storyfilm.media.rgb import to_rgb


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    profile: str | None
    width: int
    height: int
    pix_fmt: str | None
    fps: Fraction
    time_base: Fraction
    frames: int
    sar: Fraction
    extradata_sha: str

    @property
    def duration(self) -> float:
        return float(self.frames / self.fps) if self.fps else 0.0


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int
    duration: float


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    video: VideoInfo | None
    audio: AudioInfo | None
    duration: float


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ProbeError(f"{path}: not a readable media file ({exc})") from exc


def _count_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    return sum(1 for p in container.demux(stream) if p.size)


def probe(path: Path) -> MediaInfo:
    """Streams, sizes, rates and frame counts of a media file (milliseconds, no decoding)."""
    path = Path(path)
    try:
        with _open(path) as c:
            return _describe(c, path)
    except av.error.FFmpegError as exc:  # a damaged file can fail while demuxing, after it opened
        raise ProbeError(f"{path}: not a readable media file ({exc})") from None


def probe_keyframes(path: Path) -> tuple[MediaInfo, list[int]]:
    """probe() and keyframe_indices() from one opening of the file (an assembly does both for every segment)."""
    path = Path(path)
    try:
        with _open(path) as c:
            info = _describe(c, path)
            if not c.streams.video:
                return info, []
            vs = c.streams.video[0]
            if not vs.frames:  # _describe counted the packets: read them again
                c.seek(0, stream=vs)
            return info, _keyframes(c)
    except av.error.FFmpegError as exc:
        raise ProbeError(f"{path}: not a readable media file ({exc})") from None


def _describe(c: av.container.InputContainer, path: Path) -> MediaInfo:
    video = audio = None
    if c.streams.video:
        vs = c.streams.video[0]
        cc = vs.codec_context
        fps = vs.average_rate or vs.guessed_rate or Fraction(0)
        frames = vs.frames or _count_packets(c, vs)
        sar = cc.sample_aspect_ratio or Fraction(1)
        video = VideoInfo(
            codec=cc.name, profile=cc.profile, width=cc.width, height=cc.height,
            pix_fmt=cc.pix_fmt, fps=Fraction(fps), time_base=Fraction(vs.time_base or 0),
            frames=int(frames), sar=Fraction(sar),
            extradata_sha=hashlib.sha256(cc.extradata or b"").hexdigest()[:16],
        )
    if c.streams.audio:
        ast = c.streams.audio[0]
        dur = float(ast.duration * ast.time_base) if ast.duration and ast.time_base else 0.0
        audio = AudioInfo(codec=ast.codec_context.name, sample_rate=ast.codec_context.sample_rate,
                          channels=ast.codec_context.channels, duration=dur)
    duration = float(c.duration / av.time_base) if c.duration else 0.0
    if video is None and audio is None:
        raise ProbeError(f"{path}: no video or audio stream")
    return MediaInfo(path=path, video=video, audio=audio, duration=duration)


def _video_end_seconds(vs: av.video.stream.VideoStream, container: av.container.InputContainer) -> float:
    if vs.duration and vs.time_base:
        return float((vs.start_time or 0) * vs.time_base + vs.duration * vs.time_base)
    return float(container.duration / av.time_base) if container.duration else 0.0


def last_frame(path: Path) -> np.ndarray:
    """The exact last video frame as RGB, decoding only from the last keyframe (at most one GOP).

    The seek is relative to the video stream's own end, not the container's: audio that runs past the
    video must not make us seek beyond the last frame. It aims half a frame before that end, so the cost
    does not grow with the clip's length, and a keyframe on the last frame itself (our renders put one
    there) means a single frame is decoded.
    """
    with _open(path) as c:
        if not c.streams.video:
            raise ProbeError(f"{path}: no video stream")
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        end = _video_end_seconds(vs, c)
        rate = vs.average_rate or vs.guessed_rate
        target = max(0.0, end - (0.5 / float(rate) if rate else 1.0))
        if target > 0 and vs.time_base:
            c.seek(int(target / vs.time_base), stream=vs, backward=True, any_frame=False)
        last = None
        for frame in c.decode(vs):
            last = frame
        if last is None:  # the seek overshot (broken index): decode from the start
            c.seek(0, stream=vs)
            for frame in c.decode(vs):
                last = frame
        if last is None:
            raise ProbeError(f"{path}: no decodable video frame")
        return last.to_ndarray(format="rgb24")


def decode_all(path: Path) -> tuple[MediaInfo, np.ndarray]:
    """Probe and decode every video frame: (info, the last frame as RGB).

    For media from elsewhere (a host's output) before it is kept: a truncated or damaged video raises
    ProbeError here instead of breaking the assembly later.
    """
    info = probe(path)
    if info.video is None:
        raise ProbeError(f"{path}: no video stream")
    decoded, last = 0, None
    try:
        with _open(path) as c:
            vs = c.streams.video[0]
            vs.thread_type = "AUTO"
            for frame in c.decode(vs):
                decoded, last = decoded + 1, frame
            rgb = to_rgb(last) if last is not None else None
    except av.error.FFmpegError as exc:
        raise ProbeError(f"{path}: the video does not decode ({exc})") from None
    if rgb is None or decoded < info.video.frames:
        raise ProbeError(f"{path}: only {decoded} of its {info.video.frames} video frames decode")
    return info, rgb


def read_frames(path: Path, indices: list[int] | None = None) -> list[np.ndarray]:
    """Decode frames (all, or the given indices in display order) as RGB arrays."""
    wanted = None if indices is None else set(indices)
    out: dict[int, np.ndarray] = {}
    frames: list[np.ndarray] = []
    with _open(path) as c:
        vs = c.streams.video[0]
        for i, frame in enumerate(c.decode(vs)):
            if wanted is None:
                frames.append(frame.to_ndarray(format="rgb24"))
            elif i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
                if len(out) == len(wanted):
                    break
    return frames if wanted is None else [out[i] for i in indices or [] if i in out]


def frames_from(container: av.container.InputContainer, first: int, fps: int) -> Iterator[tuple[int, av.VideoFrame]]:
    """(index, frame) of the video from frame `first` on, decoding from the keyframe before it.

    Indices come from timestamps, so the file must have constant frame timing (our own encodes do).
    """
    vs = container.streams.video[0]
    assert vs.time_base is not None  # MP4 streams always have one
    ticks = Fraction(1, fps) / vs.time_base
    start_pts = vs.start_time or 0
    container.seek(int(start_pts + max(first, 0) * ticks), stream=vs, backward=True)
    for frame in container.decode(vs):
        if frame.pts is None:  # cannot be placed; our own encodes stamp every frame
            continue
        index = round((frame.pts - start_pts) / ticks)
        if index >= first:
            yield index, frame


def first_frame(path: Path) -> np.ndarray:
    return read_frames(path, [0])[0]


def keyframe_indices(path: Path) -> list[int]:
    """Display-order indices of the keyframes (demux only, no decoding)."""
    with _open(path) as c:
        return _keyframes(c)


def _keyframes(c: av.container.InputContainer) -> list[int]:
    pts = sorted((p.pts, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.pts is not None and p.size)
    return [i for i, (_, key) in enumerate(pts) if key]


def read_audio(path: Path, *, sample_rate: int = SAMPLE_RATE, channels: int = CHANNELS) -> np.ndarray | None:
    """All audio, resampled to float32 (samples, channels); None when the file has no audio stream."""
    with _open(path) as c:
        if not c.streams.audio:
            return None
        layout = "stereo" if channels == 2 else "mono"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
        chunks: list[np.ndarray] = []
        for frame in c.decode(c.streams.audio[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks:
        return np.zeros((0, channels), dtype=np.float32)
    return np.concatenate(chunks, axis=1).T.astype(np.float32, copy=False)


def save_png(rgb: np.ndarray, path: Path) -> Path:
    Image.fromarray(rgb).save(path, format="PNG")
    return path

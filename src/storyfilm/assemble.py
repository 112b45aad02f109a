"""Segments -> film: normalise what does not match, copy the video wherever possible, encode the audio once.

The join is a PyAV remux rather than ffmpeg's concat demuxer: the demuxer offsets every file by its AAC
priming (21 ms of A/V skew at the start), while a remux places each packet at exactly the frame it
belongs to. Segments that do not match the house format (size, rate, encoder settings) are re-encoded
once, trimmed frame-accurately. Frames that cannot be copied (a crossfade or fade, and the few frames
between a transition or a mid-GOP cut and the nearest keyframe) are decoded, composed and encoded with
the house encoder into short chunks whose packets are copied in like any segment's: a film without
transitions is pure stream copy, and one with transitions re-encodes only around them.

The film's audio is one PCM track (see `audio.py`) encoded once: concatenated AAC clicks and drifts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from storyfilm import audio
from storyfilm.audio import AudioPart
from storyfilm.errors import IncompatibleSegments, MediaError
from storyfilm.media import aac, ffmpeg, probe
from storyfilm.media.ffmpeg import SAMPLE_RATE, VideoFormat
from storyfilm.media.house import copy_blockers, house_parameter_sets
from storyfilm.media.probe import MediaInfo
from storyfilm.results import FilmInfo, Placement
from storyfilm.transitions import CUT, Crossfade, Fade, Join, Overlap

Progress = Callable[[str], None]
MAX_WORKERS = 8  # threads for a join: more cores would shorten the sound's chunks below their pre-roll


@dataclass(frozen=True)
class Piece:
    """One segment's part of the film: frames [start_frame, start_frame + frames) of `path`."""

    path: Path
    start_frame: int = 0  # frames before this repeat footage already in the film (extend echo, seam copy)
    frames: int | None = None  # None: everything after start_frame (in the segment's own frame rate)
    label: str = ""
    join: Join = CUT  # how it joins the piece before it


@dataclass(frozen=True)
class _Ready:
    piece: Piece
    path: Path  # house-format file the frames come from
    start: int  # first frame in `path`
    frames: int
    file_frames: int
    keyframes: frozenset[int]
    info: MediaInfo  # of the original segment
    audio_from: Path  # where the audio comes from (the original segment)
    audio_start: float  # seconds into audio_from
    overlap: int  # film frames shared with the piece before (its join's)


def _plan_pieces(pieces: Sequence[Piece], fmt: VideoFormat,
                 pool: Executor) -> list[tuple[Piece, MediaInfo, list[int], list[str]]]:
    house = pool.submit(house_parameter_sets, fmt)  # two short ffmpeg runs, beside the probes
    scans = list(pool.map(probe.probe_keyframes, [piece.path for piece in pieces]))
    house.result()
    infos = []
    for i, (piece, (info, keyframes)) in enumerate(zip(pieces, scans, strict=True)):
        if info.video is None:
            raise IncompatibleSegments(piece.path, ["no video stream"])
        available = info.video.frames - piece.start_frame
        want = piece.frames if piece.frames is not None else available
        if piece.start_frame < 0 or want <= 0 or want > available:
            raise IncompatibleSegments(piece.path, [f"wants frames {piece.start_frame}..{piece.start_frame + want}"
                                                    f" but the file has {info.video.frames}"])
        if i == 0 and piece.join.frames(fmt.fps):
            raise MediaError(f"{piece.label or piece.path}: a {piece.join} needs a previous piece to join")
        infos.append((piece, info, keyframes, copy_blockers(info, fmt)))
    return infos


def _prepare(pieces: Sequence[Piece], fmt: VideoFormat, work_dir: Path, on_progress: Progress | None,
             pool: Executor) -> tuple[list[_Ready], list[str]]:
    ready: list[_Ready] = []
    normalised: list[str] = []
    for i, (piece, info, keyframes, diffs) in enumerate(_plan_pieces(pieces, fmt, pool)):
        assert info.video is not None
        want = piece.frames if piece.frames is not None else info.video.frames - piece.start_frame
        audio_start = float(piece.start_frame / info.video.fps)
        overlap = piece.join.frames(fmt.fps)
        if diffs:
            if on_progress:
                on_progress(f"normalising {piece.label or piece.path.name}: {'; '.join(diffs)}")
            dst = work_dir / f"norm-{i:04d}.mp4"
            ffmpeg.run(ffmpeg.normalize_args(piece.path, dst, fmt, start_frame=piece.start_frame, frames=want))
            made, made_keyframes = probe.probe_keyframes(dst)
            assert made.video is not None  # normalize_args maps the video stream
            frames = made.video.frames
            ready.append(_Ready(piece, dst, 0, frames, frames, frozenset(made_keyframes), info,
                                piece.path, audio_start, overlap))
            normalised.append(piece.label or piece.path.name)
        else:
            ready.append(_Ready(piece, piece.path, piece.start_frame, want, info.video.frames,
                                frozenset(keyframes), info, piece.path, audio_start, overlap))
    for i, r in enumerate(ready):
        after = ready[i + 1].overlap if i + 1 < len(ready) else 0
        if r.overlap + after > r.frames:
            raise IncompatibleSegments(r.piece.path, [f"transitions overlap {r.overlap} + {after} frames of "
                                                      f"a piece that has only {r.frames}"])
    return ready, normalised


# --- which frames are copied, which are composed and encoded ------------------------------------


@dataclass(frozen=True)
class _Copy:
    ready: int  # index into the ready list
    start: int  # frame in the ready file
    frames: int


@dataclass(frozen=True)
class _Span:
    """Film frames to encode: frames [start, start+frames) of one ready file, or blended with a second."""

    ready: int
    start: int
    frames: int
    blend: tuple[int, int, Overlap] | None = None  # (incoming ready index, its start frame, the transition)


@dataclass(frozen=True)
class _Encode:
    spans: tuple[_Span, ...]

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.spans)


def _runs(ready: Sequence[_Ready]) -> list[_Copy | _Encode]:
    """The film as copied runs (whole GOPs) and encoded chunks, in order."""
    runs: list[_Copy | _Encode] = []
    pending: list[_Span] = []

    def flush() -> None:
        if pending:
            runs.append(_Encode(tuple(pending)))
            pending.clear()

    for i, r in enumerate(ready):
        d_in = r.overlap
        d_out = ready[i + 1].overlap if i + 1 < len(ready) else 0
        if isinstance(r.piece.join, Crossfade | Fade):
            prev = ready[i - 1]
            pending.append(_Span(i - 1, prev.start + prev.frames - d_in, d_in, (i, r.start, r.piece.join)))
        lo, hi = r.start + d_in, r.start + r.frames - d_out  # frames shown on their own
        # Copy from a keyframe up to a clean end: the file's end, or just before a keyframe (closed GOPs:
        # nothing before a keyframe refers to anything after it).
        a = min((k for k in r.keyframes if lo <= k < hi), default=None)
        b = max((e for e in (*r.keyframes, r.file_frames) if a is not None and a < e <= hi), default=None)
        if a is None or b is None:
            if hi > lo:
                pending.append(_Span(i, lo, hi - lo))
            continue
        if a > lo:
            pending.append(_Span(i, lo, a - lo))
        flush()
        runs.append(_Copy(i, a, b - a))
        if hi > b:
            pending.append(_Span(i, b, hi - b))
    flush()
    return runs


def _yuv_frames(path: Path, start: int, count: int, fps: int) -> Iterator[np.ndarray]:
    """Frames [start, start+count) of a house file as planar yuv420p arrays, decoding from the keyframe before."""
    got = 0
    with av.open(str(path)) as src:
        src.streams.video[0].thread_type = "AUTO"
        for _, frame in probe.frames_from(src, start, fps):
            yield frame.to_ndarray(format="yuv420p")
            got += 1
            if got == count:
                return
    raise MediaError(f"{path}: decoded {got} of frames {start}..{start + count}")


def _black(fmt: VideoFormat) -> np.ndarray:
    out = np.full((fmt.height * 3 // 2, fmt.width), 128, dtype=np.uint8)
    out[:fmt.height] = 16  # limited-range black
    return out


# Decoded house frames are already BT.709 limited range: said on the input, ffmpeg leaves them alone (untagged,
# it "converts" them to the BT.709 the encoder signals, shifting luma by 2 levels). Primaries and transfer are
# left out on purpose: given on the input they change the parameter sets, and the chunk could not be copied.
_HOUSE_YUV = ["-colorspace", "bt709", "-color_range", "tv"]


def _encode_chunk(run: _Encode, ready: Sequence[_Ready], fmt: VideoFormat, dst: Path) -> None:
    black = _black(fmt)
    argv = ["-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", *_HOUSE_YUV, "-s", f"{fmt.width}x{fmt.height}",
            "-r", str(fmt.fps), "-i", "pipe:0", "-vf", "setsar=1", *ffmpeg.x264_args(fmt, [0]), "-an",
            "-movflags", "+faststart", str(dst)]
    proc = ffmpeg.start_encoder(argv)
    assert proc.stdin is not None
    try:
        for span in run.spans:
            frames = _yuv_frames(ready[span.ready].path, span.start, span.frames, fmt.fps)
            if span.blend is None:
                for f in frames:
                    proc.stdin.write(f.tobytes())
                continue
            incoming, start, kind = span.blend
            others = _yuv_frames(ready[incoming].path, start, span.frames, fmt.fps)
            for j, (a, b) in enumerate(zip(frames, others, strict=True)):
                proc.stdin.write(kind.picture(a, b, (j + 1) / (span.frames + 1), black).tobytes())
    except BrokenPipeError:
        pass  # ffmpeg died: finish_encoder raises with its stderr
    finally:
        ffmpeg.finish_encoder(proc)


# --- the join ------------------------------------------------------------------------------------


def assemble(pieces: Sequence[Piece], fmt: VideoFormat, out: Path, work_dir: Path,
             on_progress: Progress | None = None, *, loudness_lufs: float | None = None,
             seam_crossfade_frames: int = audio.SEAM_CROSSFADE_FRAMES) -> FilmInfo:
    """Join the pieces into `out` (written atomically: the old film stays until the new one is complete)."""
    started = time.monotonic()
    if not pieces:
        raise MediaError("nothing to assemble: no segments")
    if loudness_lufs is not None:
        audio.check_target(loudness_lufs)
    work_dir.mkdir(parents=True, exist_ok=True)
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    # one pool for the whole join: the segments probed and their sound decoded side by side, the film's
    # sound encoded on every core while transitions are encoded and the pictures copied
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="assemble") as pool:
        ready, normalised = _prepare(pieces, fmt, work_dir, on_progress, pool)
        placements: list[Placement] = []
        first = 0
        for r in ready:
            first -= r.overlap
            v = r.info.video
            assert v is not None
            placements.append(Placement(r.piece.label or r.piece.path.name, r.piece.path, r.piece.start_frame,
                                        v.frames, v.fps, r.info.audio is not None, first, r.frames,
                                        r.piece.join, r.overlap))
            first += r.frames
        total = first
        parts = [AudioPart(r.audio_from, r.audio_start, p.first, p.frames, p.join)
                 for r, p in zip(ready, placements, strict=True)]
        pcm = audio.film_track(parts, total, fmt.fps, seam_crossfade_frames, pool)
        loudness = None
        if loudness_lufs is not None:
            pcm, loudness = audio.normalise(pcm, loudness_lufs)
            if on_progress:
                after = loudness.after.integrated
                on_progress(f"loudness {loudness.before.integrated:.1f} -> {after:.1f} LUFS "
                            f"(target {loudness_lufs:g})")
        runs = _runs(ready)
        sources: list[tuple[Path, int, int]] = []  # (file, first frame, frames) in film order
        encoded = 0
        tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
        sound = aac.encode(pcm, pool, aac.chunk_size(len(pcm), workers))
        try:
            for k, run in enumerate(runs):
                if isinstance(run, _Copy):
                    sources.append((ready[run.ready].path, run.start, run.frames))
                    continue
                chunk = work_dir / f"join-{k:04d}.mp4"
                _encode_chunk(run, ready, fmt, chunk)
                sources.append((chunk, 0, run.frames))
                encoded += run.frames
            if on_progress and encoded:
                on_progress(f"encoded {encoded} of {total} frames (transitions, cuts off keyframes); "
                            "copied the rest")
            written = _write(sources, sound, fmt, tmp)
            if written != total:
                raise MediaError(f"wrote {written} frames, expected {total}")
            os.replace(tmp, out)
        finally:
            for part in sound.parts:
                part.cancel()
            tmp.unlink(missing_ok=True)
            for k in range(len(runs)):
                (work_dir / f"join-{k:04d}.mp4").unlink(missing_ok=True)
    return FilmInfo(path=out, frames=total, fps=fmt.fps, width=fmt.width, height=fmt.height, normalised=normalised,
                    placements=placements, copied_frames=total - encoded, encoded_frames=encoded, loudness=loudness,
                    seam_crossfade_frames=seam_crossfade_frames, seconds=round(time.monotonic() - started, 3))


def _write(sources: Sequence[tuple[Path, int, int]], sound: aac.Chunks, fmt: VideoFormat, dst: Path) -> int:
    """Remux the video packets of every source range, one after the other, with the encoded sound beside them."""
    ticks = fmt.timescale // fmt.fps  # per frame
    spf = audio.samples_per_frame(fmt.fps)
    with av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}) as film:
        with av.open(str(sources[0][0])) as first:
            vout = film.add_stream_from_template(first.streams.video[0])
            extradata = first.streams.video[0].codec_context.extradata
        vout.time_base = Fraction(1, fmt.timescale)
        # opened by the muxer, never fed: it gives the stream its parameters and the priming (edit list)
        aout = film.add_stream("aac", rate=SAMPLE_RATE, layout=aac.LAYOUT)
        aout.bit_rate = aac.encoder_bit_rate()
        packets = sound.packets()
        pending = next(packets, None)
        offset = 0  # film frames written so far
        for path, start, frames in sources:
            with av.open(str(path)) as src:
                vs = src.streams.video[0]
                if vs.codec_context.extradata != extradata:
                    raise MediaError(f"{path}: H.264 parameter sets differ from the film's; cannot copy")
                assert vs.time_base is not None  # MP4 streams always have one
                # a frame is p/q source ticks; integer arithmetic (Fractions cost a third of the remux)
                src_ticks = Fraction(1, fmt.fps) / vs.time_base
                p, q = src_ticks.numerator, src_ticks.denominator
                first_pts = vs.start_time or 0
                at = offset * ticks
                copied = 0
                for packet in src.demux(vs):
                    if packet.pts is None or packet.dts is None or not packet.size:
                        continue
                    index = _round_div((packet.pts - first_pts) * q, p)
                    if not start <= index < start + frames:
                        continue
                    packet.pts = _round_div(((packet.pts - first_pts) * q - start * p) * ticks, p) + at
                    packet.dts = _round_div(((packet.dts - first_pts) * q - start * p) * ticks, p) + at
                    packet.time_base = vout.time_base
                    packet.stream = vout
                    film.mux(packet)
                    copied += 1
            if copied != frames:
                raise MediaError(f"{path}: copied {copied} frames, expected {frames}")
            offset += frames
            # the sound under these pictures, so the file is interleaved as it plays
            while pending is not None and pending.pts is not None and pending.pts < offset * spf:
                _mux_sound(film, aout, pending)
                pending = next(packets, None)
        while pending is not None:
            _mux_sound(film, aout, pending)
            pending = next(packets, None)
    return offset


def _round_div(n: int, d: int) -> int:
    """round(n / d) for integers, halves to even as round() does."""
    whole, rest = divmod(n, d)
    return whole + (2 * rest > d or (2 * rest == d and whole % 2 == 1))


def _mux_sound(film: av.container.OutputContainer, aout: av.audio.stream.AudioStream, packet: av.Packet[Any]) -> None:
    packet.time_base = Fraction(1, SAMPLE_RATE)
    packet.stream = aout
    film.mux(packet)

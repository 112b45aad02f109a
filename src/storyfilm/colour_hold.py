"""The colour hold: bring a segment's look back to its chain's anchor, ramped so that its seam stays exact.

A per-channel transfer in CIELAB maps the statistics of the segment's last frame onto the anchor's:
- `meanstd` (the default; Reinhard et al. 2001, in CIELAB): each of L*, a*, b* is shifted and scaled so that
  its mean and standard deviation become the anchor's (the scale kept within 0.5-2);
- `histogram`: each channel's 5-95 % quantiles (5 % steps) are mapped onto the anchor's, piecewise linearly,
  every slope kept within 0.5-2 (unlimited, it bands and blotches flat skies), the ends continued with
  the mean/std scale.
Mean/std holds closer and looks natural on the test chains; histogram matching, even limited, leaves
blotches and holds less (benchmarks/continuity.md has the numbers).

The transfer is baked into a 33^3 RGB lookup table and applied by ffmpeg (`lut3d`, tetrahedral, in float,
where it has SIMD code), cross-faded in from the untouched picture by `xfade`: frame k gets
min(1, k / ramp) of the correction. The ramp is, by default, the whole segment (the full correction is
reached on its last frame): a model's drift builds up over the whole segment, and correcting its middle
with the end's full correction would over-correct it.

Seams stay exact:
- frame 0 (the chain's previous last frame, or the head's first) is not re-encoded: its packet is copied
  from the input (an IDR frame), so it decodes to exactly the same picture;
- the last frame is corrected here (the same table, trilinear) and encoded on its own as an IDR frame at
  constant QP from the RGB returned to the caller; the next shot, rendered from that RGB, starts on an
  identical picture.
The frames between are re-encoded by the house encoder, so the output has the house parameter sets, rate
and timescale and joins the film by stream copy; the audio packets are copied untouched.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
from PIL import Image, ImageFilter

from storyfilm.continuity import ColourStats, frame_stats, lab_to_srgb, srgb_to_lab
from storyfilm.errors import MediaError
from storyfilm.media import ffmpeg, probe, rgb
from storyfilm.media.ffmpeg import VideoFormat
from storyfilm.media.house import copy_blockers

Method = Literal["meanstd", "histogram"]
METHODS: tuple[Method, ...] = ("meanstd", "histogram")
DEFAULT_METHOD: Method = "meanstd"
LUT_SIZE = 33
GAIN_LIMITS = (0.5, 2.0)  # a hold restores a look; it never flattens or stretches a channel more than this
_RANGES = ((-20.0, 120.0), (-160.0, 160.0), (-160.0, 160.0))  # beyond any sRGB colour's L*, a*, b*
_HIST_KNOTS = slice(1, -1)  # the 5 %-95 % quantiles: the extremes are single, noisy pixels
Knots = tuple[tuple[float, ...], tuple[float, ...]]  # a channel's map: x and y of its knots
_ACCURATE_RGB = "scale=in_color_matrix=bt709:in_range=tv:flags=bicubic+accurate_rnd+full_chroma_int,format=gbrpf32"


@dataclass(frozen=True)
class LabTransfer:
    """Per-channel maps of L*, a*, b*: piecewise linear through `knots` (x, y), linear beyond."""

    method: Method
    knots: tuple[Knots, ...]

    def apply(self, lab: np.ndarray, weight: float = 1.0) -> np.ndarray:
        """Lab values moved `weight` (0..1) of the way to their mapped values."""
        out = np.array(lab, dtype=np.float64, copy=True)
        for c, (xs, ys) in enumerate(self.knots):
            mapped = np.interp(lab[..., c], xs, ys)
            out[..., c] += weight * (mapped - lab[..., c])
        return out

    def as_dict(self) -> dict[str, Any]:
        if self.method == "meanstd":  # two knots say it all: offset and gain per channel
            gains = [(ys[-1] - ys[0]) / (xs[-1] - xs[0]) for xs, ys in self.knots]
            offsets = [float(np.interp(0.0, xs, ys)) for xs, ys in self.knots]
            return {"method": self.method, "gain": [round(g, 4) for g in gains],
                    "offset_at_0": [round(o, 3) for o in offsets]}
        return {"method": self.method, "knots": [[[round(v, 3) for v in xs], [round(v, 3) for v in ys]]
                                                 for xs, ys in self.knots]}


def _gain(source_std: float, target_std: float) -> float:
    lo, hi = GAIN_LIMITS
    return float(np.clip(target_std / max(source_std, 1e-3), lo, hi))


def _limited(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The knots' y with every slope kept within GAIN_LIMITS (steep pieces band, flat ones posterise), centred
    on the target's median knot."""
    lo, hi = GAIN_LIMITS
    steps = np.clip(np.diff(ys), lo * np.diff(xs), hi * np.diff(xs))
    out = np.concatenate([[0.0], np.cumsum(steps)])
    mid = len(xs) // 2
    return np.asarray(out - out[mid] + ys[mid])


def _extended(xs: np.ndarray, ys: np.ndarray, gain: float, lo: float, hi: float) -> Knots:
    xs = np.maximum.accumulate(xs + np.arange(len(xs)) * 1e-3)  # strictly increasing for np.interp
    if len(xs) > 1:
        ys = _limited(xs, ys)
    x = np.concatenate([[lo], xs, [hi]])
    y = np.concatenate([[ys[0] - (xs[0] - lo) * gain], ys, [ys[-1] + (hi - xs[-1]) * gain]])
    return tuple(map(float, x)), tuple(map(float, y))


def fit_transfer(source: ColourStats, target: ColourStats, method: Method = DEFAULT_METHOD) -> LabTransfer:
    """The transfer that gives a frame with statistics `source` the look of `target` (histogram matching falls
    back to mean/std for statistics without quantiles)."""
    if method not in METHODS:
        raise ValueError(f"unknown hold method {method!r}; allowed: {', '.join(METHODS)}")
    if not (all(source.quantiles) and all(target.quantiles)):
        method = "meanstd"
    knots: list[Knots] = []
    for c, (lo, hi) in enumerate(_RANGES):
        g = _gain(source.lab_std[c], target.lab_std[c])
        if method == "meanstd":
            xs, ys = source.lab_mean[c:c + 1], target.lab_mean[c:c + 1]
        else:
            xs, ys = np.array(source.quantiles[c][_HIST_KNOTS]), np.array(target.quantiles[c][_HIST_KNOTS])
        knots.append(_extended(xs, ys, g, lo, hi))
    return LabTransfer(method=method, knots=tuple(knots))


# --- the lookup table -----------------------------------------------------------------------------


def _grid(size: int) -> np.ndarray:
    """The table's RGB points (size^3, 3) in 0..1, red changing fastest (.cube and Pillow order)."""
    axis = np.linspace(0.0, 1.0, size)
    b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([r, g, b], axis=-1).reshape(-1, 3)


def lut_table(transfer: LabTransfer, weight: float = 1.0, size: int = LUT_SIZE) -> np.ndarray:
    """The transfer as an RGB lookup table (size^3, 3), values 0..1."""
    grid = _grid(size)
    return lab_to_srgb(transfer.apply(srgb_to_lab(grid), weight))


def write_cube(table: np.ndarray, path: Path) -> Path:
    """A .cube file (Adobe/Resolve 3D LUT format) that ffmpeg's lut3d reads."""
    size = round(len(table) ** (1 / 3))
    head = f"LUT_3D_SIZE {size}\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 1 1 1\n"
    path.write_text(head + "%.6f %.6f %.6f\n" * len(table) % tuple(np.asarray(table, dtype=np.float64).ravel()))
    return path


def correct_frame(frame: np.ndarray, table: np.ndarray) -> np.ndarray:
    """An RGB frame through the lookup table (trilinear, like ffmpeg's lut3d with interp=trilinear)."""
    size = round(len(table) ** (1 / 3))
    lut = ImageFilter.Color3DLUT(size, table)
    return np.asarray(Image.fromarray(np.ascontiguousarray(frame[:, :, :3])).filter(lut))


# --- a segment ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldResult:
    path: Path
    frames: int
    method: Method
    ramp_frames: int  # the correction is complete from this frame on
    transfer: dict[str, Any]
    before: ColourStats  # the input's last frame
    after: ColourStats  # the output's last frame
    seconds: float
    last_frame: np.ndarray = field(repr=False, compare=False)  # RGB the last frame was encoded from
    last_png: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "frames": self.frames, "method": self.method,
                "ramp_frames": self.ramp_frames, "transfer": self.transfer, "before": self.before.as_dict(),
                "after": self.after.as_dict(), "seconds": round(self.seconds, 3),
                "last_png": str(self.last_png) if self.last_png else None}


def _filter_value(path: Path) -> str:
    """A path as a filter option value (ffmpeg's filtergraph escaping)."""
    text = str(path)
    for ch in ("\\", "'", ":", ",", ";", "[", "]", "="):
        text = text.replace(ch, "\\" + ch)
    return text


def _encode_middle(src: Path, dst: Path, cube: Path, fmt: VideoFormat, frames: int, ramp: int,
                   keyframes: list[int]) -> None:
    """Frames 1..frames-2 of `src`, corrected with the ramp, in the house format (video only)."""
    # The cross-fade runs on the decoded Y'CbCr, a linear function of R'G'B': the same blend, half the samples.
    graph = (f"[0:v]split[orig][lut];"
             f"[lut]{_ACCURATE_RGB},lut3d=file={_filter_value(cube)}:interp=tetrahedral,{ffmpeg.HOUSE_PIXELS}[held];"
             f"[orig][held]xfade=transition=fade:duration={ramp / fmt.fps:.6f}:offset=0,"
             f"trim=start_frame=1:end_frame={frames - 1},setpts=PTS-STARTPTS,{ffmpeg.HOUSE_PIXELS}[v]")
    ffmpeg.run(["-y", "-i", str(src), "-filter_complex", graph, "-map", "[v]", "-an",
                *ffmpeg.x264_args(fmt, keyframes), "-movflags", "+faststart", str(dst)])


def _encode_frame(frame: np.ndarray, dst: Path, fmt: VideoFormat) -> None:
    """One RGB frame as a one-frame house file: an IDR frame at constant QP, as the renderer encodes its ends."""
    proc = ffmpeg.start_encoder(["-y", *ffmpeg.raw_video_input_args(fmt), "-vf", ffmpeg.HOUSE_PIXELS,
                                 *ffmpeg.x264_args(fmt, [0]), "-an", "-movflags", "+faststart", str(dst)])
    assert proc.stdin is not None
    try:
        proc.stdin.write(np.ascontiguousarray(frame).tobytes())
    except BrokenPipeError:
        pass  # ffmpeg died: finish_encoder raises with its stderr
    finally:
        ffmpeg.finish_encoder(proc)


def _remux(src: Path, pieces: list[tuple[Path, int, int, int]], fmt: VideoFormat, dst: Path) -> int:
    """Video packets of each piece (file, its first frame, frames, output frame) in order, and `src`'s audio
    packets as they are. Returns the number of video frames written."""
    ticks = fmt.timescale // fmt.fps
    written = 0
    next_dts: int | None = None
    with av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}) as out, \
            av.open(str(src)) as source:
        with av.open(str(pieces[1][0])) as template:
            vout = out.add_stream_from_template(template.streams.video[0])
            extradata = template.streams.video[0].codec_context.extradata
        vout.time_base = Fraction(1, fmt.timescale)
        aout = out.add_stream_from_template(source.streams.audio[0]) if source.streams.audio else None
        for path, first, count, at in pieces:
            with av.open(str(path)) as piece:
                vs = piece.streams.video[0]
                if vs.codec_context.extradata != extradata:
                    raise MediaError(f"{path}: H.264 parameter sets differ from the house encoder's")
                assert vs.time_base is not None
                src_ticks = Fraction(1, fmt.fps) / vs.time_base
                base = (vs.start_time or 0) + first * src_ticks
                for packet in piece.demux(vs):
                    if packet.pts is None or packet.dts is None or not packet.size:
                        continue
                    index = round((packet.pts - base) / src_ticks)
                    if not 0 <= index < count:
                        continue
                    packet.pts = round((packet.pts - base) / src_ticks * ticks) + at * ticks
                    # One frame apart in decode order, from the first piece's start: the one-frame piece has no
                    # reordering delay of its own, and a gap in the decode times would stretch the track.
                    dts = round((packet.dts - base) / src_ticks * ticks) + at * ticks
                    packet.dts = dts if next_dts is None else next_dts
                    next_dts = packet.dts + ticks
                    if packet.dts > packet.pts:
                        raise MediaError(f"{path}: frame {at + index} would be decoded after it is shown")
                    packet.duration = ticks
                    packet.time_base = vout.time_base
                    packet.stream = vout
                    out.mux(packet)
                    written += 1
        if aout is not None:
            for sound in source.demux(source.streams.audio[0]):
                if sound.dts is None:
                    continue
                sound.stream = aout
                out.mux(sound)
    return written


def hold_segment(src: Path, dst: Path, target: ColourStats, fmt: VideoFormat, *, method: Method = DEFAULT_METHOD,
                 ramp_frames: int | None = None, last_png: Path | None = None) -> HoldResult:
    """Write `dst`: `src` (a house-format segment) with its look held to `target` (the anchor's statistics).

    Frame 0 is `src`'s own (copied, so pixel-exact); frame k gets min(1, k / ramp_frames) of the correction
    (default ramp: the whole segment); the last frame's RGB is returned (and written to `last_png`) for the
    next shot of the chain to start from. Raises MediaError when `src` is not in the house format of `fmt`.
    """
    started = time.monotonic()
    src, dst = Path(src), Path(dst)
    info = probe.probe(src)
    if info.video is None:
        raise MediaError(f"{src}: no video stream")
    blockers = copy_blockers(info, fmt)
    if blockers:
        raise MediaError(f"{src}: not in the house format ({'; '.join(blockers)}); normalise it before holding")
    n = info.video.frames
    if n < 3:
        raise MediaError(f"{src}: {n} frames; a hold needs at least 3 (the seam, a ramp, the last)")
    ramp = n - 1 if ramp_frames is None else max(1, min(int(ramp_frames), n - 1))
    _, last = rgb.first_and_last(src)
    before = frame_stats(last)
    transfer = fit_transfer(before, target, method)
    table = lut_table(transfer)
    corrected = correct_frame(last, table)
    source_keys = probe.keyframe_indices(src)
    if not source_keys or source_keys[0] != 0:
        raise MediaError(f"{src}: its first frame is not a keyframe; normalise it before holding")
    keyframes = sorted({k - 1 for k in source_keys if 1 <= k < n - 1} | {0})
    with tempfile.TemporaryDirectory(prefix="storyfilm-hold-") as scratch:
        tmp = Path(scratch)
        middle, end = tmp / "middle.mp4", tmp / "last.mp4"
        _encode_middle(src, middle, write_cube(table, tmp / "hold.cube"), fmt, n, ramp, keyframes)
        _encode_frame(corrected, end, fmt)
        partial = dst.with_name(f".{dst.stem}.partial{dst.suffix}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            written = _remux(src, [(src, 0, 1, 0), (middle, 0, n - 2, 1), (end, 0, 1, n - 1)], fmt, partial)
            if written != n:
                raise MediaError(f"{src}: the held segment has {written} frames, expected {n}")
            partial.replace(dst)
        finally:
            partial.unlink(missing_ok=True)
    if last_png is not None:
        probe.save_png(corrected, last_png)
    return HoldResult(path=dst, frames=n, method=transfer.method, ramp_frames=ramp, transfer=transfer.as_dict(),
                      before=before, after=frame_stats(corrected), seconds=time.monotonic() - started,
                      last_frame=corrected, last_png=last_png)

"""The animatic renderer: a real H.264/AAC shot from a start frame, a camera move, an overlay and an audio bed.

Used by the `local` provider and by the emulator. Guarantees that chaining relies on:
- frame 0 is exactly the start frame (fitted to the frame size), and the raw last frame is returned, so a
  shot that continues this one starts on exactly the same picture;
- overlays (prompt/caption, shot label) fade in after frame 0 and are gone on the last frame, so they
  never pile up along a chain;
- with an end image, the last frame is exactly that image (fitted);
- frame 0 and the last frame are IDR frames encoded at constant QP: identical pictures decode identically;
- with a drift (drift.py), a shot made from a start frame drifts in colour from it, frame 0 untouched;
- reference images are shown as thumbnails in the top right corner (like the overlays, not on frame 0 or
  the last frame), so that a test or a person sees which references a shot was given.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import textwrap
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# The camera vocabulary lives in camera.py (plan.py needs it without importing the renderer).
from storyfilm.camera import CameraMove
from storyfilm.camera import camera_from_prompt as camera_from_prompt  # re-exported: the emulator renders with it
from storyfilm.drift import Drift, drifted
from storyfilm.media import ffmpeg
from storyfilm.media.ffmpeg import SAMPLE_RATE, VideoFormat


@dataclass(frozen=True)
class AnimaticSpec:
    fmt: VideoFormat
    frames: int
    prompt: str
    seed: int = 0
    camera: CameraMove = "push_in"
    start: np.ndarray | None = field(default=None, repr=False)  # RGB; None: a title card from the prompt
    end: np.ndarray | None = field(default=None, repr=False)  # RGB target last frame
    references: tuple[np.ndarray, ...] = field(default=(), repr=False)
    overlay: str = ""  # caption or prompt shown while the shot plays
    label: str = ""  # small corner label (the shot id)
    audio: bool = True
    keyframes: tuple[int, ...] = ()  # extra IDR frames (1 for a chained shot, so its copy of the
    # previous last frame can be dropped by stream copy)
    drift: Drift | None = None  # colour drift from `start` (a model's); ignored without a start frame


def _seed_rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def _ease(t: float) -> float:
    t = min(1.0, max(0.0, t))
    return t * t * (3 - 2 * t)


def fit_cover(rgb: np.ndarray, fmt: VideoFormat) -> np.ndarray:
    """Scale and centre-crop an image to fill the frame (identity when it already has the frame size)."""
    h, w = rgb.shape[:2]
    if (w, h) == (fmt.width, fmt.height):
        return np.ascontiguousarray(rgb[:, :, :3])
    scale = max(fmt.width / w, fmt.height / h)
    cw, ch = fmt.width / scale, fmt.height / scale
    x0, y0 = (w - cw) / 2, (h - ch) / 2
    img = Image.fromarray(np.ascontiguousarray(rgb[:, :, :3]))
    out = img.resize((fmt.width, fmt.height), Image.Resampling.LANCZOS, box=(x0, y0, x0 + cw, y0 + ch))
    return np.asarray(out)


# --- the title card ------------------------------------------------------------------------------

_PALETTES: list[tuple[tuple[str, ...], tuple[tuple[int, int, int], tuple[int, int, int]]]] = [
    (("night", "storm", "dark", "moon", "midnight"), ((8, 12, 34), (34, 46, 88))),
    (("dusk", "sunset", "evening", "twilight"), ((58, 34, 92), (246, 146, 72))),
    (("dawn", "sunrise", "morning"), ((118, 156, 214), (250, 204, 156))),
    (("fire", "lamp", "warm", "candle"), ((70, 30, 12), (236, 160, 70))),
    (("forest", "jungle", "garden"), ((60, 110, 80), (170, 210, 150))),
]


def title_card(prompt: str, seed: int, fmt: VideoFormat,
               references: Sequence[np.ndarray] = ()) -> np.ndarray:
    """A deterministic start frame for text-to-video: sky, light and hills coloured by the prompt's words."""
    w, h = fmt.width, fmt.height
    rng = _seed_rng("card", prompt, seed)
    text = prompt.lower()
    top, bottom = (92, 148, 226), (206, 226, 248)
    for words, colours in _PALETTES:
        if any(word in text for word in words):
            top, bottom = colours
            break
    grad = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    sky = (np.array(top, np.float32) * (1 - grad) + np.array(bottom, np.float32) * grad)
    img = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).astype(np.uint8))
    if references:
        ref = Image.fromarray(fit_cover(references[0], fmt)).filter(ImageFilter.GaussianBlur(max(2, w // 160)))
        img = Image.blend(img, ref, 0.65)
    draw = ImageDraw.Draw(img)
    r = int(min(w, h) * rng.uniform(0.05, 0.09))
    cx, cy = int(w * rng.uniform(0.15, 0.85)), int(h * rng.uniform(0.15, 0.4))
    glow = (250, 250, 230) if "moon" in text or "night" in text else (255, 226, 150)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=glow)
    water = any(word in text for word in ("sea", "ocean", "ship", "lake", "water", "river", "beach"))
    for layer in range(3):
        base_y = h * (0.55 + 0.12 * layer)
        xs = np.linspace(0, w, 9)
        ys = base_y + rng.normal(0, h * 0.04, size=xs.size)
        shade = 0.55 - 0.15 * layer
        colour = tuple(int(c * shade) for c in (bottom if layer == 0 else top))
        if water and layer == 2:
            colour = (20, 50, 90)
            ys = np.full_like(xs, h * 0.8)
        draw.polygon([(0, h), *zip(xs.tolist(), ys.tolist(), strict=True), (w, h)], fill=colour)
    return np.asarray(img)


# --- frames ---------------------------------------------------------------------------------------


def _camera_window(move: CameraMove, t: float, rng_phase: np.ndarray) -> tuple[float, float, float]:
    """(zoom, dx, dy) at t in [0, 1]; dx/dy are the window centre offsets as fractions of the frame."""
    e = _ease(t)
    if move == "push_in":
        return 1 + 0.25 * e, 0.0, 0.0
    if move == "pull_out":
        return 1 - 0.2 * e, 0.0, 0.0
    if move in ("pan_left", "pan_right", "tilt_up", "tilt_down"):
        z = 1 + 0.2 * e
        room = (1 - 1 / z) / 2 * 0.95
        sign = -1.0 if move in ("pan_left", "tilt_up") else 1.0
        return (z, sign * room, 0.0) if move.startswith("pan") else (z, 0.0, sign * room)
    if move == "handheld":
        z = 1 + 0.08 * min(1.0, 3 * t)
        room = (1 - 1 / z) / 2 * 0.8
        def wobble(f1: float, f2: float, p1: float, p2: float) -> float:
            return math.sin(2 * math.pi * f1 * t + p1) * 0.6 + math.sin(2 * math.pi * f2 * t + p2) * 0.4

        dx = wobble(1.3, 3.1, rng_phase[0], rng_phase[1])
        dy = wobble(1.7, 2.3, rng_phase[2], rng_phase[3])
        return z, dx * room, dy * room
    return 1.0, 0.0, 0.0


class _FrameMaker:
    """Frames as the encoder wants them. In-between frames stay PIL images (composited in C, no float copies);
    frame 0 and the last frame are exactly the start, the end image or the camera's final window."""

    def __init__(self, spec: AnimaticSpec):
        self.spec = spec
        fmt = spec.fmt
        start = spec.start if spec.start is not None else title_card(spec.prompt, spec.seed, fmt, spec.references)
        self.start = fit_cover(start, fmt)
        self.base = Image.fromarray(self.start)
        self.end = fit_cover(spec.end, fmt) if spec.end is not None else None
        self.end_image = Image.fromarray(self.end) if self.end is not None else None
        self.phase = _seed_rng("camera", spec.prompt, spec.seed).uniform(0, 2 * math.pi, size=4)
        self.backdrop = (Image.fromarray((np.asarray(self.base.filter(ImageFilter.GaussianBlur(fmt.width // 40)))
                                          * 0.55).astype(np.uint8)) if spec.camera == "pull_out" else None)
        self.overlays = _overlay_layers(spec)
        self.drift = spec.drift if spec.start is not None and spec.drift is not None and spec.drift.active else None
        self.pivot = float(np.asarray(self.base.convert("L"), dtype=np.float32).mean()) if self.drift else 0.0

    def _drifted(self, img: Image.Image, t: float) -> Image.Image:
        """Linear in time from the start frame; with an end image it returns to none, as that frame is given."""
        if self.drift is None:
            return img
        weight = t if self.end is None else 4 * t * (1 - t)
        return drifted(img, self.drift, weight, self.pivot)

    def frame(self, k: int) -> np.ndarray | Image.Image:
        """Frame k as RGB: an array (frame 0, an end image) or a PIL image; `np.asarray` of either is the picture."""
        spec, fmt = self.spec, self.spec.fmt
        n = spec.frames
        last = n - 1
        if k == 0:
            return self.start
        if k == last and self.end is not None:
            return self.end
        t = k / last
        z, dx, dy = _camera_window(spec.camera, t, self.phase)
        w, h = fmt.width, fmt.height
        if z >= 1:
            cw, ch = w / z, h / z
            x0, y0 = (w - cw) / 2 + dx * w, (h - ch) / 2 + dy * h
            img = self.base.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
        else:
            assert self.backdrop is not None
            img = self.backdrop.copy()
            sw, sh = max(2, round(w * z)), max(2, round(h * z))
            img.paste(self.base.resize((sw, sh), Image.Resampling.BILINEAR), ((w - sw) // 2, (h - sh) // 2))
        if k == last:  # no end image here (returned above), no overlay: the camera's final window
            return self._drifted(img, 1.0)
        if self.end_image is not None:
            blend = _ease((t - 0.5) / 0.5)
            if blend > 0:
                img = Image.blend(img, self.end_image, blend)
        img = self._drifted(img, t)
        self._overlay(img, self._overlay_alpha(k))
        return img

    def _overlay_alpha(self, k: int) -> float:
        n, fps = self.spec.frames, self.spec.fmt.fps
        ramp = max(1.0, min(0.4 * fps, n / 4))
        return max(0.0, min(1.0, k / ramp, (n - 1 - k) / ramp))

    def _overlay(self, img: Image.Image, alpha: float) -> None:
        if alpha <= 0:
            return
        scale = [round(v * alpha) for v in range(256)]
        for rgb, mask, origin in self.overlays:
            img.paste(rgb, origin, mask if alpha >= 1 else mask.point(scale))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled font: no system fonts needed


def _overlay_layers(spec: AnimaticSpec) -> list[tuple[Image.Image, Image.Image, tuple[int, int]]]:
    """The overlays as (rgb, alpha mask, origin) pieces: the caption box at the bottom, the label top-left."""
    w, h = spec.fmt.width, spec.fmt.height
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    boxes: list[tuple[int, int, int, int]] = []
    if spec.overlay:
        size = max(12, h // 24)
        font = _font(size)
        avg = max(1.0, float(font.getlength("abcdefghijklmnopqrstuvwxyz")) / 26)
        lines = textwrap.wrap(" ".join(spec.overlay.split()), width=max(10, int(w * 0.84 / avg)))[:4]
        line_h = int(size * 1.3)
        box_h = line_h * len(lines) + size
        top = h - box_h - h // 18
        box = (int(w * 0.05), top, int(w * 0.95), top + box_h)
        draw.rectangle(box, fill=(0, 0, 0, 150))
        for i, line in enumerate(lines):
            tw = float(font.getlength(line))
            draw.text(((w - tw) / 2, top + size / 2 + i * line_h), line, font=font, fill=(255, 255, 255, 255))
        boxes.append((box[0], box[1], box[2] + 1, box[3] + 1))
    if spec.label:
        small = _font(max(10, h // 36))
        origin = (int(w * 0.03), int(h * 0.03))
        draw.text(origin, spec.label, font=small, fill=(255, 255, 255, 220))
        # ints at run time for an integer origin; typed as floats
        left, top_, right, bottom = map(int, draw.textbbox(origin, spec.label, font=small))
        boxes.append((max(0, left - 2), max(0, top_ - 2), min(w, right + 2), min(h, bottom + 2)))
    pieces = []
    for box in boxes:
        crop = layer.crop(box)
        pieces.append((crop.convert("RGB"), crop.getchannel("A"), (box[0], box[1])))
    return pieces + _reference_insets(spec)


def _reference_insets(spec: AnimaticSpec) -> list[tuple[Image.Image, Image.Image, tuple[int, int]]]:
    """The reference images as thumbnails along the top right, in order from the right (reference 1 at the
    corner), each in a white frame: what a model was shown is seen in the shot. Overlays like the caption,
    so they are not on the first and last frames."""
    w, h = spec.fmt.width, spec.fmt.height
    th, margin, border = max(8, h // 7), max(2, h // 40), max(1, h // 240)
    right = w - margin
    out = []
    for ref in spec.references:
        rh, rw = ref.shape[:2]
        tw = max(4, round(th * rw / rh))
        if right - tw - 2 * border < w // 2:  # never over the left half (the shot's label, most of the picture)
            break
        thumb = Image.new("RGB", (tw + 2 * border, th + 2 * border), (255, 255, 255))
        thumb.paste(Image.fromarray(np.ascontiguousarray(ref[:, :, :3])).resize((tw, th), Image.Resampling.LANCZOS),
                    (border, border))
        origin = (right - thumb.width, margin)
        out.append((thumb, Image.new("L", thumb.size, 255), origin))
        right = origin[0] - margin
    return out


# --- audio ----------------------------------------------------------------------------------------

_PENTATONIC = (110.0, 123.47, 138.59, 164.81, 185.0, 220.0)


def audio_bed(prompt: str, seed: int, seconds: float) -> np.ndarray:
    """A deterministic stereo bed (float32, -1..1): a slow chord plus wind-like noise for stormy words."""
    n = round(seconds * SAMPLE_RATE)
    rng = _seed_rng("audio", prompt, seed)
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    root = float(rng.choice(_PENTATONIC)) * float(rng.choice((1.0, 2.0)))
    tone = np.zeros(n)
    for ratio, amp in ((1.0, 0.5), (1.5, 0.3), (2.0, 0.2)):
        lfo = 0.75 + 0.25 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 2 * np.pi))
        tone += amp * lfo * np.sin(2 * np.pi * root * ratio * t + rng.uniform(0, 2 * np.pi))
    text = prompt.lower()
    windy = any(w in text for w in ("wind", "storm", "sea", "ocean", "rain", "waves", "howl"))
    noise = rng.standard_normal(n + 64)
    noise = np.convolve(noise, np.ones(64) / 64, mode="valid")[:n] * (3.0 if windy else 1.0)
    left = 0.16 * tone + 0.5 * noise
    right = 0.16 * np.roll(tone, 24) + 0.5 * noise[::-1]
    stereo = np.stack([left, right], axis=1)
    fade = min(n // 2, SAMPLE_RATE // 100)
    if fade:
        ramp = np.linspace(0, 1, fade)[:, None]
        stereo[:fade] *= ramp
        stereo[n - fade:] *= ramp[::-1]
    return np.clip(stereo, -1, 1).astype(np.float32)


def write_wav(samples: np.ndarray, path: Path) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(pcm.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    return path


# --- render ---------------------------------------------------------------------------------------


def render(spec: AnimaticSpec, out: Path) -> np.ndarray:
    """Render the shot to `out` (mp4) and return its exact last frame (RGB, before encoding)."""
    if spec.frames < 2:
        raise ValueError("an animatic needs at least 2 frames")
    maker = _FrameMaker(spec)
    fmt = spec.fmt
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="animatic-", dir=out.parent) as tmp:
        argv = ["-y", *ffmpeg.raw_video_input_args(fmt)]
        if spec.audio:
            wav = write_wav(audio_bed(spec.prompt, spec.seed, spec.frames / fmt.fps), Path(tmp) / "bed.wav")
            argv += ["-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", *ffmpeg.aac_args()]
        keyframes = [0, spec.frames - 1, *spec.keyframes]
        argv += ["-vf", ffmpeg.HOUSE_PIXELS, *ffmpeg.x264_args(fmt, keyframes),
                 "-movflags", "+faststart", str(Path(tmp) / "shot.mp4")]
        proc = ffmpeg.start_encoder(argv)
        assert proc.stdin is not None
        last: np.ndarray | Image.Image = maker.start
        try:
            for k in range(spec.frames):
                last = maker.frame(k)
                proc.stdin.write(last.tobytes())
        except BrokenPipeError:
            pass  # ffmpeg died: finish_encoder raises with its stderr
        finally:
            ffmpeg.finish_encoder(proc)
        Path(tmp, "shot.mp4").replace(out)
    return np.array(last)  # a copy: the caller may keep it

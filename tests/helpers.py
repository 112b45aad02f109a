"""Helpers shared by the tests: small real media and storyboards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def write_image(path: Path, size: tuple[int, int] = (320, 180), seed: int = 0) -> Path:
    """A small image with structure (gradients and blocks), so frame comparisons mean something."""
    rng = np.random.default_rng(seed)
    w, h = size
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    img = (np.concatenate([x * 255 * np.ones((h, 1, 1)), y * 255 * np.ones((1, w, 1)),
                           (x * y) * 255], axis=2)).astype(np.uint8)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        img[y0:y0 + 20, x0:x0 + 30] = rng.integers(0, 255, size=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def write_storyboard(directory: Path, text: str, name: str = "board.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def make_clip(path: Path, seconds: float, size: tuple[int, int] = (320, 180), fps: int = 24, *,
              audio: bool = True, tone: float = 440.0, gop: int = 48, audio_seconds: float | None = None,
              colour: str | None = None) -> Path:
    """A real H.264 (+AAC) clip from ffmpeg's test sources (a solid `colour` instead of the test card if given)."""
    from storyfilm.media import ffmpeg

    w, h = size
    source = f"color=c={colour}:" if colour else "testsrc2="
    argv = ["-y", "-f", "lavfi", "-i", f"{source}size={w}x{h}:rate={fps}:duration={seconds}"]
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000:duration={audio_seconds or seconds}"]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop), "-pix_fmt", "yuv420p"]
    argv += ["-c:a", "aac", "-ac", "2"] if audio else []
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg.run([*argv, str(path)])
    return path


def point_hosts_at(url: str, monkeypatch: object, key: str = "test-key-0123456789") -> None:
    """Every hosted provider's base URL and key set to the emulator (pytest monkeypatch)."""
    from storyfilm.providers import SPECS

    for spec in SPECS.values():
        if spec.base_url_env and spec.api_key_env:
            monkeypatch.setenv(spec.base_url_env, url)  # type: ignore[attr-defined]
            monkeypatch.setenv(spec.api_key_env, key)  # type: ignore[attr-defined]
    monkeypatch.setenv("STORYFILM_POLL_INTERVAL", "0.05")  # type: ignore[attr-defined]


def emulator_stats(url: str) -> dict:
    import httpx

    return httpx.get(f"{url}/_emulator/stats", timeout=10).json()

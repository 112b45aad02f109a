"""Small JPEG pictures for the Prefect UI, inlined as `data:` URIs (a markdown artifact shows them as images).

Prefect stores an artifact in its database and sends it whole to the browser: pictures here are kept
small (a shot's thumbnail ~3-6 KB, the contact sheet under `SHEET_MAX_BYTES`).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

THUMB_WIDTH = 120
SHEET_WIDTH = 720
SHEET_MAX_BYTES = 90_000  # of the JPEG; base64 adds a third: the summary stays well under 200 KB


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def _scaled(img: Image.Image, width: int) -> Image.Image:
    if img.width <= width:
        return img
    return img.resize((width, max(1, round(img.height * width / img.width))), Image.Resampling.LANCZOS)


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def thumbnail(path: str | Path, width: int = THUMB_WIDTH) -> bytes | None:
    """A JPEG thumbnail of the image at `path`; None when it is missing or not an image (a report never fails)."""
    try:
        with Image.open(path) as img:
            return _jpeg(_scaled(img, width), quality=70)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def contact_sheet(path: str | Path, width: int = SHEET_WIDTH, max_bytes: int = SHEET_MAX_BYTES) -> bytes | None:
    """The contact sheet as a JPEG of at most `max_bytes`: smaller and coarser until it fits."""
    try:
        with Image.open(path) as img:
            img.load()
            source = img.copy()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    while True:
        for quality in (75, 60, 45):
            data = _jpeg(_scaled(source, width), quality)
            if len(data) <= max_bytes:
                return data
        if width <= 160:
            return None
        width = width * 3 // 4

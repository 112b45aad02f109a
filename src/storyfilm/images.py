"""Asset images: which files may be assets, and the upright 8-bit RGB image every provider is given.

Accepted: every still image Pillow opens (PNG, JPEG, WebP, TIFF, BMP, GIF, ...) in any mode it opens them
in: 1-bit, grayscale, 16-bit grayscale (scaled to 8 bits, not clipped to white), palette, CMYK, YCbCr,
LAB, HSV, with or without alpha. Transparent pixels are laid on black (a frame has no transparency).
EXIF orientation is applied (a phone's portrait photo stays upright).
Refused, with the reason: animated images (which frame would be the first?), 32-bit floating-point images
(no fixed brightness range), more than MAX_ASSET_PIXELS pixels (decompression bombs), truncated files.
A file that needs no change (an upright PNG, JPEG or WebP in RGB or grayscale) is handed over as it is.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Pillow is imported only when an image is read (the planner never reads one)
    from PIL import Image as PILImage

MAX_ASSET_BYTES = 50_000_000
MAX_ASSET_PIXELS = 40_000_000  # an 8K still is 33 Mpx; a bigger one is refused before anything decodes it
_AS_IS_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
_AS_IS_MODES = frozenset({"RGB", "L"})
_EXIF_ORIENTATION = 0x0112


def _turns() -> dict[int, PILImage.Transpose]:
    """EXIF orientation -> the turn that makes the picture upright (as ImageOps.exif_transpose)."""
    from PIL import Image

    t = Image.Transpose
    return {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 4: t.FLIP_TOP_BOTTOM, 5: t.TRANSPOSE, 6: t.ROTATE_270,
            7: t.TRANSVERSE, 8: t.ROTATE_90}


def image_problem(path: Path) -> str | None:
    """Why `path` cannot be an asset image, as a predicate ("is not an image ..."), or None."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_ASSET_PIXELS:
                    return f"has {img.width}x{img.height} pixels; assets may have at most {MAX_ASSET_PIXELS}"
                frames = getattr(img, "n_frames", 1)
                if frames > 1:
                    return (f"is animated ({frames} frames); an asset is one still image: export the frame "
                            "you want as PNG or JPEG")
                if img.mode == "F":
                    return ("is a 32-bit floating-point image, which has no fixed brightness range; "
                            "save it as an 8- or 16-bit PNG or TIFF")
                img.load()  # every pixel decodes (a truncated file fails here, not in the middle of a run)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        return f"is refused as a decompression bomb ({exc})"
    except PermissionError:
        return "is not readable (permission denied)"
    except OSError as exc:
        if exc.errno is not None:  # the file system's refusal, not the image's content
            return f"cannot be read: {exc.strerror or exc}"
        return f"is not an image Pillow can read (PNG, JPEG, WebP, ...): {exc}"
    except (SyntaxError, ValueError, TypeError) as exc:
        return f"is not an image Pillow can read (PNG, JPEG, WebP, ...): {exc}"
    return None


def to_rgb(img: PILImage.Image) -> PILImage.Image:
    """`img` upright (EXIF orientation applied) as 8-bit RGB, whatever its mode."""
    import numpy as np
    from PIL import Image

    img.load()  # first: Pillow turns some files (TIFF) upright as it loads them, and drops their tag
    orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    turn = _turns().get(orientation) if isinstance(orientation, int) else None
    if turn is not None:
        img = img.transpose(turn)
    if img.mode == "I" or img.mode.startswith("I;16"):
        # 16-bit samples (Pillow reads 16-bit grayscale as I;16, some files as I): scaled, where convert()
        # would clip everything above 255 to white
        wide = np.asarray(img).astype(np.float64)
        img = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = img.convert("RGBA") if img.mode != "RGBA" else img
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")


def usable_as_is(img: PILImage.Image) -> bool:
    """Whether a provider can take the file unchanged (format, mode and orientation all plain)."""
    img.load()
    orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    return img.format in _AS_IS_FORMATS and img.mode in _AS_IS_MODES and orientation in (1, None)


def upright_rgb(path: Path, dest: Path) -> Path:
    """`path` itself if a provider can take it unchanged, else `dest`: the upright 8-bit RGB PNG of it."""
    from PIL import Image

    with Image.open(path) as img:
        if usable_as_is(img):
            return path
        if not dest.exists():
            tmp = dest.with_name(f".{dest.name}.partial")
            dest.parent.mkdir(parents=True, exist_ok=True)
            to_rgb(img).save(tmp, format="PNG")
            tmp.replace(dest)
    return dest

"""Asset images as a user takes them: a phone's portrait photo stays upright, a 16-bit scan keeps its tones,
every mode Pillow opens becomes the right 8-bit RGB picture, and what cannot be a start frame is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storyfilm import assets
from storyfilm.images import image_problem, to_rgb, upright_rgb
from storyfilm.media import probe
from storyfilm.storyboard import load_storyboard

from .helpers import write_storyboard
from .run_film import run


def reference(size: tuple[int, int] = (60, 100)) -> Image.Image:
    """Upright and asymmetric: red top-left quarter, green top-right, blue bottom-left, white bottom-right."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)
    a[: h // 2, w // 2:] = (0, 255, 0)
    a[h // 2:, : w // 2] = (0, 0, 255)
    a[h // 2:, w // 2:] = (255, 255, 255)
    return Image.fromarray(a)


# How a camera stores the upright picture for each EXIF orientation (the inverse of what a viewer does).
STORED = {1: [], 2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180],
          4: [Image.Transpose.FLIP_TOP_BOTTOM], 5: [Image.Transpose.TRANSPOSE], 6: [Image.Transpose.ROTATE_90],
          7: [Image.Transpose.TRANSVERSE], 8: [Image.Transpose.ROTATE_270]}


def stored_as(orientation: int, path: Path, fmt: str = "PNG") -> Path:
    img = reference()
    for op in STORED[orientation]:
        img = img.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(tmp_path: Path, orientation: int) -> None:
    path = stored_as(orientation, tmp_path / "photo.png")
    out = upright_rgb(path, tmp_path / "upright.png")
    assert (out == path) == (orientation == 1)  # an upright PNG is handed over as it is
    with Image.open(out) as img:
        assert np.array_equal(np.asarray(to_rgb(img)), np.asarray(reference()))


def test_a_sixteen_bit_scan_keeps_its_tones(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256), (16, 1)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "scan.png")
    with Image.open(tmp_path / "scan.png") as img:
        assert img.mode == "I;16"
        grey = np.asarray(to_rgb(img))[..., 0].astype(int)
    assert np.abs(grey - np.round(ramp / 257)).max() <= 1  # scaled, where convert("RGB") makes it white
    assert grey[:, 0].max() == 0 and grey[:, -1].min() == 255 and np.all(np.diff(grey[0]) >= 0)


@pytest.mark.parametrize(("mode", "fmt", "colour", "want"), [
    ("CMYK", "JPEG", (0, 255, 255, 0), (255, 0, 0)),
    ("CMYK", "TIFF", (255, 0, 255, 0), (0, 255, 0)),
    ("L", "PNG", 128, (128, 128, 128)),
    ("1", "PNG", 1, (255, 255, 255)),
    ("LA", "PNG", (200, 255), (200, 200, 200)),
    ("LA", "PNG", (200, 0), (0, 0, 0)),  # fully transparent: black, as a frame has no transparency
    ("RGBA", "PNG", (10, 20, 30, 128), (5, 10, 15)),  # half transparent over black
    ("RGBA", "WEBP", (200, 100, 50, 255), (200, 100, 50)),
    ("P", "GIF", None, (0, 0, 255)),
    ("RGB", "BMP", (1, 2, 3), (1, 2, 3)),
    ("YCbCr", "JPEG", (76, 85, 255), (254, 0, 0)),
])
def test_every_mode_becomes_the_right_colour(tmp_path: Path, mode: str, fmt: str, colour: object,
                                             want: tuple[int, int, int]) -> None:
    path = tmp_path / "still"
    if mode == "P":
        img = Image.new("RGB", (32, 32), (0, 0, 255)).convert("P")
    else:
        img = Image.new(mode, (32, 32), colour)  # type: ignore[arg-type]
    img.save(path, format=fmt)
    assert image_problem(path) is None
    with Image.open(upright_rgb(path, tmp_path / "rgb.png")) as out:
        got = np.asarray(to_rgb(out))[16, 16]
    assert np.abs(got.astype(int) - np.array(want)).max() <= 3, (mode, fmt, got)


def test_a_palette_image_with_a_transparent_colour(tmp_path: Path) -> None:
    img = Image.new("P", (8, 8), 1)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.paste(0, (0, 0, 4, 8))  # left half: colour 0, declared transparent
    img.save(tmp_path / "p.png", transparency=0)
    with Image.open(upright_rgb(tmp_path / "p.png", tmp_path / "rgb.png")) as out:
        a = np.asarray(to_rgb(out))
    assert tuple(a[4, 1]) == (0, 0, 0) and tuple(a[4, 6]) == (0, 255, 0)


def test_images_that_cannot_be_a_start_frame_are_refused_and_say_why(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], loop=0)
    assert "is animated (2 frames)" in str(image_problem(tmp_path / "anim.gif"))
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(tmp_path / "float.tif")
    assert "32-bit floating-point" in str(image_problem(tmp_path / "float.tif"))


def test_materialise_converts_only_what_needs_it(tmp_path: Path) -> None:
    reference().save(tmp_path / "plain.png")
    stored_as(6, tmp_path / "phone.jpg", "JPEG")
    path = write_storyboard(tmp_path, "version: 1\ntitle: t\nassets:\n  plain: plain.png\n  phone: phone.jpg\n"
                                      "shots:\n  - id: a\n    prompt: p\n    image: phone\n")
    board = load_storyboard(path)
    files = assets.materialise(board, tmp_path / "cache")
    assert files["plain"] == (tmp_path / "plain.png").resolve()
    assert files["phone"].parent == tmp_path / "cache" and files["phone"].suffix == ".png"
    with Image.open(files["phone"]) as img:
        assert img.size == (60, 100) and img.mode == "RGB"
    assert assets.digests(board)["phone"] == assets.file_digest(tmp_path / "phone.jpg")  # keys: the original bytes


def test_a_film_from_a_phone_photo_and_a_sixteen_bit_scan_shows_them_upright_and_toned(tmp_path: Path) -> None:
    """Rendered for real (the local provider, ffmpeg): each shot's first frame is its picture."""
    big = reference((270, 480))
    for op in STORED[6]:
        big = big.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = 6
    big.save(tmp_path / "phone.jpg", format="JPEG", quality=95, exif=exif)
    Image.fromarray(np.tile(np.linspace(0, 65535, 270), (480, 1)).astype(np.uint16)).save(tmp_path / "scan.png")
    text = ("version: 1\ntitle: t\ndefaults: {duration: 1, resolution: 480p, aspect_ratio: '9:16', camera: static}\n"
            "assets:\n  phone: phone.jpg\n  scan: scan.png\nshots:\n  - id: photo\n    prompt: p\n    image: phone\n"
            "  - id: scan\n    prompt: q\n    image: scan\n")
    film = run(write_storyboard(tmp_path, text), tmp_path / "out").film_dir / "film.mp4"
    frames = probe.read_frames(film, [0, 24])
    Image.fromarray(np.concatenate(frames, axis=1)).save(tmp_path / "first-frames.png")  # for a person to look at
    photo, scan = (f.astype(int) for f in frames)
    h, w = photo.shape[:2]
    top, bottom, left, right = slice(h // 8, 3 * h // 8), slice(5 * h // 8, 7 * h // 8), \
        slice(w // 8, 3 * w // 8), slice(5 * w // 8, 7 * w // 8)
    quarters = [photo[top, left], photo[top, right], photo[bottom, left], photo[bottom, right]]
    for region, colour in zip(quarters, [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)], strict=True):
        assert np.abs(region.mean(axis=(0, 1)) - colour).max() < 40, region.mean(axis=(0, 1))
    row = scan[h // 2, :, 0]
    assert row[: w // 10].mean() < 40 and row[-w // 10:].mean() > 215 and 100 < row[w // 2] < 160, row[::20]

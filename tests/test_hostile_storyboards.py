"""Hostile storyboards: whatever a file contains, the loader answers with a StoryboardError or a storyboard.

Never another exception (no traceback for a user's file), and never a write outside output/<slug>/.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import string
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from storyfilm import assets
from storyfilm.cli import app
from storyfilm.errors import StoryboardError
from storyfilm.netpolicy import UrlPolicy
from storyfilm.storyboard import load_storyboard, parse_storyboard, slugify, text_problem

from .helpers import static_server, write_image, write_storyboard
from .test_storyboard import BAD, GOOD

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def survives(text: str) -> None:
    try:
        parse_storyboard(text, "fuzz.yaml")
    except StoryboardError as exc:
        assert "fuzz.yaml" in str(exc)


@pytest.mark.slow
@FUZZ
@given(st.text(max_size=400))
def test_any_text(text: str) -> None:
    survives(text)


@FUZZ
@given(st.text(alphabet=string.printable, max_size=300).map(lambda t: GOOD[: len(GOOD) // 2] + t))
def test_a_valid_file_with_garbage_after_its_first_half(text: str) -> None:
    survives(text)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["version", "title", "provider", "model", "budget_usd", "defaults", "assets", "characters", "shots"]
SHOT_FIELDS = ["id", "prompt", "duration", "resolution", "aspect_ratio", "audio", "seed", "image", "end_image",
               "references", "method", "cut", "transition", "caption", "camera", "continue_from", "characters"]


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), json_like, max_size=8),
       st.lists(st.dictionaries(st.sampled_from(SHOT_FIELDS), json_like, max_size=8), max_size=4))
@pytest.mark.slow
def test_right_keys_wrong_values(top: dict, shots: list) -> None:
    data = {**top, "shots": shots} if shots else top
    survives(yaml.safe_dump(data, allow_unicode=True))


@pytest.mark.slow
@FUZZ
@given(st.sampled_from(SHOT_FIELDS), json_like)
def test_one_field_of_a_good_storyboard_replaced(field: str, value: object) -> None:
    data = yaml.safe_load(GOOD)
    data["shots"][1][field] = value
    survives(yaml.safe_dump(data, allow_unicode=True))


# --- fuzzing round two: URL spellings, escapes, YAML 1.1 scalars, image modes -------------------------


def spellings(n: int) -> st.SearchStrategy[str]:
    """Ways to write the IPv4 address `n` that the system resolver accepts (inet_aton's forms, IPv6)."""
    a, b, c, d = n.to_bytes(4, "big")
    forms = [str(n), hex(n), f"0{n:o}", f"{a}.{b}.{c}.{d}", f"{a}.{(b << 16) | (c << 8) | d}",
             f"{a}.{b}.{(c << 8) | d}", f"{hex(a)}.{hex(b)}.{c}.{d}", f"{a:#o}.{b}.{c}.{d}".replace("0o", "0"),
             f"[::ffff:{a}.{b}.{c}.{d}]", f"[::ffff:{(a << 8) | b:x}:{(c << 8) | d:x}]", f"[64:ff9b::{a}.{b}.{c}.{d}]"]
    return st.sampled_from(forms)


ADDRESSES = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from(
    [int(ipaddress.ip_address(a)) for a in ("127.0.0.1", "127.255.0.9", "10.0.0.1", "192.168.7.7", "172.20.0.1",
                                           "169.254.169.254", "100.64.3.3", "0.0.0.0", "224.0.0.251", "8.8.8.8")]))


@FUZZ
@given(ADDRESSES.flatmap(lambda n: st.tuples(st.just(n), spellings(n))))
def test_any_spelling_of_an_address_is_judged_as_that_address(case: tuple[int, str]) -> None:
    number, host = case
    addr = ipaddress.IPv4Address(number)
    problem = UrlPolicy().static_problem(f"https://{host}/a.png", https_only=True)
    public = addr.is_global and not addr.is_multicast
    if public:
        assert problem is None or "not a valid URL" in problem, (host, problem)  # httpx may refuse a spelling
    else:
        assert problem is not None, (host, str(addr))


@FUZZ
@given(st.sampled_from(["title", "prompt", "caption"]), st.text(max_size=40))
def test_escaped_characters_never_reach_a_title_prompt_or_caption(field: str, text: str) -> None:
    """Any text, in its escaped YAML form (a JSON string is a YAML double-quoted string)."""
    quoted = json.dumps(text)
    value = {f: quoted if f == field else "p" for f in ("title", "prompt")}
    caption = f"    caption: {quoted}\n" if field == "caption" else ""
    body = f"version: 1\ntitle: {value['title']}\nshots:\n  - id: a\n    prompt: {value['prompt']}\n{caption}"
    try:
        board = parse_storyboard(body, "fuzz.yaml")
    except StoryboardError as exc:
        assert "fuzz.yaml" in str(exc)
        return
    value = board.title if field == "title" else getattr(board.shots[0], field)
    assert value is None or text_problem(value, newlines=field != "title") is None, repr(value)


YAML_11 = ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "~", "null", "1:30", "16:9", "190:20:30", "010", "0x1f",
           "0o17", "0b101", "1_000", ".inf", "-.Inf", ".NaN", "2024-01-01", "2001-12-14t21:59:43.10-05:00", "+12",
           "1e3", "true", "False", "<<", "=", "!!str 5", "0.", ".5", "12e03"]
STRING_FIELDS = ["title", "prompt", "caption", "id", "aspect_ratio", "resolution", "camera", "method"]


@FUZZ
@given(st.sampled_from(STRING_FIELDS), st.sampled_from(YAML_11))
def test_yaml_1_1_scalars_are_text_or_refused_with_a_hint(field: str, scalar: str) -> None:
    shot = {"id": "a", "prompt": "p", field: "@"}
    lines = "".join(f"    {k}: {scalar if v == '@' else v}\n" for k, v in shot.items())
    head = f"version: 1\ntitle: {scalar if field == 'title' else 't'}\n"
    body = head + "shots:\n  -" + lines[3:] if field != "title" else head + "shots:\n  - id: a\n    prompt: p\n"
    try:
        board = parse_storyboard(body, "fuzz.yaml")
    except StoryboardError as exc:
        message = str(exc)
        assert "fuzz.yaml" in message
        if "valid string" in message:
            assert "quote it" in message, message
        return
    value = board.title if field == "title" else getattr(board.shots[0], field)
    assert isinstance(value, str) or (value is None and scalar in ("~", "null")), (scalar, value)  # null: not given


MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "I;16B", "LAB", "HSV", "F"]
FORMATS = ["PNG", "JPEG", "TIFF", "WEBP", "BMP", "GIF"]


def random_image(mode: str, w: int, h: int, seed: int):  # type: ignore[no-untyped-def]
    from PIL import Image

    rng = np.random.default_rng(seed)
    if mode.startswith("I;16") or mode == "I":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)).convert(mode)
    rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), mode="RGBA")
    return rgba.convert(mode) if mode in ("LA", "RGBA", "PA") else rgba.convert("RGB").convert(mode)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FORMATS), st.sampled_from(MODES), st.integers(1, 9), st.integers(1, 40), st.integers(1, 40),
       st.integers(0, 2**16))
def test_every_image_mode_pillow_opens_becomes_an_upright_8_bit_rgb_frame(fmt: str, mode: str, orientation: int,
                                                                          w: int, h: int, seed: int) -> None:
    """Whatever mode a format stores, with any EXIF orientation (even an invalid one): an upright RGB image
    of the right size, or (32-bit float only) a clear refusal."""
    from PIL import Image

    from storyfilm.images import image_problem, to_rgb, upright_rgb

    try:
        img = random_image(mode, w, h, seed)
    except (ValueError, OSError):
        return  # Pillow has no conversion to this mode
    exif = Image.Exif()
    exif[0x0112] = orientation
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "still"
        try:
            img.save(path, format=fmt, exif=exif)
        except (OSError, ValueError, KeyError, TypeError):
            return  # this format cannot store this mode
        problem = image_problem(path)
        try:
            with Image.open(path) as saved:
                saved.load()  # what a viewer sees: the pixels as loaded, turned by the orientation left
                stored, loaded = saved.getexif().get(0x0112, 1), saved.size
        except (OSError, ValueError, SyntaxError):  # Pillow cannot read back what it wrote (YCbCr TIFF)
            assert problem is not None and "not an image Pillow can read" in problem
            return
        if problem is not None:
            assert "floating-point" in problem, problem
            return
        out = upright_rgb(path, Path(tmp) / "upright.png")
        with Image.open(out) as done:
            assert done.mode in ("RGB", "L") and done.format in ("PNG", "JPEG", "WEBP")
            assert done.getexif().get(0x0112, 1) == 1 or out == path and stored == 1
            assert done.size == (loaded[::-1] if stored in (5, 6, 7, 8) else loaded), (fmt, mode, stored, done.size)
            assert to_rgb(done).mode == "RGB"


@pytest.mark.parametrize("text", [
    "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                                                for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
    "[" * 5000 + "]" * 5000,
    "version: 1\ntitle: x\nshots: !!binary aGVsbG8=\n",
    "--- {}\n--- {}\n",
    "\x00\x01\x02",
], ids=["alias bomb", "deep nesting", "binary tag", "two documents", "control characters"])
def test_pathological_yaml(text: str) -> None:
    with pytest.raises(StoryboardError):
        parse_storyboard(text, "bad.yaml")


@pytest.mark.parametrize("shot_id", ["../x", "/etc/passwd", "", "a" * 65, "café", "UPPER", "a b", "x\ny"])
def test_unsafe_shot_ids_are_refused(storyboard_dir: Path, shot_id: str) -> None:
    data = yaml.safe_load(GOOD)
    data["shots"][1]["id"] = shot_id
    with pytest.raises(StoryboardError, match=r"shots\[1\]\.id"):
        load_storyboard(write_storyboard(storyboard_dir, yaml.safe_dump(data)))


@pytest.mark.slow
def test_a_thousand_shots_validate_and_plan(tmp_path: Path) -> None:
    shots = "".join(f"  - id: s{i}\n    prompt: shot {i}\n" + ("    cut: true\n" if i % 10 == 0 else "")
                    for i in range(1000))
    path = write_storyboard(tmp_path, f"version: 1\ntitle: Big\ndefaults: {{duration: 2}}\nshots:\n{shots}")
    result = CliRunner().invoke(app, ["plan", str(path), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "chains (100)" in result.output and "1000 new" in result.output
    assert not (tmp_path / "out").exists()  # plan is free and writes nothing


def test_unreadable_and_odd_files(tmp_path: Path) -> None:
    directory = tmp_path / "dir.yaml"
    directory.mkdir()
    with pytest.raises(StoryboardError, match="not a regular file"):
        load_storyboard(directory)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("title: caf\xe9\n".encode("latin-1"))
    with pytest.raises(StoryboardError, match="not UTF-8"):
        load_storyboard(latin)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"# " + b"x" * 6_000_000)
    with pytest.raises(StoryboardError, match="at most"):
        load_storyboard(huge)


# --- assets a creator (or a shared storyboard) can point at ---------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels (and holds none): what an image bomb looks like to a reader."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def hostile_asset(directory: Path, kind: str) -> str:
    """Make the asset `kind` under directory/refs; the reference to put in the storyboard."""
    refs = directory / "refs"
    refs.mkdir(exist_ok=True)
    target = refs / f"{kind}.png"
    if kind == "directory":
        target.mkdir()
    elif kind == "device":
        target.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "loop":
        target.symlink_to(refs / "loop.png")
    elif kind == "dangling":
        target.symlink_to(refs / "gone.png")
    elif kind == "bomb":
        target.write_bytes(png_header(100_000, 100_000))
    elif kind == "pixels":
        target.write_bytes(png_header(9000, 5000))
    elif kind == "truncated":
        good = write_image(refs / "whole.png", (320, 180), seed=3).read_bytes()
        target.write_bytes(good[: len(good) // 2])
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "unreadable":
        write_image(target)
        target.chmod(0)
    return f"refs/{kind}.png"


ASSETS = {"directory": "is not a file", "device": "is not a file", "fifo": "is not a file",
          "loop": "cannot be read", "dangling": "not found", "bomb": "decompression bomb",
          "pixels": "has 9000x5000 pixels", "truncated": "not an image", "empty": "not an image",
          "unreadable": "not readable"}


@pytest.mark.parametrize("kind", list(ASSETS))
def test_assets_that_are_not_usable_images(tmp_path: Path, kind: str) -> None:
    if kind == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads any file")
    ref = hostile_asset(tmp_path, kind)
    path = write_storyboard(tmp_path, f"version: 1\ntitle: t\nassets:\n  still: {ref}\n"
                                      "shots:\n  - id: a\n    image: still\n    prompt: p\n")
    with pytest.raises(StoryboardError) as info:
        load_storyboard(path, roots=[Path("/dev")])  # the device's link leads out of the folder: allowed here
    message = str(info.value)
    assert message.startswith(f"{path}:4: assets.still: '{ref}' ") and ASSETS[kind] in message, message


def test_continue_from_cannot_make_a_cycle(storyboard_dir: Path) -> None:
    """A shot may only continue an EARLIER shot, so the shot graph is a forest by construction: a cycle
    always contains a reference forward, and that is refused."""
    text = ("version: 1\ntitle: t\nshots:\n  - id: a\n    continue_from: c\n    prompt: p\n"
            "  - id: b\n    continue_from: a\n    prompt: p\n  - id: c\n    continue_from: b\n    prompt: p\n")
    with pytest.raises(StoryboardError) as info:
        load_storyboard(write_storyboard(storyboard_dir, text))
    assert ":5: shots[0].continue_from (shot 'a'): 'c': it comes later" in str(info.value)
    assert len(info.value.problems) == 1  # b -> a and c -> b point backwards: fine on their own


@pytest.mark.parametrize(("line", "value", "field", "words"), [
    ("  duration: 2", "  duration: -5", "defaults.duration", "greater than or equal to 1"),
    ("  duration: 2", "  duration: 2.5", "defaults.duration", "integer"),
    ("  duration: 2", "  duration: 1000000000000000000000000000000", "defaults.duration", "less than or equal to 60"),
    ("  resolution: 480p", "  resolution: 99999p", "defaults.resolution", "'480p', '720p' or '1080p'"),
    ("  resolution: 480p", "  resolution: -1", "defaults.resolution", "'480p', '720p' or '1080p'"),
    ("  duration: 2", "  duration: 2\n  aspect_ratio: '0:0'", "defaults.aspect_ratio", "'16:9'"),
    ("  duration: 2", "  duration: 2\n  seed: -1", "defaults.seed", "greater than or equal to 0"),
    ("title: Test Film", "title: Test Film\nbudget_usd: -3", "budget_usd", "greater than or equal to 0"),
    ("    prompt: second", "    prompt: second\n    transition: {type: crossfade, duration: 1000}",
     "shots[1].transition.duration", "less than or equal to 5"),
])
def test_absurd_values(storyboard_dir: Path, line: str, value: str, field: str, words: str) -> None:
    path = write_storyboard(storyboard_dir, GOOD.replace(line, value, 1))
    with pytest.raises(StoryboardError) as info:
        load_storyboard(path)
    assert f"{path}:" in str(info.value) and field in str(info.value) and words in str(info.value), str(info.value)


def test_https_assets_are_checked_like_host_outputs(tmp_path: Path) -> None:
    """A storyboard from elsewhere cannot make us fetch an internal address or keep something not an image;
    a loopback asset server is reached only when the user allows its network by name."""
    still = write_image(tmp_path / "still.png").read_bytes()
    with static_server({"/still.png": (200, {}, still), "/page": (200, {}, b"<html>hello</html>"),
                "/bomb.png": (200, {}, png_header(100_000, 100_000)),
                "/hop": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"")}) as base:
        board = parse_storyboard("version: 1\ntitle: t\nshots:\n  - id: a\n    prompt: p\n", "remote.yaml")
        cache = tmp_path / "cache"
        with pytest.raises(StoryboardError, match=r"127\.0\.0\.1 \(loopback, this machine\) is not a public"):
            assets._download(f"{base}/still.png", cache / "ok", board, "still", UrlPolicy())
        allowed = UrlPolicy(networks=(ipaddress.ip_network("127.0.0.1/32"),))
        assets._download(f"{base}/still.png", cache / "ok", board, "still", allowed)
        assert (cache / "ok").read_bytes() == still
        for route, words in (("/page", "not a PNG/JPEG/WebP image"), ("/bomb.png", "decompression bomb"),
                             ("/hop", "169.254.169.254 (link-local")):
            with pytest.raises(StoryboardError, match=re.escape(words)):
                assets._download(f"{base}{route}", cache / "bad", board, "still", allowed)
        assert sorted(p.name for p in cache.iterdir()) == ["ok"]


# --- nothing is written outside output/<slug>/ ---------------------------------------------------


def tree(root: Path) -> dict[str, str]:
    """Every path under root with what it is: a link's target, "dir", or a regular file's sha256."""
    def what(p: Path) -> str:
        if p.is_symlink():
            return f"-> {os.readlink(p)}"
        return "dir" if p.is_dir() else assets.file_digest(p) if p.is_file() else "special"

    return {str(p.relative_to(root)): what(p) for p in sorted(root.rglob("*"))}


@pytest.mark.slow
def test_the_cli_writes_only_under_output_slug(prefect_server: None, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile storyboards through validate, plan and run change nothing; a good one adds only output/<slug>/."""
    project = tmp_path / "project"
    write_image(project / "refs" / "a.png", seed=1)
    write_image(project / "refs" / "b.png", seed=2)
    for kind in ("bomb", "device", "truncated"):
        hostile_asset(project, kind)
    boards = {f"bad-{i}.yaml": text for i, (_, text, *_rest) in enumerate(BAD)}
    boards["bad-id.yaml"] = GOOD.replace("id: two", "id: ../../escape")
    boards["bad-asset.yaml"] = GOOD.replace("b: refs/b.png", "b: refs/bomb.png")
    boards["bad-device.yaml"] = GOOD.replace("b: refs/b.png", "b: refs/device.png")
    boards["..yaml"] = GOOD.replace("a: refs/a.png", "a: /etc/passwd")
    for name, text in boards.items():
        write_storyboard(project, text, name)
    (project / "notes.txt").write_text("not an image")
    monkeypatch.chdir(project)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = tree(project)
    runner = CliRunner()
    for name in boards:
        for command in ("validate", "plan", "run"):
            result = runner.invoke(app, [command, name])
            assert result.exit_code == 1 and "Traceback" not in result.output, (name, command, result.output)
            assert result.exception is None or isinstance(result.exception, SystemExit), (name, command)
    assert tree(project) == before

    write_storyboard(project, GOOD.replace("  duration: 2", "  duration: 1")
                     .replace("title: Test Film", "title: ../../../escape"), "../project/good film.yaml")
    before = tree(project)
    result = runner.invoke(app, ["run", "good film.yaml"])
    assert result.exit_code == 0, result.output
    after = tree(project)
    added = set(after) - set(before)
    folder = f"output{os.sep}{slugify('good film')}"  # a name with a space: good-film--<hash>
    assert added and all(p == "output" or p == folder or p.startswith(folder + os.sep) for p in added), added
    assert {p: after[p] for p in before} == before  # nothing changed either
    assert (project / folder / "film.mp4").is_file()
    assert list(scratch.iterdir()) == []  # temporary files are cleaned up

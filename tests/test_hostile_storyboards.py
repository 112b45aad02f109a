"""Hostile storyboards: whatever a file contains, the loader answers with a StoryboardError or a storyboard.

Never another exception (no traceback for a user's file), and never a write outside output/<slug>/.
"""

from __future__ import annotations

import os
import re
import string
import struct
import tempfile
import zlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from storyfilm import assets
from storyfilm.cli import app
from storyfilm.errors import StoryboardError
from storyfilm.storyboard import load_storyboard, parse_storyboard

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
FIELDS = ["version", "title", "provider", "model", "budget_usd", "defaults", "assets", "shots"]
SHOT_FIELDS = ["id", "prompt", "duration", "resolution", "aspect_ratio", "audio", "seed", "image", "end_image",
               "references", "method", "cut", "transition", "caption", "camera", "continue_from"]


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
        load_storyboard(path)
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
    """A storyboard from elsewhere cannot make us fetch an internal address or keep something not an image."""
    still = write_image(tmp_path / "still.png").read_bytes()
    with static_server({"/still.png": (200, {}, still), "/page": (200, {}, b"<html>hello</html>"),
                "/bomb.png": (200, {}, png_header(100_000, 100_000)),
                "/hop": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"")}) as base:
        board = parse_storyboard("version: 1\ntitle: t\nshots:\n  - id: a\n    prompt: p\n", "remote.yaml")
        cache = tmp_path / "cache"
        assets._download(f"{base}/still.png", cache / "ok", board, "still")
        assert (cache / "ok").read_bytes() == still
        for route, words in (("/page", "not a PNG/JPEG/WebP image"), ("/bomb.png", "decompression bomb"),
                             ("/hop", "169.254.169.254 (link-local")):
            with pytest.raises(StoryboardError, match=re.escape(words)):
                assets._download(f"{base}{route}", cache / "bad", board, "still")
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
    assert added and all(p == "output" or p.startswith(f"output{os.sep}good-film") for p in added), added
    assert {p: after[p] for p in before} == before  # nothing changed either
    assert (project / "output" / "good-film" / "film.mp4").is_file()
    assert list(scratch.iterdir()) == []  # temporary files are cleaned up

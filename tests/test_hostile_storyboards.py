"""Hostile storyboards: whatever a file contains, the loader answers with a StoryboardError or a storyboard.

Never another exception (no traceback for a user's file), and never a write outside output/<slug>/.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from storyfilm.cli import app
from storyfilm.errors import StoryboardError
from storyfilm.storyboard import load_storyboard, parse_storyboard

from .helpers import write_storyboard
from .test_storyboard import GOOD

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def survives(text: str) -> None:
    try:
        parse_storyboard(text, "fuzz.yaml")
    except StoryboardError as exc:
        assert "fuzz.yaml" in str(exc)


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
def test_right_keys_wrong_values(top: dict, shots: list) -> None:
    data = {**top, "shots": shots} if shots else top
    survives(yaml.safe_dump(data, allow_unicode=True))


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

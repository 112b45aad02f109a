"""The storyboard format: what parses, and the errors a creator sees for what does not."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storyfilm.cli import app
from storyfilm.errors import StoryboardError
from storyfilm.storyboard import continues_from, json_schema, load_storyboard

from .helpers import REPO, write_storyboard

GOOD = """\
version: 1
title: Test Film
defaults:
  duration: 2
  resolution: 480p
assets:
  a: refs/a.png
  b: refs/b.png
shots:
  - id: one
    prompt: first
    image: a
  - id: two
    prompt: second
  - id: three
    cut: true
    prompt: third
    references: [b]
  - id: four
    continue_from: one
    prompt: fourth
    end_image: b
"""


def test_good_storyboard_parses_every_field(storyboard_dir: Path) -> None:
    board = load_storyboard(write_storyboard(storyboard_dir, GOOD))
    assert [s.id for s in board.shots] == ["one", "two", "three", "four"]
    assert board.defaults.duration == 2 and board.defaults.resolution == "480p"
    assert board.slug == "board"
    assert [continues_from(board, i) for i in range(4)] == [None, "one", None, "one"]


def test_examples_in_the_repo_are_valid() -> None:
    for path in sorted((REPO / "storyboards").glob("*.yaml")):
        load_storyboard(path)


def test_json_schema_describes_the_format() -> None:
    schema = json_schema()
    assert schema["required"] == ["version", "title", "shots"]
    shot = schema["$defs"]["Shot"]["properties"]
    assert shot["id"]["pattern"] == "^[a-z0-9_-]{1,64}$"
    assert set(shot["resolution"]["anyOf"][0]["enum"]) == {"480p", "720p", "1080p"}
    assert "continue_from" in shot and "references" in shot


# (storyboard text, line, field, words the message must contain)
BAD: list[tuple[str, str, int | None, str, list[str]]] = [
    ("yaml syntax", "version: 1\ntitle: x\nshots:\n  - id: a\n    prompt: \"unclosed\n", 5, "",
     ["invalid YAML"]),
    ("tab indentation", "version: 1\ntitle: x\nshots:\n\t- id: a\n", 4, "", ["invalid YAML"]),
    ("wrong type", GOOD.replace("  duration: 2", "  duration: five"), 4, "defaults.duration",
     ["valid integer"]),
    ("unknown field", GOOD.replace("    prompt: second", "    promt: second"), 14, "shots[1].promt",
     ["unknown field", "prompt"]),
    ("duplicate id", GOOD.replace("id: three", "id: two"), 15, "shots[2].id", ["duplicate shot id 'two'"]),
    ("continue_from later", GOOD.replace("    prompt: second", "    prompt: second\n    continue_from: four"),
     15, "shots[1].continue_from", ["comes later"]),
    ("continue_from itself", GOOD.replace("continue_from: one", "continue_from: four"), 20,
     "shots[3].continue_from", ["itself"]),
    ("unknown asset", GOOD.replace("    image: a", "    image: zebra"), 12, "shots[0].image",
     ["unknown asset 'zebra'", "a, b"]),
    ("references with frames", GOOD.replace("    cut: true\n", ""), 17, "shots[2].references",
     ["reference images together with first/last frames"]),
    ("bad resolution", GOOD.replace("resolution: 480p", "resolution: 4k"), 5, "defaults.resolution",
     ["'480p', '720p' or '1080p'"]),
    ("zero duration", GOOD.replace("  duration: 2", "  duration: 0"), 4, "defaults.duration",
     ["greater than or equal to 1"]),
    ("huge duration", GOOD.replace("  duration: 2", "  duration: 100000"), 4, "defaults.duration",
     ["less than or equal to 60"]),
    ("missing title", GOOD.replace("title: Test Film\n", ""), None, "title", ["missing"]),
    ("wrong version", GOOD.replace("version: 1", "version: 2"), 1, "version", ["1"]),
    ("not a mapping", "- just\n- a list\n", 1, "", ["mapping"]),
    ("duplicate yaml key", GOOD.replace("    prompt: first", "    prompt: first\n    prompt: again"), 12, "",
     ["duplicate key 'prompt'"]),
    ("unsafe id", GOOD.replace("id: two", "id: ../x"), 13, "shots[1].id", ["pattern"]),
    ("cut and continue_from", GOOD.replace("continue_from: one", "continue_from: one\n    cut: true"), 21,
     "shots[3].cut", ["contradict"]),
    ("missing asset file", GOOD.replace("b: refs/b.png", "b: refs/nope.png"), 8, "assets.b", ["not found"]),
    ("asset not an image", GOOD.replace("b: refs/b.png", "b: notes.txt"), 8, "assets.b", ["not an image"]),
    ("empty file", "", None, "", ["mapping", "empty"]),
    ("http asset", GOOD.replace("b: refs/b.png", "b: http://example.com/b.png"), 8, "assets.b", ["https"]),
    ("no prompt", GOOD.replace("    prompt: second\n", ""), 13, "shots[1].prompt", ["needs a prompt"]),
    ("python tag", GOOD.replace("title: Test Film", "title: !!python/object/apply:os.system [ls]"), 2, "",
     ["unsupported YAML tag"]),
]


@pytest.mark.parametrize(("case", "text", "line", "field", "words"), BAD, ids=[b[0] for b in BAD])
def test_malformed_storyboards_name_line_and_field(storyboard_dir: Path, case: str, text: str,
                                                   line: int | None, field: str, words: list[str]) -> None:
    (storyboard_dir / "notes.txt").write_text("not an image")
    path = write_storyboard(storyboard_dir, text)
    with pytest.raises(StoryboardError) as info:
        load_storyboard(path)
    message = str(info.value)
    assert str(path) in message
    if line is not None:
        assert f"{path}:{line}:" in message, message
    assert field in message
    for word in words:
        assert word in message, message


def test_all_problems_are_reported_at_once(storyboard_dir: Path) -> None:
    text = GOOD.replace("  duration: 2", "  duration: 0").replace("resolution: 480p", "resolution: 4k")
    with pytest.raises(StoryboardError) as info:
        load_storyboard(write_storyboard(storyboard_dir, text))
    assert len(info.value.problems) == 2
    assert "2 problem(s)" in str(info.value)


def test_cli_validate_prints_errors_without_traceback(storyboard_dir: Path) -> None:
    path = write_storyboard(storyboard_dir, GOOD.replace("id: three", "id: two"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:15: shots[2].id" in result.output
    assert "Traceback" not in result.output
    ok = CliRunner().invoke(app, ["validate", str(write_storyboard(storyboard_dir, GOOD, "good.yaml"))])
    assert ok.exit_code == 0 and "4 shots" in ok.output


def test_cli_schema_is_json() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "storyfilm storyboard (v1)"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoryboardError, match="no such file"):
        load_storyboard(tmp_path / "nope.yaml")


def test_inline_lines_point_into_nested_fields(storyboard_dir: Path) -> None:
    text = textwrap.dedent("""\
        version: 1
        title: t
        shots:
          - id: a
            prompt: p
            transition: {type: wipe}
        """)
    with pytest.raises(StoryboardError) as info:
        load_storyboard(write_storyboard(storyboard_dir, text))
    assert ":6: shots[0].transition.type (shot 'a')" in str(info.value)


# --- YAML 1.2 scalars, strict types, merge keys ---------------------------------------------------------

SHOT = "version: 1\ntitle: t\nshots:\n  - id: a\n    prompt: p\n"


@pytest.mark.parametrize(("line", "field", "words"), [
    ("    duration: true", "shots[0].duration", "true is a boolean, not a number"),
    ("    seed: false", "shots[0].seed", "false is a boolean, not a number"),
    ("    duration: '5'", "shots[0].duration", "a quoted value is text"),
    ("    duration: 5.0", "shots[0].duration", "valid integer"),
    ("    audio: yes", "shots[0].audio", "write true or false; 'yes' is text here"),
    ("    cut: on", "shots[0].cut", "write true or false; 'on' is text here"),
    ("    audio: 1", "shots[0].audio", "valid boolean"),
    ("    caption: 42", "shots[0].caption", "YAML reads 42 as a number; to mean the text, quote it: '42'"),
    ("    caption: null", "", ""),  # null is "not given": fine
    ("    transition: {type: crossfade, duration: .nan}", "shots[0].transition.duration", "finite number"),
    ("    transition: {type: crossfade, duration: true}", "shots[0].transition.duration", "boolean, not a number"),
])
def test_yaml_values_are_typed_strictly_with_a_hint(tmp_path: Path, line: str, field: str, words: str) -> None:
    path = write_storyboard(tmp_path, SHOT + line + "\n")
    if not field:
        load_storyboard(path)
        return
    with pytest.raises(StoryboardError) as info:
        load_storyboard(path)
    assert f"{path}:6: {field}" in str(info.value) and words in str(info.value), str(info.value)


@pytest.mark.parametrize(("text", "field", "words"), [
    ("version: true\ntitle: t\nshots: [{id: a, prompt: p}]", "version",
     "true is a boolean; the version is the number 1"),
    ("version: 1\ntitle: 2024\nshots: [{id: a, prompt: p}]", "title",
     "YAML reads 2024 as a number; to mean the text, quote it"),
    ("version: 1\ntitle: t\nshots: [{id: true, prompt: p}]", "shots[0].id", "quote it: 'true'"),
    ("version: 1\ntitle: t\nbudget_usd: .inf\nshots: [{id: a, prompt: p}]", "budget_usd", "finite number"),
    ("version: 1\ntitle: t\nloudness_lufs: .nan\nshots: [{id: a, prompt: p}]", "loudness_lufs", "finite number"),
])
def test_top_level_traps(tmp_path: Path, text: str, field: str, words: str) -> None:
    with pytest.raises(StoryboardError) as info:
        load_storyboard(write_storyboard(tmp_path, text))
    assert f": {field}" in str(info.value) and words in str(info.value), str(info.value)


@pytest.mark.parametrize(("line", "attr", "value"), [
    ("    id: on", "id", "on"), ("    id: no", "id", "no"), ("    aspect_ratio: 16:9", "aspect_ratio", "16:9"),
    ("    aspect_ratio: 9:16", "aspect_ratio", "9:16"), ("    duration: 010", "duration", 10),
    ("    seed: 0x10", "seed", 16), ("    seed: 0o17", "seed", 15),
    ("    caption: 2024-01-01", "caption", "2024-01-01"), ("    caption: 1:30", "caption", "1:30"),
    ("    caption: yes", "caption", "yes"), ("    audio: false", "audio", False),
])
def test_yaml_1_2_reads_what_was_written(tmp_path: Path, line: str, attr: str, value: object) -> None:
    """YAML 1.1's booleans (on/no), base-60 numbers (16:9 = 969), octal (010 = 8) and dates are text or
    decimal here."""
    text = SHOT.replace("  - id: a\n", "  - " + line.strip() + "\n") if attr == "id" else SHOT + line + "\n"
    board = load_storyboard(write_storyboard(tmp_path, text))
    assert getattr(board.shots[0], attr) == value


def test_merge_keys_and_overrides_work_as_yaml_defines_them(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        version: 1
        title: t
        defaults: &base {duration: 2, resolution: 480p, camera: static}
        shots:
          - &first
            id: a
            prompt: p
            <<: *base
            duration: 3
          - <<: [*first, *base]
            id: b
            camera: push_in
          - <<: *first
            id: c
            id: d
        """)
    with pytest.raises(StoryboardError, match=r":15: duplicate key 'id'"):
        load_storyboard(write_storyboard(tmp_path, text))  # a mapping's own keys are still unique
    board = load_storyboard(write_storyboard(tmp_path, text.replace("    id: d\n", "")))
    a, b, c = board.shots
    assert (a.id, a.duration, a.resolution, a.camera) == ("a", 3, "480p", "static")  # its own key wins
    assert (b.id, b.duration, b.resolution, b.camera) == ("b", 3, "480p", "push_in")  # the first merge wins
    assert (c.id, c.prompt, c.duration) == ("c", "p", 3)


def test_asset_names_must_match_their_pattern_exactly(tmp_path: Path) -> None:
    for name in ('"a\\nb"', '"a b"', '"../x"', '"é"'):
        text = f"version: 1\ntitle: t\nassets:\n  {name}: https://example.com/a.png\nshots: [{{id: s, prompt: p}}]\n"
        with pytest.raises(StoryboardError, match="must match"):
            load_storyboard(write_storyboard(tmp_path, text))
    text = "version: 1\ntitle: t\nshots: [{id: s, prompt: p, image: \"a\\nb\"}]\n"
    with pytest.raises(StoryboardError, match=r"shots\[0\]\.image.*pattern"):
        load_storyboard(write_storyboard(tmp_path, text))

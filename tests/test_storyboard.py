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

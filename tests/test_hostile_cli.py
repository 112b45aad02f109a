"""Hostile input through the command line: no connection to a non-public address without the opt-in,
`validate` catching what `plan` and `run` would, no traceback or terminal escape for any input, numbers
range-checked before Prefect sees them, and film folders that never mix two storyboards."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from storyfilm import film_folder
from storyfilm.cli import app
from storyfilm.errors import PlanError
from storyfilm.storyboard import slugify

from .helpers import write_image, write_storyboard
from .netlab import HttpsServers, Listeners, send, trusting

ONE_SHOT = "shots:\n  - id: a\n    prompt: a quiet harbour\n    duration: 1\n"


@pytest.fixture(autouse=True)
def no_opt_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--allow-network` and `--allow-assets-from` put the opt-in into this process's environment (for the
    flow): start each test without, and take back what a command added."""
    monkeypatch.setenv("STORYFILM_ALLOW_NETWORKS", "")
    monkeypatch.setenv("STORYFILM_ASSET_ROOTS", "")


def asset_board(ref: str, head: str = "version: 1\ntitle: T\n") -> str:
    return f"{head}assets:\n  still: {ref}\n{ONE_SHOT}    image: still\n"


def cli(*argv: str) -> tuple[int, str]:
    """Exit code and output, its lines joined (the console wraps long lines, and boxes usage errors)."""
    result = CliRunner().invoke(app, list(argv))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output, result.output
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


SPELLINGS = ["127.0.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "127.1", "127.0.1", "017700000001",
             "0177.0.0.01", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "localhost", "LocalHost.", "app.localhost",
             "127.0.0.2", "2130706434", "0x7f000002", "0x7f.2", "[::ffff:127.0.0.2]", "[64:ff9b::7f00:2]"]


def test_run_connects_to_no_spelling_of_a_loopback_address_without_the_opt_in(tmp_path: Path) -> None:
    """Listeners on 127.0.0.1 and 127.0.0.2 count every connection `storyfilm run` makes, spelling by spelling."""
    with Listeners(("127.0.0.1", "127.0.0.2")) as listeners:
        for i, spelling in enumerate(SPELLINGS):
            url = f"https://{spelling}:{listeners.port}/still.png"
            path = write_storyboard(tmp_path, asset_board(url), f"b{i}.yaml")
            code, output = cli("run", str(path), "--output", str(tmp_path / "out"))
            assert code == 1 and f"{path}:4: assets.still: " in output, (spelling, output)
            assert "is not a public address" in output or "is not a valid URL" in output, output
            assert listeners.total == 0, (spelling, dict(listeners.counts))
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_validate_refuses_every_spelling_too(tmp_path: Path) -> None:
    for i, spelling in enumerate(SPELLINGS):
        path = write_storyboard(tmp_path, asset_board(f"https://{spelling}/still.png"), f"b{i}.yaml")
        code, output = cli("validate", str(path))
        assert code == 1 and ("is not a public address" in output or "is not a valid URL" in output), output


@pytest.mark.slow
def test_an_asset_server_on_a_network_the_user_allowed_is_used(prefect_server: None, tmp_path: Path) -> None:
    """The opt-in works end to end: HTTPS to a name on loopback (the test CA trusted), the film is made, and
    only the allowed address was connected to."""
    still = write_image(tmp_path / "src.png", (320, 180), seed=4).read_bytes()
    with HttpsServers({"/still.png": send(still)}, tmp_path) as servers, trusting(servers.ca_file):
        path = write_storyboard(tmp_path, asset_board(f"https://localhost:{servers.port}/still.png"))
        code, output = cli("run", str(path), "--output", str(tmp_path / "out"))
        assert code == 1 and servers.total == 0, output  # without the opt-in: refused, nothing connected
        code, output = cli("run", str(path), "--output", str(tmp_path / "out"), "--allow-network", "127.0.0.1/32")
        assert code == 0, output
    assert (tmp_path / "out" / "board" / "film.mp4").is_file()
    assert servers.counts["127.0.0.1"] >= 1 and servers.counts["127.0.0.2"] == 0
    assert [h for _, h in servers.hosts] == [f"localhost:{servers.port}"]


def test_an_opt_in_that_is_not_a_network_is_a_usage_error(tmp_path: Path) -> None:
    path = write_storyboard(tmp_path, asset_board("https://10.1.2.3/still.png"))
    code, output = cli("validate", str(path), "--allow-network", "10.1.2.3/8")
    assert code == 2 and "is not a network" in output
    code, output = cli("validate", str(path), "--allow-network", "10.0.0.0/8")
    assert code == 0 and "checked against local (standard)" in output, output


# --- assets outside the storyboard's folder ----------------------------------------------------------


@pytest.mark.parametrize("how", ["dotdot", "absolute", "link", "dotdot-inside"])
def test_assets_outside_the_storyboards_folder_are_refused(tmp_path: Path, how: str) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    secret = write_image(elsewhere / "secret.png")
    ref = {"dotdot": "../elsewhere/secret.png", "absolute": str(secret), "link": "refs/link.png",
           "dotdot-inside": "refs/../../elsewhere/secret.png"}[how]
    if how == "link":
        (project / "refs").mkdir(parents=True)
        (project / "refs" / "link.png").symlink_to(secret)
    project.mkdir(exist_ok=True)
    path = write_storyboard(project, asset_board(ref))
    for command in ("validate", "plan", "run"):
        code, output = cli(command, str(path), "--output", str(tmp_path / "out"))
        assert code == 1 and f"'{ref}' is outside the storyboard's folder" in output, (command, output)
    code, output = cli("validate", str(path), "--allow-assets-from", str(elsewhere))
    assert code == 0, output


def test_assets_inside_the_folder_through_links_and_dotdot_are_fine(tmp_path: Path) -> None:
    write_image(tmp_path / "refs" / "a.png")
    (tmp_path / "refs" / "alias.png").symlink_to(tmp_path / "refs" / "a.png")
    path = write_storyboard(tmp_path, asset_board("refs/../refs/alias.png"))
    code, output = cli("validate", str(path))
    assert code == 0, output


# --- validate: every check that needs no network and no key --------------------------------------------


@pytest.mark.parametrize(("head", "shot", "words"), [
    ("provider: wavespeed\n", "    duration: 3\n", "3 s is outside wavespeed (standard, text-to-video)'s range 4-15 s"),
    ("provider: gateway\n", "    duration: 4\n", "4 s is outside gateway (standard)'s range 5-15 s"),
    ("provider: gateway\n", "    duration: 5\n    aspect_ratio: '4:3'\n", "4:3 is not offered by gateway (standard)"),
    ("provider: gateway\nmodel: fast\n", "    duration: 5\n    resolution: 1080p\n",
     "1080p is not offered by gateway (fast)"),
    ("provider: wavespeed\nbudget_usd: 0.5\n", "    duration: 10\n", "over the budget of $0.50"),
])
def test_validate_checks_the_declared_providers_limits_and_budget(tmp_path: Path, head: str, shot: str,
                                                                  words: str) -> None:
    text = f"version: 1\ntitle: T\n{head}shots:\n  - id: a\n    prompt: p\n{shot}"
    path = write_storyboard(tmp_path, text)
    for command in ("validate", "plan"):
        code, output = cli(command, str(path), "--output", str(tmp_path / "out"))
        assert code == 1 and words in output, (command, output)


def test_validate_says_which_provider_it_checked(tmp_path: Path) -> None:
    text = "version: 1\ntitle: T\nprovider: apiframe\nmodel: fast\nshots:\n  - id: a\n    prompt: p\n    duration: 4\n"
    code, output = cli("validate", str(write_storyboard(tmp_path, text)))
    assert code == 0 and "checked against apiframe (fast)" in output, output


@pytest.mark.parametrize(("ref", "words"), [
    ("https://[::1/still.png", "is not a valid URL"),
    ("https://10.1.2.3/still.png", "10.1.2.3 (private network) is not a public address"),
    ("https://169.254.169.254/latest/meta-data", "cloud metadata service"),
    ("https://example.com:99999/a.png", "port 99999"),
    ("ftp://example.com/a.png", "only https:// URLs"),
    ("HTTP://example.com/a.png", "only https:// URLs"),
    ("https://user:hunter2@example.com/a.png", "user name or password"),
])
def test_validate_refuses_url_problems_that_need_no_network(tmp_path: Path, ref: str, words: str) -> None:
    path = write_storyboard(tmp_path, asset_board(f'"{ref}"'))
    code, output = cli("validate", str(path))
    assert code == 1 and words in output and "hunter2" not in output, output


# --- no traceback, no escape ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_a_nul_byte_in_an_asset_path_is_an_error(tmp_path: Path, command: str) -> None:
    code, output = cli(command, str(write_storyboard(tmp_path, asset_board('"refs/a\\0.png"'))))
    assert code == 1 and "assets.still: the path contains a NUL byte" in output, output


@pytest.mark.parametrize("title", ["[/]", "[bold]x[/bold]", "[link=file:///etc/passwd]x", "a [/] b \\\\"])
def test_titles_with_rich_markup_are_shown_as_written(tmp_path: Path, title: str) -> None:
    path = write_storyboard(tmp_path, f"version: 1\ntitle: '{title}'\n{ONE_SHOT}")
    for command in ("validate", "plan"):
        code, output = cli(command, str(path), "--output", str(tmp_path / "out"))
        assert code == 0 and title in output, (command, output)


@pytest.mark.parametrize(("field", "value"), [
    ("title", '"x\\e[2J\\e]0;pwned\\a"'), ("title", '"right\\u202Egnp.exe"'), ("title", '"a\\u2066b"'),
    ("caption", '"a\\0b"'), ("caption", '"a\\x9bc"'), ("caption", '"\\u202Dx"'), ("prompt", '"a\\e[31mred"'),
    ("prompt", '"\\x7f"'),
])
def test_control_and_bidi_characters_are_refused_with_the_field_named(tmp_path: Path, field: str,
                                                                      value: str) -> None:
    shot = ONE_SHOT.replace("prompt: a quiet harbour", f"{field}: {value}") if field == "prompt" else \
        f"{ONE_SHOT}    {field}: {value}\n"
    text = f"version: 1\ntitle: {value}\n{ONE_SHOT}" if field == "title" else f"version: 1\ntitle: T\n{shot}"
    for command in ("validate", "plan", "run"):
        code, output = cli(command, str(write_storyboard(tmp_path, text)), "--output", str(tmp_path / "out"))
        where = "title:" if field == "title" else f"shots[0].{field} (shot 'a'):"
        assert code == 1 and where in output and "not allowed here" in output, output
        assert not any(c in output for c in "\x1b\x00\x9b\x7f\u202d\u202e\u2066"), repr(output)


def test_error_messages_never_put_control_characters_on_the_terminal(tmp_path: Path) -> None:
    """An unknown asset name echoed back, a URL with an escape sequence: shown escaped, never raw."""
    text = f"version: 1\ntitle: T\nassets:\n  x: \"https://exa\\e[2Jmple.com/a.png\"\n{ONE_SHOT}"
    code, output = cli("validate", str(write_storyboard(tmp_path, text)))
    assert code == 1 and "\x1b" not in output and "U+001B" in output, repr(output)


@pytest.mark.parametrize("argv", [
    ["run", "--budget", "nan"], ["run", "--budget", "-1"], ["run", "--budget", "inf"], ["plan", "--budget", "nan"],
    ["plan", "--budget", "-0.5"], ["plan", "--budget", "inf"], ["run", "--loudness", "nan"],
    ["run", "--loudness", "-inf"], ["run", "--concurrency", "0"], ["serve", "--cron", "* * * * *", "--budget", "nan"],
])
def test_numbers_are_range_checked_before_prefect_sees_them(tmp_path: Path, argv: list[str]) -> None:
    path = write_storyboard(tmp_path, f"version: 1\ntitle: T\n{ONE_SHOT}")
    code, output = cli(argv[0], str(path), *argv[1:])
    option = next(a for a in argv if a.startswith("--") and a != "--cron")
    assert code == 2 and f"Invalid value for '{option}'" in output, output


@pytest.mark.parametrize("argv", [["--latency", "nan"], ["--latency", "inf"], ["--port", "70000"],
                                  ["--credits", "-5"]])
def test_the_emulators_numbers_too(argv: list[str]) -> None:
    code, output = cli("emulate", *argv)
    assert code == 2 and f"Invalid value for '{argv[0]}'" in output, output


# --- film folders -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_different_file_names_never_share_a_folder(a: str, b: str) -> None:
    if a != b:
        assert slugify(a) != slugify(b)
    for name in (a, b):
        slug = slugify(name)
        assert slug and slug not in (".", "..") and "/" not in slug and slug.isascii() and slug.isprintable()


@pytest.mark.parametrize(("a", "b"), [("café", "cafè"), ("Film", "film"), ("a b", "a-b"), ("ünïcode", "unicode"),
                                      ("灯台", "灯塔"), ("x" * 61, "x" * 62)])
def test_names_that_used_to_collide_do_not(a: str, b: str) -> None:
    assert slugify(a) != slugify(b)


def test_plain_names_keep_their_folder() -> None:
    assert [slugify(n) for n in ("lighthouse", "teaser", "my-film", "take_2")] == ["lighthouse", "teaser",
                                                                                   "my-film", "take_2"]


def test_a_folder_holds_one_storyboards_film(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    one, two = (write_storyboard(tmp_path / name, "x", "film.yaml") for name in ("one", "two"))
    folder = tmp_path / "out" / "film"
    film_folder.claim(folder, one)
    film_folder.claim(folder, tmp_path / "one" / ".." / "one" / "film.yaml")  # the same file, another spelling
    with pytest.raises(PlanError, match=r"holds the film of .*one/film\.yaml.*rename one of them"):
        film_folder.claim(folder, two)
    one.unlink()  # its storyboard is gone (moved, renamed): the folder may be taken
    film_folder.claim(folder, two)
    assert film_folder.owner(folder) == two.resolve()


@pytest.mark.slow
def test_two_storyboards_with_the_same_name_never_replace_each_others_film(prefect_server: None,
                                                                           tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        write_storyboard(tmp_path / name, f"version: 1\ntitle: {name}\n{ONE_SHOT}", "film.yaml")
    out = str(tmp_path / "out")
    code, output = cli("run", str(tmp_path / "one" / "film.yaml"), "--output", out)
    assert code == 0, output
    film = tmp_path / "out" / "film" / "film.mp4"
    before = film.read_bytes()
    code, output = cli("run", str(tmp_path / "two" / "film.yaml"), "--output", out)
    assert code == 1 and "holds the film of" in output, output
    assert film.read_bytes() == before
    for name in ("café.yaml", "cafè.yaml"):
        write_storyboard(tmp_path, f"version: 1\ntitle: {name}\n{ONE_SHOT}", name)
        code, output = cli("run", str(tmp_path / name), "--output", out)
        assert code == 0, output
    assert len(list((tmp_path / "out").glob("*/film.mp4"))) == 3

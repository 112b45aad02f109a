"""Unchanged means instant: a rerun with nothing changed leaves film.mp4 alone, before Prefect starts; new
captions rewrite the subtitles and the manifest, not the film."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .helpers import write_storyboard
from .run_film import run as run_film

if TYPE_CHECKING:
    from storyfilm.emulator import EmulatorServer

# A hosted provider: the local animatic draws captions into the picture (a caption edit is a new shot there),
# a host never sees them. `storyfilm run --emulate` writes to output/emulated/.
BOARD = """\
version: 1
title: Unchanged
provider: wavespeed
defaults: {{duration: 4, resolution: 480p, aspect_ratio: "1:1"}}
shots:
  - {{id: one, prompt: A harbour at dawn., caption: "{caption}"}}
  - {{id: two, cut: true, prompt: The boats rock.}}
  - {{id: three, cut: true, prompt: A lamp is lit., transition: {{type: crossfade, duration: 0.5}}, caption: Light.}}
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, emulator_server: EmulatorServer) -> Path:
    """A finished film (made on the emulator without Prefect); each test works on its own copy of the folder."""
    root = tmp_path_factory.mktemp("unchanged")
    board = write_storyboard(root, BOARD.format(caption="Dawn."), name="unchanged.yaml")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WAVESPEED_BASE_URL", emulator_server.url)
        env.setenv("WAVESPEED_API_KEY", "ws-test-key")
        env.setenv("STORYFILM_POLL_INTERVAL", "0.05")
        run_film(board, root / "output" / "emulated")
    return root


@pytest.fixture
def film_copy(made: Path, tmp_path: Path) -> Path:
    shutil.copytree(made, tmp_path / "w", symlinks=True)
    # the folder records the storyboard it belongs to by absolute path: the copy's is this storyboard
    (tmp_path / "w" / "output" / "emulated" / "unchanged" / ".storyboard").unlink(missing_ok=True)
    return tmp_path / "w"


def storyfilm_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # An API URL where nothing listens: if the run started a flow, it would fail to reach it.
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "storyfilm", "run", "unchanged.yaml", "--emulate", *args], cwd=cwd,
                          env=env,
                          capture_output=True, text=True, timeout=300)


def snapshot(film_dir: Path) -> tuple[bytes, int]:
    film = film_dir / "film.mp4"
    return film.read_bytes(), film.stat().st_mtime_ns


@pytest.mark.slow
def test_an_unchanged_rerun_says_up_to_date_and_leaves_the_film_untouched_without_prefect(film_copy: Path) -> None:
    film_dir = film_copy / "output" / "emulated" / "unchanged"
    before, manifest = snapshot(film_dir), (film_dir / "manifest.json").read_bytes()
    done = storyfilm_run(film_copy)
    assert done.returncode == 0, done.stderr
    assert "is up to date" in done.stdout
    assert snapshot(film_dir) == before  # byte-identical, mtime unchanged
    assert (film_dir / "manifest.json").read_bytes() == manifest
    assert "Starting temporary server" not in done.stderr + done.stdout


@pytest.mark.slow
def test_new_captions_rewrite_the_subtitles_and_manifest_not_the_film(film_copy: Path) -> None:
    film_dir = film_copy / "output" / "emulated" / "unchanged"
    before = snapshot(film_dir)
    old_srt = (film_dir / "film.srt").read_text()
    write_storyboard(film_copy, BOARD.format(caption="Morning."), name="unchanged.yaml")
    done = storyfilm_run(film_copy)
    assert done.returncode == 0, done.stderr
    assert "subtitles and manifest rewritten" in done.stdout
    assert snapshot(film_dir) == before  # not re-encoded, not even rewritten
    new_srt = (film_dir / "film.srt").read_text()
    assert "Morning." in new_srt and "Dawn." not in new_srt
    # the same cues at the same times: only the text changed
    assert new_srt.replace("Morning.", "Dawn.") == old_srt
    manifest = json.loads((film_dir / "manifest.json").read_text())
    assert [s["caption"] for s in manifest["shots"]] == ["Morning.", None, "Light."]
    timeline = json.loads((film_dir / "timeline.otio").read_text())
    assert "Morning." in json.dumps(timeline) and "Dawn." not in json.dumps(timeline)
    # and now it is up to date
    again = storyfilm_run(film_copy)
    assert again.returncode == 0 and "is up to date" in again.stdout and snapshot(film_dir) == before


@pytest.mark.slow
def test_what_changes_the_film_is_not_up_to_date(film_copy: Path) -> None:
    from storyfilm import session, up_to_date

    film_dir = film_copy / "output" / "emulated" / "unchanged"
    board = film_copy / "unchanged.yaml"

    def verdict(**options: object) -> str:
        options = {"output_dir": film_copy / "output" / "emulated", **options}
        return up_to_date.before_run(board, session.Options(**options)).why  # type: ignore[arg-type]

    assert verdict() == ""
    assert verdict(loudness_lufs=-16.0) == "the film's inputs changed"
    write_storyboard(film_copy, BOARD.format(caption="Dawn.").replace("duration: 0.5", "duration: 0.25"),
                     name="unchanged.yaml")
    assert verdict() == "the film's inputs changed"  # a transition regenerates nothing but changes the film
    write_storyboard(film_copy, BOARD.format(caption="Dawn."), name="unchanged.yaml")
    sheet = film_dir / "contact_sheet.png"
    kept = sheet.read_bytes()
    sheet.unlink()
    assert verdict() == "an export is missing"
    sheet.write_bytes(kept)
    with open(film_dir / "film.mp4", "ab") as f:
        f.write(b"\0")
    assert verdict() == "film.mp4 is missing or was changed"
    write_storyboard(film_copy, BOARD.format(caption="Dawn.").replace("The boats rock.", "The boats sway."),
                     name="unchanged.yaml")
    assert verdict() == "1 shot(s) to generate or restore"

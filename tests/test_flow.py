"""The Prefect flow end to end on the local provider: a real run, a real film, visible in the Prefect API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from storyfilm.media import probe

from .helpers import REPO, write_storyboard

BOARD = """\
version: 1
title: Flow Test Film
defaults:
  duration: 2
  resolution: 480p
  seed: 3
assets:
  a: refs/a.png
shots:
  - id: opening
    prompt: Dawn over the harbour, slow push-in.
  - id: boats
    prompt: The boats rock; the camera pans right.
    caption: Morning.
  - id: pier
    image: a
    prompt: Static shot of the pier.
    camera: static
    audio: false
  - id: gulls
    continue_from: opening
    prompt: Gulls lift off, the camera tilts up.
    duration: 1
"""


def check_film(path: Path, planned_seconds: float) -> None:
    info = probe.probe(path)
    assert info.video is not None and info.audio is not None
    with __import__("av").open(str(path)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]  # one of each
    assert abs(info.video.duration - planned_seconds) <= 1 / 24
    assert abs(info.audio.duration - info.video.duration) <= 1 / 24


@pytest.mark.slow
def test_flow_run_makes_the_film_and_reports_to_prefect(prefect_server: None, storyboard_dir: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    from storyfilm.flow import film

    board = write_storyboard(storyboard_dir, BOARD, "flow-test.yaml")
    out = storyboard_dir / "output"
    state = film(storyboard=str(board), output_dir=str(out), return_state=True)
    result = state.result()
    film_dir = out / "flow-test"
    check_film(film_dir / "film.mp4", 7.0)
    assert result["shots"] == 4 and result["reused"] == 0

    shots = film_dir / "shots"
    for child, parent in (("boats", "opening"), ("gulls", "opening")):  # continued shots start on the seam
        assert np.array_equal(probe.first_frame(shots / f"{child}.mp4"), probe.last_frame(shots / f"{parent}.mp4"))
    assert probe.probe(shots / "pier.mp4").audio is None  # and the film still has audio: silence there

    manifest = json.loads((film_dir / "manifest.json").read_text())
    assert [s["id"] for s in manifest["shots"]] == ["opening", "boats", "pier", "gulls"]
    assert manifest["shots"][3]["start"] == "last frame of 'opening'"
    assert manifest["film"]["duration"] == pytest.approx(7.0)

    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id
        [flow_run] = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        assert flow_run.name == "Flow Test Film"
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        assert sorted(t.name for t in task_runs) == ["assemble", "boats", "gulls", "opening", "pier"]
        assert all(t.state and t.state.is_completed() for t in task_runs)
        key = ArtifactFilter(key=ArtifactFilterKey(any_=["film-flow-test"]))
        [artifact] = client.read_artifacts(artifact_filter=key)
        assert "film.mp4" in str(artifact.data) and "| gulls |" in str(artifact.data)

    # unchanged storyboard: nothing is generated again, the same film comes out
    again = film(storyboard=str(board), output_dir=str(out))
    assert again["reused"] == 4 and again["frames"] == result["frames"]
    check_film(film_dir / "film.mp4", 7.0)


@pytest.mark.slow
def test_the_readme_run_command_works_in_a_fresh_directory(tmp_path: Path) -> None:
    """`storyfilm run storyboards/teaser.yaml` as a user types it: ephemeral Prefect, no API key."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run([sys.executable, "-m", "storyfilm", "run", str(REPO / "storyboards" / "teaser.yaml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    check_film(tmp_path / "output" / "teaser" / "film.mp4", 6.0)

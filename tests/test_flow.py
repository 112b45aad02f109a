"""The Prefect flow end to end on the local provider: a real run, a real film, visible in the Prefect API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import numpy as np
import pytest

from storyfilm.media import probe

from .helpers import REPO, write_storyboard

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import Artifact

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


def artifacts_of(client: SyncPrefectClient, slug: str) -> dict[str, Artifact]:
    """The latest artifact of each key of the film."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=f"film-{slug}")),
                                  sort=ArtifactSort.CREATED_DESC)
    latest: dict[str, Artifact] = {}
    for artifact in found:
        latest.setdefault(str(artifact.key), artifact)
    return latest


@pytest.mark.slow
def test_flow_run_makes_the_film_and_reports_to_prefect(prefect_server: None, storyboard_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    from storyfilm import _prefect
    from storyfilm.flow import film

    progress_values: list[float] = []
    descriptions: list[str | None] = []
    update = _prefect.update_progress_artifact

    def recording_update(artifact_id: UUID, progress: float, description: str | None = None) -> UUID | None:
        progress_values.append(progress)
        descriptions.append(description)
        return update(artifact_id, progress=progress, description=description)

    monkeypatch.setattr(_prefect, "update_progress_artifact", recording_update)
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

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id
        this_run = FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        [flow_run] = client.read_flow_runs(flow_run_filter=this_run)
        assert flow_run.name == "Flow Test Film"
        assert {"provider:local", "film:flow-test"} <= set(flow_run.tags)
        task_runs = client.read_task_runs(flow_run_filter=this_run)
        assert sorted(t.name for t in task_runs) == ["assemble", "boats", "gulls", "opening", "pier"]
        assert all(t.state and t.state.is_completed() for t in task_runs)
        assert all({"provider:local", "film:flow-test"} <= set(t.tags) for t in task_runs)

        artifacts = artifacts_of(client, "flow-test")
        # no public URL set: no link artifacts (a browser refuses file:// links), the paths are shown to copy
        assert set(artifacts) == {"film-flow-test", "film-flow-test-shots", "film-flow-test-progress"}
        summary = str(artifacts["film-flow-test"].data)
        assert summary.startswith("# Flow Test Film: finished\n") and "file://" not in summary
        assert f"`{(film_dir / 'film.mp4').resolve()}`" in summary and f"`{film_dir.resolve() / 'film.srt'}`" in summary
        assert "| gulls |" in summary and "4 generated, 0 reused, 0 failed" in summary
        assert "**Committed this run:** $0.00 for 4 generated shot(s)" in summary
        # the contact sheet, timeline.png, continuity.png and a thumbnail per shot
        assert summary.count("data:image/jpeg;base64,") == 7
        # the continuity section, its picture inline and its file listed
        assert "## Continuity" in summary and f"`{(film_dir / 'continuity.png').resolve()}`" in summary
        table = json.loads(artifacts["film-flow-test-shots"].data)
        assert [row["shot"] for row in table] == ["opening", "boats", "pier", "gulls"]
        assert all(row["status"] == "generated" and row["job"].startswith("local-") and row["cost"] == "$0.00"
                   for row in table)
        assert artifacts["film-flow-test-progress"].data == 100
        assert artifacts["film-flow-test-progress"].description == "finished: 4 of 4 shots, film assembled"

        logs = [log.message for log in client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))]
        assert any(m.startswith("opening: submitted job local-") for m in logs)
        assert any(m.startswith("pier: 2.00 s of new footage from local in ") and m.endswith("$0.00") for m in logs)
        assert any(m.startswith("film: ") and "7.000 s, 168 frames" in m for m in logs)
    # the progress artifact moved as each shot finished, then once more for the assembly
    assert progress_values == [20.0, 40.0, 60.0, 80.0, 100.0, 100.0]
    assert descriptions[-1] == "finished: 4 of 4 shots, film assembled"

    # unchanged storyboard: nothing is generated again, the same film comes out
    again = film(storyboard=str(board), output_dir=str(out))
    assert again["reused"] == 4 and again["frames"] == result["frames"]
    check_film(film_dir / "film.mp4", 7.0)
    with get_client(sync_client=True) as client:
        assert "0 generated, 4 reused" in str(artifacts_of(client, "flow-test")["film-flow-test"].data)


@pytest.mark.slow
def test_the_readme_run_command_works_in_a_fresh_directory(tmp_path: Path, prefect_home: Path) -> None:
    """`storyfilm run storyboards/teaser.yaml` as a user types it: ephemeral Prefect, no API key."""
    env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run([sys.executable, "-m", "storyfilm", "run", str(REPO / "storyboards" / "teaser.yaml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    check_film(tmp_path / "output" / "teaser" / "film.mp4", 12.0)
    # not a terminal (a pipe, a log, CI): no progress bars, no log noise; just the result
    assert [line.split(" ")[0] for line in proc.stdout.splitlines()] == ["film", "manifest", "continuity"]
    # one line per chain: each hop's colour difference from the chain's anchor, as the manifest has them (the
    # teaser's camera pushes in and pans: the colours of its frames change, and the chain may be flagged)
    chain = json.loads((tmp_path / "output" / "teaser" / "manifest.json").read_text())["continuity"]["chains"][0]
    hops = " ".join(f"{h['delta_e']:.1f}{'!' if h['flagged'] else ''}" for h in chain["hops"])
    assert proc.stdout.splitlines()[2].startswith(f"continuity chain sunrise: 2 shot(s), ΔE00 per hop {hops}; ")
    warning = "1 chain(s) drift in colour: see continuity.png beside the film (a moving camera changes the " \
              "colours too), and `color: hold` in the README\n"
    assert proc.stderr == (warning if chain["flagged"] else "")

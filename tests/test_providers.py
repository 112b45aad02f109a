"""Each hosted provider through the whole pipeline, against the emulator over real loopback HTTP.

A text-to-video first shot, two chained shots, an image-to-video shot from a local file and a cut, run by
the Prefect flow; the film is checked (duration, audio, seams) and the emulator counts the submissions.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from storyfilm.media import probe
from storyfilm.media.ffmpeg import VideoFormat
from storyfilm.media.house import copy_blockers

from .helpers import emulator_stats, point_hosts_at, write_storyboard

BOARD = """\
version: 1
title: Hosted {provider}
provider: {provider}
defaults:
  duration: {duration}
  resolution: 480p
  aspect_ratio: "16:9"
  seed: 5
assets:
  a: refs/a.png
shots:
  - id: opening
    prompt: Dawn over the harbour, slow push-in.
  - id: boats
    prompt: The boats rock as the camera pans right.
  - id: pier
    image: a
    prompt: Static shot of the pier.
  - id: gulls
    prompt: Gulls lift off the pier, the camera tilts up.
  - id: storm
    cut: true
    prompt: Night storm at sea.
"""

# provider: (duration, how chains continue, outputs encoded as a host's encoder would, not as ours); a length
# each host's image-to-video takes (providers/specs.py)
CASES = {"wavespeed": ("wavespeed", 5, "extend", False), "apiframe": ("apiframe", 4, "frame", False),
         "gateway": ("gateway", 5, "frame", False), "apiframe, another encoder": ("apiframe", 4, "frame", True)}


def emulator_output(url: str, job_id: str, into: Path) -> Path:
    path = into / f"emulator-{job_id}.mp4"
    path.write_bytes(httpx.get(f"{url}/files/outputs/{job_id}.mp4").raise_for_status().content)
    return path


def film_frame_diff(frames: list[np.ndarray], index: int) -> float:
    return float(np.abs(frames[index].astype(np.int16) - frames[index - 1]).mean())


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_storyboard_through_each_host(case: str, prefect_server: None, emulator, storyboard_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    from storyfilm.flow import film

    point_hosts_at(emulator.url, monkeypatch)
    provider, duration, method, host_encoder = CASES[case]
    httpx.post(f"{emulator.url}/_emulator/config", json={"host_encoder": host_encoder}).raise_for_status()
    board = write_storyboard(storyboard_dir, BOARD.format(provider=provider, duration=duration), f"{provider}.yaml")
    state = film(storyboard=str(board), output_dir=str(storyboard_dir / "out"), return_state=True)
    result = state.result()

    film_path = Path(result["film"])
    info = probe.probe(film_path)
    assert info.video is not None and info.audio is not None
    assert info.video.frames == 5 * duration * 24  # exactly the planned footage: no extend echo, no seam copy
    assert abs(info.audio.duration - info.video.duration) <= 1 / 24

    stats = emulator_stats(emulator.url)
    assert stats["submissions"] == 5 and stats["by_provider"][provider]["submissions"] == 5
    kinds = sorted(job["kind"] for job in stats["jobs"])
    expected = {"extend": ["extend", "extend", "image", "text", "text"],
                "frame": ["image", "image", "image", "text", "text"]}[method]
    assert kinds == expected

    manifest = json.loads((film_path.parent / "manifest.json").read_text())
    assert manifest["seams"]["flagged"] == []
    # `seed: 5` is not silently dropped where the host takes none: each shot's manifest entry says so, and
    # the run's log once (WaveSpeed has no seed field; Apiframe and the gateway take it).
    no_seed = provider == "wavespeed"
    assert [any("takes no seed" in n for n in s["notes"]) for s in manifest["shots"]] == [no_seed] * 5
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = [log.message for log in client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))]
    assert any("submitted job" in m for m in logs)  # the run's log was read
    assert sum("takes no seed" in m for m in logs) == int(no_seed)
    # Every kept segment is in the house format, whatever the host's encoder: the film joins them by copy.
    fmt = VideoFormat(info.video.width, info.video.height)
    outputs = [emulator_output(emulator.url, job["id"], storyboard_dir) for job in stats["jobs"]]
    assert all(bool(copy_blockers(probe.probe(o), fmt)) == host_encoder for o in outputs)
    assert all(copy_blockers(probe.probe(s), fmt) == [] for s in (film_path.parent / "shots").glob("*.mp4"))
    assert manifest["film"]["normalised_segments"] == []
    frames = probe.read_frames(film_path)
    joins = [duration * 24 * k for k in range(1, 5)]  # opening|boats, boats|pier, pier|gulls, gulls|storm
    diffs = [film_frame_diff(frames, j) for j in joins]
    continuous, cuts = [diffs[0], diffs[2]], [diffs[1], diffs[3]]
    assert max(continuous) < 6, diffs  # a chained shot picks up where the previous one ended
    assert min(cuts) > 3 * max(continuous), diffs  # while a cut visibly changes the picture
    if method == "frame":  # image-to-video from the previous last frame: its first frame is that frame
        shots = film_path.parent / "shots"
        first = probe.first_frame(shots / "boats.mp4")
        last = probe.last_frame(shots / "opening.mp4")
        assert float(np.abs(first.astype(np.int16) - last).mean()) < 3

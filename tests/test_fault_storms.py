"""Storms of faults through the whole pipeline (the Prefect flow, real HTTP to the emulator): connection
resets, 5xx and 429 storms, slow polls and slow jobs. Within the retry budget a run simply finishes; past it,
shots fail with clear errors, nothing refused is billed, and the next run finishes without paying twice.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from storyfilm.errors import StoryfilmError
from storyfilm.ledger import Ledger
from storyfilm.media import probe

from .helpers import emulator_stats, point_hosts_at, write_image, write_storyboard

pytestmark = pytest.mark.slow

BOARD = """\
version: 1
title: Storm
provider: wavespeed
defaults: {duration: 5, resolution: 480p, aspect_ratio: "1:1"}  # image-to-video: 5, 10 or 15 s
assets:
  still: refs/still.png
shots:
  - id: pier
    image: still
    prompt: The pier at dusk.
  - id: lamp
    prompt: The keeper lights the lamp.
  - id: sea
    cut: true
    prompt: Night sea, the beam sweeps across.
"""
SHOTS = 3


def set_faults(url: str, spec: str) -> None:
    httpx.post(f"{url}/_emulator/faults", json={"faults": spec}).raise_for_status()


@pytest.fixture
def hosts(emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    point_hosts_at(emulator.url, monkeypatch)
    write_image(tmp_path / "refs" / "still.png", (480, 480), seed=9)
    return emulator


def test_storms_fail_shots_keep_paid_jobs_and_a_weathered_storm_pays_nothing_twice(prefect_server: None, hosts,
                                                                                   tmp_path: Path) -> None:
    from storyfilm.flow import film

    path, out = write_storyboard(tmp_path, BOARD, "storm.yaml"), str(tmp_path / "out")
    ledger = Ledger(tmp_path / "out" / "storm" / "ledger.sqlite")

    set_faults(hosts.url, "submit-429=0*all")  # the host refuses every submit: nothing is created
    with pytest.raises(StoryfilmError, match=r"shot 'pier' \[wavespeed\]: HTTP 429") as info:
        film(storyboard=str(path), output_dir=out)
    assert "shot 'sea' [wavespeed]: HTTP 429" in str(info.value)
    stats = emulator_stats(hosts.url)
    assert stats["submissions"] == 0 and stats["rejected_submissions"]["wavespeed"] == 2 * 6  # 6 tries each
    assert {r.state for r in ledger.records()} == {"rejected"}

    set_faults(hosts.url, "poll-500=0*all")  # submits get through, every poll fails: the jobs are kept
    with pytest.raises(StoryfilmError, match=r"shot 'pier' \[wavespeed\]: HTTP 500"):
        film(storyboard=str(path), output_dir=out)
    assert emulator_stats(hosts.url)["submissions"] == 2
    assert sorted(r.state for r in ledger.records() if r.state != "rejected") == ["submitted", "submitted"]

    # A storm within the retry budget (at most five failures of each kind, so every request gets through
    # on one of its six tries) while the two kept jobs are polled again and 'lamp' is generated.
    # Resets first: they wait a jittered backoff that grows with the try; the 5xx and 429 say Retry-After: 0.
    storm = ("submit-429=0*4,poll-reset*2,poll-503=0*2,poll-500=0,upload-reset*2,upload-502=0*2,"
             "download-drop*2,download-503=0*2,poll-slow=0.5*2,slow=1")
    set_faults(hosts.url, storm)
    result = film(storyboard=str(path), output_dir=out)
    stats = emulator_stats(hosts.url)
    assert [f["remaining"] for f in stats["faults"]] == [0] * 10  # every fault of the storm fired
    assert stats["submissions"] == SHOTS and sorted(j["prompt"] for j in stats["jobs"]) == sorted(
        ["The pier at dusk.", "The keeper lights the lamp.", "Night sea, the beam sweeps across."])
    assert stats["rejected_submissions"]["wavespeed"] == 2 * 6 + 4
    assert probe.decode_all(Path(result["film"]))[0].video.frames == SHOTS * 5 * 24  # type: ignore[union-attr]

"""storyfilm's own host clients (providers/) against the emulator: the two sides of the wire agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from storyfilm.emulator import EmulatorServer
from storyfilm.generate import PollSettings, wait_for_job
from storyfilm.media import probe
from storyfilm.media.ffmpeg import VideoFormat
from storyfilm.providers import make_provider
from storyfilm.providers.base import ShotRequest

from .emu import load_rgb, mean_diff, stats
from .helpers import make_clip, write_image

ENV_NAMES = {"wavespeed": ("WAVESPEED_API_KEY", "WAVESPEED_BASE_URL"),
             "apiframe": ("APIFRAME_API_KEY", "APIFRAME_BASE_URL"),
             "gateway": ("SEEDANCE_GATEWAY_API_KEY", "SEEDANCE_GATEWAY_BASE_URL")}
FAST_POLLS = PollSettings(first=0.05, max=0.2, timeout=60)


def shot(name: str, prompt: str, duration: int, **inputs: Path) -> ShotRequest:
    return ShotRequest(shot_id=name, prompt=prompt, tier="standard", duration=duration, resolution="480p",
                       aspect_ratio="1:1", fmt=VideoFormat(480, 480), audio=True, seed=1, camera="auto",
                       overlay="", **inputs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["wavespeed", "apiframe", "gateway"])
def test_image_to_video_through_faults(emulator: EmulatorServer, tmp_path: Path, name: str) -> None:
    key, base = ENV_NAMES[name]
    provider = make_provider(name, tmp_path, env={key: "test-key", base: emulator.url})
    start = write_image(tmp_path / "start.png", (480, 480), seed=5)
    # a 503 on a poll and a download that drops half-way: the client retries both, and pays once
    duration = {"wavespeed": 5, "apiframe": 6, "gateway": 5}[name]  # image-to-video lengths all take: specs.py
    request = shot(name, "[[fault:poll-503,download-drop]] static shot", duration, start_image=start)
    job_id = provider.submit(provider.prepare(request), request, f"idem-{name}")
    status = wait_for_job(provider, job_id, request.shot_id, FAST_POLLS)
    output = provider.fetch(status, request, tmp_path / "out")
    info = probe.probe(output.video)
    assert info.video and info.video.frames == duration * 24 + 1
    assert mean_diff(probe.first_frame(output.video), load_rgb(start)) < 3
    s = stats(emulator.url)
    assert s["submissions"] == 1 and s["jobs"][0]["polls"] >= 2
    assert s["jobs"][0]["downloads"] == 2  # the dropped one, then the whole file


@pytest.mark.slow
def test_wavespeed_extend_echo_is_measured_from_the_input(emulator: EmulatorServer, tmp_path: Path) -> None:
    provider = make_provider("wavespeed", tmp_path, env={"WAVESPEED_API_KEY": "k", "WAVESPEED_BASE_URL": emulator.url})
    clip = make_clip(tmp_path / "prev.mp4", 2.0, size=(480, 480))
    request = shot("ext", "the camera pushes in", 4, start_video=clip)
    status = wait_for_job(provider, provider.submit(provider.prepare(request), request, "idem"), "ext", FAST_POLLS)
    output = provider.fetch(status, request, tmp_path / "out")
    assert output.echo_frames == 48
    assert probe.probe(output.video).video.frames == 48 + 4 * 24  # type: ignore[union-attr]


def test_apiframe_submit_retried_after_503_is_billed_once(emulator: EmulatorServer, tmp_path: Path) -> None:
    provider = make_provider("apiframe", tmp_path, env={"APIFRAME_API_KEY": "k", "APIFRAME_BASE_URL": emulator.url})
    request = shot("af", "[[fault:submit-503,moderation]] a storm", 4)
    job_id = provider.submit(provider.prepare(request), request, "shot-af-key")  # retried: it has a key
    s = stats(emulator.url)
    assert s["submissions"] == 1 and s["rejected_submissions"] == {"apiframe": 1}
    assert s["jobs"][0]["id"] == job_id and s["jobs"][0]["idempotency_key"] == "shot-af-key"

"""The emulated OpenAI-style gateway over real loopback HTTP: model ids with the resolution, extra_body."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from storyfilm.emulator import EmulatorServer
from storyfilm.media import probe

from .emu import GW, I2V, download, gw_wait, load_rgb, mean_diff, stats, ws_submit, ws_upload, ws_wait
from .helpers import make_clip, write_image


def create(url: str, body: dict[str, Any], path: str = "/v1/video/generations") -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, headers=GW, timeout=30)


def test_generation_with_last_frame_and_string_duration(emulator: EmulatorServer, tmp_path: Path) -> None:
    body = {"model": "seedance2.0-480p", "prompt": "a harbour at dusk", "duration": "5", "aspect_ratio": "1:1",
            "extra_body": {"generate_audio": False, "return_last_frame": "true", "seed": 42}}
    resp = create(emulator.url, body)
    assert resp.status_code == 200
    task = resp.json()
    assert task["status"] == "queued" and task["task_id"] == task["id"] and task["progress"] == 0
    assert task["object"] == "video.generation.job" and task["model"] == "seedance2.0-480p"

    final, seen = gw_wait(emulator.url, task["task_id"])
    assert final["status"] == "completed" and final["progress"] == 100
    assert {t["status"] for t in seen} <= {"queued", "in_progress", "completed"}
    video = download(final["video_url"], tmp_path / "out.mp4")
    info = probe.probe(video)
    assert info.video and (info.video.width, info.video.height, info.video.frames) == (480, 480, 5 * 24 + 1)
    assert info.audio is None
    last = download(final["last_frame_url"], tmp_path / "last.png")
    assert mean_diff(load_rgb(last), probe.last_frame(video)) < 3
    assert stats(emulator.url)["by_model"]["seedance2.0-480p"] == {"submissions": 1, "cost_usd": 0.6}


def test_compatibility_path_and_failure_shape(emulator: EmulatorServer) -> None:
    body = {"model": "seedance2.0-mini-720p", "prompt": "[[fault:moderation]] a storm", "duration": 6}
    resp = create(emulator.url, body, path="/v1/videos/generations")
    assert resp.status_code == 200
    final, _ = gw_wait(emulator.url, resp.json()["id"])
    assert final["status"] == "failed" and "video_url" not in final
    assert final["error"]["code"] == "content_policy_violation" and final["error"]["message"]
    assert stats(emulator.url)["by_model"]["seedance2.0-mini-720p"]["cost_usd"] == 0.72  # 6 s x $0.12


@pytest.mark.slow
def test_extend_video_operation_returns_input_and_new_segment(emulator: EmulatorServer, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "in.mp4", 1.0, size=(480, 480))
    body = {"model": "seedance2.0-fast-480p", "prompt": "keep going", "duration": 5,
            "videos": [ws_upload(emulator.url, clip)], "extra_body": {"operation": "extend_video"}}
    final, _ = gw_wait(emulator.url, create(emulator.url, body).json()["id"])
    out = download(final["video_url"], tmp_path / "out.mp4")
    assert probe.probe(out).video.frames == 24 + 5 * 24  # type: ignore[union-attr]


@pytest.mark.parametrize(("change", "message"), [
    ({"duration": 4}, "outside 5 to 15"),
    ({"duration": 16}, "outside 5 to 15"),
    ({"duration": "five"}, "duration must be an integer"),
    ({"aspect_ratio": "4:3"}, "aspect_ratio"),
    ({"model": "seedance2.0-fast-1080p"}, "not available"),
    ({"model": "seedance2.0"}, "not available"),
    ({"image": "https://x.example/a.png", "images": ["https://x.example/b.png"]}, "cannot be combined"),
    ({"last_image": "https://x.example/a.png"}, "used with image"),
    ({"images": ["https://x.example/b.png"] * 10}, "images"),
    ({"videos": ["https://x.example/b.mp4"] * 4}, "videos"),
    ({"extra_body": {"return_last_frame": "maybe"}}, "return_last_frame"),
    ({"extra_body": {"operation": "extend_video"}}, "extend_video takes exactly one video"),
])
def test_invalid_requests_get_openai_style_400(emulator: EmulatorServer, change: dict[str, Any], message: str) -> None:
    resp = create(emulator.url, {"model": "seedance2.0-720p", "prompt": "x", **change})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"
    assert stats(emulator.url)["submissions"] == 0


def test_unknown_task_is_404(emulator: EmulatorServer) -> None:
    resp = httpx.get(f"{emulator.url}/v1/videos/task_nope", headers=GW)
    assert resp.status_code == 404 and resp.json()["error"]["message"]


def test_reference_videos_are_fetched_and_their_lengths_checked(emulator: EmulatorServer, tmp_path: Path) -> None:
    short = ws_upload(emulator.url, make_clip(tmp_path / "short.mp4", 1.0, audio=False))
    body = {"model": "seedance2.0-480p", "prompt": "in this style", "videos": [short]}
    final, _ = gw_wait(emulator.url, create(emulator.url, body).json()["id"])
    assert final["status"] == "failed" and final["error"]["code"] == "invalid_media"
    assert "1.00 s; allowed 2-15 s" in final["error"]["message"]


def test_images_may_be_data_uris_on_the_gateway_only(emulator: EmulatorServer, tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png", (480, 480), seed=4)
    uri = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    body = {"model": "seedance2.0-480p", "prompt": "static", "image": uri, "extra_body": {"generate_audio": False}}
    final, _ = gw_wait(emulator.url, create(emulator.url, body).json()["id"])
    assert final["status"] == "completed", final
    video = download(final["video_url"], tmp_path / "out.mp4")
    assert mean_diff(probe.first_frame(video), load_rgb(image)) < 3
    # WaveSpeed documents URLs only: the same input fails there like an unreachable one, named briefly
    ws = ws_submit(emulator.url, I2V, {"prompt": "static", "image": uri, "duration": 5}).json()["data"]
    failed, _ = ws_wait(emulator.url, ws["id"])
    assert (failed["status"], failed["code"]) == ("failed", 1402) and len(failed["error"]) < 200

"""The emulated WaveSpeed v3 API over real loopback HTTP: envelopes, statuses, real video, uploads, prices."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from storyfilm.animatic import fit_cover
from storyfilm.emulator import EmulatorServer
from storyfilm.media import probe
from storyfilm.media.ffmpeg import VideoFormat

from .emu import (
    EXTEND,
    I2V,
    MINI_EXTEND,
    SMALL,
    T2V,
    WS,
    download,
    load_rgb,
    mean_diff,
    stats,
    tone_share,
    ws_submit,
    ws_upload,
    ws_wait,
)
from .helpers import make_clip, write_image


def test_text_to_video_envelope_statuses_and_output(emulator: EmulatorServer, tmp_path: Path) -> None:
    body = {"prompt": "a gull over the sea at dawn", "duration": 4, **SMALL}
    resp = ws_submit(emulator.url, T2V, body, headers={"X-Emulator-Fault": "slow=1"})
    assert resp.status_code == 200
    sub = resp.json()
    assert (sub["code"], sub["message"]) == (200, "success")
    data = sub["data"]
    job_id = data["id"]
    assert data["status"] == "created" and data["outputs"] == [] and data["error"] == ""
    assert data["model"] == T2V and data["input"] == body
    assert data["urls"]["get"] == f"{emulator.url}/api/v3/predictions/{job_id}/result"

    final, statuses = ws_wait(emulator.url, job_id)
    assert "processing" in statuses and statuses[-1] == "completed"
    assert statuses.index("processing") < len(statuses) - 1  # created -> processing -> completed, in order
    assert final["has_nsfw_contents"] == [False] and final["timings"]["inference"] >= 1000
    assert final["outputs"][0].startswith(f"{emulator.url}/files/outputs/")
    # the documented alternative poll path gives the same prediction
    other = httpx.get(f"{emulator.url}/api/v3/predictions/{job_id}", headers=WS).json()["data"]
    assert other["outputs"] == final["outputs"] and other["status"] == "completed"

    info = probe.probe(download(final["outputs"][0], tmp_path / "out.mp4"))
    assert info.video and info.audio
    assert (info.video.codec, info.video.width, info.video.height) == ("h264", 480, 480)
    assert info.video.fps == 24 and info.video.frames == 4 * 24 + 1  # like Seedance's 121 frames for 5 s
    assert info.audio.codec == "aac" and info.audio.duration == pytest.approx(97 / 24, abs=0.05)

    s = stats(emulator.url)
    assert s["submissions"] == 1 and s["by_provider"]["wavespeed"]["submissions"] == 1
    assert s["by_model"][T2V] == {"submissions": 1, "cost_usd": 0.48}  # 4 s x $0.12 at 480p
    assert s["jobs"][0]["prompt"] == body["prompt"] and s["jobs"][0]["status"] == "completed"


def test_image_to_video_honours_first_and_last_image(emulator: EmulatorServer, tmp_path: Path) -> None:
    first = write_image(tmp_path / "first.png", (320, 180), seed=1)
    last = write_image(tmp_path / "last.png", (640, 360), seed=2)
    first_url = ws_upload(emulator.url, first)  # contract A: multipart
    assert httpx.get(first_url).content == first.read_bytes()
    # contract B: a ticket, then a PUT without the API key
    ticket = httpx.post(f"{emulator.url}/api/v3/media/uploads", headers=WS,
                        json={"filename": "last.png", "size": last.stat().st_size, "content_type": "image/png"})
    assert ticket.status_code == 200 and ticket.json()["code"] == 200
    t = ticket.json()["data"]
    assert t["upload"]["method"] == "PUT" and t["type"] == "image"
    assert httpx.get(t["download_url"]).status_code == 404  # nothing there before the PUT
    put = httpx.put(t["upload"]["url"], content=last.read_bytes(), headers=t["upload"]["headers"])
    assert put.status_code == 200
    assert httpx.get(t["download_url"]).content == last.read_bytes()

    resp = ws_submit(emulator.url, I2V, {"prompt": "static shot", "image": first_url, "last_image": t["download_url"],
                                         "duration": 5, "resolution": "480p", "generate_audio": False})
    final, _ = ws_wait(emulator.url, resp.json()["data"]["id"])
    assert final["status"] == "completed", final
    video = download(final["outputs"][0], tmp_path / "out.mp4")
    info = probe.probe(video)
    assert info.audio is None  # generate_audio: false
    fmt = VideoFormat(854, 480)  # no aspect_ratio: it follows the 16:9 image
    assert info.video and (info.video.width, info.video.height, info.video.frames) == (854, 480, 121)
    assert mean_diff(probe.first_frame(video), fit_cover(load_rgb(first), fmt)) < 3
    assert mean_diff(probe.last_frame(video), fit_cover(load_rgb(last), fmt)) < 3


@pytest.mark.slow
def test_legacy_images_form_uses_the_first_image(emulator: EmulatorServer, tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png", (480, 480), seed=3)
    url = ws_upload(emulator.url, image)
    bad = ws_submit(emulator.url, I2V, {"prompt": "x", "images": [url], "duration": 6})
    assert bad.status_code == 400 and "5, 10 or 15" in bad.json()["message"]
    both = ws_submit(emulator.url, I2V, {"prompt": "x", "images": [url], "image": url})
    assert both.status_code == 400
    resp = ws_submit(emulator.url, I2V, {"prompt": "tilt up", "images": [url, url], "duration": 5,
                                         "resolution": "480p"})
    final, _ = ws_wait(emulator.url, resp.json()["data"]["id"])
    video = download(final["outputs"][0], tmp_path / "out.mp4")
    assert probe.probe(video).video.frames == 5 * 24 + 1  # type: ignore[union-attr]
    assert mean_diff(probe.first_frame(video), load_rgb(image)) < 3


@pytest.mark.slow
def test_extend_returns_the_input_then_exactly_the_new_seconds(emulator: EmulatorServer, tmp_path: Path) -> None:
    """5 s in, 4 s more: one 9 s file whose first 5 s are the input, audio of both kept."""
    clip = make_clip(tmp_path / "in.mp4", 5.0, size=(480, 480), tone=1000.0)
    source = probe.read_frames(clip)
    assert len(source) == 120
    resp = ws_submit(emulator.url, EXTEND, {"prompt": "the camera pushes in", "video": ws_upload(emulator.url, clip),
                                            "duration": 4, "resolution": "480p"})
    final, _ = ws_wait(emulator.url, resp.json()["data"]["id"])
    assert final["status"] == "completed", final
    out = download(final["outputs"][0], tmp_path / "out.mp4")

    info = probe.probe(out)
    assert info.video and info.audio
    assert (info.video.width, info.video.height, info.video.frames) == (480, 480, 120 + 96)
    assert info.video.duration == pytest.approx(9.0)
    assert info.audio.duration == pytest.approx(9.0, abs=0.05)
    frames = probe.read_frames(out)
    assert max(mean_diff(frames[i], source[i]) for i in (0, 30, 60, 119)) < 4  # the input, re-encoded
    # The new footage continues from the input's last frame without repeating it.
    assert mean_diff(frames[120], source[119]) < 10
    assert not np.array_equal(frames[120], frames[119])
    assert 120 in probe.keyframe_indices(out)  # a clean cut point for clients that trim the echo
    audio = probe.read_audio(out)
    assert audio is not None
    original, new = audio[: 5 * 48_000], audio[5 * 48_000 + 2400:]
    assert tone_share(original, 1000.0) > 0.9 and tone_share(new, 1000.0) < 0.1
    assert float(np.sqrt(np.mean(new**2))) > 0.01  # the new segment has its own audio

    assert stats(emulator.url)["by_model"][EXTEND]["cost_usd"] == 0.48  # billed for the 4 new seconds only


@pytest.mark.slow
def test_mini_extend_without_audio_keeps_the_original_audio(emulator: EmulatorServer, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "in.mp4", 2.0, size=(480, 480), tone=1000.0)
    resp = ws_submit(emulator.url, MINI_EXTEND, {"prompt": "static", "video": ws_upload(emulator.url, clip),
                                                 "duration": 5, "resolution": "720p", "generate_audio": False})
    final, _ = ws_wait(emulator.url, resp.json()["data"]["id"])
    out = download(final["outputs"][0], tmp_path / "out.mp4")
    assert probe.probe(out).video.frames == 48 + 120  # type: ignore[union-attr]
    audio = probe.read_audio(out)
    assert audio is not None
    assert tone_share(audio[: 2 * 48_000], 1000.0) > 0.9
    assert float(np.abs(audio[2 * 48_000 + 2400:]).max()) < 1e-3  # silence: no audio was generated
    assert stats(emulator.url)["by_model"][MINI_EXTEND]["cost_usd"] == 0.6  # mini: half the standard $0.24/s


@pytest.mark.parametrize(("model", "body", "message"), [
    (T2V, {"duration": 5}, "missing required parameter: prompt"),
    (T2V, {"prompt": "x", "duration": 3}, "duration: 3; allowed 4-15"),
    (T2V, {"prompt": "x", "duration": 16}, "duration: 16"),
    (T2V, {"prompt": "x", "duration": "5"}, "invalid parameter duration"),
    (T2V, {"prompt": "x", "resolution": "4k"}, "resolution"),
    (T2V, {"prompt": "x", "aspect_ratio": "5:4"}, "aspect_ratio"),
    (T2V, {"prompt": "x", "reference_images": ["http://h/x.png"] * 10}, "reference_images: 10 given; at most 9"),
    (T2V, {"prompt": "x", "reference_videos": ["http://h/x.mp4"] * 4}, "reference_videos: 4 given; at most 3"),
    (I2V, {"prompt": "x", "image": "http://h/a.png", "reference_images": ["http://h/b.png"]}, "cannot be combined"),
    (EXTEND, {"prompt": "x", "video": "http://h/a.mp4", "reference_audios": ["http://h/a.wav"]}, "cannot be combined"),
    (EXTEND, {"prompt": "x"}, "missing required parameter: video"),
    (I2V, {"prompt": "x"}, "missing required parameter: image"),
    (T2V, {"prompt": "x", "enable_sync_mode": True}, "not emulated"),
])
def test_invalid_submissions_get_400_and_are_not_billed(emulator: EmulatorServer, model: str,
                                                        body: dict[str, object], message: str) -> None:
    resp = ws_submit(emulator.url, model, body)
    assert resp.status_code == 400
    assert resp.json()["code"] == 400 and resp.json()["data"] is None
    assert message in resp.json()["message"]
    s = stats(emulator.url)
    assert s["submissions"] == 0 and s["rejected_submissions"] == {"wavespeed": 1}


def test_mini_takes_more_reference_videos_than_standard(emulator: EmulatorServer) -> None:
    refs = {"prompt": "x", "reference_videos": ["http://127.0.0.1:9/v.mp4"] * 5, "duration": 5}
    assert ws_submit(emulator.url, T2V, refs).status_code == 400
    mini = ws_submit(emulator.url, "bytedance/seedance-2.0-mini/text-to-video", refs)
    assert mini.status_code == 200  # the Mini page allows up to 9 videos
    final, _ = ws_wait(emulator.url, mini.json()["data"]["id"])
    assert (final["status"], final["code"]) == ("failed", 1402)  # and then the URLs are really fetched


def test_unknown_model_and_prediction_are_404(emulator: EmulatorServer) -> None:
    assert ws_submit(emulator.url, "bytedance/seedance-3.0/text-to-video", {"prompt": "x"}).status_code == 404
    resp = httpx.get(f"{emulator.url}/api/v3/predictions/nope/result", headers=WS)
    assert resp.status_code == 404 and resp.json()["code"] == 404


def test_inputs_are_fetched_and_bad_ones_fail_the_job(emulator: EmulatorServer, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    cases = {
        "http://127.0.0.1:9/closed.png": 1402,  # nothing listens there
        f"{emulator.url}/files/uploads/0000/missing.png": 1402,  # our own server answers 404
        ws_upload(emulator.url, text): 1401,  # fetched, but not an image
    }
    for url, code in cases.items():
        resp = ws_submit(emulator.url, I2V, {"prompt": "x", "image": url, "duration": 5})
        final, _ = ws_wait(emulator.url, resp.json()["data"]["id"])
        assert (final["status"], final["code"]) == ("failed", code), final
        assert url in final["error"] and final["outputs"] == []


def test_price_quotes(emulator: EmulatorServer) -> None:
    inputs = {"model_id": EXTEND, "inputs": {"duration": 5, "resolution": "1080p"}}
    price = httpx.post(f"{emulator.url}/api/v3/model/price", headers=WS, json=inputs).json()
    assert price["code"] == 200 and price["data"]["price"] == 3.0 and price["data"]["currency"] == "USD"
    pricing = httpx.post(f"{emulator.url}/api/v3/model/pricing", headers=WS, json=inputs).json()
    assert pricing["data"] == {"model_id": EXTEND, "unit_price": 3.0, "currency": "USD"}
    fast = {"model_id": "bytedance/seedance-2.0-fast/text-to-video", "inputs": {"duration": 5}}
    assert httpx.post(f"{emulator.url}/api/v3/model/price", headers=WS, json=fast).json()["data"]["price"] == 0.8
    bad = {"model_id": T2V, "inputs": {"duration": 20}}
    assert httpx.post(f"{emulator.url}/api/v3/model/price", headers=WS, json=bad).status_code == 400
    assert stats(emulator.url)["submissions"] == 0  # a quote is free

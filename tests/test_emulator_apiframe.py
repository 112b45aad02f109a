"""The emulated Apiframe v2 API over real loopback HTTP: 202 jobs, strict validation, credits, idempotency."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from storyfilm.emulator import EmulatorServer
from storyfilm.media import probe

from .emu import AF, af_wait, download, load_rgb, mean_diff, set_config, stats
from .helpers import write_image

SMALL = {"duration": 4, "resolution": "480p", "aspect_ratio": "1:1"}


def generate(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/v2/videos/generate", json=body, headers={**AF, **(headers or {})}, timeout=30)


def seedance(prompt: str = "a lighthouse at night", model: str = "seedance-2", **params: Any) -> dict[str, Any]:
    return {"model": model, "prompt": prompt, "seedanceParams": {**SMALL, **params}}


def test_generate_poll_and_result_with_last_frame(emulator: EmulatorServer, tmp_path: Path) -> None:
    body = seedance(return_last_frame=True)
    resp = generate(emulator.url, body, headers={"X-Emulator-Fault": "slow=1.5"})
    assert resp.status_code == 202 and resp.headers["x-request-id"]
    assert resp.json()["status"] == "QUEUED" and set(resp.json()) == {"jobId", "status"}
    job_id = resp.json()["jobId"]
    uuid.UUID(job_id)

    final, seen = af_wait(emulator.url, job_id)
    order = ["QUEUED", "PROCESSING", "COMPLETED"]
    ranks = [order.index(j["status"]) for j in seen]
    assert ranks == sorted(ranks) and ranks[-1] == 2 and 1 in ranks  # never backwards, PROCESSING seen
    progress = [j["progress"] for j in seen if j["status"] == "PROCESSING"]
    assert all(0 < p < 100 for p in progress) and progress == sorted(progress) and len(set(progress)) > 1
    assert final["progress"] == 100 and final["error"] is None and final["expired"] is False
    assert final["creditCost"] == 48 and final["input"] == body and final["model"] == "seedance-2"
    created = datetime.fromisoformat(final["createdAt"])
    assert (datetime.fromisoformat(final["completedAt"]) - created).total_seconds() >= 1.5
    assert created.tzinfo == UTC

    video = download(final["result"]["videoUrl"], tmp_path / "out.mp4")
    info = probe.probe(video)
    assert info.video and (info.video.width, info.video.height, info.video.frames) == (480, 480, 97)
    assert info.audio is None  # generate_audio defaults to false (the model page's table)
    last = download(final["result"]["lastFrameUrl"], tmp_path / "last.png")
    assert mean_diff(load_rgb(last), probe.last_frame(video)) < 3


@pytest.mark.parametrize(("body", "path"), [
    ({**seedance(), "webhook_url": "https://me.example/hook"}, "webhook_url"),  # unknown keys are errors
    (seedance(fps=24), "seedanceParams.fps"),
    (seedance(duration=16), "seedanceParams.duration"),
    (seedance(duration=3), "seedanceParams.duration"),
    (seedance(duration="5"), "seedanceParams.duration"),
    (seedance(duration=None), "seedanceParams.duration"),
    (seedance(resolution="2k"), "seedanceParams.resolution"),
    (seedance(model="seedance-2-fast", resolution="1080p"), "seedanceParams.resolution"),
    (seedance(aspect_ratio="5:4"), "seedanceParams.aspect_ratio"),
    (seedance(start_image="not a url"), "seedanceParams.start_image"),
    (seedance(reference_image_urls=["https://x.example/a.png"] * 10), "seedanceParams.reference_image_urls"),
    (seedance(start_image="https://x.example/a.png", reference_image_urls=["https://x.example/b.png"]),
     "seedanceParams"),
    (seedance(end_image="https://x.example/a.png"), "seedanceParams.end_image"),
    (seedance(model="seedance-9"), "model"),
    (seedance(prompt=""), "prompt"),
    ({"model": "seedance-2"}, "prompt"),
    ({**seedance(), "webhookUrl": "https://me.example/hook"}, "webhookUrl"),  # valid, but not emulated
])
def test_strict_validation_names_the_field(emulator: EmulatorServer, body: dict[str, Any], path: str) -> None:
    resp = generate(emulator.url, body)
    assert resp.status_code == 400
    assert resp.json()["error"] and path in resp.json()["details"], resp.json()
    assert stats(emulator.url)["submissions"] == 0


def test_job_ids_are_checked(emulator: EmulatorServer) -> None:
    bad = httpx.get(f"{emulator.url}/v2/jobs/not-a-uuid", headers=AF)
    assert bad.status_code == 400 and "id" in bad.json()["details"]
    assert httpx.get(f"{emulator.url}/v2/jobs/{uuid.uuid4()}", headers=AF).status_code == 404
    job_id = generate(emulator.url, seedance("[[fault:moderation]]")).json()["jobId"]
    other_key = httpx.get(f"{emulator.url}/v2/jobs/{job_id}", headers={"X-API-Key": "afk_someone_else"})
    assert other_key.status_code == 404  # another account's job


def test_idempotency_key_replays_without_billing_twice(emulator: EmulatorServer) -> None:
    key = {"Idempotency-Key": "shot-door-7c1f"}
    first = generate(emulator.url, seedance(), headers=key)
    # the same body with its keys in another order is the same request
    same = {"seedanceParams": seedance()["seedanceParams"], "prompt": "a lighthouse at night", "model": "seedance-2"}
    again = generate(emulator.url, same, headers=key)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["jobId"] == first.json()["jobId"]
    conflict = generate(emulator.url, seedance(prompt="another shot"), headers=key)
    assert conflict.status_code == 409 and conflict.json()["error"]
    assert generate(emulator.url, seedance(), headers={"Idempotency-Key": "k" * 256}).status_code == 400
    s = stats(emulator.url)
    assert s["submissions"] == 1 and s["by_provider"]["apiframe"] == {"submissions": 1, "cost_usd": 0.48}


def test_credits_run_out_with_402_and_failed_jobs_are_refunded(emulator: EmulatorServer) -> None:
    set_config(emulator.url, apiframe_credits=60)
    assert generate(emulator.url, seedance()).status_code == 202  # 4 s at 480p: 48 credits
    short = generate(emulator.url, seedance("another shot"))
    assert short.status_code == 402
    assert short.json() == {"error": "Insufficient credits", "creditsRequired": 48, "creditsAvailable": 12}

    set_config(emulator.url, apiframe_credits=108)
    flagged = generate(emulator.url, seedance("[[fault:moderation]] a storm"))
    assert flagged.status_code == 202
    final, _ = af_wait(emulator.url, flagged.json()["jobId"])
    assert final["status"] == "FAILED" and final["creditCost"] == 0 and final["progress"] is None
    assert final["error"].startswith("Provider returned an error: content policy violation")
    assert final["result"] is None
    assert stats(emulator.url)["apiframe_credits_available"] == 60  # the failed job was refunded
    assert generate(emulator.url, seedance("another shot")).status_code == 202


def test_uploads_are_sniffed_and_expire(emulator: EmulatorServer, tmp_path: Path) -> None:
    image = write_image(tmp_path / "photo.png", (320, 180))
    with open(image, "rb") as f:  # declared as a JPEG: the bytes decide
        resp = httpx.post(f"{emulator.url}/v2/uploads", headers=AF, files={"file": ("photo.jpg", f, "image/jpeg")})
    assert resp.status_code == 201
    up = resp.json()
    uuid.UUID(up["id"])
    assert (up["kind"], up["contentType"], up["byteSize"]) == ("image", "image/png", image.stat().st_size)
    expires = datetime.fromisoformat(up["expiresAt"]).timestamp()
    assert 3500 < expires - time.time() <= 3600
    assert httpx.get(up["url"]).content == image.read_bytes()
    text = httpx.post(f"{emulator.url}/v2/uploads", headers=AF, files={"file": ("a.png", b"hello", "image/png")})
    assert text.status_code == 400 and "Unsupported" in text.json()["error"]

    set_config(emulator.url, upload_ttl=0.3)
    with open(image, "rb") as f:
        short_lived = httpx.post(f"{emulator.url}/v2/uploads", headers=AF, files={"file": (image.name, f)}).json()
    time.sleep(0.4)
    assert httpx.get(short_lived["url"]).status_code == 404
    job = generate(emulator.url, seedance(start_image=short_lived["url"])).json()["jobId"]
    final, _ = af_wait(emulator.url, job)
    assert final["status"] == "FAILED" and short_lived["url"] in final["error"]


def test_rate_limit_429_with_retry_after(emulator: EmulatorServer) -> None:
    httpx.post(f"{emulator.url}/_emulator/faults", json={"faults": "submit-429=3@apiframe"}).raise_for_status()
    limited = generate(emulator.url, seedance("[[fault:moderation]]"))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3" and limited.json()["error"]
    assert generate(emulator.url, seedance("[[fault:moderation]]")).status_code == 202
    s = stats(emulator.url)
    assert s["submissions"] == 1 and s["rejected_submissions"] == {"apiframe": 1}

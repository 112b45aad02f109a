"""Talking to the emulator over real loopback HTTP in the tests: submit, wait, download."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

WS = {"Authorization": "Bearer ws-test-key"}
AF = {"X-API-Key": "afk_test_key"}
GW = {"Authorization": "Bearer sk-test-key"}
T2V = "bytedance/seedance-2.0/text-to-video"
I2V = "bytedance/seedance-2.0/image-to-video"
EXTEND = "bytedance/seedance-2.0/video-extend"
MINI_EXTEND = "bytedance/seedance-2.0-mini/video-extend"
SMALL = {"resolution": "480p", "aspect_ratio": "1:1"}  # 480x480: cheap to render


def poll_until(get: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool],
               timeout: float = 60.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll every 50 ms until `done`; the last body and every body seen."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = get()
        seen.append(body)
        if done(body):
            return body, seen
        time.sleep(0.05)
    raise AssertionError(f"still not done after {timeout} s: {seen[-1] if seen else None}")


def ws_submit(url: str, model: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/api/v3/{model}", json=body, headers={**WS, **(headers or {})}, timeout=30)


def ws_wait(url: str, job_id: str) -> tuple[dict[str, Any], list[str]]:
    """The final `data` of a WaveSpeed prediction and the statuses seen on the way."""
    def get() -> dict[str, Any]:
        resp = httpx.get(f"{url}/api/v3/predictions/{job_id}/result", headers=WS)
        assert resp.status_code == 200, resp.text
        return resp.json()["data"]

    final, seen = poll_until(get, lambda d: d["status"] in ("completed", "failed", "cancelled"))
    return final, [d["status"] for d in seen]


def af_wait(url: str, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    def get() -> dict[str, Any]:
        resp = httpx.get(f"{url}/v2/jobs/{job_id}", headers=AF)
        assert resp.status_code == 200, resp.text
        return resp.json()

    return poll_until(get, lambda j: j["status"] in ("COMPLETED", "FAILED", "CANCELLED"))


def gw_wait(url: str, task_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    def get() -> dict[str, Any]:
        resp = httpx.get(f"{url}/v1/videos/{task_id}", headers=GW)
        assert resp.status_code == 200, resp.text
        return resp.json()

    return poll_until(get, lambda t: t["status"] in ("completed", "failed", "cancelled"))


def download(url: str, dest: Path) -> Path:
    resp = httpx.get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    assert int(resp.headers["content-length"]) == len(resp.content)
    dest.write_bytes(resp.content)
    return dest


def ws_upload(url: str, path: Path) -> str:
    """Upload through WaveSpeed's multipart endpoint; the download URL."""
    with open(path, "rb") as f:
        resp = httpx.post(f"{url}/api/v3/media/upload/binary", headers=WS, files={"file": (path.name, f)})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["data"]["download_url"])


def stats(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/_emulator/stats").json()


def set_faults(url: str, spec: str) -> None:
    httpx.post(f"{url}/_emulator/faults", json={"faults": spec}).raise_for_status()


def set_config(url: str, **settings: object) -> None:
    httpx.post(f"{url}/_emulator/config", json=settings).raise_for_status()


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def tone_share(samples: np.ndarray, freq: float) -> float:
    """The share of the spectrum's energy within 5 Hz of `freq` (mono mix, 48 kHz)."""
    mono = samples.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono)) ** 2
    freqs = np.fft.rfftfreq(len(mono), 1 / 48_000)
    return float(spectrum[np.abs(freqs - freq) < 5].sum() / max(spectrum.sum(), 1e-12))

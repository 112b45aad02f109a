"""The official `wavespeed` SDK (PyPI, 2.0.5) pointed at the emulator: guards the emulator against drifting
from the real contract the SDK was written for."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from wavespeed import Client

from storyfilm.emulator import EmulatorServer
from storyfilm.media import probe

from .emu import EXTEND, SMALL, T2V, download, stats
from .helpers import make_clip


@pytest.mark.slow
def test_sdk_uploads_runs_text_to_video_and_extend(emulator: EmulatorServer, tmp_path: Path) -> None:
    client = Client(api_key="sdk-key", base_url=emulator.url, retry_interval=0.05)
    clip = make_clip(tmp_path / "in.mp4", 2.0, size=(480, 480))
    url = client.upload(str(clip))  # the SDK's ticket + PUT flow
    assert httpx.get(url).content == clip.read_bytes()

    # Two 503s on the result: the SDK retries its GETs and still gets the video.
    t2v = client.run(T2V, {"prompt": "[[fault:poll-503*2]] a gull over the sea", "duration": 4, **SMALL},
                     poll_interval=0.05, timeout=60)
    video = download(t2v["outputs"][0], tmp_path / "t2v.mp4")
    assert probe.probe(video).video.frames == 4 * 24 + 1  # type: ignore[union-attr]

    extended = client.run(EXTEND, {"prompt": "the camera pushes in", "video": url, "duration": 4,
                                   "resolution": "480p"}, poll_interval=0.05, timeout=60)
    out = download(extended["outputs"][0], tmp_path / "extended.mp4")
    info = probe.probe(out)
    assert info.video and info.video.frames == 48 + 96 and info.video.duration == pytest.approx(6.0)

    with pytest.raises(RuntimeError, match="content policy"):
        client.run(T2V, {"prompt": "[[fault:moderation]] x", "duration": 4}, poll_interval=0.05, timeout=60)
    s = stats(emulator.url)
    assert s["submissions"] == 3 and s["uploads"] == {"wavespeed": 1}  # retried polls never re-submitted
    assert s["jobs"][0]["polls"] >= 3  # the two 503s were answered

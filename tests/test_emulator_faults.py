"""Injected faults: the spec language, and each fault as a client sees it over loopback HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storyfilm.emulator import EmulatorConfig, EmulatorServer
from storyfilm.emulator.faults import Fault, parse, parse_item, strip_tags
from storyfilm.errors import FaultSpecError
from storyfilm.media import probe

from .emu import AF, GW, SMALL, T2V, WS, download, set_faults, stats, ws_submit, ws_wait

# --- the spec language ---


@pytest.mark.parametrize(("spec", "fault"), [
    ("submit-429", Fault("submit", status=429, retry_after=1.0)),
    ("submit-429=none*2", Fault("submit", status=429, retry_after=None, count=2)),
    ("poll-503=5*all@wavespeed", Fault("poll", status=503, retry_after=5.0, count=None, provider="wavespeed")),
    ("upload-502", Fault("upload", status=502)),
    ("download-drop*3", Fault("download", drop=True, count=3)),
    ("moderation@apiframe", Fault("job", outcome="moderation", provider="apiframe")),
    ("slow=2.5", Fault("job", slow=2.5)),
    ("cancel*all", Fault("job", outcome="cancel", count=None)),
    ("submit-badjson", Fault("submit", answer="badjson")),
    ("poll-wrongtype*all@gateway", Fault("poll", answer="wrongtype", count=None, provider="gateway")),
    ("upload-reset*2", Fault("upload", answer="reset", count=2)),
    ("poll-slow=0.5*3", Fault("poll", slow=0.5, count=3)),
    ("output-metadata@apiframe", Fault("job", output="metadata", provider="apiframe")),
    ("download-endless", Fault("download", answer="endless")),
    ("render-dark@wavespeed", Fault("job", flaw="dark", provider="wavespeed")),
    ("render-frozen*2", Fault("job", flaw="frozen", count=2)),
])
def test_fault_items_parse_and_print_back(spec: str, fault: Fault) -> None:
    assert parse_item(spec) == fault
    assert str(fault) == spec


@pytest.mark.parametrize(("spec", "message"), [
    ("submit-42", "HTTP 42 is not a fault status"),
    ("poll-200", "HTTP 200 is not a fault status"),
    ("bogus", "unknown fault 'bogus'"),
    ("moderation=3", "takes no value"),
    ("slow", "slow needs seconds"),
    ("slow=abc", "not a number"),
    ("submit-429*0", "at least 1"),
    ("poll-500@azure", "unknown provider 'azure'"),
    ("submit 429", "does not parse"),
    ("poll-noid", "unknown fault 'poll-noid'"),  # a poll answer has no job id to lose
    ("download-badjson", "unknown fault 'download-badjson'"),
    ("output-gopher", "unknown fault 'output-gopher'"),
    ("render-blurry", "unknown fault 'render-blurry'"),
    ("render-dark=2", "takes no value"),
    ("poll-slow", "poll-slow needs seconds"),
    ("submit-echo=3", "takes no value"),
])
def test_bad_specs_say_what_is_allowed(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse(f"timeout,{spec}")


def test_prompt_tags_are_not_part_of_the_rendered_prompt() -> None:
    assert strip_tags("[[fault:poll-500*2]] a gull  [[fault:moderation]]over the sea") == "a gull over the sea"


def test_a_bad_spec_stops_the_emulator_before_it_listens() -> None:
    with pytest.raises(FaultSpecError, match="unknown fault"):
        EmulatorServer(EmulatorConfig(faults="submit-429,explode"))


# --- over HTTP ---


def test_429_without_retry_after_from_a_header(emulator: EmulatorServer) -> None:
    body = {"prompt": "[[fault:moderation]] x", "duration": 4}
    limited = ws_submit(emulator.url, T2V, body, headers={"X-Emulator-Fault": "submit-429=none"})
    assert limited.status_code == 429 and "retry-after" not in limited.headers
    assert limited.json()["code"] == 429 and limited.json()["data"] is None
    assert ws_submit(emulator.url, T2V, body).status_code == 200


def test_a_tagged_submit_fault_lets_the_retry_of_that_shot_through(emulator: EmulatorServer) -> None:
    body = {"prompt": "[[fault:submit-503*2,moderation]] shot one", "duration": 4}
    assert [ws_submit(emulator.url, T2V, body).status_code for _ in range(3)] == [503, 503, 200]
    other = {"prompt": "[[fault:moderation]] shot two", "duration": 4}
    assert ws_submit(emulator.url, T2V, other).status_code == 200
    s = stats(emulator.url)
    assert s["submissions"] == 2 and s["rejected_submissions"] == {"wavespeed": 2}


def test_poll_errors_then_a_job_that_times_out(emulator: EmulatorServer) -> None:
    job = ws_submit(emulator.url, T2V, {"prompt": "[[fault:poll-500*2,timeout]] x", "duration": 4}).json()["data"]
    codes = [httpx.get(f"{emulator.url}/api/v3/predictions/{job['id']}/result", headers=WS).status_code
             for _ in range(3)]
    assert codes == [500, 500, 200]
    final, _ = ws_wait(emulator.url, job["id"])
    assert (final["status"], final["code"]) == ("failed", 5004) and "timed out" in final["error"]
    assert stats(emulator.url)["jobs"][0]["polls"] >= 4


def test_global_faults_can_target_one_provider(emulator: EmulatorServer) -> None:
    set_faults(emulator.url, "poll-503=2*all@apiframe,submit-500@gateway")
    af = httpx.post(f"{emulator.url}/v2/videos/generate", headers=AF, json={
        "model": "seedance-2", "prompt": "[[fault:moderation]] x", "seedanceParams": {"duration": 4}}).json()
    for _ in range(2):
        poll = httpx.get(f"{emulator.url}/v2/jobs/{af['jobId']}", headers=AF)
        assert poll.status_code == 503 and poll.headers["retry-after"] == "2" and poll.json()["error"]
    gw = httpx.post(f"{emulator.url}/v1/video/generations", headers=GW,
                    json={"model": "seedance2.0-480p", "prompt": "[[fault:moderation]] x"})
    assert gw.status_code == 500 and gw.json()["error"]["type"] == "server_error"
    ws = ws_submit(emulator.url, T2V, {"prompt": "[[fault:moderation]] x", "duration": 4}).json()["data"]
    assert httpx.get(f"{emulator.url}/api/v3/predictions/{ws['id']}", headers=WS).status_code == 200


@pytest.mark.slow
def test_download_drops_half_way_then_503_then_succeeds(emulator: EmulatorServer, tmp_path: Path) -> None:
    job = ws_submit(emulator.url, T2V, {"prompt": "a gull", "duration": 4, **SMALL},
                    headers={"X-Emulator-Fault": "download-drop"}).json()["data"]
    final, _ = ws_wait(emulator.url, job["id"])
    url = final["outputs"][0]
    received = 0
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", url) as resp:
        announced = int(resp.headers["content-length"])
        for chunk in resp.iter_bytes():
            received += len(chunk)
    assert 0 < received < announced
    set_faults(emulator.url, "download-503=2")
    busy = httpx.get(url)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
    whole = httpx.get(url)
    assert whole.status_code == 200 and len(whole.content) == announced
    (tmp_path / "out.mp4").write_bytes(whole.content)
    assert probe.probe(tmp_path / "out.mp4").video.frames == 97  # type: ignore[union-attr]
    assert stats(emulator.url)["jobs"][0]["downloads"] == 3


def test_slow_and_failing_jobs_from_the_global_book(emulator: EmulatorServer) -> None:
    # 3 s: the job shows "processing" from 0.6 s to 3 s, a window a poller stalled on a busy machine still sees
    set_faults(emulator.url, "slow=3,moderation")
    started = time.monotonic()
    slow = ws_submit(emulator.url, T2V, {"prompt": "x", "duration": 4}).json()["data"]
    quick = ws_submit(emulator.url, T2V, {"prompt": "[[fault:cancel]] y", "duration": 4}).json()["data"]
    final, statuses = ws_wait(emulator.url, slow["id"])
    assert time.monotonic() - started >= 3 and "processing" in statuses
    assert (final["status"], final["code"]) == ("failed", 1200)  # the moderation fault went to the first job
    final, _ = ws_wait(emulator.url, quick["id"])
    assert final["status"] == "cancelled" and final["timings"]["inference"] < 1000
    assert [f["remaining"] for f in httpx.get(f"{emulator.url}/_emulator/faults").json()["faults"]] == [0, 0]


def test_faults_are_set_and_reset_at_run_time(emulator: EmulatorServer) -> None:
    bad = httpx.post(f"{emulator.url}/_emulator/faults", json={"faults": "submit-429,nope"})
    assert bad.status_code == 400 and "unknown fault 'nope'" in bad.json()["error"]
    set_faults(emulator.url, "upload-502*2")
    for status in (502, 502, 200):
        resp = httpx.post(f"{emulator.url}/api/v3/media/upload/binary", headers=WS,
                          files={"file": ("a.wav", b"RIFF0000WAVEfmt ", "audio/wav")})
        assert resp.status_code == status
    httpx.post(f"{emulator.url}/_emulator/reset").raise_for_status()
    assert httpx.get(f"{emulator.url}/_emulator/faults").json()["faults"] == []
    assert stats(emulator.url)["uploads"] == {}
    header = ws_submit(emulator.url, T2V, {"prompt": "x"}, headers={"X-Emulator-Fault": "submit-999"})
    assert header.status_code == 400 and "HTTP 999" in header.json()["error"]


@pytest.fixture(scope="module")
def strict() -> Iterator[EmulatorServer]:
    keys = {"wavespeed": "ws-right", "apiframe": "af-right", "gateway": "gw-right"}
    with EmulatorServer(EmulatorConfig(api_keys=keys)) as server:
        yield server


@pytest.mark.parametrize(("method", "path", "auth", "right"), [
    ("POST", f"/api/v3/{T2V}", "authorization", "Bearer ws-right"),
    ("GET", "/api/v3/predictions/x/result", "authorization", "Bearer ws-right"),
    ("POST", "/api/v3/media/uploads", "authorization", "Bearer ws-right"),
    ("POST", "/v2/videos/generate", "x-api-key", "af-right"),
    ("GET", "/v2/jobs/x", "x-api-key", "af-right"),
    ("POST", "/v1/video/generations", "authorization", "Bearer gw-right"),
    ("GET", "/v1/videos/x", "authorization", "Bearer gw-right"),
])
def test_missing_or_wrong_keys_get_401_in_the_hosts_shape(strict: EmulatorServer, method: str, path: str,
                                                         auth: str, right: str) -> None:
    wrong = right.replace("right", "wrong")
    for headers in ({}, {auth: wrong}, {auth: ""}):
        resp = httpx.request(method, f"{strict.url}{path}", headers=headers, json={})
        assert resp.status_code == 401
        body = resp.json()
        if path.startswith("/api/v3"):
            assert body["code"] == 401 and body["data"] is None
        elif path.startswith("/v2"):
            assert isinstance(body["error"], str) and resp.headers["x-request-id"]
        else:
            assert body["error"]["type"] == "authentication_error"
    assert httpx.request(method, f"{strict.url}{path}", headers={auth: right}, json={}).status_code != 401


@pytest.mark.slow
def test_a_flawed_render_is_frozen_or_dark_from_its_first_new_frame(emulator: EmulatorServer, tmp_path: Path) -> None:
    """One job of three identical ones is rendered frozen, one dark (the global book hands each to one job);
    the third, and frame 0 of each, are as asked."""
    import numpy as np

    set_faults(emulator.url, "render-frozen,render-dark")
    body = {"prompt": "A lighthouse at dusk, push in.", "duration": 4, **SMALL}
    ids = [ws_submit(emulator.url, T2V, body).json()["data"]["id"] for _ in range(3)]
    frames = []
    for job_id in ids:
        final, _ = ws_wait(emulator.url, job_id)
        assert final["status"] == "completed"
        video = download(final["outputs"][0], tmp_path / f"{job_id}.mp4")
        assert probe.probe(video).audio is not None  # the audio is kept
        assert probe.probe(video).video.frames == 4 * 24 + 1  # type: ignore[union-attr]
        frames.append([f.astype(np.float32) for f in probe.read_frames(video, [0, 1, 48, 96])])
    frozen, dark, good = frames
    assert max(float(np.abs(f - frozen[0]).mean()) for f in frozen) < 1.0  # one picture throughout
    assert float(np.abs(good[2] - good[0]).mean()) > 5.0  # the good one moves
    assert float(np.abs(dark[0] - good[0]).mean()) < 1.0  # the start frame is left alone
    assert all(d.mean() < 0.2 * g.mean() for d, g in zip(dark[1:], good[1:], strict=True))
    assert stats(emulator.url)["submissions"] == 3

"""Host fidelity: the readings of the hosts' pages (providers/specs.py, each with the seed line it rests on)
hold in the plan, in the requests the clients send, and in the emulator the other tests run against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from storyfilm import assets
from storyfilm.cli import app
from storyfilm.emulator import EmulatorServer, apiframe, catalog, gateway, wavespeed
from storyfilm.errors import StoryboardError
from storyfilm.generate import PollSettings, ShotRunner, build_request
from storyfilm.ledger import Ledger
from storyfilm.media import probe
from storyfilm.media.ffmpeg import VideoFormat
from storyfilm.plan import Plan, make_plan
from storyfilm.providers import make_provider
from storyfilm.providers.apiframe import outputs
from storyfilm.providers.base import ShotRequest
from storyfilm.providers.specs import ENDPOINTS, SPECS, TIERS, provider_rows
from storyfilm.storyboard import load_storyboard

from .emu import EXTEND, download, set_config, stats, tone_share, ws_submit, ws_upload, ws_wait
from .helpers import REPO, make_clip, write_image, write_storyboard

FAST_POLLS = PollSettings(first=0.05, max=0.2, timeout=60)
LENGTHS = range(1, 21)


# --- the emulator takes exactly what the specs say each host takes ---------------------------------------


def ws_body(kind: str, **fields: object) -> dict[str, object]:
    inputs = {"image": {"image": "http://h/a.png"}, "extend": {"video": "http://h/a.mp4"}}.get(kind, {})
    return {"prompt": "x", **inputs, **fields}


@pytest.mark.parametrize("tier", TIERS)
def test_the_emulated_wavespeed_takes_what_the_spec_says(tier: str) -> None:
    spec = SPECS["wavespeed"]
    for kind in ENDPOINTS:
        limits = spec.limits(tier, kind)
        taken = [d for d in LENGTHS if not isinstance(wavespeed.validate(tier, kind, ws_body(kind, duration=d)), str)]
        assert tuple(taken) == limits.durations, (tier, kind)
        good = limits.durations[0]
        for resolution in ("480p", "720p", "1080p", "4k"):
            checked = wavespeed.validate(tier, kind, ws_body(kind, duration=good, resolution=resolution))
            assert (not isinstance(checked, str)) == (resolution in limits.resolutions), (tier, kind, resolution)
            if resolution in limits.resolutions:  # the host charges what the plan estimates
                assert catalog.cost_usd(tier, resolution, good, kind) == spec.price(tier, resolution, good, kind)
        if kind != "extend":  # an extend follows its input video's shape
            for ratio in catalog.ASPECT_RATIOS:
                checked = wavespeed.validate(tier, kind, ws_body(kind, duration=good, aspect_ratio=ratio))
                assert (not isinstance(checked, str)) == (ratio in limits.aspect_ratios), (tier, kind, ratio)
        silent = wavespeed.validate(tier, kind, ws_body(kind, duration=good, generate_audio=False, seed=7))
        assert not isinstance(silent, str)
        assert silent.audio is not limits.audio_switch  # off where the schema has the switch, else always on
        assert silent.seed is None and not limits.seed  # WaveSpeed has no seed field: a seed sent is ignored


@pytest.mark.parametrize("tier", TIERS)
def test_the_emulated_apiframe_and_gateway_take_what_the_specs_say(tier: str) -> None:
    model = next(m for m, t in apiframe.TIERS.items() if t == tier)
    af = SPECS["apiframe"].limits(tier)
    taken = [d for d in LENGTHS if not isinstance(apiframe.validate(
        {"model": model, "prompt": "x", "seedanceParams": {"duration": d}}), dict)]
    assert tuple(taken) == af.durations == (4, 6, 8, 10, 12, 15)
    gw = SPECS["gateway"].limits(tier)
    prefix = "seedance2.0" if tier == "standard" else f"seedance2.0-{tier}"
    taken = [d for d in LENGTHS if not isinstance(gateway.validate(
        {"model": f"{prefix}-480p", "prompt": "x", "duration": d})[1], str)]
    assert tuple(taken) == gw.durations
    for spec in (SPECS["apiframe"], SPECS["gateway"]):  # no published figures: the estimate is what it charges
        for resolution, price in spec.limits(tier).prices.items():
            assert price.basis == "estimate"
            assert catalog.cost_usd(tier, resolution, 6) == spec.price(tier, resolution, 6)


def test_fast_extend_is_priced_from_its_own_page_not_as_two_thirds_of_standard() -> None:
    spec = SPECS["wavespeed"]
    standard, fast = spec.limits("standard", "extend"), spec.limits("fast", "extend")
    assert {r: p.usd_per_second for r, p in fast.prices.items()} == {"480p": 0.10, "720p": 0.20, "1080p": 0.50}
    assert all(fast.prices[r].usd_per_second == pytest.approx(standard.prices[r].usd_per_second * 5 / 6, abs=0.005)
               for r in fast.prices)  # "~17% cheaper ... at every resolution"
    assert spec.price("fast", "720p", 5, "text") == 0.8  # text-to-video is the 33% cheaper one


def test_the_provider_list_marks_estimates() -> None:
    rows = provider_rows(SPECS.values())
    by = {(r[0], r[1], r[2]): r for r in rows}
    prices = {name: [r[6] for r in rows if r[0] == name] for name in SPECS}
    assert all("~" in p for p in prices["apiframe"] + prices["gateway"])  # no figures published: estimates
    assert by[("wavespeed", "standard", "video-extend")][6] == "480p 0.12, 720p 0.24, 1080p 0.60"  # S-000
    assert by[("wavespeed", "standard", "video-extend")][7] == "no seed, audio always on"
    assert by[("wavespeed", "standard", "image-to-video")][3] == "5, 10, 15 s"
    assert by[("wavespeed", "mini", "image-to-video")][3:5] == ("5, 10 s", "720p 1080p")
    assert by[("apiframe", "standard", "text-to-video, image-to-video")][3] == "4, 6, 8, 10, 12, 15 s"
    assert prices["local"] == ["free"] * 3
    result = CliRunner().invoke(app, ["providers"], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and "480p ~0.12" in result.output and "~ an estimate" in result.output


# --- the plan: limits by endpoint, with the shot, the field and what is allowed; notes, not silence -------


BOARD = """\
version: 1
title: Fidelity
provider: {provider}
model: {tier}
defaults: {{duration: {duration}, resolution: {resolution}, aspect_ratio: "16:9", seed: 7, audio: false}}
assets:
  a: refs/a.png
shots:
  - id: opening
    prompt: Dawn over the harbour.
  - id: pier
    image: a
    prompt: The pier.
  - id: gulls
    prompt: Gulls lift off, the camera tilts up.
"""


def plan_of(directory: Path, provider: str, tier: str = "standard", duration: int = 5,
            resolution: str = "720p") -> Plan:
    text = BOARD.format(provider=provider, tier=tier, duration=duration, resolution=resolution)
    board = load_storyboard(write_storyboard(directory, text))
    return make_plan(board, assets.digests(board))


@pytest.mark.parametrize(("provider", "tier", "duration", "resolution", "words"), [
    ("apiframe", "standard", 5, "720p", ":5: defaults.duration: 5 s is not a length apiframe (standard) takes; "
                                         "allowed: 4, 6, 8, 10, 12, 15 s (used by 3 shots: opening, pier, gulls)"),
    ("wavespeed", "standard", 4, "720p", ":5: defaults.duration: 4 s is not a length wavespeed (standard, "
                                         "image-to-video) takes; allowed: 5, 10, 15 s"),
    ("wavespeed", "mini", 13, "720p", "13 s is outside wavespeed (mini, text-to-video)'s range 5-12 s"),
    ("wavespeed", "mini", 5, "480p", ":5: defaults.resolution: 480p is not offered by wavespeed (mini); allowed: "
                                     "720p, 1080p (used by 3 shots: opening, pier, gulls)"),
])
def test_limits_name_the_field_and_what_the_host_takes(storyboard_dir: Path, provider: str, tier: str,
                                                      duration: int, resolution: str, words: str) -> None:
    with pytest.raises(StoryboardError) as info:
        plan_of(storyboard_dir, provider, tier, duration, resolution)
    assert words in str(info.value)


def test_a_shot_names_itself_when_its_own_value_is_refused(storyboard_dir: Path) -> None:
    text = BOARD.format(provider="apiframe", tier="standard", duration=6, resolution="720p")
    text = text.replace("    prompt: The pier.", "    prompt: The pier.\n    duration: 7")
    with pytest.raises(StoryboardError, match=r":14: shots\[1\].duration \(shot 'pier'\): 7 s is not a length "
                                              r"apiframe \(standard\) takes; allowed: 4, 6, 8, 10, 12, 15 s"):
        make_plan(b := load_storyboard(write_storyboard(storyboard_dir, text)), assets.digests(b))


def test_what_a_host_cannot_take_is_noted_not_dropped(storyboard_dir: Path) -> None:
    plan = plan_of(storyboard_dir, "wavespeed", duration=5)
    by_id = {s.id: s for s in plan.shots}
    assert [s.endpoint for s in plan.shots] == ["text", "image", "extend"]
    assert all("wavespeed takes no seed: `seed: 7` is not sent" in s.notes[0] for s in plan.shots)
    audio = "wavespeed's video-extend always generates audio: `audio: false` is not sent"
    assert [any(audio in n for n in s.notes) for s in plan.shots] == [False, False, True]
    assert plan.notes == ["wavespeed takes no seed: `seed: 7` is not sent (the host picks its own) "
                          "(shots opening, pier, gulls)",
                          f"{audio} (the shot keeps the host's audio) (shot gulls)"]
    assert by_id["gulls"].cost_usd == 5 * 0.24 and by_id["pier"].cost_usd == 5 * 0.24
    mini = plan_of(storyboard_dir, "wavespeed", tier="mini", duration=5)
    assert not any("always generates audio" in n for n in mini.notes)  # Mini's extend has the switch
    assert plan_of(storyboard_dir, "apiframe", duration=6).notes == []  # Apiframe takes a seed and the switch
    assert plan_of(storyboard_dir, "local").notes == []
    result = CliRunner().invoke(app, ["plan", str(storyboard_dir / "board.yaml"), "--provider", "wavespeed"],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "note: wavespeed takes no seed: `seed: 7` is not sent (the host picks its own) (shots opening, pier, " \
           "gulls)" in said
    assert "note: wavespeed's video-extend always generates audio" in said


def test_the_example_storyboards_plan_on_the_hosts_the_readme_names() -> None:
    board = load_storyboard(REPO / "storyboards" / "lighthouse.yaml")
    for provider in ("local", "wavespeed", "apiframe"):
        plan = make_plan(board, assets.digests(board), provider=provider, budget_usd=10)
        assert plan.cost_usd <= 10, provider  # `--budget 10` in the README
    result = CliRunner().invoke(app, ["plan", str(REPO / "storyboards" / "lighthouse.yaml"), "--provider", "wavespeed",
                                      "--budget", "10", "--output", "/nonexistent-storyfilm-output"])
    assert result.exit_code == 0, result.output


# --- the clients' requests, and what the emulated hosts make of them (real HTTP) --------------------------


def request(tier: str, **inputs: object) -> ShotRequest:
    fields: dict[str, object] = {"shot_id": "s", "prompt": "the camera pushes in", "tier": tier, "duration": 5,
                                 "resolution": "720p", "aspect_ratio": "1:1", "fmt": VideoFormat(720, 720),
                                 "audio": False, "seed": 7, "camera": "auto", "overlay": "", **inputs}
    return ShotRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.slow
def test_wavespeed_requests_follow_each_endpoints_schema(emulator: EmulatorServer, tmp_path: Path) -> None:
    provider = make_provider("wavespeed", tmp_path, env={"WAVESPEED_API_KEY": "k", "WAVESPEED_BASE_URL": emulator.url})
    clip = make_clip(tmp_path / "prev.mp4", 2.0, size=(720, 720), tone=1000.0)
    still = write_image(tmp_path / "still.png", (720, 720), seed=3)
    standard = provider.prepare(request("standard", start_video=clip))
    assert standard["path"].endswith("/seedance-2.0/video-extend")
    assert "generate_audio" not in standard["body"] and "seed" not in standard["body"]  # not in the schema
    assert provider.prepare(request("mini", start_video=clip))["body"]["generate_audio"] is False
    image = provider.prepare(request("standard", start_image=still))["body"]
    assert image["image"].startswith(emulator.url) and "images" not in image and image["generate_audio"] is False

    # The standard extend always makes audio for its new segment (S-000 line 65), whatever was asked.
    resp = ws_submit(emulator.url, EXTEND, {"prompt": "static", "video": ws_upload(emulator.url, clip),
                                            "duration": 4, "resolution": "720p", "generate_audio": False})
    final, _ = ws_wait(emulator.url, resp.json()["data"]["id"])
    audio = probe.read_audio(download(final["outputs"][0], tmp_path / "out.mp4"))
    assert audio is not None
    new = audio[2 * 48_000 + 2400:]
    assert tone_share(audio[: 2 * 48_000], 1000.0) > 0.9 and float(np.sqrt(np.mean(new**2))) > 0.01


def test_an_apiframe_result_is_read_in_every_documented_shape() -> None:
    video, frame = "https://cdn.example/o/x.mp4", "https://cdn.example/o/x.png"
    assert outputs({"videoUrl": video, "lastFrameUrl": frame}) == (video, frame)
    assert outputs(video) == (video, None)
    assert outputs([video, frame]) == (video, frame)
    assert outputs([frame, video]) == (video, frame)
    assert outputs({"videos": [video]}) == (video, None)
    for junk in (None, 5, "", [], [5, None], {"videoUrl": [video]}, {"other": video}):
        assert outputs(junk) == (None, None), junk  # no URL: the job stays recorded, asked again next run


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["list", "string"])
def test_an_apiframe_job_whose_result_is_a_list_or_a_url_is_kept(emulator: EmulatorServer, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    """"the result field then holds the output URL(s)" (S-004 line 161): a paid job is never lost to its shape."""
    monkeypatch.setenv("APIFRAME_API_KEY", "k")
    monkeypatch.setenv("APIFRAME_BASE_URL", emulator.url)
    set_config(emulator.url, apiframe_result=shape)
    text = ("version: 1\ntitle: Shapes\nprovider: apiframe\ndefaults: {duration: 4, resolution: 480p, "
            "aspect_ratio: '1:1'}\nshots:\n  - id: one\n    prompt: A calm sea.\n  - id: two\n    prompt: Waves.\n")
    board = load_storyboard(write_storyboard(tmp_path, text))
    plan = make_plan(board, assets.digests(board))
    runner = ShotRunner(provider=make_provider("apiframe", tmp_path / "work"), ledger=Ledger(tmp_path / "l.sqlite"),
                        shots_dir=tmp_path / "shots", run_id="r1", poll=FAST_POLLS)
    first = runner.run(plan.shots[0], build_request(plan.shots[0], {}, None))
    second = runner.run(plan.shots[1], build_request(plan.shots[1], {}, first))
    assert [r.frames for r in (first, second)] == [4 * 24 + 1, 4 * 24 + 1]
    # a list carries the host's last frame too: the next shot starts from the host's copy, not an upload
    assert (first.last_frame_url is not None) == (shape == "list")
    job = stats(emulator.url)["jobs"][1]
    assert (first.last_frame_url in job["inputs"]) == (shape == "list")
    assert stats(emulator.url)["submissions"] == 2


def test_seeds_go_where_the_host_takes_them(tmp_path: Path) -> None:
    """Apiframe and the gateway take a seed (S-004 line 211, S-003 line 45); WaveSpeed has none (see above)."""
    af = make_provider("apiframe", tmp_path, env={"APIFRAME_API_KEY": "k", "APIFRAME_BASE_URL": "http://127.0.0.1:9"})
    assert af.prepare(request("standard"))["seedanceParams"]["seed"] == 7
    gw = make_provider("gateway", tmp_path, env={"SEEDANCE_GATEWAY_API_KEY": "k",
                                                 "SEEDANCE_GATEWAY_BASE_URL": "http://127.0.0.1:9"})
    assert gw.prepare(request("standard"))["extra_body"]["seed"] == 7
    assert all(SPECS[p].limits(t, e).seed for p in ("apiframe", "gateway", "local") for t in TIERS for e in ENDPOINTS)

"""Faults between us and the hosts, over real loopback HTTP to the emulator: what is retried, what is not,
and that the emulator never sees a duplicate (billable) submission."""

from __future__ import annotations

from pathlib import Path

import pytest

from storyfilm import assets
from storyfilm.errors import JobFailed, JobTimeout, ModerationFailed, UncertainSubmission
from storyfilm.generate import PollSettings, ShotRunner, build_request
from storyfilm.ledger import Ledger
from storyfilm.plan import ShotPlan, make_plan
from storyfilm.providers import make_provider
from storyfilm.storyboard import load_storyboard

from .helpers import emulator_stats, point_hosts_at, write_storyboard

pytestmark = pytest.mark.slow  # each test runs shots through the emulator with real renders

FAST = PollSettings(first=0.05, max=0.2, timeout=60)


DURATION = {"wavespeed": 5, "apiframe": 6, "gateway": 5}  # a length each host takes (providers/specs.py)


def one_shot(directory: Path, provider: str, prompt: str) -> ShotPlan:
    text = (f"version: 1\ntitle: Faults\nprovider: {provider}\n"
            f"defaults: {{duration: {DURATION[provider]}, resolution: 480p}}\n"
            f"shots:\n  - id: s1\n    prompt: \"{prompt}\"\n")
    board = load_storyboard(write_storyboard(directory, text, f"{provider}.yaml"))
    return make_plan(board, assets.digests(board)).shots[0]


def runner(directory: Path, provider: str, poll: PollSettings = FAST, run_id: str = "run-1") -> ShotRunner:
    return ShotRunner(provider=make_provider(provider, directory / "work"), ledger=Ledger(directory / "l.sqlite"),
                      shots_dir=directory / "shots", run_id=run_id, poll=poll)


@pytest.fixture
def hosts(emulator, monkeypatch: pytest.MonkeyPatch):
    point_hosts_at(emulator.url, monkeypatch)
    return emulator


@pytest.mark.parametrize(("provider", "fault"), [
    ("wavespeed", "submit-429"),  # a refusal: nothing was created, so the submit may be repeated
    ("wavespeed", "poll-500*2"),
    ("gateway", "poll-503*2"),
    ("apiframe", "submit-503"),  # Apiframe only: the Idempotency-Key makes a repeated submit safe
    ("apiframe", "download-drop"),
    ("gateway", "download-drop"),
])
def test_transient_faults_are_retried_and_billed_once(tmp_path: Path, hosts, provider: str, fault: str) -> None:
    shot = one_shot(tmp_path, provider, f"a calm sea [[fault:{fault}]]")
    result = runner(tmp_path, provider).run(shot, build_request(shot, {}, None))
    assert Path(result.segment).is_file() and result.frames == DURATION[provider] * 24 + 1
    stats = emulator_stats(hosts.url)
    assert stats["submissions"] == 1
    job = stats["jobs"][0]
    if fault.startswith("poll"):
        assert job["polls"] >= 3
    if fault == "download-drop":
        assert job["downloads"] == 2


def test_a_moderated_job_is_not_resubmitted_automatically(tmp_path: Path, hosts) -> None:
    shot = one_shot(tmp_path, "wavespeed", "something the filter refuses [[fault:moderation]]")
    with pytest.raises(ModerationFailed, match="shot 's1'"):
        runner(tmp_path, "wavespeed").run(shot, build_request(shot, {}, None))
    with pytest.raises(ModerationFailed, match="same inputs would be refused again.*--redo s1"):
        runner(tmp_path, "wavespeed", run_id="run-2").run(shot, build_request(shot, {}, None))
    assert emulator_stats(hosts.url)["submissions"] == 1
    rec = Ledger(tmp_path / "l.sqlite").latest(shot.key)
    assert rec is not None and rec.state == "failed" and rec.moderation and rec.cost_usd == 0.0


def test_a_job_that_fails_on_the_host_says_so(tmp_path: Path, hosts) -> None:
    shot = one_shot(tmp_path, "gateway", "a slow one [[fault:timeout]]")
    with pytest.raises(JobFailed, match=r"shot 's1' \[gateway\]: job .* failed") as info:
        runner(tmp_path, "gateway").run(shot, build_request(shot, {}, None))
    assert not isinstance(info.value, ModerationFailed)


def test_our_deadline_leaves_the_job_to_be_resumed_not_resubmitted(tmp_path: Path, hosts) -> None:
    shot = one_shot(tmp_path, "wavespeed", "a long render [[fault:slow=3]]")
    impatient = PollSettings(first=0.05, max=0.1, timeout=0.5)
    with pytest.raises(JobTimeout, match="run again to resume"):
        runner(tmp_path, "wavespeed", impatient).run(shot, build_request(shot, {}, None))
    assert Ledger(tmp_path / "l.sqlite").latest(shot.key).state == "submitted"  # type: ignore[union-attr]
    result = runner(tmp_path, "wavespeed", run_id="run-2").run(shot, build_request(shot, {}, None))
    assert Path(result.segment).is_file()
    assert emulator_stats(hosts.url)["submissions"] == 1


@pytest.mark.parametrize("provider", ["apiframe", "wavespeed"])
def test_killed_between_submit_and_recording_the_job_id(tmp_path: Path, hosts, provider: str) -> None:
    """The submit reached the host, the process died before the job id was written down."""
    shot = one_shot(tmp_path, provider, "an interrupted submit")
    first = runner(tmp_path, provider)
    request = build_request(shot, {}, None)
    prepared = first.provider.prepare(request)
    rec = first.ledger.intent(key=shot.key, shot_id=shot.id, provider=provider, model=shot.tier, run_id="run-1",
                              prepared=prepared, cost_usd=shot.cost_usd)
    first.provider.submit(prepared, request, rec.idempotency_key)  # ... and then the process died
    again = runner(tmp_path, provider, run_id="run-2")
    if provider == "apiframe":  # the same Idempotency-Key and body return the original job
        result = again.run(shot, request)
        assert Path(result.segment).is_file()
    else:  # no idempotency: stop and say so rather than pay twice
        with pytest.raises(UncertainSubmission, match="may have been created and billed.*--redo s1"):
            again.run(shot, request)
    assert emulator_stats(hosts.url)["submissions"] == 1

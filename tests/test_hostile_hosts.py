"""Hostile or broken hosts, served by the emulator over real loopback HTTP: unsafe output URLs, endless and
lying downloads, outputs that are not videos, malformed JSON, missing fields, unknown statuses, wrong types.

Each must fail its shot with a typed error naming the shot and the host, keep nothing from it (no file under
shots/, no ledger record claiming it is done), and never submit (pay) again on its own: a second run asks
the host again and finishes what can be finished without a new submission.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from storyfilm import assets
from storyfilm.errors import DownloadError, StoryfilmError, UncertainSubmission, UnexpectedResponse
from storyfilm.generate import PollSettings, ShotRunner, build_request
from storyfilm.ledger import Ledger
from storyfilm.media import probe
from storyfilm.plan import make_plan
from storyfilm.providers import make_provider
from storyfilm.results import ShotResult
from storyfilm.storyboard import load_storyboard

from .helpers import emulator_stats, point_hosts_at, write_storyboard

pytestmark = pytest.mark.slow

FAST = PollSettings(first=0.05, max=0.1, timeout=60)
DURATION = {"wavespeed": 4, "apiframe": 4, "gateway": 5}  # each host's shortest shot


@dataclass(frozen=True)
class Case:
    provider: str
    fault: str
    error: type[StoryfilmError] | None  # None: survived in the same run
    state: str  # the ledger state afterwards
    words: str  # in the message
    rerun_ok: bool = False  # the second run finishes it (without a new submission)


WIRE = [  # how each host's answers are parsed: every host
    *[Case(p, "submit-badjson", UncertainSubmission, "intent", "not JSON", rerun_ok=p == "apiframe")
      for p in DURATION],
    *[Case(p, "submit-noid", UncertainSubmission, "intent", "no usable", rerun_ok=p == "apiframe")
      for p in DURATION],
    *[Case(p, "submit-wrongtype", UncertainSubmission, "intent", "no usable", rerun_ok=p == "apiframe")
      for p in DURATION],
    *[Case(p, "poll-badjson*all", UnexpectedResponse, "submitted", "not JSON") for p in DURATION],
    *[Case(p, "poll-nostatus*all", UnexpectedResponse, "submitted", "unknown status None") for p in DURATION],
    *[Case(p, "poll-unknown*all", UnexpectedResponse, "submitted", "unknown status 'reticulating'")
      for p in DURATION],
    Case("wavespeed", "poll-wrongtype*all", UnexpectedResponse, "submitted", "`outputs` is not a list"),
    Case("apiframe", "poll-wrongtype*all", DownloadError, "submitted", "gave no output URL"),
    Case("gateway", "poll-wrongtype*all", DownloadError, "submitted", "gave no output URL"),
    *[Case(p, "output-missing", DownloadError, "submitted", "gave no output URL") for p in DURATION],
]
TRANSPORT = [  # shared HTTP code: one host each
    Case("wavespeed", "submit-badid", UncertainSubmission, "intent", "'../../../_emulator/reset?x='"),
    Case("gateway", "submit-reset", UncertainSubmission, "intent", "connection failed"),
    Case("apiframe", "submit-reset", None, "done", ""),  # its Idempotency-Key makes the retry safe
    Case("apiframe", "poll-badjson*3", None, "done", ""),  # a few unreadable polls are polled again
    Case("gateway", "poll-unknown*2", None, "done", ""),
    Case("wavespeed", "poll-reset*3", None, "done", ""),
    Case("wavespeed", "output-file", DownloadError, "completed", "refusing a file URL"),
    Case("apiframe", "output-ftp", DownloadError, "completed", "refusing a ftp URL"),
    Case("gateway", "output-metadata", DownloadError, "completed", "169.254.169.254 (link-local"),
    Case("wavespeed", "output-linklocal", DownloadError, "completed", "fe80::1 (link-local"),
    Case("apiframe", "download-endless", DownloadError, "completed", "exceeded the", rerun_ok=True),
    Case("gateway", "download-huge", DownloadError, "completed", "1000000000000 bytes, over the", rerun_ok=True),
    Case("wavespeed", "download-html", DownloadError, "completed", "not an MP4/WebM video", rerun_ok=True),
    Case("apiframe", "download-garbage", DownloadError, "completed", "not an MP4/WebM video", rerun_ok=True),
    Case("gateway", "download-corrupt", DownloadError, "completed", "not a usable video", rerun_ok=True),
    Case("wavespeed", "download-corrupt", DownloadError, "completed", "not a usable video", rerun_ok=True),
]
CASES = WIRE + TRANSPORT


def board(provider: str, cases: list[tuple[int, Case]]) -> str:
    # One prompt apart from the fault tag: the emulator renders the same text request once.
    shots = "".join(f"  - id: c{i}\n    cut: true\n    prompt: \"A hostile host [[fault:{c.fault}]]\"\n"
                    for i, c in cases)
    return (f"version: 1\ntitle: Hostile {provider}\nprovider: {provider}\n"
            f"defaults: {{duration: {DURATION[provider]}, resolution: 480p, aspect_ratio: '1:1'}}\nshots:\n{shots}")


def run_all(directory: Path, run_id: str) -> dict[int, ShotResult | Exception]:
    """Every case once, concurrently (one runner per host, as a film run has), by case index."""
    jobs = []
    for provider in DURATION:
        mine = [(i, c) for i, c in enumerate(CASES) if c.provider == provider]
        plan = make_plan(b := load_storyboard(write_storyboard(directory, board(provider, mine), f"{provider}.yaml")),
                         assets.digests(b))
        runner = ShotRunner(provider=make_provider(provider, directory / "work"), run_id=run_id, poll=FAST,
                            ledger=Ledger(directory / "ledger.sqlite"), shots_dir=directory / "shots")
        jobs += [(int(s.id[1:]), runner, s) for s in plan.shots]

    def one(job: tuple) -> ShotResult | Exception:
        _, runner, shot = job
        try:
            return runner.run(shot, build_request(shot, {}, None))
        except StoryfilmError as exc:
            return exc

    with ThreadPoolExecutor(8) as pool:
        return dict(zip([j[0] for j in jobs], pool.map(one, jobs), strict=True))


def test_hostile_answers_fail_their_shot_keep_nothing_and_never_pay_twice(emulator, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    point_hosts_at(emulator.url, monkeypatch)
    first = run_all(tmp_path, "run-1")
    state = {r.shot_id: r.state for r in Ledger(tmp_path / "ledger.sqlite").records()}  # the latest per shot
    for i, case in enumerate(CASES):
        outcome, label = first[i], f"{case.provider} {case.fault}"
        assert state[f"c{i}"] == case.state, (label, state[f"c{i}"])
        if case.error is None:
            assert isinstance(outcome, ShotResult), (label, outcome)
            assert probe.decode_all(Path(outcome.segment))[0].video.frames == DURATION[case.provider] * 24 + 1
            continue
        assert type(outcome) is case.error, (label, outcome)
        message = str(outcome)
        assert message.startswith(f"shot 'c{i}' [{case.provider}]: "), (label, message)
        assert case.words in message and "Traceback" not in message and len(message) < 1200, (label, message)
    survivors = [i for i, c in enumerate(CASES) if c.error is None]
    kept = {p.name for p in (tmp_path / "shots").iterdir() if p.is_file()}
    assert kept == {f"c{i}.{ext}" for i in survivors for ext in ("mp4", "last.png")}  # nothing from the rest
    assert list((tmp_path / "shots" / ".staging").iterdir()) == []
    assert emulator_stats(emulator.url)["submissions"] == len(CASES)  # each created once (a hostile answer bills)

    # The second run submits nothing: finished shots are reused, downloads that failed once and Apiframe's
    # uncertain submits (replayed with their Idempotency-Key) now finish, the rest fail the same way.
    again = run_all(tmp_path, "run-2")
    assert emulator_stats(emulator.url)["submissions"] == len(CASES)
    for i, case in enumerate(CASES):
        outcome, label = again[i], f"{case.provider} {case.fault}"
        if case.error is None:
            assert isinstance(outcome, ShotResult) and outcome.reused, (label, outcome)
        elif case.rerun_ok:
            assert isinstance(outcome, ShotResult) and not outcome.reused, (label, outcome)
            assert probe.decode_all(Path(outcome.segment))[0].video.frames == DURATION[case.provider] * 24 + 1
        else:
            assert type(outcome) is case.error, (label, outcome)

"""`storyfilm run`'s head start (head_start.py): the run prepared and its most urgent job submitted before
Prefect is up, then taken over by the flow without paying twice.

The runner's part runs against the emulator on loopback without Prefect (fast); one real `storyfilm run`
in ephemeral mode (fresh PREFECT_HOME) shows the whole thing: the first job reached the host before Prefect
had created the flow run, every shot was paid once, and the slot it took was counted by the run's gate.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storyfilm import head_start, session
from storyfilm.decide import Resume
from storyfilm.emulator import EmulatorConfig, EmulatorServer
from storyfilm.errors import ProviderHTTPError
from storyfilm.ledger import Claim, Ledger
from storyfilm.media import probe
from storyfilm.slot_gate import PriorityGate

from .helpers import point_hosts_at, write_storyboard

# the short chain comes first in the storyboard; the long one (a1 -> a2) is served first
BOARD = """\
version: 1
title: Head Start
provider: wavespeed
model: fast
defaults: {{duration: 4, resolution: 480p, aspect_ratio: "16:9", audio: false, seed: 5}}
shots:
  - {{id: c, prompt: A lamp is lit.}}
  - {{id: a1, cut: true, prompt: "A harbour at dawn.{a1}"}}
  - {{id: a2, prompt: The boats rock.}}
"""


def board(tmp_path: Path, a1: str = "") -> Path:
    return write_storyboard(tmp_path, BOARD.format(a1=a1))


def jobs(server: EmulatorServer) -> list[tuple[float, str]]:
    """(created, prompt) of every job the host made, oldest first."""
    return sorted((j.created, j.prompt) for j in server.emulator.store.jobs.values())


def test_the_most_urgent_job_is_submitted_ahead_and_finished_by_its_shot_once(
        tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    point_hosts_at(emulator.url, monkeypatch)
    path = board(tmp_path)
    options = session.Options(output_dir=tmp_path / "out")
    job = head_start.begin(path, options, slots=1)
    assert job is not None and job.ahead == {"a1"}  # not c, first in the storyboard: a1 has 8 s ahead of it
    [(_, prompt)] = jobs(emulator)
    assert prompt == "A harbour at dawn."
    key = job.plan.shot("a1").key
    assert not isinstance(job.runner.ledger.claim(key, "another-run", 60), Claim)  # held while in flight

    said: list[str] = []
    flow_started = datetime.now(UTC)
    taken = head_start.take(str(path), session.Options(output_dir=tmp_path / "out", run_id="flow-run-1",
                                                       log=said.append))
    assert taken is job and job.runner.run_id == "flow-run-1"
    a1 = job.make_shot("a1")
    assert not a1.reused and a1.seconds > 0 and a1.job_id
    assert len(jobs(emulator)) == 1  # finished, not submitted again
    assert any("new footage" in line for line in said)
    assert isinstance(job.runner.ledger.claim(key, "another-run", 60), Claim)  # released once kept
    assert job.runner.ledger.latest(key).state == "done"  # type: ignore[union-attr]
    spans = job.clock.spans()
    assert spans["a1"].started < flow_started < spans["a1"].finished  # its slot was taken at the submit ahead
    assert "c" not in spans  # one slot: c was left to the flow


def test_a_job_not_taken_over_is_resumed_by_a_fresh_preparation_not_paid_again(
        tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flow was given other options (or the storyboard changed): the prepared job is dropped, its claim
    given up at once (a wait for it would never end), and the fresh run resumes the recorded job."""
    point_hosts_at(emulator.url, monkeypatch)
    path = board(tmp_path)
    job = head_start.begin(path, session.Options(output_dir=tmp_path / "out"))  # WaveSpeed's default: 2 slots
    assert job is not None and job.ahead == {"a1", "c"}
    assert [p for _, p in jobs(emulator)] == ["A harbour at dawn.", "A lamp is lit."]
    other = session.Options(output_dir=tmp_path / "out", budget_usd=50.0, run_id="flow-run-2")
    assert head_start.take(str(path), other) is None
    for shot_id in ("a1", "c"):  # given up at once
        probe_claim = job.runner.ledger.claim(job.plan.shot(shot_id).key, "probe", 60)
        assert isinstance(probe_claim, Claim)
        job.runner.ledger.release(probe_claim)
    fresh = session.prepare(path, other)
    decision = fresh.decisions["a1"]
    assert isinstance(decision, Resume) and decision.step == "poll"
    said: list[str] = []
    fresh.runner.log = said.append
    assert not fresh.make_shot("a1").reused
    assert not fresh.make_shot("c").reused
    assert len(jobs(emulator)) == 2  # both jobs submitted ahead were resumed, neither paid again
    assert sum("resuming job" in line for line in said) == 2

    head_start.release(job)  # the command's end: nothing left to give up, no error


def test_a_refused_submit_ahead_fails_its_shot_with_the_hosts_answer_and_is_not_retried(
        tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    point_hosts_at(emulator.url, monkeypatch)
    path = board(tmp_path, a1=" [[fault:submit-echo]]")
    job = head_start.begin(path, session.Options(output_dir=tmp_path / "out"), slots=1)
    assert job is not None
    key = job.plan.shot("a1").key
    assert job.runner.ledger.latest(key).state == "rejected"  # type: ignore[union-attr]
    with pytest.raises(ProviderHTTPError) as raised:
        job.make_shot("a1")
    assert "400" in str(raised.value) and "test-key-0123456789" not in str(raised.value)
    assert jobs(emulator) == []  # the refusal was not followed by a second submit (the tag lets one through)
    assert isinstance(job.runner.ledger.claim(key, "another-run", 60), Claim)
    head_start.release(job)


@pytest.mark.parametrize("reason", ["redo", "emulated", "off", "key in a Prefect Secret", "bad public URL",
                                    "over budget"])
def test_runs_the_head_start_leaves_to_the_flow(tmp_path: Path, emulator: EmulatorServer,
                                                monkeypatch: pytest.MonkeyPatch, reason: str) -> None:
    """Where the flow would stop, or decide otherwise, before its first submit: nothing is submitted ahead."""
    point_hosts_at(emulator.url, monkeypatch)
    path = board(tmp_path)
    options = session.Options(output_dir=tmp_path / "out", redo=("c",) if reason == "redo" else (),
                              resume=reason != "emulated", budget_usd=0.01 if reason == "over budget" else None)
    if reason == "off":
        monkeypatch.setenv(head_start.ENV, "0")
    if reason == "key in a Prefect Secret":  # only the flow can read it
        monkeypatch.delenv("WAVESPEED_API_KEY")
    if reason == "bad public URL":  # the flow refuses it before anything is paid
        monkeypatch.setenv("STORYFILM_PUBLIC_URL", "ftp://films.example.com")
    assert head_start.begin(path, options) is None
    assert jobs(emulator) == []


def test_a_shot_continuing_a_kept_one_is_left_to_its_task(tmp_path: Path, emulator: EmulatorServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Its request needs the kept shot's last frame, which the task prepares: no head start, no job."""
    point_hosts_at(emulator.url, monkeypatch)
    path = board(tmp_path)
    first = session.prepare(path, session.Options(output_dir=tmp_path / "out"))
    first.make_shot("a1"), first.make_shot("c")
    made = len(jobs(emulator))
    job = head_start.begin(path, session.Options(output_dir=tmp_path / "out"))
    assert job is not None and job.generating == {"a2"} and job.ahead == frozenset()
    assert len(jobs(emulator)) == made
    head_start.release(job)


def test_a_gate_counts_the_slots_held_before_it_existed() -> None:
    """One slot, held by a job submitted ahead: its shot passes at once, every other shot waits for it."""
    gate = PriorityGate(1, {"a1": (-4.0, 1), "c": (-2.0, 0)}, first={"a1", "c"}, settle=0.0, holding={"a1"})
    assert gate.free == 0
    gate.acquire("a1")  # returns at once
    import threading

    got = threading.Event()
    waiter = threading.Thread(target=lambda: (gate.acquire("c"), got.set()), daemon=True)
    waiter.start()
    assert not got.wait(0.5)  # c waits while a1 holds the only slot
    gate.release("a1", hand_on=False)
    assert got.wait(10)
    waiter.join(10)
    with pytest.raises(ValueError, match="hold slots"):
        PriorityGate(1, {}, holding={"x", "y"})


@pytest.mark.slow
def test_storyfilm_run_submits_before_prefect_is_up_and_pays_each_shot_once(tmp_path: Path) -> None:
    """A real `storyfilm run`, ephemeral mode, one provider slot (--concurrency 1); a1's job takes 12 s at the
    host. The flow took the prepared job over (a1's slot was taken before the flow run existed) and no shot
    generated beside it."""
    path = board(tmp_path, a1=" [[fault:slow=12]]")
    home = tmp_path / "prefect-home"
    with EmulatorServer(EmulatorConfig(latency=0.5)) as host:
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", head_start.ENV)}
        env.update(PREFECT_HOME=str(home), WAVESPEED_BASE_URL=host.url, WAVESPEED_API_KEY="test-key-0123456789",
                   STORYFILM_POLL_INTERVAL="0.1")
        exe = Path(sys.executable).parent / "storyfilm"
        done = subprocess.run([str(exe), "run", str(path), "--output", str(tmp_path / "out"), "--concurrency", "1"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        made = jobs(host)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert [p.split(" [[")[0] for _, p in made] == ["A harbour at dawn.", "A lamp is lit.", "The boats rock."]
    film_dir = tmp_path / "out" / "board"
    info = probe.probe(film_dir / "film.mp4")
    assert info.video is not None and info.duration == pytest.approx(12.0, abs=0.1)
    with sqlite3.connect(home / "prefect.db") as db:
        [(run_id, created, state)] = db.execute(
            "SELECT flow_run.id, flow_run.created, flow_run.state_type FROM flow_run JOIN flow "
            "ON flow.id = flow_run.flow_id WHERE flow.name = 'storyfilm'").fetchall()
    assert state == "COMPLETED"
    # Prefect stores UTC without a zone
    assert made[0][0] < datetime.fromisoformat(created).replace(tzinfo=UTC).timestamp()  # before the flow run existed
    manifest = json.loads((film_dir / "manifest.json").read_text())
    spans = sorted((datetime.fromisoformat(s["started_at"]), datetime.fromisoformat(s["finished_at"]), s["id"])
                   for s in manifest["shots"])
    assert [name for *_, name in spans][0] == "a1"
    assert spans[0][0].timestamp() < datetime.fromisoformat(created).replace(tzinfo=UTC).timestamp()
    for (_, end, before), (start, _, after) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"{after} started while {before} held the only slot"
    book = Ledger(film_dir / "ledger.sqlite")
    runs = {s["id"]: book.latest(s["cache_key"]).run_id for s in manifest["shots"]}  # type: ignore[union-attr]
    assert {runs["c"].replace("-", ""), runs["a2"].replace("-", "")} == {run_id.replace("-", "")}
    assert runs["a1"].replace("-", "") != run_id.replace("-", "")  # submitted before the flow run existed

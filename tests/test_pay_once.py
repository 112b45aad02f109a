"""Never pay twice, proven by counting the emulator's billable submissions."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from storyfilm.errors import BudgetExceeded, StoryfilmError
from storyfilm.ledger import Ledger
from storyfilm.media import probe

from .helpers import emulator_stats, point_hosts_at, write_storyboard

pytestmark = pytest.mark.slow


def board(prompt2: str = "The keeper walks the pier.", prompt_b2: str = "Waves break.",
          provider: str = "apiframe") -> str:
    """Two chains: a1-a4 and b1-b2 (six shots: each step below has shots before and after the one it changes)."""
    chain_a = ["Dawn over the harbour.", prompt2, "He climbs the stairs.", "He lights the lamp."]
    shots = "".join(f"  - id: a{i + 1}\n    prompt: {p}\n" for i, p in enumerate(chain_a))
    shots += f"  - id: b1\n    cut: true\n    prompt: A ship in the storm.\n  - id: b2\n    prompt: {prompt_b2}\n"
    return (f"version: 1\ntitle: Pay Once\nprovider: {provider}\n"
            f"defaults: {{duration: 4, resolution: 480p, aspect_ratio: '1:1'}}\nshots:\n{shots}")


def film_digest(path: Path) -> str:
    return hashlib.sha256(b"".join(f.tobytes() for f in probe.read_frames(path))).hexdigest()


def prompts_submitted(stats: dict, since: int) -> list[str]:
    return sorted(job["prompt"] for job in stats["jobs"][since:])


@pytest.fixture
def hosts(emulator, monkeypatch: pytest.MonkeyPatch):
    point_hosts_at(emulator.url, monkeypatch)
    return emulator


def test_rerun_edit_redo_each_pays_only_for_what_changed(prefect_server: None, hosts, tmp_path: Path) -> None:
    from storyfilm.flow import film

    out = str(tmp_path / "out")
    path = write_storyboard(tmp_path, board(), "pay.yaml")
    first = film(storyboard=str(path), output_dir=out)
    assert emulator_stats(hosts.url)["submissions"] == 6
    digest = film_digest(Path(first["film"]))

    again = film(storyboard=str(path), output_dir=out)  # unchanged: nothing submitted, the same film
    assert emulator_stats(hosts.url)["submissions"] == 6 and again["reused"] == 6 and again["spent_usd"] == 0
    assert film_digest(Path(again["film"])) == digest

    write_storyboard(tmp_path, board(prompt2="The keeper walks the pier, edited."), "pay.yaml")
    film(storyboard=str(path), output_dir=out)  # shot 2 of the 4-shot chain: shots 2, 3 and 4 again, not 1
    stats = emulator_stats(hosts.url)
    assert stats["submissions"] == 9
    assert prompts_submitted(stats, 6) == ["He climbs the stairs.", "He lights the lamp.",
                                           "The keeper walks the pier, edited."]

    write_storyboard(tmp_path, board(prompt2="The keeper walks the pier, edited.", prompt_b2="Waves, edited."),
                     "pay.yaml")
    film(storyboard=str(path), output_dir=out)  # the other chain: only its shot
    stats = emulator_stats(hosts.url)
    assert stats["submissions"] == 10 and prompts_submitted(stats, 9) == ["Waves, edited."]

    film(storyboard=str(path), output_dir=out, redo=["a3"])  # deliberately: a3 and what follows it, not a1, a2
    stats = emulator_stats(hosts.url)
    assert stats["submissions"] == 12
    assert prompts_submitted(stats, 10) == ["He climbs the stairs.", "He lights the lamp."]
    film(storyboard=str(path), output_dir=out)  # and the redone shots are the kept ones now
    assert emulator_stats(hosts.url)["submissions"] == 12


def test_budgets_refuse_before_paying_and_stop_mid_run(prefect_server: None, hosts, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from storyfilm.cli import app
    from storyfilm.flow import film

    out = str(tmp_path / "out")
    text = ("version: 1\ntitle: Budget\nprovider: wavespeed\ndefaults: {duration: 4, resolution: 480p}\nshots:\n"
            "  - id: s1\n    prompt: One.\n  - id: s2\n    prompt: Two.\n  - id: s3\n    prompt: Three.\n")
    path = write_storyboard(tmp_path, text, "budget.yaml")  # 3 x 4 s x $0.12 = $1.44
    result = CliRunner().invoke(app, ["plan", str(path), "--budget", "1.00", "--output", out])
    assert result.exit_code == 1 and "new spend is $1.44, over the budget of $1.00" in result.output
    with pytest.raises(BudgetExceeded, match=r"over the budget of \$1.00"):
        film(storyboard=str(path), output_dir=out, budget_usd=1.0)
    assert emulator_stats(hosts.url)["submissions"] == 0

    # The host's prices doubled since our table was written: its quotes are what the budget counts.
    httpx.post(f"{hosts.url}/_emulator/config", json={"price_factor": 2.0}).raise_for_status()
    with pytest.raises(StoryfilmError, match=r"shot 's2' would cost \$0.96; this run has committed \$0.96"):
        film(storyboard=str(path), output_dir=out, budget_usd=1.44)
    assert emulator_stats(hosts.url)["submissions"] == 1  # s1 only: s2 was stopped before its submit

    film(storyboard=str(path), output_dir=out, budget_usd=2.0)  # more money: s1 is not paid again
    stats = emulator_stats(hosts.url)
    assert stats["submissions"] == 3 and sorted(j["prompt"] for j in stats["jobs"]) == ["One.", "Three.", "Two."]


def run_to_completion(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI in its own process group, killed whole on timeout (no orphaned Prefect server)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_sigkill_while_polling_then_rerun_pays_nothing_twice(hosts, tmp_path: Path, prefect_home: Path) -> None:
    path = write_storyboard(tmp_path, board(provider="wavespeed"), "killed.yaml")
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "STORYFILM_POLL_INTERVAL": "0.1"}
    env.pop("PREFECT_API_URL", None)
    argv = [sys.executable, "-m", "storyfilm", "run", str(path), "--output", str(tmp_path / "out")]
    ledger_file = tmp_path / "out" / "killed" / "ledger.sqlite"
    httpx.post(f"{hosts.url}/_emulator/config", json={"latency": 2.5}).raise_for_status()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own group: the ephemeral Prefect server dies with it
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            stats = emulator_stats(hosts.url)
            recorded = ({r.job_id for r in Ledger(ledger_file).records() if r.state == "submitted"}
                        if ledger_file.exists() else set())
            # Kill while polling: jobs the host has accepted, whose ids the ledger holds, not finished.
            polling = {j["id"] for j in stats["jobs"] if j["status"] != "completed"} & recorded
            if len(stats["jobs"]) >= 2 and polling and {j["id"] for j in stats["jobs"]} <= \
                    {r.job_id for r in Ledger(ledger_file).records()}:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
        else:
            pytest.fail("the run never had jobs in flight")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    killed_at = emulator_stats(hosts.url)["submissions"]
    assert 2 <= killed_at < 6

    ledger = Ledger(ledger_file)  # readable after the kill
    assert {r.state for r in ledger.records()} <= {"intent", "submitted", "completed", "done"}

    httpx.post(f"{hosts.url}/_emulator/config", json={"latency": 0.2}).raise_for_status()
    done = run_to_completion(argv, env)
    assert done.returncode == 0, done.stderr
    stats = emulator_stats(hosts.url)
    assert stats["submissions"] == 6  # the in-flight jobs were resumed, not submitted again
    assert len({j["prompt"] for j in stats["jobs"]}) == 6
    manifest = json.loads((tmp_path / "out" / "killed" / "manifest.json").read_text())
    assert {s["job_id"] for s in manifest["shots"]} == {j["id"] for j in stats["jobs"]}
    assert probe.probe(tmp_path / "out" / "killed" / "film.mp4").video.frames == 6 * 4 * 24  # type: ignore[union-attr]

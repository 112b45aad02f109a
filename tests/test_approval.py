"""Approve before paying, without a Prefect server: the answer, the plan a producer sees, the animatic key, and
`storyfilm run --approve` in ephemeral mode (asks in a terminal, refuses without one; nothing paid).

The paused run on a real Prefect server, answered through its API and from a terminal, is tests/test_desk.py's.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from storyfilm import animatic_preview, approval, session
from storyfilm.errors import ApprovalError, StoryboardError
from storyfilm.plan import make_plan
from storyfilm.storyboard import load_storyboard

from .helpers import emulator_stats, write_storyboard

BOARD = """\
version: 1
title: Quay Approval
provider: wavespeed
budget_usd: 3
defaults: {duration: 5, resolution: 480p, seed: 2}
shots:
  - {id: quay, prompt: A quay at dusk.}
  - {id: rope, prompt: A rope tightens.}
"""


def planned(tmp_path: Path, text: str = BOARD) -> Any:
    board = load_storyboard(write_storyboard(tmp_path, text))
    return make_plan(board, {})


def test_answers_decide_go_stop_and_the_budget(tmp_path: Path) -> None:
    plan = planned(tmp_path)  # 2 shots at $0.60, budget $3
    new = plan.cost_usd
    ok = approval.verdict(approval.Answer(answer="approve"), plan, new)
    assert ok.go and ok.budget_usd == 3 and ok.message == "approved (budget $3.00)"
    more = approval.verdict(approval.Answer(answer="approve", budget_usd=1.5), plan, new)
    assert more.go and more.budget_usd == 1.5
    small = approval.verdict(approval.Answer(answer="approve", budget_usd=1.0), plan, new)
    assert not small.go
    assert small.message == ("approved with a budget of $1.00, but the plan's new spend is $1.20; nothing was paid "
                             "(run again with a larger budget)")
    no = approval.verdict(approval.Answer(answer="reject", budget_usd=9, reason=" too dark "), plan, new)
    assert not no.go and no.message == "rejected: too dark; nothing was paid"


def test_the_form_takes_only_what_it_shows() -> None:
    for bad in ({"answer": "maybe"}, {"answer": "approve", "budget_usd": -1}, {}, {"answer": "approve", "extra": 1},
                {"answer": "approve", "budget_usd": float("nan")}):
        with pytest.raises(ValidationError):
            approval.Answer.model_validate(bad)
    schema = approval.Answer.model_json_schema()
    assert schema["required"] == ["answer"] and schema["properties"]["answer"]["enum"] == ["approve", "reject"]


def test_a_run_is_held_only_when_asked_and_something_is_to_pay() -> None:
    assert approval.held(True, 0.6) and not approval.held(True, 0.0) and not approval.held(False, 5.0)


def test_wrong_timeout_settings_name_the_variable() -> None:
    assert approval.settings({}) == (approval.DEFAULT_TIMEOUT_S, approval.DEFAULT_POLL_S)
    assert approval.settings({approval.TIMEOUT_ENV: "30", approval.POLL_ENV: "1"}) == (30, 1)
    for value in ("0", "soon", "-5", "1.5"):
        with pytest.raises(ApprovalError, match=f"{approval.TIMEOUT_ENV}='{value}': give a whole number of seconds"):
            approval.settings({approval.TIMEOUT_ENV: value})


def test_a_terminal_approval_binds_to_exactly_the_plan_shown(tmp_path: Path) -> None:
    plan = planned(tmp_path)
    mark = approval.fingerprint(plan, 1.2)
    assert approval.approved_in_terminal(plan, 1.2, {approval.APPROVED_ENV: mark})
    assert not approval.approved_in_terminal(plan, 1.8, {approval.APPROVED_ENV: mark})  # costs more than approved
    edited = planned(tmp_path, BOARD.replace("A rope tightens.", "A rope snaps."))
    assert not approval.approved_in_terminal(edited, 1.2, {approval.APPROVED_ENV: mark})
    assert not approval.approved_in_terminal(plan, 1.2, {})


def test_the_plan_shows_shots_chains_cost_against_budget_and_the_preview(tmp_path: Path) -> None:
    plan = planned(tmp_path)
    preview = approval.PreviewLink("[film.mp4](http://films.example/quay/animatic/quay/film.mp4)",
                                   "data:image/jpeg;base64,AAAA", reused=True)
    text = approval.plan_markdown(plan, {"quay": "cached", "rope": "new"}, 0.6, preview=preview,
                                  storyboard="boards/quay.yaml", timeout_s=7200, rehearsal=False)
    assert text.startswith("# Quay Approval: waiting for approval\n")
    assert "**New cost:** $0.60 to pay of a budget of $3.00; all shots $1.20." in text
    assert "| 1 | quay | 1 | text-to-video | 5 s | 480p 16:9 | cached | $0.60 |" in text
    assert "| 2 | rope | 1 | last frame of 'quay' (extend) | 5 s | 480p 16:9 | new | $0.60 |" in text
    assert "**Chains:** quay → rope" in text
    assert "[film.mp4](http://films.example/quay/animatic/quay/film.mp4) (unchanged, reused)" in text
    assert "![animatic](data:image/jpeg;base64,AAAA)" in text
    assert "`storyfilm approve quay.yaml`" in text and "within 2 h" in text
    rehearsal = approval.plan_markdown(plan, {}, 1.2, preview=None, storyboard="q.yaml", timeout_s=30, rehearsal=True)
    assert "at list prices (rehearsal: nothing is paid)" in rehearsal and "within 30 s" in rehearsal


def test_approve_in_the_storyboard_takes_a_boolean_only(tmp_path: Path) -> None:
    assert load_storyboard(write_storyboard(tmp_path, BOARD + "approve: true\n")).approve is True
    with pytest.raises(StoryboardError) as caught:
        load_storyboard(write_storyboard(tmp_path, BOARD + "approve: 'yes'\n"))
    assert "board.yaml:9: approve: Input should be a valid boolean" in str(caught.value)


def test_the_animatic_is_keyed_by_what_the_renderer_draws(tmp_path: Path) -> None:
    def key(text: str) -> str:
        return animatic_preview.key(session.plan_film(write_storyboard(tmp_path, text),
                                                      session.Options(output_dir=tmp_path / "out")))

    base = key(BOARD)
    assert key(BOARD.replace("budget_usd: 3", "budget_usd: 9\napprove: true")) == base
    assert key(BOARD.replace("provider: wavespeed", "provider: local")) == base
    assert key(BOARD.replace("A quay at dusk.", "A quay at dawn.")) != base


def run_storyfilm(args: list[str], env: dict[str, str], cwd: Path, *, tty_answer: str | None = None,
                  timeout: float = 240) -> tuple[int, str]:
    """`storyfilm ARGS`, its stdin a pipe from nothing, or a terminal that answers `tty_answer` to the question."""
    if tty_answer is None:
        proc = subprocess.run([sys.executable, "-m", "storyfilm", *args], env=env, cwd=cwd, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=timeout)
        return proc.returncode, proc.stdout + proc.stderr
    parent, child = pty.openpty()
    started = subprocess.Popen([sys.executable, "-m", "storyfilm", *args], env=env, cwd=cwd, stdin=child,
                               stdout=child, stderr=child, start_new_session=True)
    os.close(child)
    seen, answered, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([parent], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(parent, 65536)
                except OSError:  # the other end closed: the process is done
                    break
                if not chunk:
                    break
                seen += chunk
                if not answered and b"[y/N]" in seen:
                    os.write(parent, tty_answer.encode() + b"\n")
                    answered = True
            elif started.poll() is not None:
                break
        return started.wait(timeout=30), seen.decode(errors="replace")
    finally:
        os.close(parent)
        if started.poll() is None:
            started.kill()


def ephemeral_env(prefect_home: Path, emulator_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "STORYFILM_APPROVED"))}
    env |= {"PREFECT_HOME": str(prefect_home), "WAVESPEED_BASE_URL": emulator_url,
            "WAVESPEED_API_KEY": "test-key-0123456789", "STORYFILM_POLL_INTERVAL": "0.05", "TERM": "dumb"}
    return env


@pytest.mark.slow  # two `python -m storyfilm` processes
def test_without_a_server_or_a_terminal_run_approve_refuses_and_pays_nothing(emulator: Any, tmp_path: Path,
                                                                             prefect_home: Path) -> None:
    board = write_storyboard(tmp_path, BOARD, "quay.yaml")
    env = ephemeral_env(prefect_home, emulator.url)
    code, said = run_storyfilm(["run", str(board), "--approve", "--output", str(tmp_path / "out")], env, tmp_path)
    assert code == 1 and "Traceback" not in said
    assert said.startswith("error: this run waits for approval (approve: true or --approve), but there is no Prefect "
                           "server for an answer to reach it and no terminal to ask in")
    assert "Nothing was paid" in said
    assert emulator_stats(emulator.url)["submissions"] == 0
    assert not (tmp_path / "out").exists()  # decided before anything was written
    code, said = run_storyfilm(["approve", str(board)], env, tmp_path)
    assert code == 1 and said.startswith("error: answering a paused run needs a Prefect server, and none is "
                                         "configured (PREFECT_API_URL)")


@pytest.mark.slow
def test_in_a_terminal_run_approve_asks_and_pays_only_for_a_yes(emulator: Any, tmp_path: Path,
                                                                prefect_home: Path) -> None:
    board = write_storyboard(tmp_path, BOARD, "quay.yaml")
    env = ephemeral_env(prefect_home, emulator.url)
    args = ["run", str(board), "--approve", "--output", str(tmp_path / "out")]
    code, said = run_storyfilm(args, env, tmp_path, tty_answer="n")
    assert code == 1 and "not approved: nothing was paid" in said and "Traceback" not in said
    assert "new cost $1.20, budget $3.00" in said and "Quay Approval: 2 shots on wavespeed" in said
    animatic = tmp_path / "out" / "quay" / "animatic" / "quay" / "film.mp4"
    assert f"free preview (animatic): {animatic}" in said.replace("\r\n", "")
    assert animatic.is_file()
    made = animatic.stat().st_mtime_ns
    assert emulator_stats(emulator.url)["submissions"] == 0

    code, said = run_storyfilm(args, env, tmp_path, tty_answer="y")
    assert code == 0, said[-3000:]
    assert animatic.stat().st_mtime_ns == made  # unchanged storyboard: the animatic is reused
    assert emulator_stats(emulator.url)["submissions"] == 2  # exactly the plan
    assert (tmp_path / "out" / "quay" / "film.mp4").is_file()

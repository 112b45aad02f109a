"""The ledger URL as a user gives it: `storyfilm run/plan --ledger`, STORYFILM_LEDGER_URL and
`storyfilm ledger copy`, run as commands against a real PostgreSQL server. The URL's password is looked for
(and must not be found) in everything the commands print, every file they write and Prefect's database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from storyfilm.ledger import Ledger

from .helpers import write_storyboard
from .pgcluster import PASSWORD, USER
from .test_ledger_db import OLD

pytestmark = pytest.mark.slow

BOARD = """\
version: 1
title: Shared Ledger
provider: local
defaults: {duration: 1, resolution: 480p, aspect_ratio: "16:9"}
shots:
  - id: one
    prompt: Dawn over the harbour.
  - id: two
    prompt: The keeper walks the pier.
"""


def storyfilm(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "storyfilm", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert PASSWORD not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


def files_holding(root: Path, secret: str) -> list[str]:
    """Files under `root` (databases and their WAL included) that hold `secret`, byte for byte."""
    return [str(p.relative_to(root)) for p in sorted(root.rglob("*"))
            if p.is_file() and secret.encode() in p.read_bytes()]


def test_runs_share_a_postgresql_ledger_and_its_password_stays_hidden(tmp_path: Path, pg_url: str,
                                                                      prefect_home: Path) -> None:
    board = write_storyboard(tmp_path, BOARD, "shared.yaml")
    # as a user runs it: no Prefect server, no ledger or password in the environment, Prefect's console quiet
    unset = ("PREFECT_API_URL", "STORYFILM_LEDGER_URL", "PGPASSWORD", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL")
    base = {k: v for k, v in os.environ.items() if k not in unset}
    env = {**base, "PREFECT_HOME": str(prefect_home)}

    first = storyfilm("run", str(board), "--output", "out", "--ledger", pg_url, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "2 shots, 0 reused" in first.stdout
    done = {r.shot_id: r.state for r in Ledger(pg_url).records()}
    assert done == {"one": "done", "two": "done"}
    assert not (tmp_path / "out" / "shared-ledger" / "ledger.sqlite").exists()  # nothing local

    # the same film from the environment (as a worker gets it): nothing generated again
    again = storyfilm("run", str(board), "--output", "out", env={**env, "STORYFILM_LEDGER_URL": pg_url}, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "2 reused, $0.00 spent" in again.stdout
    plan = storyfilm("plan", str(board), "--output", "out", env={**env, "STORYFILM_LEDGER_URL": pg_url}, cwd=tmp_path)
    assert plan.returncode == 0 and "2 cached" in plan.stdout, plan.stdout
    local = storyfilm("plan", str(board), "--output", "out", env=env, cwd=tmp_path)  # no URL: the film's own file
    assert "2 new" in local.stdout and not (tmp_path / "out" / "shared-ledger" / "ledger.sqlite").exists()

    # Prefect's database holds the runs' parameters (the storyboard's path is one): no password in it, nor in
    # any output, manifest or ledger file
    assert files_holding(prefect_home, str(board))
    assert files_holding(tmp_path, PASSWORD) == []

    bare = pg_url.replace(f":{PASSWORD}@", "@")  # libpq takes the password from PGPASSWORD
    plan = storyfilm("plan", str(board), "--output", "out", "--ledger", bare, env={**env, "PGPASSWORD": PASSWORD},
                     cwd=tmp_path)
    assert plan.returncode == 0 and "2 cached" in plan.stdout, plan.stdout
    wrong = storyfilm("plan", str(board), "--ledger", bare.replace(f"{USER}@", f"{USER}:Wrong-{PASSWORD}@"),
                      env=env, cwd=tmp_path)
    assert wrong.returncode == 1 and "password authentication failed" in wrong.stderr
    assert wrong.stderr.startswith(f"error: {bare.replace(f'{USER}@', f'{USER}:***@')}: cannot open the ledger")


def test_ledger_copy_moves_a_films_history_to_postgresql_once(tmp_path: Path, pg_url: str) -> None:
    old = tmp_path / "ledger.sqlite"
    shutil.copy(OLD, old)
    env = {**os.environ}
    first = storyfilm("ledger", "copy", str(old), pg_url, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "copied 6 job(s) and 18 event(s)" in first.stdout and f"{USER}:***@" in first.stdout
    again = storyfilm("ledger", "copy", str(old), pg_url, env=env, cwd=tmp_path)
    assert "copied 0 job(s) and 0 event(s)" in again.stdout and "6 job(s) and 18 event(s) were there" in again.stdout
    assert Ledger(pg_url).records() == Ledger(old).records()
    book = Ledger(old)
    x2 = next(r for r in book.records() if r.shot_id == "x2")
    book.update(x2.key, x2.attempt, "submitted", job_id="job-x2")  # the file moved on since the copy
    refused = storyfilm("ledger", "copy", str(old), pg_url, env=env, cwd=tmp_path)
    assert refused.returncode == 1 and "refusing to copy" in refused.stderr and "shot x2" in refused.stderr
    missing = storyfilm("ledger", "copy", str(tmp_path / "nope.sqlite"), pg_url, env=env, cwd=tmp_path)
    assert missing.returncode == 1 and "no such ledger file" in missing.stderr

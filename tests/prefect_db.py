"""A Prefect database migrated once per test session, copied into each fresh PREFECT_HOME.

Prefect's server migrates an empty database when it starts (Alembic, ~13 s of CPU), so every test that starts
`storyfilm run` or `prefect server start` with a new PREFECT_HOME paid for it. The template is migrated once, by
Prefect's own start-up migration in a process with its own PREFECT_HOME, and shared by the xdist workers of a
run; a copy is at Alembic's head, so the server's migration on start finds nothing to do (it still runs).
Tests about an empty PREFECT_HOME itself (test_temporary_server.py) do not use it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

DB = "prefect.db"  # Prefect's default database in PREFECT_HOME
_MIGRATE = "import asyncio; from prefect.server.database import provide_database_interface as db; " \
           "asyncio.run(db().create_db())"  # what the server runs on start (PREFECT_API_DATABASE_MIGRATE_ON_START)


def template(root: Path) -> Path:
    """The migrated database under `root`, made by the first process that asks (the others wait for it)."""
    done = root / "prefect-template" / DB
    done.parent.mkdir(parents=True, exist_ok=True)
    with (root / "prefect-template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            home = root / "prefect-template" / "home"
            home.mkdir(exist_ok=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_DATABASE",
                                                                            "PREFECT_SERVER_DATABASE"))}
            made = subprocess.run([sys.executable, "-c", _MIGRATE], env={**env, "PREFECT_HOME": str(home)},
                                  capture_output=True, text=True, timeout=600)
            if made.returncode:
                raise RuntimeError(f"migrating Prefect's database failed:\n{made.stderr[-3000:]}")
            # one consistent file (WAL folded in), put in place whole
            with sqlite3.connect(home / DB) as source, sqlite3.connect(done.with_suffix(".part")) as copy:
                source.backup(copy)
            source.close()
            copy.close()
            done.with_suffix(".part").rename(done)
            shutil.rmtree(home)
    return done


def seed(home: Path, migrated: Path, keep: bool = False) -> Path:
    """`home` made (if needed) as a PREFECT_HOME holding a copy of the migrated database (`keep`: unless it has
    a database already, which an earlier run may still use)."""
    home.mkdir(parents=True, exist_ok=True)
    if not (keep and (home / DB).exists()):
        shutil.copyfile(migrated, home / ".prefect.db.part")
        (home / ".prefect.db.part").rename(home / DB)
    return home


@contextmanager
def harness_database(migrated: Path) -> Iterator[None]:
    """Within it, Prefect's test harness (prefect_test_harness) starts from a copy of the migrated database: it
    makes its database as prefect-test.db in a new `mkdtemp()` directory (Prefect 3.8.8, pinned; were the name to
    change, the harness would migrate its database itself, as before)."""
    from prefect.testing import utilities

    def seeded_mkdtemp() -> str:
        directory = tempfile.mkdtemp(prefix="storyfilm-tests-harness-")
        shutil.copyfile(migrated, Path(directory) / "prefect-test.db")
        return directory

    with mock.patch.object(utilities, "mkdtemp", seeded_mkdtemp):
        yield

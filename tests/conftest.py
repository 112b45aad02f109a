from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

# Before anything imports prefect: no telemetry, a quiet console; run logs still reach the API at INFO
# (tests read them there, as a user reads them in the UI).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="storyfilm-tests-prefect-"))
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist (`pytest -n 4`): each worker process its own PREFECT_HOME (profiles, the ephemeral server's
    # database), even where CI exported one for the whole run
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix=f"storyfilm-tests-prefect-{worker}-")
    # xdist sets COLUMNS=80 and LINES=24 in its workers: the CLI's rich consoles, made at import, would keep 80
    # columns and ignore the COLUMNS a test gives CliRunner, as they do not in one process
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
# `storyfilm run` in a subprocess starts Prefect's ephemeral server: 20 s by default, too short on a busy machine
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from .helpers import write_image  # noqa: E402

if TYPE_CHECKING:
    from storyfilm.emulator import EmulatorServer

    from .pgcluster import Cluster


# Modules whose module-scoped fixture is expensive (a Prefect server, a browser, rendered films): under
# `pytest -n N --dist loadgroup` each runs on one worker, which pays for the fixture once.
ONE_WORKER_MODULES = ("test_colour_hold", "test_desk", "test_exports", "test_prefect_server", "test_up_to_date")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Hypothesis tests first: once a Prefect server runs in this process, its websocket keepalive thread
    draws from the global `random` module, which Hypothesis reports as a strategy misusing `random`.
    (xdist hands each worker its tests in this order too.)"""
    items.sort(key=lambda item: not getattr(getattr(item, "obj", None), "is_hypothesis_test", False))
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if isinstance(item, pytest.Function) else ""
        if module in ONE_WORKER_MODULES:
            item.add_marker(pytest.mark.xdist_group(module))


@pytest.fixture(scope="session")
def prefect_server(migrated_prefect_db: Path) -> Iterator[None]:
    """A throw-away Prefect API (temporary database) for tests that run real flows."""
    from prefect.testing.utilities import prefect_test_harness

    from .prefect_db import harness_database

    # each xdist worker starts its own, at the same time as the others and their servers: 90 s ran out under load
    with harness_database(migrated_prefect_db), prefect_test_harness(server_startup_timeout=300):
        yield


@pytest.fixture(scope="session")
def migrated_prefect_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prefect's database, migrated once for the whole run (all xdist workers): see tests/prefect_db.py."""
    from .prefect_db import seed, template

    root = tmp_path_factory.getbasetemp()
    migrated = template(root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root)
    seed(Path(os.environ["PREFECT_HOME"]), migrated, keep=True)  # this process's own, for the runs still to come
    return migrated


@pytest.fixture
def prefect_home(tmp_path: Path, migrated_prefect_db: Path) -> Path:
    """A new PREFECT_HOME whose database is already migrated (a copy: runs in it start at once)."""
    from .prefect_db import seed

    return seed(tmp_path / "prefect-home", migrated_prefect_db)


@pytest.fixture
def storyboard_dir(tmp_path: Path) -> Path:
    write_image(tmp_path / "refs" / "a.png", seed=1)
    write_image(tmp_path / "refs" / "b.png", seed=2)
    return tmp_path


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    """The provider emulator on a free loopback port, for the whole session."""
    from storyfilm.emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(latency=0.2)) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    """The emulator, reset: no jobs, uploads or faults; jobs take 0.2 s (plus their render)."""
    httpx.post(f"{emulator_server.url}/_emulator/reset").raise_for_status()
    return emulator_server


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL server on a free loopback port, for the whole session (see tests/pgcluster.py)."""
    from .pgcluster import cluster, pg_bin

    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed: no initdb on PATH or under /usr/lib/postgresql/*/bin "
                    "(.ci/run installs Debian's postgresql package)")
    with cluster(fsync=False) as server:  # a throwaway server: nothing to keep across a power cut
        yield server


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh, empty PostgreSQL database: its ledger URL, password included."""
    with pg_cluster.database() as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on a free loopback port, for the whole session (see tests/s3server.py)."""
    from .s3server import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; this process's AWS_* variables point at the server (as a worker's would)."""
    import uuid

    import boto3

    from .s3server import s3_env

    for name, value in s3_env(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    name = f"films-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_at(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a SQLite file and on a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return str(request.getfixturevalue("pg_url"))

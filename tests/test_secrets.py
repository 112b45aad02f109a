"""API keys never leak: runs with recognisable keys against an emulator that accepts only those keys, then
every place a key could end up is searched for them: the CLI's stdout and stderr, Prefect's database (logs,
artifacts, parameters, task runs; read back through the Prefect API too), every file under output/, the
ledger, and the messages and tracebacks of errors raised on purpose (a wrong key, a host quoting the key
it was sent). The expected count everywhere is zero.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from storyfilm.emulator import EmulatorConfig, EmulatorServer
from storyfilm.errors import StoryfilmError
from storyfilm.providers import SPECS

from .helpers import write_image, write_storyboard

pytestmark = pytest.mark.slow

KEYS = {"wavespeed": "ws-CANARY-7f3a9c21e4b8d6f0", "apiframe": "afk_CANARY_0c9e8b7a6d5f4e3c",
        "gateway": "sk-CANARY-5b4d3c2e1f0a9b8c"}
WRONG = "afk_CANARY_WRONG_99aa88bb77cc"
CANARIES = [*KEYS.values(), WRONG]


@pytest.fixture(scope="module")
def strict() -> Iterator[EmulatorServer]:
    """An emulator that accepts exactly KEYS (one per host)."""
    with EmulatorServer(EmulatorConfig(latency=0.2, api_keys=KEYS)) as server:
        yield server


def host_env(url: str, keys: dict[str, str] = KEYS) -> dict[str, str]:
    env = {"STORYFILM_POLL_INTERVAL": "0.05"}
    for spec in SPECS.values():
        if spec.base_url_env and spec.api_key_env:
            env[spec.base_url_env] = url
            env[spec.api_key_env] = keys[spec.name]
    return env


def leaks(data: bytes | str) -> list[str]:
    raw = data.encode() if isinstance(data, str) else data
    return [k for k in CANARIES if k.encode() in raw]


def leaks_in_tree(root: Path) -> dict[str, list[str]]:
    """Every file under root (databases with their WAL included), searched byte by byte."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and (hit := leaks(path.read_bytes())):
            found[str(path.relative_to(root))] = hit
    return found


BOARD = """\
version: 1
title: Secrets
provider: {provider}
defaults: {{duration: {duration}, resolution: 480p, aspect_ratio: "1:1"}}
assets:
  still: refs/still.png
shots:
  - id: opening
    image: still
    prompt: A lighthouse at dawn.
  - id: closer
    prompt: The camera pushes in on the lamp.
{extra}"""


def test_cli_run_leaks_no_key_anywhere(strict: EmulatorServer, tmp_path: Path, prefect_home: Path) -> None:
    """WaveSpeed (uploads, extend) through the CLI; one shot's submit is answered with a 400 quoting the key."""
    write_image(tmp_path / "refs" / "still.png", (480, 480), seed=4)
    extra = "  - id: refused\n    cut: true\n    prompt: \"A storm. [[fault:submit-echo]]\"\n"
    path = write_storyboard(tmp_path, BOARD.format(provider="wavespeed", duration=5, extra=extra), "secrets.yaml")
    home = prefect_home
    env = {**os.environ, **host_env(strict.url), "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "INFO"}
    env.pop("PREFECT_API_URL", None)  # its own ephemeral Prefect server, whose database is searched below
    env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)  # the console a user gets (the tests' is louder)
    done = subprocess.run([sys.executable, "-m", "storyfilm", "run", str(path), "--output", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "shot 'refused' [wavespeed]: HTTP 400: invalid request: credentials 'Bearer ***'" in done.stderr
    assert "Traceback" not in done.stderr
    assert leaks(done.stdout) == [] and leaks(done.stderr) == []

    film = tmp_path / "out" / "secrets"
    assert (film / "shots" / "closer.mp4").is_file()  # the other chain finished
    assert leaks_in_tree(film) == {}
    assert leaks_in_tree(home) == {}
    # ... and that search read the run's logs: the database holds them (it is not an empty search).
    with sqlite3.connect(home / "prefect.db") as db:
        messages = [m for (m,) in db.execute("SELECT message FROM log")]
    assert any("submitted job" in m for m in messages) and any("refused" in m for m in messages)


@pytest.fixture
def run_logs_at_info() -> Iterator[None]:
    """The run logs a user sees (INFO and up) go to the Prefect API; the test session keeps WARNING."""
    import prefect.main  # noqa: F401 - configures Prefect's logging on first import: before the change below

    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    yield
    for logger, level in zip(loggers, before, strict=True):
        logger.setLevel(level)


def test_flow_runs_and_errors_leak_no_key(strict: EmulatorServer, prefect_server: None, run_logs_at_info: None,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process flows: Apiframe (uploads, last frames) to the end, the gateway with a poll answered by a 400
    quoting the key, and a wrong key; Prefect's logs and artifacts are read back through its API."""
    import prefect.settings
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter
    from prefect.logging.handlers import APILogHandler

    from storyfilm.flow import film

    for name, value in host_env(strict.url).items():
        monkeypatch.setenv(name, value)
    write_image(tmp_path / "refs" / "still.png", (480, 480), seed=4)
    out = tmp_path / "out"
    ok = write_storyboard(tmp_path, BOARD.format(provider="apiframe", duration=4, extra=""), "apiframe.yaml")
    result = film(storyboard=str(ok), output_dir=str(out))
    assert Path(result["film"]).is_file() and (out / "apiframe" / "manifest.json").is_file()

    errors: list[StoryfilmError] = []
    extra = "  - id: echoed\n    cut: true\n    prompt: \"A storm. [[fault:poll-echo]]\"\n"
    echo = write_storyboard(tmp_path, BOARD.format(provider="gateway", duration=5, extra=extra), "gateway.yaml")
    with pytest.raises(StoryfilmError, match=r"shot 'echoed' \[gateway\]: HTTP 400: .*'Bearer \*\*\*'") as info:
        film(storyboard=str(echo), output_dir=str(out))
    errors.append(info.value)
    monkeypatch.setenv("APIFRAME_API_KEY", WRONG)
    with pytest.raises(StoryfilmError, match=r"\[apiframe\]: HTTP 401: .*check the API key") as wrong:
        film(storyboard=str(ok), output_dir=str(tmp_path / "out-wrong"))
    errors.append(wrong.value)

    for exc in errors:
        text = "".join(traceback.format_exception(exc)) + repr(exc) + repr(vars(exc))
        assert leaks(text) == [], text
    assert leaks_in_tree(tmp_path) == {}  # outputs, manifests, ledgers, timelines, contact sheets

    APILogHandler().flush()  # logs are sent in batches: all of them, before they are read back
    with get_client(sync_client=True) as client:
        logs, offset = [], 0
        while batch := client.read_logs(log_filter=LogFilter(), limit=200, offset=offset):
            logs += batch
            offset += len(batch)
        artifacts = client.read_artifacts()
        runs = client.read_flow_runs()
        task_runs = client.read_task_runs()
    assert any("submitted job" in log.message for log in logs) and any("echoed" in log.message for log in logs)
    assert any(a.key == "film-apiframe" for a in artifacts)
    for records in (logs, artifacts, runs, task_runs):
        assert leaks("\n".join(r.model_dump_json() for r in records)) == []
    database = Path(prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split("///", 1)[1])
    assert leaks_in_tree(database.parent) == {}

"""`storyfilm emulate` as a user runs it: a real process on a free port, stopped with Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from .emu import T2V

pytestmark = pytest.mark.slow  # each test starts `storyfilm emulate` as a process


def test_emulate_serves_until_interrupted_and_checks_keys() -> None:
    argv = [sys.executable, "-m", "storyfilm", "emulate", "--port", "0", "--latency", "0.1",
            "--api-key", "wavespeed=ws-secret", "--faults", "submit-503"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    try:
        assert proc.stdout is not None
        url = re.search(r"(http://127\.0\.0\.1:\d+)", proc.stdout.readline())[1]  # type: ignore[index]
        for _ in range(200):  # the announcement comes just before uvicorn serves
            try:
                httpx.get(f"{url}/_emulator/health")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        submit = f"{url}/api/v3/{T2V}"
        body = {"prompt": "[[fault:moderation]] x", "duration": 4}
        assert httpx.post(submit, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        good = {"Authorization": "Bearer ws-secret"}
        assert [httpx.post(submit, json=body, headers=good).status_code for _ in range(2)] == [503, 200]
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr


def test_a_bad_fault_spec_is_a_one_line_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "storyfilm", "emulate", "--faults", "submit-429,explode"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "unknown fault 'explode'" in proc.stderr and "Traceback" not in proc.stderr

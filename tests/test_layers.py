"""The core does not import Prefect: only flow.py, _prefect.py (and the CLI's run/serve, lazily) do."""

from __future__ import annotations

import subprocess
import sys


def test_core_modules_and_the_cli_load_without_prefect() -> None:
    modules = ["storyfilm.storyboard", "storyfilm.plan", "storyfilm.generate", "storyfilm.ledger",
               "storyfilm.ledger_copy", "storyfilm.assemble", "storyfilm.exports", "storyfilm.providers",
               "storyfilm.progress", "storyfilm.report", "storyfilm.console_progress", "storyfilm.cli"]
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print(sorted(m for m in sys.modules if m.startswith('prefect')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"

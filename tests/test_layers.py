"""The core does not import Prefect: only flow.py, _prefect.py (and the CLI's run/serve, lazily) do."""

from __future__ import annotations

import subprocess
import sys


def test_core_modules_and_the_cli_load_without_prefect() -> None:
    modules = ["storyfilm.storyboard", "storyfilm.plan", "storyfilm.session", "storyfilm.decide", "storyfilm.storage",
               "storyfilm.results", "storyfilm.generate", "storyfilm.ledger", "storyfilm.ledger_copy",
               "storyfilm.assemble", "storyfilm.exports", "storyfilm.providers", "storyfilm.progress",
               "storyfilm.report", "storyfilm.console_progress", "storyfilm.cli", "storyfilm.approval",
               "storyfilm.animatic_preview"]
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print(sorted(m for m in sys.modules if m.startswith('prefect')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_plan_loads_without_http_or_media_libraries() -> None:
    """`plan` and the storyboard need the specs only: no httpx, PyAV or Pillow (planning stays quick and pure)."""
    heavy = ["httpx", "av", "PIL"]
    code = ("import sys\nimport storyfilm.plan, storyfilm.storyboard, storyfilm.providers\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_no_provider_is_named_outside_the_providers() -> None:
    """Provider identity is data (providers/specs.py): no code outside providers/ (and the emulator, which
    plays the hosts) holds a provider's name as a string literal to compare, branch or default on."""
    import ast
    from pathlib import Path

    from storyfilm.providers import SPECS

    src = Path(__file__).resolve().parent.parent / "src" / "storyfilm"
    found = []
    for path in sorted(src.rglob("*.py")):
        if {"providers", "emulator"} & set(path.relative_to(src).parts[:-1]):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in SPECS:
                found.append(f"{path.relative_to(src)}:{node.lineno}: {node.value!r}")
    assert found == []
    assert len(list(src.rglob("*.py"))) > 20  # the walk saw the package

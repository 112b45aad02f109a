"""Where a run's films go: a local folder, or a URL that outputs.py mirrors a local scratch folder to.

Kept light (no I/O library): the CLI reads `--output` with it before anything heavy is imported.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from storyfilm.errors import OutputError

SCRATCH_ENV = "STORYFILM_SCRATCH"
_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://([^/?#]*)(.*)$", re.IGNORECASE)


def is_url(output: str | Path) -> bool:
    return isinstance(output, str) and _URL.match(output) is not None


def split(output: str | Path, env: Mapping[str, str] | None = None) -> tuple[Path, str | None]:
    """The local folder a run writes in, and the URL it mirrors to (None: the folder is the output)."""
    if not is_url(output):
        return Path(output), None
    url = str(output).rstrip("/")
    match = _URL.match(url)
    assert match is not None
    if "@" in match.group(2) or "?" in url or "#" in url:
        raise OutputError(f"{match.group(1)}://{match.group(2).rpartition('@')[2]}...: an output URL names a "
                          "bucket and a path only; credentials come from the environment (AWS_* variables, "
                          "profiles), never from the URL")
    env = os.environ if env is None else env
    scratch = Path(env.get(SCRATCH_ENV) or Path(tempfile.gettempdir()) / "storyfilm-scratch")
    return scratch / hashlib.sha256(url.encode()).hexdigest()[:12], url


def target(output: str | Path) -> Path | str:
    """`--output` as given: a URL stays text (a Path would fold its `//`), anything else is a folder."""
    return str(output).rstrip("/") if is_url(output) else Path(output)


def under(output: Path | str, name: str) -> Path | str:
    return f"{output}/{name}" if isinstance(output, str) else output / name


def shown(output: Path | str) -> str:
    """Where films go, for a message or a deployment's parameter (a folder as an absolute path)."""
    return output if isinstance(output, str) else str(output.resolve())

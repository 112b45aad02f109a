"""Links to a film's files that a browser can open: http(s) under a public base URL, or copyable paths.

A browser refuses `file://` links from a web page, and on a worker they name another machine's files, so
storyfilm never publishes them. Set `STORYFILM_PUBLIC_URL` to the http(s) URL at which the output folder
(the run's `output_dir`) is served, e.g. `https://films.example.com/output`: the film of `output/harbour/`
is then linked as `https://films.example.com/output/harbour/film.mp4`. Without it the summary shows each
file's path as code, to copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, urlsplit

from storyfilm.errors import ConfigurationError

PUBLIC_URL_ENV = "STORYFILM_PUBLIC_URL"


def public_base(value: str | None = None) -> str | None:
    """The public base URL (`value`, else the environment's), checked; None when none is set."""
    raw = (value if value is not None else os.environ.get(PUBLIC_URL_ENV, "")).strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(f"{PUBLIC_URL_ENV}={raw!r} is not a base URL: give the http(s) URL at which the "
                                 "output folder is served, e.g. https://films.example.com/output")
    return raw.rstrip("/")


def public_url(path: Path, output_dir: Path, base: str | None) -> str | None:
    """The http(s) URL of `path` (a file under `output_dir`), or None without a base or outside the folder."""
    if base is None:
        return None
    try:
        relative = path.resolve().relative_to(output_dir.resolve())
    except ValueError:
        return None
    return f"{base}/{quote(relative.as_posix())}"


def markdown_link(label: str, path: Path, output_dir: Path, base: str | None) -> str:
    """`[label](url)` when the file has a public URL, else its path as inline code to copy."""
    url = public_url(path, output_dir, base)
    if url is not None:
        return f"[{label}]({url})"
    return f"`{path.resolve()}`"

"""Links to a film's files that a browser can open: http(s) under a public base URL, or copyable paths.

A browser refuses `file://` links from a web page, and on a worker they name another machine's files, so
storyfilm never publishes them. Set `STORYFILM_PUBLIC_URL` to the http(s) URL at which the output folder
(the run's `output_dir`) is served, e.g. `https://films.example.com/output`: the film of `output/harbour/`
is then linked as `https://films.example.com/output/harbour/film.mp4`. Without it the summary shows each
file's path as code, to copy.

With outputs at a URL (`s3://bucket/prefix`, outputs.py) the run's files sit in a scratch folder that vanishes
with the worker: they are named by their objects (`s3://bucket/prefix/harbour/film.mp4`, to copy), or, with
`STORYFILM_PUBLIC_URL` set to where that prefix is served, by their http(s) URL. Neither carries credentials
(output_url.split refuses a URL with them).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, urlsplit

from storyfilm import output_url
from storyfilm.errors import ConfigurationError

PUBLIC_URL_ENV = "STORYFILM_PUBLIC_URL"


def public_base(value: str | None = None) -> str | None:
    """The public base URL (`value`, else the environment's), checked; None when none is set."""
    raw = (value if value is not None else os.environ.get(PUBLIC_URL_ENV, "")).strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if "@" in parts.netloc:  # never echoed: it may hold a password
        raise ConfigurationError(f"{PUBLIC_URL_ENV} holds credentials (user@ or user:password@): links are "
                                 "published in manifests and the Prefect UI; give a base URL without them")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(f"{PUBLIC_URL_ENV}={raw!r} is not a base URL: give the http(s) URL at which the "
                                 "output folder is served, e.g. https://films.example.com/output")
    return raw.rstrip("/")


def object_url(path: Path, output_dir: Path | str, base: str | None) -> str | None:
    """Where `path` (a file a run wrote under `output_dir`, a folder or a URL) can be found by others: its http(s)
    URL under a public base, else its object's URL where outputs are at a URL; None for a local file without a
    base, or a file outside the output folder."""
    local, remote = output_url.split(output_dir)
    if base is None and remote is None:
        return None
    try:
        relative = path.resolve().relative_to(local.resolve()).as_posix()
    except ValueError:
        return None
    return f"{base}/{quote(relative)}" if base is not None else f"{remote}/{relative}"


def public_url(path: Path, output_dir: Path | str, base: str | None) -> str | None:
    """The http(s) URL of `path` (a file under `output_dir`), or None without a base or outside the folder."""
    return object_url(path, output_dir, base) if base is not None else None


def markdown_link(label: str, path: Path, output_dir: Path | str, base: str | None) -> str:
    """`[label](url)` when the file has a public URL; else its object's URL (outputs at a URL) or its path, as
    inline code to copy."""
    url = object_url(path, output_dir, base)
    if url is not None and base is not None:
        return f"[{label}]({url})"
    return f"`{url or path.resolve()}`"

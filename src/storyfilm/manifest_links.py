"""The manifest names where others find the film's files: `links` for the film, the manifest and each export,
and each shot's `links` for its segment and last frame.

With outputs at a URL they are the bucket's objects (`s3://bucket/prefix/<slug>/film.mp4`; a shot's files are
its kept objects, `shots/.kept/<key>.mp4`, the only copies a bucket holds), or their http(s) URLs where
`STORYFILM_PUBLIC_URL` says where the output folder is served (public_links.py). A local folder without a
public URL gets no links: its manifest's relative paths are the links. A link never carries credentials (an
output URL or a public base URL with them is refused before a run starts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from storyfilm.exports import write_json
from storyfilm.storage import kept_paths


def root(film_dir: Path, remote: str | None, base: str | None) -> str | None:
    """The URL of the film's folder (`remote`: its folder at the output URL), or None: no links."""
    if base is not None:
        return f"{base}/{quote(film_dir.name)}"
    return remote


def add(manifest: Path | None, film_dir: Path, remote: str | None, base: str | None) -> None:
    """Write the links into the manifest at `manifest` (nothing without a root URL)."""
    at = root(film_dir, remote, base)
    if at is None or manifest is None:
        return
    data: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))

    def url(rel: str) -> str:
        return f"{at}/{quote(rel) if base is not None else rel}"

    data["links"] = {"film": url(data["film"]["file"]), "manifest": url(manifest.name),
                     **{name: url(rel) for name, rel in data["exports"].items() if rel and name != "manifest"}}
    for shot in data["shots"]:
        if remote is not None:
            kept = kept_paths(film_dir / "shots", shot["cache_key"])
            video, last = (p.relative_to(film_dir).as_posix() for p in kept)
        else:
            video, last = shot["file"], shot["last_frame"]
        shot["links"] = {"segment": url(video), "last_frame": url(last)}
    write_json(data, manifest)

"""Assets named in a storyboard: content hashes for cache keys, and local files for providers."""

from __future__ import annotations

import hashlib
from pathlib import Path

from storyfilm.errors import ProviderError
from storyfilm.providers.http import HostClient
from storyfilm.storyboard import MAX_ASSET_BYTES, Storyboard, asset_location, image_problem


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digests(board: Storyboard) -> dict[str, str]:
    """sha256 of each local asset's bytes; a URL is keyed by itself (fetching it is not free)."""
    out = {}
    for name, ref in board.assets.items():
        loc = asset_location(ref, board.base_dir)
        out[name] = file_digest(loc) if isinstance(loc, Path) else "url:" + hashlib.sha256(ref.encode()).hexdigest()
    return out


def materialise(board: Storyboard, cache_dir: Path, names: set[str] | None = None) -> dict[str, Path]:
    """Local paths for the assets (https ones downloaded once into cache_dir)."""
    out: dict[str, Path] = {}
    for name, ref in board.assets.items():
        if names is not None and name not in names:
            continue
        loc = asset_location(ref, board.base_dir)
        if isinstance(loc, Path):
            out[name] = loc
            continue
        cache_dir.mkdir(parents=True, exist_ok=True)
        dest = cache_dir / f"{name}-{hashlib.sha256(ref.encode()).hexdigest()[:12]}"
        if not dest.exists():
            _download(ref, dest, board, name)
        out[name] = dest
    return out


def _download(url: str, dest: Path, board: Storyboard, name: str) -> None:
    """An https asset, through the same checks as a host's output (every redirect's address, size, type),
    then checked as an image: a storyboard from elsewhere cannot make us fetch an internal address."""
    client = HostClient("asset", url, {"User-Agent": "storyfilm"})
    try:
        client.download(url, dest, kind="image", max_bytes=MAX_ASSET_BYTES)
        problem = image_problem(dest)
    except ProviderError as exc:
        problem = f"cannot be downloaded: {exc.detail}"
    finally:
        client.close()
    if problem is not None:
        dest.unlink(missing_ok=True)
        raise board.error([board.problem(("assets", name), f"{url} {problem}")])

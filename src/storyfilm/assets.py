"""Assets named in a storyboard: content hashes for cache keys, and local files for providers."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from storyfilm.errors import ProviderError
from storyfilm.images import MAX_ASSET_BYTES, image_problem, upright_rgb
from storyfilm.netpolicy import UrlPolicy, display_url
from storyfilm.providers.http import HostClient
from storyfilm.storyboard import Storyboard, asset_location

ASSET_DOWNLOAD_DEADLINE = 120.0  # seconds for one asset, every retry and redirect included


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest_or_none(path: Path) -> str | None:
    """file_digest, or None for a file that cannot be read (gone, or not a file)."""
    try:
        return file_digest(path)
    except OSError:
        return None


def digests(board: Storyboard) -> dict[str, str]:
    """sha256 of each local asset's bytes; a URL is keyed by itself (fetching it is not free)."""
    out = {}
    for name, ref in board.asset_refs().items():
        loc = asset_location(ref, board.base_dir)
        out[name] = file_digest(loc) if isinstance(loc, Path) else "url:" + hashlib.sha256(ref.encode()).hexdigest()
    return out


def materialise(board: Storyboard, cache_dir: Path, names: set[str] | None = None, *,
                policy: UrlPolicy | None = None) -> dict[str, Path]:
    """Local files for the assets, as providers take them: https ones downloaded once into cache_dir (under
    `policy`, STORYFILM_ALLOW_NETWORKS by default); any image that is not a plain upright RGB or grayscale
    PNG/JPEG/WebP converted into cache_dir (see images.py)."""
    out: dict[str, Path] = {}
    for name, ref in board.asset_refs().items():
        if names is not None and name not in names:
            continue
        loc = asset_location(ref, board.base_dir)
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", name)[-64:]  # a character's image is named by its path
        if isinstance(loc, Path):
            source = loc
        else:
            source = cache_dir / f"{stem}-{hashlib.sha256(ref.encode()).hexdigest()[:12]}"
            if not source.exists():
                cache_dir.mkdir(parents=True, exist_ok=True)
                _download(ref, source, board, name, policy or UrlPolicy.from_env())
        out[name] = upright_rgb(source, cache_dir / f"{stem}-{file_digest(source)[:12]}.png")
    return out


def _download(url: str, dest: Path, board: Storyboard, name: str, policy: UrlPolicy) -> None:
    """An https asset under the URL policy (each redirect's address checked, the connection pinned to it),
    within a size cap and a deadline, then checked as an image."""
    client = HostClient("asset", url, {"User-Agent": "storyfilm"}, policy=policy)
    try:
        client.download(url, dest, kind="image", max_bytes=MAX_ASSET_BYTES, deadline=ASSET_DOWNLOAD_DEADLINE)
        problem = image_problem(dest)
    except ProviderError as exc:
        problem = f"cannot be downloaded: {exc.detail}"
    finally:
        client.close()
    if problem is not None:
        dest.unlink(missing_ok=True)
        where = board.asset_entries().get(name, (url, ("assets", name)))[1]  # a character's own image: its entry
        raise board.error([board.problem(where, f"{display_url(url)} {problem}")])

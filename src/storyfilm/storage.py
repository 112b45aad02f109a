"""Where finished shots are kept on disk, whether they are still as they were kept, and so the facts
`decide` reads about a shot (`gather`).

    shots/<id>.mp4, shots/<id>.last.png        the shot's latest version (what the film is assembled from)
    shots/.kept/<key>.mp4, <key>.last.png       every finished version, by cache key (hard links)

An edit that is undone later finds its paid segment under .kept/ instead of paying again. A kept file is
trusted only while its sha256 matches the one recorded in the ledger's result.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from storyfilm.assets import file_digest
from storyfilm.decide import Files
from storyfilm.ledger import Ledger, Record
from storyfilm.results import ShotResult


def shot_paths(shots_dir: Path, shot_id: str) -> tuple[Path, Path]:
    return shots_dir / f"{shot_id}.mp4", shots_dir / f"{shot_id}.last.png"


def kept_paths(shots_dir: Path, key: str) -> tuple[Path, Path]:
    """Every finished version of a shot, by cache key (hard links to shots/<id>.*, which hold the latest)."""
    return shots_dir / ".kept" / f"{key[:32]}.mp4", shots_dir / ".kept" / f"{key[:32]}.last.png"


@dataclass(frozen=True)
class Facts:
    """What `decide` needs to know of a shot's past: its latest ledger record and the state of its files."""

    record: Record | None
    files: Files | None  # of a done record's result (None: no finished result to look at)


def gather(ledger: Ledger, shots_dir: Path, key: str, remote: Callable[[ShotResult], bool] | None = None,
           shot_id: str | None = None) -> Facts:
    """One ledger read, and one hash of each kept file of a finished shot.

    A result's paths and id are those of the run that kept it, perhaps on another machine or of another film
    (a shared ledger: an identical shot has the same key): they are read as this run's shot `shot_id` and its
    shots/<id>.*, where this run keeps the shot. `remote(result)`: the kept files are in the outputs' bucket
    (outputs.py), so files lost here are restorable from there.
    """
    record = ledger.latest(key)
    if record is None or record.state != "done" or record.result is None:
        return Facts(record, None)
    shot_id = shot_id or record.result["id"]
    video, last = shot_paths(shots_dir, shot_id)
    record = replace(record, result={**record.result, "id": shot_id, "segment": str(video), "last_frame": str(last)})
    assert record.result is not None
    result = ShotResult(**record.result)
    state = files_state(shots_dir, result)
    return Facts(record, "restorable" if state == "lost" and remote is not None and remote(result) else state)


def files_state(shots_dir: Path, result: ShotResult) -> Files:
    """The state of a finished shot's files, hashing each file once at most."""
    if intact(result):
        return "intact"
    if restorable(shots_dir, result):
        return "restorable"
    return "lost"


def intact(result: ShotResult) -> bool:
    """The shot's files are on disk as they were kept (records older than the digests: present)."""
    for path, digest in ((Path(result.segment), result.sha256), (Path(result.last_frame), result.last_frame_sha256)):
        if not path.is_file() or (digest and file_digest(path) != digest):
            return False
    return True


def restorable(shots_dir: Path, result: ShotResult) -> bool:
    """The kept copies under .kept/ match the recorded digests (so `place` can put them back)."""
    kept = kept_paths(shots_dir, result.key)
    digests = (result.sha256, result.last_frame_sha256)
    return all(digests) and all(p.is_file() and file_digest(p) == d for p, d in zip(kept, digests, strict=True))


def place(shots_dir: Path, result: ShotResult) -> None:
    """shots/<id>.* become the kept version of the shot (last frame first: the segment marks it complete)."""
    kept_video, kept_last = kept_paths(shots_dir, result.key)
    link(kept_last, Path(result.last_frame))
    link(kept_video, Path(result.segment))


def link(src: Path, dest: Path) -> None:
    """`dest` becomes `src` (a hard link where the file system allows it), replaced atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    tmp.replace(dest)

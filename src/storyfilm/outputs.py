"""Outputs at a URL (`--output s3://bucket/prefix`, or what fsspec serves: gs://, az://, file://, with the
protocol's package installed): a run works in a local scratch folder and mirrors what it keeps.

    <url>/<slug>/shots/.kept/<key>.last.png, <key>.mp4   each kept segment and its last frame, uploaded as soon
                                                         as it is kept (before the ledger says done, so a done
                                                         shot's files are in the bucket or refetched free)
    <url>/<slug>/film.mp4, manifest.json, timeline, subtitles, pictures   after the film is assembled

A later run on a fresh machine (its scratch folder empty, the ledger shared) takes a done shot whose files are
only in the bucket as reusable and downloads a file only when it is used: a parent's last frame when its
child is generated (its segment too for an extend), the segments and last frames when the film is assembled
and its continuity measured. Every download
is checked against the sha256 the ledger recorded before it is used.

Credentials and the endpoint come from where the protocol's library looks (for S3: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, AWS_ENDPOINT_URL); a URL carrying credentials is refused, and
nothing here prints more of a URL than its protocol, bucket and path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from storyfilm.assets import file_digest
from storyfilm.errors import OutputError
from storyfilm.results import ShotResult
from storyfilm.storage import kept_paths, link, shot_paths

Log = Callable[[str], None]


class Mirror:
    """One film's folder at a URL."""

    def __init__(self, url: str, log: Log):
        import fsspec  # type: ignore[import-untyped]  # no type information shipped; only URL outputs need it

        self.url, self._log = url, log
        try:
            self._fs, self._root = fsspec.core.url_to_fs(url)
            names = self._fs.ls(f"{self._root}/shots/.kept", detail=False) if self._exists("shots/.kept") else []
        except ImportError as exc:
            raise OutputError(f"{url}: {exc} (install the package for this protocol, e.g. "
                              "pip install 'storyfilm[s3]')") from None
        except Exception as exc:  # noqa: BLE001 - each protocol's library raises its own errors
            raise self._error("cannot list the film's folder", exc) from None
        self._kept = {Path(n).name for n in names}
        self._elsewhere: dict[str, str | None] = {}  # another film's folder URL -> its path, if it has the files
        self.uploaded: list[str] = []
        self.downloaded: list[str] = []

    def _error(self, doing: str, exc: BaseException) -> OutputError:
        return OutputError(f"{self.url}: {doing}: {type(exc).__name__}: {exc}")

    def _exists(self, rel: str) -> bool:
        return bool(self._fs.exists(f"{self._root}/{rel}"))

    def exists(self, rel: str) -> bool:
        try:
            return self._exists(rel)
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"cannot look for {rel}", exc) from None

    def size(self, rel: str) -> int | None:
        """The object's size in bytes; None when it is not there."""
        try:
            return int(self._fs.size(f"{self._root}/{rel}"))
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"cannot look at {rel}", exc) from None

    def read_json(self, rel: str) -> dict[str, Any] | None:
        """A small JSON object (the manifest) read from the bucket; None when it is missing or not JSON."""
        try:
            data = json.loads(self._fs.cat_file(f"{self._root}/{rel}"))
        except (FileNotFoundError, ValueError):  # none yet, or not one storyfilm wrote: the film is made again
            return None
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"cannot read {rel}", exc) from None
        self.downloaded.append(rel)
        self._log(f"manifest: downloaded {rel} from {self.url} (what the film there was made from)")
        return data if isinstance(data, dict) else None

    def _folder(self, result: ShotResult) -> tuple[str, str] | None:
        """The URL and bucket path of the folder whose shots/.kept/ holds the shot's files: this film's, else
        the one its result names (another film's identical shot, in a shared ledger); None: neither."""
        names = [p.name for p in kept_paths(Path(), result.key)]
        if all(n in self._kept for n in names):
            return self.url, self._root
        other = result.kept_at
        if not other or other == self.url or urlsplit(other).scheme != urlsplit(self.url).scheme:
            return None
        if other not in self._elsewhere:
            import fsspec

            found: str | None = None
            try:
                path = str(fsspec.core.url_to_fs(other)[1])
                if all(self._fs.exists(f"{path}/shots/.kept/{n}") for n in names):
                    found = path
            except Exception:  # noqa: BLE001 - another film's folder this run may not read: not there for it
                found = None
            self._elsewhere[other] = found
        elsewhere = self._elsewhere[other]
        return (other, elsewhere) if elsewhere is not None else None

    def has(self, result: ShotResult) -> bool:
        """The kept segment and last frame of the shot are in the bucket (this film's folder or another's)."""
        return self._folder(result) is not None

    def put(self, local: Path, rel: str) -> None:
        try:
            self._fs.put_file(str(local), f"{self._root}/{rel}")
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"cannot upload {rel}", exc) from None
        self.uploaded.append(rel)

    def keep(self, shots_dir: Path, result: ShotResult) -> ShotResult:
        """Upload a newly kept shot (last frame first: the segment marks it complete); the result says where."""
        for path in reversed(kept_paths(shots_dir, result.key)):
            self.put(path, f"shots/.kept/{path.name}")
            self._kept.add(path.name)
        return replace(result, kept_at=self.url)

    def ensure(self, shots_dir: Path, result: ShotResult, *, segment: bool = True, last_frame: bool = True) -> None:
        """shots/<id>.* of a done shot on this machine (downloaded if they are only in the bucket), checked."""
        video, last = shot_paths(shots_dir, result.id)
        kept_video, kept_last = kept_paths(shots_dir, result.key)
        wanted = [(kept_last, last, result.last_frame_sha256)] if last_frame else []
        wanted += [(kept_video, video, result.sha256)] if segment else []
        for kept, dest, digest in wanted:
            if dest.is_file() and file_digest(dest) == digest:
                continue
            if not (kept.is_file() and file_digest(kept) == digest):
                rel = f"shots/.kept/{kept.name}"
                where, folder = self._folder(result) or (self.url, self._root)
                self._download(rel, kept, digest, result.id, where, folder)
                if folder != self._root:  # another film's copy: this film's folder gets its own
                    self.put(kept, rel)
                    self._kept.add(kept.name)
            link(kept, dest)

    def _download(self, rel: str, dest: Path, digest: str, shot_id: str, where: str, folder: str) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f".{dest.name}.part")
        try:
            self._fs.get_file(f"{folder}/{rel}", str(part))
        except Exception as exc:  # noqa: BLE001
            part.unlink(missing_ok=True)
            raise self._error(f"cannot download {rel} from {where} (shot '{shot_id}')", exc) from None
        if file_digest(part) != digest:
            part.unlink()
            raise OutputError(f"{where}/{rel}: its sha256 differs from the one the ledger recorded for shot "
                              f"'{shot_id}'; it was changed after it was kept. Delete it to have it fetched again")
        part.replace(dest)
        self.downloaded.append(rel)
        self._log(f"{shot_id}: downloaded {rel} from {where} (sha256 checked)")

    def publish(self, film_dir: Path, files: Iterable[Path | None]) -> None:
        """The film and its exports, each under the same name beside the shots (the manifest last)."""
        for path in files:
            if path is not None and path.is_file():
                self.put(path, path.relative_to(film_dir).as_posix())
        self._log(f"uploaded to {self.url}: {len(self.uploaded)} files this run, downloaded {len(self.downloaded)}")

"""Files the emulator serves: uploads (direct, or a ticket then a PUT) and job outputs. No auth, like a CDN."""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger("storyfilm.emulator")

Kind = Literal["image", "video", "audio"]


@dataclass
class StoredFile:
    path: Path
    filename: str
    content_type: str
    size: int
    expires_at: float | None = None
    pending: bool = False  # a ticket waiting for its PUT

    def alive(self, now: float) -> bool:
        return not self.pending and (self.expires_at is None or now < self.expires_at)


def sniff(data: bytes) -> tuple[Kind, str] | None:
    """(kind, content type) from the magic bytes, like Apiframe (the declared type is ignored); None if unknown."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image", "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image", "image/webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio", "audio/wav"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return "video", "video/quicktime"
        if brand in (b"M4A ", b"M4B "):
            return "audio", "audio/mp4"
        return "video", "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "video/webm"
    if head.startswith(b"OggS"):
        return "audio", "audio/ogg"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio", "audio/mpeg"
    return None


def safe_name(filename: str) -> str:
    name = Path(filename.replace("\\", "/")).name
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:120] or "upload"


class FileStore:
    """Uploaded files by token. Thread-safe."""

    def __init__(self, root: Path):
        self.root = root
        self._files: dict[str, StoredFile] = {}
        self._lock = threading.Lock()

    def _new(self, filename: str, content_type: str, size: int, ttl: float | None, pending: bool
             ) -> tuple[str, StoredFile]:
        token = secrets.token_hex(12)
        name = safe_name(filename)
        directory = self.root / token
        directory.mkdir(parents=True, exist_ok=True)
        stored = StoredFile(directory / name, name, content_type, size,
                            time.time() + ttl if ttl is not None else None, pending)
        with self._lock:
            self._files[token] = stored
        return token, stored

    def save(self, data: bytes, filename: str, content_type: str, ttl: float | None = None) -> tuple[str, StoredFile]:
        token, stored = self._new(filename, content_type, len(data), ttl, pending=False)
        stored.path.write_bytes(data)
        return token, stored

    def ticket(self, filename: str, content_type: str, size: int) -> tuple[str, StoredFile]:
        return self._new(filename, content_type, size, None, pending=True)

    def fill(self, token: str, data: bytes) -> str | None:
        """Store a ticket's PUT body; an error message when it cannot be taken."""
        with self._lock:
            stored = self._files.get(token)
        if stored is None:
            return "unknown upload ticket"
        if not stored.pending:
            return "this upload ticket was already used"
        if len(data) != stored.size:
            return f"the body has {len(data)} bytes; the ticket announced {stored.size}"
        stored.path.write_bytes(data)
        stored.pending = False
        return None

    def get(self, token: str) -> StoredFile | None:
        with self._lock:
            stored = self._files.get(token)
        return stored if stored is not None and stored.alive(time.time()) else None

    def clear(self) -> None:
        with self._lock:
            tokens = list(self._files)
            self._files.clear()
        for token in tokens:
            shutil.rmtree(self.root / token, ignore_errors=True)


class DroppedDownload(Response):
    """A response that announces the whole file, sends half of it and hangs up (a download fault)."""

    def __init__(self, path: Path, content_type: str):
        super().__init__(status_code=200, media_type=content_type)
        self.data = path.read_bytes()
        self.content_type = content_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        half = len(self.data) // 2
        log.warning("download-drop fault: closing %s after %d of %d bytes", scope.get("path"), half, len(self.data))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", self.content_type.encode()),
                                (b"content-length", str(len(self.data)).encode())]})
        await send({"type": "http.response.body", "body": self.data[:half], "more_body": True})
        # Returning without the final body message makes the server close the connection mid-body.


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


def quiet_dropped_downloads() -> None:
    """uvicorn logs our deliberate hang-ups as application errors; we already logged them as faults."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())

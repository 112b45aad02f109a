"""One emulator's configuration and state: keys, faults, jobs, files, Apiframe credits and idempotency."""

from __future__ import annotations

import hashlib
import hmac
import json
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from starlette.requests import Request

from storyfilm.drift import Drift
from storyfilm.emulator import catalog
from storyfilm.emulator.faults import HEADER, PROVIDERS, FaultControl, strip_tags
from storyfilm.emulator.files import FileStore
from storyfilm.emulator.jobs import Job, JobStore, key_owner, new_id
from storyfilm.emulator.media import RenderRequest
from storyfilm.errors import EmulatorError

IDEMPOTENCY_TTL = 24 * 3600.0
# How a completed Apiframe job's `result` holds "the output URL(s)" (S-004 line 161): `{videoUrl, lastFrameUrl}`
# as the jobs page shows, a list of URLs (the video, then the last frame), or the video's URL alone.
ResultShape = Literal["object", "list", "string"]
RESULT_SHAPES: tuple[ResultShape, ...] = ("object", "list", "string")


@dataclass(frozen=True)
class EmulatorConfig:
    latency: float = 1.0  # seconds from submit to completed (a slow fault overrides it per job)
    faults: str = ""  # the global fault spec (see faults.py)
    api_keys: Mapping[str, str] = field(default_factory=dict)  # provider -> the one accepted key; else any
    apiframe_credits: int | None = None  # Apiframe balance; None: unlimited
    upload_ttl: float = 3600.0  # Apiframe uploads expire (the host keeps them about 1-2 h)
    work_dir: Path | None = None  # where outputs and uploads live; a temporary directory if None
    render_workers: int = 2
    price_factor: float = 1.0  # the host's prices times this (a price rise, for budget rehearsals)
    host_encoder: bool = False  # outputs encoded as a host's would be (see media.py), not in the house format
    apiframe_result: ResultShape = "object"
    drift: Drift = Drift()  # colour drift of footage made from a start frame (see drift.py); none by default


def parse_api_keys(values: list[str]) -> dict[str, str]:
    """`KEY` (every provider) or `PROVIDER=KEY`, as given to `storyfilm emulate --api-key`."""
    keys: dict[str, str] = {}
    for value in values:
        name, sep, key = value.partition("=")
        if not value or (sep and name in PROVIDERS and not key):
            raise EmulatorError(f"--api-key {value!r}: expected KEY or PROVIDER=KEY (PROVIDER one of "
                                f"{', '.join(PROVIDERS)}) with a non-empty KEY")
        if sep and name in PROVIDERS:
            keys[name] = key
        else:  # one key for every provider (keys may contain '=')
            keys.update(dict.fromkeys(PROVIDERS, value))
    return keys


@dataclass(frozen=True)
class Replay:
    digest: str
    job_id: str
    at: float


class Emulator:
    def __init__(self, config: EmulatorConfig):
        self.initial = config
        self.config = config
        self.faults = FaultControl(config.faults)  # parses now: a bad spec fails before the server starts
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if config.work_dir:
            root = Path(config.work_dir)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="storyfilm-emulator-")
            root = Path(self._tmp.name)
        self.files = FileStore(root / "uploads")
        self.store = JobStore(root / "outputs", workers=config.render_workers)
        self._lock = threading.Lock()
        self._replays: dict[tuple[str, str], Replay] = {}

    # --- requests ---

    def price(self, tier: str, resolution: str, seconds: int, kind: str = "text") -> float:
        """What this host charges now (its catalogue price times the configured factor)."""
        return round(catalog.cost_usd(tier, resolution, seconds, kind) * self.config.price_factor, 4)

    def authorized(self, provider: str, presented: str | None) -> bool:
        if not presented:
            return False
        expected = self.config.api_keys.get(provider)
        return expected is None or hmac.compare_digest(presented.encode(), expected.encode())

    def accept(self, request: Request, *, provider: str, model: str, tier: str, render: RenderRequest,
               body: dict[str, object], api_key: str, prompt: str, cost_usd: float, credits: int = 0,
               idempotency_key: str | None = None) -> Job:
        """Create a billable job and start rendering it."""
        faults = self.faults.job(provider, request.headers.get(HEADER), prompt)
        job = Job(id=new_id(provider), provider=provider, model=model, tier=tier,
                  request=replace(render, prompt=strip_tags(render.prompt), host_encoder=self.config.host_encoder,
                                  drift=self.config.drift if self.config.drift.active else None),
                  body=body,
                  owner=key_owner(api_key), created=time.time(),
                  latency=faults.slow if faults.slow is not None else self.config.latency,
                  cost_usd=cost_usd, credits=credits, faults=faults, prompt=prompt,
                  idempotency_key=idempotency_key)
        return self.store.add(job)

    # --- Apiframe's Idempotency-Key (24 h) ---

    @staticmethod
    def body_digest(body: object) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def replay(self, owner: str, key: str) -> Replay | None:
        with self._lock:
            hit = self._replays.get((owner, key))
        return hit if hit is not None and time.time() - hit.at < IDEMPOTENCY_TTL else None

    def remember(self, owner: str, key: str, digest: str, job_id: str) -> None:
        with self._lock:
            self._replays[(owner, key)] = Replay(digest, job_id, time.time())

    def credits_available(self) -> int | None:
        balance = self.config.apiframe_credits
        return None if balance is None else balance - self.store.credits_spent()

    # --- admin ---

    def reset(self) -> None:
        """Back to the state right after start: no jobs, no uploads, the configured faults and settings."""
        self.config = self.initial
        self.faults.replace(self.initial.faults)
        self.store.clear()
        self.files.clear()
        with self._lock:
            self._replays.clear()

    def close(self) -> None:
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()

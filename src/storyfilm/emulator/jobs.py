"""The job store: accepted jobs, their time-based state, background renders and the bill.

A job is queued for the first fifth of its latency, then running, and finishes once its latency has passed
AND its render is done (or it was planned to fail). Renders run in a small thread pool, never in the event
loop: a job may fetch its inputs from this very server. A render is deterministic, so a text-only request
that was rendered before is served from that render (the same bytes, without the CPU).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from storyfilm.emulator.catalog import FPS
from storyfilm.emulator.faults import JobFaults
from storyfilm.emulator.media import MediaFailure, Rendered, RenderRequest, render_job

log = logging.getLogger("storyfilm.emulator")

State = Literal["queued", "running", "completed", "failed", "cancelled"]
FailureKind = Literal["moderation", "timeout", "error", "unreachable", "invalid"]
QUEUED_SHARE = 0.2


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str


_PLANNED: dict[str, Failure] = {
    "moderation": Failure("moderation", "content policy violation: the output was flagged by the safety checker"),
    "timeout": Failure("timeout", "generation timed out"),
    "error": Failure("error", "internal error while generating"),
}


@dataclass(frozen=True)
class Phase:
    state: State
    progress: float  # 0..1
    failure: Failure | None = None
    finished_at: float | None = None  # wall time


@dataclass
class Job:
    id: str
    provider: str
    model: str  # as the provider names it (WaveSpeed path, Apiframe model, gateway model id)
    tier: str
    request: RenderRequest
    body: dict[str, object]  # the submitted JSON, echoed back as `input`
    owner: str  # digest of the API key that submitted it
    created: float  # wall time
    latency: float
    cost_usd: float
    credits: int
    faults: JobFaults
    prompt: str  # as submitted, fault tags included
    idempotency_key: str | None = None
    polls: int = 0
    downloads: int = 0  # requests for the video, answered or faulted
    render_done_at: float | None = None
    rendered: Rendered | None = None
    render_failure: Failure | None = None

    def phase(self, now: float | None = None) -> Phase:
        now = time.time() if now is None else now
        elapsed = now - self.created
        settled = self.faults.outcome is not None or self.render_done_at is not None
        if elapsed < self.latency or not settled:
            if elapsed < QUEUED_SHARE * self.latency:
                return Phase("queued", 0.0)
            share = elapsed / self.latency if self.latency > 0 else 0.99  # waiting for the render
            return Phase("running", min(0.99, max(0.01, share)))
        finished = max(self.created + self.latency, self.render_done_at or 0.0)
        if self.faults.outcome == "cancel":
            return Phase("cancelled", 0.0, Failure("error", "the job was cancelled"), finished)
        if self.faults.outcome is not None:
            return Phase("failed", 0.0, _PLANNED[self.faults.outcome], finished)
        if self.render_failure is not None:
            return Phase("failed", 0.0, self.render_failure, finished)
        return Phase("completed", 1.0, None, finished)


def key_owner(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass
class JobStore:
    """All jobs of one emulator, its counters and its render pool. Thread-safe."""

    outputs: Path
    workers: int = 2
    jobs: dict[str, Job] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  # refused submits by provider
    uploads: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="emulator-render")
        self._renders: dict[RenderRequest, Future[Rendered]] = {}

    def add(self, job: Job) -> Job:
        with self.lock:
            self.jobs[job.id] = job
        if job.faults.outcome is None:
            self._pool.submit(self._render, job)
        return job

    def _render(self, job: Job) -> None:
        try:
            rendered = self._rendered(job)
            if job.faults.flaw is not None:  # a visibly worse take, written under this job's own name
                from storyfilm.emulator.flaws import flawed

                rendered = flawed(rendered, job.faults.flaw, job.request.duration * FPS, self.outputs, job.id)
            job.rendered = rendered
        except MediaFailure as exc:
            job.render_failure = Failure(exc.kind, str(exc))
        except Exception as exc:  # noqa: BLE001 - a broken render fails its job like a host's internal error
            log.exception("render of job %s failed", job.id)
            job.render_failure = Failure("error", f"internal error while generating ({type(exc).__name__})")
        job.render_done_at = time.time()

    def _rendered(self, job: Job) -> Rendered:
        req = job.request
        if req.kind != "text" or req.reference_images or req.reference_videos or req.reference_audios:
            return render_job(req, self.outputs, job.id)  # inputs behind URLs may change or expire
        with self.lock:
            future = self._renders.get(req)
            first = future is None
            if future is None:
                future = self._renders[req] = Future()
        if first:
            try:
                future.set_result(render_job(req, self.outputs, job.id))
            except Exception as exc:  # noqa: BLE001 - handed to every job waiting on this render
                with self.lock:
                    del self._renders[req]
                future.set_exception(exc)
        return future.result()

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def reject(self, provider: str) -> None:
        with self.lock:
            self.rejected[provider] = self.rejected.get(provider, 0) + 1

    def uploaded(self, provider: str) -> None:
        with self.lock:
            self.uploads[provider] = self.uploads.get(provider, 0) + 1

    def credits_spent(self) -> int:
        """Apiframe credits held by jobs that did not fail (failed jobs are refunded)."""
        with self.lock:
            jobs = [j for j in self.jobs.values() if j.provider == "apiframe"]
        return sum(j.credits for j in jobs if j.phase().state not in ("failed", "cancelled"))

    def clear(self) -> None:
        with self.lock:
            self.jobs.clear()
            self._renders.clear()
            self.rejected.clear()
            self.uploads.clear()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def stats(self) -> dict[str, object]:
        """Accepted (billable) submissions in total, per provider and per model, with the estimated cost."""
        now = time.time()
        with self.lock:
            jobs = list(self.jobs.values())
            rejected, uploads = dict(self.rejected), dict(self.uploads)
        records = []
        by_provider: dict[str, dict[str, float]] = {}
        by_model: dict[str, dict[str, float]] = {}
        failed_usd = 0.0
        for job in sorted(jobs, key=lambda j: j.created):
            phase = job.phase(now)
            for table, key in ((by_provider, job.provider), (by_model, job.model)):
                entry = table.setdefault(key, {"submissions": 0, "cost_usd": 0.0})
                entry["submissions"] += 1
                entry["cost_usd"] = round(entry["cost_usd"] + job.cost_usd, 4)
            if phase.state in ("failed", "cancelled"):
                failed_usd += job.cost_usd
            r = job.request
            records.append({
                "id": job.id, "provider": job.provider, "model": job.model, "tier": job.tier, "kind": r.kind,
                "prompt": job.prompt, "status": phase.state,
                "failure": phase.failure.kind if phase.failure else None,
                "duration": r.duration, "resolution": r.resolution, "aspect_ratio": r.aspect_ratio,
                "audio": r.audio, "inputs": r.urls, "image": r.image, "last_image": r.last_image, "video": r.video,
                "reference_images": list(r.reference_images), "reference_videos": list(r.reference_videos),
                "cost_usd": job.cost_usd, "credits": job.credits,
                "polls": job.polls, "downloads": job.downloads, "idempotency_key": job.idempotency_key,
            })
        return {
            "submissions": len(jobs),
            "cost_usd": round(sum(j.cost_usd for j in jobs), 4),
            "failed_cost_usd": round(failed_usd, 4),  # included in cost_usd; hosts refund or never bill it
            "by_provider": by_provider,
            "by_model": by_model,
            "rejected_submissions": rejected,
            "uploads": uploads,
            "jobs": records,
        }


def new_id(provider: str) -> str:
    if provider == "apiframe":
        return str(uuid.uuid4())
    if provider == "gateway":
        return f"task_{uuid.uuid4().hex[:24]}"
    return uuid.uuid4().hex

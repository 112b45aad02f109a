"""One shot, start to finish, never paying twice: reuse, resume or submit; poll; fetch; keep the result.

Shared by every provider (a provider module only translates requests and statuses). The ledger is
written before and after every paid step, so a run killed at any point resumes instead of resubmitting:

    done in the ledger, files on disk  -> reused, no call at all
    done, files lost                   -> downloaded again from the recorded output URL
    submitted / completed              -> poll (or fetch) that job id again
    intent (killed around the submit)  -> Apiframe: replay with the same Idempotency-Key (billed once);
                                          other hosts: stop and ask (a blind resubmit may pay twice)
    failed by moderation               -> not resubmitted automatically (same inputs, same refusal)
    nothing                            -> budget check, intent, submit, job id, poll, fetch, done
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from storyfilm.errors import (
    BudgetExceeded,
    DownloadError,
    JobFailed,
    JobTimeout,
    ModerationFailed,
    ProviderError,
    ProviderHTTPError,
)
from storyfilm.ledger import IN_FLIGHT, Ledger, Record
from storyfilm.media import ffmpeg, probe
from storyfilm.plan import ShotPlan
from storyfilm.providers.base import JobStatus, Output, Provider, ShotRequest

Log = Callable[[str], None]


@dataclass(frozen=True)
class ShotResult:
    id: str
    key: str
    segment: str  # path of the shot's video as kept under shots/ (new footage only, plus a seam copy)
    last_frame: str  # PNG the next shot continues from
    new_from_frame: int  # leading frames that repeat the previous shot's last frame (shown once in the film)
    frames: int  # frames in `segment`
    fps: float
    has_audio: bool
    provider: str
    job_id: str
    cost_usd: float
    seconds: float  # wall time spent generating (0 when reused)
    reused: bool = False
    last_frame_url: str | None = None  # the host's copy of the last frame, usable as the next input

    @property
    def new_frames(self) -> int:
        return self.frames - self.new_from_frame

    @property
    def duration(self) -> float:
        return self.new_frames / self.fps

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass(frozen=True)
class PollSettings:
    first: float = 5.0  # WaveSpeed asks for >= 5 s between checks of a video task
    max: float = 15.0
    timeout: float = 1800.0
    unknown_limit: int = 5  # consecutive unknown statuses before giving up

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PollSettings:
        env = os.environ if env is None else env
        return cls(first=float(env.get("STORYFILM_POLL_INTERVAL", 5.0)),
                   max=float(env.get("STORYFILM_POLL_MAX_INTERVAL", 15.0)),
                   timeout=float(env.get("STORYFILM_POLL_TIMEOUT", 1800.0)))


class BudgetGuard:
    """New spend of one run, checked before every submit (thread-safe)."""

    def __init__(self, limit_usd: float | None):
        self.limit = limit_usd
        self.spent = 0.0
        self._lock = threading.Lock()

    def reserve(self, shot_id: str, cost: float) -> None:
        with self._lock:
            if self.limit is not None and self.spent + cost > self.limit + 1e-9:
                raise BudgetExceeded(
                    f"shot '{shot_id}' would cost ${cost:.2f}; this run has committed ${self.spent:.2f} of its "
                    f"${self.limit:.2f} budget, so it was not submitted. Finished shots are kept: run again "
                    "with a higher budget (--budget) to continue without paying for them again.")
            self.spent += cost


def shot_paths(shots_dir: Path, shot_id: str) -> tuple[Path, Path]:
    return shots_dir / f"{shot_id}.mp4", shots_dir / f"{shot_id}.last.png"


def build_request(shot: ShotPlan, assets: Mapping[str, Path], parent: ShotResult | None) -> ShotRequest:
    return ShotRequest(
        shot_id=shot.id, prompt=shot.prompt, tier=shot.tier, duration=shot.duration,
        resolution=shot.resolution, aspect_ratio=shot.aspect_ratio, fmt=shot.fmt, audio=shot.audio,
        seed=shot.seed, camera=shot.camera, overlay=shot.caption or shot.prompt,
        continued=parent is not None,
        start_image=(Path(parent.last_frame) if parent else
                     assets[shot.start.asset] if shot.start.asset else None),
        # a host's own copy of the previous last frame saves an upload (only while it is fresh)
        start_image_url=parent.last_frame_url if parent and not parent.reused else None,
        start_video=Path(parent.segment) if parent and shot.method == "extend" else None,
        end_image=assets[shot.end_image] if shot.end_image else None,
        references=tuple(assets[r] for r in shot.references),
    )


def wait_for_job(provider: Provider, job_id: str, shot_id: str, settings: PollSettings,
                 log: Log | None = None) -> JobStatus:
    """Poll with a growing interval until the job finishes; raise JobFailed / ModerationFailed / JobTimeout."""
    interval = settings.first
    deadline = time.monotonic() + settings.timeout
    name = provider.spec.name
    unknown = 0
    while True:
        status = provider.poll(job_id)
        if status.state == "completed":
            return status
        if status.state == "failed":
            error_cls = ModerationFailed if status.moderation else JobFailed
            raise error_cls(status.error or "no reason given", job_id=job_id, code=status.error_code,
                            provider=name, shot=shot_id)
        unknown = unknown + 1 if status.error else 0
        if unknown >= settings.unknown_limit:
            raise JobFailed(f"{status.error} (after {unknown} polls); the job may still run: check the host",
                            job_id=job_id, provider=name, shot=shot_id)
        if time.monotonic() + interval > deadline:
            raise JobTimeout(f"job {job_id} still {status.state} after {settings.timeout:.0f} s; it is recorded: "
                             "run again to resume polling it (it will not be submitted again)",
                             provider=name, shot=shot_id)
        if log:
            pct = f" {status.progress:.0f}%" if status.progress is not None else ""
            log(f"{shot_id}: job {job_id} {status.state}{pct}")
        time.sleep(interval)
        interval = min(settings.max, max(interval * 1.5, 0.05))


class UncertainSubmission(ProviderError):
    """A submit was sent but its answer was lost: the job may exist and be billed."""


@dataclass
class ShotRunner:
    """Everything one run needs to generate shots; `run()` is called from concurrent tasks."""

    provider: Provider
    ledger: Ledger
    shots_dir: Path
    run_id: str
    budget: BudgetGuard = field(default_factory=lambda: BudgetGuard(None))
    poll: PollSettings = field(default_factory=PollSettings)
    redo: frozenset[str] = frozenset()
    log: Log = field(default=lambda _msg: None)
    resume: bool = True  # False: unfinished jobs of earlier runs are not resumed (free rehearsals)

    @property
    def paid(self) -> bool:
        return self.provider.spec.name != "local"

    def run(self, shot: ShotPlan, request: ShotRequest, parent: ShotResult | None = None) -> ShotResult:
        started = time.monotonic()
        rec = self.ledger.latest(shot.key)
        redo = shot.id in self.redo and rec is not None and rec.run_id != self.run_id
        if rec and rec.state in ("done", "failed", "rejected") and redo:
            self.log(f"{shot.id}: --redo: generating again (previous job {rec.job_id})")
            rec = None
        if rec and rec.state == "done":
            kept = self._reuse(shot, request, parent, rec, started)
            if kept is not None:
                return kept
        # A local render dies with its process: render again. So does a rehearsal's emulator job.
        if rec and rec.state in IN_FLIGHT and self.paid and self.resume:
            job_id = rec.job_id or self._replay(shot, request, rec)
            self.log(f"{shot.id}: resuming job {job_id} (submitted in an earlier run, not paid again)")
        else:
            if rec and rec.state == "failed" and rec.moderation:
                raise ModerationFailed(f"the host's moderation refused this shot in job {rec.job_id}: {rec.error}. "
                                       "The same inputs would be refused again: change the prompt or images, or "
                                       f"run with --redo {shot.id} to try once more", job_id="",
                                       provider=rec.provider, shot=shot.id)
            rec = self._submit(shot, request)
            job_id = rec.job_id
        assert job_id is not None
        return self._finish(shot, request, parent, rec, job_id, started)

    # --- steps ----------------------------------------------------------------------------------

    def _submit(self, shot: ShotPlan, request: ShotRequest) -> Record:
        prepared = self.provider.prepare(request)  # uploads: free, safe to repeat
        quote = getattr(self.provider, "quote", None)
        cost = shot.cost_usd
        if quote is not None and self.paid:
            cost = quote(prepared, request) or cost
        self.budget.reserve(shot.id, cost)
        rec = self.ledger.intent(key=shot.key, shot_id=shot.id, provider=self.provider.spec.name, model=shot.tier,
                                 run_id=self.run_id, prepared=prepared, cost_usd=cost)
        try:
            job_id = self.provider.submit(prepared, request, rec.idempotency_key)
        except ProviderHTTPError as exc:  # an answer came back: the host created nothing
            self.ledger.update(rec.key, rec.attempt, "rejected", error=str(exc), cost_usd=0.0)
            raise
        except ProviderError as exc:  # no answer: the job may exist; leave the intent for the next run
            raise UncertainSubmission(f"{exc}. The submit may have reached the host; it is recorded, and the next "
                                      "run will not submit it blindly", provider=self.provider.spec.name,
                                      shot=shot.id) from None
        self.ledger.update(rec.key, rec.attempt, "submitted", job_id=job_id)
        self.log(f"{shot.id}: submitted job {job_id} to {self.provider.spec.name} (${cost:.2f})")
        return Record(**{**asdict(rec), "state": "submitted", "job_id": job_id})

    def _replay(self, shot: ShotPlan, request: ShotRequest, rec: Record) -> str:
        """A submit whose answer was never recorded (the process died around it)."""
        if self.provider.spec.name != "apiframe" or rec.prepared is None:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.created_at))
            raise UncertainSubmission(
                f"a submit for this shot was sent at {when} but the run stopped before its job id was recorded, "
                "so it may have been created and billed. Check the host's dashboard; to submit it again anyway "
                f"(it may be paid twice) run with --redo {shot.id}", provider=rec.provider, shot=shot.id)
        # Apiframe honours Idempotency-Key for 24 h: the same key and body return the original job.
        job_id = self.provider.submit(rec.prepared, request, rec.idempotency_key)
        self.ledger.update(rec.key, rec.attempt, "submitted", job_id=job_id)
        return job_id

    def _finish(self, shot: ShotPlan, request: ShotRequest, parent: ShotResult | None, rec: Record,
                job_id: str, started: float) -> ShotResult:
        name = self.provider.spec.name
        if rec.state == "completed" and rec.video_url:
            status = JobStatus(job_id, "completed", video_url=rec.video_url, last_frame_url=rec.last_frame_url)
        else:
            try:
                status = wait_for_job(self.provider, job_id, shot.id, self.poll if self.paid else PollSettings(0, 0),
                                      self.log)
            except JobFailed as exc:
                if not self.paid:
                    raise
                self.ledger.update(rec.key, rec.attempt, "failed", error=str(exc),
                                   moderation=isinstance(exc, ModerationFailed), cost_usd=0.0)
                raise
            self.ledger.update(rec.key, rec.attempt, "completed", video_url=status.video_url,
                               last_frame_url=status.last_frame_url,
                               **({"cost_usd": status.cost_usd} if status.cost_usd is not None else {}))
        try:
            output = self.provider.fetch(status, request, self.shots_dir / ".staging")
        except DownloadError:
            if rec.state != "completed":
                raise
            # The recorded output URL may have expired: ask the host for the job again (a fresh URL).
            self.log(f"{shot.id}: the recorded output URL failed; asking the host for job {job_id} again")
            status = wait_for_job(self.provider, job_id, shot.id, self.poll, self.log)
            output = self.provider.fetch(status, request, self.shots_dir / ".staging")
        result = self._keep(shot, parent, output, job_id, rec.cost_usd if status.cost_usd is None else status.cost_usd,
                            started)
        self.ledger.update(rec.key, rec.attempt, "done", result=asdict(result))
        self.log(f"{shot.id}: {result.duration:.2f} s of new footage from {name} in {result.seconds:.1f} s, "
                 f"${result.cost_usd:.2f}")
        return result

    def _reuse(self, shot: ShotPlan, request: ShotRequest, parent: ShotResult | None, rec: Record,
               started: float) -> ShotResult | None:
        assert rec.result is not None
        result = ShotResult(**rec.result)
        if Path(result.segment).is_file() and Path(result.last_frame).is_file():
            self.log(f"{shot.id}: unchanged, reusing {Path(result.segment).name} (job {result.job_id})")
            return ShotResult(**{**asdict(result), "reused": True, "seconds": 0.0})
        if not rec.video_url or not rec.job_id:
            self.log(f"{shot.id}: its kept files are gone; generating again")
            return None
        self.log(f"{shot.id}: its kept files are gone; downloading job {rec.job_id}'s output again")
        status = JobStatus(rec.job_id, "completed", video_url=rec.video_url, last_frame_url=rec.last_frame_url)
        try:
            output = self.provider.fetch(status, request, self.shots_dir / ".staging")
        except DownloadError as exc:
            raise DownloadError(f"the kept segment is missing and the host's copy cannot be fetched ({exc}); run "
                                f"with --redo {shot.id} to pay for it again", provider=rec.provider,
                                shot=shot.id) from None
        fresh = self._keep(shot, parent, output, rec.job_id, rec.cost_usd, started)
        self.ledger.update(rec.key, rec.attempt, "done", result=asdict(fresh))
        return ShotResult(**{**asdict(fresh), "reused": True})

    def _keep(self, shot: ShotPlan, parent: ShotResult | None, output: Output, job_id: str, cost: float,
              started: float) -> ShotResult:
        """Move the output into shots/: cut an extend's echo, keep the last frame, measure the seam."""
        self.shots_dir.mkdir(parents=True, exist_ok=True)
        video, last = shot_paths(self.shots_dir, shot.id)
        info = probe.probe(output.video)
        if info.video is None or info.video.frames < 1:
            raise JobFailed("the output has no video frames", job_id=job_id, provider=self.provider.spec.name,
                            shot=shot.id)
        source = output.video
        if output.echo_frames:
            if output.echo_frames >= info.video.frames:
                raise JobFailed(f"the extend output has {info.video.frames} frames, no more than its "
                                f"{output.echo_frames}-frame input", job_id=job_id,
                                provider=self.provider.spec.name, shot=shot.id)
            cut = output.video.with_name(output.video.stem + ".new.mp4")
            ffmpeg.run(ffmpeg.cut_args(output.video, cut, shot.fmt, output.echo_frames, info.video.fps))
            output.video.unlink(missing_ok=True)
            source = cut
        if output.last_frame is not None:
            with Image.open(output.last_frame) as img:
                img.convert("RGB").save(last, format="PNG")
            output.last_frame.unlink(missing_ok=True)
        else:
            probe.save_png(probe.last_frame(source), last)
        source.replace(video)
        info = probe.probe(video)
        assert info.video is not None
        seam = output.seam_copy
        return ShotResult(
            id=shot.id, key=shot.key, segment=str(video), last_frame=str(last), new_from_frame=seam,
            frames=info.video.frames, fps=float(info.video.fps), has_audio=info.audio is not None,
            provider=self.provider.spec.name, job_id=job_id, cost_usd=cost,
            seconds=round(time.monotonic() - started, 3), last_frame_url=output.last_frame_url,
        )

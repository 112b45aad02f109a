"""One shot, start to finish, never paying twice: reuse, resume or submit; poll; fetch; keep the result.

Shared by every provider (a provider module only translates requests and statuses). The ledger is
written before and after every paid step, so a run killed at any point resumes instead of resubmitting:

    done in the ledger, files on disk  -> reused, no call at all (the segment's sha256 must still match)
    done, files lost or changed        -> downloaded again from the recorded output URL
    submitted / completed              -> poll (or fetch) that job id again
    intent (killed around the submit)  -> Apiframe: replay with the same Idempotency-Key (billed once);
                                          other hosts: stop and ask (a blind resubmit may pay twice)
    failed by moderation               -> not resubmitted automatically (same inputs, same refusal)
    nothing                            -> budget check, intent, submit, job id, poll, fetch, done
    --redo (any state of an earlier run) -> a new job, paid again

What a host sends back is checked before anything is kept: an answer it cannot read (a few in a row while
polling), an unsafe or missing output URL, or an output that is not a whole video fails the shot with the
job still recorded, so the next run asks the host again instead of paying again.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from storyfilm.assemble import copy_blockers
from storyfilm.assets import file_digest
from storyfilm.errors import (
    BudgetExceeded,
    DownloadError,
    JobFailed,
    JobTimeout,
    MediaError,
    ModerationFailed,
    ProviderError,
    ProviderHTTPError,
    UnexpectedResponse,
)
from storyfilm.ledger import IN_FLIGHT, Ledger, Record
from storyfilm.media import ffmpeg, probe
from storyfilm.plan import ShotPlan
from storyfilm.providers.base import JobStatus, Output, Provider, Quotes, ShotRequest

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
    sha256: str = ""  # of `segment` as kept: a file changed or damaged since is not reused
    last_frame_sha256: str = ""

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
    unknown_limit: int = 5  # unreadable answers (unknown status, not JSON, ...) in a row before giving up

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


def kept_paths(shots_dir: Path, key: str) -> tuple[Path, Path]:
    """Every finished version of a shot, by cache key (hard links to shots/<id>.*, which hold the latest):
    an edit that is undone later finds its paid segment here instead of paying again."""
    return shots_dir / ".kept" / f"{key[:32]}.mp4", shots_dir / ".kept" / f"{key[:32]}.last.png"


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
    """Poll with a growing interval until the job finishes; raise JobFailed / ModerationFailed / JobTimeout.

    An answer the provider cannot read (UnexpectedResponse: an unknown status, not JSON, ...) is polled
    again; `unknown_limit` of them in a row raise it. The job may still run, so it is not a failure.
    """
    interval = settings.first
    deadline = time.monotonic() + settings.timeout
    name = provider.spec.name
    unread = 0
    while True:
        status: JobStatus | None = None
        try:
            status = provider.poll(job_id)
            unread = 0
        except UnexpectedResponse as exc:
            unread += 1
            if unread >= settings.unknown_limit:
                raise UnexpectedResponse(f"{exc.detail} ({unread} unreadable answers in a row). Job {job_id} stays "
                                         "recorded: the next run polls it again (it will not be submitted again)",
                                         provider=name, shot=shot_id) from None
        except ProviderError as exc:
            exc.for_shot(shot_id)
            raise
        if status is not None and status.state == "completed":
            return status
        if status is not None and status.state == "failed":
            error_cls = ModerationFailed if status.moderation else JobFailed
            raise error_cls(status.error or "no reason given", job_id=job_id, code=status.error_code,
                            provider=name, shot=shot_id)
        if time.monotonic() + interval > deadline:
            state = status.state if status is not None else "unreadable"
            raise JobTimeout(f"job {job_id} still {state} after {settings.timeout:.0f} s; it is recorded: "
                             "run again to resume polling it (it will not be submitted again)",
                             provider=name, shot=shot_id)
        if log and status is not None:
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
        return self.provider.spec.paid

    def reusable(self, shot: ShotPlan) -> bool:
        """Will `run` reuse the shot's kept files without calling the host (so it needs no provider slot)?"""
        rec = self.ledger.latest(shot.key)
        if rec is None or rec.state != "done" or rec.result is None:
            return False
        if shot.id in self.redo and rec.run_id != self.run_id:
            return False
        result = ShotResult(**rec.result)
        return _intact(result) or self._restore(result)

    def run(self, shot: ShotPlan, request: ShotRequest, parent: ShotResult | None = None) -> ShotResult:
        started = time.monotonic()
        rec = self.ledger.latest(shot.key)
        if rec and shot.id in self.redo and rec.run_id != self.run_id:  # whatever its state: asked to pay again
            self.log(f"{shot.id}: --redo: generating again (previous job {rec.job_id or 'unknown'}, {rec.state})")
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
        cost = shot.cost_usd
        if isinstance(self.provider, Quotes) and self.paid:
            cost = self.provider.quote(prepared, request) or cost
        self.budget.reserve(shot.id, cost)
        rec = self.ledger.intent(key=shot.key, shot_id=shot.id, provider=self.provider.spec.name, model=shot.tier,
                                 run_id=self.run_id, prepared=prepared, cost_usd=cost)
        try:
            job_id = self.provider.submit(prepared, request, rec.idempotency_key)
        except ProviderHTTPError as exc:
            if exc.refused:  # a 4xx: the host refused before creating anything
                self.ledger.update(rec.key, rec.attempt, "rejected", error=str(exc), cost_usd=0.0)
                raise
            uncertain: ProviderError = exc  # a 5xx may come after the job was created
        except ProviderError as exc:  # no answer, or one we cannot read: the job may exist
            uncertain = exc
        else:
            self.ledger.update(rec.key, rec.attempt, "submitted", job_id=job_id)
            self.log(f"{shot.id}: submitted job {job_id} to {self.provider.spec.name} (${cost:.2f})")
            return Record(**{**asdict(rec), "state": "submitted", "job_id": job_id})
        # The intent stays in the ledger: the next run replays it (Apiframe) or asks before paying again.
        raise UncertainSubmission(f"{uncertain.detail}. The submit may have reached the host; it is recorded, and "
                                  "the next run will not submit it blindly", provider=self.provider.spec.name,
                                  shot=shot.id)

    def _replay(self, shot: ShotPlan, request: ShotRequest, rec: Record) -> str:
        """A submit whose answer was never recorded (the process died around it)."""
        if not self.provider.spec.idempotent_submit or rec.prepared is None:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.created_at))
            raise UncertainSubmission(
                f"a submit for this shot was sent at {when} but the run stopped before its job id was recorded, "
                "so it may have been created and billed. Check the host's dashboard; to submit it again anyway "
                f"(it may be paid twice) run with --redo {shot.id}", provider=rec.provider, shot=shot.id)
        # The host honours an idempotency key: the same key and body return the original job.
        job_id = self.provider.submit(rec.prepared, request, rec.idempotency_key)
        self.ledger.update(rec.key, rec.attempt, "submitted", job_id=job_id)
        return job_id

    def _finish(self, shot: ShotPlan, request: ShotRequest, parent: ShotResult | None, rec: Record,
                job_id: str, started: float) -> ShotResult:
        name = self.provider.spec.name
        if rec.state == "completed" and rec.video_url:
            status = JobStatus(job_id, "completed", video_url=rec.video_url, last_frame_url=rec.last_frame_url)
        else:
            status = self._wait(shot, rec, job_id)
            self.ledger.update(rec.key, rec.attempt, "completed", video_url=status.video_url,
                               last_frame_url=status.last_frame_url,
                               **({"cost_usd": status.cost_usd} if status.cost_usd is not None else {}))
        cost = rec.cost_usd if status.cost_usd is None else status.cost_usd
        try:
            result = self._fetch_and_keep(shot, request, parent, status, cost, started)
        except DownloadError as exc:
            if rec.state != "completed":
                raise self._unusable(exc, shot, job_id) from None
            # The recorded output URL may have expired: ask the host for the job again (a fresh URL).
            self.log(f"{shot.id}: the recorded output URL failed; asking the host for job {job_id} again")
            status = self._wait(shot, rec, job_id)
            try:
                result = self._fetch_and_keep(shot, request, parent, status, cost, started)
            except DownloadError as again:
                raise self._unusable(again, shot, job_id) from None
        self.ledger.update(rec.key, rec.attempt, "done", result=asdict(result))
        _place(self.shots_dir, result)
        self.log(f"{shot.id}: {result.duration:.2f} s of new footage from {name} in {result.seconds:.1f} s, "
                 f"${result.cost_usd:.2f}")
        return result

    def _wait(self, shot: ShotPlan, rec: Record, job_id: str) -> JobStatus:
        """The finished job (failures recorded), with an output URL."""
        try:
            status = wait_for_job(self.provider, job_id, shot.id, self.poll if self.paid else PollSettings(0, 0),
                                  self.log)
        except JobFailed as exc:
            if self.paid:
                self.ledger.update(rec.key, rec.attempt, "failed", error=str(exc),
                                   moderation=isinstance(exc, ModerationFailed), cost_usd=0.0)
            raise
        if self.paid and not status.video_url:  # the host finished (and billed) it: not a failure to pay again for
            raise DownloadError(f"the host says job {job_id} completed but gave no output URL. The job stays "
                                f"recorded: the next run asks the host for it again (not paid again); --redo "
                                f"{shot.id} pays for a new one", provider=self.provider.spec.name, shot=shot.id)
        return status

    def _unusable(self, exc: DownloadError, shot: ShotPlan, job_id: str) -> DownloadError:
        return DownloadError(f"{exc.detail}. Nothing was kept from job {job_id}; it stays recorded: the next run "
                             f"fetches it again (not paid again); --redo {shot.id} pays for a new one",
                             provider=exc.provider or self.provider.spec.name, shot=shot.id)

    def _fetch_and_keep(self, shot: ShotPlan, request: ShotRequest, parent: ShotResult | None, status: JobStatus,
                        cost: float, started: float) -> ShotResult:
        output = self.provider.fetch(status, request, self.shots_dir / ".staging")
        return self._keep(shot, parent, output, status.job_id, cost, started)

    def _reuse(self, shot: ShotPlan, request: ShotRequest, parent: ShotResult | None, rec: Record,
               started: float) -> ShotResult | None:
        assert rec.result is not None
        result = ShotResult(**rec.result)
        if _intact(result) or self._restore(result):
            self.log(f"{shot.id}: unchanged, reusing {Path(result.segment).name} (job {result.job_id})")
            return ShotResult(**{**asdict(result), "reused": True, "seconds": 0.0})
        if not rec.video_url or not rec.job_id:
            self.log(f"{shot.id}: its kept files are gone or changed; generating again")
            return None
        self.log(f"{shot.id}: its kept files are gone or changed; downloading job {rec.job_id}'s output again")
        status = JobStatus(rec.job_id, "completed", video_url=rec.video_url, last_frame_url=rec.last_frame_url)
        try:
            fresh = self._fetch_and_keep(shot, request, parent, status, rec.cost_usd, started)
        except DownloadError as exc:
            raise DownloadError(f"the kept segment is missing and the host's copy cannot be fetched ({exc.detail}); "
                                f"run with --redo {shot.id} to pay for it again", provider=rec.provider,
                                shot=shot.id) from None
        self.ledger.update(rec.key, rec.attempt, "done", result=asdict(fresh))
        _place(self.shots_dir, fresh)
        return ShotResult(**{**asdict(fresh), "reused": True})

    def _keep(self, shot: ShotPlan, parent: ShotResult | None, output: Output, job_id: str, cost: float,
              started: float) -> ShotResult:
        """Check the output and move it into shots/.kept/ in the house format (an extend's echo cut off), with
        its last frame.

        Nothing is kept unless the whole output decodes; the staged files are removed either way. The caller
        records the result as done, then `_place`s it under shots/<id>.*: a kill in between leaves shots/
        holding only finished segments, and the kept copy is restored by the next run.
        """
        video, last = shot_paths(self.shots_dir, shot.id)
        kept_video, kept_last = kept_paths(self.shots_dir, shot.key)
        kept_video.parent.mkdir(parents=True, exist_ok=True)
        cut = output.video.with_name(output.video.stem + ".new.mp4")
        frame = output.video.with_name(output.video.stem + ".keep.png")
        staged = [p for p in (output.video, cut, frame, output.last_frame) if p is not None]
        try:
            source, info = self._checked(shot, output, cut, frame)
            frame.replace(kept_last)
            source.replace(kept_video)
        except MediaError as exc:
            raise DownloadError(f"the output of job {job_id} is not a usable video: {exc}",
                                provider=self.provider.spec.name, shot=shot.id) from None
        finally:
            for path in staged:
                path.unlink(missing_ok=True)
        assert info.video is not None
        return ShotResult(
            id=shot.id, key=shot.key, segment=str(video), last_frame=str(last), new_from_frame=output.seam_copy,
            frames=info.video.frames, fps=float(info.video.fps), has_audio=info.audio is not None,
            provider=self.provider.spec.name, job_id=job_id, cost_usd=cost,
            seconds=round(time.monotonic() - started, 3), last_frame_url=output.last_frame_url,
            sha256=file_digest(kept_video), last_frame_sha256=file_digest(kept_last),
        )

    def _restore(self, result: ShotResult) -> bool:
        """Put back a finished version of the shot that a later one replaced under shots/ (see kept_paths)."""
        kept = kept_paths(self.shots_dir, result.key)
        digests = (result.sha256, result.last_frame_sha256)
        if not all(digests) or not all(p.is_file() and file_digest(p) == d for p, d in zip(kept, digests, strict=True)):
            return False
        _place(self.shots_dir, result)
        self.log(f"{result.id}: restored the segment of job {result.job_id} (kept in {kept[0].parent.name}/)")
        return True

    def _checked(self, shot: ShotPlan, output: Output, cut: Path, frame: Path) -> tuple[Path, probe.MediaInfo]:
        """The staged segment to keep (decoded in full) and its info; its last frame written to `frame`."""
        info, last = probe.decode_all(output.video)
        assert info.video is not None
        source = output.video
        if output.echo_frames and output.echo_frames >= info.video.frames:
            raise MediaError(f"the extend output has {info.video.frames} frames, no more than its "
                             f"{output.echo_frames}-frame input")
        # An extend's echo is cut off; another encoder's output is re-encoded once, here, while other chains
        # are still generating, so that every assembly of the film (reruns too) joins it by stream copy.
        if output.echo_frames or copy_blockers(info, shot.fmt):
            ffmpeg.run(ffmpeg.cut_args(output.video, cut, shot.fmt, output.echo_frames, info.video.fps))
            source = cut
            info, last = probe.decode_all(cut)
        assert info.video is not None
        if output.last_frame is not None and _same_size(output.last_frame, info.video.width, info.video.height):
            with Image.open(output.last_frame) as img:
                img.convert("RGB").save(frame, format="PNG")
        else:  # none from the host, or one that is not this video's frame
            probe.save_png(last, frame)
        return source, info


def _intact(result: ShotResult) -> bool:
    """The shot's files are on disk as they were kept (records older than the digests: present)."""
    for path, digest in ((Path(result.segment), result.sha256), (Path(result.last_frame), result.last_frame_sha256)):
        if not path.is_file() or (digest and file_digest(path) != digest):
            return False
    return True


def _place(shots_dir: Path, result: ShotResult) -> None:
    """shots/<id>.* become the kept version of the shot (last frame first: the segment marks it complete)."""
    kept_video, kept_last = kept_paths(shots_dir, result.key)
    _link(kept_last, Path(result.last_frame))
    _link(kept_video, Path(result.segment))


def _link(src: Path, dest: Path) -> None:
    """`dest` becomes `src` (a hard link where the file system allows it), replaced atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    tmp.replace(dest)


def _same_size(image: Path, width: int, height: int) -> bool:
    """The host's last frame is an image of the video's size (read from its header: a bomb is not decoded)."""
    try:
        with Image.open(image) as img:
            return img.size == (width, height)
    except (OSError, ValueError, Image.DecompressionBombError):
        return False

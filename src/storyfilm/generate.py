"""One shot, start to finish, never paying twice: carry out what `decide` chose; poll; fetch; keep the result.

Shared by every provider (a provider module only translates requests and statuses). What to do with a
shot (reuse, resume, replay, submit or refuse) is decided in decide.py, whose docstring has the state
table, from facts gathered here: one ledger read, one hash of each kept file. The ledger is written
before and after every paid step, so a run killed at any point resumes instead of resubmitting.

What a host sends back is checked before anything is kept: an answer it cannot read (a few in a row while
polling), an unsafe or missing output URL, or an output that is not a whole video fails the shot with the
job still recorded, so the next run asks the host again instead of paying again.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, assert_never

from PIL import Image

from storyfilm.assets import file_digest
from storyfilm.continuity_hold import settle, settled
from storyfilm.decide import Decision, Host, Refuse, Replay, Resume, Reuse, Submit, decide
from storyfilm.errors import (
    BudgetExceeded,
    DownloadError,
    JobFailed,
    JobTimeout,
    MediaError,
    ModerationFailed,
    ProviderError,
    ProviderHTTPError,
    StoryfilmError,
    UncertainSubmission,
    UnexpectedResponse,
)
from storyfilm.ledger import Claim, Ledger, Record
from storyfilm.media import ffmpeg, probe
from storyfilm.media.house import copy_blockers
from storyfilm.plan import ShotPlan
from storyfilm.providers.base import ClipSource, JobStatus, Output, Provider, Quotes, ShotRequest
from storyfilm.reference_clip import reference_clip
from storyfilm.results import ShotResult
from storyfilm.shot_claims import ClaimSettings, Lease, claimed
from storyfilm.storage import gather, kept_paths, place, shot_paths

if TYPE_CHECKING:
    from storyfilm.outputs import Mirror

Log = Callable[[str], None]


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


def build_request(shot: ShotPlan, assets: Mapping[str, Path], parent: ShotResult | None) -> ShotRequest:
    seam = parent if shot.exact_seam else None  # `method: reference` starts on no frame: a match cut
    by_reference = parent if shot.by_reference else None
    return ShotRequest(
        shot_id=shot.id, prompt=shot.prompt, tier=shot.tier, duration=shot.duration,
        resolution=shot.resolution, aspect_ratio=shot.aspect_ratio, fmt=shot.fmt, audio=shot.audio,
        seed=shot.seed, camera=shot.camera, overlay=shot.caption or shot.prompt,
        continued=seam is not None,
        start_image=(Path(seam.last_frame) if seam else
                     assets[shot.start.asset] if shot.start.asset else None),
        # a host's own copy of the previous last frame saves an upload (only while it is fresh)
        start_image_url=seam.last_frame_url if seam and not seam.reused else None,
        start_video=Path(seam.segment) if seam and shot.method == "extend" else None,
        end_image=assets[shot.end_image] if shot.end_image else None,
        references=((Path(by_reference.last_frame),) if by_reference else ())
        + tuple(assets[r] for r in shot.references),
        clip_from=(ClipSource(Path(by_reference.segment), shot.reference_clip_seconds)
                   if by_reference and shot.reference_clip_seconds else None),
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
    last_said: tuple[str, float | None] | None = None
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
        if log and status is not None and (said := (status.state, status.progress)) != last_said:  # changes only
            last_said = said
            pct = f" {status.progress:.0f}%" if status.progress is not None else ""
            log(f"{shot_id}: job {job_id} {status.state}{pct}")
        time.sleep(interval)
        interval = min(settings.max, max(interval * 1.5, 0.05))


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
    mirror: Mirror | None = None  # outputs at a URL: kept shots uploaded, files downloaded when used
    claims: ClaimSettings | None = None  # default: from the environment, waiting at the poll interval
    _leases: dict[str, Lease] = field(default_factory=dict, init=False, repr=False)  # shot key -> held claim
    _ahead: dict[str, Ahead] = field(default_factory=dict, init=False, repr=False)  # shot key -> submitted ahead

    def __post_init__(self) -> None:
        if self.claims is None:  # read now: a bad STORYFILM_CLAIM_LEASE stops the run before anything is paid
            self.claims = ClaimSettings.from_env(self.poll.first)

    @property
    def host(self) -> Host:
        return Host.of(self.provider.spec)

    @property
    def paid(self) -> bool:
        return self.host.paid

    def decide(self, shot: ShotPlan) -> Decision:
        """What `run` would do with the shot now (reading the ledger and hashing the shot's kept files)."""
        facts = gather(self.ledger, self.shots_dir, shot.key, self.mirror.has if self.mirror else None, shot.id)
        return decide(facts.record, shot.id, redo=self.redo, run_id=self.run_id, host=self.host,
                      resume=self.resume, files=facts.files, now=time.time())

    def run(self, shot: ShotPlan, request: ShotRequest, parent: ShotResult | None = None,
            decision: Decision | None = None) -> ShotResult:
        """Carry out `decision` (by default, the one taken now) for the shot; a call to the host under a claim."""
        if (ahead := self._ahead.pop(shot.key, None)) is not None:
            return self._finish_ahead(shot, request, parent, ahead)
        started = time.monotonic()
        if decision is None:
            decision = self.decide(shot)
        if isinstance(decision, Reuse | Refuse):
            return self._carry_out(shot, request, parent, decision, started)
        assert self.claims is not None
        with claimed(self.ledger, shot.key, shot.id, self.run_id, self.claims, self.log) as self._leases[shot.key]:
            try:  # decided again: another run may have finished the shot, or died, while this one waited
                return self._carry_out(shot, request, parent, self.decide(shot), started)
            finally:
                del self._leases[shot.key]

    def _carry_out(self, shot: ShotPlan, request: ShotRequest, parent: ShotResult | None, decision: Decision,
                   started: float) -> ShotResult:
        if self.mirror and parent and not isinstance(decision, Reuse):  # the parent's files, if only in the bucket
            self.mirror.ensure(self.shots_dir, parent, segment=shot.method == "extend")
        match decision:
            case Reuse():
                return self._reuse(shot, decision, parent)
            case Refuse():
                error = ModerationFailed if decision.moderation else UncertainSubmission
                raise error(decision.reason, provider=decision.provider, shot=shot.id)
            case Resume(step="refetch"):
                return self._refetch(shot, request, parent, decision.record, decision.job_id, started)
            case Resume():
                self.log(f"{shot.id}: resuming job {decision.job_id} (submitted in an earlier run, not paid again)")
                return self._finish(shot, request, parent, decision.record, decision.job_id, started,
                                    recorded=decision.step == "fetch")
            case Replay():
                job_id = self._replay(decision, request)
                self.log(f"{shot.id}: resuming job {job_id} (submitted in an earlier run, not paid again)")
                return self._finish(shot, request, parent, decision.record, job_id, started, recorded=False)
            case Submit():
                if decision.note:
                    self.log(f"{shot.id}: {decision.note}")
                rec, job_id = self._submit(shot, request)
                return self._finish(shot, request, parent, rec, job_id, started, recorded=False)
            case _:
                assert_never(decision)

    def submit_ahead(self, shot: ShotPlan, request: ShotRequest) -> bool:
        """Submit the shot's job now, before the run's tasks exist (head_start.py); its `run` finishes it.

        Only a new job of a free shot: False (nothing done) when another run holds the shot or the decision
        taken under the claim is not a submit. The claim is held until `run` has finished the shot (or
        `release_ahead`); a failed submit is raised by `run`, as if it had happened there.
        """
        assert self.claims is not None
        started = time.monotonic()
        got = self.ledger.claim(shot.key, self.run_id, self.claims.lease)
        if not isinstance(got, Claim):
            return False
        lease = Lease(self.ledger, got, self.claims, self.log, shot.id)
        if not isinstance(self.decide(shot), Submit):
            lease.stop()
            return False
        self._leases[shot.key] = lease
        try:
            self._ahead[shot.key] = Ahead(started, lease, *self._submit(shot, request))
        except StoryfilmError as exc:  # a refusal, the budget, an uncertain submit (recorded): the task says it
            lease.stop()
            self._ahead[shot.key] = Ahead(started, error=exc)
        except BaseException:
            lease.stop()
            raise
        finally:
            del self._leases[shot.key]
        return True

    def release_ahead(self) -> None:
        """Give up the claims of jobs submitted ahead that no `run` took over (they stay recorded: resumed)."""
        for ahead in self._ahead.values():
            if ahead.lease is not None:
                ahead.lease.stop()
        self._ahead.clear()

    def _finish_ahead(self, shot: ShotPlan, request: ShotRequest, parent: ShotResult | None,
                      ahead: Ahead) -> ShotResult:
        if ahead.error is not None:
            raise ahead.error
        assert ahead.lease is not None and ahead.record is not None and ahead.job_id is not None
        self._leases[shot.key] = ahead.lease
        try:
            return self._finish(shot, request, parent, ahead.record, ahead.job_id, ahead.started, recorded=False)
        finally:
            del self._leases[shot.key]
            ahead.lease.stop()

    # --- steps ----------------------------------------------------------------------------------

    def _submit(self, shot: ShotPlan, request: ShotRequest) -> tuple[Record, str]:
        with reference_clip(request, self.shots_dir / ".staging") as request:
            prepared = self.provider.prepare(request)  # uploads: free, safe to repeat
        cost = shot.cost_usd
        if isinstance(self.provider, Quotes) and self.paid:
            cost = self.provider.quote(prepared, request) or cost
        self.budget.reserve(shot.id, cost)
        lease = self._leases.get(shot.key)
        rec = self.ledger.intent(key=shot.key, shot_id=shot.id, provider=self.provider.spec.name, model=shot.tier,
                                 run_id=self.run_id, prepared=prepared, cost_usd=cost,
                                 claim=lease.claim if lease else None)
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
            return rec, job_id
        # The intent stays in the ledger: the next run replays it (Apiframe) or asks before paying again.
        raise UncertainSubmission(f"{uncertain.detail}. The submit may have reached the host; it is recorded, and "
                                  "the next run will not submit it blindly", provider=self.provider.spec.name,
                                  shot=shot.id)

    def _replay(self, replay: Replay, request: ShotRequest) -> str:
        """A submit whose answer was never recorded, sent again: the same key and body return the original job."""
        rec = replay.record
        job_id = self.provider.submit(replay.prepared, request, rec.idempotency_key)
        self.ledger.update(rec.key, rec.attempt, "submitted", job_id=job_id)
        return job_id

    def _finish(self, shot: ShotPlan, request: ShotRequest, parent: ShotResult | None, rec: Record,
                job_id: str, started: float, *, recorded: bool) -> ShotResult:
        """Wait for the job (or take its `recorded` output URL), fetch, keep and record the result."""
        name = self.provider.spec.name
        if recorded:
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
            if not recorded:
                raise self._unusable(exc, shot, job_id) from None
            # The recorded output URL may have expired: ask the host for the job again (a fresh URL).
            self.log(f"{shot.id}: the recorded output URL failed; asking the host for job {job_id} again")
            status = self._wait(shot, rec, job_id)
            try:
                result = self._fetch_and_keep(shot, request, parent, status, cost, started)
            except DownloadError as again:
                raise self._unusable(again, shot, job_id) from None
        if self.mirror:  # before "done": a done shot's files are in the bucket (or fetched again free)
            result = self.mirror.keep(self.shots_dir, result)
        self.ledger.update(rec.key, rec.attempt, "done", result=asdict(result))
        place(self.shots_dir, result)
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

    def _reuse(self, shot: ShotPlan, reuse: Reuse, parent: ShotResult | None) -> ShotResult:
        result = reuse.result
        # a finished version that a later one replaced under shots/ (with outputs at a URL: put back, or
        # downloaded, when it is used, by outputs.Mirror.ensure)
        if reuse.restore and not self.mirror:
            place(self.shots_dir, result)
            self.log(f"{result.id}: restored the segment of job {result.job_id} (kept in "
                     f"{kept_paths(self.shots_dir, result.key)[0].parent.name}/)")
        if not settled(shot, result):  # `color` changed since (or unmeasured): from the kept original, unpaid
            result = settle(self.shots_dir, shot, parent, result, self.log)
            if (rec := self.ledger.latest(shot.key)) is not None:
                self.ledger.update(rec.key, rec.attempt, "done", result=asdict(result))
            place(self.shots_dir, result)
        self.log(f"{shot.id}: unchanged, reusing {Path(result.segment).name} (job {result.job_id})")
        return replace(result, reused=True, seconds=0.0)

    def _refetch(self, shot: ShotPlan, request: ShotRequest, parent: ShotResult | None, rec: Record, job_id: str,
                 started: float) -> ShotResult:
        """A finished shot whose kept files are lost: its output downloaded again from the recorded URL."""
        self.log(f"{shot.id}: its kept files are gone or changed; downloading job {job_id}'s output again")
        status = JobStatus(job_id, "completed", video_url=rec.video_url, last_frame_url=rec.last_frame_url)
        try:
            fresh = self._fetch_and_keep(shot, request, parent, status, rec.cost_usd, started)
        except DownloadError as exc:
            raise DownloadError(f"the kept segment is missing and the host's copy cannot be fetched ({exc.detail}); "
                                f"run with --redo {shot.id} to pay for it again", provider=rec.provider,
                                shot=shot.id) from None
        if self.mirror:
            fresh = self.mirror.keep(self.shots_dir, fresh)
        self.ledger.update(rec.key, rec.attempt, "done", result=asdict(fresh))
        place(self.shots_dir, fresh)
        return replace(fresh, reused=True)

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
        kept = ShotResult(
            id=shot.id, key=shot.key, segment=str(video), last_frame=str(last), new_from_frame=output.seam_copy,
            frames=info.video.frames, fps=float(info.video.fps), has_audio=info.audio is not None,
            provider=self.provider.spec.name, job_id=job_id, cost_usd=cost,
            seconds=round(time.monotonic() - started, 3), last_frame_url=output.last_frame_url,
            sha256=file_digest(kept_video), last_frame_sha256=file_digest(kept_last),
        )
        return settle(self.shots_dir, shot, parent, kept, self.log)  # measured; held if the shot says so

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


@dataclass(frozen=True)
class Ahead:
    """A job submitted before its shot's `run` (ShotRunner.submit_ahead): the claim it holds, or the error."""

    started: float  # time.monotonic() when it began: the shot's generation seconds count from here
    lease: Lease | None = None
    record: Record | None = None
    job_id: str | None = None
    error: StoryfilmError | None = None


def _same_size(image: Path, width: int, height: int) -> bool:
    """The host's last frame is an image of the video's size (read from its header: a bomb is not decoded)."""
    try:
        with Image.open(image) as img:
            return bool(img.size == (width, height))
    except (OSError, ValueError, Image.DecompressionBombError):
        return False

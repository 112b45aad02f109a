"""One exception tree for storyfilm.

    StoryfilmError                  base: the CLI prints its message, never a traceback
    ├── StoryboardError             the YAML file: syntax, schema, references (file, line, field)
    ├── PlanError                   a valid storyboard the chosen provider/budget cannot take
    │   └── BudgetExceeded          the plan (or the next submit) would spend more than allowed
    ├── DeploymentError             a schedule, server or concurrency setting for Prefect is wrong
    ├── ApprovalError               a run that waits for approval cannot be answered, or was not approved
    ├── LedgerError                 the pay-once ledger: unreadable, unreachable, a URL or schema it cannot use
    │   └── ClaimLost               a run's claim on a shot is no longer its own (expired and taken over)
    ├── OutputError                 outputs at a URL: unreachable, refused, a file changed since it was kept
    ├── ProviderError               a video host (or the local renderer) refused or failed
    │   ├── ConfigurationError      missing API key, bad base URL
    │   ├── ProviderHTTPError       the API rejected a request (status, provider message)
    │   │   ├── AuthError           401/403
    │   │   ├── RateLimited         429 (retry_after seconds when the host said)
    │   │   ├── PaymentRequired     402: not enough credits on the account
    │   │   └── InvalidRequest      400/422: the request itself is wrong
    │   ├── JobFailed               the job ran and failed (moderation, timeout on the host, ...)
    │   │   └── ModerationFailed    the host's content filter refused the output or an input
    │   ├── JobTimeout              our own deadline passed while polling
    │   ├── UncertainSubmission     a submit may have created (and billed) a job whose id we never got
    │   ├── UnexpectedResponse      an answer we cannot read: not JSON, a missing field, a wrong type,
    │   │                           an unknown status, an unsafe job id
    │   └── DownloadError           output missing, too large, not a video, unsafe URL
    ├── MediaError                  local media processing
    │   ├── FFmpegError             ffmpeg exited non-zero (argv, returncode, stderr tail)
    │   ├── ProbeError              a file PyAV cannot read as media
    │   └── IncompatibleSegments    segments that cannot be joined as they are
    ├── EmulatorError               `storyfilm emulate`: the server could not start
    │   └── FaultSpecError          a --faults spec that does not parse (names the item and what is allowed)
    └── DriftSpecError              a drift spec (emulator --drift or config, STORYFILM_LOCAL_DRIFT) that does
                                    not parse (names the item and what is allowed)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self


class StoryfilmError(Exception):
    """Base of every error storyfilm raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a storyboard: where it is and what is allowed."""

    field: str
    message: str
    line: int | None = None

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class StoryboardError(StoryfilmError):
    def __init__(self, file: str | Path, problems: Sequence[Problem]):
        self.file = str(file)
        self.problems = list(problems)
        lines = [p.render(self.file) for p in self.problems]
        head = f"{self.file}: {len(lines)} problem(s) in the storyboard" if len(lines) > 1 else ""
        super().__init__("\n".join([head, *lines]) if head else lines[0])


class PlanError(StoryfilmError):
    pass


class BudgetExceeded(PlanError):
    pass


class DeploymentError(StoryfilmError):
    pass


class ApprovalError(StoryfilmError):
    pass


class LedgerError(StoryfilmError):
    pass


class ClaimLost(LedgerError):
    """The claim is no longer this run's: it must not submit the shot (the holder now resumes or waits)."""


class OutputError(StoryfilmError):
    pass


class ProviderError(StoryfilmError):
    def __init__(self, message: str, *, provider: str = "", shot: str = ""):
        self.provider = provider
        self.shot = shot
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        prefix = " ".join(p for p in (f"shot '{self.shot}'" if self.shot else "",
                                      f"[{self.provider}]" if self.provider else "") if p)
        return f"{prefix}: {self.detail}" if prefix else self.detail

    def for_shot(self, shot: str) -> Self:
        """This error naming `shot` (raised where the shot was not known, e.g. a poll), same type."""
        if not self.shot:
            self.shot = shot
            self.args = (self._render(),)
        return self


class ConfigurationError(ProviderError):
    pass


class ProviderHTTPError(ProviderError):
    def __init__(self, message: str, *, status: int, provider: str = "", shot: str = ""):
        self.status = status
        super().__init__(f"HTTP {status}: {message}", provider=provider, shot=shot)

    @property
    def refused(self) -> bool:
        """The host refused the request before acting on it (4xx). A 5xx may come after it acted."""
        return self.status < 500


class AuthError(ProviderHTTPError):
    pass


class RateLimited(ProviderHTTPError):
    def __init__(self, message: str, *, status: int = 429, retry_after: float | None = None,
                 provider: str = "", shot: str = ""):
        self.retry_after = retry_after
        super().__init__(message, status=status, provider=provider, shot=shot)


class InvalidRequest(ProviderHTTPError):
    pass


class PaymentRequired(ProviderHTTPError):
    pass


class JobFailed(ProviderError):
    def __init__(self, message: str, *, job_id: str = "", code: str | int | None = None,
                 provider: str = "", shot: str = ""):
        self.job_id = job_id
        self.code = code
        super().__init__(f"job {job_id} failed: {message}" if job_id else message,
                         provider=provider, shot=shot)


class ModerationFailed(JobFailed):
    pass


class JobTimeout(ProviderError):
    pass


class UncertainSubmission(ProviderError):
    """A submit was sent but its answer was lost: the job may exist and be billed."""


class UnexpectedResponse(ProviderError):
    pass


class DownloadError(ProviderError):
    pass


class MediaError(StoryfilmError):
    pass


class FFmpegError(MediaError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = "\n".join(stderr.strip().splitlines()[-15:])
        super().__init__(f"ffmpeg exited with {returncode}: {self.stderr_tail or '(no output)'}")


class ProbeError(MediaError):
    pass


class IncompatibleSegments(MediaError):
    def __init__(self, path: str | Path, differences: Sequence[str]):
        self.path = str(path)
        self.differences = list(differences)
        super().__init__(f"{path}: " + "; ".join(differences))


class EmulatorError(StoryfilmError):
    pass


class FaultSpecError(EmulatorError):
    pass


class DriftSpecError(StoryfilmError):
    pass


class ReviewError(StoryfilmError):
    """A shot's takes wait for a person's choice (`pick: review`) and none can be asked, or none was given."""

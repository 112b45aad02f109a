"""Injectable faults: a small spec language and the books that hand faults out, each a set number of times.

A spec is a comma-separated list of items `NAME[=VALUE][*COUNT][@PROVIDER]`:

    submit-429            the next submit gets 429 with `Retry-After: 1`
    submit-429=none*2     the next two submits get 429 without Retry-After
    submit-503=5          503 with `Retry-After: 5` (5xx have no Retry-After unless given)
    poll-500*3@wavespeed  the next three WaveSpeed polls get 500
    upload-502            the next upload gets 502
    download-drop         the next output download stops half-way (Content-Length says more)
    download-503          the next output download gets 503
    moderation | timeout | error | cancel
                          the next job ends failed for that reason (cancel: cancelled)
    slow=30               the next job takes 30 s from submit to completed
    ...*all               every time, not just once

Faults come from three places, checked in this order:
- the `X-Emulator-Fault` header of a request: applies to that request (a submit's poll/download/job faults
  apply to the job it creates);
- a `[[fault:SPEC]]` tag in a prompt: poll/download counts are per job; a submit fault fires for the first
  COUNT submits carrying that exact prompt, so a client's retry of the same shot then gets through;
- the global book (`--faults`, or `POST /_emulator/faults` at run time).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from storyfilm.errors import FaultSpecError

Stage = Literal["submit", "poll", "download", "upload", "job"]
Outcome = Literal["moderation", "timeout", "error", "cancel"]

PROVIDERS = ("wavespeed", "apiframe", "gateway")
HEADER = "X-Emulator-Fault"
_HTTP_STAGES = ("submit", "poll", "download", "upload")
_OUTCOMES: tuple[Outcome, ...] = ("moderation", "timeout", "error", "cancel")
_ITEM = re.compile(r"^(?P<name>[a-z0-9-]+)(?:=(?P<value>[^*@]+))?(?:\*(?P<count>\d+|all))?(?:@(?P<provider>[a-z]+))?$")
_TAG = re.compile(r"\[\[fault:([^\]]*)\]\]")
_ALLOWED = ("allowed: submit-CODE, poll-CODE, upload-CODE, download-CODE (CODE 429 or 500-599, "
            "=SECONDS or =none for Retry-After), download-drop, moderation, timeout, error, cancel, slow=SECONDS; "
            "then *COUNT or *all, and @wavespeed, @apiframe or @gateway")


@dataclass(frozen=True)
class Fault:
    stage: Stage
    status: int | None = None  # HTTP status to answer with
    retry_after: float | None = None
    drop: bool = False  # download: close the connection half-way through the body
    outcome: Outcome | None = None
    slow: float | None = None  # seconds from submit to completed
    count: int | None = 1  # None: every time
    provider: str | None = None

    @property
    def name(self) -> str:
        if self.status is not None:
            if self.retry_after == (1.0 if self.status == 429 else None):  # the default Retry-After
                return f"{self.stage}-{self.status}"
            shown = "none" if self.retry_after is None else f"{self.retry_after:g}"
            return f"{self.stage}-{self.status}={shown}"
        if self.drop:
            return "download-drop"
        if self.slow is not None:
            return f"slow={self.slow:g}"
        return str(self.outcome)

    def __str__(self) -> str:
        count = "" if self.count == 1 else "*all" if self.count is None else f"*{self.count}"
        return self.name + count + (f"@{self.provider}" if self.provider else "")

    def applies_to(self, provider: str) -> bool:
        return self.provider is None or self.provider == provider


def _seconds(value: str, item: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise FaultSpecError(f"fault '{item}': '{value}' is not a number of seconds") from None
    if not 0 <= seconds <= 86_400:
        raise FaultSpecError(f"fault '{item}': {seconds:g} s is outside 0-86400")
    return seconds


def parse_item(item: str) -> Fault:
    m = _ITEM.match(item.strip())
    if not m:
        raise FaultSpecError(f"fault '{item}' does not parse; {_ALLOWED}")
    name, value, count_text, provider = m["name"], m["value"], m["count"], m["provider"]
    count = None if count_text == "all" else int(count_text or 1)
    if count == 0:
        raise FaultSpecError(f"fault '{item}': the count must be at least 1 (or 'all')")
    if provider is not None and provider not in PROVIDERS:
        raise FaultSpecError(f"fault '{item}': unknown provider '{provider}'; allowed: {', '.join(PROVIDERS)}")
    stage, _, rest = name.partition("-")
    if stage in _HTTP_STAGES and rest.isdigit():
        status = int(rest)
        if status != 429 and not 500 <= status <= 599:
            raise FaultSpecError(f"fault '{item}': HTTP {status} is not a fault status; use 429 or 500-599")
        retry_after = 1.0 if status == 429 else None
        if value is not None:
            retry_after = None if value == "none" else _seconds(value, item)
        return Fault(stage=stage, status=status, retry_after=retry_after, count=count,  # type: ignore[arg-type]
                     provider=provider)
    if value is not None and name != "slow":
        raise FaultSpecError(f"fault '{item}': '{name}' takes no value")
    if name == "download-drop":
        return Fault(stage="download", drop=True, count=count, provider=provider)
    if name in _OUTCOMES:
        return Fault(stage="job", outcome=name, count=count, provider=provider)  # type: ignore[arg-type]
    if name == "slow":
        if value is None:
            raise FaultSpecError(f"fault '{item}': slow needs seconds, e.g. slow=30")
        return Fault(stage="job", slow=_seconds(value, item), count=count, provider=provider)
    raise FaultSpecError(f"fault '{item}': unknown fault '{name}'; {_ALLOWED}")


def parse(spec: str | None) -> list[Fault]:
    """Parse a spec; an empty spec is no faults. Raises FaultSpecError naming the bad item."""
    return [parse_item(item) for item in (spec or "").split(",") if item.strip()]


def prompt_faults(prompt: str) -> list[Fault]:
    return [f for tag in _TAG.findall(prompt) for f in parse(tag)]


def strip_tags(prompt: str) -> str:
    return " ".join(_TAG.sub(" ", prompt).split())


@dataclass
class FaultBook:
    """Faults with the number of times each may still fire. Thread-safe."""

    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._left: list[int | None] = [f.count for f in self.faults]
        self._lock = threading.Lock()

    def take(self, stage: Stage, provider: str, *, outcome: bool | None = None) -> Fault | None:
        """The first fault of this stage that may still fire (used up by one); `outcome` picks
        outcome faults (True) or slow ones (False) among job faults."""
        with self._lock:
            for i, fault in enumerate(self.faults):
                if fault.stage != stage or not fault.applies_to(provider) or self._left[i] == 0:
                    continue
                if outcome is not None and (fault.outcome is not None) != outcome:
                    continue
                left = self._left[i]
                if left is not None:
                    self._left[i] = left - 1
                return fault
        return None

    def snapshot(self) -> list[dict[str, object]]:
        with self._lock:
            return [{"fault": str(f), "remaining": "all" if left is None else left}
                    for f, left in zip(self.faults, self._left, strict=True)]


@dataclass(frozen=True)
class JobFaults:
    """What a new job carries: its own poll/download faults and, maybe, a planned end."""

    book: FaultBook
    outcome: Outcome | None = None
    slow: float | None = None


def _first(faults: list[Fault], stage: Stage, provider: str) -> Fault | None:
    return next((f for f in faults if f.stage == stage and f.applies_to(provider)), None)


class FaultControl:
    """The faults of one emulator: the global book, per-request headers and prompt tags."""

    def __init__(self, spec: str | None = None):
        self._lock = threading.Lock()
        self._prompt_hits: Counter[tuple[str, str]] = Counter()
        self.book = FaultBook(parse(spec))

    def replace(self, spec: str | None) -> None:
        book = FaultBook(parse(spec))
        with self._lock:
            self.book = book
            self._prompt_hits.clear()

    def submit(self, provider: str, header: str | None, prompt: str) -> Fault | None:
        """The HTTP fault this submit gets, if any. Raises FaultSpecError for a bad header or tag."""
        fault = _first(parse(header), "submit", provider)
        if fault is not None:
            return fault
        for tagged in prompt_faults(prompt):
            if tagged.stage != "submit" or not tagged.applies_to(provider):
                continue
            with self._lock:
                key = (prompt, str(tagged))
                if tagged.count is None or self._prompt_hits[key] < tagged.count:
                    self._prompt_hits[key] += 1
                    return tagged
        return self.book.take("submit", provider)

    def job(self, provider: str, header: str | None, prompt: str) -> JobFaults:
        """The faults an accepted job carries (used up from the global book now)."""
        own = [f for f in parse(header) + prompt_faults(prompt) if f.applies_to(provider)]
        outcome = next((f.outcome for f in own if f.outcome is not None), None)
        if outcome is None and (taken := self.book.take("job", provider, outcome=True)) is not None:
            outcome = taken.outcome
        slow = next((f.slow for f in own if f.slow is not None), None)
        if slow is None and (taken := self.book.take("job", provider, outcome=False)) is not None:
            slow = taken.slow
        return JobFaults(FaultBook([f for f in own if f.stage in ("poll", "download")]), outcome, slow)

    def request(self, stage: Stage, provider: str, header: str | None, job: JobFaults | None = None) -> Fault | None:
        """The fault a poll, download or upload gets: the header's, else the job's own, else the global."""
        fault = _first(parse(header), stage, provider)
        if fault is None and job is not None:
            fault = job.book.take(stage, provider)
        return fault or self.book.take(stage, provider)

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
    render-frozen | render-dark
                          the next job completes with a visibly worse render: its new frames all one picture,
                          or at 12 % of their brightness (flaws.py): what a take's score must see through
    ...*all               every time, not just once

A hostile or broken host (what a client must survive without paying twice or keeping junk):

    submit-reset | poll-reset | upload-reset
                          the answer is cut off half-way (a submit's job IS created: its answer is lost)
    submit-badjson | poll-badjson
                          HTTP 200 with a body that is not JSON (a submit's job is created)
    submit-noid           the submit answer has no job id; submit-badid: the id is a path ('../..');
                          submit-wrongtype / poll-wrongtype: every field of the answer has the wrong JSON
                          type, the status excepted (the job is created)
    poll-nostatus | poll-unknown
                          the poll answer has no status / a status no host documents
    submit-echo | poll-echo | upload-echo
                          HTTP 400 whose message quotes the request's API key (a leak to redact)
    poll-slow=2           the poll answers after 2 s
    output-file | output-ftp | output-metadata | output-linklocal | output-missing
                          the next job completes with a file:// / ftp:// / 169.254.169.254 / [fe80::1] output
                          URL, or with none
    download-endless | download-huge | download-html | download-garbage | download-corrupt
                          the output streams forever / announces 10^12 bytes / is an HTML page / random
                          bytes / an MP4 header followed by random bytes

Faults come from three places, checked in this order:
- the `X-Emulator-Fault` header of a request: applies to that request (a submit's poll/download/job faults
  apply to the job it creates);
- a `[[fault:SPEC]]` tag in a prompt: poll/download counts are per job; a submit fault fires for the first
  COUNT submits carrying that exact prompt to that host, so a client's retry of the same shot then gets through;
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
Output = Literal["file", "ftp", "metadata", "linklocal", "missing"]
Flaw = Literal["frozen", "dark"]

PROVIDERS = ("wavespeed", "apiframe", "gateway")
HEADER = "X-Emulator-Fault"
_HTTP_STAGES = ("submit", "poll", "download", "upload")
_OUTCOMES: tuple[Outcome, ...] = ("moderation", "timeout", "error", "cancel")
_OUTPUTS: tuple[Output, ...] = ("file", "ftp", "metadata", "linklocal", "missing")
_FLAWS: tuple[Flaw, ...] = ("frozen", "dark")
# How an answer is spoiled, by stage (see the module docstring).
ANSWERS: dict[str, tuple[str, ...]] = {
    "submit": ("reset", "badjson", "noid", "badid", "wrongtype", "echo"),
    "poll": ("reset", "badjson", "nostatus", "unknown", "wrongtype", "echo"),
    "upload": ("reset", "echo"),
    "download": ("endless", "huge", "html", "garbage", "corrupt"),
}
_ITEM = re.compile(r"^(?P<name>[a-z0-9-]+)(?:=(?P<value>[^*@]+))?(?:\*(?P<count>\d+|all))?(?:@(?P<provider>[a-z]+))?$")
_TAG = re.compile(r"\[\[fault:([^\]]*)\]\]")
_ALLOWED = ("allowed: submit-CODE, poll-CODE, upload-CODE, download-CODE (CODE 429 or 500-599, "
            "=SECONDS or =none for Retry-After), download-drop, moderation, timeout, error, cancel, slow=SECONDS, "
            "poll-slow=SECONDS, " + ", ".join(f"{stage}-{a}" for stage, answers in ANSWERS.items() for a in answers)
            + ", " + ", ".join(f"output-{o}" for o in _OUTPUTS) + ", "
            + ", ".join(f"render-{f}" for f in _FLAWS) + "; then *COUNT or *all, and @wavespeed, "
            "@apiframe or @gateway")


@dataclass(frozen=True)
class Fault:
    stage: Stage
    status: int | None = None  # HTTP status to answer with
    retry_after: float | None = None
    drop: bool = False  # download: close the connection half-way through the body
    outcome: Outcome | None = None
    slow: float | None = None  # seconds from submit to completed (a poll: before it answers)
    count: int | None = 1  # None: every time
    provider: str | None = None
    answer: str | None = None  # how the answer is spoiled (ANSWERS)
    output: Output | None = None  # what a completed job gives as its output URL
    flaw: Flaw | None = None  # how a completed job's render is visibly worse than asked

    @property
    def refuses(self) -> bool:
        """The request is refused (nothing is done): an HTTP error status, or a 400 quoting the key."""
        return self.status is not None or self.answer == "echo"

    @property
    def name(self) -> str:
        if self.status is not None:
            if self.retry_after == (1.0 if self.status == 429 else None):  # the default Retry-After
                return f"{self.stage}-{self.status}"
            shown = "none" if self.retry_after is None else f"{self.retry_after:g}"
            return f"{self.stage}-{self.status}={shown}"
        if self.drop:
            return "download-drop"
        if self.answer is not None:
            return f"{self.stage}-{self.answer}"
        if self.output is not None:
            return f"output-{self.output}"
        if self.flaw is not None:
            return f"render-{self.flaw}"
        if self.slow is not None:
            return f"slow={self.slow:g}" if self.stage == "job" else f"{self.stage}-slow={self.slow:g}"
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
        # ignore: `stage` is a str checked against _HTTP_STAGES above, which mypy cannot narrow to the Literal
        return Fault(stage=stage, status=status, retry_after=retry_after, count=count,  # type: ignore[arg-type]
                     provider=provider)
    if value is not None and name not in ("slow", "poll-slow"):
        raise FaultSpecError(f"fault '{item}': '{name}' takes no value")
    if name == "download-drop":
        return Fault(stage="download", drop=True, count=count, provider=provider)
    if stage in ANSWERS and rest in ANSWERS[stage]:
        # ignore: `stage` and `rest` are strs checked against ANSWERS above (mypy cannot narrow them to the Literals)
        return Fault(stage=stage, answer=rest, count=count, provider=provider)  # type: ignore[arg-type]
    if stage == "output" and rest in _OUTPUTS:
        return Fault(stage="job", output=rest, count=count, provider=provider)
    if stage == "render" and rest in _FLAWS:
        return Fault(stage="job", flaw=rest, count=count, provider=provider)
    if name == "poll-slow":
        if value is None:
            raise FaultSpecError(f"fault '{item}': poll-slow needs seconds, e.g. poll-slow=2")
        return Fault(stage="poll", slow=_seconds(value, item), count=count, provider=provider)
    if name in _OUTCOMES:
        return Fault(stage="job", outcome=name, count=count, provider=provider)
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

    def take(self, stage: Stage, provider: str, *, kind: str | None = None) -> Fault | None:
        """The first fault of this stage that may still fire (used up by one); `kind` picks among job
        faults: "outcome", "slow", "output" or "flaw"."""
        with self._lock:
            for i, fault in enumerate(self.faults):
                if fault.stage != stage or not fault.applies_to(provider) or self._left[i] == 0:
                    continue
                if kind is not None and getattr(fault, kind) is None:
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
    output: Output | None = None
    flaw: Flaw | None = None


def _first(faults: list[Fault], stage: Stage, provider: str) -> Fault | None:
    return next((f for f in faults if f.stage == stage and f.applies_to(provider)), None)


class FaultControl:
    """The faults of one emulator: the global book, per-request headers and prompt tags."""

    def __init__(self, spec: str | None = None):
        self._lock = threading.Lock()
        self._prompt_hits: Counter[tuple[str, str, str]] = Counter()
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
                key = (provider, prompt, str(tagged))
                if tagged.count is None or self._prompt_hits[key] < tagged.count:
                    self._prompt_hits[key] += 1
                    return tagged
        return self.book.take("submit", provider)

    def job(self, provider: str, header: str | None, prompt: str) -> JobFaults:
        """The faults an accepted job carries (used up from the global book now)."""
        own = [f for f in parse(header) + prompt_faults(prompt) if f.applies_to(provider)]
        chosen: dict[str, object] = {}
        for kind in ("outcome", "slow", "output", "flaw"):
            value = next((getattr(f, kind) for f in own if f.stage == "job" and getattr(f, kind) is not None), None)
            if value is None and (taken := self.book.take("job", provider, kind=kind)) is not None:
                value = getattr(taken, kind)
            chosen[kind] = value
        # ignore: `chosen` holds each field's value by name, read from Faults of the same field types
        return JobFaults(FaultBook([f for f in own if f.stage in ("poll", "download")]), **chosen)  # type: ignore[arg-type]

    def request(self, stage: Stage, provider: str, header: str | None, job: JobFaults | None = None) -> Fault | None:
        """The fault a poll, download or upload gets: the header's, else the job's own, else the global."""
        fault = _first(parse(header), stage, provider)
        if fault is None and job is not None:
            fault = job.book.take(stage, provider)
        return fault or self.book.take(stage, provider)

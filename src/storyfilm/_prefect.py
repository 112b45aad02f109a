"""Prefect client glue for flow.py and the CLI: tags, artifacts, concurrency limits, schedules.

Only this module, flow.py and cli.py import Prefect. Nothing here knows about films beyond names.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.schedules import CronSchedule
from prefect.concurrency.sync import concurrency
from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectAlreadyExists, ObjectNotFound
from prefect.input import RunInput
from pydantic import BaseModel, Field

from storyfilm import temporary_server
from storyfilm.errors import DeploymentError, ReviewError

_log = logging.getLogger(__name__)
R = TypeVar("R", bound=RunInput)


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")[:100] or "storyfilm"


def add_flow_run_tags(*new: str) -> None:
    """Tag the running flow run: its tags are fixed before the flow body learns the provider and film."""
    from prefect.runtime import flow_run

    with reporting("tag the flow run"), get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, tags=sorted({*flow_run.tags, *new}))


def limit_name(provider: str) -> str:
    return f"storyfilm-{provider}"


def ensure_limit(name: str, *, default: int, override: int | None = None) -> int:
    """The global concurrency limit `name`: created with `default` if missing, set to `override` if given.

    A limit that exists is left alone unless overridden: users tune it with `prefect gcl update NAME
    --limit N` (or the UI) and every run on that server, on any machine, shares it.
    """
    with get_client(sync_client=True) as client:
        try:
            current = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            want = override or default
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=want))
                return want
            except ObjectAlreadyExists:  # another run created it just now
                current = client.read_global_concurrency_limit_by_name(name)
        if not current.active:
            raise DeploymentError(f"the concurrency limit '{name}' is inactive, so it would not limit anything; "
                                  f"activate it with `prefect gcl enable {name}`")
        if override is not None and current.limit != override:
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=override))
            return override
        return current.limit


# Prefect renews a held lease every 45 s; a run that dies without releasing its slot loses it when the
# lease runs out (the server's repossessor then frees it): 60 s is the shortest lease Prefect accepts.
LEASE_SECONDS = 60.0


def has_server() -> bool:
    """Whether runs report to a Prefect server (not the temporary one of ephemeral mode, Prefect's or ours)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return url is not None and url != os.environ.get(temporary_server.ADOPTED_ENV)


def report_to(server: temporary_server.TemporaryServer | None) -> str:
    """Point this process's Prefect client at the temporary server `storyfilm run` started, once it answers.
    A server configured where only Prefect sees it (a settings source `configured_elsewhere` does not read)
    wins: ours stops unused. One that
    fails to start is stopped too, and Prefect starts its own as it always did; the answer then says why."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    if server is None:
        return ""
    settings = get_current_settings()
    if settings.api.url is not None:
        server.stop()
        return ""
    # the process-wide settings (read at import) and so every thread, not just this context, see it
    os.environ["PREFECT_API_URL"] = os.environ[temporary_server.ADOPTED_ENV] = server.api_url
    refresh_global_settings_context()
    if server.ready(settings.server.ephemeral.startup_timeout_seconds):
        return ""
    server.stop()
    del os.environ["PREFECT_API_URL"], os.environ[temporary_server.ADOPTED_ENV]
    refresh_global_settings_context()
    return server.problem


@contextmanager
def limit_slot(name: str) -> Iterator[None]:
    """Hold one slot of the global concurrency limit `name` (which must exist: strict)."""
    with concurrency(name, occupy=1, strict=True, lease_duration=LEASE_SECONDS):
        yield


Lease = tuple[threading.Event, threading.Thread]  # (set it to give the slot back, the thread holding it)


class LimitLeases:
    """Slots of the global concurrency limit `name` held for shots, each by a thread of its own (which renews
    its lease), so that a slot can pass from one shot of this run to the next without going back to the server:
    on a server with SQLite, a release and an acquisition at the same moment often meet a locked database
    (HTTP 503) and the client retries ~2 s later, with the slot idle meanwhile."""

    IDLE_SECONDS = 30.0  # a slot passed on to a shot that never came goes back to the server after this

    def __init__(self, name: str):
        self.name = name
        self.lock = threading.Lock()  # hold it around deciding who gets a slot and `give`
        self._kept: dict[str, Lease] = {}
        self._idle: list[Lease] = []

    def take(self, key: str) -> Lease:
        """The slot kept for `key`, an idle one, or a new one from the server (blocks until granted)."""
        with self.lock:
            if key in self._kept:
                return self._kept.pop(key)
            if self._idle:
                return self._idle.pop()
        granted, done = threading.Event(), threading.Event()
        failed: list[BaseException] = []

        def hold() -> None:
            try:
                with limit_slot(self.name):
                    granted.set()
                    done.wait()
            except BaseException as exc:  # noqa: BLE001 - handed to the shot that asked for the slot (raised there)
                failed.append(exc)
            finally:
                granted.set()

        # the caller's context: the API it reports to
        thread = threading.Thread(target=contextvars.copy_context().run, args=(hold,), daemon=True,
                                  name=f"storyfilm-slot-{key}")
        thread.start()
        granted.wait()
        if failed:
            raise failed[0]
        return done, thread

    def give(self, lease: Lease, to: str | None, *, wanted: bool = False) -> None:
        """Keep the slot for the shot `to`; or, when another shot of this run is `wanted` to take it, for
        whichever comes first; else give it back to the server (and wait until it is back). Call under `lock`."""
        if to is not None:
            self._kept[to] = lease
        elif wanted:
            self._idle.append(lease)
            threading.Timer(self.IDLE_SECONDS, self._expire, (lease,)).start()
        else:
            self._back(lease)

    def _expire(self, lease: Lease) -> None:
        with self.lock:
            if lease not in self._idle:
                return
            self._idle.remove(lease)
        self._back(lease)

    @staticmethod
    def _back(lease: Lease) -> None:
        done, thread = lease
        done.set()
        thread.join()


@contextmanager
def tag_limits_checked_ahead(every: float = 2.0) -> Iterator[threading.Thread | None]:
    """While the block runs, tell Prefect's task engine ahead of time that the current tags have no tag
    concurrency limits (when, checked every `every` seconds, they have none).

    Before a task run enters Running, the engine asks the server for slots of the limits `tag:TAG` of its tags
    and remembers a "none exist" for 5 s only (prefect.concurrency.services._no_limits_cache). A chained shot
    starts a moment after its parent ends, usually after that answer expired, so the film's critical path
    waited for the call: 0.5-2.3 s per hand-over on a loaded ephemeral server. The same answer is fetched here,
    off that path, and put where the engine looks; a tag that has a limit leaves the engine's own acquisition
    alone (and so does a Prefect without that cache: the engine then asks, as before).
    """
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.concurrency import services
    from prefect.context import TagsContext

    names = sorted(f"tag:{tag}" for tag in TagsContext.get().current_tags)
    cache, lock = getattr(services, "_no_limits_cache", None), getattr(services, "_cache_lock", None)
    use = getattr(services, "_should_use_cache", None)
    holder = ConcurrencyLeaseHolder(type="task_run", id=UUID(int=0))
    if not names or cache is None or lock is None or use is None or not use(names, holder):
        yield None
        return
    stop = threading.Event()

    def check() -> None:
        with get_client(sync_client=True) as client:
            while not stop.is_set():
                try:
                    for name in names:
                        try:
                            client.read_global_concurrency_limit_by_name(name)
                            return  # a limit exists: the engine acquires its slots, as it always does
                        except ObjectNotFound:
                            pass
                except httpx.HTTPError:
                    pass  # the engine asks for itself
                else:
                    with lock:
                        cache[frozenset(names)] = True
                stop.wait(every)

    # the caller's context: the API it reports to (ephemeral mode keeps it in a context variable)
    thread = threading.Thread(target=contextvars.copy_context().run, args=(check,), daemon=True,
                              name="storyfilm-tag-limits")
    thread.start()
    try:
        yield thread  # it ends early when a tag has a limit
    finally:
        stop.set()


@contextmanager
def reporting(what: str) -> Iterator[None]:
    """Telling the UI must not fail a film (or a paid shot): an API error here is logged, not raised."""
    try:
        yield
    except httpx.HTTPError as exc:
        _log.warning("could not %s in the Prefect API: %s", what, exc)


class ProgressArtifact:
    """A progress artifact that advances by one step per call, from any thread.

    The API call is made on a thread of its own (in order): a shot's task returns, and the next shot of its
    chain starts, without waiting for it. `flush` waits for the calls made so far."""

    def __init__(self, key: str, steps: int, description: str):
        self._steps = max(1, steps)
        self._done = 0
        self._lock = threading.Lock()
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storyfilm-progress")
        self._last: Future[None] | None = None
        self.id: UUID | None = None
        with reporting("create the progress artifact"):
            created = create_progress_artifact(progress=0.0, key=key, description=description)
            self.id = created if isinstance(created, UUID) else None  # a coroutine only when called from async code

    def _update(self, percent: float) -> None:
        if self.id is not None:
            with reporting("update the progress artifact"):
                update_progress_artifact(self.id, progress=percent)

    def advance(self) -> float:
        with self._lock:
            self._done = min(self._steps, self._done + 1)
            percent = round(100.0 * self._done / self._steps, 1)
            # the caller's context: the API it reports to (ephemeral mode keeps it in a context variable)
            self._last = self._calls.submit(contextvars.copy_context().run, self._update, percent)
        return percent

    def flush(self) -> None:
        if self._last is not None:
            self._last.result()

    def finish(self, description: str) -> None:
        """Say how the run ended (a progress bar stopped at 66% looks like a run still going)."""
        self.flush()  # the updates queued before this one reach the server first
        with self._lock:
            percent = round(100.0 * self._done / self._steps, 1)
            if self.id is not None:
                with reporting("update the progress artifact"):
                    update_progress_artifact(self.id, progress=percent, description=description)


def publish_run(slug: str, title: str, summary: str, rows: Sequence[dict[str, Any]],
                links: Mapping[str, str]) -> None:
    """A run's artifacts, finished or failed: http(s) links to the film's files (only when they have public
    URLs: a browser refuses file:// links), the shot table, then the summary (the UI lists the newest first)."""
    with reporting("publish the film's artifacts"):
        for label, url in links.items():
            create_link_artifact(key=artifact_key("film", slug, label), link=url, link_text=url,
                                 description=f"{label.lower()} of {title}")
        create_table_artifact(key=artifact_key("film", slug, "shots"), table=list(rows),
                              description=f"shots of {title}")
        create_markdown_artifact(key=artifact_key("film", slug), markdown=summary,
                                 description=f"storyfilm: {title} ({len(summary.encode()) / 1000:.0f} KB)")


def publish_refusal(slug: str, title: str, reason: str) -> None:
    """The summary of a run stopped before its first shot: why, and that nothing was paid."""
    with reporting("publish the film's artifacts"):
        create_markdown_artifact(key=artifact_key("film", slug), description=f"storyfilm: {title} (not started)",
                                 markdown=f"# {title}: not started\n\n> **Why:** {reason}\n\nNothing was paid "
                                          "and nothing was generated.\n")


def cron_schedule(cron: str, timezone: str | None = None) -> CronSchedule:
    """A validated cron schedule, or a DeploymentError that says what is wrong."""
    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValueError as exc:
        detail = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()) \
            if hasattr(exc, "errors") else str(exc)
        raise DeploymentError(f"invalid schedule: {detail} (cron takes five fields: minute hour day-of-month "
                              "month day-of-week, e.g. '0 3 * * *' for 03:00 every day)") from None


def deployment_name(name: str) -> str:
    """A name Prefect accepts for a deployment (it refuses '/', '%', '&', '>' and '<')."""
    bad = sorted({c for c in name if c in "/%&><"})
    if not name.strip() or bad:
        raise DeploymentError(f"'{name}' cannot name a deployment" + (f": no {' '.join(bad)}" if bad else "")
                              + "; choose one with --name")
    return name


def require_server(need: str = "a schedule needs") -> str:
    """The API URL of a reachable Prefect server. Schedules need one: the temporary server Prefect
    starts on demand (ephemeral mode) runs no scheduler and stops with the process."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise DeploymentError(f"{need} a Prefect server, and none is configured (PREFECT_API_URL): start "
                              "one with `prefect server start`, then `prefect config set "
                              "PREFECT_API_URL=http://127.0.0.1:4200/api`")
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        raise DeploymentError(f"cannot reach the Prefect server at {url} ({type(problem).__name__}); is "
                              "`prefect server start` running?")
    return url


def pause_deployment(name: str) -> None:
    """Pause a deployment's schedules (`flow/deployment` name)."""
    with get_client(sync_client=True) as client:
        client.pause_deployment(client.read_deployment_by_name(name).id)


# --- approval: a paused run and its answer ------------------------------------------------------------


def approval_form(fields: type[BaseModel], description: str) -> type[RunInput]:
    """A Prefect run-input form with `fields` (a pydantic model) and `description` shown above it."""
    form: type[RunInput] = type("Approval", (RunInput, fields), {"__module__": __name__})
    return form.with_initial_data(description=description)


APPROVAL_PAUSE = "approval"  # the pause key of a run held for approval; a take review's is "takes-<shot>"


def waiting_for(run: FlowRun) -> str | None:
    """What a paused run waits for: "approval", "a take of shot <id>", another pause's key; None: not paused."""
    if run.state is None or not run.state.is_paused():
        return None
    key = run.state.state_details.pause_key or "an answer"
    return f"a take of shot '{key.removeprefix('takes-')}'" if key.startswith("takes-") else key


def wait_for_answer(form: type[R], *, timeout: int, poll: int, unanswered: str) -> R | None:
    """Pause this flow run until its form is answered (the UI's Resume, or `storyfilm approve`); None once
    `timeout` seconds pass unanswered, the run then Failed with the message `unanswered`."""
    from prefect.flow_runs import pause_flow_run
    from prefect.runtime import flow_run
    from prefect.states import Failed

    try:
        return pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=poll, key=APPROVAL_PAUSE)
    except FlowPauseTimeout:
        # The server refuses to move an expired pause anywhere but to its own "The flow was failed and never
        # resumed" (and its expiry service may have put it there already); Failed -> Failed is allowed, so the
        # run's own end (the same message, returned by the flow) is accepted after this.
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(flow_run.id), Failed(message=unanswered), force=True)
        return None


def publish_plan(slug: str, title: str, markdown: str) -> None:
    """The plan waiting for approval, as the run's summary (replaced by the summary of the run's end)."""
    with reporting("publish the plan"):
        create_markdown_artifact(key=artifact_key("film", slug), markdown=markdown,
                                 description=f"storyfilm: {title} (waiting for approval, "
                                             f"{len(markdown.encode()) / 1000:.0f} KB)")


def flow_run_url(run_id: UUID | str) -> str | None:
    """The run's page in the Prefect UI, when a server is configured."""
    from prefect.settings import get_current_settings

    ui = get_current_settings().ui_url
    return f"{str(ui).rstrip('/')}/runs/flow-run/{run_id}" if ui else None


def paused_runs(*, tag: str | None = None, run: str | None = None) -> list[FlowRun]:
    """Paused flow runs with `tag`, or the run named or numbered `run` (any state: the caller says why not)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        if run is not None:
            try:
                return [client.read_flow_run(UUID(run))]
            except ValueError:  # not an id: a run's name
                return client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run])))
            except ObjectNotFound:
                return []
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[tag] if tag else None),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))


def answer_run(run_id: UUID, answer: Mapping[str, Any]) -> None:
    """Resume a paused run with its form's answer, as the UI's Resume button does."""
    from prefect.flow_runs import resume_flow_run

    try:
        resume_flow_run(run_id, run_input=dict(answer))
    except (NotPausedError, FlowPauseTimeout) as exc:
        raise DeploymentError(f"flow run {run_id} is no longer waiting for approval ({exc})") from None
    except RuntimeError as exc:
        raise DeploymentError(f"the Prefect server did not take the answer: {exc}") from None


# --- takes: a run paused for `pick: review` ---------------------------------------------------------


class TakeChoice(RunInput):
    """The form of a run paused for `pick: review` (the UI renders it from this model)."""

    take: int = Field(ge=1, le=4, description="the take the film uses (see the takes artifact for each take's "
                                              "last frame and score)")


def review_takes(slug: str, shot_id: str, markdown: str, suggested: int, timeout_s: int) -> int:
    """Publish the takes (artifact `takes-SLUG-SHOT`) and pause the run until someone chooses one in the UI (or
    through the API, as the UI does); ReviewError when nobody does within `timeout_s`."""
    from prefect.flow_runs import pause_flow_run

    with reporting("publish the takes to review"):
        create_markdown_artifact(key=artifact_key("takes", slug, shot_id), markdown=markdown,
                                 description=f"takes of shot {shot_id}: choose one in the paused run's form")
    form = TakeChoice.with_initial_data(description=markdown, take=suggested)
    try:
        chosen = pause_flow_run(wait_for_input=form, timeout=timeout_s, poll_interval=2, key=f"takes-{shot_id}")
    except FlowPauseTimeout:
        raise ReviewError(f"shot '{shot_id}': nobody chose a take within {timeout_s} s; its takes are kept (paid "
                          "once): run again to be asked again, or write `pick: auto` or a take number") from None
    return int(chosen.take)

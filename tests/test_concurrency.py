"""Chains run concurrently, shots in a chain in order, and the per-provider limit holds (real flow runs)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from storyfilm.progress import Event, listening

from .emu import stats
from .helpers import write_storyboard
from .test_timeline_picture import assert_bars, spans_in

if TYPE_CHECKING:
    from storyfilm.emulator import EmulatorServer

CHAINS = """\
version: 1
title: Three Chains
defaults: {duration: 1, resolution: 480p, seed: 2}
shots:
  - {id: a1, prompt: A harbour at dawn.}
  - {id: a2, prompt: The boats rock.}
  - {id: b1, cut: true, prompt: A storm at sea.}
  - {id: c1, cut: true, prompt: A lamp is lit.}
"""

Span = tuple[float, float]


@contextmanager
def slot_spans() -> Iterator[dict[str, Span]]:
    """Per shot, when it took its provider slot and when it finished inside it (monotonic seconds)."""
    spans: dict[str, Span] = {}
    started: dict[str, float] = {}
    lock = threading.Lock()

    def record(event: Event) -> None:
        with lock:
            if event.kind == "shot-started" and event.shot:
                started[event.shot] = time.monotonic()
            elif event.kind == "shot-done" and event.shot:
                spans[event.shot] = (started[event.shot], time.monotonic())

    with listening(record):
        yield spans


def overlap(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def most_at_once(spans: dict[str, Span]) -> int:
    edges = sorted([(s, 1) for s, _ in spans.values()] + [(e, -1) for _, e in spans.values()])
    level = peak = 0
    for _, step in edges:  # at equal times an end (-1) sorts first: touching spans do not overlap
        level += step
        peak = max(peak, level)
    return peak


@pytest.mark.slow
def test_chains_overlap_in_time_and_the_local_limit_holds(prefect_server: None, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    from storyfilm.flow import film
    from storyfilm.plan import make_plan
    from storyfilm.storyboard import load_storyboard

    board = write_storyboard(tmp_path, CHAINS)
    with slot_spans() as spans:
        state = film(storyboard=str(board), output_dir=str(tmp_path / "out"), concurrency=2, return_state=True)
    assert state.result()["shots"] == 4
    assert set(spans) == {"a1", "a2", "b1", "c1"}
    assert most_at_once(spans) == 2  # the limit, reached: never three renders at once
    assert spans["a2"][0] >= spans["a1"][1]  # a shot starts from its predecessor's finished last frame

    # The Prefect API tells the same story: task runs of different chains ran at the same time.
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    times = {t.name: (t.start_time.timestamp(), t.end_time.timestamp()) for t in runs
             if t.start_time and t.end_time}
    chain_spans = {"a": (times["a1"][0], times["a2"][1]), "b": times["b1"], "c": times["c1"]}
    assert any(overlap(chain_spans[p], chain_spans[q]) for p, q in itertools.combinations("abc", 2))
    assert times["a2"][0] >= times["a1"][1]
    assert times["assemble"][0] >= max(end for name, (_, end) in times.items() if name != "assemble")

    # The manifest's timestamps tell it too, and timeline.png draws them: a bar for every shot.
    manifest = json.loads(Path(state.result()["manifest"]).read_text())
    spans = spans_in(manifest)
    assert set(spans) == {"a1", "a2", "b1", "c1"}
    for span in spans.values():
        assert span.queued <= span.started < span.finished
    assert spans["a2"].queued == spans["a1"].finished  # ready when its parent was kept
    assert most_at_once({k: (v.started.timestamp(), v.finished.timestamp()) for k, v in spans.items()}) == 2
    picture = Path(state.result()["manifest"]).with_name("timeline.png")
    assert manifest["exports"]["timeline_png"] == "timeline.png"
    assert_bars(picture, make_plan(load_storyboard(board), {}), spans)
    with get_client(sync_client=True) as client:
        # this run's summary: other tests' films in this server may share the slug "board"
        summary = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["film-board"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    shown = str(summary[0].data) if summary else ""
    assert str(picture.resolve()) in shown  # its path to copy (no public URL set), and the picture itself inline
    assert "![timeline](data:image/jpeg;base64," in shown


HOSTED = """\
version: 1
title: Hosted
provider: wavespeed
defaults: {duration: 4, resolution: 480p, aspect_ratio: "1:1", seed: 3}
shots:
  - {id: x, prompt: One.}
  - {id: y, cut: true, prompt: Two.}
"""


@pytest.mark.slow
def test_a_hosted_providers_prefect_concurrency_limit_holds(prefect_server: None, emulator: EmulatorServer,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WaveSpeed (the emulator, over loopback HTTP) takes slots of the Prefect limit `storyfilm-wavespeed`."""
    from prefect.client.orchestration import get_client

    from storyfilm.flow import film

    for name, value in {"WAVESPEED_API_KEY": "ws-test-key", "WAVESPEED_BASE_URL": emulator.url,
                        "STORYFILM_POLL_INTERVAL": "0.05", "STORYFILM_POLL_MAX_INTERVAL": "0.2"}.items():
        monkeypatch.setenv(name, value)
    board = write_storyboard(tmp_path, HOSTED)
    with slot_spans() as spans:
        result = film(storyboard=str(board), output_dir=str(tmp_path / "out"), concurrency=1)
    assert result["shots"] == 2 and set(spans) == {"x", "y"}
    assert not overlap(spans["x"], spans["y"])  # two independent chains, one slot: one job at a time
    assert stats(emulator.url)["submissions"] == 2
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("storyfilm-wavespeed")
    assert limit.limit == 1 and limit.active_slots == 0  # every slot given back

    # Nothing changed: both shots are reused, without queueing for a slot or calling the host.
    kinds: list[tuple[str, str | None]] = []
    with listening(lambda e: kinds.append((e.kind, e.shot))):
        again = film(storyboard=str(board), output_dir=str(tmp_path / "out"), concurrency=1)
    assert again["reused"] == 2 and stats(emulator.url)["submissions"] == 2
    assert sorted(shot for kind, shot in kinds if kind == "shot-reused") == ["x", "y"]
    assert not [k for k in kinds if k[0] in ("shot-waiting", "shot-started")]


@pytest.mark.slow
def test_limits_are_created_on_demand_and_tuned_only_when_asked(prefect_server: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from storyfilm._prefect import ensure_limit
    from storyfilm.errors import DeploymentError

    name = "storyfilm-test-host"
    assert ensure_limit(name, default=2) == 2  # created
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=5))  # a user's `prefect gcl`
    assert ensure_limit(name, default=2) == 5  # the user's value stands
    assert ensure_limit(name, default=2, override=3) == 3  # an explicit --concurrency sets it
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).limit == 3
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active=False))
    with pytest.raises(DeploymentError, match=f"prefect gcl enable {name}"):
        ensure_limit(name, default=2)


def test_without_a_server_hosted_shots_are_bounded_in_process(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    """Ephemeral mode: a Prefect limit would outlive the temporary server that holds its leases."""
    import logging
    from types import SimpleNamespace

    from storyfilm import _prefect, flow
    from storyfilm.plan import make_plan
    from storyfilm.storyboard import load_storyboard

    def no_limits(*_args: object, **_kwargs: object) -> int:
        raise AssertionError("no Prefect limit without a server")

    monkeypatch.setattr(_prefect, "has_server", lambda: False)
    monkeypatch.setattr(_prefect, "ensure_limit", no_limits)
    three = HOSTED + "  - {id: z, cut: true, prompt: Three.}\n"
    plan = make_plan(load_storyboard(write_storyboard(tmp_path, three)), {})
    job = SimpleNamespace(plan=plan, generating=frozenset({"x", "y", "z"}), ahead=frozenset())
    slot = flow._slot(job, None, logging.getLogger("test"))  # type: ignore[arg-type]
    held = [slot(shot) for shot in ("x", "y")]
    for turn in held:
        turn.__enter__()
    gate = slot.__self__  # type: ignore[attr-defined]
    assert gate.capacity == 2 and gate.free == 0  # the spec's default_concurrency slots for the whole run
    third = slot("z")  # kept referenced: a collected context manager would give its slot back
    waiter = threading.Thread(target=third.__enter__, daemon=True)
    waiter.start()
    time.sleep(0.1)
    assert gate.waiting == ["z"]  # the third waits
    held[0].__exit__(None, None, None)
    waiter.join(5)
    assert not gate.waiting and gate.free == 0

"""The plan: the shot graph, defaults, cache keys that change exactly downstream, limits and budgets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storyfilm import assets
from storyfilm.cli import app
from storyfilm.errors import BudgetExceeded, PlanError, StoryboardError
from storyfilm.plan import Plan, check_budget, make_plan
from storyfilm.storyboard import json_schema, load_storyboard

from .helpers import write_image, write_storyboard
from .test_storyboard import GOOD


def plan_of(directory: Path, text: str, **kwargs: object) -> Plan:
    board = load_storyboard(write_storyboard(directory, text))
    return make_plan(board, assets.digests(board), **kwargs)  # type: ignore[arg-type]


def test_graph_cut_continue_from_and_images(storyboard_dir: Path) -> None:
    plan = plan_of(storyboard_dir, GOOD)
    by_id = {s.id: s for s in plan.shots}
    assert (by_id["one"].start.kind, by_id["one"].start.asset) == ("image", "a")
    assert (by_id["two"].start.kind, by_id["two"].parent) == ("continue", "one")
    assert by_id["three"].start.kind == "text" and by_id["three"].references == ("b",)
    assert (by_id["four"].start.kind, by_id["four"].parent) == ("continue", "one")
    assert [[s.id for s in c] for c in plan.chains] == [["one", "two", "four"], ["three"]]
    assert plan.downstream("one") == ["one", "two", "four"]
    assert by_id["four"].end_image == "b"
    # defaults fill what shots leave out; built-in defaults fill the rest
    assert {s.duration for s in plan.shots} == {2} and {s.resolution for s in plan.shots} == {"480p"}
    assert by_id["one"].audio is True and by_id["one"].aspect_ratio == "16:9"
    assert (plan.film.width, plan.film.height, plan.film.fps) == (854, 480, 24)
    assert plan.duration == 8 and plan.cost_usd == 0.0


def test_image_on_a_later_shot_starts_a_new_chain(storyboard_dir: Path) -> None:
    text = GOOD.replace("    prompt: second", "    prompt: second\n    image: b")
    plan = plan_of(storyboard_dir, text)
    assert [[s.id for s in c] for c in plan.chains] == [["one", "four"], ["two"], ["three"]]


def keys(plan: Plan) -> dict[str, str]:
    return {s.id: s.key for s in plan.shots}


def test_a_change_invalidates_exactly_the_shot_and_what_is_chained_after_it(storyboard_dir: Path) -> None:
    before = keys(plan_of(storyboard_dir, GOOD))
    after = keys(plan_of(storyboard_dir, GOOD.replace("prompt: second", "prompt: second, edited")))
    assert {k for k in before if before[k] != after[k]} == {"two"}
    after = keys(plan_of(storyboard_dir, GOOD.replace("prompt: first", "prompt: first, edited")))
    assert {k for k in before if before[k] != after[k]} == {"one", "two", "four"}
    # an edited image changes the shots that use it, and their descendants
    write_image(storyboard_dir / "refs" / "b.png", seed=99)
    after = keys(plan_of(storyboard_dir, GOOD))
    assert {k for k in before if before[k] != after[k]} == {"three", "four"}


def test_keys_are_stable_and_cover_the_provider(storyboard_dir: Path) -> None:
    assert keys(plan_of(storyboard_dir, GOOD)) == keys(plan_of(storyboard_dir, GOOD))
    a, b = plan_of(storyboard_dir, GOOD), plan_of(storyboard_dir, GOOD, tier="fast")
    assert all(x.key != y.key for x, y in zip(a.shots, b.shots, strict=True))


def test_provider_limits_are_checked_with_the_line(storyboard_dir: Path) -> None:
    with pytest.raises(StoryboardError) as info:
        plan_of(storyboard_dir, GOOD.replace("    prompt: third", "    prompt: third\n    duration: 45"))
    assert ":18: shots[2].duration (shot 'three'): 45 s is outside local (standard)'s range 1-30 s" in str(info.value)


def test_each_host_and_tier_is_checked_where_the_value_was_written(storyboard_dir: Path) -> None:
    with pytest.raises(StoryboardError) as info:  # the gateway starts at 5 s; the value is in defaults
        plan_of(storyboard_dir, GOOD.replace("duration: 2", "duration: 4"), provider="gateway")
    assert str(info.value).count("gateway (standard)'s range 5-15 s") == 1
    assert ":4: defaults.duration: 4 s is outside" in str(info.value) and "used by 4 shots" in str(info.value)
    text = GOOD.replace("duration: 2", "duration: 5").replace("resolution: 480p", "resolution: 1080p")
    with pytest.raises(StoryboardError, match="1080p is not offered by apiframe \\(fast\\); allowed: 480p, 720p"):
        plan_of(storyboard_dir, text, provider="apiframe", tier="fast")
    with pytest.raises(StoryboardError, match=r":15: shots\[1\].method \(shot 'two'\): gateway \(standard\) has no"):
        plan_of(storyboard_dir, GOOD.replace("duration: 2", "duration: 5").replace(
            "prompt: second", "prompt: second\n    method: extend"), provider="gateway")
    with pytest.raises(PlanError, match="unknown provider 'runway'"):
        plan_of(storyboard_dir, GOOD, provider="runway")
    priced = plan_of(storyboard_dir, GOOD.replace("duration: 2", "duration: 5").replace("480p", "720p"),
                     provider="wavespeed")
    assert priced.cost_usd == pytest.approx(4 * 5 * 0.24)  # $0.24/s at 720p


def test_budget_refuses_a_plan_that_costs_more(storyboard_dir: Path) -> None:
    plan = plan_of(storyboard_dir, GOOD, budget_usd=1.0)
    check_budget(plan)  # local is free
    shots = tuple(dataclasses.replace(s, cost_usd=0.6) for s in plan.shots)
    pricey = dataclasses.replace(plan, shots=shots)
    with pytest.raises(BudgetExceeded, match=r"\$2.40, over the budget of \$1.00"):
        check_budget(pricey)
    check_budget(dataclasses.replace(pricey, budget_usd=2.4))


TRANSITIONS = """\
version: 1
title: Transitions
loudness_lufs: -14
defaults:
  duration: 2
  resolution: 480p
shots:
  - id: one
    prompt: first
  - id: two
    prompt: second
    transition: {type: crossfade, duration: 0.5}
  - id: three
    cut: true
    prompt: third
    transition: {type: fade, duration: 1}
"""


def test_transitions_overlap_shots_and_the_plan_says_how_long_the_film_is(storyboard_dir: Path) -> None:
    plan = plan_of(storyboard_dir, TRANSITIONS)
    assert [(s.transition.name, s.overlap_frames) for s in plan.shots] == [("cut", 0), ("crossfade", 12), ("fade", 24)]
    assert plan.frames == 3 * 48 - 36 and plan.duration == 4.5 and plan.overlap_seconds == 1.5
    assert plan.loudness_lufs == -14
    result = CliRunner().invoke(app, ["plan", str(storyboard_dir / "board.yaml")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "transitions: two crossfade 0.5 s, three fade 1 s" in said
    assert "film: 4.5 s (6 s of shots, 1.5 s overlapped by transitions), 854x480 @ 24 fps, loudness -14 LUFS" in said
    # a transition is assembly only: changing it generates nothing again
    other = plan_of(storyboard_dir, TRANSITIONS.replace("duration: 0.5", "duration: 1"))
    assert keys(other) == keys(plan) and other.duration == 4.0


def test_a_default_transition_joins_every_shot_but_the_first(storyboard_dir: Path) -> None:
    text = TRANSITIONS.replace("  resolution: 480p", "  resolution: 480p\n  transition: {type: fade, duration: 0.25}")
    text = text.replace("    transition: {type: crossfade, duration: 0.5}\n", "")
    plan = plan_of(storyboard_dir, text)
    assert [(s.transition.name, s.overlap_frames) for s in plan.shots] == [("cut", 0), ("fade", 6), ("fade", 24)]


def test_transitions_that_do_not_fit_are_refused_with_the_line(storyboard_dir: Path) -> None:
    first = TRANSITIONS.replace("    prompt: first", "    prompt: first\n    transition: {type: crossfade}")
    with pytest.raises(StoryboardError) as info:
        plan_of(storyboard_dir, first)
    assert ":10: shots[0].transition.type (shot 'one'): the first shot has no shot before it to crossfade" in str(
        info.value)
    long = TRANSITIONS.replace("duration: 0.5}", "duration: 1.5}")
    with pytest.raises(StoryboardError) as info:
        plan_of(storyboard_dir, long)
    assert (":12: shots[1].transition.duration (shot 'two'): crossfade 1.5 s + fade 1 s of transitions overlap "
            "shot 'two', which is only 2 s long") in str(info.value)


def test_the_loudness_target_must_be_sensible(storyboard_dir: Path) -> None:
    with pytest.raises(StoryboardError) as info:
        plan_of(storyboard_dir, TRANSITIONS.replace("loudness_lufs: -14", "loudness_lufs: 3"))
    assert ":3: loudness_lufs: Input should be less than or equal to -5" in str(info.value)
    schema = json_schema()
    assert schema["properties"]["loudness_lufs"]["anyOf"][0] == {"maximum": -5.0, "minimum": -40.0, "type": "number"}
    result = CliRunner().invoke(app, ["run", str(storyboard_dir / "board.yaml"), "--loudness", "2"])
    assert result.exit_code == 2 and "--loudness" in result.output and "Traceback" not in result.output

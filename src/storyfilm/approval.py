"""Approve before paying: what a producer approves, the answer they give, and what it does. No Prefect.

A run that needs approval (`approve: true` in the storyboard, `run --approve`, or the flow's `approve`
parameter) stops after planning and before any paid call. On a Prefect server it pauses with a form
(flow.py); in a terminal without one, `storyfilm run` asks y/N (cli.py). A run with nothing new to pay
(every shot reused, or a free provider) is not held.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from storyfilm.errors import ApprovalError, BudgetExceeded
from storyfilm.plan import Plan, check_budget

TIMEOUT_ENV = "STORYFILM_APPROVAL_TIMEOUT"  # seconds a paused run waits for its answer
POLL_ENV = "STORYFILM_APPROVAL_POLL"  # seconds between two looks at the paused run's state
APPROVED_ENV = "STORYFILM_APPROVED_PLAN"  # set by `storyfilm run` once the terminal approved the plan
DEFAULT_TIMEOUT_S = 24 * 3600  # a nightly run waits for the producer's morning
DEFAULT_POLL_S = 5


class Answer(BaseModel):
    """The approval form (the Prefect UI renders it from this model's JSON Schema; `storyfilm approve` fills it).

    Every combination means one thing: a budget given with `reject` is ignored."""

    model_config = ConfigDict(extra="forbid")

    answer: Literal["approve", "reject"] = Field(
        title="Answer", description="approve: pay for this plan; reject: stop the run, nothing is paid")
    # a number, not "number or null": the UI's form shows a plain field (a budget of 0 could approve nothing)
    budget_usd: float = Field(
        0, ge=0, le=1_000_000, title="Another budget (USD)",
        description="approve with this budget instead of the plan's; the plan is checked against it again "
                    "before anything is paid (0: keep the plan's)")
    reason: str = Field("", max_length=500, title="Reason", description="why (shown in the run's final state)")


def held(required: bool, new_cost_usd: float) -> bool:
    """Whether a run waits for approval: asked for, and something new to pay."""
    return required and new_cost_usd > 0


def settings(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(timeout, poll interval) in seconds, from the environment; an ApprovalError names a wrong value."""
    env = os.environ if env is None else env
    out: list[int] = []
    for name, default in ((TIMEOUT_ENV, DEFAULT_TIMEOUT_S), (POLL_ENV, DEFAULT_POLL_S)):
        raw = env.get(name, "").strip()
        try:
            value = int(raw) if raw else default
        except ValueError:
            value = 0
        if value < 1:
            raise ApprovalError(f"{name}={raw!r}: give a whole number of seconds, 1 or more")
        out.append(value)
    return out[0], out[1]


@dataclass(frozen=True)
class Verdict:
    """What the run does with an answer: go on (with this budget), or stop with this message."""

    go: bool
    budget_usd: float | None
    message: str


def verdict(answer: Answer, plan: Plan, new_cost_usd: float) -> Verdict:
    """An answer applied to the plan. An approved budget too small for the plan is refused here, before paying."""
    why = f": {answer.reason.strip()}" if answer.reason.strip() else ""
    if answer.answer == "reject":
        return Verdict(False, plan.budget_usd, f"rejected{why}; nothing was paid")
    budget = round(answer.budget_usd, 2) if answer.budget_usd else plan.budget_usd
    try:
        check_budget(with_budget(plan, budget), new_cost_usd)
    except BudgetExceeded:
        return Verdict(False, budget, f"approved with a budget of ${budget:.2f}, but the plan's new spend is "
                                      f"${new_cost_usd:.2f}; nothing was paid (run again with a larger budget)")
    return Verdict(True, budget, f"approved{why}" + ("" if budget is None else f" (budget ${budget:.2f})"))


def with_budget(plan: Plan, budget_usd: float | None) -> Plan:
    return replace(plan, budget_usd=budget_usd)


def fingerprint(plan: Plan, new_cost_usd: float) -> str:
    """What a terminal approval approves: every shot's key (what would be generated) and the new spend."""
    body = json.dumps({"shots": [s.key for s in plan.shots], "new": round(new_cost_usd, 2)}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def approved_in_terminal(plan: Plan, new_cost_usd: float, env: Mapping[str, str] | None = None) -> bool:
    """Whether `storyfilm run` asked in its terminal and was answered yes for exactly this plan."""
    env = os.environ if env is None else env
    return env.get(APPROVED_ENV, "") == fingerprint(plan, new_cost_usd)


NO_SERVER = ("this run waits for approval (approve: true or --approve), but there is no Prefect server for an answer "
             "to reach it and no terminal to ask in; start one (`prefect server start`, then set PREFECT_API_URL) and "
             "answer in its UI or with `storyfilm approve`, or drop --approve (and the storyboard's approve: true). "
             "Nothing was paid")


# --- what the producer sees -----------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewLink:
    """The free animatic, as the summary shows files: a link or a copyable path, and a picture."""

    film: str  # markdown: [film.mp4](url) or `path`
    picture: str | None  # data: URI of a JPEG contact sheet
    reused: bool


def plan_markdown(plan: Plan, states: Mapping[str, str], new_cost_usd: float, *, preview: PreviewLink | None,
                  storyboard: str | Path, timeout_s: int, rehearsal: bool) -> str:
    """The plan a producer approves: shots, chains, the new cost against the budget, the free preview."""
    money = "at list prices (rehearsal: nothing is paid)" if rehearsal else "to pay"
    budget = (f" of a budget of ${plan.budget_usd:.2f}" if plan.budget_usd is not None else " (no budget set)")
    lines = [f"# {plan.title}: waiting for approval", "",
             f"**New cost:** ${new_cost_usd:.2f} {money}{budget}; all shots ${plan.cost_usd:.2f}.", "",
             f"**{len(plan.shots)} shots in {len(plan.chains)} chain(s)** on {plan.provider} ({plan.tier}), "
             f"{plan.duration:g} s of film. Nothing has been paid yet.", "",
             "| # | shot | chain | start | duration | format | status | cost |",
             "|---|---|---|---|---|---|---|---|"]
    for s in plan.shots:
        start = s.start.describe() + (f" ({s.method})" if s.parent else "")
        lines.append(f"| {s.index + 1} | {s.id} | {s.chain + 1} | {start} | {s.duration} s | "
                     f"{s.resolution} {s.aspect_ratio} | {states.get(s.id, 'new')} | ${s.cost_usd:.2f} |")
    lines += ["", "**Chains:** " + "; ".join(" → ".join(s.id for s in c) for c in plan.chains), ""]
    if preview is not None:
        lines += [f"**Free preview:** the local renderer's animatic of the whole storyboard, {preview.film}"
                  + (" (unchanged, reused)" if preview.reused else ""), ""]
        if preview.picture:
            lines += [f"![animatic]({preview.picture})", ""]
    hours = f"{timeout_s / 3600:g} h" if timeout_s >= 3600 else f"{timeout_s} s"
    lines += ["**To answer:** resume this flow run (approve, approve with another budget, or reject), or from a "
              f"terminal: `storyfilm approve {Path(storyboard).name}` (`--budget USD`, `--reject`). Not answered "
              f"within {hours}: the run stops and nothing is paid."]
    return "\n".join(lines) + "\n"


def form_description(plan: Plan, new_cost_usd: float) -> str:
    """The short text above the form (the plan itself is the run's artifact)."""
    budget = f"budget ${plan.budget_usd:.2f}" if plan.budget_usd is not None else "no budget set"
    return (f"**{plan.title}**: {len(plan.shots)} shots, new cost **${new_cost_usd:.2f}** ({budget}). "
            "The plan and its free animatic preview are in this run's artifacts. Nothing is paid until you "
            "approve.")


def terminal_text(plan: Plan, new_cost_usd: float, preview: Path | None) -> str:
    budget = f", budget ${plan.budget_usd:.2f}" if plan.budget_usd is not None else ""
    chains = "; ".join(" -> ".join(s.id for s in c) for c in plan.chains)
    return (f"{plan.title}: {len(plan.shots)} shots on {plan.provider} ({plan.tier}), chains {chains}\n"
            f"new cost ${new_cost_usd:.2f}{budget}"
            + (f"\nfree preview (animatic): {preview}" if preview else ""))

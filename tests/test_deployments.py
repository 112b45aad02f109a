"""prefect.yaml and `storyfilm serve`, checked without a server: entrypoints, parameters, schedules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import yaml
from prefect.exceptions import ParameterTypeError
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from storyfilm import assets
from storyfilm._prefect import artifact_key, cron_schedule
from storyfilm.cli import app
from storyfilm.errors import DeploymentError
from storyfilm.plan import check_budget, make_plan
from storyfilm.storyboard import load_storyboard

from .helpers import REPO

DEPLOYMENTS: list[dict[str, Any]] = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_every_deployment_loads_validates_and_plans(deployment: dict[str, Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # prefect deploy runs here; its pull step makes this the working directory
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    params = flow.validate_parameters(deployment["parameters"])
    assert set(deployment["parameters"]) <= set(params)
    for schedule in deployment["schedules"]:
        cron_schedule(schedule["cron"], schedule.get("timezone"))
    board = load_storyboard(Path(params["storyboard"]))
    plan = make_plan(board, assets.digests(board), provider=params["provider"], budget_usd=params["budget_usd"])
    check_budget(plan)  # the scheduled run would not be refused before it starts
    assert deployment["work_pool"]["name"]


def test_the_ui_form_is_typed_and_bad_values_are_refused() -> None:
    from storyfilm.flow import film

    schema = film.parameters.model_dump()
    props = schema["properties"]
    assert schema["required"] == ["storyboard"]
    provider = props["provider"]["anyOf"][0]
    assert provider["enum"] == ["local", "wavespeed", "gateway", "apiframe"]  # a drop-down in the UI
    assert props["budget_usd"]["anyOf"][0] == {"minimum": 0, "type": "number",
                                               "description": "hard cap on new spend, USD, 0 or more"}
    assert props["concurrency"]["anyOf"][0]["minimum"] == 1
    # the form states each range, and nothing in it reads as an HTML tag (the UI swallowed `<output_dir>`)
    assert props["concurrency"]["anyOf"][0]["description"].endswith("1 to 64")
    assert props["loudness_lufs"]["anyOf"][0]["description"].endswith("-40 to -5")
    assert "<" not in str(schema) and "<" not in str(film.description)
    with pytest.raises(ParameterTypeError, match="provider"):
        film.validate_parameters({"storyboard": "x.yaml", "provider": "veo"})
    with pytest.raises(ParameterTypeError, match="budget_usd"):
        film.validate_parameters({"storyboard": "x.yaml", "budget_usd": -1})


def test_the_served_flow_still_validates_parameters_after_pickling() -> None:
    """`serve` hands the flow to each run's process by cloudpickle (string annotations broke this once)."""
    from storyfilm.flow import film

    copy = cloudpickle.loads(cloudpickle.dumps(film))
    assert copy.validate_parameters({"storyboard": "x.yaml", "provider": "local", "budget_usd": "2.5"}) == {
        "storyboard": "x.yaml", "provider": "local", "budget_usd": 2.5, "output_dir": "output", "redo": None,
        "ledger": None, "loudness_lufs": None, "concurrency": None, "approve": False}


@pytest.mark.parametrize(("cron", "timezone", "message"), [
    ("0 3 * *", None, 'Invalid cron string: "0 3 * *"'),
    ("61 3 * * *", None, "Invalid cron string"),
    ("0 3 * * *", "Mars/Olympus", 'Invalid timezone: "Mars/Olympus"'),
])
def test_bad_schedules_are_typed_errors(cron: str, timezone: str | None, message: str) -> None:
    with pytest.raises(DeploymentError, match=re.escape(message)):
        cron_schedule(cron, timezone)


def test_serve_refuses_a_bad_cron_before_touching_prefect() -> None:
    result = CliRunner().invoke(app, ["serve", str(REPO / "storyboards" / "teaser.yaml"), "--cron", "every night"])
    assert result.exit_code == 1
    assert "invalid schedule" in result.output and "five fields" in result.output
    assert "Traceback" not in result.output


def test_serve_says_it_needs_a_server() -> None:
    """Ephemeral mode runs no scheduler: serving a schedule without a server would never run it."""
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = CliRunner().invoke(app, ["serve", str(REPO / "storyboards" / "teaser.yaml"), "--cron", "0 3 * * *"])
    assert result.exit_code == 1
    assert "needs a Prefect server" in result.output and "prefect server start" in result.output


def test_artifact_keys_are_what_prefect_accepts() -> None:
    assert artifact_key("film", "the-lighthouse", "shots") == "film-the-lighthouse-shots"
    assert artifact_key("film", "Night_Storm 2", "progress") == "film-night-storm-2-progress"
    assert re.fullmatch(r"[a-z0-9-]{1,100}", artifact_key("film", "x" * 200))


def test_serve_refuses_a_name_prefect_would_refuse() -> None:
    result = CliRunner().invoke(app, ["serve", str(REPO / "storyboards" / "teaser.yaml"), "--cron", "0 3 * * *",
                                      "--name", "films/teaser"])
    assert result.exit_code == 1
    assert "'films/teaser' cannot name a deployment: no /" in result.output

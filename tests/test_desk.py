"""The Prefect UI as a producer's desk, on a real `prefect server start` (UI included) and a real browser.

One server for the module; two `storyfilm run` processes against it, as a user starts them:
- a rehearsal (`--emulate`) that finishes, with STORYFILM_PUBLIC_URL pointing at a small http.server
  that serves the output folder: its artifacts link the film over http, and Chromium (Debian's, driven
  by Playwright) shows the summary with its contact sheet and thumbnails rendered;
- a paid run (Apiframe, the session's emulator) where one shot of five is refused by moderation: its
  artifacts, read back through the Prefect API, hold the four done shots, the committed cost, the failed
  shot with its reason, and a progress artifact that says it failed.

Screenshots go to STORYFILM_SCREENSHOTS (default: a folder under the test's tmp dir); look at them.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from storyfilm.media import probe

from .helpers import emulator_stats, write_storyboard
from .prefect_db import seed
from .test_prefect_server import client, free_port, stop_group, wait_for

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

REHEARSED = """\
version: 1
title: Harbour Desk
provider: wavespeed
defaults: {duration: 5, resolution: 480p, seed: 4}
shots:
  - {id: dawn, prompt: "Dawn over the harbour, slow push-in."}
  - {id: boats, prompt: "The boats rock; the camera pans right.", caption: Morning.}
  - {id: lamp, cut: true, prompt: Static shot of the lighthouse lamp.}
"""

# one shot of five refused by moderation; it starts its own chain, so the other four all finish
FAILING = """\
version: 1
title: Storm Desk
provider: apiframe
defaults: {duration: 4, resolution: 480p, aspect_ratio: '1:1', seed: 7}
shots:
  - {id: quay, prompt: A quay at dusk.}
  - {id: rope, prompt: A rope tightens.}
  - {id: storm, cut: true, prompt: "[[fault:moderation]] A storm breaks."}
  - {id: ship, cut: true, prompt: A ship in the swell.}
  - {id: deck, prompt: Waves wash the deck.}
"""


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory, migrated_prefect_db: Path) -> Iterator[dict[str, str]]:
    """A real Prefect server with its UI on 127.0.0.1 and a throw-away PREFECT_HOME; yields the env to reach it."""
    home = seed(tmp_path_factory.mktemp("prefect-home-ui"), migrated_prefect_db)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_UI_API_URL": url}
    env.pop("STORYFILM_PUBLIC_URL", None)
    log = home / "server.log"
    with log.open("wb") as sink:  # its own process group: stop_group takes the uvicorn children too
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                 "--port", str(port)], env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"prefect server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("the Prefect server", healthy, 120, log)
        yield env
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("STORYFILM_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def serve_folder(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def storyfilm_run(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen([sys.executable, "-m", "storyfilm", "run", *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, errors = proc.communicate(timeout=300)
    finally:
        stop_group(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, errors)


def latest_run(env: dict[str, str], name_starts: str) -> Any:
    with client(env) as c:
        runs = [r for r in c.read_flow_runs() if r.name.startswith(name_starts)]
    assert runs, f"no flow run named {name_starts}..."
    return max(runs, key=lambda r: r.created)


def artifacts_of_run(env: dict[str, str], run_id: Any) -> dict[str, Any]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with client(env) as c:
        found = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    return {str(a.key): a for a in found}


def open_artifact(browser: Any, env: dict[str, str], artifact_id: Any) -> Any:
    """The artifact's page in the Prefect UI, once its markdown (and its pictures) rendered."""
    base = env["PREFECT_API_URL"].removesuffix("/api")
    page = browser.new_page(viewport={"width": 1440, "height": 1300})
    page.goto(f"{base}/artifacts/artifact/{artifact_id}", wait_until="networkidle")
    page.wait_for_selector("img[alt='contact sheet'], h1", timeout=30_000)
    return page


def test_a_finished_rehearsal_shows_its_film_pictures_and_working_links(ui_server: dict[str, str], browser: Any,
                                                                         shots_dir: Path, tmp_path: Path) -> None:
    board = write_storyboard(tmp_path, REHEARSED, "harbour.yaml")
    out = tmp_path / "output"
    served = out / "emulated"  # a rehearsal writes there: that folder is the flow's output_dir
    served.mkdir(parents=True)
    http, public = serve_folder(served)
    try:
        env = {**ui_server, "STORYFILM_PUBLIC_URL": public}
        done = storyfilm_run(env, str(board), "--emulate", "--output", str(out), cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]

        run = latest_run(ui_server, "Harbour Desk")
        assert run.state.is_completed()
        assert run.name == "Harbour Desk (rehearsal, nothing paid)" and "rehearsal" in run.tags
        artifacts = artifacts_of_run(ui_server, run.id)
        summary = str(artifacts["film-harbour"].data)
        assert "(rehearsal: nothing was paid)" in summary and "**Cost at list prices:**" in summary
        assert "Committed" not in summary and "Spent" not in summary
        film_url = f"{public}/harbour/film.mp4"
        assert f"[film.mp4]({film_url})" in summary and "file://" not in summary
        assert film_url in str(artifacts["film-harbour-film"].data)  # the link artifact
        answer = httpx.get(film_url, timeout=30)
        assert answer.status_code == 200 and answer.headers["content-type"] == "video/mp4"
        got = tmp_path / "downloaded.mp4"
        got.write_bytes(answer.content)
        info = probe.probe(got)
        assert info.video is not None and abs(info.video.duration - 15.0) <= 1 / 24
        for name in ("manifest.json", "film.srt", "timeline.otio", "contact_sheet.png"):
            assert f"{public}/harbour/{name}" in summary
            assert httpx.get(f"{public}/harbour/{name}", timeout=10).status_code == 200
        assert len(summary.encode()) < 200_000  # pictures included

        page = open_artifact(browser, ui_server, artifacts["film-harbour"].id)
        try:
            sheet = page.locator("img[alt='contact sheet']")
            sheet.wait_for(timeout=30_000)
            assert sheet.evaluate("img => img.complete && img.naturalWidth") > 300  # decoded, not a broken icon
            thumbs = page.locator("img[alt='dawn'], img[alt='boats'], img[alt='lamp']")
            assert thumbs.count() == 3
            assert all(thumbs.nth(i).evaluate("img => img.naturalWidth") == 120 for i in range(3))
            link = page.locator(f"a[href='{film_url}']")
            assert link.count() == 1
            page.screenshot(path=str(shots_dir / "summary.png"), full_page=True)
        finally:
            page.close()
    finally:
        http.shutdown()
        http.server_close()


def test_a_run_failing_on_one_shot_of_five_says_what_is_done_paid_and_next(
        ui_server: dict[str, str], emulator: Any, browser: Any, shots_dir: Path, tmp_path: Path) -> None:
    from storyfilm.providers import SPECS

    env = {**ui_server, "STORYFILM_POLL_INTERVAL": "0.05"}
    env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)  # the console a user sees
    for spec in SPECS.values():
        if spec.base_url_env and spec.api_key_env:
            env[spec.base_url_env], env[spec.api_key_env] = emulator.url, "test-key-0123456789"
    board = write_storyboard(tmp_path, FAILING, "storm.yaml")
    done = storyfilm_run(env, str(board), "--output", str(tmp_path / "output"), cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout  # a host's refusal is not a bug
    assert done.stderr.startswith("error: 1 shot(s) failed; 4 finished shot(s) are kept")
    assert "content policy violation" in done.stderr

    run = latest_run(ui_server, "Storm Desk")
    assert run.state.is_failed() and "1 shot(s) failed" in str(run.state.message)
    artifacts = artifacts_of_run(ui_server, run.id)
    assert {"film-storm", "film-storm-shots", "film-storm-progress"} <= set(artifacts)
    table = {row["shot"]: row for row in json.loads(artifacts["film-storm-shots"].data)}
    assert [table[s]["status"] for s in ("quay", "rope", "ship", "deck")] == ["generated"] * 4
    assert table["storm"]["status"].startswith("failed: ") and "content policy violation" in table["storm"]["status"]
    assert all(table[s]["next run"] == "reuse (not paid again)" for s in ("quay", "rope", "ship", "deck"))
    assert table["storm"]["next run"] == "stop: refused by moderation; edit the prompt or --redo"

    billed = emulator_stats(emulator.url)
    assert billed["submissions"] == 5
    paid = round(billed["cost_usd"] - billed["failed_cost_usd"], 4)  # a moderated job is not billed
    assert paid == pytest.approx(4 * 0.48)
    summary = str(artifacts["film-storm"].data)
    assert summary.startswith("# Storm Desk: FAILED\n") and "**Why it failed:** 1 shot(s) failed" in summary
    assert f"**Committed this run:** ${paid:.2f} for 4 generated shot(s)" in summary
    assert "4 generated, 0 reused, 1 failed, 0 not started" in summary
    assert summary.count("data:image/jpeg;base64,") == 4  # a thumbnail per done shot, no contact sheet
    # the UI does not wrap table cells: the cell keeps to the action, the full hint is under the table
    assert "| stop: refused by moderation |" in summary
    assert "- **storm**, next run: stop: refused by moderation; edit the prompt or --redo" in summary
    progress = artifacts["film-storm-progress"]
    assert progress.data == pytest.approx(66.7)  # 4 of 5 shots + assembly
    assert progress.description == "failed after 4 of 5 shots: 1 failed"

    with client(ui_server) as c:
        logs = [log.message for log in c.read_logs()
                if log.flow_run_id == run.id and "Traceback" in (log.message or "")]
    assert logs == []

    page = open_artifact(browser, ui_server, artifacts["film-storm"].id)
    try:
        page.get_by_text("Why it failed").wait_for(timeout=30_000)
        assert page.locator("img[alt='quay']").evaluate("img => img.naturalWidth") == 120
        page.screenshot(path=str(shots_dir / "failed-run.png"), full_page=True)
    finally:
        page.close()


# Approve before paying: four runs of two-shot films wait at once, each answered another way.
PIER = """\
version: 1
title: Pier {name}
provider: wavespeed
budget_usd: 2
defaults: {{duration: 5, resolution: 480p, seed: 3}}
shots:
  - {{id: pier, prompt: "A pier at dawn, slow push-in."}}
  - {{id: gull, prompt: A gull lands on the rail.}}
"""


def test_approval_pauses_before_paying_and_each_answer_decides(ui_server: dict[str, str], emulator: Any, browser: Any,
                                                               shots_dir: Path, tmp_path: Path) -> None:
    """Alpha: approved with another budget through the API (as the UI's form does) pays exactly its plan; Bravo:
    rejected from a terminal; Charlie: nobody answers in time; Delta: approved from a terminal with a budget too
    small for its plan. Only Alpha pays."""
    from .test_approval import run_storyfilm

    env = {**ui_server, "STORYFILM_POLL_INTERVAL": "0.05", "STORYFILM_APPROVAL_POLL": "1",
           "WAVESPEED_BASE_URL": emulator.url, "WAVESPEED_API_KEY": "test-key-0123456789"}
    names = ("Alpha", "Bravo", "Charlie", "Delta")
    boards = {n: write_storyboard(tmp_path, PIER.format(name=n), f"{n.lower()}.yaml") for n in names}
    runs = {n: subprocess.Popen([sys.executable, "-m", "storyfilm", "run", str(boards[n]), "--approve", "--output",
                                 str(tmp_path / "out")], cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                env=env | ({"STORYFILM_APPROVAL_TIMEOUT": "2"} if n == "Charlie" else {}))
            for n in names}
    try:
        def paused() -> dict[str, Any] | None:
            with client(ui_server) as c:
                found = {r.name.removeprefix("Pier "): r for r in c.read_flow_runs() if r.name.startswith("Pier ")}
            waiting = {n: r for n, r in found.items() if r.state.is_paused()}
            return waiting if {"Alpha", "Bravo", "Delta"} <= set(waiting) else None

        waiting = wait_for("three runs waiting for approval", paused, 400)
        assert emulator_stats(emulator.url)["submissions"] == 0  # planned, previewed, nothing paid
        alpha = waiting["Alpha"]
        plan = str(newest_artifact(ui_server, alpha.id, "film-alpha").data)
        assert plan.startswith("# Pier Alpha: waiting for approval\n")
        assert "**New cost:** $1.20 to pay of a budget of $2.00; all shots $1.20." in plan
        assert "| 2 | gull | 1 | last frame of 'pier' (extend) | 5 s | 480p 16:9 | new | $0.60 |" in plan
        animatic = tmp_path / "out" / "alpha" / "animatic" / "alpha" / "film.mp4"
        assert f"`{animatic}`" in plan and "![animatic](data:image/jpeg;base64," in plan  # no public URL: a path
        preview = probe.probe(animatic)
        assert preview.video is not None and abs(preview.video.duration - 10.0) <= 1 / 24

        base = ui_server["PREFECT_API_URL"].removesuffix("/api")
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        try:
            page.goto(f"{base}/runs/flow-run/{alpha.id}", wait_until="networkidle")
            page.get_by_role("button", name="Resume").first.click(timeout=60_000)
            form = page.locator("[role=dialog]").first
            form.get_by_text("Another budget (USD)").wait_for(timeout=30_000)
            assert "new cost $1.20 (budget $2.00)" in form.inner_text()
            page.screenshot(path=str(shots_dir / "approval.png"))
        finally:
            page.close()

        with client(ui_server) as c:  # what the form's Submit sends
            c.resume_flow_run(alpha.id, run_input={"answer": "approve", "budget_usd": 1.5, "reason": ""})
        code, said = run_storyfilm(["approve", str(boards["Bravo"]), "--reject", "--reason", "too dark"], env, tmp_path)
        assert code == 0 and said.startswith(f"rejected: Pier Bravo ({waiting['Bravo'].id})"), said
        code, said = run_storyfilm(["approve", str(waiting["Delta"].id), "--budget", "0.5"], env, tmp_path)
        assert code == 0 and said.startswith("approved with a budget of $0.50: Pier Delta"), said
        done = {n: p.communicate(timeout=400) for n, p in runs.items()}
    finally:
        for proc in runs.values():
            stop_group(proc)

    codes = {n: runs[n].returncode for n in names}
    assert codes == {"Alpha": 0, "Bravo": 1, "Charlie": 1, "Delta": 1}, done
    assert all("Traceback" not in out + errors for out, errors in done.values())
    assert "waiting for approval: answer in the Prefect UI at " in done["Alpha"][1]
    assert done["Bravo"][1].endswith("error: rejected: too dark; nothing was paid\n")
    assert done["Charlie"][1].endswith("error: not approved within 2 s; nothing was paid\n")
    assert done["Delta"][1].endswith("error: approved with a budget of $0.50, but the plan's new spend is $1.20; "
                                     "nothing was paid (run again with a larger budget)\n")
    assert emulator_stats(emulator.url)["submissions"] == 2  # Alpha's plan, and nothing else
    assert (tmp_path / "out" / "alpha" / "film.mp4").is_file()
    with client(ui_server) as c:
        ended = {r.name.removeprefix("Pier "): r for r in c.read_flow_runs() if r.name.startswith("Pier ")}
    final = {n: r.state for n, r in ended.items()}
    assert final["Alpha"].is_completed()
    assert final["Bravo"].is_cancelled() and final["Bravo"].name == "Rejected"
    assert final["Charlie"].is_failed() and final["Charlie"].message == "not approved within 2 s; nothing was paid"
    assert final["Delta"].is_failed() and str(final["Delta"].message).startswith("approved with a budget of $0.50")
    for n in ("Bravo", "Charlie", "Delta"):  # the summary says why nothing was made
        summary = str(newest_artifact(ui_server, ended[n].id, f"film-{n.lower()}").data)
        assert summary.startswith(f"# Pier {n}: not started\n") and "Nothing was paid" in summary


def newest_artifact(env: dict[str, str], run_id: Any, key: str) -> Any:
    """The run's latest artifact with `key` (the plan waiting for approval, then the summary of how the run ended)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with client(env) as c:
        found = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                                                                key=ArtifactFilterKey(any_=[key])))
    assert found, f"no artifact {key} in run {run_id}"
    return max(found, key=lambda a: a.created)

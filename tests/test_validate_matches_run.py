"""`validate` refuses whatever `run` refuses before its first paid call (and nothing else), for storyboards
made up by Hypothesis: hosted providers, tiers, durations, resolutions, aspect ratios, chains, transitions,
budgets, and assets that are good, missing, outside the folder, not images, or URLs that are private,
malformed, carry a password, or point at an HTTPS asset server the user allowed.

`run` is the real command (the Prefect flow, real HTTP to the emulator, whose every submit is refused with
503 so nothing renders); it reached its first paid call when the emulator saw a submit. Problems only the
network can reveal (a URL that does not answer, a host's own quote) are not generated: `validate` cannot know
them by design.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from storyfilm.cli import app

from .helpers import emulator_stats, point_hosts_at, write_image
from .netlab import HttpsServers, send, trusting

pytestmark = pytest.mark.slow

# Values repeat to make a storyboard every provider takes likely enough (about half are accepted).
ASSETS = ["refs/a.png", "refs/a.png", "https://localhost:{port}/a.png", "../outside.png", "refs/missing.png",
          "notes.txt", "https://10.0.0.5/a.png", "https://[::1/a.png", "https://u:pw@localhost:{port}/a.png",
          "https://127.0.0.2:{port}/a.png", "https://169.254.169.254/a.png"]

shot = st.fixed_dictionaries({
    "duration": st.sampled_from([5, 5, 6, 8, 4, 3, 16]),
    "resolution": st.sampled_from(["480p", "480p", "720p", "1080p"]),
    "aspect_ratio": st.sampled_from(["16:9", "16:9", "9:16", "1:1", "4:3", "3:4", "21:9"]),
}, optional={"method": st.sampled_from(["frame", "frame", "extend"]), "cut": st.booleans(),
             "transition": st.sampled_from(["{type: crossfade, duration: 0.5}", "{type: fade, duration: 4.5}"])})

boards = st.fixed_dictionaries({
    "provider": st.sampled_from(["wavespeed", "gateway", "apiframe"]),
    "model": st.sampled_from(["standard", "standard", "fast", "mini"]),
    "shots": st.lists(shot, min_size=1, max_size=3),
}, optional={"budget_usd": st.sampled_from([10000, 10000, 0.01]), "asset": st.sampled_from(ASSETS)})


def storyboard(spec: dict[str, Any], port: int) -> str:
    lines = ["version: 1", "title: Property", f"provider: {spec['provider']}", f"model: {spec['model']}"]
    if "budget_usd" in spec:
        lines.append(f"budget_usd: {spec['budget_usd']}")
    if "asset" in spec:
        lines += ["assets:", f"  still: \"{spec['asset'].format(port=port)}\""]
    lines.append("shots:")
    for i, s in enumerate(spec["shots"]):
        lines += [f"  - id: s{i}", f"    prompt: shot {i}"]
        lines += [f"    {k}: {v if k != 'aspect_ratio' else repr(v)}" for k, v in s.items()]
        if i == 0 and "asset" in spec:
            lines.append("    image: still")
    return "\n".join(lines) + "\n"


def paid_calls(url: str) -> int:
    stats = emulator_stats(url)
    return int(stats["submissions"]) + sum(stats["rejected_submissions"].values())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(spec=boards)
def test_validate_refuses_what_run_refuses_before_paying(spec: dict[str, Any], prefect_server: None, emulator: Any,
                                                         tmp_path_factory: pytest.TempPathFactory,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path_factory.mktemp("board")
    project = root / "project"
    write_image(project / "refs" / "a.png", (480, 270), seed=1)
    write_image(root / "outside.png", (480, 270), seed=2)
    (project / "notes.txt").write_text("not an image")
    point_hosts_at(emulator.url, monkeypatch)
    monkeypatch.setenv("STORYFILM_ALLOW_NETWORKS", "")
    httpx.post(f"{emulator.url}/_emulator/faults", json={"faults": "submit-503=0*all"}).raise_for_status()
    png = (project / "refs" / "a.png").read_bytes()
    with HttpsServers({"/a.png": send(png)}, root) as server, trusting(server.ca_file):
        path = project / "board.yaml"
        path.write_text(storyboard(spec, server.port))
        allow = ["--allow-network", "127.0.0.1/32"]
        checked = CliRunner().invoke(app, ["validate", str(path), "--output", str(root / "out"), *allow])
        assert checked.exit_code in (0, 1) and "Traceback" not in checked.output, checked.output
        before = paid_calls(emulator.url)
        ran = CliRunner().invoke(app, ["run", str(path), "--output", str(root / "out"), *allow])
        reached = paid_calls(emulator.url) > before
    event("validate refused" if checked.exit_code else "validate accepted")
    assert ran.exit_code == 1, ran.output  # every submit is refused: a run either stops before or at it
    if checked.exit_code == 1:
        assert not reached, f"validate refused, run paid:\n{path.read_text()}\n{checked.output}"
    else:
        assert reached, f"validate said ok, run refused before paying:\n{path.read_text()}\n{ran.output}"

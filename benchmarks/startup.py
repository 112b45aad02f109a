"""Start-up: how long until `storyfilm plan` prints, and until `storyfilm run` submits its first job.

    python -m benchmarks.startup [--repeat 5]

Both are the installed `storyfilm` command in a fresh process, as a user runs it. `plan` reads the shipped
storyboards/lighthouse.yaml (five shots, two chains, local images). `run` renders a one-shot WaveSpeed
storyboard against an emulator served by this benchmark's worker; the first submit is the moment the
emulator accepted the job (its own record), counted from the moment the command was started. `run` uses
Prefect's ephemeral mode (a temporary PREFECT_HOME, migrated by one run that is not counted), as a user
without a Prefect server does: the server `storyfilm run` starts itself while it imports Prefect
(temporary_server.py) and, meanwhile, the run prepared and its first job submitted (head_start.py);
interleaved with it, the same without the head start (STORYFILM_HEAD_START=0), and the server Prefect starts
at the flow's first API call (STORYFILM_EARLY_PREFECT_SERVER=0, as before issue 14); a fourth set points
PREFECT_API_URL at a running `prefect server` (no head start there: the server's concurrency limit rations
the host's slots).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import ROOT, Section, log, prefect_home, repeat_main, run_worker, spread, table
from benchmarks.orchestration import QUIET_PREFECT, cheap_renderer, storyboard


def command() -> list[str]:
    script = Path(sys.executable).parent / "storyfilm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "storyfilm"]


def time_to_output(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(seconds until the first byte on stdout, seconds until exit)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    proc.stdout.read(1)
    first = time.perf_counter() - start
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed: {err.decode(errors='replace')[-2000:]}")
    return first, time.perf_counter() - start


def imports(module: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)
    return time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prefect_server(home: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    exe = Path(sys.executable).parent / "prefect"
    env = {**os.environ, **QUIET_PREFECT, "PREFECT_HOME": home}
    proc = subprocess.Popen([str(exe), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 300  # 120 s ran out on the shared 2-core machine under load (~20)
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("prefect server did not start")


def first_submits(repeat: int, warm: bool = True) -> dict[str, Any]:
    """In a worker: serve the emulator, run `storyfilm run` `repeat` times per Prefect mode, time the first submit
    (after a warm-up run per mode unless `warm` is false: --quick checks that it works, it measures nothing)."""
    from benchmarks.common import operation

    def run() -> dict[str, Any]:
        from storyfilm.emulator import EmulatorConfig, EmulatorServer
        from storyfilm.emulator import jobs as emulator_jobs

        out: dict[str, list[dict[str, float]]] = {}
        with tempfile.TemporaryDirectory(prefix="storyfilm-bench-startup-") as tmp, \
                EmulatorServer(EmulatorConfig(latency=0.0)) as server:
            board = storyboard(Path(tmp) / "one.yaml", 1, 1)
            base = {**os.environ, **QUIET_PREFECT, "WAVESPEED_BASE_URL": server.url,
                    "WAVESPEED_API_KEY": "benchmark-key", "STORYFILM_POLL_INTERVAL": "0.1"}
            base.pop("PREFECT_API_URL", None)
            home = prefect_home(Path(tmp) / "prefect-home")
            server_proc, api = _prefect_server(prefect_home(Path(tmp) / "prefect-server-home"))
            try:
                modes = {"ephemeral Prefect server (default)": {**base, "PREFECT_HOME": home},
                         **({"ephemeral, server started early, no head start (STORYFILM_HEAD_START=0)":
                             {**base, "PREFECT_HOME": home, "STORYFILM_HEAD_START": "0"}} if warm else {}),
                         "ephemeral, started by Prefect at the first API call (before issue 14)":
                             {**base, "PREFECT_HOME": home, "STORYFILM_EARLY_PREFECT_SERVER": "0"},
                         "running Prefect server (PREFECT_API_URL)": {**base, "PREFECT_HOME": home,
                                                                      "PREFECT_API_URL": api}}
                if not warm:  # --quick: test_temporary_server.py and test_head_start.py run `storyfilm run` so
                    del modes["ephemeral Prefect server (default)"]
                for env in modes.values() if warm else ():  # not counted: database migrations, first imports
                    subprocess.run([*command(), "run", str(board), "--output", str(Path(tmp) / "warm")], env=env,
                                   cwd=tmp, check=True, capture_output=True)
                # a hosted model renders elsewhere: the emulator's render (~1 s of CPU) would compete with the
                # start-up measured here, more so since the job is submitted before Prefect's server is up
                if warm:  # (--quick measures nothing)
                    emulator_jobs.render_job = cheap_renderer(Path(tmp), 5, "480p")  # type: ignore[attr-defined]
                for r in range(repeat):
                    for m, (name, env) in enumerate(modes.items()):
                        server.emulator.reset()
                        t0 = time.time()
                        start = time.perf_counter()
                        proc = subprocess.run([*command(), "run", str(board), "--output", str(Path(tmp) / f"o{r}-{m}")],
                                              env=env, cwd=tmp, capture_output=True, text=True, check=False)
                        total = time.perf_counter() - start
                        if proc.returncode != 0:
                            raise RuntimeError(f"storyfilm run failed: {proc.stderr[-2000:]}")
                        jobs = list(server.emulator.store.jobs.values())
                        assert len(jobs) == 1, jobs
                        out.setdefault(name, []).append({"first_submit": jobs[0].created - t0, "total": total})
            finally:
                server_proc.terminate()
                server_proc.wait(timeout=30)
        return {"runs": out}

    return operation(run)


def run(repeat: int, quick: bool = False) -> list[Section]:
    section = Section("Start-up")
    rows = []
    log(f"start-up: storyfilm plan, {repeat} runs")
    plan = [time_to_output([*command(), "plan", "storyboards/lighthouse.yaml"]) for _ in range(repeat)]
    rows.append(("`storyfilm plan storyboards/lighthouse.yaml`: first output", spread([p[0] for p in plan])))
    rows.append(("`storyfilm plan`: process exit", spread([p[1] for p in plan])))
    for module in ("storyfilm.plan",) if quick else ("storyfilm.plan", "storyfilm.flow", "prefect"):  # one loop
        rows.append((f"`python -c 'import {module}'`", spread([imports(module) for _ in range(repeat)])))
    log(f"start-up: storyfilm run, {repeat} runs per Prefect mode")
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-prefect-") as home:
        measured = run_worker("startup:first_submits", {"repeat": repeat, "warm": not quick},
                              env={"PREFECT_HOME": home}, timeout=1800)
    for name, runs in measured.result["runs"].items():
        rows.append((f"`storyfilm run` (one shot), {name}: first submit",
                     spread([r["first_submit"] for r in runs])))
        rows.append((f"`storyfilm run` (one shot), {name}: process exit", spread([r["total"] for r in runs])))
    section.add(*table(("what", "seconds, median (min-max)"), rows), "",
                f"{repeat} runs each, in fresh processes.")
    return [section]


if __name__ == "__main__":
    repeat_main(run, __doc__ or "", 5)

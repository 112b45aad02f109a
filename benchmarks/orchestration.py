"""Orchestration overhead: a 12-shot storyboard (4 chains of 3) through the Prefect flow against the emulator.

    python -m benchmarks.orchestration [--latency 2] [--repeat 3]

The flow runs in a worker process in Prefect's ephemeral mode (a temporary PREFECT_HOME, warmed up by one
run first), with WaveSpeed pointed at an in-process emulator. Every run starts from an empty output
directory, so every shot is submitted, polled, downloaded and kept, and the film is assembled.

The emulator renders each job for real (the animatic, on the same 2 cores), so a job takes the longer of
its configured latency and its render. Each job's actual span (submit to completion) is read from the
emulator's own records; the critical path is the longest chain's sum of spans (with concurrency 1: the sum
over all jobs, which then cannot overlap). Overhead = wall time - critical path: everything storyfilm,
Prefect and the client side of HTTP add. The shots are 4 s at 480p to keep the renders cheap.

Polling: 0.1 s between status checks (STORYFILM_POLL_INTERVAL and _MAX_INTERVAL), so noticing a finished
job costs at most 0.1 s. The defaults for real hosts (5 s, growing to 15 s) trade that for fewer calls.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Section, log, median, run_worker, table

CHAINS, PER_CHAIN = 4, 3
PROMPTS = ["dawn harbour, slow push-in", "gulls over the pier, pan right", "night storm at sea, wind",
           "warm lamp light, close-up"]
QUIET_PREFECT = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
                 "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL"}


def storyboard(path: Path, chains: int = CHAINS, per_chain: int = PER_CHAIN, seconds: int = 4,
               resolution: str = "480p", method: str = "frame") -> Path:
    """Chains of continued shots; every prompt starts with its shot id (to find its job in the emulator)."""
    lines = ["version: 1", "title: Orchestration benchmark", "provider: wavespeed", "model: standard",
             f"defaults: {{duration: {seconds}, resolution: {resolution}, aspect_ratio: '16:9', audio: true, seed: 1, "
             f"method: {method}}}", "shots:"]
    for c in range(chains):
        for s in range(per_chain):
            shot = f"c{c + 1}s{s + 1}"
            lines.append(f"  - id: {shot}")
            lines.append(f"    prompt: '{shot}: {PROMPTS[(c + s) % len(PROMPTS)]}'")
            if s == 0 and c:
                lines.append("    cut: true")
    path.write_text("\n".join(lines) + "\n")
    return path


def _analyse(jobs: list[Any], t0: float, t1: float, finish: dict[str, float], concurrency: int) -> dict[str, Any]:
    spans: dict[str, tuple[float, float]] = {}
    for job in jobs:
        shot = job.prompt.split(":", 1)[0]
        done = max(job.created + job.latency, job.render_done_at or 0.0)
        spans[shot] = (job.created, done)
    chains: dict[str, list[str]] = {}
    for shot in sorted(spans):
        chains.setdefault(shot.split("s")[0], []).append(shot)
    latency = {shot: end - start for shot, (start, end) in spans.items()}
    if concurrency == 1:
        path, steps = sum(latency.values()), len(latency)
    else:
        path, steps = max(sum(latency[s] for s in chain) for chain in chains.values()), max(map(len, chains.values()))
    # between a job finishing and the next job of its chain being submitted: poll, download, cut the echo,
    # keep the last frame, ledger, Prefect task state, upload, submit
    gaps = [spans[b][0] - spans[a][1] for chain in chains.values() for a, b in zip(chain, chain[1:], strict=False)]
    wall = t1 - t0
    fixed = finish["assemble"] + finish["exports"]
    return {"wall": wall, "path": path, "steps": steps, "overhead": wall - path,
            "first_submit": min(s for s, _ in spans.values()) - t0,
            "generated": finish["assemble_start"] - t0,  # every shot kept, assembly about to start
            "gap_median": median(gaps) if gaps else 0.0, "gap_max": max(gaps, default=0.0),
            "assemble": finish["assemble"], "exports": finish["exports"],
            "per_shot": (wall - path - fixed - (min(s for s, _ in spans.values()) - t0)) / steps,
            "render_median": median(j.render_done_at - j.created for j in jobs if j.render_done_at),
            "jobs": len(jobs)}


def measure(latency: float, repeat: int, chains: int = CHAINS, per_chain: int = PER_CHAIN, seconds: int = 4,
            resolution: str = "480p") -> dict[str, Any]:
    """In a worker: warm up, then each scenario `repeat` times, interleaved."""
    from benchmarks.common import operation

    def run() -> dict[str, Any]:
        from storyfilm import flow as film_flow
        from storyfilm.emulator import EmulatorConfig, EmulatorServer
        from storyfilm.providers import SPECS

        finish: dict[str, float] = {}

        def timed(name: str, fn: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                finish[f"{name}_start"] = start
                try:
                    return fn(*args, **kwargs)
                finally:
                    finish[name] = time.perf_counter() - start
            return wrapper

        film_flow.make_film = timed("assemble", film_flow.make_film)  # type: ignore[attr-defined]
        film_flow.write_exports = timed("exports", film_flow.write_exports)  # type: ignore[attr-defined]
        results: dict[str, list[dict[str, Any]]] = {}
        with tempfile.TemporaryDirectory(prefix="storyfilm-bench-orch-") as tmp, \
                EmulatorServer(EmulatorConfig(latency=0.0, render_workers=chains)) as server:
            for spec in SPECS.values():
                if spec.base_url_env and spec.api_key_env:
                    os.environ[spec.base_url_env] = server.url
                    os.environ[spec.api_key_env] = "benchmark-key"
            # one file name (the film's name, and its Prefect tags) for every run, like one storyboard run again
            for m in ("frame", "extend", "warm"):
                (Path(tmp) / m).mkdir()
            boards = {m: storyboard(Path(tmp) / m / "board.yaml", chains, per_chain, seconds, resolution, m)
                      for m in ("frame", "extend")}
            warm = storyboard(Path(tmp) / "warm" / "board.yaml", 1, 2, seconds, resolution, "extend")
            film_flow.film(storyboard=str(warm), output_dir=str(Path(tmp) / "warm"))  # starts Prefect's server
            n = film_flow.DEFAULT_CONCURRENCY
            scenarios = [("latency 0, chains concurrent", 0.0, n, "frame"),
                         (f"latency {latency:g} s, chains concurrent", latency, n, "frame"),
                         (f"latency {latency:g} s, one shot at a time", latency, 1, "frame"),
                         (f"latency {latency:g} s, chains concurrent, extend", latency, n, "extend")]
            for _ in range(repeat):
                for name, lat, concurrency, method in scenarios:
                    server.emulator.reset()
                    server.emulator.config = EmulatorConfig(latency=lat, render_workers=chains)
                    film_flow.DEFAULT_CONCURRENCY = concurrency
                    out = Path(tmp) / f"out-{len(results.get(name, []))}-{concurrency}-{lat}-{method}"
                    finish.clear()
                    t0 = time.perf_counter()
                    wall0 = time.time()
                    film_flow.film(storyboard=str(boards[method]), output_dir=str(out))
                    t1 = time.perf_counter()
                    jobs = list(server.emulator.store.jobs.values())
                    assert len(jobs) == chains * per_chain, f"{len(jobs)} jobs for {chains * per_chain} shots"
                    # job times are wall-clock; the rest is perf_counter: convert job times to it
                    for job in jobs:
                        job.created += t0 - wall0
                        if job.render_done_at:
                            job.render_done_at += t0 - wall0
                    results.setdefault(name, []).append({**_analyse(jobs, t0, t1, finish, concurrency),
                                                         "concurrency": concurrency, "latency": lat})
        return {"results": results}

    return operation(run)


def run(latency: float, repeat: int, quick: bool = False) -> list[Section]:
    chains, per_chain, seconds = (2, 2, 4) if quick else (CHAINS, PER_CHAIN, 4)
    section = Section(f"Orchestration: {chains * per_chain} shots in {chains} chains of {per_chain}, "
                      f"WaveSpeed on the emulator")
    log(f"orchestration: latency 0 and {latency:g} s, {repeat} runs each")
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-prefect-") as home:
        measured = run_worker("orchestration:measure",
                              {"latency": latency, "repeat": repeat, "chains": chains, "per_chain": per_chain,
                               "seconds": seconds, "resolution": "480p"},
                              env={**QUIET_PREFECT, "PREFECT_HOME": home, "STORYFILM_POLL_INTERVAL": "0.1",
                                   "STORYFILM_POLL_MAX_INTERVAL": "0.1"}, timeout=1800)
    results: dict[str, list[dict[str, Any]]] = measured.result["results"]
    rows = []
    for name, runs in results.items():
        def m(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return median(r[key] for r in runs)

        rows.append((name, f"{m('wall'):.2f}", f"{m('path'):.2f} ({runs[0]['steps']} jobs)", f"{m('overhead'):.2f}",
                     f"{m('first_submit'):.2f}", f"{m('gap_median'):.2f} / {m('gap_max'):.2f}",
                     f"{m('assemble') + m('exports'):.2f}", f"{m('per_shot'):.2f}", f"{m('render_median'):.2f}"))
    section.add(*table(("scenario", "wall s", "critical path s", "overhead s", "to first submit s",
                        "gap between jobs of a chain s (median / max)", "assembly + exports s",
                        "overhead per shot s", "render per job s (median)"), rows), "")
    for name, runs in results.items():
        per_shot = median(r["per_shot"] for r in runs)
        section.check(f"orchestration overhead under 0.5 s per shot ({name})", f"{per_shot:.2f} s", per_shot < 0.5)
    names = list(results)
    conc, seq = results[names[1]], results[names[2]]
    ideal = median(r["path"] for r in seq) / median(r["path"] for r in conc)
    speed = median(r["wall"] for r in seq) / median(r["wall"] for r in conc)
    gen = median(r["generated"] for r in seq) / median(r["generated"] for r in conc)
    section.add(f"Medians of {repeat} runs per scenario, interleaved, in one process (Prefect's ephemeral server "
                "warmed up by one run). Overhead per shot = (wall - critical path - time to the first submit "
                "- assembly and exports) / jobs on the critical path.", "",
                f"Concurrent chains against one shot at a time: {speed:.2f}x faster for the whole run, "
                f"{gen:.2f}x for generation alone (start to every shot kept); ideal {ideal:.2f}x "
                "(ratio of the critical paths).")
    section.check("concurrent chains close to the ideal speed-up (generation; at least 90% of it)",
                  f"{gen:.2f}x of an ideal {ideal:.2f}x ({gen / ideal:.0%})", gen >= 0.9 * ideal)
    return [section]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("\n".join(s.markdown() for s in run(args.latency, args.repeat)))


if __name__ == "__main__":
    main()

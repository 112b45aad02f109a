"""Orchestration overhead: a 12-shot storyboard (4 chains of 3) through the Prefect flow against the emulator.

    python -m benchmarks.orchestration [--latency 2] [--repeat 3]

The flow runs in a worker process in Prefect's ephemeral mode (a temporary PREFECT_HOME, warmed up by one
run first), with WaveSpeed pointed at an in-process emulator, with `concurrency=4` (one slot per chain; a
hosted provider's default is 2) against `concurrency=1` (every shot in sequence). Every run starts from an empty output
directory, so every shot is submitted, polled, downloaded and kept, and the film is assembled.

The emulator normally renders each job with the animatic, real CPU work on the same 2 cores that would
compete with the client being measured (a hosted model renders elsewhere). Here each job's output is a copy
of a clip the real renderer made once before the timed runs (an extend's output: the uploaded input followed
by such a clip, joined by stream copy), so a job takes its configured latency and the emulator adds no work
beyond HTTP. The client does everything it does against a real host: uploads, price quote, submit, polls,
download, the extend echo cut, the last frame, the ledger, Prefect's task runs, then the assembly and exports.
Each job's span (submit to completion) is read from the emulator's records; the critical path is the
longest chain's sum of spans (with concurrency 1, the sum over all jobs, which then cannot overlap).
Overhead = wall time - critical path. The shots are 5 s at 480p (the shortest image-to-video length and the
smallest size WaveSpeed makes).

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

from benchmarks.common import Section, log, median, prefect_home, run_worker, table

CHAINS, PER_CHAIN = 4, 3
PROMPTS = ["dawn harbour, slow push-in", "gulls over the pier, pan right", "night storm at sea, wind",
           "warm lamp light, close-up"]
# The ephemeral server gets 90 s to start, as `storyfilm run` gives it: 20 s timed out on a loaded machine.
QUIET_PREFECT = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
                 "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
                 "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}


def storyboard(path: Path, chains: int = CHAINS, per_chain: int = PER_CHAIN, seconds: int = 5,
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


def cheap_renderer(directory: Path, seconds: int, resolution: str) -> Any:
    """A stand-in for the emulator's `render_job`: the same files, copied from clips the animatic made once."""
    import shutil

    import httpx

    from storyfilm.animatic import AnimaticSpec, render
    from storyfilm.emulator import media
    from storyfilm.emulator.catalog import FPS, output_size
    from storyfilm.media import ffmpeg, probe
    from storyfilm.media.ffmpeg import VideoFormat

    fmt = VideoFormat(*output_size(resolution, "16:9"), FPS)
    fresh, new = directory / "fresh.mp4", directory / "new.mp4"
    render(AnimaticSpec(fmt=fmt, frames=seconds * FPS + 1, prompt="a harbour at dawn", overlay="a harbour"), fresh)
    render(AnimaticSpec(fmt=fmt, frames=seconds * FPS, prompt="a harbour at dusk", overlay="a harbour"), new)

    def render_job(req: Any, out_dir: Path, name: str) -> Any:
        assert (req.duration, req.resolution) == (seconds, resolution), req
        out_dir.mkdir(parents=True, exist_ok=True)
        video = out_dir / f"{name}.mp4"
        if req.kind == "extend":
            with tempfile.TemporaryDirectory(prefix="cheap-extend-") as scratch, httpx.Client(timeout=30) as client:
                source = media.fetch(req.video, Path(scratch) / "input.mp4", client)
                listing = Path(scratch) / "list.txt"
                listing.write_text(f"file '{source}'\nfile '{new}'\n")
                ffmpeg.run(["-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(video)])
        else:
            shutil.copyfile(fresh, video)
        last = probe.save_png(probe.last_frame(video), out_dir / f"{name}.last.png") if req.last_frame else None
        return media.Rendered(video=video, last_frame=last)

    return render_job


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
    first = min(s for s, _ in spans.values())
    start = first - t0  # flow run, storyboard and plan, task runs, the first uploads and submit
    end = t1 - (finish["exports_start"] + finish["exports"])  # the summary artifact, the flow run's end
    assemble = finish["finish"] - finish["exports"]  # the join and the seam report
    fixed = start + assemble + finish["exports"] + end
    return {"wall": wall, "path": path, "steps": steps, "overhead": wall - path, "start": start, "end": end,
            "generation": finish["finish_start"] - first,  # first submit to every shot kept
            "gap_median": median(gaps) if gaps else 0.0, "gap_max": max(gaps, default=0.0),
            "assemble": assemble, "exports": finish["exports"],
            # what is left is paid shot by shot along the critical path
            "per_shot": (wall - path - fixed) / steps, "jobs": len(jobs)}


def measure(latency: float, repeat: int, chains: int = CHAINS, per_chain: int = PER_CHAIN, seconds: int = 5,
            resolution: str = "480p", quick: bool = False) -> dict[str, Any]:
    """In a worker: warm up, then each scenario `repeat` times, interleaved (`quick`: a one-shot warm-up and no
    latency-0 scenario, which runs the same code as the next one)."""
    from benchmarks.common import operation

    def run() -> dict[str, Any]:
        from storyfilm import exports as film_exports
        from storyfilm import flow as film_flow
        from storyfilm import session as film_session
        from storyfilm.emulator import EmulatorConfig, EmulatorServer
        from storyfilm.emulator import jobs as emulator_jobs
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

        film_session.FilmJob.finish = timed("finish", film_session.FilmJob.finish)  # type: ignore[method-assign]
        film_exports.write_all = timed("exports", film_exports.write_all)
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
            warm = storyboard(Path(tmp) / "warm" / "board.yaml", 1, 1 if quick else 2, seconds, resolution, "extend")
            film_flow.film(storyboard=str(warm), output_dir=str(Path(tmp) / "warm"),  # starts Prefect's server
                           concurrency=chains)
            renders = [j.render_done_at - j.created for j in server.emulator.store.jobs.values() if j.render_done_at]
            emulator_jobs.render_job = cheap_renderer(Path(tmp), seconds, resolution)  # type: ignore[attr-defined]
            n = chains  # one slot per chain (--concurrency; a hosted provider's default is 2)
            scenarios = [("latency 0, chains concurrent", 0.0, n, "frame"),
                         (f"latency {latency:g} s, chains concurrent", latency, n, "frame"),
                         (f"latency {latency:g} s, one shot at a time", latency, 1, "frame"),
                         (f"latency {latency:g} s, chains concurrent, extend", latency, n, "extend")]
            if quick:
                scenarios = scenarios[1:]
            for _ in range(repeat):
                for name, lat, concurrency, method in scenarios:
                    server.emulator.reset()
                    server.emulator.config = EmulatorConfig(latency=lat, render_workers=chains)
                    out = Path(tmp) / f"out-{len(results.get(name, []))}-{concurrency}-{lat}-{method}"
                    finish.clear()
                    t0 = time.perf_counter()
                    wall0 = time.time()
                    film_flow.film(storyboard=str(boards[method]), output_dir=str(out), concurrency=concurrency)
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
        return {"results": results, "real_renders": renders}

    return operation(run)


def run(latency: float, repeat: int, quick: bool = False) -> list[Section]:
    chains, per_chain, seconds = (2, 2, 5) if quick else (CHAINS, PER_CHAIN, 5)
    section = Section(f"Orchestration: {chains * per_chain} shots in {chains} chains of {per_chain}, "
                      f"WaveSpeed on the emulator")
    log(f"orchestration: latency {'' if quick else '0 and '}{latency:g} s, {repeat} runs each")
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-prefect-") as home:
        measured = run_worker("orchestration:measure",
                              {"latency": latency, "repeat": repeat, "chains": chains, "per_chain": per_chain,
                               "seconds": seconds, "resolution": "480p", "quick": quick},
                              env={**QUIET_PREFECT, "PREFECT_HOME": prefect_home(home),
                                   "STORYFILM_POLL_INTERVAL": "0.1", "STORYFILM_POLL_MAX_INTERVAL": "0.1"},
                              timeout=1800)
    results: dict[str, list[dict[str, Any]]] = measured.result["results"]
    rows = []
    for name, runs in results.items():
        def m(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return median(r[key] for r in runs)

        rows.append((name, f"{m('wall'):.2f}", f"{m('path'):.2f} ({runs[0]['steps']} jobs)", f"{m('overhead'):.2f}",
                     f"{m('start'):.2f}", f"{m('assemble') + m('exports'):.2f}", f"{m('end'):.2f}",
                     f"{m('per_shot'):.2f}", f"{m('gap_median'):.2f} / {m('gap_max'):.2f}"))
    section.add(*table(("scenario", "wall s", "critical path s", "overhead s", "of which: start to the first submit s",
                        "assembly + exports s", "summary artifact + end of the flow run s",
                        "the rest, per shot on the critical path s", "gap between jobs of a chain s (median / max)"),
                       rows), "")
    for name, runs in results.items():
        per_shot = median(r["per_shot"] for r in runs)
        section.check(f"orchestration overhead under 0.5 s per shot ({name})", f"{per_shot:.2f} s", per_shot < 0.5)
    conc, seq = (results[f"latency {latency:g} s, {name}"] for name in ("chains concurrent", "one shot at a time"))
    ideal = median(r["path"] for r in seq) / median(r["path"] for r in conc)
    speed = median(r["wall"] for r in seq) / median(r["wall"] for r in conc)
    gen = median(r["generation"] for r in seq) / median(r["generation"] for r in conc)
    real = measured.result["real_renders"]
    section.add(f"Medians of {repeat} runs per scenario, interleaved, in one process (Prefect's ephemeral server "
                "warmed up by one run with real renders). The overhead (wall - critical path) is split into what "
                "a run pays once (its start, the assembly and exports, its end) and the rest, paid shot by shot: "
                "noticing a finished job (polls every 0.1 s), downloading it, keeping it (probe, the extend echo "
                "cut, the last frame), the ledger, Prefect's task runs, the next upload, price quote and submit. "
                "The gap between jobs of a chain is from one job's completion to the next one's submission (with "
                "one shot at a time it includes waiting for the other chains).", "",
                f"Concurrent chains against one shot at a time: {gen:.2f}x faster from the first submit until every "
                f"shot is kept, {speed:.2f}x for the whole run (start-up, assembly and exports included); ideal "
                f"{ideal:.2f}x (the ratio of the critical paths).", "",
                f"The emulator's real renders (warm-up run, {len(real)} jobs, {seconds} s at 480p): "
                f"{median(real):.2f} s per job (median) on this machine, which the timed runs replace by copies.")
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

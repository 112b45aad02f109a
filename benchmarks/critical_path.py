"""Critical-path-first provider slots: films with one long chain among short ones, 2 slots, on the emulator.

    python -m benchmarks.critical_path [--latency 4] [--repeat 1]

Three films of 12 five-second shots in chains of 6, 1, 1, 1, 1 and 2 shots, the long chain first, in the
middle or last in the storyboard; WaveSpeed (fast tier) on an in-process emulator whose jobs take a fixed
latency (each job's output is a copy of a clip rendered once, as in orchestration.py: the emulator adds no
CPU work), `concurrency=2`, the flow in Prefect's ephemeral mode (so the slots are this process's gate).

Everything is read from each film's manifest: a shot's generation is `finished_at - started_at` (slot taken
to segment kept: upload, submit, the job's latency, polls, download, keeping it). The lower bound on when
generation can end is max(the longest chain's generation, all generation / 2 slots); the measured end is
the last `finished_at` after the first `started_at`. The first film is also run with slots handed out first
come, first served (the gate without urgencies: how runs took slots before), for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Section, log, median, prefect_home, run_worker, table
from benchmarks.orchestration import QUIET_PREFECT, cheap_renderer

SHAPES = {"long chain first": [6, 1, 1, 1, 1, 2], "long chain in the middle": [1, 1, 6, 1, 2, 1],
          "long chain last": [1, 1, 1, 1, 2, 6]}
QUICK = [3, 1, 1]  # --quick: the first film's shape, smaller (a long chain first among short ones)
SLOTS = 2
SECONDS = 5


def storyboard(path: Path, chains: list[int]) -> Path:
    lines = ["version: 1", "title: Critical path", "provider: wavespeed", "model: fast",
             f"defaults: {{duration: {SECONDS}, resolution: 480p, aspect_ratio: '16:9', audio: true, method: frame}}",
             "shots:"]
    for c, length in enumerate(chains):
        for s in range(length):
            lines.append(f"  - {{id: c{c + 1}s{s + 1}, prompt: 'chain {c + 1} shot {s + 1}: a harbour at dawn'"
                         + (", cut: true}" if s == 0 and c else "}"))
    path.write_text("\n".join(lines) + "\n")
    return path


def _t(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def analyse(manifest: dict[str, Any], slots: int = SLOTS) -> dict[str, float]:
    """The generation span against its lower bound, from a manifest's timestamps."""
    shots = [s for s in manifest["shots"] if s["started_at"]]
    took = {s["id"]: _t(s["finished_at"]) - _t(s["started_at"]) for s in shots}
    chains: dict[int, float] = {}
    for s in shots:
        chains[s["chain"]] = chains.get(s["chain"], 0.0) + took[s["id"]]
    span = max(_t(s["finished_at"]) for s in shots) - min(_t(s["started_at"]) for s in shots)
    bound = max(max(chains.values()), sum(took.values()) / slots)
    waited = sum(_t(s["started_at"]) - _t(s["queued_at"]) for s in shots)
    longest = max(chains, key=chains.__getitem__)
    first = min(_t(s["started_at"]) for s in shots)
    long_root = min(_t(s["started_at"]) for s in shots if s["chain"] == longest) - first
    gaps = [_t(b["started_at"]) - _t(a["finished_at"]) for a, b in zip(shots, shots[1:], strict=False)
            if b["continues"] == a["id"] and b["chain"] == longest]
    return {"long_root": long_root, "long_gaps": sum(gaps), "span": span, "bound": bound, "ratio": span / bound,
            "longest": max(chains.values()), "total": sum(took.values()), "per_shot": median(took.values()),
            "waited": waited, "shots": len(shots)}


SERVER = " (Prefect server: global concurrency limit)"


def measure(latency: float, repeat: int, quick: bool = False, server_mode: bool = False) -> dict[str, Any]:
    """In a worker: one warm-up film, then each film `repeat` times (and the first one first come, first served);
    with `server_mode` (PREFECT_API_URL set: slots of the limit storyfilm-wavespeed), the first film only."""
    from benchmarks.common import operation

    def run() -> dict[str, Any]:
        from storyfilm import flow as film_flow
        from storyfilm.emulator import EmulatorConfig, EmulatorServer
        from storyfilm.emulator import jobs as emulator_jobs
        from storyfilm.providers import SPECS

        out: dict[str, list[dict[str, float]]] = {}
        with tempfile.TemporaryDirectory(prefix="storyfilm-bench-cp-") as tmp, \
                EmulatorServer(EmulatorConfig(latency=0.0, render_workers=SLOTS)) as server:
            for spec in SPECS.values():
                if spec.base_url_env and spec.api_key_env:
                    os.environ[spec.base_url_env] = server.url
                    os.environ[spec.api_key_env] = "benchmark-key"
            emulator_jobs.render_job = cheap_renderer(Path(tmp), SECONDS, "480p")  # type: ignore[attr-defined]
            warm = storyboard(Path(tmp) / "warm.yaml", [1, 1])
            if not quick:  # Prefect's server and the imports warmed up, as in orchestration.py
                film_flow.film(storyboard=str(warm), output_dir=str(Path(tmp) / "warm"), concurrency=SLOTS)
            runs = [(name, chains, True) for name, chains in SHAPES.items()][:1 if quick or server_mode else None]
            if quick:
                runs = [(runs[0][0], QUICK, True)]
            if server_mode:
                runs = [(name + SERVER, chains, urgent) for name, chains, urgent in runs]
            elif not quick:
                runs.append(("long chain first, first come first served", SHAPES["long chain first"], False))
            real_urgencies = film_flow.urgencies
            for k in range(repeat):
                for name, chains, urgent in runs:
                    server.emulator.reset()  # back to the configuration it started with: set the latency again
                    server.emulator.config = EmulatorConfig(latency=latency, render_workers=SLOTS)
                    film_flow.urgencies = real_urgencies if urgent else (lambda *_: {})  # type: ignore[assignment]
                    board = storyboard(Path(tmp) / f"board-{len(out)}-{k}.yaml", chains)
                    result = film_flow.film(storyboard=str(board), output_dir=str(Path(tmp) / f"out-{name}-{k}"),
                                            concurrency=SLOTS)
                    manifest = json.loads(Path(result["manifest"]).read_text())
                    out.setdefault(name, []).append({**analyse(manifest), "load": os.getloadavg()[0]})
                    if k == 0 and urgent and name == "long chain first" and not quick and not server_mode:
                        picture = Path(result["manifest"]).parent / "timeline.png"
                        out.setdefault("_pictures", []).append({"bytes": float(len(picture.read_bytes()))})
                        (Path(__file__).parent / "critical-path-timeline.png").write_bytes(picture.read_bytes())
            film_flow.urgencies = real_urgencies  # type: ignore[assignment]
        return {"results": out}

    return operation(run)


def run(latency: float, repeat: int, quick: bool = False) -> list[Section]:
    first = QUICK if quick else SHAPES["long chain first"]
    section = Section(f"Critical path first: {sum(first)} shots in chains of {', '.join(map(str, first))} on {SLOTS} "
                      f"slots, WaveSpeed on the emulator (latency {latency:g} s)")
    log(f"critical path: latency {latency:g} s, {repeat} run(s) of each film")
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-prefect-") as home:
        measured = run_worker("critical_path:measure", {"latency": latency, "repeat": repeat, "quick": quick},
                              env={**QUIET_PREFECT, "PREFECT_HOME": prefect_home(home),
                                   "STORYFILM_POLL_INTERVAL": "0.1", "STORYFILM_POLL_MAX_INTERVAL": "0.1"},
                              timeout=1800)
    results: dict[str, list[dict[str, float]]] = measured.result["results"]
    results.pop("_pictures", None)
    if not quick:  # the same with a running `prefect server start` (its own home), one film
        from benchmarks.startup import _prefect_server

        with tempfile.TemporaryDirectory(prefix="storyfilm-bench-prefect-") as home:
            log("critical path: the first film with a Prefect server")
            server, api = _prefect_server(str(Path(home) / "server"))
            try:
                env = {**QUIET_PREFECT, "PREFECT_HOME": str(Path(home) / "client"), "PREFECT_API_URL": api,
                       "STORYFILM_POLL_INTERVAL": "0.1", "STORYFILM_POLL_MAX_INTERVAL": "0.1"}
                served = run_worker("critical_path:measure",
                                    {"latency": latency, "repeat": repeat, "server_mode": True}, env=env, timeout=1800)
            finally:
                server.terminate()
                server.wait(timeout=30)
        results.update(served.result["results"])
    rows = []
    for name, runs in results.items():
        def m(key: str, runs: list[dict[str, float]] = runs) -> float:
            return median(r[key] for r in runs)

        rows.append((name, f"{m('span'):.1f}", f"{m('longest'):.1f}", f"{m('total') / SLOTS:.1f}", f"{m('bound'):.1f}",
                     f"**{m('ratio'):.3f}**", f"{m('per_shot'):.2f}", f"{m('waited'):.1f}",
                     f"{m('long_root'):.1f}", f"{m('long_gaps'):.1f}", f"{m('load'):.1f}"))
    section.add(*table(("film", "generation s (first slot taken to last shot kept)", "longest chain s",
                        f"all generation / {SLOTS} slots s", "lower bound s", "ratio to the bound",
                        "one shot s (median)", "waited for a slot s (sum)",
                        "long chain's first shot started after s", "long chain: parent kept to next started s (sum)",
                        "load average (1 min) at the film's end"),
                       rows), "")
    section.add(f"Medians of {repeat} run(s) per film, from the manifests' `started_at` / `finished_at` (a shot's "
                "generation: slot taken to segment kept)."
                + (" The row 'first come first served' hands slots out as runs did before the gate: short "
                   "chains take the slots while the long chain's next shot waits. The row 'Prefect server' runs "
                   "against a `prefect server start` of its own (temporary home, free port): the slots are the "
                   "global concurrency limit storyfilm-wavespeed, asked for in the gate's order. "
                   "The timeline of the first film: `benchmarks/critical-path-timeline.png`." if not quick else ""), "")
    for name in [n for n in [*SHAPES, *(s + SERVER for s in SHAPES)] if n in results]:
        ratio = median(r["ratio"] for r in results[name])
        section.check(f"critical path first: generation within 1.10x of its lower bound ({name}, {SLOTS} slots)",
                      f"{ratio:.3f}x", ratio <= 1.10)
    return [section]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print("\n".join(s.markdown() for s in run(args.latency, args.repeat)))


if __name__ == "__main__":
    main()

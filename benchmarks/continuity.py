"""Continuity: the cost of measuring a hop and of holding a segment, and which hold keeps a chain's look best.

    python -m benchmarks.continuity [--repeat 3] [--out benchmarks/continuity.md]   (about 10 minutes on 2 cores)
    python -m benchmarks.continuity --quick      # tiny inputs, one run: checks that it works, prints only

Cost: one 5 s 720p continued shot rendered by the local animatic with drift, then, in turn and interleaved
over the repeats: measuring it as a hop (decode its first and last frames, colour statistics of both),
holding it (meanstd and histogram), and normalising it (the re-encode the runner does on arrival for
another encoder's output), against rendering it. Wall time, and CPU time (this process and its ffmpeg
children): the machine is shared, so read the ratios.

Which hold: six-shot chains (2 s at 640x360, drift contrast=0.06,saturation=0.05 and all four drifts,
static and handheld camera) rendered without drift, with drift, and with drift held hop by hop by each
method. Per method: the last hop's ΔE from the anchor (what the hold is for), and how far the held last
frames are, pixel by pixel (mean CIEDE2000), from the same chain rendered without drift (the look the
hold should restore; with a moving camera the content changes too). The picture shows the last frames.
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import ROOT, Section, load, log, machine, median, table
from storyfilm import session
from storyfilm.animatic import AnimaticSpec, render, title_card
from storyfilm.colour_hold import METHODS, hold_segment
from storyfilm.continuity import ciede2000, frame_stats, sample, srgb_to_lab
from storyfilm.drift import parse_drift
from storyfilm.media import ffmpeg, probe, rgb
from storyfilm.media.ffmpeg import VideoFormat
from storyfilm.plan import ShotPlan
from storyfilm.results import ShotResult

sys.path.insert(0, str(ROOT))
from tests.chains import render_chain  # noqa: E402 - the chains the tests check, made as the runner will

RESULTS = ROOT / "benchmarks" / "continuity.md"
NOTES_MARKER = "<!-- notes below this line are kept when `python -m benchmarks.continuity` rewrites this file -->"
PICTURE = ROOT / "benchmarks" / "continuity-methods.png"
HD, MID = VideoFormat(1280, 720), VideoFormat(640, 360)
DRIFTS = ("contrast=0.06,saturation=0.05", "contrast=0.06,saturation=0.05,brightness=0.02,warmth=0.03")


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - wall, _cpu() - cpu


def cost(repeat: int, work: Path, fmt: VideoFormat = HD, seconds: int = 5) -> Section:
    section = Section(f"Cost per {seconds} s segment at {fmt.width}x{fmt.height}")
    start = title_card("dusk over the harbour", 3, fmt)
    anchor = frame_stats(start)
    spec = AnimaticSpec(fmt=fmt, frames=seconds * fmt.fps + 1, prompt="the keeper climbs", seed=1, camera="push_in",
                        start=start, keyframes=(1,), drift=parse_drift(DRIFTS[0]))
    segment = work / "segment.mp4"

    def measure() -> None:
        first, last = rgb.first_and_last(segment)
        frame_stats(first), frame_stats(last)

    steps: dict[str, Callable[[], object]] = {
        "render (local animatic, with drift)": lambda: render(spec, segment),
        "normalise (the on-arrival re-encode, `cut_args`)": lambda: ffmpeg.run(
            ffmpeg.cut_args(segment, work / "normalised.mp4", fmt, 0, fmt.fps)),
        "measure a hop (decode first and last frames, statistics of both)": measure,
        **{f"hold, {m}": (lambda m=m: hold_segment(segment, work / f"held-{m}.mp4", anchor, fmt, method=m))
           for m in METHODS},
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for r in range(repeat):
        log(f"continuity cost: run {r + 1} of {repeat}")
        for name, step in steps.items():
            times[name].append(_timed(step))
    render_wall = median(w for w, _ in times[next(iter(steps))])
    render_cpu = median(c for _, c in times[next(iter(steps))])
    norm_wall = median(w for w, _ in times["normalise (the on-arrival re-encode, `cut_args`)"])
    rows = []
    for name in steps:
        wall, cpu = median(w for w, _ in times[name]), median(c for _, c in times[name])
        rows.append((name, f"{wall:.2f}", f"{cpu:.2f}", f"{wall / render_wall:.2f}", f"{cpu / render_cpu:.2f}",
                     f"{wall / norm_wall:.2f}"))
    frames = probe.probe(segment).video.frames  # type: ignore[union-attr]
    section.add(*table(("step", "wall s", "CPU s", "wall / render", "CPU / render", "wall / normalise"), rows), "",
                f"Medians of {repeat} interleaved runs on one {frames}-frame segment (a continued shot: the seam "
                f"copy and {seconds} s).")
    return section


def _pixel_delta_e(a: np.ndarray, b: np.ndarray) -> float:
    return float(ciede2000(srgb_to_lab(sample(a, 40_000)), srgb_to_lab(sample(b, 40_000))).mean())


def methods(work: Path, fmt: VideoFormat = MID, seconds: int = 2, length: int = 6,
            cases: tuple[tuple[str, str], ...] = tuple((c, d) for c in ("static", "handheld") for d in DRIFTS)
            ) -> tuple[Section, list[np.ndarray]]:
    section = Section(f"Which hold: {length}-shot chains of {seconds} s at {fmt.width}x{fmt.height}")
    start = probe.save_png(title_card("dusk over the harbour", 3, fmt), work / "start.png")
    rows, strips = [], []
    for camera, drift in cases:
        log(f"continuity methods: {camera}, {drift}")
        tag = f"{camera}-{len(drift)}"
        clean = render_chain(work / f"clean-{tag}", start, drift=parse_drift(""), camera=camera,
                             seconds=seconds, fmt=fmt, length=length)
        clean_last = [rgb.first_and_last(s)[1] for s in clean.segments]
        strip = [clean_last[-1]]
        for method in (None, *METHODS):
            chain = render_chain(work / f"{method}-{tag}", start, drift=parse_drift(drift), hold=method,
                                 camera=camera, seconds=seconds, fmt=fmt, length=length)
            assert chain.report is not None
            last = [rgb.first_and_last(s)[1] for s in chain.segments]
            pixel = [_pixel_delta_e(a, b) for a, b in zip(last, clean_last, strict=True)]
            rows.append((camera, drift, method or "not held", f"{chain.report.hops[-1].delta_e:.2f}",
                         f"{chain.report.max_delta_e:.2f}", "yes" if chain.report.flagged else "no",
                         f"{pixel[-1]:.2f}", f"{np.mean(pixel):.2f}"))
            strip.append(last[-1])
        strips.append(np.concatenate(strip, axis=1))
        assert clean.report is not None
        rows.append(("", "", "(no drift)", f"{clean.report.hops[-1].delta_e:.2f}",
                     f"{clean.report.max_delta_e:.2f}", "yes" if clean.report.flagged else "no", "", ""))
    section.add(*table(("camera", "drift per segment", "hold", "last hop ΔE", "max ΔE", "flagged",
                        "last frame vs no drift, mean pixel ΔE", f"same, mean over the {length} shots"), rows), "",
                f"`{PICTURE.relative_to(ROOT)}`: each row a chain (the rows of the table in order), its last frame "
                "without drift, not held, held by " + " and by ".join(METHODS) + ".")
    return section, strips


HIDING_BOARD = """version: 1
title: Hiding
provider: wavespeed
assets: {{harbour: harbour.png}}
defaults: {{duration: 5, resolution: 480p, aspect_ratio: '1:1', camera: static, audio: false{color}}}
shots:
  - id: a1
    prompt: Dawn over the harbour ({tag}).
    image: harbour
  - id: a2
    prompt: The keeper at the rail ({tag}).
  - id: a3
    prompt: The lamp room ({tag}).
  - id: b1
    cut: true
    prompt: A ship in the storm ({tag}).
    image: harbour
  - id: b2
    prompt: Waves over the pier ({tag}).
"""


def _shots(board: Path, output: Path) -> dict[str, ShotResult]:
    """Every shot of the film as the flow makes them: chains concurrently, the shots of a chain in order."""
    job = session.prepare(board, session.Options(output_dir=output))
    results: dict[str, ShotResult] = {}

    def chain(shots: list[ShotPlan]) -> None:
        for shot in shots:
            results[shot.id] = job.make_shot(shot.id, results[shot.parent] if shot.parent else None)

    with ThreadPoolExecutor(len(job.plan.chains)) as pool:
        list(pool.map(chain, job.plan.chains))
    return results


def hiding(repeat: int, work: Path, latency: float = 20.0, quick: bool = False) -> Section:
    """Two chains (3 and 2 shots, 5 s at 480x480; `quick`: 2 and 1) on WaveSpeed through the emulator over loopback
    HTTP, each job taking `latency` s as a host's would (real ones take minutes), run as the flow runs them (the
    session, chains concurrently), with and without `color: hold`, interleaved in one process."""
    import os

    import httpx

    from storyfilm.emulator import EmulatorConfig, EmulatorServer

    section = Section(f"Does the hold hide behind generation? Two chains on the emulator, {latency:g} s per job")
    probe.save_png(np.asarray(Image.new("RGB", (480, 480), (40, 60, 90))), work / "harbour.png")
    walls: dict[str, list[float]] = {"not held": [], "held": []}
    holds: list[float] = []
    with EmulatorServer(EmulatorConfig(latency=latency)) as server:
        httpx.post(f"{server.url}/_emulator/config", json={"drift": {"contrast": 0.06, "saturation": 0.05}},
                   timeout=10).raise_for_status()
        os.environ.update(WAVESPEED_BASE_URL=server.url, WAVESPEED_API_KEY="bench-key-0123456789",
                          STORYFILM_POLL_INTERVAL="0.2", STORYFILM_POLL_MAX_INTERVAL="0.5")
        for r in range(repeat):
            for name, color in (("not held", ""), ("held", ", color: hold")):
                log(f"continuity hiding: run {r + 1} of {repeat}, {name}")
                folder = work / f"hiding-{r}-{name.replace(' ', '-')}"
                folder.mkdir()
                (folder / "harbour.png").write_bytes((work / "harbour.png").read_bytes())
                board = folder / "hiding.yaml"
                text = HIDING_BOARD.format(color=color, tag=f"{r}-{name}")
                board.write_text(re.sub(r"  - id: (a3|b2)\n.*\n", "", text) if quick else text)
                started = time.perf_counter()
                results = _shots(board, folder / "out")
                walls[name].append(time.perf_counter() - started)
                holds += [float(x.hold["seconds"]) for x in results.values() if x.hold]
    plain, held = median(walls["not held"]), median(walls["held"])
    per_run = sum(holds) / repeat
    rows = [("not held", f"{plain:.1f}", "1.00", "", ""),
            ("held", f"{held:.1f}", f"{held / plain:.2f}", f"{per_run:.1f}",
             f"{max(0.0, held - plain) / per_run:.0%}" if per_run else "")]
    section.add(*table(("run", "wall s (shots only)", "wall / not held", "hold s summed over the shots",
                        "share of the hold time added to the wall"), rows), "",
                f"Medians of {repeat} interleaved pairs; assembly not included. The next shot of a chain starts "
                "from the held last frame, so a hold is on its own chain's path; it overlaps the other chain's "
                "generation. The share above is how much of the summed hold time the run's wall time grew by "
                "(0 %: hidden entirely; 100 %: none of it overlapped).")
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help=f"default {RESULTS.relative_to(ROOT)}; --quick prints")
    parser.add_argument("--quick", action="store_true", help="tiny inputs, one run")
    parser.add_argument("--only", choices=("cost", "methods", "hiding"), default=None,
                        help="run one section and replace it in the results file")
    args = parser.parse_args()
    started, load_before = time.perf_counter(), load()
    tiny = VideoFormat(320, 180)
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-continuity-") as tmp:
        strips: list[np.ndarray] = []
        if args.quick:
            sections = [cost(1, Path(tmp), tiny, 1).close()]
            which, strips = methods(Path(tmp), tiny, 1, 3, (("static", DRIFTS[0]),))
            sections += [which.close(), hiding(1, Path(tmp), latency=2.0, quick=True).close()]
        elif args.only:
            sections = [cost(args.repeat, Path(tmp)).close() if args.only == "cost" else
                        hiding(args.repeat, Path(tmp)).close() if args.only == "hiding" else
                        methods(Path(tmp))[0].close()]
        else:
            sections = [cost(args.repeat, Path(tmp)).close()]
            which, strips = methods(Path(tmp))
            sections += [which.close(), hiding(args.repeat, Path(tmp)).close()]
    text = "\n".join(s.markdown() for s in sections)
    out = args.out or (None if args.quick else RESULTS)
    if out is None:
        print(text)
        return
    if args.only:  # the other sections (and the head) stay as they were
        _replace_section(out, sections[0].markdown())
        log(f"replaced a section of {out}")
        return
    small = [Image.fromarray(s).resize((s.shape[1] // 2, s.shape[0] // 2), Image.Resampling.LANCZOS) for s in strips]
    sheet = Image.new("RGB", (small[0].width, sum(s.height for s in small)))
    for i, s in enumerate(small):
        sheet.paste(s, (0, i * s.height))
    sheet.save(PICTURE)
    head = ["# Continuity benchmarks", "",
            f"Written by `python -m benchmarks.continuity --repeat {args.repeat}` on "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')} in {(time.perf_counter() - started) / 60:.1f} min; load averages "
            f"{load_before} at the start, {load()} at the end (shared machine: read ratios measured in the same run).",
            "", *machine(), "",
            (__doc__ or "").split("\n\n", 2)[2].strip(), ""]
    previous = out.read_text() if out.exists() else ""
    notes = previous.split(NOTES_MARKER, 1)[1].lstrip("\n") if NOTES_MARKER in previous else ""
    out.write_text("\n".join(head) + "\n" + text + "\n" + NOTES_MARKER + "\n" + notes)
    log(f"wrote {out} and {PICTURE}")


def _replace_section(path: Path, markdown: str) -> None:
    """`markdown` (one `## ` section) in place of the section with the same heading, else before the notes."""
    text = path.read_text()
    head, _, notes = text.partition(NOTES_MARKER)
    title = markdown.split("\n", 1)[0]
    parts = head.split("\n## ")
    kept = [parts[0]] + ["## " + p for p in parts[1:] if not ("## " + p).startswith(title.split(" (")[0].split("?")[0])]
    body = "\n".join(p.rstrip("\n") + "\n" for p in kept) + "\n" + markdown.rstrip("\n") + "\n\n"
    path.write_text(body + NOTES_MARKER + notes)


if __name__ == "__main__":
    main()

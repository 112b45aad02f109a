"""Before and after: the optimised steps of an earlier commit against the working tree, alternating runs.

    python -m benchmarks.before_after [--base 374f6e6] [--repeat 5]

The earlier commit's `src/` is extracted with `git archive` and imported in its own worker processes
(PYTHONPATH), so both versions run the same measurement on the same inputs, one after the other.
Measured: the local renderer (a 5 s 720p shot: Python per frame, and the whole encode), the seam
report of a 30-segment 720p film, and the last frame of the renderer's own segments (which end on a keyframe).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Section, log, median, run_worker, table

BASE = "374f6e6"  # main when this benchmark was written


def measure(step: str, directory: str) -> dict[str, Any]:
    """In a worker (whichever storyfilm is on PYTHONPATH): one measurement of `step`."""
    from benchmarks.common import operation

    d = Path(directory)
    if step == "frames":
        from benchmarks.render import frame_ms, spec

        return operation(lambda: {"ms": frame_ms(spec("push_in", False))})
    if step == "render":
        from benchmarks.render import spec
        from storyfilm.animatic import render

        def shot() -> None:
            render(spec("push_in", False), d / "shot.mp4")

        return operation(shot)
    if step == "seams":
        from benchmarks.assembly import FMT, pieces
        from storyfilm import seams
        from storyfilm.assemble import assemble

        info = assemble(pieces(sorted((d / "segments").glob("*.mp4"))), FMT, d / "film.mp4", d / "work")
        return operation(lambda: {"seams": len(seams.analyse(info))})
    if step == "last_frame":
        from storyfilm.media import probe

        segment = sorted((d / "segments").glob("*.mp4"))[1]

        def last() -> None:
            probe.last_frame(segment)

        return operation(last)
    raise ValueError(step)


def run(base: str = BASE, repeat: int = 5, segments: int = 30, seconds: int = 5) -> list[Section]:
    section = Section(f"Before and after: commit {base} against this tree")
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-before-") as tmp:
        old = Path(tmp) / "old"
        archive = subprocess.run(["git", "archive", base, "src"], cwd=ROOT, capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(old, filter="data")
        versions = {"before": str(old / "src"), "after": str(ROOT / "src")}
        from benchmarks.assembly import render_shots

        log(f"before/after: rendering {segments} segments")
        render_shots(Path(tmp) / "segments", segments, seconds)
        times: dict[tuple[str, str], list[float]] = {}
        for step in ("frames", "render", "seams", "last_frame"):
            log(f"before/after: {step}")
            for _ in range(repeat):
                for name, src in versions.items():
                    m = run_worker("before_after:measure", {"step": step, "directory": tmp},
                                   env={"PYTHONPATH": f"{src}:{ROOT}"})
                    value = m.result["ms"] / 1000 if step == "frames" else m.seconds
                    times.setdefault((step, name), []).append(value)
    labels = {"frames": "renderer, Python per frame (720p, caption and label), ms",
              "render": "renderer, a whole 5 s 720p shot (121 frames, encoded), s",
              "seams": f"seam report of a {segments}-segment 720p film ({segments - 1} joins), s",
              "last_frame": "last frame of a renderer segment (5 s 720p), ms"}
    rows = []
    for step, label in labels.items():
        scale = 1000 if step in ("frames", "last_frame") else 1
        before, after = median(times[(step, "before")]), median(times[(step, "after")])
        rows.append((label, f"{before * scale:.3g}", f"{after * scale:.3g}", f"{before / after:.1f}x"))
    section.add(*table(("step", f"before ({base})", "after", "faster"), rows), "",
                f"Medians of {repeat} alternating runs, each in a fresh process. The renderer's first and last "
                "frames are unchanged (tests/test_animatic.py); the seam report's numbers move by a few percent "
                "(its thumbnails are now block averages of the luma plane).")
    return [section]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    print("\n".join(s.markdown() for s in run(args.base, args.repeat)))
    log(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

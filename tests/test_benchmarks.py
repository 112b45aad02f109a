"""The benchmark scripts run (tiny inputs, no timings asserted) and their memory sampler sees child processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import assembly, lastframe
from benchmarks.__main__ import RESULTS
from benchmarks.common import MIB, run_process, run_worker, tree_rss
from storyfilm.media import probe
from storyfilm.media.ffmpeg import VideoFormat

from .helpers import REPO

TINY = VideoFormat(320, 180, 24)


def test_the_sampler_counts_the_memory_of_child_processes(tmp_path: Path) -> None:
    # a parent that holds little and a child that holds 200 MB: the tree's peak must include the child
    child = "import time; b = bytearray(200 * 1024 * 1024); time.sleep(0.5)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    measured = run_process([sys.executable, "-c", parent])
    assert measured.peak_rss > 200 * MIB and measured.processes == 2
    own, count = tree_rss(os.getpid())
    assert own > 10 * MIB and count >= 1


@pytest.mark.slow
def test_the_contenders_make_the_same_film(tmp_path: Path) -> None:
    paths = assembly.render_shots(tmp_path / "segments", 6, seconds=1, fmt=TINY)
    expected = 6 * TINY.fps  # continued shots drop their seam copy
    for target, extra in (("assembly:join_storyfilm", {"width": TINY.width, "height": TINY.height, "seams": True,
                                                         "aac": True}),
                          ("assembly:join_moviepy", {})):
        work = tmp_path / target.split(":")[1]
        work.mkdir()
        measured = run_worker(target, {"paths": [str(p) for p in paths], "out": str(work / "film.mp4"),
                                       "work": str(work), **extra}, cwd=work)
        info = probe.probe(work / "film.mp4")
        assert info.video is not None and abs(info.video.frames - expected) <= 1
        assert info.audio is not None and measured.peak_rss > 20 * MIB
        if target.endswith("storyfilm"):
            assert set(measured.result["phases"]) >= {"probe and normalise", "seam report"}
            assert measured.result["copied"] == expected and measured.result["aac_seconds"] > 0
        else:  # MoviePy reads every clip through its own ffmpeg process
            assert measured.processes > 2


def test_every_last_frame_method_returns_the_same_picture(tmp_path: Path) -> None:
    clip = lastframe.make_clip(tmp_path / "clip.mp4", 2, TINY, gop=None)
    frames = [method(clip) for method in lastframe.METHODS.values()]
    assert all(np.array_equal(frames[0], f) for f in frames[1:])
    assert np.array_equal(frames[0], probe.read_frames(clip)[-1])


def test_the_ledger_benchmark_does_a_whole_shot(ledger_at: str) -> None:
    from benchmarks.ledger import RESULT, one_shot, round_trips
    from storyfilm.ledger import Ledger

    book = Ledger(ledger_at)
    seen = round_trips(book)
    one_shot(book, "k" * 64, "bench")
    assert seen["transactions"] == 9 and seen["statements"] >= 16  # what the benchmark reports per shot
    rec = book.latest("k" * 64)
    assert rec is not None and rec.state == "done" and rec.result == RESULT and book.holder("k" * 64) is None
    assert [e[3] for e in book.events()] == ["intent", "submitted", "completed", "done"]
    book.close()
@pytest.mark.slow
def test_every_part_of_python_m_benchmarks_runs(prefect_home: Path, migrated_prefect_db: Path) -> None:
    """`python -m benchmarks --quick`: every part on tiny inputs; the results are printed, the file is untouched."""
    before = RESULTS.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick"], cwd=REPO, capture_output=True, text=True,
                          timeout=1200, env={**os.environ, "PREFECT_HOME": str(prefect_home),
                                             "STORYFILM_BENCH_PREFECT_DB": str(migrated_prefect_db)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    headings = [line for line in proc.stdout.splitlines() if line.startswith("## ")]
    assert [h.split(":")[0].split(",")[0] for h in headings] == [
        "## Targets (issue 9)", "## Assembly", "## Assembly with transitions and loudness", "## Last-frame extraction",
        "## Orchestration", "## Critical path first", "## Start-up", "## Unchanged rerun",
        "## Before and after", "## Ledger"], headings
    assert RESULTS.read_bytes() == before


@pytest.mark.slow
def test_the_continuity_benchmark_runs_and_reports_both_holds() -> None:
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "benchmarks.continuity", "--quick"], capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr
    for row in ("| measure a hop", "| hold, meanstd", "| hold, histogram", "| render (local animatic",
                "| static | contrast=0.06,saturation=0.05 | not held | ", "| not held | ", "| held | "):
        assert row in proc.stdout

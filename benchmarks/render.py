"""The local renderer (animatic): the per-frame Python work and a whole 5 s shot at 720p.

    python -m benchmarks.render [--repeat 3]

The frames are made in Python (camera move, caption and label, end image) and piped to ffmpeg, which
converts them to YUV and encodes them with x264 in its own process, on the other core.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Section, log, median, repeat_main, table
from storyfilm.animatic import AnimaticSpec, _FrameMaker, render
from storyfilm.media.ffmpeg import VideoFormat

FMT = VideoFormat(1280, 720, 24)


def spec(camera: str, end: bool, frames: int = 121) -> AnimaticSpec:
    from storyfilm.animatic import title_card

    card = title_card("night storm over the harbour", 2, FMT)
    return AnimaticSpec(fmt=FMT, frames=frames, prompt="dawn harbour, slow push-in", seed=1, camera=camera,  # type: ignore[arg-type]
                        end=card if end else None, overlay="Wide shot, an old keeper climbs the cliff path at dusk.",
                        label="arrival", keyframes=(1,))


def frame_ms(s: AnimaticSpec) -> float:
    """Python time per frame, as the renderer hands it to ffmpeg (the bytes included)."""
    maker = _FrameMaker(s)
    start = time.perf_counter()
    for k in range(s.frames):
        maker.frame(k).tobytes()
    return (time.perf_counter() - start) / s.frames * 1000


def run(repeat: int, frames: int = 121) -> list[Section]:
    section = Section(f"Local renderer: 5 s shots at {FMT.width}x{FMT.height}")
    log(f"render: {repeat} runs")
    rows = []
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-render-") as tmp:
        for camera, end in (("push_in", False), ("pan_right", True), ("pull_out", False)):
            s = spec(camera, end, frames)
            per_frame = [frame_ms(s) for _ in range(repeat)]
            walls = []
            for r in range(repeat):
                t = time.perf_counter()
                last = render(s, Path(tmp) / f"{camera}-{r}.mp4")
                walls.append(time.perf_counter() - t)
            assert isinstance(last, np.ndarray) and last.shape == (FMT.height, FMT.width, 3)
            rows.append((f"{camera}{', end image' if end else ''}", f"{median(per_frame):.1f}",
                         f"{median(walls):.2f}", f"{frames / median(walls):.0f}"))
    section.add(*table(("camera", "Python per frame, ms", "whole shot (121 frames, encoded), s", "frames/s"), rows),
                "", f"Medians of {repeat} runs.")
    return [section]


if __name__ == "__main__":
    repeat_main(run, __doc__ or "", 3)

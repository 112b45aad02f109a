"""Renders visibly worse than asked (faults.py: render-frozen, render-dark): what a take's score must see.

- frozen: every new frame is the frame before the new footage (a model stuck on its start picture);
- dark: every new frame at DARK_GAIN of its brightness (an underexposed take).

The frames before the new footage (the start frame, an extend's input video) are left as rendered, and so is
the audio. The flawed copy is written beside the render under the job's own name: a render shared by
identical text-only jobs (jobs.py) stays as it was for the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storyfilm.emulator.faults import Flaw
from storyfilm.emulator.media import Rendered
from storyfilm.media import ffmpeg, probe, rgb
from storyfilm.media.ffmpeg import VideoFormat

DARK_GAIN = 0.12


def flawed(rendered: Rendered, flaw: Flaw, new_frames: int, out_dir: Path, name: str) -> Rendered:
    """A copy of `rendered` whose last `new_frames` frames have the flaw; `out_dir/<name>.flawed.mp4` (+ .png)."""
    frames = list(rgb.frames(rendered.video))
    first = max(1, len(frames) - new_frames)
    for k in range(first, len(frames)):
        if flaw == "frozen":
            frames[k] = frames[first - 1]
        else:
            frames[k] = np.rint(frames[k] * DARK_GAIN).astype(np.uint8)
    info = probe.probe(rendered.video)
    assert info.video is not None
    height, width = frames[0].shape[:2]
    fmt = VideoFormat(width, height, round(float(info.video.fps)))
    video = out_dir / f"{name}.flawed.mp4"
    argv = [*ffmpeg.raw_video_input_args(fmt)]
    if info.audio is not None:
        argv += ["-i", str(rendered.video), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "copy"]
    argv += ["-vf", ffmpeg.HOUSE_PIXELS, *ffmpeg.x264_args(fmt, [0, first, len(frames) - 1]),
             "-movflags", "+faststart", str(video)]
    proc = ffmpeg.start_encoder(["-y", *argv])
    assert proc.stdin is not None
    try:
        for frame in frames:
            proc.stdin.write(frame.tobytes())
    except BrokenPipeError:
        pass  # ffmpeg died: finish_encoder raises with its stderr
    finally:
        ffmpeg.finish_encoder(proc)
    last = probe.save_png(frames[-1], out_dir / f"{name}.flawed.last.png") if rendered.last_frame else None
    return Rendered(video=video, last_frame=last)

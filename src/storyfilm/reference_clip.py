"""The reference clip of a `method: reference` shot: the previous shot's last seconds, cut just before the
submit (a reused shot never needs it) and removed once the provider has uploaded it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from storyfilm.media import ffmpeg, probe
from storyfilm.providers.base import ShotRequest


@contextmanager
def reference_clip(request: ShotRequest, work_dir: Path) -> Iterator[ShotRequest]:
    """`request` with its reference clip made (if it asks for one), for as long as the block runs."""
    source = request.clip_from
    if source is None:
        yield request
        return
    info = probe.probe(source.video)
    assert info.video is not None
    fps = float(info.video.fps)
    start = max(0, info.video.frames - round(source.seconds * fps))
    work_dir.mkdir(parents=True, exist_ok=True)
    clip = work_dir / f"{request.shot_id}.reference.mp4"
    ffmpeg.run(ffmpeg.cut_args(source.video, clip, request.fmt, start, fps))
    try:
        yield replace(request, reference_clip=clip)
    finally:
        clip.unlink(missing_ok=True)

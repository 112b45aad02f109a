"""A chain of shots through the local provider, each continuing from the last frame of the one before, held or
not, as the shot runner will do it: render, (hold toward the anchor), keep the last frame, start the next."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from storyfilm.colour_hold import HoldResult, Method, hold_segment
from storyfilm.continuity import ChainReport, ColourStats, ShotColour, anchor_after, chain_report, frame_stats
from storyfilm.drift import Drift
from storyfilm.media import rgb
from storyfilm.media.ffmpeg import VideoFormat
from storyfilm.providers.base import JobStatus, ShotRequest
from storyfilm.providers.local import LocalProvider

SIZE = VideoFormat(320, 180)


@dataclass
class Chain:
    segments: list[Path] = field(default_factory=list)  # what the film uses (the held segment when held)
    rendered: list[Path] = field(default_factory=list)  # as the renderer made them
    starts: list[Path] = field(default_factory=list)  # the picture each shot was made from
    holds: list[HoldResult | None] = field(default_factory=list)
    shots: list[ShotColour] = field(default_factory=list)
    report: ChainReport | None = None


def render_chain(work: Path, start: Path, *, drift: Drift, hold: Method | None = None, length: int = 6,
                 free: Mapping[int, Drift] | None = None, camera: str = "handheld", seconds: int = 1,
                 fmt: VideoFormat = SIZE, name: str = "s") -> Chain:
    """`length` shots from `start`, named name0, name1, ...; shot i in `free` is a `color: free` shot rendered
    with that drift instead (an intended change of look): never held, and the anchor of the shots after it."""
    free = free or {}
    chain = Chain()
    anchor: ColourStats | None = None
    image = start
    for i in range(length):
        provider = LocalProvider(work / "render", drift=free.get(i, drift))
        request = ShotRequest(shot_id=f"{name}{i}", prompt=f"the keeper at the lamp, shot {i}", tier="standard",
                              duration=seconds, resolution="360p", aspect_ratio="16:9", fmt=fmt, audio=True,
                              seed=i, camera=camera, overlay="", continued=i > 0, start_image=image)
        job = provider.submit(provider.prepare(request), request, f"chain-{i}")
        output = provider.fetch(JobStatus(job, "completed"), request, work / "shots")
        segment, last_png = output.video, output.last_frame
        first_rgb = rgb.first_and_last(segment)[0]
        if anchor is None:
            anchor = frame_stats(first_rgb)
        held = None
        if hold is not None and i not in free:
            held = hold_segment(segment, work / "held" / f"{name}{i}.mp4", anchor, fmt, method=hold,
                                last_png=work / "held" / f"{name}{i}.last.png")
            segment, last_png = held.path, held.last_png
        first, last = rgb.first_and_last(segment)
        shot = ShotColour(f"{name}{i}", frame_stats(first), frame_stats(last), free=i in free)
        anchor = anchor_after(anchor, shot)
        chain.segments.append(segment)
        chain.rendered.append(output.video)
        chain.starts.append(image)
        chain.holds.append(held)
        chain.shots.append(shot)
        assert last_png is not None
        image = last_png
    chain.report = chain_report(chain.shots)
    return chain

"""Assembly cost with and without transitions, loudness reached, and seam metrics on clean vs bad joins.

    python benchmarks/assembly.py [--segments 30] [--seconds 4] [--out benchmarks/assembly-results.md]

Renders N chained animatic shots (854x480, the local provider's house format), then assembles them:
all cuts and continuous joins (stream copy), a 0.5 s crossfade at every third join, and a crossfade at
every join. Times are wall clock on a shared 2-core machine: compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from storyfilm import audio, seams
from storyfilm.animatic import AnimaticSpec, render
from storyfilm.assemble import Piece, assemble
from storyfilm.media import ffmpeg, probe
from storyfilm.media.ffmpeg import VideoFormat

FMT = VideoFormat(854, 480, 24)
PROMPTS = ["dawn harbour, slow push-in", "gulls over the pier, pan right", "night storm at sea, wind",
           "warm lamp light, close-up", "forest path, tilt up", "the keeper looks down"]


def render_shots(directory: Path, n: int, seconds: int) -> list[Path]:
    paths, last = [], None
    for i in range(n):
        chained = last is not None and i % 5 != 0  # chains of five, like a storyboard with cuts
        path = directory / f"{i:03d}.mp4"
        last = render(AnimaticSpec(fmt=FMT, frames=seconds * FMT.fps + (1 if chained else 0), prompt=PROMPTS[i % 6],
                                   seed=i, start=last if chained else None, keyframes=(1,) if chained else (),
                                   overlay=f"shot {i}", label=str(i)), path)
        paths.append(path)
    return paths


def pieces(paths: list[Path], every: int | None) -> list[Piece]:
    out = []
    for i, p in enumerate(paths):
        chained = i % 5 != 0
        if every and i and i % every == 0:
            out.append(Piece(p, start_frame=1 if chained else 0, label=str(i), join="crossfade", overlap=12))
        else:
            out.append(Piece(p, start_frame=1 if chained else 0, label=str(i), join="continue" if chained else "cut"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--segments", type=int, default=30)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines = [f"# Assembly benchmark: {args.segments} segments of {args.seconds} s, {FMT.width}x{FMT.height}", ""]
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-") as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        paths = render_shots(d, args.segments, args.seconds)
        lines.append(f"rendering the segments (local animatic): {time.perf_counter() - t0:.1f} s\n")
        lines += ["| joins | film | wall s | copied frames | encoded frames | seam report s |",
                  "|---|---|---|---|---|---|"]
        films = {}
        for name, every in (("cuts + continuous (no transitions)", None), ("crossfade 0.5 s every 3rd join", 3),
                            ("crossfade 0.5 s at every join", 1)):
            t0 = time.perf_counter()
            film = assemble(pieces(paths, every), FMT, d / f"film-{every}.mp4", d / "work")
            wall = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = seams.analyse(film)
            seam_s = time.perf_counter() - t0
            films[name] = (film, report)
            lines.append(f"| {name} | {film.duration:.2f} s | {wall:.2f} | {film.copied_frames} | {film.encoded_frames}"
                         f" | {seam_s:.2f} |")
        base = films["cuts + continuous (no transitions)"][0]
        # reference: what re-encoding the whole film's video once (house settings) costs
        t0 = time.perf_counter()
        ffmpeg.run(["-y", "-i", str(base.path), "-map", "0:v", *ffmpeg.x264_args(FMT), str(d / "reencoded.mp4")])
        lines.append(f"| (reference: re-encoding the whole film's video once) | {base.duration:.2f} s | "
                     f"{time.perf_counter() - t0:.2f} | 0 | {base.frames} | |")
        lines += ["", "## Loudness (EBU R128, measured on the decoded film)", "",
                  "| target LUFS | before | achieved (film) | true peak dBTP | limiter | wall s |",
                  "|---|---|---|---|---|---|"]
        for target in (-23.0, -16.0, -14.0):
            t0 = time.perf_counter()
            film = assemble(pieces(paths, None), FMT, d / "loud.mp4", d / "work", loudness_lufs=target)
            wall = time.perf_counter() - t0
            pcm = probe.read_audio(film.path)
            assert pcm is not None and film.loudness is not None
            got = audio.measure(pcm)
            lines.append(f"| {target:g} | {film.loudness.before.integrated:.1f} | {got.integrated:.1f} | "
                         f"{got.true_peak:.1f} | {'yes' if film.loudness.limited else 'no'} | {wall:.2f} |")
        lines += ["", "## Seam metrics (no transitions film)", "",
                  "| join kind | n | picture change (median, max) | motion around | audio step (max) | flagged |",
                  "|---|---|---|---|---|---|"]
        report = films["cuts + continuous (no transitions)"][1]
        for kind in ("continue", "cut"):
            group = [s for s in report if s.join == kind]
            if group:
                pc = [s.picture_change for s in group]
                lines.append(f"| {kind} | {len(group)} | {np.median(pc):.2f}, {max(pc):.2f} | "
                             f"{np.median([s.motion for s in group]):.2f} | {max(s.audio_step for s in group):.2f} | "
                             f"{sum(1 for s in group if s.flags)} |")
        # the same film with every continued shot's seam copy kept: a frame shown twice at each continuous join
        bad = [Piece(p.path, start_frame=0, label=p.label, join=p.join) for p in pieces(paths, None)]
        bad_film = assemble(bad, FMT, d / "bad.mp4", d / "work")
        bad_report = [s for s in seams.analyse(bad_film) if s.join == "continue"]
        lines.append(f"| continue, seam copy kept (bad) | {len(bad_report)} | "
                     f"{np.median([s.picture_change for s in bad_report]):.3f}, "
                     f"{max(s.picture_change for s in bad_report):.3f} | "
                     f"{np.median([s.motion for s in bad_report]):.2f} | "
                     f"{max(s.audio_step for s in bad_report):.2f} | {sum(1 for s in bad_report if s.flags)} |")
        hard = assemble(pieces(paths, None), FMT, d / "hard.mp4", d / "work", seam_crossfade_frames=0)
        steps_hard = [s.audio_step for s in seams.analyse(hard) if s.join == "continue"]
        steps_soft = [s.audio_step for s in report if s.join == "continue"]
        lines += ["", f"audio step at continuous joins (step / 99th percentile around), median: "
                      f"{np.median(steps_soft):.2f} with the 1-frame crossfade, {np.median(steps_hard):.2f} without",
                  f"film without transitions: {base.frames} frames = {base.duration:.3f} s"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

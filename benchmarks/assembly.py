"""Assembly: storyfilm's join against MoviePy and against copying the same bytes; transitions, loudness, seams.

    python -m benchmarks.assembly [--segments 10 30] [--repeat 3] [--out FILE]

The segments are what the local provider makes: 5 s animatic shots at 720p with sound, in chains of five
(a continued shot opens on a copy of its predecessor's last frame, which the film shows once). Ten are
rendered and copied to make thirty (distinct files, the same bytes): assembly cost does not depend on the
pictures being different. Each contender runs in its own process; its wall time is measured around the
operation, its memory is the peak RSS of its process tree (see common.py).

- storyfilm, join: `storyfilm.assemble.assemble` (the video by stream copy, the sound mixed and encoded once, in
  chunks on every core while the video is copied).
- storyfilm, join on one core: the same with `os.cpu_count()` answering 1 (the sound in one piece, nothing side by
  side): what the parallel work brings.
- storyfilm, join + seam report: what `FilmJob.finish` does after generation, before the exports (assemble, then
  `seams.analyse`).
- storyfilm, other encoder's segments: the same segments re-encoded with x264's defaults (what a hosted
  model delivers: another encoder's parameter sets), which the assembler must normalise (re-encode) first.
- MoviePy 2: `VideoFileClip` per segment (the seam copies cut off with `subclipped`), `concatenate_videoclips`,
  `write_videofile(codec="libx264", audio_codec="aac", preset="veryfast", audio_fps=48000)`: the
  usual script, with the preset and sample rate storyfilm uses (MoviePy's default `medium` is slower still).
- cp: copying the segment files to another directory on the same disk (the I/O limit).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Section, log, median, mib, run_process, run_worker, spread, table
from storyfilm.media.ffmpeg import VideoFormat

FMT = VideoFormat(1280, 720, 24)
SECONDS = 5
CHAIN = 5  # shots per chain
UNIQUE = 10  # shots rendered; more are copies
PROMPTS = ["dawn harbour, slow push-in", "gulls over the pier, pan right", "night storm at sea, wind",
           "warm lamp light, close-up", "forest path, tilt up", "the keeper looks down"]


# --- the segments -----------------------------------------------------------------------------------


def chained(i: int) -> bool:
    return i % CHAIN != 0


def render_shots(directory: Path, n: int, seconds: int = SECONDS, fmt: VideoFormat = FMT,
                 unique: int = UNIQUE) -> list[Path]:
    """n segments like the local provider's (chains of five); the first `unique` are rendered, the rest copied."""
    from storyfilm.animatic import AnimaticSpec, render

    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    last = None
    for i in range(n):
        path = directory / f"{i:03d}.mp4"
        if i >= unique:
            shutil.copyfile(paths[i % unique], path)
        else:
            c = chained(i) and last is not None
            last = render(AnimaticSpec(fmt=fmt, frames=seconds * fmt.fps + (1 if c else 0), prompt=PROMPTS[i % 6],
                                       seed=i, start=last if c else None, keyframes=(1,) if c else (),
                                       overlay=f"shot {i}: {PROMPTS[i % 6]}", label=f"s{i}"), path)
        paths.append(path)
    return paths


def reencode(paths: list[Path], directory: Path, unique: int = UNIQUE) -> list[Path]:
    """The segments as another encoder would deliver them: x264 veryfast with its default CRF 23 and GOP 250, AAC."""
    from storyfilm.media import ffmpeg

    directory.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for i, src in enumerate(paths):
        dst = directory / src.name
        if i >= unique:
            shutil.copyfile(out[i % unique], dst)
        else:
            ffmpeg.run(["-y", "-i", str(src), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                        "-c:a", "aac", "-b:a", "192k", str(dst)])
        out.append(dst)
    return out


def pieces(paths: list[Path], every: int | None = None) -> list[Any]:
    """The film's pieces: continued shots drop their seam copy; `every`: a 0.5 s crossfade at every n-th join."""
    from storyfilm.assemble import Piece

    try:
        from storyfilm.transitions import CONTINUE, CUT, Crossfade
    except ImportError:  # an older tree, which before_after.py measures: joins were names, without transitions
        assert not every
        return [Piece(p, start_frame=1 if chained(i) else 0, label=str(i), join="continue" if chained(i) else "cut")
                for i, p in enumerate(paths)]
    out = []
    for i, p in enumerate(paths):
        start = 1 if chained(i) else 0
        if every and i and i % every == 0:
            out.append(Piece(p, start_frame=start, label=str(i), join=Crossfade(0.5)))
        else:
            out.append(Piece(p, start_frame=start, label=str(i), join=CONTINUE if chained(i) else CUT))
    return out


# --- workers (each in its own process) ----------------------------------------------------------------


def aac_seconds(pcm: np.ndarray, chunk: int) -> float:
    """Encode PCM to AAC the way the assembler does (one frame per segment), into memory; the wall time."""
    import io

    import av

    from storyfilm.media.ffmpeg import AUDIO_BITRATE, SAMPLE_RATE

    start = time.perf_counter()
    with av.open(io.BytesIO(), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        stream.bit_rate = int(AUDIO_BITRATE.rstrip("k")) * 1000
        for at in range(0, len(pcm), chunk):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[at:at + chunk].T), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts = SAMPLE_RATE, at
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return time.perf_counter() - start


def join_storyfilm(paths: list[str], out: str, work: str, width: int, height: int,
                   seams: bool = False, aac: bool = False, cores: int | None = None) -> dict[str, Any]:
    """assemble() (and the seam report); the phases timed from inside."""
    if cores:  # this worker process only
        import os

        os.cpu_count = lambda: cores
    from benchmarks.common import operation
    from storyfilm import assemble as asm
    from storyfilm import audio
    from storyfilm import seams as seam_report

    phases: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    asm._prepare = timed("probe and normalise", asm._prepare)  # type: ignore[method-assign]
    audio.film_track = timed("decode and mix the sound", audio.film_track)  # type: ignore[method-assign]
    asm._write = timed("remux the video (and wait for the sound's encoding)", asm._write)  # type: ignore[method-assign]
    fmt = VideoFormat(width, height, FMT.fps)

    def run() -> dict[str, Any]:
        info = asm.assemble(pieces([Path(p) for p in paths]), fmt, Path(out), Path(work))
        if seams:
            t = time.perf_counter()
            report = seam_report.analyse(info)
            phases["seam report"] = time.perf_counter() - t
            assert not seam_report.flagged(report), seam_report.flagged(report)
        return {"frames": info.frames, "copied": info.copied_frames, "normalised": len(info.normalised)}

    report = {**operation(run), "phases": phases}
    if aac:  # after the measured operation: how much of it the sound's encoding is
        from storyfilm.media import probe

        pcm = probe.read_audio(Path(out))
        assert pcm is not None
        report["aac_seconds"] = aac_seconds(pcm, SECONDS * 48_000)
    return report


def join_moviepy(paths: list[str], out: str, work: str) -> dict[str, Any]:
    # `import moviepy` loads a .env file into os.environ (python-dotenv): in this worker process only.
    from moviepy import VideoFileClip, concatenate_videoclips

    from benchmarks.common import operation

    def run() -> dict[str, Any]:
        clips = []
        for i, p in enumerate(paths):
            clip = VideoFileClip(p)
            clips.append(clip.subclipped(1 / FMT.fps) if chained(i) else clip)
        film = concatenate_videoclips(clips)
        film.write_videofile(out, fps=FMT.fps, codec="libx264", audio_codec="aac", preset="veryfast",
                             audio_fps=48000, temp_audiofile=str(Path(work) / "moviepy-audio.m4a"), logger=None)
        for clip in clips:
            clip.close()
        return {}

    return operation(run)


# --- the comparison -----------------------------------------------------------------------------------


def _frames(path: Path) -> int:
    from storyfilm.media import probe

    info = probe.probe(path)
    assert info.video is not None
    return info.video.frames


LABELS = {"join": "storyfilm: join (`assemble`)",
          "join1": "storyfilm: join on one core",
          "join+seams": "storyfilm: join + seam report (`FilmJob.finish`)",
          "foreign": "storyfilm: join, segments from another encoder (all normalised)",
          "moviepy": "MoviePy: `concatenate_videoclips` + `write_videofile`",
          "cp": "`cp` of the segment files"}


def compare(section: Section, d: Path, house: list[Path], counts: list[int], repeat: int, render_s: float,
            fmt: VideoFormat = FMT, seconds: int = SECONDS, moviepy_runs_largest: int = 1) -> dict[int, dict]:
    """storyfilm vs MoviePy vs cp on the same segments, interleaved runs; a table of medians and ratios."""
    t = time.perf_counter()
    foreign = reencode(house[:min(counts)], d / "foreign")
    reencode_s = time.perf_counter() - t
    section.add(f"Segments: {fmt.width}x{fmt.height}, {seconds} s, 24 fps, H.264 + AAC 48 kHz stereo, in chains of "
                f"{CHAIN}; {min(UNIQUE, max(counts))} rendered by the local animatic in {render_s:.1f} s (the rest are "
                f"copies); for the other-encoder rows re-encoded with x264 veryfast, CRF 23, GOP 250 in "
                f"{reencode_s:.1f} s. Each run is a fresh process; runs of the contenders are interleaved.", "")
    rows, notes, summary = [], [], {}
    for n in counts:
        segs = house[:n]
        size = sum(p.stat().st_size for p in segs)
        contenders = [("join", "assembly:join_storyfilm", {"paths": [str(p) for p in segs]}),
                      ("join1", "assembly:join_storyfilm", {"paths": [str(p) for p in segs], "cores": 1}),
                      ("join+seams", "assembly:join_storyfilm", {"paths": [str(p) for p in segs], "seams": True})]
        if n == min(counts):
            contenders.append(("foreign", "assembly:join_storyfilm", {"paths": [str(p) for p in foreign[:n]]}))
        contenders.append(("moviepy", "assembly:join_moviepy", {"paths": [str(p) for p in segs]}))
        runs: dict[str, list[Any]] = {k: [] for k, _, _ in contenders}
        runs["cp"] = []
        expected = n * seconds * fmt.fps
        for r in range(repeat):
            log(f"assembly: {n} segments, run {r + 1} of {repeat}")
            for key, target, args in contenders:
                if key == "moviepy" and n == max(counts) and n != min(counts) and r >= moviepy_runs_largest:
                    continue
                work = d / f"work-{key}-{n}-{r}"
                work.mkdir()
                extra = {"width": fmt.width, "height": fmt.height, "aac": r == 0} if key != "moviepy" else {}
                runs[key].append(run_worker(target, {**args, **extra, "out": str(work / "film.mp4"),
                                                     "work": str(work)}, cwd=work))
                got = _frames(work / "film.mp4")  # every contender made the same film
                assert abs(got - expected) <= 1, f"{key}: {got} frames, expected {expected}"
                shutil.rmtree(work)
            copy_dir = d / f"copy-{n}-{r}"
            copy_dir.mkdir()
            runs["cp"].append(run_process(["cp", *map(str, segs), str(copy_dir)]))
            shutil.rmtree(copy_dir)
        base = {k: median(m.seconds for m in v) for k, v in runs.items()}
        peak = {k: median(m.peak_rss for m in v) for k, v in runs.items()}
        for key, ms in runs.items():
            rows.append((n, LABELS[key], len(ms), spread([m.seconds for m in ms]), f"{base[key] / base['cp']:.0f}x",
                         f"{base['moviepy'] / base[key]:.1f}x" if key != "moviepy" else "1",
                         mib(peak[key]), max(m.processes for m in ms)))
        first = runs["join"][0].result
        phases = ", ".join(f"{k} {v:.2f} s" for k, v in first["phases"].items())
        notes.append(f"- {n} segments ({size / 1e6:.1f} MB, a film of {expected} frames = {n * seconds} s, checked "
                     f"for every contender): storyfilm's join by phase (first run): {phases}; encoding the film's "
                     f"sound alone (the same PCM, measured after it): {first['aac_seconds']:.2f} s. The seam report "
                     f"alone: {median(m.result['phases']['seam report'] for m in runs['join+seams']):.2f} s (median).")
        summary[n] = {"base": base, "peak": peak}
    section.add(*table(("segments", "method", "runs", "wall s, median (min-max)", "x cp", "faster than MoviePy",
                        "peak RSS (tree)", "processes"), rows))
    section.add("", *notes, "")
    return summary


# --- transitions, loudness, seams (one run each: costs relative to each other) -------------------------


def transitions(section: Section, d: Path, paths: list[Path], fmt: VideoFormat = FMT) -> None:
    from storyfilm import audio, seams
    from storyfilm.assemble import Piece, assemble
    from storyfilm.media import ffmpeg, probe

    n = len(paths)
    lines = table(("joins", "film", "wall s", "copied frames", "encoded frames", "seam report s"), [])
    films = {}
    for name, every in (("cuts + continuous (no transitions)", None), ("crossfade 0.5 s every 3rd join", 3),
                        ("crossfade 0.5 s at every join", 1)):
        log(f"transitions: {name}")
        t0 = time.perf_counter()
        film = assemble(pieces(paths, every), fmt, d / f"film-{every}.mp4", d / "work")
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = seams.analyse(film)
        films[name] = (film, report)
        lines.append(f"| {name} | {film.duration:.2f} s | {wall:.2f} | {film.copied_frames} | {film.encoded_frames}"
                     f" | {time.perf_counter() - t0:.2f} |")
    base = films["cuts + continuous (no transitions)"][0]
    t0 = time.perf_counter()
    ffmpeg.run(["-y", "-i", str(base.path), "-map", "0:v", *ffmpeg.x264_args(fmt), str(d / "reencoded.mp4")])
    lines.append(f"| (reference: re-encoding the whole film's video once) | {base.duration:.2f} s | "
                 f"{time.perf_counter() - t0:.2f} | 0 | {base.frames} | |")
    section.add(f"{n} segments as above, {base.frames} frames; one run each (compare the rows with each other).", "",
                *lines, "", "Loudness (EBU R128, measured on the decoded film):", "")
    rows = []
    for target in (-23.0, -16.0, -14.0):
        log(f"loudness {target:g}")
        t0 = time.perf_counter()
        film = assemble(pieces(paths), fmt, d / "loud.mp4", d / "work", loudness_lufs=target)
        wall = time.perf_counter() - t0
        pcm = probe.read_audio(film.path)
        assert pcm is not None and film.loudness is not None
        got = audio.measure(pcm)
        rows.append((f"{target:g}", f"{film.loudness.before.integrated:.1f}", f"{got.integrated:.1f}",
                     f"{got.true_peak:.1f}", "yes" if film.loudness.limited else "no", f"{wall:.2f}"))
    section.add(*table(("target LUFS", "before", "achieved (film)", "true peak dBTP", "limiter", "wall s"), rows))
    report = films["cuts + continuous (no transitions)"][1]
    rows = []
    for kind in ("continue", "cut"):
        group = [s for s in report if s.join == kind]
        if not group:
            continue
        pc = [s.picture_change for s in group]
        rows.append((kind, len(group), f"{np.median(pc):.2f}, {max(pc):.2f}",
                     f"{np.median([s.motion for s in group]):.2f}", f"{max(s.audio_step for s in group):.2f}",
                     sum(1 for s in group if s.flags)))
    # the same film with every continued shot's seam copy kept: a frame shown twice at each continuous join
    bad = [Piece(p.path, start_frame=0, label=p.label, join=p.join) for p in pieces(paths)]
    bad_report = [s for s in seams.analyse(assemble(bad, fmt, d / "bad.mp4", d / "work")) if s.join == "continue"]
    rows.append(("continue, seam copy kept (bad)", len(bad_report),
                 f"{np.median([s.picture_change for s in bad_report]):.3f}, "
                 f"{max(s.picture_change for s in bad_report):.3f}",
                 f"{np.median([s.motion for s in bad_report]):.2f}", f"{max(s.audio_step for s in bad_report):.2f}",
                 sum(1 for s in bad_report if s.flags)))
    hard = assemble(pieces(paths), fmt, d / "hard.mp4", d / "work", seam_crossfade_frames=0)
    steps_hard = [s.audio_step for s in seams.analyse(hard) if s.join == "continue"]
    steps_soft = [s.audio_step for s in report if s.join == "continue"]
    section.add("", "Seam metrics (the film without transitions):", "",
                *table(("join kind", "n", "picture change (median, max)", "motion around", "audio step (max)",
                        "flagged"), rows),
                "", "Audio step at continuous joins (step / 99th percentile around), median: "
                    f"{np.median(steps_soft):.2f} with the 1-frame crossfade, {np.median(steps_hard):.2f} without.", "")


def run(counts: list[int], repeat: int, quick: bool = False) -> list[Section]:
    fmt, seconds = (VideoFormat(320, 180, 24), 1) if quick else (FMT, SECONDS)
    compared = Section(f"Assembly: {' and '.join(map(str, counts))} segments, storyfilm vs MoviePy vs cp")
    with tempfile.TemporaryDirectory(prefix="storyfilm-bench-assembly-") as tmp:
        t = time.perf_counter()
        house = render_shots(Path(tmp) / "house", max(counts), seconds, fmt)
        summary = compare(compared, Path(tmp), house, counts, repeat, time.perf_counter() - t, fmt, seconds)
        compared.close()
        joins = Section(f"Assembly with transitions and loudness, {min(counts)} segments")
        transitions(joins, Path(tmp), house[:min(counts)], fmt)
        joins.close()
    n = max(counts)
    base, peak = summary[n]["base"], summary[n]["peak"]
    compared.check(f"assembly of {n} segments at least 10x faster than MoviePy",
                   f"{base['moviepy'] / base['join']:.1f}x (with the seam report: "
                   f"{base['moviepy'] / base['join+seams']:.1f}x)", base["moviepy"] / base["join"] >= 10)
    compared.check(f"assembly of {n} segments at least 15x faster than MoviePy (issue 14)",
                   f"{base['moviepy'] / base['join']:.1f}x (with the seam report: "
                   f"{base['moviepy'] / base['join+seams']:.1f}x; on one core: "
                   f"{base['moviepy'] / base['join1']:.1f}x)", base["moviepy"] / base["join"] >= 15)
    compared.check(f"assembly of {n} segments with lower peak memory than MoviePy",
                   f"{mib(peak['join'])} vs {mib(peak['moviepy'])}", peak["join"] < peak["moviepy"])
    compared.check(f"assembly of {n} segments within 3x of cp", f"{base['join'] / base['cp']:.0f}x",
                   base["join"] <= 3 * base["cp"])
    return [compared, joins]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--segments", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    text = "\n".join(s.markdown() for s in run(args.segments, args.repeat))
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

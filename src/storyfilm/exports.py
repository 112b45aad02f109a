"""What a finished film leaves beside it, for people and for editing tools.

- manifest.json: the provenance of every shot (prompt, provider, model, seed, job id, cost, input hashes,
  segment file and hash, timings, where it sits in the film) and the film's seams and loudness;
- timeline.otio: an OpenTimelineIO timeline, one clip per shot referencing its segment file with the
  source range the film uses, and the transitions (editors open it through the OTIO adapters);
- film.srt: the shots' captions, timed to the shots in the film;
- contact_sheet.png: one labelled frame per shot;
- timeline.png: where the run's time went (timeline_picture.py).

Times follow the editorial convention: a shot starts at its cut, and the cut of a crossfade or fade is
the middle of the transition (OpenTimelineIO's in_offset), so clips, subtitles and the contact sheet agree.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import opentimelineio as otio
from PIL import Image, ImageDraw, ImageFont

from storyfilm.assets import file_digest_or_none
from storyfilm.casting import reference_inputs
from storyfilm.media import probe
from storyfilm.plan import Plan, ShotPlan
from storyfilm.results import FilmInfo, Placement, ShotResult
from storyfilm.seams import Seam
from storyfilm.shot_times import Span, span_fields
from storyfilm.storyboard import text_problem
from storyfilm.timeline_picture import write_timeline_png

TIMELINE = "timeline.otio"
SUBTITLES = "film.srt"
CONTACT_SHEET = "contact_sheet.png"
MANIFEST = "manifest.json"


def _rel(path: str | Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _write_atomic(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_json(data: dict[str, Any], path: Path) -> Path:
    return _write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


# --- manifest ------------------------------------------------------------------------------------


def _inputs(s: ShotPlan, plan: Plan, digests: Mapping[str, str]) -> dict[str, Any]:
    def asset(name: str | None) -> dict[str, str | None] | None:
        return {"asset": name, "sha256": digests.get(name)} if name else None

    return {"start_image": asset(s.start.asset), "end_image": asset(s.end_image),
            "references": [asset(r) for r in s.references],
            "continues": {"shot": s.parent, "cache_key": plan.shot(s.parent).key} if s.parent else None,
            **reference_inputs(s)}


def _film_place(film: FilmInfo, index: int) -> dict[str, Any]:
    p = film.placements[index]
    start, end = film.shot_span(index)
    return {"start": round(start / film.fps, 6), "end": round(end / film.fps, 6), "first_frame": p.first,
            "frames": p.frames, "join": p.join.name, "overlap_frames": p.overlap,
            "source_start_frame": p.source_start}


def manifest(plan: Plan, results: Sequence[ShotResult], film: FilmInfo, film_dir: Path, *,
             seams: Sequence[Seam] = (), asset_digests: Mapping[str, str] | None = None,
             exports: Mapping[str, Path | None] | None = None, spans: Mapping[str, Span] | None = None,
             inputs: Mapping[str, str] | None = None, continuity: Mapping[str, Any] | None = None) -> dict[str, Any]:
    by_id = {r.id: r for r in results}
    digests = asset_digests or {}
    shots = []
    for i, s in enumerate(plan.shots):
        r = by_id[s.id]
        shots.append({
            "id": s.id, "prompt": s.prompt, "caption": s.caption, "provider": s.provider, "model": s.tier,
            "seed": s.seed, "duration": s.duration, "resolution": s.resolution, "aspect_ratio": s.aspect_ratio,
            "audio": s.audio, "camera": s.camera, "chain": s.chain, "start": s.start.describe(),
            "continues": s.parent, "method": s.method if s.parent else None, "end_image": s.end_image,
            "references": list(s.references), "characters": list(s.characters), "notes": list(s.notes),
            "transition": s.transition.as_dict() if s.overlap_frames else None,
            "inputs": _inputs(s, plan, digests),
            "file": _rel(r.segment, film_dir), "segment_sha256": r.sha256 or file_digest_or_none(Path(r.segment)),
            "last_frame": _rel(r.last_frame, film_dir),
            "frames_in_file": r.frames, "film_frames": r.new_frames, "seam_frames_dropped": r.new_from_frame,
            "has_audio": r.has_audio, "job_id": r.job_id, "cost_usd": r.cost_usd, "cache_key": r.key,
            "reused": r.reused, "generation_seconds": r.seconds, **span_fields(spans or {}, s.id), "color": s.color,
            "takes": _takes(r.take, film_dir),
            "hold": r.hold, "host_file": _rel(Path(r.segment).with_suffix(".host.mp4"), film_dir) if r.hold else None,
            "in_film": _film_place(film, i) if i < len(film.placements) else None,
        })
    flagged = [s for s in seams if s.flags]
    return {
        "storyfilm_manifest": 2,
        "title": plan.title,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "provider": plan.provider,
        "model": plan.tier,
        "film": {"file": _rel(film.path, film_dir), "sha256": file_digest_or_none(film.path),
                 "bytes": film.path.stat().st_size if film.path.is_file() else None,  # checked in a bucket
                 "inputs": dict(inputs or {}),
                 "duration": round(film.duration, 6), "frames": film.frames,
                 "fps": film.fps, "width": film.width, "height": film.height,
                 "planned_duration": round(plan.duration, 6), "normalised_segments": film.normalised,
                 "assembly": {"seconds": film.seconds, "copied_frames": film.copied_frames,
                              "encoded_frames": film.encoded_frames},
                 "loudness": film.loudness.as_dict() if film.loudness else None},
        "exports": {k: (_rel(v, film_dir) if v else None) for k, v in (exports or {}).items()},
        "cost_usd": {"estimated": plan.cost_usd, "spent_this_run": round(sum(r.cost_usd for r in results
                                                                             if not r.reused), 4),
                     "total": round(sum(r.cost_usd for r in results), 4), "budget": plan.budget_usd},
        "seams": {"count": len(seams), "flagged": [f"{s.before} -> {s.after}: {'; '.join(s.flags)}" for s in flagged],
                  "joins": [s.as_dict() for s in seams]},
        "continuity": dict(continuity) if continuity is not None else None,
        "shots": shots,
    }


def _takes(take: Mapping[str, Any] | None, film_dir: Path) -> dict[str, Any] | None:
    """A shot with takes: which one the film uses, how it was chosen, every take's score and file."""
    if take is None:
        return None
    return {**take, "files": [_rel(f, film_dir) for f in take.get("files", [])]}


# --- OpenTimelineIO --------------------------------------------------------------------------------


def _rt(frames: float, rate: float) -> otio.opentime.RationalTime:
    return otio.opentime.RationalTime(frames, rate)


def _clip(p: Placement, film: FilmInfo, index: int, film_dir: Path, metadata: dict[str, Any]) -> otio.schema.Clip:
    start, end = film.shot_span(index)
    src_rate = float(p.source_fps)
    # the piece's first film frame is source frame `source_start`; the clip starts at the cut
    in_point = _rt(p.source_start, src_rate) + _rt(start - p.first, film.fps).rescaled_to(src_rate)
    ref = otio.schema.ExternalReference(
        target_url=_rel(p.source, film_dir),
        available_range=otio.opentime.TimeRange(_rt(0, src_rate), _rt(p.source_frames, src_rate)))
    return otio.schema.Clip(name=p.label, media_reference=ref, metadata={"storyfilm": metadata},
                            source_range=otio.opentime.TimeRange(in_point, _rt(end - start, film.fps)))


def _transition(p: Placement, fps: int) -> otio.schema.Transition:
    kind = otio.schema.TransitionTypes.SMPTE_Dissolve if p.join.dissolve else otio.schema.TransitionTypes.Custom
    before = p.overlap // 2
    return otio.schema.Transition(name=p.join.name, transition_type=kind, in_offset=_rt(before, fps),
                                  out_offset=_rt(p.overlap - before, fps),
                                  metadata={"storyfilm": {"type": p.join.name, "frames": p.overlap}})


def timeline(plan: Plan, film: FilmInfo, film_dir: Path) -> otio.schema.Timeline:
    """The film as an OTIO timeline: a video track and an audio track, one clip per shot."""
    fps = film.fps
    tl = otio.schema.Timeline(name=plan.title, global_start_time=_rt(0, fps),
                              metadata={"storyfilm": {"film": _rel(film.path, film_dir), "frames": film.frames}})
    video = otio.schema.Track(name="Video", kind=otio.schema.TrackKind.Video)
    sound = otio.schema.Track(name="Audio", kind=otio.schema.TrackKind.Audio)
    for i, (p, s) in enumerate(zip(film.placements, plan.shots, strict=True)):
        meta = {"shot": s.id, "prompt": s.prompt, "caption": s.caption, "join": p.join.name}
        if p.overlap:
            video.append(_transition(p, fps))
            sound.append(_transition(p, fps))
        elif p.join.continuous and film.seam_crossfade_frames and p.source_start:
            # the sound crossfades from the dropped seam frame's audio, ending at the cut
            pre = min(Fraction(film.seam_crossfade_frames, fps), Fraction(p.source_start) / p.source_fps)
            sound.append(otio.schema.Transition(
                name="seam crossfade", transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                in_offset=otio.opentime.RationalTime.from_seconds(float(pre), fps), out_offset=_rt(0, fps)))
        video.append(_clip(p, film, i, film_dir, meta))
        if p.has_audio:
            sound.append(_clip(p, film, i, film_dir, meta))
        else:
            start, end = film.shot_span(i)
            sound.append(otio.schema.Gap(name=f"{p.label} (no sound)",
                                         source_range=otio.opentime.TimeRange(_rt(0, fps), _rt(end - start, fps))))
    tl.tracks.extend([video, sound])
    return tl


def write_otio(tl: otio.schema.Timeline, path: Path) -> Path:
    return _write_atomic(path, otio.adapters.write_to_string(tl, "otio_json").encode())


def write_timeline(plan: Plan, film: FilmInfo, film_dir: Path) -> Path:
    return write_otio(timeline(plan, film, film_dir), film_dir / TIMELINE)


# --- subtitles -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cue:
    start: int  # film frames
    end: int
    text: str


def cues(plan: Plan, film: FilmInfo) -> list[Cue]:
    """One cue per captioned shot, from its cut to the next; consecutive equal captions become one cue."""
    return cues_in(plan, [film.shot_span(i) for i in range(len(film.placements))])


def cues_in(plan: Plan, spans: Sequence[tuple[int, int]]) -> list[Cue]:
    """The cues of the shots at `spans` (film frames [start, end) of each shot from cut to cut)."""
    out: list[Cue] = []
    for s, (start, end) in zip(plan.shots, spans, strict=False):
        if not s.caption:
            continue
        if out and out[-1].text == s.caption and out[-1].end == start:
            out[-1] = Cue(out[-1].start, end, s.caption)
        else:
            out.append(Cue(start, end, s.caption))
    return out


def srt_time(frames: int, fps: int) -> str:
    ms = round(frames * 1000 / fps)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def srt_text(caption: str) -> str:
    """A caption as one SRT text line: no control or bidi characters (storyboards refuse them; a plan made
    another way may still carry them), no line breaks (a blank line ends a cue), no `-->` (a timing line)."""
    visible = "".join(c for c in caption if c.isspace() or text_problem(c) is None)
    return re.sub(r"-{2,}>", "->", " ".join(visible.split()))


def srt(plan: Plan, film: FilmInfo) -> str:
    return srt_of(cues(plan, film), film.fps)


def srt_of(cues: Sequence[Cue], fps: int) -> str:
    shown = [(c, text) for c in cues if (text := srt_text(c.text))]
    blocks = [f"{n}\n{srt_time(c.start, fps)} --> {srt_time(c.end, fps)}\n{text}\n"
              for n, (c, text) in enumerate(shown, 1)]
    return "\n".join(blocks)


def write_srt(plan: Plan, film: FilmInfo, film_dir: Path) -> Path | None:
    return write_cues(cues(plan, film), film.fps, film_dir)


def write_cues(cues: Sequence[Cue], fps: int, film_dir: Path) -> Path | None:
    """film.srt, or None (and no stale file) when no shot has a caption."""
    path = film_dir / SUBTITLES
    text = srt_of(cues, fps)
    if not text:
        path.unlink(missing_ok=True)
        return None
    return _write_atomic(path, text.encode())


# --- contact sheet ---------------------------------------------------------------------------------


def _frames_at(path: Path, indices: Sequence[int], fps: int) -> dict[int, np.ndarray]:
    """RGB frames at the given film frame indices, seeking to each (no decoding of the whole film)."""
    out: dict[int, np.ndarray] = {}
    with av.open(str(path)) as c:
        for want in sorted(set(indices)):
            _, frame = next(probe.frames_from(c, want, fps))
            out[want] = frame.to_ndarray(format="rgb24")
    return out


def _clock(frames: int, fps: int) -> str:
    m, s = divmod(frames / fps, 60)
    return f"{int(m)}:{s:04.1f}"


def contact_sheet(plan: Plan, film: FilmInfo, thumb_width: int = 320, columns: int = 4) -> Image.Image:
    """One frame per shot (the middle of its time in the film), labelled with its number, id and times."""
    spans = [film.shot_span(i) for i in range(len(film.placements))]
    frames = _frames_at(film.path, [(a + b - 1) // 2 for a, b in spans], film.fps)
    thumb_h = round(thumb_width * film.height / film.width)
    font = ImageFont.load_default(size=max(11, thumb_width // 22))
    label_h = int(font.size * 2.6) if isinstance(font, ImageFont.FreeTypeFont) else 28
    cols = max(1, min(columns, len(spans)))
    rows = -(-len(spans) // cols)
    pad = 8
    sheet = Image.new("RGB", (cols * (thumb_width + pad) + pad, rows * (thumb_h + label_h + pad) + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, ((a, b), s) in enumerate(zip(spans, plan.shots, strict=True)):
        x = pad + (i % cols) * (thumb_width + pad)
        y = pad + (i // cols) * (thumb_h + label_h + pad)
        thumb = Image.fromarray(frames[(a + b - 1) // 2]).resize((thumb_width, thumb_h), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x, y))
        draw.text((x, y + thumb_h + 3), f"{i + 1}. {s.id}", font=font, fill=(240, 240, 240))
        draw.text((x, y + thumb_h + 3 + label_h // 2), f"{_clock(a, film.fps)} - {_clock(b, film.fps)}",
                  font=font, fill=(170, 170, 170))
    return sheet


def write_contact_sheet(plan: Plan, film: FilmInfo, film_dir: Path) -> Path:
    path = film_dir / CONTACT_SHEET
    tmp = path.with_name(f".{path.name}.partial")
    contact_sheet(plan, film).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def write_all(plan: Plan, results: Sequence[ShotResult], film: FilmInfo, film_dir: Path, *,
              seams: Sequence[Seam] = (), asset_digests: Mapping[str, str] | None = None,
              spans: Mapping[str, Span] | None = None, inputs: Mapping[str, str] | None = None,
              continuity: Mapping[str, Any] | None = None) -> dict[str, Path | None]:
    """Every export of a finished film; the manifest last, naming the others (`spans`: the shots' times)."""
    exports: dict[str, Path | None] = {
        "timeline": write_timeline(plan, film, film_dir),
        "subtitles": write_srt(plan, film, film_dir),
        "contact_sheet": write_contact_sheet(plan, film, film_dir),
        "timeline_png": write_timeline_png(plan, spans or {}, film_dir),
    }
    if continuity is not None and continuity.get("picture"):
        exports["continuity"] = film_dir / continuity["picture"]
    exports["manifest"] = write_json(manifest(plan, results, film, film_dir, seams=seams, asset_digests=asset_digests,
                                              exports=exports, spans=spans, inputs=inputs, continuity=continuity),
                                   film_dir / MANIFEST)
    return exports

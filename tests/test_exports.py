"""Exports of a real film (local provider, no Prefect): manifest, OpenTimelineIO, SRT, contact sheet; and the flow."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from PIL import Image

from storyfilm import assets, session
from storyfilm.exports import srt, srt_time
from storyfilm.media import probe
from storyfilm.plan import Plan
from storyfilm.results import Film, ShotResult

from .helpers import write_image, write_storyboard

pytestmark = pytest.mark.slow  # every test here reads one film that a module fixture renders

BOARD = """\
version: 1
title: Export Test
defaults:
  duration: 2
  resolution: 480p
  seed: 5
assets:
  a: refs/a.png
shots:
  - id: dawn
    image: a
    prompt: Dawn over the harbour, slow push-in.
    caption: Morning.
  - id: boats
    prompt: The boats rock; the camera pans right.
    caption: Morning.
  - id: storm
    cut: true
    prompt: Night storm at sea.
    transition: {type: crossfade, duration: 0.5}
    caption: Then the storm.
  - id: lamp
    prompt: Warm lamp light.
    audio: false
    transition: {type: fade, duration: 1}
"""


@dataclass
class Made:
    plan: Plan
    results: list[ShotResult]
    film: Film
    dir: Path
    digests: dict[str, str]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    root = tmp_path_factory.mktemp("exports")
    write_image(root / "refs" / "a.png", (854, 480), seed=1)
    job = session.prepare(write_storyboard(root, BOARD), session.Options(output_dir=root / "output",
                                                                         run_id="exports-test"))
    results: dict[str, ShotResult] = {}
    for s in job.plan.shots:
        parent = results.get(s.parent) if s.parent else None
        results[s.id] = job.make_shot(s.id, parent)
    done = [results[s.id] for s in job.plan.shots]
    return Made(job.plan, done, job.finish(done), job.film_dir, dict(job.digests))


def test_the_film_has_the_planned_length_and_clean_seams(made: Made) -> None:
    assert made.plan.duration == 6.5 and made.film.info.frames == 156
    info = probe.probe(made.film.info.path)
    assert info.video and info.video.frames == 156
    assert [s.join for s in made.film.seams] == ["continue", "crossfade", "fade"] and made.film.flagged == []


def test_the_manifest_records_provenance_and_seams(made: Made) -> None:
    m = json.loads((made.dir / "manifest.json").read_text())
    assert m["film"]["duration"] == m["film"]["planned_duration"] == 6.5
    assert m["exports"] == {"timeline": "timeline.otio", "subtitles": "film.srt",
                            "contact_sheet": "contact_sheet.png", "timeline_png": "timeline.png",
                            "continuity": "continuity.png"}
    assert [c["anchor"] for c in m["continuity"]["chains"]] == [chain[0].id for chain in made.plan.chains]
    dawn, boats, storm, lamp = m["shots"]
    assert dawn["inputs"]["start_image"] == {"asset": "a", "sha256": made.digests["a"]}
    assert boats["inputs"]["continues"] == {"shot": "dawn", "cache_key": dawn["cache_key"]}
    for shot, result in zip(m["shots"], made.results, strict=True):
        assert (shot["provider"], shot["model"], shot["seed"], shot["job_id"]) == ("local", "standard", 5,
                                                                                  result.job_id)
        assert shot["segment_sha256"] == assets.file_digest(made.dir / shot["file"])
        assert shot["generation_seconds"] > 0 and shot["cost_usd"] == 0.0
    assert [(s["in_film"]["start"], s["in_film"]["end"]) for s in m["shots"]] == [
        (0.0, 2.0), (2.0, 3.75), (3.75, 5.0), (5.0, 6.5)]
    assert storm["transition"] == {"type": "crossfade", "duration": 0.5} and boats["transition"] is None
    assert lamp["has_audio"] is False and boats["in_film"]["source_start_frame"] == 1
    assert m["seams"]["count"] == 3 and m["seams"]["flagged"] == []
    assert m["seams"]["joins"][0]["join"] == "continue" and m["seams"]["joins"][0]["repeated_frames"] == 0


def test_the_timeline_loads_and_its_clips_rebuild_the_film(made: Made) -> None:
    tl = otio.adapters.read_from_file(str(made.dir / "timeline.otio"))
    video, sound = tl.tracks
    assert (video.kind, sound.kind) == (otio.schema.TrackKind.Video, otio.schema.TrackKind.Audio)
    frames = made.film.info.frames
    for track in (video, sound):
        assert track.duration().to_frames() == frames
        assert sum(item.duration().to_frames() for item in track if not isinstance(item, otio.schema.Transition)) \
            == frames
    clips = [c for c in video if isinstance(c, otio.schema.Clip)]
    assert [c.name for c in clips] == ["dawn", "boats", "storm", "lamp"]
    # a continued shot skips its first frame (the copy of the previous last frame); a transition's cut is
    # its middle, so the clip starts half a transition in
    assert [c.source_range.start_time.to_frames() for c in clips] == [0, 1, 6, 13]
    transitions = [t for t in video if isinstance(t, otio.schema.Transition)]
    assert [(t.transition_type, t.in_offset.to_frames(), t.out_offset.to_frames()) for t in transitions] == [
        (otio.schema.TransitionTypes.SMPTE_Dissolve, 6, 6), (otio.schema.TransitionTypes.Custom, 12, 12)]
    assert [type(x).__name__ for x in sound] == ["Clip", "Transition", "Clip", "Transition", "Clip", "Transition",
                                                 "Gap"]  # the seam's sound crossfade; lamp has no sound
    film_frames = probe.read_frames(made.film.info.path)
    for i, clip in enumerate(clips):
        path = made.dir / clip.media_reference.target_url
        assert path.is_file()
        handles = video.handles_of_child(clip)
        assert clip.source_range.start_time.to_frames() - (handles[0].to_frames() if handles[0] else 0) >= 0
        in_parent = video.range_of_child_at_index(list(video).index(clip)).start_time.to_frames()
        # 3 frames after the transition (if any): the film frame is the segment frame the clip names
        k = (transitions[i - 2].out_offset.to_frames() if i >= 2 else 0) + 3
        segment = probe.read_frames(path)
        want = clip.source_range.start_time.to_frames() + k
        errors = {j: float(np.abs(film_frames[in_parent + k].astype(np.float32) - segment[j]).mean())
                  for j in range(want - 2, want + 3)}
        assert min(errors, key=lambda j: errors[j]) == want and errors[want] < 2.0, (clip.name, errors)


def test_the_timeline_converts_to_final_cut_pro_xml_for_editors(made: Made) -> None:
    tl = otio.adapters.read_from_file(str(made.dir / "timeline.otio"))
    xml = otio.adapters.write_to_string(tl, "fcp_xml")  # the OTIO adapter plugin editors import through
    back = otio.adapters.read_from_string(xml, "fcp_xml").tracks[0]

    def items(track: otio.schema.Track) -> list[tuple[str, str, int]]:
        return [(type(x).__name__, x.name, x.duration().to_frames()) for x in track]

    assert items(back) == items(tl.tracks[0]) and back.duration().to_frames() == made.film.info.frames


def test_subtitles_are_timed_to_the_shots(made: Made) -> None:
    text = (made.dir / "film.srt").read_text()
    cues = re.findall(r"(\d+)\n(\S+) --> (\S+)\n(.+)\n", text)
    assert [c[3] for c in cues] == ["Morning.", "Then the storm."]  # dawn and boats share one cue
    tl = otio.adapters.read_from_file(str(made.dir / "timeline.otio"))
    video = tl.tracks[0]
    spans = [video.range_of_child_at_index(i) for i, x in enumerate(video) if isinstance(x, otio.schema.Clip)]
    frames = [(r.start_time.to_frames(), r.end_time_exclusive().to_frames()) for r in spans]
    assert [(c[1], c[2]) for c in cues] == [(srt_time(frames[0][0], 24), srt_time(frames[1][1], 24)),
                                            (srt_time(frames[2][0], 24), srt_time(frames[2][1], 24))]
    assert cues[1][1:3] == ("00:00:03,750", "00:00:05,000")


def test_subtitles_carry_no_control_characters_or_timing_lines(made: Made) -> None:
    """A plan made without a storyboard (the Python API) may carry anything in a caption; film.srt still has
    one clean text line per cue (storyboards refuse these characters before this)."""
    hostile = ["a\x1b[2Jb\u202ec", "x --> y\n\nz", "\x00\x07", "fine"]
    plan = replace(made.plan, shots=tuple(replace(s, caption=c) for s, c in zip(made.plan.shots, hostile, strict=True)))
    text = srt(plan, made.film.info)
    assert re.findall(r"(?m)^\d+\n\S+ --> \S+\n(.*)$", text) == ["a[2Jbc", "x -> y z", "fine"]
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e]", text)


def test_the_contact_sheet_shows_each_shot_once(made: Made) -> None:
    sheet = np.asarray(Image.open(made.dir / "contact_sheet.png").convert("RGB"))
    assert sheet.shape[1] == 8 + 4 * (320 + 8)
    film_frames = probe.read_frames(made.film.info.path)
    thumbs = []
    for i in range(4):
        a, b = made.film.info.shot_span(i)
        expected = np.asarray(Image.fromarray(film_frames[(a + b - 1) // 2]).resize((320, 180)))
        thumb = sheet[8:188, 8 + i * 328:328 + i * 328]
        assert np.abs(thumb.astype(np.float32) - expected).mean() < 4
        thumbs.append(thumb)
    assert all(np.abs(thumbs[i].astype(np.float32) - thumbs[i + 1]).mean() > 4 for i in range(3))
    assert sheet[190:220].std() > 20  # the labels under the frames


def test_the_flow_writes_every_export_and_reports_seams(prefect_server: None, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from storyfilm.flow import film

    write_image(tmp_path / "refs" / "a.png", (854, 480), seed=1)
    board = write_storyboard(tmp_path, BOARD.replace("title: Export Test", "title: Export Test\nloudness_lufs: -30"),
                             "export-flow.yaml")
    result = film(storyboard=str(board), output_dir=str(tmp_path / "out"), loudness_lufs=-18)
    film_dir = tmp_path / "out" / "export-flow"
    assert result["flagged_seams"] == 0 and result["duration"] == 6.5
    assert {p.name for p in film_dir.iterdir()} >= {"film.mp4", "manifest.json", "timeline.otio", "film.srt",
                                                    "contact_sheet.png"}
    m = json.loads((film_dir / "manifest.json").read_text())
    assert m["film"]["loudness"]["target_lufs"] == -18  # the flow parameter wins over the storyboard
    assert abs(m["film"]["loudness"]["achieved_lufs"] + 18) <= 0.3
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["film-export-flow"])))
        assert "**Seams:** all 3 clean" in str(artifact.data)

"""Is film.mp4 already what a run would make? Then a run leaves it alone.

A film's bytes depend on its segments (their digests), their order, how each joins the one before
(transitions, continued shots), how much of each is used, the film's format and its loudness target:
`film_key` digests exactly those. The subtitles depend on the captions and where each shot sits in the
film: `captions_key`. The manifest records both, with the film's own digest.

`check` answers before anything starts (a plan-only preview: the ledger read, kept segments hashed, no
provider, no Prefect): every shot reusable as it is, the manifest's keys equal to the ones the run would
have, film.mp4 and the other exports there and unchanged -> "up to date"; the same but with other captions
-> the subtitles, the timeline's caption metadata and the manifest are rewritten from the manifest's own
record of where each shot sits (no frame is decoded or encoded). Anything else: a run is needed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from storyfilm import takes
from storyfilm.assets import file_digest_or_none
from storyfilm.decide import Reuse
from storyfilm.plan import Plan
from storyfilm.results import ShotResult

KEY_VERSION = 1  # bump when what film.mp4 depends on changes (the assembly's output for the same inputs)
FILM, MANIFEST, SUBTITLES, TIMELINE = "film.mp4", "manifest.json", "film.srt", "timeline.otio"


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def film_key(plan: Plan, results: Sequence[ShotResult], loudness_lufs: float | None) -> str:
    """What film.mp4's bytes depend on (`loudness_lufs`: the target the run uses)."""
    from storyfilm.session import pieces

    by_id = {r.id: r for r in results}
    return _digest({"version": KEY_VERSION, "format": [plan.film.width, plan.film.height, plan.film.fps],
                    "loudness": loudness_lufs,
                    "pieces": [[by_id[p.label].sha256, p.start_frame, p.frames, repr(p.join)]
                               for p in pieces(plan, results)]})


def captions_key(plan: Plan) -> str:
    return _digest([s.caption for s in plan.shots])


def inputs(plan: Plan, results: Sequence[ShotResult], loudness_lufs: float | None) -> dict[str, str]:
    """The manifest's record of what the film was made from."""
    return {"film_key": film_key(plan, results, loudness_lufs), "captions_key": captions_key(plan)}


@dataclass(frozen=True)
class Verdict:
    state: Literal["up to date", "captions rewritten", "run"]
    film: Path | str  # a URL for outputs at a URL (bucket_up_to_date.py)
    why: str = ""  # why a run is needed
    shots: int = 0
    recorded: dict[str, Any] | None = field(default=None, repr=False)  # the manifest read (outputs at a URL)


def _manifest(film_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((film_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def reused_results(plan: Plan, decisions: Mapping[str, object]) -> list[ShotResult] | None:
    """The results the film holds when every job is reused (a shot with takes: its picked take, under the shot's
    id); None while a shot's takes are not picked yet."""
    if any(s.takes > 1 and s.chosen is None for s in plan.shots):
        return None
    return [replace(d.result, id=s.id) for s in plan.shots
            if isinstance(d := decisions[takes.take_id(s.id, s.chosen or 1)], Reuse)]


def check(plan: Plan, decisions: Mapping[str, object], film_dir: Path, loudness_lufs: float | None) -> Verdict:
    """What a run of `plan` would do to film_dir's film, given each shot's decision (see the module docstring)."""
    film = film_dir / FILM
    not_reused = [s.id for s in takes.jobs(plan) if not (isinstance(d := decisions[s.id], Reuse) and not d.restore)]
    if not_reused:
        return Verdict("run", film, f"{len(not_reused)} shot(s) to generate or restore")
    results = reused_results(plan, decisions)
    if results is None:
        return Verdict("run", film, "takes to pick")
    recorded = _manifest(film_dir)
    if recorded is None:
        return Verdict("run", film, "no manifest")
    film_record = recorded.get("film") or {}
    made_from = film_record.get("inputs") or {}
    if made_from.get("film_key") != film_key(plan, results, loudness_lufs):
        return Verdict("run", film, "the film's inputs changed")
    if any(path and not (film_dir / path).is_file() for path in (recorded.get("exports") or {}).values()):
        return Verdict("run", film, "an export is missing")
    if not film_record.get("sha256") or file_digest_or_none(film) != film_record["sha256"]:
        return Verdict("run", film, "film.mp4 is missing or was changed")
    if made_from.get("captions_key") == captions_key(plan):
        return Verdict("up to date", film, shots=len(plan.shots))
    rewrite_captions(plan, recorded, film_dir)
    return Verdict("captions rewritten", film, shots=len(plan.shots))


def _spans(recorded: dict[str, Any]) -> list[tuple[int, int]]:
    """Film frames [start, end) of each shot from cut to cut, as the manifest placed them."""
    cuts = [s["in_film"]["first_frame"] + s["in_film"]["overlap_frames"] // 2 for s in recorded["shots"]]
    return list(zip(cuts, [*cuts[1:], recorded["film"]["frames"]], strict=True))


def rewrite_captions(plan: Plan, recorded: dict[str, Any], film_dir: Path) -> None:
    """New captions on an unchanged film: film.srt, the timeline's caption metadata and the manifest."""
    import opentimelineio as otio

    from storyfilm import exports

    fps = recorded["film"]["fps"]
    subtitles = exports.write_cues(exports.cues_in(plan, _spans(recorded)), fps, film_dir)
    captions = {s.id: s.caption for s in plan.shots}
    timeline = film_dir / TIMELINE
    if timeline.is_file():
        tl = otio.adapters.read_from_file(str(timeline))
        for clip in tl.find_clips():
            meta = clip.metadata.get("storyfilm")
            if meta is not None and meta.get("shot") in captions:
                meta["caption"] = captions[meta["shot"]]
        exports.write_otio(tl, timeline)
    for shot in recorded["shots"]:
        shot["caption"] = captions.get(shot["id"], shot.get("caption"))
    recorded["exports"]["subtitles"] = SUBTITLES if subtitles else None
    recorded["film"]["inputs"]["captions_key"] = captions_key(plan)
    recorded["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
    exports.write_json(recorded, film_dir / MANIFEST)


def before_run(path: str | Path, options: Any) -> Verdict:
    """`check` for a run of the storyboard at `path` with session.Options `options` (plan-only: nothing paid)."""
    from storyfilm import bucket_up_to_date, output_url, session

    if output_url.is_url(options.output_dir):
        return bucket_up_to_date.before_run(path, options)
    film_dir = options.output_dir / session.load_board(path).slug
    if not (film_dir / MANIFEST).is_file():  # a first run: no need to read the ledger or hash kept files twice
        return Verdict("run", film_dir / FILM, "no manifest")
    seen = session.preview(path, options)
    target = options.loudness_lufs if options.loudness_lufs is not None else seen.plan.loudness_lufs
    return check(seen.plan, seen.decisions, seen.film.film_dir, target)

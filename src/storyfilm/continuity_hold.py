"""A shot's look on arrival: measured always, held toward its chain's anchor when the storyboard says `color: hold`.

The shot runner calls `settle` once a segment is kept in the house format (generate.py, beside the
re-encode), in the shot's own task, so a hold overlaps the generation of the other chains. The rules:

- Every segment is measured: the colour statistics of its first and last frames (continuity.py) go into its
  result, and so into the ledger, the manifest and the continuity report, without decoding it again.
- The anchor of a chain is its head's first frame. A `color: free` shot (an intended change: a sunset, the
  lights going off) is never pulled back, and its last frame is the anchor of the shots after it. Each result
  carries the anchor the next shot of its chain holds to (`ShotResult.anchor`).
- `color: hold`: the segment is corrected toward the anchor (colour_hold.hold_segment: mean/std in CIELAB,
  ramped over the segment so that its first frame, the seam, is untouched). The held segment is the shot's
  result (shots/<id>.mp4, kept under .kept/ by the shot's output key) and its corrected last frame is what
  the next shot starts from. The host's original stays kept under .kept/ by the generation key, and is
  linked as shots/<id>.host.mp4.
- Without `color`, nothing is altered.

What is paid for (the ledger key, `ShotPlan.key`) does not depend on `color`; what is kept
(`ShotPlan.output_key`) does. So switching `color` on or off for a finished shot redoes the hold (or undoes
it) from the kept original without calling the host; a held result is never served for an unheld shot or
the other way round. The shots continuing a shot whose look changed start from another frame: their keys
change, and they are generated again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from storyfilm.assets import file_digest
from storyfilm.continuity import ColourStats, delta_e, frame_stats
from storyfilm.errors import MediaError
from storyfilm.media import rgb
from storyfilm.plan import ShotPlan
from storyfilm.results import ShotResult
from storyfilm.storage import kept_paths, link, shot_paths

Log = Callable[[str], None]


def host_copy(shots_dir: Path, shot_id: str) -> Path:
    """shots/<id>.host.mp4: the host's original of a held shot."""
    return shots_dir / f"{shot_id}.host.mp4"


def settled(shot: ShotPlan, result: ShotResult) -> bool:
    """The result is what the shot's `color` asks for, and measured."""
    return result.key == shot.output_key and None not in (result.first_stats, result.last_stats, result.anchor)


def settle(shots_dir: Path, shot: ShotPlan, parent: ShotResult | None, result: ShotResult,
           log: Log | None = None) -> ShotResult:
    """`result` as the shot's `color` asks: held toward the anchor (from the host's original, kept under
    .kept/ by `shot.key`), or the original itself; measured, with the anchor the next shot holds to.

    `result` is the host's original as just kept (its key is `shot.key`), or an earlier settled result of the
    same generation. Raises MediaError when the original is needed and is no longer kept as it was.
    """
    if settled(shot, result):
        return result
    if result.key == shot.output_key:  # as the host made it (or kept before results were measured)
        first, last = rgb.first_and_last(kept_paths(shots_dir, result.key)[0])
        return _measured(shot, parent, result, frame_stats(first), frame_stats(last))
    host_video, host_last = kept_paths(shots_dir, shot.key)
    host_digest = result.host_sha256 or (result.sha256 if result.key == shot.key else "")
    if not host_video.is_file() or (host_digest and file_digest(host_video) != host_digest):
        raise MediaError(f"{host_video}: the host's original of shot '{shot.id}' is gone or changed, so its "
                         f"`color: {shot.color or 'unset'}` cannot be applied to it; run with --redo {shot.id}")
    first, host_end = rgb.first_and_last(host_video)
    out_video, out_last = kept_paths(shots_dir, shot.output_key)
    hold: dict[str, Any] | None = None
    if shot.color == "hold":
        from storyfilm.colour_hold import hold_segment

        target = ColourStats.from_dict(parent.anchor) if parent and parent.anchor else frame_stats(first)
        held = hold_segment(host_video, out_video, target, shot.fmt, last_png=out_last)
        hold = {k: v for k, v in held.as_dict().items() if k not in ("path", "last_png")}
        link(host_video, host_copy(shots_dir, shot.id))
        if log:
            log(f"{shot.id}: colour held toward its anchor in {held.seconds:.1f} s (last frame ΔE00 "
                f"{delta_e(held.before, target):.2f} -> {delta_e(held.after, target):.2f})")
    else:
        if out_video != host_video:  # a free shot: the host's files under its own output key
            link(host_last, out_last)
            link(host_video, out_video)
        host_copy(shots_dir, shot.id).unlink(missing_ok=True)
    video_path, last_path = shot_paths(shots_dir, shot.id)
    out = replace(result, key=shot.output_key, segment=str(video_path), last_frame=str(last_path),
                  sha256=file_digest(out_video), last_frame_sha256=file_digest(out_last), hold=hold,
                  host_sha256=host_digest or file_digest(host_video),
                  # the host's copy of its last frame is not the held one
                  last_frame_url=None if hold else result.last_frame_url if result.key == shot.key else None)
    # measured as decoded from the file the film is made of (the held end was encoded on its own)
    last = rgb.last_frame(out_video) if hold else host_end
    return _measured(shot, parent, out, frame_stats(first), frame_stats(last))


def _measured(shot: ShotPlan, parent: ShotResult | None, result: ShotResult, first: ColourStats,
              last: ColourStats) -> ShotResult:
    if shot.color == "free":
        anchor = last.as_dict()
    elif parent is not None and parent.anchor is not None:
        anchor = parent.anchor
    else:
        anchor = first.as_dict()  # a chain's head: its first frame
    return replace(result, first_stats=first.as_dict(), last_stats=last.as_dict(), anchor=anchor)

"""Characters in a shot, and what `method: reference` sends: the final prompt, the reference images and clip,
and what the plan says about them. Pure (the plan calls it).

Rules:
- every shot naming a character gets its description in the prompt, under a "Characters:" line;
- its images go as reference images where the shot's call takes references: a chain's first shot made from
  text, or a `method: reference` shot. Seedance takes no reference images together with a first or last
  frame, so a shot continued by its first frame (frame, extend), started from an image or ending on one
  sends the description only, and the plan says so;
- `method: reference` continues a shot by reference-to-video: the previous shot's last frame is reference
  image 1, the characters' images (and the shot's own `references`) follow, and where the host takes
  reference clips the previous shot's last seconds go as one. The model redraws the picture from them, so the
  join is a match cut, not a pixel-exact continuation: the plan notes it, the film joins it as a cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storyfilm.providers.specs import ProviderSpec
from storyfilm.storyboard import Storyboard

if TYPE_CHECKING:
    from storyfilm.plan import ShotPlan

CLIP_SECONDS = 5  # the previous shot's last seconds sent as a reference clip
MIN_CLIP_SECONDS = 2  # the hosts' shortest reference clip (S-003 line 42: each 2 to 15 s, 15 s in all)
MAX_PROMPT = 4000  # Apiframe's prompt limit (reference/providers.md §2.2), the longest a storyboard writes


@dataclass(frozen=True)
class Casting:
    """What a shot sends besides its own prompt, and what the plan says about it."""

    names: tuple[str, ...]  # the characters the shot names
    prompt: str  # the prompt as sent: the shot's, then the reference frame's and the characters' lines
    references: tuple[str, ...]  # asset names sent as reference images (after the reference frame, if any)
    clip_seconds: int  # seconds of the previous shot sent as a reference clip (0: none)
    notes: tuple[str, ...]
    sends_images: bool = False  # the characters' images are among `references`


def cast(board: Storyboard, index: int, spec: ProviderSpec, *, prompt: str, references: tuple[str, ...],
         by_reference: bool, frames: str | None, parent_seconds: int) -> Casting:
    """The shot at `index` with its characters. `frames`: what first/last frames the shot has ("the last frame
    of 'door'", ...), None if it takes references; `parent_seconds`: the new footage of the shot a
    `method: reference` shot continues."""
    shot, d = board.shots[index], board.defaults
    names = tuple(shot.characters if shot.characters is not None else (d.characters or []))
    notes: list[str] = []
    refs = references
    carried = frames is None
    if carried and names:
        refs = tuple(dict.fromkeys([*references, *(i for n in names for i in board.characters[n].images)]))
    elif names and any(board.characters[n].images for n in names):
        with_images = ", ".join(n for n in names if board.characters[n].images)
        notes.append(f"the images of {with_images} are not sent: Seedance takes no reference images together "
                     f"with {frames}; the description goes in the prompt (`method: reference` carries the images, "
                     "as a match cut)")
    first = 2 if by_reference else 1  # reference image 1 is the previous shot's last frame
    lines = []
    if by_reference:
        lines.append("Reference image 1 is the previous shot's last frame: carry on from its place, light and look.")
    if names:
        lines.append("Characters:")
        for n in names:
            c = board.characters[n]
            at = [first + refs.index(i) for i in dict.fromkeys(c.images)] if carried else []
            which = (f" (reference image{'s' if len(at) > 1 else ''} {', '.join(map(str, at))})" if at else "")
            lines.append(f"- {n}{which}" + (f": {c.description}" if c.description else ""))
    final = prompt + ("\n\n" + "\n".join(lines) if lines else "")
    clip = 0
    if by_reference:
        clip = min(CLIP_SECONDS, parent_seconds) if spec.capabilities.reference_clips else 0
        clip = clip if clip >= MIN_CLIP_SECONDS else 0
        sent = "the previous shot's last frame as reference image 1" + (
            f" and its last {clip} s as a reference clip" if clip else "")
        notes.append(f"gives up the exact seam: `method: reference` makes the shot from references ({sent}), "
                     "which Seedance cannot combine with a first frame, so the join is a match cut, not a "
                     "continuation of the same picture")
        if clip and not spec.capabilities.uploads:
            notes.append(f"{spec.name} has no upload endpoint: the reference clip is uploaded to a WaveSpeed or "
                         "Apiframe account configured beside it, and without one no clip is sent")
        if spec.paid:
            notes.append(f"reference-to-video is priced as {spec.name}'s text-to-video call, an estimate: no host "
                         "publishes whether reference media change the price")
    return Casting(names, final, refs, clip, tuple(notes), sends_images=carried and refs != references)


def reference_inputs(shot: ShotPlan) -> dict[str, Any]:
    """A `method: reference` shot's inputs beyond its references, for the manifest; nothing for other shots."""
    if not shot.by_reference:
        return {}
    clip = {"shot": shot.parent, "last_seconds": shot.reference_clip_seconds} if shot.reference_clip_seconds else None
    return {"reference_frame": {"shot": shot.parent, "as": "reference image 1"}, "reference_clip": clip,
            "seam": "match cut"}

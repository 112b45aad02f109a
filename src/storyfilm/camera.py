"""Camera moves: the names a storyboard may give, and the move a prompt describes. Pure (no media imports)."""

from __future__ import annotations

import hashlib
import re
from typing import Literal

CameraMove = Literal["static", "push_in", "pull_out", "pan_left", "pan_right", "tilt_up", "tilt_down",
                     "handheld"]
CAMERA_MOVES: tuple[CameraMove, ...] = ("static", "push_in", "pull_out", "pan_left", "pan_right",
                                        "tilt_up", "tilt_down", "handheld")

_CAMERA_WORDS: list[tuple[CameraMove, tuple[str, ...]]] = [
    ("static", ("static", "locked-off", "locked off", "tripod", "still frame", "camera fixed")),
    ("handheld", ("handheld", "hand-held", "shaky", "follows")),
    ("push_in", ("push-in", "push in", "pushes in", "dolly in", "zoom in", "zooms in", "close-up", "closeup")),
    ("pull_out", ("pull back", "pulls back", "pull-out", "pull out", "zoom out", "dolly out", "reveal")),
    ("pan_left", ("pan left", "pans left")),
    ("pan_right", ("pan right", "pans right", "pan", "sweep", "tracking")),
    ("tilt_up", ("tilt up", "tilts up", "crane up", "looks up")),
    ("tilt_down", ("tilt down", "tilts down", "crane down", "looks down")),
]


def camera_from_prompt(prompt: str) -> CameraMove:
    """The camera move a prompt asks for; a deterministic gentle move when it names none."""
    text = prompt.lower()
    for move, words in _CAMERA_WORDS:
        if any(re.search(rf"\b{re.escape(w)}", text) for w in words):
            return move
    options: tuple[CameraMove, ...] = ("push_in", "pan_right", "pan_left", "tilt_up")
    return options[int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(options)]


def resolve_camera(camera: str, prompt: str) -> CameraMove:
    """The camera move: the storyboard's hint, or the one the prompt describes."""
    for move in CAMERA_MOVES:
        if camera == move:
            return move
    return camera_from_prompt(prompt)

"""How a shot joins the one before it: a cut, a continuation, a crossfade or a fade through black.

Each kind knows what it does to the film, so the plan, the assembler, the sound track, the seam report
and the exports ask it instead of comparing names: how many film frames the two shots share (`frames`),
how a shared frame's picture is made (`picture`), how the two sounds meet (`sound_gains`), and how it
is written down (`name`, `as_dict`, `dissolve`). A storyboard asks for a `Transition`; the film joins
with a `Join`, which is the transition, or `Continue` where a plain cut leads into a shot that carries on
the previous shot's picture, or `MatchCut` where it leads into a shot redrawn from the previous shot's last
frame by reference (`method: reference`): a cut, judged as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np


def equal_power(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade out, fade in) gains over n samples whose powers sum to 1 at every sample."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    return np.cos(t * np.pi / 2).astype(np.float32), np.sin(t * np.pi / 2).astype(np.float32)


class _Mix:
    """Sound that meets sound: the outgoing part fades out under the incoming one."""

    def sound_gains(self, n: int, same_sound: bool) -> tuple[np.ndarray, np.ndarray]:
        """Gains for (the incoming part's first n samples, the outgoing part's last n samples)."""
        if same_sound:  # the same sound on both sides (an extend's echo): equal power would bump it by 3 dB
            t = ((np.arange(n, dtype=np.float64) + 0.5) / n).astype(np.float32)
            return t, 1 - t
        fade_out, fade_in = equal_power(n)
        return fade_in, fade_out


@dataclass(frozen=True)
class Cut(_Mix):
    """The shot starts where the previous one ends: nothing shared, the sound switches at the frame."""

    name: ClassVar[str] = "cut"
    duration: ClassVar[float] = 0.0
    continuous: ClassVar[bool] = False  # the shot carries on the previous one's picture
    dissolve: ClassVar[bool] = False  # the pictures mix into each other (an editor's dissolve)

    def frames(self, fps: int) -> int:
        return 0

    def join(self, continues_previous: bool, match: bool = False) -> Join:
        """How the film joins a shot that has this transition (and may carry on the shot before it, exactly
        or, `match`, redrawn from its last frame)."""
        return CONTINUE if continues_previous else MATCH if match else self

    def as_dict(self) -> dict[str, object]:
        return {"type": self.name, "duration": self.duration}

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Continue(Cut):
    """A cut into a shot that carries on the previous one's picture: the seam must not show.

    Its sound crossfades from the incoming segment's pre-roll (the sound under the frame dropped because
    it repeats the previous last frame), so the join neither clicks nor moves anything.
    """

    name: ClassVar[str] = "continue"
    continuous: ClassVar[bool] = True


@dataclass(frozen=True)
class MatchCut(Cut):
    """A cut into a shot redrawn from the previous one's last frame (`method: reference`): the picture may
    change at the join like at any cut, but nothing is shared or dropped. Named so reports say which it is."""

    name: ClassVar[str] = "match"


@dataclass(frozen=True)
class _Overlap(_Mix):
    """The two shots share `duration` seconds of the film: the previous shot's last, this one's first."""

    duration: float
    name: ClassVar[str]
    continuous: ClassVar[bool] = False

    def frames(self, fps: int) -> int:
        """Film frames this shot shares with the one before it."""
        return max(1, round(self.duration * fps))

    def join(self, continues_previous: bool, match: bool = False) -> Self:
        return self

    def as_dict(self) -> dict[str, object]:
        return {"type": self.name, "duration": self.duration}

    def __str__(self) -> str:
        return f"{self.name} {self.duration:g} s"


@dataclass(frozen=True)
class Crossfade(_Overlap):
    """The previous shot dissolves into this one."""

    name: ClassVar[str] = "crossfade"
    dissolve: ClassVar[bool] = True

    def picture(self, a: np.ndarray, b: np.ndarray, p: float, black: np.ndarray) -> np.ndarray:
        """A shared frame at progress p in (0, 1) from planar Y'CbCr frames a (outgoing) and b (incoming).

        Linear in Y'CbCr, so exactly a blend in RGB too.
        """
        mixed = a.astype(np.float32) * (1 - p) + b.astype(np.float32) * p
        return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Fade(_Overlap):
    """Through black: the previous shot goes to black over the first half, this one comes up from it."""

    name: ClassVar[str] = "fade"
    dissolve: ClassVar[bool] = False

    def picture(self, a: np.ndarray, b: np.ndarray, p: float, black: np.ndarray) -> np.ndarray:
        src, w = (a, 1 - 2 * p) if p < 0.5 else (b, 2 * p - 1)
        mixed = black.astype(np.float32) + (src.astype(np.float32) - black) * w
        out: np.ndarray = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        return out

    def sound_gains(self, n: int, same_sound: bool) -> tuple[np.ndarray, np.ndarray]:
        """Through silence: out over the first half, in over the second (the sounds never meet)."""
        half = n // 2
        out_gain, _ = equal_power(half)
        _, in_gain = equal_power(n - half)
        return (np.concatenate([np.zeros(half, np.float32), in_gain]),
                np.concatenate([out_gain, np.zeros(n - half, np.float32)]))


CUT = Cut()
CONTINUE = Continue()
MATCH = MatchCut()

Overlap = Crossfade | Fade  # the two shots share frames
Transition = Cut | Overlap  # what a storyboard asks for
Join = Cut | Continue | MatchCut | Overlap  # how the film joins two shots
_OVERLAPS: dict[str, type[Overlap]] = {"crossfade": Crossfade, "fade": Fade}


def transition(kind: str, seconds: float) -> Transition:
    """The transition a storyboard names (`cut`, `crossfade` or `fade`; a cut ignores the seconds)."""
    return CUT if kind == "cut" else _OVERLAPS[kind](seconds)

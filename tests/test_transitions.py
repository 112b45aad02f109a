"""Transitions know their overlap, their pictures and their sound; no I/O (assembly proves them on real media)."""

from __future__ import annotations

import numpy as np
import pytest

from storyfilm.transitions import CONTINUE, CUT, Crossfade, Fade, Join, equal_power, transition


def test_a_storyboard_transition_becomes_the_join_the_film_makes() -> None:
    assert transition("cut", 0.5) == CUT and CUT.frames(24) == 0
    assert transition("crossfade", 0.5) == Crossfade(0.5) and Crossfade(0.5).frames(24) == 12
    assert transition("fade", 1) == Fade(1) != Crossfade(1) and Fade(1).frames(24) == 24
    assert Crossfade(0.01).frames(24) == 1  # a transition always shares at least one frame
    # a plain cut into a shot that carries on the previous picture is a continuation; a transition stays itself
    assert CUT.join(continues_previous=True) == CONTINUE and CUT.join(continues_previous=False) == CUT
    assert Fade(1).join(continues_previous=True) == Fade(1)
    assert CONTINUE.continuous and not CUT.continuous and not Crossfade(1).continuous
    assert (str(CUT), str(Crossfade(0.5)), str(Fade(1))) == ("cut", "crossfade 0.5 s", "fade 1 s")
    assert Crossfade(0.5).as_dict() == {"type": "crossfade", "duration": 0.5}
    assert Crossfade(0.5).dissolve and not Fade(0.5).dissolve


def test_pictures_blend_and_a_fade_passes_through_black() -> None:
    a, b = np.full((6, 4), 200, np.uint8), np.full((6, 4), 40, np.uint8)
    black = np.full((6, 4), 16, np.uint8)
    assert (Crossfade(1).picture(a, b, 0.25, black) == 160).all()
    assert (Fade(1).picture(a, b, 0.5, black) == 16).all()  # the middle of a fade is black
    assert (Fade(1).picture(a, b, 0.25, black) == 108).all()  # halfway from a to black
    assert (Fade(1).picture(a, b, 0.75, black) == 28).all()  # halfway from black to b


@pytest.mark.parametrize("join", [CONTINUE, Crossfade(0.5)])
def test_sounds_that_meet_keep_their_level(join: Join) -> None:
    head, tail = join.sound_gains(1000, same_sound=False)  # unrelated sounds: equal power
    assert np.allclose(head ** 2 + tail ** 2, 1.0, atol=1e-6)
    head, tail = join.sound_gains(1000, same_sound=True)  # one sound on both sides: equal amplitude
    assert np.allclose(head + tail, 1.0, atol=1e-6)


def test_a_fade_sound_goes_through_silence_whatever_the_sounds() -> None:
    head, tail = Fade(0.5).sound_gains(1000, same_sound=True)
    assert (head[:500] == 0).all() and (tail[500:] == 0).all()
    assert np.allclose(head[500:], equal_power(500)[1]) and np.allclose(tail[:500], equal_power(500)[0])

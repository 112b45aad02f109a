"""What the emulated hosts charge, and the frame sizes they deliver. Pure.

Prices are USD per second of new footage by tier and resolution. Sourced (reference/providers.md §1.11):
WaveSpeed standard 480p/720p/1080p = 0.12/0.24/0.60 (video-extend, and i2v at 720p), fast 720p = 0.16;
fast video-extend "~17% cheaper than the standard Video-Extend at every resolution" = 0.10/0.20/0.50 (its
own page; not two thirds of standard like fast text- and image-to-video). Inferred [I]: standard t2v/i2v at
480p/1080p (same multipliers as extend); fast 480p/1080p (same 2/3 ratio as at 720p); mini = 50% of
standard; 4k = 2x 1080p. Apiframe and the gateway publish no figures [?]: the emulator charges them the
WaveSpeed text-to-video table, and Apiframe credits at 100 per USD. (providers/specs.py holds the same
figures as the client's estimates; tests/test_fidelity.py checks they agree.)
"""

from __future__ import annotations

import math

from storyfilm.plan import frame_size

FPS = 24
ASPECT_RATIOS = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")
USD_PER_SECOND: dict[str, dict[str, float]] = {
    "standard": {"480p": 0.12, "720p": 0.24, "1080p": 0.60, "4k": 1.20},
    "fast": {"480p": 0.08, "720p": 0.16, "1080p": 0.40},
    "mini": {"480p": 0.06, "720p": 0.12, "1080p": 0.30},
}
FAST_EXTEND_USD_PER_SECOND = {"480p": 0.10, "720p": 0.20, "1080p": 0.50}
CREDITS_PER_USD = 100


def cost_usd(tier: str, resolution: str, seconds: int, kind: str = "text") -> float:
    """`kind`: text, image or extend (WaveSpeed prices its fast extend on its own)."""
    table = FAST_EXTEND_USD_PER_SECOND if (tier, kind) == ("fast", "extend") else USD_PER_SECOND[tier]
    return round(table[resolution] * seconds, 4)


def credits(usd: float) -> int:
    return math.ceil(round(usd * CREDITS_PER_USD, 6))


def output_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """The delivered frame size: the project's table, and 4k as twice 1080p [I]."""
    if resolution == "4k":
        w, h = frame_size("1080p", aspect_ratio)
        return 2 * w, 2 * h
    return frame_size(resolution, aspect_ratio)


def nearest_aspect(width: int, height: int) -> str:
    """The supported aspect ratio closest to a picture's (what 'follow the input' resolves to)."""
    def distance(ratio: str) -> float:
        a, b = map(int, ratio.split(":"))
        return abs(math.log(width / height) - math.log(a / b))

    return min(ASPECT_RATIOS, key=distance)

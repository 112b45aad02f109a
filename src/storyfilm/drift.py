"""Colour drift as real image-to-video models show it, for the local renderer and the emulator.

Chained generation builds up contrast, saturation and a colour cast with every extension (a segment
made from a frame comes out a little "hotter" than that frame, and the next segment starts from there).
A `Drift` makes the animatic do the same, so continuity can be measured and held on test chains:

    contrast=0.06,saturation=0.05,brightness=0.02,warmth=0.03

Each amount is what one segment adds by its last frame, growing linearly from its first frame (which
stays exactly the start frame, so seams stay exact):
- contrast: the distance of every channel from the start frame's mean grey is multiplied by 1 + amount;
- saturation: the distance of every pixel from its own grey (Rec. 601 luma) is multiplied by 1 + amount;
- brightness: amount x 255 levels added to every channel;
- warmth: amount x 255 levels added to red and taken from blue.
Negative amounts drift the other way (a fading, cooling model). Each is limited to +-0.5 per segment.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from storyfilm.errors import DriftSpecError

NAMES = ("contrast", "saturation", "brightness", "warmth")
LIMIT = 0.5
ENV = "STORYFILM_LOCAL_DRIFT"  # the local provider's drift (same syntax as `storyfilm emulate --drift`)
_ALLOWED = (f"NAME=AMOUNT items separated by commas, NAME one of {', '.join(NAMES)}, "
            f"AMOUNT a number from -{LIMIT} to {LIMIT}")


@dataclass(frozen=True)
class Drift:
    """Per-segment drift amounts (see the module's docstring); all zero: no drift."""

    contrast: float = 0.0
    saturation: float = 0.0
    brightness: float = 0.0
    warmth: float = 0.0

    @property
    def active(self) -> bool:
        return any(getattr(self, name) for name in NAMES)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def spec(self) -> str:
        """The spec string `parse_drift` reads back ("" for no drift)."""
        return ",".join(f"{name}={getattr(self, name):g}" for name in NAMES if getattr(self, name))


def _amount(name: str, value: object, where: str) -> float:
    if name not in NAMES:
        raise DriftSpecError(f"{where}: unknown drift {name!r}; allowed: {', '.join(NAMES)}")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DriftSpecError(f"{where}: {name} must be a number from -{LIMIT} to {LIMIT}")
    try:
        amount = float(value)
    except ValueError:
        raise DriftSpecError(f"{where}: {name}={value!r} is not a number; expected one from -{LIMIT} to {LIMIT}"
                             ) from None
    if not math.isfinite(amount) or abs(amount) > LIMIT:
        raise DriftSpecError(f"{where}: {name}={value} is out of range; allowed -{LIMIT} to {LIMIT} per segment")
    return amount


def parse_drift(text: str, *, source: str = "drift") -> Drift:
    """`contrast=0.06,saturation=0.05` -> Drift; "" or "off" -> no drift. `source` names the setting in errors."""
    text = text.strip()
    if text in ("", "off", "none", "0"):
        return Drift()
    amounts: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name or not value:
            raise DriftSpecError(f"{source} {text!r}: item {item.strip()!r} is not NAME=AMOUNT; expected {_ALLOWED}")
        if name in amounts:
            raise DriftSpecError(f"{source} {text!r}: {name} is given twice")
        amounts[name] = _amount(name, value, f"{source} {text!r}")
    return Drift(**amounts)


def drift_from_mapping(values: Mapping[str, object] | None, *, source: str = "drift") -> Drift:
    """{"contrast": 0.06, ...} (a JSON body) -> Drift; None or {} -> no drift."""
    if values is None:
        return Drift()
    if not isinstance(values, Mapping):
        raise DriftSpecError(f"{source} must be an object such as {{\"contrast\": 0.06, \"saturation\": 0.05}}")
    return Drift(**{str(name): _amount(str(name), value, source) for name, value in values.items()})


def drift_from_env() -> Drift:
    """The local provider's drift from STORYFILM_LOCAL_DRIFT (unset: none)."""
    return parse_drift(os.environ.get(ENV, ""), source=ENV)


def drifted(img: Image.Image, drift: Drift, weight: float, pivot: float) -> Image.Image:
    """The picture drifted by `weight` (0..1) of one segment's amounts; `pivot` is the grey (0-255) that contrast
    spreads from. Pillow's C loops: a few milliseconds per 720p frame."""
    if weight <= 0 or not drift.active:
        return img
    if drift.saturation:
        img = Image.blend(img.convert("L").convert("RGB"), img, 1 + drift.saturation * weight)
    gain = 1 + drift.contrast * weight
    lift = drift.brightness * weight * 255
    warm = drift.warmth * weight * 255
    levels = np.arange(256, dtype=np.float64)
    base = pivot + (levels - pivot) * gain + lift
    table = np.concatenate([base + warm, base, base - warm])
    return img.point(np.clip(np.rint(table), 0, 255).astype(np.uint8).tolist())

"""Continuity of a chain's look: colour statistics of frames, and how far each hop drifts from its anchor.

Pure numpy on RGB frames (uint8, HxWx3); the caller decodes them (media/rgb.py decodes without the default
converter's rounding bias, which would itself look like drift).

Colour space. Frames are taken as sRGB (BT.709 primaries, D65 white) with the sRGB transfer function, and
converted to CIE 1976 L*a*b* relative to D65 (IEC 61966-2-1; CIE 15:2004). Statistics are the means and
standard deviations of L*, a* and b* over the frame (every pixel, or a regular grid of about 120 000 on
large frames), the mean chroma C*ab, and 5 %-step quantiles of each channel (what histogram matching
needs). Beside them, the three numbers of MSVBench's BrightnessContrastVariance (HITsz-TMG/MSVBench,
Metrics/VisualQuality/BrightnessContrastVariance.py): brightness = mean and contrast = standard deviation
of the OpenCV grey image (0.299 R + 0.587 G + 0.114 B, 0-255), saturation = mean HSV S channel
((max - min) / max, 0-255); its "total change" between two frames is the sum of the three absolute
differences. We compute them in floating point where OpenCV rounds each pixel to 8 bits first (a
difference below half a level).

Distance. ΔE is CIEDE2000 (Sharma, Wu and Dalal 2005) between Lab means: the CIE's current colour
difference, which corrects CIE76's overstatement of differences between saturated colours and its
non-uniformity in the blues. Drift saturates colours, so CIE76 would overstate it exactly where it
shows most. Contrast ratio = std L* / anchor std L*; saturation ratio = mean C*ab / anchor mean C*ab.

Anchors. A chain's anchor is its head's first frame. Every hop (shot) is measured by its last frame
against the anchor. A shot marked free (`color: free`: an intended change, a sunset) is measured but never
flagged, and its last frame becomes the anchor of the shots after it.

Thresholds (`Thresholds`), for what a viewer notices comparing the look of shots a few seconds apart:
- ΔE00 above 3.0: about 1 is just noticeable side by side; colours seen one after another (not side by
  side) need 2-3 before the change is seen;
- contrast ratio outside 0.85-1.15 and saturation ratio outside 0.85-1.15: changes of contrast and
  colourfulness under ~10 % pass unnoticed between separate images, 15 % is seen as "punchier" or "flatter".
A chain is flagged when any hop that is not free passes one of them. On the test chains (the local renderer,
static camera, drift contrast=0.06,saturation=0.05 per segment) the hops measure ΔE 1.1, 2.2, 3.1, 4.2,
5.3, 6.5 (flagged from the second hop on, by saturation x1.19), without drift 0.0, held 0.1-0.2.
`drift_per_hop` is the
least-squares slope, through the origin, of ΔE against the number of hops since the hop's anchor
(ΔE is 0 at the anchor by definition): ΔE per hop, what lets a person extrapolate a longer chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# sRGB (linear) -> XYZ, D65 (Lindbloom); the reference white of the same matrix.
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = _RGB_TO_XYZ.sum(axis=1)  # (0.95047, 1.0, 1.08883)
_EPS = (6 / 29) ** 3
_KAPPA = 1 / (3 * (6 / 29) ** 2)

QUANTILES = tuple(float(q) for q in np.linspace(0, 100, 21))  # per cent: what histogram matching maps
MAX_PIXELS = 120_000  # frames larger than this are measured on a regular grid of pixels


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)


_LINEAR_LUT = _srgb_to_linear(np.arange(256) / 255.0)  # uint8 sRGB -> linear, exact and fast


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (uint8 0-255, or float 0-1) -> L*a*b* (D65), float64, same shape."""
    lin = _LINEAR_LUT[rgb] if rgb.dtype == np.uint8 else _srgb_to_linear(np.asarray(rgb, dtype=np.float64))
    r, g, b = lin[..., 0], lin[..., 1], lin[..., 2]
    m = _RGB_TO_XYZ / _WHITE[:, None]
    # channel by channel: numpy's matmul is slow for an inner dimension of 3
    f = [_lab_f(m[i, 0] * r + m[i, 1] * g + m[i, 2] * b) for i in range(3)]
    return np.stack([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])], axis=-1)


def _lab_f(t: np.ndarray) -> np.ndarray:
    return np.where(t > _EPS, np.cbrt(t), t * _KAPPA + 4 / 29)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """L*a*b* (D65) -> sRGB float 0-1 (out-of-gamut colours clipped)."""
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f ** 3, (f - 4 / 29) / _KAPPA) * _WHITE
    return np.asarray(_linear_to_srgb(xyz @ _XYZ_TO_RGB.T))


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1) between Lab colours (..., 3), as in Sharma et al. 2005."""
    l1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=np.float64), -1, 0)
    l2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=np.float64), -1, 0)
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_bar ** 7 / (c_bar ** 7 + 25.0 ** 7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    d_l, d_c = l2 - l1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    d_h = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    l_bar, c_bar_p = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = np.where(np.abs(h1p - h2p) > 180, np.where(h_sum < 360, h_sum + 360, h_sum - 360), h_sum) / 2
    h_bar = np.where(c1p * c2p == 0, h_sum, h_bar)
    t = (1 - 0.17 * np.cos(np.radians(h_bar - 30)) + 0.24 * np.cos(np.radians(2 * h_bar))
         + 0.32 * np.cos(np.radians(3 * h_bar + 6)) - 0.20 * np.cos(np.radians(4 * h_bar - 63)))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar_p
    s_h = 1 + 0.015 * c_bar_p * t
    r_t = (-2 * np.sqrt(c_bar_p ** 7 / (c_bar_p ** 7 + 25.0 ** 7))
           * np.sin(np.radians(60 * np.exp(-(((h_bar - 275) / 25) ** 2)))))
    return np.asarray(np.sqrt((d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2
                              + r_t * (d_c / s_c) * (d_h / s_h)))


# --- one frame ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColourStats:
    """The look of one frame. Lab values in CIELAB units; brightness/contrast/saturation on MSVBench's 0-255."""

    l_mean: float
    a_mean: float
    b_mean: float
    l_std: float
    a_std: float
    b_std: float
    chroma: float  # mean C*ab
    brightness: float
    contrast: float
    saturation: float
    quantiles: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] = field(default=((), (), ()),
                                                                                        compare=False)

    @property
    def lab_mean(self) -> np.ndarray:
        return np.array([self.l_mean, self.a_mean, self.b_mean])

    @property
    def lab_std(self) -> np.ndarray:
        return np.array([self.l_std, self.a_std, self.b_std])

    def as_dict(self, *, quantiles: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {k: round(v, 3) for k, v in asdict(self).items() if k != "quantiles"}
        if quantiles:
            out["quantiles"] = [[round(v, 3) for v in q] for q in self.quantiles]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColourStats:
        q = data.get("quantiles") or ((), (), ())
        return cls(**{k: float(data[k]) for k in _STAT_FIELDS},
                   quantiles=(tuple(q[0]), tuple(q[1]), tuple(q[2])))


_STAT_FIELDS = ("l_mean", "a_mean", "b_mean", "l_std", "a_std", "b_std", "chroma", "brightness", "contrast",
                "saturation")


def sample(rgb: np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The frame's pixels (N, 3): all of them, or a regular grid of at most about `max_pixels`."""
    h, w = rgb.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
    return np.ascontiguousarray(rgb[::step, ::step, :3]).reshape(-1, 3)


def frame_stats(rgb: np.ndarray) -> ColourStats:
    """Colour statistics of one RGB frame (uint8)."""
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame, got {rgb.dtype} {rgb.shape}")
    px = sample(rgb)
    lab = srgb_to_lab(px)
    f = px.astype(np.float64)
    grey = f @ np.array([0.299, 0.587, 0.114])
    hi, lo = f.max(axis=1), f.min(axis=1)
    sat = np.divide(hi - lo, hi, out=np.zeros_like(hi), where=hi > 0) * 255
    mean, std = lab.mean(axis=0), lab.std(axis=0)
    q = np.percentile(lab, QUANTILES, axis=0).T
    return ColourStats(l_mean=float(mean[0]), a_mean=float(mean[1]), b_mean=float(mean[2]),
                       l_std=float(std[0]), a_std=float(std[1]), b_std=float(std[2]),
                       chroma=float(np.hypot(lab[:, 1], lab[:, 2]).mean()),
                       brightness=float(grey.mean()), contrast=float(grey.std()), saturation=float(sat.mean()),
                       quantiles=(tuple(map(float, q[0])), tuple(map(float, q[1])), tuple(map(float, q[2]))))


def delta_e(a: ColourStats, b: ColourStats) -> float:
    """CIEDE2000 between the Lab means of two frames."""
    return float(ciede2000(a.lab_mean, b.lab_mean))


def contrast_ratio(stats: ColourStats, anchor: ColourStats) -> float:
    return stats.l_std / max(anchor.l_std, 1e-6)


def saturation_ratio(stats: ColourStats, anchor: ColourStats) -> float:
    # A grey anchor has almost no chroma: compare against at least 1 C*ab unit (a barely visible tint).
    return stats.chroma / max(anchor.chroma, 1.0)


def msvbench_change(a: ColourStats, b: ColourStats) -> float:
    """MSVBench's BrightnessContrastVariance total change: |Δbrightness| + |Δcontrast| + |Δsaturation| (0-255)."""
    return abs(a.brightness - b.brightness) + abs(a.contrast - b.contrast) + abs(a.saturation - b.saturation)


# --- a chain --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """When a hop is flagged (see the module's docstring for why these numbers)."""

    delta_e: float = 3.0
    contrast_band: float = 0.15  # ratio outside 1 -+ this
    saturation_band: float = 0.15


@dataclass(frozen=True)
class ShotColour:
    """One shot of a chain as continuity sees it: its first and last frames, and whether it may change the look."""

    shot: str
    first: ColourStats
    last: ColourStats
    free: bool = False  # `color: free`: an intended change; its end is the next shots' anchor


@dataclass(frozen=True)
class Hop:
    shot: str
    anchor: str  # the shot whose frame this hop is measured against (the head's first, a free shot's last)
    hops_from_anchor: int
    delta_e: float  # last frame vs anchor, CIEDE2000 of the Lab means
    contrast_ratio: float
    saturation_ratio: float
    lightness_change: float  # ΔL* of the means (signed: + brighter)
    msvbench_change: float  # last frame vs anchor
    delta_e_in_shot: float  # last vs first frame of this shot: what this segment added
    seam_delta_e: float | None  # first frame vs the previous shot's last (0 for an exact seam); None at the head
    free: bool
    flags: tuple[str, ...]
    first: ColourStats
    last: ColourStats

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if key in ("first", "last"):
                out[key] = getattr(self, key).as_dict()
            elif isinstance(value, float):
                out[key] = round(value, 3)
            elif isinstance(value, tuple):
                out[key] = list(value)
            else:
                out[key] = value
        out["flagged"] = self.flagged
        return out


@dataclass(frozen=True)
class ChainReport:
    anchor: str  # the chain head's shot id
    anchor_stats: ColourStats
    hops: tuple[Hop, ...]
    drift_per_hop: float  # ΔE per hop (least squares through the origin)
    thresholds: Thresholds

    @property
    def flagged(self) -> bool:
        return any(h.flagged for h in self.hops)

    @property
    def max_delta_e(self) -> float:
        return max((h.delta_e for h in self.hops), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor, "hops": [h.as_dict() for h in self.hops],
                "drift_per_hop": round(self.drift_per_hop, 3), "max_delta_e": round(self.max_delta_e, 3),
                "flagged": self.flagged, "flagged_hops": [h.shot for h in self.hops if h.flagged],
                "thresholds": asdict(self.thresholds), "anchor_stats": self.anchor_stats.as_dict(quantiles=True)}


def anchor_after(anchor: ColourStats, shot: ShotColour) -> ColourStats:
    """The anchor for the shot after `shot`: a free shot's last frame, else unchanged. The hold follows it too:
    a free shot is not held, and the shots after it are held to its end."""
    return shot.last if shot.free else anchor


def _flags(hop_delta_e: float, contrast: float, saturation: float, limits: Thresholds) -> tuple[str, ...]:
    flags = []
    if hop_delta_e > limits.delta_e:
        flags.append(f"ΔE {hop_delta_e:.1f} > {limits.delta_e:g}")
    if abs(contrast - 1) > limits.contrast_band:
        flags.append(f"contrast x{contrast:.2f} (allowed {1 - limits.contrast_band:g}-{1 + limits.contrast_band:g})")
    if abs(saturation - 1) > limits.saturation_band:
        flags.append(f"saturation x{saturation:.2f} (allowed {1 - limits.saturation_band:g}-"
                     f"{1 + limits.saturation_band:g})")
    return tuple(flags)


def chain_report(shots: Sequence[ShotColour], thresholds: Thresholds | None = None) -> ChainReport:
    """The continuity report of one chain, its shots in chain order (the head first)."""
    if not shots:
        raise ValueError("a chain has at least one shot")
    limits = thresholds or Thresholds()
    anchor, anchor_id, since = shots[0].first, shots[0].shot, 0
    hops: list[Hop] = []
    for i, shot in enumerate(shots):
        since += 1
        de = delta_e(shot.last, anchor)
        cr, sr = contrast_ratio(shot.last, anchor), saturation_ratio(shot.last, anchor)
        hops.append(Hop(
            shot=shot.shot, anchor=anchor_id, hops_from_anchor=since, delta_e=de, contrast_ratio=cr,
            saturation_ratio=sr, lightness_change=shot.last.l_mean - anchor.l_mean,
            msvbench_change=msvbench_change(shot.last, anchor), delta_e_in_shot=delta_e(shot.last, shot.first),
            seam_delta_e=delta_e(shot.first, shots[i - 1].last) if i else None, free=shot.free,
            flags=() if shot.free else _flags(de, cr, sr, limits), first=shot.first, last=shot.last))
        if shot.free:
            anchor, anchor_id, since = anchor_after(anchor, shot), shot.shot, 0
    held = [(h.hops_from_anchor, h.delta_e) for h in hops if not h.free]
    n = np.array([x for x, _ in held], dtype=np.float64)
    slope = float(n @ np.array([y for _, y in held]) / (n @ n)) if held else 0.0
    return ChainReport(anchor=shots[0].shot, anchor_stats=shots[0].first, hops=tuple(hops), drift_per_hop=slope,
                       thresholds=limits)

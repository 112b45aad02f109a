"""timeline.png: where a run's time went, as a Gantt chart.

One row per chain (its shots in order). Each shot this run generated is a bar from taking its provider
slot to its segment being kept, labelled with its id; the time it spent ready but waiting for a slot is
the hatched grey stretch before it. Under the rows, a strip shows how many shots generated at once.
Reused shots generated nothing: they are named in their row's label, not drawn. Times are seconds from
the first shot being ready.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from storyfilm.plan import Plan, ShotPlan
from storyfilm.shot_times import Span

TIMELINE_PNG = "timeline.png"
_BG, _INK, _DIM, _GRID = (24, 24, 28), (236, 236, 236), (150, 150, 158), (52, 52, 60)
_WAIT, _HATCH = (70, 70, 78), (110, 110, 120)
_COLOURS = [(86, 150, 240), (72, 190, 110), (232, 168, 56), (200, 110, 220), (226, 90, 80), (80, 200, 200)]
_PAD, _ROW, _BAR, _LABEL_W, _PLOT_W = 14, 30, 20, 190, 900


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled font: no system fonts needed


def _tick(total: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if total / step <= 12:
            return float(step)
    return 7200.0


def _at_once(spans: Sequence[Span], t0: datetime) -> list[tuple[float, int]]:
    """(seconds, shots generating from then on), at every change."""
    edges = sorted([((s.started - t0).total_seconds(), 1) for s in spans]
                   + [((s.finished - t0).total_seconds(), -1) for s in spans])
    level, out = 0, []
    for t, step in edges:  # at equal times an end sorts first
        level += step
        out.append((t, level))
    return out


def timeline_picture(plan: Plan, spans: Mapping[str, Span]) -> Image.Image:
    chains: list[list[ShotPlan]] = plan.chains
    made = [spans[s.id] for s in plan.shots if s.id in spans]
    big, mid, small = _font(17), _font(13), _font(12)
    strip = 46
    height = 34 + 22 + len(chains) * _ROW + 12 + strip + 20 + _PAD
    img = Image.new("RGB", (_PAD + _LABEL_W + _PLOT_W + _PAD, height), _BG)
    draw = ImageDraw.Draw(img)
    reused = len(plan.shots) - len(made)
    if not made:
        draw.text((_PAD, 10), f"Timeline of {plan.title}: every shot reused, nothing generated", font=big, fill=_INK)
        t0, total = None, 1.0
    else:
        t0 = min(s.queued for s in made)
        end = max(s.finished for s in made)
        total = max((end - t0).total_seconds(), 0.001)
        waited = sum(s.waited for s in made)
        draw.text((_PAD, 10), f"Timeline of {plan.title}: {len(made)} shot(s) generated in {total:.1f} s"
                  + (f", {reused} reused" if reused else "") + f"; {waited:.1f} s waited for a slot in all",
                  font=big, fill=_INK)
    x0, y_axis = _PAD + _LABEL_W, 34

    def x(seconds: float) -> float:
        return x0 + _PLOT_W * seconds / total

    step = _tick(total)
    rows_bottom = y_axis + 22 + len(chains) * _ROW
    for k in range(int(total / step) + 1):
        gx = x(k * step)
        draw.line((gx, y_axis + 16, gx, rows_bottom + 12 + strip), fill=_GRID)
        draw.text((gx + 2, y_axis), f"{k * step:g} s", font=small, fill=_DIM)
    for r, chain in enumerate(chains):
        y = y_axis + 22 + r * _ROW
        gone = [s.id for s in chain if s.id not in spans]
        label = f"chain {r + 1}: {chain[0].id}" + (f" ({len(gone)} reused)" if gone else "")
        draw.text((_PAD, y + 4), label, font=mid, fill=_INK if len(gone) < len(chain) else _DIM)
        if t0 is None:
            continue
        colour = _COLOURS[r % len(_COLOURS)]
        for shot in chain:
            span = spans.get(shot.id)
            if span is None:
                continue
            q, s, f = ((t - t0).total_seconds() for t in (span.queued, span.started, span.finished))
            top, bottom = y + (_ROW - _BAR) // 2, y + (_ROW + _BAR) // 2
            if s - q > 0:
                draw.rectangle((x(q), top + 4, x(s), bottom - 4), fill=_WAIT)
                for hx in range(int(x(q)), int(x(s)), 6):  # hatching: waiting, not working
                    draw.line((hx, bottom - 4, min(hx + 6, x(s)), top + 4), fill=_HATCH)
            draw.rectangle((x(s), top, max(x(f), x(s) + 1), bottom), fill=colour, outline=_BG)
            name = shot.id
            while name and draw.textlength(name, font=small) > x(f) - x(s) - 4:
                name = name[:-1]
            if name:
                draw.text((x(s) + 3, top + 4), name, font=small, fill=_BG)
    y = rows_bottom + 12
    draw.text((_PAD, y + 2), "generating at once", font=mid, fill=_INK)
    if t0 is not None:
        changes = _at_once(made, t0)
        peak = max((n for _, n in changes), default=1) or 1
        draw.text((_PAD, y + 20), f"(peak {peak})", font=small, fill=_DIM)
        for (ta, n), (tb, _) in zip(changes, changes[1:], strict=False):
            if n:
                draw.rectangle((x(ta), y + strip - round(strip * n / peak), x(tb), y + strip), fill=(120, 160, 220))
    draw.text((_PAD, height - _PAD - 12), "bars: generating (slot taken to segment kept); hatched: ready, waiting "
              "for a slot", font=small, fill=_DIM)
    return img


def write_timeline_png(plan: Plan, spans: Mapping[str, Span], film_dir: Path) -> Path:
    path = film_dir / TIMELINE_PNG
    tmp = path.with_name(f".{path.name}.partial")
    timeline_picture(plan, spans).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path

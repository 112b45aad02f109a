"""timeline.png: where a run's time went, as a Gantt chart.

One row per chain (its shots in order). Each shot this run generated is a bar from taking its provider
slot to its segment being kept, labelled with its id; the time it spent ready but waiting for a slot is
the hatched grey stretch before it (waiting for a slot, or for its task run to start after the
shot before it: Prefect's hand-over). Under the rows, a strip shows how many shots generated at once.
Reused shots generated nothing: they are named in their row's label, not drawn. Times are seconds from
the first shot being ready.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from storyfilm.plan import Plan
from storyfilm.shot_times import Span

TIMELINE_PNG = "timeline.png"
_BG, _INK, _DIM, _GRID = (24, 24, 28), (236, 236, 236), (150, 150, 158), (52, 52, 60)
_WAIT, _HATCH = (70, 70, 78), (110, 110, 120)
_COLOURS = [(86, 150, 240), (72, 190, 110), (232, 168, 56), (200, 110, 220), (226, 90, 80), (80, 200, 200)]
_PAD, _ROW, _BAR, _LABEL_W, _PLOT_W, _TOP = 14, 30, 20, 190, 900, 56


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


Box = tuple[float, float, float, float]  # left, top, right, bottom


@dataclass(frozen=True)
class Layout:
    """Where everything goes: time 0 is the first shot being ready."""

    t0: datetime | None  # None: nothing generated
    total: float  # seconds shown
    rows: int

    def x(self, seconds: float) -> float:
        return _PAD + _LABEL_W + _PLOT_W * seconds / self.total

    def row_top(self, row: int) -> int:
        return _TOP + row * _ROW

    def boxes(self, span: Span, row: int) -> tuple[Box, Box]:
        """The waiting stretch and the bar of a shot in `row`."""
        assert self.t0 is not None
        q, s, f = ((t - self.t0).total_seconds() for t in (span.queued, span.started, span.finished))
        top, bottom = self.row_top(row) + (_ROW - _BAR) // 2, self.row_top(row) + (_ROW + _BAR) // 2
        return (self.x(q), top + 4, self.x(s), bottom - 4), (self.x(s), top, max(self.x(f), self.x(s) + 1), bottom)


def layout(plan: Plan, spans: Mapping[str, Span]) -> Layout:
    made = [spans[s.id] for s in plan.shots if s.id in spans]
    if not made:
        return Layout(None, 1.0, len(plan.chains))
    t0 = min(s.queued for s in made)
    return Layout(t0, max((max(s.finished for s in made) - t0).total_seconds(), 0.001), len(plan.chains))


def bars(plan: Plan, spans: Mapping[str, Span]) -> dict[str, Box]:
    """Each generated shot's bar in the picture."""
    where = layout(plan, spans)
    return {shot.id: where.boxes(spans[shot.id], row)[1]
            for row, chain in enumerate(plan.chains) for shot in chain if shot.id in spans}


def timeline_picture(plan: Plan, spans: Mapping[str, Span]) -> Image.Image:
    chains = plan.chains
    made = [spans[s.id] for s in plan.shots if s.id in spans]
    where = layout(plan, spans)
    big, mid, small = _font(17), _font(13), _font(12)
    strip = 46
    rows_bottom = where.row_top(len(chains))
    height = rows_bottom + 12 + strip + 20 + _PAD
    img = Image.new("RGB", (_PAD + _LABEL_W + _PLOT_W + _PAD, height), _BG)
    draw = ImageDraw.Draw(img)
    reused = len(plan.shots) - len(made)
    if where.t0 is None:
        draw.text((_PAD, 10), f"Timeline of {plan.title}: every shot reused, nothing generated", font=big, fill=_INK)
    else:
        draw.text((_PAD, 10), f"Timeline of {plan.title}: {len(made)} shot(s) generated in {where.total:.1f} s"
                  + (f", {reused} reused" if reused else "") + f"; {sum(s.waited for s in made):.1f} s ready but "
                  "waiting in all", font=big, fill=_INK)
    step = _tick(where.total)
    for k in range(int(where.total / step) + 1):
        gx = where.x(k * step)
        draw.line((gx, _TOP - 6, gx, rows_bottom + 12 + strip), fill=_GRID)
        draw.text((gx + 2, _TOP - 22), f"{k * step:g} s", font=small, fill=_DIM)
    for r, chain in enumerate(chains):
        y = where.row_top(r)
        gone = [s.id for s in chain if s.id not in spans]
        label = f"chain {r + 1}: {chain[0].id}" + (f" ({len(gone)} reused)" if gone else "")
        draw.text((_PAD, y + 4), label, font=mid, fill=_INK if len(gone) < len(chain) else _DIM)
        colour = _COLOURS[r % len(_COLOURS)]
        for shot in chain:
            if shot.id not in spans:
                continue
            wait, bar = where.boxes(spans[shot.id], r)
            if wait[2] > wait[0]:
                draw.rectangle(wait, fill=_WAIT)
                for hx in range(int(wait[0]), int(wait[2]), 6):  # hatching: waiting, not working
                    draw.line((hx, wait[3], min(hx + 6, wait[2]), wait[1]), fill=_HATCH)
            draw.rectangle(bar, fill=colour, outline=_BG)
            name = shot.id
            while name and draw.textlength(name, font=small) > bar[2] - bar[0] - 4:
                name = name[:-1]
            if name:
                draw.text((bar[0] + 3, bar[1] + 4), name, font=small, fill=_BG)
    y = rows_bottom + 12
    draw.text((_PAD, y + 2), "generating at once", font=mid, fill=_INK)
    if where.t0 is not None:
        changes = _at_once(made, where.t0)
        peak = max((n for _, n in changes), default=1) or 1
        draw.text((_PAD, y + 20), f"(peak {peak})", font=small, fill=_DIM)
        for (ta, n), (tb, _) in zip(changes, changes[1:], strict=False):
            if n:
                draw.rectangle((where.x(ta), y + strip - round(strip * n / peak), where.x(tb), y + strip),
                               fill=(120, 160, 220))
    draw.text((_PAD, height - _PAD - 12), "bars: generating (slot taken to segment kept); hatched: ready (the shot "
              "before kept), waiting for a slot or for its task to start", font=small, fill=_DIM)
    return img


def write_timeline_png(plan: Plan, spans: Mapping[str, Span], film_dir: Path) -> Path:
    path = film_dir / TIMELINE_PNG
    tmp = path.with_name(f".{path.name}.partial")
    timeline_picture(plan, spans).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path

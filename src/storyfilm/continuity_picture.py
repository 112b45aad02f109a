"""continuity.png: the drift of every chain at a glance.

One strip per chain: the anchor frame, then each shot's last frame in chain order, captioned with its shot id
and ΔE from the anchor, a bar whose length is that ΔE against the flag threshold, and a coloured frame:
green within half the threshold, amber below it, red (and "!") when the hop is flagged, blue for a
`color: free` shot (an intended change, which starts a new anchor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from storyfilm.continuity import ChainReport, Hop

THUMB_WIDTH = 176
PER_ROW = 9  # frames per row (the anchor's included): longer chains wrap
_BG, _INK, _DIM = (24, 24, 28), (236, 236, 236), (150, 150, 158)
_GREEN, _AMBER, _RED, _BLUE = (72, 190, 110), (232, 168, 56), (226, 70, 62), (86, 150, 240)
_PAD, _BORDER, _CAPTION = 12, 4, 46

Frame = np.ndarray | Path


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled font: no system fonts needed


def _thumb(frame: Frame | None, width: int, height: int) -> Image.Image:
    if frame is None:
        return Image.new("RGB", (width, height), (60, 60, 66))
    img = Image.open(frame).convert("RGB") if isinstance(frame, Path) else Image.fromarray(frame[:, :, :3])
    return img.resize((width, height), Image.Resampling.LANCZOS)


def _colour(hop: Hop, limit: float) -> tuple[int, int, int]:
    if hop.free:
        return _BLUE
    if hop.flagged:
        return _RED
    return _GREEN if hop.delta_e <= limit / 2 else _AMBER


def _note(hop: Hop, chain_anchor: str) -> str:
    if hop.free:
        return "free: new anchor"
    if hop.anchor != chain_anchor:  # held to a free shot's end
        return ("! " if hop.flagged else "") + f"vs {hop.anchor}: contrast x{hop.contrast_ratio:.2f}"
    return ("! " if hop.flagged else "") + f"contrast x{hop.contrast_ratio:.2f}, sat x{hop.saturation_ratio:.2f}"


def continuity_picture(chains: Sequence[ChainReport], last_frames: Mapping[str, Frame],
                       anchor_frames: Mapping[str, Frame], *, thumb_width: int = THUMB_WIDTH,
                       aspect: float | None = None) -> Image.Image:
    """The picture: `last_frames` by shot id, `anchor_frames` by chain anchor (the head's first frame); the
    thumbnails' aspect ratio is the first frame's unless given."""
    if aspect is None:
        first = next(iter([*anchor_frames.values(), *last_frames.values()]), None)
        size = (Image.open(first).size if isinstance(first, Path) else (first.shape[1], first.shape[0])
                if first is not None else (16, 9))
        aspect = size[0] / size[1]
    tw = thumb_width
    th = round(tw / aspect)
    cell_w, cell_h = tw + 2 * _BORDER + _PAD, th + 2 * _BORDER + _CAPTION
    head_h = 34
    rows_per_chain = [-(-(1 + len(c.hops)) // PER_ROW) for c in chains]  # the anchor takes the first cell
    strip_title = 26
    width = _PAD + min(PER_ROW, 1 + max((len(c.hops) for c in chains), default=0)) * cell_w
    height = head_h + sum(strip_title + r * cell_h + _PAD for r in rows_per_chain) + _PAD
    big, mid, small = _font(18), _font(15), _font(13)
    limit = chains[0].thresholds.delta_e if chains else 3.0
    # "dE": Pillow's bundled font has no Greek capitals
    heading = (f"Continuity: colour difference (CIEDE2000 dE) of each shot's last frame from its anchor; "
               f"flagged above {limit:g}")
    img = Image.new("RGB", (max(width, round(big.getlength(heading)) + 2 * _PAD), height), _BG)
    draw = ImageDraw.Draw(img)
    draw.text((_PAD, 8), heading, font=big, fill=_INK)
    y = head_h
    for chain, rows in zip(chains, rows_per_chain, strict=True):
        verdict, colour = ("FLAGGED", _RED) if chain.flagged else ("holds", _GREEN)
        title = (f"chain {chain.anchor}: {len(chain.hops)} shots, max dE {chain.max_delta_e:.1f}, "
                 f"drift {chain.drift_per_hop:.2f} dE/hop  ")
        draw.text((_PAD, y + 4), title, font=mid, fill=_INK)
        draw.text((_PAD + draw.textlength(title, font=mid), y + 4), verdict, font=mid, fill=colour)
        y += strip_title
        cells: list[tuple[Frame | None, str, str, tuple[int, int, int], float | None]] = [
            (anchor_frames.get(chain.anchor), f"anchor: {chain.anchor}", "first frame", _DIM, None)]
        for hop in chain.hops:
            cells.append((last_frames.get(hop.shot), hop.shot, _note(hop, chain.anchor), _colour(hop, limit),
                          hop.delta_e))
        for k, (frame, name, note, edge, de) in enumerate(cells):
            row, col = divmod(k, PER_ROW)
            x0, y0 = _PAD + col * cell_w, y + row * cell_h
            draw.rectangle((x0, y0, x0 + tw + 2 * _BORDER - 1, y0 + th + 2 * _BORDER - 1), fill=edge)
            img.paste(_thumb(frame, tw, th), (x0 + _BORDER, y0 + _BORDER))
            ty = y0 + th + 2 * _BORDER + 3
            label = name if de is None else f"{name}  dE {de:.1f}"
            draw.text((x0, ty), label, font=mid, fill=_INK)
            if de is not None:  # the bar: full width at twice the threshold
                bar_w = tw + 2 * _BORDER
                draw.rectangle((x0, ty + 19, x0 + bar_w, ty + 23), fill=(50, 50, 56))
                draw.rectangle((x0, ty + 19, x0 + round(bar_w * min(1.0, de / (2 * limit))), ty + 23), fill=edge)
                draw.line((x0 + bar_w // 2, ty + 17, x0 + bar_w // 2, ty + 25), fill=_DIM)  # the threshold
            draw.text((x0, ty + 27), note, font=small, fill=edge if de is not None else _DIM)
        y += rows * cell_h + _PAD
    return img


def save_continuity_png(chains: Sequence[ChainReport], last_frames: Mapping[str, Frame],
                        anchor_frames: Mapping[str, Frame], path: Path) -> Path:
    continuity_picture(chains, last_frames, anchor_frames).save(path, format="PNG")
    return path

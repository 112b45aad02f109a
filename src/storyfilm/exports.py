"""What a finished film leaves beside it: manifest.json (provenance of every shot)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storyfilm.assemble import FilmInfo
from storyfilm.generate import ShotResult
from storyfilm.plan import Plan


def _rel(path: str | Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def manifest(plan: Plan, results: Sequence[ShotResult], film: FilmInfo, film_dir: Path) -> dict[str, Any]:
    by_id = {r.id: r for r in results}
    shots = []
    for s in plan.shots:
        r = by_id[s.id]
        shots.append({
            "id": s.id, "prompt": s.prompt, "caption": s.caption, "provider": s.provider, "model": s.tier,
            "seed": s.seed, "duration": s.duration, "resolution": s.resolution, "aspect_ratio": s.aspect_ratio,
            "audio": s.audio, "camera": s.camera, "chain": s.chain, "start": s.start.describe(),
            "continues": s.parent, "method": s.method if s.parent else None, "end_image": s.end_image,
            "references": list(s.references), "transition": s.transition,
            "file": _rel(r.segment, film_dir), "last_frame": _rel(r.last_frame, film_dir),
            "frames_in_file": r.frames, "film_frames": r.new_frames, "seam_frames_dropped": r.new_from_frame,
            "has_audio": r.has_audio, "job_id": r.job_id, "cost_usd": r.cost_usd, "cache_key": r.key,
            "reused": r.reused, "generation_seconds": r.seconds,
        })
    return {
        "storyfilm_manifest": 1,
        "title": plan.title,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "provider": plan.provider,
        "model": plan.tier,
        "film": {"file": _rel(film.path, film_dir), "duration": round(film.duration, 6), "frames": film.frames,
                 "fps": film.fps, "width": film.width, "height": film.height,
                 "planned_duration": plan.duration, "normalised_segments": film.normalised},
        "cost_usd": {"estimated": plan.cost_usd, "spent_this_run": round(sum(r.cost_usd for r in results
                                                                             if not r.reused), 4),
                     "total": round(sum(r.cost_usd for r in results), 4), "budget": plan.budget_usd},
        "shots": shots,
    }


def write_json(data: dict[str, Any], path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path

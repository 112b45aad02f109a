"""The free preview a producer approves from: the local renderer's animatic of the whole storyboard. No Prefect.

Made in a scratch folder beside the film (FILM_DIR/animatic/SLUG/film.mp4, with its contact sheet), through
the same run as a film (session.prepare on the offline provider, its own ledger), so an unchanged shot is
reused; an unchanged storyboard (same content and asset bytes) reuses the whole animatic.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from storyfilm import session
from storyfilm.exports import CONTACT_SHEET
from storyfilm.plan import KEY_VERSION
from storyfilm.providers.specs import DEFAULT_PROVIDER
from storyfilm.results import ShotResult

FOLDER = "animatic"
KEY_FILE = "animatic.key"
# what the offline renderer ignores: a change to these keeps the animatic
_IGNORED = {"approve", "budget_usd", "provider", "model"}


@dataclass(frozen=True)
class Animatic:
    film: Path
    contact_sheet: Path | None
    reused: bool


def key(film: session.PlannedFilm) -> str:
    """The storyboard's content as the renderer sees it: its fields and its assets' bytes."""
    body = {"board": film.board.model_dump(mode="json", exclude=_IGNORED), "assets": dict(sorted(film.digests.items())),
            "keys": KEY_VERSION}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def make(storyboard: str | Path, film_dir: Path) -> Animatic:
    """The animatic of the storyboard whose film is made in `film_dir`, made or reused."""
    scratch = film_dir / FOLDER
    options = session.Options(provider=DEFAULT_PROVIDER, output_dir=scratch, budget_usd=None)
    film = session.plan_film(storyboard, options)
    wanted = key(film)
    done = film.film_dir
    sheet = done / CONTACT_SHEET
    try:
        kept = (done / KEY_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        kept = ""
    if kept == wanted and (done / "film.mp4").is_file():
        return Animatic(done / "film.mp4", sheet if sheet.is_file() else None, reused=True)
    job = session.prepare(storyboard, options)
    results: dict[str, ShotResult] = {}
    for shot in job.plan.shots:  # storyboard order: a shot's parent is always made before it
        results[shot.id] = job.make_shot(shot.id, results[shot.parent] if shot.parent else None)
    made = job.finish([results[s.id] for s in job.plan.shots])
    (done / KEY_FILE).write_text(wanted + "\n", encoding="utf-8")
    return Animatic(made.info.path, sheet if sheet.is_file() else None, reused=False)

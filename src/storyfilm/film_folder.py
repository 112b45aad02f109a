"""Which storyboard file a film folder belongs to: two storyboards never share one.

Folder names come from file names (storyboard.slugify keeps different names apart), but the same name in
two folders (a/film.yaml, b/film.yaml) run into one output directory would still meet in output/film/ and
the second run would replace the first one's film. The folder records its storyboard's path; a run of
another storyboard file that still exists is refused before anything is written or paid for.
"""

from __future__ import annotations

import os
from pathlib import Path

from storyfilm.errors import PlanError

OWNER_FILE = ".storyboard"


def owner(film_dir: Path) -> Path | None:
    try:
        text = (film_dir / OWNER_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return Path(text) if text else None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a == b or os.path.samefile(a, b)
    except OSError:
        return False


def conflict(film_dir: Path, storyboard: str | Path) -> str | None:
    """Why `storyboard` may not use `film_dir` (another existing storyboard file owns it), or None."""
    mine = Path(storyboard).resolve()
    theirs = owner(film_dir)
    if theirs is None or _same_file(theirs, mine) or not theirs.exists():
        return None  # a new folder, this storyboard's, or one whose storyboard is gone (moved or renamed)
    return (f"{film_dir} holds the film of {theirs}, and {mine} has the same file name; rename one of them "
            "or give this one its own --output")


def check(film_dir: Path, storyboard: str | Path) -> None:
    """PlanError if `film_dir` is another storyboard's (see conflict); writes nothing."""
    if (problem := conflict(film_dir, storyboard)) is not None:
        raise PlanError(problem)


def claim(film_dir: Path, storyboard: str | Path) -> None:
    """Make `film_dir` this storyboard's (PlanError if another storyboard's: see conflict)."""
    check(film_dir, storyboard)
    mine = Path(storyboard).resolve()
    if owner(film_dir) != mine:
        film_dir.mkdir(parents=True, exist_ok=True)
        tmp = film_dir / f".{OWNER_FILE}.partial"
        tmp.write_text(f"{mine}\n", encoding="utf-8")
        tmp.replace(film_dir / OWNER_FILE)

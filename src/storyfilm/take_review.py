"""`pick: review` without Prefect: what a person is shown (markdown with each take's thumbnail and score), and
the question asked in a terminal. The Prefect form (a paused run) is _prefect.review_takes."""

from __future__ import annotations

import sys
from typing import TextIO

from storyfilm import pictures
from storyfilm.errors import ReviewError
from storyfilm.take_pick import TakesToReview

THUMB = 200  # px: a take's last frame in the artifact (JPEG, a few KB)


def markdown(asked: TakesToReview) -> str:
    """Each take's last frame (a small inline JPEG) and its score, the score's choice marked."""
    rows = []
    for s, frame in zip(asked.scores, asked.last_frames, strict=True):
        jpeg = pictures.thumbnail(frame, THUMB)
        image = f"![take {s.take}]({pictures.data_uri(jpeg)})" if jpeg else "(no picture)"
        mark = " (the score's choice)" if s.take == asked.suggested else ""
        rows.append(f"| **{s.take}**{mark} | {image} | {s.score:g} | {s.frozen:.2f} | {s.clipped:.2f} | "
                    f"{s.seam:.2f} | {s.drift:.2f} | {s.blur:.2f} |")
    return (f"# {asked.title}: choose a take of shot `{asked.shot_id}`\n\n> {asked.prompt}\n\n"
            "| take | last frame | score | frozen | clipped | seam | drift | blur |\n"
            "|---|---|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n\nScore: 100 x (1 - frozen) x (1 - clipped) x (1 - seam) x (1 - drift) x "
            "(1 - blur / 2); see the README's \"Takes\".\n")


def ask_in_terminal(asked: TakesToReview, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    """The take a person types (Enter: the score's choice); ReviewError when there is no terminal to ask in."""
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stderr if out is None else out
    if not stdin.isatty():
        raise ReviewError(f"shot '{asked.shot_id}' has `pick: review` and this run has no terminal to ask in and no "
                          "Prefect server to pause on (its takes are kept and paid once). Run it from a terminal, "
                          "or with a Prefect server (PREFECT_API_URL) to choose in the UI, or write `pick: auto` or "
                          f"a take number (the score prefers take {asked.suggested})")
    last = len(asked.scores)
    lines = [f"shot '{asked.shot_id}': choose a take (last frames: " + ", ".join(asked.last_frames) + ")"]
    lines += [f"  take {s.take}: score {s.score:g}" + (" (the score's choice)" if s.take == asked.suggested else "")
              for s in asked.scores]
    print("\n".join(lines), file=out, flush=True)
    for _ in range(3):
        print(f"take 1-{last} [Enter: {asked.suggested}]:", file=out, flush=True)
        answer = stdin.readline()
        if not answer:  # end of input: nobody is there
            break
        text = answer.strip() or str(asked.suggested)
        if text.isdigit() and 1 <= int(text) <= last:
            return int(text)
        print(f"'{text}' is not a take; allowed 1 to {last}", file=out, flush=True)
    raise ReviewError(f"shot '{asked.shot_id}': no take was chosen; its takes are kept (paid once): run again, or "
                      "write `pick: auto` or a take number")

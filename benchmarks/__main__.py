"""Run every benchmark and write benchmarks/results.md.

    python -m benchmarks                      # everything (about 10 minutes on 2 cores), writes benchmarks/results.md
    python -m benchmarks --only lastframe     # some of: assembly, lastframe, orchestration, critical_path,
                                              # startup, rerun, before_after, ledger
    python -m benchmarks --quick              # tiny inputs, one run each: checks that everything works (~1 min)

Run it from the repository root after `pip install -e ".[dev]"` (MoviePy comes with the dev extra). The
notes at the end of the results file (after the marker line) are kept when it is written again.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from benchmarks import assembly, before_after, critical_path, lastframe, ledger, orchestration, rerun, startup
from benchmarks.common import ROOT, Section, load, log, machine, table

RESULTS = ROOT / "benchmarks" / "results.md"
NOTES_MARKER = "<!-- notes below this line are kept when `python -m benchmarks` rewrites this file -->"
PARTS = ("assembly", "lastframe", "orchestration", "critical_path", "startup", "rerun", "before_after", "ledger")


def _commit() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out


def sections(parts: list[str], repeat: int, quick: bool) -> list[Section]:
    """Run the parts in order; each section is closed (its duration and load kept) as soon as it is done."""
    runs = {
        "assembly": lambda: assembly.run([2, 6] if quick else [10, 30], 1 if quick else repeat, quick=quick),
        "lastframe": lambda: lastframe.run(1 if quick else max(repeat, 5), (1, 3) if quick else lastframe.LENGTHS),
        "orchestration": lambda: orchestration.run(0.5 if quick else 2.0, 1 if quick else repeat, quick=quick),
        "critical_path": lambda: critical_path.run(0.5 if quick else 4.0, 1, quick=quick),
        "startup": lambda: startup.run(1 if quick else repeat, quick=quick),
        "rerun": lambda: rerun.run(1 if quick else repeat, shots=3 if quick else rerun.SHOTS),
        "before_after": lambda: before_after.run(repeat=1 if quick else max(repeat, 5), segments=2 if quick else 30,
                                                 seconds=1 if quick else 5),
        "ledger": lambda: ledger.run(1 if quick else repeat, shots=20 if quick else 100),
    }
    return [section.close() for part in PARTS if part in parts for section in runs[part]()]


def document(done: list[Section], started: float, load_before: str, command: str, commit: str, notes: str) -> str:
    head = ["# storyfilm benchmarks", "",
            f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M %Z')} at commit `{commit}`, in "
            f"{(time.perf_counter() - started) / 60:.1f} min. Other work shared the machine: the load averages "
            f"(1, 5, 15 min, as `uptime` shows them) were {load_before} at the start and {load()} at the end, and "
            "each section states its own. Compare ratios measured in the same run rather than absolute times.", "",
            *machine(), ""]
    checks = [c for s in done for c in s.checks]
    if checks:
        head += ["## Targets (issue 9)", "", *table(("target", "measured", "met"),
                                                    [(t, m, "yes" if ok else "**no**") for t, m, ok in checks]),
                 "", "Where a target is missed, the notes at the end say what limits it.", ""]
    body = "\n".join(s.markdown() for s in done)
    return "\n".join(head) + "\n" + body + "\n" + NOTES_MARKER + "\n" + notes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (medians are reported)")
    parser.add_argument("--quick", action="store_true", help="tiny inputs, one run each")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results file (default {RESULTS.relative_to(ROOT)}; --quick prints only)")
    args = parser.parse_args()
    started, load_before, commit = time.perf_counter(), load(), _commit()
    done = sections(args.only, args.repeat, args.quick)
    out = args.out or (None if args.quick else RESULTS)
    previous = out.read_text() if out and out.exists() else ""
    notes = previous.split(NOTES_MARKER, 1)[1].lstrip("\n") if NOTES_MARKER in previous else ""
    command = "python -m benchmarks" + (f" --only {' '.join(args.only)}" if args.only != list(PARTS) else "") + (
        " --quick" if args.quick else "") + (f" --repeat {args.repeat}" if args.repeat != 3 else "")
    text = document(done, started, load_before, command, commit, notes)
    if out:
        out.write_text(text)
        log(f"wrote {out}")
    else:
        print(text)


if __name__ == "__main__":
    main()

"""What every benchmark shares: the machine's description, workers in their own process with the peak memory of
their whole process tree, medians and markdown tables.

Memory is the resident set (RSS) summed over a process and all its descendants (ffmpeg children included),
sampled from /proc every few milliseconds, counted between the moments the worker starts and ends the
measured operation (so the interpreter's start-up is not timed, but what it holds in memory is counted).
Shared pages are counted once per process, as `ps` would: tools that fork many processes look as large as
they are to the machine's memory budget.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def prefect_home(path: str | Path) -> str:
    """`path` as a PREFECT_HOME. With STORYFILM_BENCH_PREFECT_DB (the tests' copy of a migrated Prefect database,
    tests/prefect_db.py) the database starts as a copy of it: Prefect's server then has no migration to run,
    ~13 s of CPU per home in a --quick run, whose warm-ups are skipped and whose times mean nothing."""
    Path(path).mkdir(parents=True, exist_ok=True)
    if migrated := os.environ.get("STORYFILM_BENCH_PREFECT_DB"):
        shutil.copyfile(migrated, Path(path) / "prefect.db")
    return str(path)


# --- the machine ---------------------------------------------------------------------------------


def load() -> str:
    """The load averages (1, 5, 15 minutes), as `uptime` prints them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed"


def _ffmpeg_version() -> str:
    from storyfilm.media.ffmpeg import ffmpeg_exe

    out = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True, check=False).stdout
    return out.split("\n", 1)[0].replace("ffmpeg version ", "").split(" Copyright")[0]


def machine() -> list[str]:
    """Markdown lines describing this machine and the software measured."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    fs = "unknown"
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
        best = max((m for m in mounts if str(tmp).startswith(m[1])), key=lambda m: len(m[1]))
        fs = f"{best[2]} ({best[0]})"
    except (OSError, ValueError):
        pass
    versions = ", ".join(f"{name} {_version(name)}" for name in ("prefect", "av", "numpy", "pillow", "moviepy"))
    return [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} cores; RAM {_mem_total_gib():.0f} GiB; temporary files on {fs}",
        f"- {platform.system()} {platform.release()}, Python {platform.python_version()}",
        f"- ffmpeg {_ffmpeg_version()} (imageio-ffmpeg {_version('imageio-ffmpeg')}); {versions}",
    ]


# --- process-tree memory -------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                continue
    except OSError:
        pass
    return out


def tree_rss(pid: int) -> tuple[int, int]:
    """(bytes resident, processes) of `pid` and all its descendants."""
    total, count, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue  # it exited meanwhile
        count += 1
        todo += _children(p)
    return total, count


@dataclass
class TreeSampler:
    """Samples a process tree's RSS in a background thread: (wall time, bytes, processes)."""

    pid: int
    interval: float = 0.01
    samples: list[tuple[float, int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, n = tree_rss(self.pid)
            if n:
                self.samples.append((time.time(), rss, n))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float = 0.0, end: float = float("inf")) -> tuple[int, int]:
        """(peak bytes, most processes at once) between two wall times."""
        inside = [(rss, n) for t, rss, n in self.samples if start <= t <= end] or [(0, 0)]
        return max(r for r, _ in inside), max(n for _, n in inside)


# --- workers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    seconds: float  # the operation's wall time, measured inside the worker
    peak_rss: int  # bytes, the process tree's peak during the operation
    processes: int  # most processes alive at once during it
    result: dict[str, Any]  # whatever else the worker returned


def operation(fn: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    """Run `fn` in a worker and report its wall time and the wall-clock span the parent samples memory in."""
    t0 = time.time()
    start = time.perf_counter()
    extra = fn() or {}
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "t0": t0, "t1": time.time(), **extra}


def run_worker(target: str, args: dict[str, Any], *, cwd: Path | None = None,
               env: dict[str, str] | None = None, timeout: float = 900) -> Measured:
    """Run `module:function(**args)` of this package in a fresh interpreter; it must return `operation(...)`."""
    argv = [sys.executable, "-m", "benchmarks.worker", target, json.dumps(args)]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    proc = subprocess.Popen(argv, cwd=cwd or ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    with TreeSampler(proc.pid) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"{target} timed out after {timeout} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{target} failed ({proc.returncode}):\n{err[-3000:]}")
    report = json.loads(out.strip().splitlines()[-1])
    peak, processes = sampler.peak(report.pop("t0"), report.pop("t1"))
    return Measured(report.pop("seconds"), peak, processes, report)


def run_process(argv: Sequence[str], *, cwd: Path | None = None) -> Measured:
    """Run a plain command (e.g. cp): its wall time from start to exit, and its tree's peak memory."""
    start = time.perf_counter()
    t0 = time.time()
    proc = subprocess.Popen(list(argv), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with TreeSampler(proc.pid, interval=0.001) as sampler:
        _, err = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    peak, processes = sampler.peak(t0)
    return Measured(seconds, peak, processes, {})


# --- statistics and tables --------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def spread(values: Sequence[float]) -> str:
    """'median (min-max)' of a few runs."""
    return f"{median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def mib(n: float) -> str:
    return f"{n / MIB:.0f} MiB"


@dataclass
class Section:
    """One benchmark's part of the results file, and its verdicts on the issue's targets."""

    title: str
    lines: list[str] = field(default_factory=list)
    checks: list[tuple[str, str, bool]] = field(default_factory=list)  # (target, measured, met)

    def __post_init__(self) -> None:
        self.started = time.perf_counter()
        self.load_before = load()
        self.took: float | None = None
        self.load_after = ""

    def close(self) -> Section:
        """The section's measurements are done: keep its duration and the load at its end."""
        if self.took is None:
            self.took, self.load_after = time.perf_counter() - self.started, load()
        return self

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def check(self, target: str, measured: str, met: bool) -> None:
        self.checks.append((target, measured, met))

    def markdown(self) -> str:
        self.close()
        head = [f"## {self.title}", "", f"_load average before {self.load_before}, after {self.load_after}; "
                f"this section took {self.took:.0f} s_", ""]
        return "\n".join(head + self.lines) + "\n"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def repeat_main(run: Callable[[int], list[Section]], doc: str, repeat: int) -> None:
    """The command line of a part that takes only --repeat: prints its sections."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=repeat)
    print("\n".join(s.markdown() for s in run(parser.parse_args().repeat)))

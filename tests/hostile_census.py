"""A census of hostile storyboards and command lines (issue 17), each tried through the real CLI.

    python tests/hostile_census.py [--classes 1,3] [--json results.json]

Measures whatever `storyfilm` is importable: put another checkout first to measure it
(`PYTHONPATH=/path/to/main/src python tests/hostile_census.py`). Every case runs `python -m storyfilm ...`
in a fresh folder, with a timeout, while plain TCP listeners on 127.0.0.1 and 127.0.0.2 (one port) count
connections; `run`s report to one Prefect server started here. Outcomes:

- refused: exit 1 or 2 with an error message, no traceback, no connection to a listener;
- accepted: exit 0 (or a connection was made: the input was acted on);
- traceback: a Python traceback or an unexpected exit code;
- hang: no answer within the case's timeout.

A case is handled well when its outcome is the one it expects (most expect `refused`; some, such as a
merge-key override or an EXIF-rotated photo, expect `accepted` with a check of the result) and its output
has no terminal escapes, NUL or bidi overrides, and no password.
Not a pytest module (it takes minutes); the pytest tests that pin each class are in test_hostile_*.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.netlab import HttpsServers, Listeners, trickle  # noqa: E402

PASSWORD = "hunter2-census"
ONE = "shots:\n  - id: a\n    prompt: a quiet harbour\n    duration: 1\n"


@dataclass
class Result:
    code: int | None
    out: str
    seconds: float
    connections: int
    folder: Path


Check = Callable[[Result], str | None]  # a problem with an accepted (or refused) result, or None


@dataclass
class Case:
    cls: int
    name: str
    argv: list[str]  # after `python -m storyfilm`; {board} is the storyboard's path
    board: str  # storyboard text; {port} is the listeners' port
    expect: str = "refused"
    setup: Callable[[Path], None] | None = None  # extra files, in the case's project folder
    check: Check | None = None
    timeout: float = 60.0
    env: dict[str, str] = field(default_factory=dict)
    board_name: str = "board.yaml"
    before: list[list[str]] = field(default_factory=list)  # commands run first (e.g. another storyboard's run)


def board(body: str = ONE, head: str = "version: 1\ntitle: Census\n") -> str:
    return head + body


def with_asset(ref: str, *extra: str) -> str:
    """A one-shot storyboard starting from the asset `ref`, with `extra` shot lines."""
    shot = "".join(f"    {line}\n" for line in ("image: still", *extra))
    return board(f"assets:\n  still: {ref}\n{ONE}{shot}")


# --- images ---------------------------------------------------------------------------------------


def halves(size: tuple[int, int] = (180, 320)) -> Image.Image:
    """Upright: top half red, bottom half blue."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2] = (220, 30, 30)
    a[h // 2:] = (30, 30, 220)
    return Image.fromarray(a)


def write_exif_rotated(path: Path) -> None:
    """A portrait photo as a phone stores it: pixels turned a quarter to the left, EXIF orientation 6."""
    stored = halves().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, format="JPEG", quality=95, exif=exif)


def write_gray16(path: Path) -> None:
    """A 16-bit grayscale gradient, black on the left to white on the right."""
    ramp = np.tile(np.linspace(0, 65535, 320), (180, 1)).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ramp).save(path, format="PNG")


def write_cmyk(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("CMYK", (320, 180), (0, 255, 255, 0)).save(path, format="JPEG", quality=95)  # red


def first_frame(folder: Path) -> np.ndarray | None:
    import av

    films = sorted(folder.glob("**/output/**/film.mp4"))
    if not films:
        return None
    with av.open(str(films[0])) as c:
        frame = next(c.decode(video=0))
        return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.float64)


def upright(r: Result) -> str | None:
    f = first_frame(r.folder)
    if f is None:
        return "no film"
    h = f.shape[0]
    top, bottom = f[: h // 4].mean(axis=(0, 1)), f[-h // 4:].mean(axis=(0, 1))
    if top[0] > top[2] + 80 and bottom[2] > bottom[0] + 80:
        return None
    return f"first frame not upright (top mean {top.round()}, bottom mean {bottom.round()})"


def gradient(r: Result) -> str | None:
    f = first_frame(r.folder)
    if f is None:
        return "no film"
    w = f.shape[1]
    left, right = f[:, : w // 5].mean(), f[:, -w // 5:].mean()
    if left < 80 and right > 170:
        return None
    return f"first frame left {left:.0f}, right {right:.0f} (want dark to bright)"


def red(r: Result) -> str | None:
    f = first_frame(r.folder)
    if f is None:
        return "no film"
    m = f.mean(axis=(0, 1))
    return None if m[0] > 180 and m[1] < 80 and m[2] < 80 else f"first frame mean {m.round()} (want red)"


# --- checks ---------------------------------------------------------------------------------------


def says(*words: str) -> Check:
    def check(r: Result) -> str | None:
        missing = [w for w in words if w not in r.out]
        return f"output lacks {missing}" if missing else None
    return check


def films(n: int) -> Check:
    def check(r: Result) -> str | None:
        found = sorted(str(p.parent.relative_to(r.folder)) for p in r.folder.glob("**/output/**/film.mp4"))
        return None if len(found) == n else f"{len(found)} film(s) in distinct folders, want {n}: {found}"
    return check


def refused_or_films(n: int) -> Check:
    """Either the second storyboard was refused (and the first film is intact), or both films exist."""
    def check(r: Result) -> str | None:
        return films(1 if r.code else n)(r)
    return check


# --- the cases ------------------------------------------------------------------------------------


def outside(project: Path) -> None:
    halves().save(_mk(project.parent / "elsewhere" / "secret.png"))


def linked_outside(project: Path) -> None:
    outside(project)
    _mk(project / "refs" / "x").parent.mkdir(parents=True, exist_ok=True)
    (project / "refs" / "link.png").symlink_to(project.parent / "elsewhere" / "secret.png")


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def image(write: Callable[[Path], None], name: str) -> Callable[[Path], None]:
    return lambda project: write(project / "refs" / name)


def two_boards(*names: str, text: str = board()) -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        for name in names:
            _mk(project / name).write_text(text, encoding="utf-8")
    return setup


SPELLINGS = ["127.0.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "127.1", "017700000001", "[::ffff:127.0.0.1]",
             "localhost", "LOCALHOST.", "127.0.0.2", "2130706434", "0x7f.0.0.2"]


def cases() -> list[Case]:
    out: list[Case] = []
    # 1. asset URLs that reach private/loopback addresses (run; the listeners count connections)
    for spelling in SPELLINGS:
        out.append(Case(1, f"run, asset at https://{spelling}", ["run", "{board}"],
                        with_asset(f"https://{spelling}:{{port}}/still.png")))
    # 2. assets outside the storyboard's folder
    out.append(Case(2, "validate, ../ out of the folder", ["validate", "{board}"],
                    with_asset("../elsewhere/secret.png"), setup=outside))
    out.append(Case(2, "validate, absolute path", ["validate", "{board}"], "", setup=outside))
    out.append(Case(2, "validate, a link inside pointing outside", ["validate", "{board}"],
                    with_asset("refs/link.png"), setup=linked_outside))
    out.append(Case(2, "run, ../ out of the folder", ["run", "{board}"], with_asset("../elsewhere/secret.png"),
                    setup=outside))
    # 3. tracebacks instead of errors
    nul = with_asset('"refs/a\\0.png"')
    out.append(Case(3, "validate, NUL in an asset path", ["validate", "{board}"], nul))
    out.append(Case(3, "plan, NUL in an asset path", ["plan", "{board}"], nul))
    out.append(Case(3, "run, unclosed IPv6 bracket in a URL", ["run", "{board}"],
                    with_asset("https://[::1/still.png")))
    markup = board(head='version: 1\ntitle: "[/]"\n')
    out.append(Case(3, "validate, title with rich markup", ["validate", "{board}"], markup, expect="accepted",
                    check=says("[/]")))
    out.append(Case(3, "plan, title with rich markup", ["plan", "{board}"], markup, expect="accepted",
                    check=says("[/]")))
    for command, value in (("run", "nan"), ("run", "-1"), ("plan", "nan"), ("plan", "inf")):
        out.append(Case(3, f"{command} --budget {value}", [command, "{board}", "--budget", value], board()))
    out.append(Case(3, "run --loudness nan", ["run", "{board}", "--loudness", "nan"], board()))
    # 4. control characters in their escaped YAML form
    out.append(Case(4, "validate, ESC sequence in the title", ["validate", "{board}"],
                    board(head='version: 1\ntitle: "x\\e[2J\\e]0;pwned\\a"\n')))
    out.append(Case(4, "plan, ESC sequence in the title", ["plan", "{board}"],
                    board(head='version: 1\ntitle: "x\\e[31mred"\n')))
    out.append(Case(4, "validate, NUL in a caption", ["validate", "{board}"],
                    board(ONE + '    caption: "a\\0b"\n')))
    out.append(Case(4, "validate, right-to-left override in a caption", ["validate", "{board}"],
                    board(ONE + '    caption: "abc\\u202Egnp.exe"\n')))
    out.append(Case(4, "run, ESC in a caption (film.srt)", ["run", "{board}"],
                    board(ONE + '    caption: "a\\e[2Jb"\n')))
    # 5. what validate missed: the declared provider's limits, URL problems needing no network
    wavespeed, gateway = "version: 1\ntitle: C\nprovider: wavespeed\n", "version: 1\ntitle: C\nprovider: gateway\n"
    for name, text in (
        ("wavespeed 3 s shot", board(ONE.replace("duration: 1", "duration: 3"), wavespeed)),
        ("gateway 4 s shot", board(ONE.replace("duration: 1", "duration: 4"), gateway)),
        ("gateway 4:3", board(ONE.replace("duration: 1", "duration: 5\n    aspect_ratio: '4:3'"),
                              "version: 1\ntitle: C\nprovider: gateway\n")),
        ("gateway fast 1080p", board(ONE.replace("duration: 1", "duration: 5\n    resolution: 1080p"),
                                     "version: 1\ntitle: C\nprovider: gateway\nmodel: fast\n")),
        ("over its own budget", board(ONE.replace("duration: 1", "duration: 10"),
                                      "version: 1\ntitle: C\nprovider: wavespeed\nbudget_usd: 0.5\n")),
        ("asset at a literal private address", with_asset("https://10.1.2.3/still.png")),
        ("asset at the metadata address", with_asset("https://169.254.169.254/latest/meta-data")),
        ("asset URL with a bad port", with_asset("https://example.com:99999/still.png")),
    ):
        out.append(Case(5, f"validate, {name}", ["validate", "{board}"], text))
    # 6. YAML traps and lax types
    for name, text in (
        ("duration: true", board(ONE.replace("duration: 1", "duration: true"))),
        ("version: true", board(head="version: true\ntitle: C\n")),
        ("seed: true", board(ONE + "    seed: true\n")),
    ):
        out.append(Case(6, f"plan, {name}", ["plan", "{board}"], text))
    out.append(Case(6, "plan, id: on", ["plan", "{board}"], board(ONE.replace("id: a", "id: on")), expect="accepted",
                    check=lambda r: None if re.search(r"\bon\b", r.out) or "quote" in r.out else "no shot 'on'"))
    out.append(Case(6, "plan, aspect_ratio: 16:9 unquoted", ["plan", "{board}"],
                    board(ONE + "    aspect_ratio: 16:9\n"), expect="accepted", check=says("16:9")))
    out.append(Case(6, "plan, merge key then the shot's own duration", ["plan", "{board}"],
                    board("defaults: &d {duration: 2, resolution: 480p}\nshots:\n  - id: a\n    prompt: p\n"
                          "    <<: *d\n    duration: 3\n"), expect="accepted", check=says("3 s")))
    out.append(Case(6, "plan, duration: 010", ["plan", "{board}"], board(ONE.replace("duration: 1", "duration: 010")),
                    expect="accepted", check=lambda r: None if "10 s" in r.out else "not read as 10 s"))
    # 7. images
    for name, write, check in (("EXIF-rotated portrait photo", write_exif_rotated, upright),
                               ("16-bit grayscale PNG", write_gray16, gradient), ("CMYK JPEG", write_cmyk, red)):
        file = f"{name.split()[0].lower()}.img"
        ratio = ("aspect_ratio: '9:16'",) if check is upright else ()
        out.append(Case(7, f"run, {name}", ["run", "{board}"], with_asset(f"refs/{file}", "camera: static", *ratio),
                        expect="accepted", setup=image(write, file), check=check, timeout=180))
    # 8. names
    for a, b in (("café.yaml", "cafè.yaml"), ("Film.yaml", "film.yaml"), ("a b.yaml", "a-b.yaml"),
                 ("one/film.yaml", "two/film.yaml")):
        # the same name in two folders may be refused (then the first film must be intact) or made apart
        out.append(Case(8, f"run {a} then {b}", ["run", b, "--output", "output"], "",
                        expect="refused" if "/" in a else "accepted", setup=two_boards(a, b),
                        before=[["run", a, "--output", "output"]],
                        check=refused_or_films(2) if "/" in a else films(2), timeout=240))
    # 9. credentials in URLs
    creds = with_asset(f"https://user:{PASSWORD}@example.com/still.png")
    out.append(Case(9, "validate, user:password@ in an asset URL", ["validate", "{board}"], creds))
    out.append(Case(9, "run, user:password@ in an asset URL", ["run", "{board}"], creds))
    # 10. a download that never ends (an HTTPS server trickling one byte at a time)
    out.append(Case(10, "run, asset server trickling forever", ["run", "{board}"],
                    with_asset("https://localhost:{tls_port}/still.png"), timeout=300,
                    env={"STORYFILM_ALLOW_NETWORKS": "127.0.0.0/8,::1/128"}))
    return out


def absolute_case_fix(case: Case, project: Path) -> str:
    if case.name == "validate, absolute path":
        return with_asset(str(project.parent / "elsewhere" / "secret.png"))
    return case.board


# --- running --------------------------------------------------------------------------------------


def prefect_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    import httpx

    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the Prefect server did not start")


def run_case(case: Case, root: Path, env: dict[str, str], listeners: Listeners, tls_port: int) -> tuple[str, str]:
    folder = root / re.sub(r"[^a-z0-9]+", "-", f"{case.cls}-{case.name}".lower())[:80]
    project = folder / "project"
    project.mkdir(parents=True)
    if case.setup:
        case.setup(project)
    text = absolute_case_fix(case, project).replace("{port}", str(listeners.port)).replace("{tls_port}", str(tls_port))
    if text:
        (project / case.board_name).write_text(text, encoding="utf-8")
    before = listeners.total
    outputs = []
    code: int | None = None
    started = time.monotonic()
    for argv in [*case.before, case.argv]:
        argv = [a.replace("{board}", case.board_name) for a in argv]
        proc = subprocess.Popen([sys.executable, "-m", "storyfilm", *argv], cwd=project, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env={**env, **case.env}, start_new_session=True)
        try:
            raw, _ = proc.communicate(timeout=case.timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raw, _ = proc.communicate()
            code = None
        outputs.append(raw.decode("utf-8", "replace"))
        if code is None:
            break
    result = Result(code, "\n".join(outputs), time.monotonic() - started, listeners.total - before, folder)
    if code is None:
        outcome = "hang"
    elif "Traceback (most recent call last)" in result.out or code not in (0, 1, 2):
        outcome = "traceback"
    elif code == 0 or result.connections:
        outcome = "accepted"
    else:
        outcome = "refused"
    problems = []
    if outcome != case.expect:
        problems.append(f"{outcome}, expected {case.expect}")
    if case.check and outcome in ("refused", "accepted") and (p := case.check(result)):
        problems.append(p)
    if re.search("[\x00\x1b\u202e]", result.out):
        problems.append("escape/NUL/bidi characters in the output")
    if PASSWORD in result.out:
        problems.append("the URL's password in the output")
    if result.connections:
        problems.append(f"{result.connections} connection(s) to a loopback listener")
    verdict = "well" if not problems else "; ".join(problems)
    lines = [line.strip(" │") for line in result.out.strip().splitlines() if line.strip(" │╭╮╰╯─")]
    said = next((line for line in reversed(lines) if re.search(r"error|Invalid|film|ok ", line)),
                lines[-1] if lines else "")
    print(f"[{case.cls}] {case.name}: {outcome} in {result.seconds:.1f} s -> {verdict}\n      {said[:200]}", flush=True)
    return outcome, verdict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--classes", default="")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    wanted = {int(c) for c in args.classes.split(",") if c}
    chosen = [c for c in cases() if not wanted or c.cls in wanted]
    root = Path(tempfile.mkdtemp(prefix="storyfilm-census-"))
    import storyfilm

    print(f"storyfilm from {Path(storyfilm.__file__).parent}; {len(chosen)} cases in {root}", flush=True)
    server, api = prefect_server(root / "prefect")
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(root / "prefect"), "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "STORYFILM_POLL_INTERVAL": "0.05"}
    env.pop("STORYFILM_ALLOW_NETWORKS", None)
    rows: list[dict[str, object]] = []
    try:
        with Listeners(("127.0.0.1", "127.0.0.2")) as listeners, \
                HttpsServers({"/still.png": trickle(b"\x89PNG\r\n\x1a\n")}, root, addresses=("127.0.0.1",)) as tls:
            env["SSL_CERT_FILE"] = str(tls.ca_file)
            for case in chosen:
                outcome, verdict = run_case(case, root, env, listeners, tls.port)
                rows.append({"class": case.cls, "case": case.name, "outcome": outcome, "verdict": verdict})
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    print("\nclass  kinds  refused  accepted  tracebacks  hangs  handled well")
    for cls in sorted({int(str(r["class"])) for r in rows}):
        mine = [r for r in rows if r["class"] == cls]
        n = {k: sum(r["outcome"] == k for r in mine) for k in ("refused", "accepted", "traceback", "hang")}
        well = sum(r["verdict"] == "well" for r in mine)
        print(f"{cls:>5}  {len(mine):>5}  {n['refused']:>7}  {n['accepted']:>8}  {n['traceback']:>10}  {n['hang']:>5}  "
              f"{well:>12}")
    total_well = sum(r["verdict"] == "well" for r in rows)
    print(f"total  {len(rows):>5}  handled well: {total_well}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The `storyfilm` command: validate, plan, run, serve, emulate, schema, providers."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from storyfilm.errors import StoryfilmError

if TYPE_CHECKING:
    from collections.abc import Callable

    from storyfilm import session
    from storyfilm.console_progress import FilmProgress
    from storyfilm.progress import Event

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn a YAML storyboard into a finished multi-shot film.")
out = Console()
err = Console(stderr=True)


def _finite(value: float | None) -> float | None:
    # click's ranges let nan through (every comparison with nan is false) and inf past a lower bound
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number here; give a finite number")
    return value


def _networks(values: list[str] | None) -> list[str] | None:
    from storyfilm.netpolicy import parse_networks

    try:
        parse_networks(values or [], "--allow-network")
    except StoryfilmError as exc:
        raise typer.BadParameter(str(exc)) from None
    return values


StoryboardArg = Annotated[Path, typer.Argument(help="storyboard YAML file", show_default=False)]
ProviderOpt = Annotated[Optional[str], typer.Option("--provider", "-p",  # noqa: UP045 (typer)
                                                    help="override the storyboard's provider")]
BudgetOpt = Annotated[Optional[float], typer.Option("--budget", min=0, callback=_finite,  # noqa: UP045
                                                    help="hard cap on new spend, USD")]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="where films are written: a folder, or a URL "
                                        "(s3://bucket/prefix; credentials from AWS_* variables or profiles)")]
LoudnessOpt = Annotated[Optional[float], typer.Option(  # noqa: UP045
    "--loudness", min=-40, max=-5, callback=_finite,
    help="normalise the film to this loudness, LUFS (EBU R128: -14 web, -23 broadcast); overrides the "
         "storyboard's loudness_lufs")]
NetworkOpt = Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
    "--allow-network", callback=_networks, show_default=False,
    help="asset URLs may also reach this private network, e.g. 10.0.0.0/8 or 192.168.1.20 (repeatable; "
         "or STORYFILM_ALLOW_NETWORKS=a,b). Without it only public addresses are fetched from")]
AssetRootOpt = Annotated[Optional[list[Path]], typer.Option(  # noqa: UP045
    "--allow-assets-from", show_default=False,
    help="assets may also be files under this folder (repeatable; or STORYFILM_ASSET_ROOTS=dir:dir). "
         "Without it, only files inside the storyboard's folder")]
LedgerOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--ledger", show_default=False,
    help="pay-once ledger: a file, sqlite:///FILE or postgresql+psycopg://USER@HOST:PORT/DB (default: "
         "$STORYFILM_LEDGER_URL, else output/<name>/ledger.sqlite)")]
RedoOpt = Annotated[Optional[list[str]], typer.Option("--redo", help="regenerate this shot and the shots "  # noqa: UP045
                                                      "chained after it (repeatable)")]
ConcurrencyOpt = Annotated[Optional[int], typer.Option(  # noqa: UP045
    "--concurrency", min=1, max=64, show_default=False,
    help="shots of the provider at once (default 2; for a hosted provider on a Prefect server this sets "
         "the limit storyfilm-<provider> that all runs share)")]


def shown(text: object) -> str:
    """`text` safe for a terminal and for rich: markup escaped, control and bidi characters made visible."""
    from storyfilm.storyboard import text_problem

    raw = str(text)
    if text_problem(raw, newlines=True) is not None:
        raw = "".join(c if c in "\n\t" or text_problem(c) is None else f"\\u{ord(c):04x}" for c in raw)
    return escape(raw)


def _fail(exc: StoryfilmError) -> None:
    err.print(f"[bold red]error:[/] {shown(exc)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(1)


def _allow(networks: list[str] | None, roots: list[Path] | None) -> None:
    """The user's opt-ins, put where every part of the run reads them (the flow, its subprocesses)."""
    from storyfilm.netpolicy import ALLOW_NETWORKS_ENV
    from storyfilm.storyboard import ASSET_ROOTS_ENV

    for name, values, sep in ((ALLOW_NETWORKS_ENV, networks, ","),
                              (ASSET_ROOTS_ENV, [str(r.resolve()) for r in roots or []], os.pathsep)):
        if values:
            os.environ[name] = sep.join([v for v in os.environ.get(name, "").split(sep) if v] + list(values))


def _prefect_defaults(quiet_console: bool) -> None:
    # Before prefect is imported; users can still override each. No telemetry. Run logs go to the
    # Prefect API at INFO (the UI shows them). A quiet console (`run`) shows our own messages, not
    # Prefect's console lines and tracebacks; `serve` is a service and its console is its log.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # The ephemeral server's 20 s start-up limit is not enough on a busy machine (timed out at load 10 on
    # 2 cores, with a traceback instead of a film); the tests' harness waits 90 s too.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    if quiet_console:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


def _ledger_param(ledger: str | None) -> str | None:
    """The flow's `ledger` parameter. Prefect stores parameters and shows them in its UI, so a URL with a
    password reaches the flow through STORYFILM_LEDGER_URL in this process's environment instead (the flow
    runs here, or, under `serve`, in a subprocess that inherits it)."""
    from storyfilm import ledger_url

    if not ledger:
        return None
    if ledger_url.has_password(ledger):
        ledger_url.parse(ledger)  # a wrong URL fails here, before Prefect starts
        os.environ[ledger_url.LEDGER_ENV] = ledger
        return None
    return ledger_url.absolute(ledger)


def progress_view(console: Console) -> FilmProgress | None:
    """Progress bars when the output is a terminal; nothing otherwise (logs, pipes, CI)."""
    if not console.is_terminal:
        return None
    from storyfilm.console_progress import FilmProgress

    return FilmProgress(console)


@app.command()
def validate(storyboard: StoryboardArg, output: OutputOpt = "output", ledger: LedgerOpt = None,
             allow_network: NetworkOpt = None, allow_assets_from: AssetRootOpt = None) -> None:
    """Check a storyboard without network or keys: its fields, its assets (files inside its folder, URLs
    that may be fetched), the limits of the provider it declares, and its budget. Every problem is
    printed with its line."""
    from storyfilm import film_folder, output_url, session
    from storyfilm.plan import check_budget

    _allow(allow_network, allow_assets_from)
    try:
        # what `plan` does (its decisions: shots already paid for cost nothing), no provider, no key
        seen = session.preview(storyboard, session.Options(output_dir=output_url.target(output), ledger=ledger))
        film_folder.check(seen.film.film_dir, storyboard)
        check_budget(seen.plan, seen.new_cost_usd)
    except StoryfilmError as exc:
        _fail(exc)
    board, the_plan = seen.film.board, seen.plan
    out.print(f"[green]ok[/] {shown(storyboard)}: '{shown(board.title)}', {len(board.shots)} shots; checked against "
              f"{the_plan.provider} ({the_plan.tier})", highlight=False)


@app.command()
def schema() -> None:
    """Print the storyboard JSON Schema (for editor autocompletion)."""
    from storyfilm.storyboard import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


@app.command()
def plan(storyboard: StoryboardArg, provider: ProviderOpt = None, budget: BudgetOpt = None,
         output: OutputOpt = "output", ledger: LedgerOpt = None, redo: RedoOpt = None,
         allow_network: NetworkOpt = None, allow_assets_from: AssetRootOpt = None) -> None:
    """Validate and show the shot graph, what is cached, in flight or new, and the cost. Free."""
    from storyfilm import output_url, session, takes
    from storyfilm.plan import check_budget

    _allow(allow_network, allow_assets_from)
    try:
        seen = session.preview(storyboard, session.Options(provider=provider, budget_usd=budget,
                                                           output_dir=output_url.target(output),
                                                           ledger=ledger, redo=tuple(redo or ())))
    except StoryfilmError as exc:
        _fail(exc)
    the_plan, states, new = seen.plan, seen.states, seen.new_cost_usd
    table = Table(title=f"{shown(the_plan.title)} — {the_plan.provider} ({the_plan.tier})", title_justify="left")
    for col in ("#", "shot", "chain", "start", "duration", "format", "camera", "status", "cost"):
        table.add_column(col, justify="right" if col in ("#", "duration", "cost") else "left")
    for s in the_plan.shots:
        start = (f"references from '{s.parent}' (match cut)" if s.by_reference else
                 s.start.describe() + (f" ({s.method})" if s.parent else ""))
        for k, t in enumerate(takes.takes_of(s), start=1):  # a shot with takes: a row per take (a paid job each)
            what = start if k == 1 else ""
            what += f"{', ' if k == 1 else ''}take {k} of {s.takes}" if s.takes > 1 else ""
            table.add_row(str(s.index + 1) if k == 1 else "", t.id, f"{s.chain + 1}", what, f"{s.duration} s",
                          f"{s.resolution} {s.aspect_ratio}", s.camera, states[t.id], f"${s.cost_usd:.2f}")
    out.print(table)
    if any(s.takes > 1 for s in the_plan.shots):
        out.print(f"jobs: {sum(1 for _ in takes.jobs(the_plan))} for {len(the_plan.shots)} shots; takes: "
                  + ", ".join(f"{s.id} {s.takes} (pick {s.pick}" + (f", take {s.chosen} picked" if s.chosen and
                                                                     not isinstance(s.pick, int) else "") + ")"
                              for s in the_plan.shots if s.takes > 1))
    chains = "; ".join(" -> ".join(s.id for s in c) for c in the_plan.chains)
    out.print(f"chains ({len(the_plan.chains)}): {chains}")
    counts = {k: sum(v == k for v in states.values()) for k in ("cached", "in flight", "new", "failed", "refused")}
    joins = [f"{s.id} {s.transition}" for s in the_plan.shots if s.overlap_frames]
    if joins:
        out.print(f"transitions: {', '.join(joins)}")
    overlaps = (f" ({sum(s.duration for s in the_plan.shots)} s of shots, {the_plan.overlap_seconds:g} s overlapped "
                "by transitions)" if the_plan.overlap_seconds else "")
    loud = f", loudness {the_plan.loudness_lufs:g} LUFS" if the_plan.loudness_lufs is not None else ""
    out.print(f"film: {the_plan.duration:g} s{overlaps}, {the_plan.film.width}x{the_plan.film.height} @ "
              f"{the_plan.film.fps} fps{loud}; " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    for shot_id, reason in seen.refusals.items():
        err.print(f"[yellow]refused[/] {escape(shot_id)}: {escape(reason)}", highlight=False, soft_wrap=True)
    for note in the_plan.notes:
        out.print(f"[yellow]note[/]: {escape(note)}", highlight=False)
    for s in the_plan.shots:  # what is sent where it is more than the storyboard's prompt
        if s.characters or s.by_reference:
            sent = shown(s.prompt).replace("\n", "\n    ")
            out.print(f"prompt of {s.id}:\n    {escape(sent)}", highlight=False, soft_wrap=True)
    out.print(f"new cost ${new:.2f} (all shots ${the_plan.cost_usd:.2f})"
              + (f"; budget ${the_plan.budget_usd:.2f}" if the_plan.budget_usd is not None else ""))
    try:
        check_budget(the_plan, new)
    except StoryfilmError as exc:
        _fail(exc)


def _up_to_date(storyboard: Path, provider: str | None, budget: float | None, output: Path | str, ledger: str | None,
                redo: list[str] | None, loudness: float | None) -> bool:
    """Whether film.mp4 is already what this run would make (decided before Prefect starts: nothing to show there)."""
    from storyfilm import session, up_to_date

    if redo:
        return False
    verdict = up_to_date.before_run(storyboard, session.Options(provider=provider, budget_usd=budget, output_dir=output,
                                                                ledger=ledger, loudness_lufs=loudness))
    if verdict.state == "run":
        return False
    rewritten = "" if verdict.state == "up to date" else "; subtitles and manifest rewritten for the new captions"
    out.print(f"[green]film[/] {shown(verdict.film)} is up to date ({verdict.shots} shots, {verdict.shots} reused, "
              f"$0.00 spent; nothing generated or assembled{rewritten})", highlight=False)
    return True


@app.command()
def run(storyboard: StoryboardArg, provider: ProviderOpt = None, budget: BudgetOpt = None,
        output: OutputOpt = "output", ledger: LedgerOpt = None, redo: RedoOpt = None,
        loudness: LoudnessOpt = None, concurrency: ConcurrencyOpt = None,
        allow_network: NetworkOpt = None, allow_assets_from: AssetRootOpt = None,
        emulate: Annotated[bool, typer.Option("--emulate", help="rehearse for free: start the emulator in-process, "
                                                                "point the provider at it, write to output/emulated/")]
        = False,
        approve: Annotated[bool, typer.Option("--approve", help="before anything is paid, show the plan and a free "
                                                                "animatic and wait for approval (on a Prefect server: "
                                                                "its UI or `storyfilm approve`; otherwise: asks here)")]
        = False) -> None:
    """Generate every shot (reusing unchanged ones) and assemble output/<name>/film.mp4."""
    from storyfilm import output_url

    _prefect_defaults(quiet_console=True)
    # SIGTERM would orphan Prefect's ephemeral server; exiting through Python stops it cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from storyfilm import film_folder, head_start, session, temporary_server
    from storyfilm.progress import listening
    from storyfilm.session import load_board

    _allow(allow_network, allow_assets_from)
    view = progress_view(out)
    ahead: session.FilmJob | None = None
    try:
        board = load_board(storyboard)  # fail fast, before Prefect starts (the flow finds it parsed)
        where = output_url.under(output_url.target(output), "emulated") if emulate else output_url.target(output)
        film_folder.check(output_url.split(where)[0] / board.slug, storyboard)
        ledger = _ledger_param(ledger)
        # (outputs at a URL: decided from the bucket's manifest, not from the scratch folder: bucket_up_to_date.py)
        if _up_to_date(storyboard, provider, budget, where, ledger, redo, loudness):
            return
        early = temporary_server.start()  # on the other core while this process imports Prefect and the flow
        if approve or board.approve:
            _approve_here(storyboard, session.Options(provider=provider, budget_usd=budget, output_dir=where,
                                                      ledger=ledger, redo=tuple(redo or ()), resume=not emulate))
        elif early is not None and not emulate:  # meanwhile: prepare, and submit the first job (the server is slower)
            ahead = head_start.begin(storyboard, session.Options(provider=provider, budget_usd=budget, output_dir=where,
                                                                 ledger=ledger, redo=tuple(redo or ()),
                                                                 loudness_lufs=loudness), concurrency)
        from storyfilm import _prefect
        from storyfilm.flow import film

        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            if emulate:
                from storyfilm.emulator.rehearsal import rehearsal

                url = stack.enter_context(rehearsal())
                out.print(f"rehearsal: every host is emulated at {url}; nothing is paid")
                output = str(where)  # never mix rehearsal shots with paid ones
            if view:
                stack.enter_context(view)
                stack.enter_context(listening(view))
            stack.enter_context(listening(_tell_waiting(storyboard)))
            if problem := _prefect.report_to(early):
                err.print(f"[yellow]Prefect's temporary server did not start early[/] ({shown(problem)}); "
                          "Prefect starts its own", highlight=False, soft_wrap=True)
            result = film(storyboard=str(storyboard), provider=provider, budget_usd=budget, output_dir=str(output),
                          redo=list(redo or []), ledger=ledger,
                          loudness_lufs=loudness, concurrency=concurrency, approve=approve)
    except StoryfilmError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        err.print("interrupted: finished shots are kept and will be reused on the next run")
        raise typer.Exit(130) from None
    finally:
        head_start.release(ahead)
    assert isinstance(result, dict)  # a failed run raised its error above
    out.print(f"[green]film[/] {result['film']} ({result['duration']:.2f} s, {result['shots']} shots, "
              f"{result['reused']} reused, ${result['spent_usd']:.2f} spent) in {time.monotonic() - started:.1f} s")
    out.print(f"manifest {result['manifest']}")
    if result.get("flagged_seams"):
        err.print(f"[yellow]{result['flagged_seams']} seam(s) flagged[/]: see the manifest's seams")
    for line in result.get("continuity", []):
        out.print(f"continuity {shown(line)}", highlight=False, soft_wrap=True)
    if result.get("flagged_chains"):
        err.print(f"[yellow]{result['flagged_chains']} chain(s) drift in colour[/]: see continuity.png beside the "
                  "film (a moving camera changes the colours too), and `color: hold` in the README", soft_wrap=True)


def _approve_here(storyboard: Path, options: session.Options) -> None:
    """Without a Prefect server no other process can answer a paused run: ask in this terminal, or refuse."""
    from storyfilm import _prefect, animatic_preview, approval, session
    from storyfilm.errors import ApprovalError
    from storyfilm.plan import check_budget

    if _prefect.has_server():
        return  # the flow pauses; the UI or `storyfilm approve` answers
    seen = session.preview(storyboard, options)
    check_budget(seen.plan, seen.new_cost_usd)
    if not approval.held(True, seen.new_cost_usd):
        return
    if not sys.stdin.isatty():
        raise ApprovalError(approval.NO_SERVER)
    out.print("making the free animatic preview ...")
    made = animatic_preview.make(storyboard, seen.film.film_dir)
    out.print(shown(approval.terminal_text(seen.plan, seen.new_cost_usd, made.film)), highlight=False)
    if not typer.confirm("approve, and pay for this plan?", default=False):
        err.print("not approved: nothing was paid")
        raise typer.Exit(1)
    os.environ[approval.APPROVED_ENV] = approval.fingerprint(seen.plan, seen.new_cost_usd)


def _tell_waiting(storyboard: Path) -> Callable[[Event], None]:
    def tell(event: Event) -> None:
        if event.kind == "approval-waiting":
            err.print(f"waiting for approval: answer in the Prefect UI{' at ' + event.message if event.message else ''}"
                      f", or run `storyfilm approve {shown(storyboard)}` (nothing is paid until then)",
                      highlight=False, soft_wrap=True)
    return tell


@app.command()
def approve(
    target: Annotated[str, typer.Argument(help="the paused run's storyboard file, or the run's id or name",
                                          show_default=False)],
    reject: Annotated[bool, typer.Option("--reject", help="reject: the run stops, nothing is paid")] = False,
    budget: Annotated[Optional[float], typer.Option(  # noqa: UP045
        "--budget", min=0.01, max=1_000_000, callback=_finite,
        help="approve with this budget, USD (the plan is checked against it before anything is paid)")] = None,
    reason: Annotated[str, typer.Option("--reason", help="why (shown in the run's final state)")] = "",
) -> None:
    """Answer a run that waits for approval (needs a Prefect server): approve it (with another budget), or reject it."""
    _prefect_defaults(quiet_console=True)
    from storyfilm import _prefect, approval
    from storyfilm.errors import ApprovalError
    from storyfilm.session import load_board

    if reject and budget is not None:
        raise typer.BadParameter("--budget approves with another budget; it cannot go with --reject")
    if len(reason) > 500:
        raise typer.BadParameter(f"--reason takes at most 500 characters, not {len(reason)}")
    try:
        answer = approval.Answer(answer="reject" if reject else "approve", budget_usd=budget or 0, reason=reason)
        _prefect.require_server("answering a paused run needs")
        if Path(target).is_file():
            board = load_board(Path(target))
            runs, what = _prefect.paused_runs(tag=f"film:{board.slug}"), f"of '{board.title}' ({target})"
        else:
            runs, what = _prefect.paused_runs(run=target), f"'{target}'"
        paused = [r for r in runs if _prefect.waiting_for(r) == _prefect.APPROVAL_PAUSE]
        if not paused:
            found = "; ".join(f"{r.name} is {r.state.name if r.state else 'without a state'}"
                              + (f", waiting for {waits} (answer it in the UI)" if (waits := _prefect.waiting_for(r))
                                 else "") for r in runs[:5])
            raise ApprovalError(f"no flow run {what} is waiting for approval" + (f" ({found})" if found else "")
                                + ("" if runs or Path(target).is_file() else
                                   ": give the storyboard file, or the run's id or name"))
        if len(paused) > 1:
            raise ApprovalError(f"{len(paused)} flow runs {what} wait for approval: "
                                + ", ".join(f"{r.name} ({r.id})" for r in paused) + "; name one by its id")
        _prefect.answer_run(paused[0].id, answer.model_dump(mode="json"))
    except StoryfilmError as exc:
        _fail(exc)
    done = "rejected" if reject else "approved" + (f" with a budget of ${budget:.2f}" if budget is not None else "")
    where = _prefect.flow_run_url(paused[0].id)
    out.print(f"{done}: {shown(paused[0].name)} ({paused[0].id})" + (f"; follow it at {where}" if where else ""),
              highlight=False, soft_wrap=True)


@app.command()
def emulate(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on (0: any free port)")] = 8787,
    latency: Annotated[float, typer.Option(min=0, max=3600, callback=_finite,
                                           help="seconds a job takes from submit to completed")] = 1.0,
    faults: Annotated[str, typer.Option(help="faults to inject, e.g. 'submit-429,poll-503*2,moderation' "
                                              "(see storyfilm/emulator/faults.py)")] = "",
    api_key: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045 (typer)
        "--api-key", help="the only key accepted: KEY, or PROVIDER=KEY (repeatable); default: any key")] = None,
    credits: Annotated[Optional[int], typer.Option(  # noqa: UP045
        min=0, help="Apiframe credit balance (default: unlimited)")] = None,
    drift: Annotated[str, typer.Option(help="colour drift per segment made from a start frame, like a real model's, "
                                            "e.g. 'contrast=0.06,saturation=0.05,brightness=0.02,warmth=0.03'")] = "",
) -> None:
    """Serve the WaveSpeed, Apiframe and gateway APIs on loopback, rendering real video. Free."""
    from storyfilm.drift import parse_drift
    from storyfilm.emulator import EmulatorConfig, serve_forever
    from storyfilm.emulator.state import parse_api_keys

    def announce(url: str) -> None:
        out.print(f"emulating WaveSpeed, Apiframe and the gateway at {url} (latency {latency:g} s"
                  f"{', faults ' + faults if faults else ''}{', drift ' + drift if drift else ''}); "
                  f"stats at {url}/_emulator/stats; Ctrl-C stops")

    try:
        config = EmulatorConfig(latency=latency, faults=faults, api_keys=parse_api_keys(api_key or []),
                                apiframe_credits=credits, drift=parse_drift(drift, source="--drift"))
        serve_forever(config, host, port, announce)
    except StoryfilmError as exc:
        _fail(exc)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown: the normal way out
        out.print("emulator stopped")


@app.command()
def serve(
    storyboard: StoryboardArg,
    cron: Annotated[str, typer.Option("--cron", show_default=False,
                                      help="when to run, as cron: '0 3 * * *' is 03:00 every day")],
    timezone: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--timezone", help="IANA timezone of the cron, e.g. Europe/Berlin (default UTC)")] = None,
    provider: ProviderOpt = None, budget: BudgetOpt = None, output: OutputOpt = "output",
    ledger: LedgerOpt = None, loudness: LoudnessOpt = None, concurrency: ConcurrencyOpt = None,
    allow_network: NetworkOpt = None, allow_assets_from: AssetRootOpt = None,
    name: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--name", help="deployment name (default: the storyboard's file name)")] = None,
    approve: Annotated[bool, typer.Option("--approve", help="every run waits for approval before anything is paid "
                                                            "(its Resume form in the UI, or `storyfilm approve`)")]
    = False,
    keep_schedule: Annotated[bool, typer.Option(
        "--keep-schedule", help="leave the schedule active when serve stops (under a supervisor that restarts "
                                "it: runs due meanwhile wait as Late and start on restart)")] = False,
) -> None:
    """Serve a scheduled deployment of one storyboard until stopped (needs a Prefect server).

    Runs start on the schedule, from the UI or with `prefect deployment run storyfilm/NAME`; each runs
    in a subprocess of this one. Stopping serve (Ctrl-C, SIGTERM) pauses the schedule unless
    --keep-schedule is given.
    """
    from storyfilm import output_url

    _prefect_defaults(quiet_console=False)  # a service: its console is its log
    from storyfilm import _prefect, session
    from storyfilm.plan import check_budget

    _allow(allow_network, allow_assets_from)  # the deployment's runs are subprocesses of this one: they inherit it
    try:
        planned = session.plan_film(storyboard, session.Options(provider=provider, budget_usd=budget,
                                                                output_dir=output_url.target(output), ledger=ledger))
        check_budget(planned.plan)  # every shot's cost: what a scheduled run may have to pay
        schedule = _prefect.cron_schedule(cron, timezone)
        deployment = _prefect.deployment_name(name or storyboard.stem)
        api_url = _prefect.require_server()
        ledger = _ledger_param(ledger)
    except StoryfilmError as exc:
        _fail(exc)
    from prefect.types.entrypoint import EntrypointType

    from storyfilm.flow import film

    films_at = output_url.shown(output_url.target(output))
    parameters: dict[str, object] = {"storyboard": str(storyboard.resolve()), "output_dir": films_at}
    options = {"provider": provider, "budget_usd": budget, "loudness_lufs": loudness, "concurrency": concurrency,
               "ledger": ledger}
    parameters |= {k: v for k, v in options.items() if v is not None} | ({"approve": True} if approve else {})
    out.print(f"serving [bold]storyfilm/{deployment}[/] ('{shown(planned.board.title)}') on {api_url}: "
              f"cron '{schedule.cron}' ({schedule.timezone or 'UTC'}); films in {films_at}", highlight=False)
    out.print(f"run it now: prefect deployment run 'storyfilm/{deployment}'; stop with Ctrl-C"
              + ("" if keep_schedule else " (pauses the schedule)"), highlight=False)
    # Prefect 3.8.8's SIGTERM handler calls an async stop without awaiting it (harmless: sys.exit follows).
    warnings.filterwarnings("ignore", message="coroutine 'Runner.astop' was never awaited")
    stopping = threading.Event()

    def stop(*_: object) -> None:
        # Until Prefect's runner installs its SIGTERM handler, SIGTERM killed serve without pausing (seen when
        # stopped seconds after it registered): leave through `finally`, as that handler does. A SystemExit raised
        # in a signal handler is lost if it lands in a weakref callback (seen under load): the signal comes
        # again a second later, to whichever handler is in place by then.
        if stopping.is_set():
            return
        again = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
        again.daemon = True
        again.start()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        # A module entrypoint: flow-run subprocesses import the installed package from any directory.
        film.serve(name=deployment, schedules=[schedule], parameters=parameters,
                   tags=["storyfilm"], global_limit=1, pause_on_shutdown=False,  # one run of a film at a time
                   print_starting_message=False, entrypoint_type=EntrypointType.MODULE_PATH)
    finally:
        stopping.set()
        # Pausing here, not with Prefect's pause_on_shutdown: on a SIGTERM during a run, Prefect's
        # shutdown cancels its own pause request and the schedule stayed active (measured, 3.8.8).
        if not keep_schedule:
            _prefect.pause_deployment(f"storyfilm/{deployment}")
            out.print(f"schedule of storyfilm/{deployment} paused; `storyfilm serve` again resumes it")


@app.command()
def providers() -> None:
    """List providers, tiers, limits and prices (by endpoint where they differ)."""
    from storyfilm.providers.specs import SPECS, provider_rows

    table = Table(title="providers")
    for col in ("provider", "tier", "calls", "durations", "resolutions", "aspect ratios", "USD/s", "notes"):
        table.add_column(col)
    for row in provider_rows(SPECS.values()):
        table.add_row(*row)
    out.print(table)
    out.print("USD/s: the host's published figure; * computed from a ratio the host publishes; ~ an estimate (the "
              "host publishes none: Apiframe and the gateway are estimated at WaveSpeed's figures)")


ledger_app = typer.Typer(no_args_is_help=True, help="The pay-once ledger: move a film's history between databases.")
app.add_typer(ledger_app, name="ledger")
LedgerArg = Annotated[str, typer.Argument(help="a ledger file, sqlite:///FILE or postgresql+psycopg://USER@HOST:PORT/DB",
                                          show_default=False)]


@ledger_app.command("copy")
def ledger_copy(src: LedgerArg, dst: LedgerArg) -> None:
    """Copy every job and event of SRC into DST (created or upgraded as needed), e.g. a film's ledger.sqlite
    into the team's PostgreSQL database. Safe to repeat: what DST already has is skipped; a job recorded
    differently in DST stops the copy before anything is written."""
    from storyfilm.errors import LedgerError
    from storyfilm.ledger import Ledger, existing_ledger
    from storyfilm.ledger_copy import copy_history
    from storyfilm.ledger_url import redact

    try:
        source = existing_ledger(src)
        if source is None:
            raise LedgerError(f"{src}: no such ledger file")
        target = Ledger(dst)
        done = copy_history(source, target)
    except StoryfilmError as exc:
        _fail(exc)
    out.print(f"copied {done.jobs} job(s) and {done.events} event(s) from {redact(src)} to {redact(dst)}"
              + (f" ({done.jobs_there} job(s) and {done.events_there} event(s) were there already)"
                 if done.jobs_there or done.events_there else ""), highlight=False, soft_wrap=True)


def main() -> None:
    app()

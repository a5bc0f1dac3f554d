"""The command line (Typer). Collects override strings, calls jobs/sweeps/config, maps outcomes to exit codes.

Heavy imports (torch, Hydra) happen inside the commands so that `resbench --help` stays instant.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from .completion import complete_override
from .schema import RUNS_CSV, STATUS_ORDER, Status
from .streams import safe_streams


def _complete(ctx: typer.Context, incomplete: str) -> list[str]:
    """TAB on an override: the words typed before it (bash splits `norm=` into `norm` `=`) and the word."""
    return complete_override([*(ctx.params.get("overrides") or []), *ctx.args], incomplete)


EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
OVERRIDES_HELP = "Hydra overrides, e.g. depth=12 norm=post train.lr=3e-4 (every key: docs/config.md)."
Overrides = Annotated[list[str] | None, typer.Argument(help=OVERRIDES_HELP, autocompletion=_complete)]
SWEEP_OVERRIDES_HELP = ("Hydra overrides with lists, e.g. depth=6,12,24 seed=range(3) norm=choice(pre,post) "
                        "hydra/launcher=joblib; with --resume, a SWEEP_DIR may come first.")

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion: commands, override keys and values
    no_args_is_help=True,
    help="See, layer by layer, what residual connections and normalization placement do to deep networks.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """One clear line on stderr, then exit with `code` (no traceback)."""
    from rich.markup import escape

    _console(stderr=True).print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


# Stop signals that came while the CLI was still importing torch and Hydra (the per-process stop flag).
_deferred_signals: list[int] = []


def _defer_interrupts() -> None:
    """Until a command has its modules, Ctrl-C and SIGTERM are only noted: a KeyboardInterrupt raised
    inside an import leaves a module half-initialised, and libraries that retry a failed import then
    swallow it (the run went on and exited 0) or fail on the half module (a traceback)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: _deferred_signals.append(signum))


def _sigterm_as_interrupt() -> None:
    """SIGTERM ends a run like Ctrl-C: flush, mark it interrupted, exit 130. Called once a command's
    imports are done; a signal noted before then stops it here, before anything is written."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.default_int_handler(signum, frame))
    if _deferred_signals:
        raise typer.Exit(EXIT_INTERRUPTED)


def _existing_dir(text: str, what: str) -> Path:
    """A directory the user names to read (a run or sweep to resume), checked as every path is."""
    from .paths import PathError, input_dir

    try:
        return input_dir(text, what)
    except PathError as err:
        fail(str(err))


@app.command(context_settings=_ARGS)
def train(
    overrides: Overrides = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; just write the run dir.")] = False,
    resume: Annotated[str | None, typer.Option(
        "--resume", metavar="RUN_DIR", help="Continue the interrupted, failed or killed run in RUN_DIR from its "
        "checkpoint, with its overrides (any given replace those of the same key).")] = None,
) -> None:
    """Train one run; write config.yaml, metrics.csv, grad_norms.csv, layers.csv, summary.json."""
    from . import records
    from .config import BadInput
    from .console import RunDisplay
    from .jobs import run_train

    resume_dir = None if resume is None else _existing_dir(resume, "--resume")
    _sigterm_as_interrupt()
    display = RunDisplay(_console(), quiet=quiet)
    try:
        summary = run_train(list(overrides or []), display, resume_dir=resume_dir)
    except (BadInput, records.DirBusy) as err:  # bad input, or another train or resume holds the run dir
        fail(str(err))
    except records.NoSpaceError as err:  # what could still be written says failed; rows so far are whole
        fail(str(err), EXIT_FAILED)
    except KeyboardInterrupt:
        if not quiet:
            _console(stderr=True).print("[yellow]interrupted[/yellow]: rows written so far are kept")
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary["status"] == Status.FAILED:
        if quiet:  # the display, which shows the error otherwise, is silent: the one line still goes out
            fail(summary.get("error") or "the run failed", EXIT_FAILED)
        raise typer.Exit(EXIT_FAILED)


@app.command(context_settings=_ARGS)
def sweep(
    overrides: Annotated[list[str] | None, typer.Argument(help=SWEEP_OVERRIDES_HELP,
                                                          autocompletion=_complete)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the expanded runs as a table; run nothing.")]
    = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue a sweep (SWEEP_DIR, default: the latest) with its overrides: runs that "
        "ended completed or diverged with the same config are skipped, the rest run.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; just write the sweep dir.")] = False,
) -> None:
    """Run a grid of runs through Hydra's multirun; write runs.csv and one run dir per run."""
    from . import records
    from .config import BadInput
    from .console import SweepDisplay, Wrapped, plan_header, plan_table, sweep_table
    from .sweeps import plan_sweep, run_sweep

    _sigterm_as_interrupt()
    args = list(overrides or [])
    resume_dir = None
    if resume and args and "=" not in args[0] and not args[0].startswith(("+", "~")):
        resume_dir = _existing_dir(args.pop(0), "sweep --resume")
    try:
        plan = plan_sweep(args, resume=resume, resume_dir=resume_dir)
    except BadInput as err:
        fail(str(err))
    console = _console()
    if dry_run:
        console.print(Wrapped(plan_header(plan) + " · dry run: nothing is run"))
        console.print(plan_table(plan))
        return
    try:
        outcome = run_sweep(plan, SweepDisplay(console, quiet=quiet))
    except KeyboardInterrupt:  # a second Ctrl-C while the sweep was winding down
        raise typer.Exit(EXIT_INTERRUPTED)
    except (BadInput, records.NoSpaceError) as err:  # the dir is busy, or sweep.json did not fit
        fail(str(err))
    if not quiet:
        from rich.markup import escape

        console.print(sweep_table(outcome))
        counts = " · ".join(f"{n} {status}" for status in STATUS_ORDER if (n := outcome.count(status)))
        skipped = sum(r.skipped for r in outcome.runs)
        console.print(Wrapped(counts + (f" ({skipped} skipped)" if skipped else "")
                              + f" · runs.csv: {escape(str(plan.sweep_dir / RUNS_CSV))}"))
        if outcome.error:
            _console(stderr=True).print(f"[bold red]error:[/bold red] {escape(outcome.error)}", soft_wrap=True)
        if outcome.interrupted:
            _console(stderr=True).print(Wrapped(
                f"[yellow]interrupted[/yellow]: ended runs are kept; `resbench sweep --resume "
                f"{escape(str(plan.sweep_dir))}` runs the rest"))
    raise typer.Exit(outcome.exit_code)


@app.command()
def report(
    dirs: Annotated[list[str] | None, typer.Argument(
        help="Sweep or run dirs (default: the latest sweep under results/sweeps). Two dirs: a comparison.")] = None,
    out: Annotated[str | None, typer.Option(
        "--out", "-o", help="Write the report here instead of DIR/report (a new or empty dir, or an older report: "
        "it is replaced whole).")] = None,
    tensorboard: Annotated[bool, typer.Option(
        "--tensorboard", help="Also write each run's TensorBoard event files (RUN/tb/) from its CSVs.")] = False,
) -> None:
    """Tables, PNG plots, summary.csv and report.md (with computed findings) for sweeps or runs."""
    from rich.markup import escape
    from rich.text import Text

    from .console import Wrapped
    from .records import NoSpaceError
    from .report import ReportInputError, build_report, latest_sweep

    _sigterm_as_interrupt()

    console = _console()
    targets = list(dirs) if dirs else None
    try:
        targets = targets or [latest_sweep()]
        if tensorboard:
            from .registries import INSTALL_HINT, logger_available

            if not logger_available("tensorboard"):
                fail(INSTALL_HINT.replace("logger=tensorboard", "--tensorboard"))
        result = build_report(targets, console=console, out_dir=out)
    except ReportInputError as err:
        fail(str(err))
    except NoSpaceError as err:  # the files written so far are whole (plots are replaced atomically)
        fail(str(err), EXIT_FAILED)
    except OSError as err:  # the report's dir could be written when checked, and no longer (a full quota, ...)
        fail(f"cannot write the report to {out or 'the report dir'}: {err.strerror or err}"
             + (f": {err.filename}" if err.filename else ""), EXIT_FAILED)
    # Where the files went, last: a path too long for the line starts one of its own, cut only after a `/`.
    where = [("report.md:", f"{result.report_md} ({result.n_runs} runs)"), ("report.html:", str(result.report_html))]
    if result.pngs:
        where.append(("PNGs:", f"{result.out_dir}{os.sep} ({len(result.pngs)} files)"))
    for label, path in where:
        console.print(Wrapped(Text(f"{label:<13}{path}")))
    if tensorboard:
        from .report.tensorboard import export

        written = export(targets)
        console.print(Wrapped(f"tensorboard: {len(written)} run(s) · tensorboard --logdir {escape(str(targets[0]))}"))


@app.command(context_settings=_ARGS)
def config(overrides: Overrides = None) -> None:
    """Print the composed, resolved config (what `train` would run)."""
    import yaml

    from .config import BadInput, check

    _sigterm_as_interrupt()
    try:
        resolved = check(list(overrides or []))
    except BadInput as err:
        fail(str(err))
    typer.echo(yaml.safe_dump(resolved, sort_keys=False), nl=False)


def main() -> None:
    _defer_interrupts()  # first of all: a signal while torch loads ends like one during the run (130)
    safe_streams()  # the terminal's encoding, a closed pipe or a full disk under stdout never fail a run
    # Idle OpenMP threads sleep instead of spinning: with one other busy process on the cores, spinning
    # threads made a 2-thread run ~10x slower (set OMP_WAIT_POLICY=ACTIVE to spin). Before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside a run (e.g. while importing torch)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        # torch and the torch._dynamo its optimizers import leave about a million objects behind; the
        # interpreter's garbage collections at exit would spend 1-2 s on them after the run is done.
        gc.freeze()


if __name__ == "__main__":
    main()

"""The command line (Typer). Collects override strings, calls hydra_app, maps outcomes to exit codes.

Heavy imports (torch, Hydra) happen inside the commands so that `resbench --help` stays instant.
"""

from __future__ import annotations

import signal
import sys
from typing import List, Optional

import typer

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
OVERRIDES_HELP = "Hydra overrides, e.g. depth=12 norm=post train.lr=3e-4 (see README: Config keys)."

app = typer.Typer(
    add_completion=False,
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


def _sigterm_as_interrupt() -> None:
    """SIGTERM ends a run like Ctrl-C: flush, mark it interrupted, exit 130."""
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.default_int_handler(signum, frame))


@app.command(context_settings=_ARGS)
def train(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; just write the run dir."),
) -> None:
    """Train one run; write config.yaml, metrics.csv, grad_norms.csv, layers.csv, summary.json."""
    from . import hydra_app
    from .console import RunDisplay

    _sigterm_as_interrupt()
    display = RunDisplay(_console(), quiet=quiet)
    try:
        summary = hydra_app.run_train(list(overrides or []), display)
    except hydra_app.BadInput as err:
        fail(str(err))
    except KeyboardInterrupt:
        if not quiet:
            _console(stderr=True).print("[yellow]interrupted[/yellow]: rows written so far are kept")
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary["status"] == "failed":
        raise typer.Exit(EXIT_FAILED)


@app.command(context_settings=_ARGS)
def config(overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP)) -> None:
    """Print the composed, resolved config (what `train` would run)."""
    import yaml

    from . import hydra_app

    try:
        resolved = hydra_app.check(list(overrides or []))
    except hydra_app.BadInput as err:
        fail(str(err))
    typer.echo(yaml.safe_dump(resolved, sort_keys=False), nl=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside a run (e.g. while importing torch)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()

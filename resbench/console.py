"""What a run looks like in the terminal: a live progress bar (or plain lines) and the per-block table."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .formatting import number, wrap_spans
from .schema import status_colour

LINE_DIGITS = 4  # losses in the terminal's lines: one digit more than the tables

BAR_WIDTH = 20
PROFILE_BAR_WIDTH = 6  # four bars side by side in the end-of-run table (fits 80 columns)
_EIGHTHS = " ▏▎▍▌▋▊▉"


class Wrapped:
    """Text that wraps to the console's width between words, a path only beside a `/` (rich alone would
    split a word longer than the line anywhere, and a soft-wrapped line is split by the terminal);
    lines after the first of each paragraph are indented by `indent` spaces (`formatting.wrap_spans`).
    Styles are kept."""

    def __init__(self, text: Text | str, indent: int = 0):
        self.text = Text.from_markup(text) if isinstance(text, str) else text
        self.indent = indent

    def __rich_console__(self, console: Console, options: Any):
        yield wrapped(self.text, options.max_width, self.indent)


def wrapped(text: Text, width: int, indent: int = 0) -> Text:
    """`text` cut into lines of at most `width` cells as `Wrapped` cuts it, styles kept."""
    lines = []
    for paragraph in text.split("\n"):
        for start, end, pad in wrap_spans(paragraph.plain, width, indent) or [(0, 0, 0)]:  # a blank line stays
            lines.append(Text(" " * pad) + paragraph[start:end])
    return Text("\n").join(lines)


def bar(value: float, maximum: float, width: int = BAR_WIDTH) -> str:
    """An inline bar of `value / maximum` of `width` cells, in eighths of a cell."""
    if not (math.isfinite(value) and maximum > 0):
        return ""
    eighths = round(min(value / maximum, 1.0) * width * 8)
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def grad_profile_table(profile: Any, title: str = "gradient norm and signal per block") -> Table:
    """One row per block: grad norm at init and at the last logged step, then that step's hidden_rms and
    act_grad_norm; each number has a bar scaled across the rows, so the profile over depth shows."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("block", justify="right", no_wrap=True, min_width=5)
    last = f"@{profile.last_step}"
    columns = [("grad\ninit", profile.init, "cyan"),
               (f"grad\n{last}", profile.last, "magenta"),
               (f"rms\n{last}", profile.hidden_rms, "green"),
               (f"act grad\n{last}", profile.act_grad_norm, "yellow")]
    columns = [(name, values, style) for name, values, style in columns if values]
    for name, _, style in columns:
        table.add_column(name, justify="right", no_wrap=True, min_width=6)
        table.add_column("", no_wrap=True, overflow="crop", style=style)
    maxima = [max((v for v in values if v is not None and math.isfinite(v)), default=0.0)
              for _, values, _ in columns]
    for block in range(len(profile.init)):
        cells = [profile.labels[block] if getattr(profile, "labels", None) else str(block)]
        for (_, values, _), maximum in zip(columns, maxima):
            value = values[block]
            cells += [number(value), bar(value, maximum, PROFILE_BAR_WIDTH) if value is not None else ""]
        table.add_row(*cells)
    return table


def summary_line(summary: dict[str, Any]) -> str:
    parts = [status_markup(summary["status"]), f"{summary['steps_done']} steps",
             f"loss {number(summary['final_loss'], LINE_DIGITS)}",
             f"val loss {number(summary['final_val_loss'], LINE_DIGITS)}"]
    if summary.get("final_val_acc") is not None:
        parts.append(f"val acc {summary['final_val_acc']:.3f}")
    parts.append(f"{summary['wall_s']:.1f} s")
    line = " · ".join(parts)
    if summary.get("error"):
        line += f"\n[red]error:[/red] {escape(summary['error'])}"
    return line


class RunDisplay:
    """The trainer's Progress for `resbench train`: a rich bar on a TTY, plain lines otherwise."""

    def __init__(self, console: Console, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self.live = console.is_terminal and not quiet
        self._bar: Progress | None = None
        self._last_line = 0.0

    def run_started(self, config: dict[str, Any], run_dir: Path) -> None:
        self.run_dir = run_dir
        self.total = max(config["train"]["steps"], 1)
        self.val_loss: float | None = None
        if self.quiet:
            return
        self.console.print(
            f"[bold]resbench train[/bold] {config['model']['name']} depth={config['depth']} norm={config['norm']} "
            f"norm_type={config['norm_type']} residual={config['residual']} task={config['task']['name']}"
        )
        if self.live:
            self._bar = Progress(
                TextColumn("[bold blue]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]} · val {task.fields[val]} · {task.fields[speed]} steps/s"),
                TimeElapsedColumn(), console=self.console, transient=True,
            )
            self._task = self._bar.add_task("train", total=self.total, loss="—", val="—", speed="—")
            self._bar.start()

    def step(self, step: int, total: int, loss: float, val_loss: float | None, steps_per_s: float) -> None:
        if val_loss is not None:
            self.val_loss = val_loss
        if self._bar is not None:
            self._bar.update(self._task, completed=step + 1, loss=number(loss, LINE_DIGITS),
                             val=number(self.val_loss, LINE_DIGITS), speed=f"{steps_per_s:.1f}")
        elif not self.quiet and (val_loss is not None or time.monotonic() - self._last_line > 5):
            self._last_line = time.monotonic()
            self.console.print(f"step {step + 1}/{self.total} loss {number(loss, LINE_DIGITS)} "
                               f"val {number(self.val_loss, LINE_DIGITS)} {steps_per_s:.1f} steps/s")

    def run_finished(self, summary: dict[str, Any], profile: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self.quiet:
            return
        if profile.init:
            self.console.print(grad_profile_table(profile))
        self.console.print(summary_line(summary))
        self.console.print(f"run dir: {escape(str(self.run_dir))}")


# ----------------------------------------------------------------------------- sweeps
def status_markup(status: str, skipped: bool = False) -> str:
    """A run's status in its colour, as rich markup."""
    colour = status_colour(status)
    return f"[{colour}]{status}[/{colour}]" + (" [dim]· skipped[/dim]" if skipped else "")


def run_line(done: int, total: int, label: str, summary: dict[str, Any]) -> str:
    """One line per finished run: its overrides, status, final losses and wall time."""
    parts = [escape(f"[{done}/{total}]"), escape(label), status_markup(summary.get("status", "?")),
             f"loss {number(summary.get('final_loss'), LINE_DIGITS)}",
             f"val {number(summary.get('final_val_loss'), LINE_DIGITS)}",
             f"{summary.get('wall_s') or 0:.1f} s"]
    line = "  ".join(parts)
    if summary.get("error"):
        line += f"  [red]{escape(str(summary['error']))}[/red]"
    return line


def plan_header(plan: Any) -> str:
    at_once = f" · {plan.parallel_runs} at once" if plan.parallel_runs > 1 else ""
    return (f"[bold]resbench sweep[/bold] {len(plan.runs)} run(s) · launcher {plan.launcher}{at_once} · "
            f"{escape(str(plan.sweep_dir))}")


def plan_table(plan: Any) -> Table:
    """--dry-run: the expanded runs, their dirs and (resume) which would be skipped."""
    table = Table()
    table.add_column("#", justify="right")
    for key in plan.swept_keys:
        table.add_column(escape(key))
    table.add_column("run dir")
    if plan.resume:
        table.add_column("resume")
    for run in plan.runs:
        cells = [str(run.index), *(escape(run.swept[key]) for key in plan.swept_keys), escape(run.name)]
        if plan.resume:
            cells.append(f"skip ({run.previous['status']})" if run.done_before else "run")
        table.add_row(*cells)
    return table


def sweep_table(outcome: Any) -> Table:
    """End of a sweep: one row per run: swept keys, status, final losses, init grad ratio, wall time."""
    plan = outcome.plan
    # The sweep dir is not in the title: a title wraps to the table's width and would break the path; the
    # line after the table names it (runs.csv) without wrapping.
    table = Table(title=f"sweep: {len(outcome.runs)} run(s)", title_justify="left",
                  caption="grad ratio: the last block's gradient norm over the first's, at init"
                  + (" · skipped: ended before with this config (resume)" if any(r.skipped for r in outcome.runs)
                     else ""), caption_justify="left")
    keys = plan.swept_keys or ["run"]
    for key in keys:
        table.add_column(escape(key))
    table.add_column("status", no_wrap=True)
    for name in ("final loss", "val loss", "grad ratio", "wall s"):  # numbers never wrap
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    errors = any(r.summary and r.summary.get("error") and not r.skipped for r in outcome.runs)
    if errors:
        table.add_column("error", overflow="fold")
    for result in outcome.runs:
        summary = result.summary or {}
        values = [result.run.swept[key] for key in plan.swept_keys] or [result.run.name]
        wall = summary.get("wall_s")
        cells = [*map(escape, values), status_markup(result.status, result.skipped),
                 number(summary.get("final_loss"), LINE_DIGITS),
                 number(summary.get("final_val_loss"), LINE_DIGITS),
                 number(summary.get("init_grad_ratio")), "—" if wall is None else f"{wall:.1f}"]
        if errors:
            cells.append(escape(str(summary.get("error") or "")))
        table.add_row(*cells)
    return table


PROGRESS_LINE_S = 30.0  # not on a TTY: at most one line this often about the runs in flight
IN_FLIGHT_SHOWN = 4  # runs named in that line; the rest are counted


def in_flight_line(done: int, total: int, in_flight: list[tuple[Any, int, float | None]]) -> str:
    """Not on a TTY: runs done / total and, for the runs in flight, each one's step and loss."""
    shown = [f"{escape(run.label)} step {step}/{max(run.steps, 1)} loss {number(loss, LINE_DIGITS)}"
             for run, step, loss in in_flight[:IN_FLIGHT_SHOWN]]
    more = len(in_flight) - len(shown)
    return (escape(f"[{done}/{total} done]") + " running: " + " · ".join(shown)
            + (f" · {more} more" if more > 0 else ""))


class SweepDisplay:
    """A sweep in the terminal. Every launcher: one line per run as it ends (the sweep's watcher calls
    run_ended). On a TTY, a live display of runs done / total and, in-process, the current run's steps
    (this is then also the trainer's Progress); on worker launchers, a bar per run in flight with its
    step and loss, read from its files (the watcher calls run_progress). Not on a TTY, those become at
    most one line every `line_every` seconds, so a CI log stays short."""

    def __init__(self, console: Console, quiet: bool = False, line_every: float = PROGRESS_LINE_S,
                 clock: Any = time.monotonic):
        self.console = console
        self.quiet = quiet
        self.live = console.is_terminal and not quiet
        self.line_every = line_every
        self.clock = clock
        self._bar: Progress | None = None
        self._lock = threading.Lock()
        self._in_flight: dict[str, tuple[Any, int, float | None]] = {}  # run name -> (run, step, loss)
        self._run_tasks: dict[str, Any] = {}  # run name -> its bar's task id

    def start(self, plan: Any) -> None:
        self.sweep_dir = Path(plan.sweep_dir)
        self.total, self.done = len(plan.to_run), 0
        self._last_line = self.clock()
        if self.quiet:
            return
        skipped = len(plan.runs) - self.total
        self.console.print(Wrapped(plan_header(plan) + (f" · {skipped} done before: skipped" if skipped else "")))
        if self.live:
            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console, transient=True,
            )
            self._runs = self._bar.add_task("runs", total=self.total, info="")
            self._steps = self._bar.add_task("", total=1, visible=False, info="")
            self._bar.start()

    # trainer.Progress, called by the trainer when the launcher runs jobs in this process
    def run_started(self, config: dict[str, Any], run_dir: Path) -> None:
        if self._bar is not None:
            name = Path(run_dir).relative_to(self.sweep_dir) if Path(run_dir).is_relative_to(self.sweep_dir) \
                else Path(run_dir).name
            self._bar.update(self._steps, description=escape(str(name)), total=max(config["train"]["steps"], 1),
                             completed=0, visible=True, info="")

    def step(self, step: int, total: int, loss: float, val_loss: float | None, steps_per_s: float) -> None:
        if self._bar is not None:
            self._bar.update(self._steps, completed=step + 1,
                             info=f"loss {number(loss, LINE_DIGITS)} · {steps_per_s:.1f} steps/s")

    def run_finished(self, summary: dict[str, Any], profile: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._steps, visible=False)

    # the sweep's watcher, for every launcher
    def run_progress(self, run: Any, row: dict[str, str]) -> None:
        """A run in flight wrote metrics.csv up to `row` (its last row: step, loss as written)."""
        try:
            step, loss = int(row["step"]) + 1, float(row["loss"]) if row.get("loss") else None
        except (KeyError, ValueError):  # not a row of a resbench run: nothing to show
            return
        with self._lock:
            if self.quiet:
                return
            self._in_flight[run.name] = (run, step, loss)
            if self._bar is not None:
                if run.name not in self._run_tasks:
                    self._run_tasks[run.name] = self._bar.add_task(escape(run.label), total=max(run.steps, 1),
                                                                   info="")
                self._bar.update(self._run_tasks[run.name], completed=step, info=f"loss {number(loss, LINE_DIGITS)}")
            elif self.clock() - self._last_line >= self.line_every:
                self._last_line = self.clock()
                self.console.print(in_flight_line(self.done, self.total, list(self._in_flight.values())),
                                   soft_wrap=True)

    def run_ended(self, run: Any, summary: dict[str, Any]) -> None:
        with self._lock:
            self.done += 1
            self._in_flight.pop(run.name, None)
            if self.quiet:
                return
            if self._bar is not None and run.name in self._run_tasks:
                self._bar.remove_task(self._run_tasks.pop(run.name))
            self.console.print(run_line(self.done, self.total, run.label, summary), soft_wrap=True)
            if self._bar is not None:
                self._bar.update(self._runs, completed=self.done)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

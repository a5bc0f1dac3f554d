"""`resbench report`: tables, plots and report.md from run and sweep directories.

Reads only files (never the trainer, torch or Hydra). Importing this package is cheap: pandas and
matplotlib load when `build_report` runs, so the CLI can import it at start-up.

    from resbench.report import build_report, latest_sweep
    result = build_report([latest_sweep()])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from resbench.schema import REPORT_HTML, REPORT_MD, RESULTS_ROOT, SWEEPS_DIR

if TYPE_CHECKING:
    import rich.console

__all__ = ["ReportInputError", "ReportResult", "build_report", "latest_sweep"]

class ReportInputError(ValueError):
    """A directory to report on is missing or holds no runs (the CLI exits 2 with this one line)."""


@dataclass(frozen=True)
class ReportResult:
    """What `build_report` wrote and what it saw."""

    out_dir: Path  # where report.md, report.html, summary.csv and the PNGs are
    paths: list[Path]  # every file written: report.md, report.html, summary.csv, then the PNGs
    n_runs: int  # runs read (both sides of a comparison together)
    warnings: list[str] = field(default_factory=list)  # failed, interrupted, running, corrupt runs
    findings: list[str] = field(default_factory=list)  # one line per computed finding

    @property
    def report_md(self) -> Path:
        return self.out_dir / REPORT_MD

    @property
    def report_html(self) -> Path:
        return self.out_dir / REPORT_HTML

    @property
    def pngs(self) -> list[Path]:
        return [path for path in self.paths if path.suffix == ".png"]


def latest_sweep(results_root: Path = Path(RESULTS_ROOT)) -> Path:
    """The latest sweep under `results_root/sweeps/`, by the rule `sweep --resume` uses too
    (records.latest_sweep); ReportInputError when there is none."""
    from resbench.records import latest_sweep as latest

    sweeps_root = Path(results_root) / SWEEPS_DIR
    if not sweeps_root.is_dir():
        raise ReportInputError(f"no sweeps yet: {sweeps_root} does not exist (run `resbench sweep` first)")
    found = latest(sweeps_root)
    if found is None:
        raise ReportInputError(f"no sweeps in {sweeps_root} (run `resbench sweep` first)")
    return found


def build_report(
    dirs: list[str | Path],
    console: rich.console.Console | None = None,
    out_dir: str | Path | None = None,
) -> ReportResult:
    """Report on sweep or run dirs; write `report.md`, `report.html`, `summary.csv` and PNGs; print tables to
    `console`.

    One dir: a report of its runs in `DIR/report/`. Two dirs A B: a comparison, groups side by side
    with both values and the delta B − A, in `A/report/`. Three or more: their runs pooled into one
    report in the first dir's `report/`. `out_dir` overrides where files go; `console=None` prints
    nothing. The report replaces its directory whole, at once: an interrupted report leaves the old one.
    Raises ReportInputError, before writing anything, for a missing dir or one with no runs, or an
    `out_dir` that cannot be written or holds files other than a report.
    """
    from resbench.report.build import build  # pandas takes most of a second to import

    return build(list(dirs), console=console, out_dir=out_dir)

"""Draw the report's figures, on two cores when there are two.

Drawing is most of a big report's time and it is single-threaded matplotlib, so a helper process
(an isolated `python -I` running `render.main`, started before the runs are read, so its imports overlap the
loading) draws about half the figures while this process draws the rest. The helper is a plain
subprocess of a module, not multiprocessing: nothing of the caller's `__main__` is ever re-run. Any
trouble with it (cannot start, crashes) and this process draws its share too: same files either way.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from resbench.sweep_watch import usable_cores

HELPER_MIN_RUNS = 50  # below this a report draws in well under a second per figure: no helper
HELPER_TIMEOUT_S = 300


@dataclass(frozen=True)
class PlotJob:
    """One figure: `plots.<figure>(data, path, **options)`."""

    figure: str  # "line_figure" | "heatmap_figure"
    data: pd.DataFrame
    path: Path
    options: dict = field(default_factory=dict)

    @property
    def cost(self) -> int:
        """Panels to draw: what a figure's time is about proportional to."""
        column = "group" if self.figure == "heatmap_figure" else "panel"
        return max(1, self.data[column].nunique())

    def draw(self) -> Path:
        """Draw into a temporary file and rename it: a PNG is whole or absent (a full disk, a crash)."""
        from resbench.records import no_space_named
        from resbench.report import plots

        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp{self.path.suffix}")
        try:
            with no_space_named(self.path):
                getattr(plots, self.figure)(self.data, tmp, **self.options)
                os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self.path


# The helper's whole program. Python runs it isolated (-I): neither the current directory nor PYTHONPATH
# is on its sys.path, so a stray pandas.py where the user runs `resbench report` is never imported; this
# very resbench is put first by hand.
HELPER_PROGRAM = "import sys; sys.path.insert(0, sys.argv[1]); from resbench.report.render import main; main()"


class Helper:
    """A second process that draws the PlotJobs it is sent, once, then exits."""

    def __init__(self) -> None:
        package_root = Path(__file__).resolve().parents[2]  # so the helper imports this very resbench
        # Its output is never needed (on any failure this process redraws its share), and an unread
        # pipe could fill and stall it: both streams go nowhere.
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", HELPER_PROGRAM, str(package_root)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    @classmethod
    def start(cls, n_runs: int) -> Helper | None:
        """A helper when the report is big and there is a second core; else None."""
        if n_runs < HELPER_MIN_RUNS or usable_cores() < 2:
            return None
        try:
            return cls()
        except OSError:
            return None

    def send(self, jobs: list[PlotJob]) -> bool:
        try:
            self.process.stdin.write(pickle.dumps(jobs))
            self.process.stdin.close()
            return True
        except OSError:  # it died already
            return False

    def finished(self) -> bool:
        """Wait for it; True when it drew everything it was sent."""
        try:
            self.process.wait(timeout=HELPER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.close()
            return False
        return self.process.returncode == 0

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()


def draw_all(jobs: list[PlotJob], helper: Helper | None, meanwhile: Callable[[], object] | None = None) -> None:
    """Draw every job; with a helper, split them by cost so both processes finish about together.

    `meanwhile` (other work of the report) runs once this process has drawn its share, while the helper
    may still be drawing; without a helper, after every job.
    """
    if helper is None:
        for job in jobs:
            job.draw()
        if meanwhile is not None:
            meanwhile()
        return
    mine: list[PlotJob] = []
    theirs: list[PlotJob] = []
    for job in sorted(jobs, key=lambda j: j.cost, reverse=True):
        # This process also imports matplotlib while the helper did so during loading: give it less.
        (mine if sum(j.cost for j in mine) + 2 <= sum(j.cost for j in theirs) else theirs).append(job)
    sent = helper.send(theirs)
    for job in mine:
        job.draw()
    if meanwhile is not None:
        meanwhile()
    if not (sent and helper.finished()):
        for job in theirs:
            job.draw()


def main() -> None:
    """Helper side: import the drawing stack at once (overlapping the caller's loading), then draw."""
    import matplotlib.figure  # noqa: F401  (the slow import, done before the jobs arrive)

    from resbench.report import plots  # noqa: F401

    jobs = pickle.load(sys.stdin.buffer)
    for job in jobs:
        job.draw()


if __name__ == "__main__":
    main()

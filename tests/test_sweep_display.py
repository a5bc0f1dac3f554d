"""The live display of a sweep whose runs go on in worker processes: runs done / total, each run in flight
with its step and loss read from its metrics.csv, a line per finished run; short on a non-TTY."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from conftest import TINY
from rich.console import Console

from resbench import records
from resbench.console import IN_FLIGHT_SHOWN, SweepDisplay
from resbench.sweep_watch import Watcher
from resbench.sweeps import PlannedRun


def planned(tmp_path: Path, name: str, steps: int = 300) -> PlannedRun:
    return PlannedRun(0, name, tmp_path / name, [name], {"depth": name.split("=")[1]}, "hash", steps=steps)


def a_plan(tmp_path: Path, runs: list[PlannedRun]) -> SimpleNamespace:
    return SimpleNamespace(sweep_dir=tmp_path, runs=runs, to_run=runs, launcher="joblib", parallel_runs=2)


def ended(status: str = "completed") -> dict:
    return {"status": status, "final_loss": 1.25, "final_val_loss": 1.5, "wall_s": 2.0}


def test_the_watcher_hands_on_the_last_metrics_row_of_a_run_in_flight(cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert cli("train", *TINY, "train.steps=7", f"hydra.run.dir={run_dir}").exit_code == 0
    run = PlannedRun(0, "run", run_dir, [], {}, "hash", steps=7)
    seen: list[dict] = []
    watcher = Watcher([run], on_end=lambda *_: None, on_progress=lambda _, row: seen.append(row))
    summary = json.loads((run_dir / "summary.json").read_text())
    records.write_json(run_dir / "summary.json", {**summary, "status": "running"})  # as while it runs
    watcher.poll()
    last = pd.read_csv(run_dir / "metrics.csv").iloc[-1]
    assert len(seen) == 1 and int(seen[0]["step"]) == last.step == 6
    assert float(seen[0]["loss"]) == last.loss
    watcher.poll()
    assert len(seen) == 1, "an unchanged metrics.csv is not read again"
    with open(run_dir / "metrics.csv", "a") as handle:
        handle.write("7,0.5,,,,\n8,0.25,,")  # a whole row, then one still being written
    watcher.poll()
    assert [int(row["step"]) for row in seen] == [6, 7]


def test_on_a_tty_each_run_in_flight_has_a_bar_with_its_step_and_loss(tmp_path: Path) -> None:
    out = io.StringIO()
    display = SweepDisplay(Console(file=out, force_terminal=True, color_system=None, width=120))
    deep, shallow = planned(tmp_path, "depth=24", steps=300), planned(tmp_path, "depth=6", steps=300)
    display.start(a_plan(tmp_path, [deep, shallow]))
    try:
        display.run_progress(deep, {"step": "41", "loss": "2.5"})
        display.run_progress(shallow, {"step": "99", "loss": "1.75"})
        tasks = {task.description: task for task in display._bar.tasks if task.visible}
        assert tasks["depth=24"].completed == 42 and tasks["depth=24"].total == 300
        assert tasks["depth=24"].fields["info"] == "loss 2.5"
        assert tasks["depth=6"].completed == 100 and tasks["depth=6"].fields["info"] == "loss 1.75"
        assert tasks["runs"].completed == 0 and tasks["runs"].total == 2
        display._bar.refresh()
        assert "42/300" in out.getvalue() and "100/300" in out.getvalue()

        display.run_ended(shallow, ended())
        tasks = {task.description: task for task in display._bar.tasks if task.visible}
        assert "depth=6" not in tasks and tasks["runs"].completed == 1
    finally:
        display.stop()
    assert "[1/2]  depth=6  completed  loss 1.25  val 1.5  2.0 s" in out.getvalue()


def test_off_a_tty_runs_in_flight_are_one_line_at_most_every_interval(tmp_path: Path) -> None:
    out, now = io.StringIO(), [0.0]
    display = SweepDisplay(Console(file=out, force_terminal=False, width=300), line_every=30.0,
                           clock=lambda: now[0])
    runs = [planned(tmp_path, f"depth={d}") for d in range(1, IN_FLIGHT_SHOWN + 3)]
    display.start(a_plan(tmp_path, runs))
    for second in range(100):  # every run reports a step each second for 100 s
        now[0] = float(second)
        for run in runs:
            display.run_progress(run, {"step": str(second), "loss": "0.5"})
    display.run_ended(runs[0], ended("diverged"))
    lines = out.getvalue().splitlines()
    progress = [line for line in lines if "running:" in line]
    assert len(progress) == 3, lines  # at 30, 60 and 90 s
    assert progress[0].startswith("[0/6 done] running: depth=1 step 31/300 loss 0.5 · depth=2 step 30/300")
    assert progress[0].endswith(f" · {len(runs) - IN_FLIGHT_SHOWN} more")
    assert lines[-1].startswith("[1/6]  depth=1  diverged")
    assert len(lines) == 1 + 3 + 1  # the header, the progress lines, the finished run


def test_quiet_shows_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    display = SweepDisplay(Console(file=out, force_terminal=True), quiet=True, line_every=0.0)
    run = planned(tmp_path, "depth=2")
    display.start(a_plan(tmp_path, [run]))
    display.run_progress(run, {"step": "1", "loss": "0.5"})
    display.run_ended(run, ended())
    display.stop()
    assert out.getvalue() == ""

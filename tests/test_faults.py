"""Faults a hostile but realistic user meets, each through the CLI: two writers on one run, a report cut
short while it replaces an older one, paths and locales the OS refuses, resource limits, checkpoints that
load but lie, resume dead ends, runs a report would silently drop, and streams that break under a run.

What every test holds the CLI to (README, Exit codes): bad input is one line and exit 2 with nothing
written, a failed run exit 1, an interrupt exit 130, and never a traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch
from test_checkpoint import interrupted_run, run_files, signal_at  # noqa: F401 - a fixture
from test_train_cli import killed_on_exit, resbench, wait_for_rows

from resbench import api, records, runtime
from resbench.checkpoint import CHECKPOINT_PT


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def one_line(stderr: str) -> bool:
    return len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def temporaries(directory: Path) -> list[Path]:
    return [path for path in directory.rglob(".*") if ".tmp" in path.name]


# ----------------------------------------------------------------------------- signals during a write
def test_two_ctrl_c_during_the_checkpoint_write_wait_for_it(train_cli, cli, monkeypatch) -> None:
    """Both Ctrl-C come while checkpoint.pt is being written, as the OS delivers them to a process with
    several threads: to another thread, whose handler then runs in the main one at its next bytecode.
    The write completes, the run ends interrupted (130), and its checkpoint continues it."""
    save = torch.save
    calls = []

    def save_under_two_ctrl_c(*args, **kwargs):
        if not calls:
            for _ in range(2):
                sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
                sender.start()
                sender.join()
                time.sleep(0.01)  # the main thread's Python handler runs in here
        calls.append(1)
        return save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", save_under_two_ctrl_c)
    run = train_cli("train.checkpoint_every=1")
    monkeypatch.undo()
    assert run.exit_code == 130, run.stderr
    done = summary(run.dir)
    assert done["status"] == "interrupted" and done["checkpoint_step"] is not None
    assert (run.dir / CHECKPOINT_PT).is_file() and not temporaries(run.dir)
    resumed = cli("train", "--quiet", "--resume", str(run.dir))
    assert resumed.exit_code == 0, resumed.stderr
    assert summary(run.dir)["status"] == "completed"


def interrupted_sweep(cli, tiny, monkeypatch, sweep_dir, steps: int, at_step: int) -> None:
    """Seeds 0 and 1 of a `steps`-step sweep into `sweep_dir`, interrupted (Ctrl-C) at step `at_step`."""
    signal_at(monkeypatch, at_step)
    first = cli("sweep", "--quiet", *tiny, f"train.steps={steps}", "seed=0,1", "hydra/launcher=basic",
                f"hydra.sweep.dir={sweep_dir}")
    monkeypatch.undo()
    assert first.exit_code == 130, first.stderr


# ----------------------------------------------------------------------------- 1. two writers on one run
@pytest.mark.slow
def test_a_second_resume_of_a_run_being_resumed_is_refused(train_cli, cli, tmp_path, monkeypatch) -> None:
    """Two `train --resume DIR` at once: the second is one line, exit 2, and writes nothing; the first
    goes on alone, so every step is in metrics.csv once."""
    signal_at(monkeypatch, 2)
    stopped = train_cli("train.steps=1000000", "log_every=1")
    monkeypatch.undo()
    assert stopped.exit_code == 130, stopped.stderr
    first = resbench("train", "--quiet", "--resume", str(stopped.dir), cwd=tmp_path)
    with killed_on_exit(first):
        wait_for_rows(stopped.dir / "metrics.csv", 20, first)
        second = resbench("train", "--quiet", "--resume", str(stopped.dir), cwd=tmp_path)
        with killed_on_exit(second):
            _, stderr = second.communicate(timeout=60)
        assert second.returncode == 2 and one_line(stderr), stderr
        assert f"is in use by pid {first.pid} on" in stderr
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    assert pd.read_csv(stopped.dir / "metrics.csv").step.is_unique
    assert summary(stopped.dir)["resumes"] == 1



def test_a_sweep_run_another_writer_ended_meanwhile_is_not_run_again(cli, tiny, tmp_path, monkeypatch) -> None:
    """A run of a resumed sweep that another writer (`train --resume` of its dir) ended between the sweep's
    look at it and the sweep taking its dir's lock is skipped, as one that had ended before: never run over."""
    sweep_dir = tmp_path / "sweep"
    interrupted_sweep(cli, tiny, monkeypatch, sweep_dir, steps=4, at_step=1)
    run_dir = sweep_dir / "seed=0"
    ended = {**summary(run_dir), "status": "completed"}
    dir_lock = records.dir_lock

    def lock_once_the_other_writer_ended(directory, *args):
        if Path(directory) == run_dir:  # the other writer ends just before this lock is taken
            (run_dir / "summary.json").write_text(json.dumps(ended), encoding="utf-8")
        return dir_lock(directory, *args)

    monkeypatch.setattr(records, "dir_lock", lock_once_the_other_writer_ended)
    metrics = (run_dir / "metrics.csv").read_bytes()
    result = cli("sweep", "--quiet", "--resume", str(sweep_dir))
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert summary(run_dir) == ended and (run_dir / "metrics.csv").read_bytes() == metrics
    assert summary(sweep_dir / "seed=1")["status"] == "completed"

# ----------------------------------------------------------------------------- 2. a report cut short
def small_sweep(tmp_path: Path) -> Path:
    from report_fixtures import grid, write_sweep

    return write_sweep(tmp_path / "sweep", grid(depth=[2, 4], norm=["post", "pre"]), swept_keys=["depth", "norm"])


def report_files(report_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in report_dir.iterdir()}


def test_a_report_interrupted_while_it_replaces_an_older_one_leaves_the_older_one(cli, tmp_path,
                                                                                 monkeypatch) -> None:
    """Ctrl-C while the figures of a second report are being drawn: the first report stays whole (every
    PNG report.md links to is there), the exit is 130, and no temporary file or folder is left."""
    from resbench.report import render

    sweep = small_sweep(tmp_path)
    assert cli("report", str(sweep)).exit_code == 0
    before = report_files(sweep / "report")
    draw = render.PlotJob.draw
    drawn = []

    def draw_then_ctrl_c(job):
        drawn.append(draw(job))
        if len(drawn) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(render.PlotJob, "draw", draw_then_ctrl_c)
    result = cli("report", str(sweep))
    assert result.exit_code == 130, (result.output, result.exception)
    assert report_files(sweep / "report") == before
    linked = re.findall(r"\]\(([^)]+\.png)\)", before["report.md"].decode())
    assert linked and all((sweep / "report" / name).is_file() for name in linked)
    assert not temporaries(sweep)



def test_a_report_into_a_symlinked_dir_writes_where_the_link_points(cli, tmp_path) -> None:
    """`report --out LINK`, LINK a symbolic link to a dir (results on a scratch disk): the report is swapped in
    at the link's target, the link stays a link, and no temporary is left beside either."""
    sweep = small_sweep(tmp_path)
    (tmp_path / "scratch").mkdir()
    link = tmp_path / "linked"
    link.symlink_to(tmp_path / "scratch", target_is_directory=True)
    for _ in range(2):  # into the empty target, then over the report there
        result = cli("report", str(sweep), "--out", str(link))
        assert result.exit_code == 0, (result.stderr, result.exception)
        assert link.is_symlink() and (tmp_path / "scratch" / "report.md").is_file()
        assert not temporaries(tmp_path)

def test_a_run_removes_the_temporaries_dead_processes_left_and_keeps_live_ones(cli, interrupted_run) -> None:  # noqa: F811
    """A checkpoint or summary being written by a process killed with -9 stays as `.NAME.<pid>.tmp`: the
    next writer of the dir removes it, but never one of a process still alive (pid 1 always is)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stale = interrupted_run / f".checkpoint.pt.{int(dead.stdout)}.tmp"
    alive = interrupted_run / ".summary.json.1.tmp"
    stale.write_bytes(b"cut")
    alive.write_bytes(b"in use")
    assert cli("train", "--quiet", "--resume", str(interrupted_run)).exit_code == 0
    assert not stale.exists() and alive.exists()


KILL_WHILE_DRAWING = """
import os, signal, sys
from resbench import cli
from resbench.report import render
draw = render.PlotJob.draw
def draw_then_die(job):
    draw(job)
    os.kill(os.getpid(), signal.SIGKILL)
render.PlotJob.draw = draw_then_die
sys.argv = ["resbench", "report", sys.argv[1]]
cli.main()
"""


def test_a_report_killed_mid_way_leaves_the_older_one_and_the_next_one_cleans_up(cli, tmp_path) -> None:
    """kill -9 mid-report: the older report is whole; what the killed process left (hidden, named by its
    pid) goes with the next report."""
    sweep = small_sweep(tmp_path)
    assert cli("report", str(sweep)).exit_code == 0
    before = report_files(sweep / "report")
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_DRAWING, str(sweep)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert report_files(sweep / "report") == before
    assert cli("report", str(sweep)).exit_code == 0
    assert not temporaries(sweep)


# ----------------------------------------------------------------------------- 4. locale and encoding
ASCII_TERMINAL = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": ""}


def test_an_ascii_terminal_never_fails_a_run_or_a_report(tmp_path, tiny) -> None:
    """LC_ALL=C (a cluster node, a minimal container): stdout is ASCII. The run completes and prints
    ASCII look-alikes of its bars and dots; the report is written and printed too."""
    env = {**os.environ, **ASCII_TERMINAL}
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "resbench.cli", "train", *tiny, f"hydra.run.dir={run_dir}"],
                          cwd=tmp_path, env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert summary(run_dir)["status"] == "completed"
    assert done.stdout.isascii() and b"completed - 3 steps" in done.stdout and b"#" in done.stdout
    report = subprocess.run([sys.executable, "-m", "resbench.cli", "report", str(run_dir)], cwd=tmp_path,
                            env=env, capture_output=True, timeout=120, check=False)
    assert report.returncode == 0 and not report.stderr, report.stderr.decode(errors="replace")
    markdown = (run_dir / "report" / "report.md").read_text(encoding="utf-8")  # the file stays UTF-8
    assert not markdown.isascii(), "report.md keeps its non-ASCII text (‖X‖, ×, —) whatever the terminal"


# ----------------------------------------------------------------------------- 10. streams that break under a run
def test_a_run_piped_into_head_ends_completed(tmp_path, tiny) -> None:
    """`resbench train | head -1`: the pipe closes after the first line; the run still ends completed (its
    files are the record), with exit 0 and nothing on stderr."""
    run_dir = tmp_path / "run"
    process = resbench("train", *tiny, "train.steps=60", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    with killed_on_exit(process):
        assert process.stdout.readline().startswith("resbench train")
        process.stdout.close()  # what head does after its line
        stderr = process.stderr.read()
        process.wait(timeout=120)
    assert process.returncode == 0 and not stderr, stderr
    assert summary(run_dir)["status"] == "completed"


def test_a_run_whose_stdout_is_full_ends_completed(tmp_path, tiny) -> None:
    """`resbench train > /dev/full`: the output is lost, said in one line on stderr; the run completes."""
    run_dir = tmp_path / "run"
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "resbench.cli", "train", *tiny, f"hydra.run.dir={run_dir}"],
                              cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
                              check=False)
    assert done.returncode == 0 and one_line(done.stderr), done.stderr
    assert "cannot write to stdout (No space left on device)" in done.stderr
    assert summary(run_dir)["status"] == "completed"


@pytest.mark.slow
def test_a_killed_resource_tracker_prints_no_traceback(tmp_path, tiny) -> None:
    """joblib's resource tracker killed mid-sweep (an OOM killer, a kill by name): loky starts another;
    the sweep completes every run and prints no traceback."""
    sweep_dir = tmp_path / "sweep"
    process = resbench("sweep", "--quiet", *tiny, "train.steps=200", "norm=pre,post", "hydra/launcher=joblib",
                       "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    with killed_on_exit(process):
        deadline = time.monotonic() + 60
        tracker = None
        while tracker is None and time.monotonic() < deadline and process.poll() is None:
            tracker = next((child for child in psutil.Process(process.pid).children(recursive=True)
                            if "loky.backend.resource_tracker" in " ".join(child.cmdline())), None)
            time.sleep(0.1)
        assert tracker is not None, "no resource tracker started"
        wait_for_rows(sweep_dir / "norm=pre" / "metrics.csv", 5, process)
        tracker.kill()
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "resource_tracker" not in stderr, stderr
    assert set(pd.read_csv(sweep_dir / "runs.csv").status) == {"completed"}


@pytest.mark.parametrize(("command", "overrides", "message"), [
    ("train", ["+hydra.callbacks.x._target_=os.system"], "hydra.callbacks.x: cannot make this callback: Target"),
    ("sweep", ["norm=pre,post", "+hydra.callbacks.x._target_=nowhere.Callback"],
     "hydra.callbacks.x: cannot make this callback: Error locating target 'nowhere.Callback'"),
    ("sweep", ["norm=pre,post", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0 runs nothing"),
], ids=["refused callback", "missing callback", "n_jobs=0"])
def test_hydra_settings_that_cannot_run_are_one_line_and_write_nothing(cli, tiny, tmp_path, command, overrides,
                                                                       message) -> None:
    out = tmp_path / "out"
    result = cli(command, "--quiet", *tiny, *overrides,
                 f"hydra.{'run' if command == 'train' else 'sweep'}.dir={out}")
    assert result.exit_code == 2 and one_line(result.stderr), (result.stderr, result.exception)
    assert message in result.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- 7. checkpoints that load but lie
def _lie(state: dict, damage: str) -> dict:
    weights = state["model"]
    first = next(iter(weights))
    lies = {
        "a key missing": lambda: state.pop("optimizer"),
        "a weight of another shape": lambda: weights.update({first: torch.zeros(3, 3)}),
        "a weight that is NaN": lambda: weights[first].fill_(float("nan")),
        "an optimizer moment of another shape": lambda: state["optimizer"]["state"][0].update(exp_avg=torch.zeros(7)),
        "a bad random state": lambda: state["rng"].update(data=torch.zeros(3, dtype=torch.uint8)),
        "a negative step": lambda: state.update(step=-4),
        "a step past train.steps": lambda: state.update(step=50),
        "more csv rows than the files": lambda: state["csv_rows"].update({"layers.csv": 10_000}),
        "csv rows not one a step": lambda: state["csv_rows"].update({"metrics.csv": 2}),
        "optimizer groups of other sizes": lambda: _split_first_group(state["optimizer"]),
        "a parameter id that is no integer": lambda: state["optimizer"]["param_groups"][0]["params"].append("x"),
    }
    lies[damage]()
    return state


def _split_first_group(optimizer: dict) -> None:
    """The run's parameters, all there, but in two optimizer groups where the run has one."""
    group = optimizer["param_groups"][0]
    optimizer["param_groups"][:1] = [{**group, "params": group["params"][:1]}, {**group, "params": group["params"][1:]}]


@pytest.mark.parametrize("damage", ["a key missing", "a weight of another shape", "a weight that is NaN",
                                    "an optimizer moment of another shape", "a bad random state", "a negative step",
                                    "a step past train.steps", "more csv rows than the files",
                                    "csv rows not one a step", "optimizer groups of other sizes",
                                    "a parameter id that is no integer"])
def test_a_checkpoint_that_loads_but_lies_is_one_line_exit_2_and_nothing_written(cli, interrupted_run, damage):  # noqa: F811
    """README: a corrupt checkpoint is exit 2 with nothing written, whichever field lies."""
    path = interrupted_run / CHECKPOINT_PT
    torch.save(_lie(torch.load(path, weights_only=True), damage), path)
    before = run_files(interrupted_run)
    result = cli("train", "--quiet", "--resume", str(interrupted_run))
    assert result.exit_code == 2 and one_line(result.stderr), (result.stderr, result.exception)
    assert "checkpoint.pt does not fit this run" in result.stderr
    assert run_files(interrupted_run) == before


def test_a_sweep_resume_refuses_a_run_whose_checkpoint_lies(cli, tiny, tmp_path, monkeypatch) -> None:
    sweep_dir = tmp_path / "sweep"
    interrupted_sweep(cli, tiny, monkeypatch, sweep_dir, steps=10, at_step=3)
    path = sweep_dir / "seed=0" / CHECKPOINT_PT
    torch.save(_lie(torch.load(path, weights_only=True), "a step past train.steps"), path)
    before = run_files(sweep_dir)
    result = cli("sweep", "--quiet", "--resume", str(sweep_dir))
    assert result.exit_code == 2 and one_line(result.stderr), (result.stderr, result.exception)
    assert "seed=0: " in result.stderr and "does not fit this run" in result.stderr
    assert run_files(sweep_dir) == before


# ----------------------------------------------------------------------------- 8. resume dead ends
def test_a_run_killed_before_its_first_summary_is_resumed_from_step_0(train_cli, cli) -> None:
    """Killed while setting up (Hydra's record, config.yaml, the CSV headers, no summary.json yet):
    `train --resume` starts it over and completes it, as `sweep --resume` does."""
    run = train_cli()
    for name in ("summary.json", "metrics.csv", "layers.csv", "grad_norms.csv"):
        (run.dir / name).unlink()
    resumed = cli("train", "--quiet", "--resume", str(run.dir))
    assert resumed.exit_code == 0, (resumed.stderr, resumed.exception)
    assert summary(run.dir)["status"] == "completed" and summary(run.dir)["steps_done"] == 3


def test_an_old_layout_run_is_resumed_with_its_own_overrides(train_cli, cli) -> None:
    """overrides.yaml of older resbench says `model.depth=2`; resume reads it as `depth=2`, and a key
    given again (either spelling) replaces it."""
    run = train_cli("model.depth=2", "train.steps=6", "train.checkpoint_every=null")
    overrides = run.dir / ".hydra" / "overrides.yaml"
    overrides.write_text(overrides.read_text(encoding="utf-8").replace("- depth=2", "- model.depth=2"),
                         encoding="utf-8")
    done = json.loads((run.dir / "summary.json").read_text(encoding="utf-8"))
    (run.dir / "summary.json").write_text(json.dumps({**done, "status": "interrupted"}), encoding="utf-8")
    assert "model.depth=2" in overrides.read_text(encoding="utf-8")
    resumed = cli("train", "--quiet", "--resume", str(run.dir))
    assert resumed.exit_code == 0, (resumed.stderr, resumed.exception)
    assert summary(run.dir)["status"] == "completed"


@pytest.mark.parametrize(("overrides_yaml", "message"), [
    ("- depth=2\n- [unclosed\n", "is not a list of overrides"),
    ("!!python/object/apply:os.system ['echo pwned > pwned']\n", "is not a list of overrides"),
    ("{depth: 2}\n", "is not a list of overrides"),
], ids=["invalid YAML", "a python tag", "not a list"])
def test_a_damaged_overrides_yaml_is_one_line_on_resume(train_cli, cli, tmp_path, overrides_yaml, message) -> None:
    run = train_cli()
    (run.dir / ".hydra" / "overrides.yaml").write_text(overrides_yaml, encoding="utf-8")
    before = run_files(run.dir)
    result = cli("train", "--quiet", "--resume", str(run.dir))
    assert result.exit_code == 2 and one_line(result.stderr), (result.stderr, result.exception)
    assert message in result.stderr
    assert run_files(run.dir) == before and not (tmp_path / "pwned").exists()


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """`directory` can be read but not written, as another user's results are. Root, whom permissions do
    not stop, gets a read-only bind mount of it instead (the test is skipped where none can be made)."""
    if os.geteuid() != 0:
        mode = directory.stat().st_mode
        directory.chmod(mode & ~0o222)
        try:
            yield
        finally:
            directory.chmod(mode)
        return
    mount = subprocess.run(["mount", "--bind", str(directory), str(directory)], capture_output=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"no read-only bind mount here: {mount.stderr.decode().strip()}")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], capture_output=True, check=False).returncode:
            pytest.skip("no read-only remount here")
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_resuming_a_dir_that_cannot_be_written_is_one_line_exit_2(cli, tiny, tmp_path, monkeypatch, command) -> None:
    """`train --resume` and `sweep --resume` write into the dir they continue: one they may read but not
    write is refused up front, in one line naming it, never with a traceback."""
    target = tmp_path / command
    if command == "train":
        signal_at(monkeypatch, 1)
        first = cli("train", "--quiet", *tiny, "train.steps=4", f"hydra.run.dir={target}")
        monkeypatch.undo()
        assert first.exit_code == 130, first.stderr
    else:
        interrupted_sweep(cli, tiny, monkeypatch, target, steps=4, at_step=1)
    before = run_files(target)
    with read_only(target):
        result = cli(command, "--quiet", "--resume", str(target))
    assert result.exit_code == 2 and one_line(result.stderr), (result.stderr, result.exception)
    assert str(target) in result.stderr and "not writable" in result.stderr
    assert run_files(target) == before


def test_a_run_without_hydras_record_is_refused_before_it_starts(cli, tiny, tmp_path) -> None:
    """hydra.output_subdir=null would make the run unresumable: one line, nothing written."""
    result = cli("train", "--quiet", *tiny, "hydra.output_subdir=null", f"hydra.run.dir={tmp_path}/run")
    assert result.exit_code == 2 and one_line(result.stderr), (result.stderr, result.exception)
    assert "hydra.output_subdir=None" in result.stderr and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- 10. other tracebacks
def test_an_idx_header_whose_size_overflows_64_bits_is_one_line(cli, tiny, tmp_path) -> None:
    """2³¹ × 2³¹ × 4 images is 2⁶⁴ bytes, which numpy's product wraps to 0: the empty file "matched"."""
    from test_mnist import write_idx_dir

    write_idx_dir(tmp_path / "mnist", compress=False)
    header = (0x00000803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (2**31, 2**31, 4))
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(header)
    tiny = [override for override in tiny if not override.startswith("task.")]
    result = cli("train", "--quiet", *tiny, "model=mlp", "task=mnist", f"task.path={tmp_path / 'mnist'}",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2 and one_line(result.stderr), (result.stderr, result.exception)
    assert "says 18446744073709551616" in result.stderr and not (tmp_path / "run").exists()


DEEP_JSON = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("content", ['["completed", 1.5]', DEEP_JSON, '{"status": "interrupted", "resumes": "many"'],
                         ids=["a list", "nested 100,000 deep", "cut short"])
def test_a_summary_that_is_no_json_object_is_named_never_a_traceback(train_cli, cli, tmp_path, content) -> None:
    """The report names the run under Warnings; a resume is one line (what the run was cannot be told)."""
    run = train_cli()
    (run.dir / "summary.json").write_text(content, encoding="utf-8")
    report = cli("report", str(run.dir))
    assert report.exit_code == 0, (report.stderr, report.exception)
    assert "summary.json unparsable" in (run.dir / "report" / "report.md").read_text(encoding="utf-8")
    resumed = cli("train", "--quiet", "--resume", str(run.dir))
    assert resumed.exit_code == 2 and one_line(resumed.stderr), (resumed.stderr, resumed.exception)
    assert "unreadable summary.json" in resumed.stderr


# ----------------------------------------------------------------------------- 3 and 5. paths the OS refuses
def hostile_paths(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "a_file").write_text("text\n", encoding="utf-8")
    return {
        "empty": "",
        "a name over 255 bytes": str(tmp_path / ("n" * 300)),
        "a path over 4096 bytes": str(tmp_path.joinpath(*["p" * 200] * 25)),
        "a symlink loop": str(tmp_path / "loop_a" / "x"),
        "a dangling link": str(tmp_path / "dangling"),
        "under a file": str(tmp_path / "a_file" / "x"),
    }


PATH_SETTINGS = {  # where a path goes → the command line that gives it
    "hydra.run.dir": lambda path, tiny, runs: ["train", "--quiet", *tiny, f"hydra.run.dir='{path}'"],
    "hydra.sweep.dir": lambda path, tiny, runs: ["sweep", "--quiet", *tiny, "seed=0,1", f"hydra.sweep.dir='{path}'"],
    "train --resume": lambda path, tiny, runs: ["train", "--quiet", "--resume", path],
    "report DIR": lambda path, tiny, runs: ["report", path],
    "report --out": lambda path, tiny, runs: ["report", runs, "--out", path],
    "task.path": lambda path, tiny, runs: ["train", "--quiet", *tiny, f"task.path='{path}'", f"hydra.run.dir={runs}/x"],
}


@pytest.mark.parametrize("setting", PATH_SETTINGS)
def test_every_path_the_os_refuses_is_one_line_exit_2_and_nothing_written(cli, tiny, tmp_path, setting) -> None:
    from report_fixtures import write_run

    runs = tmp_path / "runs"
    write_run(runs / "depth=2", {"depth": 2})
    (tmp_path / "hostile").mkdir()
    for problem, path in hostile_paths(tmp_path / "hostile").items():
        if setting == "task.path" and problem == "empty":
            continue  # task.path='' is the built-in corpus's null spelled otherwise: refused by the config check
        before = sorted(tmp_path.rglob("*"))
        result = cli(*PATH_SETTINGS[setting](path, tiny, str(runs)))
        assert result.exit_code == 2 and one_line(result.stderr), (problem, result.stderr, result.exception)
        assert sorted(tmp_path.rglob("*")) == before, problem


# ----------------------------------------------------------------------------- 6. resource limits
@pytest.mark.parametrize("kind", ["a device", "a FIFO", "a directory", "a file over the cap"])
def test_task_path_reads_only_regular_files_of_a_sane_size(cli, tiny, tmp_path, kind) -> None:
    """/dev/zero or a FIFO would be read for ever (growing a GB every few seconds); a multi-GB file would
    not fit: each is one line before anything is read."""
    from resbench.tasks.chars import MAX_TEXT_BYTES

    path = {"a device": Path("/dev/zero"), "a FIFO": tmp_path / "fifo", "a directory": tmp_path,
            "a file over the cap": tmp_path / "big.txt"}[kind]
    if kind == "a FIFO":
        os.mkfifo(path)
    if kind == "a file over the cap":
        with open(path, "wb") as handle:
            handle.truncate(MAX_TEXT_BYTES + 1)  # sparse: no disk used
    result = cli("train", "--quiet", *tiny, f"task.path={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2 and one_line(result.stderr), (result.stderr, result.exception)
    assert "task.path" in result.stderr and not (tmp_path / "run").exists()



@pytest.mark.parametrize("override", ["train.batch_size=1000000000", "task.val_batches=1000000000000",
                                      "depth=10000000"])
def test_a_run_too_large_for_this_machine_is_one_line_naming_the_estimate_and_the_limit(cli, tmp_path, override):
    """Weights, optimizer state, activations and batches are all counted, before anything is built
    (the batches of batch_size=1e9 took 264 GB, then a traceback; depth=1e5 passed a weights-only check)."""
    result = cli("sweep", "--quiet", "threads=1", override, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.exit_code == 2 and one_line(result.stderr), (result.stderr, result.exception)
    assert re.search(r"the run needs about [\d,.]+ [GT]iB \(weights, gradients and optimizer state .*activations .*"
                     r"batches .*\), more than the [\d,.]+ GiB of ", result.stderr), result.stderr
    assert not (tmp_path / "sweep").exists()


GIB = 2**30
BIG_RUN = ["depth=24", "width=512", "train.batch_size=64"]  # about 3.1 GiB: 1.1 of weights, 2.0 of activations


def small_host(monkeypatch, gpu: tuple[int, str] | None = None) -> None:
    """This process may use 1 GiB; `gpu`: the GPU a run with device=auto or cuda would use here."""
    monkeypatch.setattr(runtime, "memory_limit", lambda: (GIB, "the address space limit (ulimit -v)"))
    monkeypatch.setattr(runtime, "gpu_memory", lambda device: None if device == "cpu" else gpu)


def test_a_run_on_a_gpu_is_measured_against_the_gpu_and_its_batches_against_the_host(monkeypatch) -> None:
    """The weights and activations of a GPU run live on the GPU: the host's memory refused a run that
    fitted a large GPU, and let through one too large for a small GPU."""
    small_host(monkeypatch, gpu=(140 * GIB, "the GPU's memory (a large one)"))
    assert api.compose([*BIG_RUN, "device=auto"])["depth"] == 24  # fits the GPU; its batches fit the host
    with pytest.raises(ValueError, match=r"^depth=24 .*more than the 1.0 GiB of the address space limit"):
        api.compose([*BIG_RUN, "device=cpu"])  # the same run on the CPU: all of it in the host's memory
    small_host(monkeypatch, gpu=(2 * GIB, "the GPU's memory (a small one)"))
    with pytest.raises(ValueError, match=r"needs about 3.1 GiB \(weights, gradients and optimizer state 1.1 GiB, "
                                         r"activations 2.0 GiB\), more than the 2.0 GiB of the GPU's memory"):
        api.compose([*BIG_RUN, "device=cuda"])


@pytest.mark.parametrize("mem_gb, refused", [(None, False), (8, False), (2, True)])
def test_a_sweep_for_a_cluster_is_measured_against_what_its_runs_ask_for_not_this_machine(
        cli, tmp_path, monkeypatch, mem_gb, refused) -> None:
    """submitit_slurm runs on the cluster's nodes: the submitting machine's memory refused runs it could not
    hold itself; the memory each run asks for (hydra.launcher.mem_gb) is what counts there."""
    small_host(monkeypatch)
    asked = [] if mem_gb is None else [f"hydra.launcher.mem_gb={mem_gb}"]
    result = cli("sweep", "--dry-run", *BIG_RUN, "seed=0,1", "hydra/launcher=submitit_slurm", *asked,
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")
    if refused:
        assert result.exit_code == 2 and one_line(result.stderr), (result.stderr, result.exception)
        assert "more than the 2.0 GiB of hydra.launcher.mem_gb=2" in result.stderr
    else:
        assert result.exit_code == 0, (result.output, result.exception)
    assert cli("sweep", "--dry-run", *BIG_RUN, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'here'}").exit_code == 2


# A TensorBoard that is installed but cannot run (no protobuf): found by a search for its package, it
# failed every run as it started, and `report --tensorboard` with a traceback.
BROKEN_TENSORBOARD = """
import sys
sys.modules["google.protobuf"] = None  # import google.protobuf raises ImportError
from resbench import cli
sys.argv = ["resbench", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize("command", ["train", "sweep", "report"])
def test_tensorboard_that_cannot_run_is_refused_up_front(tmp_path, tiny, command) -> None:
    from report_fixtures import write_run

    write_run(tmp_path / "runs" / "depth=2", {"depth": 2})
    args = {"train": ["train", "--quiet", *tiny, "logger=tensorboard", f"hydra.run.dir={tmp_path / 'out'}"],
            "sweep": ["sweep", "--quiet", *tiny, "seed=0,1", "logger=tensorboard", f"hydra.sweep.dir={tmp_path / 'out'}"],
            "report": ["report", str(tmp_path / "runs"), "--tensorboard", "--out", str(tmp_path / "out")]}[command]
    done = subprocess.run([sys.executable, "-c", BROKEN_TENSORBOARD, *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2 and one_line(done.stderr), done.stderr
    assert "needs TensorBoard: pip install 'resbench[tensorboard]'" in done.stderr
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- 9. silent drops in the report
DROPS = {
    "final_loss NaN": lambda run: _summary_field(run, "final_loss", float("nan")),
    "final_loss Infinity": lambda run: _summary_field(run, "final_loss", float("inf")),
    "final_loss text": lambda run: _summary_field(run, "final_loss", "low"),
    "final_loss missing": lambda run: _summary_field(run, "final_loss", None),
    "grad_norms.csv empty": lambda run: (run / "grad_norms.csv").write_text("", encoding="utf-8"),
    "grad_norms.csv junk": lambda run: (run / "grad_norms.csv").write_text("a,b\nc,d\n", encoding="utf-8"),
    "grad_norms.csv rows of text": lambda run: (run / "grad_norms.csv").write_text(
        "step,layer,stack,param,grad_norm\nx,y,,ffn.fc2.weight,big\n", encoding="utf-8"),
}


def _summary_field(run: Path, key: str, value: object) -> None:
    data = summary(run)
    data[key] = value
    (run / "summary.json").write_text(json.dumps(data), encoding="utf-8")  # NaN, Infinity as Python writes them


@pytest.mark.parametrize("damage", DROPS)
def test_every_run_left_out_of_a_number_is_named_under_warnings(cli, tmp_path, damage) -> None:
    """The mean used one run of two and the table still said "2 completed": the run left out is named."""
    from report_fixtures import grid, write_sweep

    sweep = write_sweep(tmp_path / "sweep", grid(norm=["post", "pre"], seed=[0, 1]), swept_keys=["norm", "seed"])
    DROPS[damage](sweep / "norm=post,seed=1")
    result = cli("report", str(sweep))
    assert result.exit_code == 0, (result.stderr, result.exception)
    report = (sweep / "report" / "report.md").read_text(encoding="utf-8")
    warnings = report.split("## Warnings", 1)[1].split("\n## ", 1)[0] if "## Warnings" in report else ""
    assert "1 run(s) partly unreadable" in warnings and "norm=post,seed=1 (" in warnings, report[:2000]

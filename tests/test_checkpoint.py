"""Checkpoints and exact continuation: a run killed (kill -9) or interrupted (SIGINT) and resumed writes
the same rows as one that ran straight through; bad checkpoints are refused with one line; sweeps continue
their interrupted runs from checkpoints."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from resbench import checkpoint, trainer
from resbench.checkpoint import CHECKPOINT_PT, CheckpointError, DeferredSignals

STEPS = ["train.steps=40", "log_every=3", "train.eval_every=7"]  # logged and evaluated steps off the grid of 20
LOSS_COLUMNS = ["step", "loss", "val_loss", "lr", "grad_norm"]  # elapsed_s is wall time, never repeatable

# `python -c` body: `resbench ARGS…` that sends itself signal SIG right after the trainer records step AT.
SELF_SIGNAL = """
import os, signal, sys
from resbench import cli, trainer
sig, at = getattr(signal, sys.argv[1]), int(sys.argv[2])
record = trainer.Trainer.record
def record_then_signal(self, step, *args):
    record(self, step, *args)
    if step == at:
        os.kill(os.getpid(), sig)
trainer.Trainer.record = record_then_signal
sys.argv = ["resbench", *sys.argv[3:]]
cli.main()
"""


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def signal_at(monkeypatch: pytest.MonkeyPatch, step: int, sig: int = signal.SIGINT) -> None:
    """In this process: send `sig` to itself right after the trainer records `step` (mid-run, for real)."""
    record = trainer.Trainer.record

    def record_then_signal(self, at, *args):
        record(self, at, *args)
        if at == step:
            signal.raise_signal(sig)

    monkeypatch.setattr(trainer.Trainer, "record", record_then_signal)


def assert_same_rows(straight: Path, resumed: Path) -> None:
    for name in ("grad_norms.csv", "layers.csv"):
        assert (straight / name).read_bytes() == (resumed / name).read_bytes(), name
    metrics = [pd.read_csv(run / "metrics.csv")[LOSS_COLUMNS] for run in (straight, resumed)]
    pd.testing.assert_frame_equal(*metrics)


@pytest.mark.slow
def test_killed_at_step_27_and_resumed_from_step_20_equals_a_straight_run(train_cli, cli, tiny, tmp_path) -> None:
    straight = train_cli(*STEPS, name="straight")
    assert straight.exit_code == 0, straight.stderr
    killed = tmp_path / "killed"
    done = subprocess.run([sys.executable, "-c", SELF_SIGNAL, "SIGKILL", "27", "train", "--quiet", *tiny, *STEPS,
                           "train.checkpoint_every=20", f"hydra.run.dir={killed}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert summary(killed)["status"] == "running" and summary(killed)["checkpoint_step"] == 20
    assert pd.read_csv(killed / "metrics.csv").step.max() == 27  # rows past the checkpoint, to be dropped

    resumed = cli("train", "--quiet", "--resume", str(killed))
    assert resumed.exit_code == 0, resumed.stderr
    assert_same_rows(straight.dir, killed)
    done = summary(killed)
    assert done["status"] == "completed" and done["steps_done"] == 40 and done["resumes"] == 1
    assert done["final_loss"] == summary(straight.dir)["final_loss"]


def test_sigint_checkpoints_at_the_step_boundary_and_resume_equals_a_straight_run(
        train_cli, cli, monkeypatch) -> None:
    """No periodic checkpoint (checkpoint_every=null): Ctrl-C alone writes the one the run goes on from."""
    straight = train_cli(*STEPS, name="straight")
    signal_at(monkeypatch, 27)
    stopped = train_cli(*STEPS, "train.checkpoint_every=null", name="stopped")
    assert stopped.exit_code == 130, stopped.stderr
    done = summary(stopped.dir)
    assert done["status"] == "interrupted" and done["steps_done"] == 28 and done["checkpoint_step"] == 28
    monkeypatch.undo()

    resumed = cli("train", "--quiet", "--resume", str(stopped.dir))
    assert resumed.exit_code == 0, resumed.stderr
    assert_same_rows(straight.dir, stopped.dir)
    assert summary(stopped.dir)["resumes"] == 1


def test_sweep_resume_continues_an_interrupted_run_from_its_checkpoint(cli, train_cli, tiny, tmp_path,
                                                                        monkeypatch) -> None:
    straight = train_cli(*STEPS, "seed=0", name="straight")
    sweep_dir = tmp_path / "sweep"
    signal_at(monkeypatch, 27)
    # the signal is patched into this process, so the in-process launcher
    first = cli("sweep", "--quiet", *tiny, *STEPS, "seed=0,1", "hydra/launcher=basic", f"hydra.sweep.dir={sweep_dir}")
    assert first.exit_code == 130, first.stderr  # the first run (seed=0) is interrupted at step 27
    monkeypatch.undo()
    assert summary(sweep_dir / "seed=0")["checkpoint_step"] == 28

    resumed = cli("sweep", "--quiet", "--resume", str(sweep_dir))
    assert resumed.exit_code == 0, resumed.stderr
    runs = {name: summary(sweep_dir / name) for name in ("seed=0", "seed=1")}
    assert runs["seed=0"]["status"] == runs["seed=1"]["status"] == "completed"
    assert runs["seed=0"]["resumes"] == 1 and runs["seed=1"]["resumes"] == 0
    assert pd.read_csv(sweep_dir / "seed=0" / "metrics.csv").step.is_unique
    assert_same_rows(straight.dir, sweep_dir / "seed=0")


# ----------------------------------------------------------------------------- refused
@pytest.fixture
def interrupted_run(train_cli, monkeypatch):
    signal_at(monkeypatch, 5)
    run = train_cli("train.steps=10", name="interrupted")
    monkeypatch.undo()
    assert run.exit_code == 130 and (run.dir / CHECKPOINT_PT).is_file(), run.stderr
    return run.dir


def run_files(run_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(run_dir.rglob("*")) if path.is_file()}


@pytest.mark.parametrize(("damage", "message"), [
    ("other_config", "belongs to another config"),
    ("corrupt", "is not a readable checkpoint"),
    ("code_inside", "is not a readable checkpoint"),
])
def test_a_bad_checkpoint_is_one_line_exit_2_and_nothing_written(cli, interrupted_run: Path, damage, message):
    path = interrupted_run / CHECKPOINT_PT
    if damage == "other_config":  # the summary still says this config: only the checkpoint disagrees
        state = torch.load(path, weights_only=True)
        torch.save({**state, "config_hash": "0" * 16}, path)
    elif damage == "corrupt":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # a pickle that would run code on load: weights_only refuses it
        torch.save({"format": checkpoint.FORMAT, "payload": Path("x")}, path)
    before = run_files(interrupted_run)
    result = cli("train", "--quiet", "--resume", str(interrupted_run))
    assert result.exit_code == 2, result.stdout + result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert run_files(interrupted_run) == before


def test_resume_with_an_override_of_another_config_is_refused(cli, interrupted_run: Path) -> None:
    before = run_files(interrupted_run)
    result = cli("train", "--quiet", "--resume", str(interrupted_run), "train.lr=0.5")
    assert result.exit_code == 2 and "is of another config" in result.stderr, result.stderr
    assert run_files(interrupted_run) == before


def test_resume_of_a_missing_dir_is_refused(cli, tmp_path: Path) -> None:
    result = cli("train", "--quiet", "--resume", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "--resume: no such directory" in result.stderr, result.stderr
    assert not (tmp_path / "missing").exists()


def test_resume_of_a_completed_run_is_refused(train_cli, cli) -> None:
    run = train_cli(name="done")
    result = cli("train", "--quiet", "--resume", str(run.dir))
    assert result.exit_code == 2 and "nothing to resume: the run at" in result.stderr, result.stderr


def test_a_resume_override_outside_the_hash_is_taken(cli, interrupted_run: Path) -> None:
    """threads and checkpoint_every change how a run executes, not what it computes."""
    result = cli("train", "--quiet", "--resume", str(interrupted_run), "train.checkpoint_every=3", "threads=1")
    assert result.exit_code == 0, result.stderr
    assert summary(interrupted_run)["status"] == "completed"


def test_a_resume_reads_its_checkpoint_once(cli, interrupted_run: Path, monkeypatch) -> None:
    """Read and checked once, under the run dir's lock, then handed to the trainer: a checkpoint is as large
    as the model and its optimizer, and each check passes over every weight."""
    loads = []
    load = torch.load

    def counted_load(*args, **kwargs):
        loads.append(args[0] if args else kwargs.get("f"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counted_load)
    result = cli("train", "--quiet", "--resume", str(interrupted_run))
    assert result.exit_code == 0, result.stderr
    assert summary(interrupted_run)["status"] == "completed" and summary(interrupted_run)["resumes"] == 1
    assert loads == [interrupted_run / CHECKPOINT_PT]


def test_a_resume_that_fails_while_setting_up_is_failed_in_the_process_that_interrupted_it(
        cli, interrupted_run: Path, monkeypatch) -> None:
    """The process that interrupted the run (a notebook, this one) resumes it, and the resume breaks before
    the trainer writes its summary: the run is failed with that error, exit 1, not the earlier interrupt
    that the same process recorded."""
    def cannot_start(*args, **kwargs):
        raise RuntimeError("the logger cannot start")

    monkeypatch.setattr(trainer.loggers, "build", cannot_start)
    result = cli("train", "--quiet", "--resume", str(interrupted_run))
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    done = summary(interrupted_run)
    assert done["status"] == "failed" and done["error"] == "RuntimeError: the logger cannot start"


def test_load_reads_tensors_only_and_checks_the_config(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_PT
    checkpoint.save(path, {"config_hash": "abc", "weights": torch.arange(3)})
    assert torch.equal(checkpoint.load(path, "abc")["weights"], torch.arange(3))
    with pytest.raises(CheckpointError, match="another config"):
        checkpoint.load(path, "def")
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file was renamed into place"


# ----------------------------------------------------------------------------- signals
def test_a_signal_waits_for_dispatch_and_a_second_one_acts_at_once() -> None:
    # Python's own SIGINT handler, whatever this process inherited: a shell starts background jobs with
    # SIGINT ignored, and DeferredSignals rightly leaves an ignored signal ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _defer_then_act()
    finally:
        signal.signal(signal.SIGINT, previous)


def _defer_then_act() -> None:
    with DeferredSignals() as signals:
        signal.raise_signal(signal.SIGINT)
        assert signals.pending == [signal.SIGINT]
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with DeferredSignals() as signals:
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            signals.dispatch()


# ----------------------------------------------------------------------------- requeued SLURM jobs
def test_on_slurm_an_interrupted_run_is_reported_only_when_the_sweep_ends(tmp_path: Path) -> None:
    """A requeued job's run says `interrupted` until its rerun continues it: not an end yet."""
    from resbench import records
    from resbench.sweep_watch import Watcher
    from resbench.sweeps import PlannedRun

    run = PlannedRun(0, "run", tmp_path / "run", [], {}, "hash")
    run.dir.mkdir()
    ended: list[str] = []
    watcher = Watcher([run], lambda planned, summary: ended.append(summary["status"]), provisional=("interrupted",))
    records.write_json(run.dir / "summary.json", {"status": "interrupted"})
    watcher.poll()
    assert ended == []
    watcher.poll(last=True)
    assert ended == ["interrupted"]


def test_requeues_are_slurms_restart_count(monkeypatch) -> None:
    from resbench.jobs import job_facts

    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert job_facts()["requeues"] == 0
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert job_facts()["requeues"] == 2

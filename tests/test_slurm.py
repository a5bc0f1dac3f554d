"""`resbench sweep hydra/launcher=submitit_slurm` against a real SLURM cluster (CI starts a one-node
cluster on loopback: ../shared/slurm/start-local-slurm.sh). Skipped, with the reason, where `sinfo`
does not answer."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slurm

TINY = ["depth=2", "width=16", "heads=2", "train.steps=3", "task.seq_len=8", "train.batch_size=4",
        "train.eval_every=2"]
SWEEP_TIMEOUT_S = 150


def default_partition() -> str | None:
    """The cluster's default partition when `sinfo` answers with a node that can take jobs, else None."""
    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    usable = [line.split() for line in out.stdout.splitlines()
              if out.returncode == 0 and re.search(r"\b(idle|mixed|allocated|completing)", line)]
    if not usable:
        return None
    default = [p for p, _ in usable if p.endswith("*")]
    return (default or [usable[0][0]])[0].rstrip("*")


def sacct_states(job_ids: list[str], deadline: float) -> dict[str, str]:
    """Final SLURM states of `job_ids` (sacct lags a finished job by a second or two)."""
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=10, check=False)
        states = dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)
        if all(states.get(j) == "COMPLETED" for j in job_ids):
            break
        time.sleep(0.5)
    return states


def test_submitit_slurm_runs_each_run_as_a_slurm_job(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs resbench[slurm]")
    partition = default_partition()
    if partition is None:
        pytest.skip("no SLURM cluster answers `sinfo` (CI starts one: ../shared/slurm/start-local-slurm.sh)")
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, "-m", "resbench.cli", "sweep", "--quiet", *TINY, "seed=0,1",
               "hydra/launcher=submitit_slurm", f"hydra.launcher.partition={partition}",
               "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=5",
               f"hydra.sweep.dir={sweep_dir}"]
    try:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                              timeout=SWEEP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the SLURM sweep did not end within {SWEEP_TIMEOUT_S} s (squeue: "
                    f"{subprocess.run(['squeue'], capture_output=True, text=True, check=False).stdout.strip()})")
    assert done.returncode == 0, done.stderr

    summaries = {run: json.loads((sweep_dir / run / "summary.json").read_text()) for run in ("seed=0", "seed=1")}
    assert all(s["status"] == "completed" for s in summaries.values())
    job_ids = [s["slurm_job_id"] for s in summaries.values()]
    assert all(re.fullmatch(r"\d+_[01]", str(j)) for j in job_ids), job_ids  # one array job, two tasks
    assert all(s["threads"] == 1 for s in summaries.values()), "threads follow SLURM's cpus_per_task"
    states = sacct_states(job_ids, time.monotonic() + 30)
    assert all(states.get(j) == "COMPLETED" for j in job_ids), states
    assert (sweep_dir / "runs.csv").read_text().count("completed") == 2


# ----------------------------------------------------------------------------- preemption and requeue
REQUEUE_RUN = ["depth=2", "width=16", "heads=2", "task.seq_len=8", "train.batch_size=4", "train.eval_every=50",
               "train.steps=300", "log_every=1", "train.checkpoint_every=null", "threads=1"]


def wait_until(condition, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the sweep ended before {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.2)


def job_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=10,
                         check=False)
    return out.stdout.strip()


@pytest.mark.parametrize("preempt", [["scontrol", "requeue"], ["scancel", "--signal=USR2"]],
                         ids=["scontrol-requeue", "submitit-preemption-signal"])
def test_a_requeued_run_continues_from_its_checkpoint_and_equals_a_straight_run(tmp_path: Path, cli,
                                                                                preempt: list[str]) -> None:
    """`scontrol requeue` (SIGTERM, then SLURM requeues the job) and SIGUSR2, the signal submitit asks SLURM
    to send before a time limit (its handler requeues the job): either way the run checkpoints at the step
    boundary, ends `interrupted`, and the rerun continues it; the sweep waits for it and reports it once."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs resbench[slurm]")
    partition = default_partition()
    if partition is None:
        pytest.skip("no SLURM cluster answers `sinfo` (CI starts one: ../shared/slurm/start-local-slurm.sh)")
    sweep_dir = tmp_path / "sweep"
    run_dir = sweep_dir / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "resbench.cli", "sweep", *REQUEUE_RUN, "hydra/launcher=submitit_slurm",
         f"hydra.launcher.partition={partition}", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
         "hydra.launcher.timeout_min=60", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_id = None
    try:
        metrics = run_dir / "metrics.csv"
        wait_until(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) > 50, 90,
                   "50 steps of the run", process)
        job_id = json.loads((run_dir / "summary.json").read_text())["slurm_job_id"]
        subprocess.run([*preempt, str(job_id)], check=True, capture_output=True, timeout=30)
        wait_until(lambda: job_state(job_id) == "PENDING", 60, "requeued job")
        interrupted = json.loads((run_dir / "summary.json").read_text())
        assert interrupted["status"] == "interrupted" and 0 < interrupted["checkpoint_step"] < 300, interrupted
        # SLURM holds a requeued job back about two minutes (BeginTime); start it now instead.
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=30)
        stdout, stderr = process.communicate(timeout=SWEEP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            if job_id is not None:
                subprocess.run(["scancel", str(job_id)], check=False, timeout=30)
    assert process.returncode == 0, stderr
    assert "interrupted" not in stdout and stdout.count("completed") >= 1, stdout
    done = json.loads((run_dir / "summary.json").read_text())
    assert done["status"] == "completed" and done["steps_done"] == 300
    assert done["slurm_job_id"] == job_id and done["requeues"] == 1 and done["resumes"] == 1

    straight = cli("train", "--quiet", *REQUEUE_RUN, f"hydra.run.dir={tmp_path / 'straight'}")
    assert straight.exit_code == 0, straight.stderr
    for name in ("grad_norms.csv", "layers.csv"):
        assert (run_dir / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name
    columns = ["step", "loss", "val_loss", "lr", "grad_norm"]
    frames = [pd.read_csv(d / "metrics.csv")[columns] for d in (run_dir, tmp_path / "straight")]
    pd.testing.assert_frame_equal(*frames)

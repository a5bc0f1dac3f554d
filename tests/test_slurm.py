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

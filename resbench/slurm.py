"""What the SLURM environment says about the job this process runs in: read in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping


def job_id(environ: Mapping[str, str] = os.environ) -> str | None:
    """The SLURM job id as submitit names it (`<array job>_<task>` for an array job); None outside SLURM."""
    if "SLURM_ARRAY_JOB_ID" in environ:
        return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    return environ.get("SLURM_JOB_ID") or None


def cpus(environ: Mapping[str, str] = os.environ) -> int | None:
    """The CPUs the SLURM job was given (SLURM_CPUS_PER_TASK); None outside a job or where it is not said."""
    given = environ.get("SLURM_CPUS_PER_TASK", "")
    return max(1, int(given)) if environ.get("SLURM_JOB_ID") and given.isdigit() else None


def requeues(environ: Mapping[str, str] = os.environ) -> int:
    """The times SLURM requeued this job (preemption, time limit, `scontrol requeue`)."""
    count = environ.get("SLURM_RESTART_COUNT", "")
    return int(count) if count.isdigit() else 0

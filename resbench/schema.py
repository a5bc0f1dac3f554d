"""The contract between trainer, sweep and report, spelled once: file names, CSV columns, run statuses,
the summary record and the swept-key names. Torch-free and Hydra-free, so the report and any notebook
can import it cheaply; docs/run-dir.md documents every name here.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any

# ----------------------------------------------------------------------------- file names
CONFIG_YAML = "config.yaml"  # a run's fully resolved config
HYDRA_DIR = ".hydra"  # Hydra's own record of a run (config.yaml unresolved, overrides.yaml)
HYDRA_CONFIG_YAML = f"{HYDRA_DIR}/config.yaml"
HYDRA_OVERRIDES_YAML = f"{HYDRA_DIR}/overrides.yaml"
METRICS_CSV = "metrics.csv"
LAYERS_CSV = "layers.csv"
GRAD_NORMS_CSV = "grad_norms.csv"
INIT_LAYERS_CSV = "init_layers.csv"  # layers.csv's step-0 rows of every init draw
INIT_GRAD_NORMS_CSV = "init_grad_norms.csv"  # grad_norms.csv's step-0 rows of every init draw
PARAM_GROUPS_CSV = "param_groups.csv"  # the optimizer's settings of every parameter (depth parametrizations)
SUMMARY_JSON = "summary.json"
PROVENANCE_JSON = "provenance.json"  # what code, on what, from which command line: written once as a run starts
CHECKPOINT_PT = "checkpoint.pt"
RUNS_CSV = "runs.csv"  # at a sweep's root: one row per run
SWEEP_JSON = "sweep.json"  # at a sweep's root: what was swept (written before any run starts)
DIR_LOCK = ".resbench.lock"  # in a sweep or run dir: who holds it for writing (pid, host)
RUNS_CSV_LOCK = f".{RUNS_CSV}.lock"  # at a sweep's root: serialises runs.csv rebuilds across processes
TB_DIR = "tb"  # in a run dir: TensorBoard event files (logger=tensorboard, `report --tensorboard`)
REPORT_DIR = "report"  # what `resbench report` writes, inside the dir it reports on
REPORT_MD = "report.md"
REPORT_HTML = "report.html"  # beside report.md: the same findings, interactive figures

RESULTS_ROOT = "results"
TRAIN_DIR = "train"  # results/train/<timestamp>/: one `resbench train`
SWEEPS_DIR = "sweeps"  # results/sweeps/<timestamp>/: one `resbench sweep`

# Run and sweep dirs are named by this timestamp (microseconds: two in one second still differ), so the
# latest sorts last by name.
TIMESTAMP_FORMAT = "%Y-%m-%d_%H-%M-%S_%f"
SWEEP_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(_\d{1,6})?$")  # older names lack the _%f

# ----------------------------------------------------------------------------- CSV columns
METRIC_COLUMNS = ("step", "loss", "val_loss", "lr", "grad_norm", "elapsed_s")
ACCURACY_COLUMN = "val_acc"  # metrics.csv, classification tasks only
# `stack` names a block's stack (encoder / decoder) in a multi-stack model, empty otherwise; `layer` is
# the block's 0-based index inside its stack.
STACK = "stack"
GRAD_NORM_COLUMNS = ("step", "layer", STACK, "param", "grad_norm")
BLOCK_PROBES = ("grad_norm", "hidden_rms", "act_grad_norm", "update_ratio", "rank_residual")  # per block
LAYER_COLUMNS = ("step", "layer", STACK, *BLOCK_PROBES)
# The init draws: the step-0 rows of `init_draws` initialisations of one run, `draw` 0 being the run's own
# model (its step-0 rows of layers.csv and grad_norms.csv). No update is taken, so no update_ratio.
DRAW = "draw"
INIT_BLOCK_PROBES = tuple(probe for probe in BLOCK_PROBES if probe != "update_ratio")
INIT_LAYER_COLUMNS = (DRAW, "layer", STACK, *INIT_BLOCK_PROBES)
INIT_GRAD_NORM_COLUMNS = (DRAW, *GRAD_NORM_COLUMNS[1:])
# param_groups.csv: one row per parameter tensor (its full name), the optimizer group it is in and that
# group's peak learning rate (train.lr × lr_scale), Adam ε (empty under SGD) and weight decay.
PARAM_GROUP_COLUMNS = ("param", "group", "lr_scale", "lr", "eps", "weight_decay")
# runs.csv: these, one column per swept key between them.
RUN_KEY_COLUMNS = ("run", "status")
RUN_RESULT_COLUMNS = ("final_loss", "final_val_loss", "wall_s")


def runs_csv_columns(swept_keys: list[str] | tuple[str, ...]) -> list[str]:
    return [*RUN_KEY_COLUMNS, *swept_keys, *RUN_RESULT_COLUMNS]


# ----------------------------------------------------------------------------- statuses
class Status(str, Enum):
    """A run's `status` in summary.json and runs.csv. A str, so JSON, CSV and pandas see the plain word."""

    COMPLETED = "completed"
    DIVERGED = "diverged"  # non-finite loss or gradient: stopped, files kept (a result, not an error)
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM, preemption
    FAILED = "failed"  # an exception; the message is in `error`
    RUNNING = "running"  # still going, or killed before it could write its end
    NOT_RUN = "not run"  # a sweep's run that never started (the terminal's table only)
    UNKNOWN = "unknown"  # the report: summary.json unreadable

    def __str__(self) -> str:
        return self.value

    __hash__ = str.__hash__  # a dict or set of statuses finds the plain word too


DONE = (Status.COMPLETED, Status.DIVERGED)  # ended with a result: resume keeps it
FINAL = (*DONE, Status.FAILED, Status.INTERRUPTED)  # ended
NO_LOSS = (Status.DIVERGED, Status.FAILED)  # their final loss says nothing about the setting's quality
STATUS_ORDER = tuple(Status)  # how tables list them
STATUS_COLOURS = {Status.COMPLETED: "green", Status.DIVERGED: "yellow", Status.NOT_RUN: "dim"}  # else red


def status_colour(status: str) -> str:
    return STATUS_COLOURS.get(status, "red")


# ----------------------------------------------------------------------------- summary.json
@dataclass
class Summary:
    """summary.json: how a run ended and what it measured. `extra` keeps fields this version does not
    know (a newer resbench's), so reading and writing a summary back loses nothing."""

    status: str = Status.RUNNING
    steps_done: int = 0
    final_loss: float | None = None  # mean training loss of the last 10 steps
    final_val_loss: float | None = None
    final_val_acc: float | None = None  # classification tasks
    wall_s: float = 0.0
    n_params: int | None = None
    error: str | None = None
    config_hash: str | None = None
    init_grad_ratio: float | None = None  # grad norm of the first block / the last, at step 0
    device: str | None = None
    precision: str | None = None
    threads: int | None = None
    slurm_job_id: str | None = None
    requeues: int = 0  # times SLURM requeued the job
    resumes: int = 0  # times the run was continued from its checkpoint
    checkpoint_step: int | None = None
    pid: int | None = None  # the process writing it (who owns a `running` run)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(data["status"])
        return {**data.pop("extra"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        """Any summary.json, old ones too: a missing field takes its default."""
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{key: value for key, value in data.items() if key in known},
                   extra={key: value for key, value in data.items() if key not in known})

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            setattr(self, key, value)


SUMMARY_FIELDS = tuple(f.name for f in fields(Summary) if f.name != "extra")
# What the report reads of a summary (its other fields describe the execution, some are also config keys).
REPORTED_SUMMARY_FIELDS = ("status", "steps_done", "final_loss", "final_val_loss", "final_val_acc", "wall_s",
                           "n_params", "error", "config_hash")
REPORTED_NUMERIC = ("steps_done", "final_loss", "final_val_loss", "final_val_acc", "wall_s", "n_params")

# ----------------------------------------------------------------------------- provenance.json
# Its fields, in file order (also the columns `resbench.load` adds to `runs`). git_commit / git_dirty describe
# the git repository holding the working directory (null outside one); command is the process's argv (a
# sweep's run: the argv of the process that launched the sweep).
PROVENANCE_FIELDS = ("resbench_version", "git_commit", "git_dirty", "cwd", "python_version", "torch_version",
                     "cuda_version", "device_name", "host", "started_at", "command")

# ----------------------------------------------------------------------------- sweeps
# The model keys every model has, top-level in the config (`depth=12`, not `model.depth=12`), in table order.
SHARED_MODEL_KEYS = ("depth", "norm", "norm_type", "residual", "init", "width", "heads", "residual_scale",
                     "depth_param", "base_depth", "branch_multiplier")
# The short top-level keys a sweep varies (`resbench sweep depth=6,12 norm=post,pre`), in table order: the
# shared model keys but the knobs of a variant chosen (the skip's scale, a depth parametrization's base).
SWEPT_KEYS = tuple(key for key in SHARED_MODEL_KEYS if key not in ("residual_scale", "base_depth",
                                                                    "branch_multiplier"))


def override_key(override: str) -> str:
    """`+experiment=x` -> `experiment`: the key of a command-line override, without its +/++/~ prefix (as
    Hydra's .hydra/overrides.yaml and a sweep's stored overrides spell them)."""
    return override.split("=", 1)[0].lstrip("+~")

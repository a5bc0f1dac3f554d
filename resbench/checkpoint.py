"""Checkpoints: what a run needs to continue exactly where it stood, in one atomically replaced file,
and the signal handling that lets an interrupt wait for a step boundary to write one.

`checkpoint.pt` holds plain data only (tensors, numbers, strings, lists, dicts), so it is read with
`torch.load(..., weights_only=True)`: loading a checkpoint never runs code from it.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from . import models
from .records import config_hash, read_json, signals_deferred, temporary
from .schema import (
    ACCURACY_COLUMN,
    CHECKPOINT_PT,
    CONFIG_YAML,
    DONE,
    GRAD_NORM_COLUMNS,
    GRAD_NORMS_CSV,
    HYDRA_OVERRIDES_YAML,
    LAYER_COLUMNS,
    LAYERS_CSV,
    METRIC_COLUMNS,
    METRICS_CSV,
    SUMMARY_JSON,
)
from .tasks import Task

FORMAT = 1  # bumped when the layout of the state below changes
# Signals that end a run: Ctrl-C, SIGTERM (kill, scancel, SLURM's preemption) and the USR signals that
# SLURM sends before a time limit (submitit requeues on SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
                     if hasattr(signal, name))


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message is one line."""


# Summary fields a checkpoint carries over to the run that continues it.
CARRIED_SUMMARY = ("steps_done", "final_loss", "final_val_loss", "final_val_acc", "init_grad_ratio")


@dataclass
class GradProfile:
    """Per-block gradient norms at initialization and at the last logged step, with that step's
    hidden_rms and act_grad_norm (the end table; a checkpoint carries it over)."""

    init: list[float] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    last_step: int = 0
    hidden_rms: list[float | None] = field(default_factory=list)  # at last_step
    act_grad_norm: list[float | None] = field(default_factory=list)  # at last_step
    labels: list[str] = field(default_factory=list)  # one per block: "3", or "enc 3" / "dec 3" in a multi-stack model


def save(path: Path, state: dict[str, Any]) -> None:
    """Write `state` via a temporary file, fsync and rename: the old checkpoint or the new one, never a mix.
    A second Ctrl-C waits for the write (it would leave the temporary file behind); a failed write removes it."""
    tmp = temporary(path)
    with signals_deferred():
        try:
            with open(tmp, "wb") as handle:
                torch.save({"format": FORMAT, **state}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def load(path: Path, config_hash: str) -> dict[str, Any]:
    """The state saved at `path` by a run of the config `config_hash`; CheckpointError (one line) otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except Exception as err:  # noqa: BLE001 - truncated, garbage or foreign pickles all say the same
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason}); "
                              "remove it to start the run over") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a resbench checkpoint of format {FORMAT} (found {found!r})")
    if state.get("config_hash") != config_hash:
        raise CheckpointError(f"{path} belongs to another config (hash {state.get('config_hash')}, "
                              f"this run's is {config_hash}): resume with the run's own overrides")
    return state


def rng_states(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every random stream a run draws from: torch's CPU and CUDA generators and the run's own ones."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        **{name: generator.get_state() for name, generator in generators.items()},
    }


def restore_rng_states(states: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    for name, generator in generators.items():
        generator.set_state(states[name])


Handler = Callable[[int, FrameType | None], Any]


class DeferredSignals:
    """While active, STOP_SIGNALS that have a Python handler are noted instead of handled, so the run can
    stop at a step boundary (and checkpoint a consistent state); `dispatch()` then hands each noted signal
    to the handler that was there before (which raises KeyboardInterrupt, or requeues a SLURM job). A
    second signal of the same kind does not wait: it goes to that handler at once.

    Signals whose handler is the OS default or ignore are left alone, and so is everything off the main
    thread (Python delivers signals only there)."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self._previous: dict[int, Handler] = {}

    def __enter__(self) -> DeferredSignals:  # noqa: PYI034 - typing.Self needs Python 3.11
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                handler = signal.getsignal(sig)
                if callable(handler):
                    self._previous[sig] = handler
                    signal.signal(sig, self._note)
        return self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if signum in self.pending:  # asked twice: stop now
            handler = self._previous.get(signum, signal.default_int_handler)
            self._restore()
            handler(signum, frame)
        self.pending.append(signum)

    def _restore(self) -> dict[int, Handler]:
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return previous

    def dispatch(self) -> None:
        """Put the handlers back and call them for the signals noted, in the order they came."""
        previous = self._restore()
        for signum in self.pending:
            previous.get(signum, signal.default_int_handler)(signum, None)

    def __exit__(self, *exc_info: object) -> None:
        self._restore()


def check_resumable(run_dir: Path, config: dict[str, Any]) -> None:
    """Raise CheckpointError (one line) unless `run_dir` holds a run of this config that can go on: one
    that did not end with a result. Its summary is read, not its checkpoint: `state_to_continue` reads that
    once, under the run dir's lock. A run killed before its first summary.json (Hydra's record is there)
    starts over."""
    this_hash = config_hash(config)
    summary = read_json(run_dir / SUMMARY_JSON)
    if summary is None and (run_dir / SUMMARY_JSON).exists():
        raise CheckpointError(f"the run at {run_dir} has an unreadable {SUMMARY_JSON}: it cannot be told what "
                              "the run was; start a new run")
    if summary is None and not (run_dir / HYDRA_OVERRIDES_YAML).is_file():
        raise CheckpointError(f"no run to resume at {run_dir} (it has no {SUMMARY_JSON} and no {HYDRA_OVERRIDES_YAML})")
    if summary is not None and not isinstance(summary, dict):
        raise CheckpointError(f"the run at {run_dir} has a {SUMMARY_JSON} that is not a JSON object")
    summary = summary or {"config_hash": _recorded_hash(run_dir, this_hash)}
    if summary.get("status") in DONE:
        raise CheckpointError(f"nothing to resume: the run at {run_dir} ended {summary['status']}")
    if summary.get("config_hash") != this_hash:
        raise CheckpointError(f"the run at {run_dir} is of another config (hash {summary.get('config_hash')}, "
                              f"these overrides give {this_hash}): resume with the run's own overrides")


class Continuation:
    """What a resumed run goes on from, its checkpoint read and checked once by whoever holds the run dir's
    lock, for the trainer to restore without reading it again. The state is handed over once (`take`): a
    model's worth of weights and optimizer moments is not kept beside the model for the whole run."""

    def __init__(self, state: dict[str, Any] | None) -> None:
        self._state = state  # None: the run wrote no checkpoint, it starts over at step 0

    def take(self) -> dict[str, Any] | None:
        state, self._state = self._state, None
        return state


def _recorded_hash(run_dir: Path, this_hash: str) -> str | None:
    """The config hash of a run killed before its first summary: its config.yaml's, if it got that far."""
    import yaml

    try:
        recorded = yaml.safe_load((run_dir / CONFIG_YAML).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return this_hash  # killed before config.yaml too: nothing says it was another config
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return config_hash(recorded) if isinstance(recorded, dict) else None


def state_to_continue(run_dir: Path, config: dict[str, Any], task: Task) -> dict[str, Any] | None:
    """The checkpoint of the run in `run_dir`, read (`load`) and every field checked against the run's
    config, model and files before anything is touched; None when it has none. A field that is missing,
    of the wrong type or shape, or that does not match the run's files is a CheckpointError."""
    path = Path(run_dir) / CHECKPOINT_PT
    if not path.exists():
        return None
    state = load(path, config_hash(config))
    try:
        _check_state(state, config, task, Path(run_dir))
    except _Bad as err:
        raise CheckpointError(f"{path} does not fit this run: {err}; remove it to start the run over") from None
    return state


class _Bad(Exception):
    """What is wrong with one field of a checkpoint (made into a CheckpointError naming the file)."""


def _check_state(state: dict[str, Any], config: dict[str, Any], task: Task, run_dir: Path) -> None:
    types = {"step": int, "model": dict, "optimizer": dict, "scaler": dict, "rng": dict, "csv_rows": dict,
             "summary": dict, "recent_losses": list, "profile": dict, "elapsed_s": (int, float)}
    for key, kind in types.items():
        if key not in state:
            raise _Bad(f"it has no {key!r}")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise _Bad(f"{key!r} is a {type(state[key]).__name__}")
    total = max(config["train"]["steps"], 1)
    if not 1 <= state["step"] < total:
        raise _Bad(f"its step {state['step']} is not one a run of {total} steps stops at (1 to {total - 1})")
    if not (math.isfinite(state["elapsed_s"]) and state["elapsed_s"] >= 0):
        raise _Bad(f"elapsed_s is {state['elapsed_s']!r}")
    spec = models.task_for(config["model"]["name"], task).spec
    keys = models.model_keys(config)
    with torch.device("meta"):  # shapes only: nothing allocated, no random number drawn
        model = models.build(keys, spec)
    _check_model(state["model"], {name: tensor.shape for name, tensor in model.state_dict().items()})
    # the optimizer numbers the parameters in the order of its groups (a depth parametrization's differs)
    _check_optimizer(state["optimizer"], [[p.shape for p in group.params] for group in models.param_groups(model, keys)])
    _check_rng(state["rng"])
    _check_records(state, spec.accuracy, run_dir)


def _check_model(weights: dict[str, Any], shapes: dict[str, torch.Size]) -> None:
    missing = [name for name in shapes if name not in weights]
    extra = [name for name in weights if name not in shapes]
    if missing or extra:
        raise _Bad(f"its model {'lacks ' + missing[0] if missing else 'has an unknown ' + str(extra[0])}")
    for name, shape in shapes.items():
        tensor = weights[name]
        if not isinstance(tensor, torch.Tensor) or tensor.shape != shape:
            found = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise _Bad(f"its model's {name} is {found}, the run's is {tuple(shape)}")
        if not (tensor.is_floating_point() and bool(torch.isfinite(tensor).all())):
            raise _Bad(f"its model's {name} holds values that are not finite numbers")


def _check_optimizer(optimizer: dict[str, Any], group_shapes: list[list[torch.Size]]) -> None:
    """`group_shapes`: the shapes of the run's parameters, group by group, as its optimizer holds them."""
    groups, states = optimizer.get("param_groups"), optimizer.get("state")
    if not isinstance(groups, list) or not isinstance(states, dict) or not all(
            isinstance(group, dict) and isinstance(group.get("params"), list) for group in groups):
        raise _Bad("its optimizer state is not an optimizer's state_dict")
    ids = [index for group in groups for index in group["params"]]
    shapes = [shape for shapes in group_shapes for shape in shapes]
    if any(type(index) is not int for index in ids) or sorted(ids) != list(range(len(shapes))):
        raise _Bad(f"its optimizer holds {len(ids)} parameters, the model {len(shapes)}")
    sizes, run_sizes = [len(group["params"]) for group in groups], [len(shapes) for shapes in group_shapes]
    if sizes != run_sizes:  # torch's load_state_dict pairs the groups one to one
        raise _Bad(f"its optimizer's parameter groups hold {sizes} parameters, the run's {run_sizes}")
    shape_of = dict(zip(ids, shapes))  # as load_state_dict pairs a stored id with a parameter: by position
    for index, entry in states.items():
        if index not in shape_of or not isinstance(entry, dict):
            raise _Bad(f"its optimizer's state {index!r} belongs to no parameter")
        for name, value in entry.items():
            if name != "step" and isinstance(value, torch.Tensor) and value.shape != shape_of[index]:
                raise _Bad(f"its optimizer's {name} of parameter {index} is {tuple(value.shape)}, "
                           f"the parameter {tuple(shape_of[index])}")


def _check_rng(states: dict[str, Any]) -> None:
    for name in ("torch", "data", "init_batches"):
        try:
            torch.Generator().set_state(states[name])
        except (KeyError, TypeError, RuntimeError, ValueError):
            raise _Bad(f"its random state {name!r} is missing or not a generator's state") from None
    if not isinstance(states.get("cuda"), list) or not all(isinstance(s, torch.Tensor) for s in states["cuda"]):
        raise _Bad("its random state 'cuda' is not a list of generator states")


def _check_records(state: dict[str, Any], accuracy: bool, run_dir: Path) -> None:
    """csv_rows, the summary, the recent losses and the profile: what the run's files and records must be.
    `accuracy`: the run's metrics.csv has a val_acc column."""
    columns = {METRICS_CSV: (*METRIC_COLUMNS, *((ACCURACY_COLUMN,) if accuracy else ())),
               GRAD_NORMS_CSV: GRAD_NORM_COLUMNS, LAYERS_CSV: LAYER_COLUMNS}
    rows = state["csv_rows"]
    if set(rows) != set(columns) or not all(isinstance(n, int) and n >= 0 for n in rows.values()):
        raise _Bad(f"its csv_rows {rows!r} is not a row count for each of {', '.join(columns)}")
    if rows[METRICS_CSV] != state["step"]:
        raise _Bad(f"it counts {rows[METRICS_CSV]} rows of {METRICS_CSV} at step {state['step']} (one a step)")
    for name, header in columns.items():
        found = _whole_rows(run_dir / name, header)
        if found < rows[name]:
            raise _Bad(f"it counts {rows[name]} rows of {name}, which has {found}")
    carried = state["summary"]
    if set(carried) - set(CARRIED_SUMMARY) or not all(
            value is None or isinstance(value, (int, float)) for value in carried.values()):
        raise _Bad(f"its summary {carried!r} is not the fields {', '.join(CARRIED_SUMMARY)}")
    if not isinstance(carried.get("steps_done", 0), int) or not 0 <= carried.get("steps_done", 0) <= state["step"]:
        raise _Bad(f"its summary's steps_done {carried.get('steps_done')!r} is past its step {state['step']}")
    if not all(isinstance(loss, (int, float)) for loss in state["recent_losses"]):
        raise _Bad("its recent losses are not numbers")
    profile = state["profile"]
    if set(profile) - {f.name for f in fields(GradProfile)}:
        raise _Bad(f"its profile has unknown fields {sorted(set(profile) - {f.name for f in fields(GradProfile)})}")


def _whole_rows(path: Path, header: tuple[str, ...]) -> int:
    """Data rows of a CSV whose lines have ended; the header must be `header`."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines(keepends=True)
    except OSError as err:
        raise _Bad(f"its run's {path.name} cannot be read ({err.strerror or err})") from None
    if not lines or lines[0].decode("utf-8", "replace").rstrip("\r\n").split(",") != list(header):
        raise _Bad(f"its run's {path.name} does not start with the header {','.join(header)}")
    return sum(line.endswith(b"\n") for line in lines[1:])

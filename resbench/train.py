"""The trainer: one run from a plain config dict to a run directory. Knows nothing of Hydra or the CLI."""

from __future__ import annotations

import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from . import models, probes, tasks
from .records import LAYER_COLUMNS, METRIC_COLUMNS, RunRecorder, config_hash

FINAL_LOSS_WINDOW = 10  # final_loss is the mean training loss of the last 10 steps
INIT_BATCHES_STREAM = 1  # SeedSequence key of the init_batches data stream (training data: the seed itself)


class Progress(Protocol):
    """What the trainer tells whoever watches it (the terminal, a sweep display, nothing)."""

    def run_started(self, config: dict[str, Any], run_dir: Path) -> None: ...

    def step(self, step: int, total: int, loss: float, val_loss: float | None, steps_per_s: float) -> None: ...

    def run_finished(self, summary: dict[str, Any], profile: GradProfile) -> None: ...


class Silent:
    def run_started(self, config, run_dir): ...

    def step(self, step, total, loss, val_loss, steps_per_s): ...

    def run_finished(self, summary, profile): ...


@dataclass
class GradProfile:
    """Per-block gradient norms at initialization and at the last logged step, with that step's
    hidden_rms and act_grad_norm (for the end table)."""

    init: list[float] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    last_step: int = 0
    hidden_rms: list[float | None] = field(default_factory=list)  # at last_step
    act_grad_norm: list[float | None] = field(default_factory=list)  # at last_step
    labels: list[str] = field(default_factory=list)  # one per block: "3", or "enc 3" / "dec 3" in a multi-stack model


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but torch sees no CUDA device")
    return torch.device(device)


OPTIMIZERS = {
    "adam": lambda params, t: torch.optim.Adam(params, lr=t["lr"], weight_decay=t["weight_decay"]),
    "adamw": lambda params, t: torch.optim.AdamW(params, lr=t["lr"], weight_decay=t["weight_decay"]),
    "sgd": lambda params, t: torch.optim.SGD(params, lr=t["lr"], weight_decay=t["weight_decay"]),
}


def warmup_factor(step: int, warmup: int) -> float:
    """Linear warmup: lr·(step+1)/warmup for the first `warmup` steps, then lr."""
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[tasks.Batch], device: torch.device) -> tuple[float, float]:
    """Mean validation loss and accuracy over the fixed validation batches."""
    losses, correct, count = [], 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        losses.append(cross_entropy(logits, y))
        correct += (logits.argmax(-1) == y).sum()
        count += y.numel()
    return torch.stack(losses).mean().item(), (correct / count).item()


def is_logged(step: int, steps: int, log_every: int) -> bool:
    return step == 0 or step % log_every == 0 or step == steps - 1


def is_evaluated(step: int, steps: int, eval_every: int) -> bool:
    return (step + 1) % eval_every == 0 or step == steps - 1


class Trainer:
    """One run: build task and model, loop, record. `run()` returns the summary it also writes."""

    def __init__(self, config: dict[str, Any], run_dir: Path, progress: Progress | None = None,
                 job: dict[str, Any] | None = None):
        self.config = config
        self.train_cfg = config["train"]
        self.run_dir = Path(run_dir)
        self.progress = progress or Silent()
        self.job = job or {}  # facts about where the run executes (slurm_job_id, threads, ...)

    def setup(self) -> None:
        torch.manual_seed(self.config["seed"])
        self.device = pick_device(self.config["device"])
        self.task = models.task_for(self.config["model"]["name"],
                                    tasks.build(self.config["task"], self.train_cfg["batch_size"]))
        self.model = models.build(self.config["model"], self.task.spec).to(self.device)
        self.optimizer = OPTIMIZERS[self.train_cfg["optimizer"]](self.model.parameters(), self.train_cfg)
        self.layout = probes.ParamLayout(self.model)
        # The data order follows the seed but not the model: variants of one seed see the same batches.
        self.data_generator = torch.Generator().manual_seed(self.config["seed"])
        self.val_batches = self.task.val_batches()
        metric_columns = METRIC_COLUMNS + (["val_acc"] if self.task.spec.accuracy else [])
        self.recorder = RunRecorder(self.run_dir, self.config, metric_columns, LAYER_COLUMNS)
        self.summary: dict[str, Any] = {
            "status": "running",
            "steps_done": 0,
            "final_loss": None,
            "final_val_loss": None,
            "final_val_acc": None,
            "wall_s": 0.0,
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "error": None,
            "config_hash": config_hash(self.config),
            "init_grad_ratio": None,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "slurm_job_id": self.job.get("slurm_job_id"),
            "pid": os.getpid(),
        }
        self.recorder.write_summary(self.summary)
        self.profile = GradProfile(labels=[f"{stack[:3]} {layer}" if stack else str(layer) for stack, layer in
                                           zip(self.layout.block_stacks, self.layout.block_layers)])

    def run(self) -> dict[str, Any]:
        self.setup()
        self.progress.run_started(self.config, self.run_dir)
        start = time.perf_counter()
        try:
            self.summary["status"] = self.loop(start)
        except KeyboardInterrupt:
            self.finish("interrupted", start)
            raise
        except Exception as err:  # noqa: BLE001 - a failed run is a result: record it and go on
            self.summary["error"] = f"{type(err).__name__}: {err}"
            self.finish("failed", start)
            return self.summary
        self.finish(self.summary["status"], start)
        return self.summary

    def finish(self, status: str, start: float) -> None:
        self.summary["status"] = status
        self.summary["wall_s"] = round(time.perf_counter() - start, 3)
        self.recorder.close(self.summary)
        self.progress.run_finished(self.summary, self.profile)

    def loop(self, start: float) -> str:
        steps, batch_size = self.train_cfg["steps"], self.train_cfg["batch_size"]
        recent_losses: deque[float] = deque(maxlen=FINAL_LOSS_WINDOW)
        val_loss = None
        for step in range(max(steps, 1)):  # steps=0 still measures the gradient at init (step 0)
            lr = self.train_cfg["lr"] * warmup_factor(step, self.train_cfg["warmup"])
            x, y = (t.to(self.device) for t in self.task.batch(self.data_generator, batch_size))
            logged = is_logged(step, steps, self.config["log_every"])
            with probes.capture(self.model, active=logged) as blocks:  # block hooks on logged steps only
                logits = self.model(x)
                loss = cross_entropy(logits, y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # Norms of the unclipped gradient, on the device, before clipping or the update touch it.
                param_grad_norms = probes.grad_norms(self.logged_gradient(step)) if logged else None
            loss_value = loss.item()
            recent_losses.append(loss_value)
            # A gradient's finiteness is known only after the step's one host copy, which follows the update.
            update_taken = steps > 0 and math.isfinite(loss_value)
            with probes.track_update(self.layout, active=logged and update_taken) as update:
                if update_taken:
                    self.update(lr)
            stats = self.measure(step, param_grad_norms, blocks, update) if logged else None
            diverged = not math.isfinite(loss_value) or (stats is not None and not math.isfinite(stats.grad_norm))
            if update_taken and not diverged:
                self.summary["steps_done"] = step + 1
            val_loss = val_acc = None
            if not diverged and is_evaluated(step, steps, self.train_cfg["eval_every"]):
                val_loss, val_acc = evaluate(self.model, self.val_batches, self.device)
                self.summary["final_val_loss"] = val_loss
                if self.task.spec.accuracy:
                    self.summary["final_val_acc"] = val_acc
            if stats is not None or val_loss is not None or diverged:  # the step that diverged is kept
                self.record(step, loss_value, val_loss, val_acc, lr, stats, start)
            finite = [v for v in recent_losses if math.isfinite(v)]
            self.summary["final_loss"] = sum(finite) / len(finite) if finite else None
            elapsed = time.perf_counter() - start
            self.progress.step(step, steps, loss_value, val_loss, (step + 1) / max(elapsed, 1e-9))
            if diverged:
                return "diverged"
        return "completed"

    def update(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.train_cfg["clip"] is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train_cfg["clip"])
        self.optimizer.step()

    def logged_gradient(self, step: int) -> list[torch.Tensor]:
        """The gradient a logged step reports: its own, or at step 0 the mean over `init_batches` batches.

        The extra batches come from their own generator and their gradients go into a separate sum, so
        the training data order and the first update (step 0's own batch) are those of init_batches=1.
        """
        grads = self.layout.grads()
        extra = self.config["init_batches"] - 1 if step == 0 else 0
        if extra == 0:
            return grads
        generator = torch.Generator().manual_seed(init_batches_seed(self.config["seed"]))
        total = torch._foreach_mul(grads, 1.0)
        for _ in range(extra):
            x, y = (t.to(self.device) for t in self.task.batch(generator, self.train_cfg["batch_size"]))
            loss = cross_entropy(self.model(x), y)
            torch._foreach_add_(total, torch.autograd.grad(loss, self.layout.params, allow_unused=True,
                                                           materialize_grads=True))
        return torch._foreach_div(total, float(extra + 1))

    def measure(self, step: int, param_grad_norms: torch.Tensor, blocks: probes.BlockCapture,
                update: probes.UpdateTracker) -> probes.StepStats:
        """The logged step's probes, brought to the host in one copy; keeps the end-of-run profile."""
        stats = probes.step_stats(self.layout, param_grad_norms, {**blocks.values(), "update_ratio": update.ratio})
        if step == 0:
            self.profile.init = stats.block_grad_norms
            self.summary["init_grad_ratio"] = _ratio(self.last_stack(stats.block_grad_norms))
        self.profile.last, self.profile.last_step = stats.block_grad_norms, step
        self.profile.hidden_rms = stats.blocks["hidden_rms"]
        self.profile.act_grad_norm = stats.blocks["act_grad_norm"]
        return stats

    def last_stack(self, block_values: list[float]) -> list[float]:
        """The values of the last stack's blocks (the decoder's; every block in a single-stack model)."""
        last = self.layout.block_stacks[-1]
        return [value for value, stack in zip(block_values, self.layout.block_stacks) if stack == last]

    def record(self, step, loss, val_loss, val_acc, lr, stats, start) -> None:
        """Append this step's rows to metrics.csv, and to grad_norms.csv and layers.csv when logged."""
        row = [step, loss, val_loss, lr, stats.grad_norm if stats else None, round(time.perf_counter() - start, 4)]
        if self.task.spec.accuracy:
            row.append(val_acc)
        grad_rows, layer_rows = [], []
        if stats is not None:
            layout = self.layout
            grad_rows = list(zip([step] * len(layout.names), layout.layers, layout.stacks, layout.names,
                                 stats.param_grad_norms))
            layer_rows = [(step, layer, stack, *values) for layer, stack, values in
                          zip(layout.block_layers, layout.block_stacks, stats.block_rows())]
        self.recorder.log(row, grad_rows, layer_rows)


def _ratio(block_norms: list[float]) -> float | None:
    """Last block's gradient norm over the first's."""
    if not block_norms or block_norms[0] == 0 or not math.isfinite(block_norms[0]):
        return None
    return block_norms[-1] / block_norms[0]


def init_batches_seed(seed: int) -> int:
    """Seed of the extra init_batches batches: a stream of its own, apart from every seed's training data."""
    return int(np.random.SeedSequence([seed, INIT_BATCHES_STREAM]).generate_state(1)[0])


def run(config: dict[str, Any], run_dir: Path | str, progress: Progress | None = None,
        job: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one run of `config` (a resolved config as a plain dict) into `run_dir`; return its summary."""
    return Trainer(config, Path(run_dir), progress, job).run()

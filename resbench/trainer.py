"""The trainer: one run from a plain config dict to a run directory. Knows nothing of Hydra or the CLI."""

from __future__ import annotations

import math
import os
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint, loggers, models, probes, records, runtime, tasks
from .checkpoint import CARRIED_SUMMARY, GradProfile
from .precision import pick_precision
from .records import RunRecorder, config_hash, read_json
from .schema import ACCURACY_COLUMN, LAYER_COLUMNS, METRIC_COLUMNS, SUMMARY_JSON, Status, Summary

FINAL_LOSS_WINDOW = 10  # final_loss is the mean training loss of the last 10 steps
INIT_BATCHES_STREAM = 1  # SeedSequence key of the init_batches data stream (training data: the seed itself)
INIT_DRAWS_STREAM = 2  # SeedSequence key of the init draws' weights (the run's own weights: the seed itself)


class StopAtBoundary(Exception):
    """A stop signal came during a step: that step has ended and a checkpoint holds the state after it."""


class Progress(Protocol):
    """What the trainer tells whoever watches it (the terminal, a sweep display, nothing)."""

    def run_started(self, config: dict[str, Any], run_dir: Path) -> None: ...

    def step(self, step: int, total: int, loss: float, val_loss: float | None, steps_per_s: float) -> None: ...

    def run_finished(self, summary: dict[str, Any], profile: GradProfile) -> None: ...


class Silent:
    def run_started(self, config, run_dir): ...

    def step(self, step, total, loss, val_loss, steps_per_s): ...

    def run_finished(self, summary, profile): ...


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but torch sees no CUDA device")
    return torch.device(device)


ADAM_EPS = 1e-8  # torch's default ε, passed as the base ε that a depth parametrization scales per group
OPTIMIZERS = {  # keyed by registries.OPTIMIZERS
    "adam": lambda params, t: torch.optim.Adam(params, lr=t["lr"], eps=ADAM_EPS, weight_decay=t["weight_decay"]),
    "adamw": lambda params, t: torch.optim.AdamW(params, lr=t["lr"], eps=ADAM_EPS, weight_decay=t["weight_decay"]),
    "sgd": lambda params, t: torch.optim.SGD(params, lr=t["lr"], weight_decay=t["weight_decay"]),
}


def optimizer_groups(groups: list[models.ParamGroup], train_cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """torch's param groups for the model layer's groups: each its lr, and its ε where it is not the base's
    (a single unscaled group is exactly the optimizer of model.parameters())."""
    return [{"params": list(group.params), "lr": train_cfg["lr"] * group.lr_scale,
             **({"eps": ADAM_EPS * group.eps_scale} if group.eps_scale != 1.0 else {})} for group in groups]


def param_group_rows(groups: list[models.ParamGroup], optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """param_groups.csv's rows: every parameter with the settings its optimizer group holds."""
    return [{"param": name, "group": group.name, "lr_scale": group.lr_scale, "lr": settings["lr"],
             "eps": settings.get("eps"), "weight_decay": settings["weight_decay"]}
            for group, settings in zip(groups, optimizer.param_groups) for name in group.names]


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
                 job: dict[str, Any] | None = None, resume: bool = False, task: tasks.Task | None = None,
                 continuation: checkpoint.Continuation | None = None):
        self.config = config
        self.built_task = task  # the config's task when the caller built it already (else setup builds it)
        self.train_cfg = config["train"]
        self.run_dir = Path(run_dir)
        self.progress = progress or Silent()
        self.job = job or {}  # facts about where the run executes (slurm_job_id, requeues, command, ...)
        self.resume = resume  # continue the run in run_dir from its checkpoint (from step 0 if it has none)
        self.continuation = continuation  # that checkpoint when the caller read and checked it already
        self.checkpoint_path = self.run_dir / checkpoint.CHECKPOINT_PT
        self.signals = checkpoint.DeferredSignals()
        # The summary this run recorded as it ended (None: not yet). Set by this object alone, so that who
        # records an end the trainer missed never mistakes an earlier run's end in the same dir for this one's.
        self.ended: dict[str, Any] | None = None

    def setup(self) -> None:
        records.remove_stale_temporaries(self.run_dir)  # a killed run's checkpoint or summary being written
        torch.manual_seed(self.config["seed"])
        self.device = pick_device(self.config["device"])
        self.precision = pick_precision(self.config.get("precision", "fp32"), self.device)
        built = self.built_task or tasks.build(self.config["task"], self.train_cfg["batch_size"])
        self.task = models.task_for(self.config["model"]["name"], built)
        self.model = models.build(models.model_keys(self.config), self.task.spec).to(self.device)
        # A depth parametrization gives the blocks their own lr and ε (models.param_groups).
        self.param_groups = models.param_groups(self.model, models.model_keys(self.config))
        self.optimizer = OPTIMIZERS[self.train_cfg["optimizer"]](optimizer_groups(self.param_groups,
                                                                                  self.train_cfg), self.train_cfg)
        self.scaler = self.precision.scaler(self.device)
        self.layout = probes.ParamLayout(self.model)
        # The data order follows the seed but not the model: variants of one seed see the same batches.
        self.data_generator = torch.Generator().manual_seed(self.config["seed"])
        self.init_generator = torch.Generator().manual_seed(init_batches_seed(self.config["seed"]))
        self.val_batches = self.task.val_batches()
        hash_ = config_hash(self.config)
        state = self.checkpoint_to_continue(built)
        metric_columns = METRIC_COLUMNS + ((ACCURACY_COLUMN,) if self.task.spec.accuracy else ())
        self.recorder = RunRecorder(self.run_dir, self.config, metric_columns, LAYER_COLUMNS,
                                    resume_rows=state["csv_rows"] if state else None, init_draws=True,
                                    provenance=records.provenance(runtime.runtime_facts(self.device),
                                                                  self.job.get("command")))
        self.recorder.write_param_groups(param_group_rows(self.param_groups, self.optimizer))
        self.listeners = loggers.build(self.config, self.run_dir)  # e.g. TensorBoard (the `logger` key)
        self.summary = Summary(
            n_params=sum(p.numel() for p in self.model.parameters()),
            config_hash=hash_,
            device=str(self.device),
            precision=self.precision.name,
            threads=torch.get_num_threads(),
            slurm_job_id=self.job.get("slurm_job_id"),
            requeues=self.job.get("requeues", 0),
            resumes=(previous_resumes(self.run_dir) + 1) if self.resume else 0,
            pid=os.getpid(),
        )
        self.profile = GradProfile(labels=[f"{stack[:3]} {layer}" if stack else str(layer) for stack, layer in
                                           zip(self.layout.block_stacks, self.layout.block_layers)])
        self.recent_losses: deque[float] = deque(maxlen=FINAL_LOSS_WINDOW)
        self.start_step, self.elapsed_before = 0, 0.0
        if state is not None:
            self.restore(state)
        self.recorder.write_summary(self.summary)

    def checkpoint_to_continue(self, task: tasks.Task) -> dict[str, Any] | None:
        """The checkpoint a resumed run goes on from, every field checked (None: none was written, start
        over at step 0)."""
        if self.continuation is not None:  # read and checked by the caller, which holds the run dir's lock
            return self.continuation.take()
        if not self.checkpoint_path.exists():
            return None
        if self.resume:
            return checkpoint.state_to_continue(self.run_dir, self.config, task)
        self.checkpoint_path.unlink()  # a run started over: its old state must never be continued
        return None

    def run(self) -> dict[str, Any]:
        """Train; a stop signal (Ctrl-C, SIGTERM, SLURM's) waits for the step to end, is checkpointed, and
        then goes to the handler that was there before (which raises KeyboardInterrupt or requeues a job)."""
        with self.signals:
            self.setup()
            self.progress.run_started(self.config, self.run_dir)
            start = time.perf_counter() - self.elapsed_before  # a continued run counts its earlier time
            try:
                status = self.loop(start)
            except StopAtBoundary:
                status = Status.INTERRUPTED
            except KeyboardInterrupt:  # asked twice: stopped mid-step, so no checkpoint of this step
                self.finish(Status.INTERRUPTED, start)
                raise
            except Exception as err:  # noqa: BLE001 - a failed run is a result: record it and go on
                self.summary.error = f"{type(err).__name__}: {err}"
                self.finish(Status.FAILED, start)
                return self.summary.to_dict()
            self.finish(status, start)
            self.signals.dispatch()
        return self.summary.to_dict()

    def finish(self, status: Status, start: float) -> None:
        self.summary.update(status=status, wall_s=round(time.perf_counter() - start, 3))
        self.recorder.close(self.summary)
        summary = self.ended = self.summary.to_dict()
        for listener in self.listeners:
            listener.close(summary)
        self.progress.run_finished(summary, self.profile)

    def loop(self, start: float) -> str:
        steps, batch_size = self.train_cfg["steps"], self.train_cfg["batch_size"]
        recent_losses = self.recent_losses
        for step in range(self.start_step, max(steps, 1)):  # steps=0 still measures the gradient at init
            lr = self.train_cfg["lr"] * warmup_factor(step, self.train_cfg["warmup"])
            x, y = (t.to(self.device) for t in self.task.batch(self.data_generator, batch_size))
            # Step 0 is measured over init_batches batches: this one, then the others from their own stream.
            batches = [(x, y), *self.extra_init_batches()] if step == 0 else [(x, y)]
            logged = is_logged(step, steps, self.config["log_every"])
            with probes.capture(self.model, active=logged) as blocks:  # block hooks on logged steps only
                with self.precision.autocast(self.device):
                    logits = self.model(x)
                    loss = cross_entropy(logits, y)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)  # fp16: every norm below is of the true fp32 gradient
                loss_scale = self.scaler.get_scale() if logged and self.precision.scaled else 1.0
                # Norms of the unclipped gradient, on the device, before clipping or the update touch it.
                param_grad_norms = probes.grad_norms(self.logged_gradient(batches[1:], loss_scale)) if logged else None
            loss_value = loss.item()
            recent_losses.append(loss_value)
            # A gradient's finiteness is known only after the step's one host copy, which follows the update.
            update_taken = steps > 0 and math.isfinite(loss_value)
            with probes.track_update(self.layout, active=logged and update_taken) as update:
                if update_taken:
                    self.update(lr)
            stats = self.measure(step, param_grad_norms, blocks, update, loss_scale) if logged else None
            # Under fp16's scaler a non-finite gradient is an overflow of the scaled loss: the scaler skips
            # that update and lowers its scale, so only a non-finite loss means the run diverged.
            bad_gradient = stats is not None and not math.isfinite(stats.grad_norm) and not self.precision.scaled
            diverged = not math.isfinite(loss_value) or bad_gradient
            if update_taken and not diverged:
                self.summary.steps_done = step + 1
            evaluated = not diverged and is_evaluated(step, steps, self.train_cfg["eval_every"])
            val_loss, val_acc = self.validate() if evaluated else (None, None)
            # A metrics row every step (steps-to-a-loss-target needs them); flushed on the steps that matter.
            flush = stats is not None or val_loss is not None or diverged  # the step that diverged is kept
            self.record(step, loss_value, val_loss, val_acc, lr, stats, start, flush)
            if step == 0:
                self.measure_init_draws(stats, batches, loss_scale)
            finite = [v for v in recent_losses if math.isfinite(v)]
            self.summary.final_loss = sum(finite) / len(finite) if finite else None
            elapsed = time.perf_counter() - start
            self.progress.step(step, steps, loss_value, val_loss, (step + 1) / max(elapsed, 1e-9))
            if diverged:
                return Status.DIVERGED
            self.step_boundary(step + 1, max(steps, 1), start)
        return Status.COMPLETED

    def validate(self) -> tuple[float, float]:
        """Validation loss and accuracy of the model as it stands, kept in the summary."""
        with self.precision.autocast(self.device):
            val_loss, val_acc = evaluate(self.model, self.val_batches, self.device)
        self.summary.final_val_loss = val_loss
        if self.task.spec.accuracy:
            self.summary.final_val_acc = val_acc
        return val_loss, val_acc

    def step_boundary(self, next_step: int, total: int, start: float) -> None:
        """Between two steps: stop here if a signal came (with a checkpoint, unless the run is done),
        else write the periodic checkpoint when one is due."""
        every = self.train_cfg.get("checkpoint_every")
        if self.signals.pending:
            if next_step < total:
                self.save_checkpoint(next_step, start)
                raise StopAtBoundary
        elif every and next_step % every == 0 and next_step < total:
            self.save_checkpoint(next_step, start)

    def save_checkpoint(self, next_step: int, start: float) -> None:
        """checkpoint.pt: the state after step next_step - 1 and where each CSV stood then; summary.json
        names it. A Ctrl-C meanwhile waits for both, so the summary never misses a checkpoint written."""
        with records.signals_deferred():
            self._save_checkpoint(next_step, start)

    def _save_checkpoint(self, next_step: int, start: float) -> None:
        checkpoint.save(self.checkpoint_path, {
            "config_hash": self.summary.config_hash,
            "step": next_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": checkpoint.rng_states(self.generators()),
            "csv_rows": self.recorder.positions(),
            "summary": {key: getattr(self.summary, key) for key in CARRIED_SUMMARY},
            "recent_losses": list(self.recent_losses),
            "profile": asdict(self.profile),
            "elapsed_s": time.perf_counter() - start,
        })
        self.summary.checkpoint_step = next_step
        self.recorder.write_summary(self.summary)

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: weights, optimizer, scaler, every random stream, the loop's records."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        checkpoint.restore_rng_states(state["rng"], self.generators())
        self.summary.update(**state["summary"], checkpoint_step=state["step"])
        self.recent_losses.extend(state["recent_losses"])
        self.profile = GradProfile(**state["profile"])
        self.start_step, self.elapsed_before = state["step"], state["elapsed_s"]

    def generators(self) -> dict[str, torch.Generator]:
        """The run's own random streams (torch's global ones are saved beside them)."""
        return {"data": self.data_generator, "init_batches": self.init_generator}

    def update(self, lr: float) -> None:
        for group, settings in zip(self.param_groups, self.optimizer.param_groups):
            settings["lr"] = lr * group.lr_scale  # exactly lr where the scale is 1
        if self.train_cfg["clip"] is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train_cfg["clip"])
        self.scaler.step(self.optimizer)  # fp16: skipped when the scaled gradient overflowed
        self.scaler.update()

    def extra_init_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Step 0's other `init_batches` − 1 batches, from their own generator: the training data order and the
        first update (step 0's own batch) stay those of init_batches=1."""
        return [tuple(t.to(self.device) for t in self.task.batch(self.init_generator, self.train_cfg["batch_size"]))
                for _ in range(self.config["init_batches"] - 1)]

    def logged_gradient(self, extra_batches: list[tuple[torch.Tensor, torch.Tensor]],
                        loss_scale: float = 1.0) -> list[torch.Tensor]:
        """The gradient a logged step reports: its own, or at step 0 the mean over it and `extra_batches`,
        whose gradients go into a separate sum (the update uses step 0's own batch alone)."""
        grads = self.layout.grads()
        if not extra_batches:
            return grads
        total = self.add_gradients(torch._foreach_mul(grads, 1.0), self.model, self.layout.params, extra_batches,
                                   loss_scale)
        return torch._foreach_div(total, float(len(extra_batches) + 1))

    def add_gradients(self, total: list[torch.Tensor] | None, model: torch.nn.Module, params: list[torch.Tensor],
                      batches: list[tuple[torch.Tensor, torch.Tensor]], loss_scale: float) -> list[torch.Tensor]:
        """`total` (None: nothing yet) plus the gradient of `model`'s loss on each of `batches`. fp16: each loss is
        scaled by `loss_scale` for its backward, as step 0's own was, and its gradient unscaled."""
        for x, y in batches:
            with self.precision.autocast(self.device):
                loss = cross_entropy(model(x), y)
            grads = list(torch.autograd.grad(loss * loss_scale, params, allow_unused=True, materialize_grads=True))
            if loss_scale != 1.0:
                torch._foreach_div_(grads, loss_scale)
            if total is None:
                total = grads
            else:
                torch._foreach_add_(total, grads)
        return total

    def measure_init_draws(self, stats: probes.StepStats, batches: list[tuple[torch.Tensor, torch.Tensor]],
                           loss_scale: float) -> None:
        """Step 0's rows of `init_draws` initialisations, written at once. Draw 0 is the run's own model (its
        step-0 `stats`); each further draw is the same model built from a seed of its own, measured on step 0's
        batches as the run's model was, then freed."""
        layer_rows = records.init_draw_layer_rows(self.layout, 0, stats)
        grad_rows = records.init_draw_grad_norm_rows(self.layout, 0, stats)
        for draw in range(1, self.config["init_draws"]):
            model = self.draw_model(draw)
            layout = probes.ParamLayout(model)
            draw_stats = self.init_stats(model, layout, batches, loss_scale)
            layer_rows += records.init_draw_layer_rows(layout, draw, draw_stats)
            grad_rows += records.init_draw_grad_norm_rows(layout, draw, draw_stats)
            del model, layout  # before the next draw is built
        self.recorder.log_init_draws(layer_rows, grad_rows)

    def draw_model(self, draw: int) -> torch.nn.Module:
        """Init draw `draw`'s model, its weights drawn from torch's CPU generator seeded by `init_draw_seed`.
        The generator's state is put back afterwards: the run's own random streams never see the draws."""
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(init_draw_seed(self.config["seed"], draw))
            return models.build(models.model_keys(self.config), self.task.spec).to(self.device)

    def init_stats(self, model: torch.nn.Module, layout: probes.ParamLayout,
                   batches: list[tuple[torch.Tensor, torch.Tensor]], loss_scale: float) -> probes.StepStats:
        """What step 0 measures, for `model` at init: norms of the gradient averaged over `batches`, and the
        block probes' means over the same batches."""
        with probes.capture(model) as blocks:
            total = self.add_gradients(None, model, layout.params, batches, loss_scale)
        mean = torch._foreach_div(total, float(len(batches))) if len(batches) > 1 else total
        return probes.step_stats(layout, probes.grad_norms(mean), unscaled(blocks.values(), loss_scale))

    def measure(self, step: int, param_grad_norms: torch.Tensor, blocks: probes.BlockCapture,
                update: probes.UpdateTracker, loss_scale: float = 1.0) -> probes.StepStats:
        """The logged step's probes, brought to the host in one copy; keeps the end-of-run profile.
        `loss_scale`: fp16's scale of this step's loss, which the activation gradients still carry."""
        values = unscaled(blocks.values(), loss_scale)
        stats = probes.step_stats(self.layout, param_grad_norms, {**values, "update_ratio": update.ratio})
        if step == 0:
            self.profile.init = stats.block_grad_norms
            self.summary.init_grad_ratio = _ratio(self.last_stack(stats.block_grad_norms))
        self.profile.last, self.profile.last_step = stats.block_grad_norms, step
        self.profile.hidden_rms = stats.blocks["hidden_rms"]
        self.profile.act_grad_norm = stats.blocks["act_grad_norm"]
        return stats

    def last_stack(self, block_values: list[float]) -> list[float]:
        """The values of the last stack's blocks (the decoder's; every block in a single-stack model)."""
        last = self.layout.block_stacks[-1]
        return [value for value, stack in zip(block_values, self.layout.block_stacks) if stack == last]

    def record(self, step, loss, val_loss, val_acc, lr, stats, start, flush: bool = True) -> None:
        """Append this step's row to metrics.csv, and rows to grad_norms.csv and layers.csv when logged."""
        row = {"step": step, "loss": loss, "val_loss": val_loss, "lr": lr,
               "grad_norm": stats.grad_norm if stats else None, "elapsed_s": round(time.perf_counter() - start, 4)}
        if self.task.spec.accuracy:
            row[ACCURACY_COLUMN] = val_acc
        grad_rows, layer_rows = ([], []) if stats is None else (records.grad_norm_rows(self.layout, step, stats),
                                                                 records.layer_rows(self.layout, step, stats))
        self.recorder.log(row, grad_rows, layer_rows, flush)
        if not flush:  # listeners hear the logged, evaluated and diverging steps; other rows are metrics.csv's
            return
        for listener in self.listeners:
            listener.log(row, grad_rows, layer_rows)


def _ratio(block_norms: list[float]) -> float | None:
    """Last block's gradient norm over the first's."""
    if not block_norms or block_norms[0] == 0 or not math.isfinite(block_norms[0]):
        return None
    return block_norms[-1] / block_norms[0]


def unscaled(block_values: dict[str, torch.Tensor], loss_scale: float) -> dict[str, torch.Tensor]:
    """The block probes with fp16's `loss_scale` taken out of the activation gradients, which carry it."""
    if loss_scale == 1.0 or "act_grad_norm" not in block_values:
        return block_values
    return {**block_values, "act_grad_norm": block_values["act_grad_norm"] / loss_scale}


def init_draw_seed(seed: int, draw: int) -> int:
    """Seed of init draw `draw`'s weights (draw ≥ 1; draw 0 is the run's own model): a stream of its own per
    draw, apart from every seed's training data and weights."""
    return int(np.random.SeedSequence([seed, INIT_DRAWS_STREAM, draw]).generate_state(1)[0])


def init_batches_seed(seed: int) -> int:
    """Seed of the extra init_batches batches: a stream of its own, apart from every seed's training data."""
    return int(np.random.SeedSequence([seed, INIT_BATCHES_STREAM]).generate_state(1)[0])


def previous_resumes(run_dir: Path) -> int:
    """How often the run in `run_dir` was continued before (its summary.json's count)."""
    resumes = (read_json(Path(run_dir) / SUMMARY_JSON) or {}).get("resumes")
    return resumes if isinstance(resumes, int) and resumes > 0 else 0


def run(config: dict[str, Any], run_dir: Path | str, progress: Progress | None = None,
        job: dict[str, Any] | None = None, resume: bool = False, task: tasks.Task | None = None,
        continuation: checkpoint.Continuation | None = None) -> dict[str, Any]:
    """Train one run of `config` (a resolved config as a plain dict) into `run_dir`; return its summary.
    `resume`: continue the run already in `run_dir` from its checkpoint (from step 0 when it has none).
    `task`: the config's task, when the caller built it already (checking the config). `continuation`: with
    `resume`, the checkpoint when the caller read and checked it already (else the trainer reads it)."""
    return Trainer(config, Path(run_dir), progress, job, resume, task, continuation).run()

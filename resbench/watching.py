"""resbench's probes on your own model, inside your own training loop: `resbench.watch`.

    w = resbench.watch(model, blocks="transformer.h", run_dir="runs/mine", log_every=10)
    for x, y in batches:
        loss = loss_fn(model(x), y)
        w.step(loss, optimizer)      # backward, probes (logged steps only), optimizer.step(), zero_grad
    w.close()

Or around your own backward and update (gradient clipping, a GradScaler, accumulation):

        loss.backward()
        w.after_backward(loss)       # gradient norms, before clipping or the update touch them
        with w.tracking_update():    # update ratio; the step's rows are written when it exits
            optimizer.step()

The run dir gets the files of a resbench run (config.yaml, metrics.csv, grad_norms.csv, layers.csv,
summary.json; `tb/` with `logger="tensorboard"`), so `resbench report DIR` works on it. The cost rules
are the trainer's: block hooks exist only during logged steps (armed when the previous step ends), the
gradient norms and probes of a logged step reach the host in one copy, and an unlogged step touches
nothing but a counter.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import loggers, probes, records
from .records import RunRecorder, config_hash
from .schema import LAYER_COLUMNS, METRIC_COLUMNS, Status, Summary

FINAL_LOSS_WINDOW = 10  # final_loss: the mean of the last 10 logged losses (unlogged losses are never read)


def resolve_blocks(model: nn.Module, blocks: str | Sequence[nn.Module]) -> list[nn.Module]:
    """The residual blocks: a dotted path to a container of them (`"transformer.h"`) or a list of modules."""
    if isinstance(blocks, str):
        try:
            container = model.get_submodule(blocks)
        except AttributeError:
            children = ", ".join(name for name, _ in model.named_children()) or "none"
            raise ValueError(f"blocks={blocks!r}: no such submodule; the model's top-level modules: {children}") from None
        found = list(container.children())
    else:
        found = list(blocks)
    if not found:
        raise ValueError(f"blocks={blocks!r}: no blocks in it (give a ModuleList/Sequential or a list of modules)")
    inside = {id(module) for module in model.modules()}
    strangers = [i for i, module in enumerate(found) if not isinstance(module, nn.Module) or id(module) not in inside]
    if strangers:
        raise ValueError(f"blocks: item {strangers[0]} is not a submodule of the model")
    return found


class Watch:
    """Probes on `blocks` of `model`, written step by step into `run_dir` (see the module's docstring)."""

    def __init__(self, model: nn.Module, blocks: str | Sequence[nn.Module], run_dir: str | Path, log_every: int = 10,
                 config: dict[str, Any] | None = None, logger: str = "none"):
        if not (isinstance(log_every, int) and log_every >= 1):
            raise ValueError(f"log_every must be an integer >= 1, got {log_every!r}")
        self.model, self.blocks = model, resolve_blocks(model, blocks)
        self.log_every = log_every
        self.layout = probes.ParamLayout(model, self.blocks)
        self.config = {"model": {"name": type(model).__name__, "depth": len(self.blocks),
                                 "blocks": blocks if isinstance(blocks, str) else None},
                       "depth": len(self.blocks), "log_every": log_every, "logger": logger, **(config or {})}
        self.run_dir = Path(run_dir)
        self.listeners = loggers.build(self.config, self.run_dir)
        self.recorder = RunRecorder(self.run_dir, self.config, METRIC_COLUMNS, LAYER_COLUMNS)
        self.summary = Summary(n_params=sum(p.numel() for p in model.parameters()),
                               config_hash=config_hash(self.config), device=str(self.layout.params[0].device))
        self.recorder.write_summary(self.summary)
        self.step_index = 0
        self._losses: deque[float] = deque(maxlen=FINAL_LOSS_WINDOW)
        self._start = time.perf_counter()
        self._hooks: ExitStack | None = None
        self._capture: probes.BlockCapture | None = None
        self._grad_norms: torch.Tensor | None = None
        self._loss: torch.Tensor | None = None
        self._closed = False
        self._arm()

    # ---- the loop ------------------------------------------------------------------------------------

    @property
    def logged(self) -> bool:
        """Whether the current step is a logged one (step 0 and every `log_every`-th)."""
        return self.step_index % self.log_every == 0

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """One training step from its loss: backward, probes, `optimizer.step()`, `optimizer.zero_grad()`."""
        loss.backward()
        self.after_backward(loss)
        with self.tracking_update(optimizer):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def after_backward(self, loss: torch.Tensor | None = None) -> None:
        """After `loss.backward()`: on a logged step, the gradient norms (still on the device)."""
        if self.logged:
            self._loss = None if loss is None else loss.detach()
            self._grad_norms = probes.grad_norms(self.layout.grads())
            self._disarm()

    @contextmanager
    def tracking_update(self, optimizer: torch.optim.Optimizer | None = None) -> Iterator[None]:
        """Around `optimizer.step()`: the per-block update ratio on logged steps; the step's rows at exit."""
        with probes.track_update(self.layout, active=self.logged and self._grad_norms is not None) as update:
            yield
        if self.logged and self._grad_norms is not None:
            self._record(update, optimizer)
        self.step_index += 1
        self.summary.steps_done = self.step_index
        self._arm()

    # ---- hooks only on logged steps ------------------------------------------------------------------

    def _arm(self) -> None:
        if self.logged and self._hooks is None and not self._closed:
            self._hooks = ExitStack()
            self._capture = self._hooks.enter_context(probes.capture(self.model, active=True, modules=self.blocks))

    def _disarm(self) -> None:
        if self._hooks is not None:
            self._hooks.close()
            self._hooks = None

    def _record(self, update: probes.UpdateTracker, optimizer: torch.optim.Optimizer | None) -> None:
        captured = self._capture.values() if self._capture is not None else {}
        stats = probes.step_stats(self.layout, self._grad_norms, {**captured, "update_ratio": update.ratio})
        loss = self._loss.float().item() if self._loss is not None else None
        if loss is not None:
            self._losses.append(loss)
        step = self.step_index
        if step == 0 and stats.block_grad_norms and stats.block_grad_norms[0]:
            self.summary.init_grad_ratio = stats.block_grad_norms[-1] / stats.block_grad_norms[0]
        lr = optimizer.param_groups[0].get("lr") if optimizer is not None else None
        row = {"step": step, "loss": loss, "lr": lr, "grad_norm": stats.grad_norm,
               "elapsed_s": round(time.perf_counter() - self._start, 4)}
        grad_rows = records.grad_norm_rows(self.layout, step, stats)
        layer_rows = records.layer_rows(self.layout, step, stats)
        self.recorder.log(row, grad_rows, layer_rows)
        for listener in self.listeners:
            listener.log(row, grad_rows, layer_rows)
        finite = [value for value in self._losses if math.isfinite(value)]
        self.summary.final_loss = sum(finite) / len(finite) if finite else None
        self._grad_norms = self._loss = None
        if not math.isfinite(stats.grad_norm) or (loss is not None and not math.isfinite(loss)):
            self.summary.status = Status.DIVERGED  # the user's loop decides whether to go on; close() keeps it

    # ---- the end -------------------------------------------------------------------------------------

    def close(self, status: str | None = None, error: str | None = None) -> dict[str, Any]:
        """Remove any hooks, close the files and write the final summary.json; returns it."""
        if self._closed:
            return self.summary.to_dict()
        self._closed = True
        self._disarm()
        if status is not None:
            self.summary.status = status
        elif self.summary.status == Status.RUNNING:
            self.summary.status = Status.COMPLETED
        self.summary.update(error=error, wall_s=round(time.perf_counter() - self._start, 3))
        self.recorder.close(self.summary)
        summary = self.summary.to_dict()
        for listener in self.listeners:
            listener.close(summary)
        return summary

    def __enter__(self) -> Watch:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        elif issubclass(kind, KeyboardInterrupt):
            self.close(Status.INTERRUPTED)
        else:
            self.close(Status.FAILED, f"{kind.__name__}: {value}")


def watch(model: nn.Module, blocks: str | Sequence[nn.Module], run_dir: str | Path, log_every: int = 10,
          config: dict[str, Any] | None = None, logger: str = "none") -> Watch:
    """Attach resbench's probes to `model`'s residual `blocks` (a dotted path like `"transformer.h"` or a
    list of modules); rows go into `run_dir` as a resbench run's files.

    `config`: anything you want recorded in config.yaml (and grouped by in `resbench report`), e.g.
    `{"norm": "pre", "lr": 3e-4}`. `logger="tensorboard"` also writes `run_dir/tb/`. Use it as a context
    manager, or call `close()` at the end; a step is `w.step(loss, optimizer)`.
    """
    return Watch(model, blocks, run_dir, log_every, config, logger)

"""resbench's probes in PyTorch Lightning: a Callback that records a resbench run as `Trainer.fit` trains.

    from resbench.integrations.lightning import ResbenchCallback
    trainer = lightning.Trainer(callbacks=[ResbenchCallback(blocks="model.transformer.h", run_dir="runs/lit")])

The run dir gets the files `resbench.watch` writes (so `resbench report DIR` reads it), from Lightning's own
hooks: the gradient norms in `on_before_optimizer_step`, where Lightning's precision plugin has unscaled the
gradient (16-mixed) and has clipped nothing yet, once per optimizer step (the accumulated gradient); the
update ratio around the optimizer step; the loss as the sum of the backward losses of the step (Lightning
divides each by accumulate_grad_batches). A step's index is Lightning's `global_step`. The run ends
`completed` with `on_train_end`, `interrupted` on Ctrl-C or SIGTERM, `failed` (with the error) on any other
exception. Only the global-zero process records.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resbench.integrations import require
from resbench.loggers import Row, step_scalars
from resbench.watching import Watch, ending, scale_of

pl = require("lightning.pytorch", "lightning", "resbench.integrations.lightning")
from lightning.pytorch.utilities.exceptions import SIGTERMException

LIGHTNING_PREFIX = "resbench/"  # the per-block scalars' names in Lightning's logger: resbench/grad_norm/block_03


class LightningLoggerBridge:
    """A step listener that hands each logged step's per-block scalars to the Lightning loggers in use."""

    def __init__(self, loggers: Sequence[Any], n_blocks: int):
        self.loggers, self.n_blocks = list(loggers), n_blocks

    def log(self, metrics: Row, grad_norms: Sequence[Row], layers: Sequence[Row]) -> None:
        scalars = {LIGHTNING_PREFIX + tag: value for tag, value in step_scalars(metrics, layers, self.n_blocks).items()}
        for logger in self.loggers:
            logger.log_metrics(scalars, step=int(metrics["step"]))

    def close(self, summary: Row) -> None:
        """Lightning finalizes its own loggers."""


class ResbenchCallback(pl.Callback):
    """Probes on the `blocks` of the LightningModule being fitted (a dotted path from the module, e.g.
    `"model.transformer.h"`, or a list of modules), recorded into `run_dir` every `log_every` optimizer
    steps. `config`: anything to record in config.yaml. `logger="tensorboard"`: resbench's own event files
    in `run_dir/tb/`. `log_to_lightning`: also log the per-block scalars (`resbench/grad_norm/block_03`, …)
    to the Lightning loggers of the trainer."""

    def __init__(self, blocks: str | Sequence[nn.Module], run_dir: str | Path, log_every: int = 10,
                 config: dict[str, Any] | None = None, logger: str = "none", log_to_lightning: bool = False):
        if not (isinstance(log_every, int) and log_every >= 1):
            raise ValueError(f"log_every must be an integer >= 1, got {log_every!r}")
        self.blocks, self.run_dir, self.log_every = blocks, Path(run_dir), log_every
        self.config, self.logger, self.log_to_lightning = config or {}, logger, log_to_lightning
        self.watch: Watch | None = None
        self._loss: torch.Tensor | None = None  # this step's backward losses, summed (logged steps only)
        self._stepping = False  # between on_before_optimizer_step and the end of its batch

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        config = {"integration": "lightning", "precision": str(trainer.precision),
                  "accumulate_grad_batches": trainer.accumulate_grad_batches,
                  "gradient_clip_val": trainer.gradient_clip_val, **self.config}
        self.watch = Watch(pl_module, self.blocks, self.run_dir, self.log_every, config, self.logger,
                           start_step=trainer.global_step)
        if self.log_to_lightning and trainer.loggers:
            self.watch.listeners.append(LightningLoggerBridge(trainer.loggers, len(self.watch.blocks)))

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if self.watch is not None and self.watch.logged:
            self._loss = loss.detach() if self._loss is None else self._loss + loss.detach()

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self.watch is None or self._stepping:  # several optimizers: the first one's step is recorded
            return
        self._stepping = True
        scaler = getattr(trainer.precision_plugin, "scaler", None)  # 16-mixed: the activation gradients' scale
        self.watch.gradients_ready(self._loss, loss_scale=scale_of(scaler), overflow_skips=scaler is not None)
        self.watch.begin_update(optimizer)
        self._loss = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.watch is not None and self._stepping:
            self._stepping = False
            self.watch.end_update(next_step=trainer.global_step)  # one per optimizer stepped

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close(*ending(exception, interrupts=(SIGTERMException,)))

    def _close(self, status: str | None = None, error: str | None = None) -> None:
        if self.watch is not None:
            self.watch.close(status, error)
            self.watch = None

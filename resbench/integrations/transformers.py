"""resbench's probes in Hugging Face's `Trainer`: a TrainerCallback that records a resbench run as it trains.

    from resbench.integrations.transformers import ResbenchCallback
    callback = ResbenchCallback(run_dir="runs/gpt2", log_every=10)     # blocks found by the model's kind
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    with callback:                       # optional: records `failed` / `interrupted` if training raises
        trainer.train()

The run dir gets the files `resbench.watch` writes, so `resbench report DIR` reads it. The Trainer clips the
gradient before its `on_pre_optimizer_step`, so the gradient norms are read as each backward through the
model ends (resbench.watching): the last read before the optimizer step is of the accumulated gradient,
unclipped, once per optimizer step with `gradient_accumulation_steps > 1`; an fp16 loss scaler's scale (the
Accelerate optimizer's) is divided out. The update ratio is measured around the optimizer step, and the loss
of a logged step is read from the model's output (`loss`): the sum of the micro-batches' losses when the
Trainer passed `num_items_in_batch` (each is then a share of the step's loss), else their mean. A step's
index is the Trainer's `global_step`. Only the main process records.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resbench.integrations import require
from resbench.watching import Watch, ending

transformers = require("transformers", "transformers", "resbench.integrations.transformers")

# Where a transformers model keeps its residual blocks, as a path inside its base model (`model.base_model`),
# tried in this order; the families that use each.
BLOCK_PATHS = {
    "h": "GPT-2, GPT-Neo, GPT-J, BLOOM, Falcon",
    "encoder.layer": "BERT, RoBERTa, ELECTRA, DeBERTa",
    "layers": "Llama, Mistral, Qwen, Gemma, Phi",
    "decoder.layers": "OPT, BART-style decoders",
}


def find_blocks(model: nn.Module) -> str:
    """The dotted path (from `model`) of its residual blocks, by where its kind keeps them (BLOCK_PATHS)."""
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    base, lead = (base, f"{prefix}.") if isinstance(base, nn.Module) else (model, "")
    for path in BLOCK_PATHS:
        try:
            container = base.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(container, nn.ModuleList) and len(container):
            return lead + path
    lists = [f"{name} ({len(module)})" for name, module in model.named_modules()
             if isinstance(module, nn.ModuleList) and len(module)]
    raise ValueError(f"blocks=None: {type(model).__name__} keeps no blocks where resbench looks "
                     f"({', '.join(BLOCK_PATHS)}); give blocks='...', e.g. one of its ModuleLists: "
                     f"{', '.join(lists) or 'none'}")


class ResbenchCallback(transformers.TrainerCallback):
    """Probes on the residual `blocks` of the model a Trainer trains (a dotted path from the model, a list
    of modules, or None: found by the model's kind, see BLOCK_PATHS), recorded into `run_dir` every
    `log_every` optimizer steps. `config`: anything to record in config.yaml; `logger="tensorboard"`:
    resbench's event files in `run_dir/tb/`."""

    def __init__(self, run_dir: str | Path, blocks: str | Sequence[nn.Module] | None = None, log_every: int = 10,
                 config: dict[str, Any] | None = None, logger: str = "none"):
        if not (isinstance(log_every, int) and log_every >= 1):
            raise ValueError(f"log_every must be an integer >= 1, got {log_every!r}")
        self.run_dir, self.blocks, self.log_every = Path(run_dir), blocks, log_every
        self.config, self.logger = config or {}, logger
        self.watch: Watch | None = None
        self._losses: list[torch.Tensor] = []  # the model's loss of each micro-batch of a logged step
        self._loss_summed = False  # the micro-batch losses are shares of the step's (num_items_in_batch)
        self._loss_hook: Any = None

    def on_train_begin(self, args, state, control, model: nn.Module | None = None, **kwargs) -> None:
        if not state.is_world_process_zero:
            return
        blocks = self.blocks if self.blocks is not None else find_blocks(model)
        config = {"integration": "transformers", "model_type": getattr(getattr(model, "config", None), "model_type", None),
                  "gradient_accumulation_steps": args.gradient_accumulation_steps,
                  "max_grad_norm": args.max_grad_norm, "bf16": args.bf16, "fp16": args.fp16, **self.config}
        self.watch = Watch(model, blocks, self.run_dir, self.log_every, config, self.logger,
                           start_step=state.global_step)

    def on_step_begin(self, args, state, control, model: nn.Module | None = None, **kwargs) -> None:
        """The first micro-batch of an optimizer step: on a logged step, the model's loss is read."""
        if self.watch is not None and self.watch.logged and self._loss_hook is None:
            self._losses = []
            self._loss_hook = model.register_forward_hook(self._take_loss, with_kwargs=True)

    def _take_loss(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        loss = output.get("loss") if isinstance(output, dict) else None
        if torch.is_grad_enabled() and module.training and isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach())
            self._loss_summed = kwargs.get("num_items_in_batch") is not None

    def on_pre_optimizer_step(self, args, state, control, optimizer: Any = None, **kwargs) -> None:
        if self.watch is None:
            return
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        loss = None
        if self._losses:
            loss = torch.stack(self._losses).sum() if self._loss_summed else torch.stack(self._losses).mean()
        self.watch.after_backward(loss, scaler=getattr(optimizer, "scaler", None))
        self.watch.begin_update(optimizer)

    def on_optimizer_step(self, args, state, control, **kwargs) -> None:
        if self.watch is not None:
            self.watch.end_update()

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self.close()

    def close(self, status: str | None = None, error: str | None = None) -> None:
        """End the run (completed unless said otherwise); the Trainer's on_train_end does this."""
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        if self.watch is not None:
            self.watch.close(status, error)
            self.watch = None

    def __enter__(self) -> ResbenchCallback:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(*ending(value))

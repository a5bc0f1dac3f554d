"""Numeric precision of a run: fp32, or a torch.autocast forward in bf16 or fp16 (fp16 with a gradient scaler).

The weights, the optimizer state and the gradients stay fp32 in every mode; autocast only lowers the
precision of the forward's matmuls. fp16's narrow exponent flushes small gradients to zero, so its loss is
scaled up before backward and the gradients are unscaled (in place, to fp32) before anything reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch


def _bf16_runs_on(device: torch.device) -> bool:
    return device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())


@dataclass(frozen=True)
class Precision:
    name: str
    dtype: torch.dtype | None  # autocast dtype of the forward; None: no autocast (plain fp32)
    scaled: bool = False  # a GradScaler scales the loss; a non-finite gradient then skips the step
    runs_on: Callable[[torch.device], bool] = lambda device: True

    def autocast(self, device: torch.device) -> AbstractContextManager:
        """The forward's context: torch.autocast at this precision, or nothing for fp32."""
        return nullcontext() if self.dtype is None else torch.autocast(device.type, dtype=self.dtype)

    def scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """fp16's loss scaler; disabled (scale, unscale_ and update do nothing) in the other modes."""
        return torch.amp.GradScaler(device.type, enabled=self.scaled)


PRECISIONS = {  # keyed by registries.PRECISIONS
    "fp32": Precision("fp32", None),
    "bf16": Precision("bf16", torch.bfloat16, runs_on=_bf16_runs_on),
    "fp16": Precision("fp16", torch.float16, scaled=True),
}


def pick_precision(name: str, device: torch.device) -> Precision:
    """The precision `name` on `device`; ValueError (one line) when that device cannot run it."""
    precision = PRECISIONS[name]
    if not precision.runs_on(device):
        runnable = [key for key, candidate in PRECISIONS.items() if candidate.runs_on(device)]
        raise ValueError(f"precision={name} cannot run on {device} "
                         f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else device.type}); "
                         f"valid choices there: {', '.join(runnable)}")
    return precision

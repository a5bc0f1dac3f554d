"""Probes: pure functions over tensors, and the thin layer that decides when they run.

All numbers of a logged step are computed on the device and brought to the host in one copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

_BLOCK_PARAM = re.compile(r"^blocks\.(\d+)\.(.+)$")


def grad_norms(grads: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of every gradient tensor, in one batched kernel: (P,)."""
    return torch.stack(torch._foreach_norm(grads))


def group_norms(norms: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """L2 norm over the members of each group, from the members' norms: (n_groups,)."""
    squares = torch.zeros(n_groups, dtype=norms.dtype, device=norms.device)
    return squares.index_add_(0, group, norms.square()).sqrt()


class ParamLayout:
    """Every parameter with its block index (None outside the blocks) and its readable name."""

    def __init__(self, model: nn.Module):
        self.n_blocks = len(model.blocks)
        self.params: list[nn.Parameter] = []
        self.layers: list[int | None] = []
        self.names: list[str] = []
        for name, param in model.named_parameters():
            match = _BLOCK_PARAM.match(name)
            self.params.append(param)
            self.layers.append(int(match.group(1)) if match else None)
            self.names.append(match.group(2) if match else name)
        # Parameters outside the blocks go to an extra bucket n_blocks, dropped from block rows.
        device = self.params[0].device
        self.group = torch.tensor([self.n_blocks if layer is None else layer for layer in self.layers],
                                  device=device)

    def grads(self) -> list[torch.Tensor]:
        return [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]


@dataclass
class StepStats:
    """The host-side numbers of one logged step."""

    param_grad_norms: list[float]  # one per parameter tensor, in ParamLayout order
    block_grad_norms: list[float]  # one per block
    grad_norm: float  # over all parameters


def gradient_stats(layout: ParamLayout, grads: list[torch.Tensor]) -> StepStats:
    """Per-parameter, per-block and total gradient norms with a single device-to-host copy."""
    param_norms = grad_norms(grads)
    block_norms = group_norms(param_norms, layout.group, layout.n_blocks + 1)[: layout.n_blocks]
    total = param_norms.square().sum().sqrt()
    host = torch.cat([param_norms, block_norms, total[None]]).tolist()  # the one copy
    n_params = len(layout.params)
    return StepStats(host[:n_params], host[n_params:-1], host[-1])

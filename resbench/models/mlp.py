"""Residual MLP: input projection, `depth` blocks of fc1 → ReLU → fc2, (final norm), classification head.

The classic small residual network: with width 100 and depth 2 it is the textbook two hidden layers
of 100 units with normalization and skips. Inputs of shape (B, T, F) (e.g. an image's rows) are
flattened to one vector of T·F features per example.
"""

from __future__ import annotations

import torch
from torch import nn

from ..tasks.base import TaskSpec
from .blocks import BlockSpec, MLPBlock
from .norms import make_norm
from .placements import FINAL_NORM


class MLP(nn.Module):
    def __init__(self, spec: BlockSpec, task: TaskSpec, ffn_mult: int = 1):
        super().__init__()
        self.inp = nn.Linear(task.seq_len * task.in_features, spec.width)
        self.blocks = nn.ModuleList(MLPBlock(spec, ffn_mult) for _ in range(spec.depth))
        self.norm_f = make_norm(spec.norm_type, spec.width) if spec.norm in FINAL_NORM else nn.Identity()
        self.head = nn.Linear(spec.width, task.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x.flatten(1))  # (B, T, F) → (B, T·F) → (B, C)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm_f(h))  # (B, n_outputs)

"""Residual forms: how a block's branch output y = f(·) is combined with its input x.

Each takes `scale` (a constant on the skip: DeepNorm's α, `residual_scale`) and `branch` (a constant on the
branch: the depth parametrizations' multiplier, see parametrizations.py); a form that has no place for
one of them refuses any value but 1.
"""

from __future__ import annotations

import torch
from torch import nn


def _unscaled(form: str, branch: float) -> None:
    if branch != 1.0:
        raise ValueError(f"a branch multiplier needs residual=true (a plain skip), got residual={form}")


class Skip(nn.Module):
    """x·scale + branch·y: the identity shortcut (He et al. 2016), its skip scaled by DeepNorm's α and its
    branch by a depth parametrization's multiplier when asked."""

    def __init__(self, scale: float = 1.0, branch: float = 1.0):
        super().__init__()
        self.scale = scale
        self.branch = branch

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.branch != 1.0:
            y = self.branch * y
        return x * self.scale + y if self.scale != 1.0 else x + y


class NoSkip(nn.Module):
    """y alone: a "plain" network without shortcuts."""

    def __init__(self, scale: float = 1.0, branch: float = 1.0):
        super().__init__()
        _unscaled("false", branch)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y


class ReZero(nn.Module):
    """x·scale + α·y with a learnable scalar α initialised to 0 (Bachlechner et al. 2020)."""

    def __init__(self, scale: float = 1.0, branch: float = 1.0):
        super().__init__()
        _unscaled("rezero", branch)
        self.scale = scale
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.alpha * y


# Keyed by registries.RESIDUALS (the `residual` config key reads `true`/`false` through registries.residual_name).
RESIDUALS: dict[str, type[nn.Module]] = {"true": Skip, "false": NoSkip, "rezero": ReZero}

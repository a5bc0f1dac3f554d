"""Residual forms: how a block's branch output y = f(·) is combined with its input x."""

from __future__ import annotations

import torch
from torch import nn


class Skip(nn.Module):
    """x·scale + y: the identity shortcut (He et al. 2016), scaled by DeepNorm's α when asked."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * self.scale + y if self.scale != 1.0 else x + y


class NoSkip(nn.Module):
    """y alone: a "plain" network without shortcuts."""

    def __init__(self, scale: float = 1.0):
        super().__init__()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y


class ReZero(nn.Module):
    """x·scale + α·y with a learnable scalar α initialised to 0 (Bachlechner et al. 2020)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.alpha * y


# Keyed by registries.RESIDUALS (the `residual` config key reads `true`/`false` through registries.residual_name).
RESIDUALS: dict[str, type[nn.Module]] = {"true": Skip, "false": NoSkip, "rezero": ReZero}

"""Normalization layers, by name. A new norm is one entry in NORMS, its name in registries.NORM_TYPES, and one
docs/variants.md row."""

from __future__ import annotations

import math

import torch
from torch import nn


class ScaleNorm(nn.Module):
    """g · x / ‖x‖ with one learned scalar g, initialised to √d (Nguyen & Salazar 2019)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(math.sqrt(dim)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x / x.norm(dim=-1, keepdim=True).clamp_min(self.eps)


class DyT(nn.Module):
    """Dynamic Tanh: γ · tanh(α · x) + β, scalar α (init 0.5), per-channel γ, β (Zhu et al. 2025)."""

    def __init__(self, dim: int, alpha_init: float = 0.5):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(alpha_init))
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * torch.tanh(self.alpha * x) + self.bias


# Keyed by registries.NORM_TYPES.
NORMS: dict[str, type[nn.Module]] = {
    "layernorm": nn.LayerNorm,  # (x − μ)/√(σ² + ε)·γ + β   (Ba et al. 2016)
    "rmsnorm": nn.RMSNorm,  # x / rms(x) · g             (Zhang & Sennrich 2019)
    "scalenorm": ScaleNorm,
    "dyt": DyT,
}


def make_norm(norm_type: str, dim: int) -> nn.Module:
    return NORMS[norm_type](dim)

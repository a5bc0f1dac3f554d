"""Norm placements: each is its equation from REFERENCES.md.

`f` is the branch (attention or FFN), `norm` the sublayer's norm, `norm_out` the extra output
norm that only the sandwich placement has, `skip(x, y)` the residual form (x + y, y, x + α·y).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Placement = Callable[[torch.Tensor, nn.Module, nn.Module, nn.Module, nn.Module], torch.Tensor]


def post(x, f, norm, norm_out, skip):
    """x = N(x + f(x))  (Vaswani et al. 2017)."""
    return norm(skip(x, f(x)))


def pre(x, f, norm, norm_out, skip):
    """x = x + f(N(x))  (Xiong et al. 2020)."""
    return skip(x, f(norm(x)))


def sandwich(x, f, norm, norm_out, skip):
    """x = x + N2(f(N1(x)))  (Ding et al. 2021, CogView; Peri-LN)."""
    return skip(x, norm_out(f(norm(x))))


def no_norm(x, f, norm, norm_out, skip):
    """x = x + f(x): no normalization at all."""
    return skip(x, f(x))


# deepnorm is post-LN whose skip is scaled by α = (2L)^¼ (set in the block's Skip).
PLACEMENTS: dict[str, Placement] = {
    "post": post,
    "pre": pre,
    "sandwich": sandwich,
    "none": no_norm,
    "deepnorm": post,
}

# Placements that end the stack with a final norm before the head.
FINAL_NORM = {"pre", "sandwich"}


def deepnorm_alpha(depth: int) -> float:
    """Skip scale α = (2L)^¼ (Wang et al. 2022, encoder-only/decoder-only constants)."""
    return (2 * depth) ** 0.25


def deepnorm_beta(depth: int) -> float:
    """Init gain β = (8L)^-¼ for FFN, value and output projections (Wang et al. 2022)."""
    return (8 * depth) ** -0.25

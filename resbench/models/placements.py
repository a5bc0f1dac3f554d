"""Norm placements: each is its equation from docs/variants.md.

`f` is the branch (attention or FFN), `norm` the sublayer's norm on the stream, `norm_out` the norm
on the branch's output (sandwich, branch), `skip(x, y)` the residual form (x + y, y, x + α·y).
Which of these norms a placement has, and whether the FFN normalizes its hidden activation, is
NORM_SLOTS: the block builds exactly those and an identity for the rest.
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


def branch(x, f, norm, norm_out, skip):
    """x = x + N2(f(x)) with f's hidden activation normalized by N1 inside the FFN (the seed article):
    FFN x + N2(fc2(N1(act(fc1(x))))), attention x + N(attn(x)); the stream itself is never normalized."""
    return skip(x, norm_out(f(x)))


# Keyed by registries.PLACEMENTS. deepnorm is post-LN whose skip is scaled by α = (2L)^¼ (set in the block's Skip).
PLACEMENTS: dict[str, Placement] = {
    "post": post,
    "pre": pre,
    "sandwich": sandwich,
    "none": no_norm,
    "deepnorm": post,
    "branch": branch,
}

# The norms each placement has in a sublayer: `norm` (stream), `norm_out` (branch output), `hidden`
# (the FFN's hidden activation, between act and fc2).
NORM_SLOTS: dict[str, frozenset[str]] = {
    "post": frozenset({"norm"}),
    "pre": frozenset({"norm"}),
    "sandwich": frozenset({"norm", "norm_out"}),
    "none": frozenset(),
    "deepnorm": frozenset({"norm"}),
    "branch": frozenset({"norm_out", "hidden"}),
}

# Placements that end the stack with a final norm before the head.
FINAL_NORM = {"pre", "sandwich"}


def deepnorm_alpha(depth: int) -> float:
    """Skip scale α = (2L)^¼ (Wang et al. 2022, encoder-only/decoder-only constants)."""
    return (2 * depth) ** 0.25


def deepnorm_beta(depth: int) -> float:
    """Init gain β = (8L)^-¼ for FFN, value and output projections (Wang et al. 2022)."""
    return (8 * depth) ** -0.25


def deepnorm_encoder_decoder(encoder_depth: int, decoder_depth: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """((α, β) of the encoder, (α, β) of the decoder) for N encoder and M decoder layers (Wang et al. 2022,
    Table 1): encoder α = 0.81·(N⁴M)^(1/16), β = 0.87·(N⁴M)^(-1/16); decoder α = (3M)^¼, β = (12M)^-¼."""
    n, m = encoder_depth, decoder_depth
    encoder = (0.81 * (n**4 * m) ** (1 / 16), 0.87 * (n**4 * m) ** (-1 / 16))
    return encoder, ((3 * m) ** 0.25, (12 * m) ** -0.25)

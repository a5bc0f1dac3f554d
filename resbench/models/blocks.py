"""The pieces every residual block is made of: branches (attention, FFN) and the glue around them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registries import residual_name
from .norms import make_norm
from .placements import NORM_SLOTS, PLACEMENTS, deepnorm_alpha
from .residuals import RESIDUALS


@dataclass(frozen=True)
class BlockSpec:
    """The switches a block is built from (every model family shares them)."""

    width: int
    depth: int  # the stack's depth L (DeepNorm's constants depend on it)
    norm: str = "pre"  # placement: a key of PLACEMENTS
    norm_type: str = "layernorm"  # a key of NORMS
    residual: str = "true"  # a key of RESIDUALS
    residual_scale: float = 1.0
    branch: float = 1.0  # multiplier on every branch: a depth parametrization's (parametrizations.py)
    alpha: float | None = None  # DeepNorm's α where it is not (2L)^¼ (an encoder–decoder's stacks)

    @property
    def skip_scale(self) -> float:
        if self.norm != "deepnorm":
            return self.residual_scale
        return self.alpha if self.alpha is not None else deepnorm_alpha(self.depth)

    def norm_in(self, slot: str, dim: int) -> nn.Module:
        """The norm of `slot` (a NORM_SLOTS name) over `dim` features, or an identity where the placement has none."""
        return make_norm(self.norm_type, dim) if slot in NORM_SLOTS[self.norm] else nn.Identity()

    def sublayer(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(norm, norm_out, skip) for one residual sublayer."""
        skip = RESIDUALS[residual_name(self.residual)](self.skip_scale, self.branch)
        return self.norm_in("norm", self.width), self.norm_in("norm_out", self.width), skip

    def feed_forward(self, ffn_mult: int, activation: nn.Module) -> FeedForward:
        """The FFN branch, with its hidden norm where the placement has one (norm=branch)."""
        hidden = ffn_mult * self.width
        return FeedForward(self.width, hidden, activation, self.norm_in("hidden", hidden))


def check_heads(width: int, heads: int) -> None:
    """Attention splits the width across its heads: refuse a width they do not divide."""
    if width % heads:
        raise ValueError(f"width ({width}) must be divisible by heads ({heads})")


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (q, k, v stacked like nn.MultiheadAttention)."""

    def __init__(self, width: int, heads: int, causal: bool):
        super().__init__()
        check_heads(width, heads)
        self.heads = heads
        self.causal = causal
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=-1)  # 3 × (B, T, C)
        q, k, v = (t.view(batch, tokens, self.heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, nh, T, hs)
        return self.out(y.transpose(1, 2).reshape(batch, tokens, width))


class FeedForward(nn.Module):
    """fc1 → activation → (hidden norm) → fc2; the hidden norm is an identity except under norm=branch."""

    def __init__(self, width: int, hidden: int, activation: nn.Module, norm: nn.Module | None = None):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = activation
        self.norm = norm if norm is not None else nn.Identity()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.norm(self.act(self.fc1(x))))


class TransformerBlock(nn.Module):
    """Attention sublayer then FFN sublayer, each wrapped by the chosen placement.

    `ffn_mult=0` drops the FFN sublayer (and its norm and skip): an attention-only block, the stack
    whose rank collapse Dong et al. 2021 analyse.
    """

    def __init__(self, spec: BlockSpec, heads: int, ffn_mult: int, causal: bool):
        super().__init__()
        self.place = PLACEMENTS[spec.norm]
        self.attn = SelfAttention(spec.width, heads, causal)
        self.ffn = spec.feed_forward(ffn_mult, nn.GELU()) if ffn_mult > 0 else None
        self.norm1, self.norm1_out, self.res1 = spec.sublayer()
        if self.ffn is not None:
            self.norm2, self.norm2_out, self.res2 = spec.sublayer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.place(x, self.attn, self.norm1, self.norm1_out, self.res1)
        if self.ffn is None:
            return x
        return self.place(x, self.ffn, self.norm2, self.norm2_out, self.res2)


class MLPBlock(nn.Module):
    """One FFN sublayer (fc1 → ReLU → fc2) wrapped by the chosen placement."""

    def __init__(self, spec: BlockSpec, ffn_mult: int):
        super().__init__()
        self.place = PLACEMENTS[spec.norm]
        self.ffn = spec.feed_forward(ffn_mult, nn.ReLU())
        self.norm1, self.norm1_out, self.res1 = spec.sublayer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.place(x, self.ffn, self.norm1, self.norm1_out, self.res1)

"""Weight initialization schemes, by name: each takes the built model and its depth."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..registries import AUTO_INIT
from .placements import deepnorm_beta


def _linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def pytorch_default(model: nn.Module, depth: int) -> None:
    """Keep the library defaults (Kaiming-uniform Linear weights, N(0, 1) embeddings)."""


def xavier(model: nn.Module, depth: int) -> None:
    """Xavier-uniform weights and zero biases: the setting of Xiong et al. 2020."""
    for _, linear in _linears(model):
        nn.init.xavier_uniform_(linear.weight)
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)


def small(model: nn.Module, depth: int) -> None:
    """N(0, 0.02) weights, zero biases; each branch's output projection scaled by 1/√(2·depth) (GPT-2)."""
    for name, linear in _linears(model):
        std = 0.02 / math.sqrt(2 * depth) if name.endswith(("attn.out", "cross.out", "ffn.fc2")) else 0.02
        nn.init.normal_(linear.weight, std=std)
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)


@torch.no_grad()
def deepnorm(model: nn.Module, depth: int) -> None:
    """Xavier-normal weights; FFN, value and output projections with gain β = (8L)^-¼ (Wang et al. 2022).

    Query and key projections keep gain 1. q, k and v share the fused qkv matrix (k and v the cross-attention's
    kv), so each part is initialised as the square matrix it stands for. An encoder–decoder names its own β
    per stack (`deepnorm_betas`, Wang et al. 2022, Table 1).
    """
    betas = getattr(model, "deepnorm_betas", {})
    for name, linear in _linears(model):
        beta = betas.get(name.split(".")[0], deepnorm_beta(depth))
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)
        if name.endswith(("attn.qkv", "cross.kv")):
            *query_key, v = linear.weight.chunk(linear.weight.shape[0] // linear.weight.shape[1], dim=0)
            for part in query_key:
                nn.init.xavier_normal_(part)
            nn.init.xavier_normal_(v, gain=beta)
        elif name.endswith(("attn.out", "cross.out", "ffn.fc1", "ffn.fc2")):
            nn.init.xavier_normal_(linear.weight, gain=beta)
        else:
            nn.init.xavier_normal_(linear.weight)


# Keyed by registries.INITS.
INITS: dict[str, Callable[[nn.Module, int], None]] = {
    "pytorch": pytorch_default,
    "xavier": xavier,
    "small": small,
    "deepnorm": deepnorm,
}


def resolve_init(init: str, norm: str) -> str:
    """`auto` means deepnorm's own init under norm=deepnorm, the library defaults otherwise.

    DeepNorm's skip scale and its init belong together: any other pairing is refused.
    """
    if init == AUTO_INIT:
        return "deepnorm" if norm == "deepnorm" else "pytorch"
    if (init == "deepnorm") != (norm == "deepnorm"):
        raise ValueError(
            f"init={init} contradicts norm={norm}: DeepNorm's residual scaling and its init belong "
            "together (norm=deepnorm with init=auto or init=deepnorm)"
        )
    return init

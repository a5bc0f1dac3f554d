"""Model builders: `build(model_cfg, task_spec)` returns an nn.Module whose `blocks` are the residual blocks."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from ..tasks.base import TaskSpec
from .blocks import BlockSpec
from .init import INITS, resolve_init
from .mlp import MLP
from .norms import NORMS
from .placements import PLACEMENTS
from .residuals import RESIDUALS, residual_name
from .transformer import Transformer


def _transformer(spec: BlockSpec, cfg: dict[str, Any], task: TaskSpec) -> nn.Module:
    return Transformer(spec, task, heads=cfg["heads"], ffn_mult=cfg["ffn_mult"])


def _mlp(spec: BlockSpec, cfg: dict[str, Any], task: TaskSpec) -> nn.Module:
    return MLP(spec, task, ffn_mult=cfg["ffn_mult"])


MODELS: dict[str, Callable[[BlockSpec, dict[str, Any], TaskSpec], nn.Module]] = {
    "transformer": _transformer,
    "mlp": _mlp,
}


def block_spec(cfg: dict[str, Any]) -> BlockSpec:
    return BlockSpec(
        width=cfg["width"],
        depth=cfg["depth"],
        norm=cfg["norm"],
        norm_type=cfg["norm_type"],
        residual=residual_name(cfg["residual"]),
        residual_scale=float(cfg["residual_scale"]),
    )


def build(cfg: dict[str, Any], task: TaskSpec) -> nn.Module:
    """Build and initialise the model of `cfg` (the `model` config node) for `task`."""
    model = MODELS[cfg["name"]](block_spec(cfg), cfg, task)
    INITS[resolve_init(cfg["init"], cfg["norm"])](model, cfg["depth"])
    return model


__all__ = ["build", "block_spec", "MODELS", "NORMS", "PLACEMENTS", "RESIDUALS", "INITS", "BlockSpec"]

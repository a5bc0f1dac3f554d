"""Depth parametrizations: how a residual stack's branch multiplier, Adam learning rate and ε, and init
scale with its depth L, so that the learning rate tuned at a base depth L_base stays the best one.

Each entry of DEPTH_PARAMS is a column of Dey et al. 2025 ("Don't be lazy: CompleteP enables
compute-efficient deep transformers"), Table 1, read at a fixed width (their width multiplier m_N = 1):
each rule is a power of the depth multiplier m_L = L / L_base on the base value, that of the model at L_base.

| exponent of m_L on                          | standard | depth_mup (α = ½) | completep (α = 1) |
|---------------------------------------------|----------|-------------------|-------------------|
| the residual branch: x + m·f(…)             | 0        | −α = −½           | −α = −1           |
| Adam lr of block weights, biases and norms  | 0        | α − 1 = −½        | α − 1 = 0         |
| Adam ε of the block parameters              | 0        | −α = −½           | −α = −1           |
| init variance of block weights              | (scheme) | 0                 | 0                 |
| embeddings, final norm, head: init, lr, ε   | 0        | 0                 | 0                 |

(scheme): the init scheme's own rule at L (init=small: GPT-2's 1/(2L) on the output projections); 0: the
scheme drawn as at L_base. depth_mup is the α = ½ column: the 1/√L branch of Bordelon et al. 2023
("Depthwise Hyperparameter Transfer in Residual Networks") and Depth-µP of Yang et al. 2023 ("Tensor
Programs VI"), whose Adam learning rate of the hidden weights scales as L^-½. completep is α = 1. At
L = L_base every column is the standard model. The rules are stated for a pre-LN stack trained with
Adam(W): `check` refuses what they do not cover.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..registries import STANDARD_DEPTH_PARAM as STANDARD
from .placements import PLACEMENTS


@dataclass(frozen=True)
class DepthParametrization:
    """One rule set: each number is the exponent of m_L = L / L_base on a base value."""

    branch: float  # residual branch multiplier m_L^branch (−α)
    block_lr: float  # Adam learning rate of every parameter inside the blocks: m_L^block_lr (α − 1)
    block_eps: float  # Adam ε of the block parameters: m_L^block_eps (−α)
    init_at_base: bool  # block weights drawn as the init scheme draws them at L_base (variance free of L)


# Keyed by registries.DEPTH_PARAMS.
DEPTH_PARAMS: dict[str, DepthParametrization] = {
    # Dey et al. 2025, Table 1, the SP column: nothing depends on depth but what the init scheme does
    "standard": DepthParametrization(branch=0.0, block_lr=0.0, block_eps=0.0, init_at_base=False),
    # Bordelon et al. 2023; Yang et al. 2023 (Depth-µP); Dey et al. 2025, Table 1 at α = ½
    "depth_mup": DepthParametrization(branch=-0.5, block_lr=-0.5, block_eps=-0.5, init_at_base=True),
    # Dey et al. 2025 (CompleteP), Table 1 at α = 1
    "completep": DepthParametrization(branch=-1.0, block_lr=0.0, block_eps=-1.0, init_at_base=True),
}

# What the rules are stated for (anything else is refused by `check`, naming these).
COVERED_NORMS = ("pre", "sandwich", "branch", "none")  # the stream stays a sum of scaled branches
COVERED_MODELS = ("transformer", "mlp")  # one residual stack
COVERED_OPTIMIZERS = ("adam", "adamw")  # Table 1's learning-rate and ε rules are Adam's
BLOCKS = "blocks"  # the group of every parameter inside the residual blocks
EMBEDDINGS_HEAD = "embeddings_head"  # the group of the rest: embeddings (input projection), final norm, head


def _rules(keys: Mapping[str, Any]) -> DepthParametrization:
    name = keys.get("depth_param", STANDARD)
    if name not in DEPTH_PARAMS:
        raise ValueError(f"depth_param: bad choice {name!r}; valid choices: {', '.join(DEPTH_PARAMS)}")
    return DEPTH_PARAMS[name]


def depth_multiplier(keys: Mapping[str, Any]) -> float:
    """m_L = L / L_base (`depth` / `base_depth`)."""
    return keys["depth"] / keys["base_depth"]


def _scale(keys: Mapping[str, Any], exponent: float) -> float:
    """m_L^exponent, exactly 1.0 for exponent 0 (the standard column never reads base_depth)."""
    return 1.0 if exponent == 0 else depth_multiplier(keys) ** exponent


def branch_multiplier(keys: Mapping[str, Any]) -> float:
    """The residual branch's multiplier: `branch_multiplier` (its value at L_base) × m_L^-α."""
    return keys.get("branch_multiplier", 1.0) * _scale(keys, _rules(keys).branch)


def init_depth(keys: Mapping[str, Any]) -> int:
    """The depth the init scheme is told: L, or L_base where the block init must not change with depth
    (GPT-2's 1/√(2L) on the output projections of init=small then stays at its L_base value)."""
    return keys["base_depth"] if _rules(keys).init_at_base else keys["depth"]


@dataclass(frozen=True)
class ParamGroup:
    """Parameters that share the optimizer's settings, as multiples of the base lr and ε."""

    name: str
    names: tuple[str, ...]  # the parameters' full names (model.named_parameters())
    params: tuple[nn.Parameter, ...]
    lr_scale: float
    eps_scale: float


def param_groups(model: nn.Module, keys: Mapping[str, Any]) -> list[ParamGroup]:
    """The optimizer's groups for the model that `keys` (models.model_keys) built. Under `standard` one group
    of every parameter in model.parameters() order (the optimizer exactly as without groups); else the block
    parameters (weights, biases, norms inside `model.blocks`), their lr and ε scaled, then the rest."""
    named = list(model.named_parameters())
    rules = _rules(keys)
    if rules.block_lr == 0 and rules.block_eps == 0:
        return [_group("all", named, 1.0, 1.0)]
    in_blocks = {id(p) for p in model.blocks.parameters()}
    return [_group(BLOCKS, [(n, p) for n, p in named if id(p) in in_blocks], _scale(keys, rules.block_lr),
                   _scale(keys, rules.block_eps)),
            _group(EMBEDDINGS_HEAD, [(n, p) for n, p in named if id(p) not in in_blocks], 1.0, 1.0)]


def _group(name: str, named: list[tuple[str, nn.Parameter]], lr_scale: float, eps_scale: float) -> ParamGroup:
    return ParamGroup(name, tuple(n for n, _ in named), tuple(p for _, p in named), lr_scale, eps_scale)


def check(keys: Mapping[str, Any], optimizer: str | None = None) -> None:
    """Raise ValueError (one line naming the valid choices) for a combination the rules do not cover.

    A branch multiplier needs a plain skip it can scale (residual=true, residual_scale 1, no DeepNorm α);
    the depth rules further need a stream that is a sum of the branches (pre, sandwich, branch, none:
    post-LN and DeepNorm renormalize it after every block), one residual stack, and Adam.
    """
    name = keys.get("depth_param", STANDARD)
    _rules(keys)
    multiplier = keys.get("branch_multiplier", 1.0)
    if name == STANDARD and multiplier == 1.0:
        return
    subject = f"depth_param={name}" if name != STANDARD else f"branch_multiplier={multiplier:g}"
    _check_skip(subject, keys)
    if name == STANDARD:
        if keys["norm"] == "deepnorm":
            raise ValueError(f"{subject}: norm=deepnorm scales the skip with its own α; valid norms: "
                             f"{', '.join(n for n in PLACEMENTS if n != 'deepnorm')}")
        return
    covered = (("norm", keys["norm"], COVERED_NORMS, "it renormalizes the stream after every block"),
               ("model", keys["name"], COVERED_MODELS, "the rules are for one residual stack"),
               ("train.optimizer", optimizer, COVERED_OPTIMIZERS, "the learning-rate and ε rules are Adam's"))
    for key, value, valid, why in covered:
        if value is not None and value not in valid:
            raise ValueError(f"{subject}: {key}={value} is not covered ({why}); valid: {', '.join(valid)}")


def _check_skip(subject: str, keys: Mapping[str, Any]) -> None:
    residual = str(keys["residual"]).lower()
    if residual != "true":
        raise ValueError(f"{subject} scales the residual branch of a plain skip: needs residual=true, "
                         f"got residual={residual}")
    if keys.get("residual_scale", 1.0) != 1.0:
        raise ValueError(f"{subject} needs the skip unscaled: residual_scale=1, got {keys['residual_scale']:g}")

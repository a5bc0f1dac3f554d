"""Model builders: `build(model_keys(config), task_spec)` returns an nn.Module whose `blocks` are the residual
blocks (an encoder–decoder names its stacks in `stacks`, each holding its own `blocks`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..registries import residual_name
from ..schema import SHARED_MODEL_KEYS
from ..tasks.base import Task, TaskKind, TaskSpec
from ..tasks.pairs import TeacherForced
from .blocks import BlockSpec
from .init import INITS, resolve_init
from .mlp import MLP
from .norms import NORMS
from .parametrizations import DEPTH_PARAMS, ParamGroup, branch_multiplier, init_depth, param_groups
from .parametrizations import check as check_depth_param
from .placements import PLACEMENTS
from .residuals import RESIDUALS
from .seq2seq import Seq2Seq
from .transformer import Transformer


def _transformer(spec: BlockSpec, cfg: dict[str, Any], task: TaskSpec) -> nn.Module:
    return Transformer(spec, task, heads=cfg["heads"], ffn_mult=cfg["ffn_mult"])


def _mlp(spec: BlockSpec, cfg: dict[str, Any], task: TaskSpec) -> nn.Module:
    if cfg["ffn_mult"] < 1:  # the FFN is an MLP block's only sublayer
        raise ValueError(f"model.ffn_mult must be >= 1 for model=mlp, got {cfg['ffn_mult']}")
    return MLP(spec, task, ffn_mult=cfg["ffn_mult"])


def _seq2seq(spec: BlockSpec, cfg: dict[str, Any], task: TaskSpec) -> nn.Module:
    if task.source_len is None:
        raise ValueError("model=seq2seq reads teacher-forced pairs: build its task with models.task_for")
    decoder_depth = cfg.get("decoder_depth") or cfg["depth"]  # null: as deep as the encoder
    return Seq2Seq(spec, task, heads=cfg["heads"], ffn_mult=cfg["ffn_mult"], decoder_depth=decoder_depth)


@dataclass(frozen=True)
class ModelType:
    build: Callable[[BlockSpec, dict[str, Any], TaskSpec], nn.Module]
    accepts: Callable[[TaskKind], bool]  # what it can read
    reads: Callable[[Task], Task] | None = None  # how it reads a task's batches, where not as the task gives them


# The one table of models. The MLP flattens real-valued rows into one vector and predicts one label; the
# encoder–decoder reads a source sequence and a target sequence made from it, teacher-forced.
MODEL_TYPES: dict[str, ModelType] = {
    "transformer": ModelType(_transformer, accepts=lambda kind: True),
    "mlp": ModelType(_mlp, accepts=lambda kind: not kind.token_ids and not kind.per_token),
    "seq2seq": ModelType(_seq2seq, accepts=lambda kind: kind.pairs, reads=TeacherForced),
}
MODELS = {name: model_type.build for name, model_type in MODEL_TYPES.items()}  # the choices of `model`


def model_keys(config: dict[str, Any]) -> dict[str, Any]:
    """What `build` reads from a resolved config: the shared model keys (schema.SHARED_MODEL_KEYS, at
    the root of the config) and the model group's own."""
    return {**{key: config[key] for key in SHARED_MODEL_KEYS if key in config}, **config["model"]}


def task_for(model_name: str, task: Task) -> Task:
    """`task` as model `model_name` reads it (the encoder–decoder: teacher-forced pairs)."""
    reads = MODEL_TYPES[model_name].reads
    return reads(task) if reads is not None else task


def fits(model_name: str, kind: TaskKind) -> bool:
    """Whether model `model_name` can be built for a task of this kind."""
    return MODEL_TYPES[model_name].accepts(kind)


def _known(table: dict[str, Any], key: str, name: str) -> str:
    if name not in table:
        raise ValueError(f"{key}: bad choice {name!r}; valid choices: {', '.join(table)}")
    return name


def block_spec(cfg: dict[str, Any]) -> BlockSpec:
    _known(PLACEMENTS, "norm", cfg["norm"])
    _known(NORMS, "norm_type", cfg["norm_type"])
    _known(RESIDUALS, "residual", residual_name(cfg["residual"]))
    return BlockSpec(
        width=cfg["width"],
        depth=cfg["depth"],
        norm=cfg["norm"],
        norm_type=cfg["norm_type"],
        residual=residual_name(cfg["residual"]),
        residual_scale=float(cfg["residual_scale"]),
        branch=branch_multiplier(cfg),
    )


def build(cfg: dict[str, Any], task: TaskSpec) -> nn.Module:
    """Build and initialise the model that `cfg` (`model_keys(config)`) describes, for `task`."""
    _known(MODELS, "model", cfg["name"])
    if not fits(cfg["name"], task.kind):
        raise ValueError(f"model={cfg['name']} cannot read this task's data ({task.kind})")
    check_depth_param(cfg)
    model = MODEL_TYPES[cfg["name"]].build(block_spec(cfg), cfg, task)
    INITS[_known(INITS, "init", resolve_init(cfg["init"], cfg["norm"]))](model, init_depth(cfg))
    return model


__all__ = [
    "DEPTH_PARAMS",
    "INITS",
    "MODELS",
    "MODEL_TYPES",
    "NORMS",
    "PLACEMENTS",
    "RESIDUALS",
    "SHARED_MODEL_KEYS",
    "BlockSpec",
    "ModelType",
    "ParamGroup",
    "block_spec",
    "build",
    "check_depth_param",
    "fits",
    "model_keys",
    "param_groups",
    "task_for",
]

"""Model builders: `build(model_keys(config), task_spec)` returns an nn.Module whose `blocks` are the residual
blocks (an encoder–decoder names its stacks in `stacks`, each holding its own `blocks`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..tasks.base import Task, TaskKind, TaskSpec
from ..tasks.pairs import TeacherForced
from .blocks import BlockSpec
from .init import INITS, resolve_init
from .mlp import MLP
from .norms import NORMS
from .placements import PLACEMENTS
from .residuals import RESIDUALS, residual_name
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


MODELS: dict[str, Callable[[BlockSpec, dict[str, Any], TaskSpec], nn.Module]] = {
    "transformer": _transformer,
    "mlp": _mlp,
    "seq2seq": _seq2seq,
}


# What each model can read. The MLP flattens real-valued rows into one vector and predicts one label.
ACCEPTS: dict[str, Callable[[TaskKind], bool]] = {
    "transformer": lambda kind: True,
    "mlp": lambda kind: not kind.token_ids and not kind.per_token,
    "seq2seq": lambda kind: kind.pairs,  # a source sequence and a target sequence made from it
}


# How a model reads a task's batches, where not as the task gives them.
READS: dict[str, Callable[[Task], Task]] = {"seq2seq": TeacherForced}


# The keys every model reads from the root of the config; the `model` group holds only a model's own.
SHARED_MODEL_KEYS = ("depth", "width", "heads", "norm", "norm_type", "residual", "residual_scale", "init")


def model_keys(config: dict[str, Any]) -> dict[str, Any]:
    """What `build` reads from a resolved config: the shared model keys and the model group's own."""
    return {**{key: config[key] for key in SHARED_MODEL_KEYS if key in config}, **config["model"]}


def task_for(model_name: str, task: Task) -> Task:
    """`task` as model `model_name` reads it (the encoder–decoder: teacher-forced pairs)."""
    return READS[model_name](task) if model_name in READS else task


def fits(model_name: str, kind: TaskKind) -> bool:
    """Whether model `model_name` can be built for a task of this kind."""
    return ACCEPTS[model_name](kind)


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
    )


def build(cfg: dict[str, Any], task: TaskSpec) -> nn.Module:
    """Build and initialise the model that `cfg` (`model_keys(config)`) describes, for `task`."""
    _known(MODELS, "model", cfg["name"])
    if not fits(cfg["name"], task.kind):
        raise ValueError(f"model={cfg['name']} cannot read this task's data ({task.kind})")
    model = MODELS[cfg["name"]](block_spec(cfg), cfg, task)
    INITS[_known(INITS, "init", resolve_init(cfg["init"], cfg["norm"]))](model, cfg["depth"])
    return model


__all__ = [
    "ACCEPTS",
    "INITS",
    "MODELS",
    "NORMS",
    "PLACEMENTS",
    "RESIDUALS",
    "SHARED_MODEL_KEYS",
    "BlockSpec",
    "block_spec",
    "build",
    "fits",
    "model_keys",
    "task_for",
]

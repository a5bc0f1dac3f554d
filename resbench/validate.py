"""Checks a composed config before anything runs: every problem is one line naming the valid choices.

Keys, types and choices are the typed config's (resbench/config.py, which checks them first and then calls
`validate`); what is here are the ranges of values and the rules across keys, each in this one place, as a
function of the plain config dict alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .models import check_depth_param, fits, model_keys
from .models.blocks import check_heads
from .models.init import resolve_init
from .registries import INSTALL_HINT, RESIDUALS, logger_available, residual_name
from .tasks import FOOTPRINTS, KINDS

ATTENTION_MODELS = ("transformer", "seq2seq")  # models whose width is split across heads
INT64_MAX = 2**63 - 1  # torch sizes and counts are int64
SEED_MAX = 2**64 - 1  # torch.manual_seed takes an unsigned 64-bit seed


class ConfigError(ValueError):
    """Bad input in a config value: the message is the one line the user sees."""


def _integer(minimum: int, maximum: int = INT64_MAX) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if value < minimum:
            raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
        if value > maximum:
            raise ConfigError(f"{key} must be an integer <= {maximum}, got {value!r}")
    return check


def _positive_number(key: str, value: Any) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key} must be a number > 0, got {value!r}")


def _non_negative_number(key: str, value: Any) -> None:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key} must be a number >= 0, got {value!r}")


def _fraction(key: str, value: Any) -> None:
    if not math.isfinite(value) or not 0 < value < 1:
        raise ConfigError(f"{key} must be a number between 0 and 1, got {value!r}")


def _path(key: str, value: Any) -> None:
    if not value.strip():
        raise ConfigError(f"{key} must be a file path, got {value!r}")


def _residual(key: str, value: Any) -> None:
    """The one choice the schema cannot hold: `true`/`false` parse as bools, `rezero` as text."""
    if residual_name(value) not in RESIDUALS:
        raise ConfigError(f"{key}: bad choice {value!r}; valid choices: {', '.join(RESIDUALS)}")


def _logger(key: str, value: Any) -> None:
    if not logger_available(value):
        raise ConfigError(INSTALL_HINT)


# key → range check, for the keys that have one (a null value is the schema's business: none is checked).
RANGES: dict[str, Callable[[str, Any], None]] = {
    "depth": _integer(1),
    "width": _integer(1),
    "heads": _integer(1),
    "residual": _residual,
    "residual_scale": _positive_number,
    "base_depth": _integer(1),
    "branch_multiplier": _positive_number,
    "seed": _integer(0, SEED_MAX),
    "log_every": _integer(1),
    "init_batches": _integer(1),
    "init_draws": _integer(1),
    "logger": _logger,
    "threads": _integer(1),
    "model.ffn_mult": _integer(0),  # 0: attention-only Transformer blocks (checked per model below)
    "model.decoder_depth": _integer(1),
    "task.seq_len": _integer(1),
    "task.val_batches": _integer(1),
    "task.path": _path,
    "task.train_size": _integer(1),
    "task.vocab": _integer(1),
    "task.val_fraction": _fraction,
    "train.steps": _integer(0),
    "train.batch_size": _integer(1),
    "train.lr": _positive_number,
    "train.warmup": _integer(0),
    "train.weight_decay": _non_negative_number,
    "train.clip": _positive_number,
    "train.eval_every": _integer(1),
    "train.checkpoint_every": _integer(1),
}


def _leaves(node: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for name, value in node.items():
        if isinstance(value, dict):
            found += _leaves(value, f"{prefix}{name}.")
        else:
            found.append((f"{prefix}{name}", value))
    return found


# Weight matrices of one block, in units of width²: attention's qkv and out (4) plus the FFN's two
# (2·ffn_mult); the MLP's block is its FFN. A model not listed counts as a Transformer block.
BLOCK_WIDTH_SQUARES: dict[str, Callable[[dict[str, Any]], int]] = {
    "transformer": lambda model: 4 + 2 * model["ffn_mult"],
    "mlp": lambda model: 2 * model["ffn_mult"],
    # an encoder block plus a decoder block (self- and cross-attention) per unit of depth
    "seq2seq": lambda model: 12 + 4 * model["ffn_mult"],
}
# Numbers one block keeps for the backward pass, per example, in a run of `tokens` positions: the stated
# factor of the estimate. A Transformer block keeps about 12 + 2·ffn_mult vectors of `width` per token
# (norm inputs and outputs, q, k, v, attention output, projections, FFN hidden and activation, residual
# sums, the probes' captures) and two heads × tokens attention maps (scores and weights); the MLP's
# block works on one vector per example; a seq2seq unit is an encoder block and a decoder block (self-
# and cross-attention: three maps).
BLOCK_ACTIVATIONS: dict[str, Callable[[dict[str, Any], int], int]] = {
    "transformer": lambda m, tokens: tokens * ((12 + 2 * m["ffn_mult"]) * m["width"] + 2 * m["heads"] * tokens),
    "mlp": lambda m, tokens: (4 + 2 * m["ffn_mult"]) * m["width"],
    "seq2seq": lambda m, tokens: tokens * ((28 + 4 * m["ffn_mult"]) * m["width"] + 6 * m["heads"] * tokens),
}
FLOAT_BYTES = 4  # weights, gradients, optimizer state and activations are float32
VALUE_BYTES = 8  # a batch's numbers: int64 token ids, or float32 pixels with int64 labels (the larger)
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd": 0}  # numbers an optimizer keeps per parameter


def memory_estimate(config: dict[str, Any]) -> dict[str, int]:
    """Bytes a run of `config` needs, by part: the weights with their gradients and optimizer state,
    the activations the training step keeps for its backward pass (blocks × batch × tokens × the
    factor of BLOCK_ACTIVATIONS) plus one block's during validation, and the batches (one training
    batch, the task's data and validation batches: tasks.FOOTPRINTS). Embeddings and the head are left
    out (their size is the task's vocabulary, known once it is read)."""
    model, train = model_keys(config), config["train"]
    name = model["name"] if model["name"] in BLOCK_WIDTH_SQUARES else "transformer"
    blocks = max(model["depth"], model.get("decoder_depth") or 0)  # seq2seq: units of an encoder and a decoder block
    footprint = FOOTPRINTS[config["task"]["name"]](config["task"], train["batch_size"])
    params = model["depth"] * BLOCK_WIDTH_SQUARES[name](model) * model["width"] ** 2
    per_block = BLOCK_ACTIVATIONS[name](model, footprint.tokens) * train["batch_size"] * FLOAT_BYTES
    return {
        "weights, gradients and optimizer state": params * FLOAT_BYTES * (2 + OPTIMIZER_STATES[train["optimizer"]]),
        "activations": blocks * per_block + per_block,
        "batches": (footprint.batch_values * config["init_batches"] + footprint.data_values) * VALUE_BYTES,
    }


# The parts of memory_estimate a run on a GPU holds there; the batches stay in the host's memory.
ON_DEVICE = ("weights, gradients and optimizer state", "activations")
Limit = tuple[int, str]  # bytes, and what sets them ("this machine's memory", …)


def check_fits(config: dict[str, Any], host: Limit | None, device: Limit | None = None) -> None:
    """Refuse (ConfigError) a run whose estimate (memory_estimate) exceeds the memory it will have: with a
    `device` limit (a GPU's) the ON_DEVICE parts against it and the rest against `host`, else all of it
    against `host`; a limit of None checks nothing. It would fail late, swap for ever or be killed, rather
    than say so. The limits are those of the machine the run will run on (config.memory_limits)."""
    parts = memory_estimate(config)
    if device is None:
        budgets = [(parts, host)]
    else:
        budgets = [({part: parts[part] for part in ON_DEVICE}, device),
                   ({part: size for part, size in parts.items() if part not in ON_DEVICE}, host)]
    for counted, limit in budgets:
        needed = sum(counted.values())
        if limit is None or needed <= limit[0]:
            continue
        model = model_keys(config)
        detail = ", ".join(f"{part} {_gib(size)}" for part, size in counted.items())
        raise ConfigError(f"depth={model['depth']} width={model['width']} train.batch_size="
                          f"{config['train']['batch_size']}: the run needs about {_gib(needed)} ({detail}), more "
                          f"than the {_gib(limit[0])} of {limit[1]}")


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB" if size < 2**40 else f"{size / 2**40:,.0f} TiB"


def validate(config: dict[str, Any]) -> None:
    """Raise ConfigError for the first value out of its range or against a rule across keys, in a config
    whose keys, types and choices are already checked (config.check_config checks both)."""
    for key, value in _leaves(config):
        if key in RANGES and value is not None:
            RANGES[key](key, value)
    model = model_keys(config)
    if model["name"] in ATTENTION_MODELS:
        _as_config_error(check_heads, model["width"], model["heads"])
    if model["ffn_mult"] == 0 and model["name"] != "transformer":
        raise ConfigError(f"model.ffn_mult=0 (no FFN sublayer) needs model=transformer; model={model['name']} "
                          "has no other sublayer (use model.ffn_mult >= 1)")
    _as_config_error(resolve_init, model["init"], model["norm"])
    _as_config_error(check_depth_param, model, config["train"]["optimizer"])
    task_name = config["task"]["name"]
    if not fits(model["name"], KINDS[task_name]):
        fitting = [name for name, kind in KINDS.items() if fits(model["name"], kind)]
        raise ConfigError(
            f"model={model['name']} does not fit task={task_name} ({KINDS[task_name]}); "
            f"tasks that fit model={model['name']}: {', '.join(fitting)}"
        )


def _as_config_error(rule: Callable[..., Any], *args: Any) -> None:
    """A rule the model code enforces itself (it raises ValueError), applied before anything is built."""
    try:
        rule(*args)
    except ValueError as err:
        raise ConfigError(str(err)) from None

"""Checks a composed config before anything runs: every problem is one line naming the valid choices.

Keys, types and choices are the typed config's (resbench/config.py, which checks them first and then calls
`validate`); what is here are the ranges of values and the rules across keys, each in this one place, as a
function of the plain config dict alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from .models import check_depth_param, fits, model_keys
from .models.blocks import check_heads
from .models.init import resolve_init
from .registries import INSTALL_HINT, RESIDUALS, logger_available, residual_name
from .tasks import KINDS

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
BYTES_PER_PARAM = 4 * 4  # float32 weights, their gradients and Adam's two moments


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, where the OS tells."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_model_fits_in_memory(model: dict[str, Any]) -> None:
    """Refuse a model whose weights and optimizer state alone exceed this machine's memory: building it
    would fail late or swap for ever, rather than say so."""
    width_squares = BLOCK_WIDTH_SQUARES.get(model["name"], BLOCK_WIDTH_SQUARES["transformer"])(model)
    needed = model["depth"] * width_squares * model["width"] ** 2 * BYTES_PER_PARAM
    memory = physical_memory()
    if memory and needed > memory:
        raise ConfigError(f"depth={model['depth']} width={model['width']}: the model needs about "
                          f"{needed / 2**30:,.0f} GiB for weights, gradients and optimizer state, more than "
                          f"this machine's {memory / 2**30:,.0f} GiB")


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
    _check_model_fits_in_memory(model)
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

"""Checks a composed config before anything runs: every problem is one line naming the valid choices."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from typing import Any

from .loggers import INSTALL_HINT, LOGGERS, logger_available
from .models import INITS, MODELS, NORMS, PLACEMENTS, RESIDUALS, fits
from .models.init import resolve_init
from .models.residuals import residual_name
from .precision import PRECISIONS
from .tasks import KINDS, TASKS


class ConfigError(ValueError):
    """Bad input in a config value: the message is the one line the user sees."""


DEVICES = ("auto", "cpu", "cuda")
ATTENTION_MODELS = ("transformer", "seq2seq")  # models whose width is split across heads
OPTIMIZER_NAMES = ("adam", "adamw", "sgd")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool, NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


INT64_MAX = 2**63 - 1  # torch sizes and counts are int64
SEED_MAX = 2**64 - 1  # torch.manual_seed takes an unsigned 64-bit seed


def _integer(minimum: int, maximum: int = INT64_MAX) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if not _is_int(value) or value < minimum:
            raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
        if value > maximum:
            raise ConfigError(f"{key} must be an integer <= {maximum}, got {value!r}")
    return check


def _positive_number(key: str, value: Any) -> None:
    if not _is_number(value) or value <= 0:
        raise ConfigError(f"{key} must be a number > 0, got {value!r}")


def _non_negative_number(key: str, value: Any) -> None:
    if not _is_number(value) or value < 0:
        raise ConfigError(f"{key} must be a number >= 0, got {value!r}")


def _fraction(key: str, value: Any) -> None:
    if not _is_number(value) or not 0 < value < 1:
        raise ConfigError(f"{key} must be a number between 0 and 1, got {value!r}")


def _path(key: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} must be a file path, got {value!r}")


def _optional(check: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    def optional_check(key: str, value: Any) -> None:
        if value is not None:
            check(key, value)
    return optional_check


def _choice(choices: Any, normalise: Callable[[Any], Any] = lambda v: v) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if normalise(value) not in choices:
            raise ConfigError(f"{key}: bad choice {value!r}; valid choices: {', '.join(map(str, choices))}")
    return check


def _logger(key: str, value: Any) -> None:
    _choice(list(LOGGERS))(key, value)
    if not logger_available(value):
        raise ConfigError(INSTALL_HINT)


# The short model keys, also checked under `model.` for overrides that bypass them (model.norm=...).
MODEL_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "depth": _integer(1),
    "width": _integer(1),
    "heads": _integer(1),
    "norm": _choice(list(PLACEMENTS)),
    "norm_type": _choice(list(NORMS)),
    "residual": _choice(list(RESIDUALS), residual_name),
    "residual_scale": _positive_number,
    "init": _choice(["auto", *INITS]),
}

# key → check: the single gate. Every key of a resolved config must be here (a key added with `+`, or a
# new config key without its check, is refused); keys absent from a config (a task's own keys) are skipped.
CHECKS: dict[str, Callable[[str, Any], None]] = {
    **MODEL_CHECKS,
    "seed": _integer(0, SEED_MAX),
    "log_every": _integer(1),
    "init_batches": _integer(1),
    "device": _choice(DEVICES),
    "precision": _choice(list(PRECISIONS)),
    "logger": _logger,
    "threads": _optional(_integer(1)),
    "model.name": _choice(list(MODELS)),
    **{f"model.{key}": check for key, check in MODEL_CHECKS.items()},
    "model.ffn_mult": _integer(0),  # 0: attention-only Transformer blocks (checked per model below)
    "model.decoder_depth": _optional(_integer(1)),
    "task.name": _choice(list(TASKS)),
    "task.seq_len": _integer(1),
    "task.val_batches": _integer(1),
    "task.path": _optional(_path),
    "task.train_size": _optional(_integer(1)),
    "task.vocab": _integer(1),
    "task.val_fraction": _fraction,
    "train.steps": _integer(0),
    "train.batch_size": _integer(1),
    "train.lr": _positive_number,
    "train.warmup": _integer(0),
    "train.optimizer": _choice(OPTIMIZER_NAMES),
    "train.weight_decay": _non_negative_number,
    "train.clip": _optional(_positive_number),
    "train.eval_every": _integer(1),
    "train.checkpoint_every": _optional(_integer(1)),
}


# Config groups of conf/: chosen by name (model=mlp), their keys checked above.
CONFIG_GROUPS = ("model", "task", "experiment")
GROUP_NODES = ("model", "task", "train")  # nodes of the resolved config that hold keys, not values


def _leaves(node: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every value in the config; a node that is itself a checked key (a dict
    given to task.path, say) is one value, so its check says what is wrong with it."""
    found = []
    for name, value in node.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and key not in CHECKS:
            found += _leaves(value, f"{key}.")
        else:
            found.append((key, value))
    return found


def _unknown_key(key: str) -> ConfigError:
    parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
    siblings = sorted({k[len(parent):] for k in CHECKS if k.startswith(parent) and "." not in k[len(parent):]}
                      | (set(GROUP_NODES) if not parent else set()))
    close = difflib.get_close_matches(key[len(parent):], siblings, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    where = f"in {parent[:-1]} " if parent else ""
    return ConfigError(f"unknown key '{key}'{hint}; valid keys {where}are: {', '.join(siblings)}")


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
    """Raise ConfigError for the first bad value of a resolved config, or for a key it does not know."""
    for group in GROUP_NODES:  # e.g. `train=3` replaces the whole group
        if not isinstance(config.get(group), dict):
            raise ConfigError(f"{group} must be a config group ({group}.KEY=VALUE), got {config.get(group)!r}")
    for key, value in _leaves(config):
        if key not in CHECKS:
            raise _unknown_key(key)
        CHECKS[key](key, value)
    model = config["model"]
    if model["name"] in ATTENTION_MODELS and model["width"] % model["heads"]:
        raise ConfigError(f"width ({model['width']}) must be divisible by heads ({model['heads']})")
    if model.get("ffn_mult") == 0 and model["name"] != "transformer":
        raise ConfigError(f"model.ffn_mult=0 (no FFN sublayer) needs model=transformer; model={model['name']} "
                          "has no other sublayer (use model.ffn_mult >= 1)")
    _check_model_fits_in_memory(model)
    try:
        resolve_init(model["init"], model["norm"])
    except ValueError as err:
        raise ConfigError(str(err)) from None
    task_name = config["task"]["name"]
    if not fits(model["name"], KINDS[task_name]):
        fitting = [name for name, kind in KINDS.items() if fits(model["name"], kind)]
        raise ConfigError(
            f"model={model['name']} does not fit task={task_name} ({KINDS[task_name]}); "
            f"tasks that fit model={model['name']}: {', '.join(fitting)}"
        )

"""Checks a composed config before anything runs: every problem is one line naming the valid choices."""

from __future__ import annotations

import math
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


def _get(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node[part]
    return node


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool, NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(minimum: int) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if not _is_int(value) or value < minimum:
            raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return check


def _positive_number(key: str, value: Any) -> None:
    if not _is_number(value) or value <= 0:
        raise ConfigError(f"{key} must be a number > 0, got {value!r}")


def _non_negative_number(key: str, value: Any) -> None:
    if not _is_number(value) or value < 0:
        raise ConfigError(f"{key} must be a number >= 0, got {value!r}")


def _path(key: str, value: Any) -> None:
    if not isinstance(value, str):
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

# key → check; keys absent from a config (e.g. a task's own keys) are skipped.
CHECKS: dict[str, Callable[[str, Any], None]] = {
    **MODEL_CHECKS,
    "seed": _integer(0),
    "log_every": _integer(1),
    "init_batches": _integer(1),
    "device": _choice(DEVICES),
    "precision": _choice(list(PRECISIONS)),
    "logger": _logger,
    "threads": _optional(_integer(1)),
    "model.name": _choice(list(MODELS)),
    **{f"model.{key}": check for key, check in MODEL_CHECKS.items()},
    "model.ffn_mult": _integer(1),
    "model.decoder_depth": _optional(_integer(1)),
    "task.name": _choice(list(TASKS)),
    "task.seq_len": _integer(1),
    "task.val_batches": _integer(1),
    "task.path": _optional(_path),
    "task.train_size": _optional(_integer(1)),
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


def validate(config: dict[str, Any]) -> None:
    """Raise ConfigError for the first bad value of a resolved config."""
    for group in ("model", "task", "train"):  # e.g. `train=3` replaces the whole group
        if not isinstance(config.get(group), dict):
            raise ConfigError(f"{group} must be a config group ({group}.KEY=VALUE), got {config.get(group)!r}")
    for key, check in CHECKS.items():
        try:
            value = _get(config, key)
        except (KeyError, TypeError):
            continue
        check(key, value)
    fraction = config.get("task", {}).get("val_fraction")
    if fraction is not None and not (_is_number(fraction) and 0 < fraction < 1):
        raise ConfigError(f"task.val_fraction must be a number between 0 and 1, got {fraction!r}")
    model = config["model"]
    if model["name"] in ATTENTION_MODELS and model["width"] % model["heads"]:
        raise ConfigError(f"width ({model['width']}) must be divisible by heads ({model['heads']})")
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

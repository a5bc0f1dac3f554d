"""The typed config: dataclass schemas that Hydra's ConfigStore holds and conf/'s YAML files extend.

OmegaConf itself refuses an unknown key, a value of the wrong type and a choice outside its registry, both
while Hydra composes (`depth=abc`) and when a config dict is checked as given (`check_types`). The schemas
carry types only: every default is in conf/ (the user-visible file), so each value is spelled once.
Ranges and rules across keys are validate.py's.

The model keys shared by all models (depth, width, norm, …) are top-level keys; the `model` group holds
only what is its own (name, ffn_mult, decoder_depth). `model.depth=…`, the spelling of older resbench, is
read as `depth=…` (`short_overrides`).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from .loggers import LOGGERS
from .models import INITS, NORMS, PLACEMENTS, SHARED_MODEL_KEYS
from .precision import PRECISIONS


class ConfigError(ValueError):
    """Bad input in a config value: the message is the one line the user sees."""


DEVICES = ("auto", "cpu", "cuda")
OPTIMIZER_NAMES = ("adam", "adamw", "sgd")


def _choices(name: str, names: typing.Iterable[str]) -> type[enum.Enum]:
    """An Enum of a registry's names, so that OmegaConf refuses any other value (module-level: picklable)."""
    return enum.Enum(name, {choice: choice for choice in names}, module=__name__)


Placement = _choices("Placement", PLACEMENTS)
NormType = _choices("NormType", NORMS)
Init = _choices("Init", ["auto", *INITS])
Device = _choices("Device", DEVICES)
PrecisionName = _choices("PrecisionName", PRECISIONS)
Logger = _choices("Logger", LOGGERS)
Optimizer = _choices("Optimizer", OPTIMIZER_NAMES)


@dataclass
class TrainConfig:
    steps: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    warmup: int = MISSING
    optimizer: Optimizer = MISSING
    weight_decay: float = MISSING
    clip: float | None = MISSING
    eval_every: int = MISSING
    checkpoint_every: int | None = MISSING


@dataclass
class ModelConfig:
    """What every model has of its own; the shared model keys are the root's."""

    name: str = MISSING
    ffn_mult: int = MISSING


@dataclass
class Seq2SeqConfig(ModelConfig):
    decoder_depth: int | None = MISSING


@dataclass
class TaskConfig:
    name: str = MISSING


@dataclass
class CharsConfig(TaskConfig):
    path: str | None = MISSING
    seq_len: int = MISSING
    val_fraction: float = MISSING
    val_batches: int = MISSING


@dataclass
class DigitsConfig(TaskConfig):
    val_fraction: float = MISSING


@dataclass
class MnistConfig(TaskConfig):
    path: str | None = MISSING
    train_size: int | None = MISSING


@dataclass
class TokensConfig(TaskConfig):
    """A synthetic token task (reverse, sort)."""

    vocab: int = MISSING
    seq_len: int = MISSING
    val_batches: int = MISSING


@dataclass
class Config:
    depth: int = MISSING
    norm: Placement = MISSING
    norm_type: NormType = MISSING
    residual: bool | str = MISSING  # true | false | rezero: YAML reads the first two as bools
    residual_scale: float = MISSING
    init: Init = MISSING
    width: int = MISSING
    heads: int = MISSING
    seed: int = MISSING
    log_every: int = MISSING
    init_batches: int = MISSING
    device: Device = MISSING
    precision: PrecisionName = MISSING
    logger: Logger = MISSING
    threads: int | None = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = MISSING
    task: TaskConfig = MISSING


# Each option of conf/model and conf/task → its schema (the YAML file names it in its defaults list).
MODEL_SCHEMAS: dict[str, type[ModelConfig]] = {
    "transformer": ModelConfig, "mlp": ModelConfig, "seq2seq": Seq2SeqConfig}
TASK_SCHEMAS: dict[str, type[TaskConfig]] = {
    "chars": CharsConfig, "digits": DigitsConfig, "mnist": MnistConfig, "mnist1d": TaskConfig,
    "reverse": TokensConfig, "sort": TokensConfig}
SCHEMA_GROUP = "schema"  # not a group users choose from: conf/ files extend its nodes
ROOT_SCHEMA = "config_schema"

def register() -> None:
    """Put the schemas in Hydra's ConfigStore: `config_schema` under config.yaml, `schema/model/NAME` and
    `schema/task/NAME` under each group option."""
    store = ConfigStore.instance()
    store.store(name=ROOT_SCHEMA, node=Config)
    for group, schemas in (("model", MODEL_SCHEMAS), ("task", TASK_SCHEMAS)):
        for name, schema in schemas.items():
            store.store(group=f"{SCHEMA_GROUP}/{group}", name=name, node=schema)


register()


def short_overrides(overrides: list[str]) -> list[str]:
    """`model.depth=6` (older resbench's spelling, documented then) as `depth=6`, the one key it sets."""
    return [f"{prefix}{key.removeprefix('model.')}={value}"
            if key.removeprefix("model.") in SHARED_MODEL_KEYS and key.startswith("model.") else text
            for text in overrides
            for prefix, key, value in [_split_override(text)]]


def _split_override(text: str) -> tuple[str, str, str]:
    key, _, value = text.partition("=")
    bare = key.lstrip("+~")
    return key[:len(key) - len(bare)], bare, value


def _schema_keys() -> set[str]:
    """Every dotted key some typed config has (the model's and task's keys of every option)."""
    keys = {f.name for f in dataclasses.fields(Config)}
    keys |= {f"train.{f.name}" for f in dataclasses.fields(TrainConfig)}
    for group, schemas in (("model", MODEL_SCHEMAS), ("task", TASK_SCHEMAS)):
        keys |= {f"{group}.{f.name}" for schema in schemas.values() for f in dataclasses.fields(schema)}
    return keys


def is_config_key(key: str) -> bool:
    """`key` names a value of resbench's config (`depth`, `train.lr`, `task.vocab`; `model.depth` as the
    older spelling of `depth`)."""
    return key in _schema_keys() or key.removeprefix("model.") in SHARED_MODEL_KEYS


def _schema_for(config: dict[str, Any]) -> Any:
    """The empty typed config that `config` must fit: the root schema with its model's and task's."""
    schema = OmegaConf.structured(Config)
    for group, schemas in (("model", MODEL_SCHEMAS), ("task", TASK_SCHEMAS)):
        node = config.get(group)
        if not isinstance(node, dict):
            raise ConfigError(f"{group} must be a config group ({group}.KEY=VALUE), got {node!r}")
        name = node.get("name")
        if name not in schemas:
            raise ConfigError(f"{group}.name: bad choice {name!r}; valid choices: {', '.join(schemas)}")
        setattr(schema, group, OmegaConf.structured(schemas[name]))
    return schema


def check_types(config: dict[str, Any]) -> None:
    """Raise ConfigError (one line) unless `config` has exactly the schema's keys, each of its type: this
    catches what a `+key=…` override added and what a config dict edited by hand holds."""
    schema = _schema_for(config)
    try:
        typed = OmegaConf.merge(schema, config)
        missing = sorted(OmegaConf.missing_keys(typed))
    except OmegaConfBaseException as err:
        raise ConfigError(explain_schema_error(err) or str(err).splitlines()[0]) from None
    if missing:
        raise ConfigError(f"{missing[0]} is missing: give it a value ({missing[0]}=VALUE)")


def to_plain(cfg: Any) -> dict[str, Any]:
    """A typed config as plain Python data (choices as their names), without Hydra's own node."""
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    config.pop("hydra", None)
    return config


# What a value must be, by its declared type, for the one line naming it.
TYPE_WORDS: dict[Any, str] = {int: "an integer", float: "a number", bool: "true or false", str: "text",
                              bool | str: "true, false or a name"}


def _declared_type(schema: Any, key: str) -> Any:
    hint = typing.get_type_hints(schema).get(key)
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    optional = typing.get_origin(hint) in (Union, types.UnionType) and len(args) == 1
    return args[0] if optional else hint  # `X | None` → X


def explain_schema_error(err: BaseException) -> str | None:
    """One line for OmegaConf's refusal of a value or key of a typed config, or None for other errors."""
    schema, key, full_key = getattr(err, "object_type", None), getattr(err, "key", None), getattr(err, "full_key", None)
    if not (dataclasses.is_dataclass(schema) and key and full_key):
        return None
    fields = [f.name for f in dataclasses.fields(schema)]
    if isinstance(err, ConfigKeyError):
        parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
        close = difflib.get_close_matches(str(key), fields, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        where = f"in {parent} " if parent else ""
        return f"unknown key '{full_key}'{hint}; valid keys {where}are: {', '.join(sorted(fields))}"
    if not isinstance(err, ValidationError) or key not in fields:
        return None
    declared, value = _declared_type(schema, key), getattr(err, "value", None)
    if isinstance(declared, type) and issubclass(declared, enum.Enum):
        return f"{full_key}: bad choice {value!r}; valid choices: {', '.join(declared.__members__)}"
    if dataclasses.is_dataclass(declared):
        return f"{full_key} must be a config group ({full_key}.KEY=VALUE), got {value!r}"
    return f"{full_key} must be {TYPE_WORDS.get(declared, str(declared))}, got {value!r}"

"""The typed config: dataclass schemas that Hydra's ConfigStore holds and conf/'s YAML files extend.

OmegaConf itself refuses an unknown key, a value of the wrong type and a choice outside its registry's names
(resbench/registries.py), both while Hydra composes (`depth=abc`) and when a config dict is checked as given
(`check_types`). The schemas carry types only: every default is in conf/ (the user-visible file), so each
value is spelled once. Ranges and rules across keys are validate.py's, applied after the types
(`check_config`).

The model keys shared by all models (depth, width, norm, …) are top-level keys; the `model` group holds
only what is its own (name, ffn_mult, decoder_depth). `model.depth=…`, the spelling of older resbench, is
read as `depth=…` (`short_overrides`).

What a resume takes from a stored file (a run's .hydra/overrides.yaml, a sweep's sweep.json) is decided here,
once (`resumed_overrides`): resbench's own keys and choices, never a Hydra setting that could run code.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from . import hydra_adapter, paths, registries, runtime
from .hydra_adapter import COMPOSE_ERRORS, OverrideParseException
from .records import holds_only_its_lock
from .schema import SHARED_MODEL_KEYS, override_key
from .tasks import TaskError
from .tasks import build as build_task
from .validate import ConfigError, Limit, check_fits, validate

if TYPE_CHECKING:
    from .hydra_adapter import Override
    from .tasks import Task


class BadInput(ValueError):
    """Bad user input; the message is one line. The CLI exits 2 and nothing has been written."""


def _choices(name: str, names: typing.Iterable[str]) -> type[enum.Enum]:
    """An Enum of a registry's names, so that OmegaConf refuses any other value (module-level: picklable)."""
    return enum.Enum(name, {choice: choice for choice in names}, module=__name__)


Placement = _choices("Placement", registries.PLACEMENTS)
NormType = _choices("NormType", registries.NORM_TYPES)
Init = _choices("Init", [registries.AUTO_INIT, *registries.INITS])
Device = _choices("Device", registries.DEVICES)
PrecisionName = _choices("PrecisionName", registries.PRECISIONS)
Logger = _choices("Logger", registries.LOGGERS)
Optimizer = _choices("Optimizer", registries.OPTIMIZERS)
DepthParam = _choices("DepthParam", registries.DEPTH_PARAMS)


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
    depth_param: DepthParam = MISSING
    base_depth: int = MISSING
    branch_multiplier: float = MISSING
    init: Init = MISSING
    width: int = MISSING
    heads: int = MISSING
    seed: int = MISSING
    log_every: int = MISSING
    init_batches: int = MISSING
    init_draws: int = MISSING
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
CONFIG_GROUPS = ("model", "task", "experiment")  # the groups of conf/: an option is chosen by name (model=mlp)
SCHEMA_GROUP = "schema"  # not a group users choose from: conf/ files extend its nodes
ROOT_SCHEMA = "config_schema"


def register() -> None:
    """Put the schemas in Hydra's ConfigStore: `config_schema` under config.yaml, `schema/model/NAME` and
    `schema/task/NAME` under each group option."""
    hydra_adapter.store_schema(Config, ROOT_SCHEMA)
    for group, schemas in (("model", MODEL_SCHEMAS), ("task", TASK_SCHEMAS)):
        for name, schema in schemas.items():
            hydra_adapter.store_schema(schema, name, group=f"{SCHEMA_GROUP}/{group}")


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


MemoryLimits = Callable[[dict[str, Any]], tuple[Limit | None, Limit | None]]  # config → (host, GPU) limits


def memory_here(config: dict[str, Any]) -> tuple[Limit | None, Limit | None]:
    """The memory a run of `config` has on this machine: this process's limit, and its GPU's where it uses one."""
    return runtime.memory_limit(), runtime.gpu_memory(config["device"])


def check_config(config: dict[str, Any], limits: MemoryLimits = memory_here) -> None:
    """Raise ConfigError (one line) for the first key, type or choice the typed config refuses, then for the
    first value out of its range or against a rule across keys (validate.py's), then for a run that would not
    fit the memory `limits` gives it (where it will run: this machine unless a launcher sends it elsewhere)."""
    check_types(config)
    validate(config)
    check_fits(config, *limits(config))


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


# ----------------------------------------------------------------------------- composing and checking
def compose(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """The composed config for `overrides`; any Hydra error becomes one BadInput line."""
    overrides = short_overrides(overrides)
    try:
        return hydra_adapter.compose(overrides, with_hydra=with_hydra)
    except COMPOSE_ERRORS as err:
        raise BadInput(explain(err, overrides)) from None


def compose_run(hydra: Any, overrides: list[str]) -> DictConfig:
    """The config of one run with its hydra node, as Hydra's run composes it; errors as one BadInput line."""
    try:
        return hydra_adapter.compose_run(hydra, overrides)
    except COMPOSE_ERRORS as err:
        raise BadInput(explain(err, overrides)) from None


def check(overrides: list[str]) -> dict[str, Any]:
    """Compose, resolve and validate the config of `overrides`, and build its task: raise BadInput if bad."""
    return checked(compose(overrides))[0]


def checked(cfg: DictConfig) -> tuple[dict[str, Any], Task]:
    """The composed `cfg` resolved to plain data and validated, and its task built (the run that follows
    uses it): raise BadInput if bad."""
    config = validated(cfg)
    return config, built_task(config)


def validated(cfg: DictConfig, label: str = "", limits: MemoryLimits = memory_here) -> dict[str, Any]:
    """The composed `cfg` resolved to plain data and validated (check_config, memory against `limits`);
    BadInput names the run by `label` (its swept values) when given."""
    prefix = f"{label}: " if label else ""
    try:
        config = to_plain(cfg)
        check_config(config, limits)
    except ConfigError as err:
        raise BadInput(f"{prefix}{err}") from None
    except OmegaConfBaseException as err:
        raise BadInput(f"{prefix}{explain(err)}") from None
    return config


def built_task(config: dict[str, Any], label: str = "") -> Task:
    """The task of a validated config, built (it may read a corpus): a task that cannot be is BadInput."""
    try:
        return build_task(config["task"], config["train"]["batch_size"])
    except TaskError as err:
        raise BadInput(f"{label}: {err}" if label else str(err)) from None


def check_writable(directory: Path, what: str, empty: bool = True) -> None:
    """`directory` (the value of the `what` setting) can be made and written (paths.output_dir: every
    way the OS could refuse it is one line), and, when `empty`, holds nothing yet: a run never writes over
    another (a resume writes on in the dir it continues: not `empty`)."""
    try:
        paths.output_dir(directory, what)
    except paths.PathError as err:
        raise BadInput(str(err)) from None
    if empty and directory.is_dir() and not holds_only_its_lock(directory):
        raise BadInput(f"output dir is not empty: {directory}")


# ----------------------------------------------------------------------------- overrides
def quoted(text: str) -> str:
    """A value for the override grammar that survives commas, spaces and brackets (e.g. a path)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_overrides(overrides: list[str]) -> list[Override]:
    """The overrides as Hydra's grammar reads them: every check on a user value uses these parsed values
    (a quoted path is the path, not its quotes)."""
    try:
        return hydra_adapter.parse_overrides(overrides)
    except OverrideParseException as err:
        raise BadInput(explain(err, overrides)) from None


def given_override(overrides: list[str], key: str) -> Override | None:
    """The last override of `key` (a config key or a group such as hydra/launcher), parsed, or None."""
    matches = [override for override in parse_overrides(overrides) if override.key_or_group == key]
    return matches[-1] if matches else None


def without_key(overrides: list[str], key: str) -> list[str]:
    """`overrides` less those of `key` (matched on the parsed key, however the override is spelled)."""
    return [text for text, parsed in zip(overrides, parse_overrides(overrides)) if parsed.key_or_group != key]


# Hydra settings a sweep's record (sweep.json) may carry into its resume: the launcher and its plain knobs,
# as docs/long-runs.md lists them. A run's .hydra/overrides.yaml carries none (Hydra records its own settings in
# hydra.yaml, which resume never reads).
STORED_LAUNCHER_KEYS = frozenset({
    "hydra/launcher", "hydra.sweep.subdir", "hydra.sweeper.max_batch_size",
    *(f"hydra.launcher.{knob}" for knob in (
        "n_jobs", "timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "nodes", "mem_gb",
        "partition", "account", "qos", "gres", "constraint", "array_parallelism", "max_num_timeout",
        "signal_delay_s")),
})


def resumed_overrides(stored: list[str], given: list[str], source: Path, launcher: bool = False) -> list[str]:
    """The overrides of a resumed run or sweep: those stored in the file `source`, less any whose key is
    given again, then `given` (older resbench's spelling read as today's in both). A stored file is data, never
    instructions: of what it gives, only resbench's config keys, its group choices and (`launcher`: a sweep's
    record) the settings of STORED_LAUNCHER_KEYS are taken; anything else (a callback, a `_target_`,
    env_set, a setup command, the search path, a deletion) is BadInput naming it and the file. What the
    user gives is theirs, as on any command line."""
    given = short_overrides(given)
    given_keys = {override_key(o) for o in given}
    kept = [o for o in short_overrides(stored) if override_key(o) not in given_keys]
    try:
        parsed = parse_overrides(kept)
    except BadInput as err:
        raise BadInput(f"cannot resume from {source}: {err}") from None
    for text, override in zip(kept, parsed):
        if not _taken_from_file(override, launcher):
            what = ("config keys, group choices and launcher settings" if launcher
                    else "config keys and group choices")
            raise BadInput(f"cannot resume from {source}: refusing its override '{text}': only resbench's "
                           f"{what} are taken from a stored file (give anything else on the command line)")
    return [*kept, *given]


def _taken_from_file(override: Override, launcher: bool) -> bool:
    key = override.key_or_group
    if "_target_" in key or override.is_delete() or override.package is not None:
        return False
    if key in STORED_LAUNCHER_KEYS:
        if not launcher:
            return False
        value = override.value()
        if key == "hydra/launcher":
            return value in (registries.BASIC_LAUNCHER, *registries.LAUNCHER_PLUGINS)
        return isinstance(value, (str, int, float)) and "${" not in str(value)  # plain: no interpolation
    if key in CONFIG_GROUPS:
        return True  # Hydra picks an option of resbench's own conf/ or refuses the name
    return is_config_key(key)


def resolved_dir(overrides: list[str], key: str) -> Path:
    """The output dir that `key` (hydra.run.dir or hydra.sweep.dir) resolves to under `overrides`, as
    Hydra will use it: quotes parsed, interpolations such as ${now:...} resolved (once: the caller pins it)."""
    return _dir_value(compose(overrides, with_hydra=True), key)


def pin_dir(cfg: DictConfig, key: str) -> Path:
    """The output dir `key` resolves to in the composed `cfg`, written back into `cfg` as that one value
    (a ${now:...} in it is resolved once, here, not again when the job starts)."""
    directory = _dir_value(cfg, key)
    parent, leaf = key.rsplit(".", 1)
    with read_write(cfg), open_dict(cfg):
        OmegaConf.select(cfg, parent)[leaf] = str(directory)
    return directory


def _dir_value(cfg: DictConfig, key: str) -> Path:
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise BadInput(f"{key}: {explain(err)}") from None
    if not isinstance(value, str):
        raise BadInput(f"{key} must be a directory path, got {value!r}")
    try:
        return paths.checked(value, key, "directory path")
    except paths.PathError as err:
        raise BadInput(str(err)) from None


# ----------------------------------------------------------------------------- error messages
_NOT_IN_STRUCT = re.compile(r"Could not override '([^']+)'")
_MISSING_GROUP = re.compile(r"Could not find '([^']+)/([^']+)'")
_AVAILABLE = re.compile(r"Available options in '[^']+':\n((?:\t.*\n?)*)")
NO_LAUNCHER_SETTINGS = ("this launcher has no settings; choose one that has them first "
                        "(hydra/launcher=joblib, submitit_local or submitit_slurm)")


def _valid_keys(key: str, overrides: list[str] = ()) -> list[str]:
    """The keys beside `key`, in the config that `overrides`' group choices select (model=mlp,
    hydra/launcher=joblib, ...; lists are left out)."""
    parent = key.rsplit(".", 1)[0] if "." in key else None
    groups = [o for o in overrides if "=" in o and not re.search(r"[,(]", o.split("=", 1)[1])
              and ("/" in override_key(o) or override_key(o) in CONFIG_GROUPS)]
    with_hydra = key.startswith("hydra.")
    try:
        base = hydra_adapter.compose(groups, with_hydra=with_hydra)
    except COMPOSE_ERRORS:
        base = hydra_adapter.compose([], with_hydra=with_hydra)
    node = OmegaConf.select(base, parent) if parent else base
    return sorted(k for k in node if k != "_target_") if isinstance(node, DictConfig) else []


def explain(err: Exception, overrides: list[str] = ()) -> str:
    """One line for a Hydra/OmegaConf error: what is wrong and what would be valid."""
    if (typed := explain_schema_error(err.__cause__ or err)) is not None:
        return typed
    text = str(err)
    if isinstance(err, OverrideParseException):
        hint = (" (Hydra's grammar takes no bare ~ in a value: write $HOME/..., which the shell expands)"
                if "=~" in str(err.override) else "")
        return f"cannot parse override '{err.override}': {text.splitlines()[0]}{hint}"
    if "requires --multirun" in text or "is a sweep override" in text:
        return f"{text.splitlines()[0].split(' requires')[0]}: a list or sweep needs `resbench sweep`; " \
               "`resbench train` runs one config"
    if match := _NOT_IN_STRUCT.search(text):
        return _unknown_key(match.group(1), overrides)
    if match := _MISSING_GROUP.search(text):
        group, name = match.groups()
        options = _AVAILABLE.search(text)
        valid = ", ".join(options.group(1).split()) if options else "none"
        return f"{group}={name}: no such {group}; valid choices: {valid}"
    lines = [line.strip() for line in text.splitlines() if line.strip() and "hydra.cc/docs" not in line]
    return " — ".join(lines[:2]) if lines else type(err).__name__


def _unknown_key(key: str, overrides: list[str]) -> str:
    valid = _valid_keys(key, list(overrides))
    if not valid and key.startswith("hydra.launcher."):
        return f"unknown key '{key}': {NO_LAUNCHER_SETTINGS}"
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    where = f"in {key.rsplit('.', 1)[0]} " if "." in key else ""
    return f"unknown key '{key}'{hint}; valid keys {where}are: {', '.join(valid)}"

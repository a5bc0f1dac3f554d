"""Shell completion of overrides: config keys, config-group options and each choice key's values.

`resbench sweep norm=<TAB>` offers `post pre sandwich none deepnorm`. Completion runs at every TAB, so it
never imports torch or Hydra: keys come from the YAML files in `resbench.conf`, and choice values from
resbench/registries.py, the one place a choice is spelled, which imports neither.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from . import registries

# key → (the registry's names, values the config allows besides them)
CHOICE_REGISTRIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "norm": (registries.PLACEMENTS, ()),
    "norm_type": (registries.NORM_TYPES, ()),
    "residual": (registries.RESIDUALS, ()),
    "init": (registries.INITS, (registries.AUTO_INIT,)),
    "depth_param": (registries.DEPTH_PARAMS, ()),
    "device": (registries.DEVICES, ()),
    "precision": (registries.PRECISIONS, ()),
    "train.optimizer": (registries.OPTIMIZERS, ()),
    "logger": (registries.LOGGERS, ()),
    "hydra/launcher": (tuple(registries.LAUNCHER_PLUGINS), (registries.BASIC_LAUNCHER,)),
}
GROUPS = {"model": "model", "task": "task", "+experiment": "experiment"}  # override key → conf/ folder
GLOBAL_PACKAGE = "@package _global_"  # a group file whose keys sit at the root of the config
NOT_KEYS = ("defaults", "hydra")  # top-level entries of config.yaml that are no override keys


def _flatten(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix]
    return [key for name, value in node.items() for key in _flatten(value, f"{prefix}{name}.")] if node else []


def _conf() -> Any:
    from importlib import resources

    return resources.files("resbench.conf")


def _yaml(text: str) -> Any:
    import yaml  # here, not at the top: `resbench --help` imports this module and must stay fast

    return yaml.safe_load(text)


@cache
def group_options() -> dict[str, list[str]]:
    """`model` → [mlp, transformer], `task` → […], `+experiment` → […]: the YAML files of each group."""
    conf = _conf()
    return {key: sorted(entry.name.removesuffix(".yaml") for entry in conf.joinpath(folder).iterdir()
                        if entry.name.endswith(".yaml"))
            for key, folder in GROUPS.items()}


@cache
def override_keys() -> list[str]:
    """Every key an override can set: config.yaml's (nested ones dotted), then model.* and task.* of each option."""
    conf = _conf()
    root = _yaml(conf.joinpath("config.yaml").read_text(encoding="utf-8")) or {}
    keys = [key.rstrip(".") for name, value in root.items() if name not in NOT_KEYS
            for key in _flatten(value, f"{name}.")]
    for group in ("model", "task"):
        for option in group_options()[group]:
            text = conf.joinpath(group, f"{option}.yaml").read_text(encoding="utf-8")
            prefix = "" if GLOBAL_PACKAGE in text.split("\n", 1)[0] else f"{group}."  # Hydra's package header
            node = _yaml(text) or {}
            keys += [f"{prefix}{key.rstrip('.')}" for name, value in node.items() if name != "defaults"
                     for key in _flatten(value, f"{name}.")]
    return list(dict.fromkeys(keys))


@cache
def choices(key: str) -> list[str]:
    """The valid values of `key`: a registry's names, a group's options, or none (a free value)."""
    key = key.removeprefix("model.") if key.removeprefix("model.") in CHOICE_REGISTRIES else key
    if key in GROUPS:
        return group_options()[key]
    if key not in CHOICE_REGISTRIES:
        return []
    names, extra = CHOICE_REGISTRIES[key]
    return [*extra, *names]


def complete_override(args: list[str], incomplete: str) -> list[str]:
    """Completions of one override word. `key=val` completes values (bash splits the word at `=`, so
    `args` then ends with the key and `=`, and `incomplete` is the value alone); anything else completes keys."""
    if "=" in incomplete:
        key, value = incomplete.split("=", 1)
        return [f"{key}={option}" for option in choices(key) if option.startswith(value)]
    if len(args) >= 2 and args[-1] == "=":
        return [option for option in choices(args[-2]) if option.startswith(incomplete)]
    names = [*GROUPS, *override_keys(), *(k for k in CHOICE_REGISTRIES if "/" in k)]
    return [f"{name}=" for name in dict.fromkeys(names) if name.startswith(incomplete)]

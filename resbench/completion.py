"""Shell completion of overrides: config keys, config-group options and each choice key's values.

`resbench sweep norm=<TAB>` offers `post pre sandwich none deepnorm`. Completion runs at every TAB, so it
never imports torch or Hydra: keys come from the YAML files in `resbench.conf`, and choice values from
the registries themselves (`PLACEMENTS`, `NORMS`, …), read from their source files as literals. The
registries stay the one place a choice is spelled.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
# key → (source file in the package, registry name, values the config allows besides the registry's)
CHOICE_REGISTRIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "norm": ("models/placements.py", "PLACEMENTS", ()),
    "norm_type": ("models/norms.py", "NORMS", ()),
    "residual": ("models/residuals.py", "RESIDUALS", ()),
    "init": ("models/init.py", "INITS", ("auto",)),
    "depth_param": ("models/parametrizations.py", "DEPTH_PARAMS", ()),
    "device": ("config.py", "DEVICES", ()),
    "precision": ("precision.py", "PRECISIONS", ()),
    "train.optimizer": ("config.py", "OPTIMIZER_NAMES", ()),
    "logger": ("loggers.py", "LOGGERS", ()),
    "hydra/launcher": ("sweeps.py", "LAUNCHER_PLUGINS", ("basic",)),
}
GROUPS = {"model": "model", "task": "task", "+experiment": "experiment"}  # override key → conf/ folder
GLOBAL_PACKAGE = "@package _global_"  # a group file whose keys sit at the root of the config
NOT_KEYS = ("defaults", "hydra")  # top-level entries of config.yaml that are no override keys


def registry_names(path: Path, name: str) -> list[str]:
    """The string keys of the dict (or items of the tuple/list) assigned to `name` at the top of `path`."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            items = node.value.keys if isinstance(node.value, ast.Dict) else getattr(node.value, "elts", [])
            return [item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)]
    raise LookupError(f"{name} is not a literal at the top of {path}")


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
    source, name, extra = CHOICE_REGISTRIES[key]
    return [*extra, *registry_names(PACKAGE / source, name)]


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

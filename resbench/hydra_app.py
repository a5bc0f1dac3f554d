"""The one module that touches Hydra: compose configs, run one job, and the task function launchers call.

`GlobalHydra.instance().hydra.run(...)` is exactly `@hydra.main`'s path minus argparse: full override
grammar, per-job output dirs with `.hydra/`, and the job's return value comes back to us.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import train
from .tasks import TaskError
from .tasks import build as build_task
from .validate import ConfigError, validate

CONFIG_MODULE = "resbench.conf"
CONFIG_NAME = "config"

# Whoever watches runs in this process (the terminal); None in launcher workers.
_progress: train.Progress | None = None


class BadInput(ValueError):
    """Bad user input; the message is one line. The CLI exits 2 and nothing has been written."""


@contextmanager
def hydra_instance() -> Iterator[Any]:
    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        yield GlobalHydra.instance().hydra


def timestamp() -> str:
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")


def compose(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """The composed config for `overrides`; any Hydra error becomes one BadInput line."""
    try:
        with hydra_instance():
            return hydra_compose(CONFIG_NAME, overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise BadInput(explain(err)) from None


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python data, without Hydra's own node."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    return config


def check(overrides: list[str]) -> dict[str, Any]:
    """Compose, resolve and validate the config of `overrides`, and build its task: raise BadInput if bad."""
    cfg = compose(overrides)
    try:
        config = to_plain(cfg)
    except OmegaConfBaseException as err:
        raise BadInput(explain(err)) from None
    try:
        validate(config)
        build_task(config["task"], config["train"]["batch_size"])
    except (ConfigError, TaskError) as err:
        raise BadInput(str(err)) from None
    return config


def check_writable(directory: Path) -> None:
    """Prove that `directory` can be created, by making (and removing) a probe folder in its nearest
    existing ancestor; refuse a non-empty existing folder (a run never writes over another)."""
    path = directory.resolve()
    while not path.exists():
        path = path.parent
    try:
        shutil.rmtree(tempfile.mkdtemp(prefix=".resbench-probe-", dir=path))
    except OSError as err:
        raise BadInput(f"output dir not writable: {directory} ({path}: {err.strerror or err})") from None
    if directory.is_dir() and any(directory.iterdir()):
        raise BadInput(f"output dir is not empty: {directory}")


def override_value(overrides: list[str], key: str) -> str | None:
    """The value given to `key` on the command line (the last one wins), or None."""
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == key and "=" in o]
    return values[-1] if values else None


def run_train(overrides: list[str], progress: train.Progress | None) -> dict[str, Any]:
    """One run into `hydra.run.dir` (default results/train/<timestamp>); returns its summary."""
    global _progress
    if override_value(overrides, "hydra.run.dir") is None:
        overrides = [*overrides, f"hydra.run.dir=results/train/{timestamp()}"]
    check(overrides)
    check_writable(Path(override_value(overrides, "hydra.run.dir")))
    _progress = progress
    try:
        with hydra_instance() as hydra:
            job = hydra.run(CONFIG_NAME, train_task, overrides)
        return job.return_value
    finally:
        _progress = None


def job_facts() -> dict[str, Any]:
    """Where this job executes: the SLURM job id (as submitit names it) when there is one."""
    facts: dict[str, Any] = {"slurm_job_id": None}
    if "SLURM_ARRAY_JOB_ID" in os.environ:
        facts["slurm_job_id"] = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    elif "SLURM_JOB_ID" in os.environ:
        facts["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return facts


def set_threads(config: dict[str, Any]) -> None:
    import torch

    if config.get("threads"):
        torch.set_num_threads(config["threads"])


def train_task(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's task function: one run in Hydra's job dir. Module-level so launchers can pickle it."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    config = to_plain(cfg)
    set_threads(config)
    return train.run(config, run_dir, progress=_progress, job=job_facts())


# ----------------------------------------------------------------------------- error messages
_NOT_IN_STRUCT = re.compile(r"Could not override '([^']+)'")
_MISSING_GROUP = re.compile(r"Could not find '([^']+)/([^']+)'")
_AVAILABLE = re.compile(r"Available options in '[^']+':\n((?:\t.*\n?)*)")


def _valid_keys(key: str) -> list[str]:
    parent = key.rsplit(".", 1)[0] if "." in key else None
    with hydra_instance():
        base = hydra_compose(CONFIG_NAME)
    node = OmegaConf.select(base, parent) if parent else base
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def explain(err: Exception) -> str:
    """One line for a Hydra/OmegaConf error: what is wrong and what would be valid."""
    text = str(err)
    if isinstance(err, OverrideParseException):
        return f"cannot parse override '{err.override}': {text.splitlines()[0]}"
    if match := _NOT_IN_STRUCT.search(text):
        key = match.group(1)
        valid = _valid_keys(key)
        leaf = key.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(leaf, valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        where = f"in {key.rsplit('.', 1)[0]} " if "." in key else ""
        return f"unknown key '{key}'{hint}; valid keys {where}are: {', '.join(valid)}"
    if match := _MISSING_GROUP.search(text):
        group, name = match.groups()
        options = _AVAILABLE.search(text)
        valid = ", ".join(options.group(1).split()) if options else "none"
        return f"{group}={name}: no such {group}; valid choices: {valid}"
    lines = [line.strip() for line in text.splitlines() if line.strip() and "hydra.cc/docs" not in line]
    return " — ".join(lines[:2]) if lines else type(err).__name__

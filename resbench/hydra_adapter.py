"""Hydra behind one adapter: the only module that imports Hydra's run and multirun machinery.

resbench runs jobs the way `@hydra.main` does (per-job output dirs with `.hydra/`, callbacks, the
launchers' plugins), but it must check every config and plan every run before anything is written, and it
wants each job's return value back. Hydra's public API offers neither, so this module drives Hydra's own
objects: the `Hydra` instance of GlobalHydra, `run_job`, `Callbacks`, `ConfigLoaderImpl`, the basic
sweeper's expansion (`BasicSweeper.split_arguments`) and `Plugins`. Several are private
(`hydra._internal…`); they are written against hydra-core>=1.3.2,<1.4, the range pyproject.toml pins, and a
new Hydra minor release is checked here, in this one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra._internal.callbacks import Callbacks
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus, run_job
from hydra.errors import HydraException, OverrideParseException
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

__all__ = ["COMPOSE_ERRORS", "JobConfigs", "Override", "OverrideParseException", "compose", "compose_multirun",
           "compose_run", "expand", "hydra_instance", "job_problem", "launch", "make_callbacks", "parse_overrides",
           "run_one_job", "running_job", "store_schema"]

CONFIG_MODULE = "resbench.conf"
CONFIG_NAME = "config"
# What composing a config can raise for bad input (a ValueError: e.g. a bad ${now:...} pattern).
COMPOSE_ERRORS = (HydraException, OmegaConfBaseException, ValueError)


def store_schema(node: Any, name: str, group: str | None = None) -> None:
    """Put a structured config (a dataclass) in Hydra's ConfigStore, where conf/'s YAML files extend it."""
    ConfigStore.instance().store(group=group, name=name, node=node)


@contextmanager
def hydra_instance() -> Iterator[Any]:
    """Hydra initialised on resbench's conf/ package; yields the internal `Hydra` object."""
    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        yield GlobalHydra.instance().hydra


def compose(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """The config of `overrides` through Hydra's public compose API (raises COMPOSE_ERRORS)."""
    with hydra_instance():
        return hydra_compose(CONFIG_NAME, overrides=overrides, return_hydra_config=with_hydra)


def parse_overrides(overrides: list[str], hydra: Any = None) -> list[Override]:
    """The overrides as Hydra's grammar reads them (raises OverrideParseException). With `hydra`, group
    names are known to the parser (what the sweeper's expansion needs)."""
    loader = hydra.config_loader if hydra is not None else None
    return OverridesParser.create(config_loader=loader).parse_overrides(list(overrides))


def compose_run(hydra: Any, overrides: list[str]) -> DictConfig:
    """The config of one run with its hydra node, as Hydra's run composes it (raises COMPOSE_ERRORS)."""
    return hydra.compose_config(CONFIG_NAME, overrides, run_mode=RunMode.RUN, with_log_configuration=True)


def make_callbacks(cfg: DictConfig) -> Callbacks:
    """The callbacks `cfg` names (hydra.callbacks), made: one that cannot be (an unknown or refused
    `_target_`) raises COMPOSE_ERRORS here, before anything is written."""
    return Callbacks(cfg)


def run_one_job(hydra: Any, cfg: DictConfig, task_function: Callable[[DictConfig], Any],
                callbacks: Callbacks) -> JobReturn:
    """Hydra's run (hydra._internal.hydra.Hydra.run, 1.3) on a config already composed, with its
    callbacks already made (make_callbacks): its job dir is hydra.run.dir. Raises what the task
    function raised."""
    with read_write(cfg), open_dict(cfg):
        cfg.hydra.mode = RunMode.RUN
    callbacks.on_run_start(config=cfg, config_name=CONFIG_NAME)
    job = run_job(hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=callbacks),
                  task_function=task_function, config=cfg, job_dir_key="hydra.run.dir", job_subdir_key=None)
    callbacks.on_run_end(config=cfg, config_name=CONFIG_NAME, job_return=job)
    _ = job.return_value  # raises what the job raised
    return job


def compose_multirun(hydra: Any, overrides: list[str], with_log_configuration: bool = False) -> DictConfig:
    """The sweep-level config, as Hydra's multirun composes it (sweep overrides left for the sweeper)."""
    return hydra.compose_config(CONFIG_NAME, [*overrides, "hydra.mode=MULTIRUN"], run_mode=RunMode.MULTIRUN,
                                with_log_configuration=with_log_configuration)


def expand(hydra: Any, base: DictConfig) -> tuple[dict[str, list[str]], list[list[str]]]:
    """The basic sweeper's own expansion of `base` (a multirun config): its params (e.g. from an experiment
    preset) first, then the command line. Returns each key's listed values and the jobs (one override list
    per run)."""
    params = [f"{key}={value}" for key, value in (base.hydra.sweeper.params or {}).items()]
    arguments = parse_overrides(params + list(base.hydra.overrides.task), hydra)
    values: dict[str, list[str]] = {}
    for override in arguments:
        values[override.key_or_group] = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                                         else [override.get_value_element_as_str()])
    jobs = BasicSweeper.split_arguments(arguments, None)[0] if all(values.values()) else []
    return values, jobs


def add_hydra_overrides(base: DictConfig, hydra_overrides: list[str], sweep_dir: Path) -> None:
    """Make `base` what multirun composes with `hydra_overrides` added: each job config is recomposed
    from base's hydra overrides (load_sweep_config), so appending them there is enough."""
    with read_write(base), open_dict(base):
        base.hydra.overrides.hydra = [*base.hydra.overrides.hydra, *hydra_overrides]
        base.hydra.sweep.dir = str(sweep_dir)


class JobConfigs:
    """Each job's config exactly as the launcher's load_sweep_config will compose it, without composing
    every job: Hydra composes the defaults a job's group choices select, then applies its other overrides
    in order. Jobs of one sweep that choose the same groups and set the same keys share one composition,
    on which each job's values are applied in turn (they overwrite the same keys). A job that adds (+) or
    deletes (~) keys is composed in full."""

    def __init__(self, hydra: Any, base: DictConfig):
        self.loader = hydra.config_loader
        self.base = base
        self.parser = OverridesParser.create(config_loader=hydra.config_loader)
        self.parsed: dict[str, Override] = {}
        self.shared: dict[tuple, DictConfig] = {}

    def _parse(self, text: str) -> Override:
        if text not in self.parsed:
            self.parsed[text] = self.parser.parse_overrides([text])[0]
        return self.parsed[text]

    def _is_group(self, override: Override) -> bool:
        return self.loader.repository.group_exists(override.key_or_group) and not isinstance(override.value(), dict)

    def compose(self, job: list[str]) -> DictConfig:
        parsed = [self._parse(text) for text in job]
        values = [override for override in parsed if not self._is_group(override)]
        if any(override.is_add() or override.is_delete() for override in values):
            return self.loader.load_sweep_config(self.base, job)
        key = (tuple(o.input_line for o in parsed if self._is_group(o)), tuple(o.key_or_group for o in values))
        cfg = self.shared.get(key)
        if cfg is None:
            cfg = self.shared[key] = self.loader.load_sweep_config(self.base, job)
            return cfg
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        dirname = cfg.hydra.job.config.override_dirname
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.overrides.task = list(job)
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=parsed, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys)
        return cfg


def launch(hydra: Any, overrides: list[str], jobs: list[list[str]], task_function: Callable[[DictConfig], Any],
           sweep_dir: Path) -> list[Any]:
    """Hydra's multirun (compose, callbacks, the sweeper's launcher, multirun.yaml) launching exactly
    `jobs` (override lists the sweeper's own expansion made, in this order), in batches of
    hydra.sweeper.max_batch_size. Returns the JobReturns."""
    cfg = compose_multirun(hydra, overrides, with_log_configuration=True)
    callbacks = Callbacks(cfg)
    callbacks.on_multirun_start(config=cfg, config_name=CONFIG_NAME)
    sweeper = Plugins.instance().instantiate_sweeper(
        config=cfg, hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=callbacks),
        task_function=task_function)
    OmegaConf.save(cfg, sweep_dir / "multirun.yaml")
    size = sweeper.max_batch_size if sweeper.max_batch_size and sweeper.max_batch_size > 0 else max(1, len(jobs))
    returns = [job for start in range(0, len(jobs), size)
               for job in sweeper.launcher.launch(jobs[start:start + size], initial_job_idx=start)]
    callbacks.on_multirun_end(config=cfg, config_name=CONFIG_NAME)
    return returns


def job_problem(job: JobReturn) -> tuple[BaseException | None, Any]:
    """A launched job's exception Hydra met around it (e.g. writing .hydra/ on a full disk), or None, and
    its return value (None when it failed)."""
    if job.status == JobStatus.FAILED:
        return job._return_value, None
    return None, job.return_value


def running_job() -> tuple[Path, Path | None]:
    """In a task function: the job's output dir, and its sweep dir when it runs in a multirun (else None)."""
    hydra_cfg = HydraConfig.get()
    sweep_dir = Path(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    return Path(hydra_cfg.runtime.output_dir), sweep_dir

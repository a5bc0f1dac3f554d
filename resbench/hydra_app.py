"""The one module that touches Hydra: compose configs, run one job, and the task function launchers call.

`GlobalHydra.instance().hydra.run(...)` is exactly `@hydra.main`'s path minus argparse: full override
grammar, per-job output dirs with `.hydra/`, and the job's return value comes back to us.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra._internal.callbacks import Callbacks
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.errors import HydraException, OverrideParseException
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from . import checkpoint, loggers, records, train
from . import sweep as sweeps
from .config import explain_schema_error, is_config_key, short_overrides, to_plain
from .precision import pick_precision
from .tasks import TaskError
from .tasks import build as build_task
from .validate import CONFIG_GROUPS, ConfigError, validate

CONFIG_MODULE = "resbench.conf"
CONFIG_NAME = "config"

# Whoever watches runs in this process (the terminal); None in launcher workers.
_progress: train.Progress | None = None
# The process that called run_train / run_sweep; a job in any other process runs in a launcher's worker.
_launching_pid: int | None = None
# A worker that got SIGINT or SIGTERM starts no further run.
_stopping = False

# Launchers of the optional extras: the plugin module and the extra that installs it.
LAUNCHER_PLUGINS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "resbench[joblib]"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "resbench[slurm]"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "resbench[slurm]"),
}


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
    overrides = short_overrides(overrides)
    try:
        with hydra_instance():
            return hydra_compose(CONFIG_NAME, overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise BadInput(explain(err, overrides)) from None


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


def parse_overrides(overrides: list[str]) -> list[Override]:
    """The overrides as Hydra's grammar reads them: every check on a user value uses these parsed values
    (a quoted path is the path, not its quotes)."""
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as err:
        raise BadInput(explain(err, overrides)) from None


def given_override(overrides: list[str], key: str) -> Override | None:
    """The last override of `key` (a config key or a group such as hydra/launcher), parsed, or None."""
    matches = [override for override in parse_overrides(overrides) if override.key_or_group == key]
    return matches[-1] if matches else None


def without_key(overrides: list[str], key: str) -> list[str]:
    """`overrides` less those of `key` (matched on the parsed key, however the override is spelled)."""
    return [text for text, parsed in zip(overrides, parse_overrides(overrides)) if parsed.key_or_group != key]


def resolved_dir(overrides: list[str], key: str) -> Path:
    """The output dir that `key` (hydra.run.dir or hydra.sweep.dir) resolves to under `overrides`, as
    Hydra will use it: quotes parsed, interpolations such as ${now:...} resolved (once: the caller pins it)."""
    cfg = compose(overrides, with_hydra=True)
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise BadInput(f"{key}: {explain(err)}") from None
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{key} must be a directory path, got {value!r}")
    return Path(value)


def run_train(overrides: list[str], progress: train.Progress | None,
              resume_dir: Path | None = None) -> dict[str, Any]:
    """One run into `hydra.run.dir` (default results/train/<timestamp>); returns its summary.
    resume_dir: continue the run there from its checkpoint, with its overrides (any given replace those
    of the same key)."""
    global _progress
    overrides = short_overrides(overrides)
    if resume_dir is not None:
        overrides = resume_overrides(resume_dir, overrides)
    run_dir = resolved_dir(overrides, "hydra.run.dir")
    overrides = [*without_key(overrides, "hydra.run.dir"), f"hydra.run.dir={_quoted(str(run_dir))}"]
    config = check(overrides)
    try:  # the run is on this machine: device=cuda needs a GPU here, and bf16 one that runs it
        pick_precision(config["precision"], train.pick_device(config["device"]))
    except (RuntimeError, ValueError) as err:
        raise BadInput(str(err)) from None
    if resume_dir is None:
        check_writable(run_dir)
    else:
        try:
            checkpoint.check_resumable(resume_dir, records.config_hash(config))
        except checkpoint.CheckpointError as err:
            raise BadInput(str(err)) from None
    _progress = progress
    try:
        with hydra_instance() as hydra, records.no_space_named(run_dir):  # Hydra writes .hydra/ first
            job = hydra.run(CONFIG_NAME, functools.partial(train_task, resume=resume_dir is not None), overrides)
        if isinstance(job.return_value, TaskRaised):
            raise job.return_value.error
        return job.return_value
    finally:
        _progress = None


def resume_overrides(run_dir: Path, given: list[str]) -> list[str]:
    """The overrides that continue the run in `run_dir`: its own (.hydra/overrides.yaml), any `given`
    replacing those of the same key, and the run dir itself as hydra.run.dir."""
    try:
        stored = [str(line) for line in OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")]
    except (OSError, OmegaConfBaseException, TypeError):
        raise BadInput(f"no run to resume at {run_dir} (it has no readable .hydra/overrides.yaml)") from None
    return [*sweeps.merge_overrides(stored, without_key(given, "hydra.run.dir")),
            f"hydra.run.dir={_quoted(str(run_dir))}"]


def job_facts() -> dict[str, Any]:
    """Where this job executes: the SLURM job id (as submitit names it) when there is one."""
    # SLURM counts the times it requeued a job (preemption, time limit, `scontrol requeue`).
    facts: dict[str, Any] = {"slurm_job_id": None, "requeues": int(os.environ.get("SLURM_RESTART_COUNT") or 0)}
    if "SLURM_ARRAY_JOB_ID" in os.environ:
        facts["slurm_job_id"] = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    elif "SLURM_JOB_ID" in os.environ:
        facts["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return facts


def set_threads(config: dict[str, Any], in_sweep: bool) -> None:
    """Torch intra-op threads: `threads` when set; inside a SLURM job the CPUs it was given; in a sweep
    cores // the runs sharing the machine (sweep.thread_budget); a single run keeps torch's default."""
    import torch

    in_slurm_job = bool(os.environ.get("SLURM_JOB_ID") and os.environ.get("SLURM_CPUS_PER_TASK"))
    if in_sweep or config.get("threads") or in_slurm_job:
        torch.set_num_threads(sweeps.thread_budget(config.get("threads")))


@dataclass
class TaskRaised:
    """What train_task returns for an exception it could not record in the run (a full disk): handed back
    as a value, so that Hydra does not print its own lines about it and the CLI says it in one."""

    error: Exception


def train_task(cfg: DictConfig, resume: bool = False) -> dict[str, Any] | TaskRaised:
    """Hydra's task function: one run in Hydra's job dir. Module-level so launchers can pickle it.
    resume (`train --resume`): continue the run in that dir from its checkpoint."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    config = to_plain(cfg)
    try:
        if hydra_cfg.mode != RunMode.MULTIRUN:
            set_threads(config, in_sweep=False)
            return recorded_run(config, run_dir, resume=resume)
        return sweep_job(config, run_dir, Path(hydra_cfg.sweep.dir))
    except Exception as err:  # noqa: BLE001 - handed to the caller, see TaskRaised
        return TaskRaised(err)


def recorded_run(config: dict[str, Any], run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """train.run, with every way it can end recorded in summary.json once the run dir exists: an
    exception the trainer could not record itself (e.g. while building a model too large to allocate)
    ends the run `failed` with its error; an interrupt before the trainer's own handling ends it
    `interrupted` (then re-raised), never left `running`."""
    try:
        return train.run(config, run_dir, progress=_progress, job=job_facts(), resume=resume)
    except KeyboardInterrupt:
        record_end(config, run_dir, "interrupted")
        raise
    except Exception as err:
        if _during_interrupt(err):  # recording an interrupted run broke: still an interrupt, not a failure
            record_end(config, run_dir, "interrupted")
            raise KeyboardInterrupt from err
        summary = record_end(config, run_dir, "failed", f"{type(err).__name__}: {err}")
        if _progress is not None:  # the run failed before the display heard of it: say so there
            _progress.run_started(config, run_dir)
            _progress.run_finished(summary, train.GradProfile())
        return summary


def sweep_job(config: dict[str, Any], run_dir: Path, sweep_dir: Path) -> dict[str, Any]:
    """One run of a sweep, in whatever process the launcher chose. A run that already ended completed or
    diverged with this very config is skipped (resume) without touching its files; any exception is
    recorded as a failed run so the sweep goes on; runs.csv is rebuilt as the run ends."""
    if os.getpid() != _launching_pid:
        _stop_once_on_signal()
        _end_when_orphaned()
    if _stopping:  # this worker was told to stop: start no further run
        raise KeyboardInterrupt
    previous = records.read_json(run_dir / records.SUMMARY_JSON)
    config_hash = records.config_hash(config)
    if sweeps.is_done(previous, config_hash):
        return {**previous, "skipped": True}
    # A run of this config that was interrupted, failed, killed or requeued goes on from its checkpoint.
    resume = bool(previous) and previous.get("config_hash") == config_hash
    set_threads(config, in_sweep=True)
    try:
        return recorded_run(config, run_dir, resume=resume)
    finally:
        try:
            records.write_runs_csv(sweep_dir)
        except OSError:  # runs.csv is rebuilt once more at the end of the sweep
            pass


def _during_interrupt(err: BaseException) -> bool:
    """`err` was raised while a KeyboardInterrupt was being handled."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__context__
    return False


def record_end(config: dict[str, Any], run_dir: Path, status: str, error: str | None = None) -> dict[str, Any]:
    """summary.json of a run that ended outside the trainer's own recording (an exception while building
    it, an interrupt during setup). A final status this process already wrote for it is kept."""
    summary = records.read_json(run_dir / records.SUMMARY_JSON)
    if isinstance(summary, dict) and summary.get("status") in sweeps.FINAL and summary.get("pid") == os.getpid():
        return summary
    summary = summary if isinstance(summary, dict) else {
        "steps_done": 0, "final_loss": None, "final_val_loss": None, "wall_s": 0.0}
    summary.update(status=status, error=error if error is not None else summary.get("error"),
                   config_hash=records.config_hash(config), slurm_job_id=job_facts()["slurm_job_id"],
                   pid=os.getpid())
    run_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(run_dir / records.SUMMARY_JSON, summary)
    return summary


_watching_controller = False


def _end_when_orphaned() -> None:
    """In a launcher's worker: once the sweep's controlling process is gone (kill -9), end the current
    run as a signal would (interrupted, flushed), then the worker itself, so that no orphan goes on
    writing runs that a resume may start again."""
    global _watching_controller
    if _watching_controller:
        return

    def orphaned() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(sweeps.FLUSH_WAIT_S)  # the run records `interrupted`; then nothing is left to do here
        os._exit(130)

    _watching_controller = sweeps.die_with_controller(os.environ.get(sweeps.CONTROLLER_ENV), orphaned) is not None


def _stop_once_on_signal() -> None:
    """In a launcher's worker: the first SIGINT or SIGTERM ends the current run as interrupted
    (KeyboardInterrupt: the trainer flushes and records it); later ones are ignored, so they cannot cut
    that flush short, and the worker starts no further run. SLURM's scancel sends SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(signum: int, frame: Any) -> None:
        global _stopping
        if not _stopping:
            _stopping = True
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)


# ----------------------------------------------------------------------------- sweeps
def _quoted(text: str) -> str:
    """A value for the override grammar that survives commas, spaces and brackets (e.g. a path)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _stored_overrides(sweep_dir: Path) -> list[str]:
    """The overrides sweep.json recorded, trusted no more than the command line: only resbench's own
    config keys and the launcher knobs of RESUMABLE_HYDRA_KEYS, never a Hydra setting that could import,
    call or run anything (callbacks, _target_, launcher setup commands, environment, search path)."""
    path = sweep_dir / records.SWEEP_JSON
    if not path.is_file():
        raise BadInput(f"no sweep to resume at {sweep_dir} (it has no {records.SWEEP_JSON})")
    data = records.read_json(path)
    if not isinstance(data, dict):
        raise BadInput(f"cannot resume from {path}: it is not a JSON object as resbench writes it "
                       "(unreadable, damaged or edited)")
    stored = data.get("overrides", [])
    if not isinstance(stored, list) or not all(isinstance(o, str) for o in stored):
        raise BadInput(f"cannot resume from {path}: 'overrides' must be a list of strings, got {stored!r}"[:300])
    stored = short_overrides(stored)
    try:
        parsed = parse_overrides(stored)
    except BadInput as err:
        raise BadInput(f"cannot resume from {path}: {err}") from None
    for text, override in zip(stored, parsed):
        if not _resumable(override):
            raise BadInput(f"cannot resume from {path}: refusing its override '{text}': only resbench's "
                           "config keys and launcher settings are taken from a sweep record "
                           "(give anything else on the command line)")
    return stored


# Hydra settings a sweep record may carry into a resume: the launcher and its plain knobs, as README
# documents them. Anything else of Hydra's (callbacks, setup commands, env_set, searchpath...) is refused.
RESUMABLE_HYDRA_KEYS = {
    "hydra/launcher", "hydra.sweep.subdir", "hydra.sweeper.max_batch_size",
    *(f"hydra.launcher.{knob}" for knob in (
        "n_jobs", "timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "nodes", "mem_gb",
        "partition", "account", "qos", "gres", "constraint", "array_parallelism")),
}


def _resumable(override: Override) -> bool:
    key = override.key_or_group
    if "_target_" in key or override.is_delete() or override.package is not None:
        return False
    value = override.value()
    if key == "hydra/launcher":
        return value in ("basic", *LAUNCHER_PLUGINS)
    if key in RESUMABLE_HYDRA_KEYS:  # a plain value: no interpolation, no nested config
        return isinstance(value, (str, int, float)) and "${" not in str(value)
    if key in CONFIG_GROUPS:
        return True  # Hydra picks an option of resbench's own conf/ or refuses the name
    return is_config_key(key)


def plan_sweep(overrides: list[str], resume: bool = False, resume_dir: Path | None = None) -> sweeps.SweepPlan:
    """Expand a sweep exactly as Hydra's basic sweeper will, compose and validate every run's config and
    name its dir, all before anything is written. Raises BadInput (one line) for anything wrong.

    resume: continue the sweep in `resume_dir` (default: hydra.sweep.dir if given, else the latest),
    with its stored overrides, any given here replacing those of the same key."""
    overrides = short_overrides(overrides)
    dir_overrides = [o for o in overrides if o not in without_key(overrides, "hydra.sweep.dir")][-1:]
    overrides = without_key(overrides, "hydra.sweep.dir")
    # A given dir is resolved once here (it may hold ${now:...} or quotes), then pinned.
    given_dir = resolved_dir(dir_overrides, "hydra.sweep.dir") if dir_overrides else None
    if resume:
        sweep_dir = resume_dir or given_dir or sweeps.latest_sweep()
        if sweep_dir is None:
            raise BadInput(f"no sweep to resume: none under {sweeps.SWEEPS_ROOT}/ (name one: --resume DIR)")
        overrides = sweeps.merge_overrides(_stored_overrides(sweep_dir), overrides)
    else:
        sweep_dir = given_dir or sweeps.SWEEPS_ROOT / timestamp()
    _check_launcher_installed(overrides)
    try:
        with hydra_instance() as hydra:
            base = _compose_sweep(hydra, overrides)
            return _plan(hydra, base, overrides, sweep_dir.resolve(), resume)
    except BadInput:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise BadInput(explain(err, overrides)) from None


def _check_launcher_installed(overrides: list[str]) -> None:
    launcher = given_override(overrides, "hydra/launcher")
    name = launcher.value() if launcher is not None else None
    if name in LAUNCHER_PLUGINS:
        module, extra = LAUNCHER_PLUGINS[name]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # not even the hydra_plugins namespace: no plugin installed at all
            found = False
        if not found:
            raise BadInput(f"hydra/launcher={name} needs its plugin: pip install '{extra}'")


def _compose_sweep(hydra: Any, overrides: list[str]) -> DictConfig:
    """The sweep-level config, as Hydra's multirun composes it (sweep overrides left for the sweeper)."""
    return hydra.compose_config(CONFIG_NAME, [*overrides, "hydra.mode=MULTIRUN"], run_mode=RunMode.MULTIRUN,
                                with_log_configuration=False)


def _pin(base: DictConfig, hydra_overrides: list[str], sweep_dir: Path) -> None:
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


def _expand(hydra: Any, base: DictConfig) -> tuple[dict[str, list[str]], list[list[str]]]:
    """The sweeper's own expansion: its params (e.g. from an experiment preset) first, then the command
    line. Returns each key's listed values and the jobs (one override list per run)."""
    params = [f"{key}={value}" for key, value in (base.hydra.sweeper.params or {}).items()]
    arguments = OverridesParser.create(config_loader=hydra.config_loader).parse_overrides(
        params + list(base.hydra.overrides.task))
    values: dict[str, list[str]] = {}
    for override in arguments:
        values[override.key_or_group] = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                                         else [override.get_value_element_as_str()])
    empty = [key for key, listed in values.items() if not listed]
    if empty:
        raise BadInput(f"{empty[0]}: the sweep list is empty, so the sweep has no runs")
    return values, BasicSweeper.split_arguments(arguments, None)[0]


def _checked_job_config(job_cfg: DictConfig, label: str, checked_tasks: set[str]) -> dict[str, Any]:
    """One job's resolved config, validated, its task built once per distinct task (it may read a corpus);
    a problem is BadInput naming the job by its swept values (`label`)."""
    try:
        config = to_plain(job_cfg)
        validate(config)
        task_key = json.dumps([config["task"], config["train"]["batch_size"]], sort_keys=True, default=str)
        if task_key not in checked_tasks:
            build_task(config["task"], config["train"]["batch_size"])
            checked_tasks.add(task_key)
    except (ConfigError, TaskError) as err:
        raise BadInput(f"{label}: {err}" if label else str(err)) from None
    except OmegaConfBaseException as err:
        raise BadInput(f"{label}: {explain(err)}" if label else explain(err)) from None
    return config


def _plan(hydra: Any, base: DictConfig, overrides: list[str], sweep_dir: Path, resume: bool) -> sweeps.SweepPlan:
    if resume and not (sweep_dir / records.SWEEP_JSON).is_file():
        raise BadInput(f"no sweep to resume at {sweep_dir} (it has no {records.SWEEP_JSON})")
    pins = [f"hydra.sweep.dir={_quoted(str(sweep_dir))}"]
    choices = base.hydra.runtime.choices
    if choices.get("hydra/sweeper") != "basic":
        raise BadInput(f"hydra/sweeper={choices.get('hydra/sweeper')}: only Hydra's basic sweeper is supported")
    launcher = str(choices.get("hydra/launcher"))

    values, jobs = _expand(hydra, base)
    swept_keys = [key for key, listed in values.items() if len(listed) > 1]

    # Run dirs are named by the swept keys only (depth=6,norm=pre): stable across resume; keys that
    # do not vary (train.steps=3, +experiment=NAME) stay out of the name.
    if given_override(overrides, "hydra.sweep.subdir") is None:
        fixed = sorted(set(values) - set(swept_keys))
        pins.append(f"hydra.job.config.override_dirname.exclude_keys=[{','.join(map(_quoted, fixed))}]")
        if not swept_keys:
            pins.append("hydra.sweep.subdir=run")
    _pin(base, pins, sweep_dir)

    runs = []
    checked_tasks: set[str] = set()
    done_elsewhere = sweeps.done_runs_by_hash(sweep_dir) if resume else {}
    job_configs = JobConfigs(hydra, base)
    for index, job in enumerate(jobs):
        job_cfg = job_configs.compose(list(job))
        name = str(job_cfg.hydra.sweep.subdir)
        job_values = {records.override_key(o): o.split("=", 1)[1] for o in job}
        swept = {key: job_values[key] for key in swept_keys}
        label = " ".join(f"{key}={value}" for key, value in swept.items())
        config = _checked_job_config(job_cfg, label, checked_tasks)
        run_dir = sweep_dir / name
        if name in ("", ".") or not run_dir.resolve().is_relative_to(sweep_dir):
            raise BadInput(f"run dir '{name}' of {label or 'the run'} is not inside the sweep dir "
                           "(check hydra.sweep.subdir)")
        config_hash = records.config_hash(config)
        previous = records.read_json(run_dir / records.SUMMARY_JSON) if resume else None
        if resume and not sweeps.is_done(previous, config_hash) and config_hash in done_elsewhere:
            name, previous = done_elsewhere[config_hash]  # this config already ran under another name
            run_dir = sweep_dir / name
        runs.append(sweeps.PlannedRun(index, name, run_dir, list(job), swept, config_hash, previous))

    shared = [name for name, count in Counter(run.name for run in runs).items() if count > 1]
    if shared:
        raise BadInput(f"two runs would share the run dir '{shared[0]}': is a value listed twice?")
    check_resumable(runs)
    if not resume:
        check_writable(sweep_dir)

    launcher_cfg = OmegaConf.to_container(base.hydra.launcher, resolve=True)
    n_parallel = sweeps.parallel_runs(launcher, launcher_cfg, base.hydra.sweeper.max_batch_size,
                                      sum(not run.done_before for run in runs))
    pins.append(f"++hydra.job.env_set.{sweeps.PARALLEL_RUNS_ENV}={n_parallel}")
    pins.append(f"++hydra.job.env_set.{sweeps.CONTROLLER_ENV}={_quoted(sweeps.controller_id())}")
    return sweeps.SweepPlan(
        sweep_dir=sweep_dir, launcher=launcher, overrides=overrides, hydra_overrides=[*overrides, *pins],
        swept_keys=swept_keys, runs=runs, parallel_runs=n_parallel, resume=resume,
        submitit_folder=launcher_cfg.get("submitit_folder"),
    )


def check_resumable(runs: list[sweeps.PlannedRun]) -> None:
    """Refuse (BadInput) to write over a result of another config, or into a run a live process owns."""
    ended = [run for run in runs if (run.previous or {}).get("status") in sweeps.DONE and not run.done_before]
    if ended:  # never write over a result
        raise BadInput(f"run dir '{ended[0].name}' holds a {ended[0].previous['status']} run of another config, "
                       "which resuming would overwrite: start a new sweep (or remove that run dir to rerun it)")
    for run in runs:
        if (pid := sweeps.live_owner(run.previous)) is not None:
            raise BadInput(f"run dir '{run.name}' is being run by live process {pid} (a worker of an earlier "
                           "sweep?): wait for it to end or stop it, then resume")


def run_sweep(plan: sweeps.SweepPlan, display: Any) -> sweeps.SweepOutcome:
    """Launch the planned sweep through Hydra's launcher; report runs as they end (display.run_ended);
    return what each run ended as. The sweep dir is locked for the whole time: a second sweep or resume
    there is refused (BadInput). Ctrl-C or SIGTERM: the runs going on end `interrupted` and no further run
    starts (SweepOutcome.interrupted)."""
    try:
        with sweeps.sweep_lock(plan.sweep_dir):
            if plan.resume:  # what the runs are now, read again under the lock
                for run in plan.runs:
                    run.previous = records.read_json(run.dir / records.SUMMARY_JSON)
                check_resumable(plan.runs)
            return _run_locked(plan, display)
    except sweeps.SweepBusy as err:
        raise BadInput(str(err)) from None


def _run_locked(plan: sweeps.SweepPlan, display: Any) -> sweeps.SweepOutcome:
    global _progress, _launching_pid
    sweeps.write_sweep_json(plan)
    watcher = sweeps.Watcher(plan.runs, display.run_ended, provisional=(
        ("interrupted",) if plan.launcher in sweeps.REQUEUEING_LAUNCHERS else ()),
        on_start=lambda run: _rebuild_runs_csv(plan.sweep_dir))
    submitted_before = sweeps.submitit_job_dirs(plan)
    interrupted, error = False, None
    display.start(plan)
    _progress = display if plan.launcher == "basic" else None  # in-process: the current run's steps
    _launching_pid = os.getpid()
    watcher.start()
    try:
        with sweeps.stop_workers_on_interrupt(plan, watcher), hydra_instance() as hydra:
            batches = _launch_planned(hydra, plan)
        error = next((_one_line(problem) for problem in map(_job_problem, (j for b in batches for j in b))
                      if problem is not None), None)
    except KeyboardInterrupt:
        interrupted = True
        if plan.launcher == "submitit_slurm" and sweeps.cancel_slurm_jobs(plan, submitted_before):
            sweeps.wait_for_flush(plan.runs, watcher, None)
    except Exception as err:  # noqa: BLE001 - the sweep broke (a worker killed, a job lost): report it
        error = _one_line(err)
    finally:
        _progress, _launching_pid = None, None
        watcher.stop()
        display.stop()
        try:
            records.write_runs_csv(plan.sweep_dir)
        except OSError as err:  # a full disk: runs.csv keeps its last whole version
            error = error or _one_line(err)
        _write_hparams(plan)
    return sweeps.collect(plan, watcher, interrupted, error)


def _write_hparams(plan: sweeps.SweepPlan) -> None:
    """The HParams sessions of the runs that logged to TensorBoard (only the sweep knows its swept keys)."""
    if not any((run.dir / loggers.TB_DIR).is_dir() for run in plan.runs):
        return
    try:
        loggers.write_sweep_hparams(plan.sweep_dir)
    except (OSError, ValueError):  # a run unreadable now: `resbench report DIR --tensorboard` writes them later
        pass


def _rebuild_runs_csv(sweep_dir: Path) -> None:
    try:
        records.write_runs_csv(sweep_dir)
    except OSError:  # a full disk: rebuilt again as runs end and at the end of the sweep
        pass


def _job_problem(job: Any) -> Exception | None:
    """What went wrong with a launched job (a JobReturn), if anything: an exception its task function
    handed back (TaskRaised), or one Hydra met around it (e.g. writing .hydra/ on a full disk)."""
    if job.status == JobStatus.FAILED:
        return job._return_value
    return job.return_value.error if isinstance(job.return_value, TaskRaised) else None


def _launch_planned(hydra: Any, plan: sweeps.SweepPlan) -> list[Any]:
    """Hydra's multirun (compose, callbacks, sweeper's launcher, multirun.yaml), launching the planned
    jobs that are to run: the plan is the basic sweeper's own expansion, less the runs resume skips, so a
    skipped run's dir (its .hydra/ included) is never touched. Batches of hydra.sweeper.max_batch_size."""
    cfg = hydra.compose_config(CONFIG_NAME, [*plan.hydra_overrides, "hydra.mode=MULTIRUN"],
                               run_mode=RunMode.MULTIRUN, with_log_configuration=True)
    callbacks = Callbacks(cfg)
    callbacks.on_multirun_start(config=cfg, config_name=CONFIG_NAME)
    sweeper = Plugins.instance().instantiate_sweeper(
        config=cfg, hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=callbacks),
        task_function=train_task)
    OmegaConf.save(cfg, plan.sweep_dir / "multirun.yaml")
    jobs = [run.overrides for run in plan.to_run]
    size = sweeper.max_batch_size if sweeper.max_batch_size and sweeper.max_batch_size > 0 else max(1, len(jobs))
    batches = [sweeper.launcher.launch(jobs[start:start + size], initial_job_idx=start)
               for start in range(0, len(jobs), size)]
    callbacks.on_multirun_end(config=cfg, config_name=CONFIG_NAME)
    return batches


def _one_line(err: BaseException) -> str:
    """An error as one line: a full disk as records names it, anything else by its type and first line."""
    if isinstance(err, records.NoSpaceError):
        return str(err)
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0][:300] if lines else ''}"


# ----------------------------------------------------------------------------- error messages
_NOT_IN_STRUCT = re.compile(r"Could not override '([^']+)'")
_MISSING_GROUP = re.compile(r"Could not find '([^']+)/([^']+)'")
_AVAILABLE = re.compile(r"Available options in '[^']+':\n((?:\t.*\n?)*)")


def _valid_keys(key: str, overrides: list[str] = ()) -> list[str]:
    """The keys beside `key`, in the config that `overrides`' group choices select (model=mlp,
    hydra/launcher=joblib, ...; lists are left out)."""
    parent = key.rsplit(".", 1)[0] if "." in key else None
    groups = [o for o in overrides if "=" in o and not re.search(r"[,(]", o.split("=", 1)[1])
              and ("/" in records.override_key(o) or records.override_key(o) in ("model", "task", "experiment"))]
    try:
        with hydra_instance():
            base = hydra_compose(CONFIG_NAME, overrides=groups, return_hydra_config=key.startswith("hydra."))
    except (HydraException, OmegaConfBaseException):
        with hydra_instance():
            base = hydra_compose(CONFIG_NAME, return_hydra_config=key.startswith("hydra."))
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
        key = match.group(1)
        valid = _valid_keys(key, list(overrides))
        if not valid and key.startswith("hydra.launcher."):
            return (f"unknown key '{key}': this launcher has no settings; choose one that has them first "
                    "(hydra/launcher=joblib, submitit_local or submitit_slurm)")
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

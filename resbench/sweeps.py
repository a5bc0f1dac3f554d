"""Sweeps: plan a multirun (expanded as Hydra's basic sweeper will, every run's config composed and
checked, its dir named, before anything is written), launch it through Hydra's launcher (hydra_adapter),
watch its runs end (sweep_watch), resume it, and tell what each run ended as.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from . import checkpoint, hydra_adapter, paths, records, schema, sweep_watch
from .config import (
    COMPOSE_ERRORS,
    BadInput,
    MemoryLimits,
    built_task,
    check_writable,
    explain,
    given_override,
    memory_here,
    quoted,
    resolved_dir,
    resumed_overrides,
    short_overrides,
    validated,
    without_key,
)
from .jobs import TaskRaised, made_callbacks, train_task
from .registries import BASIC_LAUNCHER, CLUSTER_LAUNCHERS, LAUNCHER_PLUGINS
from .schema import DONE, TB_DIR, Status, override_key
from .sweep_watch import is_done, pid_alive, usable_cores

SWEEPS_ROOT = Path(schema.RESULTS_ROOT, schema.SWEEPS_DIR)
DEFAULT_LAUNCHER = "joblib"  # a sweep that names no launcher runs two or more runs side by side with it
# A SLURM job that is preempted, timed out or requeued ends its run `interrupted` and runs again later,
# continuing from its checkpoint: on this launcher an interrupted run has ended only once the sweep has.
REQUEUEING_LAUNCHERS = ("submitit_slurm",)


# ----------------------------------------------------------------------------- the plan
@dataclass
class PlannedRun:
    """One job of the sweep, as Hydra will run it."""

    index: int
    name: str  # run dir relative to the sweep dir (Hydra's hydra.sweep.subdir)
    dir: Path
    overrides: list[str]  # this job's task overrides
    swept: dict[str, str]  # swept key -> this run's value (as typed)
    config_hash: str  # records.config_hash of the resolved config
    previous: dict[str, Any] | None = None  # summary.json found before launching (resume)
    cost: float = 0.0  # expected_cost of its config: longer runs start first
    steps: int = 0  # train.steps of its config (the live display's step count)
    threads: int | None = None  # the config's `threads` (None: the thread budget decides)

    @property
    def done_before(self) -> bool:
        """Resume skips it: it already ended completed or diverged with this very config."""
        return is_done(self.previous, self.config_hash)

    @property
    def label(self) -> str:
        return ",".join(f"{key}={value}" for key, value in self.swept.items()) or self.name


@dataclass
class SweepPlan:
    sweep_dir: Path
    launcher: str  # hydra/launcher choice: basic, joblib, submitit_local, submitit_slurm
    overrides: list[str]  # as the user gave them (sweep.json; what --resume reuses)
    hydra_overrides: list[str]  # the full list handed to Hydra's multirun
    swept_keys: list[str]  # keys with more than one value
    runs: list[PlannedRun]
    parallel_runs: int  # runs sharing this machine at once (1 for SLURM: each job has its own CPUs)
    resume: bool = False
    submitit_folder: str | None = None  # submitit launchers: where job folders go (%j = job id)
    reorder: bool = True  # start the longest runs first (not when hydra.sweep.subdir may name dirs by job number)

    @property
    def to_run(self) -> list[PlannedRun]:
        return [run for run in self.runs if not run.done_before]

    @property
    def launch_order(self) -> list[PlannedRun]:
        """The runs to run, in the order they are handed to the launcher."""
        return longest_first(self.to_run) if self.reorder else self.to_run



def parallel_runs(launcher: str, launcher_cfg: dict[str, Any], max_batch_size: int | None, n_runs: int,
                  cores: int | None = None) -> int:
    """How many runs of this sweep execute on this machine at once."""
    cores = cores or usable_cores()
    if launcher == "joblib":
        n_jobs = launcher_cfg.get("n_jobs") or 1
        workers = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 all, -2 all but one
    elif launcher == "submitit_local":
        workers = n_runs  # submitit_local starts a whole batch at once
    else:  # basic (in-process, sequential), submitit_slurm (jobs get their own CPUs)
        return 1
    batch = max_batch_size if max_batch_size and max_batch_size > 0 else n_runs
    return max(1, min(workers, n_runs, batch))


def default_workers(n_runs: int, threads: int | None, cores: int | None = None) -> int:
    """Runs side by side when a sweep names no launcher: as many as the usable cores hold at `threads`
    each (1 when unset: a small model gains little from a second thread), never more than the runs."""
    return max(1, min(n_runs, (cores or usable_cores()) // max(1, threads or 1)))


def expected_cost(config: dict[str, Any]) -> float:
    """A run's expected work, to start the longest runs first: blocks × steps × width² × tokens per batch."""
    tokens = config["train"]["batch_size"] * (config["task"].get("seq_len") or 1)
    return float(config["depth"] * max(config["train"]["steps"], 1) * config["width"] ** 2 * tokens)


def longest_first(runs: list[PlannedRun]) -> list[PlannedRun]:
    """The runs in the order to start them: the most expensive first (stable: ties keep the given
    order), so that the longest run of a grid does not start last and bound the sweep's wall time."""
    return sorted(runs, key=lambda run: -run.cost)



def done_runs_by_hash(sweep_dir: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """config hash -> (run dir name, summary) of every run under `sweep_dir` that ended completed or
    diverged, whatever its dir is named: resume knows a config it has already run under any name."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for run_dir in records.find_runs(sweep_dir):
        summary = records.read_json(run_dir / schema.SUMMARY_JSON)
        if isinstance(summary, dict) and summary.get("status") in DONE and summary.get("config_hash"):
            found.setdefault(summary["config_hash"], (run_dir.relative_to(sweep_dir).as_posix(), summary))
    return found


def live_owner(summary: dict[str, Any] | None) -> int | None:
    """The pid of a live process on this machine that is running this run (its summary says `running`),
    e.g. a launcher's worker that outlived its sweep; None when nobody is. A SLURM job's pid is another
    node's and is not checked here."""
    if not isinstance(summary, dict) or summary.get("status") != Status.RUNNING:
        return None
    if summary.get("slurm_job_id"):
        return None
    pid = summary.get("pid")
    return pid if isinstance(pid, int) and pid != os.getpid() and pid_alive(pid) else None



def write_sweep_json(plan: SweepPlan) -> None:
    """sweep.json at the sweep root, before any run starts (the report and runs.csv read it)."""
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(plan.sweep_dir / schema.SWEEP_JSON, {
        "swept_keys": plan.swept_keys,
        "overrides": plan.overrides,
        "n_runs": len(plan.runs),
        "launcher": plan.launcher,
        "runs": [run.name for run in plan.runs],
    })



def _stored_overrides(sweep_dir: Path) -> list[str]:
    """The overrides sweep.json recorded, as stored (what a resume may take of them is
    config.resumed_overrides's rule)."""
    path = sweep_dir / schema.SWEEP_JSON
    if not path.is_file():
        raise BadInput(f"no sweep to resume at {sweep_dir} (it has no {schema.SWEEP_JSON})")
    data = records.read_json(path)
    if not isinstance(data, dict):
        raise BadInput(f"cannot resume from {path}: it is not a JSON object as resbench writes it "
                       "(unreadable, damaged or edited)")
    stored = data.get("overrides", [])
    if not isinstance(stored, list) or not all(isinstance(o, str) for o in stored):
        raise BadInput(f"cannot resume from {path}: 'overrides' must be a list of strings, got {stored!r}"[:300])
    return stored


def plan_sweep(overrides: list[str], resume: bool = False, resume_dir: Path | None = None) -> SweepPlan:
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
        sweep_dir = resume_dir or given_dir or records.latest_sweep(SWEEPS_ROOT)
        if sweep_dir is None:
            raise BadInput(f"no sweep to resume: none under {SWEEPS_ROOT}/ (name one: --resume DIR)")
        stored = _stored_overrides(sweep_dir)
        overrides = resumed_overrides(stored, overrides, sweep_dir / schema.SWEEP_JSON, launcher=True)
    else:
        sweep_dir = given_dir or SWEEPS_ROOT / datetime.now().strftime(schema.TIMESTAMP_FORMAT)
    _check_launcher_installed(overrides)
    if given_override(overrides, "hydra/launcher") is None and any(
            override_key(o).startswith("hydra.launcher.") for o in overrides):
        overrides = [*overrides, f"hydra/launcher={DEFAULT_LAUNCHER}"]  # its settings name the default
    try:
        with hydra_adapter.hydra_instance() as hydra:
            base = hydra_adapter.compose_multirun(hydra, overrides)
            return _plan(hydra, base, overrides, sweep_dir.resolve(), resume)
    except BadInput:
        raise
    except COMPOSE_ERRORS as err:
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


def _expand(hydra: Any, base: DictConfig) -> tuple[dict[str, list[str]], list[list[str]]]:
    """The sweeper's expansion (hydra_adapter.expand); a key listed with no value at all is BadInput."""
    values, jobs = hydra_adapter.expand(hydra, base)
    empty = [key for key, listed in values.items() if not listed]
    if empty:
        raise BadInput(f"{empty[0]}: the sweep list is empty, so the sweep has no runs")
    return values, jobs


def _checked_job_config(job_cfg: DictConfig, label: str, checked_tasks: set[str],
                        limits: MemoryLimits) -> dict[str, Any]:
    """One job's resolved config, validated (its memory against `limits`), its task built once per distinct
    task (it may read a corpus; each run's process builds its own again); a problem is BadInput naming the
    job by its swept values."""
    config = validated(job_cfg, label, limits)
    task_key = json.dumps([config["task"], config["train"]["batch_size"]], sort_keys=True, default=str)
    if task_key not in checked_tasks:
        built_task(config, label)
        checked_tasks.add(task_key)
    return config


def _memory_where_runs_go(launcher: str, base: DictConfig) -> MemoryLimits:
    """This machine's memory, unless the launcher sends the runs to a cluster's nodes: there, the memory each
    run asks for (`hydra.launcher.mem_gb`) where given, and no GPU check (the nodes' GPUs are not seen here)."""
    if launcher not in CLUSTER_LAUNCHERS:
        return memory_here
    mem_gb = OmegaConf.select(base, "hydra.launcher.mem_gb")
    asked = (int(mem_gb * 2**30), f"hydra.launcher.mem_gb={mem_gb}") if mem_gb else None
    return lambda config: (asked, None)


def _plan(hydra: Any, base: DictConfig, overrides: list[str], sweep_dir: Path, resume: bool) -> SweepPlan:
    if resume and not (sweep_dir / schema.SWEEP_JSON).is_file():
        raise BadInput(f"no sweep to resume at {sweep_dir} (it has no {schema.SWEEP_JSON})")
    pins = [f"hydra.sweep.dir={quoted(str(sweep_dir))}"]
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
        pins.append(f"hydra.job.config.override_dirname.exclude_keys=[{','.join(map(quoted, fixed))}]")
        if not swept_keys:
            pins.append("hydra.sweep.subdir=run")
    hydra_adapter.add_hydra_overrides(base, pins, sweep_dir)
    made_callbacks(base)  # a callback that cannot be made is refused now, not once the sweep dir is written

    runs = _planned_runs(hydra_adapter.JobConfigs(hydra, base), jobs, swept_keys, sweep_dir, resume,
                         _memory_where_runs_go(launcher, base))
    shared = [name for name, count in Counter(run.name for run in runs).items() if count > 1]
    if shared:
        raise BadInput(f"two runs would share the run dir '{shared[0]}': is a value listed twice?")
    check_resumable(runs)
    if not resume:
        check_writable(sweep_dir, "hydra.sweep.dir")
    else:  # a resume writes on in the sweep dir and in the run dirs it continues
        check_writable(sweep_dir, "sweep --resume", empty=False)
        for run in runs:
            if not run.done_before and run.dir.is_dir():
                check_writable(run.dir, f"the run dir of {run.label}", empty=False)

    launcher, launcher_cfg, n_parallel = _launcher_for(base, overrides, runs, launcher)
    if launcher != choices.get("hydra/launcher"):  # the default: side by side
        pins += [f"hydra/launcher={launcher}", f"hydra.launcher.n_jobs={launcher_cfg['n_jobs']}"]
    pins.append(f"++hydra.job.env_set.{sweep_watch.PARALLEL_RUNS_ENV}={n_parallel}")
    pins.append(f"++hydra.job.env_set.{sweep_watch.CONTROLLER_ENV}={quoted(sweep_watch.controller_id())}")
    return SweepPlan(
        sweep_dir=sweep_dir, launcher=launcher, overrides=overrides, hydra_overrides=[*overrides, *pins],
        swept_keys=swept_keys, runs=runs, parallel_runs=n_parallel, resume=resume,
        submitit_folder=launcher_cfg.get("submitit_folder"),
        # dirs named by value (the default subdir): any start order keeps them
        reorder=given_override(overrides, "hydra.sweep.subdir") is None,
    )


def _planned_runs(job_configs: hydra_adapter.JobConfigs, jobs: list[list[str]], swept_keys: list[str], sweep_dir: Path,
                  resume: bool, limits: MemoryLimits) -> list[PlannedRun]:
    """Each job's config composed and checked, its run dir named (resume: found by config hash)."""
    runs: list[PlannedRun] = []
    checked_tasks: set[str] = set()
    done_elsewhere = done_runs_by_hash(sweep_dir) if resume else {}
    for index, job in enumerate(jobs):
        job_cfg = job_configs.compose(list(job))
        name = str(job_cfg.hydra.sweep.subdir)
        job_values = {override_key(o): o.split("=", 1)[1] for o in job}
        swept = {key: job_values[key] for key in swept_keys}
        label = " ".join(f"{key}={value}" for key, value in swept.items())
        config = _checked_job_config(job_cfg, label, checked_tasks, limits)
        run_dir = sweep_dir / name
        try:
            paths.checked(run_dir, f"the run dir of {label or 'the run'}")
        except paths.PathError as err:
            raise BadInput(str(err)) from None
        if name in ("", ".") or not run_dir.resolve().is_relative_to(sweep_dir):
            raise BadInput(f"run dir '{name}' of {label or 'the run'} is not inside the sweep dir "
                           "(check hydra.sweep.subdir)")
        config_hash = records.config_hash(config)
        previous = records.read_json(run_dir / schema.SUMMARY_JSON) if resume else None
        if resume and not is_done(previous, config_hash) and config_hash in done_elsewhere:
            name, previous = done_elsewhere[config_hash]  # this config already ran under another name
            run_dir = sweep_dir / name
        elif resume and isinstance(previous, dict) and previous.get("config_hash") == config_hash:
            _check_checkpoint(run_dir, config, label or name)  # the run will go on from it
        runs.append(PlannedRun(index, name, run_dir, list(job), swept, config_hash, previous,
                                      cost=expected_cost(config), steps=config["train"]["steps"],
                                      threads=config.get("threads")))
    return runs


def _check_checkpoint(run_dir: Path, config: dict[str, Any], label: str) -> None:
    """A run that resume continues from its checkpoint: every field of it checked now (BadInput)."""
    try:
        checkpoint.state_to_continue(run_dir, config, built_task(config, label))
    except checkpoint.CheckpointError as err:
        raise BadInput(f"{label}: {err}") from None


def _launcher_for(base: DictConfig, overrides: list[str], runs: list[PlannedRun],
                  launcher: str) -> tuple[str, dict[str, Any], int]:
    """The launcher, its settings and the runs side by side on this machine. No launcher named: two or
    more runs to run go side by side on the default launcher, as many as the usable cores hold at the
    runs' `threads` (default_workers); one run, or one core, stays in-process."""
    launcher_cfg = OmegaConf.to_container(base.hydra.launcher, resolve=True)
    if launcher == "joblib" and launcher_cfg.get("n_jobs") == 0:
        raise BadInput("hydra.launcher.n_jobs=0 runs nothing: give the number of runs side by side (>= 1), or "
                       "-1 for one per core (-2: all but one)")
    n_to_run = sum(not run.done_before for run in runs)
    if launcher == BASIC_LAUNCHER and given_override(overrides, "hydra/launcher") is None:
        workers = default_workers(n_to_run, max((run.threads or 1 for run in runs), default=1))
        if workers > 1:
            launcher, launcher_cfg = DEFAULT_LAUNCHER, {"n_jobs": workers}
    return launcher, launcher_cfg, parallel_runs(launcher, launcher_cfg, base.hydra.sweeper.max_batch_size,
                                                        n_to_run)


def check_resumable(runs: list[PlannedRun]) -> None:
    """Refuse (BadInput) to write over a result of another config, or into a run a live process owns."""
    ended = [run for run in runs if (run.previous or {}).get("status") in DONE and not run.done_before]
    if ended:  # never write over a result
        raise BadInput(f"run dir '{ended[0].name}' holds a {ended[0].previous['status']} run of another config, "
                       "which resuming would overwrite: start a new sweep (or remove that run dir to rerun it)")
    for run in runs:
        if (pid := live_owner(run.previous)) is not None:
            raise BadInput(f"run dir '{run.name}' is being run by live process {pid} (a worker of an earlier "
                           "sweep?): wait for it to end or stop it, then resume")


def run_sweep(plan: SweepPlan, display: Any) -> SweepOutcome:
    """Launch the planned sweep through Hydra's launcher; report runs as they end (display.run_ended);
    return what each run ended as. The sweep dir is locked for the whole time: a second sweep or resume
    there is refused (BadInput). Ctrl-C or SIGTERM: the runs going on end `interrupted` and no further run
    starts (SweepOutcome.interrupted)."""
    try:
        with sweep_watch.sweep_lock(plan.sweep_dir):
            if plan.resume:  # what the runs are now, read again under the lock
                for run in plan.runs:
                    run.previous = records.read_json(run.dir / schema.SUMMARY_JSON)
                check_resumable(plan.runs)
            return _run_locked(plan, display)
    except sweep_watch.SweepBusy as err:
        raise BadInput(str(err)) from None


def _run_locked(plan: SweepPlan, display: Any) -> SweepOutcome:
    write_sweep_json(plan)
    in_process = plan.launcher == "basic"  # the trainer tells the display each step; else metrics.csv does
    watcher = sweep_watch.Watcher(plan.runs, display.run_ended, provisional=(
        (Status.INTERRUPTED,) if plan.launcher in REQUEUEING_LAUNCHERS else ()),
        on_start=lambda run: _rebuild_runs_csv(plan.sweep_dir),
        on_progress=None if in_process else display.run_progress)
    task_function = functools.partial(train_task, progress=display if in_process else None,
                                      launching_pid=os.getpid(), command=list(sys.argv))
    submitted_before = sweep_watch.submitit_job_dirs(plan)
    interrupted, error = False, None
    if plan.launcher == "joblib":
        sweep_watch.quiet_resource_tracker()
    records.remove_stale_temporaries(plan.sweep_dir)  # what a killed sweep was writing (runs.csv)
    display.start(plan)
    watcher.start()
    try:
        with sweep_watch.stop_workers_on_interrupt(plan, watcher), hydra_adapter.hydra_instance() as hydra:
            jobs = hydra_adapter.launch(hydra, plan.hydra_overrides, [run.overrides for run in plan.launch_order],
                                        task_function, plan.sweep_dir)
        error = next((_one_line(problem) for problem in map(_job_problem, jobs) if problem is not None), None)
    except KeyboardInterrupt:
        interrupted = True
        if plan.launcher == "submitit_slurm" and sweep_watch.cancel_slurm_jobs(plan, submitted_before):
            sweep_watch.wait_for_flush(plan.runs, watcher, None)
    except Exception as err:  # noqa: BLE001 - the sweep broke (a worker killed, a job lost): report it
        error = _one_line(err)
    finally:
        error = _wind_down(plan, watcher, display) or error
    return collect(plan, watcher, interrupted, error)


def _wind_down(plan: SweepPlan, watcher: sweep_watch.Watcher, display: Any) -> str | None:
    """After the launcher returned (or broke): no worker left, the last runs reported, runs.csv and the
    HParams sessions written. Returns a full disk's line, if runs.csv could not be written."""
    if plan.launcher == "joblib":
        sweep_watch.stop_idle_workers()  # no worker outlives its sweep
    watcher.stop()
    display.stop()
    error = None
    try:
        records.write_runs_csv(plan.sweep_dir)
    except OSError as err:  # a full disk: runs.csv keeps its last whole version
        error = _one_line(err)
    _write_hparams(plan)
    return error


def _write_hparams(plan: SweepPlan) -> None:
    """The HParams sessions of the runs that logged to TensorBoard (only the sweep knows its swept keys)."""
    if not any((run.dir / TB_DIR).is_dir() for run in plan.runs):
        return
    from .report.tensorboard import write_sweep_hparams  # it reads the runs with pandas: only when needed

    try:
        write_sweep_hparams(plan.sweep_dir)
    except (OSError, ValueError):  # a run unreadable now: `resbench report DIR --tensorboard` writes them later
        pass


def _rebuild_runs_csv(sweep_dir: Path) -> None:
    try:
        records.write_runs_csv(sweep_dir)
    except OSError:  # a full disk: rebuilt again as runs end and at the end of the sweep
        pass


def _job_problem(job: Any) -> BaseException | None:
    """What went wrong with a launched job, if anything: an exception its task function handed back
    (TaskRaised), or one Hydra met around it (e.g. writing .hydra/ on a full disk)."""
    raised, value = hydra_adapter.job_problem(job)
    return raised if raised is not None else value.error if isinstance(value, TaskRaised) else None


def _one_line(err: BaseException) -> str:
    """An error as one line: a full disk as records names it, anything else by its type and first line."""
    if isinstance(err, records.NoSpaceError):
        return str(err)
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0][:300] if lines else ''}"



# ----------------------------------------------------------------------------- the outcome
@dataclass
class RunOutcome:
    run: PlannedRun
    status: str  # completed, diverged, failed, interrupted, running (killed), not run
    summary: dict[str, Any] | None
    skipped: bool = False  # resume: it had ended before with this config, so it was not rerun


@dataclass
class SweepOutcome:
    plan: SweepPlan
    runs: list[RunOutcome] = field(default_factory=list)
    interrupted: bool = False
    error: str | None = None  # the sweep itself broke (a worker killed, a SLURM job lost, ...)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if self.error or any(r.status == Status.FAILED and not r.skipped for r in self.runs):
            return 1
        return 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)


def collect(plan: SweepPlan, watcher: sweep_watch.Watcher, interrupted: bool = False, error: str | None = None) -> SweepOutcome:
    """What each planned run ended as, read from its dir."""
    outcome = SweepOutcome(plan, interrupted=interrupted, error=error)
    for run in plan.runs:
        summary = records.read_json(run.dir / schema.SUMMARY_JSON)
        if watcher.changed(run) and summary:
            outcome.runs.append(RunOutcome(run, summary.get("status", Status.RUNNING), summary))
        elif run.done_before:
            outcome.runs.append(RunOutcome(run, run.previous["status"], run.previous, skipped=True))
        else:
            outcome.runs.append(RunOutcome(run, Status.NOT_RUN, None))
    return outcome

"""What runs as a job: the task function Hydra calls (in this process or a launcher's worker), every way a
run can end recorded in its dir, a sweep's run skipped or continued on resume, and a worker's handling of
stop signals and of a controlling process that is gone. `run_train` is one run in this process.

What the task function needs from its caller (the in-process display, the launching pid, resume, the task
already built, the checkpoint already checked) is bound to it with functools.partial, so that what a launcher
pickles for a worker holds only plain values.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from . import checkpoint, hydra_adapter, records, schema, slurm, sweep_watch, trainer
from .config import (
    BadInput,
    check_writable,
    checked,
    compose_run,
    pin_dir,
    quoted,
    resumed_overrides,
    short_overrides,
    to_plain,
    without_key,
)
from .precision import pick_precision
from .tasks import Task

# Per-process state, module-level because a signal handler and a watch thread set it: a worker that got
# SIGINT or SIGTERM starts no further run, and a worker watches its controlling process once.
_stopping = False
_watching_controller = False


@dataclass
class TaskRaised:
    """What train_task returns for an exception it could not record in the run (a full disk): handed back
    as a value, so that Hydra does not print its own lines about it and the CLI says it in one."""

    error: Exception


def train_task(cfg: DictConfig, progress: trainer.Progress | None = None, launching_pid: int | None = None,
               resume: bool = False, task: Task | None = None, command: list[str] | None = None,
               continuation: checkpoint.Continuation | None = None) -> dict[str, Any] | TaskRaised:
    """Hydra's task function: one run in Hydra's job dir. Module-level so launchers can pickle it.
    progress: whoever watches runs in this process (never bound for a launcher's worker). launching_pid:
    the process that launched the sweep (a job in any other runs in a worker). resume (`train --resume`):
    continue the run in that dir from its checkpoint. task: the run's task, already built by the check.
    command: the command line that launched the sweep (a worker's own argv is the launcher's).
    continuation: what a resume goes on from, its checkpoint already read and checked under the run dir's lock."""
    run_dir, sweep_dir = hydra_adapter.running_job()
    config = to_plain(cfg)
    try:
        if sweep_dir is None:
            set_threads(config, in_sweep=False)
            return recorded_run(config, run_dir, progress, resume=resume, task=task, continuation=continuation)
        return sweep_job(config, run_dir, sweep_dir, progress, launching_pid, command)
    except Exception as err:  # noqa: BLE001 - handed to the caller, see TaskRaised
        return TaskRaised(err)


def recorded_run(config: dict[str, Any], run_dir: Path, progress: trainer.Progress | None = None,
                 resume: bool = False, task: Task | None = None, command: list[str] | None = None,
                 continuation: checkpoint.Continuation | None = None) -> dict[str, Any]:
    """trainer.run, with every way it can end recorded in summary.json once the run dir exists: an
    exception the trainer could not record itself (e.g. while building a model too large to allocate)
    ends the run `failed` with its error; an interrupt before the trainer's own handling ends it
    `interrupted` (then re-raised), never left `running`. An end the trainer recorded itself (an interrupt
    raised after the run completed) is kept."""
    run = trainer.Trainer(config, run_dir, progress, job_facts(command), resume, task, continuation)  # builds nothing
    try:
        return run.run()
    except KeyboardInterrupt:
        record_end(config, run_dir, schema.Status.INTERRUPTED, recorded=run.ended)
        raise
    except Exception as err:
        if _during_interrupt(err):  # recording an interrupted run broke: still an interrupt, not a failure
            record_end(config, run_dir, schema.Status.INTERRUPTED, recorded=run.ended)
            raise KeyboardInterrupt from err
        summary = record_end(config, run_dir, schema.Status.FAILED, f"{type(err).__name__}: {err}", run.ended)
        if progress is not None:  # the run failed before the display heard of it: say so there
            progress.run_started(config, run_dir)
            progress.run_finished(summary, checkpoint.GradProfile())
        return summary


def sweep_job(config: dict[str, Any], run_dir: Path, sweep_dir: Path, progress: trainer.Progress | None = None,
              launching_pid: int | None = None, command: list[str] | None = None) -> dict[str, Any]:
    """One run of a sweep, in whatever process the launcher chose. A run that already ended completed or
    diverged with this very config is skipped (resume) without touching its files; any exception is
    recorded as a failed run so the sweep goes on; runs.csv is rebuilt as the run ends."""
    if os.getpid() != launching_pid:
        _stop_once_on_signal()
        _end_when_orphaned()
        sweep_watch.quiet_resource_tracker()
    if _stopping:  # this worker was told to stop: start no further run
        raise KeyboardInterrupt
    config_hash = records.config_hash(config)
    previous = records.read_json(run_dir / schema.SUMMARY_JSON)
    if sweep_watch.is_done(previous, config_hash):
        return {**previous, "skipped": True}
    set_threads(config, in_sweep=True)
    try:
        with records.dir_lock(run_dir, "run dir", "a run of a sweep, a train or a resume"):
            previous = records.read_json(run_dir / schema.SUMMARY_JSON)  # as it is now that it is ours
            if sweep_watch.is_done(previous, config_hash):  # another writer (train --resume) ended it meanwhile
                return {**previous, "skipped": True}
            # A run of this config that was interrupted, failed, killed or requeued goes on from its checkpoint.
            resume = bool(previous) and previous.get("config_hash") == config_hash
            return recorded_run(config, run_dir, progress, resume=resume, command=command)
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


def record_end(config: dict[str, Any], run_dir: Path, status: str, error: str | None = None,
               recorded: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json of a run that ended outside the trainer's own recording (an exception while building
    it, an interrupt during setup). `recorded`: the summary this very run's trainer wrote as it ended, which
    is kept. What the file says is not asked: an end found there may be an earlier run's in the same dir,
    even one of this process (interrupted, then resumed from a notebook)."""
    if recorded is not None:
        return recorded
    found = records.read_json(run_dir / schema.SUMMARY_JSON)
    summary = schema.Summary.from_dict(found if isinstance(found, dict) else {})
    summary.update(status=status, error=error if error is not None else summary.error,
                   config_hash=records.config_hash(config), slurm_job_id=slurm.job_id(), pid=os.getpid())
    run_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(run_dir / schema.SUMMARY_JSON, summary.to_dict())
    return summary.to_dict()


def job_facts(command: list[str] | None = None) -> dict[str, Any]:
    """Where this job executes: the SLURM job id (as submitit names it) when there is one; the command line
    that started it (None: this process's own)."""
    return {"slurm_job_id": slurm.job_id(), "requeues": slurm.requeues(), "command": command}


def set_threads(config: dict[str, Any], in_sweep: bool) -> None:
    """Torch intra-op threads: `threads` when set; inside a SLURM job the CPUs it was given; in a sweep
    cores // the runs sharing the machine (sweep_watch.thread_budget); a single run keeps torch's default."""
    import torch

    if in_sweep or config.get("threads") or slurm.cpus() is not None:
        torch.set_num_threads(sweep_watch.thread_budget(config.get("threads")))


# ----------------------------------------------------------------------------- a worker's signals
def _end_when_orphaned() -> None:
    """In a launcher's worker: once the sweep's controlling process is gone (kill -9), end the current
    run as a signal would (interrupted, flushed), then the worker itself, so that no orphan goes on
    writing runs that a resume may start again."""
    global _watching_controller
    if _watching_controller:
        return

    def orphaned() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(sweep_watch.FLUSH_WAIT_S)  # the run records `interrupted`; then nothing is left to do here
        os._exit(130)

    controller = os.environ.get(sweep_watch.CONTROLLER_ENV)
    _watching_controller = sweep_watch.die_with_controller(controller, orphaned) is not None


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


# ----------------------------------------------------------------------------- one run in this process
def run_train(overrides: list[str], progress: trainer.Progress | None,
              resume_dir: Path | None = None) -> dict[str, Any]:
    """One run into `hydra.run.dir` (default results/train/<timestamp>); returns its summary. The config
    is composed and its task built once: checked here, then run as it is. resume_dir: continue the run
    there from its checkpoint, with its overrides (any given replace those of the same key)."""
    overrides = short_overrides(overrides)
    if resume_dir is not None:
        overrides = resume_overrides(resume_dir, overrides)
    with hydra_adapter.hydra_instance() as hydra:
        cfg = compose_run(hydra, overrides)
        run_dir = pin_dir(cfg, "hydra.run.dir")
        config, task = checked(cfg)
        _check_runnable_here(config, run_dir, resume_dir)
        callbacks = made_callbacks(cfg)
        # One writer per run dir (a second train or resume is refused); Hydra writes .hydra/ first.
        with records.dir_lock(run_dir, "run dir", "a train or resume"), records.no_space_named(run_dir):
            _check_runnable_here(config, run_dir, resume_dir)  # again: another writer may have come meanwhile
            # The checkpoint is read and checked once, now that no other writer can replace it.
            continuation = _continuation(config, task, resume_dir)
            task_function = functools.partial(train_task, progress=progress, resume=resume_dir is not None,
                                              task=task, continuation=continuation)
            job = hydra_adapter.run_one_job(hydra, cfg, task_function, callbacks)
    if isinstance(job.return_value, TaskRaised):
        raise job.return_value.error
    return job.return_value


def made_callbacks(cfg: DictConfig) -> Any:
    """The Hydra callbacks `cfg` names (`+hydra.callbacks.NAME._target_=…`), made before anything is
    written; one that cannot be made (an unknown or refused target) is BadInput. Hydra's record of a run
    must stay where resume and the report read it (HYDRA_DIR)."""
    subdir = OmegaConf.select(cfg, "hydra.output_subdir")
    if subdir != schema.HYDRA_DIR:
        raise BadInput(f"hydra.output_subdir={subdir}: resbench keeps Hydra's record of a run in {schema.HYDRA_DIR}/ "
                       f"(train --resume reads {schema.HYDRA_OVERRIDES_YAML}); leave it at {schema.HYDRA_DIR}")
    try:
        return hydra_adapter.make_callbacks(cfg)
    except hydra_adapter.COMPOSE_ERRORS as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        where = next((line.removeprefix("full_key: ") for line in lines if line.startswith("full_key: ")),
                     "hydra.callbacks")
        reason = " ".join(line for line in lines if not line.startswith("full_key: ")) or type(err).__name__
        reason = reason.replace(", set env var HYDRA_FULL_ERROR=1 to see chained exception", "")
        raise BadInput(f"{where}: cannot make this callback: {reason}") from None


def _check_runnable_here(config: dict[str, Any], run_dir: Path, resume_dir: Path | None) -> None:
    """Refuse, before anything is written, a run this machine cannot do or a dir it must not write. A
    resume's summary is checked here, its checkpoint by `_continuation`."""
    try:  # the run is on this machine: device=cuda needs a GPU here, and bf16 one that runs it
        pick_precision(config["precision"], trainer.pick_device(config["device"]))
    except (RuntimeError, ValueError) as err:
        raise BadInput(str(err)) from None
    if resume_dir is None:
        check_writable(run_dir, "hydra.run.dir")
    else:
        try:
            checkpoint.check_resumable(resume_dir, config)
        except checkpoint.CheckpointError as err:
            raise BadInput(str(err)) from None
        check_writable(resume_dir, "--resume", empty=False)  # the run goes on writing there


def _continuation(config: dict[str, Any], task: Task, resume_dir: Path | None) -> checkpoint.Continuation | None:
    """What the resume of the run in `resume_dir` goes on from (None: not a resume). A checkpoint that
    cannot be read, or does not fit the run, is refused (BadInput) before anything of the run is written."""
    if resume_dir is None:
        return None
    try:
        return checkpoint.Continuation(checkpoint.state_to_continue(resume_dir, config, task))
    except checkpoint.CheckpointError as err:
        raise BadInput(str(err)) from None


def resume_overrides(run_dir: Path, given: list[str]) -> list[str]:
    """The overrides that continue the run in `run_dir`: its own (.hydra/overrides.yaml), any `given`
    replacing those of the same key, and the run dir itself as hydra.run.dir."""
    path = run_dir / schema.HYDRA_OVERRIDES_YAML
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        raise BadInput(f"no run to resume at {run_dir} (it has no readable {schema.HYDRA_OVERRIDES_YAML})") from None
    try:
        stored = yaml.safe_load(text)  # data only: a python tag is an error, never code
    except yaml.YAMLError:
        stored = None
    if not isinstance(stored, list) or not all(isinstance(line, str) for line in stored):
        raise BadInput(f"cannot resume the run at {run_dir}: its {schema.HYDRA_OVERRIDES_YAML} is not a list of "
                       "overrides as Hydra writes it (damaged or edited)")
    given = without_key(given, "hydra.run.dir")
    return [*resumed_overrides(stored, given, path), f"hydra.run.dir={quoted(str(run_dir))}"]

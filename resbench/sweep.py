"""Sweeps, the plain-Python half: the plan of a multirun (its runs, their dirs and config hashes), what
resume skips, how many torch threads a run may use, the watcher that reports runs as they end, and the
outcome. hydra_app builds the plan with Hydra and launches it; nothing here imports Hydra or torch.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from . import records, schema, slurm
from .schema import DONE, FINAL, Status

SWEEPS_ROOT = Path(schema.RESULTS_ROOT, schema.SWEEPS_DIR)
PARALLEL_RUNS_ENV = "RESBENCH_PARALLEL_RUNS"  # set for each job: runs sharing its machine at once
DEFAULT_LAUNCHER = "joblib"  # a sweep that names no launcher runs two or more runs side by side with it
LOCAL_WORKER_LAUNCHERS = ("joblib", "submitit_local")  # runs in child processes of the sweep
FLUSH_WAIT_S = 10.0  # after Ctrl-C: how long runs elsewhere get to write their `interrupted` status
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


def is_done(summary: dict[str, Any] | None, config_hash: str) -> bool:
    return bool(summary) and summary.get("status") in DONE and summary.get("config_hash") == config_hash


def usable_cores() -> int:
    """CPUs this process may run on (affinity and cpusets respected where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


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


def thread_budget(threads: int | None, environ: dict[str, str] | os._Environ = os.environ,
                  cores: int | None = None) -> int:
    """Torch intra-op threads for one run of a sweep: `threads` when set; inside a SLURM job the CPUs it
    was given; else cores // the runs sharing this machine, so a parallel sweep does not oversubscribe."""
    if threads:
        return threads
    if slurm.cpus(environ):
        return slurm.cpus(environ)
    sharing = environ.get(PARALLEL_RUNS_ENV, "1")
    return max(1, (cores or usable_cores()) // max(1, int(sharing) if sharing.isdigit() else 1))


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
    return pid if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid) else None


def merge_overrides(stored: list[str], given: list[str]) -> list[str]:
    """The overrides of a resumed sweep: the stored ones, with any key given again replaced."""
    given_keys = {records.override_key(o) for o in given}
    return [o for o in stored if records.override_key(o) not in given_keys] + list(given)


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


# ----------------------------------------------------------------------------- one process per sweep dir
CONTROLLER_ENV = "RESBENCH_SWEEP_CONTROLLER"  # set for each job: pid@host of the process running the sweep
CONTROLLER_POLL_S = 1.0


class SweepBusy(RuntimeError):
    """Another live process is running a sweep or resume in this sweep dir. The message is one line."""


def holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


@contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold the sweep dir for the life of a sweep or resume: a second one is refused (SweepBusy). The OS
    lock (flock) ends with its holder, so the lock of a killed sweep is never stale; the file only tells
    others who holds it."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / schema.SWEEP_LOCK
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until the sweep ends
    try:
        _try_lock(handle)
    except BlockingIOError:
        handle.seek(0)
        who = handle.read().strip() or "another process"
        handle.close()
        raise SweepBusy(f"sweep dir {sweep_dir} is in use by {who} (a sweep or resume): wait for it to end "
                        "or stop it, then resume") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(holder() + "\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock


def _try_lock(handle: Any) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one process per sweep dir there is the user's to keep
        return
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def controller_id() -> str:
    """What each job is told about the sweep's controlling process (CONTROLLER_ENV)."""
    return f"{os.getpid()}@{socket.gethostname()}"


def die_with_controller(controller: str | None, on_orphaned: Callable[[], None],
                        interval: float = CONTROLLER_POLL_S) -> threading.Thread | None:
    """In a launcher's worker on the sweep's machine: a daemon thread that calls `on_orphaned` once when
    the controlling process (`pid@host`) is gone (killed with -9, say), so the worker ends its run and
    does not go on running the sweep nobody is watching. None where there is nothing to watch."""
    pid, _, host = (controller or "").partition("@")
    if not pid.isdigit() or host != socket.gethostname() or int(pid) == os.getpid():
        return None

    def watch() -> None:
        while _pid_alive(int(pid)):
            time.sleep(interval)
        on_orphaned()

    thread = threading.Thread(target=watch, name="resbench-controller-watch", daemon=True)
    thread.start()
    return thread


# ----------------------------------------------------------------------------- watching runs end
def _signature(path: Path) -> tuple[int, int, int] | None:
    """Changes whenever the file is replaced (records.write_atomic makes a new inode)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class Watcher:
    """Polls the planned runs' summary.json and calls `on_end(run, summary)` once for each run that ends
    during this sweep, whatever launcher runs it and wherever (the sweep dir is all it needs)."""

    def __init__(self, runs: list[PlannedRun], on_end: Callable[[PlannedRun, dict[str, Any]], None],
                 interval: float = 0.5, provisional: tuple[str, ...] = (),
                 on_start: Callable[[PlannedRun], None] | None = None,
                 on_progress: Callable[[PlannedRun, dict[str, str]], None] | None = None):
        """provisional: statuses that may still change (a requeued run's `interrupted`): reported only
        by the last poll, at stop(). on_progress: for a run in flight, its last metrics.csv row (cells as
        written) each time that file grew."""
        self.runs = runs
        self.on_end = on_end
        self.on_start = on_start  # once per run seen `running` (e.g. rebuild runs.csv: a kill -9 shows it)
        self.on_progress = on_progress
        self.interval = interval
        self.provisional = provisional
        self.initial = {run.name: _signature(run.dir / schema.SUMMARY_JSON) for run in runs}
        self.reported: set[str] = set()
        self.started: set[str] = set()
        self._metrics_seen: dict[str, tuple[int, int, int] | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resbench-sweep-watcher", daemon=True)

    def changed(self, run: PlannedRun) -> bool:
        """Its summary.json was written during this sweep."""
        return _signature(run.dir / schema.SUMMARY_JSON) not in (None, self.initial[run.name])

    def poll(self, last: bool = False) -> None:
        for run in self.runs:
            if run.name in self.reported or not self.changed(run):
                continue
            summary = records.read_json(run.dir / schema.SUMMARY_JSON)
            if not isinstance(summary, dict):
                continue
            status = summary.get("status")
            if status in FINAL and (last or status not in self.provisional):
                self.reported.add(run.name)
                self.on_end(run, summary)
            elif status not in FINAL:
                if run.name not in self.started:
                    self.started.add(run.name)
                    if self.on_start is not None:
                        self.on_start(run)
                self._progress(run)

    def _progress(self, run: PlannedRun) -> None:
        if self.on_progress is None:
            return
        metrics = run.dir / records.METRICS_CSV
        seen = _signature(metrics)
        if seen is None or seen == self._metrics_seen.get(run.name):
            return
        self._metrics_seen[run.name] = seen
        row = records.last_row(metrics)
        if row is not None:
            self.on_progress(run, row)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.poll(last=True)  # the last runs, so that every line is printed before the table


# ----------------------------------------------------------------------------- the end of local workers
def stop_idle_workers() -> None:
    """End the joblib launcher's worker processes once a sweep is over. joblib keeps them for reuse
    (loky's reusable executor, minutes idle), and a worker that outlives its sweep looks like the live
    owner of whatever run it last wrote (live_owner): a resume of a killed run would be refused."""
    try:
        from joblib.externals.loky import reusable_executor
    except ImportError:  # no joblib: no workers
        return
    executor = reusable_executor._executor  # the one joblib.Parallel reuses; None when none was started
    if executor is not None:
        executor.shutdown(wait=True)


# ----------------------------------------------------------------------------- Ctrl-C and SIGTERM
def _process_tree() -> tuple[set[int], set[int]]:
    """This process's children and all its descendants (joblib's loky workers, submitit_local's job
    controllers and their tasks), on any OS psutil supports."""
    me = psutil.Process()
    try:
        children = {child.pid for child in me.children()}
        descendants = {child.pid for child in me.children(recursive=True)}
    except psutil.Error:  # a child that ended while being listed: what multiprocessing knows still counts
        children, descendants = set(), set()
    children |= {child.pid for child in multiprocessing.active_children() if child.pid}
    return children, descendants | children


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def wait_for_flush(runs: list[PlannedRun], watcher: Watcher, pids: set[int] | None,
                   timeout: float = FLUSH_WAIT_S) -> None:
    """Wait (at most `timeout`) until the runs of this sweep that are `running` have written their end.
    `pids`: only runs in these processes count (local workers); None: every run started (SLURM)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = []
        for run in runs:
            summary = records.read_json(run.dir / schema.SUMMARY_JSON) if watcher.changed(run) else None
            running = bool(summary) and summary.get("status") == Status.RUNNING
            if running and (pids is None or (summary.get("pid") in pids and _pid_alive(summary["pid"]))):
                busy.append(run)
        if not busy:
            return
        time.sleep(0.1)


@contextmanager
def stop_workers_on_interrupt(plan: SweepPlan, watcher: Watcher) -> Iterator[None]:
    """While a local parallel sweep runs: on SIGINT or SIGTERM, first pass SIGTERM to the worker processes
    (a run ends `interrupted` on it; submitit's job controllers pass it on to their job) and wait for their
    runs to write that (joblib would SIGKILL them at once), then raise KeyboardInterrupt here. A second
    signal raises at once."""
    if plan.launcher not in LOCAL_WORKER_LAUNCHERS or threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)

    def handle(signum: int, frame: Any) -> None:
        for sig in signals:
            signal.signal(sig, signal.default_int_handler)
        children, descendants = _process_tree()
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        wait_for_flush(plan.runs, watcher, descendants)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cancel_slurm_jobs(plan: SweepPlan, before: set[str]) -> list[str]:
    """scancel the SLURM array jobs this sweep submitted (their submitit folders appeared since
    `before`); their runs get SIGTERM and end `interrupted`. Returns the job ids cancelled."""
    job_ids = sorted({name.split("_")[0] for name in submitit_job_dirs(plan) - before})
    if job_ids:
        try:
            subprocess.run(["scancel", *job_ids], check=False, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return []
    return job_ids


def submitit_job_dirs(plan: SweepPlan) -> set[str]:
    """Names of the job folders under the submitit folder (submitit names them by job id, `%j`)."""
    if not plan.submitit_folder or "%j" not in plan.submitit_folder:
        return set()
    parent = Path(plan.submitit_folder.split("%j")[0])
    try:
        return {entry.name for entry in parent.iterdir() if entry.is_dir()}
    except OSError:
        return set()


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


def collect(plan: SweepPlan, watcher: Watcher, interrupted: bool = False, error: str | None = None) -> SweepOutcome:
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


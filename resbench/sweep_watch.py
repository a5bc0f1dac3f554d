"""A sweep's processes at run time, without Hydra or torch: the cores a run may use, the lock that keeps
one process per sweep dir, a worker's watch on its controlling process, the watcher that reports runs as
they end (it reads only the sweep dir, wherever the runs execute), and stopping local workers on Ctrl-C.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from . import records, schema, slurm
from .records import pid_alive
from .schema import DONE, FINAL, Status

if TYPE_CHECKING:
    from .sweeps import PlannedRun, SweepPlan

PARALLEL_RUNS_ENV = "RESBENCH_PARALLEL_RUNS"  # set for each job: runs sharing its machine at once
LOCAL_WORKER_LAUNCHERS = ("joblib", "submitit_local")  # runs in child processes of the sweep
FLUSH_WAIT_S = 10.0  # after Ctrl-C: how long runs elsewhere get to write their `interrupted` status


def is_done(summary: dict[str, Any] | None, config_hash: str) -> bool:
    """The run of this summary ended completed or diverged with this very config: resume skips it."""
    return bool(summary) and summary.get("status") in DONE and summary.get("config_hash") == config_hash


def usable_cores() -> int:
    """CPUs this process may run on (affinity and cpusets respected where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1



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



# ----------------------------------------------------------------------------- one process per sweep dir
CONTROLLER_ENV = "RESBENCH_SWEEP_CONTROLLER"  # set for each job: pid@host of the process running the sweep
CONTROLLER_POLL_S = 1.0


SweepBusy = records.DirBusy  # another live process is running a sweep or resume in this sweep dir


def sweep_lock(sweep_dir: Path) -> AbstractContextManager[None]:
    """Hold the sweep dir for the life of a sweep or resume: a second one is refused (SweepBusy)."""
    return records.dir_lock(sweep_dir, "sweep dir", "a sweep or resume")


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
        while pid_alive(int(pid)):
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


RESTARTED_TRACKER = "resource_tracker: process died unexpectedly"  # loky's warning when it starts another


def quiet_resource_tracker() -> None:
    """loky's resource tracker (the helper process of joblib's workers) writes to the sweep's stderr. When
    it is killed (the OOM killer, a kill by name), loky starts another, which prints a KeyError traceback
    for every resource the dead one knew, though every run goes on. So in this process, the trackers
    loky starts get /dev/null as stderr and the warning that one was restarted is not shown. Called by
    the sweep and by each worker (a worker may start one too)."""
    try:
        from joblib.externals.loky.backend import resource_tracker
    except ImportError:  # no joblib: no tracker
        return
    warnings.filterwarnings("ignore", message=RESTARTED_TRACKER)
    tracker = resource_tracker._resource_tracker
    launch = tracker._launch
    if getattr(launch, "quiet", False):
        return

    def quiet_launch() -> None:
        with _stderr_to_devnull():
            launch()

    quiet_launch.quiet = True
    tracker._launch = quiet_launch


@contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """File descriptor 2 is /dev/null meanwhile, so a process started now inherits it as its stderr."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


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
            if running and (pids is None or (summary.get("pid") in pids and pid_alive(summary["pid"]))):
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

"""Run records: the only code that writes a run's files.

Every CSV is appended and flushed once per logged step, so a killed run leaves valid rows;
summary.json is replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # the trainer's types; records itself stays torch-free
    from .probes import ParamLayout, StepStats

from . import __version__
from .registries import STANDARD_DEPTH_PARAM
from .schema import (
    BLOCK_PROBES,
    CONFIG_YAML,
    DIR_LOCK,
    DRAW,
    GRAD_NORM_COLUMNS,
    GRAD_NORMS_CSV,
    HYDRA_OVERRIDES_YAML,
    INIT_BLOCK_PROBES,
    INIT_GRAD_NORM_COLUMNS,
    INIT_GRAD_NORMS_CSV,
    INIT_LAYER_COLUMNS,
    INIT_LAYERS_CSV,
    LAYERS_CSV,
    METRICS_CSV,
    PARAM_GROUP_COLUMNS,
    PARAM_GROUPS_CSV,
    PROVENANCE_FIELDS,
    PROVENANCE_JSON,
    RUN_RESULT_COLUMNS,
    RUNS_CSV,
    RUNS_CSV_LOCK,
    SUMMARY_JSON,
    SWEEP_JSON,
    SWEEP_NAME,
    Status,
    Summary,
    override_key,
    runs_csv_columns,
)


def _cell(value: Any) -> Any:
    """CSV cell: None and NaN are empty; floats keep full precision."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class NoSpaceError(OSError):
    """The disk (or quota) is full while writing `path`. The message is the one line the user sees."""

    def __init__(self, path: Path):
        super().__init__(errno.ENOSPC, f"no space left on device: {path}")
        self.path = Path(path)

    def __str__(self) -> str:
        return f"no space left on device: {self.path}"

    def __reduce__(self) -> tuple[type, tuple[Path]]:  # from a launcher's worker process back to the sweep
        return NoSpaceError, (self.path,)


@contextmanager
def no_space_named(path: Path) -> Iterator[None]:
    """A full disk while writing `path` raises NoSpaceError naming it; other errors pass unchanged."""
    try:
        yield
    except NoSpaceError:
        raise
    except OSError as err:
        if err.errno in NO_SPACE_ERRNOS:
            raise NoSpaceError(path) from err
        raise


STOP_SIGNALS_DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then arrive: a status or checkpoint write that a
    second Ctrl-C would cut short completes first. Only the main thread runs Python's signal handlers;
    elsewhere this does nothing.

    The wait is done by the handlers, not by masking the signals: the OS hands a signal the main thread
    masks to another thread (torch's, a watcher's), whose C handler still makes the main thread run the
    Python handler at its next bytecode, in the middle of the block (a KeyboardInterrupt inside
    torch.save left a cut zip: "unexpected pos"). Here each signal is noted and raised again, to the
    handler that was there before, once the block is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS_DEFERRED}
    for sig, handler in previous.items():
        if handler is not None:  # None: a handler installed from C, which Python cannot put back
            signal.signal(sig, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
        for signum in noted:
            signal.raise_signal(signum)


class CsvWriter:
    """An append-only CSV file with a fixed header. Rows are buffered until flush(), which writes them
    whole or not at all: a write that fails (a full disk) is cut back to the last flushed row.
    `keep_rows`: continue an existing file after its first `keep_rows` data rows (a resumed run),
    dropping whatever came after them."""

    def __init__(self, path: Path, columns: Sequence[str], keep_rows: int | None = None):
        self.path = Path(path)
        self.columns = list(columns)
        self.rows = 0  # data rows in the file: where a checkpoint says this file stood
        self._pending = io.StringIO()
        self._known = frozenset(self.columns)
        self._writer = csv.writer(self._pending)
        with no_space_named(self.path):
            if keep_rows is None:
                self._file = open(path, "wb", buffering=0)  # noqa: SIM115 - open until close()
                self._writer.writerow(self.columns)
            else:
                truncate_rows(path, self.columns, keep_rows)
                self.rows = keep_rows
                self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - open until close()
        self._flushed_size = os.fstat(self._file.fileno()).st_size
        self.flush()

    def write_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rows by column name; a name the header lacks is an error, a missing one an empty cell."""
        cells = []
        for row in rows:
            if not self._known.issuperset(row):
                raise ValueError(f"{self.path.name} has no column {sorted(set(row) - self._known)}")
            cells.append([_cell(row.get(column)) for column in self.columns])
        self._writer.writerows(cells)
        self.rows += len(cells)

    def flush(self) -> None:
        data = self._pending.getvalue().encode("utf-8")
        self._pending.seek(0)
        self._pending.truncate()
        if not data:
            return
        try:
            with no_space_named(self.path):
                view = memoryview(data)
                while view:
                    view = view[self._file.write(view):]
        except BaseException:
            # a partial row would be a cut line: go back to the rows already whole (this also frees space)
            os.ftruncate(self._file.fileno(), self._flushed_size)
            self._file.seek(self._flushed_size)
            raise
        self._flushed_size += len(data)

    def sync(self) -> None:
        """Flush to the disk itself, so a checkpoint never counts rows a machine crash could lose."""
        self.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._file.close()


def truncate_rows(path: Path, columns: Sequence[str], keep_rows: int) -> None:
    """Cut `path` after its header and first `keep_rows` whole data rows (rows hold no newlines)."""
    with open(path, "rb") as handle:
        lines = handle.read().splitlines(keepends=True)
    header = lines[0].decode("utf-8").rstrip("\r\n").split(",") if lines else []
    if header != list(columns):
        raise ValueError(f"{path.name}: header {header} is not {list(columns)}")
    whole = [line for line in lines[1 : keep_rows + 1] if line.endswith(b"\n")]
    if len(whole) < keep_rows:
        raise ValueError(f"{path.name} has {len(whole)} whole rows, fewer than the {keep_rows} "
                         "its checkpoint counted")
    os.truncate(path, sum(len(line) for line in lines[: keep_rows + 1]))


def temporary(path: Path) -> Path:
    """The hidden sibling a new version of `path` is written to before it replaces `path`, named by this
    process (`.NAME.<pid>.tmp`), so that one left by a killed process is known as stale."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


# `.NAME.<pid>.tmp`, and `.NAME.<pid>.tmp.png` of older reports (matplotlib reads the format off the suffix)
TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)\.tmp(\.\w+)?$")


def pid_alive(pid: Any) -> bool:
    """A process of this id exists on this machine (one of another user's counts)."""
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except (OSError, TypeError, ValueError, OverflowError):
        return False
    return True


def remove_stale_temporaries(directory: Path, of: str | None = None) -> None:
    """Remove the temporary files and folders (TEMPORARY) in `directory` that a process now gone left
    behind (a kill -9 mid-write); those of a live process, this one's included, are its own business.
    `of`: only those of that name (a dir this process does not hold, whose other writers may run on other
    machines, where their pid means nothing here)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        match = TEMPORARY.match(entry.name)
        if match is None or int(match["pid"]) == os.getpid() or pid_alive(match["pid"]):
            continue
        if of is not None and not entry.name.startswith(f".{of}."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:  # gone meanwhile, or not ours to remove: it stays hidden
            pass


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename: the old or the new content, never a mix, and never a
    temporary file left behind (not by an error, a full disk or a second Ctrl-C: signals wait)."""
    tmp = temporary(path)
    try:
        with signals_deferred(), no_space_named(path):
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())  # the rename must not outrun the data, even on a machine crash
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def replaced_dir(target: Path) -> Iterator[Path]:
    """Build the new content of directory `target` in a hidden sibling (yielded) and swap it in whole
    when the block ends: readers see the old directory or the new one, never a mix. A fault or a signal
    while building (a kill -9 too) leaves the old one as it was; the sibling is removed, or, after a
    kill -9, by the next call once its process is gone. Whatever the block writes is covered, whatever
    its files are called. A `target` that is a symbolic link is replaced where it points: the link stays."""
    target = Path(target)
    if target.is_symlink():  # the swap would trade the link itself for the new dir
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent, of=target.name)
    fresh = temporary(target)
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    try:
        yield fresh
        with signals_deferred():
            _swap_in(fresh, target)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)  # after a swap, the old content


RENAME_EXCHANGE = 2  # renameat2's flag (Linux 3.15+): swap two paths in one step


def _swap_in(fresh: Path, target: Path) -> None:
    """`fresh` becomes `target`; the old `target`, if any, is left at `fresh`. One atomic exchange where
    the OS has it; else two renames, with a moment between them at which `target` is absent."""
    if not target.exists():
        os.rename(fresh, target)
        return
    if _exchange(fresh, target):
        return
    old = target.with_name(f"{fresh.name}.old")
    os.rename(target, old)
    os.rename(fresh, target)
    os.rename(old, fresh)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the OS or filesystem cannot."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_cwd = -100
    if renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # no such call here, or not on this filesystem
        return False
    raise OSError(code, os.strerror(code), str(second))


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file's content (summary.json, sweep.json), or None when it is missing, unreadable, or
    anything but an object: a list, a number, text, or nesting too deep to parse."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def last_row(path: Path, tail_bytes: int = 4096) -> dict[str, str] | None:
    """The last whole row of a CSV that is being appended to (header -> cell), read from its header and
    its last `tail_bytes` only, so that watching a long run costs the same at step 10 and 10 000; None
    while it has no whole row (or cannot be read). A row is whole once its line ends."""
    try:
        with open(path, "rb") as handle:
            header = handle.readline()
            start = max(len(header), handle.seek(0, os.SEEK_END) - tail_bytes)
            handle.seek(start)
            pieces = handle.read().split(b"\n")
    except OSError:
        return None
    # The last piece is empty or a row still being written; the first, when the read began past the
    # header, may be the end of a row.
    whole = pieces[1:-1] if start > len(header) else pieces[:-1]
    if not header.endswith(b"\n") or not whole:
        return None
    columns = header.decode("utf-8", "replace").rstrip("\r\n").split(",")
    cells = next(csv.reader([whole[-1].decode("utf-8", "replace").rstrip("\r")]))
    return dict(zip(columns, cells)) if len(cells) == len(columns) else None


NOT_IN_HASH = ("threads", "train.checkpoint_every", "logger")  # how a run executes, is kept or watched, not
# what it computes
# Keys added after runs were first recorded: left out at their default, so older runs keep their identity.
HASH_OMITS_AT_DEFAULT = {"precision": "fp32", "init_draws": 8, "depth_param": STANDARD_DEPTH_PARAM,
                         "base_depth": 6, "branch_multiplier": 1.0}
# Older resbench also held each shared model key under `model.` (the MLP had no heads): the identity is
# hashed in that layout, so that runs and sweeps recorded then are still known (resume).
HASHED_MODEL_COPIES = ("depth", "width", "heads", "norm", "norm_type", "residual", "residual_scale", "init")
NOT_COPIED = {"mlp": ("heads",)}


def config_hash(config: dict[str, Any]) -> str:
    """Identity of a run: a hash of its resolved config (which holds no output paths), without the
    settings of NOT_IN_HASH, so that a sweep resumed on another launcher still knows its runs."""
    identity = json.loads(json.dumps(config, default=str))  # a deep copy to prune
    for dotted in NOT_IN_HASH:
        *parents, leaf = dotted.split(".")
        node = identity
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    for key, default in HASH_OMITS_AT_DEFAULT.items():
        if identity.get(key) == default:
            del identity[key]
    model = identity.get("model")
    if isinstance(model, dict):
        copied = [key for key in HASHED_MODEL_COPIES if key not in NOT_COPIED.get(model.get("name"), ())]
        identity["model"] = {**{key: identity[key] for key in copied if key in identity}, **model}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


GIT_TIMEOUT_S = 2.0  # a git that hangs (a network file system, a lock) leaves the commit unknown, not the run waiting


def git_state(directory: Path, timeout_s: float = GIT_TIMEOUT_S) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git repository holding `directory`: the commit checked out and whether tracked
    files differ from it (untracked files do not count, as in `git describe --dirty`). (None, None) outside a
    repository, without git, or when git does not answer within `timeout_s`. One `git status` call."""
    try:
        result = subprocess.run(["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
                                cwd=directory, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if result.returncode != 0:
        return None, None
    lines = result.stdout.splitlines()
    commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
    return (None if commit == "(initial)" else commit), any(not line.startswith("#") for line in lines)


def provenance(runtime: Mapping[str, Any], command: Sequence[str] | None = None) -> dict[str, Any]:
    """provenance.json's content (PROVENANCE_FIELDS): this resbench, the git state of the working directory,
    Python, the host, the time now and `command` (default: this process's argv), with `runtime` (torch and
    device facts, from resbench.runtime: records stays torch-free)."""
    cwd = Path.cwd()
    commit, dirty = git_state(cwd)
    facts = {"resbench_version": __version__, "git_commit": commit, "git_dirty": dirty, "cwd": str(cwd),
             "python_version": platform.python_version(), "host": socket.gethostname(),
             "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
             "command": list(sys.argv if command is None else command), **runtime}
    return {name: facts.get(name) for name in PROVENANCE_FIELDS}


class RunRecorder:
    """Opens a run's files, appends rows as the run goes and closes them with a summary."""

    def __init__(self, run_dir: Path, config: dict[str, Any], metric_columns: Sequence[str],
                 layer_columns: Sequence[str], resume_rows: dict[str, int] | None = None, init_draws: bool = False,
                 provenance: Mapping[str, Any] | None = None):
        """`resume_rows`: continue the files of a run, each after the rows its checkpoint counted.
        `init_draws`: also write init_layers.csv and init_grad_norms.csv (`log_init_draws`, at step 0); a
        continued run has them whole already (its checkpoint came after step 0) and leaves them as they are.
        `provenance`: provenance.json's content (see `provenance`), written as the files open (a continued
        run's is that of the process continuing it)."""
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.run_dir / CONFIG_YAML, yaml.safe_dump(config, sort_keys=False))
        if provenance is not None:
            write_json(self.run_dir / PROVENANCE_JSON, dict(provenance))
        files = {METRICS_CSV: metric_columns, GRAD_NORMS_CSV: GRAD_NORM_COLUMNS, LAYERS_CSV: layer_columns}
        self.files = {name: CsvWriter(self.run_dir / name, columns, None if resume_rows is None
                                      else resume_rows[name]) for name, columns in files.items()}
        self.metrics, self.grad_norms, self.layers = self.files.values()
        draws = {INIT_LAYERS_CSV: INIT_LAYER_COLUMNS, INIT_GRAD_NORMS_CSV: INIT_GRAD_NORM_COLUMNS}
        self.draw_files = ({name: CsvWriter(self.run_dir / name, columns) for name, columns in draws.items()}
                           if init_draws and resume_rows is None else {})
        self._files = (*self.files.values(), *self.draw_files.values())

    def positions(self) -> dict[str, int]:
        """Rows in each CSV, synced to disk: where the files stand at a checkpoint (the init draws' files,
        written whole at step 0, are synced too, but a continued run never appends to them)."""
        for f in self._files:
            f.sync()
        return {name: f.rows for name, f in self.files.items()}

    def write_summary(self, summary: Summary) -> None:
        write_json(self.run_dir / SUMMARY_JSON, summary.to_dict())

    def write_param_groups(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """param_groups.csv, whole, replaced atomically: what the optimizer applies to each parameter."""
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(PARAM_GROUP_COLUMNS)
        writer.writerows([_cell(row.get(column)) for column in PARAM_GROUP_COLUMNS] for row in rows)
        write_atomic(self.run_dir / PARAM_GROUPS_CSV, text.getvalue())

    def log(self, metrics_row: Mapping[str, Any] | None, grad_rows: Sequence[Mapping[str, Any]] = (),
            layer_rows: Sequence[Mapping[str, Any]] = (), flush: bool = True) -> None:
        """Append one step's rows to every file; flush them when asked (the trainer: on logged steps)."""
        if metrics_row is not None:
            self.metrics.write_rows([metrics_row])
        self.grad_norms.write_rows(grad_rows)
        self.layers.write_rows(layer_rows)
        if flush:
            for f in self._files:
                f.flush()

    def log_init_draws(self, layer_rows: Sequence[Mapping[str, Any]], grad_rows: Sequence[Mapping[str, Any]]) -> None:
        """Write every init draw's rows at once, in one flush per file."""
        self.draw_files[INIT_LAYERS_CSV].write_rows(layer_rows)
        self.draw_files[INIT_GRAD_NORMS_CSV].write_rows(grad_rows)
        for f in self.draw_files.values():
            f.flush()

    def close(self, summary: Summary) -> None:
        """Close the CSVs and write the final summary; a second Ctrl-C waits until both are done. A
        summary that can be written is written even when the CSVs could not be (a full disk)."""
        with signals_deferred():
            errors = []
            for f in self._files:
                try:
                    f.close()
                except OSError as err:
                    errors.append(err)
            if errors:  # the last rows could not be written: the run did not end as it was about to say
                summary.update(status=Status.FAILED, error=f"{type(errors[0]).__name__}: {errors[0]}")
            self.write_summary(summary)
            if errors:
                raise errors[0]


def grad_norm_rows(layout: ParamLayout, step: int, stats: StepStats) -> list[dict[str, Any]]:
    """grad_norms.csv's rows of one logged step: one per parameter tensor."""
    return _param_rows(layout, stats, {"step": step})


def layer_rows(layout: ParamLayout, step: int, stats: StepStats) -> list[dict[str, Any]]:
    """layers.csv's rows of one logged step: one per block, each probe under its name."""
    return [{"step": step, "layer": layer, "stack": stack, **dict(zip(BLOCK_PROBES, values))}
            for layer, stack, values in zip(layout.block_layers, layout.block_stacks, stats.block_rows())]


def init_draw_grad_norm_rows(layout: ParamLayout, draw: int, stats: StepStats) -> list[dict[str, Any]]:
    """init_grad_norms.csv's rows of one init draw: one per parameter tensor."""
    return _param_rows(layout, stats, {DRAW: draw})


def init_draw_layer_rows(layout: ParamLayout, draw: int, stats: StepStats) -> list[dict[str, Any]]:
    """init_layers.csv's rows of one init draw: one per block, each probe measured at init under its name."""
    probes = [stats.blocks[name] for name in INIT_BLOCK_PROBES]
    return [{DRAW: draw, "layer": layer, "stack": stack, **dict(zip(INIT_BLOCK_PROBES, values))}
            for layer, stack, *values in zip(layout.block_layers, layout.block_stacks, *probes)]


def _param_rows(layout: ParamLayout, stats: StepStats, position: dict[str, int]) -> list[dict[str, Any]]:
    """One row per parameter tensor: `position` (its step or draw), layer, stack, param, grad_norm."""
    return [{**position, "layer": layer, "stack": stack, "param": name, "grad_norm": norm}
            for layer, stack, name, norm in zip(layout.layers, layout.stacks, layout.names,
                                                stats.param_grad_norms)]


# ----------------------------------------------------------------------------- sweeps
def read_overrides(run_dir: Path) -> dict[str, str]:
    """A run's command-line overrides (Hydra's .hydra/overrides.yaml, `- depth=6`) as key -> value text;
    {} when absent or unreadable (not YAML, not UTF-8, not a list)."""
    try:
        lines = yaml.safe_load((Path(run_dir) / HYDRA_OVERRIDES_YAML).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    pairs = {}
    for line in lines if isinstance(lines, list) else []:
        key, sep, value = str(line).partition("=")
        if sep:
            pairs[override_key(key)] = value
    return pairs


def config_value(run_dir: Path, key: str) -> Any:
    """The value of a dotted key in a run's resolved config.yaml (None if absent, unreadable or a group):
    a key a resumed sweep added to the sweep was not in the overrides of the runs made before."""
    try:
        node = yaml.safe_load((Path(run_dir) / CONFIG_YAML).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return None if isinstance(node, (dict, list)) else node


def find_runs(sweep_dir: Path) -> list[Path]:
    """Run dirs under a sweep dir: every folder with a summary.json, hidden folders (.submitit) skipped."""
    found = []
    for root, dirs, files in os.walk(sweep_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if SUMMARY_JSON in files and Path(root) != Path(sweep_dir):
            found.append(Path(root))
    return found


def latest_sweep(sweeps_root: Path) -> Path | None:
    """The latest sweep under `sweeps_root`, for `sweep --resume` and `report` alike: the last by name
    (names are timestamps) of the dirs named by a timestamp that hold a sweep.json (written before any
    run starts, so a dir without one is not a sweep resbench began). None when there is none."""
    if not Path(sweeps_root).is_dir():
        return None
    sweeps = sorted(path for path in Path(sweeps_root).iterdir()
                    if SWEEP_NAME.match(path.name) and (path / SWEEP_JSON).is_file())
    return sweeps[-1] if sweeps else None


class DirBusy(RuntimeError):
    """Another live process holds the dir for writing (dir_lock). The message is one line."""


def holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


@contextmanager
def dir_lock(directory: Path, what: str, doing: str) -> Iterator[None]:
    """Hold `directory` (a run or sweep dir) for writing while the block runs: one writer per dir, and
    a second one is refused (DirBusy, naming the holder). The OS lock (flock) ends with its holder, so the
    lock of a killed process is never stale; DIR_LOCK's text only tells others who holds it. `what`
    names the dir ("run dir"), `doing` what holds such a dir ("a train or resume")."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / DIR_LOCK, "a+", encoding="utf-8")  # noqa: SIM115 - held until the block ends
    try:
        _try_lock(handle)
    except BlockingIOError:
        handle.seek(0)
        who = handle.read().strip() or "another process"
        handle.close()
        raise DirBusy(f"{what} {directory} is in use by {who} ({doing}): wait for it to end or stop it, "
                      "then resume") from None
    except BaseException:  # the lock cannot be taken at all (no locks on this file system): no handle left open
        handle.close()
        raise
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
    except ImportError:  # Windows: no flock; one writer per dir there is the user's to keep
        return
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def holds_only_its_lock(directory: Path) -> bool:
    """`directory` is empty but for the lock file a writer left (an empty run or sweep dir to write into)."""
    return all(entry.name == DIR_LOCK for entry in os.scandir(directory))


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock on `lock_path` (fcntl) for writers in several processes; no-op where unsupported."""
    try:
        import fcntl
    except ImportError:  # Windows: one process per sweep dir there
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def runs_rows(sweep_dir: Path, swept_keys: Sequence[str], order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """runs.csv's rows: run dirs in `order` (the sweep's expansion order) first, then any others by name."""
    sweep_dir = Path(sweep_dir)
    names = [run.relative_to(sweep_dir).as_posix() for run in find_runs(sweep_dir)]
    rank = {name: i for i, name in enumerate(order)}
    names.sort(key=lambda name: (rank.get(name, len(rank)), name))
    rows = []
    for name in names:
        summary = read_json(sweep_dir / name / SUMMARY_JSON)
        if summary is None:  # unreadable: skip rather than break the table
            continue
        overrides = read_overrides(sweep_dir / name)
        values = {key: overrides[key] if key in overrides else config_value(sweep_dir / name, key)
                  for key in swept_keys}
        rows.append({"run": name, "status": summary.get("status"), **values,
                     **{column: summary.get(column) for column in RUN_RESULT_COLUMNS}})
    return rows


def write_runs_csv(sweep_dir: Path) -> Path:
    """Rebuild runs.csv from every run dir's summary.json and replace it atomically, under a lock:
    each run calls this as it ends (from whatever process or node it ran on), the sweep once more at
    the end, and a reader always sees a whole file."""
    sweep_dir = Path(sweep_dir)
    sweep = read_json(sweep_dir / SWEEP_JSON) or {}
    swept_keys = list(sweep.get("swept_keys") or [])
    with locked(sweep_dir / RUNS_CSV_LOCK):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, runs_csv_columns(swept_keys))
        writer.writeheader()
        writer.writerows({column: _cell(value) for column, value in row.items()}
                         for row in runs_rows(sweep_dir, swept_keys, sweep.get("runs") or ()))
        write_atomic(sweep_dir / RUNS_CSV, buffer.getvalue())
    return sweep_dir / RUNS_CSV

"""Checkpoints: what a run needs to continue exactly where it stood, in one atomically replaced file,
and the signal handling that lets an interrupt wait for a step boundary to write one.

`checkpoint.pt` holds plain data only (tensors, numbers, strings, lists, dicts), so it is read with
`torch.load(..., weights_only=True)`: loading a checkpoint never runs code from it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from .records import read_json, signals_deferred, temporary
from .schema import CHECKPOINT_PT, DONE, SUMMARY_JSON

FORMAT = 1  # bumped when the layout of the state below changes
# Signals that end a run: Ctrl-C, SIGTERM (kill, scancel, SLURM's preemption) and the USR signals that
# SLURM sends before a time limit (submitit requeues on SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
                     if hasattr(signal, name))


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message is one line."""


def save(path: Path, state: dict[str, Any]) -> None:
    """Write `state` via a temporary file, fsync and rename: the old checkpoint or the new one, never a mix.
    A second Ctrl-C waits for the write (it would leave the temporary file behind); a failed write removes it."""
    tmp = temporary(path)
    with signals_deferred():
        try:
            with open(tmp, "wb") as handle:
                torch.save({"format": FORMAT, **state}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def load(path: Path, config_hash: str) -> dict[str, Any]:
    """The state saved at `path` by a run of the config `config_hash`; CheckpointError (one line) otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except Exception as err:  # noqa: BLE001 - truncated, garbage or foreign pickles all say the same
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason}); "
                              "remove it to start the run over") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a resbench checkpoint of format {FORMAT} (found {found!r})")
    if state.get("config_hash") != config_hash:
        raise CheckpointError(f"{path} belongs to another config (hash {state.get('config_hash')}, "
                              f"this run's is {config_hash}): resume with the run's own overrides")
    return state


def rng_states(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every random stream a run draws from: torch's CPU and CUDA generators and the run's own ones."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        **{name: generator.get_state() for name, generator in generators.items()},
    }


def restore_rng_states(states: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    for name, generator in generators.items():
        generator.set_state(states[name])


Handler = Callable[[int, FrameType | None], Any]


class DeferredSignals:
    """While active, STOP_SIGNALS that have a Python handler are noted instead of handled, so the run can
    stop at a step boundary (and checkpoint a consistent state); `dispatch()` then hands each noted signal
    to the handler that was there before (which raises KeyboardInterrupt, or requeues a SLURM job). A
    second signal of the same kind does not wait: it goes to that handler at once.

    Signals whose handler is the OS default or ignore are left alone, and so is everything off the main
    thread (Python delivers signals only there)."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self._previous: dict[int, Handler] = {}

    def __enter__(self) -> DeferredSignals:  # noqa: PYI034 - typing.Self needs Python 3.11
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                handler = signal.getsignal(sig)
                if callable(handler):
                    self._previous[sig] = handler
                    signal.signal(sig, self._note)
        return self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if signum in self.pending:  # asked twice: stop now
            handler = self._previous.get(signum, signal.default_int_handler)
            self._restore()
            handler(signum, frame)
        self.pending.append(signum)

    def _restore(self) -> dict[int, Handler]:
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return previous

    def dispatch(self) -> None:
        """Put the handlers back and call them for the signals noted, in the order they came."""
        previous = self._restore()
        for signum in self.pending:
            previous.get(signum, signal.default_int_handler)(signum, None)

    def __exit__(self, *exc_info: object) -> None:
        self._restore()


def check_resumable(run_dir: Path, config_hash: str) -> None:
    """Raise CheckpointError (one line) unless `run_dir` holds a run of this config that can go on:
    one that did not end with a result, whose checkpoint (if any) is readable and of this config."""
    summary = read_json(run_dir / SUMMARY_JSON)
    if summary is None:
        raise CheckpointError(f"no run to resume at {run_dir} (it has no readable {SUMMARY_JSON})")
    if summary.get("status") in DONE:
        raise CheckpointError(f"nothing to resume: the run at {run_dir} ended {summary['status']}")
    if summary.get("config_hash") != config_hash:
        raise CheckpointError(f"the run at {run_dir} is of another config (hash {summary.get('config_hash')}, "
                              f"these overrides give {config_hash}): resume with the run's own overrides")
    if (run_dir / CHECKPOINT_PT).exists():
        load(run_dir / CHECKPOINT_PT, config_hash)

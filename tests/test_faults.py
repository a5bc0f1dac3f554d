"""Faults a hostile but realistic user meets, each through the CLI: two writers on one run, a report cut
short while it replaces an older one, paths and locales the OS refuses, resource limits, checkpoints that
load but lie, resume dead ends, runs a report would silently drop, and streams that break under a run.

What every test holds the CLI to (README, Exit codes): bad input is one line and exit 2 with nothing
written, a failed run exit 1, an interrupt exit 130, and never a traceback."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import torch

from resbench.checkpoint import CHECKPOINT_PT


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def one_line(stderr: str) -> bool:
    return len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def temporaries(directory: Path) -> list[Path]:
    return [path for path in directory.rglob(".*") if ".tmp" in path.name]


# ----------------------------------------------------------------------------- signals during a write
def test_two_ctrl_c_during_the_checkpoint_write_wait_for_it(train_cli, cli, monkeypatch) -> None:
    """Both Ctrl-C come while checkpoint.pt is being written, as the OS delivers them to a process with
    several threads: to another thread, whose handler then runs in the main one at its next bytecode.
    The write completes, the run ends interrupted (130), and its checkpoint continues it."""
    save = torch.save
    calls = []

    def save_under_two_ctrl_c(*args, **kwargs):
        if not calls:
            for _ in range(2):
                sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
                sender.start()
                sender.join()
                time.sleep(0.01)  # the main thread's Python handler runs in here
        calls.append(1)
        return save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", save_under_two_ctrl_c)
    run = train_cli("train.checkpoint_every=1")
    monkeypatch.undo()
    assert run.exit_code == 130, run.stderr
    done = summary(run.dir)
    assert done["status"] == "interrupted" and done["checkpoint_step"] is not None
    assert (run.dir / CHECKPOINT_PT).is_file() and not temporaries(run.dir)
    resumed = cli("train", "--quiet", "--resume", str(run.dir))
    assert resumed.exit_code == 0, resumed.stderr
    assert summary(run.dir)["status"] == "completed"

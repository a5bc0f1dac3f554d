"""Task builders, by name: `build(task_cfg, batch_size)` returns a Task (see base.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import chars, digits, mnist, mnist1d, reverse, sort
from .base import Batch, Task, TaskError, TaskKind, TaskSpec

TASKS: dict[str, Callable[[dict[str, Any], int], Task]] = {
    "chars": chars.build,
    "digits": digits.build,
    "mnist": mnist.build,
    "mnist1d": mnist1d.build,
    "reverse": reverse.build,
    "sort": sort.build,
}

# What each task feeds a model, known without building it (validation refuses pairs that do not fit).
KINDS: dict[str, TaskKind] = {
    "chars": chars.KIND,
    "digits": digits.KIND,
    "mnist": mnist.KIND,
    "mnist1d": mnist1d.KIND,
    "reverse": reverse.KIND,
    "sort": sort.KIND,
}


def build(cfg: dict[str, Any], batch_size: int) -> Task:
    return TASKS[cfg["name"]](cfg, batch_size)


__all__ = ["KINDS", "TASKS", "Batch", "Task", "TaskError", "TaskKind", "TaskSpec", "build"]

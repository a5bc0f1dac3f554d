"""Task builders, by name: `build(task_cfg, batch_size)` returns a Task (see base.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import chars, digits, reverse
from .base import Batch, Task, TaskError, TaskKind, TaskSpec

TASKS: dict[str, Callable[[dict[str, Any], int], Task]] = {
    "chars": chars.build,
    "digits": digits.build,
    "reverse": reverse.build,
}

# What each task feeds a model, known without building it (validation refuses pairs that do not fit).
KINDS: dict[str, TaskKind] = {
    "chars": chars.KIND,
    "digits": digits.KIND,
    "reverse": reverse.KIND,
}


def build(cfg: dict[str, Any], batch_size: int) -> Task:
    return TASKS[cfg["name"]](cfg, batch_size)


__all__ = ["KINDS", "TASKS", "Batch", "Task", "TaskError", "TaskKind", "TaskSpec", "build"]

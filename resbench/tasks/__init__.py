"""Task builders, by name: `build(task_cfg, batch_size)` returns a Task (see base.py)."""

from __future__ import annotations

from typing import Any, Callable

from . import chars
from .base import Batch, Task, TaskError, TaskSpec

TASKS: dict[str, Callable[[dict[str, Any], int], Task]] = {
    "chars": chars.build,
}


def build(cfg: dict[str, Any], batch_size: int) -> Task:
    return TASKS[cfg["name"]](cfg, batch_size)


__all__ = ["build", "TASKS", "Batch", "Task", "TaskError", "TaskSpec"]

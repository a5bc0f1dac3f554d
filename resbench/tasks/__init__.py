"""Task builders, by name: `build(task_cfg, batch_size)` returns a Task (see base.py)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from . import chars, digits, mnist, mnist1d, reverse, sort
from .base import Batch, Footprint, Task, TaskError, TaskKind, TaskSpec

# The one table of tasks: each module gives `build(task_cfg, batch_size)` and `KIND`, what it feeds a model
# (known without building it, so validation refuses a model that does not fit).
TASK_MODULES: dict[str, ModuleType] = {
    "chars": chars,
    "digits": digits,
    "mnist": mnist,
    "mnist1d": mnist1d,
    "reverse": reverse,
    "sort": sort,
}
TASKS: dict[str, Callable[[dict[str, Any], int], Task]] = {name: m.build for name, m in TASK_MODULES.items()}
KINDS: dict[str, TaskKind] = {name: m.KIND for name, m in TASK_MODULES.items()}
# What a run of each task holds in memory besides the model, from its config alone (validate's estimate).
FOOTPRINTS: dict[str, Callable[[dict[str, Any], int], Footprint]] = {name: m.footprint for name, m in TASK_MODULES.items()}


def build(cfg: dict[str, Any], batch_size: int) -> Task:
    return TASKS[cfg["name"]](cfg, batch_size)


__all__ = ["FOOTPRINTS", "KINDS", "TASKS", "TASK_MODULES", "Batch", "Footprint", "Task", "TaskError", "TaskKind",
           "TaskSpec", "build"]

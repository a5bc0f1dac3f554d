"""resbench: see, layer by layer, what residual connections and normalization placement do to deep networks.

The notebook surface, importable without paying for torch, Hydra or pandas until first used:

    import resbench
    results = resbench.load("results/sweeps/<timestamp>")     # tidy pandas frames (resbench.api)
    summary = resbench.train(["depth=12", "norm=post"], "results/train/post12")
    w = resbench.watch(my_model, blocks="transformer.h", run_dir="runs/mine")   # resbench.watching
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name → the module that defines it; imported on first access (PEP 562), so `import resbench`
# and `resbench --help` stay instant. (The trainer module is resbench.trainer.)
LAZY = {
    "load": "resbench.api",
    "train": "resbench.api",
    "compose": "resbench.api",
    "build_model": "resbench.api",
    "Results": "resbench.api",
    "watch": "resbench.watching",
    "Watch": "resbench.watching",
}

__all__ = ["Results", "Watch", "__version__", "build_model", "compose", "load", "train", "watch"]


def __getattr__(name: str) -> Any:
    if name in LAZY:
        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'resbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

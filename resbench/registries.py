"""The names of every choice a config key offers: norm placements, norm types, residual forms, inits,
depth parametrizations, optimizers, devices, precisions, loggers and sweep launchers.

Spelled here once, and nothing else: this module imports nothing of resbench's, nor torch or Hydra, so
the typed config, the checks, the shell completion (at every TAB) and the report can all read it cheaply.
What each name does lives beside the code that does it (models/, trainer.py, precision.py, loggers.py),
in a table keyed by these names; tests/test_registries.py holds every such table to these names.
"""

from __future__ import annotations

import importlib

PLACEMENTS = ("post", "pre", "sandwich", "none", "deepnorm", "branch")  # `norm`: where a block normalizes
NORM_TYPES = ("layernorm", "rmsnorm", "scalenorm", "dyt")  # `norm_type`: which normalization
RESIDUALS = ("true", "false", "rezero")  # `residual`: skip on, off, or a learnable-scalar branch
INITS = ("pytorch", "xavier", "small", "deepnorm")  # `init`, besides `auto`
AUTO_INIT = "auto"  # `init=auto`: the placement's own init (models/init.py resolves it)
DEPTH_PARAMS = ("standard", "depth_mup", "completep")  # `depth_param`: how branch, lr, ε and init scale with depth
STANDARD_DEPTH_PARAM = "standard"  # the one every other depth parametrization is set against
OPTIMIZERS = ("adam", "adamw", "sgd")  # `train.optimizer`
DEVICES = ("auto", "cpu", "cuda")  # `device`
PRECISIONS = ("fp32", "bf16", "fp16")  # `precision`
LOGGERS = ("none", "tensorboard")  # `logger`: where a run's numbers go besides its CSVs

# The Python modules each logger imports beyond resbench's own dependencies (the optional extra's): its
# event protobufs (which need protobuf) and the C checksum.
LOGGER_MODULES: dict[str, tuple[str, ...]] = {"tensorboard": ("tensorboard.compat.proto.event_pb2", "crc32c")}
INSTALL_HINT = "logger=tensorboard needs TensorBoard: pip install 'resbench[tensorboard]'"

# `hydra/launcher`: the launchers of the optional extras, each with its plugin module and the extra that
# installs it. Hydra's own `basic` launcher is always there.
BASIC_LAUNCHER = "basic"
LAUNCHER_PLUGINS: dict[str, tuple[str, str]] = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "resbench[joblib]"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "resbench[slurm]"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "resbench[slurm]"),
}
CLUSTER_LAUNCHERS = ("submitit_slurm",)  # their runs go to other machines: this one's memory says nothing


def residual_name(value: object) -> str:
    """YAML gives `residual: true` as a bool and `rezero` as a string; name them alike."""
    return str(value).lower()


def logger_available(name: str) -> bool:
    """Whether logger `name` can run here: its extra's modules import (installed is not enough: a
    TensorBoard without protobuf was found, then failed every run as it started)."""
    try:
        for module in LOGGER_MODULES.get(name, ()):
            importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a broken install raises anything while importing
        return False
    return True

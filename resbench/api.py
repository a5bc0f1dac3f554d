"""The notebook surface: load results as pandas frames, compose a config, train, build a model.

(`resbench.watch`, the probes on your own model, lives in resbench/watching.py.)

    import resbench
    results = resbench.load("results/sweeps/2026-12-01_10-00-00_000000")
    results.layers.query("step == 0").pivot_table("grad_norm", "layer", ["norm", "depth"])
    summary = resbench.train(["depth=12", "norm=post"], "results/train/post12")

Everything here is quiet: nothing prints unless `verbose=True`. Bad input raises ValueError with the
same one-line message the CLI prints. Heavy libraries (torch, Hydra, pandas) load on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resbench.schema import RESULTS_ROOT, TIMESTAMP_FORMAT, TRAIN_DIR

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

Config = dict[str, Any]
RUN_KEYS = ("run", "name")  # how the long frames point back at `runs`

__all__ = ["Results", "build_model", "compose", "load", "train"]


@dataclass(frozen=True)
class Results:
    """Tidy frames over every run found under some dirs.

    `runs`: one row per run (`run`, `name`, `path`, `status` and the other summary.json fields, and every
    config leaf under its dotted key: `depth`, `train.lr`, `model.name`, …). `metrics`, `layers` and
    `grad_norms`: the run files' rows in long format, each with `run`, `name` and the swept `keys` as
    columns, so `results.layers.groupby(["norm", "depth", "layer"])` needs no join (a key named as one of a
    file's columns, like a watch run's `lr`, leaves that frame the file's column; `runs` has the key). `init_draws` and
    `init_draw_grad_norms`: step 0 of every init draw (init_layers.csv, init_grad_norms.csv), in the same
    long format with `draw` for `step`; a run without those files has its own step 0 as draw 0.
    """

    runs: pd.DataFrame
    metrics: pd.DataFrame
    layers: pd.DataFrame
    grad_norms: pd.DataFrame
    init_draws: pd.DataFrame
    init_draw_grad_norms: pd.DataFrame
    keys: list[str] = field(default_factory=list)  # the swept keys (config columns), in table order


def load(*dirs: str | Path) -> Results:
    """Read sweep or run dirs (files only; nothing is written) into a `Results` of tidy frames.

    The keys are what `resbench report` groups by: a sweep's swept keys, else the config keys whose
    values differ across runs. Raises ValueError for a missing dir or one without runs.
    """
    import pandas as pd

    from resbench.report import aggregate
    from resbench.report import load as report_load

    paths = [Path(d) for d in dirs]
    run_set = report_load.load(paths)
    keys = aggregate.group_keys(run_set)
    runs = run_set.runs
    labels = runs[[*RUN_KEYS, *keys]]

    def tidy(frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty:
            return pd.DataFrame(columns=[*RUN_KEYS, *keys])
        # A key named as one of the file's columns (a watch run's config={"lr": …}) is in `runs`; the column stays.
        front = labels.drop(columns=[key for key in keys if key in frame]).merge(frame, on="run", how="inner",
                                                                                 validate="one_to_many")
        return front.reset_index(drop=True)

    grad_norms = [report_load.read_grad_norms(Path(path)).assign(run=run)
                  for run, path in zip(runs["run"], runs["path"])]
    grad_norms = [frame for frame in grad_norms if not frame.empty]
    return Results(
        runs=runs.reset_index(drop=True),
        metrics=tidy(run_set.metrics),
        layers=tidy(run_set.layers),
        grad_norms=tidy(pd.concat(grad_norms, ignore_index=True) if grad_norms else pd.DataFrame()),
        init_draws=tidy(run_set.init_draw_layers),
        init_draw_grad_norms=tidy(run_set.init_draw_params.astype({"layer": "Int64"})),  # as grad_norms' layer
        keys=keys,
    )


def compose(overrides: Sequence[str] = ()) -> Config:
    """The resolved, validated config of `overrides` (Hydra's grammar, as on the command line), as a dict.

    Exactly what `resbench config OVERRIDES…` prints; raises ValueError (one line) for bad input.
    """
    from resbench.config import check

    return check(list(overrides))


def _config(overrides_or_config: Sequence[str] | Config | None) -> Config:
    """A resolved config from overrides (composed) or from a config dict (validated as given)."""
    from resbench.config import check_config

    if overrides_or_config is None:
        return compose()
    if isinstance(overrides_or_config, dict):
        check_config(overrides_or_config)
        return overrides_or_config
    if isinstance(overrides_or_config, str):
        raise TypeError("overrides must be a list of strings, e.g. ['depth=12', 'norm=post']")
    return compose(overrides_or_config)


def train(overrides_or_config: Sequence[str] | Config | None = None, run_dir: str | Path | None = None,
          verbose: bool = False) -> Config:
    """Train one run and return its summary (the content of `summary.json`).

    `overrides_or_config`: overrides like `["depth=12", "norm=post"]`, or a resolved config dict (e.g.
    from `compose`, edited). `run_dir`: where the run's files go (default `results/train/<timestamp>`).
    `verbose=True` shows the terminal's progress and end table. A run that fails returns a summary with
    `status="failed"` and the `error`; bad input raises ValueError.
    """
    from resbench import records, trainer
    from resbench.jobs import set_threads

    config = _config(overrides_or_config)
    directory = Path(run_dir) if run_dir is not None else Path(RESULTS_ROOT, TRAIN_DIR) / datetime.now().strftime(
        TIMESTAMP_FORMAT)
    progress = None
    if verbose:
        from rich.console import Console

        from resbench.console import RunDisplay

        progress = RunDisplay(Console(highlight=False))
    if config.get("threads"):
        set_threads(config, in_sweep=False)
    with records.dir_lock(directory, "run dir", "a train or resume"):  # one writer per run dir
        return trainer.run(config, directory, progress=progress)


def build_model(overrides_or_config: Sequence[str] | Config | None = None) -> nn.Module:
    """The initialised model a run of this config starts from (same seed, same weights as `train`'s).

    Its residual blocks are `model.blocks` (an encoder–decoder's: `model.encoder.blocks`, `model.decoder.blocks`);
    `resbench.watch(model, blocks=model.blocks)` probes it.
    """
    import torch

    from resbench import models, tasks

    config = _config(overrides_or_config)
    torch.manual_seed(config["seed"])  # the trainer's order: seed, task, model
    task = models.task_for(config["model"]["name"], tasks.build(config["task"], config["train"]["batch_size"]))
    return models.build(models.model_keys(config), task.spec)

"""The seed article's presets plan the runs their claims compare (nothing is trained here)."""

from __future__ import annotations

import itertools
from pathlib import Path

from resbench import sweeps
from resbench.config import check


def planned_runs(tmp_path: Path, *overrides: str):
    """(each planned run's swept values as text, the plan)."""
    plan = sweeps.plan_sweep([*overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    return [{key: value.lower() for key, value in run.swept.items()} for run in plan.runs], plan


def test_case_study_runs_every_variant_at_every_depth_and_seed(tmp_path: Path) -> None:
    runs, plan = planned_runs(tmp_path, "+experiment=case_study")
    assert set(plan.swept_keys) == {"norm", "residual", "depth", "seed"}
    cells = {(run["norm"], run["residual"], run["depth"], run["seed"]) for run in runs}
    # the article's three (plain, its block, pre-LN) and the pairs that differ from them in one thing only
    for norm, residual in itertools.product(["none", "branch", "pre"], ["false", "true"]):
        for depth, seed in itertools.product(["2", "10", "30"], ["0", "1", "2"]):
            assert (norm, residual, depth, seed) in cells
    assert len(runs) == 54


def test_case_study_is_the_articles_mlp_on_digits_and_takes_other_data(tmp_path: Path) -> None:
    config = check(["+experiment=case_study", "norm=branch", "depth=2"])
    assert config["model"]["name"] == "mlp" and config["width"] == 100
    assert config["model"]["ffn_mult"] == 1 and config["task"]["name"] == "digits"
    assert check(["+experiment=case_study", "task=mnist1d"])["task"]["name"] == "mnist1d"


def test_liu2020_sweeps_post_and_pre_across_depth_on_the_encoder_decoder(tmp_path: Path) -> None:
    runs, _ = planned_runs(tmp_path, "+experiment=liu2020")
    assert {(run["norm"], run["depth"]) for run in runs} == set(itertools.product(["post", "pre"], ["6", "12", "18"]))
    config = check(["+experiment=liu2020", "depth=6", "norm=post"])
    assert config["model"]["name"] == "seq2seq" and config["task"]["name"] == "reverse"
    assert config["train"]["warmup"] == 0

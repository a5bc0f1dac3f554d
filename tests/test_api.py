"""The notebook API: resbench.load / compose / train / build_model, lazily re-exported at the top level."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY
from report_fixtures import grid, write_sweep

import resbench
from resbench import api, trainer


def test_import_resbench_loads_no_heavy_library():
    code = ("import sys, resbench; heavy = [m for m in ('torch', 'pandas', 'hydra', 'matplotlib') "
            "if m in sys.modules]; print(heavy); resbench.compose; print('resbench.api' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "True"]  # nothing at import; the API loads on first use


def test_load_gives_tidy_frames_with_swept_keys_as_columns(tmp_path: Path):
    sweep = write_sweep(tmp_path / "sweep", grid(depth=[2, 4], norm=["post", "pre"]), swept_keys=["depth", "norm"])
    results = resbench.load(sweep)
    assert results.keys == ["depth", "norm"]
    assert len(results.runs) == 4 and set(results.runs["status"]) == {"completed"}
    assert {"run", "name", "path", "final_loss", "depth", "norm", "train.lr"} <= set(results.runs.columns)
    for frame, file_name in ((results.layers, "layers.csv"), (results.metrics, "metrics.csv"),
                             (results.grad_norms, "grad_norms.csv")):
        assert list(frame.columns[:4]) == ["run", "name", "depth", "norm"], file_name
        for name, run in frame.groupby("name"):
            on_disk = pd.read_csv(sweep / name / file_name)
            assert len(run) == len(on_disk), (file_name, name)
            depth, norm = (sweep / name).name.replace("depth=", "").replace("norm=", "").split(",")
            assert set(run["depth"]) == {int(depth)} and set(run["norm"]) == {norm}
            column = "grad_norm" if file_name != "metrics.csv" else "loss"
            assert run[column].tolist() == pytest.approx(on_disk[column].tolist(), nan_ok=True)
    outside = results.grad_norms[results.grad_norms["layer"].isna()]
    assert set(outside["param"]) == {"embed.weight", "head.weight"}


def test_load_of_a_missing_dir_raises_one_clear_line(tmp_path: Path):
    with pytest.raises(ValueError, match="no such directory"):
        resbench.load(tmp_path / "nothing")


def test_compose_resolves_overrides_and_refuses_bad_ones():
    config = resbench.compose(["depth=3", "norm=post"])
    assert config["depth"] == 3 and config["norm"] == "post" and set(config["model"]) == {"name", "ffn_mult"}
    with pytest.raises(ValueError, match="valid choices"):
        resbench.compose(["norm=sideways"])


def test_train_runs_quietly_and_returns_the_summary_it_wrote(tmp_path: Path, capsys):
    summary = resbench.train([*TINY], tmp_path / "run")
    assert capsys.readouterr().out == ""
    assert summary == json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps_done"] == 3


def test_resbench_train_is_the_api_function_whatever_was_imported_before(tmp_path: Path):
    """`resbench.train` stays the notebook call after the trainer module and every other resbench module
    are imported (a submodule named `train` would shadow it)."""
    import importlib
    import pkgutil

    import resbench.trainer  # the trainer module first, as a notebook may

    for module in pkgutil.walk_packages(resbench.__path__, "resbench."):
        importlib.import_module(module.name)
    assert resbench.train is api.train
    assert resbench.train([*TINY], tmp_path / "run")["status"] == "completed"


def test_train_takes_an_edited_config_dict(tmp_path: Path):
    config = resbench.compose(TINY)
    config["train"]["steps"] = 2
    summary = resbench.train(config, tmp_path / "run")
    assert summary["steps_done"] == 2
    config["norm"] = "sideways"
    with pytest.raises(ValueError, match="norm"):
        resbench.train(config, tmp_path / "bad")
    assert not (tmp_path / "bad").exists(), "bad input writes nothing"


def test_load_keeps_the_file_columns_a_key_is_named_as(tmp_path: Path):
    """A watch run's config key named as a metrics.csv column (`lr`) leaves that frame the file's `lr` column."""
    for lr in (0.1, 0.05):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        with resbench.watch(model, blocks=list(model), run_dir=tmp_path / f"lr{lr}", log_every=2,
                            config={"lr": lr}) as watch:
            for _ in range(3):
                watch.step(model(torch.randn(8, 4)).square().mean(), optimizer)
    results = resbench.load(tmp_path)
    assert results.keys == ["lr"] and list(results.metrics.columns) == ["run", "name", *pd.read_csv(
        tmp_path / "lr0.1" / "metrics.csv").columns]
    for name, rows in results.metrics.groupby("name"):
        assert rows["lr"].tolist() == pd.read_csv(tmp_path / name / "metrics.csv")["lr"].tolist()
    assert set(results.layers["lr"]) == {0.1, 0.05}  # layers.csv has no lr: the key is there


@pytest.mark.parametrize("overrides", [[], ["model=seq2seq", "task=reverse"]], ids=["transformer", "seq2seq"])
def test_build_model_starts_from_the_weights_the_trainer_starts_from(tmp_path: Path, overrides: list[str]):
    config = resbench.compose([*TINY, *overrides, "seed=3"])
    model = resbench.build_model(config)
    run = trainer.Trainer(config, tmp_path / "run")
    run.setup()
    assert len(getattr(model, "decoder", model).blocks) == 2
    mine, theirs = model.state_dict(), run.model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    other = resbench.build_model([*TINY, *overrides, "seed=4"]).state_dict()
    assert not all(torch.equal(mine[k], other[k]) for k in mine)

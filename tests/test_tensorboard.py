"""TensorBoard: `logger=tensorboard` event files, HParams for sweeps, `report --tensorboard` from CSVs.

Everything is read back with TensorBoard's own EventAccumulator and compared with the run's CSVs.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY
from report_fixtures import grid, write_sweep
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from resbench import loggers
from resbench.report.tensorboard import export, write_run_events

PROBES = ("grad_norm", "hidden_rms", "act_grad_norm", "update_ratio", "rank_residual")


def events(log_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator: EventAccumulator, tag: str) -> dict[int, float]:
    return {event.step: event.value for event in accumulator.Scalars(tag)}


def check_against_csvs(run_dir: Path) -> EventAccumulator:
    """Every layers.csv number, and every metrics.csv number of a step the logger hears (logged, evaluated or
    diverging: metrics.csv has a row every step), is an event at its step under its tag, and nothing else is."""
    found = events(run_dir / "tb")
    layers = pd.read_csv(run_dir / "layers.csv")
    for probe in PROBES:
        for layer, rows in layers.groupby("layer"):
            expected = dict(zip(rows["step"], rows[probe]))
            expected = {step: value for step, value in expected.items() if pd.notna(value)}
            assert scalars(found, f"{probe}/block_{layer:02d}") == pytest.approx(expected, rel=1e-6), (probe, layer)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    metrics = metrics[metrics["step"].isin(layers["step"]) | metrics["val_loss"].notna() | metrics["loss"].isna()]
    for column, tag in (("loss", "loss/train"), ("val_loss", "loss/val"), ("lr", "lr"), ("grad_norm", "grad_norm/global")):
        expected = {step: value for step, value in zip(metrics["step"], metrics[column]) if pd.notna(value)}
        assert expected and scalars(found, tag) == pytest.approx(expected, rel=1e-6), tag
    n_block_tags = len(PROBES) * layers["layer"].nunique()
    assert len([t for t in found.Tags()["scalars"] if "/block_" in t]) == n_block_tags
    return found


def test_logger_writes_the_csv_numbers_as_events_with_one_chart_per_quantity(train_cli):
    run = train_cli("logger=tensorboard", "log_every=2", "train.steps=5")
    assert run.exit_code == 0, run.stderr
    found = check_against_csvs(run.dir)
    grad_rows = pd.read_csv(run.dir / "grad_norms.csv")
    histograms = found.Histograms("grad_norm/params")
    assert [h.step for h in histograms] == sorted(grad_rows["step"].unique())
    assert histograms[0].histogram_value.num == (grad_rows["step"] == 0).sum()
    assert histograms[0].histogram_value.max == pytest.approx(grad_rows.loc[grad_rows["step"] == 0, "grad_norm"].max())
    # The Custom Scalars layout: one multiline chart per quantity, its regex matching exactly that quantity's blocks.
    layout = layout_pb2.Layout.FromString(found.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {chart.title: chart.multiline.tag[0] for category in layout.category for chart in category.chart}
    block_tags = [tag for tag in found.Tags()["scalars"] if "/block_" in tag]
    for probe in PROBES:
        pattern = charts[f"{probe} per block"]
        assert sorted(t for t in block_tags if re.search(pattern, t)) == [f"{probe}/block_00", f"{probe}/block_01"]


def all_scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    found = events(log_dir)
    return {tag: scalars(found, tag) for tag in found.Tags()["scalars"] if not tag.startswith("hparams/")}


def test_a_run_converted_later_holds_the_events_it_logged_live(train_cli, tmp_path: Path):
    """metrics.csv has a row every step, the logger hears the logged and evaluated ones: so does the conversion."""
    run = train_cli("logger=tensorboard", "log_every=4", "train.steps=10", "train.eval_every=5")
    assert run.exit_code == 0, run.stderr
    live = all_scalars(run.dir / "tb")
    assert sorted(live["loss/train"]) == [0, 4, 8, 9] and len(pd.read_csv(run.dir / "metrics.csv")) == 10
    converted = shutil.copytree(run.dir, tmp_path / "converted")
    export([converted])
    assert all_scalars(converted / "tb") == live


def test_block_tags_are_as_wide_as_the_longest_stack_live_and_converted(tmp_path: Path):
    """A decoder deeper than `depth` (the encoder's): three digits for every block of both stacks, both ways."""
    layers = [{"step": 0, "layer": layer, "stack": stack, "grad_norm": 1.0}
              for stack, depth in (("encoder", 2), ("decoder", 101)) for layer in range(depth)]
    metrics = [{"step": 0, "loss": 1.0}]
    config = {"logger": "tensorboard", "depth": 2, "model": {"name": "seq2seq", "decoder_depth": 101}}
    [live] = loggers.build(config, tmp_path / "live")
    live.log(metrics[0], [], layers)
    live.close({})
    write_run_events(tmp_path / "converted", metrics, [], layers)
    tags = sorted(all_scalars(tmp_path / "live" / "tb"))
    assert tags == sorted(all_scalars(tmp_path / "converted" / "tb"))
    assert {"grad_norm/encoder_block_000", "grad_norm/decoder_block_005", "grad_norm/decoder_block_100"} <= set(tags)


def test_no_logger_writes_no_event_files(train_cli):
    run = train_cli()
    assert run.exit_code == 0 and not (run.dir / "tb").exists()


def test_unknown_logger_is_one_line_naming_the_choices(train_cli):
    run = train_cli("logger=wandb")
    assert run.exit_code == 2 and not run.dir.exists()
    assert run.stderr.strip().count("\n") == 0 and "none, tensorboard" in run.stderr


def hparams_of(log_dir: Path) -> tuple[dict[str, object], dict[str, float]]:
    """The HParams session's hyperparameters and its metric values, as TensorBoard reads them."""
    found = events(log_dir)
    content = found.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    values = {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}
    metrics = {tag.removeprefix("hparams/"): found.Scalars(tag)[-1].value
               for tag in found.Tags()["scalars"] if tag.startswith("hparams/")}
    return values, metrics


def test_a_sweep_with_the_logger_writes_hparams_of_its_swept_keys(cli, tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    result = cli("sweep", *TINY, "depth=2,3", "logger=tensorboard", f"hydra.sweep.dir={sweep_dir}")
    assert result.exit_code == 0, result.output
    for depth in (2, 3):
        run_dir = sweep_dir / f"depth={depth}"
        check_against_csvs(run_dir)
        values, metrics = hparams_of(run_dir / "tb")
        assert values == {"depth": depth}
        summary = json.loads((run_dir / "summary.json").read_text())
        assert metrics["final_loss"] == pytest.approx(summary["final_loss"], rel=1e-6)
        assert metrics["init_grad_ratio"] == pytest.approx(summary["init_grad_ratio"], rel=1e-6)


def test_report_tensorboard_writes_the_events_after_the_fact(cli, tmp_path: Path):
    runs = [{"train.steps": 20, "log_every": 5, "train.eval_every": 10, **run}
            for run in grid(depth=[2, 3], norm=["post", "pre"])]
    sweep = write_sweep(tmp_path / "sweep", runs, swept_keys=["depth", "norm"])
    result = cli("report", str(sweep), "--tensorboard")
    assert result.exit_code == 0, result.output
    assert "tensorboard --logdir" in result.stdout
    for run_dir in sorted(p for p in sweep.iterdir() if (p / "layers.csv").is_file()):
        check_against_csvs(run_dir)
        values, metrics = hparams_of(run_dir / "tb")
        depth, norm = run_dir.name.replace("depth=", "").replace("norm=", "").split(",")
        assert values == {"depth": int(depth), "norm": norm}
        summary = json.loads((run_dir / "summary.json").read_text())
        assert metrics["final_loss"] == pytest.approx(summary["final_loss"], rel=1e-6)
    again = cli("report", str(sweep), "--tensorboard")  # replaces the events, never doubles them
    assert again.exit_code == 0
    check_against_csvs(next(p for p in sweep.iterdir() if (p / "layers.csv").is_file()))

"""Init draws: step 0 measured on `init_draws` initialisations. The rows of each draw against a by-hand
re-initialisation with the same seed (autograd and plain tensor maths, no probes), draw 0 against the run's
own step-0 rows, training bit-identical to init_draws=1, and kill/resume around step 0."""

from __future__ import annotations

import csv
import math
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from report_fixtures import write_sweep

import resbench
from resbench import checkpoint, models, tasks, trainer
from resbench.config import compose, to_plain
from resbench.records import config_hash
from resbench.report import aggregate
from resbench.report import load as report_load
from resbench.report.quantities import Evidence
from resbench.schema import (
    CHECKPOINT_PT,
    INIT_GRAD_NORM_COLUMNS,
    INIT_GRAD_NORMS_CSV,
    INIT_LAYER_COLUMNS,
    INIT_LAYERS_CSV,
)

TINY = ["depth=2", "width=16", "heads=2", "device=cpu", "train.batch_size=4", "train.eval_every=100", "log_every=2",
        "threads=1"]
SHORT_TEXT = ["task.seq_len=8", "task.val_batches=1"]
MODELS = {  # the overrides of each model's run
    "transformer": SHORT_TEXT,
    "mlp": ["model=mlp", "task=digits"],
    "seq2seq": ["model=seq2seq", "task=reverse", *SHORT_TEXT, "model.decoder_depth=3"],
}


def config_of(*overrides: str) -> dict:
    """A tiny run's config: the Transformer on short text unless `overrides` choose another model."""
    return to_plain(compose([*TINY, *(overrides if "task=" in " ".join(overrides) else [*SHORT_TEXT, *overrides])]))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ---- by hand ------------------------------------------------------------------------------------------------


def step0_batches(config: dict, task: tasks.Task) -> list:
    """Step 0's batches: the first of the training data, then init_batches − 1 from their own stream."""
    size = config["train"]["batch_size"]
    extra = torch.Generator().manual_seed(trainer.init_batches_seed(config["seed"]))
    return [task.batch(torch.Generator().manual_seed(config["seed"]), size),
            *(task.batch(extra, size) for _ in range(config["init_batches"] - 1))]


def named_blocks(model: torch.nn.Module) -> list[tuple[str, int, str, torch.nn.Module]]:
    """(stack, layer, parameter-name prefix, block) of every residual block, encoder before decoder."""
    if hasattr(model, "encoder"):
        return [(stack, i, f"{stack}.blocks.{i}.", block) for stack in ("encoder", "decoder")
                for i, block in enumerate(getattr(model, stack).blocks)]
    return [("", i, f"blocks.{i}.", block) for i, block in enumerate(model.blocks)]


def signal_values(h: torch.Tensor, grad: torch.Tensor) -> tuple[float, float, float]:
    """hidden_rms, act_grad_norm and rank_residual of one block output h (B, T, C), or (B, C) for the MLP,
    whose "sequence" is the batch: written out per example and per sequence."""
    rms = h.pow(2).mean().sqrt().item()
    act = sum(grad[i].norm().item() for i in range(h.shape[0]))
    sequences = [h] if h.dim() == 2 else list(h)
    rank = sum(((x - x.mean(0)).norm() / x.norm()).item() for x in sequences) / len(sequences)
    return rms, act, rank


def by_hand(config: dict, draw: int) -> tuple[dict, dict]:
    """Draw `draw`'s step-0 values from a model built by hand with its seed: {(stack, layer): probes} and
    {(stack, layer, param): gradient norm}, layer None outside the blocks."""
    task = models.task_for(config["model"]["name"], tasks.build(config["task"], config["train"]["batch_size"]))
    torch.manual_seed(trainer.init_draw_seed(config["seed"], draw))
    model = models.build(models.model_keys(config), task.spec)
    blocks = named_blocks(model)
    outputs: list[torch.Tensor] = []

    def keep(module, args, output):
        output.retain_grad()
        outputs.append(output)

    handles = [block.register_forward_hook(keep) for *_, block in blocks]
    batches = step0_batches(config, task)
    signals = []
    for x, y in batches:
        outputs.clear()
        logits = model(x)
        torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
        signals.append([signal_values(h.detach(), h.grad) for h in outputs])
    for handle in handles:
        handle.remove()
    params = {}
    for name, param in model.named_parameters():
        owner = next(((stack, layer, prefix) for stack, layer, prefix, _ in blocks if name.startswith(prefix)),
                     ("", None, ""))
        params[(owner[0], owner[1], name[len(owner[2]):])] = (param.grad / len(batches)).norm().item()
    layers = {}
    for index, (stack, layer, *_) in enumerate(blocks):
        squares = sum(norm**2 for (s, l, _), norm in params.items() if (s, l) == (stack, layer))
        mean = [sum(per_batch[index][k] for per_batch in signals) / len(batches) for k in range(3)]
        layers[(stack, layer)] = dict(zip(("grad_norm", "hidden_rms", "act_grad_norm", "rank_residual"),
                                          (math.sqrt(squares), *mean)))
    return layers, params


@pytest.mark.parametrize("model", MODELS)
def test_each_draw_is_a_reinitialisation_with_its_own_seed(model, tmp_path):
    config = config_of(*MODELS[model], "init_draws=3", "init_batches=2", "train.steps=2")
    assert trainer.run(config, tmp_path)["status"] == "completed"
    layer_rows = read_csv(tmp_path / INIT_LAYERS_CSV)
    param_rows = read_csv(tmp_path / INIT_GRAD_NORMS_CSV)
    assert list(layer_rows[0]) == list(INIT_LAYER_COLUMNS) and list(param_rows[0]) == list(INIT_GRAD_NORM_COLUMNS)
    assert sorted({row["draw"] for row in layer_rows}) == sorted({row["draw"] for row in param_rows}) == ["0", "1", "2"]
    for draw in (1, 2):
        layers, params = by_hand(config, draw)
        rows = [row for row in layer_rows if row["draw"] == str(draw)]
        assert [(row["stack"], int(row["layer"])) for row in rows] == list(layers)
        for row in rows:
            expected = layers[(row["stack"], int(row["layer"]))]
            assert {name: float(row[name]) for name in expected} == pytest.approx(expected, rel=1e-4), (draw, row)
        rows = [row for row in param_rows if row["draw"] == str(draw)]
        found = {(row["stack"], int(row["layer"]) if row["layer"] else None, row["param"]): float(row["grad_norm"])
                 for row in rows}
        assert found == pytest.approx(params, rel=1e-4, abs=1e-9), draw
    draws = pd.read_csv(tmp_path / INIT_LAYERS_CSV)
    assert draws.groupby("draw")["grad_norm"].sum().nunique() == 3, "every draw its own weights"


def test_draw_0_is_the_runs_own_step_0_and_steps_0_still_measures_the_draws(tmp_path):
    for steps in (0, 3):
        run_dir = tmp_path / f"steps{steps}"
        assert trainer.run(config_of(f"train.steps={steps}", "init_draws=2"), run_dir)["status"] == "completed"
        for draws_name, name, columns in ((INIT_LAYERS_CSV, "layers.csv", INIT_LAYER_COLUMNS),
                                          (INIT_GRAD_NORMS_CSV, "grad_norms.csv", INIT_GRAD_NORM_COLUMNS)):
            draw0 = [row for row in read_csv(run_dir / draws_name) if row["draw"] == "0"]
            step0 = [row for row in read_csv(run_dir / name) if row["step"] == "0"]
            assert draw0 == [{"draw": "0", **{c: row[c] for c in columns[1:]}} for row in step0], (steps, name)
            assert len(read_csv(run_dir / draws_name)) == 2 * len(step0)


def test_a_run_with_8_draws_trains_bit_identically_to_one_with_1(tmp_path):
    """Same files, weights, checkpoint and random streams: the draws touch nothing the run uses."""
    ran = {}
    for draws in (1, 8):
        run = trainer.Trainer(config_of("train.steps=5", "train.checkpoint_every=3", f"init_draws={draws}"),
                              tmp_path / str(draws))
        assert run.run()["status"] == "completed"
        ran[draws] = (run, torch.get_rng_state(), checkpoint.rng_states(run.generators()))
    for name in ("layers.csv", "grad_norms.csv"):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "8" / name).read_bytes(), name
    losses = [pd.read_csv(tmp_path / str(draws) / "metrics.csv").drop(columns="elapsed_s") for draws in (1, 8)]
    pd.testing.assert_frame_equal(*losses)
    weights = [ran[draws][0].model.state_dict() for draws in (1, 8)]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    saved = [torch.load(tmp_path / str(draws) / CHECKPOINT_PT, weights_only=True) for draws in (1, 8)]
    assert saved[0]["step"] == saved[1]["step"] == 3
    for part in ("model", "optimizer", "rng"):
        assert_equal_state(saved[0][part], saved[1][part])
    assert torch.equal(ran[1][1], ran[8][1])  # torch's global generator, after the run
    assert_equal_state(ran[1][2], ran[8][2])  # the data and init_batches generators, after the run
    assert len(read_csv(tmp_path / "8" / INIT_LAYERS_CSV)) == 8 * 2


def assert_equal_state(a, b) -> None:
    """Two nested states (dicts, lists, tensors, numbers) equal to the bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_equal_state(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_equal_state(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


def test_draws_seeds_are_a_stream_of_their_own():
    seeds = {trainer.init_draw_seed(seed, draw) for seed in range(4) for draw in range(1, 9)}
    assert len(seeds) == 32
    assert not seeds & {*range(4), *(trainer.init_batches_seed(seed) for seed in range(4))}


def test_a_run_recorded_before_the_draws_keeps_its_identity():
    """Older runs have no init_draws key: at its default it is left out of the hash, so they still resume."""
    config = config_of()
    older = {key: value for key, value in config.items() if key != "init_draws"}
    assert config["init_draws"] == 8 and config_hash(older) == config_hash(config)
    assert config_hash({**config, "init_draws": 1}) != config_hash(config)


# ---- killed and resumed ----------------------------------------------------------------------------------------


def test_a_run_stopped_during_the_draws_starts_over_and_rewrites_them(tmp_path, monkeypatch):
    """A second Ctrl-C during step 0 ends the run without a checkpoint: nothing of the draws is half-written,
    and the resumed run starts at step 0 and writes them whole."""
    config = config_of("train.steps=3", "init_draws=4")
    straight = tmp_path / "straight"
    trainer.run(config, straight)
    measure = trainer.Trainer.init_stats

    def stop_at_draw_2(self, model, layout, batches, loss_scale):
        if len(stop_at_draw_2.calls) == 2:
            raise KeyboardInterrupt
        stop_at_draw_2.calls.append(1)
        return measure(self, model, layout, batches, loss_scale)

    stop_at_draw_2.calls = []
    monkeypatch.setattr(trainer.Trainer, "init_stats", stop_at_draw_2)
    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        trainer.run(config, stopped)
    monkeypatch.undo()
    assert not (stopped / CHECKPOINT_PT).exists()
    assert [read_csv(stopped / name) for name in (INIT_LAYERS_CSV, INIT_GRAD_NORMS_CSV)] == [[], []]
    assert trainer.run(config, stopped, resume=True)["status"] == "completed"
    for name in (INIT_LAYERS_CSV, INIT_GRAD_NORMS_CSV, "layers.csv"):
        assert (stopped / name).read_bytes() == (straight / name).read_bytes(), name


def test_a_run_resumed_after_step_0_keeps_its_draws(tmp_path, monkeypatch):
    """Ctrl-C after step 1: the checkpoint continues at step 2, and the resumed run leaves the draws' files,
    written whole at step 0, as they are."""
    config = config_of("train.steps=6", "init_draws=3")
    straight = tmp_path / "straight"
    trainer.run(config, straight)
    record = trainer.Trainer.record

    def record_then_signal(self, step, *args):
        record(self, step, *args)
        if step == 1:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(trainer.Trainer, "record", record_then_signal)
    stopped = tmp_path / "stopped"
    previous = signal.signal(signal.SIGINT, lambda *args: None)  # a handler of ours, whatever the shell left
    try:
        assert trainer.run(config, stopped)["status"] == "interrupted"
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.undo()
    assert torch.load(stopped / CHECKPOINT_PT, weights_only=True)["step"] == 2
    before = {name: (stopped / name).read_bytes() for name in (INIT_LAYERS_CSV, INIT_GRAD_NORMS_CSV)}

    def never(*args):
        raise AssertionError("the draws were measured again")

    monkeypatch.setattr(trainer.Trainer, "measure_init_draws", never)
    assert trainer.run(config, stopped, resume=True)["status"] == "completed"
    for name, data in before.items():
        assert (stopped / name).read_bytes() == data == (straight / name).read_bytes(), name
    assert (stopped / "layers.csv").read_bytes() == (straight / "layers.csv").read_bytes()


# ---- reading: resbench.load and the report's Evidence ------------------------------------------------------

DRAW_LAYER_COLUMNS = ["run", "draw", "layer", "stack", "grad_norm", "hidden_rms", "act_grad_norm", "rank_residual"]
DRAW_PARAM_COLUMNS = ["run", "draw", "layer", "stack", "param", "grad_norm"]


def evidence_of(*dirs: Path) -> Evidence:
    run_set = report_load.load(list(dirs))
    return Evidence.of(run_set, aggregate.per_run(run_set, aggregate.group_keys(run_set)))


def test_load_and_evidence_read_every_draw_of_a_real_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    for norm in ("pre", "post"):
        trainer.run(config_of("train.steps=2", "init_draws=3", f"norm={norm}"), sweep / f"norm={norm}")
    results = resbench.load(sweep)
    assert list(results.init_draws.columns) == ["run", "name", "norm", *DRAW_LAYER_COLUMNS[1:]]
    assert list(results.init_draw_grad_norms.columns) == ["run", "name", "norm", *DRAW_PARAM_COLUMNS[1:]]
    for name in ("norm=pre", "norm=post"):
        written = pd.read_csv(sweep / name / INIT_LAYERS_CSV)
        rows = results.init_draws[results.init_draws["name"].eq(name)]
        assert rows["norm"].eq(name.split("=")[1]).all()
        np.testing.assert_array_equal(rows[["draw", "layer", "grad_norm", "rank_residual"]].to_numpy(),
                                      written[["draw", "layer", "grad_norm", "rank_residual"]].to_numpy())
        params = results.init_draw_grad_norms[results.init_draw_grad_norms["name"].eq(name)]
        assert len(params) == len(pd.read_csv(sweep / name / INIT_GRAD_NORMS_CSV)) and params["layer"].isna().any()

    ev = evidence_of(sweep)
    assert list(ev.init_draw_layers.columns) == DRAW_LAYER_COLUMNS
    assert list(ev.init_draw_params.columns) == DRAW_PARAM_COLUMNS
    assert ev.init_draw_layers.groupby("run")["draw"].nunique().tolist() == [3, 3]
    assert ev.init_draw_params["layer"].notna().all() and ev.init_draw_params["layer"].dtype == np.int64
    assert set(ev.init_draw_params["param"]) >= {"ffn.fc2.weight", "attn.qkv.weight"}
    assert len(ev.init_draw_params) == 3 * ev.init_draw_params["draw"].eq(0).sum()  # every block parameter, every draw


def step_zero_as_draw_zero(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's step-0 rows of layers.csv and grad_norms.csv (block parameters), as draw 0's rows would read."""
    layers = pd.read_csv(run_dir / "layers.csv").query("step == 0")
    params = pd.read_csv(run_dir / "grad_norms.csv").query("step == 0").dropna(subset=["layer"])
    return layers, params


def test_runs_without_draw_files_have_their_step_0_as_draw_0(tmp_path):
    """Older runs (no files), resbench.watch runs, and a run with draws, read side by side."""
    sweep = tmp_path / "sweep"
    write_sweep(sweep, [{"depth": 2}, {"depth": 3, "_draws": 4}])
    model = resbench.build_model(["depth=2", "width=16", "heads=2", "task.seq_len=8"])
    with resbench.watch(model, blocks=model.blocks, run_dir=tmp_path / "watched", log_every=2) as watched:
        for _ in range(3):
            x = torch.randint(model.tok_emb.num_embeddings, (2, 8))
            watched.step(model(x).logsumexp(-1).mean(), torch.optim.SGD(model.parameters(), lr=0.1))
    ev = evidence_of(sweep, tmp_path / "watched")
    names = dict(zip(ev.runs["run"], ev.runs["name"]))
    by_run = {names[run]: rows for run, rows in ev.init_draw_layers.groupby("run")}
    assert {name: rows["draw"].nunique() for name, rows in by_run.items()} == {"depth=2": 1, "depth=3": 4, "watched": 1}
    for name, run_dir in (("depth=2", sweep / "depth=2"), ("watched", tmp_path / "watched")):
        layers, params = step_zero_as_draw_zero(run_dir)
        rows = by_run[name]
        assert rows["draw"].eq(0).all() and rows["layer"].tolist() == layers["layer"].tolist()
        np.testing.assert_allclose(rows[["grad_norm", "hidden_rms", "rank_residual"]],
                                   layers[["grad_norm", "hidden_rms", "rank_residual"]])
        run = next(run for run, run_name in names.items() if run_name == name)
        draw_params = ev.init_draw_params[ev.init_draw_params["run"].eq(run)]
        assert draw_params["draw"].eq(0).all()
        assert draw_params[["layer", "param"]].values.tolist() == params[["layer", "param"]].values.tolist()
        np.testing.assert_allclose(draw_params["grad_norm"], params["grad_norm"])
    assert not report_load.load([sweep, tmp_path / "watched"]).issues


def test_fixtures_write_draws_with_chosen_values(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", [{"depth": 4, "norm": "post", "_draws": [{}, {"_init_ratio": 3.0},
                                                                                       {"_scale": 10.0}]}])
    ev = evidence_of(sweep)
    layers = ev.init_draw_layers.set_index(["draw", "layer"])["grad_norm"]
    assert layers[(1, 3)] / layers[(1, 0)] == pytest.approx(3.0, rel=1e-4)
    assert layers[(2, 0)] / layers[(0, 0)] == pytest.approx(10.0, rel=1e-4)
    step_zero = pd.read_csv(sweep / "depth=4,norm=post" / "layers.csv").query("step == 0")
    assert layers.loc[0].tolist() == step_zero["grad_norm"].tolist()  # draw 0 is the run's step 0
    w2 = ev.init_draw_params.query("param == 'ffn.fc2.weight'").set_index(["draw", "layer"])["grad_norm"]
    assert w2[(1, 3)] / w2[(1, 0)] == pytest.approx(3.0, rel=1e-4)


@pytest.mark.parametrize(("damage", "issue"), [
    (lambda path: path.write_text("draw,layer\nx,y\n"), "init_layers.csv gave no rows: draw 0 is layers.csv's step 0"),
    (lambda path: path.write_text(path.read_text() + "-3,0,,1,1,1,1\n"),
     "init_layers.csv: 1 rows with an impossible draw skipped"),
    (lambda path: path.write_text(path.read_text().replace("draw,", "drew,", 1)), "init_layers.csv gave no rows"),
], ids=["unparsable", "impossible draw", "no draw column"])
def test_a_damaged_draw_file_is_an_issue_of_its_run_and_the_rest_is_used(tmp_path, damage, issue):
    sweep = write_sweep(tmp_path / "sweep", [{"depth": 2, "_draws": 3}, {"depth": 3, "_draws": 3}])
    damage(sweep / "depth=2" / INIT_LAYERS_CSV)
    run_set = report_load.load([sweep])
    assert any(issue in found for found in run_set.issues[0]), run_set.issues
    assert 1 not in run_set.issues
    draws = run_set.init_draw_layers.groupby("run")["draw"].nunique().to_dict()
    assert draws[1] == 3 and draws[0] in (1, 3)  # the damaged run: its readable rows, or step 0 as draw 0
    assert run_set.init_draw_params.groupby("run")["draw"].nunique().to_dict() == {0: 3, 1: 3}

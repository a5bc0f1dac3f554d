"""The logged gradient norms are the gradient's norms: per parameter, per block and in total."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from resbench import models, tasks


def first_batch_gradients(config: dict) -> dict[str, torch.Tensor]:
    """Rebuild the run's model from its resolved config the way the trainer does (global seed, then
    task, then model; data from a generator seeded with the seed) and backpropagate its first batch."""
    torch.manual_seed(config["seed"])
    task = tasks.build(config["task"], config["train"]["batch_size"])
    model = models.build(models.model_keys(config), task.spec)
    generator = torch.Generator().manual_seed(config["seed"])
    x, y = task.batch(generator, config["train"]["batch_size"])
    logits = model(x)
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
    return {name: p.grad for name, p in model.named_parameters()}


def full_name(layer: float, param: str) -> str:
    return param if pd.isna(layer) else f"blocks.{int(layer)}.{param}"


@pytest.mark.parametrize("overrides", [["norm=pre"], ["norm=post", "train.clip=0.001"]], ids=["pre", "post-clip"])
def test_step0_norms_equal_direct_gradient_norms(train_cli, overrides: list[str]) -> None:
    """Logged norms are those of the raw gradient: clipping (after the measurement) changes nothing."""
    run = train_cli(*overrides)
    assert run.exit_code == 0, run.stderr
    config = yaml.safe_load((run.dir / "config.yaml").read_text())
    grads = first_batch_gradients(config)

    rows = pd.read_csv(run.dir / "grad_norms.csv")
    step0 = rows[rows.step == 0]
    logged = {full_name(layer, param): norm for layer, param, norm in
              zip(step0.layer, step0.param, step0.grad_norm)}
    assert list(logged) == list(grads), "one row per parameter tensor, in the model's order"
    for name, grad in grads.items():
        assert logged[name] == pytest.approx(grad.norm().item(), rel=1e-5, abs=1e-9), name

    metrics = pd.read_csv(run.dir / "metrics.csv")
    total = math.sqrt(sum(g.norm().item() ** 2 for g in grads.values()))
    assert metrics.set_index("step").grad_norm[0] == pytest.approx(total, rel=1e-5)


def test_block_and_total_norms_follow_the_parameter_rows(train_cli) -> None:
    run = train_cli("train.steps=7", "log_every=2")
    assert run.exit_code == 0, run.stderr
    rows = pd.read_csv(run.dir / "grad_norms.csv")
    layers = pd.read_csv(run.dir / "layers.csv")
    metrics = pd.read_csv(run.dir / "metrics.csv").set_index("step")
    assert sorted(rows.step.unique()) == [0, 2, 4, 6]

    squares = rows.assign(square=rows.grad_norm**2)
    per_block = squares.dropna(subset=["layer"]).groupby(["step", "layer"]).square.sum() ** 0.5
    for step, layer, norm in zip(layers.step, layers.layer, layers.grad_norm):
        assert norm == pytest.approx(per_block[(step, layer)], rel=1e-5), (step, layer)
    assert len(layers) == len(per_block)

    total = squares.groupby("step").square.sum() ** 0.5
    for step, norm in total.items():
        assert metrics.grad_norm[step] == pytest.approx(norm, rel=1e-5), step

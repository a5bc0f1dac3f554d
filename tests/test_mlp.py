"""The residual MLP: its blocks against hand-written computations, its config defaults, and digits runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from resbench import models, trainer
from resbench.config import check
from resbench.models.mlp import MLP
from resbench.tasks import TaskSpec

BATCH, WIDTH = 5, 12
DIGIT_ROWS = TaskSpec(n_outputs=10, seq_len=8, in_features=8, per_token=False, accuracy=True)


def mlp_cfg(norm: str = "pre", residual: str = "true", depth: int = 2, width: int = WIDTH, **extra) -> dict:
    return {"name": "mlp", "depth": depth, "width": width, "ffn_mult": 1, "norm": norm, "norm_type": "layernorm",
            "residual": residual, "residual_scale": 1.0, "init": "auto", **extra}


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter random, so norm gains and biases (ones and zeros at init) are tested too."""
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.4)
    return model


def layer_norm(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * norm.weight + norm.bias


def branch(x: torch.Tensor, block: torch.nn.Module) -> torch.Tensor:
    """fc2(ReLU(fc1(x))), written with the block's weights."""
    fc1, fc2 = block.ffn.fc1, block.ffn.fc2
    return torch.relu(x @ fc1.weight.T + fc1.bias) @ fc2.weight.T + fc2.bias


# Each placement's block, written out by hand: x (B, C) → (B, C).
HAND_WRITTEN = {
    "post": lambda x, b: layer_norm(x + branch(x, b), b.norm1),
    "pre": lambda x, b: x + branch(layer_norm(x, b.norm1), b),
    "sandwich": lambda x, b: x + layer_norm(branch(layer_norm(x, b.norm1), b), b.norm1_out),
    "none": lambda x, b: x + branch(x, b),
}


def article_block(x: torch.Tensor, block: torch.nn.Module) -> torch.Tensor:
    """The seed article's block, Dense(ReLU) → LN → Dense → LN → Add: x + N2(W2·N1(ReLU(W1 x)))."""
    fc1, fc2, n1, n2 = block.ffn.fc1, block.ffn.fc2, block.ffn.norm, block.norm1_out
    hidden = layer_norm(torch.relu(x @ fc1.weight.T + fc1.bias), n1)
    return x + layer_norm(hidden @ fc2.weight.T + fc2.bias, n2)


HAND_WRITTEN["branch"] = article_block


@pytest.mark.parametrize("norm", list(HAND_WRITTEN))
def test_mlp_block_equals_hand_written(norm: str) -> None:
    torch.manual_seed(0)
    block = randomised(models.build(mlp_cfg(norm), DIGIT_ROWS)).blocks[0]
    x = torch.randn(BATCH, WIDTH)
    torch.testing.assert_close(block(x), HAND_WRITTEN[norm](x, block))


def test_plain_mlp_block_is_the_branch_alone() -> None:
    torch.manual_seed(0)
    block = randomised(models.build(mlp_cfg("none", residual="false"), DIGIT_ROWS)).blocks[0]
    x = torch.randn(BATCH, WIDTH)
    torch.testing.assert_close(block(x), branch(x, block))


@pytest.mark.parametrize("norm", ["post", "pre", "branch"])
def test_mlp_forward_equals_hand_written(norm: str) -> None:
    """Input projection of the flattened rows, two blocks, (final norm under pre), head."""
    torch.manual_seed(0)
    model = randomised(models.build(mlp_cfg(norm), DIGIT_ROWS))
    x = torch.randn(BATCH, 8, 8)  # (B, rows, pixels)
    h = x.reshape(BATCH, 64) @ model.inp.weight.T + model.inp.bias
    for block in model.blocks:
        h = HAND_WRITTEN[norm](h, block)
    if norm == "pre":
        h = layer_norm(h, model.norm_f)
    expected = h @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(x), expected)
    assert model(x).shape == (BATCH, 10)


def test_mlp_parameter_names_are_the_transformers() -> None:
    model = models.build(mlp_cfg("sandwich", residual="rezero", depth=1), DIGIT_ROWS)
    assert isinstance(model, MLP)
    names = {name for name, _ in model.blocks[0].named_parameters()}
    assert names == {"ffn.fc1.weight", "ffn.fc1.bias", "ffn.fc2.weight", "ffn.fc2.bias", "norm1.weight",
                     "norm1.bias", "norm1_out.weight", "norm1_out.bias", "res1.alpha"}
    assert model.inp.in_features == 64


def test_branch_mlp_has_the_articles_two_norms_and_no_final_norm() -> None:
    model = models.build(mlp_cfg("branch", depth=1), DIGIT_ROWS)
    names = {name for name, _ in model.blocks[0].named_parameters()}
    assert names == {"ffn.fc1.weight", "ffn.fc1.bias", "ffn.norm.weight", "ffn.norm.bias", "ffn.fc2.weight",
                     "ffn.fc2.bias", "norm1_out.weight", "norm1_out.bias"}
    assert isinstance(model.norm_f, torch.nn.Identity)


def test_mlp_refuses_token_ids() -> None:
    chars = TaskSpec(n_outputs=7, seq_len=8, vocab_size=7, causal=True)
    with pytest.raises(ValueError, match="model=mlp cannot read"):
        models.build(mlp_cfg(), chars)


# ---- config: the MLP's width default and overrides ------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, width",
    [([], 64), (["model=mlp", "task=digits"], 100), (["model=mlp", "task=digits", "width=50"], 50),
     (["width=32"], 32), (["width=48", "model=mlp", "task=digits"], 48), (["task=digits"], 64)],
    ids=["transformer-default", "mlp-default", "mlp-width50", "transformer-width32", "width-before-model",
         "transformer-digits"],
)
def test_width_default_follows_the_model_and_stays_overridable(overrides: list[str], width: int) -> None:
    config = check(overrides)
    assert config["width"] == width and models.model_keys(config)["width"] == width and "width" not in config["model"]


def test_default_train_is_the_chars_transformer() -> None:
    config = check([])
    assert (config["model"]["name"], config["task"]["name"]) == ("transformer", "chars")


# ---- digits runs end to end --------------------------------------------------------------------------------


def run_digits(tmp_path: Path, *overrides: str) -> tuple[dict, list[dict[str, str]]]:
    config = check(["model=mlp", "task=digits", "device=cpu", *overrides])
    summary = trainer.run(config, tmp_path)
    with open(tmp_path / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    return summary, rows


@pytest.mark.parametrize(
    "overrides", [[], ["residual=false", "norm=none"]], ids=["residual-pre-ln", "plain-no-skip-no-norm"]
)
def test_two_block_mlp_learns_digits(tmp_path: Path, overrides: list[str]) -> None:
    summary, rows = run_digits(tmp_path, "depth=2", *overrides)
    assert summary["status"] == "completed"
    assert summary["final_val_acc"] >= 0.90
    assert "val_acc" in rows[0]
    evaluated = [row for row in rows if row["val_loss"]]
    assert evaluated and all(row["val_acc"] for row in evaluated)
    assert float(evaluated[-1]["val_acc"]) == pytest.approx(summary["final_val_acc"])


def test_deep_plain_mlp_degrades_where_residual_trains(tmp_path: Path) -> None:
    """He et al. 2016: 20 plain blocks stay at chance (loss ≈ ln 10); with skips and pre-LN they learn."""
    short = ["depth=20", "train.steps=30", "log_every=1000", "train.eval_every=1000"]
    plain, _ = run_digits(tmp_path / "plain", *short, "residual=false", "norm=none")
    residual, _ = run_digits(tmp_path / "residual", *short, "residual=true", "norm=pre")
    assert plain["final_loss"] == pytest.approx(2.30, abs=0.1)
    assert plain["final_val_acc"] < 0.2
    assert residual["final_loss"] < 1.0 and residual["final_val_acc"] > 0.7

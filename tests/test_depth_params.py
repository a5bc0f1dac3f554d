"""Depth parametrizations (standard, depth_mup, completep) against hand computations at two depths.

m_L = L / L_base. With L_base = 2 and L = 8, 32: m_L = 4, 16. depth_mup: branch 4^-½ = 0.5, 16^-½ = 0.25; block
lr and ε the same factors. completep: branch 1/4, 1/16; block lr unchanged; block ε 1/4, 1/16.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_checkpoint import assert_same_rows, signal_at

from resbench import models, trainer
from resbench.config import check
from resbench.models.parametrizations import BLOCKS, EMBEDDINGS_HEAD
from resbench.models.residuals import Skip
from resbench.tasks import TaskSpec

BASE = 2
# (depth_param, depth) → (branch multiplier, block lr scale, block ε scale), by hand for L_base = 2
HAND = {
    ("depth_mup", 8): (0.5, 0.5, 0.5),
    ("depth_mup", 32): (0.25, 0.25, 0.25),
    ("completep", 8): (0.25, 1.0, 0.25),
    ("completep", 32): (1 / 16, 1.0, 1 / 16),
    ("standard", 8): (1.0, 1.0, 1.0),
    ("standard", 32): (1.0, 1.0, 1.0),
}
ROWS = TaskSpec(n_outputs=4, seq_len=3, in_features=5, per_token=False, accuracy=True)
SEQUENCE = TaskSpec(n_outputs=7, seq_len=6, vocab_size=7, causal=True, per_token=True)


def keys(name: str, depth_param: str, depth: int, **extra: object) -> dict:
    """model_keys of a small model."""
    return {"name": name, "depth": depth, "width": 16, "heads": 2, "ffn_mult": 4 if name == "transformer" else 1,
            "norm": "pre", "norm_type": "layernorm", "residual": True, "residual_scale": 1.0, "init": "auto",
            "depth_param": depth_param, "base_depth": BASE, "branch_multiplier": 1.0, **extra}


def block_io(model: torch.nn.Module, x: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of block `index` in a forward pass, caught by a forward hook."""
    caught = {}
    handle = model.blocks[index].register_forward_hook(lambda _m, args, out: caught.update(x=args[0], y=out))
    with torch.no_grad():
        model(x)
    handle.remove()
    return caught["x"], caught["y"]


@pytest.mark.parametrize("depth_param, depth", HAND)
def test_the_branch_multiplier_in_the_forward_pass_of_an_mlp_block(depth_param: str, depth: int) -> None:
    torch.manual_seed(0)
    model = models.build(keys("mlp", depth_param, depth), ROWS)
    x_in, x_out = block_io(model, torch.randn(5, 3, 5), index=depth // 2)
    block = model.blocks[depth // 2]
    with torch.no_grad():
        branch = block.ffn(block.norm1(x_in))  # pre-LN: f(N(x))
    torch.testing.assert_close(x_out - x_in, HAND[depth_param, depth][0] * branch)


@pytest.mark.parametrize("depth_param, depth", [("depth_mup", 8), ("completep", 32)])
def test_the_branch_multiplier_on_both_sublayers_of_a_transformer_block(depth_param: str, depth: int) -> None:
    torch.manual_seed(0)
    model = models.build(keys("transformer", depth_param, depth, branch_multiplier=1.5), SEQUENCE)
    x_in, x_out = block_io(model, torch.randint(7, (3, 6)), index=1)
    block, multiplier = model.blocks[1], 1.5 * HAND[depth_param, depth][0]  # the base multiplier times m_L^-α
    with torch.no_grad():
        attention = block.attn(block.norm1(x_in))
        middle = x_in + multiplier * attention
        feed_forward = block.ffn(block.norm2(middle))
    torch.testing.assert_close(x_out - x_in, multiplier * attention + multiplier * feed_forward)


def trained_for(tmp_path: Path, *overrides: str) -> trainer.Trainer:
    """A Trainer of a tiny MLP on digits, set up (model, optimizer) and one step taken."""
    config = check(["model=mlp", "task=digits", "width=8", "train.steps=1", "train.batch_size=4", "threads=1",
                    f"base_depth={BASE}", "train.lr=0.01", *overrides])
    run = trainer.Trainer(config, tmp_path / "run")
    run.run()
    return run


@pytest.mark.parametrize("depth_param, depth", HAND)
def test_the_optimizer_gives_the_blocks_their_lr_and_eps(tmp_path: Path, depth_param: str, depth: int) -> None:
    run = trained_for(tmp_path, f"depth_param={depth_param}", f"depth={depth}", "train.optimizer=adamw")
    _, lr_scale, eps_scale = HAND[depth_param, depth]
    settings = {group.name: torch_group for group, torch_group in zip(run.param_groups, run.optimizer.param_groups)}
    block_params = {id(p) for p in run.model.blocks.parameters()}
    if depth_param == "standard":  # one group: the optimizer of model.parameters()
        assert list(settings) == ["all"]
        assert settings["all"]["lr"] == 0.01 and settings["all"]["eps"] == 1e-8
        return
    assert {id(p) for p in settings[BLOCKS]["params"]} == block_params  # weights, biases and norms
    outside = {id(p) for p in settings[EMBEDDINGS_HEAD]["params"]}
    assert outside == {id(p) for p in run.model.parameters()} - block_params  # input projection, head
    assert math.isclose(settings[BLOCKS]["lr"], 0.01 * lr_scale, rel_tol=1e-12)
    assert math.isclose(settings[BLOCKS]["eps"], 1e-8 * eps_scale, rel_tol=1e-12)
    assert (settings[EMBEDDINGS_HEAD]["lr"], settings[EMBEDDINGS_HEAD]["eps"]) == (0.01, 1e-8)
    written = pd.read_csv(tmp_path / "run" / "param_groups.csv").set_index("param")
    assert written.loc["blocks.0.ffn.fc1.weight", "lr"] == pytest.approx(0.01 * lr_scale, rel=1e-12)
    assert written.loc["blocks.0.norm1.weight", "eps"] == pytest.approx(1e-8 * eps_scale, rel=1e-12)
    assert written.loc["head.weight", "group"] == EMBEDDINGS_HEAD and written.loc["inp.weight", "lr"] == 0.01


def test_warmup_scales_every_group_alike(tmp_path: Path) -> None:
    run = trained_for(tmp_path, "depth_param=depth_mup", "depth=8", "train.warmup=4")
    lrs = [group["lr"] for group in run.optimizer.param_groups]
    assert lrs == pytest.approx([0.01 / 4 * 0.5, 0.01 / 4])  # step 0: lr·1/4, the blocks' at m_L^-½


def std_of(model: torch.nn.Module, suffix: str) -> float:
    weights = [p.detach().flatten() for name, p in model.named_parameters() if name.endswith(suffix)]
    return torch.cat(weights).std().item()


@pytest.mark.parametrize("depth", [8, 32])
def test_block_init_std_does_not_change_with_depth(depth: int) -> None:
    """init=small draws N(0, 0.02²), the output projections N(0, 0.02²/(2L)) (GPT-2); under a depth
    parametrization L is L_base there: std 0.02/√(2·2) = 0.01 at every depth, against 0.02/√(2L) standard."""
    torch.manual_seed(0)
    for depth_param, fc2_std in (("completep", 0.02 / math.sqrt(2 * BASE)), ("depth_mup", 0.02 / math.sqrt(2 * BASE)),
                                 ("standard", 0.02 / math.sqrt(2 * depth))):
        model = models.build(keys("transformer", depth_param, depth, init="small", width=32), SEQUENCE)
        assert std_of(model, "ffn.fc2.weight") == pytest.approx(fc2_std, rel=0.03)
        assert std_of(model, "attn.out.weight") == pytest.approx(fc2_std, rel=0.03)
        assert std_of(model, "ffn.fc1.weight") == pytest.approx(0.02, rel=0.03)


@pytest.mark.parametrize("depth", [8, 32])
def test_the_default_init_keeps_its_std_under_completep(depth: int) -> None:
    """PyTorch's Linear init, U(±1/√fan_in): std 1/√(3·fan_in), whatever the depth (fc2: fan_in = 4·32)."""
    torch.manual_seed(0)
    model = models.build(keys("transformer", "completep", depth, width=32), SEQUENCE)
    assert std_of(model, "ffn.fc2.weight") == pytest.approx(1 / math.sqrt(3 * 128), rel=0.03)


@pytest.mark.parametrize("depth_param", ["depth_mup", "completep"])
def test_at_the_base_depth_every_parametrization_is_the_standard_model(depth_param: str) -> None:
    built = {}
    for name in ("standard", depth_param):
        torch.manual_seed(0)
        built[name] = models.build(keys("transformer", name, BASE, init="small"), SEQUENCE)
    x = torch.randint(7, (2, 6))
    assert torch.equal(built["standard"](x), built[depth_param](x))
    groups = models.param_groups(built[depth_param], keys("transformer", depth_param, BASE))
    assert [(g.lr_scale, g.eps_scale) for g in groups] == [(1.0, 1.0), (1.0, 1.0)]


# ---- standard: exactly what resbench computed before depth parametrizations existed ------------------------

def test_standard_builds_the_model_of_a_config_without_the_keys() -> None:
    """Configs recorded before the keys existed lack them: the model is the same, weight for weight."""
    older = {key: value for key, value in keys("transformer", "standard", 5, init="small").items()
             if key not in ("depth_param", "base_depth", "branch_multiplier")}
    torch.manual_seed(0)
    new = models.build(keys("transformer", "standard", 5, init="small"), SEQUENCE)
    torch.manual_seed(0)
    old = models.build(older, SEQUENCE)
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), old.state_dict().values()))


def test_an_unscaled_skip_adds_exactly() -> None:
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    assert torch.equal(Skip()(x, y), x + y)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_standard_steps_exactly_as_the_optimizer_of_model_parameters(optimizer: str) -> None:
    """One group of model.parameters() at train.lr: the same state dict and, step for step, the same weights."""
    train = {"lr": 0.003, "weight_decay": 0.01}
    models_ = []
    for _ in range(2):
        torch.manual_seed(0)
        models_.append(models.build(keys("mlp", "standard", 4), ROWS))
    grouped = trainer.OPTIMIZERS[optimizer](
        trainer.optimizer_groups(models.param_groups(models_[0], keys("mlp", "standard", 4)), train), train)
    plain = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[optimizer](
        models_[1].parameters(), lr=0.003, weight_decay=0.01)
    assert grouped.state_dict() == plain.state_dict()
    x, y = torch.randn(6, 3, 5), torch.randint(4, (6,))
    for model, opt in zip(models_, (grouped, plain)):
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(models_[0].parameters(), models_[1].parameters()))


def test_standard_ignores_base_depth(train_cli) -> None:
    runs = [train_cli(*overrides, name=name) for name, overrides in
            (("plain", ()), ("based", ("depth_param=standard", "base_depth=5")))]
    assert all(run.exit_code == 0 for run in runs), runs[0].stderr
    metrics = [pd.read_csv(run.dir / "metrics.csv").drop(columns="elapsed_s") for run in runs]
    pd.testing.assert_frame_equal(*metrics)


# ---- what the rules do not cover is bad input ---------------------------------------------------------------

UNCOVERED = {
    "no skip": (["depth_param=completep", "residual=false"], "needs residual=true, got residual=false"),
    "rezero": (["depth_param=depth_mup", "residual=rezero"], "needs residual=true, got residual=rezero"),
    "post-LN": (["depth_param=completep", "norm=post"], "norm=post is not covered (it renormalizes the stream"),
    "post-LN's valid norms": (["depth_param=completep", "norm=post"], "valid: pre, sandwich, branch, none"),
    "deepnorm": (["depth_param=completep", "norm=deepnorm"], "norm=deepnorm is not covered"),
    "deepnorm's own α": (["branch_multiplier=2", "norm=deepnorm"], "scales the skip with its own α"),
    "a scaled skip": (["depth_param=completep", "residual_scale=2"], "residual_scale=1"),
    "encoder-decoder": (["depth_param=completep", "model=seq2seq", "task=reverse"], "valid: transformer, mlp"),
    "sgd": (["depth_param=completep", "train.optimizer=sgd"], "valid: adam, adamw"),
    "unknown": (["depth_param=cp"], "valid choices: standard, depth_mup, completep"),
    "base depth 0": (["base_depth=0"], "base_depth must be an integer >= 1"),
    "multiplier 0": (["branch_multiplier=0"], "branch_multiplier must be a number > 0"),
}


@pytest.mark.parametrize("overrides, expected", UNCOVERED.values(), ids=UNCOVERED.keys())
def test_what_the_rules_do_not_cover_is_one_line(cli, tiny, tmp_path: Path, overrides, expected) -> None:
    result = cli("train", *tiny, *overrides, f"hydra.run.dir={tmp_path}/run")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("norm", ["pre", "sandwich", "branch", "none"])
def test_every_covered_placement_trains(train_cli, norm: str) -> None:
    run = train_cli("depth_param=completep", "depth=4", "base_depth=2", f"norm={norm}")
    assert run.exit_code == 0, run.stderr
    assert (run.dir / "param_groups.csv").exists()


def test_a_completep_run_resumed_from_a_checkpoint_equals_a_straight_run(train_cli, cli, monkeypatch) -> None:
    """The blocks' lr and ε come back with the optimizer's state; the scales from the config."""
    keys = ["depth_param=completep", "depth=4", "base_depth=2", "train.steps=12", "log_every=3",
            "train.checkpoint_every=null"]
    straight = train_cli(*keys, name="straight")
    signal_at(monkeypatch, 7)
    stopped = train_cli(*keys, name="stopped")
    assert stopped.exit_code == 130, stopped.stderr
    monkeypatch.undo()
    resumed = cli("train", "--quiet", "--resume", str(stopped.dir))
    assert resumed.exit_code == 0, resumed.stderr
    assert_same_rows(straight.dir, stopped.dir)

"""Probes against direct computations: manual forwards, retain_grad, parameter snapshots, built inputs."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest
import torch

from resbench import models, probes, tasks, trainer
from resbench.config import compose, to_plain
from resbench.schema import LAYER_COLUMNS
from resbench.tasks.base import TaskSpec

PLACEMENT_NAMES = list(models.PLACEMENTS)
RESIDUAL_NAMES = list(models.RESIDUALS)
BATCH, TOKENS, FEATURES = 4, 6, 5


def model_cfg(name: str, norm: str = "pre", residual: str = "true", depth: int = 3) -> dict:
    return {"name": name, "depth": depth, "width": 8, "heads": 2, "ffn_mult": 2, "norm": norm,
            "norm_type": "layernorm", "residual": residual, "residual_scale": 1.0, "init": "auto"}


def build(name: str, norm: str = "pre", residual: str = "true", depth: int = 3, seed: int = 0):
    """A small model and one batch (x, y): token ids for the Transformer, feature vectors for the MLP."""
    torch.manual_seed(seed)
    if name == "transformer":
        spec = TaskSpec(n_outputs=7, seq_len=TOKENS, vocab_size=7, causal=True)
        x = torch.randint(7, (BATCH, TOKENS))
        y = torch.randint(7, (BATCH, TOKENS))
    else:
        spec = TaskSpec(n_outputs=3, seq_len=1, in_features=FEATURES, per_token=False)
        x = torch.randn(BATCH, FEATURES)
        y = torch.randint(3, (BATCH,))
    return models.build(model_cfg(name, norm, residual, depth), spec), x, y


def manual_block_outputs(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The model's forward written out block by block, with every block output kept (retain_grad)."""
    if hasattr(model, "tok_emb"):
        h = model.tok_emb(x) + model.pos_emb(torch.arange(x.shape[1]))
    else:
        h = model.inp(x)
    outputs = []
    for block in model.blocks:
        h = block(h)
        h.retain_grad()
        outputs.append(h)
    return model.head(model.norm_f(h)), outputs


def direct_rank_residual(x: torch.Tensor) -> float:
    """‖X − 1·x̄ᵀ‖_F / ‖X‖_F of one token matrix X, written out."""
    return ((x - x.mean(0)).norm() / x.norm()).item()


# ---- pure functions ---------------------------------------------------------------------------------


def test_rank_residual_is_zero_for_identical_tokens():
    token = torch.randn(16)
    x = token.expand(3, 5, 16)  # (B, T, C): every token the same vector
    assert probes.rank_residual(x).item() == pytest.approx(0.0, abs=1e-6)


def test_rank_residual_of_known_matrices():
    identity = torch.eye(2)  # mean token (½, ½): residual ‖[[½, −½], [−½, ½]]‖ = 1 over ‖I‖ = √2
    assert probes.rank_residual(identity[None]).item() == pytest.approx(1 / math.sqrt(2))
    pair = torch.tensor([[1.0, 1.0], [3.0, 3.0]])  # mean (2, 2): residual 2 over √20
    assert probes.rank_residual(pair[None]).item() == pytest.approx(2 / math.sqrt(20))
    batch = torch.stack([identity, pair, torch.ones(2, 2)])  # averaged over the sequences
    expected = (1 / math.sqrt(2) + 2 / math.sqrt(20) + 0.0) / 3
    assert probes.rank_residual(batch).item() == pytest.approx(expected)


def test_rank_residual_of_zero_input_is_zero_not_nan():
    assert probes.rank_residual(torch.zeros(2, 3, 4)).item() == 0.0


def test_rank_residual_keeps_leading_dims():
    x = torch.randn(5, 3, 4, 8)  # (L, B, T, C)
    per_block = probes.rank_residual(x)
    assert per_block.shape == (5,)
    assert torch.allclose(per_block, torch.stack([probes.rank_residual(block) for block in x]))


def test_hidden_rms_and_act_grad_norm_written_out():
    h = torch.randn(3, 4, 5)  # (B, T, C)
    assert probes.hidden_rms(h).item() == pytest.approx(h.pow(2).mean().sqrt().item(), rel=1e-5)
    expected = sum(h[i].norm().item() for i in range(3))  # Σ_i ‖∂L/∂h_i‖ = mean_i ‖∂ℓ_i/∂h_i‖
    assert probes.act_grad_norm(h).item() == pytest.approx(expected, rel=1e-5)


def test_update_ratio_written_out():
    before = torch.tensor([1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0])  # block 0: 7 values, block 1: 1
    after = torch.tensor([1.5, 1.5, 1.5, 1.5, 2.0, 2.0, 2.0, 0.0])
    ratio = probes.update_ratio(before, after, [7, 1])
    assert ratio[0].item() == pytest.approx(math.sqrt(4 * 0.25) / math.sqrt(4 + 12))
    assert ratio[1].item() == pytest.approx(1.0)


# ---- the hook layer against direct computations on real models ----------------------------------------


@pytest.mark.parametrize("name", ["transformer", "mlp"])
def test_capture_matches_manual_forward_and_retain_grad(name):
    model, x, y = build(name, norm="post", depth=3)
    reference = copy.deepcopy(model)
    with probes.capture(model) as blocks:
        loss = trainer.cross_entropy(model(x), y)
        loss.backward()
    values = blocks.values()

    logits, outputs = manual_block_outputs(reference, x)
    assert torch.allclose(logits, model(x), atol=1e-6)
    trainer.cross_entropy(logits, y).backward()
    for i, h in enumerate(outputs):
        assert values["hidden_rms"][i].item() == pytest.approx(h.detach().pow(2).mean().sqrt().item(), rel=1e-5)
        # The gradient of example b's own loss ℓ_b is B·∂L/∂h_b, L being the batch mean.
        per_example = [(BATCH * h.grad[b]).norm().item() for b in range(BATCH)]
        assert values["act_grad_norm"][i].item() == pytest.approx(sum(per_example) / BATCH, rel=1e-5)
        if name == "transformer":  # one token matrix per sequence, averaged over the batch
            expected = sum(direct_rank_residual(h[b].detach()) for b in range(BATCH)) / BATCH
        else:  # the MLP: the batch of examples is the one matrix
            expected = direct_rank_residual(h.detach())
        assert values["rank_residual"][i].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["transformer", "mlp"])
def test_act_grad_norm_does_not_depend_on_batch_size(name):
    model, x, y = build(name)
    measured = []
    for copies in (1, 3):
        model.zero_grad()
        with probes.capture(model) as blocks:
            trainer.cross_entropy(model(x.repeat(copies, *[1] * (x.dim() - 1))),
                                y.repeat(copies, *[1] * (y.dim() - 1))).backward()
        measured.append(blocks.values()["act_grad_norm"])
    assert torch.allclose(measured[0], measured[1], rtol=1e-5)


def test_capture_hooks_only_while_active():
    model, x, _ = build("transformer")
    with probes.capture(model, active=False) as blocks:
        assert all(not block._forward_hooks for block in model.blocks)
        model(x).sum().backward()
    assert blocks.values() == {}
    with probes.capture(model, active=True):
        assert all(len(block._forward_hooks) == 1 for block in model.blocks)
    assert all(not block._forward_hooks for block in model.blocks)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_update_ratio_matches_parameter_snapshots(optimizer):
    model, x, y = build("transformer", depth=3)
    layout = probes.ParamLayout(model)
    opt = trainer.OPTIMIZERS[optimizer](model.parameters(), {"lr": 0.01, "weight_decay": 0.0})
    trainer.cross_entropy(model(x), y).backward()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with probes.track_update(layout) as update:
        opt.step()
    after = dict(model.named_parameters())
    for i in range(len(model.blocks)):
        names = [name for name in before if name.startswith(f"blocks.{i}.")]
        change = math.sqrt(sum((after[n].detach() - before[n]).pow(2).sum().item() for n in names))
        size = math.sqrt(sum(before[n].pow(2).sum().item() for n in names))
        assert update.ratio[i].item() == pytest.approx(change / size, rel=1e-4)


def test_no_update_ratio_when_not_tracked_or_gradient_not_finite():
    model, x, y = build("transformer")
    layout = probes.ParamLayout(model)
    with probes.track_update(layout, active=False) as update:
        pass
    assert update.ratio is None
    trainer.cross_entropy(model(x), y).backward()
    norms = probes.grad_norms(layout.grads())
    ratio = torch.ones(layout.n_blocks)
    assert probes.step_stats(layout, norms, {"update_ratio": ratio}).blocks["update_ratio"] == [1.0] * 3
    norms[0] = float("nan")
    assert probes.step_stats(layout, norms, {"update_ratio": ratio}).blocks["update_ratio"] == [None] * 3


@pytest.mark.parametrize("residual", RESIDUAL_NAMES)
@pytest.mark.parametrize("norm", PLACEMENT_NAMES)
@pytest.mark.parametrize("name", ["transformer", "mlp"])
def test_every_probe_present_and_finite(name, norm, residual):
    model, x, y = build(name, norm, residual, depth=2)
    layout = probes.ParamLayout(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with probes.capture(model) as blocks:
        trainer.cross_entropy(model(x), y).backward()
        norms = probes.grad_norms(layout.grads())
    with probes.track_update(layout) as update:
        opt.step()
    stats = probes.step_stats(layout, norms, {**blocks.values(), "update_ratio": update.ratio})
    rows = stats.block_rows()
    assert len(rows) == 2 and all(len(row) == len(LAYER_COLUMNS) - 3 for row in rows)  # not step, layer, stack
    assert all(value is not None and math.isfinite(value) for row in rows for value in row)
    assert all(0.0 <= stats.blocks["rank_residual"][i] <= 1.0 + 1e-6 for i in range(2))


# ---- the trainer: layers.csv, update rows, init_batches -----------------------------------------------


@pytest.fixture(scope="module")
def base_config() -> dict:
    return to_plain(compose([
        "depth=2", "width=16", "heads=2", "device=cpu", "task.seq_len=8", "task.val_batches=1",
        "train.batch_size=4", "train.steps=3", "train.eval_every=100", "log_every=1",
    ]))


def with_keys(config: dict, **keys) -> dict:
    config = copy.deepcopy(config)
    for key, value in keys.items():
        node = config
        *parents, leaf = key.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_layers_csv_has_every_probe_and_update_rows(base_config, tmp_path):
    summary = trainer.run(base_config, tmp_path)
    assert summary["status"] == "completed"
    rows = read_csv(tmp_path / "layers.csv")
    assert list(rows[0]) == list(LAYER_COLUMNS)
    assert [(r["step"], r["layer"]) for r in rows] == [(str(s), str(b)) for s in range(3) for b in range(2)]
    assert all(math.isfinite(float(r[c])) for r in rows for c in LAYER_COLUMNS[3:])


def test_no_update_ratio_without_steps(base_config, tmp_path):
    trainer.run(with_keys(base_config, train__steps=0), tmp_path)
    rows = read_csv(tmp_path / "layers.csv")
    assert len(rows) == 2 and all(r["update_ratio"] == "" for r in rows)
    assert all(r["hidden_rms"] and r["act_grad_norm"] and r["rank_residual"] for r in rows)


@pytest.mark.skipif("digits" not in tasks.TASKS, reason="needs the digits task")
def test_mlp_run_records_every_probe(base_config, tmp_path):
    config = with_keys(base_config, task={"name": "digits", "val_fraction": 0.2})
    config["model"] = model_cfg("mlp", depth=2) | {"width": 16}
    assert trainer.run(config, tmp_path)["status"] == "completed"
    rows = read_csv(tmp_path / "layers.csv")
    assert len(rows) == 6 and all(math.isfinite(float(r[c])) for r in rows for c in LAYER_COLUMNS[3:])


def test_init_batches_is_the_norm_of_the_mean_gradient(base_config, tmp_path):
    k = 3
    config = with_keys(base_config, init_batches=k, train__steps=0)
    trainer.run(config, tmp_path / "run")

    # The same model at init, and K gradients computed one by one on the same batches.
    reference = trainer.Trainer(config, tmp_path / "reference")
    reference.setup()
    batch_size = config["train"]["batch_size"]
    generators = [torch.Generator().manual_seed(config["seed"])]  # the first training batch
    generators += [torch.Generator().manual_seed(trainer.init_batches_seed(config["seed"]))] * (k - 1)
    grads, signals = [], []
    for generator in generators:
        x, y = reference.task.batch(generator, batch_size)
        reference.model.zero_grad(set_to_none=True)
        with probes.capture(reference.model) as blocks:
            trainer.cross_entropy(reference.model(x), y).backward()
        grads.append(reference.layout.grads())
        signals.append(blocks.values())
    mean = [torch.stack(per_param).mean(0) for per_param in zip(*grads)]

    rows = read_csv(tmp_path / "run" / "grad_norms.csv")
    assert [r["step"] for r in rows] == ["0"] * len(mean)
    for row, grad in zip(rows, mean):
        assert float(row["grad_norm"]) == pytest.approx(grad.norm().item(), rel=1e-4, abs=1e-8)
    layers = read_csv(tmp_path / "run" / "layers.csv")
    for block in range(config["depth"]):
        in_block = [g for g, layer in zip(mean, reference.layout.layers) if layer == block]
        expected = math.sqrt(sum(g.pow(2).sum().item() for g in in_block))
        assert float(layers[block]["grad_norm"]) == pytest.approx(expected, rel=1e-4)
    total = math.sqrt(sum(g.pow(2).sum().item() for g in mean))
    metrics = read_csv(tmp_path / "run" / "metrics.csv")
    assert float(metrics[0]["grad_norm"]) == pytest.approx(total, rel=1e-4)
    # The signal probes at step 0 are their means over the same K batches.
    for name in ("hidden_rms", "act_grad_norm", "rank_residual"):
        expected = torch.stack([values[name] for values in signals]).mean(0)
        assert [float(r[name]) for r in layers] == pytest.approx(expected.tolist(), rel=1e-4)


def test_init_batches_leaves_training_unchanged(base_config, tmp_path):
    trained = []
    for k in (1, 3):
        one_run = trainer.Trainer(with_keys(base_config, init_batches=k), tmp_path / f"k{k}")
        assert one_run.run()["status"] == "completed"
        trained.append(one_run.model.state_dict())
    assert all(torch.equal(trained[0][name], trained[1][name]) for name in trained[0])
    later = [[r for r in read_csv(tmp_path / f"k{k}" / "layers.csv") if r["step"] != "0"] for k in (1, 3)]
    assert later[0] == later[1]
    first = [[r for r in read_csv(tmp_path / f"k{k}" / "layers.csv") if r["step"] == "0"] for k in (1, 3)]
    assert [r["update_ratio"] for r in first[0]] == [r["update_ratio"] for r in first[1]]
    assert [r["grad_norm"] for r in first[0]] != [r["grad_norm"] for r in first[1]]


def test_mlp_rank_residual_is_the_spread_of_a_block_output_across_examples():
    """For the MLP, rank_residual is ‖H − 1·h̄ᵀ‖/‖H‖ over the batch of examples (H: B × C): the report's
    measure of a forward signal that collapses (every example mapped to the same output)."""
    model, x, y = build("mlp", norm="none", residual="false", depth=3)
    outputs = []
    handle = model.blocks[-1].register_forward_hook(lambda module, args, out: outputs.append(out.detach()))
    with probes.capture(model) as blocks:
        trainer.cross_entropy(model(x), y).backward()
    handle.remove()
    h = outputs[0]  # (B, C)
    expected = torch.linalg.vector_norm(h - h.mean(0)) / torch.linalg.vector_norm(h)
    assert blocks.values()["rank_residual"][-1].item() == pytest.approx(expected.item(), rel=1e-5)


def test_tracked_update_ratio_is_update_ratio_of_the_two_snapshots_to_the_bit():
    """The tracker never copies the parameters after the step: its ratio must still be, bit for bit, the pure
    update_ratio of a flat copy before and a flat copy after."""
    model, x, y = build("transformer", depth=3)
    layout = probes.ParamLayout(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    trainer.cross_entropy(model(x), y).backward()
    before = layout.flat_block_params()
    with probes.track_update(layout) as update:
        opt.step()
    expected = probes.update_ratio(before, layout.flat_block_params(), layout.block_sizes)
    assert not torch.equal(before, layout.flat_block_params())  # the step moved the parameters
    assert torch.equal(update.ratio, expected)

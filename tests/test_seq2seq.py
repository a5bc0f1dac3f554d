"""The encoder–decoder: its decoder layer against PyTorch's, DeepNet's encoder–decoder constants, teacher
forcing, and runs whose layers.csv and grad_norms.csv name each block's stack."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from resbench import models, tasks
from resbench.models.blocks import BlockSpec
from resbench.models.placements import deepnorm_encoder_decoder
from resbench.models.seq2seq import DecoderBlock

WIDTH, HEADS, TOKENS, SOURCE, BATCH = 16, 2, 6, 5, 3


def seq2seq_cfg(norm: str = "pre", depth: int = 2, decoder_depth: int | None = None, width: int = WIDTH) -> dict:
    return {"name": "seq2seq", "depth": depth, "decoder_depth": decoder_depth, "width": width, "heads": HEADS,
            "ffn_mult": 4, "norm": norm, "norm_type": "layernorm", "residual": "true", "residual_scale": 1.0,
            "init": "auto"}


def pairs_task(name: str = "sort", seq_len: int = TOKENS) -> tasks.Task:
    return models.task_for("seq2seq", tasks.build({"name": name, "vocab": 7, "seq_len": seq_len, "val_batches": 1},
                                                  batch_size=BATCH))


def copy_into_reference(block: DecoderBlock, norm_first: bool) -> nn.TransformerDecoderLayer:
    """nn.TransformerDecoderLayer with `block`'s weights (cross q and kv ↔ the thirds of in_proj)."""
    reference = nn.TransformerDecoderLayer(WIDTH, HEADS, dim_feedforward=4 * WIDTH, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=norm_first)
    cross = reference.multihead_attn
    pairs = [
        (reference.self_attn.in_proj_weight, block.attn.qkv.weight),
        (reference.self_attn.in_proj_bias, block.attn.qkv.bias),
        (reference.self_attn.out_proj.weight, block.attn.out.weight),
        (reference.self_attn.out_proj.bias, block.attn.out.bias),
        (cross.in_proj_weight, torch.cat([block.cross.q.weight, block.cross.kv.weight])),
        (cross.in_proj_bias, torch.cat([block.cross.q.bias, block.cross.kv.bias])),
        (cross.out_proj.weight, block.cross.out.weight),
        (cross.out_proj.bias, block.cross.out.bias),
        (reference.linear1.weight, block.ffn.fc1.weight),
        (reference.linear1.bias, block.ffn.fc1.bias),
        (reference.linear2.weight, block.ffn.fc2.weight),
        (reference.linear2.bias, block.ffn.fc2.bias),
    ]
    for i in (1, 2, 3):
        pairs += [(getattr(reference, f"norm{i}").weight, getattr(block, f"norm{i}").weight),
                  (getattr(reference, f"norm{i}").bias, getattr(block, f"norm{i}").bias)]
    with torch.no_grad():
        for target, source in pairs:
            assert target.shape == source.shape
            target.copy_(source)
    return reference


@pytest.mark.parametrize("norm, norm_first", [("post", False), ("pre", True)])
def test_decoder_layer_equals_torch_decoder_layer(norm: str, norm_first: bool) -> None:
    torch.manual_seed(0)
    block = DecoderBlock(BlockSpec(width=WIDTH, depth=1, norm=norm), HEADS, ffn_mult=4)
    with torch.no_grad():
        for param in block.parameters():
            param.normal_(0.0, 0.3)
    reference = copy_into_reference(block, norm_first).eval()
    x, memory = torch.randn(BATCH, TOKENS, WIDTH), torch.randn(BATCH, SOURCE, WIDTH)
    mask = nn.Transformer.generate_square_subsequent_mask(TOKENS)
    with torch.no_grad():
        expected = reference(x, memory, tgt_mask=mask, tgt_is_causal=True)
        got = block.eval()(x, memory)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# Wang et al. 2022, Table 1, encoder–decoder, written out for N = 6 encoder and M = 6 decoder layers:
# encoder α = 0.81·(6⁵)^(1/16), β = 0.87·(6⁵)^(-1/16); decoder α = 18^¼, β = 72^-¼.
ENCODER_DECODER_6_6 = ((0.81 * 7776 ** 0.0625, 0.87 * 7776 ** -0.0625), (18 ** 0.25, 72 ** -0.25))


def test_deepnorm_encoder_decoder_constants() -> None:
    (enc_alpha, enc_beta), (dec_alpha, dec_beta) = deepnorm_encoder_decoder(6, 6)
    assert (enc_alpha, enc_beta, dec_alpha, dec_beta) == pytest.approx([*ENCODER_DECODER_6_6[0], *ENCODER_DECODER_6_6[1]])
    assert (enc_alpha, enc_beta, dec_alpha, dec_beta) == pytest.approx([1.4179, 0.4970, 2.0598, 0.3433], abs=1e-4)
    (_, beta_12_6), _ = deepnorm_encoder_decoder(12, 6)  # N⁴M: the encoder's depth weighs four times more
    assert beta_12_6 == pytest.approx(0.87 * (12**4 * 6) ** -0.0625)


def test_deepnorm_seq2seq_scales_each_stack_by_its_own_constants() -> None:
    torch.manual_seed(0)
    model = models.build(seq2seq_cfg("deepnorm", depth=6, decoder_depth=3, width=64), pairs_task().spec)
    (enc_alpha, enc_beta), (dec_alpha, dec_beta) = deepnorm_encoder_decoder(6, 3)
    assert all(b.res1.scale == b.res2.scale == pytest.approx(enc_alpha) for b in model.encoder.blocks)
    assert all(b.res1.scale == b.res2.scale == b.res3.scale == pytest.approx(dec_alpha) for b in model.decoder.blocks)
    for stack, beta in ((model.encoder, enc_beta), (model.decoder, dec_beta)):
        fc2 = torch.cat([b.ffn.fc2.weight.detach().flatten() for b in stack.blocks])
        fan_out, fan_in = stack.blocks[0].ffn.fc2.weight.shape
        assert fc2.std().item() == pytest.approx(beta * math.sqrt(2 / (fan_in + fan_out)), rel=0.05)
    value = torch.cat([b.cross.kv.weight.detach()[WIDTH * 4:].flatten() for b in model.decoder.blocks])
    key = torch.cat([b.cross.kv.weight.detach()[: WIDTH * 4].flatten() for b in model.decoder.blocks])
    assert value.std().item() == pytest.approx(dec_beta * math.sqrt(2 / 128), rel=0.05)
    assert key.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.05)


def test_teacher_forcing_is_causal_and_reads_the_source() -> None:
    torch.manual_seed(0)
    task = pairs_task()
    model = models.build(seq2seq_cfg("pre"), task.spec).eval()
    x, y = task.batch(torch.Generator().manual_seed(0), BATCH)
    assert x.shape == (BATCH, 2 * TOKENS) and y.shape == (BATCH, TOKENS)
    assert torch.equal(x[:, TOKENS], torch.full((BATCH,), 7)) and torch.equal(x[:, TOKENS + 1:], y[:, :-1])
    logits = model(x)
    assert logits.shape == (BATCH, TOKENS, 7)
    later = x.clone()
    later[:, -2:] = (later[:, -2:] + 1) % 7  # change the decoder's last two inputs
    torch.testing.assert_close(model(later)[:, : TOKENS - 2], logits[:, : TOKENS - 2])
    other_source = x.clone()
    other_source[:, 0] = (other_source[:, 0] + 1) % 7
    assert not torch.allclose(model(other_source)[:, 0], logits[:, 0])  # the encoder reaches position 0


@pytest.mark.parametrize("task", ["reverse", "sort"])
def test_seq2seq_run_logs_every_block_of_both_stacks(train_cli, task: str) -> None:
    run = train_cli("model=seq2seq", f"task={task}", "model.decoder_depth=3", "task.val_batches=1")
    assert run.exit_code == 0, run.output
    layers = pd.read_csv(run.dir / "layers.csv", keep_default_na=False)
    assert list(layers.columns[:3]) == ["step", "layer", "stack"]
    for step, rows in layers.groupby("step"):
        assert list(zip(rows["stack"], rows.layer)) == [("encoder", 0), ("encoder", 1), ("decoder", 0),
                                                     ("decoder", 1), ("decoder", 2)]
        for column in ("grad_norm", "hidden_rms", "act_grad_norm", "rank_residual"):
            assert all(math.isfinite(float(v)) and float(v) > 0 for v in rows[column]), (step, column)
    grad_norms = pd.read_csv(run.dir / "grad_norms.csv", keep_default_na=False)
    in_blocks = grad_norms[grad_norms.layer != ""]
    assert set(in_blocks["stack"]) == {"encoder", "decoder"}
    assert {"cross.q.weight", "cross.kv.weight", "cross.out.weight"} <= set(in_blocks[in_blocks["stack"] == "decoder"].param)
    assert "cross.q.weight" not in set(in_blocks[in_blocks["stack"] == "encoder"].param)
    outside = grad_norms[grad_norms.layer == ""]
    assert set(outside["stack"]) == {""} and "head.weight" in set(outside.param)
    # per-block norms from the per-tensor ones, block by block of each stack
    at_init = in_blocks[in_blocks.step == 0].assign(g=lambda f: f.grad_norm.astype(float) ** 2)
    sums = at_init.groupby(["stack", "layer"]).g.sum() ** 0.5
    init_rows = layers[layers.step == 0].set_index(["stack", "layer"]).grad_norm.astype(float)
    for (stack, layer), value in init_rows.items():
        assert sums[(stack, str(layer))] == pytest.approx(value, rel=1e-5)


def test_single_stack_rows_have_an_empty_stack(train_cli) -> None:
    run = train_cli("task=reverse", "task.val_batches=1")
    assert run.exit_code == 0, run.output
    layers = pd.read_csv(run.dir / "layers.csv", keep_default_na=False)
    assert set(layers["stack"]) == {""} and sorted(set(layers.layer)) == [0, 1]


@pytest.mark.parametrize("task", ["chars", "digits"])
def test_seq2seq_refuses_tasks_without_pairs(cli, tmp_path: Path, task: str) -> None:
    run_dir = tmp_path / "run"
    result = cli("train", "--quiet", "model=seq2seq", f"task={task}", f"hydra.run.dir={run_dir}")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert f"model=seq2seq does not fit task={task}" in line and "tasks that fit model=seq2seq: reverse, sort" in line
    assert not run_dir.exists()


def test_report_draws_each_stack_apart_and_reads_the_decoder_for_per_run_measures(cli, tmp_path: Path) -> None:
    from resbench.report import aggregate, build_report, load

    sweep = tmp_path / "sweep"
    result = cli("sweep", "model=seq2seq", "task=sort", "norm=post,pre", "depth=2", "model.decoder_depth=3",
                 "width=16", "heads=2", "train.steps=3", "train.batch_size=4", "train.eval_every=2",
                 "task.val_batches=1", "threads=1", f"hydra.sweep.dir={sweep}")
    assert result.exit_code == 0, result.output
    report = build_report([sweep])
    assert report.n_runs == 2 and (report.out_dir / "grad_norm_init.png").stat().st_size > 0
    run_set = load.load([sweep])
    assert set(run_set.layers["stack"]) == {"encoder", "decoder"}
    runs = aggregate.per_run(run_set, ["norm"])
    curve = aggregate.block_curve(run_set.at["init"], runs, "grad_norm")
    assert set(curve["panel"]) == {"encoder stack", "decoder stack"}
    assert curve[curve["panel"] == "encoder stack"]["x"].max() == 1 and curve["x"].max() == 2
    grid = aggregate.heatmap_grid(aggregate.block_steps(run_set.layers, runs, ["grad_norm"]))
    assert {group.split(" · ")[-1] for group in grid["group"]} == {"encoder stack", "decoder stack"}
    for run in runs.itertuples():  # first / last block = the decoder's, read straight from layers.csv
        layers = pd.read_csv(Path(run.path) / "layers.csv", keep_default_na=False)
        decoder = layers[(layers["stack"] == "decoder") & (layers["step"] == 0)]
        assert run.grad_norm_init_first == pytest.approx(decoder["grad_norm"].iloc[0])
        assert run.grad_norm_init_last == pytest.approx(decoder["grad_norm"].iloc[-1])

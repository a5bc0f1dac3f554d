"""Blocks against PyTorch's reference layer, and initial weights that differ from block to block."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import torch
from torch import nn

from resbench import models
from resbench.models.blocks import BlockSpec, TransformerBlock
from resbench.tasks import TaskSpec

WIDTH, HEADS, TOKENS, BATCH = 16, 2, 8, 3


def copy_into_reference(block: TransformerBlock, norm_first: bool) -> nn.TransformerEncoderLayer:
    """nn.TransformerEncoderLayer with `block`'s weights (qkv ↔ in_proj, out ↔ out_proj, fc ↔ linear)."""
    reference = nn.TransformerEncoderLayer(
        WIDTH, HEADS, dim_feedforward=4 * WIDTH, dropout=0.0, activation="gelu",
        batch_first=True, norm_first=norm_first,
    )
    pairs = [
        (reference.self_attn.in_proj_weight, block.attn.qkv.weight),
        (reference.self_attn.in_proj_bias, block.attn.qkv.bias),
        (reference.self_attn.out_proj.weight, block.attn.out.weight),
        (reference.self_attn.out_proj.bias, block.attn.out.bias),
        (reference.linear1.weight, block.ffn.fc1.weight),
        (reference.linear1.bias, block.ffn.fc1.bias),
        (reference.linear2.weight, block.ffn.fc2.weight),
        (reference.linear2.bias, block.ffn.fc2.bias),
        (reference.norm1.weight, block.norm1.weight),
        (reference.norm1.bias, block.norm1.bias),
        (reference.norm2.weight, block.norm2.weight),
        (reference.norm2.bias, block.norm2.bias),
    ]
    with torch.no_grad():
        for target, source in pairs:
            assert target.shape == source.shape
            target.copy_(source)
    return reference


def randomise(block: nn.Module) -> None:
    """Every parameter random, so norm gains and biases (ones and zeros at init) are tested too."""
    with torch.no_grad():
        for param in block.parameters():
            param.normal_(0.0, 0.3)


@pytest.mark.parametrize("norm, norm_first", [("post", False), ("pre", True)])
@pytest.mark.parametrize("causal", [False, True])
def test_block_equals_torch_encoder_layer(norm: str, norm_first: bool, causal: bool) -> None:
    torch.manual_seed(0)
    block = TransformerBlock(BlockSpec(width=WIDTH, depth=1, norm=norm), HEADS, ffn_mult=4, causal=causal)
    randomise(block)
    reference = copy_into_reference(block, norm_first)
    block.eval()
    reference.eval()
    x = torch.randn(BATCH, TOKENS, WIDTH)
    with torch.no_grad():
        if causal:
            mask = nn.Transformer.generate_square_subsequent_mask(TOKENS)
            expected = reference(x, src_mask=mask, is_causal=True)
        else:
            expected = reference(x)
        got = block(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_causal_block_ignores_the_future() -> None:
    """Changing the last token changes no earlier output of a causal block, and does change a non-causal one."""
    torch.manual_seed(0)
    x = torch.randn(BATCH, TOKENS, WIDTH)
    later = x.clone()
    later[:, -1] = torch.randn(BATCH, WIDTH)
    for causal in (True, False):
        block = TransformerBlock(BlockSpec(width=WIDTH, depth=1, norm="pre"), HEADS, ffn_mult=4, causal=causal)
        with torch.no_grad():
            same = torch.allclose(block(x)[:, :-1], block(later)[:, :-1])
        assert same == causal


CHARS = TaskSpec(n_outputs=11, seq_len=TOKENS, vocab_size=11, causal=True)
ROWS = TaskSpec(n_outputs=10, seq_len=1, in_features=12, per_token=False, accuracy=True)


def model_config(name: str, init: str, norm: str) -> dict:
    return {"name": name, "depth": 4, "width": WIDTH, "heads": HEADS, "ffn_mult": 1 if name == "mlp" else 4,
            "norm": norm, "norm_type": "layernorm", "residual": True, "residual_scale": 1.0, "init": init}


@pytest.mark.parametrize(
    "name, task", [("transformer", CHARS), ("mlp", ROWS)], ids=["transformer", "mlp"]
)
@pytest.mark.parametrize(
    "init, norm", [("pytorch", "pre"), ("xavier", "post"), ("small", "pre"), ("deepnorm", "deepnorm")]
)
def test_no_two_blocks_share_initial_weights(name: str, task: TaskSpec, init: str, norm: str) -> None:
    torch.manual_seed(0)
    model = models.build(model_config(name, init, norm), task)
    matrices = [{key: p for key, p in block.named_parameters() if p.dim() == 2} for block in model.blocks]
    assert matrices[0], "a block without weight matrices"
    for first, second in itertools.combinations(range(len(matrices)), 2):
        for key in matrices[first]:
            assert not torch.equal(matrices[first][key], matrices[second][key]), (
                f"init={init}: blocks {first} and {second} start with the same {key}"
            )
    # Within one fused qkv matrix, q, k and v differ too (deepnorm initialises each third on its own).
    for block in model.blocks:
        if hasattr(block, "attn"):
            q, k, v = block.attn.qkv.weight.chunk(3)
            assert not (torch.equal(q, k) or torch.equal(k, v))


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_attention_only_block_is_its_equation(norm: str) -> None:
    """model.ffn_mult=0: one attention sublayer, x = N(x + attn(x)) or x + attn(N(x)), and nothing else."""
    torch.manual_seed(0)
    block = TransformerBlock(BlockSpec(width=WIDTH, depth=1, norm=norm), HEADS, ffn_mult=0, causal=False)
    randomise(block)
    assert {name.split(".")[0] for name, _ in block.named_parameters()} == {"attn", "norm1"}
    x = torch.randn(BATCH, TOKENS, WIDTH)
    expected = block.norm1(x + block.attn(x)) if norm == "post" else x + block.attn(block.norm1(x))
    torch.testing.assert_close(block(x), expected)


def test_attention_only_run_records_attention_params_and_probes(train_cli, cli, tmp_path) -> None:
    run = train_cli("model.ffn_mult=0", "residual=false")
    assert run.exit_code == 0, run.stderr
    grad_norms = pd.read_csv(run.dir / "grad_norms.csv")
    inside = set(grad_norms.loc[grad_norms.layer.notna(), "param"])
    assert inside == {"attn.qkv.weight", "attn.qkv.bias", "attn.out.weight", "attn.out.bias",
                      "norm1.weight", "norm1.bias"}
    layers = pd.read_csv(run.dir / "layers.csv")
    assert layers.rank_residual.notna().all() and set(layers.layer) == {0, 1}
    refused = cli("train", "model=mlp", "task=digits", "model.ffn_mult=0", f"hydra.run.dir={tmp_path}/mlp")
    assert refused.exit_code == 2 and "model.ffn_mult=0" in refused.stderr
    assert not (tmp_path / "mlp").exists()

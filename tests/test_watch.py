"""resbench.watch on a model that is not resbench's: a nanoGPT-style GPT written here, checked against autograd."""

from __future__ import annotations

import copy
import json
import math

import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import resbench

VOCAB, WIDTH, HEADS, SEQ, BATCH, DEPTH = 11, 16, 2, 6, 3, 3


class Block(nn.Module):
    """nanoGPT's Block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.attn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(), nn.Linear(4 * WIDTH, WIDTH))

    def forward(self, x):
        mask = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool), diagonal=1)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer = nn.ModuleDict({"wte": nn.Embedding(VOCAB, WIDTH), "wpe": nn.Embedding(SEQ, WIDTH),
                                          "h": nn.ModuleList(Block() for _ in range(DEPTH)), "ln_f": nn.LayerNorm(WIDTH)})
        self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)

    def forward(self, idx, hidden=None):
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1]))
        for block in self.transformer.h:
            x = block(x)
            if hidden is not None:
                if x.requires_grad:  # a frozen bottom's outputs have no gradient
                    x.retain_grad()
                hidden.append(x)
        return self.lm_head(self.transformer.ln_f(x))


def loss_of(model, x, y, hidden=None):
    return F.cross_entropy(model(x, hidden).reshape(-1, VOCAB), y.reshape(-1))


def batches(n: int):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randint(VOCAB, (BATCH, SEQ), generator=generator), torch.randint(VOCAB, (BATCH, SEQ), generator=generator))
            for _ in range(n)]


def direct_measures(model: GPT, x, y) -> dict:
    """Per-parameter, per-block and global gradient norms, hidden RMS and act grad norm by plain autograd.
    A parameter without a gradient (frozen) has None, and so has a block none of whose parameters has one."""
    hidden: list[torch.Tensor] = []
    loss = loss_of(model, x, y, hidden)
    loss.backward()
    grads = {name: float(param.grad.norm()) for name, param in model.named_parameters() if param.grad is not None}

    def norm_of(names):
        found = [grads[name] for name in names if name in grads]
        return math.sqrt(sum(value**2 for value in found)) if found else None

    names = [name for name, _ in model.named_parameters()]
    return {
        "loss": float(loss.detach()), "grads": {name: grads.get(name) for name in names},
        "blocks": [norm_of([n for n in names if n.startswith(f"transformer.h.{i}.")]) for i in range(DEPTH)],
        "global": norm_of(names),
        "hidden_rms": [float(h.detach().float().pow(2).mean().sqrt()) for h in hidden],  # fp32, also under autocast
        "act_grad_norm": [float(h.grad.float().flatten(1).norm(dim=1).sum()) if h.grad is not None else None
                          for h in hidden],
    }


def test_watch_writes_a_resbench_run_whose_numbers_are_autograd_s(tmp_path):
    torch.manual_seed(0)
    model = GPT()
    reference = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = batches(5)
    expected = direct_measures(reference, *data[0])  # step 0: the gradient at init, on batch 0
    with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "run", log_every=2,
                        config={"norm": "pre"}) as w:
        for x, y in data:
            w.step(loss_of(model, x, y), optimizer)
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps_done"] == 5
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["step"].tolist() == [0, 2, 4]  # logged steps only
    assert metrics.loc[0, "loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert metrics.loc[0, "grad_norm"] == pytest.approx(expected["global"], rel=1e-5)
    assert metrics.loc[0, "lr"] == pytest.approx(1e-2)

    grads = pd.read_csv(run / "grad_norms.csv")
    init = grads[grads["step"] == 0]
    for _, row in init.iterrows():
        full = row["param"] if pd.isna(row["layer"]) else f"transformer.h.{int(row['layer'])}.{row['param']}"
        assert row["grad_norm"] == pytest.approx(expected["grads"][full], rel=1e-5, abs=1e-9), full
    assert set(init.loc[init["layer"].isna(), "param"]) == {"transformer.wte.weight", "transformer.wpe.weight",
                                                           "transformer.ln_f.weight", "transformer.ln_f.bias",
                                                           "lm_head.weight"}
    assert "attn.in_proj_weight" in set(init["param"]) and "mlp.0.weight" in set(init["param"])

    layers = pd.read_csv(run / "layers.csv")
    assert list(layers.columns[:2]) == ["step", "layer"] and sorted(layers["step"].unique()) == [0, 2, 4]
    at_init = layers[layers["step"] == 0].sort_values("layer")
    assert at_init["grad_norm"].tolist() == pytest.approx(expected["blocks"], rel=1e-5)
    assert at_init["hidden_rms"].tolist() == pytest.approx(expected["hidden_rms"], rel=1e-5)
    assert at_init["act_grad_norm"].tolist() == pytest.approx(expected["act_grad_norm"], rel=1e-5)
    assert ((at_init["rank_residual"] > 0) & (at_init["rank_residual"] <= 1)).all()
    assert (at_init["update_ratio"] > 0).all()
    assert summary["init_grad_ratio"] == pytest.approx(expected["blocks"][-1] / expected["blocks"][0], rel=1e-5)


def test_update_ratio_is_the_relative_change_of_each_block(tmp_path):
    torch.manual_seed(0)
    model = GPT()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = batches(1)[0]
    before = [torch.cat([p.detach().flatten().clone() for p in block.parameters()]) for block in model.transformer.h]
    w = resbench.watch(model, blocks=list(model.transformer.h), run_dir=tmp_path / "run", log_every=1)
    loss_of(model, x, y).backward()
    w.after_backward()
    with w.tracking_update(optimizer):
        optimizer.step()
    w.close()
    after = [torch.cat([p.detach().flatten() for p in block.parameters()]) for block in model.transformer.h]
    ratios = [float((a - b).norm() / b.norm()) for a, b in zip(after, before)]
    layers = pd.read_csv(tmp_path / "run" / "layers.csv")
    assert layers["update_ratio"].tolist() == pytest.approx(ratios, rel=1e-4)


def test_hooks_exist_only_on_logged_steps(tmp_path):
    model = GPT()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    hooked = []
    with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "run", log_every=3) as w:
        for x, y in batches(6):
            hooked.append(any(block._forward_hooks for block in model.transformer.h))
            w.step(loss_of(model, x, y), optimizer)
    assert hooked == [True, False, False, True, False, False]
    assert not any(block._forward_hooks for block in model.transformer.h)


def test_report_reads_a_watched_run(tmp_path, cli):
    model = GPT()
    optimizer = torch.optim.Adam(model.parameters())
    with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "run", log_every=1) as w:
        for x, y in batches(3):
            w.step(loss_of(model, x, y), optimizer)
    result = cli("report", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "report" / "grad_norm_init.png").is_file()


def test_bad_blocks_are_one_clear_error(tmp_path):
    model = GPT()
    with pytest.raises(ValueError, match="no such submodule; the model's top-level modules: transformer, lm_head"):
        resbench.watch(model, blocks="transformer.blocks", run_dir=tmp_path / "a")
    with pytest.raises(ValueError, match="not a submodule"):
        resbench.watch(model, blocks=[nn.Linear(2, 2)], run_dir=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_failure_inside_the_loop_is_recorded(tmp_path):
    model = GPT()
    with pytest.raises(RuntimeError), resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "run") as w:
        w.step(loss_of(model, *batches(1)[0]), torch.optim.SGD(model.parameters(), lr=0.1))
        raise RuntimeError("user code broke")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "user code broke" in summary["error"]

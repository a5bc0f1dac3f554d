"""resbench.watch under the training patterns people use around their own loop: a GradScaler, gradient
accumulation, clipping, frozen blocks, an evaluation between steps, activation checkpointing, torch.compile,
bf16 autocast. Every recorded number is checked against plain autograd on an unwatched copy of the model."""

from __future__ import annotations

import copy
import math
import warnings

import pandas as pd
import pytest
import torch
from test_watch import BATCH, DEPTH, GPT, VOCAB, batches, direct_measures, loss_of
from torch.utils.checkpoint import checkpoint

import resbench


def read(run):
    return {name: pd.read_csv(run / f"{name}.csv") for name in ("metrics", "layers", "grad_norms")}


def at_step(frame: pd.DataFrame, step: int) -> pd.DataFrame:
    return frame[frame["step"] == step].sort_values("layer")


def assert_matches(files: dict, expected: dict, step: int = 0, rel: float = 1e-5, prefix: str = "") -> None:
    """The step's rows equal the hand computation (NaN where the hand computation has None). `prefix`: what
    the watched module puts before the GPT's own parameter names (a LightningModule's attribute)."""
    layers = at_step(files["layers"], step)
    for column, key in (("grad_norm", "blocks"), ("hidden_rms", "hidden_rms"), ("act_grad_norm", "act_grad_norm")):
        assert layers[column].tolist() == pytest.approx(
            [math.nan if value is None else value for value in expected[key]], rel=rel, nan_ok=True), column
    metrics = files["metrics"].set_index("step")
    assert metrics.loc[step, "grad_norm"] == pytest.approx(expected["global"], rel=rel)
    grads = files["grad_norms"][files["grad_norms"]["step"] == step]
    for _, row in grads.iterrows():
        full = row["param"].removeprefix(prefix) if pd.isna(row["layer"]) else f"transformer.h.{int(row['layer'])}.{row['param']}"
        want = expected["grads"][full]
        assert row["grad_norm"] == pytest.approx(math.nan if want is None else want, rel=rel, abs=1e-9,
                                                 nan_ok=True), full


# ---- a GradScaler ---------------------------------------------------------------------------------------------


def test_a_grad_scaler_s_scale_is_divided_out_of_every_gradient(tmp_path):
    torch.manual_seed(0)
    model = GPT()
    expected = direct_measures(copy.deepcopy(model), *batches(1)[0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "step", log_every=1) as w:
        w.step(loss_of(model, *batches(1)[0]), optimizer, scaler=scaler)
    assert_matches(read(tmp_path / "step"), expected)

    # Own backward: the PyTorch AMP recipe with clipping, after_backward told of the scaler.
    torch.manual_seed(0)
    model = GPT()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "own", log_every=1) as w:
        loss = loss_of(model, *batches(1)[0])
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        w.after_backward(loss, scaler=scaler)  # after unscale_ as well as before it
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        with w.tracking_update(optimizer):
            scaler.step(optimizer)
            scaler.update()
    assert_matches(read(tmp_path / "own"), expected)


# ---- frozen parameters -------------------------------------------------------------------------------------


def freeze_bottom(model: GPT) -> None:
    """The fine-tuning pattern: embeddings and the first block frozen."""
    for module in (model.transformer.wte, model.transformer.wpe, model.transformer.h[0]):
        module.requires_grad_(False)


def test_a_frozen_bottom_keeps_the_probes_that_need_no_gradient(tmp_path):
    torch.manual_seed(0)
    model = GPT()
    freeze_bottom(model)
    reference = copy.deepcopy(model)
    expected = direct_measures(reference, *batches(1)[0])
    frozen = {name for name, param in reference.named_parameters() if not param.requires_grad}
    assert expected["blocks"][0] is None and expected["act_grad_norm"][0] is None
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "run", log_every=1) as w:
            for x, y in batches(3):
                w.step(loss_of(model, x, y), optimizer)
    frozen_warnings = [str(warning.message) for warning in caught if "frozen" in str(warning.message)]
    assert len(frozen_warnings) == 1 and "\n" not in frozen_warnings[0], frozen_warnings
    assert f"{len(frozen)} of {len(list(model.parameters()))} parameter tensors" in frozen_warnings[0]
    files = read(tmp_path / "run")
    assert_matches(files, expected)
    layers = files["layers"]
    assert layers["hidden_rms"].notna().all() and layers["rank_residual"].notna().all()
    assert layers.loc[layers["layer"] == 0, "update_ratio"].eq(0).all()  # a frozen block does not move
    with open(tmp_path / "run" / "grad_norms.csv") as handle:
        assert "nan" not in handle.read().lower()  # empty cells, never NaN


def test_a_wholly_frozen_block_stack_still_measures_its_activations(tmp_path):
    """Linear probing: only the head trains; no gradient reaches any block."""
    torch.manual_seed(0)
    model = GPT()
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("lm_head"))
    expected = direct_measures(copy.deepcopy(model), *batches(1)[0])
    optimizer = torch.optim.SGD(model.lm_head.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "run", log_every=1) as w:
            w.step(loss_of(model, *batches(1)[0]), optimizer)
    layers = at_step(read(tmp_path / "run")["layers"], 0)
    assert layers["hidden_rms"].tolist() == pytest.approx(expected["hidden_rms"], rel=1e-5)
    assert layers["grad_norm"].isna().all() and layers["act_grad_norm"].isna().all()


# ---- accumulation, clipping, evaluation between steps -------------------------------------------------------


def accumulated_measures(model: GPT, micro_batches: list) -> dict:
    """Hand computation of one step accumulated over micro-batches, each loss divided by their number."""
    k = len(micro_batches)
    hidden_rms = [0.0] * DEPTH
    act = [0.0] * DEPTH
    loss_sum = 0.0
    for x, y in micro_batches:
        hidden: list[torch.Tensor] = []
        loss = loss_of(model, x, y, hidden) / k
        loss.backward()
        loss_sum += float(loss.detach())
        for i, h in enumerate(hidden):
            hidden_rms[i] += float(h.detach().float().pow(2).mean().sqrt()) / k
            act[i] += float(h.grad.flatten(1).norm(dim=1).sum())
    grads = {name: float(param.grad.norm()) for name, param in model.named_parameters()}
    blocks = [math.sqrt(sum(v**2 for n, v in grads.items() if n.startswith(f"transformer.h.{i}."))) for i in range(DEPTH)]
    return {"grads": grads, "blocks": blocks, "global": math.sqrt(sum(v**2 for v in grads.values())),
            "hidden_rms": hidden_rms, "act_grad_norm": act, "loss": loss_sum}


def test_accumulation_records_the_accumulated_gradient_once_per_optimizer_step(tmp_path):
    torch.manual_seed(0)
    model = GPT()
    data = batches(6)
    expected = accumulated_measures(copy.deepcopy(model), data[:3])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "run", log_every=1) as w:
        for start in (0, 3):
            loss_sum = 0.0
            for x, y in data[start : start + 3]:
                loss = loss_of(model, x, y) / 3
                loss.backward()
                loss_sum += loss.detach()
            w.after_backward(loss_sum)
            with w.tracking_update(optimizer):
                optimizer.step()
            optimizer.zero_grad()
    files = read(tmp_path / "run")
    assert files["metrics"]["step"].tolist() == [0, 1]  # one row per optimizer step
    assert files["metrics"].loc[0, "loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert_matches(files, expected)


@pytest.mark.parametrize("order", ["after_backward, then clip", "clip, then after_backward"])
def test_norms_are_of_the_gradient_before_clipping(tmp_path, order):
    torch.manual_seed(0)
    model = GPT()
    expected = direct_measures(copy.deepcopy(model), *batches(1)[0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "run", log_every=1) as w:
        loss = loss_of(model, *batches(1)[0])
        loss.backward()
        if order.startswith("after_backward"):
            w.after_backward(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
        if order.startswith("clip"):
            w.after_backward(loss)
        with w.tracking_update(optimizer):
            optimizer.step()
    assert expected["global"] > 1e-2  # the clip did cut
    assert_matches(read(tmp_path / "run"), expected)


def test_an_evaluation_between_steps_is_neither_recorded_nor_harmful(tmp_path):
    torch.manual_seed(0)
    model = GPT()
    data = batches(3)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    loss_of(reference, *data[0]).backward()
    reference_optimizer.step()
    reference_optimizer.zero_grad()
    expected = direct_measures(reference, *data[1])  # step 1's gradient
    evaluation = torch.randint(VOCAB, (2 * BATCH, 4))  # another batch size and length
    with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "run", log_every=1) as w:
        for x, y in data[:2]:
            model.eval()
            with torch.no_grad():
                model(evaluation)  # between steps, with the next step's hooks armed
            model.train()
            w.step(loss_of(model, x, y), optimizer)
    assert_matches(read(tmp_path / "run"), expected, step=1)


def average_at_backward_end(model: GPT, factor: float) -> None:
    """DDP's pattern: as a parameter's gradient is accumulated, an engine callback is queued that rewrites every
    gradient when the backward ends (DDP's reducer averages them over the processes there)."""
    def queue_average(param):
        torch.autograd.Variable._execution_engine.queue_callback(
            lambda: [p.grad.mul_(factor) for p in model.parameters() if p.grad is not None])
    next(model.parameters()).register_post_accumulate_grad_hook(queue_average)


def test_gradients_are_read_after_the_callbacks_of_the_backward_as_ddp_s_averaging(tmp_path):
    torch.manual_seed(0)
    model = GPT()
    expected = direct_measures(copy.deepcopy(model), *batches(1)[0])
    halved = {**expected, "grads": {name: value / 2 for name, value in expected["grads"].items()},
              "blocks": [value / 2 for value in expected["blocks"]], "global": expected["global"] / 2}
    average_at_backward_end(model, 0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "run", log_every=1) as w:
        w.step(loss_of(model, *batches(1)[0]), optimizer)
    assert_matches(read(tmp_path / "run"), halved)  # the gradient the optimizer applies, not the one before


def test_an_encoder_and_a_decoder_of_different_lengths_are_watched_as_one_list_of_blocks(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Transformer(d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=3,
                                 dim_feedforward=32, dropout=0.0, batch_first=True)
    src, tgt = torch.randn(3, 5, 16), torch.randn(3, 7, 16)  # the encoder's blocks (3, 5, 16), the decoder's (3, 7, 16)
    reference = copy.deepcopy(model)
    outputs = []

    def keep(module, args, output):
        output.retain_grad()
        outputs.append(output)

    for block in [*reference.encoder.layers, *reference.decoder.layers]:
        block.register_forward_hook(keep)
    reference(src, tgt).pow(2).mean().backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with resbench.watch(model, blocks=[*model.encoder.layers, *model.decoder.layers], run_dir=tmp_path / "run",
                        log_every=1) as w:
        w.step(model(src, tgt).pow(2).mean(), optimizer)
    layers = at_step(read(tmp_path / "run")["layers"], 0)
    assert layers["hidden_rms"].tolist() == pytest.approx(
        [float(h.detach().pow(2).mean().sqrt()) for h in outputs], rel=1e-5)
    assert layers["act_grad_norm"].tolist() == pytest.approx(
        [float(h.grad.flatten(1).norm(dim=1).sum()) for h in outputs], rel=1e-5)


# ---- activation checkpointing, torch.compile, bf16 -----------------------------------------------------------


class CheckpointedGPT(GPT):
    def __init__(self, use_reentrant: bool):
        super().__init__()
        self.use_reentrant = use_reentrant

    def forward(self, idx, hidden=None):
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1]))
        for block in self.transformer.h:
            x = checkpoint(block, x, use_reentrant=self.use_reentrant)
        return self.lm_head(self.transformer.ln_f(x))


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_activation_checkpointing_records_each_block_once(tmp_path, use_reentrant):
    torch.manual_seed(0)
    plain = GPT()
    model = CheckpointedGPT(use_reentrant)
    model.load_state_dict(plain.state_dict())
    data = batches(2)
    expected = accumulated_measures(copy.deepcopy(plain), data)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "run", log_every=1) as w:
        for x, y in data:  # two micro-batches: passes must not run into each other
            (loss_of(model, x, y) / 2).backward()
        w.after_backward()
        with w.tracking_update(optimizer):
            optimizer.step()
    assert_matches(read(tmp_path / "run"), expected)


def test_a_compiled_model_is_one_clear_error_and_compiled_blocks_work(tmp_path):
    advice = r"torch\.compile.*b\.forward = torch\.compile\(b\.forward\)"
    torch.manual_seed(0)
    model = GPT()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    compiled = torch.compile(model, backend="aot_eager")
    with pytest.raises(ValueError, match=advice):
        resbench.watch(compiled, blocks="transformer.h", run_dir=tmp_path / "wrapper")
    loss_of(compiled, *batches(1)[0]).backward()  # compiled before the hooks exist: they never run
    with pytest.raises(RuntimeError, match=advice) as raised, \
            resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "whole", log_every=1) as w:
        w.step(loss_of(compiled, *batches(1)[0]), optimizer)
    assert "\n" not in str(raised.value)
    assert '"status": "failed"' in (tmp_path / "whole" / "summary.json").read_text()

    torch.manual_seed(0)
    model = GPT()
    expected = direct_measures(copy.deepcopy(model), *batches(1)[0])
    for block in model.transformer.h:  # what the error advises: hooks run around each compiled forward
        block.forward = torch.compile(block.forward, backend="aot_eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "blocks", log_every=1) as w:
        w.step(loss_of(model, *batches(1)[0]), optimizer)
    assert_matches(read(tmp_path / "blocks"), expected)


def test_bf16_autocast_is_measured_in_fp32_from_the_bf16_tensors(tmp_path):
    torch.manual_seed(0)
    model = GPT()
    reference = copy.deepcopy(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = direct_measures(reference, *batches(1)[0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with resbench.watch(model, blocks="transformer.h", run_dir=tmp_path / "run", log_every=1) as w:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_of(model, *batches(1)[0])
        w.step(loss, optimizer)
    assert_matches(read(tmp_path / "run"), expected, rel=1e-4)

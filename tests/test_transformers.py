"""resbench.integrations.transformers with the real transformers: a tiny GPT-2 built from its config (no
download, token ids fed directly), a few Trainer steps on CPU with gradient accumulation and clipping, the
recorded files against autograd on an unwatched copy."""

from __future__ import annotations

import copy
import json
import math

import pandas as pd
import pytest
import torch
import transformers  # the test extra installs it

from resbench.integrations.transformers import ResbenchCallback, find_blocks

VOCAB, SEQ, BATCH, DEPTH, ACCUMULATE = 11, 6, 3, 3, 2


def tiny_gpt2() -> transformers.GPT2LMHeadModel:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=16, n_layer=DEPTH, n_head=2,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(config)


def examples(n: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(VOCAB, (n, SEQ), generator=generator)
    return [{"input_ids": row, "labels": row} for row in ids]


def hand_measures(model, micro_batches: list[dict]) -> dict:
    """One optimizer step's numbers by plain autograd: each micro-batch's mean loss over their number."""
    outputs: list[torch.Tensor] = []
    hooks = [block.register_forward_hook(lambda m, a, out: outputs.append(out[0] if isinstance(out, tuple) else out))
             for block in model.transformer.h]
    k = len(micro_batches)
    hidden_rms, act, loss_sum = [0.0] * DEPTH, [0.0] * DEPTH, 0.0
    for batch in micro_batches:
        outputs.clear()
        loss = model(**batch).loss / k
        for h in outputs:
            h.retain_grad()
        loss.backward()
        loss_sum += float(loss.detach())
        for i, h in enumerate(outputs):
            hidden_rms[i] += float(h.detach().pow(2).mean().sqrt()) / k
            act[i] += float(h.grad.flatten(1).norm(dim=1).sum())
    for hook in hooks:
        hook.remove()
    grads = {name: float(p.grad.norm()) for name, p in model.named_parameters()}
    blocks = [math.sqrt(sum(v**2 for n, v in grads.items() if n.startswith(f"transformer.h.{i}.")))
              for i in range(DEPTH)]
    return {"loss": loss_sum, "grads": grads, "blocks": blocks, "hidden_rms": hidden_rms, "act_grad_norm": act,
            "global": math.sqrt(sum(v**2 for v in grads.values()))}


class InOrderTrainer(transformers.Trainer):
    """The Trainer, reading the data in order (so the hand computation knows each step's batches), with each
    micro-batch's loss its own mean (the loss-kwargs path would normalise by the whole step's token count)."""

    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)


def test_the_callback_records_the_accumulated_unclipped_gradient_once_per_optimizer_step(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # nothing written outside tmp_path
    model = tiny_gpt2()
    data = examples(BATCH * ACCUMULATE * 3)
    collate = transformers.default_data_collator
    first_step = [collate(data[i : i + BATCH]) for i in range(0, BATCH * ACCUMULATE, BATCH)]
    expected = hand_measures(copy.deepcopy(model), first_step)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), report_to=[], max_steps=3, per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUMULATE, max_grad_norm=1e-3, learning_rate=0.1, lr_scheduler_type="constant",
        save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=True, remove_unused_columns=False,
        dataloader_num_workers=0, seed=0)
    callback = ResbenchCallback(run_dir=tmp_path / "run", log_every=2)
    trainer = InOrderTrainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.model_accepts_loss_kwargs = False  # each micro-batch's loss its own mean (see InOrderTrainer)
    with callback:
        trainer.train()
    run = tmp_path / "run"
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert "blocks: transformer.h" in (run / "config.yaml").read_text()  # found by the model's kind
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["step"].tolist() == [0, 2]
    assert metrics.loc[0, "loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert metrics.loc[0, "grad_norm"] == pytest.approx(expected["global"], rel=1e-5)
    assert expected["global"] > 1e-2  # the clip cut: the norms are of the gradient before it
    layers = pd.read_csv(run / "layers.csv")
    at_init = layers[layers["step"] == 0].sort_values("layer")
    for column in ("grad_norm", "hidden_rms", "act_grad_norm"):
        key = "blocks" if column == "grad_norm" else column
        assert at_init[column].tolist() == pytest.approx(expected[key], rel=1e-5), column
    grads = pd.read_csv(run / "grad_norms.csv")
    for _, row in grads[grads["step"] == 0].iterrows():
        full = row["param"] if pd.isna(row["layer"]) else f"transformer.h.{int(row['layer'])}.{row['param']}"
        assert row["grad_norm"] == pytest.approx(expected["grads"][full], rel=1e-5, abs=1e-9), full


def test_blocks_are_found_by_the_model_s_kind_or_named_in_one_line():
    bert = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=11, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16))
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=11, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16))
    assert find_blocks(tiny_gpt2()) == "transformer.h"
    assert find_blocks(bert) == "bert.encoder.layer"
    assert find_blocks(llama) == "model.layers"
    with pytest.raises(ValueError, match=r"^blocks=None: Sequential keeps no blocks .* ModuleLists: 1 \(2\)$"):
        find_blocks(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ModuleList([torch.nn.Linear(2, 2)] * 2)))

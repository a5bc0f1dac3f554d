"""resbench.integrations.lightning with the real Lightning: a LightningModule around the nanoGPT-style GPT of
test_watch, a few steps on CPU, the recorded files against autograd on an unwatched copy."""

from __future__ import annotations

import copy
import json
import warnings

import lightning.pytorch as pl  # the test extra installs it
import pandas as pd
import pytest
import torch
from test_watch import GPT, batches, direct_measures, loss_of
from test_watch_patterns import accumulated_measures, assert_matches, read

from resbench.integrations.lightning import ResbenchCallback


class LitGPT(pl.LightningModule):
    def __init__(self, model: GPT, fail_at: int | None = None):
        super().__init__()
        self.model, self.fail_at = model, fail_at

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at:
            raise RuntimeError("broke at step 2")
        return loss_of(self.model, *batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(module, tmp_path, callback, steps: int, **options) -> None:
    data = batches(steps * options.get("accumulate_grad_batches", 1))
    options.setdefault("logger", False)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=[callback], **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on num_workers for a list of tensors
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_the_callback_records_the_accumulated_unclipped_gradient_of_each_optimizer_step(tmp_path, precision):
    torch.manual_seed(0)
    model = GPT()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        expected = accumulated_measures(copy.deepcopy(model), batches(2))
    callback = ResbenchCallback(blocks="model.transformer.h", run_dir=tmp_path / "run", log_every=2)
    fit(LitGPT(model), tmp_path, callback, steps=3, accumulate_grad_batches=2, gradient_clip_val=1e-3,
        precision=precision)
    files = read(tmp_path / "run")
    assert files["metrics"]["step"].tolist() == [0, 2]  # Lightning's global_step, once per optimizer step
    assert files["metrics"].loc[0, "loss"] == pytest.approx(expected["loss"], rel=1e-3)
    assert_matches(files, expected, rel=1e-5 if precision == "32-true" else 1e-3, prefix="model.")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps_done"] == 3
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "integration: lightning" in config and f"precision: {precision}" in config
    assert json.loads((tmp_path / "run" / "provenance.json").read_text())["torch_version"] == torch.__version__


def test_a_failure_is_recorded_and_scalars_reach_lightning_s_logger(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    torch.manual_seed(0)
    model = GPT()
    expected = direct_measures(copy.deepcopy(model), *batches(1)[0])
    callback = ResbenchCallback(blocks=list(model.transformer.h), run_dir=tmp_path / "run", log_every=1,
                                log_to_lightning=True)
    with pytest.raises(RuntimeError, match="broke at step 2"):
        fit(LitGPT(model, fail_at=2), tmp_path, callback, steps=4,
            logger=CSVLogger(tmp_path / "lightning_logs", name="", version=0))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "broke at step 2" in summary["error"]
    files = read(tmp_path / "run")
    assert files["metrics"]["step"].tolist() == [0, 1]
    assert_matches(files, expected, prefix="model.")
    logged = pd.read_csv(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")
    step0 = logged[logged["step"] == 0]
    assert step0["resbench/grad_norm/block_01"].dropna().tolist() == pytest.approx([expected["blocks"][1]], rel=1e-5)
    assert step0["resbench/hidden_rms/block_00"].dropna().tolist() == pytest.approx([expected["hidden_rms"][0]],
                                                                                   rel=1e-5)


@pytest.mark.parametrize("exception", [KeyboardInterrupt(), pytest.param("sigterm", id="SIGTERMException")])
def test_ctrl_c_and_sigterm_end_the_run_interrupted(tmp_path, exception):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from resbench.watching import Watch

    model = GPT()
    callback = ResbenchCallback(blocks="transformer.h", run_dir=tmp_path / "run")
    callback.watch = Watch(model, "transformer.h", tmp_path / "run")  # as on_train_start makes it
    callback.on_exception(None, None, SIGTERMException() if exception == "sigterm" else exception)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "interrupted"
    assert not any(block._forward_hooks for block in model.transformer.h)


class TwoOptimizers(pl.LightningModule):
    """Manual optimization, two optimizers stepped per batch: Lightning counts two steps per batch."""

    def __init__(self, model: GPT):
        super().__init__()
        self.model, self.automatic_optimization = model, False

    def training_step(self, batch, batch_idx):
        for optimizer in self.optimizers():
            optimizer.zero_grad()
            self.manual_backward(loss_of(self.model, *batch))
            optimizer.step()

    def configure_optimizers(self):
        return [torch.optim.SGD(self.model.transformer.parameters(), lr=0.1),
                torch.optim.SGD(self.model.lm_head.parameters(), lr=0.1)]


def test_steps_are_lightning_s_global_step_with_two_optimizers(tmp_path):
    torch.manual_seed(0)
    callback = ResbenchCallback(blocks="model.transformer.h", run_dir=tmp_path / "run", log_every=1)
    fit(TwoOptimizers(GPT()), tmp_path, callback, steps=8)
    assert read(tmp_path / "run")["metrics"]["step"].tolist() == [0, 2, 4, 6]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps_done"] == 8

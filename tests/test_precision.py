"""precision=fp32|bf16|fp16 on CPU: autocast runs train close to fp32, fp16's logged norms are of the unscaled
gradient, and a precision the device cannot run is bad input."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

from resbench import precision
from resbench.precision import PRECISIONS, pick_precision

SHORT = ["train.steps=20", "log_every=5", "train.eval_every=10"]
PROBES = ["grad_norm", "hidden_rms", "act_grad_norm", "update_ratio", "rank_residual"]


def summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


@pytest.fixture
def fp32_run(train_cli):
    run = train_cli(*SHORT, name="fp32")
    assert run.exit_code == 0, run.stderr
    return run.dir


def test_bf16_on_cpu_trains_close_to_fp32_with_every_probe(train_cli, fp32_run) -> None:
    run = train_cli(*SHORT, "precision=bf16", name="bf16")
    assert run.exit_code == 0, run.stderr
    done, reference = summary(run.dir), summary(fp32_run)
    assert done["status"] == "completed" and done["precision"] == "bf16"
    assert math.isfinite(done["final_loss"]) and math.isfinite(done["final_val_loss"])
    assert done["final_loss"] == pytest.approx(reference["final_loss"], rel=0.02)
    assert done["final_loss"] != reference["final_loss"], "bf16 autocast changes the arithmetic"
    layers = pd.read_csv(run.dir / "layers.csv")
    assert layers[PROBES].notna().all().all() and set(layers.step) == {0, 5, 10, 15, 19}


def test_fp16_logs_the_unscaled_gradient(train_cli, fp32_run) -> None:
    """The scaler multiplies the loss by 2**16 before backward: logged norms scaled by it would be ~65536x."""
    run = train_cli(*SHORT, "precision=fp16", name="fp16")
    assert run.exit_code == 0, run.stderr
    assert summary(run.dir)["status"] == "completed"
    for name, columns in (("grad_norms.csv", ["grad_norm"]), ("layers.csv", ["grad_norm", "act_grad_norm"])):
        at_init = [pd.read_csv(d / name).query("step == 0")[columns].to_numpy() for d in (run.dir, fp32_run)]
        assert at_init[0] == pytest.approx(at_init[1], rel=0.02), name


def test_fp16_unscales_every_step_0_batch_and_every_init_draw(train_cli) -> None:
    """Under init_batches=3 every one of step 0's batches (not only the first) and every init draw is measured
    with the scaled loss and unscaled: the rows match fp32's (a pass left scaled would be ~65536x, one
    divided once too often ~1/65536x of its share)."""
    runs = [train_cli(*SHORT, "init_batches=3", "init_draws=3", f"precision={name}", name=name)
            for name in ("fp32", "fp16")]
    assert all(run.exit_code == 0 for run in runs), [run.stderr for run in runs]
    for name, columns in (("layers.csv", ["grad_norm", "act_grad_norm"]),
                          ("init_layers.csv", ["grad_norm", "act_grad_norm"]), ("init_grad_norms.csv", ["grad_norm"])):
        frames = [pd.read_csv(run.dir / name) for run in runs]
        at_init = [frame.query("step == 0") if "step" in frame else frame for frame in frames]
        assert at_init[1][columns].to_numpy() == pytest.approx(at_init[0][columns].to_numpy(), rel=0.02), name


def test_an_unknown_precision_is_bad_input(train_cli) -> None:
    run = train_cli("precision=fp8")
    assert run.exit_code == 2 and "valid choices: fp32, bf16, fp16" in run.stderr, run.stderr
    assert not run.dir.exists()


def test_a_precision_the_device_cannot_run_is_bad_input(train_cli, monkeypatch) -> None:
    monkeypatch.setitem(PRECISIONS, "bf16", dataclasses.replace(PRECISIONS["bf16"], runs_on=lambda device: False))
    run = train_cli("precision=bf16", "device=cpu")
    assert run.exit_code == 2, run.stderr
    assert "precision=bf16 cannot run on cpu" in run.stderr and "valid choices there: fp32, fp16" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not run.dir.exists()


def test_bf16_needs_a_gpu_that_has_it(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "an old GPU")
    with pytest.raises(ValueError, match="precision=bf16 cannot run on cuda"):
        pick_precision("bf16", torch.device("cuda"))
    assert pick_precision("bf16", torch.device("cpu")) is precision.PRECISIONS["bf16"]

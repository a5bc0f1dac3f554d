"""Tasks: digits (bundled with scikit-learn, no network), reverse (synthetic), kinds, and model/task pairs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_TEXT

from resbench import models, tasks
from resbench.tasks import digits, reverse


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# ---- digits -----------------------------------------------------------------------------------------------


def test_digits_loads_without_network(no_network) -> None:
    digits.load_images.cache_clear()
    task = tasks.build({"name": "digits", "val_fraction": 0.2}, batch_size=32)
    n_train, n_val = len(task.train_y), len(task.val_batches()[0][1])
    assert n_train + n_val == 1797
    assert task.train_x.shape == (n_train, 8, 8) and task.train_x.dtype == torch.float32
    assert task.spec == tasks.TaskSpec(n_outputs=10, seq_len=8, in_features=8, causal=False, per_token=False,
                                       accuracy=True)


def test_digits_split_is_fixed_and_stratified() -> None:
    _, labels = digits.load_images()
    train_idx, val_idx = digits.stratified_split(labels, 0.2, digits.SPLIT_SEED)
    again = digits.stratified_split(labels, 0.2, digits.SPLIT_SEED)
    assert np.array_equal(train_idx, again[0]) and np.array_equal(val_idx, again[1])
    assert not set(train_idx) & set(val_idx) and len(train_idx) + len(val_idx) == len(labels)
    for label in range(10):
        share = np.sum(labels[val_idx] == label) / np.sum(labels == label)
        assert share == pytest.approx(0.2, abs=0.01)


def test_digits_standardised_with_train_statistics() -> None:
    task = digits.Digits(val_fraction=0.2)
    pixels = task.train_x.reshape(-1, 64)
    varying = pixels.std(0) > 0
    torch.testing.assert_close(pixels.mean(0), torch.zeros(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(pixels.std(0, unbiased=False)[varying], torch.ones(int(varying.sum())), atol=1e-4, rtol=0)
    val_x, val_y = task.val_batches()[0]
    assert val_x.shape == (len(val_y), 8, 8) and task.val_batches() is task.val_batches()


def test_digits_batches_follow_the_generator() -> None:
    task = digits.Digits(val_fraction=0.2)
    first = task.batch(torch.Generator().manual_seed(3), 16)
    second = task.batch(torch.Generator().manual_seed(3), 16)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert first[0].shape == (16, 8, 8) and first[1].shape == (16,)


def test_importing_resbench_does_not_import_sklearn() -> None:
    code = ("import sys, resbench.cli, resbench.tasks, resbench.models, resbench.validate; "
            "sys.exit('sklearn' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=120).returncode == 0


# ---- reverse ----------------------------------------------------------------------------------------------


def test_reverse_targets_are_the_reversed_inputs() -> None:
    task = tasks.build({"name": "reverse", "vocab": 5, "seq_len": 7, "val_batches": 2}, batch_size=3)
    x, y = task.batch(torch.Generator().manual_seed(0), 4)
    assert x.shape == y.shape == (4, 7) and int(x.max()) < 5
    assert torch.equal(y, torch.stack([row.flip(0) for row in x]))
    assert len(task.val_batches()) == 2 and task.val_batches()[0][0].shape == (3, 7)
    again = reverse.Reverse(5, 7, 2, 3).val_batches()
    assert all(torch.equal(a[0], b[0]) for a, b in zip(task.val_batches(), again))
    assert task.spec == tasks.TaskSpec(n_outputs=5, seq_len=7, vocab_size=5, causal=False, per_token=True,
                                       accuracy=True, pairs=True)


def test_sort_targets_are_the_sorted_inputs() -> None:
    task = tasks.build({"name": "sort", "vocab": 5, "seq_len": 7, "val_batches": 1}, batch_size=3)
    x, y = task.batch(torch.Generator().manual_seed(0), 4)
    assert x.shape == y.shape == (4, 7)
    for row, target in zip(x.tolist(), y.tolist()):
        assert target == sorted(row)
    assert task.spec.kind == tasks.KINDS["sort"] and task.spec.pairs


# ---- kinds and model/task pairs ---------------------------------------------------------------------------


def test_declared_kinds_match_the_built_tasks(text_file: Path) -> None:
    # mnist and mnist1d are checked against their kinds in test_mnist.py (they need files / a generator)
    configs = {
        "chars": {"name": "chars", "path": str(text_file), "seq_len": 8, "val_fraction": 0.2, "val_batches": 1},
        "digits": {"name": "digits", "val_fraction": 0.2},
        "reverse": {"name": "reverse", "vocab": 4, "seq_len": 6, "val_batches": 1},
        "sort": {"name": "sort", "vocab": 4, "seq_len": 6, "val_batches": 1},
    }
    assert set(configs) | {"mnist", "mnist1d"} == set(tasks.TASKS) == set(tasks.KINDS)
    for name, config in configs.items():
        assert tasks.build(config, batch_size=2).spec.kind == tasks.KINDS[name], name


@pytest.mark.parametrize("model, task, fits", [
    ("transformer", "chars", True), ("transformer", "digits", True), ("transformer", "reverse", True),
    ("mlp", "chars", False), ("mlp", "digits", True), ("mlp", "reverse", False),
    ("seq2seq", "reverse", True), ("seq2seq", "sort", True), ("seq2seq", "chars", False),
    ("seq2seq", "digits", False), ("seq2seq", "mnist1d", False), ("transformer", "sort", True),
])
def test_which_models_fit_which_tasks(model: str, task: str, fits: bool) -> None:
    assert models.fits(model, tasks.KINDS[task]) == fits


@pytest.mark.parametrize("task", ["chars", "reverse"])
def test_cli_refuses_a_pair_that_does_not_fit(cli, tmp_path: Path, task: str) -> None:
    run_dir = tmp_path / "run"
    result = cli("train", "--quiet", "model=mlp", f"task={task}", f"hydra.run.dir={run_dir}")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert f"model=mlp does not fit task={task}" in lines[0] and "tasks that fit model=mlp: digits" in lines[0]
    assert not run_dir.exists()


# ---- classification runs through the trainer and the CLI ------------------------------------------------


def read_run(run_dir: Path) -> tuple[pd.DataFrame, dict]:
    return pd.read_csv(run_dir / "metrics.csv"), json.loads((run_dir / "summary.json").read_text())


def test_reverse_run_logs_val_acc(train_cli) -> None:
    run = train_cli("task=reverse", "task.val_batches=1")
    assert run.exit_code == 0, run.output
    metrics, summary = read_run(run.dir)
    assert list(metrics.columns)[-1] == "val_acc"
    evaluated = metrics.dropna(subset=["val_loss"])
    assert len(evaluated) and evaluated["val_acc"].between(0, 1).all()
    assert summary["final_val_acc"] == pytest.approx(evaluated["val_acc"].iloc[-1])


def test_language_modelling_run_has_no_val_acc(train_cli, text_file: Path) -> None:
    run = train_cli(f"task.path={text_file}")
    assert run.exit_code == 0, run.output
    metrics, summary = read_run(run.dir)
    assert "val_acc" not in metrics.columns and summary["final_val_acc"] is None


def test_transformer_reads_digit_rows(cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = cli("train", "--quiet", "task=digits", "depth=1", "width=16", "heads=2", "train.steps=3",
                 "train.eval_every=2", "threads=1", f"hydra.run.dir={run_dir}")
    assert result.exit_code == 0, result.output
    metrics, summary = read_run(run_dir)
    assert summary["status"] == "completed" and 0 <= summary["final_val_acc"] <= 1
    assert metrics["val_acc"].notna().sum() == 2


def test_chars_corpus_is_read_and_encoded_once_per_file_version(text_file: Path, monkeypatch) -> None:
    from resbench.tasks import chars

    reads = []
    real_read = chars.read_corpus
    monkeypatch.setattr(chars, "read_corpus", lambda path: reads.append(path) or real_read(path))
    chars._encoded_corpus.cache_clear()
    cfg = {"name": "chars", "path": str(text_file), "seq_len": 8, "val_fraction": 0.2, "val_batches": 1}
    first, second = tasks.build(cfg, 4), tasks.build({**cfg, "seq_len": 4}, 2)
    assert reads == [str(text_file)]
    decoded = "".join(first.vocab[i] for i in torch.cat([first.train_data, first.val_data]).tolist())
    assert decoded == TINY_TEXT
    text_file.write_text(TINY_TEXT + "zz", encoding="utf-8")  # an edited corpus is read anew
    edited = tasks.build(cfg, 4)
    assert len(reads) == 2 and len(edited.train_data) + len(edited.val_data) == len(TINY_TEXT) + 2
    assert second.vocab == first.vocab

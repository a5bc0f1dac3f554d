"""MNIST-like images: IDX files (plain and gzip) written here, and MNIST-1D from its package's generator."""

from __future__ import annotations

import gzip
import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from resbench import models, tasks
from resbench.tasks import TaskError, mnist, mnist1d

ROWS = COLS = 28
N_TRAIN, N_TEST = 40, 10


def idx_bytes(array: np.ndarray) -> bytes:
    """LeCun et al.'s IDX format, written out: magic 0x0000 08 <ndims>, big-endian int32 sizes, the bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(directory: Path, compress: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """The four files of a tiny MNIST in `directory`; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, ROWS, COLS)),
        "train-labels-idx1-ubyte": np.arange(N_TRAIN) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, ROWS, COLS)),
        "t10k-labels-idx1-ubyte": np.arange(N_TEST) % 10,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array)
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return arrays


def mnist_cfg(path: Path, train_size: int | None = None) -> dict:
    return {"name": "mnist", "path": str(path), "train_size": train_size}


@pytest.fixture(autouse=True)
def fresh_cache():
    mnist.load.cache_clear()
    yield
    mnist.load.cache_clear()


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_mnist_reads_idx_files_and_standardises_with_train_statistics(tmp_path: Path, compress: bool) -> None:
    arrays = write_idx_dir(tmp_path, compress)
    task = tasks.build(mnist_cfg(tmp_path), batch_size=4)
    train = arrays["train-images-idx3-ubyte"].astype(np.float32)
    mean, std = train.mean(0), train.std(0)
    torch.testing.assert_close(task.train_x, torch.from_numpy((train - mean) / std))
    assert task.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    (val_x, val_y), = task.val_batches()  # the official test split, whole
    test = arrays["t10k-images-idx3-ubyte"].astype(np.float32)
    torch.testing.assert_close(val_x, torch.from_numpy((test - mean) / std))
    assert val_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert task.spec == tasks.TaskSpec(n_outputs=10, seq_len=28, in_features=28, per_token=False, accuracy=True)
    assert task.spec.kind == tasks.KINDS["mnist"]


def test_mnist_models_read_784_inputs_or_28_row_tokens(tmp_path: Path) -> None:
    write_idx_dir(tmp_path, compress=False)
    spec = tasks.build(mnist_cfg(tmp_path), batch_size=4).spec
    base = {"depth": 1, "width": 16, "heads": 2, "norm": "pre", "norm_type": "layernorm", "residual": "true",
            "residual_scale": 1.0, "init": "auto"}
    mlp = models.build({**base, "name": "mlp", "ffn_mult": 1}, spec)
    assert mlp.inp.in_features == 784
    transformer = models.build({**base, "name": "transformer", "ffn_mult": 4}, spec)
    assert transformer.tok_emb.in_features == 28 and transformer.pos_emb.num_embeddings == 28
    x = torch.zeros(3, 28, 28)
    assert mlp(x).shape == transformer(x).shape == (3, 10)


def test_mnist_train_size_is_a_fixed_stratified_subset(tmp_path: Path) -> None:
    write_idx_dir(tmp_path, compress=True)
    first = tasks.build(mnist_cfg(tmp_path, train_size=20), batch_size=4)
    again = tasks.build(mnist_cfg(tmp_path, train_size=20), batch_size=4)
    assert len(first.train_y) == 20 and torch.equal(first.train_x, again.train_x)
    assert np.bincount(first.train_y.numpy(), minlength=10).tolist() == [2] * 10
    assert len(first.val_batches()[0][1]) == N_TEST  # validation stays the whole test split
    with pytest.raises(TaskError, match="train_size=41 exceeds the 40 training images"):
        tasks.build(mnist_cfg(tmp_path, train_size=41), batch_size=4)


def corrupt(directory: Path, name: str, data: bytes) -> None:
    (directory / name).write_bytes(data)


@pytest.mark.parametrize("name, make, message", [
    ("train-images-idx3-ubyte", lambda a: b"\x00\x00\x08\x01" + a[4:], "not an IDX file of 3-d unsigned bytes"),
    ("train-labels-idx1-ubyte", lambda a: a[:-3], "holds 37 bytes of data; its header 40 says 40"),
    ("t10k-labels-idx1-ubyte", lambda a: a[:2], "magic number nothing"),
])
def test_mnist_bad_files_are_clear_errors(tmp_path: Path, name: str, make, message: str) -> None:
    write_idx_dir(tmp_path, compress=False)
    corrupt(tmp_path, name, make((tmp_path / name).read_bytes()))
    with pytest.raises(TaskError, match=message) as caught:
        tasks.build(mnist_cfg(tmp_path), batch_size=4)
    assert name in str(caught.value)


def test_mnist_images_and_labels_must_agree(tmp_path: Path) -> None:
    write_idx_dir(tmp_path, compress=False)
    corrupt(tmp_path, "train-labels-idx1-ubyte", idx_bytes(np.zeros(39)))
    with pytest.raises(TaskError, match="40 images but train-labels-idx1-ubyte 39 labels"):
        tasks.build(mnist_cfg(tmp_path), batch_size=4)
    write_idx_dir(tmp_path, compress=False)
    corrupt(tmp_path, "t10k-images-idx3-ubyte", idx_bytes(np.zeros((N_TEST, 28, 27))))
    mnist.load.cache_clear()
    with pytest.raises(TaskError, match="training images are 28×28 but test images 28×27"):
        tasks.build(mnist_cfg(tmp_path), batch_size=4)


@pytest.mark.parametrize("given", ["none", "empty_dir", "three_files"])
def test_cli_without_usable_path_names_the_files_and_the_other_tasks(cli, tmp_path: Path, given: str) -> None:
    data = tmp_path / "data"
    overrides = []
    if given != "none":
        data.mkdir()
        overrides = [f"task.path={data}"]
    if given == "three_files":
        write_idx_dir(data, compress=True)
        (data / "t10k-labels-idx1-ubyte.gz").unlink()
    run_dir = tmp_path / "run"
    result = cli("train", "--quiet", "model=mlp", "task=mnist", *overrides, f"hydra.run.dir={run_dir}")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte", "task=digits", "task=mnist1d"):
        assert name in lines[0]
    if given == "three_files":
        assert "lacks t10k-labels-idx1-ubyte" in lines[0]
    assert not run_dir.exists()


def test_mlp_trains_on_mnist_files_through_the_cli(cli, tmp_path: Path) -> None:
    write_idx_dir(tmp_path / "data", compress=True)
    run_dir = tmp_path / "run"
    result = cli("train", "--quiet", "model=mlp", "task=mnist", f"task.path={tmp_path / 'data'}", "depth=1",
                 "width=16", "train.steps=3", "train.batch_size=4", "train.eval_every=2", "threads=1",
                 f"hydra.run.dir={run_dir}")
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and 0 <= summary["final_val_acc"] <= 1
    # 784·16 + 16 (input projection) + 2·(16·16 + 16) (one block) + 16·10 + 10 (head) + 4·16 (pre-LN norms)
    assert summary["n_params"] == 784 * 16 + 16 + 2 * (16 * 16 + 16) + 16 * 10 + 10 + 4 * 16


# ---- MNIST-1D --------------------------------------------------------------------------------------------


def test_mnist1d_is_the_packages_generator_and_leaves_global_rngs_alone() -> None:
    from mnist1d.data import make_dataset

    np.random.seed(7)
    random.seed(7)
    numpy_before, python_before = np.random.get_state(), random.getstate()
    mnist1d.generate.cache_clear()
    task = tasks.build({"name": "mnist1d"}, batch_size=4)
    numpy_after, python_after = np.random.get_state(), random.getstate()
    assert python_after == python_before
    assert all(np.array_equal(a, b) for a, b in zip(numpy_after, numpy_before))
    expected = make_dataset()  # default arguments, generated again here
    assert task.train_x.shape == (4000, 40, 1) and task.val_batches()[0][0].shape == (1000, 40, 1)
    np.testing.assert_allclose(task.train_x[..., 0].numpy(), expected["x"], rtol=1e-6)
    assert task.train_y.tolist() == expected["y"].tolist()
    assert task.val_batches()[0][1].tolist() == expected["y_test"].tolist()
    assert task.spec == tasks.TaskSpec(n_outputs=10, seq_len=40, in_features=1, per_token=False, accuracy=True)
    assert task.spec.kind == tasks.KINDS["mnist1d"]

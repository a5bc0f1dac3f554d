"""MNIST-1D (Greydanus & Kobak, ICML 2024): 1-D signals of 40 points in 10 classes, built on the spot.

The `mnist1d` package's own procedural generator (`make_dataset` with its default arguments: 4,000
training and 1,000 test signals) makes the data; its download path is never used. The generator
seeds numpy's and Python's global RNGs; their state is put back afterwards, so building the task does
not change what any other code draws. The Transformer reads a signal as 40 tokens of one feature,
the MLP as 40 inputs. The generator already standardises the signals (mean 0, std 1 over the data set).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch

from .base import Batch, Footprint, TaskError, TaskKind, TaskSpec

KIND = TaskKind(token_ids=False, per_token=False)  # 40 one-feature tokens in, one class per signal
CLASSES = 10


@contextmanager
def global_rngs_kept() -> Iterator[None]:
    """Run a block that seeds or draws from numpy's and Python's global RNGs, then restore their state."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


@lru_cache(maxsize=1)
def generate() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train signals (N, 40) float32, train labels (N,) int64, test signals, test labels), default arguments."""
    try:
        from mnist1d.data import make_dataset  # imports matplotlib and scipy: only when the task is built
    except ImportError as err:
        raise TaskError(f"task=mnist1d needs the mnist1d package (pip install mnist1d): {err}") from None
    with global_rngs_kept():
        data = make_dataset()
    return (data["x"].astype(np.float32), data["y"].astype(np.int64),
            data["x_test"].astype(np.float32), data["y_test"].astype(np.int64))


class Mnist1d:
    def __init__(self) -> None:
        train_x, train_y, test_x, test_y = generate()
        # (N, 40) → (N, 40, 1): 40 tokens of one feature each
        self.train_x, self.train_y = torch.from_numpy(train_x)[..., None], torch.from_numpy(train_y)
        self.val = [(torch.from_numpy(test_x)[..., None], torch.from_numpy(test_y))]  # the whole split
        self.spec = TaskSpec(n_outputs=CLASSES, seq_len=train_x.shape[1], in_features=1, causal=False,
                             per_token=False, accuracy=True)

    def batch(self, generator: torch.Generator, batch_size: int) -> Batch:
        index = torch.randint(len(self.train_y), (batch_size,), generator=generator)
        return self.train_x[index], self.train_y[index]  # (B, 40, 1), (B,)

    def val_batches(self) -> list[Batch]:
        return self.val


SIGNALS, POINTS = 5_000, 40  # make_dataset's default: 4,000 training and 1,000 test signals of 40 points


def footprint(cfg: dict, batch_size: int) -> Footprint:
    """A batch: B signals and labels; the data set with its labels."""
    return Footprint(tokens=POINTS, batch_values=batch_size * (POINTS + 1), data_values=SIGNALS * (POINTS + 1))


def build(cfg: dict, batch_size: int) -> Mnist1d:
    return Mnist1d()

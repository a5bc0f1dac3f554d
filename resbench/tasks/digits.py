"""Handwritten digits: the 1,797 8×8 images that ship with scikit-learn (no download), 10 classes.

An image is a sequence of its 8 rows of 8 pixels: the Transformer reads one row per token, the MLP
flattens the rows into 64 inputs. Pixels are standardised with the training split's statistics.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .base import Batch, Footprint, TaskError, TaskKind, TaskSpec

KIND = TaskKind(token_ids=False, per_token=False)  # pixel rows in, one class per image
SPLIT_SEED = 0  # the train/val split is the same for every run and seed
ROWS, PIXELS, CLASSES = 8, 8, 10


@lru_cache(maxsize=1)
def load_images() -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 8, 8) float32 in 0..16, labels (N,) int64), read from scikit-learn's bundled file."""
    from sklearn.datasets import load_digits  # heavy import: only when the task is built

    digits = load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int64)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices): round(val_fraction · n_c) of every class c goes to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = round(val_fraction * len(members))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of about `size` examples, every class in its share of `labels` (a fixed subset)."""
    train, _ = stratified_split(labels, 1 - size / len(labels), seed)
    return train


def standardise(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every pixel standardised with the training images' mean and std (constant pixels keep std 1)."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    return tuple((images - mean) / std for images in (train, *others))


class Digits:
    def __init__(self, val_fraction: float):
        images, labels = load_images()
        train_idx, val_idx = stratified_split(labels, val_fraction, SPLIT_SEED)
        if len(train_idx) == 0 or len(val_idx) == 0:
            raise TaskError(f"task.val_fraction={val_fraction} leaves an empty train or validation split")
        _, standardised = standardise(images[train_idx], images)
        inputs = torch.from_numpy(standardised)  # (N, 8, 8): 8 tokens of 8 features
        targets = torch.from_numpy(labels)  # (N,)
        self.train_x, self.train_y = inputs[train_idx], targets[train_idx]
        self.val = [(inputs[val_idx], targets[val_idx])]  # the whole split, one batch
        self.spec = TaskSpec(n_outputs=CLASSES, seq_len=ROWS, in_features=PIXELS, causal=False,
                             per_token=False, accuracy=True)

    def batch(self, generator: torch.Generator, batch_size: int) -> Batch:
        index = torch.randint(len(self.train_y), (batch_size,), generator=generator)
        return self.train_x[index], self.train_y[index]  # (B, 8, 8), (B,)

    def val_batches(self) -> list[Batch]:
        return self.val


DIGITS = 1797  # images in scikit-learn's digits


def footprint(cfg: dict, batch_size: int) -> Footprint:
    """A batch: B images of ROWS × PIXELS and their labels; the data set, standardised, with its labels."""
    image = ROWS * PIXELS + 1
    return Footprint(tokens=ROWS, batch_values=batch_size * image, data_values=2 * DIGITS * image)


def build(cfg: dict, batch_size: int) -> Digits:
    return Digits(cfg["val_fraction"])

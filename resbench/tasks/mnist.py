"""MNIST-like images from the standard IDX files a user has on disk (MNIST, Fashion-MNIST, KMNIST): no download.

`task.path=DIR` holds the four files of LeCun et al.'s format, each plain or gzipped. An image is a
sequence of its rows: the Transformer reads 28 row tokens of 28 pixels, the MLP flattens them into 784
inputs. Training uses the official training split (or a fixed stratified subset of `task.train_size`
images), validation the official test split. Pixels are standardised with the training images' statistics.
"""

from __future__ import annotations

import gzip
import io
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .. import paths
from .base import Batch, Footprint, TaskError, TaskKind, TaskSpec
from .digits import standardise, stratified_subset

KIND = TaskKind(token_ids=False, per_token=False)  # pixel rows in, one class per image
SUBSET_SEED = 0  # the train_size subset is the same for every run and seed
VAL_CHUNK = 1000  # test images per validation batch (bounds the memory of one evaluation)

# split → (images file, labels file), named as in LeCun et al.'s distribution
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801  # unsigned bytes, 3 dims / 1 dim
HEADER_INT = np.dtype(">u4")  # the header's integers are 32-bit big-endian
MAX_IDX_BYTES = 1024 * 2**20  # an IDX file (unpacked) larger than this is refused (MNIST's largest: 47 MiB)


def missing_files_message(directory: object, missing: list[str]) -> str:
    names = ", ".join(name for pair in FILES.values() for name in pair)
    where = f"task.path={directory}" if directory is not None else "task.path is not set"
    return (f"task=mnist needs task.path=DIR holding {names} (each may end in .gz); {where}"
            + (f" lacks {', '.join(missing)}" if directory is not None and missing else "")
            + "; without these files use task=digits or task=mnist1d")


def locate(directory: str | None) -> dict[str, Path]:
    """file name → the path holding it (plain or .gz) in `directory`; TaskError naming what is missing."""
    if directory is None:
        raise TaskError(missing_files_message(directory, []))
    try:
        paths.checked(Path(directory).expanduser(), "task.path")
    except paths.PathError as err:
        raise TaskError(str(err)) from None
    if not Path(directory).expanduser().is_dir():
        raise TaskError(missing_files_message(directory, []))
    root = Path(directory).expanduser()
    found, missing = {}, []
    for name in (name for pair in FILES.values() for name in pair):
        candidates = [root / name, root / f"{name}.gz"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        raise TaskError(missing_files_message(directory, missing))
    return found


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file's array of unsigned bytes, its shape from the header; TaskError if the file is not that."""
    try:
        data = paths.read_bytes(paths.input_file(path, "task.path", MAX_IDX_BYTES), "task.path", MAX_IDX_BYTES)
        if path.suffix == ".gz":
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as unzipped:
                data = unzipped.read(MAX_IDX_BYTES + 1)  # never more: a small .gz can unpack to terabytes
    except paths.PathError as err:
        raise TaskError(str(err)) from None
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise TaskError(f"task.path: cannot read {path}: {err}") from None
    if len(data) > MAX_IDX_BYTES:
        raise TaskError(f"task.path: {path} unpacks to more than {MAX_IDX_BYTES / 2**20:,.0f} MiB; files up to "
                        f"{MAX_IDX_BYTES / 2**20:,.0f} MiB are read")
    n_dims = magic & 0xFF
    header = 4 * (1 + n_dims)
    if len(data) < header or int(np.frombuffer(data, HEADER_INT, 1)[0]) != magic:
        found = f"0x{int(np.frombuffer(data, HEADER_INT, 1)[0]):08x}" if len(data) >= 4 else "nothing"
        raise TaskError(f"task.path: {path} is not an IDX file of {n_dims}-d unsigned bytes "
                        f"(magic number {found}, expected 0x{magic:08x})")
    shape = tuple(int(d) for d in np.frombuffer(data, HEADER_INT, n_dims, offset=4))
    expected = math.prod(shape)  # Python's integers: a hostile header cannot wrap around 64 bits
    if len(data) - header != expected:
        raise TaskError(f"task.path: {path} holds {len(data) - header} bytes of data; its header "
                        f"{'×'.join(map(str, shape))} says {expected}")
    return np.frombuffer(data, np.uint8, expected, offset=header).reshape(shape)


def read_split(files: dict[str, Path], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, rows, cols) uint8, labels (N,) uint8) of one split, checked against each other."""
    images_name, labels_name = FILES[split]
    images = read_idx(files[images_name], IMAGES_MAGIC)
    labels = read_idx(files[labels_name], LABELS_MAGIC)
    if len(images) != len(labels) or len(images) == 0:
        raise TaskError(f"task.path: {images_name} holds {len(images)} images but {labels_name} "
                        f"{len(labels)} labels")
    return images, labels


@lru_cache(maxsize=2)
def load(directory: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train images, labels), (test images, labels)) read from `directory` (cached: a sweep reads once)."""
    files = locate(directory)
    train, test = read_split(files, "train"), read_split(files, "test")
    if train[0].shape[1:] != test[0].shape[1:]:
        raise TaskError(f"task.path: training images are {'×'.join(map(str, train[0].shape[1:]))} "
                        f"but test images {'×'.join(map(str, test[0].shape[1:]))}")
    return train, test


class Mnist:
    def __init__(self, path: str | None, train_size: int | None):
        if path is None:
            raise TaskError(missing_files_message(None, []))
        (train_images, train_labels), (test_images, test_labels) = load(str(path))
        if train_size is not None:
            if train_size > len(train_labels):
                raise TaskError(f"task.train_size={train_size} exceeds the {len(train_labels)} training images")
            keep = stratified_subset(train_labels, train_size, SUBSET_SEED)
            train_images, train_labels = train_images[keep], train_labels[keep]
        train_x, test_x = standardise(train_images.astype(np.float32), test_images.astype(np.float32))
        self.train_x, self.train_y = torch.from_numpy(train_x), torch.from_numpy(train_labels.astype(np.int64))
        val_x, val_y = torch.from_numpy(test_x), torch.from_numpy(test_labels.astype(np.int64))
        self.val = list(zip(val_x.split(VAL_CHUNK), val_y.split(VAL_CHUNK)))
        n_classes = int(max(train_labels.max(), test_labels.max())) + 1
        rows, cols = train_images.shape[1:]
        self.spec = TaskSpec(n_outputs=n_classes, seq_len=rows, in_features=cols, causal=False,
                             per_token=False, accuracy=True)

    def batch(self, generator: torch.Generator, batch_size: int) -> Batch:
        index = torch.randint(len(self.train_y), (batch_size,), generator=generator)
        return self.train_x[index], self.train_y[index]  # (B, 28, 28), (B,)

    def val_batches(self) -> list[Batch]:
        return self.val


MNIST_IMAGES, MNIST_ROWS = 70_000, 28  # MNIST's (and Fashion-MNIST's, KMNIST's) training and test images


def footprint(cfg: dict, batch_size: int) -> Footprint:
    """A batch: B images and labels; the data set as read (bytes) and standardised (float32), as MNIST's
    size (the files may hold other images: these are read only when the task is built)."""
    image = MNIST_ROWS * MNIST_ROWS + 1
    return Footprint(tokens=MNIST_ROWS, batch_values=batch_size * image, data_values=2 * MNIST_IMAGES * image)


def build(cfg: dict, batch_size: int) -> Mnist:
    return Mnist(cfg.get("path"), cfg.get("train_size"))

"""Character-level language modelling on any UTF-8 text; by default CPython's own documentation."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .. import paths
from .base import Batch, Footprint, TaskError, TaskKind, TaskSpec

KIND = TaskKind(token_ids=True, per_token=True)  # next-character prediction at every position

VAL_SEED = 1234  # the validation batches are the same for every run and seed


def default_corpus() -> str:
    """The documentation topics that ship inside CPython (~465k characters): no download needed."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


MAX_TEXT_BYTES = 256 * 2**20  # a larger corpus is refused: its ids (8 bytes a character) and the copies the
# encoding makes would take several GiB


def read_corpus(path: str | None) -> str:
    """The text at `path` (a regular UTF-8 file of at most MAX_TEXT_BYTES: never a device, a FIFO or a
    folder), or the built-in corpus."""
    if path is None:
        return default_corpus()
    try:
        file = paths.input_file(Path(path).expanduser(), "task.path", MAX_TEXT_BYTES)
        data = paths.read_bytes(file, "task.path", MAX_TEXT_BYTES)
    except paths.PathError as err:
        raise TaskError(str(err)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TaskError(f"task.path: not UTF-8 text: {path} (byte {err.start})") from None


def encode(text: str) -> tuple[torch.Tensor, list[str]]:
    """Text → (token ids, vocabulary), vectorised: one id per Unicode code point."""
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    vocab_codes, ids = np.unique(codepoints, return_inverse=True)
    return torch.from_numpy(ids.astype(np.int64)), [chr(c) for c in vocab_codes]


def file_stamp(path: str | None) -> tuple[int, int] | None:
    """(mtime_ns, size) of the corpus file, so an edited file is read anew; None for the default corpus."""
    if path is None:
        return None
    try:
        stat = Path(path).expanduser().stat()
    except OSError:
        return None  # read_corpus names the problem
    return stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=4)
def _encoded_corpus(path: str | None, stamp: tuple[int, int] | None) -> tuple[torch.Tensor, list[str]]:
    return encode(read_corpus(path))


def encoded_corpus(path: str | None) -> tuple[torch.Tensor, list[str]]:
    """The corpus as (token ids, vocabulary), read and encoded once per process and file version: every
    run of a sweep worker (and the check before a run) shares it. The ids are only ever read."""
    return _encoded_corpus(path, file_stamp(path))


class Chars:
    def __init__(self, path: str | None, seq_len: int, val_fraction: float, val_batches: int,
                 batch_size: int):
        data, self.vocab = encoded_corpus(path)
        n_val = int(len(data) * val_fraction)
        self.train_data, self.val_data = data[: len(data) - n_val], data[len(data) - n_val :]
        for name, part in (("training", self.train_data), ("validation", self.val_data)):
            if len(part) <= seq_len + 1:
                source = "task.path" if path else "the built-in corpus"  # the key to change is seq_len
                raise TaskError(
                    f"task.seq_len={seq_len} is too long: the {name} part of {source} has {len(part)} "
                    f"characters; need more than task.seq_len + 1 = {seq_len + 1}"
                )
        self.seq_len = seq_len
        self.spec = TaskSpec(n_outputs=len(self.vocab), seq_len=seq_len, vocab_size=len(self.vocab),
                             causal=True, per_token=True)
        generator = torch.Generator().manual_seed(VAL_SEED)
        self._val = [self._sample(self.val_data, generator, batch_size) for _ in range(val_batches)]

    def _sample(self, data: torch.Tensor, generator: torch.Generator, batch_size: int) -> Batch:
        starts = torch.randint(len(data) - self.seq_len - 1, (batch_size,), generator=generator)
        offsets = starts[:, None] + torch.arange(self.seq_len + 1)  # (B, T+1)
        window = data[offsets]
        return window[:, :-1], window[:, 1:]  # inputs and next characters, (B, T) each

    def batch(self, generator: torch.Generator, batch_size: int) -> Batch:
        return self._sample(self.train_data, generator, batch_size)

    def val_batches(self) -> list[Batch]:
        return self._val


def footprint(cfg: dict, batch_size: int) -> Footprint:
    """A batch: B windows of seq_len + 1 ids, their offsets, inputs and targets; the validation batches
    likewise (the corpus itself, at most MAX_TEXT_BYTES, is left out: its size is the file's)."""
    window = batch_size * (cfg["seq_len"] + 1)
    return Footprint(tokens=cfg["seq_len"], batch_values=3 * window, data_values=cfg["val_batches"] * 3 * window)


def build(cfg: dict, batch_size: int) -> Chars:
    return Chars(cfg["path"], cfg["seq_len"], cfg["val_fraction"], cfg["val_batches"], batch_size)

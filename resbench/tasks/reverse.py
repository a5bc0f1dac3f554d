"""Sequence reversal: random token sequences in, the same tokens back to front out. No data at all.

Every target position depends on one distant input position, so the task needs (non-causal)
attention across the whole sequence; per-token cross-entropy, and val_acc per token.
"""

from __future__ import annotations

import torch

from .base import Batch, Footprint, TaskKind, TaskSpec

KIND = TaskKind(token_ids=True, per_token=True, pairs=True)  # token ids in, one target per token
VAL_SEED = 1234  # the validation batches are the same for every run and seed


class Reverse:
    def __init__(self, vocab: int, seq_len: int, val_batches: int, batch_size: int):
        self.vocab, self.seq_len = vocab, seq_len
        self.spec = TaskSpec(n_outputs=vocab, seq_len=seq_len, vocab_size=vocab, causal=False,
                             per_token=True, accuracy=True, pairs=True)
        generator = torch.Generator().manual_seed(VAL_SEED)
        self._val = [self.batch(generator, batch_size) for _ in range(val_batches)]

    def batch(self, generator: torch.Generator, batch_size: int) -> Batch:
        tokens = torch.randint(self.vocab, (batch_size, self.seq_len), generator=generator)  # (B, T)
        return tokens, tokens.flip(1)

    def val_batches(self) -> list[Batch]:
        return self._val


def footprint(cfg: dict, batch_size: int) -> Footprint:
    """A batch: B sources and targets of seq_len tokens, and the teacher-forced input of both; the
    validation batches likewise."""
    batch = 4 * batch_size * cfg["seq_len"]
    return Footprint(tokens=2 * cfg["seq_len"], batch_values=batch, data_values=cfg["val_batches"] * batch)


def build(cfg: dict, batch_size: int) -> Reverse:
    return Reverse(cfg["vocab"], cfg["seq_len"], cfg["val_batches"], batch_size)

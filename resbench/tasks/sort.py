"""Sorting: random token sequences in, the same tokens in ascending order out. No data at all.

Each target position depends on every input token (its rank among all of them), so the task needs
attention over the whole source: under model=seq2seq, the encoder. Per-token cross-entropy and val_acc.
"""

from __future__ import annotations

import torch

from .base import Batch, TaskKind
from .reverse import Reverse
from .reverse import footprint as reverse_footprint

KIND = TaskKind(token_ids=True, per_token=True, pairs=True)  # token ids in, one target per token


class Sort(Reverse):
    """Reverse's sequences and validation set, with sorted targets."""

    def batch(self, generator: torch.Generator, batch_size: int) -> Batch:
        tokens = torch.randint(self.vocab, (batch_size, self.seq_len), generator=generator)  # (B, T)
        return tokens, tokens.sort(dim=1).values


def build(cfg: dict, batch_size: int) -> Sort:
    return Sort(cfg["vocab"], cfg["seq_len"], cfg["val_batches"], batch_size)


footprint = reverse_footprint  # sorting's batches have reversal's shapes

"""Teacher forcing: a pairs task (source → target, e.g. reverse, sort) as an encoder–decoder reads it.

Each input row becomes the source tokens followed by the decoder's input, a start token and the target
shifted right by one, so the decoder predicts target token t from the source and targets < t. The
trainer, its probes and its evaluation see an ordinary (inputs, targets) batch.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .base import Batch, Task


class TeacherForced:
    def __init__(self, task: Task):
        spec = task.spec
        self.task = task
        self.start = spec.vocab_size  # one id past the task's vocabulary
        # targets as long as the source (reverse, sort): seq_len tokens on each side
        self.spec = replace(spec, vocab_size=spec.vocab_size + 1, source_len=spec.seq_len)
        self._val = [self.forced(batch) for batch in task.val_batches()]

    def forced(self, batch: Batch) -> Batch:
        source, target = batch  # (B, S), (B, T)
        start = torch.full_like(target[:, :1], self.start)
        return torch.cat([source, start, target[:, :-1]], dim=1), target  # (B, S + T), (B, T)

    def batch(self, generator: torch.Generator, batch_size: int) -> Batch:
        return self.forced(self.task.batch(generator, batch_size))

    def val_batches(self) -> list[Batch]:
        return self._val

"""What every task gives the trainer: a TaskSpec for the model builder, training batches, fixed val batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, targets)


class TaskError(ValueError):
    """A task cannot be built from its config (missing file, bad encoding, ...): bad input."""


@dataclass(frozen=True)
class TaskKind:
    """What a task feeds a model, known from the task's name alone (before any data is loaded), so
    that a model/task pair that cannot fit is refused before anything runs."""

    token_ids: bool  # inputs are integer token ids (else real-valued features per token)
    per_token: bool  # one target per token (else one label per example)
    pairs: bool = False  # a target sequence made from the whole source (an encoder–decoder can read it)

    def __str__(self) -> str:
        inputs = "token ids" if self.token_ids else "real-valued rows"
        targets = "one target per token" if self.per_token else "one label per example"
        return f"{inputs}, {targets}" + (", source/target pairs" if self.pairs else "")


@dataclass(frozen=True)
class TaskSpec:
    """Shapes a model needs to fit a task."""

    n_outputs: int  # classes (or vocabulary size for language modelling)
    seq_len: int  # tokens per example (rows of an image, characters, ...)
    vocab_size: int | None = None  # token-id inputs; None for continuous features
    in_features: int | None = None  # features per token when inputs are continuous
    causal: bool = False  # attention may only look back (language modelling)
    per_token: bool = True  # one target per token (else one label per example)
    accuracy: bool = False  # log val_acc
    pairs: bool = False  # targets are a sequence made from the whole source (reverse, sort)
    source_len: int | None = None  # teacher-forced pairs: the first source_len tokens of a row are the source

    @property
    def kind(self) -> TaskKind:
        return TaskKind(token_ids=self.vocab_size is not None, per_token=self.per_token, pairs=self.pairs)


@dataclass(frozen=True)
class Footprint:
    """What a run of a task holds in memory besides the model, known from the task's config alone (so
    that a run too large for this machine is refused before anything is built): the tokens each
    example feeds the model, and the numbers one training batch and the task's fixed data (data set,
    validation batches) hold."""

    tokens: int  # positions per example the model reads (rows of an image, characters, source + target)
    batch_values: int  # numbers one training batch holds (inputs, targets, the indices that drew them)
    data_values: int  # numbers held for the whole run: the data set and the validation batches


class Task(Protocol):
    spec: TaskSpec

    def batch(self, generator: torch.Generator, batch_size: int) -> Batch:
        """A random training batch drawn with `generator` (so the data order follows the seed)."""
        ...

    def val_batches(self) -> list[Batch]:
        """The fixed validation set, the same on every call."""
        ...

"""Transformer over token ids or feature rows: embeddings, `depth` blocks, (final norm), linear head."""

from __future__ import annotations

import torch
from torch import nn

from ..tasks.base import TaskSpec
from .blocks import BlockSpec, TransformerBlock
from .norms import make_norm
from .placements import FINAL_NORM


class Transformer(nn.Module):
    def __init__(self, spec: BlockSpec, task: TaskSpec, heads: int, ffn_mult: int = 4):
        super().__init__()
        if task.vocab_size is not None:
            self.tok_emb = nn.Embedding(task.vocab_size, spec.width)
        else:  # continuous tokens (e.g. the 8 pixels of one image row)
            self.tok_emb = nn.Linear(task.in_features, spec.width)
        self.pos_emb = nn.Embedding(task.seq_len, spec.width)
        self.blocks = nn.ModuleList(
            TransformerBlock(spec, heads, ffn_mult, task.causal) for _ in range(spec.depth)
        )
        self.norm_f = make_norm(spec.norm_type, spec.width) if spec.norm in FINAL_NORM else nn.Identity()
        self.head = nn.Linear(spec.width, task.n_outputs)
        self.per_token = task.per_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.tok_emb(x) + self.pos_emb(positions)  # (B, T, C)
        for block in self.blocks:
            h = block(h)
        h = self.norm_f(h)
        if not self.per_token:
            h = h.mean(dim=1)  # mean-pool the tokens for one label per example: (B, C)
        return self.head(h)  # (B, T, n_outputs) or (B, n_outputs)

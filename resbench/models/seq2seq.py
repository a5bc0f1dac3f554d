"""Encoder–decoder Transformer (Vaswani et al. 2017): a bidirectional encoder stack and a causal decoder
stack with cross-attention, every sublayer (self-attention, cross-attention, FFN) wrapped by the placement.

Inputs are teacher-forced pairs (see tasks/pairs.py): each row of `x` holds the source tokens, then the
decoder's input (a start token and the target shifted right by one). The output is one prediction per
target token. Under norm=deepnorm the skip scale α and the init gain β are the encoder–decoder constants
of Wang et al. 2022, Table 1, one pair per stack.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch
from torch import nn

from ..tasks.base import TaskSpec
from .blocks import BlockSpec, SelfAttention, TransformerBlock
from .norms import make_norm
from .placements import FINAL_NORM, PLACEMENTS, deepnorm_encoder_decoder


class CrossAttention(nn.Module):
    """Multi-head attention of the decoder's tokens (queries) over the encoder's output (keys, values)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)  # k and v stacked, as in nn.MultiheadAttention's in_proj
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        k, v = self.kv(memory).split(width, dim=-1)  # 2 × (B, S, C)
        q = self.q(x).view(batch, tokens, self.heads, -1).transpose(1, 2)  # (B, nh, T, hs)
        k, v = (t.view(batch, memory.shape[1], self.heads, -1).transpose(1, 2) for t in (k, v))  # (B, nh, S, hs)
        y = nn.functional.scaled_dot_product_attention(q, k, v)  # (B, nh, T, hs)
        return self.out(y.transpose(1, 2).reshape(batch, tokens, width))


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention over the encoder's output, FFN: three placed sublayers."""

    def __init__(self, spec: BlockSpec, heads: int, ffn_mult: int):
        super().__init__()
        self.place = PLACEMENTS[spec.norm]
        self.attn = SelfAttention(spec.width, heads, causal=True)
        self.cross = CrossAttention(spec.width, heads)
        self.ffn = spec.feed_forward(ffn_mult, nn.GELU())
        self.norm1, self.norm1_out, self.res1 = spec.sublayer()
        self.norm2, self.norm2_out, self.res2 = spec.sublayer()
        self.norm3, self.norm3_out, self.res3 = spec.sublayer()

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.place(x, self.attn, self.norm1, self.norm1_out, self.res1)
        x = self.place(x, partial(self.cross, memory=memory), self.norm2, self.norm2_out, self.res2)
        return self.place(x, self.ffn, self.norm3, self.norm3_out, self.res3)


class Stack(nn.Module):
    """Token embedding + learned positions, `depth` blocks, (final norm)."""

    def __init__(self, spec: BlockSpec, blocks: list[nn.Module], vocab: int, tokens: int):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, spec.width)
        self.pos_emb = nn.Embedding(tokens, spec.width)
        self.blocks = nn.ModuleList(blocks)
        self.norm_f = make_norm(spec.norm_type, spec.width) if spec.norm in FINAL_NORM else nn.Identity()

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tok_emb(tokens) + self.pos_emb(torch.arange(tokens.shape[1], device=tokens.device))


class Seq2Seq(nn.Module):
    stacks = ("encoder", "decoder")  # the block stacks, in the order their rows are logged

    def __init__(self, spec: BlockSpec, task: TaskSpec, heads: int, ffn_mult: int, decoder_depth: int):
        super().__init__()
        encoder_spec, decoder_spec = spec, replace(spec, depth=decoder_depth)
        if spec.norm == "deepnorm":
            (enc_alpha, enc_beta), (dec_alpha, dec_beta) = deepnorm_encoder_decoder(spec.depth, decoder_depth)
            encoder_spec, decoder_spec = replace(encoder_spec, alpha=enc_alpha), replace(decoder_spec, alpha=dec_alpha)
            self.deepnorm_betas = {"encoder": enc_beta, "decoder": dec_beta}  # read by init.deepnorm
        self.source_len = task.source_len
        self.encoder = Stack(encoder_spec,
                             [TransformerBlock(encoder_spec, heads, ffn_mult, causal=False) for _ in range(spec.depth)],
                             task.vocab_size, task.source_len)
        self.decoder = Stack(decoder_spec, [DecoderBlock(decoder_spec, heads, ffn_mult) for _ in range(decoder_depth)],
                             task.vocab_size, task.seq_len)
        self.head = nn.Linear(spec.width, task.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        source, target_in = x[:, : self.source_len], x[:, self.source_len :]  # (B, S), (B, T)
        memory = self.encoder.embed(source)  # (B, S, C)
        for block in self.encoder.blocks:
            memory = block(memory)
        memory = self.encoder.norm_f(memory)
        h = self.decoder.embed(target_in)  # (B, T, C)
        for block in self.decoder.blocks:
            h = block(h, memory)
        return self.head(self.decoder.norm_f(h))  # (B, T, n_outputs)

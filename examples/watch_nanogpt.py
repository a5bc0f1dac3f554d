"""resbench's probes on a model of your own: a nanoGPT-style character model, watched block by block.

    python examples/watch_nanogpt.py                    # 200 steps into results/watch/nanogpt
    python examples/watch_nanogpt.py --steps 50 --logger tensorboard
    resbench report results/watch/nanogpt               # the same tables and plots as for a resbench run

The model is written here, as in karpathy/nanoGPT's model.py (pre-LN blocks, GELU MLP, tied embeddings);
resbench knows nothing of it but the dotted path of its blocks, `transformer.h`.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn
from torch.nn import functional as F

import resbench


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, depth: int = 6, width: int = 64, heads: int = 4, block_size: int = 32):
        super().__init__()
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(vocab, width), "wpe": nn.Embedding(block_size, width),
            "h": nn.ModuleList(Block(width, heads) for _ in range(depth)), "ln_f": nn.LayerNorm(width)})
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying, as in nanoGPT
        for name, param in self.named_parameters():  # nanoGPT's init: N(0, 0.02), residual projections scaled
            if param.dim() == 2:
                std = 0.02 / math.sqrt(2 * depth) if name.endswith(("c_proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(param, std=std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)


def char_batches(batch_size: int = 32, block_size: int = 32, seed: int = 0):
    """An endless stream of (x, y) character batches from CPython's own docs (ships with Python)."""
    from pydoc_data.topics import topics

    text = "".join(topics.values())
    chars = sorted(set(text))
    index = {char: i for i, char in enumerate(chars)}
    data = torch.tensor([index[char] for char in text], dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)

    def stream():
        while True:
            starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
            x = torch.stack([data[s : s + block_size] for s in starts])
            yield x, torch.stack([data[s + 1 : s + block_size + 1] for s in starts])

    return len(chars), stream()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--run-dir", default="results/watch/nanogpt")
    parser.add_argument("--logger", default="none", choices=["none", "tensorboard"])
    args = parser.parse_args()

    torch.manual_seed(0)
    vocab, batches = char_batches()
    model = GPT(vocab, depth=args.depth)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    config = {"depth": args.depth, "norm": "pre", "train": {"lr": 3e-3, "steps": args.steps}}
    with resbench.watch(model, blocks="transformer.h", run_dir=args.run_dir, log_every=args.log_every,
                        config=config, logger=args.logger) as w:
        for step, (x, y) in zip(range(args.steps), batches):
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            w.step(loss, optimizer)
            if step % 50 == 0:
                print(f"step {step} loss {loss.item():.3f}")
    print(f"{w.summary.status} · final loss {w.summary.final_loss:.3f} · run dir {args.run_dir}")
    print(f"next: resbench report {args.run_dir}")


if __name__ == "__main__":
    main()

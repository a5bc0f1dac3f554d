"""Per-step speed of the encoder–decoder against an encoder-only Transformer with as many blocks.

    python benchmarks/seq2seq_speed.py                    # depth 6 (+ 6 decoder blocks) vs 12 blocks, reverse
    python benchmarks/seq2seq_speed.py depth=12 norm=post # any config overrides (both models get them)
    python benchmarks/seq2seq_speed.py --smoke            # seconds: proves it runs

Both models train in this process, interleaved block by block on the same task (teacher-forced pairs for
model=seq2seq, the plain pairs for model=transformer with depth + decoder depth blocks), Adam, nothing
logged, so machine noise lands on both alike. The first block pair is warm-up. The seq2seq step does more
work per block pair (cross-attention in every decoder block): the ratio says how much.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from _smoke import HELP, TINY_MODEL

from resbench import models, tasks, trainer
from resbench.config import check


class Loop:
    """One model, its optimizer and pre-generated batches; `run(steps)` returns the seconds they took."""

    def __init__(self, config: dict[str, Any], device: torch.device, n_batches: int = 32):
        torch.manual_seed(config["seed"])
        batch_size = config["train"]["batch_size"]
        task = models.task_for(config["model"]["name"], tasks.build(config["task"], batch_size))
        self.model = models.build(models.model_keys(config), task.spec).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config["train"]["lr"])
        generator = torch.Generator().manual_seed(config["seed"])
        self.batches = [tuple(t.to(device) for t in task.batch(generator, batch_size)) for _ in range(n_batches)]
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.device = device

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for step in range(steps):
            x, y = self.batches[step % len(self.batches)]
            logits = self.model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. depth=12 norm=post")
    parser.add_argument("--block", type=int, default=20, help="steps per block (default 20)")
    parser.add_argument("--repeats", type=int, default=6, help="timed block pairs (default 6)")
    parser.add_argument("--smoke", action="store_true", help=HELP)
    args = parser.parse_args()
    if args.smoke:
        args.overrides, args.block, args.repeats = [*TINY_MODEL, *args.overrides], 2, 1

    seq2seq = check(["model=seq2seq", "task=reverse", *args.overrides])
    model = models.model_keys(seq2seq)
    blocks = model["depth"] + (model["decoder_depth"] or model["depth"])
    encoder_only = check(["model=transformer", "task=reverse", *args.overrides, f"depth={blocks}"])
    if seq2seq.get("threads"):
        torch.set_num_threads(seq2seq["threads"])
    device = trainer.pick_device(seq2seq["device"])
    loops = {"seq2seq": Loop(seq2seq, device), "transformer": Loop(encoder_only, device)}
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.repeats + 1):
        for name, loop in loops.items():
            seconds[name].append(loop.run(args.block))
    ms = {name: [1000 * s / args.block for s in times[1:]] for name, times in seconds.items()}
    ratios = [a / b for a, b in zip(ms["seq2seq"], ms["transformer"])]
    print(f"task reverse seq_len={seq2seq['task']['seq_len']} width={model['width']} heads={model['heads']} "
          f"batch={seq2seq['train']['batch_size']} norm={model['norm']} device={device} "
          f"threads={torch.get_num_threads()} · {args.repeats} × {args.block} steps each")
    print(f"seq2seq      {model['depth']} + {blocks - model['depth']} blocks  {loops['seq2seq'].n_params:>9,} params  "
          f"{statistics.median(ms['seq2seq']):7.2f} ms/step (median)")
    print(f"transformer  {blocks} blocks      {loops['transformer'].n_params:>9,} params  "
          f"{statistics.median(ms['transformer']):7.2f} ms/step (median)")
    print(f"ratio        {statistics.median(ratios):.3f}  seq2seq / transformer (median of paired blocks; "
          f"min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()

"""What resbench.watch costs in a user's own loop: steps/s of a watched nanoGPT-style loop against the bare one.

    python benchmarks/watch_overhead.py                    # depth 6, width 64, seq 32, batch 32 (examples/)
    python benchmarks/watch_overhead.py --depth 12 --block 20
    python benchmarks/watch_overhead.py --smoke           # seconds: proves it runs

Three copies of the same model (same initial weights, same batches, AdamW) run in this process, in
interleaved blocks of `--block` steps: the bare loop (forward, backward, step, zero_grad), the loop with
`w.step(loss, optimizer)` at log_every=1 (all probes and rows every step) and at log_every=10. Machine
noise lands on all three alike; the first round is warm-up. Ratios are bare time / watched time per round.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _smoke import HELP
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from watch_nanogpt import GPT, char_batches

import resbench

# Wall-clock time by default; with --clock process, this process's CPU time (all its threads, the event
# writer's too), which other processes on a busy machine do not inflate (as in probe_overhead.py).
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
clock_now = CLOCKS["wall"]


def timed_block(model, optimizer, batches, steps: int, watcher=None) -> float:
    start = clock_now()
    for _ in range(steps):
        x, y = next(batches)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        if watcher is None:
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            watcher.step(loss, optimizer)
    return clock_now() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--block", type=int, default=40, help="steps per block (default 40)")
    parser.add_argument("--repeats", type=int, default=8, help="timed rounds (default 8)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall time (default) or this process's CPU time (steadier on a busy machine)")
    parser.add_argument("--smoke", action="store_true", help=HELP)
    args = parser.parse_args()
    if args.smoke:
        args.depth, args.block, args.repeats = 1, 2, 1
    global clock_now
    clock_now = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    vocab, _ = char_batches()
    base = GPT(vocab, depth=args.depth)
    loops = {}
    with tempfile.TemporaryDirectory(prefix="resbench-watch-bench-") as tmp:
        for name, log_every in (("bare", None), ("every step", 1), ("log_every=10", 10)):
            model = copy.deepcopy(base)
            optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
            watcher = None if log_every is None else resbench.watch(
                model, blocks="transformer.h", run_dir=Path(tmp) / name.replace(" ", "_"), log_every=log_every)
            loops[name] = (model, optimizer, char_batches()[1], watcher)
        times: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(args.repeats + 1):
            for name, (model, optimizer, batches, watcher) in loops.items():
                times[name].append(timed_block(model, optimizer, batches, args.block, watcher))
        for _, _, _, watcher in loops.values():
            if watcher is not None:
                watcher.close()
    bare = times["bare"][1:]
    print(f"nanoGPT-style depth={args.depth} width=64 seq=32 batch=32 threads={torch.get_num_threads()} · "
          f"{args.repeats} rounds × {args.block} steps")
    print(f"bare loop      {statistics.median(args.block / t for t in bare):8.1f} steps/s (median)")
    for name in ("every step", "log_every=10"):
        ratios = [b / w for b, w in zip(bare, times[name][1:])]
        print(f"{name:<14} ratio {statistics.median(ratios):.3f}  (median of rounds; min {min(ratios):.3f}, "
              f"max {max(ratios):.3f})")


if __name__ == "__main__":
    main()

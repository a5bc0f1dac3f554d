"""A framework's own training loop with and without resbench's callback, timed in rounds: the arguments, the
round order (each variant goes first in turn, so a machine that speeds up or slows down lands on all alike)
and the printed ratios. Used by lightning_overhead.py and transformers_overhead.py."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path

from _smoke import HELP

VARIANTS = {"bare": None, "every step": 1, "log_every=10": 10}  # name → the callback's log_every (None: none)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--block", type=int, default=41, help="steps per round and variant (default 41: 40 timed)")
    parser.add_argument("--repeats", type=int, default=6, help="timed rounds (default 6)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help=HELP)
    args = parser.parse_args()
    if args.smoke:
        args.depth, args.block, args.repeats = 2, 3, 0
    return args


def rounds(repeats: int, scratch: Path, next_inputs: Callable[[], object],
           run: Callable[[str, object, int | None, Path], float]) -> dict[str, list[float]]:
    """Seconds of `run(variant, inputs, log_every, run_dir)` per variant, round by round (round 0 is warm-up);
    every variant of a round gets the same inputs."""
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for round_index in range(repeats + 1):
        inputs = next_inputs()
        for name in names[round_index % 3:] + names[: round_index % 3]:
            run_dir = scratch / f"{name.replace(' ', '_')}_{round_index}"
            times[name].append(run(name, inputs, VARIANTS[name], run_dir))
    return times


def print_ratios(title: str, args: argparse.Namespace, times: dict[str, list[float]]) -> None:
    """Steps/s without resbench, and each variant's ratio to it (median of the timed rounds)."""
    timed = args.block - 1
    counted = {name: seconds[1:] if args.repeats else seconds for name, seconds in times.items()}
    print(f"{title} · {args.repeats} rounds × {timed} timed steps")
    print(f"without resbench {statistics.median(timed / t for t in counted['bare']):8.1f} steps/s (median)")
    for name in ("every step", "log_every=10"):
        ratios = [bare / watched for bare, watched in zip(counted["bare"], counted[name])]
        print(f"{name:<16} ratio {statistics.median(ratios):.3f}  (median of rounds; min {min(ratios):.3f}, "
              f"max {max(ratios):.3f})")

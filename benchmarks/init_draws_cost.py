"""What the init draws cost: a whole default run (`resbench.trainer.run`, threads=1) with init_draws=8 against
the same run with init_draws=1 (the run of before the draws), side by side in one process; with `--command`,
also a whole `resbench train` process as a user starts it (default threads, start-up included).

    python benchmarks/init_draws_cost.py                   # default model, 5 repetitions a side
    python benchmarks/init_draws_cost.py --repeats 9 depth=12   # any config overrides
    python benchmarks/init_draws_cost.py --clock process   # this process's CPU time (a loaded machine)
    python benchmarks/init_draws_cost.py --command         # also `resbench train` processes, wall time
    python benchmarks/init_draws_cost.py --smoke           # seconds: proves it runs

The two sides alternate A B B A A B …, so a machine that speeds up or slows down lands on both alike, and
each run writes its files to a fresh temporary dir. Prints each side's median seconds and their ratio
(draws / none). Target: ≤ 1.05 on the default run. The first pair is warm-up and not counted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _smoke import HELP, TINY_MODEL

from resbench import trainer
from resbench.config import check

CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
DRAWS = 8  # the config's default


def timed_run(config: dict, scratch: Path, clock) -> float:
    """Seconds of one whole run of `config` into a fresh dir under `scratch`."""
    run_dir = Path(tempfile.mkdtemp(dir=scratch))
    start = clock()
    summary = trainer.run(config, run_dir)
    seconds = clock() - start
    if summary["status"] != "completed":
        sys.exit(f"the run ended {summary['status']}: {summary.get('error')}")
    return seconds


def timed_command(overrides: list[str], scratch: Path) -> float:
    """Wall seconds of one `resbench train` process (as a user runs it: default threads) into a fresh dir."""
    run_dir = Path(tempfile.mkdtemp(dir=scratch)) / "run"
    command = [sys.executable, "-m", "resbench.cli", "train", "--quiet", *overrides, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def measure(run_one, repeats: int) -> dict[int, list[float]]:
    """Seconds per run for init_draws=DRAWS and =1 (`run_one(draws, scratch)`), alternating ABBA, after one
    warm-up pair."""
    seconds: dict[int, list[float]] = {DRAWS: [], 1: []}
    with tempfile.TemporaryDirectory() as scratch:
        for pair in range(repeats + 1):
            order = (DRAWS, 1) if pair % 2 == 0 else (1, DRAWS)
            for draws in order:
                elapsed = run_one(draws, Path(scratch))
                if pair > 0:
                    seconds[draws].append(elapsed)
    return seconds


def report(what: str, seconds: dict[int, list[float]]) -> None:
    with_draws, without = (statistics.median(seconds[draws]) for draws in (DRAWS, 1))
    print(f"{what}, median of {len(seconds[1])}: init_draws={DRAWS} {with_draws:.3f} s, init_draws=1 {without:.3f} s")
    print(f"ratio {with_draws / without:.3f} (target <= 1.05); each side's runs: "
          + "; ".join(f"{draws}: " + " ".join(f"{s:.2f}" for s in seconds[draws]) for draws in (DRAWS, 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config overrides, as on the command line")
    parser.add_argument("--repeats", type=int, default=5, help="runs a side (after one warm-up pair)")
    parser.add_argument("--clock", choices=CLOCKS, default="wall")
    parser.add_argument("--command", action="store_true", help="also time whole `resbench train` processes")
    parser.add_argument("--smoke", action="store_true", help=HELP)
    args = parser.parse_args()
    torch.set_num_threads(1)
    smoke = [*TINY_MODEL, "train.steps=3", "train.eval_every=2"]
    overrides, repeats = ([*smoke, *args.overrides], 1) if args.smoke else (args.overrides, args.repeats)
    configs = {draws: check(["threads=1", *overrides, f"init_draws={draws}"]) for draws in (DRAWS, 1)}
    clock = CLOCKS[args.clock]
    report(f"trainer.run, threads=1, {args.clock} seconds per run",
           measure(lambda draws, scratch: timed_run(configs[draws], scratch, clock), repeats))
    if args.command or args.smoke:
        report("`resbench train` process, default threads, wall seconds per run",
               measure(lambda draws, scratch: timed_command([*overrides, f"init_draws={draws}"], scratch), repeats))


if __name__ == "__main__":
    main()

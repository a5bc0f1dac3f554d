"""A run's fixed cost: everything but the training steps, measured three ways.

    python benchmarks/run_overhead.py                 # all three
    python benchmarks/run_overhead.py --reps 5 --sweep-runs 20

1. in-process: `hydra_app.run_train(["train.steps=0", ...])` again and again in this process (compose,
   validate, build the task and model, measure the gradient at init, write the run dir); the first call
   pays the one-off costs of a process, the median of the rest is what each further run pays;
2. `resbench train train.steps=0 --quiet` as a fresh process (import time included);
3. `resbench sweep seed=range(N) train.steps=1 --quiet` (N one-step runs): wall time per run.

Every timing is wall clock: on a busy machine, compare numbers taken back to back, never across hours.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS0 = ["train.steps=0", "threads=1"]


def in_process(reps: int, root: Path) -> list[float]:
    """Seconds of each run_train call of a steps=0 run, in this process (the first one cold)."""
    from resbench import hydra_app

    seconds = []
    for rep in range(reps + 1):
        start = time.perf_counter()
        hydra_app.run_train([*STEPS0, f"hydra.run.dir={root / f'inproc{rep}'}"], None)
        seconds.append(time.perf_counter() - start)
    return seconds


def fresh_process(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "resbench.cli", *command, "--quiet"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions of 1. and 2. (default 5)")
    parser.add_argument("--sweep-runs", type=int, default=20, help="one-step runs in 3. (default 20)")
    parser.add_argument("--sweep-args", nargs="*", default=[], help="extra sweep overrides, e.g. hydra/launcher=basic")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="resbench-bench-") as tmp:
        root = Path(tmp)
        calls = in_process(args.reps, root)
        print(f"in-process train.steps=0: first {calls[0]:.3f} s, then median {statistics.median(calls[1:]):.3f} s "
              f"(min {min(calls[1:]):.3f}, {args.reps} runs)", flush=True)
        fresh = [fresh_process(["train", *STEPS0, f"hydra.run.dir={root / f'fresh{rep}'}"]) for rep in range(args.reps)]
        print(f"resbench train train.steps=0 (fresh process): median {statistics.median(fresh):.2f} s "
              f"(min {min(fresh):.2f}, {args.reps} runs)", flush=True)
        sweep = fresh_process(["sweep", f"seed=range({args.sweep_runs})", "train.steps=1", "threads=1",
                               *args.sweep_args, f"hydra.sweep.dir={root / 'sweep'}"])
        print(f"resbench sweep seed=range({args.sweep_runs}) train.steps=1 {' '.join(args.sweep_args)}: "
              f"{sweep:.1f} s wall, {sweep / args.sweep_runs:.3f} s per run", flush=True)


if __name__ == "__main__":
    main()

"""A run's fixed cost: everything but the training steps, measured three ways.

    python benchmarks/run_overhead.py                 # all three
    python benchmarks/run_overhead.py --reps 5 --sweep-runs 20

1. in-process: `resbench.jobs.run_train(["train.steps=0", ...])` again and again in this process (compose,
   validate, build the task and model, measure the gradient at init, write the run dir); the first call
   pays the one-off costs of a process, the median of the rest is what each further run pays;
2. `resbench train train.steps=0 --quiet` as a fresh process (import time included);
3. `resbench sweep seed=range(N) train.steps=1 --quiet` (N one-step runs): wall time per run, on the
   default launcher and on hydra/launcher=basic.

`--before REV` first measures the same on resbench as it was at git revision REV (exported into a temporary
directory and imported from there), then on this checkout: before / after, back to back in one script.

    python benchmarks/run_overhead.py --before d480e66
    python benchmarks/run_overhead.py --smoke --before HEAD   # one of each: proves it runs (no network)

Every timing is wall clock: on a busy machine, compare numbers taken back to back, never across hours.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _smoke import HELP

REPO = Path(__file__).resolve().parent.parent

STEPS0 = ["train.steps=0", "threads=1"]


def in_process(reps: int, root: Path) -> list[float]:
    """Seconds of each run_train call of a steps=0 run, in this process (the first one cold)."""
    try:
        from resbench.jobs import run_train
    except ImportError:  # resbench before hydra_app was split by job (--before REV)
        from resbench.hydra_app import run_train

    seconds = []
    for rep in range(reps + 1):
        start = time.perf_counter()
        run_train([*STEPS0, f"hydra.run.dir={root / f'inproc{rep}'}"], None)
        seconds.append(time.perf_counter() - start)
    return seconds


def fresh_process(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "resbench.cli", *command, "--quiet"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr}")
    return time.perf_counter() - start


def measure(args: argparse.Namespace, root: Path, label: str) -> None:
    calls = in_process(args.reps, root)
    print(f"{label}in-process train.steps=0: first {calls[0]:.3f} s, then median {statistics.median(calls[1:]):.3f} s "
          f"(min {min(calls[1:]):.3f}, {args.reps} runs)", flush=True)
    fresh = [fresh_process(["train", *STEPS0, f"hydra.run.dir={root / f'fresh{rep}'}"]) for rep in range(args.reps)]
    print(f"{label}resbench train train.steps=0 (fresh process): median {statistics.median(fresh):.2f} s "
          f"(min {min(fresh):.2f}, {args.reps} runs)", flush=True)
    # --smoke: one sweep of one run, which the default launcher runs in-process as hydra/launcher=basic would
    for number, launcher in enumerate([[]] if args.sweep_args or args.smoke else [[], ["hydra/launcher=basic"]]):
        extra = [*args.sweep_args, *launcher]
        sweep = fresh_process(["sweep", f"seed=range({args.sweep_runs})", "train.steps=1", "threads=1",
                               *extra, f"hydra.sweep.dir={root / f'sweep{number}'}"])
        print(f"{label}resbench sweep seed=range({args.sweep_runs}) train.steps=1 {' '.join(extra) or '(default)'}: "
              f"{sweep:.1f} s wall, {sweep / args.sweep_runs:.3f} s per run, load avg {os.getloadavg()[0]:.1f}",
              flush=True)


def before(rev: str, argv: list[str], root: Path) -> None:
    """This script again, importing resbench as it was at `rev` (its package and its conf/ exported)."""
    tree = root / "before"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "resbench", "conf"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    shutil.move(str(tree / "conf"), str(tree / "resbench" / "conf"))  # where the installed package has it
    env = {**os.environ, "PYTHONPATH": str(tree), "RESBENCH_BENCH_LABEL": f"before ({rev}): "}
    subprocess.run([sys.executable, __file__, *argv], env=env, check=True, cwd=root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions of 1. and 2. (default 5)")
    parser.add_argument("--sweep-runs", type=int, default=20, help="one-step runs in 3. (default 20)")
    parser.add_argument("--sweep-args", nargs="*", default=[], help="extra sweep overrides, e.g. hydra/launcher=basic")
    parser.add_argument("--before", metavar="REV", help="first measure resbench at this git revision")
    parser.add_argument("--smoke", action="store_true", help=HELP)
    args, argv = parser.parse_args(), [a for a in sys.argv[1:]]
    if args.smoke:
        args.reps, args.sweep_runs = 1, 1
    with tempfile.TemporaryDirectory(prefix="resbench-bench-") as tmp:
        root = Path(tmp)
        if args.before:
            rest = [a for i, a in enumerate(argv) if a != "--before" and argv[i - 1:i] != ["--before"]
                    and not a.startswith("--before=")]
            before(args.before, rest, root)
        import resbench

        label = os.environ.get("RESBENCH_BENCH_LABEL") or ("after: " if args.before else "")
        print(f"{label}resbench from {Path(resbench.__file__).parent}", flush=True)
        measure(args, root, label)


if __name__ == "__main__":
    main()

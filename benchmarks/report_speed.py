"""How long `build_report` takes over a big sweep: 500 runs × 24 blocks × 200 logged steps.

Synthesises the sweep (each run with 8 init draws, as runs write them by default) in a temporary dir (not
timed), then times one `build_report` call, PNGs and report.html included, and prints the seconds and the
size of report.html. Target: ≤ 10 s on 2 cores.

    python benchmarks/report_speed.py [--runs 500] [--depth 24] [--steps 200] [--keep DIR]
    python benchmarks/report_speed.py --reuse DIR/sweep [--one-process]   # time again, no synthesis
    python benchmarks/report_speed.py --smoke                            # 4 small runs: proves it runs

`--one-process` draws every figure in this process (no helper): the one-core baseline.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # report_fixtures
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _smoke import HELP
from report_fixtures import Knobs, grid, write_sweep

from plotly.offline import get_plotlyjs

from resbench.report import build_report, render

LOG_EVERY = 10
INIT_DRAWS = 8  # the config's default


def synthesise(sweep_dir: Path, n_runs: int, depth: int, logged_steps: int) -> int:
    """A norm × residual × warmup × seed sweep of `n_runs` runs; returns the number of groups."""
    settings = grid(norm=["post", "pre", "sandwich", "deepnorm", "none"], residual=["true", "rezero"],
                    **{"train.warmup": [0, 100]})
    seeds = -(-n_runs // len(settings))
    runs = [
        {**setting, "depth": depth, "seed": seed, "log_every": LOG_EVERY, "train.steps": logged_steps * LOG_EVERY}
        for seed in range(seeds)
        for setting in settings
    ][:n_runs]
    # The report reads grad_norms.csv's step 0 only (when layers.csv has grad norms): those rows keep the dir small.
    # Each run has the default 8 init draws, as a run of today writes them.
    write_sweep(sweep_dir, runs, swept_keys=["norm", "residual", "train.warmup"],
                knobs=Knobs(grad_norms="init", draws=INIT_DRAWS))
    return len(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--depth", type=int, default=24)
    parser.add_argument("--steps", type=int, default=200, help="logged steps after step 0")
    parser.add_argument("--keep", type=Path, help="synthesise here and keep it (default: a temp dir)")
    parser.add_argument("--reuse", type=Path, help="time a report over this existing sweep dir instead")
    parser.add_argument("--one-process", action="store_true", help="draw every figure here, no helper process")
    parser.add_argument("--smoke", action="store_true", help=HELP)
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.depth, args.steps = 4, 2, 3
    if args.one_process:
        render.HELPER_MIN_RUNS = sys.maxsize
    if args.reuse:
        time_report(args.reuse)
        return
    with tempfile.TemporaryDirectory() as scratch:
        sweep_dir = (args.keep or Path(scratch)) / "sweep"
        start = time.perf_counter()
        n_groups = synthesise(sweep_dir, args.runs, args.depth, args.steps)
        print(f"synthesised {args.runs} runs ({n_groups} groups) in {time.perf_counter() - start:.1f} s")
        time_report(sweep_dir)


def time_report(sweep_dir: Path) -> None:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = build_report([sweep_dir])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    helper = resource.getrusage(resource.RUSAGE_CHILDREN)
    helper_seconds = helper.ru_utime + helper.ru_stime - children.ru_utime - children.ru_stime
    print(f"build_report: {seconds:.2f} s wall for {result.n_runs} runs, {len(result.paths)} files "
          f"(CPU: {cpu_seconds:.2f} s here, {helper_seconds:.2f} s in the drawing helper)")
    page = result.report_html.stat().st_size
    print(f"report.html: {page / 1e6:.1f} MB ({(page - len(get_plotlyjs().encode())) / 1e6:.2f} MB besides Plotly's "
          f"JavaScript)")


if __name__ == "__main__":
    main()

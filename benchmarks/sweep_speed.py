"""Sweep speed on a few CPU cores (default 2), each sweep a fresh `resbench sweep` process as a user runs it.

1. the main job: `resbench sweep depth=6,12,24`, every other setting default (target: <= 90 s on 2 cores);
2. the main job on the default launcher (side by side since the default became parallel) against
   hydra/launcher=basic, back to back (target: <= 0.7x the wall time on 2 cores);
3. the same small runs (default model, depth=6, seed=0..N-1, N=8) sequentially in-process
   (hydra/launcher=basic) and with hydra/launcher=joblib hydra.launcher.n_jobs=2, in the same run of this
   script (target: joblib >= 1.3x faster on 2 cores);
4. the presets (`+experiment=NAME`), each on the default launcher against hydra/launcher=basic, back to
   back (target: <= 0.75x the wall time in all); `--preset-steps N` sets train.steps=N on both sides alike
   (a preset at full size takes minutes a side).

    python benchmarks/sweep_speed.py                # 1.-3., pinned to 2 cores
    python benchmarks/sweep_speed.py --cores 2 --runs 4 --only parallel --out speed.json
    python benchmarks/sweep_speed.py --only presets --preset-steps 30
    python benchmarks/sweep_speed.py --smoke        # 1.-3. on tiny runs: proves it runs

The process pins itself (and so every sweep it starts) to the first --cores CPUs it may use (Linux), and
hides GPUs (CUDA_VISIBLE_DEVICES=) so that device=auto means the CPU, as on a laptop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _smoke import HELP, TINY_MODEL

MAIN_JOB = ["depth=6,12,24"]
MAIN_JOB_LIMIT_S = 90.0
SPEEDUP_TARGET = 1.3
DEFAULT_RATIO_TARGET = 0.7  # the default launcher's wall time over hydra/launcher=basic's, same sweep
PRESETS = ("xiong2020", "lr_stability", "he2016", "dong2021", "deepnet2022")
PRESETS_RATIO_TARGET = 0.75  # the presets' wall time in all, default launcher over basic
# --smoke: tiny runs (these overrides come first, so a sweep's own win) and a one-run main job.
SMOKE_RUNS = [*TINY_MODEL, "train.steps=2"]
SMOKE_JOB = ["depth=1"]


def small_runs(n: int) -> list[str]:
    return ["depth=6", f"seed=range({n})"]


def timed_sweep(overrides: list[str], sweep_dir: Path, shrink: list[str] = ()) -> dict:
    """Run one sweep in a fresh process; its wall time and the statuses in its runs.csv. `shrink`: overrides
    given first (--smoke's tiny runs)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "resbench.cli", "sweep", "--quiet", *shrink, *overrides,
               f"hydra.sweep.dir={sweep_dir}"]
    load_before, cpu_before = os.getloadavg()[0], _children_cpu_s()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    cpu = _children_cpu_s() - cpu_before  # the sweep and its local workers (not SLURM jobs)
    if done.returncode != 0:
        raise SystemExit(f"sweep failed ({done.returncode}): {' '.join(overrides)}\n{done.stderr}")
    lines = (sweep_dir / "runs.csv").read_text().splitlines()[1:]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]
    return {"overrides": overrides, "wall_s": round(wall, 2), "cpu_s": round(cpu, 1), "runs": len(lines),
            "load_avg_before": load_before, "load_avg_after": os.getloadavg()[0],
            "statuses": sorted({line.split(",")[1] for line in lines}),
            "threads": sorted({s["threads"] for s in summaries}),
            "run_wall_s": [s["wall_s"] for s in summaries]}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pin_cores(cores: int) -> list[int]:
    if hasattr(os, "sched_setaffinity"):
        chosen = sorted(os.sched_getaffinity(0))[:cores]
        os.sched_setaffinity(0, chosen)
        return chosen
    return list(range(os.cpu_count() or 1))  # macOS: no pinning; run it on an idle machine


def presets(names: list[str], steps: int | None, root: Path) -> dict:
    """Each preset on the default launcher, then on hydra/launcher=basic; the ratio of their sums."""
    extra = [f"train.steps={steps}"] if steps else []
    found: dict = {}
    for name in names:
        default = timed_sweep([f"+experiment={name}", *extra], root / f"{name}-default")
        basic = timed_sweep([f"+experiment={name}", *extra, "hydra/launcher=basic"], root / f"{name}-basic")
        found[name] = {"default": default, "basic": basic, "ratio": round(default["wall_s"] / basic["wall_s"], 3)}
        print(f"+experiment={name} {' '.join(extra)}: {default['runs']} runs, default {default['wall_s']:.1f} s, "
              f"basic {basic['wall_s']:.1f} s: {found[name]['ratio']:.2f}x (load avg "
              f"{default['load_avg_before']:.1f} / {basic['load_avg_before']:.1f})", flush=True)
    total = sum(f["default"]["wall_s"] for f in found.values()) / sum(f["basic"]["wall_s"] for f in found.values())
    print(f"presets in all: {total:.2f}x the wall time "
          f"(target <= {PRESETS_RATIO_TARGET}: {'ok' if total <= PRESETS_RATIO_TARGET else 'MISSED'})", flush=True)
    return {"runs": found, "ratio": round(total, 3), "ok": total <= PRESETS_RATIO_TARGET}


def main_job(root: Path, cores: int, job: list[str], shrink: list[str]) -> dict:
    """1. the main job on the default launcher, against its time limit."""
    found = timed_sweep(job, root / "main", shrink)
    found["ok"] = found["wall_s"] <= MAIN_JOB_LIMIT_S
    print(f"resbench sweep {' '.join(job)}: {found['wall_s']:.1f} s wall on {cores} cores, "
          f"{found['cpu_s']:.0f} CPU-s, load avg {found['load_avg_before']:.1f} "
          f"(runs {found['run_wall_s']} s, threads {found['threads']}; "
          f"target <= {MAIN_JOB_LIMIT_S:.0f} s: {'ok' if found['ok'] else 'MISSED'})", flush=True)
    return found


def default_vs_basic(root: Path, job: list[str], steps: int | None, shrink: list[str]) -> dict:
    """2. the main job on the default launcher, then on hydra/launcher=basic: the ratio of their wall times."""
    extra = [f"train.steps={steps}"] if steps else []
    default = timed_sweep([*job, *extra], root / "default", shrink)
    basic = timed_sweep([*job, *extra, "hydra/launcher=basic"], root / "basic", shrink)
    ratio = default["wall_s"] / basic["wall_s"]
    print(f"resbench sweep {' '.join([*job, *extra])}: default launcher {default['wall_s']:.1f} s "
          f"(threads {default['threads']}), hydra/launcher=basic {basic['wall_s']:.1f} s "
          f"(threads {basic['threads']}): {ratio:.2f}x the wall time "
          f"(target <= {DEFAULT_RATIO_TARGET}: {'ok' if ratio <= DEFAULT_RATIO_TARGET else 'MISSED'})", flush=True)
    return {"default": default, "basic": basic, "ratio": round(ratio, 3), "ok": ratio <= DEFAULT_RATIO_TARGET}


def parallel(root: Path, runs: int, shrink: list[str]) -> dict:
    """3. the same small runs sequentially in-process and with joblib's two workers: the speed-up."""
    overrides = small_runs(runs)
    sequential = timed_sweep([*overrides, "hydra/launcher=basic"], root / "sequential", shrink)
    joblib = timed_sweep([*overrides, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], root / "joblib", shrink)
    speedup = sequential["wall_s"] / joblib["wall_s"]
    print(f"{runs} runs ({' '.join(overrides)}): sequential {sequential['wall_s']:.1f} s "
          f"(threads {sequential['threads']}, {sequential['cpu_s']:.0f} CPU-s, load avg "
          f"{sequential['load_avg_before']:.1f}), joblib n_jobs=2 {joblib['wall_s']:.1f} s "
          f"(threads {joblib['threads']}, {joblib['cpu_s']:.0f} CPU-s, load avg "
          f"{joblib['load_avg_before']:.1f}): {speedup:.2f}x "
          f"(target >= {SPEEDUP_TARGET}x: {'ok' if speedup >= SPEEDUP_TARGET else 'MISSED'})", flush=True)
    return {"sequential": sequential, "joblib": joblib, "speedup": round(speedup, 2), "ok": speedup >= SPEEDUP_TARGET}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--runs", type=int, default=8, help="small runs in the launcher comparison (>= 4)")
    parser.add_argument("--only", choices=["main", "parallel", "default", "presets"],
                        help="run one of the measurements (presets: only when named)")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), help="presets in 4.")
    parser.add_argument("--preset-steps", type=int, help="train.steps of every preset run (default: the preset's)")
    parser.add_argument("--steps", type=int, help="train.steps of every run (default: the config's)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--smoke", action="store_true", help=HELP)
    args = parser.parse_args()
    shrink, job = (SMOKE_RUNS, SMOKE_JOB) if args.smoke else ([], MAIN_JOB)
    if args.smoke:
        args.runs = 1

    results: dict = {"cores": pin_cores(args.cores), "python": platform.python_version(),
                     "machine": platform.processor() or platform.machine()}
    with tempfile.TemporaryDirectory(prefix="resbench-bench-") as tmp:
        root = Path(tmp)
        if args.only in (None, "main"):
            results["main_job"] = main_job(root, args.cores, job, shrink)
        if args.only in (None, "default"):
            results["default_vs_basic"] = default_vs_basic(root, job, args.steps, shrink)
        if args.only in (None, "parallel"):
            results["parallel"] = parallel(root, args.runs, shrink)
        if args.only == "presets":
            results["presets"] = presets(args.presets, args.preset_steps, root)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

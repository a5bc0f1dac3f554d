"""Every benchmark still runs: each script of benchmarks/ in its `--smoke` mode (a tiny model, a handful of steps,
the same code as the real measurement), as a user starts it, printing its result lines. The numbers of a smoke
run mean nothing and are not checked; that the lines are there is."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
NUMBER = r"-?\d+(\.\d+)?"

# script → (its arguments besides --smoke, the lines its output must hold)
SMOKE_RUNS: dict[str, tuple[list[str], list[str]]] = {
    "checkpoint_cost.py": ([], [rf"^ratio +{NUMBER} +\(median of paired blocks",
                                rf"^one checkpoint write +{NUMBER} ms"]),
    "cli_startup.py": ([], [rf"^resbench --help +{NUMBER} s", rf"^TAB after norm= +{NUMBER} s"]),
    "lightning_overhead.py": ([], [rf"^every step +ratio {NUMBER}", rf"^log_every=10 +ratio {NUMBER}"]),
    "init_draws_cost.py": ([], [rf"^trainer.run, threads=1, .* init_draws=1 {NUMBER} s$",
                                rf"^`resbench train` process, .* init_draws=1 {NUMBER} s$",
                                rf"^ratio {NUMBER} \(target <= 1.05\)"]),
    "plan_speed.py": ([], [rf"^4 jobs: composed in full .* speed-up {NUMBER}x$"]),
    "probe_overhead.py": ([], [rf"^ +bare PyTorch loop +{NUMBER} +1\.000",
                               rf"^ +resbench, every probe every step +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$",
                               rf"^ +resbench, log_every=10 +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$"]),
    "report_speed.py": ([], [rf"^build_report: {NUMBER} s wall for 4 runs", rf"^report.html: {NUMBER} MB"]),
    # against the committed tree (git archive: no network), then this checkout
    "run_overhead.py": (["--before", "HEAD"], [
        rf"^before \(HEAD\): resbench train train.steps=0 \(fresh process\): median {NUMBER} s",
        rf"^after: in-process train.steps=0: first {NUMBER} s, then median {NUMBER} s",
        rf"^after: resbench sweep seed=range\(1\) .*: {NUMBER} s wall, {NUMBER} s per run"]),
    "seq2seq_speed.py": ([], [rf"^ratio +{NUMBER} +seq2seq / transformer"]),
    "sweep_speed.py": ([], [rf"^resbench sweep depth=1: {NUMBER} s wall on 2 cores",
                            rf"hydra/launcher=basic {NUMBER} s .*: {NUMBER}x the wall time",
                            rf"joblib n_jobs=2 {NUMBER} s .*: {NUMBER}x \(target"]),
    "transformers_overhead.py": ([], [rf"^every step +ratio {NUMBER}", rf"^log_every=10 +ratio {NUMBER}"]),
    "train_overhead.py": (["logger=tensorboard"], [rf"^ratio +{NUMBER} +\(log_every=1;",
                                                   rf"^ratio +{NUMBER} +\(log_every=10;",
                                                   rf"^logger +{NUMBER} ms per recorded step"]),
    "watch_overhead.py": ([], [rf"^every step +ratio {NUMBER}", rf"^log_every=10 +ratio {NUMBER}"]),
}


def test_every_benchmark_has_a_smoke_run():
    scripts = sorted(path.name for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_"))
    assert scripts == sorted(SMOKE_RUNS)


def _is_git_checkout() -> bool:
    try:
        done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, check=False)
    except OSError:  # no git at all
        return False
    return done.returncode == 0


@pytest.mark.parametrize("script", list(SMOKE_RUNS))
def test_the_benchmark_runs_in_smoke_mode(script, tmp_path):
    arguments, lines = SMOKE_RUNS[script]
    if "--before" in arguments and not _is_git_checkout():
        pytest.skip("--before exports a git revision: this tree is not a git checkout")
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke", *arguments], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    missing = [line for line in lines if not re.search(line, done.stdout, re.MULTILINE)]
    assert missing == [], done.stdout

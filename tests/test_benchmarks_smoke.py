"""The cost benchmarks of resbench.watch and of both integrations run (`--smoke`: a few tiny steps), in this
process so that torch, Lightning and transformers are imported once. The ratios they print are measured by
hand on a quiet machine (README, Performance); here only that each runs and prints them."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", ["watch_overhead.py", "lightning_overhead.py", "transformers_overhead.py"])
def test_the_benchmark_runs_in_smoke_mode(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, "--smoke"])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script adds examples/ to it
    runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "every step " in printed and "log_every=10 " in printed and "ratio" in printed, printed

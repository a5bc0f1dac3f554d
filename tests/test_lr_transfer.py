"""Depth-wise learning-rate transfer: the optimum of an lr sweep, its shift in octaves, and the finding on
synthetic run sets where it must agree, disagree and stay inconclusive."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import write_sweep

from resbench.report import build_report, findings
from resbench.report import quantities as q
from resbench.report.quantities import Evidence
from resbench.report.verdict import AGREES, DISAGREES, INCONCLUSIVE

LRS = [1e-4 * 2**k for k in range(7)]  # an octave apart: log₂ from −13.29 to −7.29
MIDDLE = math.log2(LRS[3])  # −10.29


# ---- the optimum of one sweep ------------------------------------------------------------------------------

def test_an_interior_optimum_is_the_vertex_of_the_parabola_through_the_best_three() -> None:
    centre = MIDDLE + 0.3  # between two grid points: a parabola sampled on the grid has its vertex there
    losses = [1 + 0.1 * (math.log2(lr) - centre) ** 2 for lr in LRS]
    found = q.lr_optimum(LRS, losses)
    assert found.edge == "" and found.log2_lr == pytest.approx(centre) and found.low == found.high == found.log2_lr
    assert found.lr == pytest.approx(2**centre)


def test_the_vertex_by_hand_on_an_uneven_grid() -> None:
    # x = 0, 1, 3 (log₂ lr), y = 2, 1, 2: vertex x* = 1 − ½·[(1)²(1−2) − (−2)²(1−2)] / [(1)(1−2) − (−2)(1−2)] = 1.5
    found = q.lr_optimum([1.0, 2.0, 8.0], [2.0, 1.0, 2.0])
    assert found.log2_lr == pytest.approx(1.5)


def test_only_the_three_best_points_shape_the_refinement() -> None:
    far = [9.0, 9.0, 3.0, 1.0, 2.0, 9.0, 9.0]
    near = [5.0, 4.0, 3.0, 1.0, 2.0, 4.0, 5.0]
    assert q.lr_optimum(LRS, far).log2_lr == q.lr_optimum(LRS, near).log2_lr
    # by hand, uniform spacing: offset = (y₋ − y₊) / (2·(y₋ − 2y₀ + y₊)) = (3 − 2) / (2·3) = 1/6 octave
    assert q.lr_optimum(LRS, near).log2_lr == pytest.approx(MIDDLE + 1 / 6)


@pytest.mark.parametrize("losses, edge, bound", [
    ([1.0, 2, 3, 4, 5, 6, 7], "low", math.log2(LRS[0])),
    ([7.0, 6, 5, 4, 3, 2, 1], "high", math.log2(LRS[-1])),
])
def test_an_optimum_at_the_edge_is_a_bound_not_an_extrapolation(losses, edge: str, bound: float) -> None:
    found = q.lr_optimum(LRS, losses)
    assert (found.edge, found.log2_lr) == (edge, bound)
    assert (found.low, found.high) == ((-math.inf, bound) if edge == "low" else (bound, math.inf))


@pytest.mark.parametrize("losses, expected", [
    ([5.0, 3, 1, 1, 3, 5, 7], MIDDLE - 0.5),  # two tied neighbours: halfway between them
    ([1.0, 1, 3, 4, 5, 6, 7], math.log2(LRS[0]) + 0.5),  # tied at the edge: the tie brackets the optimum
    ([5.0, 1, 1, 1, 3, 5, 7], math.log2(LRS[2])),  # a flat bottom of three: its middle, unrefined
])
def test_ties(losses, expected: float) -> None:
    found = q.lr_optimum(LRS, losses)
    assert found.edge == "" and found.log2_lr == pytest.approx(expected)


def test_a_diverged_neighbour_leaves_the_grid_point_and_missing_runs_are_left_out() -> None:
    losses = [5.0, 3, 2, 1, math.inf, math.inf, math.inf]
    assert q.lr_optimum(LRS, losses).log2_lr == MIDDLE
    assert q.lr_optimum(LRS, [5.0, 3, math.nan, 1, 2, 6, 7]).log2_lr == pytest.approx(
        q.lr_optimum(LRS[:2] + LRS[3:], [5.0, 3, 1, 2, 6, 7]).log2_lr)
    assert math.isnan(q.lr_optimum(LRS, [math.inf] * 7).log2_lr)


def test_the_shift_in_octaves_and_its_size() -> None:
    interior = q.LrOptimum(-10.0, -10.0, -10.0)
    deeper = q.LrOptimum(-12.5, -12.5, -12.5)
    assert q.octave_shift(interior, deeper) == (-2.5, -2.5)
    assert q.size_range(q.octave_shift(interior, deeper)) == (2.5, 2.5)
    at_low_end = q.LrOptimum(-13.0, -math.inf, -13.0, "low")
    assert q.octave_shift(interior, at_low_end) == (-math.inf, -3.0)  # moved down by 3 octaves or more
    assert q.size_range((-math.inf, -3.0)) == (3.0, math.inf)
    assert q.size_range((-0.5, math.inf)) == (0.0, math.inf)


# ---- the finding -------------------------------------------------------------------------------------------

def sweeps(centres: dict[tuple[str, int], float], seeds=(0, 1, 2), jitter: dict | None = None) -> Evidence:
    """Runs whose final loss is a parabola in log₂ lr with its vertex at MIDDLE + centres[(param, depth)]
    (+ jitter[(param, depth, seed)]) octaves."""
    rows = []
    for (param, depth), centre in centres.items():
        for seed in seeds:
            vertex = MIDDLE + centre + (jitter or {}).get((param, depth, seed), 0.0)
            for lr in LRS:
                rows.append({"run": len(rows), "status": "completed", "depth_param": param, "depth": depth,
                             "train.lr": lr, "seed": seed, "residual": True, "width": 100,
                             "outcome_loss": 1 + 0.05 * (math.log2(lr) - vertex) ** 2})
    return Evidence(pd.DataFrame(rows), ["depth", "depth_param", "train.lr", "seed", "residual", "width"])


def transfer(ev: Evidence, param: str = "completep"):
    found = [f for f in findings.lr_transfer(ev) if f"depth_param={param}" in f.comparison]
    assert len(found) == 1, [f.text() for f in findings.lr_transfer(ev)]
    return found[0]


def test_agrees_when_standard_drifts_and_completep_stays() -> None:
    ev = sweeps({("standard", 2): 0, ("standard", 32): -2.0, ("completep", 2): 0, ("completep", 32): 0.2},
                jitter={("completep", 32, 1): 0.1, ("standard", 32, 2): -0.3})
    found = transfer(ev)
    assert found.verdict == AGREES, found.text()
    assert "shift -2.00 octaves" in found.value and "shift +0.20 octaves" in found.value
    assert "3 seeds" in found.value and not found.settle


def test_disagrees_when_completep_drifts_too() -> None:
    found = transfer(sweeps({("standard", 2): 0, ("standard", 32): -2.0, ("completep", 2): 0,
                             ("completep", 32): -1.5}))
    assert found.verdict == DISAGREES, found.text()


def test_copies_at_one_lr_give_the_same_optimum_in_either_order() -> None:
    """Two runs at one lr (a copied run dir): their mean decides, a diverged copy makes that lr ∞, whatever
    order the rows come in (keeping the first row made the optimum depend on directory order)."""
    lrs = [1.0, 2.0, 2.0, 4.0]
    one, other = q.lr_optimum(lrs, [0.5, math.inf, 0.2, 0.6]), q.lr_optimum(lrs, [0.5, 0.2, math.inf, 0.6])
    assert one == other
    assert (one.edge, one.log2_lr) == ("low", 0.0)  # the copy that diverged rules lr 2 out
    assert q.lr_optimum(lrs, [0.5, 0.1, 0.3, 0.6]).log2_lr == q.lr_optimum([1.0, 2.0, 4.0], [0.5, 0.2, 0.6]).log2_lr


def test_a_seed_swept_at_one_end_depth_only_is_counted_not_dropped() -> None:
    ev = sweeps({("standard", 2): 0, ("standard", 32): -2.0, ("completep", 2): 0, ("completep", 32): 0.2},
                seeds=(0, 1, 2, 3))
    runs = ev.runs
    ev = Evidence(runs[~(runs["depth_param"].eq("completep") & runs["depth"].eq(32) & runs["seed"].eq(3))],
                  ev.config_keys)
    found = transfer(ev)
    assert found.verdict == AGREES and "1 of 4 not measurable" in found.value, found.text()


def test_disagrees_when_the_standard_optimum_does_not_move() -> None:
    found = transfer(sweeps({("standard", 2): 0, ("standard", 32): 0.3, ("completep", 2): 0, ("completep", 32): 0.1}))
    assert found.verdict == DISAGREES and "standard: " in found.value and "→ disagrees" in found.value


@pytest.mark.parametrize("centres, jitter, reason", [
    ({("completep", 32): 0.75}, None, "within the margin"),  # between ½ and 1 octave
    ({("completep", 32): 0.2}, {("completep", 32, 1): 1.3}, "seeds split"),
])
def test_inconclusive_between_the_margins_or_when_seeds_split(centres, jitter, reason: str) -> None:
    found = transfer(sweeps({("standard", 2): 0, ("standard", 32): -2.0, ("completep", 2): 0, **centres},
                            jitter=jitter))
    assert found.verdict == INCONCLUSIVE and reason in found.value, found.text()
    assert "seed=0,1,2,3,4" in found.settle


def test_an_edge_bound_that_decides_nothing_is_inconclusive_and_asks_for_a_wider_grid() -> None:
    # completep at depth 2 best beyond the largest lr (bound ≥ −7.29), at depth 32 half an octave below it:
    # the shift is ≤ −0.5, so |shift| ≥ 0.5: it may be ½ (agrees) or more than 1 (disagrees)
    found = transfer(sweeps({("standard", 2): 0, ("standard", 32): -2.0, ("completep", 2): 4.0,
                             ("completep", 32): 2.5}))
    assert found.verdict == INCONCLUSIVE, found.text()
    assert "at the grid's high end" in found.value
    assert "train.lr=5e-05,0.0001," in found.settle and ",0.0064,0.0128" in found.settle


def test_an_edge_bound_that_decides_counts() -> None:
    # standard's deep optimum below the grid: shift ≤ −3.3 octaves, |shift| ≥ 3.3, a drift whatever lies beyond
    found = transfer(sweeps({("standard", 2): 0, ("standard", 32): -6.0, ("completep", 2): 0, ("completep", 32): 0}))
    assert found.verdict == AGREES and "3/3 at the grid's low end" in found.value, found.text()


def test_depth_mup_is_judged_on_its_own_and_every_depth_is_shown() -> None:
    ev = sweeps({("standard", 2): 0, ("standard", 8): -1.0, ("standard", 32): -2.0, ("depth_mup", 2): 0,
                 ("depth_mup", 8): 0.1, ("depth_mup", 32): 0.3})
    found = transfer(ev, "depth_mup")
    assert found.verdict == AGREES and found.source.startswith("Bordelon et al. 2023")
    assert "at depth 8" in found.value and not [f for f in findings.lr_transfer(ev) if "completep" in f.comparison]


def test_left_out_without_standard_runs_or_a_second_depth_or_skips() -> None:
    assert findings.lr_transfer(sweeps({("completep", 2): 0, ("completep", 32): 0})) == []
    assert findings.lr_transfer(sweeps({("standard", 2): 0, ("completep", 2): 0})) == []
    plain = sweeps({("standard", 2): 0, ("standard", 32): -2.0})
    plain.runs["residual"] = False
    assert findings.lr_transfer(plain) == [] and findings.lr_transfer_curves(plain).empty


def test_runs_recorded_before_depth_param_existed_are_standard() -> None:
    ev = sweeps({("standard", 2): 0, ("standard", 32): -2.0, ("completep", 2): 0, ("completep", 32): 0})
    ev.runs["depth_param"] = ev.runs["depth_param"].replace("standard", np.nan)
    assert transfer(ev).verdict == AGREES


def test_standard_runs_at_another_width_are_not_compared() -> None:
    at_100 = sweeps({("standard", 2): 0, ("standard", 32): -2.0, ("completep", 2): 0, ("completep", 32): 0})
    at_50 = sweeps({("standard", 2): 0, ("standard", 32): 0.0}).runs.assign(width=50)  # would disagree
    ev = Evidence(pd.concat([at_100.runs, at_50.assign(run=at_50["run"] + 1000)], ignore_index=True),
                  at_100.config_keys)
    found = transfer(ev)
    assert found.verdict == AGREES and "1 matched setting" in found.value, found.text()


def test_the_report_draws_lr_transfer_and_judges_the_files(tmp_path: Path) -> None:
    runs = [{"depth_param": param, "depth": depth, "train.lr": lr, "model": "mlp", "task": "mnist1d",
             "train.steps": 20, "log_every": 10, "train.eval_every": 10, "width": 8,
             "_final_loss": 1 + 0.05 * (math.log2(lr) - MIDDLE - (-2.0 if (param, depth) == ("standard", 32) else 0)) ** 2}
            for param in ("standard", "completep") for depth in (2, 32) for lr in LRS[1:6]]
    sweep = write_sweep(tmp_path / "sweep", runs, swept_keys=["depth_param", "depth", "train.lr"])
    result = build_report([sweep])
    assert (result.out_dir / "lr_transfer.png").stat().st_size > 0
    line = next(text for text in result.findings if "Dey et al. 2025" in text)
    assert line.startswith("inconclusive") and "1 seed" in line and "leans agrees" in line  # 3 seeds decide

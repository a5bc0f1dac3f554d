"""The papers' quantities, computed from a run set's files: what findings judge.

- convergence speed: steps for a smoothed train loss to reach a target set per comparison;
- vanishing gradients: first-block over last-block gradient norm, at init and at the end;
- one parameter's gradient per block at init (Xiong et al.'s Fig. 3 plots the FFN's W₂, `ffn.fc2.weight`);
- a log-log slope over depth; the residual stream predicted from its per-block increments;
- the critical learning rate: the largest lr that trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from resbench.report.load import INIT_DRAW_LAYERS, INIT_DRAW_PARAMS, RunSet
from resbench.schema import Status

SMOOTHING_STEPS = 10  # trailing mean over this many steps (as the summary's final_loss)
NO_PROGRESS = 0.05  # a smoothed loss that ends within 5 % of the step-0 loss: the run did not train
W2 = "ffn.fc2.weight"  # the FFN's second weight matrix: the parameter of Xiong et al.'s Fig. 3


@dataclass
class Evidence:
    """What findings read: the per-run frame and the rows behind the per-run measures."""

    runs: pd.DataFrame  # aggregate.per_run: one row per run, config columns, summary, block measures
    config_keys: list[str]
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)  # run, step, loss, …
    init_layers: pd.DataFrame = field(default_factory=pd.DataFrame)  # layers.csv rows at step 0
    init_params: pd.DataFrame = field(default_factory=pd.DataFrame)  # grad_norms.csv rows at step 0 (blocks)
    # Step 0 of every init draw of every run (draw 0: the run's own step 0, which stands in for the draws of a
    # run without them): per block, and per block parameter.
    init_draw_layers: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INIT_DRAW_LAYERS))
    init_draw_params: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INIT_DRAW_PARAMS))

    @classmethod
    def of(cls, run_set: RunSet, runs: pd.DataFrame) -> Evidence:
        params = block_params(run_set.init_draw_params)
        step_zero = params.loc[params["draw"].eq(0)].dropna(subset=["grad_norm"])
        return cls(runs, list(run_set.config_keys), run_set.metrics, run_set.at["init"],
                   step_zero[["run", "layer", "param", "grad_norm"]].reset_index(drop=True),
                   run_set.init_draw_layers, params)


# ---------------------------------------------------------------------------------------------
# per-parameter gradients at init


def block_params(draw_params: pd.DataFrame) -> pd.DataFrame:
    """The rows of parameters inside the blocks (INIT_DRAW_PARAMS), `layer` as an integer."""
    rows = draw_params.dropna(subset=["layer"])
    return rows.astype({"layer": np.int64}).reset_index(drop=True)


def param_by_block(init_params: pd.DataFrame, param: str = W2) -> pd.DataFrame:
    """One parameter's step-0 gradient norm per block: rows run, columns first, last (block 0, block L−1)."""
    rows = init_params[init_params["param"].eq(param)]
    if rows.empty:
        return pd.DataFrame(columns=["first", "last"])
    ordered = rows.sort_values(["run", "layer"]).groupby("run")["grad_norm"]
    return pd.DataFrame({"first": ordered.first(), "last": ordered.last()})


# ---------------------------------------------------------------------------------------------
# convergence speed


def smoothed_loss(metrics: pd.DataFrame, run: int) -> pd.Series:
    """Trailing mean of a run's train loss over SMOOTHING_STEPS rows, indexed by step."""
    rows = metrics.loc[metrics["run"].eq(run), ["step", "loss"]].dropna().sort_values("step")
    return rows.set_index("step")["loss"].rolling(SMOOTHING_STEPS, min_periods=1).mean()


def initial_loss(metrics: pd.DataFrame) -> pd.Series:
    """Each run's train loss at step 0 (before any update), by run."""
    if metrics.empty or "loss" not in metrics:
        return pd.Series(dtype=float)
    return metrics.loc[metrics["step"].eq(0)].dropna(subset=["loss"]).groupby("run")["loss"].first()


def steps_to(curve: pd.Series, target: float) -> float:
    """First step at which the smoothed loss is at or below `target`; ∞ when it never is."""
    reached = curve.index[curve.to_numpy() <= target]
    return float(reached[0]) if len(reached) else np.inf


def trained(curve: pd.Series, diverged: bool) -> bool:
    """A run trained when it did not diverge and its smoothed loss ended clearly below its step-0 loss."""
    return (not diverged and len(curve) > 0 and bool(np.isfinite(curve.iloc[-1]))
            and curve.iloc[-1] < curve.iloc[0] * (1 - NO_PROGRESS))


def convergence_steps(metrics: pd.DataFrame, runs: pd.DataFrame, run_a: int,
                      run_b: int) -> tuple[float, float, float]:
    """(steps of a, steps of b, target): both runs to the worse side's final smoothed loss.

    A run that did not train (diverged, or stuck near its initial loss) never reaches a target (∞ steps)
    and sets none; when neither trained: NaN.
    """
    status = runs.set_index("run")["status"]
    curves = {run: smoothed_loss(metrics, run) for run in (run_a, run_b)}
    finals = {run: curve.iloc[-1] for run, curve in curves.items()
              if trained(curve, status.get(run) == Status.DIVERGED)}
    if not finals:
        return np.nan, np.nan, np.nan
    target = max(finals.values())
    steps = [steps_to(curves[run], target) if run in finals else np.inf for run in (run_a, run_b)]
    return steps[0], steps[1], target


# ---------------------------------------------------------------------------------------------
# depth and the residual stream


def log_log_slope(depths: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of log(value) against log(depth); NaN with fewer than 3 depths."""
    depths, values = np.asarray(depths, float), np.asarray(values, float)
    ok = np.isfinite(values) & (values > 0) & (depths > 0)
    if len(np.unique(depths[ok])) < 3:
        return np.nan
    return float(np.polyfit(np.log(depths[ok]), np.log(values[ok]), 1)[0])


def stream_increments(init_layers: pd.DataFrame, run: int) -> tuple[float, float]:
    """(input variance e², variance added per block δ) of a pre-LN stream at init.

    Each block adds its branch's variance: hidden_rms² of block l ≈ e² + δ·(l+1), fitted over the
    run's blocks by least squares.
    """
    rows = init_layers.loc[init_layers["run"].eq(run), ["layer", "hidden_rms"]].dropna().sort_values("layer")
    if len(rows) < 2:
        return np.nan, np.nan
    slope, intercept = np.polyfit(rows["layer"].to_numpy() + 1.0, rows["hidden_rms"].to_numpy() ** 2, 1)
    return float(intercept), float(slope)


def predicted_stream_rms(input_variance: float, per_block: float, depth: float) -> float:
    """RMS of the stream leaving the last of `depth` blocks when each adds `per_block` variance."""
    total = input_variance + per_block * depth
    return float(np.sqrt(total)) if total > 0 else np.nan


# ---------------------------------------------------------------------------------------------
# learning rates


def critical_lr(lrs: Sequence[float], losses: Sequence[float], best: float, margin: float) -> float:
    """Largest lr whose run trained: a finite loss within `margin` (relative) of `best`; NaN if none did.

    `best` is the best loss of the whole comparison (both placements at that depth): a stack that stalls
    at every lr has no lr that trained, rather than its own stalled best.
    """
    lrs, losses = np.asarray(lrs, float), np.asarray(losses, float)
    trained = np.isfinite(losses) & (losses <= best * (1 + margin))
    return float(lrs[trained].max()) if trained.any() else np.nan


# ---------------------------------------------------------------------------------------------
# the optimal learning rate (depth-wise transfer)


@dataclass(frozen=True)
class LrOptimum:
    """The best lr of one lr sweep, on the log₂ lr axis (octaves).

    Interior: the vertex of the parabola through the grid's minimum and its two neighbours (low = high =
    log2_lr). At the grid's edge the optimum is only bounded: `edge` says which side, and (low, high) is
    (−∞, log₂ of the smallest lr] or [log₂ of the largest lr, ∞); `log2_lr` is that edge.
    """

    log2_lr: float
    low: float
    high: float
    edge: str = ""  # "" (interior), "low" (at the smallest lr) or "high" (at the largest)

    @property
    def lr(self) -> float:
        return float(2.0 ** self.log2_lr)


NO_OPTIMUM = LrOptimum(np.nan, np.nan, np.nan)


def parabola_vertex(x: Sequence[float], y: Sequence[float]) -> float:
    """x of the vertex of the parabola through three points whose middle one is the lowest; the middle x
    when they are collinear (a flat bottom has no vertex to refine to)."""
    (x0, x1, x2), (y0, y1, y2) = x, y
    denominator = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    if denominator == 0:
        return float(x1)
    numerator = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    return float(np.clip(x1 - 0.5 * numerator / denominator, x0, x2))


def lr_optimum(lrs: Sequence[float], losses: Sequence[float]) -> LrOptimum:
    """The optimal lr of one sweep: the lowest final loss over the grid, refined in log₂ lr by a parabola
    through it and its two neighbours (a diverged run's loss is ∞; a missing one, NaN, is left out).

    Ties: of the lrs sharing the lowest loss, the middle one inside the grid is the centre (two tied
    neighbours put the vertex halfway between them). A minimum at the grid's edge is reported as a bound,
    never extrapolated; a neighbour that diverged leaves the grid point unrefined.
    """
    frame = pd.DataFrame({"x": np.log2(np.asarray(lrs, float)), "y": np.asarray(losses, float)})
    frame = frame.dropna().sort_values("x").drop_duplicates("x")
    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
    if len(x) == 0 or not np.isfinite(y.min()):
        return NO_OPTIMUM
    tied = np.flatnonzero(y == y.min())
    inside = tied[(tied > 0) & (tied < len(x) - 1)]
    if len(inside) == 0:
        at_low = tied[0] == 0
        edge_x = float(x[0] if at_low else x[-1])
        return LrOptimum(edge_x, -np.inf if at_low else edge_x, edge_x if at_low else np.inf,
                         "low" if at_low else "high")
    centre = int(inside[(len(inside) - 1) // 2])
    around = slice(centre - 1, centre + 2)
    if not np.isfinite(y[around]).all():
        return LrOptimum(float(x[centre]), float(x[centre]), float(x[centre]))
    vertex = parabola_vertex(x[around], y[around])
    return LrOptimum(vertex, vertex, vertex)


def octave_shift(shallow: LrOptimum, deep: LrOptimum) -> tuple[float, float]:
    """(lowest, highest) value the shift log₂(deep optimum / shallow optimum) can take: one number twice
    when both optima are interior, an open interval when one is at its grid's edge."""
    return deep.low - shallow.high, deep.high - shallow.low


def size_range(shift: tuple[float, float]) -> tuple[float, float]:
    """(smallest, largest) |shift| over the interval `shift`."""
    low, high = shift
    if low <= 0 <= high:
        return 0.0, max(-low, high)
    return min(abs(low), abs(high)), max(abs(low), abs(high))

"""The papers' quantities, computed from a run set's files: what findings judge.

- convergence speed: steps for a smoothed train loss to reach a target set per comparison;
- vanishing gradients: first-block over last-block gradient norm, at init and at the end;
- one parameter's gradient per block at init (Xiong et al.'s Fig. 3 plots the FFN's W₂, `ffn.fc2.weight`);
- a log-log slope over depth; the residual stream predicted from its per-block increments;
- the critical learning rate: the largest lr that trained;
- the rate at which a quantity falls per block (Dong et al.'s rank residual).

Quantities at init are read per init draw (`Evidence.init_draw_layers`, `init_draw_params`): every draw of
every run is one measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from resbench.report.aggregate import format_value, profile_rows
from resbench.report.load import INIT_DRAW_LAYERS, INIT_DRAW_PARAMS, RunSet
from resbench.schema import DRAW, STACK, Status

SMOOTHING_STEPS = 10  # trailing mean over this many steps (as the summary's final_loss)
NO_PROGRESS = 0.05  # a smoothed loss that ends within 5 % of the step-0 loss: the run did not train
W2 = "ffn.fc2.weight"  # the FFN's second weight matrix: the parameter of Xiong et al.'s Fig. 3
# Keys that shape training only: step 0 (its batch, its model, its gradients) is the same whatever they are.
TRAINING_ONLY = ("train.steps", "train.lr", "train.warmup", "train.optimizer", "train.weight_decay", "train.clip",
                 "train.eval_every", "train.checkpoint_every", "log_every", "logger", "threads")


@dataclass
class Evidence:
    """What findings read: the per-run frame and the rows behind the per-run measures."""

    runs: pd.DataFrame  # aggregate.per_run: one row per run, config columns, summary, block measures
    config_keys: list[str]
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)  # run, step, loss, …
    # Step 0 of every init draw of every run (draw 0: the run's own step 0, which stands in for the draws of a
    # run without them): per block, and per block parameter. Every quantity at init is read from these.
    init_draw_layers: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INIT_DRAW_LAYERS))
    init_draw_params: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INIT_DRAW_PARAMS))

    @classmethod
    def of(cls, run_set: RunSet, runs: pd.DataFrame) -> Evidence:
        return cls(runs, list(run_set.config_keys), run_set.metrics, init_draw_layers=run_set.init_draw_layers,
                   init_draw_params=block_params(run_set.init_draw_params))

    @cached_property
    def at_init(self) -> Evidence:
        """The evidence of quantities at init: one run per initialisation (computed once per Evidence).

        Runs that differ only in TRAINING_ONLY keys (warmup, lr, steps, …) measured the same step 0, as do
        copies of one config: they become one run (the lowest id), their init rows averaged, and the
        TRAINING_ONLY keys leave `config_keys`. A run without a seed is never merged with another.
        """
        keys = [key for key in self.config_keys if key not in TRAINING_ONLY]
        present = [key for key in keys if key in self.runs]
        texts = [self.runs[key].map(format_value) for key in present]
        seeds = self.runs["seed"] if "seed" in self.runs else pd.Series(np.nan, index=self.runs.index)
        unseeded = np.where(seeds.isna(), "run " + self.runs["run"].astype(str), "")
        identity = pd.concat([*texts, pd.Series(unseeded, index=self.runs.index)], axis=1).agg("|".join, axis=1)
        kept = self.runs.groupby(identity, sort=False)["run"].transform("min")
        to_kept = dict(zip(self.runs["run"], kept))
        return replace(self, runs=self.runs[self.runs["run"].eq(kept)], config_keys=keys,
                       init_draw_layers=_merged(self.init_draw_layers, to_kept, ["run", DRAW, STACK, "layer"]),
                       init_draw_params=_merged(self.init_draw_params, to_kept, ["run", DRAW, STACK, "layer", "param"]))

    @cached_property
    def w2_ends(self) -> pd.DataFrame:
        """The FFN W₂'s init gradient norm at the first and last block of each (run, draw) (`param_by_block`),
        read once per Evidence: Fig. 3, the depth exponent and the stream all start from it."""
        return param_by_block(self.init_draw_params)


def _merged(rows: pd.DataFrame, to_kept: dict[int, int], by: list[str]) -> pd.DataFrame:
    """`rows` of the kept runs only, each kept run's rows averaged with those of the runs merged into it."""
    rows = rows[rows["run"].isin(to_kept.keys())]
    if rows.empty:
        return rows
    rows = rows.assign(run=rows["run"].map(to_kept))
    return rows.groupby(by, as_index=False, sort=False).mean(numeric_only=True)


# ---------------------------------------------------------------------------------------------
# per-parameter gradients at init


def block_params(draw_params: pd.DataFrame) -> pd.DataFrame:
    """The rows of parameters inside the blocks (INIT_DRAW_PARAMS), `layer` as an integer."""
    rows = draw_params.dropna(subset=["layer"])
    return rows.astype({"layer": np.int64}).reset_index(drop=True)


def _ends(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """`column` at the first and the last block of each (run, draw): index (run, draw), columns first, last.

    Block 0 and the run's deepest block (over all its draws): a draw whose rows stop short of either (a file
    cut off while it was written) has NaN there, not a middle block standing in for an end.
    """
    ordered = rows.sort_values(["run", DRAW, "layer"])
    by_draw = ordered.groupby(["run", DRAW], sort=False)
    first, last = (end.set_index(["run", DRAW]) for end in (by_draw.head(1), by_draw.tail(1)))
    deepest = ordered.groupby("run")["layer"].max()
    at_last = last["layer"].to_numpy() == deepest.reindex(last.index.get_level_values(0)).to_numpy()
    return pd.DataFrame({"first": first[column].where(first["layer"].eq(0)), "last": last[column].where(at_last)})


def param_by_block(init_params: pd.DataFrame, param: str = W2) -> pd.DataFrame:
    """One parameter's init gradient norm at block 0 and block L−1 of each (run, draw) (the decoder's, for an
    encoder–decoder): index (run, draw), columns first, last."""
    return _ends(profile_rows(init_params[init_params["param"].eq(param)]), "grad_norm")


def block_ends(init_layers: pd.DataFrame, column: str, stack: str | None = None) -> pd.DataFrame:
    """A block probe at init at the first and the last block of each (run, draw): of `stack` when given, else
    of the run's profile stack (the decoder of an encoder–decoder). Index (run, draw), columns first, last."""
    rows = profile_rows(init_layers) if stack is None else init_layers[init_layers[STACK].eq(stack)]
    return _ends(rows, column)


def of_run(frame: pd.DataFrame, run: int) -> pd.DataFrame:
    """The rows of one run in a frame indexed by (run, draw), indexed by draw (empty when it has none)."""
    if run not in frame.index.get_level_values(0):
        return frame.iloc[:0].droplevel(0)
    return frame.xs(run, level=0)


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


def profiles(init_layers: pd.DataFrame, column: str) -> pd.Series:
    """`column` per block at init of every run's profile stack, index (run, draw, layer), sorted: `profile`
    then reads one draw by its index instead of scanning every row."""
    rows = profile_rows(init_layers).dropna(subset=[column])
    return rows.set_index(["run", DRAW, "layer"])[column].sort_index()


def profile(by_block: pd.Series, run: int, draw: int) -> pd.Series:
    """One run's draw of `profiles(...)`, indexed by block (empty when it has none)."""
    try:
        return by_block.loc[(run, draw)]
    except KeyError:
        return by_block.iloc[:0].droplevel([0, 1])


def stream_increments(rms: pd.Series) -> tuple[float, float]:
    """(input variance e², variance added per block δ) of a pre-LN stream at init, from its RMS per block.

    Each block adds its branch's variance: hidden_rms² of block l ≈ e² + δ·(l+1), fitted over the
    blocks by least squares.
    """
    if len(rms) < 2:
        return np.nan, np.nan
    slope, intercept = np.polyfit(rms.index.to_numpy(float) + 1.0, rms.to_numpy(float) ** 2, 1)
    return float(intercept), float(slope)


def predicted_stream_rms(input_variance: float, per_block: float, depth: float) -> float:
    """RMS of the stream leaving the last of `depth` blocks when each adds `per_block` variance."""
    total = input_variance + per_block * depth
    return float(np.sqrt(total)) if total > 0 else np.nan


def blocks_over_input(input_variance: float, per_block: float, depth: float) -> float:
    """δ·L / e²: the variance `depth` blocks add to the stream over the variance it enters with (∞ when the
    fit leaves none to the input but the blocks add some)."""
    if not np.isfinite(input_variance) or not np.isfinite(per_block):
        return np.nan
    if input_variance <= 0:
        return np.inf if per_block > 0 else np.nan
    return per_block * depth / input_variance


def rate_per_block(values: pd.Series) -> tuple[float, float, float]:
    """(factor per block over the whole stack, over its first half, over its second half) of a positive
    quantity per block: exp of the least-squares slope of its log against the block index. A single
    exponential fall has one factor throughout; a doubly exponential one falls ever faster (the second
    half's factor far below the first's)."""
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) < 4:
        return np.nan, np.nan, np.nan
    blocks, logs = values.index.to_numpy(float), np.log(values.to_numpy(float))
    half = len(values) // 2
    slopes = [np.polyfit(blocks[cut], logs[cut], 1)[0] for cut in (slice(None), slice(None, half + 1),
                                                                   slice(half, None))]
    return tuple(float(np.exp(slope)) for slope in slopes)


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
    through it and its two neighbours (a diverged run's loss is ∞; a missing one, NaN, is left out; runs
    sharing an lr, copies of one config, count as their mean).

    Ties: of the lrs sharing the lowest loss, the middle one inside the grid is the centre (two tied
    neighbours put the vertex halfway between them). A minimum at the grid's edge is reported as a bound,
    never extrapolated; a neighbour that diverged leaves the grid point unrefined.
    """
    frame = pd.DataFrame({"x": np.log2(np.asarray(lrs, float)), "y": np.asarray(losses, float)}).dropna()
    by_lr = frame.groupby("x")["y"].mean()  # copies at one lr: their mean, ∞ if one diverged; never row order
    x, y = by_lr.index.to_numpy(), by_lr.to_numpy()
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

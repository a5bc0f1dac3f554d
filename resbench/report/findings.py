"""Findings: the published claims of REFERENCES.md, each judged on matched runs (see `verdict`).

Every finding states its claim, the paper's quantity, the comparison and the margin up front (the
`Claim` constants below, mirrored in README's findings table); its function picks the runs the claim
is about, measures the quantity (`quantities`) and returns zero findings when those runs are absent,
else one line whose verdict is agrees, disagrees or inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from resbench.registries import STANDARD_DEPTH_PARAM as STANDARD
from resbench.report import quantities as q
from resbench.report.aggregate import format_value
from resbench.report.quantities import Evidence
from resbench.report.verdict import (
    AGREES,
    Claim,
    Finding,
    Margin,
    Part,
    Units,
    finding,
    number,
    pairs,
    part,
    singles,
)
from resbench.schema import DONE

LN10 = math.log(10)
TEN_CLASS_TASKS = ("digits", "mnist", "mnist1d")  # chance loss ln 10
DEEP_PLAIN_MIN_DEPTH = 10  # signal collapse is about deep plain stacks; shallow ones train
THEORY_EXPONENT = {"post": 0.0, "pre": -0.5}  # Xiong et al.: last-layer gradient ∝ L^exponent
LR_TRAINED_MARGIN = 0.10  # a run "trained" when its final loss is within 10 % of the best of its lr sweep
SHOWN_SETTINGS = 6  # per-setting values listed in a line before "…"

# ---------------------------------------------------------------------------------------------
# the claims, stated before any data

FIG3_POST = Claim(
    "Xiong et al. 2020", "at init, post-LN's FFN gradients grow toward the last layer (their Fig. 3)",
    "‖∇W₂‖ (`ffn.fc2.weight`) of the last block over the first at step 0, batch-averaged under init_batches",
    "every post-LN Transformer run with skips", Margin(1.5, 1.2, "×"))
FIG3_PRE = Claim(
    "Xiong et al. 2020", "at init, pre-LN's FFN gradients stay flat or fall toward the last layer (their Fig. 3)",
    FIG3_POST.quantity, "every pre-LN Transformer run with skips", Margin(1.2, 1.5, "×"))
EXPONENT = Claim(
    "Xiong et al. 2020", "the last layer's gradient is O(d·√ln d) under post-LN whatever L, O(d·√(ln d / L)) "
    "under pre-LN: exponent 0 and −½ in L",
    "log-log slope of the last block's ‖∇W₂‖ at init against depth L (≥ 3 depths), minus the theory's exponent",
    "per placement, fitted over the depths of each matched setting and seed", Margin(0.2, 0.4))
WARMUP_POST = Claim(
    "Xiong et al. 2020", "post-LN trained with Adam and no learning-rate warmup trains badly; warmup rescues it",
    "final train loss without warmup over with warmup, − 1 (a diverged run counts as ∞)",
    "post-LN Transformer runs, train.warmup = 0 vs > 0, matched", Margin(0.10, 0.02, "%"))
WARMUP_PRE = Claim(
    "Xiong et al. 2020", "pre-LN trains without learning-rate warmup",
    WARMUP_POST.quantity, "pre-LN Transformer runs, train.warmup = 0 vs > 0, matched", Margin(0.05, 0.10, "%"))
STREAM = Claim(
    "Xiong et al. 2020", "under pre-LN the residual stream's squared norm grows linearly with depth, each "
    "branch adding its variance",
    "hidden-state RMS leaving the last block at init, measured over predicted √(e² + δ·L), where e² and δ "
    "(variance in, variance each block adds) are fitted on the blocks of the shallowest run; shown as the "
    "larger of measured/predicted and its inverse",
    "pre-LN Transformer runs with skips, each deeper run whose prediction grows visibly (premise margin) "
    "against the shallowest run of its matched setting and seed", Margin(1.25, 1.5, "×"))
STREAM_GROWS = Margin(1.25, 1.1, "×")  # premise: the prediction itself grows by this much
RANK_DEPTH = Claim(
    "Dong et al. 2021", "without skip connections, pure self-attention loses rank with depth (tokens collapse "
    "toward one vector)",
    "rank residual ‖X − 1·x̄ᵀ‖/‖X‖ at the last block at init, deepest over shallowest",
    "attention-only Transformers (model.ffn_mult=0), residual=false, across depth within matched settings",
    Margin(0.5, 0.8, "×"))
RANK_SKIPS = Claim(
    "Dong et al. 2021", "skip connections prevent the rank collapse of pure self-attention",
    "rank residual at the last block at init, without skips over with skips, at the largest depth",
    "attention-only Transformers (model.ffn_mult=0), residual=false vs true, matched", Margin(0.5, 0.8, "×"))
DEEPNET = Claim(
    "Wang et al. 2022", "DeepNorm trains post-LN-style stacks at depths where post-LN struggles",
    "final train loss at the largest depth over the smallest, − 1 (diverged counts as ∞)",
    "post vs deepnorm with skips, both at the smallest and largest depth both reached, matched",
    Margin(0.05, 0.10, "%"))
DEEPNET_POST_STRUGGLES = Margin(0.10, 0.02, "%")  # premise: post-LN worse deep than shallow
REZERO = Claim(
    "Bachlechner et al. 2020", "a zero-initialised scalar on each residual branch (ReZero, no normalization) "
    "converges faster than normalized stacks",
    "convergence speed: steps for the smoothed train loss to reach the worse side's final loss; other side's "
    "steps over ReZero's (a diverged run never reaches it)",
    "residual=rezero norm=none vs residual=true norm={norm}, matched on depth, lr, steps and every other key",
    Margin(1.25, 0.8, "×"))
# premise: the shallowest plain net trains (degradation is about depth, not about a net that never trains)
DEGRADATION_SHALLOW_TRAINS = Margin(0.9, 0.75)  # share of the skips' loss decrease the shallow plain net makes
DEGRADATION = Claim(
    "He et al. 2016", "deeper plain nets reach a higher training loss than shallower ones (seen with "
    "normalization), while the same depths with identity skips train",
    "final train loss: plain at the largest depth over plain at the smallest, and plain over skips at the "
    "largest depth, each − 1",
    "normalized (norm ≠ none) runs, residual=false vs true, across depth, matched", Margin(0.10, 0.02, "%"))
SIGNAL = Claim(
    "Glorot & Bengio 2010; Schoenholz et al. 2017", "a deep plain net at an init off the critical line loses its "
    "forward signal (every example maps to almost the same output) and sits at the chance loss",
    "spread of the last block's output across examples at init (the MLP's rank residual ‖X − 1·x̄ᵀ‖/‖X‖ over "
    "the batch), and the final train loss against ln 10",
    f"plain MLPs without normalization (residual=false norm=none) on a 10-class task, at the largest depth "
    f"(≥ {DEEP_PLAIN_MIN_DEPTH})",
    Margin(0.01, 0.1))
SIGNAL_LOSS = Margin(LN10 - 0.15, LN10 - 0.5)
VANISHING = Claim(
    "the seed article", "residual connections let gradients reach early layers directly, so they do not vanish",
    "first-block over last-block gradient norm (≪ 1: vanishing), with skips over without, at init and at the end",
    "residual=true vs false at norm={norm}, at the largest depth both reached, matched", Margin(2.0, 0.5, "×"))
CONVERGENCE = Claim(
    "the seed article", "layer normalization speeds up convergence",
    "convergence speed: steps for the smoothed train loss to reach the worse side's final loss, "
    "un-normalized over normalized",
    "norm={norm} vs norm=none, matched (same residual)", Margin(1.25, 0.8, "×"))
BLOCK_VANISHING = Claim(
    "the seed article", "its block (normalization and a skip) keeps gradients from vanishing where the plain "
    "net's vanish", VANISHING.quantity.replace("with skips over without", "block over plain"),
    "norm={norm} residual=true vs the plain net norm=none residual=false, matched (vanishing: at the largest "
    "depth both reached)", VANISHING.margin)
BLOCK_CONVERGENCE = Claim(
    "the seed article", "its block (normalization and a skip) converges faster than the plain net",
    CONVERGENCE.quantity.replace("un-normalized over normalized", "plain over block"),
    BLOCK_VANISHING.comparison, CONVERGENCE.margin)
CRITICAL_LR = Claim(
    "Xiong et al. 2020", "pre-LN tolerates larger learning rates than post-LN without warmup",
    f"critical learning rate: the largest train.lr whose run stayed finite and ended within "
    f"{LR_TRAINED_MARGIN:.0%} of the best final loss any run of its matched setting and seed reached (either "
    f"norm, any lr); pre-LN's over post-LN's (none trained counts as 0)",
    "pre vs post Transformer runs with skips and no warmup, over ≥ 2 learning rates, matched",
    Margin(2.0, 0.5, "×"))


# Depth-wise learning-rate transfer: the shift of the optimal lr from the shallowest to the deepest depth, in
# octaves. Under a depth parametrization it stays within half an octave; under the standard parametrization it
# moves by an octave or more (Bordelon et al. 2023; Yang et al. 2023; Dey et al. 2025, Fig. 1 left).
LR_STAYS = Margin(0.5, 1.0)  # |shift| in octaves under a depth parametrization
LR_DRIFTS = Margin(1.0, 0.5)  # |shift| in octaves under the standard parametrization
LR_TRANSFER_QUANTITY = (
    "optimal train.lr at each depth: the lowest final train loss over the lr grid (a diverged run counts "
    "as ∞), refined by a parabola in log₂ lr through it and its two neighbours (an optimum at the grid's "
    "edge is a bound, not extrapolated); its shift from the shallowest to the deepest depth in octaves, "
    "|log₂(deep / shallow)|")
LR_TRANSFER_COMPARISON = ("depth_param={param} vs standard, each seed's lr sweep at the shallowest and the "
                          "deepest depth both have, matched on every other key")
LR_TRANSFER = {
    "depth_mup": Claim(
        "Bordelon et al. 2023; Yang et al. 2023 (Depth-µP)",
        "a 1/√L multiplier on each residual branch, with Adam's block learning rate scaled by L^-½, keeps "
        "the optimal learning rate in place across depth, where the standard parametrization's drifts",
        LR_TRANSFER_QUANTITY, LR_TRANSFER_COMPARISON.format(param="depth_mup"), LR_STAYS),
    "completep": Claim(
        "Dey et al. 2025 (CompleteP)",
        "a 1/L multiplier on each residual branch (α = 1), with its learning-rate and ε rules, keeps the "
        "optimal learning rate in place across depth, where the standard parametrization's drifts",
        LR_TRANSFER_QUANTITY, LR_TRANSFER_COMPARISON.format(param="completep"), LR_STAYS),
}

# ---------------------------------------------------------------------------------------------
# selecting runs


def _text(runs: pd.DataFrame, key: str) -> pd.Series:
    return runs[key].map(format_value).str.lower() if key in runs else pd.Series("", index=runs.index)


def _is(runs: pd.DataFrame, key: str, *values: object) -> pd.Series:
    return _text(runs, key).isin([format_value(v).lower() for v in values])


def _model(runs: pd.DataFrame, name: str) -> pd.DataFrame:
    """Runs of one model (all runs when the model is not recorded)."""
    return runs[_is(runs, "model.name", name)] if "model.name" in runs else runs


def _depth(runs: pd.DataFrame) -> pd.Series:
    if "depth" not in runs:
        return pd.Series(np.nan, index=runs.index)
    return pd.to_numeric(runs["depth"], errors="coerce")


def _by_run(runs: pd.DataFrame, column: str) -> pd.Series:
    return runs.set_index("run")[column] if column in runs else pd.Series(dtype=float)


def _ratio(numerator: float, denominator: float) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.divide(numerator, denominator))


def _rise(before: float, after: float) -> float:
    """after / before − 1 (∞ when only `after` diverged, NaN when both did)."""
    return _ratio(after, before) - 1


def _per_setting(values: dict[str, str]) -> str:
    shown = [f"{setting or 'all'}: {value}" for setting, value in list(values.items())[:SHOWN_SETTINGS]]
    return "; ".join(shown) + ("; …" if len(values) > SHOWN_SETTINGS else "")


def _median_by_setting(units: Units, show: Callable[[float], str]) -> str:
    frame = pd.DataFrame({"setting": units.settings, "effect": units.effects})
    medians = frame.groupby("setting", sort=False)["effect"].median()
    return _per_setting({setting: show(value) for setting, value in medians.items()})


def _more_depths(runs: pd.DataFrame, wanted: int = 3) -> str:
    """`depth=6,12,24`: the depths there are, doubled up to `wanted` of them."""
    depths = sorted(set(_depth(runs).dropna().astype(int))) or [6]
    while len(depths) < wanted:
        depths.append(depths[-1] * 2)
    return "depth=" + ",".join(map(str, depths))


# ---------------------------------------------------------------------------------------------
# Xiong et al. 2020


def _with_skips(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[_is(runs, "residual", "true")]


def fig3_profile(ev: Evidence) -> list[Finding]:
    """Fig. 3: the FFN W₂ gradient's last/first block ratio at init, post-LN rising, pre-LN flat or falling."""
    w2 = q.param_by_block(ev.init_params)
    runs = _with_skips(_model(ev.runs, "transformer"))
    runs = runs[runs["run"].isin(w2.index)]
    found = []
    for norm, claim in (("post", FIG3_POST), ("pre", FIG3_PRE)):
        arm = runs[_is(runs, "norm", norm)]
        if arm.empty:
            continue
        units = Units()
        for unit in singles(arm, ev.config_keys).itertuples():
            units.add(_ratio(w2.at[unit.run, "last"], w2.at[unit.run, "first"]), unit.setting, unit.seed)
        shown = _median_by_setting(units, claim.margin.show)
        found.append(finding(claim, [part("", units, claim.margin, f"{norm}-LN last/first {shown}")], arm))
    return found


def _exponent_arm(ev: Evidence, norm: str) -> pd.DataFrame:
    runs = _with_skips(_model(ev.runs, "transformer"))
    return runs[_is(runs, "norm", norm) & runs["run"].isin(q.param_by_block(ev.init_params).index)]


def _exponent_fits(ev: Evidence, norm: str) -> tuple[pd.DataFrame, Units]:
    """Per (setting, seed): depths, last-block W₂ norms and the fitted slope; Units of |slope − theory|."""
    w2 = q.param_by_block(ev.init_params)
    arm = _exponent_arm(ev, norm)
    units, rows = Units(), []
    if arm.empty:
        return pd.DataFrame(), units
    table = singles(arm, ev.config_keys, ("depth",)).assign(depth=_depth(arm).to_numpy(),
                                                            last=w2.loc[arm["run"], "last"].to_numpy())
    for (setting, seed), cell in table.groupby(["setting", "seed"], sort=False):
        slope = q.log_log_slope(cell["depth"], cell["last"])
        units.add(abs(slope - THEORY_EXPONENT[norm]), setting, seed)
        rows += [(setting, seed, depth, last, slope) for depth, last in zip(cell["depth"], cell["last"])]
    return pd.DataFrame(rows, columns=["setting", "seed", "depth", "last", "slope"]), units


def depth_exponent(ev: Evidence) -> list[Finding]:
    """Xiong's theory across depth: the last block's W₂ init gradient against L, on a log-log scale."""
    found = []
    for norm in ("post", "pre"):
        fits, units = _exponent_fits(ev, norm)
        if fits.empty or fits["depth"].nunique() < 2:  # one depth: no exponent to speak of
            continue
        slopes = fits.drop_duplicates(["setting", "seed"])["slope"]
        theory = THEORY_EXPONENT[norm]
        values = (f"{norm}-LN slope {number(slopes.median())} (theory {theory:g}) over depths "
                  f"{', '.join(format_value(d) for d in sorted(fits['depth'].unique()))}")
        arm = _exponent_arm(ev, norm)
        found.append(finding(EXPONENT, [part("", units, EXPONENT.margin, values)], arm, extra=_more_depths(arm)))
    return found


def exponent_curves(ev: Evidence) -> pd.DataFrame:
    """For the plot: measured last-block W₂ norms per depth (median over seeds), the fitted line and the
    theory's line through the measured points' geometric mean; columns panel, line, side, x, y."""
    pieces = []
    for norm in ("post", "pre"):
        fits, _ = _exponent_fits(ev, norm)
        if fits.empty or fits["slope"].isna().all():
            continue
        measured = fits.groupby("depth")["last"].median()
        depths = measured.index.to_numpy(float)
        log_d, log_y = np.log(depths), np.log(measured.to_numpy())
        slope, intercept = np.polyfit(log_d, log_y, 1)
        theory = THEORY_EXPONENT[norm]
        lines = {
            "measured (median over seeds)": measured.to_numpy(),
            f"fit: slope {slope:.2f}": np.exp(intercept + slope * log_d),
            f"theory: slope {theory:g}": np.exp(log_y.mean() + theory * (log_d - log_d.mean())),
        }
        for line, values in lines.items():
            curve = {"panel": f"{norm}-LN", "line": line, "side": "", "x": depths, "y": values}
            pieces.append(pd.DataFrame(curve))
    return pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame()


def warmup(ev: Evidence) -> list[Finding]:
    """Post-LN with Adam needs warmup; pre-LN does not."""
    runs = _with_skips(_model(ev.runs, "transformer"))
    if "train.warmup" not in runs:
        return []
    if "train.optimizer" in runs:
        runs = runs[_text(runs, "train.optimizer").str.contains("adam")]
    warm = pd.to_numeric(runs["train.warmup"], errors="coerce")
    runs, warm = runs[warm.notna()], warm[warm.notna()]
    loss = _by_run(runs, "outcome_loss")
    found = []
    for norm, claim in (("post", WARMUP_POST), ("pre", WARMUP_PRE)):
        on = _is(runs, "norm", norm)
        if not ((warm > 0) & on).any() or not ((warm == 0) & on).any():
            continue
        matched = pairs(runs, ev.config_keys, ("train.warmup",), on & (warm > 0), on & (warm == 0))
        units = Units()
        for unit in matched.itertuples():
            units.add(_rise(loss[unit.run_a], loss[unit.run_b]), unit.setting, unit.seed)
        without, with_ = loss[matched["run_b"]], loss[matched["run_a"]]
        values = (f"{norm}-LN final train loss {number(without.median())} without warmup vs "
                  f"{number(with_.median())} with (medians); diverged without warmup: "
                  f"{int(np.isinf(without).sum())}/{len(without)}")
        found.append(finding(claim, [part("", units, claim.margin, values)], runs[on]))
    return found


def stream_growth(ev: Evidence) -> list[Finding]:
    """Pre-LN's stream grows as its branches' variances add up, predicted from the shallowest run."""
    runs = _with_skips(_model(ev.runs, "transformer"))
    runs = runs[_is(runs, "norm", "pre") & runs["run"].isin(ev.init_layers.get("run", pd.Series(dtype=int)))]
    if runs.empty or "hidden_rms_init_last" not in runs or _depth(runs).nunique() < 2:
        return []
    table = singles(runs, ev.config_keys, ("depth",)).assign(depth=_depth(runs).to_numpy(),
                                                             rms=runs["hidden_rms_init_last"].to_numpy())
    fit, growth, shown = Units(), Units(), {}
    for (setting, seed), cell in table.groupby(["setting", "seed"], sort=False):
        cell = cell.sort_values("depth")
        shallow = cell.iloc[0]
        variance_in, per_block = q.stream_increments(ev.init_layers, shallow["run"])
        grows = np.nan
        for deep in cell.iloc[1:].itertuples():
            predicted = q.predicted_stream_rms(variance_in, per_block, deep.depth)
            grows = _ratio(predicted, shallow["rms"])
            if STREAM_GROWS.judge(grows) == AGREES:  # only a prediction of visible growth can test the claim
                ratio = _ratio(deep.rms, predicted)
                fit.add(max(ratio, _ratio(1, ratio)), setting, seed)
            shown.setdefault(deep.depth, []).append((deep.rms, predicted))
        growth.add(grows, setting, seed)  # the premise: at the largest depth the prediction grows visibly
    medians = {f"depth {format_value(depth)}": "{} vs {}".format(*map(number, np.median(values, axis=0)))
               for depth, values in sorted(shown.items())}
    values = f"pre-LN last-block RMS measured vs predicted (medians) {_per_setting(medians)}"
    parts = [part("predicted growth", growth, STREAM_GROWS, "predicted RMS at the largest depth over the shallowest "
                  "run's measured RMS", premise=True),
             part("measured vs predicted", fit, STREAM.margin, values)]
    return [finding(STREAM, parts, runs, extra=_more_depths(runs),
                    margin_text=f"{STREAM.margin.text()}; premise: predicted growth {STREAM_GROWS.text()}")]


def critical_learning_rate(ev: Evidence) -> list[Finding]:
    """Per (norm, depth) the largest lr that trained; pre-LN's against post-LN's."""
    runs = _with_skips(_model(ev.runs, "transformer"))
    if "train.lr" not in runs:
        return []
    if "train.warmup" in runs:
        runs = runs[pd.to_numeric(runs["train.warmup"], errors="coerce").eq(0)]
    runs = runs[_is(runs, "norm", "post", "pre") & runs["outcome_loss"].notna()]
    lrs = pd.to_numeric(runs["train.lr"], errors="coerce")
    if lrs.nunique() < 2 or _is(runs, "norm", "post").sum() == 0 or _is(runs, "norm", "pre").sum() == 0:
        return []
    table = singles(runs, ev.config_keys, ("train.lr", "norm")).assign(
        lr=lrs.to_numpy(), norm=_text(runs, "norm").to_numpy(), loss=runs["outcome_loss"].to_numpy())
    units, critical = Units(), {}
    for (setting, seed), cell in table.groupby(["setting", "seed"], sort=False):
        finite = cell["loss"][np.isfinite(cell["loss"])]
        if finite.empty:
            continue
        found = {norm: q.critical_lr(rows["lr"], rows["loss"], finite.min(), LR_TRAINED_MARGIN)
                 for norm, rows in cell.groupby("norm") if rows["lr"].nunique() >= 2}
        if len(found) < 2:
            continue
        post, pre = (np.nan_to_num(found[n], nan=0.0) for n in ("post", "pre"))
        units.add(_ratio(pre, post), setting, seed)
        for norm in ("post", "pre"):
            critical.setdefault(f"{norm}-LN {setting}".strip(), []).append(found[norm])
    if not units.effects:
        return []
    largest = lrs.max()
    values = _per_setting({name: ("≥ " if np.nanmedian(v) >= largest else "") + number(np.nanmedian(v))
                           if not np.isnan(v).all() else "none trained" for name, v in critical.items()})
    extra = "train.lr=" + ",".join(f"{lr:g}" for lr in sorted(lrs.unique()) + [largest * 3])
    judged = part("", units, CRITICAL_LR.margin, "critical lr " + values)
    return [finding(CRITICAL_LR, [judged], runs, extra=extra)]


# ---------------------------------------------------------------------------------------------
# Dong et al. 2021


def _attention_only(runs: pd.DataFrame) -> pd.DataFrame:
    runs = _model(runs, "transformer")
    if "model.ffn_mult" not in runs:
        return runs.iloc[:0]
    return runs[pd.to_numeric(runs["model.ffn_mult"], errors="coerce").eq(0)]


def rank_collapse(ev: Evidence) -> list[Finding]:
    """Pure attention without skips loses rank with depth; skips prevent it."""
    runs = _attention_only(ev.runs)
    if "rank_residual_init_last" not in runs:
        return []
    runs = runs[runs["rank_residual_init_last"].notna()]
    rank, depth = _by_run(runs, "rank_residual_init_last"), _depth(runs)
    plain, skips = _is(runs, "residual", "false"), _is(runs, "residual", "true")
    found = []
    if plain.any() and depth[plain].nunique() >= 2:
        shallow, deep = depth[plain].min(), depth[plain].max()
        matched = pairs(runs, ev.config_keys, ("depth",), plain & depth.eq(deep), plain & depth.eq(shallow))
        units = Units()
        for unit in matched.itertuples():
            units.add(_ratio(rank[unit.run_a], rank[unit.run_b]), unit.setting, unit.seed)
        values = (f"without skips {number(rank[matched['run_b']].median())} at depth {format_value(shallow)} → "
                  f"{number(rank[matched['run_a']].median())} at depth {format_value(deep)}")
        found.append(finding(RANK_DEPTH, [part("", units, RANK_DEPTH.margin, values)], runs[plain]))
    if plain.any() and skips.any():
        deep = min(depth[plain].max(), depth[skips].max())
        at = depth.eq(deep)
        matched = pairs(runs, ev.config_keys, ("residual",), at & plain, at & skips)
        units = Units()
        for unit in matched.itertuples():
            units.add(_ratio(rank[unit.run_a], rank[unit.run_b]), unit.setting, unit.seed)
        end = _by_run(runs, "rank_residual_end_last")
        end_a, end_b = (number(end.reindex(matched[side]).median()) for side in ("run_a", "run_b"))
        values = (f"depth {format_value(deep)}: {number(rank[matched['run_a']].median())} without skips vs "
                  f"{number(rank[matched['run_b']].median())} with (after training {end_a} vs {end_b})")
        found.append(finding(RANK_SKIPS, [part("", units, RANK_SKIPS.margin, values)], runs[at]))
    return found


# ---------------------------------------------------------------------------------------------
# Wang et al. 2022, He et al. 2016, signal propagation


def _depth_rise(runs: pd.DataFrame, ev: Evidence, arm: pd.Series, low: float, high: float,
                loss: pd.Series) -> tuple[Units, str]:
    """Units of loss(high depth) / loss(low depth) − 1 within matched settings of one arm."""
    depth = _depth(runs)
    matched = pairs(runs, ev.config_keys, ("depth",), arm & depth.eq(low), arm & depth.eq(high))
    units = Units()
    for unit in matched.itertuples():
        units.add(_rise(loss[unit.run_a], loss[unit.run_b]), unit.setting, unit.seed)
    values = (f"{number(loss[matched['run_a']].median())} at depth {format_value(low)} → "
              f"{number(loss[matched['run_b']].median())} at depth {format_value(high)}")
    return units, values


def deepnorm_depth(ev: Evidence) -> list[Finding]:
    """Post-LN worse deep than shallow (the premise), DeepNorm within the margin of its shallow self."""
    runs = _with_skips(ev.runs)
    runs = runs[runs["outcome_loss"].notna()]
    post, deep = _is(runs, "norm", "post"), _is(runs, "norm", "deepnorm")
    depth = _depth(runs)
    common = sorted(set(depth[post].dropna()) & set(depth[deep].dropna()))
    if not post.any() or not deep.any() or len(common) < 2:
        return []
    loss = _by_run(runs, "outcome_loss")
    post_units, post_values = _depth_rise(runs, ev, post, common[0], common[-1], loss)
    deep_units, deep_values = _depth_rise(runs, ev, deep, common[0], common[-1], loss)
    parts = [part("post-LN", post_units, DEEPNET_POST_STRUGGLES, post_values, premise=True),
             part("deepnorm", deep_units, DEEPNET.margin, deep_values)]
    extra = f"depth={','.join(format_value(d) for d in common)},{format_value(common[-1] * 2)}"
    return [finding(DEEPNET, parts, runs[post | deep], extra=extra,
                    margin_text=f"deepnorm {DEEPNET.margin.text()}; "
                                f"premise: post-LN {DEEPNET_POST_STRUGGLES.text()}")]


def degradation(ev: Evidence) -> list[Finding]:
    """He et al.: normalized plain nets degrade with depth; the same depths with skips do not."""
    if "norm" not in ev.runs:
        return []
    runs = ev.runs[ev.runs["outcome_loss"].notna() & ~_is(ev.runs, "norm", "none")]
    plain, skips = _is(runs, "residual", "false"), _is(runs, "residual", "true")
    depth = _depth(runs)
    if not plain.any() or not skips.any() or depth[plain].nunique() < 2:
        return []
    loss = _by_run(runs, "outcome_loss")
    shallow, deep = depth[plain].min(), depth[plain].max()
    rise, rise_values = _depth_rise(runs, ev, plain, shallow, deep, loss)
    shallow_gap, shallow_values = _progress_share(runs, ev, depth.eq(shallow), skips, plain, loss, shallow)
    deep_gap, deep_values = _skips_gap(runs, ev, depth.eq(deep), skips, plain, loss, deep)
    parts = [part("the shallowest plain net trains", shallow_gap, DEGRADATION_SHALLOW_TRAINS, shallow_values,
                  premise=True),
             part("plain deeper vs shallower", rise, DEGRADATION.margin, "plain " + rise_values),
             part("plain vs skips", deep_gap, DEGRADATION.margin, deep_values)]
    margin = (f"{DEGRADATION.margin.text()}; premise: the shallowest plain net's loss decrease over the skips' "
              f"{DEGRADATION_SHALLOW_TRAINS.text()}")
    return [finding(DEGRADATION, parts, runs, extra=_more_depths(runs), margin_text=margin)]


def _progress_share(runs: pd.DataFrame, ev: Evidence, at: pd.Series, skips: pd.Series, plain: pd.Series,
                    loss: pd.Series, depth: float) -> tuple[Units, str]:
    """Units of (initial − final loss) of the plain net over that of the net with skips, at one depth."""
    matched = pairs(runs, ev.config_keys, ("residual",), at & skips, at & plain)
    initial = q.initial_loss(ev.metrics)
    units = Units()
    for unit in matched.itertuples():
        decrease = {run: initial.get(run, np.nan) - loss[run] for run in (unit.run_a, unit.run_b)}
        units.add(_ratio(decrease[unit.run_b], decrease[unit.run_a]), unit.setting, unit.seed)
    plain_loss, skips_loss = (number(loss[matched[side]].median()) for side in ("run_b", "run_a"))
    values = (f"plain {plain_loss} vs skips {skips_loss} at depth {format_value(depth)}, "
              f"from {number(initial.reindex(matched['run_a']).median())} at step 0")
    return units, values


def _skips_gap(runs: pd.DataFrame, ev: Evidence, at: pd.Series, skips: pd.Series, plain: pd.Series,
               loss: pd.Series, depth: float) -> tuple[Units, str]:
    """Units of plain loss / skips loss − 1 at one depth, matched."""
    matched = pairs(runs, ev.config_keys, ("residual",), at & skips, at & plain)
    units = Units()
    for unit in matched.itertuples():
        units.add(_rise(loss[unit.run_a], loss[unit.run_b]), unit.setting, unit.seed)
    values = (f"plain {number(loss[matched['run_b']].median())} vs skips "
              f"{number(loss[matched['run_a']].median())} at depth {format_value(depth)}")
    return units, values


def signal_collapse(ev: Evidence) -> list[Finding]:
    """A deep plain MLP without normalization: the forward signal collapses and the loss stays at ln 10."""
    runs = _model(ev.runs, "mlp")
    if "task.name" not in runs or "rank_residual_init_last" not in runs:
        return []
    plain = _is(runs, "residual", "false") & _is(runs, "norm", "none")
    runs = runs[plain & _is(runs, "task.name", *TEN_CLASS_TASKS) & (_depth(runs) >= DEEP_PLAIN_MIN_DEPTH)]
    if runs.empty:
        return []
    runs = runs[_depth(runs).eq(_depth(runs).max())]  # a claim about deep nets: judged at the deepest
    spread, loss = Units(), Units()
    for unit in singles(runs, ev.config_keys).itertuples():
        row = runs[runs["run"].eq(unit.run)].iloc[0]
        spread.add(row["rank_residual_init_last"], unit.setting, unit.seed)
        loss.add(row["stats_loss"], unit.setting, unit.seed)
    spread_part = part("spread at init", spread, SIGNAL.margin,
                       f"{number(np.nanmedian(spread.effects))} across examples at the last block")
    loss_part = part("final loss", loss, SIGNAL_LOSS, f"{number(np.nanmedian(loss.effects))} (ln 10 = {LN10:.3f})")
    margin = f"spread {SIGNAL.margin.text()}; loss {SIGNAL_LOSS.text()}"
    return [finding(SIGNAL, [spread_part, loss_part], runs, margin_text=margin)]


# ---------------------------------------------------------------------------------------------
# convergence speed and vanishing gradients: ReZero and the seed article


def _speed_units(ev: Evidence, matched: pd.DataFrame) -> tuple[Units, str]:
    """Units of steps(b) / steps(a) to the worse side's final smoothed loss."""
    units, steps_a, steps_b = Units(), [], []
    for unit in matched.itertuples():
        a, b, _ = q.convergence_steps(ev.metrics, ev.runs, unit.run_a, unit.run_b)
        units.add(_ratio(b, a), unit.setting, unit.seed)
        steps_a.append(a)
        steps_b.append(b)
    medians = (number(pd.Series(steps, dtype=float).median()) for steps in (steps_a, steps_b))
    return units, "{} vs {} steps to the target (medians)".format(*medians)


def _vanishing_parts(ev: Evidence, matched: pd.DataFrame) -> list[Part]:
    """Parts at init and at the end: (first/last) of a over (first/last) of b."""
    parts = []
    for moment, name in (("init", "at init"), ("end", "at the end")):
        first, last = _by_run(ev.runs, f"grad_norm_{moment}_first"), _by_run(ev.runs, f"grad_norm_{moment}_last")
        if first.empty:
            continue
        ratio = first / last
        units = Units()
        for unit in matched.itertuples():
            units.add(_ratio(ratio[unit.run_a], ratio[unit.run_b]), unit.setting, unit.seed)
        values = (f"first/last {number(ratio[matched['run_a']].median())} vs "
                  f"{number(ratio[matched['run_b']].median())}")
        parts.append(part(name, units, VANISHING.margin, values))
    return parts


def _formatted(claim: Claim, **names: str) -> Claim:
    return Claim(claim.source, claim.claim, claim.quantity, claim.comparison.format(**names), claim.margin)


def rezero(ev: Evidence) -> list[Finding]:
    """ReZero (norm=none) against pre-LN and against post-LN, by convergence speed."""
    runs = ev.runs[ev.runs["status"].isin([status.value for status in DONE])]
    zero = _is(runs, "residual", "rezero") & _is(runs, "norm", "none")
    if not zero.any() or ev.metrics.empty:
        return []
    found = []
    for norm in ("pre", "post"):
        other = _is(runs, "residual", "true") & _is(runs, "norm", norm)
        if not other.any():
            continue
        matched = pairs(runs, ev.config_keys, ("norm", "residual"), zero, other)
        units, values = _speed_units(ev, matched)
        claim = _formatted(REZERO, norm=norm)
        found.append(finding(claim, [part("", units, claim.margin, f"rezero vs {norm}-LN: {values}")],
                             runs[zero | other]))
    return found


def seed_article(ev: Evidence) -> list[Finding]:
    """Skips stop gradients vanishing; normalization speeds convergence; the article's block vs plain.

    A comparison no run pairs up for is left out: these claims apply to any sweep, and a sweep of the
    article's block against the plain net (which differ in two keys) is judged by the block findings.
    """
    runs = ev.runs[ev.runs["status"].isin([status.value for status in DONE])]
    if "norm" not in runs or "residual" not in runs:
        return []
    skips, plain, none = _is(runs, "residual", "true"), _is(runs, "residual", "false"), _is(runs, "norm", "none")
    found = []
    for norm in _norm_values(runs):
        normed = _is(runs, "norm", norm)
        claim = _formatted(VANISHING, norm=norm)
        found += _vanishing(ev, runs, claim, ("residual",), normed & skips, normed & plain)
    for norm in _norm_values(runs[~none]):
        normed = _is(runs, "norm", norm)
        found += _convergence(ev, runs, _formatted(CONVERGENCE, norm=norm), ("norm",), normed, none)
        block, bare = normed & skips, none & plain
        both = ("norm", "residual")
        found += _vanishing(ev, runs, _formatted(BLOCK_VANISHING, norm=norm), both, block, bare)
        found += _convergence(ev, runs, _formatted(BLOCK_CONVERGENCE, norm=norm), both, block, bare)
    return found


def _vanishing(ev: Evidence, runs: pd.DataFrame, claim: Claim, variables: tuple[str, ...], a: pd.Series,
               b: pd.Series) -> list[Finding]:
    """Vanishing is a deep net's trouble: judged at the largest depth both sides reached."""
    if not a.any() or not b.any():
        return []
    depth = _depth(runs)
    if depth.notna().all():
        deepest = depth.eq(min(depth[a].max(), depth[b].max()))
        a, b = a & deepest, b & deepest
    matched = pairs(runs, ev.config_keys, variables, a, b)
    parts = _vanishing_parts(ev, matched) if len(matched) else []
    return [finding(claim, parts, runs[a | b])] if parts else []


def _convergence(ev: Evidence, runs: pd.DataFrame, claim: Claim, variables: tuple[str, ...], a: pd.Series,
                 b: pd.Series) -> list[Finding]:
    if not a.any() or not b.any() or ev.metrics.empty:
        return []
    matched = pairs(runs, ev.config_keys, variables, a, b)
    if matched.empty:
        return []
    units, values = _speed_units(ev, matched)
    return [finding(claim, [part("", units, claim.margin, values)], runs[a | b])]


def _norm_values(runs: pd.DataFrame) -> Iterable[str]:
    return list(dict.fromkeys(_text(runs, "norm")))


# ---------------------------------------------------------------------------------------------
# depth-wise learning-rate transfer: Bordelon et al. 2023, Yang et al. 2023, Dey et al. 2025


def _depth_params(runs: pd.DataFrame) -> pd.Series:
    """Each run's depth_param; runs recorded before the key existed are standard."""
    if "depth_param" not in runs:
        return pd.Series(STANDARD, index=runs.index)
    return runs["depth_param"].fillna(STANDARD)


def lr_optima(ev: Evidence) -> pd.DataFrame:
    """The optimal lr of every lr sweep (≥ 3 lrs) of runs with skips: one row per setting, seed, depth_param
    and depth, with its `optimum` (quantities.LrOptimum)."""
    runs = _with_skips(ev.runs)
    if runs.empty or "train.lr" not in runs or "depth" not in runs:
        return pd.DataFrame()
    params = _depth_params(runs)
    runs = runs.assign(depth_param=params)
    table = singles(runs, ev.config_keys, ("train.lr", "depth", "depth_param")).assign(
        lr=pd.to_numeric(runs["train.lr"], errors="coerce").to_numpy(), depth=_depth(runs).to_numpy(),
        depth_param=params.to_numpy(), loss=runs["outcome_loss"].to_numpy())
    sweeps = table.groupby(["setting", "seed", "depth_param", "depth"], sort=False)
    rows = [(*unit, q.lr_optimum(cell["lr"], cell["loss"])) for unit, cell in sweeps
            if cell["lr"].nunique() >= 3]
    return pd.DataFrame(rows, columns=["setting", "seed", "depth_param", "depth", "optimum"])


def _decided(sizes: tuple[float, float], margin: Margin) -> float:
    """The |shift| to judge: a number where its whole range falls on one side of the margin, else NaN (an
    optimum at the grid's edge whose bound decides nothing)."""
    smallest, largest = sizes
    return smallest if margin.judge(smallest) == margin.judge(largest) else np.nan


def _optimum_text(optima: pd.Series) -> str:
    """Median optimal lr over seeds, and how many of them sat at the grid's edge."""
    text = number(2.0 ** float(np.median([o.log2_lr for o in optima])))
    edges = [o.edge for o in optima if o.edge]
    if edges:
        text += f" ({len(edges)}/{len(optima)} at the grid's {'/'.join(sorted(set(edges)))} end)"
    return text


def _shift_part(optima: pd.DataFrame, param: str, depths: list[float], margin: Margin) -> tuple[Part, bool]:
    """One parametrization's |shift| from depths[0] to depths[-1] per setting and seed, judged (the optima at
    every depth of `depths` shown); and whether an optimum that decides sat at its grid's edge."""
    rows = optima[optima["depth_param"].eq(param) & optima["depth"].isin(depths)]
    ends = rows[rows["depth"].isin([depths[0], depths[-1]])]
    units, shifts = Units(), []
    for (setting, seed), cell in ends.groupby(["setting", "seed"], sort=False):
        by_depth = cell.set_index("depth")["optimum"]
        if len(by_depth) < 2:
            continue
        shallow, deep = by_depth[depths[0]], by_depth[depths[-1]]
        units.add(_decided(q.size_range(q.octave_shift(shallow, deep)), margin), setting, seed)
        shifts.append(deep.log2_lr - shallow.log2_lr)
    path = " → ".join(f"{_optimum_text(group['optimum'])} at depth {format_value(depth)}"
                      for depth, group in rows.groupby("depth"))
    edge = any(o.edge for o in ends["optimum"])
    bound = " (a bound where an optimum is at the grid's end)" if edge else ""
    values = (f"optimal lr {path}; shift {np.median(shifts):+.2f} octaves{bound}" if shifts
              else "no lr sweep at both depths")
    return part(param, units, margin, values), edge


def _wider_grid(runs: pd.DataFrame) -> str:
    """`train.lr=…`: the swept lrs and one more at each end (their outer spacing), to bracket an optimum."""
    lrs = sorted(pd.to_numeric(runs["train.lr"], errors="coerce").dropna().unique())
    wider = [lrs[0] ** 2 / lrs[1], *lrs, lrs[-1] ** 2 / lrs[-2]]
    return "train.lr=" + ",".join(f"{lr:.3g}" for lr in wider)


def lr_transfer(ev: Evidence) -> list[Finding]:
    """Under a depth parametrization the optimal lr stays put from the shallowest to the deepest depth, under
    the standard one it drifts: both measured on the same depths and settings, seeds as units."""
    optima = lr_optima(ev)
    found = []
    for param, claim in LR_TRANSFER.items():
        if optima.empty:
            break
        sides = [optima[optima["depth_param"].eq(name)] for name in (STANDARD, param)]
        settings = set(sides[0]["setting"]) & set(sides[1]["setting"])  # matched: both sides swept there
        pair = optima[optima["depth_param"].isin([STANDARD, param]) & optima["setting"].isin(settings)]
        depths = sorted(set.intersection(*(set(side.loc[side["setting"].isin(settings), "depth"])
                                           for side in sides)))
        if len(depths) < 2:  # no sweeps of both parametrizations at two depths: nothing to compare
            continue
        standard, standard_edge = _shift_part(pair, STANDARD, depths, LR_DRIFTS)
        rule, rule_edge = _shift_part(pair, param, depths, claim.margin)
        runs = ev.runs[_depth_params(ev.runs).isin([STANDARD, param])]
        margin = f"{param}: |shift| in octaves {claim.margin.text()}; standard: |shift| {LR_DRIFTS.text()}"
        wider = _wider_grid(runs) if standard_edge or rule_edge else ""
        found.append(finding(claim, [standard, rule], runs, extra=wider, margin_text=margin))
    return found


def lr_transfer_curves(ev: Evidence) -> pd.DataFrame:
    """For the plot: final train loss against lr (mean over seeds; a diverged point is a gap), one line per
    depth, one panel per depth_param (standard first); and each line's optimum (median over seeds) as a row
    with `optimum` true (`edge`: some seed's optimum sat at the grid's end). Columns panel, line, x, y,
    optimum, edge."""
    optima = lr_optima(ev)
    if optima.empty:
        return pd.DataFrame()
    runs = _with_skips(ev.runs)
    frame = pd.DataFrame({"panel": _depth_params(runs), "depth": _depth(runs),
                          "x": pd.to_numeric(runs["train.lr"], errors="coerce"),
                          "y": runs["outcome_loss"].replace(np.inf, np.nan)})
    rank = {name: order for order, name in enumerate([STANDARD, *LR_TRANSFER])}
    frame = frame.assign(rank=frame["panel"].map(rank).fillna(len(rank))).sort_values(["rank", "depth"])
    pieces = []
    for (param, depth), rows in frame.groupby(["panel", "depth"], sort=False):
        found = optima.loc[optima["depth_param"].eq(param) & optima["depth"].eq(depth), "optimum"]
        if found.empty:
            continue
        mean = rows.groupby("x")["y"].mean()
        best = float(np.median([o.log2_lr for o in found]))
        at_best = np.interp(best, np.log2(mean.index.to_numpy(float)), mean.to_numpy())
        line = f"depth {format_value(depth)}"
        curve = {"panel": param, "line": line, "x": mean.index, "y": mean.to_numpy(), "optimum": False,
                 "edge": False}
        star = {"panel": param, "line": line, "x": 2.0**best, "y": at_best, "optimum": True,
                "edge": any(o.edge for o in found)}
        pieces += [pd.DataFrame(curve), pd.DataFrame([star])]
    return pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame()

FINDINGS: tuple[Callable[[Evidence], list[Finding]], ...] = (
    seed_article,
    fig3_profile,
    depth_exponent,
    warmup,
    critical_learning_rate,
    stream_growth,
    rank_collapse,
    degradation,
    signal_collapse,
    deepnorm_depth,
    rezero,
    lr_transfer,
)


def compute_findings(ev: Evidence) -> list[Finding]:
    """Every finding the data hold: the seed article's claims first, then REFERENCES.md's order."""
    return [found for compute in FINDINGS for found in compute(ev)]

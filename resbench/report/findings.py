"""Findings: the published claims of docs/references.md, each judged on matched runs (see `verdict`).

Every finding states its claim, the paper's quantity, the comparison, the margin and the evidence it
needs up front (the `Claim` constants below, mirrored in docs/findings.md's claims table); its function picks
the runs the claim is about, measures the quantity (`quantities`) and returns zero findings when those
runs are absent, else one line whose verdict is agrees, disagrees or inconclusive. Quantities at init
are read on every init draw of every run (`Evidence.at_init`); training outcomes once per seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np
import pandas as pd

from resbench.registries import STANDARD_DEPTH_PARAM as STANDARD
from resbench.report import quantities as q
from resbench.report.aggregate import STACK_ORDER, format_value
from resbench.report.quantities import Evidence
from resbench.report.verdict import (
    AGREES,
    AT_INIT,
    Claim,
    Finding,
    Margin,
    Part,
    Units,
    finding,
    judge,
    median_effect,
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
_, ENCODER, DECODER = STACK_ORDER

# ---------------------------------------------------------------------------------------------
# the claims, stated before any data

FIG3_POST = Claim(
    "Xiong et al. 2020", "at init, post-LN's FFN gradients grow toward the last layer (their Fig. 3)",
    "‖∇W₂‖ (`ffn.fc2.weight`) of the last block over the first at step 0, batch-averaged under init_batches, "
    "on every init draw",
    "every post-LN Transformer run with skips", Margin(1.5, 1.2, "×"),
    "post-LN grads rise to last block", AT_INIT)
FIG3_PRE = Claim(
    "Xiong et al. 2020", "at init, pre-LN's FFN gradients stay flat or fall toward the last layer (their Fig. 3)",
    FIG3_POST.quantity, "every pre-LN Transformer run with skips", Margin(1.2, 1.5, "×"),
    "pre-LN grads flat or falling", AT_INIT)
EXPONENT = Claim(
    "Xiong et al. 2020", "the last layer's gradient is O(d·√ln d) under post-LN whatever L: exponent 0 in L",
    "log-log slope of the last block's ‖∇W₂‖ at init against depth L (≥ 3 depths), fitted per init draw, "
    "minus the theory's exponent",
    "post-LN, fitted over the depths of each matched setting, seed and draw", Margin(0.2, 0.4),
    "post-LN last grad ∝ L⁰", AT_INIT)
EXPONENT_PRE = Claim(
    "Xiong et al. 2020", "the last layer's gradient is O(d·√(ln d / L)) under pre-LN: it falls as 1/‖x_L‖, the "
    "stream's norm, which grows as √L where the blocks' variance dominates (δL ≫ e²): exponent −½",
    "log-log slope of the last block's ‖∇W₂‖ at init against depth L (≥ 3 depths), fitted per init draw, "
    "against the slope the measured stream predicts (minus the slope of the last block's hidden RMS) and "
    "against −½",
    "pre-LN, fitted over the depths of each matched setting, seed and draw", EXPONENT.margin,
    "pre-LN last grad ∝ L^-½", AT_INIT)
# premise of the −½: at the deepest depth the blocks add ≥ 4× the variance the stream enters with (δL/e², fitted
# as in the stream finding on the deepest run), i.e. ≥ 80 % of the stream's variance is the blocks'
EXPONENT_PREMISE = Margin(4.0, 1.0)
WARMUP_POST = Claim(
    "Xiong et al. 2020", "post-LN trained with Adam and no learning-rate warmup trains badly; warmup rescues it",
    "final train loss without warmup over with warmup, − 1 (a diverged run counts as ∞; diverged on both "
    "sides: warmup did not rescue it, +0 %)",
    "post-LN Transformer runs, train.warmup = 0 vs > 0, matched", Margin(0.10, 0.02, "%"),
    "post-LN needs warmup")
WARMUP_PRE = Claim(
    "Xiong et al. 2020", "pre-LN trains without learning-rate warmup",
    "final train loss without warmup over with warmup, − 1 (diverged without warmup: ∞, whatever the other side)",
    "pre-LN Transformer runs, train.warmup = 0 vs > 0, matched", Margin(0.05, 0.10, "%"),
    "pre-LN needs no warmup")
STREAM = Claim(
    "Xiong et al. 2020", "under pre-LN the residual stream's squared norm grows linearly with depth, each "
    "branch adding its variance",
    "hidden-state RMS leaving the last block at init, measured over predicted √(e² + δ·L), where e² and δ "
    "(variance in, variance each block adds) are fitted on the blocks of the shallowest run, per init draw; "
    "shown as the larger of measured/predicted and its inverse",
    "pre-LN Transformer runs with skips, each deeper run whose prediction grows visibly (premise margin) "
    "against the shallowest run of its matched setting, seed and draw", Margin(1.25, 1.5, "×"),
    "pre-LN stream adds each block's variance", AT_INIT)
STREAM_GROWS = Margin(1.25, 1.1, "×")  # premise: the prediction itself grows by this much
RANK_DEPTH = Claim(
    "Dong et al. 2021", "without skip connections, pure self-attention loses rank with depth (tokens collapse "
    "toward one vector); the paper bounds the fall as doubly exponential, and the line reports the rate measured",
    "rank residual ‖X − 1·x̄ᵀ‖/‖X‖ at the last block at init, each deeper depth over the shallowest, per init "
    "draw; and its factor per block along the deepest stack",
    "attention-only Transformers (model.ffn_mult=0), residual=false, across depth within matched settings",
    Margin(0.5, 0.8, "×"), "no-skip attention loses rank with depth", AT_INIT)
RANK_SKIPS = Claim(
    "Dong et al. 2021", "skip connections prevent the rank collapse of pure self-attention",
    "rank residual at the last block at init, without skips over with skips, at the largest depth, per init draw",
    "attention-only Transformers (model.ffn_mult=0), residual=false vs true, matched", Margin(0.5, 0.8, "×"),
    "skips stop attention's rank collapse", AT_INIT)
DOUBLY = 2.0  # a fall whose log-rate per block is ≥ 2× as steep over the second half of the stack as the first
DEEPNET = Claim(
    "Wang et al. 2022", "DeepNorm trains post-LN-style stacks at depths where post-LN struggles",
    "final train loss at each larger depth over the smallest, − 1, the worst depth (a diverged run at any depth, "
    "the smallest included, counts as ∞)",
    "post vs deepnorm with skips, at every depth both reached, matched", Margin(0.05, 0.10, "%"),
    "DeepNorm trains at every depth")
DEEPNET_POST_STRUGGLES = Margin(0.10, 0.02, "%")  # premise: post-LN worse at some depth than at the smallest
REZERO = Claim(
    "Bachlechner et al. 2020", "a zero-initialised scalar on each residual branch (ReZero, no normalization) "
    "converges faster than normalized stacks",
    "convergence speed: steps for the smoothed train loss to reach the worse side's final loss; other side's "
    "steps over ReZero's (a diverged run never reaches it)",
    "residual=rezero norm=none vs residual=true norm={norm}, matched on depth, lr, steps and every other key",
    Margin(1.25, 0.8, "×"), "ReZero converges faster than {norm}-LN")
# premise: the shallowest plain net trains (degradation is about depth, not about a net that never trains)
DEGRADATION_SHALLOW_TRAINS = Margin(0.9, 0.75)  # share of the skips' loss decrease the shallow plain net makes
DEGRADATION = Claim(
    "He et al. 2016", "deeper plain nets reach a higher training loss than shallower ones (seen with "
    "normalization), while the same depths with identity skips train",
    "final train loss: plain at each larger depth over plain at the smallest, and plain over skips at each "
    "larger depth, each − 1",
    "normalized (norm ≠ none) runs, residual=false vs true, across depth, matched", Margin(0.10, 0.02, "%"),
    "deeper plain nets train worse")
SIGNAL = Claim(
    "Glorot & Bengio 2010; Schoenholz et al. 2017", "a deep plain net at an init off the critical line loses its "
    "forward signal (every example maps to almost the same output) and sits at the chance loss",
    "spread of the last block's output across examples at init (the MLP's rank residual ‖X − 1·x̄ᵀ‖/‖X‖ over "
    "the batch, per init draw), and the final train loss against ln 10",
    f"plain MLPs without normalization (residual=false norm=none) on a 10-class task, at the largest depth "
    f"(≥ {DEEP_PLAIN_MIN_DEPTH})",
    Margin(0.01, 0.1), "deep plain MLP loses its signal", AT_INIT)
SIGNAL_LOSS = Margin(LN10 - 0.15, LN10 - 0.5)
VANISHING = Claim(
    "the seed article", "residual connections let gradients reach early layers directly, so they do not vanish",
    "first-block over last-block gradient norm (≪ 1: vanishing), with skips over without, at init (per init "
    "draw) and at the end (per seed; runs that took no step have no end)",
    "residual=true vs false at norm={norm}, at the largest depth both reached, matched", Margin(2.0, 0.5, "×"),
    "skips stop vanishing grads (norm={norm})", AT_INIT)
CONVERGENCE = Claim(
    "the seed article", "layer normalization speeds up convergence",
    "convergence speed: steps for the smoothed train loss to reach the worse side's final loss, "
    "un-normalized over normalized",
    "norm={norm} vs norm=none, matched (same residual)", Margin(1.25, 0.8, "×"),
    "norm={norm} speeds convergence")
BLOCK_VANISHING = Claim(
    "the seed article", "its block (normalization and a skip) keeps gradients from vanishing where the plain "
    "net's vanish", VANISHING.quantity.replace("with skips over without", "block over plain"),
    "norm={norm} residual=true vs the plain net norm=none residual=false, matched (vanishing: at the largest "
    "depth both reached)", VANISHING.margin, "its block stops vanishing grads (norm={norm})", AT_INIT)
BLOCK_CONVERGENCE = Claim(
    "the seed article", "its block (normalization and a skip) converges faster than the plain net",
    CONVERGENCE.quantity.replace("un-normalized over normalized", "plain over block"),
    BLOCK_VANISHING.comparison, CONVERGENCE.margin, "its block converges faster (norm={norm})")
CRITICAL_LR = Claim(
    "Xiong et al. 2020", "pre-LN tolerates larger learning rates than post-LN without warmup",
    f"critical learning rate: the largest train.lr whose run stayed finite and ended within "
    f"{LR_TRAINED_MARGIN:.0%} of the best final loss any run of its matched setting and seed reached (either "
    f"norm, any lr); pre-LN's over post-LN's (none trained counts as 0)",
    "pre vs post Transformer runs with skips and no warmup, over ≥ 2 learning rates, matched",
    Margin(2.0, 0.5, "×"), "pre-LN takes larger lr than post-LN")
LIU_POST = Claim(
    "Liu et al. 2020", "in an encoder–decoder under post-LN the decoder's gradients vanish toward its first "
    "layers while the encoder's do not (their Fig. 3)",
    "first-block over last-block gradient norm at init of the decoder over that of the encoder, per init draw",
    "every post-LN encoder–decoder run (model=seq2seq)", Margin(0.5, 0.8, "×"),
    "post-LN decoder grads vanish, encoder's not", AT_INIT)
LIU_PRE = Claim(
    "Liu et al. 2020", "under pre-LN neither stack's gradients vanish toward its first layers (their Fig. 3)",
    LIU_POST.quantity, "every pre-LN encoder–decoder run (model=seq2seq)", Margin(0.8, 0.5, "×"),
    "pre-LN decoder vanishes no more than encoder", AT_INIT)


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
        LR_TRANSFER_QUANTITY, LR_TRANSFER_COMPARISON.format(param="depth_mup"), LR_STAYS,
        "depth_mup keeps the best lr across depth"),
    "completep": Claim(
        "Dey et al. 2025 (CompleteP)",
        "a 1/L multiplier on each residual branch (α = 1), with its learning-rate and ε rules, keeps the "
        "optimal learning rate in place across depth, where the standard parametrization's drifts",
        LR_TRANSFER_QUANTITY, LR_TRANSFER_COMPARISON.format(param="completep"), LR_STAYS,
        "completep keeps the best lr across depth"),
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
    if list(values) == [""]:  # one setting, every run in it
        return next(iter(values.values()))
    shown = [f"{setting or 'all'}: {value}" for setting, value in list(values.items())[:SHOWN_SETTINGS]]
    return "; ".join(shown) + ("; …" if len(values) > SHOWN_SETTINGS else "")


def _median_by_setting(units: Units, show: Callable[[float], str]) -> str:
    frame = pd.DataFrame({"setting": units.settings, "effect": units.effects})
    medians = frame.groupby("setting", sort=False)["effect"].median()
    return _per_setting({setting: show(value) for setting, value in medians.items()})


def _depths_text(depths: Iterable[float]) -> str:
    return ", ".join(format_value(d) for d in sorted(set(depths)))


def _more_depths(runs: pd.DataFrame, wanted: int = 3) -> str:
    """`depth=6,12,24`: the depths there are, doubled up to `wanted` of them."""
    depths = sorted(set(_depth(runs).dropna().astype(int))) or [6]
    while len(depths) < wanted:
        depths.append(depths[-1] * 2)
    return "depth=" + ",".join(map(str, depths))


def _with_skips(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[_is(runs, "residual", "true")]


def _done(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"].isin([status.value for status in DONE])]


def _took_steps(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs a training outcome can be read from: a run of train.steps=0 ends where it began."""
    if "train.steps" not in runs:
        return runs
    return runs[pd.to_numeric(runs["train.steps"], errors="coerce").ne(0)]


# ---------------------------------------------------------------------------------------------
# units per init draw


def _add_draws(units: Units, unit: object, effects: pd.Series) -> None:
    """One unit per init draw of `effects` (indexed by draw), of a `singles` or `pairs` row."""
    for draw, effect in effects.items():
        units.add(effect, unit.setting, unit.seed, draw, unit.paired)


def _draw_ratios(matched: pd.DataFrame, values: pd.Series) -> Units:
    """Units of values(run_a) / values(run_b) per common init draw; `values` indexed by (run, draw)."""
    units = Units()
    frame = values.to_frame("value")
    for unit in matched.itertuples():
        a, b = (q.of_run(frame, run)["value"] for run in (unit.run_a, unit.run_b))
        common = a.index.intersection(b.index)
        _add_draws(units, unit, a[common] / b[common])
    return units


def _median_of(values: pd.Series, runs: Iterable[int]) -> float:
    """Median over the init draws of `runs` of `values` indexed by (run, draw)."""
    chosen = values[values.index.get_level_values(0).isin(list(runs))]
    return float(chosen.median()) if len(chosen) else np.nan


# ---------------------------------------------------------------------------------------------
# Xiong et al. 2020


def fig3_profile(ev: Evidence) -> list[Finding]:
    """Fig. 3: the FFN W₂ gradient's last/first block ratio at init, post-LN rising, pre-LN flat or falling."""
    ev = ev.at_init
    w2 = ev.w2_ends
    runs = _with_skips(_model(ev.runs, "transformer"))
    runs = runs[runs["run"].isin(w2.index.get_level_values(0))]
    found = []
    for norm, claim in (("post", FIG3_POST), ("pre", FIG3_PRE)):
        arm = runs[_is(runs, "norm", norm)]
        if arm.empty:
            continue
        units = Units()
        for unit in singles(arm, ev.config_keys).itertuples():
            ends = q.of_run(w2, unit.run)
            _add_draws(units, unit, ends["last"] / ends["first"])
        shown = _median_by_setting(units, claim.margin.show)
        found.append(finding(claim, [part("", units, claim.margin, f"{norm}-LN last/first {shown}", claim.rule)],
                             arm))
    return found


def _exponent_arm(ev: Evidence, norm: str) -> pd.DataFrame:
    runs = _with_skips(_model(ev.runs, "transformer"))
    measured = ev.w2_ends.index.get_level_values(0)
    return runs[_is(runs, "norm", norm) & runs["run"].isin(measured)]


def _exponent_table(ev: Evidence, norm: str) -> pd.DataFrame:
    """One row per (run, draw) of the arm: setting, seed, paired, draw, depth, run, the last block's W₂ norm
    and hidden RMS at init. `ev` is the evidence at init."""
    w2 = ev.w2_ends
    rms = q.block_ends(ev.init_draw_layers, "hidden_rms")["last"]
    arm = _exponent_arm(ev, norm)
    columns = ["setting", "seed", "paired", "draw", "depth", "run", "last", "rms"]
    if arm.empty:
        return pd.DataFrame(columns=columns)
    table = singles(arm, ev.config_keys, ("depth",)).assign(depth=_depth(arm).to_numpy())
    rows = []
    for unit in table.itertuples():
        ends = q.of_run(w2, unit.run)
        stream = q.of_run(rms.to_frame(), unit.run).reindex(ends.index)["last"]
        rows += [(unit.setting, unit.seed, unit.paired, draw, unit.depth, unit.run, last, stream[draw])
                 for draw, last in ends["last"].items()]
    return pd.DataFrame(rows, columns=columns)


def _exponent_fits(ev: Evidence, table: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, seed, draw): the fitted slope, the slope the measured stream predicts, and δL/e² of the
    deepest run (the premise of −½)."""
    rows, by_block = [], q.profiles(ev.init_draw_layers, "hidden_rms")
    for (setting, seed, draw), cell in table.groupby(["setting", "seed", "draw"], sort=False):
        deepest = cell.loc[cell["depth"].idxmax()]
        rms = q.profile(by_block, deepest["run"], draw)
        share = q.blocks_over_input(*q.stream_increments(rms), deepest["depth"])
        rows.append((setting, seed, cell["paired"].iloc[0], draw, q.log_log_slope(cell["depth"], cell["last"]),
                     -q.log_log_slope(cell["depth"], cell["rms"]), share))
    return pd.DataFrame(rows, columns=["setting", "seed", "paired", "draw", "slope", "predicted", "share"])


def _fit_units(fits: pd.DataFrame, effect: pd.Series) -> Units:
    units = Units()
    for row, value in zip(fits.itertuples(), effect):
        units.add(value, row.setting, row.seed, row.draw, row.paired)
    return units


def _premise_met(fits: pd.DataFrame) -> pd.Series:
    """Per fit: whether its matched setting meets the premise of −½ (δL/e² ≥ 4 under the init rule)."""
    met = {setting: judge(_fit_units(cell, cell["share"]), EXPONENT_PREMISE, AT_INIT).verdict == AGREES
           for setting, cell in fits.groupby("setting", sort=False)}
    return fits["setting"].map(met).astype(bool)


def _exponent_parts(fits: pd.DataFrame, norm: str, values: str) -> list[Part]:
    """post-LN: the slope against 0; pre-LN: against the measured stream's, and against −½ in the matched
    settings that meet its premise (when none does, the premise part says by how much they miss it)."""
    theory = THEORY_EXPONENT[norm]
    slope = f"slope {number(fits['slope'].median())}"
    if norm == "post" or fits["slope"].isna().all():  # fewer than 3 depths: no slope, and no premise to check
        key = slope if fits["slope"].notna().any() else "a slope needs ≥ 3 depths"
        return [part("", _fit_units(fits, (fits["slope"] - theory).abs()), EXPONENT.margin, values, AT_INIT,
                     key=key)]
    met = _premise_met(fits)
    tested = fits[met] if met.any() else fits
    untested = fits.loc[~met, "setting"].nunique() if met.any() else 0
    against_half = (f"slope {number(tested['slope'].median())} vs −½" +
                    (f"; {untested} matched setting(s) below the premise, untested against −½" if untested else ""))
    return [part("δL ≫ e²", _fit_units(tested, tested["share"]), EXPONENT_PREMISE, "δL/e² at the deepest depth "
                 f"{number(tested['share'].median())}", AT_INIT, premise=True, gates=("against −½",),
                 key=f"δL/e² {number(tested['share'].median())}"),
            part("against the stream", _fit_units(fits, (fits["slope"] - fits["predicted"]).abs()), EXPONENT.margin,
                 f"{values}; the measured stream predicts {number(fits['predicted'].median())}", AT_INIT,
                 key=f"{slope}, stream predicts {number(fits['predicted'].median())}"),
            part("against −½", _fit_units(tested, (tested["slope"] - theory).abs()), EXPONENT.margin, against_half,
                 AT_INIT, key=slope)]


def depth_exponent(ev: Evidence) -> list[Finding]:
    """Xiong's theory across depth: the last block's W₂ init gradient against L, on a log-log scale."""
    ev = ev.at_init
    found = []
    for norm, claim in (("post", EXPONENT), ("pre", EXPONENT_PRE)):
        table = _exponent_table(ev, norm)
        if table.empty or table["depth"].nunique() < 2:  # one depth: no exponent to speak of
            continue
        fits = _exponent_fits(ev, table)
        values = (f"{norm}-LN slope {number(fits['slope'].median())} (theory {THEORY_EXPONENT[norm]:g}) over "
                  f"depths {_depths_text(table['depth'])}")
        parts = _exponent_parts(fits, norm, values)
        arm = _exponent_arm(ev, norm)
        n_depths = table["depth"].nunique()
        extra = [_more_depths(arm)] if n_depths < 3 else []
        if len(parts) > 1 and AGREES not in (parts[0].verdict, parts[0].lean):  # the premise of −½ does not hold:
            xavier = _is(arm, "init", "xavier").all()  # the paper's init grows the stream faster; else go deeper
            extra = [_more_depths(arm, n_depths + 1)] if xavier else extra + ["init=xavier"]
        margin = EXPONENT.margin.text() + (f"; premise of −½: δL/e² ≥ {EXPONENT_PREMISE.agree:g} at the deepest depth"
                                           if norm == "pre" else "")
        key = parts[0].key if len(parts) == 1 else (
            f"slope {number(fits['slope'].median())}, stream predicts {number(fits['predicted'].median())}, "
            f"δL/e² {number(fits['share'].median())}")
        found.append(finding(claim, parts, arm, extra=" ".join(extra), margin_text=margin, key=key))
    return found


def exponent_curves(ev: Evidence) -> pd.DataFrame:
    """For the plot: measured last-block W₂ norms per depth (median over seeds and init draws), the fitted
    line and the theory's line through the measured points' geometric mean; columns panel, line, side, x, y."""
    ev = ev.at_init
    pieces = []
    for norm in ("post", "pre"):
        table = _exponent_table(ev, norm).dropna(subset=["last"])
        if table.empty or table["depth"].nunique() < 3:
            continue
        measured = table.groupby("depth")["last"].median()
        depths = measured.index.to_numpy(float)
        log_d, log_y = np.log(depths), np.log(measured.to_numpy())
        slope, intercept = np.polyfit(log_d, log_y, 1)
        theory = THEORY_EXPONENT[norm]
        lines = {
            "measured (median over seeds and draws)": measured.to_numpy(),
            f"fit: slope {slope:.2f}": np.exp(intercept + slope * log_d),
            f"theory: slope {theory:g}": np.exp(log_y.mean() + theory * (log_d - log_d.mean())),
        }
        for line, values in lines.items():
            curve = {"panel": f"{norm}-LN", "line": line, "side": "", "x": depths, "y": values}
            pieces.append(pd.DataFrame(curve))
    return pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame()


def _warmup_effect(norm: str, without: float, with_: float) -> float:
    """Without over with warmup − 1; both diverged: post-LN +0 % (warmup did not rescue it), pre-LN ∞ (it did not
    train without warmup)."""
    if np.isinf(without) and np.isinf(with_):
        return 0.0 if norm == "post" else np.inf
    return _rise(with_, without)


def warmup(ev: Evidence) -> list[Finding]:
    """Post-LN with Adam needs warmup; pre-LN does not."""
    runs = _took_steps(_with_skips(_model(ev.runs, "transformer")))
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
            units.add(_warmup_effect(norm, loss[unit.run_b], loss[unit.run_a]), unit.setting, unit.seed,
                      paired=unit.paired)
        without, with_ = (loss[runs.loc[on & cond, "run"]] for cond in (warm == 0, warm > 0))
        values = (f"{norm}-LN final train loss {number(without.median())} without warmup vs "
                  f"{number(with_.median())} with (medians); diverged without warmup: "
                  f"{int(np.isinf(without).sum())}/{len(without)}, with: {int(np.isinf(with_).sum())}/{len(with_)}")
        both = sum(np.isinf(loss[u.run_a]) and np.isinf(loss[u.run_b]) for u in matched.itertuples() if u.paired)
        if both and norm == "post":
            values += f"; warmup did not rescue it: diverged with and without in {both} pair{'s' if both > 1 else ''}"
        found.append(finding(claim, [part("", units, claim.margin, values)], runs[on]))
    return found


def _stream_units(ev: Evidence, table: pd.DataFrame) -> tuple[Units, Units, list[tuple]]:
    """Per (setting, seed, draw): the premise's growth and the measured/predicted fit at each deeper depth;
    the shown values as (setting, depth, measured, predicted)."""
    fit, growth, shown = Units(), Units(), []
    by_block = q.profiles(ev.init_draw_layers, "hidden_rms")
    for (setting, seed, draw), cell in table.groupby(["setting", "seed", "draw"], sort=False):
        cell = cell.sort_values("depth")
        shallow, paired = cell.iloc[0], cell["paired"].iloc[0]
        variance_in, per_block = q.stream_increments(q.profile(by_block, shallow["run"], draw))
        grows = np.nan
        for deep in cell.iloc[1:].itertuples():
            predicted = q.predicted_stream_rms(variance_in, per_block, deep.depth)
            grows = _ratio(predicted, shallow["rms"])
            if STREAM_GROWS.judge(grows) == AGREES:  # only a prediction of visible growth can test the claim
                ratio = _ratio(deep.rms, predicted)
                fit.add(max(ratio, _ratio(1, ratio)), setting, seed, draw, paired)
            shown.append((setting, deep.depth, deep.rms, predicted))
        growth.add(grows, setting, seed, draw, paired)  # the premise: at the largest depth the prediction grows
    return fit, growth, shown


def _in_settings(units: Units, settings: set[str]) -> Units:
    return Units([unit for unit in units.items if unit.setting in settings])


def stream_growth(ev: Evidence) -> list[Finding]:
    """Pre-LN's stream grows as its branches' variances add up, predicted from the shallowest run. The premise
    (visible growth) is judged per matched setting and the claim where it holds, as for the exponent."""
    ev = ev.at_init
    table = _exponent_table(ev, "pre").dropna(subset=["rms"])
    if table.empty or table["depth"].nunique() < 2:
        return []
    fit, growth, shown = _stream_units(ev, table)
    settings = list(dict.fromkeys(growth.settings))
    met = {setting for setting in settings
           if judge(_in_settings(growth, {setting}), STREAM_GROWS, AT_INIT).verdict == AGREES}
    if met:  # judged where the stream grows; the settings below the premise are counted, untested
        growth, fit = _in_settings(growth, met), _in_settings(fit, met)
        shown = [row for row in shown if row[0] in met]
    untested = len(settings) - len(met) if met else 0
    by_depth = pd.DataFrame(shown, columns=["setting", "depth", "measured", "predicted"]).groupby(
        "depth")[["measured", "predicted"]].median()
    medians = {f"depth {format_value(depth)}": f"{number(row.measured)} vs {number(row.predicted)}"
               for depth, row in by_depth.iterrows()}
    values = f"pre-LN last-block RMS measured vs predicted (medians) {_per_setting(medians)}" + (
        f"; {untested} matched setting(s) below the premise, untested" if untested else "")
    parts = [part("predicted growth", growth, STREAM_GROWS, "predicted RMS at the largest depth over the shallowest "
                  "run's measured RMS", AT_INIT, premise=True),
             part("measured vs predicted", fit, STREAM.margin, values, AT_INIT)]
    runs = _exponent_arm(ev, "pre")
    deeper = parts[0].verdict != AGREES and parts[0].lean != AGREES  # the stream grew too little: go deeper
    return [finding(STREAM, parts, runs, extra=_more_depths(runs, table["depth"].nunique() + deeper),
                    margin_text=f"{STREAM.margin.text()}; premise: predicted growth {STREAM_GROWS.text()}")]


def _critical_units(table: pd.DataFrame) -> tuple[Units, dict[str, list]]:
    """Per (setting, seed): pre-LN's critical lr over post-LN's; a seed with one placement only is counted,
    not measurable."""
    units, critical = Units(), {}
    for (setting, seed), cell in table.groupby(["setting", "seed"], sort=False):
        finite = cell["loss"][np.isfinite(cell["loss"])]
        found = {norm: q.critical_lr(rows["lr"], rows["loss"], finite.min(), LR_TRAINED_MARGIN)
                 for norm, rows in cell.groupby("norm") if rows["lr"].nunique() >= 2} if len(finite) else {}
        if len(found) < 2:
            units.add(np.nan, setting, seed, paired=False)
            continue
        post, pre = (np.nan_to_num(found[n], nan=0.0) for n in ("post", "pre"))
        units.add(_ratio(pre, post), setting, seed, paired=bool(cell["paired"].iloc[0]))
        for norm in ("post", "pre"):
            critical.setdefault(f"{norm}-LN {setting}".strip(), []).append(found[norm])
    return units, critical


def critical_learning_rate(ev: Evidence) -> list[Finding]:
    """Per (norm, depth) the largest lr that trained; pre-LN's against post-LN's."""
    runs = _took_steps(_with_skips(_model(ev.runs, "transformer")))
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
    units, critical = _critical_units(table)
    if not critical:
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


def _fall_shape(first: float, second: float) -> str:
    """How a fall per block changes down the stack, from its factor over the first and the second half."""
    if not (0 < first < 1 and 0 < second < 1):
        return "not falling along the whole stack"
    if math.log(second) <= DOUBLY * math.log(first):  # logs < 0: the second half's is ≥ 2× as steep
        return "falling ever faster down the stack, as a doubly exponential fall would"
    if math.log(second) * DOUBLY >= math.log(first):
        return "slowing down the stack: slower than exponential, not doubly exponential"
    return "about one factor per block: a single-exponential fall, not the paper's doubly exponential bound"


def _fall_rate(ev: Evidence, deepest: Iterable[int]) -> tuple[str, str]:
    """(full text, key) of the rank residual's factor per block along the deepest plain stacks at init."""
    layers, by_block = ev.init_draw_layers, q.profiles(ev.init_draw_layers, "rank_residual")
    rates = np.array([q.rate_per_block(q.profile(by_block, run, draw))
                      for run in deepest for draw in layers.loc[layers["run"].eq(run), "draw"].unique()], float)
    if not len(rates) or not np.isfinite(rates[:, 0]).any():
        return "", ""
    whole, first, second = np.nanmedian(rates, axis=0)
    text = (f"; along the deepest stack ×{number(whole)} per block (first half ×{number(first)}, second half "
            f"×{number(second)}): {_fall_shape(first, second)}")
    return text, f"×{number(whole)}/block"


def _rank_depth(ev: Evidence, runs: pd.DataFrame, rank: pd.Series, plain: pd.Series) -> Finding:
    """Every deeper depth against the shallowest, without skips; the rate per block along the deepest."""
    depth = _depth(runs)
    depths = sorted(depth[plain].dropna().unique())
    units = Units()
    for deep in depths[1:]:
        matched = pairs(runs, ev.config_keys, ("depth",), plain & depth.eq(deep), plain & depth.eq(depths[0]))
        units.items += _draw_ratios(matched, rank).items
    medians = " → ".join(f"{number(_median_of(rank, runs.loc[plain & depth.eq(d), 'run']))} at depth {format_value(d)}"
                         for d in depths)
    rate, rate_key = _fall_rate(ev, runs.loc[plain & depth.eq(depths[-1]), "run"])
    judged = part("", units, RANK_DEPTH.margin, f"without skips {medians}{rate}", AT_INIT)
    key = f"{judged.key} at depth {format_value(depths[-1])} vs {format_value(depths[0])}" + (
        f", {rate_key}" if rate_key else "")
    return finding(RANK_DEPTH, [judged], runs[plain], key=key)


def rank_collapse(ev: Evidence) -> list[Finding]:
    """Pure attention without skips loses rank with depth; skips prevent it."""
    ev = ev.at_init
    runs = _attention_only(ev.runs)
    rank = q.block_ends(ev.init_draw_layers, "rank_residual")["last"].dropna()
    runs = runs[runs["run"].isin(rank.index.get_level_values(0))]
    depth = _depth(runs)
    plain, skips = _is(runs, "residual", "false"), _is(runs, "residual", "true")
    found = []
    if plain.any() and depth[plain].nunique() >= 2:
        found.append(_rank_depth(ev, runs, rank, plain))
    if plain.any() and skips.any():
        at = depth.eq(min(depth[plain].max(), depth[skips].max()))
        matched = pairs(runs, ev.config_keys, ("residual",), at & plain, at & skips)
        units = _draw_ratios(matched, rank)
        values = (f"depth {format_value(depth[at].max())}: {number(_median_of(rank, matched['run_a']))} without "
                  f"skips vs {number(_median_of(rank, matched['run_b']))} with")
        found.append(finding(RANK_SKIPS, [part("", units, RANK_SKIPS.margin, values, AT_INIT)], runs[at]))
    return found


# ---------------------------------------------------------------------------------------------
# Wang et al. 2022, He et al. 2016, signal propagation


def _depth_losses(runs: pd.DataFrame, ev: Evidence, arm: pd.Series, loss: pd.Series) -> tuple[pd.DataFrame, str]:
    """One arm's runs as setting, seed, paired, depth, loss (its matched settings across depth); and the text
    of its median loss per depth."""
    depth = _depth(runs[arm])
    table = singles(runs[arm], ev.config_keys, ("depth",)).assign(depth=depth.to_numpy(),
                                                                  loss=loss[runs.loc[arm, "run"]].to_numpy())
    medians = table.groupby("depth")["loss"].median()
    return table, " / ".join(map(number, medians)) + " at depth " + " / ".join(map(format_value, medians.index))


Pick = Callable[[list[float]], float]  # np.max or np.min: which depth's effect stands for a seed (NaN: not measured)


def _over_depths(table: pd.DataFrame, pick: Pick, fails_anywhere: bool) -> Units:
    """Per (setting, seed): `pick` of loss(depth) / loss(smallest depth) − 1 over every larger depth (np.max: the
    worst depth of a claim that an arm trains at every depth; np.min: of a claim that every larger depth is worse).
    `fails_anywhere`: a run diverged at any depth, the smallest included, makes it ∞ (the arm did not train at
    every depth). A seed without the smallest depth: NaN."""
    smallest, units = table["depth"].min(), Units()
    for (setting, seed), cell in table.groupby(["setting", "seed"], sort=False):
        base, deeper = cell.loc[cell["depth"].eq(smallest), "loss"], cell.loc[cell["depth"].gt(smallest), "loss"]
        if fails_anywhere and np.isinf(cell["loss"]).any():
            effect = np.inf
        else:
            effects = [_rise(b, d) for b in base for d in deeper]
            effect = float(pick(effects)) if effects else np.nan
        units.add(effect, setting, seed, paired=bool(cell["paired"].all()))
    return units


def deepnorm_depth(ev: Evidence) -> list[Finding]:
    """Post-LN worse at some depth than at the smallest (the premise); DeepNorm within the margin at every depth."""
    runs = _took_steps(_with_skips(ev.runs))
    runs = runs[runs["outcome_loss"].notna()]
    post, deep = _is(runs, "norm", "post"), _is(runs, "norm", "deepnorm")
    depth = _depth(runs)
    common = sorted(set(depth[post].dropna()) & set(depth[deep].dropna()))
    if not post.any() or not deep.any() or len(common) < 2:
        return []
    runs = runs[depth.isin(common)]
    loss = _by_run(runs, "outcome_loss")
    (post_table, post_values), (deep_table, deep_values) = (
        _depth_losses(runs, ev, _is(runs, "norm", norm), loss) for norm in ("post", "deepnorm"))
    parts = [part("post-LN", _over_depths(post_table, np.max, fails_anywhere=True), DEEPNET_POST_STRUGGLES,
                  "post-LN " + post_values, premise=True),
             part("deepnorm", _over_depths(deep_table, np.max, fails_anywhere=True), DEEPNET.margin,
                  "deepnorm " + deep_values)]
    extra = f"depth={','.join(format_value(d) for d in common)},{format_value(common[-1] * 2)}"
    return [finding(DEEPNET, parts, runs, extra=extra,
                    margin_text=f"deepnorm {DEEPNET.margin.text()}; premise: post-LN {DEEPNET_POST_STRUGGLES.text()}")]


def _least_gap(runs: pd.DataFrame, ev: Evidence, a: pd.Series, b: pd.Series, depths: Iterable[float],
               effect: Callable[[int, int], float]) -> Units:
    """Per (setting, seed): the smallest effect(run_a, run_b) over matched pairs at each of `depths` (a and b
    differ in `residual`; NaN when one is not measured)."""
    depth, cells = _depth(runs), {}
    for at in depths:
        for unit in pairs(runs, ev.config_keys, ("residual",), a & depth.eq(at), b & depth.eq(at)).itertuples():
            cell = cells.setdefault((unit.setting, unit.seed), ([], []))
            cell[0].append(effect(unit.run_a, unit.run_b))
            cell[1].append(unit.paired)
    units = Units()
    for (setting, seed), (effects, paired) in cells.items():
        units.add(float(np.min(effects)), setting, seed, paired=all(paired))
    return units


def degradation(ev: Evidence) -> list[Finding]:
    """He et al.: normalized plain nets degrade with depth, at every larger depth; the same depths with skips do
    not (a skip net failing at any depth counts against the claim)."""
    if "norm" not in ev.runs:
        return []
    runs = _took_steps(ev.runs[ev.runs["outcome_loss"].notna() & ~_is(ev.runs, "norm", "none")])
    plain, skips = _is(runs, "residual", "false"), _is(runs, "residual", "true")
    depth = _depth(runs)
    if not plain.any() or not skips.any() or depth[plain].nunique() < 2:
        return []
    loss, initial = _by_run(runs, "outcome_loss"), q.initial_loss(ev.metrics)
    depths = sorted(depth[plain].dropna().unique())

    def progress_share(run_skips: int, run_plain: int) -> float:
        decrease = {run: initial.get(run, np.nan) - loss[run] for run in (run_skips, run_plain)}
        return _ratio(decrease[run_plain], decrease[run_skips])

    plain_table, plain_values = _depth_losses(runs, ev, plain, loss)
    skips_text = " / ".join(number(loss[runs.loc[skips & depth.eq(d), "run"]].median()) for d in depths)
    shallow_trains = _least_gap(runs, ev, skips, plain, depths[:1], progress_share)
    def over_skips(run_skips: int, run_plain: int) -> float:
        """plain over skips − 1; both diverged: +0 % (the skips did not train either: against the claim)."""
        if np.isinf(loss[run_skips]) and np.isinf(loss[run_plain]):
            return 0.0
        return _rise(loss[run_skips], loss[run_plain])

    gap = _least_gap(runs, ev, skips, plain, depths[1:], over_skips)
    parts = [part("the shallowest plain net trains", shallow_trains, DEGRADATION_SHALLOW_TRAINS,
                  f"from {number(initial.reindex(runs.loc[skips, 'run']).median())} at step 0", premise=True),
             part("plain deeper vs shallower", _over_depths(plain_table, np.min, fails_anywhere=False),
                  DEGRADATION.margin, "plain " + plain_values),
             part("plain vs skips", gap, DEGRADATION.margin,
                  f"skips {skips_text} at depth {' / '.join(map(format_value, depths))}")]
    margin = (f"{DEGRADATION.margin.text()}, at the worst larger depth; premise: the shallowest plain net's loss "
              f"decrease over the skips' {DEGRADATION_SHALLOW_TRAINS.text()}")
    key = f"deeper {parts[1].key}, vs skips {parts[2].key}"
    return [finding(DEGRADATION, parts, runs, extra=_more_depths(runs), margin_text=margin, key=key)]


def signal_collapse(ev: Evidence) -> list[Finding]:
    """A deep plain MLP without normalization: the forward signal collapses and the loss stays at ln 10."""
    runs = _model(ev.runs, "mlp")
    if "task.name" not in runs:
        return []
    plain = _is(runs, "residual", "false") & _is(runs, "norm", "none")
    runs = runs[plain & _is(runs, "task.name", *TEN_CLASS_TASKS) & (_depth(runs) >= DEEP_PLAIN_MIN_DEPTH)]
    init = ev.at_init
    spread_at = q.block_ends(init.init_draw_layers, "rank_residual")["last"].dropna()
    runs = runs[runs["run"].isin(spread_at.index.get_level_values(0))]
    if runs.empty:
        return []
    runs = runs[_depth(runs).eq(_depth(runs).max())]  # a claim about deep nets: judged at the deepest
    init_runs = init.runs[init.runs["run"].isin(runs["run"])]
    spread, loss = Units(), Units()
    for unit in singles(init_runs, init.config_keys).itertuples():
        _add_draws(spread, unit, q.of_run(spread_at.to_frame(), unit.run)["last"])
    final = _by_run(runs, "stats_loss")
    for unit in singles(_took_steps(runs), ev.config_keys).itertuples():
        loss.add(final[unit.run], unit.setting, unit.seed, paired=unit.paired)
    spread_part = part("spread at init", spread, SIGNAL.margin,
                       f"{number(median_effect(spread.effects))} across examples at the last block", AT_INIT)
    loss_part = part("final loss", loss, SIGNAL_LOSS, f"{number(median_effect(loss.effects))} (ln 10 = {LN10:.3f})")
    margin = f"spread {SIGNAL.margin.text()}; loss {SIGNAL_LOSS.text()}"
    return [finding(SIGNAL, [spread_part, loss_part], runs, margin_text=margin)]


# ---------------------------------------------------------------------------------------------
# Liu et al. 2020


def _stack_ratios(init_layers: pd.DataFrame) -> pd.Series:
    """Per (run, draw): the decoder's first/last block gradient norm over the encoder's."""
    ends = {stack: q.block_ends(init_layers, "grad_norm", stack) for stack in (ENCODER, DECODER)}
    vanishing = {stack: frame["first"] / frame["last"] for stack, frame in ends.items()}
    return (vanishing[DECODER] / vanishing[ENCODER]).dropna()


def liu_stacks(ev: Evidence) -> list[Finding]:
    """Liu et al. 2020, Fig. 3: post-LN's decoder gradients vanish toward its first block where the encoder's do
    not; under pre-LN neither."""
    ev = ev.at_init
    runs = _with_skips(_model(ev.runs, "seq2seq"))
    if runs.empty or "stack" not in ev.init_draw_layers:
        return []
    ratios = _stack_ratios(ev.init_draw_layers)
    runs = runs[runs["run"].isin(ratios.index.get_level_values(0))]
    found = []
    for norm, claim in (("post", LIU_POST), ("pre", LIU_PRE)):
        arm = runs[_is(runs, "norm", norm)]
        if arm.empty:
            continue
        units = Units()
        for unit in singles(arm, ev.config_keys).itertuples():
            _add_draws(units, unit, q.of_run(ratios.to_frame("ratio"), unit.run)["ratio"])
        shown = _median_by_setting(units, claim.margin.show)
        values = f"{norm}-LN decoder's first/last block gradient over the encoder's {shown}"
        found.append(finding(claim, [part("", units, claim.margin, values, AT_INIT)], arm))
    return found


# ---------------------------------------------------------------------------------------------
# convergence speed and vanishing gradients: ReZero and the seed article


def _speed_units(ev: Evidence, matched: pd.DataFrame) -> tuple[Units, str]:
    """Units of steps(b) / steps(a) to the worse side's final smoothed loss."""
    units, steps_a, steps_b = Units(), [], []
    for unit in matched.itertuples():
        a, b, _ = q.convergence_steps(ev.metrics, ev.runs, unit.run_a, unit.run_b)
        units.add(_ratio(b, a), unit.setting, unit.seed, paired=unit.paired)
        if unit.paired:
            steps_a.append(a)
            steps_b.append(b)
    medians = (number(pd.Series(steps, dtype=float).median()) for steps in (steps_a, steps_b))
    return units, "{} vs {} steps to the target (medians over paired seeds)".format(*medians)


def _vanishing_at_init(ev: Evidence, variables: tuple[str, ...], runs_a: pd.Series,
                       runs_b: pd.Series) -> Part | None:
    """(first/last of a) over (first/last of b) at init, per init draw, on the at-init view of these runs."""
    init = replace(ev, runs=ev.runs[ev.runs["run"].isin(pd.concat([runs_a, runs_b]))]).at_init
    ends = q.block_ends(init.init_draw_layers, "grad_norm")
    a, b = init.runs["run"].isin(runs_a), init.runs["run"].isin(runs_b)
    if ends.empty or not a.any() or not b.any():
        return None
    ratio = (ends["first"] / ends["last"]).rename("ratio")
    matched = pairs(init.runs, init.config_keys, variables, a, b)
    units = _draw_ratios(matched, ratio)
    values = (f"first/last {number(_median_of(ratio, matched['run_a']))} vs "
              f"{number(_median_of(ratio, matched['run_b']))}")
    return part("at init", units, VANISHING.margin, values, AT_INIT)


def _vanishing_at_end(ev: Evidence, runs: pd.DataFrame, variables: tuple[str, ...], a: pd.Series,
                      b: pd.Series) -> Part | None:
    """The same at the last logged step, of runs that took a step (a run of train.steps=0 ends at init)."""
    first, last = _by_run(runs, "grad_norm_end_first"), _by_run(runs, "grad_norm_end_last")
    if first.empty or "end_step" not in runs:
        return None
    stepped = runs["end_step"].gt(0)
    if not (a & stepped).any() or not (b & stepped).any():
        return None
    ratio = first / last
    matched = pairs(runs, ev.config_keys, variables, a & stepped, b & stepped)
    units = Units()
    for unit in matched.itertuples():
        units.add(_ratio(ratio[unit.run_a], ratio[unit.run_b]), unit.setting, unit.seed, paired=unit.paired)
    values = f"first/last {number(ratio[matched['run_a']].median())} vs {number(ratio[matched['run_b']].median())}"
    return part("at the end", units, VANISHING.margin, values)


def _formatted(claim: Claim, **names: str) -> Claim:
    return Claim(claim.source, claim.claim, claim.quantity, claim.comparison.format(**names), claim.margin,
                 claim.short.format(**names), claim.rule)


def rezero(ev: Evidence) -> list[Finding]:
    """ReZero (norm=none) against pre-LN and against post-LN, by convergence speed."""
    runs = _took_steps(_done(ev.runs))
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
    runs = _done(ev.runs)
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
    if pairs(runs, ev.config_keys, variables, a, b).empty:
        return []
    parts = [p for p in (_vanishing_at_init(ev, variables, runs.loc[a, "run"], runs.loc[b, "run"]),
                         _vanishing_at_end(ev, runs, variables, a, b)) if p is not None]
    return [finding(claim, parts, runs[a | b])] if parts else []


def _convergence(ev: Evidence, runs: pd.DataFrame, claim: Claim, variables: tuple[str, ...], a: pd.Series,
                 b: pd.Series) -> list[Finding]:
    stepped = runs["run"].isin(_took_steps(runs)["run"])
    a, b = a & stepped, b & stepped
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
        if len(by_depth) < 2:  # swept at one end only: counted, not measurable
            units.add(np.nan, setting, seed, paired=False)
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
        key = f"|shift| {standard.key} octaves under standard, {rule.key} under {param}"
        found.append(finding(claim, [standard, rule], runs, extra=wider, margin_text=margin, key=key))
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
    liu_stacks,
    lr_transfer,
)


def compute_findings(ev: Evidence) -> list[Finding]:
    """Every finding the data hold: the seed article's claims first, then docs/references.md's order."""
    return [found for compute in FINDINGS for found in compute(ev)]

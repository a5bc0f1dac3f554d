"""Findings: measured quantities set against the published claims of REFERENCES.md.

Each finding is a pure function of the per-run frame (`aggregate.per_run`) and the grouping keys,
returning zero or more `Finding`s; none when its data are absent. A verdict compares medians over
seeds within *matched settings*: runs that agree on every grouping key except the ones the claim
is about, so a sweep over norm × depth × warmup compares warmup against no warmup at equal norm
and depth, never across them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from resbench.report.aggregate import format_value

GRAD_FLAT_MAX = 1.5  # a last/first gradient ratio below this is "about flat or falling"
NEAR = 0.05  # "at least as good": within 5 % of the other loss
RANK_COLLAPSE = 0.5  # "loses rank": rank residual below half of the value with skips
RMS_GROWTH_SHARE = 0.5  # hidden RMS "grows" when it goes at least half way to the √L growth theory gives
STUCK_MARGIN = 0.15  # "stuck near ln 10": final loss no lower than ln 10 − this
DEEP_MLP_MIN_DEPTH = 10  # the ln 10 claim is about deep plain MLPs; shallow ones train
LN10 = math.log(10)


@dataclass(frozen=True)
class Finding:
    source: str  # "Xiong et al. 2020"
    claim: str  # what the paper says, in one clause
    measured: str  # the quantity measured here
    value: str  # its values, with the comparison that decides
    agrees: bool

    @property
    def verdict(self) -> str:
        return "agrees" if self.agrees else "disagrees"

    def text(self) -> str:
        return f"{self.verdict} with {self.source} ({self.claim}): {self.measured}: {self.value}."


# ---------------------------------------------------------------------------------------------
# helpers


def _has(runs: pd.DataFrame, *columns: str) -> bool:
    return all(column in runs and runs[column].notna().any() for column in columns)


def _num(value: float) -> str:
    if pd.isna(value):
        return "—"
    if np.isinf(value):
        return "diverged" if value > 0 else "-inf"
    return f"{value:.3g}"


def _matched(runs: pd.DataFrame, keys: Sequence[str], side: str, value: str, *exclude: str) -> pd.DataFrame:
    """Median `value` per matched setting (rows) and value of `side` (columns)."""
    within = [key for key in keys if key != side and key not in exclude and key in runs]
    cells = runs.assign(_cell=[",".join(map(format_value, row)) for row in runs[within].itertuples(index=False)])
    cells = cells.dropna(subset=[value])
    if cells.empty:
        return pd.DataFrame()
    return cells.groupby(["_cell", side], observed=True)[value].median().unstack(side)


def _both(table: pd.DataFrame, a: str, b: str) -> pd.DataFrame | None:
    if a not in table or b not in table:
        return None
    table = table[[a, b]].dropna()
    return table if len(table) else None


def _majority(mask: pd.Series) -> bool:
    return int(mask.sum()) * 2 > len(mask)


def _of(mask: pd.Series) -> str:
    return f"{int(mask.sum())}/{len(mask)} matched setting{'s' if len(mask) != 1 else ''}"


def _diverged(runs: pd.DataFrame) -> str:
    return f"{int(np.isinf(runs['outcome_loss']).sum())}/{len(runs)}"


def _transformers(runs: pd.DataFrame) -> pd.DataFrame:
    """Xiong et al.'s claims are about Transformer blocks: keep those runs (all, if the model is unknown)."""
    return runs[runs["model.name"].eq("transformer")] if "model.name" in runs else runs


def _by_depth(runs: pd.DataFrame, value: str) -> pd.Series:
    """Median `value` per depth (sorted); one unnamed entry when depth is unknown."""
    if "depth" not in runs or runs["depth"].isna().any():
        return pd.Series({"": runs[value].median()})
    return runs.groupby(pd.to_numeric(runs["depth"]))[value].median().sort_index()


def _depth_text(medians: pd.Series) -> str:
    return ", ".join(f"depth {format_value(depth)}: {_num(v)}" if depth != "" else _num(v) for depth, v in medians.items())


# ---------------------------------------------------------------------------------------------
# the findings


def grad_ratio_by_placement(runs: pd.DataFrame, keys: Sequence[str]) -> list[Finding]:
    """(1) Xiong et al. 2020: at init, post-LN gradients grow toward the last block; pre-LN's stay flat."""
    if not _has(runs, "grad_ratio_init", "norm", "residual"):
        return []
    runs = _transformers(runs)
    usable = runs[runs["residual"].eq("true") & np.isfinite(runs["grad_ratio_init"])]
    measured = "init (step 0) gradient-norm ratio last/first block, {} with skips, median over runs"
    findings = []
    post = usable[usable["norm"].eq("post")]
    if len(post):
        medians = _by_depth(post, "grad_ratio_init")
        rising = len(medians) < 2 or medians.iloc[-1] > medians.iloc[0]
        findings.append(Finding(
            "Xiong et al. 2020",
            "post-LN gradients grow toward the last block at init (ratio > 1), more so with depth",
            measured.format("post-LN"),
            _depth_text(medians) + ("" if len(medians) < 2 else f" ({'rising' if rising else 'not rising'} with depth)"),
            bool((medians > 1).all() and rising),
        ))
    pre = usable[usable["norm"].eq("pre")]
    if len(pre):
        medians = _by_depth(pre, "grad_ratio_init")
        findings.append(Finding(
            "Xiong et al. 2020",
            f"pre-LN gradients stay about flat across blocks at init (ratio < {GRAD_FLAT_MAX:g})",
            measured.format("pre-LN"),
            _depth_text(medians),
            bool((medians < GRAD_FLAT_MAX).all()),
        ))
    return findings


def warmup_post_ln(runs: pd.DataFrame, keys: Sequence[str]) -> list[Finding]:
    """(2) Xiong et al. 2020: post-LN with Adam needs learning-rate warmup; pre-LN does not."""
    if not _has(runs, "train.warmup", "norm", "residual", "outcome_loss"):
        return []
    runs = _transformers(runs)
    usable = runs[runs["residual"].eq("true") & runs["outcome_loss"].notna() & runs["train.warmup"].notna()]
    if "train.optimizer" in usable:
        usable = usable[usable["train.optimizer"].astype(str).str.contains("adam", case=False)]
    usable = usable.assign(_warmup=np.where(pd.to_numeric(usable["train.warmup"]) > 0, "with", "without"))
    findings = []
    for norm in ("post", "pre"):
        rows = usable[usable["norm"].eq(norm)]
        table = _both(_matched(rows, keys, "_warmup", "outcome_loss", "train.warmup"), "without", "with")
        if table is None:
            continue
        without, with_ = table["without"], table["with"]
        diverged = _diverged(rows[rows["_warmup"].eq("without")])
        medians = f"median final train loss {_num(without.median())} without warmup vs {_num(with_.median())} with"
        if norm == "post":
            better = with_ < without
            findings.append(Finding(
                "Xiong et al. 2020",
                "post-LN trained with Adam and no learning-rate warmup trains badly; warmup rescues it",
                "final train loss of post-LN runs, train.warmup = 0 vs > 0",
                f"{medians}; warmup lower in {_of(better)}; diverged without warmup: {diverged} runs",
                _majority(better),
            ))
        else:
            fine = np.isfinite(without) & (without <= with_ * (1 + NEAR))
            findings.append(Finding(
                "Xiong et al. 2020",
                "pre-LN trains without learning-rate warmup",
                "final train loss of pre-LN runs, train.warmup = 0 vs > 0",
                f"{medians}; without warmup within {NEAR:.0%} or better in {_of(fine)}; "
                f"diverged without warmup: {diverged} runs",
                _majority(fine),
            ))
    return findings


def rank_collapse_without_skips(runs: pd.DataFrame, keys: Sequence[str]) -> list[Finding]:
    """(3) Dong et al. 2021: without skips, self-attention stacks collapse toward rank one."""
    if not _has(runs, "rank_residual_init_last", "residual"):
        return []
    usable = runs[runs["residual"].isin(["true", "false"])]
    if "model.name" in usable:
        usable = usable[usable["model.name"].eq("transformer")]
    table = _both(_matched(usable, keys, "residual", "rank_residual_init_last"), "false", "true")
    if table is None:
        return []
    collapsed = table["false"] < RANK_COLLAPSE * table["true"]
    value = (f"median {_num(table['false'].median())} without skips vs {_num(table['true'].median())} with; "
             f"below {RANK_COLLAPSE:g}× the value with skips in {_of(collapsed)}")
    end = _both(_matched(usable, keys, "residual", "rank_residual_end_last"), "false", "true")
    if end is not None:
        value += f"; after training {_num(end['false'].median())} vs {_num(end['true'].median())}"
    return [Finding(
        "Dong et al. 2021",
        "without skip connections self-attention stacks lose rank (tokens collapse to one vector); skips prevent it",
        "relative rank residual ‖X − 1·x̄ᵀ‖/‖X‖ at the last block at init, transformer runs",
        value,
        _majority(collapsed),
    )]


def degradation_plain_vs_residual(runs: pd.DataFrame, keys: Sequence[str]) -> list[Finding]:
    """(4) He et al. 2016: deeper plain nets train worse; the same depth with skips trains."""
    if not _has(runs, "outcome_loss", "residual", "depth"):
        return []
    usable = runs[runs["residual"].isin(["true", "false"]) & runs["outcome_loss"].notna() & runs["depth"].notna()]
    within = [key for key in keys if key not in ("residual", "depth") and key in usable]
    usable = usable.assign(
        _cell=[",".join(map(format_value, row)) for row in usable[within].itertuples(index=False)],
        _depth=pd.to_numeric(usable["depth"]),
    )
    settings = []  # (smallest depth, largest depth, plain small, plain large, skips large)
    for _, cell in usable.groupby("_cell"):
        medians = cell.groupby(["_depth", "residual"])["outcome_loss"].median().unstack("residual")
        if "true" not in medians or "false" not in medians:
            continue
        both = medians[["false", "true"]].dropna()
        if len(both):
            plain = medians["false"].dropna()
            settings.append((plain.index[0], both.index[-1], plain.iloc[0], both["false"].iloc[-1], both["true"].iloc[-1]))
    if not settings:
        return []
    table = pd.DataFrame(settings, columns=["small", "large", "plain_small", "plain_large", "skips_large"])
    skips_win = table["skips_large"] < table["plain_large"]
    deeper = table[table["large"] > table["small"]]
    if len(deeper):
        agree = (deeper["plain_large"] > deeper["plain_small"]) & (deeper["skips_large"] < deeper["plain_large"])
        row = deeper.iloc[0]
        return [Finding(
            "He et al. 2016",
            "deeper plain nets reach a higher training loss than shallower ones, while skips at the same depth train",
            "final train loss (median over seeds; diverged counts as worst), plain vs residual",
            f"plain {_num(row.plain_small)} at depth {format_value(row.small)} → {_num(row.plain_large)} at depth "
            f"{format_value(row.large)}, with skips {_num(row.skips_large)} at depth {format_value(row.large)}; "
            f"the pattern holds in {_of(agree)}",
            _majority(agree),
        )]
    row = table.iloc[0]
    return [Finding(
        "He et al. 2016",
        "with identity skips a net trains to a lower loss than the plain net of the same depth",
        "final train loss (median over seeds), plain vs residual",
        f"plain {_num(row.plain_large)} vs with skips {_num(row.skips_large)} at depth {format_value(row.large)}; "
        f"skips lower in {_of(skips_win)}",
        _majority(skips_win),
    )]


def plain_mlp_stuck(runs: pd.DataFrame, keys: Sequence[str]) -> list[Finding]:
    """(4b) He et al. 2016, the classic small case: a deep plain MLP on digits stays near ln 10."""
    if not _has(runs, "model.name", "task.name", "residual", "depth", "stats_loss"):
        return []
    rows = runs[runs["model.name"].eq("mlp") & runs["task.name"].eq("digits") & runs["residual"].eq("false")
                & runs["status"].eq("completed") & runs["stats_loss"].notna()]
    if "norm" in rows:
        rows = rows[rows["norm"].eq("none")]
    depth = pd.to_numeric(rows["depth"])
    if rows.empty or depth.max() < DEEP_MLP_MIN_DEPTH:
        return []
    deepest = rows[depth.eq(depth.max())]
    loss = deepest["stats_loss"].median()
    return [Finding(
        "He et al. 2016",
        "a deep MLP on 10-class digits without skips or normalization stays at a loss near ln 10 ≈ 2.30",
        f"final train loss, plain MLP (norm=none) on digits at depth {format_value(depth.max())}, "
        f"median of {len(deepest)} run(s)",
        f"{_num(loss)} (ln 10 = {LN10:.3f}; stuck means ≥ {LN10 - STUCK_MARGIN:.2f})",
        bool(loss >= LN10 - STUCK_MARGIN),
    )]


def deepnorm_vs_post(runs: pd.DataFrame, keys: Sequence[str]) -> list[Finding]:
    """(5) Wang et al. 2022: DeepNorm trains post-LN-style stacks deep."""
    if not _has(runs, "norm", "residual", "outcome_loss"):
        return []
    usable = runs[runs["residual"].eq("true") & runs["norm"].isin(["deepnorm", "post"]) & runs["outcome_loss"].notna()]
    where = ""
    if "depth" in usable and usable["depth"].notna().all() and len(usable):
        depths = {norm: set(pd.to_numeric(rows["depth"])) for norm, rows in usable.groupby("norm")}
        common = depths.get("deepnorm", set()) & depths.get("post", set())
        if not common:
            return []
        usable = usable[pd.to_numeric(usable["depth"]).eq(max(common))]
        where = f" at the largest depth, {format_value(max(common))}"
    table = _both(_matched(usable, keys, "norm", "outcome_loss", "depth"), "post", "deepnorm")
    if table is None:
        return []
    fine = np.isfinite(table["deepnorm"]) & (table["deepnorm"] <= table["post"] * (1 + NEAR))
    return [Finding(
        "Wang et al. 2022",
        "DeepNorm trains post-LN-style stacks at depths where post-LN struggles",
        f"final train loss{where}, deepnorm vs post (median over seeds)",
        f"deepnorm {_num(table['deepnorm'].median())} vs post {_num(table['post'].median())}; deepnorm within "
        f"{NEAR:.0%} or better in {_of(fine)}; diverged: deepnorm {_diverged(usable[usable['norm'].eq('deepnorm')])}, "
        f"post {_diverged(usable[usable['norm'].eq('post')])} runs",
        _majority(fine),
    )]


def rezero_vs_others(runs: pd.DataFrame, keys: Sequence[str]) -> list[Finding]:
    """(6) Bachlechner et al. 2020: ReZero trains deep stacks fast without normalization.

    ReZero runs (those without normalization when there are any) against every residual=true run of the
    same setting whatever its norm, on the train loss a quarter of the way through training.
    """
    if not _has(runs, "residual", "early_loss"):
        return []
    usable = runs[runs["status"].isin(["completed", "diverged"]) & runs["early_loss"].notna()]
    rezero = usable[usable["residual"].eq("rezero")]
    if "norm" in rezero and rezero["norm"].eq("none").any():
        rezero = rezero[rezero["norm"].eq("none")]
    others = usable[usable["residual"].eq("true")]
    both = pd.concat([rezero, others])
    exclude = ("norm", "norm_type", "init")
    table = _both(_matched(both, keys, "residual", "early_loss", *exclude), "true", "rezero")
    if table is None:
        return []
    fine = np.isfinite(table["rezero"]) & (table["rezero"] <= table["true"] * (1 + NEAR))
    norms = "/".join(sorted(rezero["norm"].astype(str).unique())) if "norm" in rezero else "?"
    per_norm = ""
    if "norm" in others:
        medians = others.groupby("norm")["early_loss"].median()
        per_norm = " (" + ", ".join(f"norm={norm}: {_num(v)}" for norm, v in medians.items()) + ")"
    return [Finding(
        "Bachlechner et al. 2020",
        "residual branches scaled by a zero-initialised scalar train deep stacks fast, even without normalization",
        f"train loss a quarter of the way through training, residual=rezero (norm={norms}) vs residual=true, "
        "median over seeds",
        f"rezero {_num(table['rezero'].median())} vs residual=true {_num(table['true'].median())}{per_norm}; "
        f"rezero within {NEAR:.0%} or better in {_of(fine)}",
        _majority(fine),
    )]


def hidden_rms_growth(runs: pd.DataFrame, keys: Sequence[str]) -> list[Finding]:
    """(7) Xiong et al. 2020: pre-LN's residual stream grows with depth, post-LN's stays constant.

    Each pre-LN block adds about the same variance to the stream, so its RMS grows like √L: from the
    smallest depth L₀ to the largest L₁ by √(L₁/L₀). "Grows" = at least half of that growth; "flat" = less.
    """
    if not _has(runs, "hidden_rms_init_last", "norm", "residual", "depth"):
        return []
    runs = _transformers(runs)
    usable = runs[runs["residual"].eq("true") & runs["hidden_rms_init_last"].notna() & runs["depth"].notna()]
    findings = []
    for norm, claim in (("pre", "pre-LN's residual stream grows with depth"),
                        ("post", "post-LN's residual stream stays the same size whatever the depth")):
        medians = _by_depth(usable[usable["norm"].eq(norm)], "hidden_rms_init_last")
        if len(medians) < 2:
            continue
        growth = medians.iloc[-1] / medians.iloc[0]
        expected = math.sqrt(float(medians.index[-1]) / float(medians.index[0]))
        threshold = 1 + RMS_GROWTH_SHARE * (expected - 1)
        grows = growth >= threshold
        findings.append(Finding(
            "Xiong et al. 2020",
            claim,
            f"hidden-state RMS at the last block at init, {norm}-LN with skips, median over runs",
            f"{_depth_text(medians)} (×{growth:.2f}; √L growth would be ×{expected:.2f}, "
            f"so grows means ≥ ×{threshold:.2f}, flat means within ×{threshold:.2f})",
            bool(grows if norm == "pre" else 1 / threshold < growth < threshold),
        ))
    return findings


FINDINGS: tuple[Callable[[pd.DataFrame, Sequence[str]], list[Finding]], ...] = (
    grad_ratio_by_placement,
    warmup_post_ln,
    rank_collapse_without_skips,
    degradation_plain_vs_residual,
    plain_mlp_stuck,
    deepnorm_vs_post,
    rezero_vs_others,
    hidden_rms_growth,
)


def compute_findings(runs: pd.DataFrame, keys: Sequence[str]) -> list[Finding]:
    """Every finding the data support, in REFERENCES.md's order of claims."""
    return [finding for compute in FINDINGS for finding in compute(runs, keys)]

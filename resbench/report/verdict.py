"""The verdict model: a claim stated before the data, matched runs, and a three-valued verdict.

A finding compares *matched* runs: identical in every config key except the claim's variables and
`seed`, seeds paired where both sides have them. Each matched pair (or, for a one-sided claim, each
run) gives one *effect*, and the verdict is

- **agrees** when every effect clears the claim's margin in the claimed direction,
- **disagrees** when every effect clears the other margin, the other way,
- **inconclusive** otherwise (no matched runs, seeds or settings split, effects within the margin),
  and the line then names the command that would settle it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from resbench.report.aggregate import format_value

AGREES, DISAGREES, INCONCLUSIVE = "agrees", "disagrees", "inconclusive"
SETTLING_SEEDS = 3  # fewer seeds than this on a split or marginal result: ask for this many
SPREAD_MIN_SEEDS = 3  # the spread (min–max of the effect) is shown from this many seeds on
NOT_MATCHED = ("seed", "threads")  # never part of a setting: what is paired, and how a run executes


@dataclass(frozen=True)
class Margin:
    """Where an effect decides: it agrees at or beyond `agree`, disagrees at or beyond `disagree`.

    `agree > disagree` means larger effects support the claim; `agree < disagree`, smaller ones.
    The band between the two is inconclusive, so no effect can both agree and disagree.
    """

    agree: float
    disagree: float
    unit: str = ""  # "×" for ratios, "%" for relative changes (values stored as fractions)

    @property
    def higher_agrees(self) -> bool:
        return self.agree > self.disagree

    def judge(self, effect: float) -> str:
        if effect is None or (isinstance(effect, float) and math.isnan(effect)):
            return INCONCLUSIVE
        if self.higher_agrees:
            return AGREES if effect >= self.agree else DISAGREES if effect <= self.disagree else INCONCLUSIVE
        return AGREES if effect <= self.agree else DISAGREES if effect >= self.disagree else INCONCLUSIVE

    def show(self, value: float) -> str:
        if self.unit == "%":
            return f"{value:+.0%}"
        return f"{self.unit}{number(value)}"

    def text(self) -> str:
        agree, disagree = ("≥", "≤") if self.higher_agrees else ("≤", "≥")
        return f"agrees {agree} {self.show(self.agree)}, disagrees {disagree} {self.show(self.disagree)}"


@dataclass(frozen=True)
class Claim:
    """Everything a finding says before it looks at data."""

    source: str  # "Xiong et al. 2020" (REFERENCES.md)
    claim: str  # what the paper says, one clause
    quantity: str  # the paper's quantity, as measured here
    comparison: str  # which runs are set against which
    margin: Margin


@dataclass(frozen=True)
class Part:
    """One judged quantity of a finding: its verdict and the values behind it."""

    name: str  # "" for a one-part finding
    verdict: str
    values: str  # "post 1.8 vs pre 0.7; effect ×2.6 (×2.1–×3.0)"
    n_seeds: int
    n_settings: int
    reason: str = ""  # why inconclusive: "seeds split", "within the margin", "no matched runs", ...
    premise: bool = False  # a condition for the claim to be tested at all (DeepNet: post-LN struggles)


@dataclass(frozen=True)
class Finding:
    """A claim with its verdict on one set of runs."""

    source: str
    claim: str
    measured: str  # the quantity
    comparison: str
    margin: str
    verdict: str  # agrees | disagrees | inconclusive
    value: str  # the values, seeds, settings and spread behind the verdict
    settle: str = ""  # the command that would settle an inconclusive verdict

    @property
    def agrees(self) -> bool:
        return self.verdict == AGREES

    def text(self) -> str:
        settle = f" To settle: `{self.settle}`." if self.settle else ""
        return (f"{self.verdict} with {self.source} ({self.claim}): {self.measured}, {self.comparison}: "
                f"{self.value} [{self.margin}].{settle}")


# ---------------------------------------------------------------------------------------------
# numbers in lines


def number(value: float) -> str:
    if value is None or pd.isna(value):
        return "—"
    if np.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.3g}"


def spread(effects: Sequence[float], margin: Margin) -> str:
    """`(min–max)` of the finite effects, shown in the margin's unit."""
    finite = [e for e in effects if e is not None and np.isfinite(e)]
    if not finite:
        return ""
    return f" ({margin.show(min(finite))}–{margin.show(max(finite))})"


# ---------------------------------------------------------------------------------------------
# matching


def _text(values: pd.Series) -> pd.Series:
    return values.map(format_value).str.lower()


def matching_keys(runs: pd.DataFrame, config_keys: Sequence[str], variables: Sequence[str]) -> list[str]:
    """Config keys that must be equal for two runs to be compared: every key that varies, except the
    claim's variables, `seed`, and the keys that vary with a variable (a group choice sets several)."""
    copies_of = [_text(runs[v]) for v in variables if v in runs]
    keys, kept = [], []
    for key in config_keys:
        if key in variables or key in NOT_MATCHED or key not in runs:
            continue
        values = _text(runs[key])
        if values.nunique() <= 1 or any(values.equals(copy) for copy in copies_of):
            continue
        if not any(values.equals(other) for other in kept):  # a copy of a kept key adds nothing
            keys.append(key)
            kept.append(values)
    return keys


def setting_labels(runs: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """Each run's values of the matched keys as one label (`depth=6,train.warmup=0`)."""
    if not keys:
        return pd.Series("", index=runs.index)
    parts = [key + "=" + runs[key].map(format_value) for key in keys]
    return pd.concat(parts, axis=1).agg(",".join, axis=1)


def seed_of(runs: pd.DataFrame) -> pd.Series:
    return runs["seed"] if "seed" in runs else pd.Series(0, index=runs.index)


def pairs(runs: pd.DataFrame, config_keys: Sequence[str], variables: Sequence[str],
          side_a: pd.Series, side_b: pd.Series) -> pd.DataFrame:
    """Matched pairs of runs: columns setting, seed, run_a, run_b (the `run` ids).

    A setting is one value of every matched key and one value of the variables on each side (so
    `norm=post` and `norm=pre` against `norm=none` are two settings). Within a setting, runs are
    paired by seed where both sides have it; with no common seed, the lowest seed of each side.
    """
    both = runs[side_a | side_b]
    keys = matching_keys(both, config_keys, variables)
    present = [v for v in variables if v in runs]
    frame = both.assign(_setting=setting_labels(both, keys), _seed=seed_of(both),
                        _values=setting_labels(both, present), _a=side_a[both.index])
    rows = []
    for setting, cell in frame.groupby("_setting", sort=False):
        a, b = cell[cell["_a"]], cell[~cell["_a"]]
        for a_values, a_runs in a.groupby("_values", sort=False):
            for b_values, b_runs in b.groupby("_values", sort=False):
                label = ",".join(part for part in (setting, f"{a_values} vs {b_values}") if part)
                a_by_seed = a_runs.drop_duplicates("_seed").set_index("_seed")["run"]
                b_by_seed = b_runs.drop_duplicates("_seed").set_index("_seed")["run"]
                common = sorted(set(a_by_seed.index) & set(b_by_seed.index), key=str)
                if common:
                    rows += [(label, seed, a_by_seed[seed], b_by_seed[seed]) for seed in common]
                else:
                    lowest = (by_seed.sort_index().iloc[0] for by_seed in (a_by_seed, b_by_seed))
                    rows.append((label, "unpaired", *lowest))
    return pd.DataFrame(rows, columns=["setting", "seed", "run_a", "run_b"])


def singles(runs: pd.DataFrame, config_keys: Sequence[str], variables: Sequence[str] = ()) -> pd.DataFrame:
    """One-sided claims: every run is a unit. Columns setting, seed, run."""
    keys = matching_keys(runs, config_keys, variables)
    return pd.DataFrame({"setting": setting_labels(runs, keys), "seed": seed_of(runs), "run": runs["run"]})


# ---------------------------------------------------------------------------------------------
# deciding


def judge(effects: Sequence[float], margin: Margin) -> tuple[str, str]:
    """(verdict, reason) over the effects of every unit: all must clear the same margin."""
    if len(effects) == 0:
        return INCONCLUSIVE, "no matched runs"
    verdicts = {margin.judge(effect) for effect in effects}
    if verdicts == {AGREES}:
        return AGREES, ""
    if verdicts == {DISAGREES}:
        return DISAGREES, ""
    if {AGREES, DISAGREES} <= verdicts:
        return INCONCLUSIVE, "seeds or settings split"
    if all(e is None or pd.isna(e) for e in effects):
        return INCONCLUSIVE, "not measurable"
    return INCONCLUSIVE, "within the margin"


@dataclass
class Units:
    """The judged units of one part: their effects, settings and seeds."""

    effects: list[float] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)
    seeds: list[object] = field(default_factory=list)

    def add(self, effect: float, setting: str, seed: object) -> None:
        self.effects.append(effect)
        self.settings.append(setting)
        self.seeds.append(seed)

    @property
    def n_seeds(self) -> int:
        return len({seed for seed in self.seeds if seed != "unpaired"}) or (1 if self.seeds else 0)

    @property
    def n_settings(self) -> int:
        return len(set(self.settings))


def part(name: str, units: Units, margin: Margin, values: str, premise: bool = False) -> Part:
    """Judge `units`; `values` is the text of what was compared (the effect and spread are added)."""
    verdict, reason = judge(units.effects, margin)
    finite = [e for e in units.effects if e is not None and not pd.isna(e)]
    text = values
    if finite:
        median = float(np.median(finite))
        text += f"; effect {margin.show(median)}"
        if units.n_seeds >= SPREAD_MIN_SEEDS:
            text += spread(finite, margin)
    return Part(name, verdict, text, units.n_seeds, units.n_settings, reason, premise)


def combine(parts: Sequence[Part]) -> tuple[str, str]:
    """One verdict from parts: a premise that does not hold leaves the claim untested (inconclusive);
    then every claim part must agree for agrees, and one that disagrees makes it disagree."""
    for premise in (p for p in parts if p.premise):
        if premise.verdict != AGREES:
            return INCONCLUSIVE, f"premise not met ({premise.name}: {premise.verdict})"
    claims = [p for p in parts if not p.premise]
    verdicts = {p.verdict for p in claims}
    if verdicts == {AGREES}:
        return AGREES, ""
    if DISAGREES in verdicts:
        return DISAGREES, ""
    reasons = [f"{p.name}: {p.reason}" if p.name else p.reason for p in claims if p.verdict == INCONCLUSIVE]
    return INCONCLUSIVE, "; ".join(reasons)


def settle_command(runs: pd.DataFrame, n_seeds: int, extra: str = "") -> str:
    """`resbench sweep --resume DIR seed=0,1,2` (more seeds, plus `extra` overrides) for these runs."""
    sources = runs["source"].dropna().unique() if "source" in runs else []
    where = str(sources[0]) if len(sources) else "DIR"
    seeds = SETTLING_SEEDS if n_seeds < SETTLING_SEEDS else n_seeds + 2
    overrides = " ".join(part for part in (extra, "seed=" + ",".join(map(str, range(seeds)))) if part)
    return f"resbench sweep --resume {where} {overrides}"


def finding(claim: Claim, parts: Sequence[Part], runs: pd.DataFrame, extra: str = "",
            margin_text: str | None = None) -> Finding:
    """The Finding of `claim` from its judged parts: values, seeds, settings, and how to settle it."""
    verdict, reason = combine(parts)
    n_seeds = max((p.n_seeds for p in parts), default=0)
    n_settings = max((p.n_settings for p in parts), default=0)
    shown = "; ".join(f"{p.name}: {p.values} → {p.verdict}" if p.name else p.values for p in parts)
    value = f"{shown}; {n_seeds} seed{'s' if n_seeds != 1 else ''}, {n_settings} matched setting" + (
        "s" if n_settings != 1 else "")
    if reason:
        value += f"; {reason}"
    settle = settle_command(runs, n_seeds, extra) if verdict == INCONCLUSIVE else ""
    return Finding(claim.source, claim.claim, claim.quantity, claim.comparison,
                   margin_text or claim.margin.text(), verdict, value, settle)


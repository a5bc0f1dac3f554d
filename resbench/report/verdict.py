"""The verdict model: a claim stated before the data, matched runs, the evidence a verdict needs, and a
three-valued verdict.

A finding compares *matched* runs: identical in every config key except the claim's variables and
`seed`. Each matched pair of runs (or each run, for a one-sided claim) gives *units*, each with one
effect: one unit per init draw for a quantity measured at step 0 (every draw of every seed), one per
seed for a training outcome. Seeds are paired where both sides have them; a seed only one side has
(or a run without a `seed`) is set against each run of the other side and marked unpaired: it counts
in the verdict's share and in the line, never as a paired seed. The claim's `Rule` says how much
evidence a verdict needs. In each matched setting:

- **agrees** when at least the rule's share of the measured units clear the claim's margin the
  claimed way, **disagrees** when that share clears the other margin the other way;
- otherwise inconclusive: units split (some each way) or within the margin.

The finding agrees (disagrees) when every setting does and each has the rule's minimum of units
(init: draws; training: paired seeds); with fewer it is inconclusive and says which way the data
lean. Settings that differ are inconclusive too. An inconclusive line names the command that would
settle it. An effect is judged as it is shown: rounded as the line prints it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from resbench import formatting
from resbench.records import NOT_IN_HASH
from resbench.report.aggregate import format_value

AGREES, DISAGREES, INCONCLUSIVE = "agrees", "disagrees", "inconclusive"
SPLIT, WITHIN = "split", "within the margin"
NOT_MATCHED = ("seed", "threads")  # never part of a setting: what is paired, and how a run executes
NO_SEED = "no seed: "  # a run without a `seed` key is its own unit under this label plus its name
SPREAD_MIN_UNITS = 3  # the spread (min–max of the effect) is shown from this many units on


# ---------------------------------------------------------------------------------------------
# how much evidence a verdict needs, and where an effect decides


@dataclass(frozen=True)
class Rule:
    """How much evidence a verdict needs, stated with the claims before any data is read."""

    unit: str  # "draw": a quantity at init, one unit per draw of every seed; "seed": a training outcome
    minimum: int  # per matched setting: measured draws, or paired seeds
    share: float  # the fraction of a setting's measured units that must clear one margin

    def needed(self, n_units: int) -> int:
        return math.ceil(self.share * n_units - 1e-9)

    def text(self) -> str:
        """`every seed clears one margin, ≥ 3 paired seeds in every matched setting`."""
        if self.share >= 1:
            return f"every {self.unit} clears one margin, ≥ {self.minimum} paired {self.unit}s in every matched setting"
        return (f"≥ {self.share * 100:.0f} % of the {self.unit}s clear one margin, ≥ {self.minimum} {self.unit}s in "
                f"every matched setting")


AT_INIT = Rule("draw", 8, 0.75)  # init quantities swing 2–3× between draws: a verdict rests on many
TRAINED = Rule("seed", 3, 1.0)  # a training outcome: ≥ 3 seeds, and no seed on the other side


@dataclass(frozen=True)
class Margin:
    """Where an effect decides: it agrees at or beyond `agree`, disagrees at or beyond `disagree`.

    `agree > disagree` means larger effects support the claim; `agree < disagree`, smaller ones.
    The band between the two is inconclusive, so no effect can both agree and disagree. An effect
    is judged as it is shown (`rounded`), so a line never shows a value on the other side of its margin.
    """

    agree: float
    disagree: float
    unit: str = ""  # "×" for ratios, "%" for relative changes (values stored as fractions)

    @property
    def higher_agrees(self) -> bool:
        return self.agree > self.disagree

    def rounded(self, value: float) -> float:
        """`value` as the line shows it: a whole percent for "%", 3 significant digits otherwise."""
        if value is None or not np.isfinite(value):
            return value
        if self.unit == "%":
            return float(f"{value * 100:.0f}") / 100
        return float(formatting.number(float(value)))

    def judge(self, effect: float) -> str:
        if effect is None or (isinstance(effect, float) and math.isnan(effect)):
            return INCONCLUSIVE
        effect = self.rounded(effect)
        if self.higher_agrees:
            return AGREES if effect >= self.agree else DISAGREES if effect <= self.disagree else INCONCLUSIVE
        return AGREES if effect <= self.agree else DISAGREES if effect >= self.disagree else INCONCLUSIVE

    def show(self, value: float) -> str:
        value = self.rounded(value)
        if self.unit == "%":
            return f"{'+' if value > 0 else '-'}∞ %" if np.isinf(value) else f"{value * 100:+.0f} %"
        return f"{self.unit}{number(value)}"

    def text(self) -> str:
        agree, disagree = ("≥", "≤") if self.higher_agrees else ("≤", "≥")
        return f"agrees {agree} {self.show(self.agree)}, disagrees {disagree} {self.show(self.disagree)}"


@dataclass(frozen=True)
class Claim:
    """Everything a finding says before it looks at data."""

    source: str  # "Xiong et al. 2020" (docs/references.md)
    claim: str  # what the paper says, one clause
    quantity: str  # the paper's quantity, as measured here
    comparison: str  # which runs are set against which
    margin: Margin
    short: str  # the claim in a few words, for the terminal's line
    rule: Rule = TRAINED  # the evidence its main quantity needs


# ---------------------------------------------------------------------------------------------
# units


@dataclass(frozen=True)
class Unit:
    effect: float
    setting: str
    seed: str  # the seed (as text); a run without one: NO_SEED + its name
    draw: int = 0  # the init draw (0: the training model's own initialisation)
    paired: bool = True  # False: a seed the other side lacks, or a run without a seed

    @property
    def measured(self) -> bool:
        return self.effect is not None and not pd.isna(self.effect)


@dataclass
class Units:
    """The judged units of one part."""

    items: list[Unit] = field(default_factory=list)

    def add(self, effect: float, setting: str, seed: object, draw: int = 0, paired: bool = True) -> None:
        self.items.append(Unit(effect, setting, str(seed), int(draw), bool(paired)))

    @property
    def effects(self) -> list[float]:
        return [unit.effect for unit in self.items]

    @property
    def settings(self) -> list[str]:
        return [unit.setting for unit in self.items]

    def measured(self) -> list[Unit]:
        return [unit for unit in self.items if unit.measured]

    @property
    def n_seeds(self) -> int:
        """Paired seeds with a measured effect."""
        return len({unit.seed for unit in self.measured() if unit.paired})

    @property
    def n_settings(self) -> int:
        return len(set(self.settings))

    def evidence(self, rule: Rule) -> str:
        """`3 seeds × 8 draws`, `1 seed, 2 unpaired`, …: what the verdict rests on."""
        measured = self.measured()
        if not measured:
            return f"none of {len(self.items)} {rule.unit}{'s' if len(self.items) != 1 else ''} measurable"
        seeds = self.n_seeds
        text = f"{seeds} seed{'s' if seeds != 1 else ''}"
        if rule.unit == "draw":
            draws = len({unit.draw for unit in measured})
            text += f" × {draws} draw{'s' if draws != 1 else ''}"
        unpaired = {unit.seed for unit in measured if not unit.paired}
        unseeded = {seed for seed in unpaired if seed.startswith(NO_SEED)}
        if unpaired - unseeded:
            text += f", {len(unpaired - unseeded)} unpaired"
        if unseeded:
            text += f", {len(unseeded)} without a seed"
        missing = len(self.items) - len(measured)
        if missing:
            text += f", {missing} of {len(self.items)} not measurable"
        return text


# ---------------------------------------------------------------------------------------------
# numbers in lines


def number(value: float) -> str:
    """A number in a finding's text: infinity as ∞ (formatting.number)."""
    return formatting.number(value, infinity="∞")


def spread(effects: Sequence[float], margin: Margin) -> str:
    """`(min–max)` of the finite effects, shown in the margin's unit."""
    finite = [e for e in effects if e is not None and np.isfinite(e)]
    if not finite:
        return ""
    return f" ({margin.show(min(finite))}–{margin.show(max(finite))})"


def median_effect(effects: Sequence[float]) -> float:
    """Median of the measured effects (∞ counts, NaN does not); NaN when there are none."""
    measured = [e for e in effects if e is not None and not pd.isna(e)]
    return float(np.median(measured)) if measured else np.nan


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
    """Each run's seed as text; a run without one gets a label of its own, so it is never paired."""
    seeds = runs["seed"] if "seed" in runs else pd.Series(np.nan, index=runs.index)
    names = runs["name"] if "name" in runs else runs["run"].astype(str)
    return pd.Series([NO_SEED + str(name) if pd.isna(seed) else format_value(seed)
                      for seed, name in zip(seeds, names)], index=runs.index, dtype=object)


def _pair_rows(label: str, a_runs: pd.DataFrame, b_runs: pd.DataFrame) -> list[tuple]:
    """(setting, seed, run_a, run_b, paired) for one cell: each run of a common seed against each run of
    that seed on the other side (copies of a config both count), and each other run, on either side,
    against each run of the other side (unpaired, under its own seed)."""
    a = list(zip(a_runs["run"], a_runs["seed_label"]))
    b = list(zip(b_runs["run"], b_runs["seed_label"]))
    b_by_seed = defaultdict(list)
    for run, seed in b:
        b_by_seed[seed].append(run)
    common = {seed for _, seed in a} & set(b_by_seed)
    rows = [(label, seed, run_a, run_b, True) for run_a, seed in a if seed in common for run_b in b_by_seed[seed]]
    rows += [(label, seed, run_a, run_b, False) for run_a, seed in a if seed not in common for run_b, _ in b]
    rows += [(label, seed, run_a, run_b, False) for run_b, seed in b if seed not in common for run_a, _ in a]
    return rows


def pairs(runs: pd.DataFrame, config_keys: Sequence[str], variables: Sequence[str],
          side_a: pd.Series, side_b: pd.Series) -> pd.DataFrame:
    """Matched pairs of runs: columns setting, seed, run_a, run_b (the `run` ids), paired.

    A setting is one value of every matched key and one value of the variables on each side (so
    `norm=post` and `norm=pre` against `norm=none` are two settings). Within a setting, runs are
    paired by seed; a seed one side lacks is set against each run of the other side (paired False).
    """
    both = runs[side_a | side_b]
    keys = matching_keys(both, config_keys, variables)
    present = [v for v in variables if v in runs]
    frame = both.assign(_setting=setting_labels(both, keys), seed_label=seed_of(both),
                        _values=setting_labels(both, present), _a=side_a[both.index])
    rows = []
    for setting, cell in frame.groupby("_setting", sort=False):
        a, b = cell[cell["_a"]], cell[~cell["_a"]]
        for a_values, a_runs in a.groupby("_values", sort=False):
            for b_values, b_runs in b.groupby("_values", sort=False):
                label = ",".join(part for part in (setting, f"{a_values} vs {b_values}") if part)
                rows += _pair_rows(label, a_runs, b_runs)
    return pd.DataFrame(rows, columns=["setting", "seed", "run_a", "run_b", "paired"])


def singles(runs: pd.DataFrame, config_keys: Sequence[str], variables: Sequence[str] = ()) -> pd.DataFrame:
    """One-sided claims: every run is a unit. Columns setting, seed, run, paired (False: no seed)."""
    keys = matching_keys(runs, config_keys, variables)
    seeds = seed_of(runs)
    return pd.DataFrame({"setting": setting_labels(runs, keys), "seed": seeds, "run": runs["run"],
                         "paired": ~seeds.str.startswith(NO_SEED)})


def duplicate_configs(runs: pd.DataFrame, config_keys: Sequence[str]) -> list[list[str]]:
    """Names of runs that share one resolved config (a copied run dir, a config run twice), per group.

    Keys of how a run executes (`records.NOT_IN_HASH`) do not count; runs without a seed are never copies.
    """
    keys = [key for key in config_keys if key in runs and key not in NOT_IN_HASH]
    seeded = runs[~seed_of(runs).str.startswith(NO_SEED)]
    if seeded.empty or not keys:
        return []
    labels = setting_labels(seeded, keys)
    groups = seeded.groupby(labels, sort=False)["name"].agg(sorted)
    return sorted(names for names in groups if len(names) > 1)


# ---------------------------------------------------------------------------------------------
# deciding


@dataclass(frozen=True)
class Judgement:
    verdict: str
    reason: str = ""  # why inconclusive
    lean: str = ""  # where the data point when there are too few units for a verdict


def _setting_verdict(units: Sequence[Unit], margin: Margin, rule: Rule) -> str:
    verdicts = [margin.judge(unit.effect) for unit in units]
    for side in (AGREES, DISAGREES):
        if verdicts.count(side) >= rule.needed(len(verdicts)):
            return side
    return SPLIT if AGREES in verdicts and DISAGREES in verdicts else WITHIN


def _count(units: Sequence[Unit], rule: Rule) -> int:
    """What a setting's units count toward the rule's minimum: paired seeds, or the draws of paired runs."""
    paired = [unit for unit in units if unit.paired]
    return len({unit.seed for unit in paired}) if rule.unit == "seed" else len(paired)


def judge(units: Units, margin: Margin, rule: Rule) -> Judgement:
    """The verdict over `units` under `rule` (see the module's docstring)."""
    if not units.items:
        return Judgement(INCONCLUSIVE, "no matched runs")
    by_setting: dict[str, list[Unit]] = {unit.setting: [] for unit in units.items}
    for unit in units.measured():
        by_setting[unit.setting].append(unit)
    if not any(by_setting.values()):
        return Judgement(INCONCLUSIVE, "not measurable")
    verdicts = [_setting_verdict(cell, margin, rule) for cell in by_setting.values() if cell]
    leans = set(verdicts)
    if len(leans) == 1 and leans <= {AGREES, DISAGREES}:
        lean = leans.pop()
        fewest = min(_count(cell, rule) for cell in by_setting.values())  # a setting none measured: 0
        if fewest >= rule.minimum:
            return Judgement(lean)
        return Judgement(INCONCLUSIVE, f"too few {rule.unit}s, {fewest} of {rule.minimum}, leans {lean}", lean)
    if {AGREES, DISAGREES} <= leans:
        return Judgement(INCONCLUSIVE, "settings split")
    if SPLIT in leans:
        return Judgement(INCONCLUSIVE, f"{rule.unit}s split")
    if len(verdicts) > 1:
        return Judgement(INCONCLUSIVE, f"{WITHIN} in {verdicts.count(WITHIN)} of {len(verdicts)} settings")
    return Judgement(INCONCLUSIVE, WITHIN)


@dataclass(frozen=True)
class Part:
    """One judged quantity of a finding: its verdict and the values behind it."""

    name: str  # "" for a one-part finding
    verdict: str
    values: str  # the full text: "post 1.8 vs pre 0.7; effect ×2.6 (×2.1–×3.0); 7 of 8 clear"
    key: str  # the key number, short: "×2.6"
    evidence: str  # "3 seeds × 8 draws"
    n_seeds: int
    n_settings: int
    reason: str = ""  # why inconclusive: "draws split", "within the margin", "no matched runs", ...
    lean: str = ""
    premise: bool = False  # a condition for the claim to be tested at all (DeepNet: post-LN struggles)
    gates: tuple[str, ...] = ()  # a premise: the parts it is a condition of (empty: every part)
    unit: str = "seed"  # what its units are (its rule's)


def _clearing(units: Units, margin: Margin) -> str:
    """`6 of 8 ≥ ×1.5, 1 ≤ ×1.2`: how the measured units fall against the margins."""
    verdicts = [margin.judge(unit.effect) for unit in units.measured()]
    agree, disagree = ("≥", "≤") if margin.higher_agrees else ("≤", "≥")
    return (f"{verdicts.count(AGREES)} of {len(verdicts)} {agree} {margin.show(margin.agree)}, "
            f"{verdicts.count(DISAGREES)} {disagree} {margin.show(margin.disagree)}")


def part(name: str, units: Units, margin: Margin, values: str, rule: Rule = TRAINED, premise: bool = False,
         gates: tuple[str, ...] = (), key: str | None = None) -> Part:
    """Judge `units`; `values` is the text of what was compared (the effect, spread and counts are added)."""
    judged = judge(units, margin, rule)
    measured = [unit.effect for unit in units.measured()]
    text, shown = values, ""
    if measured:
        shown = margin.show(median_effect(measured))
        text += f"; effect {shown}"
        if len(measured) >= SPREAD_MIN_UNITS:
            text += spread(measured, margin)
        text += f"; {_clearing(units, margin)}"
    return Part(name, judged.verdict, text, shown if key is None else key, units.evidence(rule), units.n_seeds,
                units.n_settings, judged.reason, judged.lean, premise, gates, rule.unit)


def _gated(parts: Sequence[Part]) -> list[Part]:
    """The claim parts, each inconclusive whose premise does not hold."""
    premises = [p for p in parts if p.premise]
    claims = []
    for p in (p for p in parts if not p.premise):
        unmet = [q for q in premises if q.verdict != AGREES and (not q.gates or p.name in q.gates)]
        if unmet:
            why = "; ".join(f"{q.name}: {q.key}{_unmet(q)}" for q in unmet)
            p = replace(p, verdict=INCONCLUSIVE, reason=f"premise not met ({why})", lean="")
        claims.append(p)
    return claims


def _unmet(premise: Part) -> str:
    """Why an unmet premise is unmet, beside its value: too few units, units split, within its margin (a
    premise that disagrees is plainly not met)."""
    if premise.lean == AGREES:
        return f", too few {premise.unit}s to tell"
    return f", {premise.reason}" if premise.verdict == INCONCLUSIVE and premise.reason else ""


def combine(parts: Sequence[Part]) -> Judgement:
    """One verdict from parts: a claim part whose premise does not hold is untested (inconclusive); then
    every claim part must agree for agrees, and one that disagrees makes it disagree."""
    claims = _gated(parts)
    verdicts = {p.verdict for p in claims}
    if verdicts == {AGREES}:
        return Judgement(AGREES)
    if DISAGREES in verdicts:
        return Judgement(DISAGREES)
    undecided = [p for p in claims if p.verdict == INCONCLUSIVE]
    reasons = "; ".join(f"{p.name}: {p.reason}" if p.name and len(claims) > 1 else p.reason for p in undecided)
    leans = {p.lean for p in undecided}
    lean = leans.pop() if len(leans) == 1 else ""
    return Judgement(INCONCLUSIVE, reasons, lean)


def settle_command(runs: pd.DataFrame, n_seeds: int, extra: str = "") -> str:
    """`resbench sweep --resume DIR seed=0,1,2` (more seeds, plus `extra` overrides) for these runs."""
    sources = runs["source"].dropna().unique() if "source" in runs else []
    where = str(sources[0]) if len(sources) else "DIR"
    seeds = TRAINED.minimum if n_seeds < TRAINED.minimum else n_seeds + 2
    overrides = " ".join(part for part in (extra, "seed=" + ",".join(map(str, range(seeds)))) if part)
    return f"resbench sweep --resume {where} {overrides}"


# ---------------------------------------------------------------------------------------------
# the finding


@dataclass(frozen=True)
class Finding:
    """A claim with its verdict on one set of runs."""

    source: str
    claim: str
    measured: str  # the quantity
    comparison: str
    margin: str
    verdict: str  # agrees | disagrees | inconclusive
    value: str  # the values, seeds, settings, spread and reason behind the verdict
    settle: str = ""  # the command that would settle an inconclusive verdict
    short: str = ""  # the claim in a few words
    key: str = ""  # the key number(s)
    evidence: str = ""  # "3 seeds × 8 draws"
    reason: str = ""  # why inconclusive, and where it leans

    @property
    def agrees(self) -> bool:
        return self.verdict == AGREES

    @property
    def cite(self) -> str:
        """The source, short: `Xiong 2020` for "Xiong et al. 2020", the first of several."""
        return self.source.split(";")[0].replace(" et al.", "").strip()

    def text(self) -> str:
        """The full statement: claim, quantity, comparison, values, margin (report.md, `ReportResult`)."""
        settle = f" To settle: `{self.settle}`." if self.settle else ""
        return (f"{self.verdict} with {self.source} ({self.claim}): {self.measured}, {self.comparison}: "
                f"{self.value} [{self.margin}].{settle}")

    def line(self) -> str:
        """The terminal's line: verdict, source, the claim in a few words, key numbers, evidence, why."""
        text = f"{self.verdict} {self.cite}: {self.short or self.claim}: {self.key} ({self.evidence})"
        if self.reason:
            text += f"; {self.reason}"
        return text + (f". Settle: {self.settle}" if self.settle else "")


def _joined(parts: Sequence[Part], field_name: str) -> str:
    values = [getattr(p, field_name) for p in parts if getattr(p, field_name)]
    if len(set(values)) <= 1:
        return values[0] if values else ""
    return "; ".join(f"{p.name} {getattr(p, field_name)}" if p.name else getattr(p, field_name)
                     for p in parts if getattr(p, field_name))


def _evidence(parts: Sequence[Part]) -> str:
    """The evidence of a finding's parts, once each: `3 seeds` is left out beside `3 seeds × 8 draws`."""
    shown = list(dict.fromkeys(p.evidence for p in parts if p.evidence))
    return "; ".join(text for text in shown if not any(other.startswith(text + " ×") for other in shown))


def finding(claim: Claim, parts: Sequence[Part], runs: pd.DataFrame, extra: str = "",
            margin_text: str | None = None, key: str | None = None) -> Finding:
    """The Finding of `claim` from its judged parts: values, evidence, and how to settle it."""
    judged = combine(parts)
    n_seeds = max((p.n_seeds for p in parts), default=0)
    n_settings = max((p.n_settings for p in parts), default=0)
    untested = {p.name for p in _gated(parts) if p.reason.startswith("premise not met")}
    shown = "; ".join(f"{p.name}: {p.values} → {'untested' if p.name in untested else p.verdict}" if p.name
                      else p.values for p in parts)
    value = f"{shown}; {_joined(parts, 'evidence')}, {n_settings} matched setting" + ("s" if n_settings != 1 else "")
    if judged.reason:
        value += f"; {judged.reason}"
    settle = settle_command(runs, n_seeds, extra) if judged.verdict == INCONCLUSIVE else ""
    measured = [p for p in parts if p.key] or list(parts)  # a claim part a premise left untested has no numbers
    claims = [p for p in measured if not p.premise] or measured
    return Finding(claim.source, claim.claim, claim.quantity, claim.comparison,
                   margin_text or claim.margin.text(), judged.verdict, value, settle, claim.short,
                   key if key is not None else _joined(claims, "key"), _evidence(claims), judged.reason)

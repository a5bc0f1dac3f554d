"""Tidy frames → groups, per-run measures, per-group summaries and the curves the plots draw.

Pure pandas: no files, no figures. A *group* is one setting of the grouping keys; its runs differ
only by seed, and are aggregated as mean ± std.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from resbench.report.load import RunSet
from resbench.schema import NO_LOSS, STACK, STATUS_ORDER, SWEPT_KEYS, Status

# Display order of the known choices (docs/variants.md order); anything else sorts naturally after.
CHOICE_ORDER = {
    "norm": ("post", "pre", "sandwich", "deepnorm", "none"),
    "residual": ("true", "false", "rezero"),
    "norm_type": ("layernorm", "rmsnorm", "scalenorm", "dyt"),
    "model.name": ("transformer", "mlp"),
}
KEY_ORDER = ("model.name", "task.name", *SWEPT_KEYS)
NOT_GROUPING = ("seed",)  # seeds are what a group aggregates over
PROBES = ("hidden_rms", "act_grad_norm", "rank_residual")  # per-block probe columns the tables show
POSITIONS = ("first", "middle", "last")
WHEN = ("init", "end")
MAX_LINES_PER_PANEL = 8  # more groups than this: one panel per `norm` (or the first key)


# ---------------------------------------------------------------------------------------------
# which keys group the runs


def display_key(key: str) -> str:
    """`model.name` → `model` (the Hydra override that sets it); others unchanged."""
    return key.removesuffix(".name")


def config_column(key: str, columns: list[str]) -> str | None:
    """The config column an override key sets: `depth` → `depth`, `model` → `model.name` (and
    `model.depth`, older resbench's spelling of `depth`, → `depth`)."""
    key = key.lstrip("+~")
    if key.startswith("model.") and key.removeprefix("model.") in columns:
        key = key.removeprefix("model.")
    if key in columns:
        return key
    if f"{key}.name" in columns:
        return f"{key}.name"
    return None


def key_rank(key: str) -> tuple:
    """Sort key for grouping keys: the known ones in KEY_ORDER, then top-level before nested, then by name."""
    known = KEY_ORDER.index(key) if key in KEY_ORDER else len(KEY_ORDER)
    return (known, key.count("."), key)


def varying_keys(runs: pd.DataFrame, config_keys: list[str]) -> list[str]:
    """Config leaves whose values differ across runs, minus seed and minus keys a group choice sets.

    A group choice changes several leaves at once (`model=mlp` sets `model.name`, `model.ffn_mult` and
    `width`): keep one key per distinct partition of the runs, preferring top-level keys and `*.name`.
    """
    # Values as shown (format_value): a run without the key reads "—", a value of its own, not a NaN
    # that counting distinct values would drop.
    shown = {key: runs[key].map(format_value) for key in config_keys if key not in NOT_GROUPING}
    candidates = [key for key, values in shown.items() if values.nunique() > 1]
    preference = sorted(candidates, key=lambda k: (k.count(".") - k.endswith(".name") * 0.5, key_rank(k)))
    partitions, kept = set(), []
    for key in preference:
        partition = pd.factorize(shown[key])[0].tobytes()
        if partition not in partitions:
            partitions.add(partition)
            kept.append(key)
    return sorted(kept, key=key_rank)


def group_keys(run_set: RunSet) -> list[str]:
    """Swept keys (sweep.json / runs.csv) mapped to config columns; else the keys that vary."""
    columns = run_set.config_keys
    if run_set.swept_keys is not None:
        keys = [config_column(key, columns) for key in run_set.swept_keys]
        keys = [key for key in dict.fromkeys(keys) if key is not None and key not in NOT_GROUPING]
        # Pooled dirs may also differ in keys no single sweep swept.
        extra = [key for key in varying_keys(run_set.runs, columns) if key not in keys]
        return sorted(keys + extra, key=key_rank)
    return varying_keys(run_set.runs, columns)


# ---------------------------------------------------------------------------------------------
# labels and ordering


def format_value(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return f"{value:g}"
    return str(value)


def _sort_value(key: str, value: object) -> tuple:
    """Known choices in table order, then numbers by size, then text."""
    text = format_value(value)
    order = CHOICE_ORDER.get(key, ())
    if text in order:
        return (0, order.index(text), "")
    try:
        return (1, float(text), "")
    except ValueError:
        return (2, 0.0, text)


def label(keys: list[str], values: tuple) -> str:
    """`depth=6,norm=pre`, like the run dirs Hydra names; "all runs" when nothing varies."""
    parts = [f"{display_key(key)}={format_value(value)}" for key, value in zip(keys, values)]
    return ",".join(parts) if parts else "all runs"


def _combos(runs: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Each run's key values as a tuple of display strings (NaN-safe, hashable)."""
    if not keys:
        return pd.Series([()] * len(runs), index=runs.index, dtype=object)
    texts = {key: runs[key].map(format_value) for key in keys}
    return pd.Series(list(zip(*texts.values())), index=runs.index, dtype=object)


def assign_groups(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Add `group` (label, ordered categorical) and `panel`/`line` (how plots split many groups)."""
    runs = runs.copy()
    for key in keys:
        if key not in runs:
            runs[key] = None
    combos = _combos(runs, keys)
    unique = sorted(set(combos), key=lambda combo: [_sort_value(k, v) for k, v in zip(keys, combo)])
    labels = {combo: label(keys, combo) for combo in unique}
    runs["group"] = pd.Categorical(combos.map(labels), categories=[labels[c] for c in unique], ordered=True)
    facet = facet_key(runs, keys)
    if facet is None:
        runs["panel"] = ""
        runs["line"] = runs["group"].astype(str)
    else:
        others = [key for key in keys if key != facet]
        runs["panel"] = [f"{display_key(facet)}={value}" for value in runs[facet].map(format_value)]
        runs["line"] = [label(others, combo) for combo in _combos(runs, others)]
    return runs


def facet_key(runs: pd.DataFrame, keys: list[str]) -> str | None:
    """Split plots by one key when one panel would hold too many lines: `norm` first, else the first key."""
    if len(keys) < 2 or len(set(_combos(runs, keys))) <= MAX_LINES_PER_PANEL:
        return None
    for key in ["norm"] + keys:
        if key in keys and 2 <= runs[key].map(format_value).nunique() <= 6:
            return key
    return None


# ---------------------------------------------------------------------------------------------
# per-run measures


# The stacks in the order a model logs them; per-run measures read PROFILE_STACKS ("" = a single stack).
STACK_ORDER = ("", "encoder", "decoder")
PROFILE_STACKS = ("", "decoder")


def profile_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The blocks a run's per-run measures read: all of a single stack, the decoder of an encoder–decoder."""
    return rows[rows["stack"].isin(PROFILE_STACKS)] if "stack" in rows else rows


def with_stack_panels(rows: pd.DataFrame) -> pd.DataFrame:
    """Blocks of a multi-stack run drawn in a panel per stack (an encoder's block 0 is not a decoder's).

    The panel becomes an ordered categorical, each facet's stacks in STACK_ORDER (encoder, then decoder).
    """
    if "stack" not in rows or not rows["stack"].astype(bool).any():
        return rows
    prefix = rows["panel"].where(rows["panel"].eq(""), rows["panel"] + " · ")  # "" or "norm=post · "
    panel = rows["panel"].mask(rows["stack"].astype(bool), prefix + rows["stack"] + " stack")
    rank = rows["stack"].map(lambda stack: STACK_ORDER.index(stack) if stack in STACK_ORDER else len(STACK_ORDER))
    facets = {facet: i for i, facet in enumerate(dict.fromkeys(rows["panel"]))}
    order = pd.DataFrame({"panel": panel, "facet": rows["panel"].map(facets), "rank": rank, "stack": rows["stack"]})
    categories = order.sort_values(["facet", "rank", "stack"])["panel"].drop_duplicates()
    return rows.assign(panel=pd.Categorical(panel, categories=categories.tolist(), ordered=True))


def block_points(at: dict[str, pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """Each column at the first, middle and last block, at init and at the end (`RunSet.at`).

    Returns one row per run, columns `<column>_init_first` … `<column>_end_last`; middle = block ⌊L/2⌋.
    An encoder–decoder's are its decoder's (`profile_rows`).
    """
    at = {moment: profile_rows(rows) for moment, rows in at.items()}
    n_blocks = pd.concat(list(at.values()))[["run", "layer"]].groupby("run")["layer"].max() + 1
    points = {}
    for moment, rows in at.items():
        blocks = rows["run"].map(n_blocks).to_numpy()
        layer = rows["layer"].to_numpy()
        position = {"first": layer == 0, "middle": layer == blocks // 2, "last": layer == blocks - 1}
        for where, on in position.items():
            means = rows.loc[on, ["run", *columns]].groupby("run").mean()
            points.update({f"{column}_{moment}_{where}": means[column] for column in columns})
    return pd.DataFrame(points)


def per_run(run_set: RunSet, keys: list[str]) -> pd.DataFrame:
    """One row per run: config, summary, groups, and the derived measures findings and tables use.

    Added columns: `stats_loss`/`stats_val_loss`/`stats_val_acc` (NaN for diverged/failed runs),
    `outcome_loss` (completed: final loss, diverged: +inf, else NaN),
    `grad_norm_<init|end>_<first|middle|last>`, `grad_ratio_<init|end>` (last / first block), and
    `<probe>_<init|end>_<position>` for each probe column layers.csv holds; `end_step` (the last logged
    step); `side` ("" unless the
    run set is a comparison's two sides, see `load.concat`).
    """
    runs = assign_groups(run_set.runs, keys)
    if "side" not in runs:
        runs["side"] = ""
    counted = ~runs["status"].isin([status.value for status in NO_LOSS])
    for column in ("final_loss", "final_val_loss", "final_val_acc"):
        values = runs[column].where(counted & np.isfinite(runs[column]))
        runs["stats_" + column.removeprefix("final_")] = values
    outcome = runs["final_loss"].where(runs["status"].eq(Status.COMPLETED))
    runs["outcome_loss"] = outcome.mask(runs["status"].eq(Status.DIVERGED), np.inf)
    layers = run_set.layers
    columns = [column for column in ("grad_norm",) + PROBES if column in layers and layers[column].notna().any()]
    if columns and "layer" in layers:
        runs = runs.merge(block_points(run_set.at, columns), left_on="run", right_index=True, how="left")
    if "step" in layers and len(layers):  # the last logged step: 0 for a run that took none (train.steps=0)
        runs["end_step"] = runs["run"].map(layers.groupby("run")["step"].max())
    if "grad_norm_init_first" in runs:
        for moment in WHEN:
            runs[f"grad_ratio_{moment}"] = runs[f"grad_norm_{moment}_last"] / runs[f"grad_norm_{moment}_first"]
    return runs


# ---------------------------------------------------------------------------------------------
# per-group summary


def measure_columns(runs: pd.DataFrame) -> list[str]:
    """Per-run measure columns present, in table order."""
    names = []
    for column in ("grad_norm",) + PROBES:
        names += [f"{column}_{m}_{p}" for m in WHEN for p in POSITIONS if f"{column}_{m}_{p}" in runs]
        if column == "grad_norm":
            names += [f"grad_ratio_{m}" for m in WHEN if f"grad_ratio_{m}" in runs]
    return names


def group_summary(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per group: keys, n_runs, n_<status>, mean/std of final losses, means of block measures."""
    grouped = runs.groupby("group", observed=True, sort=True)
    summary = grouped[keys].first() if keys else pd.DataFrame(index=grouped.size().index)
    summary["n_runs"] = grouped.size()
    counts = pd.crosstab(runs["group"], runs["status"])
    order = [status.value for status in STATUS_ORDER]
    for status in sorted(counts.columns, key=lambda s: (order + [s]).index(s)):
        summary[f"n_{status}"] = counts[status].reindex(summary.index).fillna(0).astype(int)
    for column in ("stats_loss", "stats_val_loss", "stats_val_acc"):
        if runs[column].notna().any():
            name = "final_" + column.removeprefix("stats_")
            summary[f"{name}_mean"] = grouped[column].mean()
            summary[f"{name}_std"] = grouped[column].std()
    measures = measure_columns(runs)
    if measures:
        summary = summary.join(grouped[measures].mean())
    summary.index = summary.index.astype(str)
    return summary.reset_index()


def status_text(row: pd.Series) -> str:
    """`3 completed, 1 diverged` from the n_<status> columns of a summary row."""
    parts = []
    for name, value in row.items():
        if isinstance(name, str) and name.startswith("n_") and name != "n_runs" and not pd.isna(value) and value:
            parts.append(f"{int(value)} {name[2:]}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# comparison


METRICS_COMPARED = (
    "n_runs", "final_loss_mean", "final_val_loss_mean", "final_val_acc_mean", "grad_ratio_init", "grad_ratio_end",
    "hidden_rms_end_last", "rank_residual_end_last",
)


def compare_summaries(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Groups of A and B side by side: `<metric>_A`, `<metric>_B`, `<metric>_delta` (B − A)."""
    merged = a.merge(b, on="group", how="outer", suffixes=("_A", "_B"), sort=False)
    for key in keys:
        merged[key] = merged[f"{key}_A"].combine_first(merged[f"{key}_B"]) if f"{key}_A" in merged else None
    order = list(a["group"]) + [g for g in b["group"] if g not in set(a["group"])]
    merged = merged.set_index("group").loc[order].reset_index()
    columns = ["group"] + keys
    for metric in METRICS_COMPARED:
        if f"{metric}_A" not in merged and f"{metric}_B" not in merged:
            continue
        for side in ("A", "B"):
            if f"{metric}_{side}" not in merged:
                merged[f"{metric}_{side}"] = np.nan
        merged[f"{metric}_delta"] = merged[f"{metric}_B"] - merged[f"{metric}_A"]
        columns += [f"{metric}_A", f"{metric}_B", f"{metric}_delta"]
    return merged[columns]


# ---------------------------------------------------------------------------------------------
# curves for the plots: tidy frames with panel, line, side, x, y


def _with_groups(frame: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    lookup = runs.set_index("run")[["group", "panel", "line", "side"]]
    return frame.join(lookup, on="run", how="inner")


def _mean_curve(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    frame = frame.assign(**{y: frame[y].where(np.isfinite(frame[y]))}).dropna(subset=[y])
    # group first: curves come out in group order, which sets panel, line and legend order
    curve = frame.groupby(["side", "group", "panel", "line", x], observed=True, sort=True)[y].mean()
    return curve.reset_index().rename(columns={x: "x", y: "y"})


def block_curve(rows: pd.DataFrame, runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean of `column` per group and block over `rows` (`RunSet.at["init"]` or `["end"]`), a panel per stack."""
    rows = rows.loc[rows[column].notna(), ["run", "layer", column, *(["stack"] if "stack" in rows else [])]]
    return _mean_curve(with_stack_panels(_with_groups(rows, runs)), "layer", column)


def loss_curves(metrics: pd.DataFrame, runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Mean train (and validation, when logged) loss per group and step."""
    curves = {}
    for column in ("loss", "val_loss"):
        if column in metrics and metrics[column].notna().any():
            rows = _with_groups(metrics.loc[metrics[column].notna(), ["run", "step", column]], runs)
            curves[column] = _mean_curve(rows, "step", column)
    return curves


def block_steps(layers: pd.DataFrame, runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean over a group's seeds of each of `columns` per (side, group, stack, layer, step).

    The block × step grid that the heatmap and report.html's step-by-step profiles both draw. Columns
    side, group, stack, layer, step, *columns; groups in order, then stacks in STACK_ORDER.
    """
    names = ["side", "group", STACK, "layer", "step", *columns]
    if not columns or "layer" not in layers:
        return pd.DataFrame(columns=names)
    rows = layers.loc[layers["run"].isin(runs["run"]), ["run", "step", "layer", *columns]]
    if rows.empty:
        return pd.DataFrame(columns=names)
    stack_code, stacks = pd.factorize(layers.loc[rows.index, STACK] if STACK in layers
                                      else pd.Series("", index=rows.index))
    order = np.array(sorted(range(len(stacks)), key=lambda i: _stack_rank(stacks[i])), dtype=np.int64)
    stack_code = np.argsort(order)[stack_code]  # codes renumbered in stack order
    ordered = runs.sort_values(["side", "group"])
    cell_code, cells = pd.factorize(pd.Series(list(zip(ordered["side"], ordered["group"].astype(str))), dtype=object))
    run_cell = pd.Series(cell_code, index=ordered["run"].to_numpy())
    # One int64 key per (cell, stack, layer, step): a single-key groupby is several times faster than five keys.
    n_stacks, n_layers, n_steps = len(stacks), int(rows["layer"].max()) + 1, int(rows["step"].max()) + 1
    cell = run_cell.reindex(rows["run"].to_numpy()).to_numpy(np.int64)
    key = ((cell * n_stacks + stack_code) * n_layers + rows["layer"].to_numpy(np.int64)) * n_steps \
        + rows["step"].to_numpy(np.int64)
    means = rows[columns].groupby(key, sort=True).mean()
    key = means.index.to_numpy()
    cell, rest = np.divmod(key, n_stacks * n_layers * n_steps)
    side, group = (np.array([c[i] for c in cells], dtype=object) for i in (0, 1))
    frame = pd.DataFrame({
        "side": side[cell],
        "group": group[cell],
        STACK: np.asarray(stacks, dtype=object)[order][rest // (n_layers * n_steps)],
        "layer": (rest // n_steps) % n_layers,
        "step": rest % n_steps,
    })
    for column in columns:
        frame[column] = means[column].to_numpy()
    return frame


def _stack_rank(stack: str) -> tuple:
    return (STACK_ORDER.index(stack) if stack in STACK_ORDER else len(STACK_ORDER), stack)


def step_profiles(steps: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """`block_steps` with each group's panel and line as `block_curve` draws them, a panel per stack."""
    lookup = runs.drop_duplicates(["side", "group"])[["side", "group", "panel", "line"]]
    lookup = lookup.assign(group=lookup["group"].astype(str))
    return with_stack_panels(steps.merge(lookup, on=["side", "group"], how="inner", sort=False))


def heatmap_grid(steps: pd.DataFrame) -> pd.DataFrame:
    """The gradient-norm column of `block_steps`, a panel per (side, group, stack): the layer × step heatmaps.

    Columns side, group ("depth=6" or "depth=6 · encoder stack"), layer, step, grad_norm.
    """
    steps = steps[steps["grad_norm"].notna()]
    stack = steps[STACK].astype(str)
    group = steps["group"].astype(str).where(stack.eq(""), steps["group"].astype(str) + " · " + stack + " stack")
    return pd.DataFrame({"side": steps["side"].to_numpy(), "group": group.to_numpy(), "layer": steps["layer"].to_numpy(),
                         "step": steps["step"].to_numpy(), "grad_norm": steps["grad_norm"].to_numpy()})


def final_vs_depth(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame | None:
    """Final train loss (mean ± std over seeds) vs depth, one line per setting of the other keys."""
    if "depth" not in keys or runs["depth"].nunique() < 2:
        return None
    others = [key for key in keys if key != "depth"]
    rows = runs.dropna(subset=["stats_loss", "depth"])
    if rows.empty:
        return None
    facet = facet_key(rows, others)
    lines = [key for key in others if key != facet]
    panel = [f"{display_key(facet)}={value}" for value in rows[facet].map(format_value)] if facet else ""
    rows = rows.assign(line=[label(lines, combo) for combo in _combos(rows, lines)] if lines else "", panel=panel,
                       depth=pd.to_numeric(rows["depth"], errors="coerce")).dropna(subset=["depth"])
    grouped = rows.sort_values("group").groupby(["side", "panel", "line", "depth"], sort=False)["stats_loss"]
    curve = grouped.agg(["mean", "std"]).reset_index()
    return curve.rename(columns={"depth": "x", "mean": "y", "std": "y_err"})

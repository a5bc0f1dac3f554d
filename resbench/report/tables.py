"""Summary frames → `Table`s (title, header, rows of strings), rendered for rich and for Markdown.

One builder per table; both renderers read the same `Table`, so terminal and report.md agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from resbench.report.aggregate import POSITIONS, PROBES, status_text

PROBE_TITLES = {
    "hidden_rms": "Hidden-state RMS per block",
    "act_grad_norm": "Activation-gradient norm per block",
    "rank_residual": "Rank residual ‖X − 1·x̄ᵀ‖/‖X‖ per block",
}
LOSS_COLUMNS = (("final_loss", "final loss"), ("final_val_loss", "final val loss"), ("final_val_acc", "val acc"))
COMPARED = (  # (summary column, heading)
    ("n_runs", "runs"),
    ("final_loss_mean", "final loss"),
    ("final_val_loss_mean", "val loss"),
    ("final_val_acc_mean", "val acc"),
    ("grad_ratio_init", "grad last/first init"),
    ("grad_ratio_end", "grad last/first end"),
    ("hidden_rms_end_last", "hidden RMS last end"),
    ("rank_residual_end_last", "rank residual last end"),
)


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    numeric: list[bool] = field(default_factory=list)  # right-align these columns


def number(value: object) -> str:
    """3 significant digits; "—" for missing; "inf" spelled out."""
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return "—"
    if isinstance(value, (float, np.floating)) and np.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.3g}"


def mean_std(mean: object, std: object) -> str:
    if pd.isna(mean):
        return "—"
    return number(mean) if pd.isna(std) else f"{number(mean)} ± {number(std)}"


def signed(value: object) -> str:
    text = number(value)
    return text if text in ("—", "0") or text.startswith("-") else "+" + text


# ---------------------------------------------------------------------------------------------
# one report


def summary_table(summary: pd.DataFrame) -> Table:
    losses = [(column, heading) for column, heading in LOSS_COLUMNS if f"{column}_mean" in summary]
    rows = [
        [row["group"], str(int(row["n_runs"])), status_text(row)]
        + [mean_std(row[f"{column}_mean"], row[f"{column}_std"]) for column, _ in losses]
        for _, row in summary.iterrows()
    ]
    return Table(
        "Runs per group",
        ["group", "runs", "status"] + [heading for _, heading in losses],
        rows,
        "Losses: mean ± std over seeds, leaving out runs that diverged or failed.",
        [False, True, False] + [True] * len(losses),
    )


def gradient_table(summary: pd.DataFrame) -> Table | None:
    if "grad_norm_init_first" not in summary:
        return None
    columns = ["group"]
    for moment, when in (("init", "init"), ("end", "end")):
        columns += [f"{when} {position}" for position in POSITIONS] + [f"{when} last/first"]
    rows = []
    for _, row in summary.iterrows():
        cells = [row["group"]]
        for moment in ("init", "end"):
            cells += [number(row.get(f"grad_norm_{moment}_{position}")) for position in POSITIONS]
            cells.append(number(row.get(f"grad_ratio_{moment}")))
        rows.append(cells)
    return Table(
        "Gradient norm per block",
        columns,
        rows,
        "Norm of each block's gradient (layers.csv) at the first, middle (⌊L/2⌋) and last block, at init "
        "(step 0) and at the last logged step; mean over seeds.",
        [False] + [True] * 8,
    )


def probe_tables(summary: pd.DataFrame) -> list[Table]:
    tables = []
    for probe in PROBES:
        if f"{probe}_init_first" not in summary:
            continue
        columns = ["group"] + [f"{moment} {position}" for moment in ("init", "end") for position in POSITIONS]
        rows = [
            [row["group"]] + [number(row.get(f"{probe}_{m}_{p}")) for m in ("init", "end") for p in POSITIONS]
            for _, row in summary.iterrows()
        ]
        tables.append(Table(PROBE_TITLES[probe], columns, rows, "Mean over seeds.", [False] + [True] * 6))
    return tables


def report_tables(summary: pd.DataFrame) -> list[Table]:
    tables = [summary_table(summary), gradient_table(summary), *probe_tables(summary)]
    return [table for table in tables if table is not None]


# ---------------------------------------------------------------------------------------------
# comparison


def compare_tables(merged: pd.DataFrame) -> list[Table]:
    """Group | A | B | Δ for each compared measure, split in two tables to stay readable."""
    present = [(column, heading) for column, heading in COMPARED if f"{column}_A" in merged]
    losses = [(column, heading) for column, heading in present if column == "n_runs" or column.startswith("final_")]
    others = [measure for measure in present if measure not in losses]
    splits = [("Comparison: runs and losses", losses), ("Comparison: gradients and probes", others)]
    tables = []
    for title, measures in splits:
        if not measures:
            continue
        columns = ["group"]
        for column, heading in measures:
            columns += [f"{heading} A", f"{heading} B"] + ([] if column == "n_runs" else [f"Δ {heading}"])
        rows = []
        for _, row in merged.iterrows():
            cells = [row["group"]]
            for column, _ in measures:
                cells += [number(row[f"{column}_A"]), number(row[f"{column}_B"])]
                if column != "n_runs":
                    cells.append(signed(row[f"{column}_delta"]))
            rows.append(cells)
        note = "A and B: means over seeds in each dir; Δ = B − A; — where a group exists on one side only."
        tables.append(Table(title, columns, rows, note, [False] + [True] * (len(columns) - 1)))
    return tables


# ---------------------------------------------------------------------------------------------
# renderers


def to_rich(table: Table):
    """A rich Table; cells are plain Text, so `[a,b]` in a group name is shown, not parsed as markup."""
    from rich.table import Table as RichTable
    from rich.text import Text

    rich_table = RichTable(title=table.title, caption=table.note or None, caption_justify="left")
    numeric = table.numeric or [False] * len(table.columns)
    for heading, right in zip(table.columns, numeric):
        rich_table.add_column(Text(heading), justify="right" if right else "left", overflow="fold")
    for row in table.rows:
        rich_table.add_row(*(Text(cell) for cell in row))
    return rich_table


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Table, level: int = 3) -> str:
    numeric = table.numeric or [False] * len(table.columns)
    lines = [f"{'#' * level} {table.title}", ""]
    lines.append("| " + " | ".join(_md_cell(c) for c in table.columns) + " |")
    lines.append("|" + "|".join("---:" if right else "---" for right in numeric) + "|")
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", f"*{table.note}*"]
    return "\n".join(lines)

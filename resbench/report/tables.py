"""Summary frames → `Table`s (title, header, rows of strings), rendered for rich and for Markdown.

One builder per table; both renderers read the same `Table`, so terminal and report.md agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from resbench.formatting import number
from resbench.report.aggregate import POSITIONS, PROBES, display_key, format_value, status_text

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


# report.md's sections, in order; a table or plot names the one it belongs to.
SUMMARY, GRADIENTS, TRAINING, PROBES_SECTION = "Summary", "Gradients", "Training", "Probes"
SECTIONS = (SUMMARY, GRADIENTS, TRAINING, PROBES_SECTION)


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    numeric: list[bool] = field(default_factory=list)  # right-align these columns
    section: str = PROBES_SECTION  # where report.md places it (SECTIONS)
    # The terminal's view: the `group` column split into one column per grouping key, and which
    # columns to keep first when the terminal is too narrow for all (column indices, most wanted first).
    group_columns: list[str] = field(default_factory=list)
    group_values: list[list[str]] = field(default_factory=list)
    priority: list[int] = field(default_factory=list)


def several_runs(summary: pd.DataFrame) -> bool:
    """Whether some group has more than one run: only then is a group's number a mean (± std) over seeds."""
    return bool(len(summary)) and summary["n_runs"].max() > 1


def mean_std(mean: object, std: object) -> str:
    if pd.isna(mean):
        return "—"
    return number(mean) if pd.isna(std) else f"{number(mean)} ± {number(std)}"


def signed(value: object) -> str:
    text = number(value)
    return text if text in ("—", "0") or text.startswith("-") else "+" + text


def _group_split(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The grouping keys of a summary (the columns between `group` and `n_runs…`) and each row's values."""
    columns = list(frame.columns)
    end = next((i for i, c in enumerate(columns) if str(c).startswith("n_runs")), len(columns))
    keys = [c for c in columns[1:end] if c != "group"]
    values = [[format_value(row[key]) for key in keys] for _, row in frame.iterrows()]
    return [display_key(key) for key in keys], values


def _grouped(table: Table, frame: pd.DataFrame, priority: list[int] | None = None) -> Table:
    """`table` with the terminal's per-key group columns and column priority filled in."""
    group_columns, group_values = _group_split(frame)
    return replace(table, group_columns=group_columns, group_values=group_values, priority=priority or [])


# ---------------------------------------------------------------------------------------------
# one report


def summary_table(summary: pd.DataFrame) -> Table:
    losses = [(column, heading) for column, heading in LOSS_COLUMNS if f"{column}_mean" in summary]
    rows = [
        [row["group"], str(int(row["n_runs"])), status_text(row)]
        + [mean_std(row[f"{column}_mean"], row[f"{column}_std"]) for column, _ in losses]
        for _, row in summary.iterrows()
    ]
    return _grouped(Table(
        "Runs per group",
        ["group", "runs", "status"] + [heading for _, heading in losses],
        rows,
        ("Losses: mean ± std over seeds" if several_runs(summary) else "Losses: one run per group")
        + ", leaving out runs that diverged or failed.",
        [False, True, False] + [True] * len(losses),
        section=SUMMARY,
    ), summary)


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
    # Columns 1-4: init first, middle, last, last/first; 5-8 the same at the end. The ratios say most.
    return _grouped(Table(
        "Gradient norm per block",
        columns,
        rows,
        "Norm of each block's gradient (layers.csv) at the first, middle (⌊L/2⌋) and last block, at init "
        "(step 0) and at the last logged step" + ("; mean over seeds." if several_runs(summary) else "."),
        [False] + [True] * 8,
        section=GRADIENTS,
    ), summary, [0, 4, 8, 1, 3, 5, 7, 2, 6])


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
        # Columns 1-3: init first, middle, last; 4-6 the same at the end. The last block says most.
        note = "Mean over seeds." if several_runs(summary) else "One run per group."
        tables.append(_grouped(Table(PROBE_TITLES[probe], columns, rows, note, [False] + [True] * 6,
                                     section=PROBES_SECTION),
                               summary, [0, 3, 6, 1, 4, 2, 5]))
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
        tables.append(_grouped(Table(title, columns, rows, note, [False] + [True] * (len(columns) - 1),
                                     section=SUMMARY), merged))
    return tables


# ---------------------------------------------------------------------------------------------
# renderers


def to_rich(table: Table) -> FittedTable:
    """The terminal's table: it fits the console's width when drawn (see FittedTable)."""
    return FittedTable(table)


class FittedTable:
    """A `Table` drawn by rich so that no cell wraps: the group column becomes one column per key,
    headers wrap only between words, every column is at least as wide as its widest cell, and when
    the console is still too narrow the least wanted columns (`Table.priority`) are left out, with a
    line saying so (every column is in report.md and summary.csv)."""

    def __init__(self, table: Table):
        self.table = table

    def _columns(self) -> tuple[list[str], list[bool], list[list[str]], list[int]]:
        """Headings, right-alignment, rows and keep-order of the terminal's columns."""
        table = self.table
        numeric = table.numeric or [False] * len(table.columns)
        order = table.priority or list(range(len(table.columns)))
        if not table.group_columns:
            return table.columns, numeric, table.rows, order
        n_keys = len(table.group_columns)  # column 0 (group) becomes n_keys columns, always kept
        rows = [values + row[1:] for values, row in zip(table.group_values, table.rows)]
        keep = list(range(n_keys)) + [n_keys + i - 1 for i in order if i != 0]
        return table.group_columns + table.columns[1:], [False] * n_keys + numeric[1:], rows, keep

    def _rich(self, shown: list[int], widths: list[int], dropped: int):
        from rich import box
        from rich.table import Table as RichTable
        from rich.text import Text

        headings, numeric, rows, _ = self._columns()
        note = self.table.note + (f" {dropped} more column(s) in report.md and summary.csv." if dropped else "")
        rich_table = RichTable(title=self.table.title, caption=note.strip() or None, caption_justify="left",
                               title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for i in shown:
            rich_table.add_column(Text(_wrap_words(headings[i], widths[i])), justify="right" if numeric[i] else "left",
                                  width=widths[i], no_wrap=True)
        for row in rows:  # cells are plain Text, so `[a,b]` in a group value is shown, not parsed as markup
            rich_table.add_row(*(Text(row[i]) for i in shown))
        return rich_table

    def __rich_console__(self, console, options):
        headings, _, rows, keep = self._columns()
        # A column is as wide as its widest cell and heading word: cells never wrap, headings only between
        # words, and only when the one-line headings do not fit.
        cells = [max((len(row[i]) for row in rows), default=0) for i in range(len(headings))]
        compact = [max([cells[i]] + [len(word) for word in headings[i].split()]) for i in range(len(headings))]
        natural = [max(cells[i], len(headings[i])) for i in range(len(headings))]

        def width(widths: list[int], shown: list[int]) -> int:
            return sum(widths[i] + COLUMN_GAP for i in shown) - COLUMN_GAP

        n_kept = len(keep)
        least = (len(self.table.group_columns) or 1) + 1
        while n_kept > least and width(compact, keep[:n_kept]) > options.max_width:
            n_kept -= 1
        shown = sorted(keep[:n_kept])
        widths = natural if width(natural, shown) <= options.max_width else compact
        yield self._rich(shown, widths, len(keep) - n_kept)


COLUMN_GAP = 3  # between two columns: a cell's right padding, the box's (blank) divider, the next left padding


def _wrap_words(text: str, width: int) -> str:
    """`text` as lines of at most `width` characters, broken only between words."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


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

"""Which code and versions made the runs of a report (their provenance.json): one line for the summary, and
warnings when the runs differ in commit, in uncommitted changes or in the versions that can move a number."""

from __future__ import annotations

import pandas as pd

from resbench.report.load import name_list

VERSIONS = {"resbench_version": "resbench", "python_version": "Python", "torch_version": "torch"}  # column → label
SHORT_COMMIT = 7


def _counted(values: pd.Series, shown=str) -> str:
    counts = values.value_counts()
    return ", ".join(f"{shown(value)} ({count} run{'s' if count > 1 else ''})" for value, count in counts.items())


def _recorded(runs: pd.DataFrame, column: str) -> pd.Series:
    """The values of `column` the runs recorded (older runs have none)."""
    return runs[column].dropna() if column in runs else pd.Series(dtype=object)


def code_line(runs: pd.DataFrame) -> str | None:
    """`resbench 0.1.0 · git 08dd9b2 (uncommitted changes) · Python 3.11.9 · torch 2.13.0+cpu`; a field whose
    runs differ reads `2 commits` / `2 versions` (the warnings name them). None when no run recorded any."""
    parts = []
    commits = _recorded(runs, "git_commit")
    if commits.nunique() == 1:
        dirty = _recorded(runs, "git_dirty").astype(bool).any()
        parts.append(f"git {commits.iloc[0][:SHORT_COMMIT]}{' (uncommitted changes)' if dirty else ''}")
    elif commits.nunique() > 1:
        parts.append(f"git: {commits.nunique()} commits")
    for column, label in VERSIONS.items():
        values = _recorded(runs, column)
        if values.nunique() == 1:
            parts.append(f"{label} {values.iloc[0]}")
        elif values.nunique() > 1:
            parts.append(f"{label}: {values.nunique()} versions")
    return " · ".join(parts) or None


def provenance_warnings(runs: pd.DataFrame) -> list[str]:
    """Runs made by different commits, from a tree with uncommitted changes, or under different versions."""
    warnings = []
    commits = _recorded(runs, "git_commit")
    if commits.nunique() > 1:
        warnings.append(f"runs from {commits.nunique()} git commits: "
                        + _counted(commits, lambda commit: commit[:SHORT_COMMIT]))
    dirty = runs[runs["git_dirty"].eq(True)] if "git_dirty" in runs else runs.iloc[:0]
    if len(dirty):
        warnings.append(f"{len(dirty)} run(s) made from a working tree with uncommitted changes (git_dirty): "
                        + name_list(list(dirty["name"])))
    for column, label in VERSIONS.items():
        values = _recorded(runs, column)
        if values.nunique() > 1:
            warnings.append(f"runs mix {label} versions: " + _counted(values))
    return warnings

"""The terminal fits its width: `resbench report` and the sweep's end table at COLUMNS=80 and 120."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY
from report_fixtures import grid, write_sweep
from rich.cells import cell_len

SMALL = {"train.steps": 20, "log_every": 5, "train.eval_every": 10, "width": 8}
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e[-+]\d+)?$")


@pytest.fixture(scope="module")
def report_sweep(tmp_path_factory) -> Path:
    runs = [{**SMALL, **run} for run in grid(depth=[2, 12], norm=["post", "pre"], residual=[True, False],
                                              **{"train.warmup": [0, 100]})]
    return write_sweep(tmp_path_factory.mktemp("width") / "sweep", runs,
                       swept_keys=["depth", "norm", "residual", "train.warmup"])


def table_rows(output: str, title: str) -> list[list[str]]:
    """The body rows of the table titled `title`: the lines between its header rule and the next blank-led
    caption or title, split into cells."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    rule = next(i for i in range(start, len(lines)) if set(lines[i].strip()) == {"─"})
    rows = []
    for line in lines[rule + 1:]:
        cells = line.split()
        if not cells or not (cells[0].isdigit()):  # every body row starts with a depth
            break
        rows.append(cells)
    return rows


@pytest.mark.parametrize("columns", [80, 120])
def test_report_fits_the_terminal_and_no_number_is_split(cli, report_sweep: Path, monkeypatch, columns: int):
    monkeypatch.setenv("COLUMNS", str(columns))
    result = cli("report", str(report_sweep), "--out", str(report_sweep / f"report{columns}"))
    assert result.exit_code == 0, result.output
    widest = max(cell_len(line) for line in result.stdout.splitlines())
    assert widest <= columns
    summary = pd.read_csv(report_sweep / f"report{columns}" / "summary.csv")
    rows = table_rows(result.stdout, "Gradient norm per block")
    assert len(rows) == len(summary), "one line per group: no row wrapped"
    for cells, (_, expected) in zip(rows, summary.iterrows()):
        # depth, norm, residual, warmup, then numbers only, each whole and equal to summary.csv's
        assert cells[:4] == [str(expected["depth"]), expected["norm"], str(expected["residual"]).lower(),
                             str(expected["train.warmup"])]
        numbers = cells[4:]
        assert numbers and all(NUMBER.match(text) for text in numbers), cells
        shown = [float(text) for text in numbers]
        assert any(math.isclose(value, expected["grad_ratio_init"], rel_tol=5e-3) for value in shown)
        assert any(math.isclose(value, expected["grad_norm_init_first"], rel_tol=5e-3) for value in shown)
    runs = table_rows(result.stdout, "Runs per group")
    assert len(runs) == len(summary) and all("completed" in cells for cells in runs)


def test_a_wider_terminal_shows_more_columns(cli, report_sweep: Path, monkeypatch):
    counts = {}
    for columns in (80, 160):
        monkeypatch.setenv("COLUMNS", str(columns))
        result = cli("report", str(report_sweep), "--out", str(report_sweep / f"wide{columns}"))
        counts[columns] = len(table_rows(result.stdout, "Gradient norm per block")[0])
        if columns == 80:
            assert "more column(s) in report.md and summary.csv" in result.stdout
    assert counts[80] < counts[160] == 4 + 8  # four keys, then every gradient column


def test_sweep_end_table_breaks_no_path_or_word_at_80_columns(cli, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    sweep_dir = tmp_path / ("a-rather-long-directory-name-for-results" * 2) / "sweep"
    result = cli("sweep", *TINY, "depth=2,3", "train.steps=1", f"hydra.sweep.dir={sweep_dir}")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("sweep: 2 run(s)"))
    table = lines[title:next(i for i in range(title, len(lines)) if "runs.csv:" in lines[i])]
    assert all(cell_len(line) <= 80 for line in table)
    caption = " ".join(line.strip() for line in table if not line.strip().startswith(("│", "┃", "┏", "┡", "└", "━")))
    for word in ["grad", "ratio:", "the", "last", "block's", "gradient", "norm", "over", "the", "first's,", "at", "init"]:
        assert word in caption.split(), word
    assert_path_whole(lines, str(sweep_dir / "runs.csv"), 80)
    assert_path_whole(lines, f"2 at once ·{sweep_dir}", 80)  # the header's path starts a line of its own


def joined_at_slashes(lines: list[str]) -> str:
    """The output with the line breaks beside a `/` taken out: a path cut only there reads whole again."""
    return re.sub(r"(?<=/)\n *|\n *(?=/)", "", "\n".join(line.rstrip() for line in lines))


def assert_path_whole(lines: list[str], path: str, columns: int) -> None:
    """`path` is printed whole, or cut only beside a `/` (a line too narrow for it), every line within `columns`."""
    assert all(cell_len(line) <= columns for line in lines), [line for line in lines if cell_len(line) > columns]
    assert path in joined_at_slashes(lines), path


LONG_DIR = "a-rather-long-directory-name-for-results" * 2  # 80 characters: no line holds it and a slash


@pytest.fixture(scope="module")
def long_named_sweep(tmp_path_factory) -> Path:
    runs = [{**SMALL, **run} for run in grid(depth=[2, 4], norm=["post", "pre"])]
    return write_sweep(tmp_path_factory.mktemp("width") / LONG_DIR / "sweep", runs, swept_keys=["depth", "norm"])


def test_report_breaks_no_path_and_names_its_files_last_at_80_columns(cli, long_named_sweep: Path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("report", str(long_named_sweep))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    report_dir = long_named_sweep / "report"
    paths = (report_dir / "report.md", report_dir / "report.html", f"{report_dir}/ (", f"--resume{long_named_sweep} ")
    for path in paths:
        assert_path_whole(lines, str(path), 80)
    last = joined_at_slashes(lines).splitlines()[-3:]  # each label, then its path (on lines of its own)
    assert [line.split(":")[0] for line in last] == ["report.md", "report.html", "PNGs"]
    assert last[-1].endswith(f"({len(list(report_dir.glob('*.png')))} files)")


def test_mean_and_std_over_seeds_only_where_there_are_seeds(cli, report_sweep: Path, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    one_seed = cli("report", str(report_sweep), "--out", str(tmp_path / "one"))
    assert "Losses: one run per group" in one_seed.stdout and "±" not in one_seed.stdout
    assert "one seed per group" in (tmp_path / "one" / "report.md").read_text()
    seeds = write_sweep(tmp_path / "seeds", [{**SMALL, "depth": 2, "seed": seed} for seed in (0, 1)])
    two_seeds = cli("report", str(seeds))
    assert "Losses: mean ± std over seeds" in " ".join(two_seeds.stdout.split())

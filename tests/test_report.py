"""`resbench report` over synthetic run and sweep dirs: files written, broken runs, comparisons, bad input."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
import yaml
from report_fixtures import break_summary, grid, truncate_last_line, write_run, write_sweep
from rich.console import Console

from resbench.report import ReportInputError, aggregate, build_report, latest_sweep, load, render

REPO = Path(__file__).resolve().parents[1]
SMALL = {"train.steps": 20, "log_every": 5, "train.eval_every": 10, "width": 8}  # 5 logged steps after init
PLOTS = ("grad_norm_init.png", "grad_norm_heatmap.png", "loss_curves.png", "final_loss_vs_depth.png",
         "hidden_rms.png", "rank_residual.png")


def small_grid(**axes: list) -> list[dict]:
    return [{**SMALL, **run} for run in grid(**axes)]


def run_names(sweep: Path) -> list[str]:
    return sorted(p.name for p in sweep.iterdir() if (p / "config.yaml").is_file())


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory):
    """One report over a depth × norm × residual sweep, two seeds each; built once for the module."""
    sweep = write_sweep(tmp_path_factory.mktemp("report") / "sweep",
                        small_grid(depth=[2, 4], norm=["post", "pre"], residual=[True, False], seed=[0, 1]),
                        swept_keys=["depth", "norm", "residual"])
    console = Console(file=io.StringIO(), width=220)
    result = build_report([sweep], console=console)
    return sweep, result, console.file.getvalue()


def test_report_writes_markdown_summary_and_every_plot(sweep_report):
    sweep, result, _ = sweep_report
    assert result.out_dir == sweep / "report"
    assert result.n_runs == 16 and result.warnings == []
    for name in ("report.md", "summary.csv", *PLOTS):
        path = sweep / "report" / name
        assert path in result.paths and path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pd.read_csv(sweep / "report" / "summary.csv")
    assert len(summary) == 8  # 2 depths × 2 norms × 2 residual settings; seeds aggregated
    assert (summary["n_runs"] == 2).all() and (summary["n_completed"] == 2).all()
    assert {"depth", "norm", "residual", "final_loss_mean", "final_loss_std", "grad_ratio_init",
            "grad_ratio_end", "hidden_rms_init_last", "rank_residual_end_last"} <= set(summary.columns)
    assert set(summary["residual"].astype(str).str.lower()) == {"true", "false"}  # read_csv makes them bools


def test_every_relative_link_in_report_md_resolves(sweep_report):
    sweep, result, _ = sweep_report
    markdown = (sweep / "report" / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", markdown)
    assert set(PLOTS) <= {unquote(link) for link in links}
    for link in links:
        assert not link.startswith(("/", "http")), link
        assert (result.out_dir / unquote(link)).is_file(), link


def test_terminal_and_markdown_show_groups_profiles_and_findings(sweep_report):
    sweep, result, terminal = sweep_report
    markdown = (sweep / "report" / "report.md").read_text()
    assert "depth=4,norm=post,residual=true" in markdown
    assert re.search(r"^depth +norm +residual ", terminal, re.MULTILINE), "the terminal shows one column per key"
    assert re.search(r"^4 +post +true ", terminal, re.MULTILINE)
    for text in (terminal, markdown):
        assert "Gradient norm per block" in text and re.search(r"init\s+last/first|init last/first", text)
        assert "Hidden-state RMS per block" in text and "Rank residual" in text
    assert re.search(r"^\*\*(agrees|disagrees|inconclusive)\*\* with Xiong et al. 2020", markdown.replace("- ", ""),
                     re.MULTILINE)
    assert re.search(r"^  (agrees|disagrees|inconclusive) Xiong 2020: ", terminal, re.MULTILINE)  # the short line
    assert "## Findings" in markdown
    # The answer first: findings before the tables, in report.md and in the terminal.
    assert markdown.index("## Findings") < markdown.index("## Summary") < markdown.index("## Gradients")
    assert terminal.index("Findings") < terminal.index("Gradient norm per block")
    assert result.findings and all(re.match(r"(agrees|disagrees|inconclusive) with ", line) for line in result.findings)
    sources = ("Xiong et al. 2020", "Dong et al. 2021", "He et al. 2016", "Wang et al. 2022", "Bachlechner et al. 2020",
               "the seed article", "Glorot & Bengio 2010")
    for line in result.findings:
        assert any(source in line for source in sources), line
        assert re.search(r"\d", line.split(":", 1)[1]), line  # a measured value, not canned text


def test_failed_interrupted_running_and_corrupt_runs_are_named_not_fatal(tmp_path):
    runs = small_grid(depth=[2], norm=["post", "pre"], seed=[0, 1, 2])
    for run, status in zip(runs, ("failed", "interrupted", "diverged", "running")):
        run["_status"] = status
    sweep = write_sweep(tmp_path / "sweep", runs, swept_keys=["depth", "norm"])
    names = [next(n for n in run_names(sweep) if n.endswith(f"norm={norm},seed={seed}"))
             for norm, seed in (("post", 0), ("post", 1), ("post", 2), ("pre", 0), ("pre", 1))]
    failed, interrupted, _, running, corrupt = names
    truncate_last_line(sweep / corrupt / "layers.csv")
    truncate_last_line(sweep / corrupt / "metrics.csv")
    break_summary(sweep / corrupt)
    (sweep / "depth=2,norm=pre,seed=9").mkdir()
    (sweep / "depth=2,norm=pre,seed=9" / "config.yaml").write_text("depth: 2\nnorm: pre\nresidual: true\n")
    with open(sweep / "runs.csv", "a") as handle:
        handle.write("ghost,completed,2,pre,1.0,1.0,1.0\n")

    result = build_report([sweep])

    warnings = "\n".join(result.warnings)
    for name in (failed, interrupted, running, corrupt, "ghost"):
        assert name in warnings, name
    assert "CUDA out of memory" in warnings
    assert "summary.json unparsable" in warnings and "incomplete last line dropped" in warnings
    assert result.n_runs == 7
    markdown = (result.out_dir / "report.md").read_text()
    assert "## Warnings" in markdown and corrupt in markdown
    summary = pd.read_csv(result.out_dir / "summary.csv").set_index("norm")
    assert summary.loc["post", "n_failed"] == 1 and summary.loc["post", "n_diverged"] == 1


def test_run_dir_given_directly_is_a_one_run_report(tmp_path):
    run = write_run(tmp_path / "2025-01-01_00-00-00_000000", {**SMALL, "norm": "post"})
    result = build_report([run], out_dir=tmp_path / "elsewhere")
    assert result.out_dir == tmp_path / "elsewhere" and result.n_runs == 1
    assert not (run / "report").exists()
    assert "all runs" in (result.out_dir / "report.md").read_text()
    assert (result.out_dir / "loss_curves.png").stat().st_size > 0
    assert not (result.out_dir / "final_loss_vs_depth.png").exists()  # one depth: that plot has no data


def test_comparison_shows_both_values_and_the_delta(tmp_path):
    a = write_sweep(tmp_path / "a", [{**r, "_final_loss": 1.0} for r in small_grid(depth=[2, 4])], swept_keys=["depth"])
    b = write_sweep(tmp_path / "b", [{**r, "_final_loss": 0.5} for r in small_grid(depth=[2, 4, 6])],
                    swept_keys=["depth"])
    console = Console(file=io.StringIO(), width=250)

    result = build_report([a, b], console=console)

    assert result.out_dir == a / "report" and result.n_runs == 5
    summary = pd.read_csv(result.out_dir / "summary.csv").set_index("depth")
    assert summary.loc[2, "final_loss_mean_A"] == pytest.approx(1.0)
    assert summary.loc[2, "final_loss_mean_B"] == pytest.approx(0.5)
    assert summary.loc[4, "final_loss_mean_delta"] == pytest.approx(-0.5)
    assert pd.isna(summary.loc[6, "final_loss_mean_A"])  # a group only B has
    markdown = (result.out_dir / "report.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| depth=2 |"))
    assert "| 1 | 0.5 | -0.5 |" in row
    assert "final loss A" in markdown and "Δ final loss" in markdown
    assert "Δ final loss" in console.file.getvalue()


def test_missing_dir_is_an_input_error_and_writes_nothing(tmp_path):
    run = write_run(tmp_path / "run", SMALL)
    with pytest.raises(ReportInputError, match="no such directory"):
        build_report([run, tmp_path / "nope"])
    assert not (run / "report").exists()
    assert issubclass(ReportInputError, ValueError)


def test_dir_without_runs_is_an_input_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ReportInputError, match="no runs in"):
        build_report([tmp_path / "empty"])
    assert not (tmp_path / "empty" / "report").exists()


def test_latest_sweep_is_the_newest_timestamp(tmp_path):
    with pytest.raises(ReportInputError):
        latest_sweep(tmp_path / "results")
    sweeps = tmp_path / "results" / "sweeps"
    for name in ("2025-01-02_10-00-00_000001", "2025-03-01_09-00-00_000000", "notes", "2025-04-01_09-00-00_000000"):
        (sweeps / name).mkdir(parents=True)
    for name in ("2025-01-02_10-00-00_000001", "2025-03-01_09-00-00_000000", "notes"):
        (sweeps / name / "sweep.json").write_text("{}")
    # the newest name has no sweep.json (not a sweep resbench began): passed over, as `sweep --resume` does
    assert latest_sweep(tmp_path / "results") == sweeps / "2025-03-01_09-00-00_000000"
    from resbench.records import latest_sweep as resume_latest

    assert resume_latest(sweeps) == sweeps / "2025-03-01_09-00-00_000000"


def test_import_is_light_and_a_report_never_loads_the_trainer(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", small_grid(norm=["post", "pre"]), swept_keys=["norm"])
    code = (
        "import sys\n"
        "import resbench.report as report\n"
        "print(sorted(m for m in ('pandas', 'matplotlib', 'torch', 'hydra') if m in sys.modules))\n"
        f"report.build_report([__import__('pathlib').Path({str(sweep)!r})])\n"
        "print(sorted(m for m in ('torch', 'hydra', 'omegaconf', 'matplotlib.pyplot', 'resbench.trainer')"
        " if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "[]"]


def test_without_sweep_json_runs_group_by_the_keys_that_vary(tmp_path):
    runs = small_grid(depth=[2, 4], norm=["pre", "post"], seed=[0, 1])
    sweep = write_sweep(tmp_path / "sweep", runs, swept_keys=["depth", "norm"], sweep_json=False, runs_csv=False)
    run_set = load.load([sweep])
    assert run_set.swept_keys is None
    # seed is aggregated: it is no grouping key
    keys = aggregate.group_keys(run_set)
    assert keys == ["depth", "norm"]
    summary = aggregate.group_summary(aggregate.per_run(run_set, keys), keys)
    assert list(summary["group"]) == ["depth=2,norm=post", "depth=2,norm=pre", "depth=4,norm=post", "depth=4,norm=pre"]


@pytest.mark.parametrize("swept_keys", [None, ["model.depth", "norm"]], ids=["varying keys", "old spelling swept"])
def test_run_dirs_of_older_resbench_with_model_key_copies_read_as_today(tmp_path, swept_keys):
    # older resbench's config.yaml copied the shared model keys under `model.` (`model.depth: ${depth}`)
    sweep = write_sweep(tmp_path / "sweep", small_grid(depth=[2, 4], norm=["pre", "post"]), swept_keys=swept_keys,
                        sweep_json=swept_keys is not None, runs_csv=False)
    for config_path in sweep.glob("*/config.yaml"):
        config = yaml.safe_load(config_path.read_text())
        config["model"].update({key: config[key] for key in ("depth", "width", "norm", "residual")})
        config_path.write_text(yaml.safe_dump(config))
    run_set = load.load([sweep])
    assert {"model.depth", "model.width", "model.norm", "model.residual"}.isdisjoint(run_set.config_keys)
    assert set(run_set.runs["depth"]) == {2, 4}
    assert aggregate.group_keys(run_set) == ["depth", "norm"]


def test_a_key_only_some_runs_have_keeps_them_apart(tmp_path):
    """A key one run lacks (a watch run's own config, a key added with + in one sweep) differs from every
    value: reading its absence as NaN, the groups merged the two runs."""
    write_run(tmp_path / "runs" / "plain", {"depth": 2})
    write_run(tmp_path / "runs" / "scaled", {"depth": 2, "branch_scale": 0.5})
    run_set = load.load([tmp_path / "runs"])
    assert aggregate.group_keys(run_set) == ["branch_scale"]
    keys = aggregate.group_keys(run_set)
    assert len(aggregate.group_summary(aggregate.per_run(run_set, keys), keys)) == 2


def test_runs_csv_header_gives_the_swept_keys_when_sweep_json_is_absent(tmp_path):
    runs = small_grid(depth=[4], norm=["pre", "post"])  # `depth=4` swept with one value: kept as a key
    sweep = write_sweep(tmp_path / "sweep", runs, swept_keys=["depth", "norm"], sweep_json=False)
    assert aggregate.group_keys(load.load([sweep])) == ["depth", "norm"]


def test_a_truncated_last_row_is_dropped_and_the_rest_kept(tmp_path):
    run = write_run(tmp_path / "run", SMALL)
    complete = pd.read_csv(run / "layers.csv")
    truncate_last_line(run / "layers.csv")
    run_set = load.load([run])
    assert len(run_set.layers) == len(complete) - 1
    assert run_set.layers["grad_norm"].notna().all()
    assert run_set.issues == {0: ["layers.csv: incomplete last line dropped"]}


def test_garbage_rows_are_skipped_with_a_note(tmp_path):
    run = write_run(tmp_path / "run", SMALL)
    complete = len(pd.read_csv(run / "metrics.csv"))
    with open(run / "metrics.csv", "a") as handle:
        handle.write("oops,not,a,row\n")
    run_set = load.load([run])
    assert len(run_set.metrics) == complete
    assert "metrics.csv: 1 malformed rows skipped" in run_set.issues[0]


def test_residual_is_normalised_to_strings(tmp_path):
    for name, value in (("a", True), ("b", False), ("c", "rezero")):
        write_run(tmp_path / "sweep" / name, {**SMALL, "residual": value})
    runs = load.load([tmp_path / "sweep"]).runs
    assert list(runs["residual"]) == ["true", "false", "rezero"]


@pytest.mark.slow
def test_report_over_a_real_tiny_sweep(tmp_path):
    """End to end through the real trainer: `resbench sweep` then the report; a sweep that fails fails the test."""
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "resbench.cli", "sweep", "depth=2,3", "norm=post,pre", "width=16", "heads=2",
               "train.steps=4", "task.seq_len=8", "train.batch_size=4", "train.eval_every=2", "log_every=2",
               "threads=1", f"hydra.sweep.dir={sweep}"]
    # run outside any git repository: provenance (and so the report's warnings) must not depend on this checkout
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, f"the sweep failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"

    result = build_report([sweep])

    assert result.n_runs == 4 and result.warnings == []
    summary = pd.read_csv(result.out_dir / "summary.csv")
    assert len(summary) == 4 and summary["grad_ratio_init"].notna().all()
    assert (result.out_dir / "grad_norm_init.png").stat().st_size > 0
    assert any("Xiong et al. 2020" in line for line in result.findings)


def tiny_line_jobs(tmp_path: Path, n: int) -> list[render.PlotJob]:
    curve = pd.DataFrame({"panel": "", "line": ["a", "a", "b", "b"], "side": "", "x": [0, 1, 0, 1],
                          "y": [1.0, 2.0, 1.5, 0.5]})
    return [render.PlotJob("line_figure", curve, tmp_path / f"plot{i}.png",
                           {"title": "t", "x_label": "x", "y_label": "y"}) for i in range(n)]


def test_a_helper_process_draws_its_share(tmp_path):
    jobs = tiny_line_jobs(tmp_path, 4)
    helper = render.Helper()
    try:
        render.draw_all(jobs, helper)
        assert helper.process.returncode == 0  # it drew what it was sent; nothing was redrawn here
    finally:
        helper.close()
    assert all(job.path.stat().st_size > 0 for job in jobs)


def test_a_dead_helper_leaves_its_share_to_this_process(tmp_path):
    jobs = tiny_line_jobs(tmp_path, 3)
    helper = render.Helper()
    helper.process.kill()
    helper.process.wait()
    try:
        render.draw_all(jobs, helper)
    finally:
        helper.close()
    assert all(job.path.stat().st_size > 0 for job in jobs)


def test_block_grad_norms_come_from_grad_norms_csv_when_layers_csv_is_missing(tmp_path):
    run = write_run(tmp_path / "run", SMALL)
    expected = pd.read_csv(run / "layers.csv")[["step", "layer", "grad_norm"]]
    (run / "layers.csv").unlink()
    run_set = load.load([run])
    got = run_set.layers.sort_values(["step", "layer"])[["step", "layer", "grad_norm"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-4)
    assert run_set.issues == {0: ["layers.csv missing"]}


def test_a_plot_with_fewer_panels_than_columns_leaves_no_empty_column(tmp_path: Path) -> None:
    """grad_exponent.png asks for two columns (post-LN, pre-LN); a sweep of one placement has one panel."""
    import matplotlib.image

    from resbench.report import plots

    curve = pd.DataFrame({"panel": "pre-LN", "line": "measured", "side": "", "x": [6.0, 12.0, 24.0],
                          "y": [0.3, 0.25, 0.2]})
    widths = []
    for ncols in (1, 2):
        path = plots.line_figure(curve, tmp_path / f"cols{ncols}.png", title="t", x_label="L", y_label="y",
                                 ncols=ncols)
        widths.append(matplotlib.image.imread(path).shape[1])
    assert widths[0] == widths[1]

"""The report, end to end: load → per-run frame → group summaries → tables, plots, findings → files.

`resbench.report.build_report` is the public door; this module does the work.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.text import Text

from resbench import paths, records
from resbench.console import Wrapped, wrapped
from resbench.report import ReportInputError, ReportResult, aggregate, html, load
from resbench.report.findings import compute_findings, exponent_curves, lr_transfer_curves
from resbench.report.markdown import Section, document, findings_lines
from resbench.report.provenance import code_line, provenance_warnings
from resbench.report.quantities import Evidence
from resbench.report.render import Helper, PlotJob, draw_all
from resbench.report.tables import (
    GRADIENTS,
    PROBES_SECTION,
    SECTIONS,
    TRAINING,
    Table,
    compare_tables,
    report_tables,
    to_rich,
)
from resbench.report.verdict import (
    AGREES,
    AT_INIT,
    DISAGREES,
    NO_SEED,
    TRAINED,
    Finding,
    duplicate_configs,
    seed_of,
)
from resbench.schema import BLOCK_PROBES, REPORT_DIR, REPORT_HTML, REPORT_MD, Status

SUMMARY_CSV = "summary.csv"


@dataclass(frozen=True)
class PlotFile:
    alt: str  # report.md's alt text
    section: str  # where report.md places it (tables.SECTIONS)
    html: bool = True  # report.html draws it too (interactive); the profiles at init and end move with its slider


PLOTS = {  # every PNG a report may write, in report.md's (and report.html's) order
    "grad_norm_init.png": PlotFile("Gradient norm per block at initialization", GRADIENTS, html=False),
    "grad_norm_heatmap.png": PlotFile("Gradient norm per block and step", GRADIENTS),
    "loss_curves.png": PlotFile("Loss curves", TRAINING),
    "final_loss_vs_depth.png": PlotFile("Final train loss vs depth", TRAINING),
    "grad_exponent.png": PlotFile("Last block's W2 gradient at init vs depth, fitted and theory lines", GRADIENTS),
    "lr_transfer.png": PlotFile("Final train loss vs learning rate per depth, one panel per depth "
                                "parametrization, the optimum starred", TRAINING),
    "hidden_rms.png": PlotFile("Hidden-state RMS per block", PROBES_SECTION, html=False),
    "rank_residual.png": PlotFile("Rank residual per block", PROBES_SECTION, html=False),
}
PLOT_FILES = tuple(PLOTS)
PROBE_PLOTS = {  # probe column → (file, title, y label)
    "hidden_rms": ("hidden_rms.png", "Hidden-state RMS per block", "hidden-state RMS"),
    "rank_residual": ("rank_residual.png", "Rank residual per block (cf. Dong et al. 2021)",
                      "rank residual ‖X − 1·x̄ᵀ‖ / ‖X‖"),
}
VERDICT_STYLES = {AGREES: "green", DISAGREES: "red"}  # inconclusive: yellow


@dataclass
class Side:
    """One side of a report (the only one, or A / B of a comparison)."""

    name: str  # "" or "A" / "B"
    dirs: list[Path]
    runs: pd.DataFrame  # per-run frame of this side
    summary: pd.DataFrame
    findings: list[Finding]
    warnings: list[str]


def build(given: list[str | Path], console: Console | None = None, out_dir: str | Path | None = None) -> ReportResult:
    found = load.check_dirs(given)  # raises ReportInputError before anything is written
    dirs = [Path(directory) for directory in given]
    target = report_dir(dirs, out_dir)  # likewise
    helper = Helper.start(sum(map(len, found)))  # imports the drawing stack while the runs load
    try:
        return _build(dirs, found, console, target, helper)
    finally:
        if helper is not None:
            helper.close()


REPORT_MARK = ".resbench-report"  # in every report dir: resbench wrote it, and the next report replaces it whole
REPORT_MARK_TEXT = "written by `resbench report`: the next report into this directory replaces it whole\n"


def report_dir(dirs: list[Path], out_dir: str | Path | None) -> Path:
    """Where the report goes (`DIR/report/`, or `--out`), checked before anything is read or written. The
    report replaces its directory whole, so an `--out` that exists must be empty or a report resbench
    wrote (REPORT_MARK), and never the current directory or one holding the runs."""
    what = "--out" if out_dir is not None else "the report dir"
    try:
        target = paths.output_dir(out_dir if out_dir is not None else dirs[0] / REPORT_DIR, what)
    except paths.PathError as err:
        raise ReportInputError(str(err)) from None
    if out_dir is None:
        return target
    absolute = target.resolve()
    holds = [path for path in (Path.cwd(), *dirs) if path.resolve().is_relative_to(absolute)]
    if holds:
        where = "the current directory" if holds[0] == Path.cwd() else f"the runs of {holds[0]}"
        raise ReportInputError(f"--out {paths.shown(target)} holds {where}: the report replaces its directory "
                               "whole, so give it a directory of its own (e.g. a new one)")
    if target.is_dir() and not (target / REPORT_MARK).is_file() and any(target.iterdir()):
        raise ReportInputError(f"--out {paths.shown(target)} holds files that are not a report of resbench's: the "
                               "report replaces its directory whole, so give a new or empty directory")
    return target


def _build(dirs: list[Path], found: list[list[Path]], console: Console | None, target: Path,
           helper: Helper | None) -> ReportResult:
    comparing = len(dirs) == 2
    if comparing:
        run_sets = {"A": load.load(dirs[:1], found[:1]), "B": load.load(dirs[1:], found[1:])}
        keys = list(dict.fromkeys(key for rs in run_sets.values() for key in aggregate.group_keys(rs)))
        keys.sort(key=aggregate.key_rank)
        run_set = load.concat(run_sets)
        side_dirs = {"A": dirs[:1], "B": dirs[1:]}
    else:
        run_set = load.load(dirs, found)
        keys = aggregate.group_keys(run_set)
        side_dirs = {"": dirs}
    runs = aggregate.per_run(run_set, keys)
    evidence = Evidence.of(run_set, runs)
    sides = []
    for name, source in side_dirs.items():
        side_runs = runs[runs["side"].eq(name)]
        side_issues = {run: run_set.issues[run] for run in side_runs["run"] if run in run_set.issues}
        sides.append(Side(
            name,
            source,
            side_runs,
            aggregate.group_summary(side_runs, keys),
            compute_findings(replace(evidence, runs=side_runs)),
            [*run_warnings(side_runs, side_issues), *evidence_warnings(side_runs, evidence.config_keys),
             *provenance_warnings(side_runs)],
        ))
    warnings = [f"{s.name}: {w}" if s.name else w for s in sides for w in s.warnings] + run_set.notes

    if comparing:
        summary = aggregate.compare_summaries(sides[0].summary, sides[1].summary, keys)
        tables = compare_tables(summary)
    else:
        summary, tables = sides[0].summary, report_tables(sides[0].summary)
    title, header = report_header(sides, keys, comparing)
    page = html.Page(title, header, warnings, [(side.name, side.findings) for side in sides], FINDINGS_NOTE, [], tables)
    with records.replaced_dir(target) as staging:  # the report appears whole, or the old one stays
        summary.to_csv(staging / SUMMARY_CSV, index=False)
        images = write_figures(staging, runs, run_set, keys, evidence, helper, page)
        markdown = report_markdown(title, header, sides, tables, images, warnings)
        (staging / REPORT_MD).write_text(markdown, encoding="utf-8")
        (staging / REPORT_MARK).write_text(REPORT_MARK_TEXT, encoding="utf-8")
    findings = [f"{s.name}: {f.text()}" if s.name else f.text() for s in sides for f in s.findings]
    if console is not None:
        print_report(console, sides, tables, warnings)
    paths_written = [target / REPORT_MD, target / REPORT_HTML, target / SUMMARY_CSV] + [target / n for n in images]
    return ReportResult(out_dir=target, paths=paths_written, n_runs=len(runs), warnings=warnings,
                        findings=findings)


def write_figures(directory: Path, runs: pd.DataFrame, run_set: load.RunSet, keys: list[str], evidence: Evidence,
                  helper: Helper | None, page: html.Page) -> dict[str, PlotFile]:
    """The PNGs whose data exist, and report.html (written while the helper process draws its share of the
    PNGs), into `directory`; returns the PNGs in report.md's order."""
    steps = aggregate.block_steps(run_set.layers, runs, [c for c in BLOCK_PROBES if c in run_set.layers])
    jobs = plot_jobs(runs, run_set, keys, directory, steps, evidence)
    images = {name: PLOTS[name] for name in PLOT_FILES if name in jobs}

    def write_html() -> None:
        charts = html.charts(aggregate.step_profiles(steps, runs), [jobs[name] for name in images if images[name].html],
                             SAME_START if one_seed_set(runs) else "")
        html.write_html(directory / REPORT_HTML, replace(page, charts=charts))

    draw_all(list(jobs.values()), helper, meanwhile=write_html)
    return images


FINDINGS_NOTE = ("*Each line sets a quantity measured in these runs against a claim of the cited paper, with a "
                 "margin and the evidence it needs stated in advance (resbench's docs/findings.md). Only matched "
                 "runs are compared: identical in every config key except the claim's variables and the seed, seeds "
                 "paired. A quantity at init counts every init draw of every seed; agrees / disagrees when "
                 f"{AT_INIT.text()}. A training outcome counts every seed; agrees / disagrees when {TRAINED.text()}. "
                 "inconclusive: too few units (the line says which way they lean), units split, a premise not met or "
                 "the effect within the margin, with the command that would settle it.*")


def finding_text(finding: Finding, width: int = 80) -> Text:
    """One finding for the terminal: its short line (`Finding.line`), the verdict coloured, wrapped to `width`
    between words (a path too long for a line only beside a `/`), continuation lines indented."""
    text = Text("  " + finding.line())
    text.stylize(VERDICT_STYLES.get(finding.verdict, "yellow"), 2, 2 + len(finding.verdict))
    return wrapped(text, max(width, 40), indent=4)


def comparing_sides(runs: pd.DataFrame) -> bool:
    return runs["side"].nunique() > 1


# ---------------------------------------------------------------------------------------------
# warnings


def run_warnings(runs: pd.DataFrame, issues: dict[int, list[str]]) -> list[str]:
    """Failed, interrupted, unfinished and partly unreadable runs, counted and named."""
    names = dict(zip(runs["run"], runs["name"]))
    warnings = []
    if issues:
        described = [f"{names[run]} ({'; '.join(found)})" for run, found in issues.items()]
        warnings.append(f"{len(described)} run(s) partly unreadable, the rest of each used: "
                        + load.name_list(described))
    failed = runs[runs["status"].eq(Status.FAILED)]
    if len(failed):
        described = [f"{name} ({str(error).strip().splitlines()[0][:120]})" if isinstance(error, str) and error.strip()
                     else name for name, error in zip(failed["name"], failed["error"])]
        warnings.append(f"{len(failed)} run(s) failed: " + load.name_list(described))
    for status, text in ((Status.INTERRUPTED, "interrupted"),
                         (Status.RUNNING, "without a final summary (still running, or killed)")):
        rows = runs[runs["status"].eq(status)]
        if len(rows):
            warnings.append(f"{len(rows)} run(s) {text}: " + load.name_list(list(rows["name"])))
    odd = runs[~runs["status"].isin([status.value for status in Status])]  # a broken summary is named above
    if len(odd):
        described = [f"{name} ({status})" for name, status in zip(odd["name"], odd["status"])]
        warnings.append(f"{len(odd)} run(s) with an unknown status: " + load.name_list(described))
    return warnings


def evidence_warnings(runs: pd.DataFrame, config_keys: list[str]) -> list[str]:
    """Runs that findings cannot pair as they would like: copies of one config, runs without a seed."""
    warnings = [f"{len(names)} runs with the same config (copies?): {load.name_list(names)}; findings count them as "
                f"the same seed, each a unit, so copies that differ split a verdict"
                for names in duplicate_configs(runs, config_keys)]
    unseeded = runs.loc[seed_of(runs).str.startswith(NO_SEED), "name"]
    if len(unseeded):
        warnings.append(f"{len(unseeded)} run(s) without a seed: findings count each on its own, never paired: "
                        + load.name_list(list(unseeded)))
    return warnings


# ---------------------------------------------------------------------------------------------
# plots


def _panels(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Stack curves measured at several moments (init, end; train, val) as side-by-side panels.

    Each frame's panels (one per facet value, or one) get the moment as a suffix; for every facet the
    moments sit next to each other, so a two-column figure reads facet by facet.
    """
    frames = {name: frame for name, frame in frames.items() if len(frame)}
    if not frames:
        return pd.DataFrame()
    facets = list(dict.fromkeys(panel for frame in frames.values() for panel in frame["panel"]))
    pieces = []
    for facet in facets:
        for name, frame in frames.items():
            piece = frame[frame["panel"].eq(facet)]
            pieces.append(piece.assign(panel=f"{facet} · {name}" if facet else name))
    return pd.concat(pieces, ignore_index=True)


SAME_START = "identical at init: same seed and embedding"  # why lines of runs of one seed coincide at init


def several_seeds(runs: pd.DataFrame) -> bool:
    """Whether some group has more than one run: only then is a mean ± std over seeds more than one value."""
    return bool(len(runs)) and runs.groupby(["side", "group"], observed=True).size().max() > 1


def one_seed_set(runs: pd.DataFrame) -> bool:
    """Whether every group ran the same seeds: their runs then start from the same draws of what depth
    does not change (the embedding, the first blocks)."""
    if "seed" not in runs:
        return False
    return runs.groupby(["side", "group"], observed=True)["seed"].agg(frozenset).nunique() == 1


def plot_jobs(runs: pd.DataFrame, run_set: load.RunSet, keys: list[str], target: Path, steps: pd.DataFrame,
              evidence: Evidence | None = None) -> dict[str, PlotJob]:
    """The figures whose data exist, as {file name: job}; a plot without data is simply not made.

    `steps` is `aggregate.block_steps` of these runs: the heatmap's data (report.html draws it too).
    """
    layers, jobs = run_set.layers, {}
    has = {column: column in layers and layers[column].notna().any() for column in ("grad_norm",) + aggregate.PROBES}
    over_seeds = " (mean over seeds)" if several_seeds(runs) else ""

    def add(file_name: str, figure: str, data: pd.DataFrame, **options: object) -> None:
        if len(data):
            jobs[file_name] = PlotJob(figure, data, target / file_name, options)

    def init_reasons(data: pd.DataFrame) -> dict[str, str]:
        same_start = one_seed_set(runs)
        return {panel: SAME_START for panel in data["panel"].unique() if same_start and panel.endswith("at init")}

    if has["grad_norm"]:
        add("grad_norm_init.png", "line_figure", aggregate.block_curve(run_set.at["init"], runs, "grad_norm"),
            x_label="block index", y_label="gradient norm at init (step 0)", log_y=True,
            title="Gradient norm per block at initialization (cf. Xiong et al. 2020, Fig. 3)")
        add("grad_norm_heatmap.png", "heatmap_figure", aggregate.heatmap_grid(steps),
            title="Gradient norm per block and step" + over_seeds)
    losses = aggregate.loss_curves(run_set.metrics, runs)
    if losses:
        add("loss_curves.png", "line_figure",
            _panels({{"loss": "train loss", "val_loss": "validation loss"}[k]: v for k, v in losses.items()}),
            x_label="step", y_label="loss", ncols=len(losses), share_y=False, title="Loss curves" + over_seeds)
    by_depth = aggregate.final_vs_depth(runs, keys)
    if by_depth is not None:
        spread = " (mean ± std over seeds)" if by_depth["y_err"].notna().any() else " (one seed)"
        add("final_loss_vs_depth.png", "line_figure", by_depth, x_label="depth (blocks)", y_label="final train loss",
            x_at_values=True, error_bars=True, y_from_zero=True, title="Final train loss vs depth" + spread)
    if evidence is not None and not comparing_sides(runs):
        add("grad_exponent.png", "line_figure", exponent_curves(evidence), x_label="depth L (blocks)",
            y_label="last block's ‖∇W₂‖ at init", log_y=True, log_x=True, x_at_values=True, ncols=2,
            title="Last block's FFN W₂ gradient at init vs depth: fit and Xiong et al.'s theory (log-log)")
    if evidence is not None and not comparing_sides(runs):
        add("lr_transfer.png", "lr_transfer_figure", lr_transfer_curves(evidence),
            title="Final train loss vs learning rate, per depth: does the optimum stay put? (★ the optimum)")
    for probe, (file_name, title, y_label) in PROBE_PLOTS.items():
        if has[probe]:
            data = _panels({f"at {moment}": aggregate.block_curve(run_set.at[moment], runs, probe)
                            for moment in ("init", "end")})
            add(file_name, "line_figure", data, x_label="block index", y_label=y_label, ncols=2, title=title,
                coincide_reasons=init_reasons(data) if len(data) else {})
    return jobs


# ---------------------------------------------------------------------------------------------
# report.md and the terminal


def report_header(sides: list[Side], keys: list[str], comparing: bool) -> tuple[str, list[str]]:
    """The title and the Markdown lines under it: which runs, grouped how (report.md and report.html)."""
    grouping = ", ".join(f"`{aggregate.display_key(key)}`" for key in keys) or "nothing (one group)"
    seeds = "seeds as mean ± std" if any(several_seeds(side.runs) for side in sides) else "one seed per group"
    if comparing:
        header = [f"- **{s.name}**: {', '.join(f'`{d}`' for d in s.dirs)} — {len(s.runs)} runs"
                  + (f" ({code})" if (code := code_line(s.runs)) else "") for s in sides]
        header += ["", f"Groups by {grouping}; {seeds}; Δ = B − A."]
        return "resbench comparison", header
    side = sides[0]
    sources = ", ".join(f"`{d}`" for d in side.dirs)
    header = [f"{len(side.runs)} runs from {sources}, {len(side.summary)} groups by {grouping}; {seeds}."]
    code = code_line(side.runs)
    return "resbench report", header + (["", f"Code: {code}."] if code else [])


def report_markdown(title: str, header: list[str], sides: list[Side], tables: list[Table],
                    images: dict[str, PlotFile], warnings: list[str]) -> str:
    sections = {name: Section(name) for name in SECTIONS}
    for table in tables:
        sections[table.section].table(table)
    for file_name, plot in images.items():
        sections[plot.section].image(plot.alt, file_name)
    findings = Section("Findings")
    for side in sides:
        lines = findings_lines(side.findings)
        if lines:
            findings.blocks.append((f"**{side.name}**\n\n" if side.name else "") + "\n".join(lines))
    if findings.blocks:
        findings.blocks.append(FINDINGS_NOTE)
    header = header + ["", ("Every number below, one row per group: [summary.csv](summary.csv); the same report "
                           "with interactive figures: [report.html](report.html).")]
    return document(title, header, warnings, [findings, *sections.values()])


def print_report(console: Console, sides: list[Side], tables: list[Table], warnings: list[str]) -> None:
    """Findings first (verdict in colour), then the tables and warnings; where the files went is the caller's."""
    for side in sides:
        if side.findings:
            console.print(Text(f"Findings{' ' + side.name if side.name else ''}", style="bold"))
        for finding in side.findings:
            console.print(finding_text(finding, console.width), soft_wrap=True)
    for table in tables:
        console.print(to_rich(table))
    for side in sides:
        code = code_line(side.runs)
        if code:
            console.print(Wrapped(Text(f"code{' ' + side.name if side.name else ''}: {code}", style="dim"), indent=2))
    for warning in warnings:
        console.print(Wrapped(Text("warning: " + warning, style="yellow"), indent=2))

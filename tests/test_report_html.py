"""report.html: written beside report.md, self-contained, the same findings, figures drawn from the report's
own frames; and opened in a real browser (Debian's headless chromium, driven by Playwright)."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import grid, write_sweep
from rich.console import Console

from resbench.report import aggregate, build_report, html, load
from resbench.schema import BLOCK_PROBES

SMALL = {"train.steps": 20, "log_every": 5, "train.eval_every": 10, "width": 8}  # logged steps 0, 5, …, 20
CHROMIUM = shutil.which("chromium")
# Playwright's launch adds --headless and a fresh --user-data-dir of its own; these keep Chromium quiet and offline.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTHS = {"desktop": 1400, "narrow": 800}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    sweep = write_sweep(tmp_path_factory.mktemp("html") / "sweep",
                        [{**SMALL, **run} for run in grid(depth=[2, 4], norm=["post", "pre"], seed=[0, 1])],
                        swept_keys=["depth", "norm"])
    console = Console(file=io.StringIO(), width=100)
    return sweep, build_report([sweep], console=console)


class Findings(HTMLParser):
    """The findings list of a page: each item's class, its text outside <details> (the short line) and inside
    them, summary aside (the full statement)."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict[str, str]] = []
        self._in_list = self._in_item = self._in_details = self._in_summary = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in_list |= tag == "ul" and attrs.get("class") == "findings"
        if self._in_list and tag == "li":
            self._in_item = True
            self.items.append({"verdict": attrs.get("class", ""), "short": "", "full": ""})
        self._in_details |= self._in_item and tag == "details"
        self._in_summary |= self._in_details and tag == "summary"

    def handle_endtag(self, tag):
        self._in_summary = self._in_summary and tag != "summary"
        self._in_details = self._in_details and tag != "details"
        self._in_item = self._in_item and tag != "li"
        self._in_list = self._in_list and tag != "ul"

    def handle_data(self, data):
        if self._in_item and not self._in_summary:
            self.items[-1]["full" if self._in_details else "short"] += data


def test_report_html_is_written_beside_report_md_and_needs_no_network(report):
    sweep, result = report
    page = result.report_html
    assert page == sweep / "report" / "report.html" and page in result.paths
    text = page.read_text()
    assert text.count(_plotly_js_start()) == 1, "Plotly's JavaScript inline, once"
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", text, flags=re.DOTALL)  # the page without its scripts
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", text[:text.index("<script>")] + markup)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", markup), "no link leaves the file"


def _plotly_js_start() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()[:200]


def test_findings_are_the_terminal_lines_with_report_md_lines_one_click_away(report):
    _sweep, result = report
    markdown = result.report_md.read_text()
    lines = [line for line in markdown.splitlines() if re.match(r"- \*\*(agrees|disagrees|inconclusive)\*\*", line)]
    parser = Findings()
    parser.feed(result.report_html.read_text())
    assert lines and len(parser.items) == len(lines) == len(result.findings)
    for item, line in zip(parser.items, lines):
        verdict = line.split("**")[1]
        assert item["verdict"] == verdict and item["short"].startswith(verdict + " ")
        assert " ".join(item["full"].split()) == " ".join(line.removeprefix("- ").replace("**", "").replace("`", "").split())
    # the short line is the terminal's: what `resbench report` printed for the same finding
    assert all(" ".join(item["short"].split()).startswith(item["verdict"] + " ") and "(" in item["short"]
               for item in parser.items)


def test_rounded_keeps_four_significant_digits_as_short_decimals():
    values = [0.123456, -98765.4321, 1.5e-7, 3.0, 0.0, 999.96, 2.5e12, math.nan, math.inf, -math.inf]
    expected = [float(f"{v:.4g}") if math.isfinite(v) else None for v in values]
    assert html.rounded(values) == expected
    assert [repr(v) for v in html.rounded([0.1234567, 12345.678])] == ["0.1235", "12350.0"]
    assert html.rounded(np.array([[1.23456, np.nan]])) == [[1.235, None]]


def test_evenly_keeps_first_and_last_and_at_most_the_limit():
    assert html.evenly(range(5), 10) == [0, 1, 2, 3, 4]
    picked = html.evenly(range(201), 60)
    assert len(picked) == 60 and picked[0] == 0 and picked[-1] == 200 and picked == sorted(set(picked))


def independent_profile(sweep: Path, group: dict, step: int, column: str) -> list[float]:
    """A group's mean over seeds of `column` per block at `step`, straight from its runs' layers.csv."""
    frames = []
    for run in sweep.iterdir():
        config = run / "config.yaml"
        if config.is_file() and all(f"{key}={value}" in run.name for key, value in group.items()):
            layers = pd.read_csv(run / "layers.csv")
            frames.append(layers[layers["step"] == step].set_index("layer")[column])
    assert len(frames) == 2, "two seeds"
    return list(pd.concat(frames, axis=1).mean(axis=1))


def profile_charts(sweep: Path) -> dict[str, html.Chart]:
    run_set = load.load([sweep])
    keys = aggregate.group_keys(run_set)
    runs = aggregate.per_run(run_set, keys)
    steps = aggregate.block_steps(run_set.layers, runs, [c for c in BLOCK_PROBES if c in run_set.layers])
    return {chart.name: chart for chart in html.profile_charts(aggregate.step_profiles(steps, runs))}


def test_each_profile_frame_is_the_mean_over_seeds_at_its_step(report):
    sweep, _ = report
    charts = profile_charts(sweep)
    assert set(charts) == {f"profile-{column}" for column in BLOCK_PROBES}
    figure = charts["profile-hidden_rms"].figure
    names = [trace["name"] for trace in figure["data"]]
    frames = {frame["name"]: frame["data"] for frame in figure["frames"]}
    assert list(frames) == ["0", "5", "10", "15", "20"]
    assert [step["label"] for step in figure["layout"]["sliders"][0]["steps"]] == list(frames)
    line = names.index("depth=4,norm=pre")
    for step in (0, 20):
        expected = independent_profile(sweep, {"depth": 4, "norm": "pre"}, step, "hidden_rms")
        assert frames[str(step)][line]["y"] == pytest.approx(expected, rel=1e-3)
    every_number = [y for frame in frames.values() for trace in frame for y in trace["y"]]
    assert all(y is None or float(f"{y:.4g}") == y for y in every_number)


def test_a_slider_visits_at_most_the_limit_of_steps(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", [{**SMALL, "train.steps": 400, "log_every": 2, "depth": 2}])
    figure = profile_charts(sweep)["profile-grad_norm"].figure
    steps = [int(frame["name"]) for frame in figure["frames"]]
    assert len(steps) == html.MAX_SLIDER_STEPS and steps[0] == 0 and steps[-1] == 400


def test_an_encoder_decoder_draws_each_stack_in_its_own_panel(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", [{**SMALL, "depth": 2, "norm": norm} for norm in ("post", "pre")],
                        swept_keys=["norm"])
    for run in sweep.iterdir():  # the same blocks twice: an encoder stack, then a decoder stack
        if (run / "layers.csv").is_file():
            layers = pd.read_csv(run / "layers.csv")
            decoder = layers.assign(stack="decoder", grad_norm=layers["grad_norm"] * 2)
            stacked = pd.concat([layers.assign(stack="encoder"), decoder])
            stacked.to_csv(run / "layers.csv", index=False)
    figure = profile_charts(sweep)["profile-grad_norm"].figure
    titles = [annotation["text"] for annotation in figure["layout"]["annotations"]]
    assert titles == ["encoder stack", "decoder stack"]
    axes = {trace["xaxis"] for trace in figure["data"]}
    assert axes == {"x", "x2"}


def test_the_heatmap_twin_hovers_the_grids_numbers_and_keeps_init_apart(report):
    sweep, _result = report
    run_set = load.load([sweep])
    runs = aggregate.per_run(run_set, ["depth", "norm"])
    steps = aggregate.block_steps(run_set.layers, runs, ["grad_norm"])
    grid_frame = aggregate.heatmap_grid(steps)
    from resbench.report.render import PlotJob

    chart = html.heatmap_chart(PlotJob("heatmap_figure", grid_frame, Path("grad_norm_heatmap.png"), {"title": "t"}))
    traces = chart.figure["data"]
    assert {trace["coloraxis"] for trace in traces} == {"coloraxis", "coloraxis2"}
    first = grid_frame[grid_frame["group"].eq(traces[0]["name"])]
    init = first[first["step"].eq(0)].sort_values("layer")["grad_norm"]
    assert [row[0] for row in traces[0]["customdata"]] == pytest.approx(list(init), rel=1e-3)
    assert traces[1]["x"] == [5, 10, 15, 20]


# ---------------------------------------------------------------------------------------------
# in a real browser


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def open_report(browser, path: Path, width: int):
    """The page loaded and every figure drawn; what it logged as errors and every URL it asked for."""
    page = browser.new_page(viewport={"width": width, "height": 1000})
    errors, requests = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    figures = len(re.findall(r'<div id="fig-', path.read_text()))
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length == {figures}")
    return page, errors, requests


PROFILE = "document.getElementById('fig-profile-grad_norm')"


def test_in_chromium_the_slider_moves_the_profile_and_nothing_fails(browser, report, tmp_path):
    sweep, result = report
    page, errors, requests = open_report(browser, result.report_html, WIDTHS["desktop"])
    names = page.evaluate(f"{PROFILE}.data.map(trace => trace.name)")
    line = names.index("depth=4,norm=post")
    before = page.evaluate(f"{PROFILE}.data[{line}].y")
    assert before == pytest.approx(independent_profile(sweep, {"depth": 4, "norm": "post"}, 0, "grad_norm"), rel=1e-3)

    rail = page.locator("#fig-profile-grad_norm .slider-rail-touch-rect")
    rail.scroll_into_view_if_needed()
    box = rail.bounding_box()
    page.mouse.click(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)  # the slider's far right: the last step
    page.wait_for_function(f"{PROFILE}.layout.sliders[0].active == 4")
    # the slider's index moves at once; the frame's data land when Plotly's animation step ends
    page.wait_for_function(f"{PROFILE}.data[{line}].y.some((value, i) => value !== {json.dumps(before)}[i])")
    after = page.evaluate(f"{PROFILE}.data[{line}].y")
    assert after == pytest.approx(independent_profile(sweep, {"depth": 4, "norm": "post"}, 20, "grad_norm"), rel=1e-3)
    assert page.locator("#fig-profile-grad_norm .slider-group text").first.text_content() == "step 20"

    # a click where the legend shows the name (Plotly catches it on a transparent rectangle over the entry)
    page.locator("#fig-profile-grad_norm .legendtext", has_text="depth=4,norm=post").click(force=True)
    page.wait_for_function(f"{PROFILE}.data[{line}].visible == 'legendonly'")
    page.screenshot(path=tmp_path / "report-desktop.png", full_page=True)
    assert errors == []
    assert all(url.startswith("file://") for url in requests), [u for u in requests if not u.startswith("file://")]
    print(f"screenshot: {tmp_path / 'report-desktop.png'}")


def test_in_chromium_a_narrow_window_draws_every_figure_within_it(browser, report, tmp_path):
    _, result = report
    page, errors, _ = open_report(browser, result.report_html, WIDTHS["narrow"])
    widths = page.evaluate(
        "Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => p.getBoundingClientRect().right)")
    assert widths and max(widths) <= WIDTHS["narrow"]
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTHS["narrow"], "no sideways scrolling"
    page.screenshot(path=tmp_path / "report-narrow.png", full_page=True)
    assert errors == []
    print(f"screenshot: {tmp_path / 'report-narrow.png'}")


def test_coinciding_lines_are_named_once_with_every_panel_and_counted_past_a_few():
    same = pd.Series([1.0, 2.0, 3.0])
    panels = {"train": {"a": same, "b": same, "c": same * 2}, "validation": {"a": same, "b": same}}
    note = html.coinciding_note(panels, {"train": "why", "validation": "why"})
    assert note.startswith("a and b coincide (within 0.1%) in train, validation: why.")
    many = {f"panel {i}": {f"x{i}": same, f"y{i}": same} for i in range(5)}
    assert f"{5 - html.MAX_NOTES} more sets of lines coincide." in html.coinciding_note(many)
    one_more = dict(list(many.items())[:html.MAX_NOTES + 1])
    assert "1 more set of lines coincides." in html.coinciding_note(one_more)
    assert html.coinciding_note({"": {"a": same, "b": same * 2}}) == ""


def test_the_lr_transfer_twin_stars_each_optimum_hollow_at_the_grids_end():
    from resbench.report.render import PlotJob

    curves = pd.DataFrame({"panel": "standard", "line": ["depth 2"] * 3 + ["depth 32"] * 3 + ["depth 2", "depth 32"],
                           "x": [1e-3, 2e-3, 4e-3] * 2 + [2e-3, 1e-3], "y": [1.2, 1.0, 1.1, 1.0, 1.3, 1.6, 1.0, 1.0],
                           "optimum": [False] * 6 + [True, True], "edge": [False] * 7 + [True]})
    chart = html.lr_transfer_chart(PlotJob("lr_transfer_figure", curves, Path("lr_transfer.png"), {"title": "t"}))
    stars = [trace for trace in chart.figure["data"] if trace["mode"] == "markers"]
    assert [(trace["name"], trace["x"], trace["marker"]["symbol"]) for trace in stars] == [
        ("depth 2", [0.002], ["star"]), ("depth 32", [0.001], ["star-open"])]
    assert chart.figure["layout"]["xaxis"]["type"] == "log"
    assert chart.figure["layout"]["xaxis"]["ticktext"] == ["1e-3", "2e-3", "4e-3"]


@pytest.mark.parametrize(("low", "high", "ticks"), [
    (0.13, 0.43, [0.2, 0.3, 0.4]),  # half a decade: 1-2-5 would label 0.2 alone
    (0.15, 1.6, [0.2, 0.5, 1.0]),
    (1e-4, 1.0, [1e-4, 1e-3, 1e-2, 0.1, 1.0]),
])
def test_a_log_colour_bar_labels_at_least_three_round_numbers(low, high, ticks):
    assert html.colour_ticks(math.log10(low), math.log10(high)) == pytest.approx(ticks)


@pytest.mark.parametrize("low, high, ticks", [
    (0.2, 0.36, {}),  # under a decade: Plotly's own labels (0.2, 0.22, … 0.36) do not collide
    (0.015, 0.65, {"dtick": "D2"}),  # the default sweep's gradient norms: every digit piled up under 0.1
    (1e-4, 0.1, {"dtick": "D2"}),
    (1e-20, 1.0, {"dtick": 3}),  # whole decades, at most MAX_LOG_LABELS of them
])
def test_a_log_axis_labels_few_enough_ticks_not_to_overlap(low, high, ticks):
    assert html._log_ticks(pd.Series([low, (low * high) ** 0.5, high, math.nan, 0.0])) == ticks

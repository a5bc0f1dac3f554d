"""The report's PNGs: each defect seen in them once, drawn and checked on the matplotlib figure itself."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from report_fixtures import grid, write_sweep

from resbench.report import aggregate, build, load, plots
from resbench.report.quantities import Evidence
from resbench.schema import BLOCK_PROBES

SMALL = {"train.steps": 20, "log_every": 5, "train.eval_every": 10, "width": 8}
LONG_TITLE = "Last block's FFN W₂ gradient at init vs depth: fit and Xiong et al.'s theory (log-log)"


def laid_out(figure):
    """The figure placed as it is saved, and the renderer that measures its text."""
    plots.lay_out(figure)
    return figure, plots._renderer(figure)


def inside(box, figure_box) -> bool:
    return box.x0 >= figure_box.x0 - 0.5 and box.x1 <= figure_box.x1 + 0.5 and box.y0 >= figure_box.y0 - 0.5 \
        and box.y1 <= figure_box.y1 + 0.5


def curve(lines: dict[str, list[float]], panel: str = "", x: list[float] | None = None, **extra: list) -> pd.DataFrame:
    rows = [{"panel": panel, "line": name, "side": "", "x": (x or list(range(len(ys))))[i], "y": y}
            for name, ys in lines.items() for i, y in enumerate(ys)]
    frame = pd.DataFrame(rows)
    return frame.assign(**extra) if extra else frame


def plot_jobs_of(sweep, tmp_path):
    run_set = load.load([sweep])
    keys = aggregate.group_keys(run_set)
    runs = aggregate.per_run(run_set, keys)
    steps = aggregate.block_steps(run_set.layers, runs, [c for c in BLOCK_PROBES if c in run_set.layers])
    return build.plot_jobs(runs, run_set, keys, tmp_path, steps, Evidence.of(run_set, runs))


@pytest.mark.parametrize("ncols", [1, 2])
def test_a_long_title_lies_inside_the_figure(ncols):
    """grad_exponent.png's title was cut on both sides: a one-panel figure is narrower than its title."""
    data = pd.concat([curve({"measured": [0.3, 0.25, 0.2]}, panel, x=[6, 12, 24]) for panel in ("pre-LN", "post-LN")])
    figure, renderer = laid_out(plots.draw_lines(data[data["panel"].eq("pre-LN")] if ncols == 1 else data,
                                                 title=LONG_TITLE, x_label="L", y_label="‖∇W₂‖", ncols=ncols,
                                                 log_y=True, log_x=True, x_at_values=True))
    assert inside(figure._suptitle.get_window_extent(renderer), figure.bbox)
    for axis in figure.axes:
        assert inside(axis.get_tightbbox(renderer), figure.bbox)
    legend = figure.axes[0].get_legend() or figure.legends[0]  # in the one panel, or right of two
    assert inside(legend.get_window_extent(renderer), figure.bbox)


def test_an_outside_legend_widens_the_figure_and_fits_in_it():
    names = {f"norm=deepnorm,residual=rezero,train.warmup={w}": [1.0, 2.0 + w] for w in range(9)}
    figure, renderer = laid_out(plots.draw_lines(curve(names), title="t", x_label="x", y_label="y"))
    legend = figure.legends[0]
    assert inside(legend.get_window_extent(renderer), figure.bbox)
    assert figure.get_figwidth() > plots.PANEL_SIZE[0]  # the legend's width was added, not taken from the panel
    assert [text.get_text() for text in legend.get_texts()] == list(names)


def test_one_unnamed_line_draws_no_empty_legend():
    """final_loss_vs_depth.png of a depth-only sweep had an empty legend box."""
    data = curve({"": [2.47, 2.45, 2.46]}, x=[6, 12, 24], y_err=[None] * 3)  # one seed: no std
    figure, _ = laid_out(plots.draw_lines(data, title="t", x_label="depth", y_label="loss", x_at_values=True,
                                          error_bars=True, y_from_zero=True))
    assert figure.axes[0].get_legend() is None and not figure.legends


def test_error_bars_are_drawn_and_inside_the_y_range_which_starts_at_zero():
    data = curve({"norm=post": [0.40, 0.42, 0.60], "norm=pre": [0.38, 0.36, 0.35]}, x=[6, 12, 24],
                 y_err=[0.02, 0.03, 0.25, 0.01, 0.01, 0.02])
    figure, _ = laid_out(plots.draw_lines(data, title="t", x_label="depth", y_label="loss", x_at_values=True,
                                          error_bars=True, y_from_zero=True))
    axis = figure.axes[0]
    bars = [container for container in axis.containers if type(container).__name__ == "ErrorbarContainer"]
    assert len(bars) == 2, "a bar of ± std on each line"
    low, high = axis.get_ylim()
    assert low == 0 and high >= (data["y"] + data["y_err"]).max()
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["norm=post", "norm=pre"]


def test_a_small_difference_stays_small_on_a_y_axis_from_zero():
    """The default sweep's final losses 2.452–2.477 filled the whole y range; from 0 they differ by ~1 %."""
    figure, _ = laid_out(plots.draw_lines(curve({"": [2.477, 2.452, 2.467]}, x=[6, 12, 24]), title="t",
                                          x_label="depth", y_label="loss", y_from_zero=True))
    low, high = figure.axes[0].get_ylim()
    assert low == 0 and (2.477 - 2.452) / (high - low) < 0.02


def test_panels_with_their_own_y_range_are_not_left_blank():
    """loss_curves.png drew three validation points near 2.3 on the training panel's 2–5 range."""
    data = pd.concat([curve({"depth=6": [4.9, 3.0, 2.5, 2.4]}, "train loss", x=[0, 40, 80, 120]),
                      curve({"depth=6": [2.62, 2.42, 2.31]}, "validation loss", x=[40, 80, 120])])
    figure, _ = laid_out(plots.draw_lines(data, title="t", x_label="step", y_label="loss", ncols=2, share_y=False))
    train, validation = figure.axes[:2]
    low, high = validation.get_ylim()
    assert 2.2 < low and high < 2.7, "the validation panel spans its own points"
    assert train.get_ylim()[1] > 4.8


def test_coinciding_lines_are_named_under_their_panel_with_why():
    """hidden_rms.png at init: three depths on one another, one line seen, nothing said."""
    same = [1.46, 1.49, 1.51, 1.54]
    data = pd.concat([curve({"depth=6": same[:2], "depth=12": same[:3], "depth=24": same}, "at init"),
                      curve({"depth=6": [1.5, 2.0], "depth=12": [1.5, 1.8, 2.2], "depth=24": [1.5, 1.7, 1.9, 2.1]},
                            "at end")])
    figure, renderer = laid_out(plots.draw_lines(data, title="t", x_label="block", y_label="rms", ncols=2,
                                                 coincide_reasons={"at init": build.SAME_START}))
    notes = {axis.get_title(): [text.get_text().replace("\n", " ") for text in axis.texts] for axis in figure.axes}
    assert notes["at end"] == []
    assert notes["at init"] == [f"depth=6, depth=12 and depth=24 coincide ({build.SAME_START})"]
    assert inside(figure.axes[0].texts[0].get_window_extent(renderer), figure.bbox)


def test_many_lines_in_several_coinciding_sets_get_one_short_note_and_a_legend_that_fits():
    """The depth_transfer preset: 24 groups, three sets of 8 identical at init. One note per set printed the
    notes on top of one another, each naming all 8; the 24-entry legend was taller than the figure (matplotlib:
    "constrained_layout not applied because axes sizes collapsed to zero")."""
    names = [f"depth_param={param},train.lr={lr:g}" for param in ("completep", "depth_mup", "standard")
             for lr in (6.25e-5, 1.25e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3)]
    start = {name: [1.0 + names.index(name) // 8, 1.1, 1.2] for name in names}  # three sets of 8
    end = {name: [1.0, 1.5 + i / 10, 2.0 + i / 10] for i, name in enumerate(names)}
    data = pd.concat([curve(start, "at init"), curve(end, "at end")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the collapsed layout's warning fails the test
        figure, renderer = laid_out(plots.draw_lines(data, title="t", x_label="block", y_label="rms", ncols=2,
                                                     coincide_reasons={"at init": build.SAME_START}))
    notes = [text for axis in figure.axes for text in axis.texts]
    assert len(notes) == 1, [note.get_text() for note in notes]
    assert notes[0].get_text().replace("\n", " ") == (
        "24 lines coincide in 3 sets of 8, e.g. 8 lines (depth_param=completep,train.lr=6.25e-05 … "
        f"depth_param=completep,train.lr=0.008) ({build.SAME_START})")
    assert plots.coincide_note([["a", "b"], list("cdefg")], None) == "a and b coincide. 5 lines (c … g) coincide"
    assert inside(notes[0].get_window_extent(renderer), figure.bbox)
    assert inside(figure.legends[0].get_window_extent(renderer), figure.bbox)


def test_a_loss_axis_from_zero_stays_log_where_the_losses_span_decades():
    """case_study's final loss vs depth: a y axis from 0 on a log scale ("Attempt to set non-positive ylim")."""
    data = curve({"plain": [2.3, 2.3, 2.3], "skips": [0.01, 0.002, 0.001]}, x=[2, 8, 32])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure, _ = laid_out(plots.draw_lines(data, title="t", x_label="depth", y_label="loss", y_from_zero=True))
    axis = figure.axes[0]
    assert axis.get_yscale() == "log" and 0 < axis.get_ylim()[0] <= 0.001


def _coinciding_pair_by_pair(lines: dict[str, pd.Series]) -> list[list[str]]:
    """The rule, one pair at a time: joined where both have ≥ 2 common points, all within the tolerance."""
    names, sets = list(lines), []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            a, b = lines[first].align(lines[second], join="inner")
            both = a.notna() & b.notna()
            if both.sum() >= 2 and np.allclose(a[both], b[both], rtol=plots.COINCIDE_RTOL, atol=0.0):
                sets.append({first, second})
    merged = True
    while merged:  # join sets that share a line
        merged = False
        for i in range(len(sets)):
            for j in range(i + 1, len(sets)):
                if sets[i] & sets[j]:
                    sets[i] |= sets.pop(j)
                    merged = True
                    break
            if merged:
                break
    return sorted(sorted(members, key=names.index) for members in sets)


def test_coinciding_finds_the_sets_the_pairwise_rule_finds():
    random = np.random.default_rng(0)
    for _ in range(40):
        base = {k: random.choice([1.0, 2.0, 5.0], size=6) for k in range(3)}
        lines = {}
        for name in range(int(random.integers(2, 12))):
            xs = np.sort(random.choice(np.arange(8), size=int(random.integers(1, 7)), replace=False))
            ys = base[int(random.integers(3))][:len(xs)] * (1 + random.choice([0, 5e-4, 1e-2], size=len(xs)))
            ys[random.random(len(xs)) < 0.1] = np.nan
            lines[f"line {name}"] = pd.Series(ys, index=xs)
        assert sorted(plots.coinciding(lines)) == _coinciding_pair_by_pair(lines)


def test_coinciding_needs_two_common_points_within_the_tolerance():
    lines = {"a": pd.Series([1.0, 2.0, 3.0]), "b": pd.Series([1.0, 2.0005, 3.0]), "c": pd.Series([1.0, 2.1]),
             "d": pd.Series([1.0], index=[0])}
    assert plots.coinciding(lines) == [["a", "b"]]


def heatmap_grid(depths: dict[str, int], steps: list[int]) -> pd.DataFrame:
    rows = [{"side": "", "group": group, "layer": layer, "step": step,
             "grad_norm": (5.0 if step == 0 else 0.1) * (1 + layer) * (1 + 0.01 * step)}
            for group, depth in depths.items() for layer in range(depth) for step in steps]
    return pd.DataFrame(rows)


def test_each_heatmap_panel_spans_its_own_blocks_and_the_init_column_has_its_own_scale():
    """grad_norm_heatmap.png: a shared y axis left the shallow panels mostly blank, and step 0's large
    norms took the whole colour scale."""
    figure, renderer = laid_out(plots.draw_heatmaps(heatmap_grid({"depth=2": 2, "depth=6": 6}, [0, 10, 20, 30]),
                                                    title="Gradient norm per block and step"))
    panels = [axis for axis in figure.axes if axis.get_title()]
    assert [axis.get_ylim() for axis in panels] == [(-0.5, 1.5), (-0.5, 5.5)]
    assert all(axis.title.get_fontsize() >= 10 for axis in panels)
    meshes = panels[0].collections
    init, training = sorted(meshes, key=lambda mesh: mesh.get_cmap().name != plots.HEATMAP_COLOURS["init"])
    assert init.get_cmap().name == plots.HEATMAP_COLOURS["init"] and init.norm.vmin > training.norm.vmax
    assert training.norm.vmax < 1, "the training steps' colours span their own values, not step 0's"
    bars = [axis for axis in figure.axes if not axis.get_title()]
    assert sorted(bar.get_ylabel() for bar in bars) == ["gradient norm at init (step 0)",
                                                       "gradient norm, steps after init"]
    x0, x1 = init.get_coordinates()[0, [0, -1], 0]
    assert (x1 - x0) >= plots.INIT_WIDTH * 30 * 0.99, "the init column is wide enough to be seen"
    assert inside(figure._suptitle.get_window_extent(renderer), figure.bbox)


def test_titles_say_mean_and_std_only_over_several_seeds(tmp_path):
    one = write_sweep(tmp_path / "one", [{**SMALL, **run} for run in grid(depth=[2, 4, 8])], swept_keys=["depth"])
    two = write_sweep(tmp_path / "two", [{**SMALL, **run} for run in grid(depth=[2, 4, 8], seed=[0, 1])],
                      swept_keys=["depth"])
    titles = {name: {file: job.options["title"] for file, job in plot_jobs_of(sweep, tmp_path).items()}
              for name, sweep in (("one", one), ("two", two))}
    assert titles["one"]["final_loss_vs_depth.png"] == "Final train loss vs depth (one seed)"
    assert titles["one"]["loss_curves.png"] == "Loss curves"
    assert not any("±" in title or "seeds" in title for title in titles["one"].values())
    assert titles["two"]["final_loss_vs_depth.png"] == "Final train loss vs depth (mean ± std over seeds)"
    assert titles["two"]["loss_curves.png"] == "Loss curves (mean over seeds)"
    by_depth = plot_jobs_of(two, tmp_path)["final_loss_vs_depth.png"]
    assert by_depth.data["y_err"].notna().all() and by_depth.options["error_bars"]


def test_a_panel_of_its_own_range_picks_its_own_scale_and_labels_it():
    """seq2seq's loss_curves.png: training fell 30-fold (log axis), and the validation panel, 0.08–0.12,
    got the log axis too, with one tick label."""
    data = pd.concat([curve({"a": [3.0, 1.0, 0.1]}, "train loss", x=[0, 20, 39]),
                      curve({"a": [0.083], "b": [0.124], "c": [0.079]}, "validation loss", x=[39])])
    figure, _ = laid_out(plots.draw_lines(data, title="t", x_label="step", y_label="loss", ncols=2, share_y=False))
    train, validation = figure.axes[:2]
    assert train.get_yscale() == "log" and validation.get_yscale() == "linear"
    low, high = validation.get_ylim()
    assert sum(low <= tick <= high for tick in validation.get_yticks()) >= 3

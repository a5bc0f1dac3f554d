"""Curves → PNG files with matplotlib's Agg canvas.

Figures are built as `matplotlib.figure.Figure` objects, never through pyplot: no global state, no
backend switch in a user's notebook, and matplotlib loads only when a plot is drawn.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

PANEL_SIZE = (5.0, 3.6)  # inches per small multiple
HEATMAP_PANEL_SIZE = (3.6, 2.7)
DPI = 100
MAX_HEATMAPS = 36  # more groups than this: the first 36, said in the title
LOG_SPAN = 20.0  # log axis when positive data span more than this factor
SIDE_STYLES = {"": "-", "A": "-", "B": "--"}
MARGIN = {"left": 0.85, "right": 0.25, "top": 0.75, "bottom": 0.6, "gap": (0.8, 0.85)}  # inches
LEGEND_CHAR = 0.062  # inches per legend character at font size 8


def _figure(n_panels: int, ncols: int, panel_size: tuple[float, float], right: float = 0.0,
            top: float = MARGIN["top"], **share: object):
    """A grid of axes with fixed margins in inches (`right`: room for a legend or colour bar; `top`: titles).

    Fixed margins instead of a layout engine: constrained layout costs seconds per figure here.
    """
    from matplotlib.figure import Figure

    nrows = math.ceil(n_panels / ncols)
    (panel_width, panel_height), (gap_x, gap_y) = panel_size, MARGIN["gap"]
    width = MARGIN["left"] + ncols * panel_width + (ncols - 1) * gap_x + MARGIN["right"] + right
    height = top + nrows * panel_height + (nrows - 1) * gap_y + MARGIN["bottom"]
    figure = Figure(figsize=(width, height), dpi=DPI)
    axes = figure.subplots(nrows, ncols, squeeze=False, gridspec_kw={
        "left": MARGIN["left"] / width,
        "right": 1 - (MARGIN["right"] + right) / width,
        "bottom": MARGIN["bottom"] / height,
        "top": 1 - top / height,
        "wspace": gap_x / panel_width,
        "hspace": gap_y / panel_height,
    }, **share).ravel()
    for unused in axes[n_panels:]:
        unused.set_visible(False)
    return figure, axes[:n_panels]


def _title(figure, text: str) -> None:
    figure.suptitle(text, y=1 - 0.12 / figure.get_figheight(), va="top")  # fixed in inches above the panels


def _log_scale(values: pd.Series) -> bool:
    positive = values[np.isfinite(values) & (values > 0)]
    return bool(len(positive) and (values[np.isfinite(values)] > 0).all() and positive.max() / positive.min() > LOG_SPAN)


def _colors(labels: list[str]) -> dict[str, object]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {name: palette(i % palette.N) for i, name in enumerate(labels)}


def _wrap(text: str, width: int = 38) -> str:
    return "\n".join(textwrap.wrap(text.replace(",", ", "), width)) if text else text


def _legend_width(names: list[str]) -> float:
    """Inches a right-hand legend of these entries needs."""
    columns = max(1, math.ceil(len(names) / 32))
    return columns * (0.75 + LEGEND_CHAR * max(map(len, names), default=0))


def _legend(figure, axes, handles: dict[str, object], inside: bool) -> None:
    if not handles:
        return
    if inside:
        axes[0].legend(handles.values(), handles.keys(), fontsize=8, framealpha=0.8)
        return
    figure.legend(handles.values(), handles.keys(), loc="center right", fontsize=8, frameon=False,
                  ncols=max(1, math.ceil(len(handles) / 32)), bbox_to_anchor=(1.0, 0.5))


def _plain(value: float, _position: object = None) -> str:
    """Tick label as plain text (0.5, 1e-05): it renders far faster than 10^k mathtext."""
    return f"{value:g}"


def _few_ticks(axis, log_y: bool, y: pd.Series) -> None:
    """Fewer tick objects (each costs milliseconds to build, and a report draws hundreds), all labelled.

    A log axis spanning two decades or less gets 1-2-5 ticks in plain numbers (0.2, 0.5, 1): with
    powers of ten alone it would show one label or none.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    axis.xaxis.set_major_locator(MaxNLocator(6, integer=True))  # x is a block index, a step or a depth
    if not log_y:
        axis.yaxis.set_major_locator(MaxNLocator(6))
        return
    axis.set_yscale("log")
    positive = y[np.isfinite(y) & (y > 0)]
    decades = math.log10(positive.max() / positive.min()) if len(positive) else 0.0
    if decades <= 2:
        axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=12))
        axis.yaxis.set_minor_locator(NullLocator())
    else:
        axis.yaxis.set_major_locator(LogLocator(numticks=7))
        axis.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0), numticks=7))
        axis.yaxis.set_minor_formatter(NullFormatter())
    axis.yaxis.set_major_formatter(FuncFormatter(_plain))


def line_figure(
    curves: pd.DataFrame,
    path: Path,
    *,
    title: str,
    x_label: str,
    y_label: str,
    ncols: int | None = None,
    log_y: bool | None = None,
    x_at_values: bool = False,
    error_bars: bool = False,
    log_x: bool = False,
) -> Path:
    """One line per (line, side) in each panel; colour = line, dashes = side B of a comparison.

    `curves` columns: panel, line, side, x, y (and y_err with `error_bars`); panels keep their order.
    `log_x` puts x on a log axis (with `x_at_values`), so power laws read as straight lines.
    """
    panels = list(dict.fromkeys(curves["panel"]))
    names = list(dict.fromkeys(f"{line} ({side})" if side else line for line, side in zip(curves["line"], curves["side"])))
    inside = len(panels) == 1 and len(names) <= 4
    figure, axes = _figure(len(panels), min(ncols or 3, len(panels)), PANEL_SIZE,
                           right=0.0 if inside else _legend_width(names), sharex=True, sharey=True)
    colors = _colors(list(dict.fromkeys(curves["line"])))
    log_y = _log_scale(curves["y"]) if log_y is None else log_y
    handles: dict[str, object] = {}
    for axis, panel in zip(axes, panels):
        for (line, side), rows in curves[curves["panel"].eq(panel)].groupby(["line", "side"], sort=False):
            rows = rows.sort_values("x")
            style = {"color": colors[line], "linestyle": SIDE_STYLES.get(side, ":"), "markersize": 3}
            if error_bars:
                drawn = axis.errorbar(rows["x"], rows["y"], yerr=rows["y_err"].fillna(0), marker="o", capsize=2,
                                      **style)
            else:
                (drawn,) = axis.plot(rows["x"], rows["y"], marker="o" if len(rows) <= 40 else None, linewidth=1.4,
                                     **style)
            handles.setdefault(f"{line} ({side})" if side else line, drawn)
        if panel:
            axis.set_title(_wrap(panel, 60), fontsize=9, y=1.0, pad=4)  # explicit y: no costly auto-placement
        axis.grid(alpha=0.3)
        axis.tick_params(labelbottom=True, labelleft=True, labelsize=8)
    for axis in axes:
        axis.set_xlabel(x_label, fontsize=9)
        axis.set_ylabel(y_label, fontsize=9)
    _few_ticks(axes[0], log_y, curves["y"])  # the axes share locators: every panel follows
    if x_at_values:  # depths: a tick at each one, on a log2 axis when they span a factor 4 or more (or log_x)
        ticks = sorted(curves["x"].unique())
        if (log_x and ticks[0] > 0) or ticks[-1] >= 4 * ticks[0] > 0:
            axes[0].set_xscale("log", base=2)
        axes[0].set_xticks(ticks, [f"{tick:g}" for tick in ticks])
        axes[0].minorticks_off()
    _title(figure, title)
    _legend(figure, axes, handles, inside)
    figure.savefig(path)
    return path


def heatmap_figure(grid: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Layer × step heatmap of the gradient norm, one small multiple per group, shared log colour scale.

    `grid` columns: side, group, layer, step, grad_norm. Axes are shared, so blocks and steps line up
    across panels (a shallower stack leaves the top of its panel empty).
    """
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    panels = list(grid[["side", "group"]].astype(str).drop_duplicates().itertuples(index=False, name=None))
    shown = panels[:MAX_HEATMAPS]
    if len(shown) < len(panels):
        title += f" (first {len(shown)} of {len(panels)} groups)"
    ncols = min(len(shown), 5 if len(shown) > 12 else 4)
    figure, axes = _figure(len(shown), ncols, HEATMAP_PANEL_SIZE, right=1.5, top=1.0)
    positive = grid["grad_norm"][np.isfinite(grid["grad_norm"]) & (grid["grad_norm"] > 0)]
    low, high = np.percentile(positive, [1, 99]) if len(positive) else (1e-3, 1.0)
    norm = LogNorm(vmin=low, vmax=max(high, low * 1.01), clip=True)
    image = None
    groups = dict(list(grid.groupby(["side", grid["group"].astype(str)], sort=False)))
    for axis, key in zip(axes, shown):
        table = groups[key].pivot(index="layer", columns="step", values="grad_norm")
        image = axis.pcolormesh(table.columns.to_numpy(), table.index.to_numpy(),
                                np.ma.masked_invalid(table.to_numpy()), norm=norm, shading="nearest", cmap="viridis")
        side, group = key
        axis.set_title(_wrap(f"{side}: {group}" if side else group), fontsize=8, y=1.0, pad=3)
        axis.tick_params(labelsize=7)
    # Same limits everywhere; ticks only on the outer panels (inner ones would repeat them).
    x_range = (grid["step"].min() - 0.5, grid["step"].max() + 0.5)
    y_range = (grid["layer"].min() - 0.5, grid["layer"].max() + 0.5)
    n_rows = math.ceil(len(shown) / ncols)
    for index, axis in enumerate(axes):
        axis.set_xlim(*x_range)
        axis.set_ylim(*y_range)
        bottom_row = index + ncols >= len(shown) or index // ncols == n_rows - 1
        axis.xaxis.set_major_locator(MaxNLocator(4, integer=True) if bottom_row else NullLocator())
        axis.yaxis.set_major_locator(MaxNLocator(4, integer=True) if index % ncols == 0 else NullLocator())
        if bottom_row:
            axis.set_xlabel("step", fontsize=8)
        if index % ncols == 0:
            axis.set_ylabel("block index", fontsize=8)
    if image is not None:
        top, bottom = axes[0].get_position().y1, axes[-1].get_position().y0
        left = 1 - 1.4 / figure.get_figwidth()
        bar = figure.add_axes((left, bottom, 0.15 / figure.get_figwidth(), top - bottom))
        colorbar = figure.colorbar(image, cax=bar, label="gradient norm", extend="both")
        short = math.log10(norm.vmax / norm.vmin) <= 2  # label 1-2-5 steps, else decades
        colorbar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if short else (1.0,), numticks=12))
        colorbar.ax.yaxis.set_major_formatter(FuncFormatter(_plain))
        colorbar.ax.yaxis.set_minor_formatter(NullFormatter())
    _title(figure, title)
    figure.savefig(path)
    return path


def lr_transfer_figure(curves: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Final loss against learning rate, one line per depth, one panel per depth parametrization, each
    line's optimum starred (rows with `optimum` true; hollow where `edge`: at the grid's end, a bound).
    `curves` columns: panel, line, x, y, optimum, edge."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    points, optima = curves[~curves["optimum"]], curves[curves["optimum"]]
    panels = list(dict.fromkeys(curves["panel"]))
    lines = list(dict.fromkeys(curves["line"]))
    names = [*lines, "optimum (median over seeds)", "at the grid's end: a bound"]
    figure, axes = _figure(len(panels), min(3, len(panels)), PANEL_SIZE, right=_legend_width(names),
                           sharex=True, sharey=True)
    colors = _sequential_colors(lines)
    handles: dict[str, object] = {}
    for axis, panel in zip(axes, panels):
        for line in lines:
            rows = points[points["panel"].eq(panel) & points["line"].eq(line)].sort_values("x")
            if rows.empty:
                continue
            (drawn,) = axis.plot(rows["x"], rows["y"], marker="o", markersize=3, linewidth=1.4,
                                 color=colors[line])
            handles.setdefault(line, drawn)
            for best in optima[optima["panel"].eq(panel) & optima["line"].eq(line)].itertuples():
                fill = "white" if best.edge else colors[line]  # hollow: only a bound
                axis.plot([best.x], [best.y], marker="*", markersize=13, linestyle="none", zorder=3, color=fill,
                          markeredgecolor="black", markeredgewidth=0.7)
        axis.set_title(panel, fontsize=9, y=1.0, pad=4)
        axis.grid(alpha=0.3)
        axis.tick_params(labelbottom=True, labelleft=True, labelsize=8)
        axis.set_xlabel("learning rate (train.lr)", fontsize=9)
        axis.set_ylabel("final train loss (mean over seeds)", fontsize=9)
    for name, fill in zip(names[-2:], ("grey", "white")):
        handles[name] = Line2D([], [], marker="*", markersize=11, linestyle="none", color=fill,
                               markeredgecolor="black")
    _lr_ticks(axes[0], sorted(points["x"].unique()))
    axes[0].yaxis.set_major_locator(MaxNLocator(6))
    _title(figure, title)
    _legend(figure, axes, handles, inside=False)
    figure.savefig(path)
    return path


def _sequential_colors(labels: list[str]) -> dict[str, object]:
    """Ordered lines (depths, shallow to deep) in an ordered colour map, light to dark."""
    from matplotlib import colormaps

    palette = colormaps["viridis"]
    steps = max(len(labels) - 1, 1)
    return {name: palette(0.85 * (1 - i / steps)) for i, name in enumerate(labels)}


def _lr_ticks(axis, lrs: list[float]) -> None:
    """A log₂ x axis with a tick at every learning rate of the grid, labelled short (6.25e-5, 1e-3); every
    other one labelled when there are more than 8."""
    axis.set_xscale("log", base=2)
    step = 1 if len(lrs) <= 8 else 2
    axis.set_xticks(lrs, [_short(lr) if i % step == 0 else "" for i, lr in enumerate(lrs)])
    axis.minorticks_off()


def _short(value: float) -> str:
    """6.25e-05 → 6.25e-5, 0.002 → 2e-3: one short form for every tick of a learning-rate grid."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"

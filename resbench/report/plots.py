"""Curves → PNG files with matplotlib's Agg canvas.

Figures are built as `matplotlib.figure.Figure` objects, never through pyplot: no global state, no
backend switch in a user's notebook, and matplotlib loads only when a plot is drawn. Matplotlib's
constrained layout places titles, labels, legends and colour bars; a figure is sized from its panels
(plus its legend's measured width), and a title longer than the figure wraps.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

PANEL_SIZE = (5.0, 3.6)  # inches per small multiple
HEATMAP_PANEL_SIZE = (3.6, 3.0)
TITLE_HEIGHT = 0.6  # inches above the panels for the figure's title (two lines when it wraps)
DPI = 100
MAX_HEATMAPS = 36  # more groups than this: the first 36, said in the title
LOG_SPAN = 20.0  # log axis when positive data span more than this factor
SIDE_STYLES = {"": "-", "A": "-", "B": "--"}
COINCIDE_RTOL = 1e-3  # two lines closer than this (relative) at every common x are drawn on one another
LEGEND_PAD = 0.4  # inches above and below an outside legend that sets the figure's height
MAX_NAMED = 3  # coinciding lines named one by one in a panel's note; more are counted
MAX_SETS = 2  # sets of coinciding lines said one by one in a panel's note; more are counted
NOTE_CHARS = 70  # a panel's note wraps at this many characters (font size 8 on a 5-inch panel)
COLOUR_BAR_FRACTION, COLOUR_BAR_PAD = 0.03, 0.01  # of the figure's width, for each colour bar
INIT_WIDTH = 0.04  # the heatmap's init column is drawn at least this fraction of the training steps' width
HEATMAP_COLOURS = {"init": "magma", "training": "viridis"}  # the init column has its own scale and colours


def _figure(n_panels: int, ncols: int, panel_size: tuple[float, float], **share: object):
    """A grid of `n_panels` axes, `ncols` wide, in a figure laid out by constrained layout."""
    from matplotlib.figure import Figure

    nrows = math.ceil(n_panels / ncols)
    figure = Figure(figsize=(ncols * panel_size[0], nrows * panel_size[1] + TITLE_HEIGHT), dpi=DPI,
                    layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False, **share).ravel()
    for unused in axes[n_panels:]:
        unused.set_visible(False)
    return figure, axes[:n_panels]


def lay_out(figure) -> None:
    """Place everything once, for good: `savefig` under a layout engine would lay out twice (a draw to
    measure, then the real one), and layout is most of a figure's time."""
    figure.get_layout_engine().execute(figure)
    figure.set_layout_engine(None)  # the positions just computed stay; None (not "none"): no measuring draw


def _save(figure, path: Path) -> Path:
    lay_out(figure)
    figure.savefig(path)
    return path


def _title(figure, text: str) -> None:
    figure.suptitle(text, wrap=True)  # wraps at the figure's edges; constrained layout makes room


def _renderer(figure):
    """The Agg renderer that will draw `figure`: text sizes measured with it are the drawn ones."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return FigureCanvasAgg(figure).get_renderer()


def use_log_scale(values: pd.Series) -> bool:
    """Whether `values` read better on a log axis: all positive, spanning more than LOG_SPAN."""
    positive = values[np.isfinite(values) & (values > 0)]
    return bool(len(positive) and (values[np.isfinite(values)] > 0).all() and positive.max() / positive.min() > LOG_SPAN)


def _colors(labels: list[str]) -> dict[str, object]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {name: palette(i % palette.N) for i, name in enumerate(labels)}


def _wrap(text: str, width: int = 38) -> str:
    return "\n".join(textwrap.wrap(text.replace(",", ", "), width)) if text else text


def _legend(figure, axes, handles: dict[str, object], inside: bool) -> None:
    """A legend of the named lines: in the one panel when small, else right of the panels.

    An outside legend widens the figure by its own measured width, so the panels keep their size.
    """
    handles = {name: handle for name, handle in handles.items() if name}  # an unnamed line needs no entry
    if not handles:
        return
    if inside:
        axes[0].legend(handles.values(), handles.keys(), fontsize=8, framealpha=0.8)
        return
    legend = figure.legend(handles.values(), handles.keys(), loc="outside right center", fontsize=8, frameon=False,
                           ncols=max(1, math.ceil(len(handles) / 32)))
    extent = legend.get_window_extent(_renderer(figure))
    figure.set_figwidth(figure.get_figwidth() + extent.width / figure.dpi)
    # A legend taller than the panels (many groups in one row of panels) gets the height it needs: else
    # constrained layout gives up on the whole figure ("axes sizes collapsed to zero").
    figure.set_figheight(max(figure.get_figheight(), extent.height / figure.dpi + LEGEND_PAD))


def _plain(value: float, _position: object = None) -> str:
    """Tick label as plain text (0.5, 1e-05): it renders far faster than 10^k mathtext."""
    return f"{value:g}"


def _few_ticks(axis, log_y: bool, y: pd.Series) -> None:
    """Fewer tick objects (each costs milliseconds to build, and a report draws hundreds), all labelled.

    A log axis spanning two decades or less gets 1-2-5 ticks in plain numbers (0.2, 0.5, 1), or every digit
    within half a decade: with powers of ten alone it would show one label or none.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    axis.xaxis.set_major_locator(MaxNLocator(6, integer=True))  # x is a block index, a step or a depth
    if not log_y:
        axis.yaxis.set_major_locator(MaxNLocator(6))
        return
    axis.set_yscale("log")
    positive = y[np.isfinite(y) & (y > 0)]
    decades = math.log10(positive.max() / positive.min()) if len(positive) else 0.0
    if decades <= 2:  # 1-2-5 ticks; every digit within half a decade, where 1-2-5 could leave one tick or none
        axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades > 0.5 else range(1, 10), numticks=12))
        axis.yaxis.set_minor_locator(NullLocator())
    else:
        axis.yaxis.set_major_locator(LogLocator(numticks=7))
        axis.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0), numticks=7))
        axis.yaxis.set_minor_formatter(NullFormatter())
    axis.yaxis.set_major_formatter(FuncFormatter(_plain))


def coinciding(lines: dict[str, pd.Series]) -> list[list[str]]:
    """Sets of two or more lines (name → y indexed by x) equal within COINCIDE_RTOL wherever both have a
    point, at two points or more: drawn on top of one another, they look like one line."""
    names = list(lines)
    if len(names) < 2:
        return []
    columns = {line: y[~y.index.duplicated()] for line, y in enumerate(lines.values())}  # one point per x
    values = pd.DataFrame(columns).to_numpy(float)  # x by line, NaN where a line has no point
    present = ~np.isnan(values)
    joined = list(range(len(names)))  # union-find: each line → a line of its set

    def root(line: int) -> int:
        while joined[line] != line:
            line = joined[line]
        return line

    for first in range(len(names) - 1):  # each line against every later one at once (a panel may hold dozens)
        later = values[:, first + 1:]
        both = present[:, [first]] & present[:, first + 1:]
        close = np.isclose(values[:, [first]], later, rtol=COINCIDE_RTOL, atol=0.0) | ~both
        for second in first + 1 + np.flatnonzero(close.all(axis=0) & (both.sum(axis=0) >= 2)):
            joined[root(int(second))] = root(first)
    sets: dict[int, list[str]] = {}
    for line, name in enumerate(names):
        sets.setdefault(root(line), []).append(name)
    return [members for members in sets.values() if len(members) > 1]


def members_text(members: list[str]) -> str:
    """A set of lines: each named up to MAX_NAMED, else counted with the first and the last named."""
    return name_list(members) if len(members) <= MAX_NAMED else f"{len(members)} lines ({members[0]} … {members[-1]})"


def coincide_note(sets: list[list[str]], reason: str | None) -> str:
    """One caption for every set of coinciding lines of a panel (a note per set printed them on top of one
    another): up to MAX_SETS sets each said, more counted with the first as an example."""
    if len(sets) <= MAX_SETS:
        said = ". ".join(f"{members_text(members)} coincide" for members in sets)
    else:
        sizes = sorted({len(members) for members in sets})
        size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
        said = f"{sum(map(len, sets))} lines coincide in {len(sets)} sets of {size}, e.g. {members_text(sets[0])}"
    return said + (f" ({reason})" if reason else "")


def name_list(names: list[str]) -> str:
    """`a, b and c`; `a; b and c` when a name holds a comma itself (`depth=6,norm=pre`)."""
    comma = "; " if any("," in name for name in names) else ", "
    return names[0] if len(names) == 1 else comma.join(names[:-1]) + " and " + names[-1]


def _note(axis, text: str) -> None:
    """A caption under a panel's x label (constrained layout makes room for it)."""
    axis.annotate(textwrap.fill(text, NOTE_CHARS), xy=(0.5, 0), xycoords=axis.xaxis.label, xytext=(0, -3),
                  textcoords="offset points", ha="center", va="top", fontsize=8, style="italic")


def line_figure(curves: pd.DataFrame, path: Path, **options: object) -> Path:
    """`draw_lines` into a PNG at `path`."""
    return _save(draw_lines(curves, **options), path)


def heatmap_figure(grid: pd.DataFrame, path: Path, *, title: str) -> Path:
    """`draw_heatmaps` into a PNG at `path`."""
    return _save(draw_heatmaps(grid, title=title), path)


def draw_lines(
    curves: pd.DataFrame,
    *,
    title: str,
    x_label: str,
    y_label: str,
    ncols: int | None = None,
    log_y: bool | None = None,
    x_at_values: bool = False,
    error_bars: bool = False,
    log_x: bool = False,
    share_y: bool = True,
    y_from_zero: bool = False,
    coincide_reasons: dict[str, str] | None = None,
):
    """A Figure of one line per (line, side) in each panel; colour = line, dashes = side B of a comparison.

    `curves` columns: panel, line, side, x, y (and y_err with `error_bars`: a bar of ± y_err where it is
    known); panels keep their order. `log_x` puts x on a log axis (with `x_at_values`), so power laws read
    as straight lines. `share_y=False` gives each panel its own y range; `y_from_zero` starts a linear y axis at 0.
    Lines that coincide are named under their panel, with `coincide_reasons[panel]` when given.
    """
    panels = list(curves["panel"].drop_duplicates())  # (not a loop over every row: a big report has 10⁵)
    lines = curves[["line", "side"]].drop_duplicates()
    names = [f"{line} ({side})" if side else line for line, side in zip(lines["line"], lines["side"])]
    inside = len(panels) == 1 and len(names) <= 4
    figure, axes = _figure(len(panels), min(ncols or 3, len(panels)), PANEL_SIZE, sharex=True, sharey=share_y)
    colors = _colors(list(lines["line"].drop_duplicates()))
    scale = {panel: (log_y if log_y is not None else use_log_scale(panel_y if not share_y else curves["y"]))
             for panel, panel_y in curves.groupby("panel", sort=False, observed=True)["y"]}  # log or not, per panel
    handles: dict[str, object] = {}
    for axis, panel in zip(axes, panels):
        drawn_lines = _panel_lines(axis, curves[curves["panel"].eq(panel)], colors, error_bars, handles)
        if panel:
            axis.set_title(_wrap(panel, 60), fontsize=10)
        axis.grid(alpha=0.3)
        axis.tick_params(labelbottom=True, labelleft=True, labelsize=8)
        axis.set_xlabel(x_label, fontsize=9)
        axis.set_ylabel(y_label, fontsize=9)
        _few_ticks(axis, scale[panel], curves["y"] if share_y else curves.loc[curves["panel"].eq(panel), "y"])
        if y_from_zero and not scale[panel]:  # up to the highest point or error bar, plus autoscaling's headroom
            # (a log axis has no 0: losses spanning over LOG_SPAN, e.g. plain nets at chance beside skips)
            shown = curves if share_y else curves[curves["panel"].eq(panel)]
            top = shown["y"] + (shown["y_err"].fillna(0) if "y_err" in shown else 0)
            axis.set_ylim(0, top.max() * (1 + 2 * axis.margins()[1]))
        if sets := coinciding(drawn_lines):
            _note(axis, coincide_note(sets, (coincide_reasons or {}).get(panel)))
    if x_at_values:  # depths: a tick at each one, on a log2 axis when they span a factor 4 or more (or log_x)
        ticks = sorted(curves["x"].unique())
        if (log_x and ticks[0] > 0) or ticks[-1] >= 4 * ticks[0] > 0:
            axes[0].set_xscale("log", base=2)
        axes[0].set_xticks(ticks, [f"{tick:g}" for tick in ticks])
        axes[0].minorticks_off()
    _title(figure, title)
    _legend(figure, axes, handles, inside)
    return figure


def _panel_lines(axis, curves: pd.DataFrame, colors: dict[str, object], error_bars: bool,
                 handles: dict[str, object]) -> dict[str, pd.Series]:
    """Draw one panel's lines (with ± y_err bars where known, under `error_bars`); add each new name's
    handle to `handles`; return each line's y by x, as drawn."""
    drawn: dict[str, pd.Series] = {}
    for (line, side), rows in curves.groupby(["line", "side"], sort=False):
        rows = rows.sort_values("x")
        name = f"{line} ({side})" if side else line
        style = {"color": colors[line], "linestyle": SIDE_STYLES.get(side, ":"), "markersize": 3}
        if error_bars and rows["y_err"].notna().any():
            handle = axis.errorbar(rows["x"], rows["y"], yerr=rows["y_err"].fillna(0), marker="o", capsize=3, **style)
        else:
            (handle,) = axis.plot(rows["x"], rows["y"], marker="o" if len(rows) <= 40 else None, linewidth=1.4,
                                  **style)
        handles.setdefault(name, handle)
        drawn[name] = pd.Series(rows["y"].to_numpy(), index=rows["x"].to_numpy())
    return drawn


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres: midway between neighbours, half a gap beyond the ends."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


def heatmap_edges(steps: np.ndarray) -> np.ndarray:
    """Edges of a heatmap's step columns (sorted steps), the init column (step 0) at least INIT_WIDTH of
    the training steps' width, so that it can be seen beside hundreds of steps."""
    edges = _edges(steps)
    if steps[0] == 0 and len(steps) > 1:
        edges[0] = min(edges[0], edges[1] - INIT_WIDTH * (edges[-1] - edges[1]))
    return edges


def _log_norm(values: pd.Series):
    """A log colour scale over the 1st-99th percentile of the positive values (outliers clipped, marked)."""
    from matplotlib.colors import LogNorm

    positive = values[np.isfinite(values) & (values > 0)]
    low, high = np.percentile(positive, [1, 99]) if len(positive) else (1e-3, 1.0)
    return LogNorm(vmin=low, vmax=max(high, low * 1.01), clip=True)


def _colour_bar(figure, image, axes, label: str) -> None:
    """A colour bar right of all panels; the figure widens by the room it takes, so the panels keep their size."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    norm = image.norm
    figure.set_figwidth(figure.get_figwidth() / (1 - COLOUR_BAR_FRACTION - COLOUR_BAR_PAD))
    bar = figure.colorbar(image, ax=list(axes), label=label, extend="both", fraction=COLOUR_BAR_FRACTION,
                          pad=COLOUR_BAR_PAD, aspect=30)
    short = math.log10(norm.vmax / norm.vmin) <= 2  # label 1-2-5 steps, else decades
    bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if short else (1.0,), numticks=12))
    bar.ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    bar.ax.yaxis.set_minor_formatter(NullFormatter())


def draw_heatmaps(grid: pd.DataFrame, *, title: str):
    """A Figure of layer × step heatmaps of the gradient norm, one small multiple per group, log colour scales.

    `grid` columns: side, group, layer, step, grad_norm. Each panel spans its own blocks and steps (a
    shallow stack fills its panel). The init column (step 0) has a colour scale of its own, in other
    colours and behind a white line: its gradients are often far larger than any later step's, and on a
    shared scale they would leave the training steps one colour.
    """
    from matplotlib.ticker import MaxNLocator

    panels = list(grid[["side", "group"]].astype(str).drop_duplicates().itertuples(index=False, name=None))
    shown = panels[:MAX_HEATMAPS]
    if len(shown) < len(panels):
        title += f" (first {len(shown)} of {len(panels)} groups)"
    ncols = min(len(shown), 5 if len(shown) > 12 else 4)
    groups = dict(list(grid.groupby(["side", grid["group"].astype(str)], sort=False)))
    tables = [groups[key].pivot(index="layer", columns="step", values="grad_norm") for key in shown]
    # Panels that all span the same steps and blocks share their axes, labelled on the outer panels only.
    same_x = len({(table.columns.min(), table.columns.max()) for table in tables}) == 1
    same_y = len({(table.index.min(), table.index.max()) for table in tables}) == 1
    figure, axes = _figure(len(shown), ncols, HEATMAP_PANEL_SIZE, sharex=same_x, sharey=same_y)
    at_init = grid["step"].eq(0)
    norms = {"init": _log_norm(grid.loc[at_init, "grad_norm"]), "training": _log_norm(grid.loc[~at_init, "grad_norm"])}
    images = {}
    for index, (axis, key, table) in enumerate(zip(axes, shown, tables)):
        steps, layers = table.columns.to_numpy(float), table.index.to_numpy(float)
        x_edges, y_edges, values = heatmap_edges(steps), _edges(layers), np.ma.masked_invalid(table.to_numpy())
        for part, columns in (("init", steps == 0), ("training", steps != 0)):
            if columns.any():
                first = int(np.argmax(columns))  # the init column is first; training is every column after it
                images[part] = axis.pcolormesh(x_edges[first:first + columns.sum() + 1], y_edges, values[:, columns],
                                               norm=norms[part], cmap=HEATMAP_COLOURS[part])
        if (steps == 0).any() and (steps != 0).any():
            axis.axvline(x_edges[1], color="white", linewidth=2)
        side, group = key
        axis.set_title(_wrap(f"{side}: {group}" if side else group, 34), fontsize=10)
        axis.tick_params(labelsize=8)
        axis.xaxis.set_major_locator(MaxNLocator(4, integer=True))
        axis.yaxis.set_major_locator(MaxNLocator(5, integer=True))
        bottom, left = index + ncols >= len(shown), index % ncols == 0  # nothing drawn below it; first column
        axis.tick_params(labelbottom=bottom or not same_x, labelleft=left or not same_y)
        if bottom:
            axis.set_xlabel("step", fontsize=9)
        if left:
            axis.set_ylabel("block index", fontsize=9)
    labels = {"training": "gradient norm, steps after init", "init": "gradient norm at init (step 0)"}
    for part, image in images.items():
        _colour_bar(figure, image, axes, labels[part])
    _title(figure, title)
    return figure


def lr_transfer_figure(curves: pd.DataFrame, path: Path, *, title: str) -> Path:
    """`draw_lr_transfer` into a PNG at `path`."""
    return _save(draw_lr_transfer(curves, title=title), path)


def draw_lr_transfer(curves: pd.DataFrame, *, title: str):
    """A Figure of final loss against learning rate, one line per depth, one panel per depth parametrization,
    each line's optimum starred (rows with `optimum` true; hollow where `edge`: at the grid's end, a bound).
    `curves` columns: panel, line, x, y, optimum, edge."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    points, optima = curves[~curves["optimum"]], curves[curves["optimum"]]
    panels = list(dict.fromkeys(curves["panel"]))
    lines = list(dict.fromkeys(curves["line"]))
    names = [*lines, "optimum (median over seeds)", "at the grid's end: a bound"]
    figure, axes = _figure(len(panels), min(3, len(panels)), PANEL_SIZE, sharex=True, sharey=True)
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
        axis.set_title(panel, fontsize=10)
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
    return figure


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
    axis.set_xticks(lrs, [short_lr(lr) if i % step == 0 else "" for i, lr in enumerate(lrs)])
    axis.minorticks_off()


def short_lr(value: float) -> str:
    """6.25e-05 → 6.25e-5, 0.002 → 2e-3: one short form for every tick of a learning-rate grid."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"

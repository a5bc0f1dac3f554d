"""report.html: the findings, then interactive figures, in one file that opens from disk with no network.

Plotly draws the figures (hover values, zoom, a legend that hides and shows groups, a step slider): its
JavaScript is inlined once, and each figure is a Plotly figure written as JSON. Every figure is drawn from
a frame the PNGs are drawn from — a PNG's `PlotJob` (a PNG kind has its interactive twin in
`FROM_PNG`), or `aggregate.step_profiles` for the profiles that move with the slider; no number is
computed here, only rounded for the page. The words (header, findings, tables) are report.md's own
Markdown, rendered.

A new figure: a PNG job whose `PlotFile` says `html=True` appears here by itself; a figure of a new kind
is one function `(PlotJob) -> Chart` and one `FROM_PNG` entry.
"""

from __future__ import annotations

import functools
import html
import json
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from resbench.report.markdown import findings_lines
from resbench.report.plots import (
    COINCIDE_RTOL,
    coinciding,
    heatmap_edges,
    members_text,
    short_lr,
    use_log_scale,
)
from resbench.report.render import PlotJob
from resbench.report.tables import Table, to_markdown
from resbench.report.verdict import Finding

SIGNIFICANT = 4  # digits a number keeps on the page (hover shows 4; the files keep every digit)
MAX_SLIDER_STEPS = 60  # a profile's slider visits at most this many logged steps, evenly spread
MAX_HEATMAP_STEPS = 200  # a heatmap row holds at most this many logged steps, evenly spread
PANEL_HEIGHT = 300  # px per row of panels
LOG_DECADES_2_5, MAX_LOG_LABELS = 4, 8  # a log axis labels 1, 2 and 5 per decade up to 4 decades; then decades
HEATMAP_ROW_HEIGHT = 240
MAX_COLUMNS = 3  # panels side by side
COLUMN_WIDTH = 600  # px: the widest a column of panels is drawn (plus LEGEND_WIDTH), however wide the window
LEGEND_WIDTH = 260
CHROME_HEIGHT = 150  # px of title, axis titles and legend room around the panels
SLIDER_HEIGHT = 110  # px under the panels for the slider and its play button
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
PROFILES = {  # layers.csv column → (title, y axis)
    "grad_norm": ("Gradient norm per block", "gradient norm"),
    "hidden_rms": ("Hidden-state RMS per block", "hidden-state RMS"),
    "act_grad_norm": ("Activation-gradient norm per block", "‖∂ℓ/∂h‖"),
    "update_ratio": ("Update ratio per block", "‖Δθ‖ / ‖θ‖"),
    "rank_residual": ("Rank residual per block (cf. Dong et al. 2021)", "‖X − 1·x̄ᵀ‖ / ‖X‖"),
}
PLOTLY_CONFIG = {"responsive": True, "displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
SIDE_DASH = {"": "solid", "A": "solid", "B": "dash"}
_AXIS_STYLE = {"gridcolor": "#e5e7eb", "linecolor": "#9ca3af", "showline": True, "zeroline": False, "ticks": "outside",
               "tickcolor": "#9ca3af", "automargin": True}
TEMPLATE = {"layout": {"plot_bgcolor": "white", "paper_bgcolor": "white", "xaxis": _AXIS_STYLE, "yaxis": _AXIS_STYLE}}


@dataclass(frozen=True)
class Chart:
    """One interactive figure: a Plotly figure (data, layout, frames) and the words under it."""

    name: str  # the page's element id: `fig-<name>`
    title: str
    figure: dict
    note: str = ""
    columns: int = 1  # panels side by side: the figure is at most COLUMN_WIDTH px per column wide


# ---------------------------------------------------------------------------------------------
# numbers for the page


def rounded(values: object) -> list:
    """`values` to SIGNIFICANT digits, as JSON-ready floats (None where missing or infinite).

    Scaling by an exact power of ten and rounding gives the double nearest the short decimal, which
    JSON then writes as that short decimal (0.1234, not 0.12340000000000001).
    """
    array = np.asarray(values, dtype=float)
    finite = np.isfinite(array)
    result = np.where(finite, array, 0.0)
    nonzero = finite & (result != 0)
    exponent = np.floor(np.log10(np.abs(result, where=nonzero, out=np.ones_like(result))))
    decimals = np.where(nonzero, SIGNIFICANT - 1 - exponent, 0).astype(int)
    scale = 10.0 ** np.abs(decimals)
    result = np.where(decimals >= 0, np.round(result * scale) / scale, np.round(result / scale) * scale)
    return np.where(finite, result, None).tolist()


def evenly(values: Sequence, most: int) -> list:
    """At most `most` of `values`, evenly spread, the first and last always kept."""
    values = list(values)
    if len(values) <= most:
        return values
    picks = np.unique(np.round(np.linspace(0, len(values) - 1, most)).astype(int))
    return [values[i] for i in picks]


# ---------------------------------------------------------------------------------------------
# layout


def _grid(titles: list[str], ncols: int, row_height: int, share_y: bool = False, extra_height: int = 0) -> dict:
    """A Plotly layout of one panel per title, `ncols` wide, axes named as Plotly numbers them; log axes
    (set later) label their ticks in plain numbers (0.2, 0.5, 1) as the PNGs do."""
    nrows = math.ceil(len(titles) / ncols)
    layout = json.loads(_subplots(tuple(titles), ncols))
    for annotation in layout.get("annotations", []):
        annotation["font"] = {"size": 13}
    if share_y:
        for index in range(2, len(titles) + 1):
            layout[f"yaxis{index}"]["matches"] = "y"
    for index in range(len(titles) + 1, nrows * ncols + 1):  # an empty cell of the last row draws nothing
        layout[f"xaxis{index}"]["visible"] = False
        layout[f"yaxis{index}"]["visible"] = False
    for index in range(len(titles)):
        layout[_axis(index, "y")]["tickformat"] = "~g"
    layout.update(height=nrows * row_height + CHROME_HEIGHT + extra_height, template=TEMPLATE,
                  font={"family": FONT, "size": 12}, hovermode="closest",
                  margin={"t": 40, "r": 20, "l": 60, "b": 50},  # the top: room for the mode bar over the legend
                  legend={"title": {"text": "click to hide / show"}, "groupclick": "togglegroup"})
    return layout


@functools.lru_cache(maxsize=16)
def _subplots(titles: tuple[str, ...], ncols: int) -> str:
    """Plotly's subplot grid as layout JSON; cached, as Plotly's figure objects are slow to build and the
    profiles' figures share one grid."""
    from plotly.subplots import make_subplots

    nrows = math.ceil(len(titles) / ncols)
    grid = make_subplots(rows=nrows, cols=ncols, subplot_titles=titles if any(titles) else None,
                         horizontal_spacing=0.22 / ncols if ncols > 1 else 0.2,
                         vertical_spacing=min(0.35 / nrows, 0.12) if nrows > 1 else 0.3)
    return json.dumps(grid.layout.to_plotly_json())


def _axis(index: int, letter: str) -> str:
    """Plotly's name of panel `index`'s (0-based) x or y axis in a layout: xaxis, xaxis2, …"""
    return f"{letter}axis{index + 1 if index else ''}"


def _ref(index: int, letter: str) -> str:
    """How a trace names panel `index`'s axis: x, x2, …"""
    return f"{letter}{index + 1 if index else ''}"


def _label_axes(layout: dict, n_panels: int, ncols: int, x_label: str, y_label: str) -> None:
    """Axis titles on the bottom panel of each column and the first panel of each row."""
    for index in range(n_panels):
        if index + ncols >= n_panels:
            layout[_axis(index, "x")]["title"] = {"text": x_label}
        if index % ncols == 0:
            layout[_axis(index, "y")]["title"] = {"text": y_label}


def _block_ticks(blocks: pd.Series) -> dict:
    """Whole-number ticks for a block-index axis, about eight at most (Plotly's own would put some at 0.5)."""
    return {"tick0": 0, "dtick": max(1, math.ceil((blocks.max() - blocks.min() + 1) / 8))}


def _fixed_range(values: pd.Series, log: bool) -> list[float] | None:
    """A fixed y range over every value a slider can show (on a log axis, in decades), padded 5 %."""
    values = values[np.isfinite(values) & ((values > 0) if log else True)]
    if values.empty:
        return None
    low, high = (np.log10(values.min()), np.log10(values.max())) if log else (values.min(), values.max())
    pad = 0.05 * (high - low) if high > low else (0.1 if log else 0.05 * abs(high) or 0.1)
    return [float(low - pad), float(high + pad)]


def _log_ticks(values: pd.Series) -> dict:
    """Ticks of a log y axis over `values`. Left to itself, Plotly labels every digit of a decade, and on a
    PANEL_HEIGHT panel the labels near a decade's bottom print on top of one another: from one decade up,
    1, 2 and 5 of each decade; beyond LOG_DECADES_2_5 decades, whole decades (at most MAX_LOG_LABELS)."""
    positive = values[np.isfinite(values) & (values > 0)]
    decades = float(np.log10(positive.max() / positive.min())) if len(positive) else 0.0
    if decades < 1:
        return {}
    return {"dtick": "D2"} if decades <= LOG_DECADES_2_5 else {"dtick": math.ceil(decades / MAX_LOG_LABELS)}


# ---------------------------------------------------------------------------------------------
# figures


def _trace_names(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(panel, line, side) of each line to draw, in the frame's order."""
    names = frame[["panel", "line", "side"]].drop_duplicates().astype(str)  # drop first: astype on every row is slow
    return list(names.itertuples(index=False, name=None))


def _legend_name(line: str, side: str) -> str:
    return f"{line} ({side})" if side else line


def _colours(lines: list[str]) -> dict[str, str]:
    """One colour per line, the same in every figure: Plotly's default 10, then its 24 Light24."""
    from plotly.colors import qualitative

    palette = qualitative.Plotly if len(lines) <= 10 else qualitative.Light24
    return {line: palette[i % len(palette)] for i, line in enumerate(lines)}


def line_chart(job: PlotJob) -> Chart:
    """The interactive twin of `plots.line_figure`: same frame, panels, lines, axes and error bars."""
    curves, options = job.data, job.options
    panels = [str(panel) for panel in curves["panel"].drop_duplicates()]
    ncols = min(options.get("ncols") or MAX_COLUMNS, MAX_COLUMNS, len(panels))
    share_y = options.get("share_y", True)
    layout = _grid(panels, ncols, PANEL_HEIGHT, share_y=share_y)
    log_y = {panel: use_log_scale(panel_y if not share_y else curves["y"]) if options.get("log_y") is None
             else options["log_y"] for panel, panel_y in curves.groupby(curves["panel"].astype(str), sort=False)["y"]}
    ticks = sorted(curves["x"].unique()) if options.get("x_at_values") else None
    log_x = bool(ticks) and ticks[0] > 0 and (options.get("log_x") or ticks[-1] >= 4 * ticks[0])
    for index in range(len(panels)):
        panel_y = curves["y"] if share_y else curves.loc[curves["panel"].astype(str).eq(panels[index]), "y"]
        layout[_axis(index, "y")].update(type="log" if log_y[panels[index]] else "linear", rangemode="tozero"
                                         if options.get("y_from_zero") else "normal",
                                         **(_log_ticks(panel_y) if log_y[panels[index]] else {}))
        layout[_axis(index, "x")].update(type="log" if log_x else "linear", **({"matches": "x"} if index else {}))
        if ticks:
            layout[_axis(index, "x")].update(tickvals=rounded(ticks), ticktext=[f"{tick:g}" for tick in ticks])
    _label_axes(layout, len(panels), ncols, options["x_label"], options["y_label"])
    colours = _colours([str(line) for line in curves["line"].drop_duplicates()])
    data, legend = [], set()
    groups = curves.groupby([curves["panel"].astype(str), curves["line"].astype(str), curves["side"].astype(str)],
                            sort=False)
    drawn: dict[str, dict[str, pd.Series]] = {}
    for (panel, line, side), rows in groups:
        rows = rows.sort_values("x")
        name, index = _legend_name(line, side), panels.index(panel)
        trace = {"type": "scatter", "mode": "lines+markers" if len(rows) <= 40 else "lines", "name": name or "all runs",
                 "x": rounded(rows["x"]), "y": rounded(rows["y"]), "xaxis": _ref(index, "x"), "yaxis": _ref(index, "y"),
                 "legendgroup": name, "showlegend": bool(name) and name not in legend,
                 "line": {"color": colours[line], "dash": SIDE_DASH.get(side, "dot"), "width": 2},
                 "marker": {"size": 6}, "hovertemplate": f"{options['x_label']} %{{x}}: %{{y:.4g}}"}
        if options.get("error_bars") and rows["y_err"].notna().any():
            trace["error_y"] = {"type": "data", "array": rounded(rows["y_err"].fillna(0)), "visible": True}
            trace["customdata"] = rounded(rows["y_err"])
            trace["hovertemplate"] += " ± %{customdata:.2g}"
        legend.add(name)
        data.append(trace)
        drawn.setdefault(panel, {})[name] = pd.Series(rows["y"].to_numpy(), index=rows["x"].to_numpy())
    note = coinciding_note(drawn, options.get("coincide_reasons"))
    layout["showlegend"] = len(legend - {""}) > 0
    return Chart(job.path.stem, options["title"], {"data": data, "layout": layout}, note, ncols)


def heatmap_chart(job: PlotJob) -> Chart:
    """The interactive twin of `plots.heatmap_figure`: a panel per group, log colour, the init column on
    its own scale; hover gives block, step and the norm."""
    grid = job.data
    panels = list(dict.fromkeys(zip(grid["side"].astype(str), grid["group"].astype(str))))
    ncols = min(MAX_COLUMNS + 1, len(panels))
    titles = [f"{side}: {group}" if side else group for side, group in panels]
    layout = _grid(["<br>".join(textwrap.wrap(title.replace(",", ", "), 32)) for title in titles], ncols,
                   HEATMAP_ROW_HEIGHT)
    _label_axes(layout, len(panels), ncols, "step", "block index")
    steps = evenly(sorted(grid["step"].unique()), MAX_HEATMAP_STEPS)
    grid = grid[grid["step"].isin(steps)]
    at_init = grid["step"].eq(0)
    # Two colour bars, one above the other right of the panels: the init column's, then the later steps'.
    scales = {"coloraxis": _colour_scale(grid.loc[~at_init, "grad_norm"], "Viridis", "after init", 0.0),
              "coloraxis2": _colour_scale(grid.loc[at_init, "grad_norm"], "Magma", "at init (step 0)", 0.54)}
    data = []
    for index, ((_, group), rows) in enumerate(grid.groupby([grid["side"].astype(str), grid["group"].astype(str)],
                                                            sort=False)):
        data += _heatmap_traces(rows.pivot(index="layer", columns="step", values="grad_norm"), index, group, layout)
        layout[_axis(index, "y")].update(_block_ticks(rows["layer"]))
    layout.update({name: scale for name, scale in scales.items() if scale})
    note = ("The init column (step 0) has a colour scale of its own: its gradients are often far larger than any "
            "later step's. Colours are log-scaled, clipped to the 1st–99th percentile.")
    if len(steps) < job.data["step"].nunique():
        note += f" {len(steps)} of the {job.data['step'].nunique()} logged steps are shown, evenly spread."
    return Chart(job.path.stem, job.options["title"], {"data": data, "layout": layout}, note, ncols)


def _heatmap_traces(table: pd.DataFrame, index: int, group: str, layout: dict) -> list[dict]:
    """Panel `index`'s heatmap (a block × step table): the init column on colour axis 2, drawn as wide as
    the PNG draws it and behind a white line (added to `layout`), the later steps on colour axis 1."""
    steps = table.columns.to_numpy(float)
    edges = heatmap_edges(steps)
    traces = []
    for axis, columns in (("coloraxis2", steps == 0), ("coloraxis", steps != 0)):
        if not columns.any():
            continue
        values = table.to_numpy()[:, columns]
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero or missing norm: no colour
            logs = np.log10(values)
        trace = {"type": "heatmap", "y": rounded(table.index), "z": rounded(logs), "customdata": rounded(values),
                 "coloraxis": axis, "name": group, "xaxis": _ref(index, "x"), "yaxis": _ref(index, "y"),
                 "hovertemplate": "step %{x}, block %{y}: %{customdata:.4g}<extra>%{fullData.name}</extra>"}
        if axis == "coloraxis2":  # given by its edges; hover names it
            trace.update(x=rounded(edges[:2]), hovertemplate=trace["hovertemplate"].replace("%{x}", "0 (init)"))
            if len(steps) > 1:
                layout.setdefault("shapes", []).append(
                    {"type": "line", "xref": _ref(index, "x"), "yref": f"{_ref(index, 'y')} domain", "x0": edges[1],
                     "x1": edges[1], "y0": 0, "y1": 1, "line": {"color": "white", "width": 3}})
        else:
            trace["x"] = rounded(steps[columns])
        traces.append(trace)
    return traces


def colour_ticks(low: float, high: float) -> list[float]:
    """Round numbers between 10**low and 10**high, at least three where that can be: decades over a wide span,
    else 1-2-5 steps, else evenly spaced round numbers (a span under about half a decade)."""
    def inside(ticks):
        return [tick for tick in ticks if low <= math.log10(tick) <= high]

    decades = range(math.floor(low), math.ceil(high) + 1)
    for steps in ((1,), (1, 2, 5)) if high - low > 2 else ((1, 2, 5),):
        ticks = inside([10.0 ** decade * step for decade in decades for step in steps])
        if len(ticks) >= 3:
            return ticks
    bottom, top = 10.0 ** low, 10.0 ** high
    unit = 10.0 ** math.floor(math.log10((top - bottom) / 4))
    step = next(unit * m for m in (1, 2, 5, 10) if (top - bottom) / (unit * m) <= 5)
    return inside([float(f"{value:.6g}") for value in np.arange(math.ceil(bottom / step) * step, top, step)])


def _colour_scale(values: pd.Series, colours: str, title: str, bottom: float) -> dict | None:
    """A log colour axis (z holds log10 values) over the 1st–99th percentile, ticks in plain numbers."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.empty:
        return None
    low, high = np.log10(np.percentile(positive, [1, 99]))
    high = max(high, low + 0.01)
    ticks = colour_ticks(low, high)
    from plotly.colors import sequential

    palette = getattr(sequential, colours)  # plotly.js itself knows only a few scales by name
    return {"colorscale": [[i / (len(palette) - 1), colour] for i, colour in enumerate(palette)],
            "cmin": float(low), "cmax": float(high),
            "colorbar": {"title": {"text": title}, "y": bottom, "yanchor": "bottom", "len": 0.42, "thickness": 14,
                         "tickvals": [math.log10(tick) for tick in ticks], "ticktext": [f"{tick:g}" for tick in ticks]}}


def profile_charts(profiles: pd.DataFrame, init_reason: str = "") -> list[Chart]:
    """One figure per per-block quantity: the profile against block index, a slider through the steps.

    Lines that coincide at init are named under the figure, with `init_reason` when given.
    """
    charts = []
    for quantity, (title, y_label) in PROFILES.items():
        if quantity in profiles and profiles[quantity].notna().any():
            charts.append(_profile_chart(profiles[profiles[quantity].notna()], quantity, title, y_label, init_reason))
    return charts


def _profile_chart(rows: pd.DataFrame, quantity: str, title: str, y_label: str, init_reason: str) -> Chart:
    all_steps = sorted(rows["step"].unique())
    steps = evenly(all_steps, MAX_SLIDER_STEPS)
    rows = rows[rows["step"].isin(steps)]
    panels = [str(panel) for panel in rows["panel"].drop_duplicates()]
    ncols = min(MAX_COLUMNS, len(panels))
    layout = _grid(panels, ncols, PANEL_HEIGHT, extra_height=SLIDER_HEIGHT)
    _label_axes(layout, len(panels), ncols, "block index", y_label)
    log = use_log_scale(rows[quantity])
    names = _trace_names(rows)
    colours = _colours(list(dict.fromkeys(name[1] for name in names)))
    # Each line's blocks, and its values as a step × block list: the slider's frames are its rows.
    lines = {}
    for (panel, line, side), part in rows.groupby(["panel", "line", "side"], sort=False, observed=True):
        key = (str(panel), str(line), str(side))
        table = part.pivot(index="layer", columns="step", values=quantity).reindex(columns=steps)
        lines[key] = (rounded(table.index), rounded(table.to_numpy().T))
    data, legend = [], set()
    for panel, line, side in names:
        index, name = panels.index(panel), _legend_name(line, side)
        blocks, values = lines[panel, line, side]
        data.append({"type": "scatter", "mode": "lines+markers", "name": name or "all runs", "legendgroup": name,
                     "showlegend": name not in legend, "x": blocks, "y": values[0], "xaxis": _ref(index, "x"),
                     "yaxis": _ref(index, "y"), "line": {"color": colours[line], "dash": SIDE_DASH.get(side, "dot")},
                     "marker": {"size": 5}, "hovertemplate": "block %{x}: %{y:.4g}"})
        legend.add(name)
    for index, panel in enumerate(panels):
        in_panel = rows["panel"].eq(panel)
        layout[_axis(index, "y")].update(type="log" if log else "linear",
                                         range=_fixed_range(rows.loc[in_panel, quantity], log),
                                         **(_log_ticks(rows.loc[in_panel, quantity]) if log else {}))
        layout[_axis(index, "x")].update(_block_ticks(rows.loc[in_panel, "layer"]))
    frames = [{"name": str(step), "data": [{"y": lines[name][1][i]} for name in names]} for i, step in enumerate(steps)]
    layout.update(_slider(steps))
    note = "Mean over each group's seeds at the step the slider shows."
    if len(steps) < len(all_steps):
        note += f" The slider visits {len(steps)} of the {len(all_steps)} logged steps, evenly spread."
    if steps[0] == 0:
        note += _coinciding_at_init(names, lines, init_reason)
    return Chart(f"profile-{quantity}", title, {"data": data, "layout": layout, "frames": frames}, note, ncols)


def _coinciding_at_init(names: list[tuple[str, str, str]], lines: dict, reason: str) -> str:
    """The note on the lines (blocks and step-by-step values, the first step init) that coincide at init."""
    panels: dict[str, dict[str, pd.Series]] = {}
    for panel, line, side in names:
        blocks, values = lines[panel, line, side]
        panels.setdefault(panel, {})[_legend_name(line, side)] = pd.Series(values[0], index=blocks, dtype=float)
    note = coinciding_note(panels, dict.fromkeys(panels, reason) if reason else None)
    return f" At init (step 0): {note}" if note else ""


MAX_NOTES = 3  # sets of coinciding lines named under a figure; more are counted


def coinciding_note(panels: dict[str, dict[str, pd.Series]], reasons: dict[str, str] | None = None) -> str:
    """Sentences naming the lines that coincide (panel → name → y by x), a set of names once with every panel
    it coincides in, and why when `reasons` (by panel) says; after MAX_NOTES sets, how many more."""
    where: dict[tuple[str, ...], list[str]] = {}
    for panel, lines in panels.items():
        for members in coinciding(lines):
            where.setdefault(tuple(members), []).append(panel)
    sentences = []
    for members, found in where.items():
        why = {(reasons or {}).get(panel, "") for panel in found}
        sentences.append(f"{members_text(list(members))} coincide (within {COINCIDE_RTOL:.1%})"
                         + (f" in {', '.join(found)}" if any(found) else "")
                         + (f": {why.pop()}" if len(why) == 1 and "" not in why else "") + ".")
    if len(sentences) > MAX_NOTES:
        more = len(sentences) - MAX_NOTES
        counted = f"{more} more sets of lines coincide." if more > 1 else "1 more set of lines coincides."
        sentences = [*sentences[:MAX_NOTES], counted]
    return " ".join(sentences + ["Hide a line in the legend to see those under it."]) if sentences else ""


def _slider(steps: list) -> dict:
    """A step slider under the panels, and play / pause buttons left of it: they move through the frames
    named by the steps, without redrawing the axes (their ranges are fixed)."""
    still = {"mode": "immediate", "frame": {"duration": 0, "redraw": False}, "transition": {"duration": 0}}
    play = {"frame": {"duration": 250, "redraw": False}, "fromcurrent": True, "transition": {"duration": 0}}
    return {
        "sliders": [{"active": 0, "currentvalue": {"prefix": "step "}, "pad": {"t": 50, "l": 110}, "len": 1.0, "x": 0,
                     "y": 0, "yanchor": "top",
                     "steps": [{"label": str(step), "method": "animate", "args": [[str(step)], still]}
                               for step in steps]}],
        "updatemenus": [{"type": "buttons", "direction": "left", "showactive": False, "x": 0, "y": 0, "xanchor": "left",
                         "yanchor": "top", "pad": {"t": 60, "r": 10},
                         "buttons": [{"label": "▶ play", "method": "animate", "args": [None, play]},
                                     {"label": "❚❚", "method": "animate", "args": [[None], still]}]}],
    }


def lr_transfer_chart(job: PlotJob) -> Chart:
    """The interactive twin of `plots.lr_transfer_figure`: final loss against lr (log axis, a tick per grid lr),
    a line per depth, a panel per depth parametrization, each line's optimum a star (hollow: a bound)."""
    curves = job.data
    panels = [str(panel) for panel in curves["panel"].drop_duplicates()]
    ncols = min(MAX_COLUMNS, len(panels))
    layout = _grid(panels, ncols, PANEL_HEIGHT, share_y=True)
    lrs = sorted(curves["x"].unique())
    for index in range(len(panels)):
        layout[_axis(index, "x")].update(type="log", tickvals=rounded(lrs), ticktext=[short_lr(lr) for lr in lrs],
                                         **({"matches": "x"} if index else {}))
    _label_axes(layout, len(panels), ncols, "learning rate (train.lr)", "final train loss (mean over seeds)")
    from plotly.colors import sample_colorscale

    lines = [str(line) for line in curves["line"].drop_duplicates()]  # depths, shallow to deep: light to dark
    shades = sample_colorscale("Viridis", [0.85 * (1 - i / max(len(lines) - 1, 1)) for i in range(len(lines))])
    colours, data = dict(zip(lines, shades)), []
    for (panel, line, optimum), rows in curves.groupby(["panel", "line", "optimum"], sort=False):
        rows, index = rows.sort_values("x"), panels.index(str(panel))
        trace = {"type": "scatter", "x": rounded(rows["x"]), "y": rounded(rows["y"]), "name": str(line),
                 "legendgroup": str(line), "xaxis": _ref(index, "x"), "yaxis": _ref(index, "y"),
                 "hovertemplate": "lr %{x:.3g}: %{y:.4g}" + (" (optimum)" if optimum else "")}
        if optimum:
            trace.update(mode="markers", showlegend=False, marker={
                "symbol": ["star-open" if edge else "star" for edge in rows["edge"]], "size": 16,
                "color": colours[str(line)], "line": {"color": "black", "width": 1}})
        else:
            trace.update(mode="lines+markers", showlegend=index == 0, marker={"size": 6},
                         line={"color": colours[str(line)], "width": 2})
        data.append(trace)
    note = ("★: each line's optimal lr (the median over seeds of the per-seed optima); hollow: at the grid's end, "
            "a bound.")
    return Chart(job.path.stem, job.options["title"], {"data": data, "layout": layout}, note, ncols)


FROM_PNG: dict[str, Callable[[PlotJob], Chart]] = {  # a PNG figure's kind → its interactive twin
    "line_figure": line_chart,
    "heatmap_figure": heatmap_chart,
    "lr_transfer_figure": lr_transfer_chart,
}


# ---------------------------------------------------------------------------------------------
# the page


@dataclass(frozen=True)
class Page:
    """What report.html shows, in order: report.md's header, warnings and findings, then the figures, then
    report.md's tables."""

    title: str
    header: list[str]  # Markdown lines
    warnings: list[str]
    findings: list[tuple[str, list[Finding]]]  # (side name or "", its findings)
    findings_note: str  # Markdown
    charts: list[Chart]
    tables: list[Table]


STYLE = f"""
body {{ font-family: {FONT}; margin: 0 auto; max-width: 1400px; padding: 0 24px 48px; color: #1f2328;
       line-height: 1.45; }}
h1 {{ margin-top: 28px; }} h2 {{ margin-top: 36px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }}
nav a {{ margin-right: 14px; }}
code {{ background: #f3f4f6; padding: 1px 4px; border-radius: 4px; font-size: 90%; overflow-wrap: anywhere; }}
ul.findings li {{ margin-bottom: 10px; }}
ul.findings li.agrees > strong:first-child {{ color: #1a7f37; }}
ul.findings li.disagrees > strong:first-child {{ color: #cf222e; }}
ul.findings li.inconclusive > strong:first-child {{ color: #9a6700; }}
ul.findings details {{ color: #57606a; font-size: 92%; margin: 2px 0 0 0; }} ul.findings summary {{ cursor: pointer; }}
ul.warnings li {{ color: #9a6700; }}
figure {{ margin: 24px 0; }} figcaption {{ color: #57606a; font-size: 92%; margin: 4px 0 0 8px; }}
figure h3 {{ margin-bottom: 4px; }}
table {{ border-collapse: collapse; margin: 8px 0; font-size: 92%; display: block; overflow-x: auto; }}
th, td {{ border: 1px solid #d0d7de; padding: 3px 8px; }} th {{ background: #f6f8fa; }}
"""


def page_html(page: Page) -> str:
    """The whole report.html: Plotly's JavaScript inline once, then the report."""
    from markdown_it import MarkdownIt
    from plotly.offline import get_plotlyjs

    markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
    parts = [f"<h1>{html.escape(page.title)}</h1>", markdown.render("\n".join(page.header))]
    sections = [("findings", "Findings"), ("figures", "Figures"), ("tables", "Tables")]
    parts.append("<nav>" + "".join(f'<a href="#{anchor}">{name}</a>' for anchor, name in sections) + "</nav>")
    if page.warnings:
        parts.append('<h2 id="warnings">Warnings</h2><ul class="warnings">'
                     + "".join(f"<li>{markdown.renderInline(warning)}</li>" for warning in page.warnings) + "</ul>")
    parts.append('<h2 id="findings">Findings</h2>' + _findings_html(page, markdown))
    parts.append('<h2 id="figures">Figures</h2>' + "".join(_chart_html(chart) for chart in page.charts))
    parts.append('<h2 id="tables">Tables</h2>' + "".join(markdown.render(to_markdown(table)) for table in page.tables))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(page.title)}</title>\n<style>{STYLE}</style>\n"
            f"<script>{get_plotlyjs()}</script>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")


def _findings_html(page: Page, markdown) -> str:
    if not any(findings for _, findings in page.findings):
        return "<p>No finding applies to these runs.</p>"
    parts = []
    for side, findings in page.findings:
        if side:
            parts.append(f"<h3>{html.escape(side)}</h3>")
        items = (_finding_html(finding, line, markdown) for finding, line in zip(findings, findings_lines(findings)))
        parts.append('<ul class="findings">' + "".join(items) + "</ul>")
    return "".join(parts) + markdown.render(page.findings_note)


def _finding_html(finding: Finding, line: str, markdown) -> str:
    """One finding: its verdict and the terminal's short line, with report.md's full statement (claim,
    quantity, comparison, values, margin) one click away."""
    verdict = html.escape(finding.verdict)
    short, settle = finding.line().removeprefix(finding.verdict).strip(), f". Settle: {finding.settle}"
    if finding.settle and short.endswith(settle):  # the command as code, to copy
        short = f"{html.escape(short.removesuffix(settle))}. Settle: <code>{html.escape(finding.settle)}</code>"
    else:
        short = html.escape(short)
    full = markdown.renderInline(line.removeprefix("- "))
    return (f'<li class="{verdict}"><strong>{verdict}</strong> {short}'
            f"<details><summary>the full statement</summary>{full}</details></li>")


def _chart_html(chart: Chart) -> str:
    import plotly.io

    div = plotly.io.to_html(chart.figure, config=PLOTLY_CONFIG, auto_play=False, include_plotlyjs=False,
                            full_html=False, validate=False, div_id=f"fig-{chart.name}")
    caption = f"<figcaption>{html.escape(chart.note)}</figcaption>" if chart.note else ""
    width = chart.columns * COLUMN_WIDTH + LEGEND_WIDTH
    return (f'<figure><h3>{html.escape(chart.title)}</h3><div style="max-width: {width}px">{div}</div>{caption}'
            "</figure>")


def charts(profiles: pd.DataFrame, jobs: Sequence[PlotJob], init_reason: str = "") -> list[Chart]:
    """The page's figures: the step-by-step profiles, then the twin of each PNG job, in the jobs' order."""
    return profile_charts(profiles, init_reason) + [FROM_PNG[job.figure](job) for job in jobs]


def write_html(path: Path, page: Page) -> Path:
    path.write_text(page_html(page), encoding="utf-8")
    return path

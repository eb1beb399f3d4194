"""The one set of interactive charts (Plotly) of every report and web page.

Each builder here takes plain data (arrays, lists of rows prepared by a report module from what a
study or the engine returned) and returns a :class:`Chart`: a Plotly figure as plain JSON data
(``{"data": [...], "layout": {...}}``), its caption and a short text alternative. Nothing here
imports plotly (the figures are data; the browser library draws them) or runs the model.

How a chart reaches a page: the page's template renders each chart with the ``chart`` macro of
``templates/macros.html.j2`` (a ``<figure>`` holding an empty ``<div data-chart=...>`` and the text
alternative), the figures travel in one ``<script type="application/json" id="mn-charts">``
element (:func:`context`), and ``templates/charts.js`` draws each one with ``Plotly.newPlot`` when
it scrolls into view (all at once before printing). The library is

* **inlined** into a report file written by the CLI (:func:`embed_library` after rendering:
  ``plotly.min.js`` as the Python package ships it, ~4.8 MB, so ``report.html`` opens offline), or
* **linked** by the web pages (``/static/plotly-<version>.min.js``, served once with long cache
  headers by :mod:`microneedling.web`).

Conventions: titles and axis titles name the quantity and its unit; axes use ``automargin`` (no
clipped titles); legends sit below the plot (readable at 375 px); the colour cycle is
:data:`microneedling.reports.figures.PALETTE`; sessions are dashed grey vertical lines with one
"session" legend entry; 10–90% bands are translucent fills of their line's colour.

>>> c = line_chart("chart-demo", "Demo", [series("a", [0, 1], [1, 2])], x_title="Time (d)",
...                y_title="Value (%)")
>>> c.figure["data"][0]["type"], c.figure["layout"]["annotations"][0]["text"]
('scatter', 'Value (%)')
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from microneedling.reports.figures import PALETTE, footer_text
from microneedling.reports.format import clean_text, format_day, format_number

__all__ = [
    "LIBRARY_PLACEHOLDER",
    "Chart",
    "bar_chart",
    "calendar_chart",
    "context",
    "decimate",
    "dumps",
    "embed_library",
    "embed_library_bytes",
    "heatmap_chart",
    "histogram_chart",
    "line_chart",
    "loads",
    "pareto_chart",
    "plotly_js",
    "plotly_js_bytes",
    "plotly_js_path",
    "plotly_version",
    "rgba",
    "series",
    "sobol_chart",
    "validation_chart",
]

#: what :func:`embed_library` replaces with the inlined library (a comment: harmless if left)
LIBRARY_PLACEHOLDER = "<!-- microneedling:plotly.js -->"

#: most points of one line sent to the browser (min and max of each bucket are kept)
MAX_POINTS = 600

_FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif'
_GRID = "#e6e9ef"
_SESSION_COLOUR = "#7a8291"
#: the Magma colour scale (black → purple → orange → pale yellow) as plotly.js wants it: the
#: browser library knows no scale by that name (plotly's Python package expands it to these)
MAGMA = ["#000004", "#180f3d", "#440f76", "#721f81", "#9e2f7f", "#cd4071", "#f1605d", "#fd9668",
         "#feca8d", "#fcfdbf"]  # fmt: skip


# --------------------------------------------------------------------------- the chart
@dataclass(frozen=True)
class Chart:
    """One interactive chart: ``figure`` is Plotly's JSON (data and layout)."""

    id: str
    title: str
    figure: dict[str, Any]
    summary: str = ""
    height: int = 380
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (for a file of a run: ``charts.json``); :meth:`from_dict` reads it."""
        return {
            "id": self.id,
            "title": self.title,
            "figure": self.figure,
            "summary": self.summary,
            "height": self.height,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chart:
        """A chart from :meth:`to_dict`'s data; a missing ``id``, ``title`` or ``figure`` (or a
        figure without ``data``) raises ``ValueError``."""
        try:
            figure = data["figure"]
            if not isinstance(figure, dict) or not isinstance(figure.get("data"), list):
                raise ValueError("charts: a figure needs a 'data' list")
            return cls(
                id=str(data["id"]),
                title=str(data["title"]),
                figure=figure,
                summary=str(data.get("summary", "")),
                height=int(data.get("height", 380)),
                notes=tuple(str(n) for n in data.get("notes", ())),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"charts: not a chart ({exc})") from exc

    def page_data(self) -> dict[str, Any]:
        """What the ``chart`` macro reads (:meth:`to_dict` without the figure)."""
        return {k: v for k, v in self.to_dict().items() if k != "figure"}


def _finite(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return float(f"{x:.6g}") if math.isfinite(x) else None


def _values(a: Any) -> list[float | None]:
    """Numbers for the browser: six significant digits, NaN and infinities as gaps (null).

    :func:`_finite` of each element, from the array's Python floats and one ``isfinite``
    (a report's charts hold some 10,000-30,000 numbers: 2.3x faster than element by element)."""
    arr = np.asarray(a, dtype=float).ravel()
    return [
        float(f"{x:.6g}") if ok else None
        for x, ok in zip(arr.tolist(), np.isfinite(arr).tolist(), strict=True)
    ]


def rgba(colour: str, alpha: float) -> str:
    """``#1f77b4`` with an opacity, as ``rgba(31,119,180,0.18)``."""
    c = colour.lstrip("#")
    r, g, b = (int(c[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha:g})"


def _axis(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": clean_text(title), "standoff": 8},
        "automargin": True,
        "gridcolor": _GRID,
        "zerolinecolor": "#9aa1ad",
        **extra,
    }


def _layout(
    title: str, x_title: str, y_title: str, *, height: int, legend: bool = True, **extra: Any
) -> dict[str, Any]:
    """The common layout. The chart's title is its figure caption on the page (not repeated in
    the plot); the y-axis title is written horizontally above the plot, where a long title is
    never clipped (a rotated one longer than the plot's height was)."""
    annotations = []
    if y_title:
        annotations.append(
            {
                "text": clean_text(y_title),
                "xref": "paper",
                "yref": "paper",
                "x": 0,
                "y": 1,
                "xanchor": "left",
                "yanchor": "bottom",
                "yshift": 6,
                "showarrow": False,
                "align": "left",
                "font": {"size": 12},
            }
        )
    layout: dict[str, Any] = {
        "font": {"family": _FONT, "size": 12, "color": "#1d2330"},
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 34 if y_title else 12, "b": 10},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "hovermode": "x unified",
        "xaxis": _axis(x_title),
        "yaxis": _axis(""),
        "showlegend": legend,
        "legend": {"orientation": "h", "x": 0, "y": -0.18, "yanchor": "top"},
        "annotations": annotations,
        "meta": {"title": clean_text(title), "footer": clean_text(footer_text())},
    }
    layout.update(extra)
    return layout


# --------------------------------------------------------------------------- lines and bands
def decimate(t: Any, ys: Sequence[Any], max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of ``t`` to keep so that no series loses its extremes: the first and last points
    and the min and max of each series in each of ``max_points // 2`` buckets."""
    t = np.asarray(t)
    n = len(t)
    if n <= max_points:
        return np.arange(n)
    buckets = np.array_split(np.arange(n), max_points // 2)
    keep = {0, n - 1}
    for b in buckets:
        keep.add(int(b[0]))
        for y in ys:
            seg = np.asarray(y, dtype=float)[b]
            if np.isfinite(seg).any():
                keep.add(int(b[np.nanargmin(seg)]))
                keep.add(int(b[np.nanargmax(seg)]))
    return np.array(sorted(keep))


def series(
    name: str,
    x: Any,
    y: Any,
    *,
    low: Any = None,
    high: Any = None,
    colour: str | None = None,
    dash: str = "solid",
    group: str | None = None,
    markers: bool = False,
) -> dict[str, Any]:
    """One line of a :func:`line_chart` (with its 10–90% band when ``low`` and ``high`` are given)."""
    return {
        "name": clean_text(name),
        "x": np.asarray(x, dtype=float),
        "y": np.asarray(y, dtype=float),
        "low": None if low is None else np.asarray(low, dtype=float),
        "high": None if high is None else np.asarray(high, dtype=float),
        "colour": colour,
        "dash": dash,
        "group": group,
        "markers": markers,
    }


def _session_shapes(days: Iterable[float]) -> list[dict[str, Any]]:
    return [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": float(d),
            "x1": float(d),
            "y0": 0,
            "y1": 1,
            "line": {"color": _SESSION_COLOUR, "width": 1, "dash": "dash"},
            "layer": "below",
        }
        for d in days
    ]


def line_chart(
    cid: str,
    title: str,
    lines: Sequence[dict[str, Any]],
    *,
    x_title: str,
    y_title: str,
    units: str = "",
    sessions: Sequence[float] = (),
    thresholds: Sequence[tuple[float, str]] = (),
    band_label: str = "10–90% interval",
    summary: str = "",
    height: int = 360,
    x_range: tuple[float, float] | None = None,
    log_y: bool = False,
) -> Chart:
    """Lines (each with its translucent 10–90% band), sessions as dashed vertical lines and
    horizontal thresholds (value, label). Hover shows every line's value with ``units``.
    ``log_y``: a logarithmic value axis."""
    data: list[dict[str, Any]] = []
    unit = f" {units}" if units and not units.startswith(("%", "/")) else units
    banded = False
    for i, s in enumerate(lines):
        colour = s["colour"] or PALETTE[i % len(PALETTE)]
        x = s["x"]
        arrays = [s["y"]] + ([s["low"], s["high"]] if s["low"] is not None else [])
        keep = decimate(x, arrays)
        xs = _values(x[keep])
        group = s["group"] or s["name"]
        if s["low"] is not None and s["high"] is not None:
            lo = np.minimum(s["low"], s["high"])[keep]
            hi = np.maximum(s["low"], s["high"])[keep]
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": xs,
                    "y": _values(lo),
                    "line": {"width": 0, "color": colour},
                    "legendgroup": group,
                    "showlegend": False,
                    "hoverinfo": "skip",
                    "name": f"{s['name']} (10th percentile)",
                }
            )
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": xs,
                    "y": _values(hi),
                    "fill": "tonexty",
                    "fillcolor": rgba(colour, 0.18),
                    "line": {"width": 0, "color": colour},
                    "legendgroup": group,
                    "showlegend": False,
                    "hoverinfo": "skip",
                    "name": f"{s['name']} (90th percentile)",
                }
            )
            banded = True
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers" if s["markers"] else "lines",
                "x": xs,
                "y": _values(s["y"][keep]),
                "name": s["name"],
                "legendgroup": group,
                "line": {"color": colour, "width": 2, "dash": s["dash"]},
                "hovertemplate": f"%{{y:.3g}}{unit}<extra>{s['name']}</extra>",
            }
        )
    if banded:
        data.append(_legend_only(band_label, rgba(PALETTE[0], 0.3), width=10))
    if sessions:
        data.append(_legend_only("session", _SESSION_COLOUR, dash="dash"))
    shapes = _session_shapes(sessions)
    for value, label in thresholds:
        shapes.append(
            {
                "type": "line",
                "xref": "paper",
                "yref": "y",
                "x0": 0,
                "x1": 1,
                "y0": float(value),
                "y1": float(value),
                "line": {"color": "#333", "width": 1, "dash": "dot"},
            }
        )
        data.append(_legend_only(label, "#333", dash="dot"))
    layout = _layout(title, x_title, y_title, height=height, shapes=shapes)
    layout["xaxis"]["hoverformat"] = ".1f"
    if x_range is not None:
        layout["xaxis"]["range"] = list(x_range)
    if log_y:
        layout["yaxis"]["type"] = "log"
    return Chart(cid, title, {"data": data, "layout": layout}, summary, height)


def _legend_only(name: str, colour: str, *, dash: str = "solid", width: float = 2) -> dict:
    """A legend entry without data (session markers, bands, thresholds)."""
    return {
        "type": "scatter",
        "mode": "lines",
        "x": [None],
        "y": [None],
        "name": name,
        "line": {"color": colour, "dash": dash, "width": width},
        "hoverinfo": "skip",
    }


# --------------------------------------------------------------------------- bars
def bar_chart(
    cid: str,
    title: str,
    categories: Sequence[str],
    groups: Sequence[dict[str, Any]],
    *,
    x_title: str,
    y_title: str,
    units: str = "",
    horizontal: bool = False,
    reference: float | None = None,
    reference_label: str = "",
    log: bool = False,
    summary: str = "",
    height: int = 360,
) -> Chart:
    """Grouped bars: ``groups`` = ``[{"name", "values", "low"?, "high"?, "colour"?}]`` (one value
    per category; ``low``/``high`` drawn as error bars). ``reference``: a dotted line (e.g. a ratio
    of 1)."""
    data = []
    unit = f" {units}" if units and not units.startswith(("%", "/")) else units
    cats = [clean_text(c) for c in categories]
    for i, g in enumerate(groups):
        v = np.asarray(g["values"], dtype=float)
        trace: dict[str, Any] = {
            "type": "bar",
            "name": clean_text(g["name"]),
            "marker": {"color": g.get("colour") or PALETTE[i % len(PALETTE)]},
            "hovertemplate": (
                f"%{{{'x' if horizontal else 'y'}:.3g}}{unit}<extra>{clean_text(g['name'])}</extra>"
            ),
        }
        if horizontal:
            trace.update(orientation="h", x=_values(v), y=cats)
        else:
            trace.update(x=cats, y=_values(v))
        if g.get("low") is not None and g.get("high") is not None:
            lo = np.asarray(g["low"], dtype=float)
            hi = np.asarray(g["high"], dtype=float)
            err = {
                "type": "data",
                "symmetric": False,
                "array": _values(np.clip(hi - v, 0, None)),
                "arrayminus": _values(np.clip(v - lo, 0, None)),
                "color": "#333",
                "thickness": 1.2,
            }
            trace["error_x" if horizontal else "error_y"] = err
        data.append(trace)
    x_axis, y_axis = (y_title, x_title) if horizontal else (x_title, y_title)
    layout = _layout(title, x_axis, y_axis, height=height, barmode="group", hovermode="closest")
    value_axis = layout["xaxis"] if horizontal else layout["yaxis"]
    if log:
        value_axis["type"] = "log"
    if horizontal:
        layout["yaxis"]["autorange"] = "reversed"
    if reference is not None:
        line = {"color": "#333", "width": 1, "dash": "dot"}
        shape = (
            {"type": "line", "xref": "x", "yref": "paper", "x0": reference, "x1": reference,
             "y0": 0, "y1": 1, "line": line}
            if horizontal
            else {"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1,
                  "y0": reference, "y1": reference, "line": line}
        )  # fmt: skip
        layout["shapes"] = [shape]
        if reference_label:
            data.append(_legend_only(reference_label, "#333", dash="dot"))
    return Chart(cid, title, {"data": data, "layout": layout}, summary, height)


def calendar_chart(
    cid: str, title: str, rows: Sequence[dict[str, Any]], *, summary: str = ""
) -> Chart:
    """The downtime calendar: one row per session (``{"label", "day", "red_days",
    "swollen_days"}`` and optionally ``"down_days"``, the label naming the session and its day), a
    red bar for the days of visible redness, a blue one for the days of visible swelling and a grey
    one for the days on which any sign (redness, swelling or bruising) is visible after it."""
    labels = [clean_text(r["label"]) for r in rows]
    day = np.array([float(r["day"]) for r in rows])
    data = []
    longest = 0.0
    for key, name, colour in (
        ("red_days", "visible redness", "#d62728"),
        ("swollen_days", "visible swelling", "#1f77b4"),
        ("down_days", "any sign visible (downtime)", "#7f7f7f"),
    ):
        v = np.array([float(r.get(key, math.nan)) for r in rows])
        if key == "down_days" and not np.isfinite(v).any():
            continue  # a result from before the downtime output
        if np.isfinite(v).any():
            longest = max(longest, float(np.nanmax(v)))
        custom = [
            [format_number(x, 2), format_day(d + x) if math.isfinite(x) else "—"]
            for d, x in zip(day, v, strict=True)
        ]
        data.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": name,
                "y": labels,
                "x": _values(np.nan_to_num(v, nan=0.0)),
                "marker": {"color": rgba(colour, 0.8)},
                "customdata": custom,
                "hovertemplate": f"{name}: %{{customdata[0]}} d (until day %{{customdata[1]}} of "
                "the course)<extra>%{y}</extra>",
            }
        )
    height = max(220, 90 + 36 * len(rows))
    layout = _layout(
        title, "Days after the session (d)", "", height=height, barmode="group",
        hovermode="closest",
    )  # fmt: skip
    layout["yaxis"]["autorange"] = "reversed"
    layout["xaxis"]["range"] = [0, max(7.0, math.ceil(longest + 0.5))]
    layout["xaxis"]["dtick"] = 1
    return Chart(cid, title, {"data": data, "layout": layout}, summary, height)


# --------------------------------------------------------------------------- plans
def pareto_chart(
    cid: str,
    title: str,
    points: Sequence[dict[str, Any]],
    *,
    summary: str = "",
    height: int = 420,
) -> Chart:
    """The Pareto set: improvement score against total downtime, one colour per number of
    sessions; the recommended plan a large star. ``points``: ``{"index", "downtime", "score",
    "sessions", "label", "recommended"}``; a click on a point gives its ``index`` (customdata)."""
    data = []
    by_n: dict[int, list[dict[str, Any]]] = {}
    for p in points:
        by_n.setdefault(int(p["sessions"]), []).append(p)
    for j, (n, sub) in enumerate(sorted(by_n.items())):
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"{n} session{'s' if n > 1 else ''}",
                "x": _values([p["downtime"] for p in sub]),
                "y": _values([p["score"] for p in sub]),
                "customdata": [int(p["index"]) for p in sub],
                "text": [clean_text(p["label"]) for p in sub],
                "marker": {"size": 10, "color": PALETTE[j % len(PALETTE)],
                           "line": {"width": 1, "color": "#fff"}},
                "hovertemplate": "%{text}<br>total downtime %{x:.3g} d, score %{y:.3f}"
                "<extra>plan %{customdata}</extra>",
            }
        )  # fmt: skip
    rec = [p for p in points if p.get("recommended")]
    if rec:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "recommended",
                "x": _values([p["downtime"] for p in rec]),
                "y": _values([p["score"] for p in rec]),
                "customdata": [int(p["index"]) for p in rec],
                "text": [clean_text(p["label"]) for p in rec],
                "marker": {"symbol": "star", "size": 22, "color": "rgba(0,0,0,0)",
                           "line": {"width": 2, "color": "#c0143c"}},
                "hovertemplate": "recommended: %{text}<extra>plan %{customdata}</extra>",
            }
        )  # fmt: skip
    layout = _layout(
        title,
        "Total downtime over the course (d)",
        "Improvement score (1 = best in the search)",
        height=height,
        hovermode="closest",
    )
    return Chart(cid, title, {"data": data, "layout": layout}, summary, height)


# --------------------------------------------------------------------------- maps
def heatmap_chart(
    cid: str,
    title: str,
    x: Any,
    y: Any,
    z: Any,
    *,
    x_title: str,
    y_title: str,
    colour_title: str,
    log: bool = True,
    lines: Sequence[dict[str, Any]] = (),
    labels: Sequence[tuple[float, float, str]] = (),
    hlines: Sequence[float] = (),
    reverse_y: bool = True,
    summary: str = "",
    height: int = 440,
) -> Chart:
    """A colour map of ``z[y, x]`` on cell centres ``x``, ``y`` (log10 colour scale when ``log``;
    the colour bar shows the values), with outline ``lines`` (``{"name", "x", "y", "colour"}``),
    dashed horizontal boundaries ``hlines`` and text ``labels`` (x, y, text) on dark boxes,
    readable on every colour of the scale."""
    zz = np.asarray(z, dtype=float)
    hover_z = zz
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            top = float(np.nanmax(zz)) if np.isfinite(zz).any() else 1.0
            floor = max(top * 1e-5, 1e-30)
            zz = np.log10(np.maximum(zz, floor))
    z_rows = [_values(row) for row in zz]
    trace: dict[str, Any] = {
        "type": "heatmap",
        "x": _values(x),
        "y": _values(y),
        "z": z_rows,
        "colorscale": [[i / (len(MAGMA) - 1), c] for i, c in enumerate(MAGMA)],
        "colorbar": {"title": {"text": clean_text(colour_title), "side": "right"}},
        "customdata": [_values(row) for row in np.asarray(hover_z, dtype=float)],
        "hovertemplate": f"%{{x:.3g}}, %{{y:.3g}}: %{{customdata:.3g}}<extra>{clean_text(colour_title)}</extra>",
    }
    if log and np.isfinite(zz).any():
        lo, hi = float(np.nanmin(zz)), float(np.nanmax(zz))
        steps = (1.0,) if hi - lo >= 3 else (1.0, 2.0, 5.0)  # a short range: 1-2-5 ticks
        ticks = [math.log10(m) + e for e in range(math.floor(lo), math.ceil(hi) + 1)
                 for m in steps if lo - 1e-9 <= math.log10(m) + e <= hi + 1e-9]  # fmt: skip
        trace["colorbar"]["tickvals"] = ticks
        trace["colorbar"]["ticktext"] = [f"{10.0**t:.0e}" if t < -2.5 or t > 3.5
                                         else f"{10.0**t:.3g}" for t in ticks]  # fmt: skip
    data = [trace]
    for ln in lines:
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": clean_text(ln["name"]),
                "x": _values(ln["x"]),
                "y": _values(ln["y"]),
                "line": {"color": ln.get("colour", "#00e5ff"), "width": 2},
                "hoverinfo": "skip",
            }
        )
    shapes = [
        {"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": float(h),
         "y1": float(h), "line": {"color": "#ffffff", "width": 1, "dash": "dash"}}
        for h in hlines
    ]  # fmt: skip
    layout = _layout(title, x_title, y_title, height=height, hovermode="closest", shapes=shapes)
    layout["annotations"] += [
        {"x": float(lx), "y": float(ly), "text": clean_text(t), "showarrow": False,
         "xanchor": "left", "yanchor": "top", "font": {"color": "#ffffff", "size": 11},
         "bgcolor": "rgba(0,0,0,0.65)", "borderpad": 2}
        for lx, ly, t in labels
    ]  # fmt: skip
    if reverse_y:
        layout["yaxis"]["autorange"] = "reversed"
    return Chart(cid, title, {"data": data, "layout": layout}, summary, height)


# --------------------------------------------------------------------------- distributions
def histogram_chart(
    cid: str,
    title: str,
    groups: Sequence[tuple[str, Any]],
    *,
    x_title: str,
    threshold: float | None = None,
    threshold_label: str = "responder threshold",
    summary: str = "",
    height: int = 340,
) -> Chart:
    """Overlaid probability-density histograms, one per group (``(name, values)``), on common
    bins, with an optional dotted threshold."""
    arrays = [np.asarray(v, dtype=float) for _, v in groups]
    arrays = [a[np.isfinite(a)] for a in arrays]
    allv = np.concatenate(arrays) if arrays else np.array([])
    data = []
    if allv.size:
        lo, hi = float(allv.min()), float(allv.max())
        size = (hi - lo) / 30 if hi > lo else 1.0
        for i, ((name, _), a) in enumerate(zip(groups, arrays, strict=True)):
            data.append(
                {
                    "type": "histogram",
                    "name": clean_text(name),
                    "x": _values(a),
                    "histnorm": "probability density",
                    "xbins": {"start": lo, "end": hi + size * 1e-6, "size": size},
                    "opacity": 0.55,
                    "marker": {"color": PALETTE[i % len(PALETTE)]},
                }
            )
    layout = _layout(
        title, x_title, "Probability density", height=height, barmode="overlay", hovermode="closest"
    )
    if threshold is not None:
        layout["shapes"] = [
            {"type": "line", "xref": "x", "yref": "paper", "x0": float(threshold),
             "x1": float(threshold), "y0": 0, "y1": 1,
             "line": {"color": "#111", "width": 1.2, "dash": "dot"}}
        ]  # fmt: skip
        data.append(_legend_only(threshold_label, "#111", dash="dot"))
    return Chart(cid, title, {"data": data, "layout": layout}, summary, height)


# --------------------------------------------------------------------------- studies
def sobol_chart(
    cid: str,
    title: str,
    parameters: Sequence[str],
    first: Any,
    total: Any,
    first_conf: Any,
    total_conf: Any,
    *,
    summary: str = "",
) -> Chart:
    """Sobol indices of one end point as horizontal bars (total and first order, 95% CI bars),
    parameters in the given order (largest total index first)."""
    f, t = np.asarray(first, dtype=float), np.asarray(total, dtype=float)
    fc, tc = np.asarray(first_conf, dtype=float), np.asarray(total_conf, dtype=float)
    groups = [
        {"name": "total (ST)", "values": t, "low": t - tc, "high": t + tc, "colour": PALETTE[3]},
        {"name": "first order (S1)", "values": f, "low": f - fc, "high": f + fc,
         "colour": PALETTE[0]},
    ]  # fmt: skip
    return bar_chart(
        cid,
        title,
        list(parameters),
        groups,
        x_title="Sobol index (share of the output variance)",
        y_title="",
        horizontal=True,
        reference=0.0,
        summary=summary,
        height=max(260, 90 + 30 * len(parameters)),
    )


def validation_chart(
    cid: str, title: str, rows: Sequence[dict[str, Any]], *, limit: float = 4.0
) -> Chart | None:
    """The validation chart: for each evaluated literature row (``{"key", "status", "observed",
    "tolerance", "predicted", "low", "high"}``), the model's prediction and its interval as
    (model − observed) / tolerance, clipped at ±``limit``; within ±1 passes. ``None`` when no row
    was evaluated."""
    ev = [r for r in rows if r.get("status") != "not evaluated"]
    if not ev:
        return None

    def scaled(v: Any, obs: float, tol: float) -> float:
        if isinstance(v, str):
            return limit if v == "inf" else -limit if v == "-inf" else math.nan
        x = _finite(v)
        return math.nan if x is None else max(-limit, min(limit, (x - obs) / tol))

    data = []
    for status, colour in (("pass", "#2a9d5c"), ("fail", "#c8323c")):
        sub = [r for r in ev if (r.get("status") == "pass") == (status == "pass")]
        if not sub:
            continue
        p, lo, hi = [], [], []
        for r in sub:
            obs = float(r["observed"])
            tol = float(r.get("tolerance") or 1.0)
            v, a, b = (scaled(r.get(k), obs, tol) for k in ("predicted", "low", "high"))
            p.append(v)
            lo.append(v - a if math.isfinite(a) and math.isfinite(v) else math.nan)
            hi.append(b - v if math.isfinite(b) and math.isfinite(v) else math.nan)
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "within tolerance" if status == "pass" else "outside tolerance",
                "x": _values(p),
                "y": [clean_text(r["key"]) for r in sub],
                "marker": {"color": colour, "size": 9},
                "error_x": {"type": "data", "symmetric": False, "array": _values(hi),
                            "arrayminus": _values(lo), "color": rgba(colour, 0.5),
                            "thickness": 3, "width": 0},
                "hovertemplate": "%{y}: model %{x:+.2f} tolerances from observed<extra></extra>",
            }
        )  # fmt: skip
    shapes = [
        {"type": "line", "xref": "x", "yref": "paper", "x0": k, "x1": k, "y0": 0, "y1": 1,
         "line": {"color": "#9aa1ad", "width": 1, "dash": "dash" if k else "solid"}}
        for k in (-1, 0, 1)
    ]  # fmt: skip
    height = max(280, 90 + 22 * len(ev))
    layout = _layout(
        title,
        f"(model − observed) / tolerance (clipped at ±{limit:g})",
        "",
        height=height,
        hovermode="closest",
        shapes=shapes,
    )
    layout["xaxis"]["range"] = [-limit - 0.3, limit + 0.3]
    layout["yaxis"]["autorange"] = "reversed"
    layout["yaxis"]["type"] = "category"
    n_pass = sum(r.get("status") == "pass" for r in ev)
    summary = f"{n_pass} of {len(ev)} evaluated rows within their tolerance."
    return Chart(cid, title, {"data": data, "layout": layout}, summary, height)


# --------------------------------------------------------------------------- the page side
def _safe_json(obj: Any) -> str:
    """JSON that can sit inside a <script> element (no '<', '>' or '&' characters)."""
    text = json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@functools.cache
def _script() -> str:
    return (Path(__file__).parent / "templates" / "charts.js").read_text(encoding="utf-8")


def context(charts: Iterable[Chart | None], *, library_url: str | None = None) -> dict[str, Any]:
    """Template variables of a page with charts: ``charts_json`` (every figure), ``charts_js``
    (the drawing script) and where the library comes from: ``plotly_src`` (a URL, for the web
    pages) or, when ``library_url`` is None, :data:`LIBRARY_PLACEHOLDER` (replace it with
    :func:`embed_library` after rendering)."""
    figures = {c.id: c.figure for c in charts if c is not None}
    return {
        "charts_json": Markup(_safe_json(figures)) if figures else "",
        "charts_js": Markup(_script()),
        "plotly_src": library_url or "",
        "plotly_placeholder": Markup(LIBRARY_PLACEHOLDER),
    }


def dumps(charts: Iterable[Chart]) -> str:
    """Charts as one JSON document (``{"charts": [...]}``, NaN written as null by the builders)."""
    return json.dumps({"charts": [c.to_dict() for c in charts]}, allow_nan=False)


def loads(text: str) -> list[Chart]:
    """The charts of a :func:`dumps` document; anything else raises ``ValueError``."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("charts"), list):
        raise ValueError("charts: expected a JSON object with a 'charts' list")
    return [Chart.from_dict(c) for c in data["charts"]]


def plotly_js_path() -> Path:
    """``plotly.min.js`` as the ``plotly`` Python package ships it (the package is not imported)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:  # pragma: no cover - plotly is a dependency
        raise RuntimeError("the plotly package is not installed (pip install plotly)")
    return Path(spec.origin).parent / "package_data" / "plotly.min.js"


@functools.cache
def plotly_js() -> str:
    """The text of the library (read once per process)."""
    return plotly_js_path().read_text(encoding="utf-8")


@functools.cache
def plotly_js_bytes() -> bytes:
    """:func:`plotly_js` as UTF-8 bytes, read without decoding and encoding again the 4.8 MB of a
    file that is valid UTF-8 and has no carriage return (the shipped one; read once per process).
    A file with carriage returns gets :func:`plotly_js`'s line ends (``\\n``)."""
    raw = plotly_js_path().read_bytes()
    if b"\r" in raw:
        return plotly_js().encode("utf-8")
    raw.decode("utf-8")  # a file that is not UTF-8 fails as plotly_js() does
    return raw


@functools.cache
def plotly_version() -> str:
    """The library's version, from its header (``plotly.js v4.1.1``)."""
    head = plotly_js()[:200]
    start = head.find("plotly.js v")
    if start < 0:  # pragma: no cover - the shipped file has its header
        return "unknown"
    return head[start + len("plotly.js v") :].split()[0]


def embed_library(html: str) -> str:
    """``html`` with the library inlined in place of :data:`LIBRARY_PLACEHOLDER` (a report that
    opens offline); unchanged when the page has no chart."""
    if LIBRARY_PLACEHOLDER not in html:
        return html
    return html.replace(LIBRARY_PLACEHOLDER, "<script>" + plotly_js() + "</script>", 1)


def embed_library_bytes(html: str) -> bytes:
    """``embed_library(html).encode("utf-8")``, byte for byte, for a writer: the page is encoded
    around :func:`plotly_js_bytes` instead of being built and encoded as one 5 MB string (the
    library is not ASCII: ~50 ms of a report written that way)."""
    head, placeholder, tail = html.partition(LIBRARY_PLACEHOLDER)
    if not placeholder:
        return html.encode("utf-8")
    parts = (
        head.encode("utf-8"),
        b"<script>",
        plotly_js_bytes(),
        b"</script>",
        tail.encode("utf-8"),
    )
    return b"".join(parts)

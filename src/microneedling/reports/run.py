"""Figures (PNG, matplotlib/Agg) and a self-contained HTML report of a :class:`~microneedling.result.Result`.

Everything here reads the Dataset layout documented in :mod:`microneedling.result`; nothing runs the
model. Output is deterministic (same Result → same bytes) apart from what the Result itself holds
(its ``created`` attribute). Heavy libraries (numpy, matplotlib) are imported inside functions so
that importing this module is cheap.

>>> from microneedling.report import write_figures, write_html_report   # doctest: +SKIP
>>> figs = write_figures(result, "runs/acne/figures")                    # doctest: +SKIP
>>> write_html_report(result, "runs/acne", figs)                         # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import json
import math
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from microneedling.about import DISCLAIMER, __version__
from microneedling.engine import variables
from microneedling.engine.result import Result
from microneedling.engine.variables import time_variables
from microneedling.errors import InputError
from microneedling.io import atomic_path, write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from microneedling.engine.result import Result
    from microneedling.parameters.parameter_set import ParameterSet

__all__ = [
    "FIGURE_FOOTER",
    "format_interval",
    "format_number",
    "plot_variable",
    "pretty_units",
    "reference_usage",
    "render_html",
    "write_figures",
    "write_html_report",
]

FIGURE_FOOTER = "Model estimate — not medical advice"

#: Layer shown for layer-resolved variables when a single trajectory per site is drawn.
DEFAULT_LAYER = "papillary_dermis"




#: Colour cycle (matplotlib "tab10"), used by both the PNGs and the HTML charts.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

_FIGURE_CAPTIONS = {
    "collagen_elastin": "Collagen (I+III) and elastin change by dermal layer; dashed lines mark sessions.",
    "claims": "Clinical observables behind the usual claims, per site (papillary layer where layered).",
    "downtime": "Redness and swelling over the first days after each session, with visibility thresholds.",
    "absorption": "Topical absorbed per session through the channels, and the gain over intact skin.",
}


# --------------------------------------------------------------------------- formatting
def format_number(x: Any, sig: int = 3) -> str:
    """A number with ``sig`` significant digits, without exponent for ordinary magnitudes.

    >>> format_number(1234.6), format_number(0.012345), format_number(float("nan"))
    ('1235', '0.0123', '—')
    """
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    if -4 <= mag < 6:
        decimals = max(sig - 1 - mag, 0)
        s = f"{v:.{decimals}f}"
        return "0" if float(s) == 0 else s
    return f"{v:.{sig - 1}e}"


def format_day(day: Any) -> str:
    """A day number: ``28`` for whole days, else one decimal (``86.4``).

    >>> format_day(28.0), format_day(86.43), format_day(float("nan"))
    ('28', '86.4', '—')
    """
    try:
        d = float(day)
    except (TypeError, ValueError):
        return str(day)
    if not math.isfinite(d):
        return "—"
    return str(round(d)) if abs(d - round(d)) < 5e-3 else f"{d:.1f}"


def format_interval(low: Any, high: Any, sig: int = 3) -> str:
    """``"lo–hi"`` (``"lo to hi"`` when a bound is negative), or ``""`` when one is missing.

    >>> format_interval(1, 2.5), format_interval(-13.8, 14.0)
    ('1.00–2.50', '-13.8 to 14.0')
    """
    try:
        lo, hi = float(low), float(high)
    except (TypeError, ValueError):
        return ""
    if math.isnan(lo) or math.isnan(hi):
        return ""
    sep = " to " if lo < 0 or hi < 0 else "–"  # "-13.8–14.0" would read as a range of negatives
    return f"{format_number(lo, sig)}{sep}{format_number(hi, sig)}"


_UNIT_RE = (
    (r"\bum\b", "µm"),
    (r"\bug\b", "µg"),
    (r"\^-1\b", "⁻¹"),
    (r"\^-2\b", "⁻²"),
    (r"\^-3\b", "⁻³"),
    (r"\^2\b", "²"),
    (r"\^3\b", "³"),
)


def pretty_units(units: str) -> str:
    """Units for people: ``um`` → µm, ``ug/cm^2`` → µg/cm², ``1`` → empty.

    >>> pretty_units("ug/cm^2"), pretty_units("cm^-2"), pretty_units("1")
    ('µg/cm²', 'cm⁻²', '')
    """
    import re

    u = str(units).strip()
    if u == "1":
        return ""
    for pat, rep in _UNIT_RE:
        u = re.sub(pat, rep, u)
    return u


def _e(x: Any) -> str:
    """HTML-escape any value (user text included)."""
    return html.escape(str(x), quote=True)


def _dataset(result: Result | xr.Dataset) -> xr.Dataset:
    return result.dataset if isinstance(result, Result) else result


def _result(result: Result | xr.Dataset) -> Result:
    return result if isinstance(result, Result) else Result(result)


def claim_variables() -> list[str]:
    """The observables behind the claims (figure "claims"), in table order."""
    return [v.name for v in variables.VARIABLES if v.figure == "claims"]


def session_columns() -> list[str]:
    """Per-session columns of the sessions table: what was done and reached, then outcomes."""
    return [
        v.name
        for v in variables.VARIABLES
        if v.kind in ("setting", "session") and not v.layered and v.name != "session_day"
    ]

def _has_data(da: xr.DataArray) -> bool:
    import numpy as np

    return bool(np.isfinite(np.asarray(da.values, dtype=float)).any())


def _units(da: xr.DataArray) -> str:
    return str(da.attrs.get("units", ""))


def _long_name(da: xr.DataArray, name: str) -> str:
    return str(da.attrs.get("long_name", name.replace("_", " ")))


def _axis_label(da: xr.DataArray, name: str) -> str:
    u = pretty_units(_units(da))
    return f"{_long_name(da, name)} ({u})" if u else _long_name(da, name)


def _time_units(ds: xr.Dataset) -> str:
    return str(ds["time"].attrs.get("units", "d")) if "time" in ds.coords else "d"


def _select(
    da: xr.DataArray, patient: int | str, site: str | None, layer: str | None
) -> xr.DataArray:
    if "patient" in da.dims:
        da = da.isel(patient=patient) if isinstance(patient, int) else da.sel(patient=patient)
    if site is not None and "site" in da.dims:
        da = da.sel(site=site)
    if layer is not None and "layer" in da.dims:
        da = da.sel(layer=layer)
    return da


def _bands(
    ds: xr.Dataset, variable: str, patient: int | str, site: str | None, layer: str | None
) -> tuple[np.ndarray, np.ndarray] | None:
    import numpy as np

    lo, hi = f"{variable}_low", f"{variable}_high"
    if lo not in ds or hi not in ds:
        return None
    a = np.asarray(_select(ds[lo], patient, site, layer).values, dtype=float)
    b = np.asarray(_select(ds[hi], patient, site, layer).values, dtype=float)
    if not (np.isfinite(a).any() and np.isfinite(b).any()):
        return None
    return np.minimum(a, b), np.maximum(a, b)


def _session_days(ds: xr.Dataset, patient: int | str = 0, site: str | None = None) -> list[float]:
    """Sorted distinct finite session days (of one site, or of every site)."""
    import numpy as np

    if "session_day" not in ds:
        return []
    days = np.asarray(_select(ds["session_day"], patient, site, None).values, dtype=float)
    return sorted({round(float(d), 9) for d in days.ravel() if np.isfinite(d)})


def _patient_label(ds: xr.Dataset, patient: int | str) -> str:
    if "patient" not in ds.coords:
        return ""
    if isinstance(patient, int):
        return str(ds["patient"].values[patient])
    return str(patient)


def _sites(ds: xr.Dataset) -> list[str]:
    return [str(s) for s in ds["site"].values] if "site" in ds.coords else []


def _time_variables(ds: xr.Dataset) -> list[str]:
    """Time-resolved observables (not the ``_low``/``_high`` bands), in display order."""
    names = [
        str(n)
        for n, da in ds.data_vars.items()
        if "time" in da.dims and not str(n).endswith(("_low", "_high"))
    ]
    order = {v.name: i for i, v in enumerate(time_variables())}
    return sorted(names, key=lambda n: (order.get(n, len(order)), names.index(n)))








def reference_usage(
    result: Result | xr.Dataset, parameters: ParameterSet | None = None
) -> dict[str, list[str]]:
    """For each reference key, the parameters of the run that cite it.

    Uses the run's own record when present (global attribute ``parameters``: JSON list of
    ``{"name", "sources", ...}``), else looks the run's ``parameters_used`` up in ``parameters``.
    Returns ``{}`` when neither is available.
    """
    res = _result(result)
    usage: dict[str, list[str]] = {}
    if res.records_parameters:
        for rec in res.parameters_used:
            for s in rec.sources:
                usage.setdefault(s, []).append(rec.name)
    elif parameters is not None:
        for name in res.parameter_names:
            if name in parameters.parameters:
                for s in parameters.parameters[name].sources:
                    usage.setdefault(s, []).append(str(name))
    return {k: sorted(v) for k, v in sorted(usage.items())}


# --------------------------------------------------------------------------- matplotlib
def _new_figure(width: float, height: float) -> Figure:
    """A pyplot-free Agg figure with the footer and room kept for it."""
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    fig = Figure(figsize=(width, height), dpi=100)
    foot = 0.3 / height
    fig.set_layout_engine(ConstrainedLayoutEngine(rect=(0.0, foot, 1.0, 1.0 - foot)))
    fig.text(
        0.5,
        0.08 / height,
        f"{FIGURE_FOOTER} · microneedling {__version__}",
        ha="center",
        va="bottom",
        fontsize=8,
        color="0.35",
    )
    return fig


def _wrap(text: str, width: int) -> str:
    """Break a long axis label or title over lines of at most ``width`` characters."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _mark_sessions(ax: Axes, days: Iterable[float], label: bool = True) -> None:
    for i, d in enumerate(days):
        ax.axvline(
            d,
            color="0.55",
            linestyle="--",
            linewidth=0.8,
            zorder=0,
            label="session" if (label and i == 0) else None,
        )


def plot_variable(
    result: Result | xr.Dataset,
    variable: str,
    ax: Axes | None = None,
    *,
    patient: int | str = 0,
    layer: str = DEFAULT_LAYER,
) -> Axes:
    """Trajectory of ``variable`` for each site, with its ensemble band and the sessions marked.

    Layer-resolved variables are shown for ``layer`` (papillary dermis by default). A per-session
    variable (no time axis) is drawn against the session days. Sites where the variable does not
    apply (all NaN) are left out. Returns the Axes (a new pyplot figure when ``ax`` is None).
    """
    import numpy as np

    ds = _dataset(result)
    if variable not in ds.data_vars:
        allowed = ", ".join(
            sorted(str(n) for n in ds.data_vars if not str(n).endswith(("_low", "_high")))
        )
        raise InputError("variable", variable, f"one of {allowed}")
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    da = ds[variable]
    lay = layer if "layer" in da.dims else None
    if lay is not None and lay not in [str(v) for v in ds["layer"].values]:
        raise InputError("layer", layer, f"one of {[str(v) for v in ds['layer'].values]}")
    per_session = "time" not in da.dims and "session" in da.dims
    plotted = 0
    banded = False
    for i, site in enumerate(_sites(ds)):
        y = np.asarray(_select(da, patient, site, lay).values, dtype=float)
        if not np.isfinite(y).any():
            continue
        color = PALETTE[i % len(PALETTE)]
        band = _bands(ds, variable, patient, site, lay)
        if per_session:
            x = np.asarray(_select(ds["session_day"], patient, site, None).values, dtype=float)
            keep = np.isfinite(x) & np.isfinite(y)
            yerr = None
            if band is not None:
                yerr = np.vstack([y - band[0], band[1] - y])[:, keep].clip(min=0)
            ax.errorbar(
                x[keep],
                y[keep],
                yerr=yerr,
                marker="o",
                color=color,
                label=site,
                capsize=3,
                linewidth=1.2,
            )
        else:
            t = np.asarray(ds["time"].values, dtype=float)
            ax.plot(t, y, color=color, label=site, linewidth=1.6)
            if band is not None:
                ax.fill_between(
                    t,
                    band[0],
                    band[1],
                    color=color,
                    alpha=0.18,
                    linewidth=0,
                    label="10–90% interval" if not banded else None,
                )
                banded = True
        plotted += 1
    _mark_sessions(ax, _session_days(ds, patient))
    title = _long_name(da, variable)
    if lay is not None:
        title += f", {lay.replace('_', ' ')}"
    if "patient" in ds.coords and ds.sizes.get("patient", 1) > 1:
        title += f" (patient {_patient_label(ds, patient)})"
    ax.set_title(_wrap(title, 48), fontsize=10)
    ax.set_xlabel("Session day (d)" if per_session else f"Time ({_time_units(ds)})")
    ax.set_ylabel(_wrap(_axis_label(da, variable), 34))
    if plotted == 0:
        ax.text(
            0.5,
            0.5,
            "not applicable to these sites",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
    else:
        ax.legend(fontsize=7, frameon=False, loc="best")
    ax.grid(True, alpha=0.25)
    return ax


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def _fig_collagen_elastin(ds: xr.Dataset, path: Path) -> Path | None:
    import numpy as np

    variables = [v for v in ("collagen_change", "elastin_change") if v in ds and _has_data(ds[v])]
    sites = _sites(ds)[:4]
    if not variables or not sites:
        return None
    fig = _new_figure(max(4.6 * len(sites), 7.0), 3.2 * len(variables) + 0.5)
    axes = fig.subplots(len(variables), len(sites), squeeze=False, sharex=True)
    t = np.asarray(ds["time"].values, dtype=float)
    layers = [str(v) for v in ds["layer"].values] if "layer" in ds.coords else [None]
    for r, var in enumerate(variables):
        da = ds[var]
        for c, site in enumerate(sites):
            ax = axes[r][c]
            for k, lay in enumerate(layers):
                use = lay if "layer" in da.dims else None
                y = np.asarray(_select(da, 0, site, use).values, dtype=float)
                if not np.isfinite(y).any():
                    continue
                color = PALETTE[k % len(PALETTE)]
                label = (lay or var).replace("_", " ")
                ax.plot(t, y, color=color, linewidth=1.5, label=label)
                band = _bands(ds, var, 0, site, use)
                if band is not None:
                    ax.fill_between(t, band[0], band[1], color=color, alpha=0.18, linewidth=0)
                if use is None:
                    break
            _mark_sessions(ax, _session_days(ds, 0, site), label=False)
            ax.axhline(0.0, color="0.3", linewidth=0.6)
            ax.set_title(_wrap(f"{_long_name(da, var)} — {site}", 48), fontsize=10)
            ax.set_ylabel(_wrap(_axis_label(da, var), 34))
            ax.grid(True, alpha=0.25)
            if r == len(variables) - 1:
                ax.set_xlabel(f"Time ({_time_units(ds)})")
            if c == 0:
                ax.legend(fontsize=7, frameon=False, loc="best")
    return _save(fig, path)


def _fig_claims(ds: xr.Dataset, path: Path) -> Path | None:
    variables = [v for v in claim_variables() if v in ds and _has_data(ds[v])]
    if not variables:
        return None
    ncols = min(3, len(variables))
    nrows = math.ceil(len(variables) / ncols)
    fig = _new_figure(4.3 * ncols, 3.0 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, var in zip(flat, variables, strict=False):
        plot_variable(ds, var, ax=ax)
    for ax in flat[len(variables) :]:
        ax.set_visible(False)
    return _save(fig, path)


def _fig_downtime(ds: xr.Dataset, path: Path, window_days: float = 7.0) -> Path | None:
    import numpy as np

    variables = [v for v in ("erythema", "oedema") if v in ds and _has_data(ds[v])]
    if not variables or "session_day" not in ds:
        return None
    t = np.asarray(ds["time"].values, dtype=float)
    styles = ("-", "--", ":", "-.")
    fig = _new_figure(5.0 * len(variables), 3.8)
    axes = fig.subplots(1, len(variables), squeeze=False)[0]
    for ax, var in zip(axes, variables, strict=True):
        da = ds[var]
        for j, site in enumerate(_sites(ds)):
            days = _session_days(ds, 0, site)
            y = np.asarray(_select(da, 0, site, None).values, dtype=float)
            if not np.isfinite(y).any():
                continue
            for k, d in enumerate(days):
                end = min(d + window_days, days[k + 1] if k + 1 < len(days) else math.inf)
                m = (t >= d - 1e-9) & (t <= end + 1e-9)
                if m.sum() < 2:
                    continue
                ax.plot(
                    t[m] - d,
                    y[m],
                    color=PALETTE[k % len(PALETTE)],
                    linestyle=styles[j % len(styles)],
                    linewidth=1.4,
                    label=f"{site}, session {k + 1}",
                )
        thr = Result(ds).threshold(var)
        if thr is not None:
            ax.axhline(thr, color="0.2", linestyle=":", linewidth=1.0, label="visibility threshold")
        ax.set_xlim(0, window_days)
        ax.set_xlabel("Days after session")
        ax.set_ylabel(_wrap(_axis_label(da, var), 34))
        ax.set_title(_wrap(f"{_long_name(da, var)} after each session", 52), fontsize=10)
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=7, frameon=False, loc="upper right")
    return _save(fig, path)


def _fig_absorption(ds: xr.Dataset, path: Path) -> Path | None:
    import numpy as np

    if "absorbed_amount" not in ds:
        return None
    amount = np.asarray(ds["absorbed_amount"].values, dtype=float)
    if not (np.isfinite(amount) & (amount != 0)).any():  # no topical in this course
        return None
    panels = ["absorbed_amount"]
    if "enhancement_ratio" in ds and _has_data(ds["enhancement_ratio"]):
        panels.append("enhancement_ratio")
    sites = _sites(ds)
    n_sess = ds.sizes.get("session", 1)
    fig = _new_figure(5.0 * len(panels), 3.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    width = 0.8 / max(len(sites), 1)
    x0 = np.arange(1, n_sess + 1, dtype=float)
    for ax, var in zip(axes, panels, strict=True):
        da = ds[var]
        for j, site in enumerate(sites):
            y = np.asarray(_select(da, 0, site, None).values, dtype=float)
            if not np.isfinite(y).any():
                continue
            x = x0 - 0.4 + width * (j + 0.5)
            band = _bands(ds, var, 0, site, None)
            yerr = None
            if band is not None:
                yerr = np.nan_to_num(np.vstack([y - band[0], band[1] - y]).clip(min=0))
            ax.bar(
                x,
                np.nan_to_num(y),
                width=width * 0.95,
                color=PALETTE[j % len(PALETTE)],
                yerr=yerr,
                capsize=3,
                label=site,
            )
            if var == "absorbed_amount" and "absorbed_intact" in ds:
                yi = np.asarray(_select(ds["absorbed_intact"], 0, site, None).values, dtype=float)
                if np.isfinite(yi).any():
                    ax.plot(
                        x,
                        yi,
                        linestyle="none",
                        marker="_",
                        markersize=14,
                        color="k",
                        label="intact skin" if j == 0 else None,
                    )
        if var == "enhancement_ratio":
            ax.axhline(1.0, color="0.3", linewidth=0.7)
        ax.set_xticks(x0, [str(int(i)) for i in x0])
        ax.set_xlabel("Session")
        ax.set_ylabel(_wrap(_axis_label(da, var), 34))
        ax.set_title(_wrap(_long_name(da, var), 52), fontsize=10)
        ax.grid(True, axis="y", alpha=0.25)
        ax.legend(fontsize=7, frameon=False)
    return _save(fig, path)


def write_figures(result: Result | xr.Dataset, out_dir: str | Path) -> list[Path]:
    """Write the standard PNG figures into ``out_dir``; returns the paths written, in order.

    ``collagen_elastin.png`` (by layer and site), ``claims.png`` (the observables that apply),
    ``downtime.png`` (redness/swelling after each session) and ``absorption.png`` (when a topical
    was applied). A figure whose variables are all NaN or absent is skipped. Each carries the
    footer "Model estimate — not medical advice". Patient 0 is shown when there are several.
    """
    ds = _dataset(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    makers = (
        ("collagen_elastin", _fig_collagen_elastin),
        ("claims", _fig_claims),
        ("downtime", _fig_downtime),
        ("absorption", _fig_absorption),
    )
    written: list[Path] = []
    for stem, make in makers:
        p = make(ds, out / f"{stem}.png")
        if p is not None:
            written.append(p)
    return written


# --------------------------------------------------------------------------- interactive SVG
def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + 1e-9 * step:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return ticks


def _decimate(t: np.ndarray, ys: Sequence[np.ndarray], max_points: int = 600) -> np.ndarray:
    """Indices to keep so that no series loses its extremes: min and max of each bucket."""
    import numpy as np

    n = len(t)
    if n <= max_points:
        return np.arange(n)
    buckets = np.array_split(np.arange(n), max_points // 2)
    keep = {0, n - 1}
    for b in buckets:
        keep.add(int(b[0]))
        for y in ys:
            seg = y[b]
            if np.isfinite(seg).any():
                keep.add(int(b[np.nanargmin(seg)]))
                keep.add(int(b[np.nanargmax(seg)]))
    return np.array(sorted(keep))


def _round(v: float) -> float | None:
    return float(f"{v:.5g}") if math.isfinite(v) else None


class _Chart:
    """Geometry of one SVG chart (viewBox units)."""

    W, H, L, R, T, B = 760.0, 270.0, 70.0, 14.0, 12.0, 40.0

    def __init__(self, x0: float, x1: float, y0: float, y1: float) -> None:
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1.0)
        self.y0, self.y1 = y0, (y1 if y1 > y0 else y0 + 1.0)

    def sx(self, x: float) -> float:
        return self.L + (x - self.x0) / (self.x1 - self.x0) * (self.W - self.L - self.R)

    def sy(self, y: float) -> float:
        return self.H - self.B - (y - self.y0) / (self.y1 - self.y0) * (self.H - self.T - self.B)


def _segments(t: np.ndarray, *ys: np.ndarray) -> list[np.ndarray]:
    """Index runs where every ``y`` is finite."""
    import numpy as np

    ok = np.ones(len(t), dtype=bool)
    for y in ys:
        ok &= np.isfinite(y)
    runs: list[np.ndarray] = []
    idx = np.flatnonzero(ok)
    if idx.size:
        breaks = np.flatnonzero(np.diff(idx) > 1) + 1
        runs = [r for r in np.split(idx, breaks) if r.size]
    return runs


def _svg_chart(
    cid: str,
    title: str,
    ylabel: str,
    xlabel: str,
    t: np.ndarray,
    series: list[dict[str, Any]],
    sessions: list[float],
) -> tuple[str, _Chart]:
    import numpy as np

    vals = [s["v"] for s in series] + [s["lo"] for s in series if s["lo"] is not None]
    vals += [s["hi"] for s in series if s["hi"] is not None]
    allv = np.concatenate([v[np.isfinite(v)] for v in vals]) if vals else np.array([0.0])
    lo, hi = (float(allv.min()), float(allv.max())) if allv.size else (0.0, 1.0)
    pad = 0.06 * (hi - lo) if hi > lo else (abs(hi) * 0.1 or 1.0)
    yt = _nice_ticks(lo - pad, hi + pad)
    ch = _Chart(float(t[0]), float(t[-1]), min(lo - pad, yt[0]), max(hi + pad, yt[-1]))
    xt = _nice_ticks(ch.x0, ch.x1, 8)
    f = "{:.1f}".format
    parts = [
        f'<svg class="mn-chart" id="{cid}" viewBox="0 0 {ch.W:g} {ch.H:g}" role="img" '
        f'aria-label="{_e(title)}" data-chart="{cid}">',
        f"<title>{_e(title)}</title>",
        f'<rect class="plot" x="{ch.L:g}" y="{ch.T:g}" width="{ch.W - ch.L - ch.R:g}" '
        f'height="{ch.H - ch.T - ch.B:g}"/>',
    ]
    for y in yt:
        if ch.y0 <= y <= ch.y1:
            parts.append(
                f'<line class="grid" x1="{ch.L:g}" x2="{ch.W - ch.R:g}" y1="{f(ch.sy(y))}" '
                f'y2="{f(ch.sy(y))}"/><text class="tick" x="{ch.L - 6:g}" y="{f(ch.sy(y) + 4)}" '
                f'text-anchor="end">{_e(format_number(y))}</text>'
            )
    for x in xt:
        if ch.x0 <= x <= ch.x1:
            parts.append(
                f'<text class="tick" x="{f(ch.sx(x))}" y="{ch.H - ch.B + 16:g}" '
                f'text-anchor="middle">{_e(format_number(x))}</text>'
            )
    for k, d in enumerate(sessions):
        if ch.x0 <= d <= ch.x1:
            parts.append(
                f'<line class="session" x1="{f(ch.sx(d))}" x2="{f(ch.sx(d))}" y1="{ch.T:g}" '
                f'y2="{ch.H - ch.B:g}"><title>session {k + 1}, day {_e(format_day(d))}'
                f"</title></line>"
            )
    if ch.y0 < 0 < ch.y1:
        parts.append(
            f'<line class="zero" x1="{ch.L:g}" x2="{ch.W - ch.R:g}" y1="{f(ch.sy(0))}" '
            f'y2="{f(ch.sy(0))}"/>'
        )
    for s in series:
        if s["lo"] is not None and s["hi"] is not None:
            for run in _segments(t, s["lo"], s["hi"]):
                up = " ".join(f"{f(ch.sx(t[i]))},{f(ch.sy(s['hi'][i]))}" for i in run)
                dn = " ".join(f"{f(ch.sx(t[i]))},{f(ch.sy(s['lo'][i]))}" for i in run[::-1])
                parts.append(f'<polygon class="band" fill="{s["color"]}" points="{up} {dn}"/>')
    for s in series:
        for run in _segments(t, s["v"]):
            pts = " ".join(f"{f(ch.sx(t[i]))},{f(ch.sy(s['v'][i]))}" for i in run)
            parts.append(f'<polyline class="line" stroke="{s["color"]}" points="{pts}"/>')
    parts.append(
        f'<text class="label" x="{(ch.L + ch.W - ch.R) / 2:g}" y="{ch.H - 6:g}" '
        f'text-anchor="middle">{_e(xlabel)}</text>'
        f'<text class="label" transform="translate(14 {(ch.T + ch.H - ch.B) / 2:g}) rotate(-90)" '
        f'text-anchor="middle">{_e(ylabel)}</text>'
        f'<line class="guide" x1="0" x2="0" y1="{ch.T:g}" y2="{ch.H - ch.B:g}" visibility="hidden"/>'
    )
    parts.append("</svg>")
    return "".join(parts), ch


def _trajectory_charts(ds: xr.Dataset, layer: str = DEFAULT_LAYER) -> tuple[str, dict[str, Any]]:
    """HTML of every non-empty trajectory chart, and the JSON the hover script reads."""
    import numpy as np

    t_full = np.asarray(ds["time"].values, dtype=float)
    tu = _time_units(ds)
    npat = ds.sizes.get("patient", 1) if "patient" in ds.dims else 1
    sessions = _session_days(ds)
    blocks: list[str] = []
    data: dict[str, Any] = {}
    for var in _time_variables(ds):
        da = ds[var]
        lay = layer if "layer" in da.dims else None
        raw: list[dict[str, Any]] = []
        for p in range(npat):
            for j, site in enumerate(_sites(ds)):
                v = np.asarray(_select(da, p, site, lay).values, dtype=float)
                if not np.isfinite(v).any():
                    continue
                band = _bands(ds, var, p, site, lay)
                name = site if npat == 1 else f"{_patient_label(ds, p)} · {site}"
                raw.append(
                    {
                        "name": name,
                        "color": PALETTE[(p * len(_sites(ds)) + j) % len(PALETTE)],
                        "v": v,
                        "lo": band[0] if band else None,
                        "hi": band[1] if band else None,
                    }
                )
        if not raw:
            continue
        keep = _decimate(t_full, [s["v"] for s in raw])
        t = t_full[keep]
        series = [
            {
                **s,
                "v": s["v"][keep],
                "lo": None if s["lo"] is None else s["lo"][keep],
                "hi": None if s["hi"] is None else s["hi"][keep],
            }
            for s in raw
        ]
        cid = f"chart-{var}"
        title = _long_name(da, var) + (f", {lay.replace('_', ' ')}" if lay else "")
        svg, ch = _svg_chart(cid, title, _axis_label(da, var), f"Time ({tu})", t, series, sessions)
        legend = "".join(
            f'<span class="key"><i style="background:{s["color"]}"></i>{_e(s["name"])}</span>'
            for s in series
        )
        if any(s["lo"] is not None for s in series):
            legend += '<span class="key"><i class="bandkey"></i>10–90% interval</span>'
        legend += '<span class="key"><i class="sesskey"></i>session</span>'
        blocks.append(
            f'<figure class="chart"><figcaption>{_e(title)}</figcaption>'
            f'<div class="chartbox">{svg}<div class="tip" hidden></div></div>'
            f'<div class="legend">{legend}</div></figure>'
        )
        data[cid] = {
            "units": pretty_units(_units(da)),
            "tunits": tu,
            "x0": ch.x0,
            "x1": ch.x1,
            "y0": ch.y0,
            "y1": ch.y1,
            "geom": [ch.W, ch.H, ch.L, ch.R, ch.T, ch.B],
            "t": [_round(x) for x in t],
            "series": [
                {
                    "name": s["name"],
                    "color": s["color"],
                    "v": [_round(x) for x in s["v"]],
                    "lo": None if s["lo"] is None else [_round(x) for x in s["lo"]],
                    "hi": None if s["hi"] is None else [_round(x) for x in s["hi"]],
                }
                for s in series
            ],
        }
    return "".join(blocks), data


# --------------------------------------------------------------------------- HTML
_CSS = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#d8dce4;--accent:#1f5fa8;--warn:#8a5300;--bg:#fff}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);
background:#f4f6f9;margin:0}
main{max-width:1040px;margin:0 auto;padding:0 20px 40px;background:var(--bg)}
h1{font-size:1.6em;margin:.6em 0 .1em}h2{font-size:1.2em;margin:1.8em 0 .5em;border-bottom:1px solid var(--line);
padding-bottom:.2em}h3{font-size:1em;margin:1.2em 0 .4em}
.sub{color:var(--muted);margin:0 0 1em}
.disclaimer{background:#fff4e0;border:2px solid #e0a030;border-radius:6px;padding:10px 14px;margin:16px 0;
font-weight:600}
.disclaimer::before{content:"\\26A0\\FE0F  "}
table{border-collapse:collapse;width:100%;margin:.4em 0 1em;font-size:.9em}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.group td{background:#f7f8fb;font-weight:600}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:.4em 0}
dl.kv dt{color:var(--muted)}dl.kv dd{margin:0}
ul.warnings li{color:var(--warn)}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid var(--line)}
figcaption{font-weight:600;margin-bottom:4px}
.chartbox{position:relative}
svg.mn-chart{width:100%;height:auto;display:block;font-size:11px}
svg .plot{fill:#fff;stroke:#aab1bd}svg .grid{stroke:#eceef2}svg .zero{stroke:#888;stroke-width:.8}
svg .tick{fill:#5b6475}svg .label{fill:#1d2330;font-size:12px}
svg .line{fill:none;stroke-width:1.8}svg .band{opacity:.18;stroke:none}
svg .session{stroke:#888;stroke-dasharray:4 3;stroke-width:1}svg .guide{stroke:#333;stroke-width:.8}
.tip{position:absolute;pointer-events:none;background:rgba(255,255,255,.96);border:1px solid #aab1bd;
border-radius:4px;padding:4px 8px;font-size:12px;white-space:nowrap;box-shadow:0 1px 4px rgba(0,0,0,.15)}
.legend{font-size:.85em;color:var(--muted)}
.key{margin-right:14px;white-space:nowrap}.key i{display:inline-block;width:14px;height:3px;vertical-align:middle;
margin-right:5px}.key i.bandkey{height:10px;background:#1f77b4;opacity:.25}
.key i.sesskey{border-top:2px dashed #888;height:0}
pre{background:#f6f8fa;border:1px solid var(--line);padding:10px;overflow:auto;font-size:.85em}
ol.refs li{margin-bottom:.4em}.muted{color:var(--muted)}
footer{margin-top:2em}
@media print{body{background:#fff}.tip{display:none}}
"""

_JS = r"""
(function(){
  var data = JSON.parse(document.getElementById('mn-chart-data').textContent);
  function fmt(v){
    if (v === null || v === undefined) return '\u2014';
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
    return Number(v.toPrecision(3)).toString();
  }
  Object.keys(data).forEach(function(cid){
    var d = data[cid], svg = document.getElementById(cid);
    if (!svg) return;
    var box = svg.parentNode, tip = box.querySelector('.tip');
    var guide = svg.querySelector('.guide');
    var g = d.geom, W = g[0], H = g[1], L = g[2], R = g[3], T = g[4], B = g[5];
    var ns = 'http://www.w3.org/2000/svg', dots = [];
    d.series.forEach(function(s){
      var c = document.createElementNS(ns, 'circle');
      c.setAttribute('r', 3.5); c.setAttribute('fill', s.color);
      c.setAttribute('visibility', 'hidden'); svg.appendChild(c); dots.push(c);
    });
    function sx(x){ return L + (x - d.x0) / (d.x1 - d.x0) * (W - L - R); }
    function sy(y){ return H - B - (y - d.y0) / (d.y1 - d.y0) * (H - T - B); }
    function hide(){ tip.hidden = true; guide.setAttribute('visibility', 'hidden');
      dots.forEach(function(c){ c.setAttribute('visibility', 'hidden'); }); }
    function show(ev){
      var m = svg.getScreenCTM(); if (!m) return;
      var pt = svg.createSVGPoint(); pt.x = ev.clientX; pt.y = ev.clientY;
      var p = pt.matrixTransform(m.inverse());
      if (p.x < L || p.x > W - R) { hide(); return; }
      var x = d.x0 + (p.x - L) / (W - L - R) * (d.x1 - d.x0);
      var lo = 0, hi = d.t.length - 1;
      while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (d.t[mid] < x) lo = mid; else hi = mid; }
      var i = (Math.abs(d.t[hi] - x) < Math.abs(d.t[lo] - x)) ? hi : lo;
      var gx = sx(d.t[i]);
      guide.setAttribute('x1', gx); guide.setAttribute('x2', gx);
      guide.setAttribute('visibility', 'visible');
      tip.textContent = '';
      var head = document.createElement('div');
      head.textContent = 'day ' + fmt(d.t[i]);
      head.style.fontWeight = '600'; tip.appendChild(head);
      d.series.forEach(function(s, k){
        var v = s.v[i], row = document.createElement('div');
        var txt = s.name + ': ' + fmt(v);
        if (s.lo && s.hi && s.lo[i] !== null && s.hi[i] !== null)
          txt += ' [' + fmt(s.lo[i]) + '\u2013' + fmt(s.hi[i]) + ']';
        if (d.units) txt += ' ' + d.units;
        row.textContent = txt; row.style.color = s.color; tip.appendChild(row);
        if (v === null) { dots[k].setAttribute('visibility', 'hidden'); }
        else { dots[k].setAttribute('cx', gx); dots[k].setAttribute('cy', sy(v));
               dots[k].setAttribute('visibility', 'visible'); }
      });
      tip.hidden = false;
      var rect = box.getBoundingClientRect();
      var left = ev.clientX - rect.left + 14, top = ev.clientY - rect.top + 10;
      if (left + tip.offsetWidth > rect.width) left = ev.clientX - rect.left - tip.offsetWidth - 14;
      tip.style.left = Math.max(0, left) + 'px'; tip.style.top = top + 'px';
    }
    svg.addEventListener('mousemove', show);
    svg.addEventListener('mouseleave', hide);
  });
})();
"""


def _safe_json(obj: Any) -> str:
    """JSON that can sit inside a <script> element (no '<', '>' or '&' characters)."""
    text = json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _kv(items: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return f'<dl class="kv">{rows}</dl>'


def _scalar_items(table: Any) -> list[tuple[str, Any]]:
    """Scalar (and list-of-scalar) entries of a TOML table, flattened one level."""
    if not isinstance(table, dict):
        return []
    out: list[tuple[str, Any]] = []
    for k, v in table.items():
        if isinstance(v, str | int | float | bool):
            out.append((str(k).replace("_", " "), v))
        elif isinstance(v, list) and all(isinstance(x, str | int | float | bool) for x in v):
            out.append((str(k).replace("_", " "), ", ".join(str(x) for x in v)))
    return out


def _summary_html(ds: xr.Dataset) -> str:
    course = {}
    raw = ds.attrs.get("course_toml")
    if raw:
        try:
            course = tomllib.loads(str(raw))
        except (tomllib.TOMLDecodeError, TypeError):
            course = {}
    sites = _sites(ds)
    sessions = {s: len(_session_days(ds, 0, s)) for s in sites}
    items: list[tuple[str, Any]] = []
    if "patient" in ds.coords:
        items.append(("patients", ", ".join(str(p) for p in ds["patient"].values)))
    items.append(("sites", ", ".join(sites)))
    items.append(("sessions per site", ", ".join(f"{s}: {n}" for s, n in sessions.items())))
    if "time" in ds.coords:
        items.append(
            ("simulated horizon", f"{format_number(float(ds['time'].max()))} {_time_units(ds)}")
        )
    parts = [_kv(items)]
    patient = course.get("patient") if isinstance(course, dict) else None
    pitems = _scalar_items(patient)
    if pitems:
        parts.append("<h3>Patient</h3>" + _kv(pitems))
    for key in ("device", "topical"):
        ditems = _scalar_items(course.get(key)) if isinstance(course, dict) else []
        if ditems:
            parts.append(f"<h3>{_e(key.capitalize())}</h3>" + _kv(ditems))
    top = [(k, v) for k, v in _scalar_items(course) if k not in ("name",)]
    if top:
        parts.append("<h3>Course settings</h3>" + _kv(top))
    return "".join(parts)


def _sessions_html(ds: xr.Dataset) -> str:
    import numpy as np

    if "session_day" not in ds:
        return '<p class="muted">No per-session data in this result.</p>'
    cols = [v for v in session_columns() if v in ds and _has_data(ds[v])]
    npat = ds.sizes.get("patient", 1) if "patient" in ds.dims else 1
    head = "".join(f"<th>{_e(_axis_label(ds[c], c))}</th>" for c in cols)
    pat_head = "<th>patient</th>" if npat > 1 else ""
    rows = []
    for p in range(npat):
        for site in _sites(ds):
            days = np.asarray(_select(ds["session_day"], p, site, None).values, dtype=float)
            for k, d in enumerate(days):
                if not np.isfinite(d):
                    continue
                cells = []
                for c in cols:
                    v = float(_select(ds[c], p, site, None).isel(session=k).values)
                    band = _bands(ds, c, p, site, None)
                    iv = format_interval(band[0][k], band[1][k]) if band else ""
                    extra = f' <span class="muted">[{_e(iv)}]</span>' if iv else ""
                    cells.append(f'<td class="num">{_e(format_number(v))}{extra}</td>')
                pcell = f"<td>{_e(_patient_label(ds, p))}</td>" if npat > 1 else ""
                rows.append(
                    f'<tr>{pcell}<td>{_e(site)}</td><td class="num">{k + 1}</td>'
                    f'<td class="num">{_e(format_day(d))}</td>{"".join(cells)}</tr>'
                )
    return (
        f"<table><thead><tr>{pat_head}<th>site</th><th>session</th><th>day</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _endpoint_when(row: Any, reduce: dict[str, str]) -> str:
    t = float(row["time_days"])
    if math.isnan(t):
        how = {"sum": "total over sessions", "max": "worst session", "mean": "mean per session"}
        return how.get(reduce.get(str(row["variable"]), ""), "over the course")
    return f"day {format_day(t)}"


def _endpoints_html(result: Result | xr.Dataset) -> str:

    res = _result(result)
    df = res.endpoints()
    if df.empty:
        return '<p class="muted">No end points apply to this course.</p>'
    reduce: dict[str, str] = {v.name: v.reduce for v in variables.VARIABLES}
    multi = df["patient"].nunique() > 1
    # one block per (patient, site) in dataset order; rows keep their end-point/time order
    ds = _dataset(result)
    order = {s: i for i, s in enumerate(_sites(ds))}
    pats = [str(p) for p in ds["patient"].values] if "patient" in ds.coords else []
    porder = {p: i for i, p in enumerate(pats)}
    df = df.assign(
        _p=df["patient"].astype(str).map(porder).fillna(len(porder)),
        _s=df["site"].map(order).fillna(len(order)),
    )
    df = df.sort_values(["_p", "_s"], kind="stable")
    rows = []
    last = None
    for _, r in df.iterrows():
        group = (r["patient"], r["site"])
        if group != last:
            label = f"{r['patient']} · {r['site']}" if multi else str(r["site"])
            rows.append(f'<tr class="group"><td colspan="6">{_e(label)}</td></tr>')
            last = group
        iv = format_interval(r["low"], r["high"])
        units = pretty_units(str(r["units"]))
        rows.append(
            f"<tr><td>{_e(r['claim'])}</td><td>{_e(r['endpoint'])}</td>"
            f"<td>{_e(_endpoint_when(r, reduce))}</td>"
            f'<td class="num">{_e(format_number(r["value"]))}</td>'
            f'<td class="num">{_e(iv) if iv else "—"}</td><td>{_e(units)}</td></tr>'
        )
    return (
        "<table><thead><tr><th>claim</th><th>end point</th><th>when</th><th>value</th>"
        "<th>10–90% interval</th><th>units</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _references_html(result: Result | xr.Dataset) -> str:
    res = _result(result)
    refs = res.sources()
    if not refs:
        return '<p class="muted">This run recorded no references.</p>'
    usage = reference_usage(res)
    items = []
    for r in refs:
        key = r.key
        url = r.url
        link = ""
        if url.startswith(("https://", "http://")):
            link = f' <a href="{_e(url)}" rel="noopener noreferrer">{_e(url)}</a>'
        elif url:
            link = f" {_e(url)}"
        used = usage.get(key)
        n = f' <span class="muted">— cited by {len(used)} parameter(s)</span>' if used else ""
        note = f'<br><span class="muted">{_e(r.note)}</span>' if r.note else ""
        items.append(f"<li><code>[{_e(key)}]</code> {_e(r.citation)}{link}{n}{note}</li>")
    return f'<ol class="refs">{"".join(items)}</ol>'


def _provenance_html(ds: xr.Dataset) -> str:
    res = Result(ds)
    items: list[tuple[str, Any]] = [
        ("microneedling version (run)", res.version or "unknown"),
        ("report written by", f"microneedling {__version__}"),
        ("parameter set", res.parameter_set_label or "unknown"),
        ("parameter-set hash", res.parameter_set_hash or "unknown"),
        ("parameters used", len(res.parameter_names)),
        ("random seed", "unknown" if res.seed is None else res.seed),
        ("uncertainty draws", res.n_draws),
        ("created", ds.attrs.get("created", "unknown")),
    ]
    return _kv(items)


def _figures_html(figures: Sequence[str | Path]) -> str:
    out = []
    for f in figures:
        p = Path(f)
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        caption = _FIGURE_CAPTIONS.get(p.stem, p.stem.replace("_", " "))
        out.append(
            f"<figure><figcaption>{_e(caption)}</figcaption>"
            f'<img alt="{_e(caption)}" src="data:image/png;base64,{b64}"></figure>'
        )
    return "".join(out) or '<p class="muted">Figures were not written for this run.</p>'


def render_html(result: Result | xr.Dataset, figures: Sequence[str | Path] = ()) -> str:
    """The report as one self-contained HTML string (see :func:`write_html_report`)."""
    ds = _dataset(result)
    res = _result(result)
    name = res.course_name or "Untitled course"
    charts, chart_data = _trajectory_charts(ds) if "time" in ds.dims else ("", {})
    warnings = res.warnings
    warn_html = (
        '<ul class="warnings">' + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>"
        if warnings
        else '<p class="muted">No warnings were raised for this course.</p>'
    )
    course_toml = res.course_toml
    toml_html = (
        f"<details><summary>Validated input (TOML)</summary><pre>{_e(course_toml)}</pre></details>"
        if course_toml
        else ""
    )
    disclaimer = f'<p class="disclaimer" role="note">{_e(DISCLAIMER)}</p>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="microneedling {_e(__version__)}">
<title>{_e(name)} — microneedling report</title>
<style>{_CSS}</style>
</head>
<body>
<main>
{disclaimer}
<h1>{_e(name)}</h1>
<p class="sub">In-silico microneedling simulation · microneedling {_e(res.version or __version__)}</p>
<section id="summary"><h2>Course</h2>{_summary_html(ds)}{toml_html}
<h3>Sessions</h3>{_sessions_html(ds)}</section>
<section id="warnings"><h2>Warnings</h2>{warn_html}</section>
<section id="endpoints"><h2>End points</h2>
<p class="muted">Value of the nominal parameter set; the interval is the 10th–90th percentile over
the uncertainty draws, where the run had them.</p>{_endpoints_html(result)}</section>
<section id="trajectories"><h2>Trajectories</h2>
<p class="muted">Hover over a chart to read values. Layer-resolved quantities are shown for the
papillary dermis; dashed lines mark sessions.</p>{charts}</section>
<section id="figures"><h2>Figures</h2>{_figures_html(figures)}</section>
<section id="references"><h2>References used by this run</h2>{_references_html(ds)}</section>
<section id="provenance"><h2>Provenance</h2>{_provenance_html(ds)}</section>
<footer>{disclaimer}</footer>
</main>
<script type="application/json" id="mn-chart-data">{_safe_json(chart_data)}</script>
<script>{_JS}</script>
</body>
</html>
"""


def write_html_report(
    result: Result | xr.Dataset, out_dir: str | Path, figures: Sequence[str | Path] = ()
) -> Path:
    """Write ``out_dir/report.html``: one self-contained file (inline CSS, SVG, JS and images).

    Contents: the disclaimer (top and bottom), course name, patient summary and sessions table,
    the end-points table with intervals and units, interactive trajectories with session markers,
    the ``figures`` (embedded as base64 PNG), warnings, the references the run used and its
    provenance. Nothing is fetched when the file is opened. Returns the path written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(render_html(result, figures), out / "report.html")

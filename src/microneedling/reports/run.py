"""The simulation report: PNG figures (matplotlib/Agg) and the self-contained ``report.html`` of a
:class:`~microneedling.engine.result.Result`.

Everything here reads the Dataset layout documented in :mod:`microneedling.engine.result` and the
table of output variables (:mod:`microneedling.engine.variables`); nothing runs the model. The
page is a child of the one report shell (:mod:`microneedling.reports.page`,
``templates/run.html.j2``); numbers, units and labels go through
:mod:`microneedling.reports.format`; figures through :mod:`microneedling.reports.figures`. Output
is deterministic (same Result → same bytes) apart from what the Result itself holds (its
``created`` attribute). matplotlib is imported inside functions.

>>> from microneedling.reports.run import write_figures, write_html_report   # doctest: +SKIP
>>> figs = write_figures(result, "runs/acne/figures")                        # doctest: +SKIP
>>> write_html_report(result, "runs/acne", figs)                             # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.about import __version__
from microneedling.engine import variables
from microneedling.engine.result import Result
from microneedling.engine.variables import time_variables
from microneedling.errors import InputError
from microneedling.io import write_bytes_atomic
from microneedling.reports import charts, page
from microneedling.reports.figures import PALETTE, mark_sessions, new_figure, save_png, wrap
from microneedling.reports.format import (
    field_label,
    format_day,
    format_field,
    format_interval,
    format_number,
    format_percent,
    human,
    pretty_units,
    units_words,
    with_units,
    yes_no,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import xarray as xr
    from matplotlib.axes import Axes

    from microneedling.parameters.parameter_set import ParameterSet

__all__ = [
    "BOOLEAN_VARIABLES",
    "DEFAULT_LAYER",
    "claim_variables",
    "plot_variable",
    "reference_usage",
    "render_html",
    "session_columns",
    "write_figures",
    "write_html_report",
]

#: Layer shown for layer-resolved variables when a single trajectory per site is drawn.
DEFAULT_LAYER = "papillary_dermis"

#: Per-session records that are yes/no flags stored as 1/0.
BOOLEAN_VARIABLES = frozenset({"reaches_capillaries"})

_FIGURE_CAPTIONS = {
    "collagen_elastin": "Collagen (I+III) and elastin change by dermal layer; dashed lines mark sessions.",
    "claims": "Clinical observables behind the usual claims, per site (papillary layer where layered).",
    "downtime": "Redness and swelling over the first days after each session, with visibility thresholds.",
    "absorption": "Topical absorbed per session through the channels, and the gain over intact skin.",
}


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
    return bool(np.isfinite(np.asarray(da.values, dtype=float)).any())


def _units(da: xr.DataArray) -> str:
    return str(da.attrs.get("units", ""))


def _long_name(da: xr.DataArray, name: str) -> str:
    return str(da.attrs.get("long_name", name.replace("_", " ")))


def _axis_label(da: xr.DataArray, name: str) -> str:
    u = pretty_units(_units(da))
    return f"{_long_name(da, name)} ({u})" if u else _long_name(da, name)


def _short_axis_label(da: xr.DataArray, name: str) -> str:
    """A chart's axis title: the variable's short label (its long name is the chart's caption)
    and units; ``(dimensionless)`` where it has none, so that every axis says what its unit is."""
    row = variables.by_name().get(name)
    text = (row.label if row is not None and row.label else _long_name(da, name)).removesuffix(
        ", papillary"
    )
    if len(text) > 48:
        text = text.split(" (")[0].split(":")[0]
    u = pretty_units(_units(da))
    return f"{text} ({u})" if u else f"{text} (dimensionless)"


def _time_units(ds: xr.Dataset) -> str:
    return str(ds["time"].attrs.get("units", "d")) if "time" in ds.coords else "d"


def _positions(
    obj: xr.Dataset | xr.DataArray,
    dims: Sequence[Hashable],
    patient: int | str,
    site: str | None,
    layer: str | None,
) -> tuple[dict[str, int], dict[str, object]]:
    """Where one patient (position or label), site and layer (labels; ``None``: all) lie on the
    dimensions ``dims`` of a variable of ``obj``: positions of unique labels, and the labels
    that are not unique (which only ``sel`` keeps every match of)."""
    at: dict[str, int] = {}
    by_label: dict[str, object] = {}
    wanted: list[tuple[str, object]] = []
    if "patient" in dims:
        if isinstance(patient, int):
            at["patient"] = patient
        else:
            wanted.append(("patient", patient))
    if site is not None and "site" in dims:
        wanted.append(("site", site))
    if layer is not None and "layer" in dims:
        wanted.append(("layer", layer))
    for dim, label in wanted:
        pos = _position(obj, dim, label)
        if pos is None:
            by_label[dim] = label
        else:
            at[dim] = pos
    return at, by_label


def _select(
    da: xr.DataArray, patient: int | str, site: str | None, layer: str | None
) -> xr.DataArray:
    """``da`` at one patient (position or label), site and layer (labels; ``None``: all).

    The labels are looked up in the coordinates' indexes and the selection made by one ``isel``
    (a third of the time of a ``sel`` per dimension, called a few hundred times per report);
    a label that is not unique takes ``sel``, which keeps every match."""
    at, by_label = _positions(da, da.dims, patient, site, layer)
    if at:
        da = da.isel(at)
    return da.sel(by_label) if by_label else da


def _values(
    ds: xr.Dataset, name: str, patient: int | str, site: str | None, layer: str | None
) -> np.ndarray:
    """``_select(ds[name], patient, site, layer).values`` as floats, read from the Dataset's
    variable by position without building a DataArray (the trajectory charts and their bands
    make a few hundred selections per report, ~0.3 ms each as DataArrays); a label that is not
    unique takes :func:`_select`."""
    var = ds.variables[name]
    at, by_label = _positions(ds, var.dims, patient, site, layer)
    if by_label:
        return np.asarray(_select(ds[name], patient, site, layer).values, dtype=float)
    return np.asarray((var.isel(at) if at else var).values, dtype=float)


def _position(obj: xr.Dataset | xr.DataArray, dim: str, label: object) -> int | None:
    """Position of ``label`` on ``dim`` (KeyError if absent); ``None`` when it is not unique."""
    loc = obj.get_index(dim).get_loc(label)
    return int(loc) if isinstance(loc, int | np.integer) else None


def _bands(
    ds: xr.Dataset, variable: str, patient: int | str, site: str | None, layer: str | None
) -> tuple[np.ndarray, np.ndarray] | None:
    lo, hi = f"{variable}_low", f"{variable}_high"
    if lo not in ds or hi not in ds:
        return None
    a = _values(ds, lo, patient, site, layer)
    b = _values(ds, hi, patient, site, layer)
    if not (np.isfinite(a).any() and np.isfinite(b).any()):
        return None
    return np.minimum(a, b), np.maximum(a, b)


def _session_days(ds: xr.Dataset, patient: int | str = 0, site: str | None = None) -> list[float]:
    """Sorted distinct finite session days (of one site, or of every site)."""
    if "session_day" not in ds:
        return []
    days = _values(ds, "session_day", patient, site, None)
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


# --------------------------------------------------------------------------- matplotlib (PNG files)
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
            x = _values(ds, "session_day", patient, site, None)
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
    mark_sessions(ax, _session_days(ds, patient))
    title = _long_name(da, variable)
    if lay is not None:
        title += f", {lay.replace('_', ' ')}"
    if "patient" in ds.coords and ds.sizes.get("patient", 1) > 1:
        title += f" (patient {_patient_label(ds, patient)})"
    ax.set_title(wrap(title, 48), fontsize=10)
    ax.set_xlabel("Session day (d)" if per_session else f"Time ({_time_units(ds)})")
    ax.set_ylabel(wrap(_axis_label(da, variable), 34))
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


def _fig_collagen_elastin(ds: xr.Dataset, path: Path) -> Path | None:
    variables = [v for v in ("collagen_change", "elastin_change") if v in ds and _has_data(ds[v])]
    sites = _sites(ds)[:4]
    if not variables or not sites:
        return None
    fig = new_figure(max(4.6 * len(sites), 7.0), 3.2 * len(variables) + 0.5)
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
            mark_sessions(ax, _session_days(ds, 0, site), label=False)
            ax.axhline(0.0, color="0.3", linewidth=0.6)
            ax.set_title(wrap(f"{_long_name(da, var)} — {site}", 48), fontsize=10)
            ax.set_ylabel(wrap(_axis_label(da, var), 34))
            ax.grid(True, alpha=0.25)
            if r == len(variables) - 1:
                ax.set_xlabel(f"Time ({_time_units(ds)})")
            if c == 0:
                ax.legend(fontsize=7, frameon=False, loc="best")
    return save_png(fig, path)


def _fig_claims(ds: xr.Dataset, path: Path) -> Path | None:
    variables = [v for v in claim_variables() if v in ds and _has_data(ds[v])]
    if not variables:
        return None
    ncols = min(3, len(variables))
    nrows = math.ceil(len(variables) / ncols)
    fig = new_figure(4.3 * ncols, 3.0 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, var in zip(flat, variables, strict=False):
        plot_variable(ds, var, ax=ax)
    for ax in flat[len(variables) :]:
        ax.set_visible(False)
    return save_png(fig, path)


def _numbers(ks: Sequence[int]) -> str:
    """``1–4`` for a run of session numbers, ``1, 3`` otherwise."""
    if len(ks) > 2 and list(ks) == list(range(ks[0], ks[0] + len(ks))):
        return f"{ks[0]}–{ks[-1]}"
    return ", ".join(str(k) for k in ks)


def _after_sessions(
    t: np.ndarray, y: np.ndarray, days: Sequence[float], window_days: float, tol: float
) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
    """The curve after each session (days since it, value) up to ``window_days`` or the next
    session, sessions whose curves agree within ``tol`` merged: ``[(session numbers, x, y)]``."""
    grid = np.linspace(0.0, window_days, 57)
    groups: list[tuple[list[int], np.ndarray, np.ndarray, np.ndarray]] = []
    for k, d in enumerate(days):
        end = min(d + window_days, days[k + 1] if k + 1 < len(days) else math.inf)
        m = (t >= d - 1e-9) & (t <= end + 1e-9) & np.isfinite(y)
        if m.sum() < 2:
            continue
        x, v = t[m] - d, y[m]
        probe = np.interp(grid[grid <= x[-1] + 1e-9], x, v)
        for ks, _, _, other in groups:
            if other.shape == probe.shape and np.max(np.abs(other - probe), initial=0.0) <= tol:
                ks.append(k + 1)
                break
        else:
            groups.append(([k + 1], x, v, probe))
    return [(ks, x, v) for ks, x, v, _ in groups]


def _fig_downtime(ds: xr.Dataset, path: Path, window_days: float = 7.0) -> Path | None:
    """Redness and swelling after each session; sessions whose curves coincide (the same settings
    on the same skin) are drawn once and named together, never on top of each other."""
    variables = [v for v in ("erythema", "oedema") if v in ds and _has_data(ds[v])]
    if not variables or "session_day" not in ds:
        return None
    t = np.asarray(ds["time"].values, dtype=float)
    styles = ("-", "--", ":", "-.")
    fig = new_figure(5.4 * len(variables), 4.0)
    axes = fig.subplots(1, len(variables), squeeze=False)[0]
    for ax, var in zip(axes, variables, strict=True):
        da = ds[var]
        values = np.asarray(_select(da, 0, None, None).values, dtype=float)
        tol = 0.01 * float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
        n = 0
        for j, site in enumerate(_sites(ds)):
            y = np.asarray(_select(da, 0, site, None).values, dtype=float)
            if not np.isfinite(y).any():
                continue
            days = _session_days(ds, 0, site)
            for ks, x, v in _after_sessions(t, y, days, window_days, tol):
                word = "session" if len(ks) == 1 else "sessions"
                ax.plot(
                    x,
                    v,
                    color=PALETTE[n % len(PALETTE)],
                    linestyle=styles[j % len(styles)],
                    linewidth=1.5,
                    label=f"{human(site)}, {word} {_numbers(ks)}",
                )
                n += 1
        thr = Result(ds).threshold(var)
        if thr is not None:
            ax.axhline(thr, color="0.2", linestyle=":", linewidth=1.0, label="visibility threshold")
        ax.set_xlim(0, window_days)
        ax.set_xlabel("Days after the session (d)")
        ax.set_ylabel(wrap(_axis_label(da, var), 34))
        ax.set_title(wrap(f"{_long_name(da, var)} after each session", 52), fontsize=10)
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=7, frameon=False, loc="upper right")
    return save_png(fig, path)


def _fig_absorption(ds: xr.Dataset, path: Path) -> Path | None:
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
    fig = new_figure(5.0 * len(panels), 3.8)
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
                yi = _values(ds, "absorbed_intact", 0, site, None)
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
        ax.set_ylabel(wrap(_axis_label(da, var), 34))
        ax.set_title(wrap(_long_name(da, var), 52), fontsize=10)
        ax.grid(True, axis="y", alpha=0.25)
        ax.legend(fontsize=7, frameon=False)
    return save_png(fig, path)


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


# --------------------------------------------------------------------------- interactive charts
def _chart_id(*parts: str) -> str:
    return "chart-" + "-".join(p.replace("_", "-") for p in parts if p)


def _runs(results: Sequence[tuple[str, Result | xr.Dataset]]) -> list[tuple[str, xr.Dataset]]:
    return [(label, _dataset(r)) for label, r in results]


_DASHES = ("solid", "dash", "dot", "dashdot")


def trajectory_chart(
    results: Sequence[tuple[str, Result | xr.Dataset]],
    variable: str,
    *,
    layer: str = DEFAULT_LAYER,
    prefix: str = "",
) -> charts.Chart | None:
    """One variable over time for every site of every run (``(label, result)``; a single run may
    have the label ``""``), each line with its 10–90% band, sessions marked. Several runs share
    the chart: colour per site, line style per run (the what-if page). ``None`` when no run has
    data for it."""
    runs = _runs(results)
    lines = []
    sessions: set[float] = set()
    title = ylabel = units = ""
    multi = len(runs) > 1
    tu = "d"
    for r, (label, ds) in enumerate(runs):
        if variable not in ds or "time" not in ds[variable].dims:
            continue
        da = ds[variable]
        lay = layer if "layer" in da.dims else None
        t = np.asarray(ds["time"].values, dtype=float)
        npat = ds.sizes.get("patient", 1) if "patient" in ds.dims else 1
        sites = _sites(ds)
        for p in range(npat):
            for j, site in enumerate(sites):
                v = _values(ds, variable, p, site, lay)
                if not np.isfinite(v).any():
                    continue
                band = _bands(ds, variable, p, site, lay)
                name = (
                    human(site) if npat == 1 else f"{human(_patient_label(ds, p))} · {human(site)}"
                )
                if multi:
                    name = f"{label} · {name}"
                lines.append(
                    charts.series(
                        name,
                        t,
                        v,
                        low=band[0] if band else None,
                        high=band[1] if band else None,
                        colour=PALETTE[(p * len(sites) + j) % len(PALETTE)],
                        dash=_DASHES[r % len(_DASHES)],
                    )
                )
        sessions.update(_session_days(ds))
        title = _long_name(da, variable) + (f", {lay.replace('_', ' ')}" if lay else "")
        ylabel = _short_axis_label(da, variable)
        units = pretty_units(_units(da))
        tu = _time_units(ds)
    if not lines:
        return None
    last = [
        float(np.asarray(ds["time"].values, dtype=float)[-1])
        for _, ds in runs
        if "time" in ds.coords
    ]
    summary = _line_summary(lines, units)
    return charts.line_chart(
        _chart_id(prefix, variable),
        title,
        lines,
        x_title=f"Time ({tu})",
        y_title=ylabel,
        units=units,
        sessions=sorted(sessions),
        summary=summary,
        x_range=(0.0, max(last)) if last else None,
    )


def _line_summary(lines: Sequence[dict[str, Any]], units: str) -> str:
    """The text alternative of a trajectory chart: each line's value at its end."""
    parts = []
    for s in lines:
        y = s["y"]
        ok = np.flatnonzero(np.isfinite(y))
        if ok.size:
            i = int(ok[-1])
            parts.append(
                f"{s['name']}: {with_units(format_number(y[i]), units)} at day {format_day(s['x'][i])}"
            )
    return "At the end: " + "; ".join(parts) + "." if parts else ""


def trajectory_charts(
    results: Sequence[tuple[str, Result | xr.Dataset]],
    variables: Sequence[str] | None = None,
    *,
    layer: str = DEFAULT_LAYER,
    prefix: str = "",
) -> list[charts.Chart]:
    """:func:`trajectory_chart` of each time-resolved variable (default: every one of the first
    run, in the table's order) that has data."""
    names = list(variables) if variables is not None else _time_variables(_dataset(results[0][1]))
    out = [trajectory_chart(results, v, layer=layer, prefix=prefix) for v in names]
    return [c for c in out if c is not None]


def _calendar_rows(label: str, ds: xr.Dataset) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if "session_day" not in ds or "erythema_days" not in ds:
        return rows
    for site in _sites(ds):
        days = _values(ds, "session_day", 0, site, None)
        red = _values(ds, "erythema_days", 0, site, None)
        swollen, down = (
            _values(ds, name, 0, site, None) if name in ds else np.full_like(red, np.nan)
            for name in ("oedema_days", "downtime_days")
        )
        for k, d in enumerate(days):
            if not np.isfinite(d):
                continue
            name = f"{human(site)}, session {k + 1} (day {format_day(d)})"
            rows.append(
                {
                    "label": f"{label} · {name}" if label else name,
                    "day": float(d),
                    "red_days": float(red[k]),
                    "swollen_days": float(swollen[k]),
                    "down_days": float(down[k]),
                }
            )
    return rows


def downtime_calendar(
    results: Sequence[tuple[str, Result | xr.Dataset]], *, prefix: str = ""
) -> charts.Chart | None:
    """The downtime calendar: for each session of each site, the days of visible redness, of
    visible swelling and of any visible sign (redness, swelling or a roller's bruising) from the
    session day (``erythema_days``, ``oedema_days``, ``downtime_days``)."""
    multi = len(results) > 1
    rows = [
        row for label, ds in _runs(results) for row in _calendar_rows(label if multi else "", ds)
    ]
    if not rows:
        return None
    total_red = sum(r["red_days"] for r in rows if math.isfinite(r["red_days"]))
    summary = (
        f"{len(rows)} session(s); visible redness {format_number(total_red)} d in total "
        f"(longest {format_number(max(r['red_days'] for r in rows))} d after one session)."
    )
    down = [r["down_days"] for r in rows if math.isfinite(r["down_days"])]
    if down:
        summary += (
            f" Any sign visible (redness, swelling or bruising): {format_number(sum(down))} d in "
            f"total (longest {format_number(max(down))} d)."
        )
    return charts.calendar_chart(
        _chart_id(prefix, "downtime-calendar"),
        "Downtime calendar: days of visible redness, swelling and any sign after each session",
        rows,
        summary=summary,
    )


def downtime_curves(
    ds: xr.Dataset, *, window_days: float = 7.0, prefix: str = ""
) -> list[charts.Chart]:
    """Redness and swelling over the first days after each session, with the visibility
    threshold; sessions whose curves coincide (same settings on the same skin) are one line named
    for all of them, never several lines drawn on top of each other."""
    out: list[charts.Chart] = []
    if "time" not in ds.coords or "session_day" not in ds:
        return out
    t = np.asarray(ds["time"].values, dtype=float)
    for var in ("erythema", "oedema"):
        if var not in ds or not _has_data(ds[var]):
            continue
        da = ds[var]
        values = np.asarray(_select(da, 0, None, None).values, dtype=float)
        tol = 0.01 * float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
        lines: list[dict[str, Any]] = []
        for j, site in enumerate(_sites(ds)):
            y = np.asarray(_select(da, 0, site, None).values, dtype=float)
            if not np.isfinite(y).any():
                continue
            for ks, x, v in _after_sessions(t, y, _session_days(ds, 0, site), window_days, tol):
                word = "session" if len(ks) == 1 else "sessions"
                lines.append(
                    charts.series(
                        f"{human(site)}, {word} {_numbers(ks)}",
                        x,
                        v,
                        colour=PALETTE[len(lines) % len(PALETTE)],
                        dash=_DASHES[j % len(_DASHES)],
                    )
                )
        if not lines:
            continue
        thr = Result(ds).threshold(var)
        out.append(
            charts.line_chart(
                _chart_id(prefix, var, "after-sessions"),
                f"{_long_name(da, var)} after each session",
                lines,
                x_title="Days after the session (d)",
                y_title=_short_axis_label(da, var),
                units=pretty_units(_units(da)),
                thresholds=[(thr, "visibility threshold")] if thr is not None else [],
                x_range=(0.0, window_days),
                summary=f"{len(lines)} distinct curve(s); above the dotted line the "
                f"{'redness' if var == 'erythema' else 'swelling'} is visible.",
            )
        )
    return out


def absorption_chart(ds: xr.Dataset, *, prefix: str = "") -> charts.Chart | None:
    """Topical absorbed per session through the channels (10–90% bars), per site, with the amount
    through intact skin; ``None`` without a topical."""
    if "absorbed_amount" not in ds:
        return None
    amount = np.asarray(ds["absorbed_amount"].values, dtype=float)
    if not (np.isfinite(amount) & (amount != 0)).any():
        return None
    n = ds.sizes.get("session", 1)
    cats = [f"session {k + 1}" for k in range(n)]
    groups = []
    da = ds["absorbed_amount"]
    for j, site in enumerate(_sites(ds)):
        y = np.asarray(_select(da, 0, site, None).values, dtype=float)
        if not np.isfinite(y).any():
            continue
        band = _bands(ds, "absorbed_amount", 0, site, None)
        groups.append(
            {"name": f"{human(site)}, with channels", "values": y,
             "low": band[0] if band else None, "high": band[1] if band else None,
             "colour": PALETTE[j % len(PALETTE)]}
        )  # fmt: skip
        if "absorbed_intact" in ds:
            yi = _values(ds, "absorbed_intact", 0, site, None)
            if np.isfinite(yi).any():
                groups.append(
                    {"name": f"{human(site)}, intact skin", "values": yi, "colour": "#7f7f7f"}
                )
    if not groups:
        return None
    units = pretty_units(_units(da))
    return charts.bar_chart(
        _chart_id(prefix, "absorption"),
        "Topical absorbed per session",
        cats,
        groups,
        x_title="Session",
        y_title=f"{_long_name(da, 'absorbed_amount')} ({units})",
        units=units,
        log=True,
        summary="Bars: amount absorbed through the channels (error bars: 10th–90th percentile) "
        "and through intact skin, log scale.",
    )


def layer_chart(
    ds: xr.Dataset, variable: str = "collagen_change", *, prefix: str = ""
) -> charts.Chart | None:
    """A layer-resolved variable in each dermal layer (first site), with bands and sessions."""
    if variable not in ds or "layer" not in ds[variable].dims:
        return None
    da = ds[variable]
    t = np.asarray(ds["time"].values, dtype=float)
    sites = _sites(ds)
    if not sites:
        return None
    site = sites[0]
    lines = []
    for k, lay in enumerate(str(v) for v in ds["layer"].values):
        y = np.asarray(_select(da, 0, site, lay).values, dtype=float)
        if not np.isfinite(y).any():
            continue
        band = _bands(ds, variable, 0, site, lay)
        lines.append(
            charts.series(human(lay), t, y, low=band[0] if band else None,
                          high=band[1] if band else None, colour=PALETTE[k % len(PALETTE)])
        )  # fmt: skip
    if not lines:
        return None
    units = pretty_units(_units(da))
    return charts.line_chart(
        _chart_id(prefix, variable, "layers"),
        f"{_long_name(da, variable)} by dermal layer ({human(site)})",
        lines,
        x_title=f"Time ({_time_units(ds)})",
        y_title=_short_axis_label(da, variable),
        units=units,
        sessions=_session_days(ds, 0, site),
        summary=_line_summary(lines, units),
    )


def chart_sections(
    result: Result | xr.Dataset, *, prefix: str = ""
) -> dict[str, list[charts.Chart]]:
    """The charts of a run, by section: ``claims`` (the clinical observables that apply),
    ``downtime`` (calendar and after-session curves), ``tissue`` (collagen and elastin by layer,
    absorption) and ``more`` (every other time-resolved output)."""
    ds = _dataset(result)
    one = [("", ds)]
    if "time" not in ds.dims:
        return {"claims": [], "downtime": [], "tissue": [], "more": []}
    time_vars = _time_variables(ds)
    claims_vars = [v for v in claim_variables() if v in time_vars]
    tissue = [layer_chart(ds, "collagen_change", prefix=prefix),
              layer_chart(ds, "elastin_change", prefix=prefix),
              absorption_chart(ds, prefix=prefix)]  # fmt: skip
    shown = set(claims_vars) | {"erythema", "oedema"}
    more = [v for v in time_vars if v not in shown]
    return {
        "claims": trajectory_charts(one, claims_vars, prefix=prefix),
        "downtime": [c for c in [downtime_calendar(one, prefix=prefix)] if c is not None]
        + downtime_curves(ds, prefix=prefix),
        "tissue": [c for c in tissue if c is not None],
        "more": trajectory_charts(one, more, prefix=prefix),
    }


def pih_summary(result: Result | xr.Dataset, patient: bool = False) -> list[tuple[str, str]]:
    """The risk of post-inflammatory hyperpigmentation in words: the worst session of each site
    (nominal with its 10–90% interval). ``patient``: in the handout's words (the variable's
    :attr:`~microneedling.engine.variables.Variable.plain_label`, the interval as "most likely
    between"), the same numbers."""
    ds = _dataset(result)
    if "pih_risk" not in ds:
        return []
    out = []
    for site in _sites(ds):
        v = _values(ds, "pih_risk", 0, site, None)
        if not np.isfinite(v).any():
            continue
        k = int(np.nanargmax(v))
        band = _bands(ds, "pih_risk", 0, site, None)
        ok = band is not None and np.isfinite(band[0][k]) and np.isfinite(band[1][k])
        if patient:
            text = f"about {format_percent(v[k])} at the riskiest session (session {k + 1})"
            if band is not None and ok:
                text += (f"; most likely between {format_percent(band[0][k])} and "
                         f"{format_percent(band[1][k])}")  # fmt: skip
            label = variables.by_name()["pih_risk"].plain_label
            out.append((f"{human(site).capitalize()}, {label[:1].lower()}{label[1:]}", text))
            continue
        text = f"{format_percent(v[k])} after session {k + 1}"
        if band is not None and ok:
            text += f" (10–90%: {format_percent(band[0][k])} to {format_percent(band[1][k])})"
        out.append((f"Worst-session PIH risk, {human(site)}", text))
    return out


# --------------------------------------------------------------------------- page data
def _course_table(ds: xr.Dataset) -> dict[str, Any]:
    raw = ds.attrs.get("course_toml")
    if not raw:
        return {}
    try:
        course = tomllib.loads(str(raw))
    except (tomllib.TOMLDecodeError, TypeError):
        return {}
    return course if isinstance(course, dict) else {}


def _field_items(table: Any, skip: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Scalar (and list-of-scalar) entries of a TOML table as (human label, formatted value)."""
    if not isinstance(table, dict):
        return []
    out: list[tuple[str, str]] = []
    for k, v in table.items():
        if k in skip:
            continue
        if isinstance(v, str | int | float | bool) or (
            isinstance(v, list) and all(isinstance(x, str | int | float | bool) for x in v)
        ):
            out.append((field_label(str(k)), format_field(str(k), v)))
    return out


def _history_text(history: Any) -> str:
    """The history answers that are set (``yes`` flags, numbers), in words."""
    if not isinstance(history, dict):
        return ""
    items = []
    for k, v in history.items():
        if isinstance(v, bool):
            if v:
                items.append(field_label(str(k)))
        elif isinstance(v, int | float):
            items.append(f"{field_label(str(k)).lower()}: {format_field(str(k), v)}")
    return "; ".join(items) or "nothing relevant recorded"


def _condition_text(cond: Any) -> str:
    if not isinstance(cond, dict):
        return human(cond)
    kind = human(cond.get("type", "condition"))
    rest = [
        f"{field_label(str(k)).lower()} {format_field(str(k), v)}"
        for k, v in cond.items()
        if k != "type" and isinstance(v, str | int | float | bool)
    ]
    return f"{kind} ({', '.join(rest)})" if rest else kind


def _summary(ds: xr.Dataset, res: Result) -> list[dict[str, Any]]:
    """Cards of the course section: the run, the patient, the sites, the device, the settings."""
    course = _course_table(ds)
    sites = _sites(ds)
    run: list[tuple[str, Any]] = []
    if "patient" in ds.coords and ds.sizes.get("patient", 1) > 1:
        run.append(("Patients", ", ".join(human(p) for p in ds["patient"].values)))
    run.append(("Sites", ", ".join(human(s) for s in sites)))
    run.append(
        (
            "Sessions per site",
            ", ".join(f"{human(s)}: {len(_session_days(ds, 0, s))}" for s in sites),
        )
    )
    if "time" in ds.coords:
        run.append(
            ("Simulated horizon", f"{format_day(float(ds['time'].max()))} {_time_units(ds)}")
        )
    run.append(("Uncertainty draws", str(res.n_draws) if res.n_draws else "none (nominal only)"))
    cards = [{"title": "Run", "items": page.kv(run)}]
    patient = course.get("patient")
    items = _field_items(patient, skip=("history",))
    if isinstance(patient, dict) and "history" in patient:
        items.append(("History", _history_text(patient["history"])))
    if items:
        cards.append({"title": "Patient", "items": page.kv(items)})
    site_items = [
        (human(s.get("name", "?")), "; ".join(_condition_text(c) for c in s.get("conditions", []))
         or "no condition")
        for s in course.get("sites", []) if isinstance(s, dict)
    ]  # fmt: skip
    if site_items:
        cards.append({"title": "Sites and conditions", "items": page.kv(site_items)})
    device = _field_items(course.get("device"))
    if device:
        cards.append({"title": "Device", "items": page.kv(device)})
    settings = _field_items(course, skip=("name", "horizon_days"))
    if settings:
        cards.append({"title": "Course settings", "items": page.kv(settings)})
    return cards


def _session_cell(ds: xr.Dataset, name: str, p: int, site: str, k: int) -> dict[str, Any]:
    v = float(_select(ds[name], p, site, None).isel(session=k).values)
    if name in BOOLEAN_VARIABLES:
        return page.cell(yes_no(v), num=False)
    band = _bands(ds, name, p, site, None)
    iv = format_interval(band[0][k], band[1][k]) if band else ""
    return page.cell(format_number(v), interval=f"[{iv}]" if iv else "")


def _sessions(ds: xr.Dataset) -> dict[str, Any] | None:
    """The sessions table: what was done and reached, then the outcomes, per site and session."""
    if "session_day" not in ds:
        return None
    cols = [v for v in session_columns() if v in ds and _has_data(ds[v])]
    npat = ds.sizes.get("patient", 1) if "patient" in ds.dims else 1
    columns = [page.column("Patient")] if npat > 1 else []
    columns += [page.column("Site"), page.column("Session", num=True), page.column("Day", num=True)]
    columns += [
        page.column(
            _long_name(ds[c], c), pretty_units(_units(ds[c])), num=c not in BOOLEAN_VARIABLES
        )
        for c in cols
    ]
    rows = []
    for p in range(npat):
        for site in _sites(ds):
            days = _values(ds, "session_day", p, site, None)
            for k, d in enumerate(days):
                if not np.isfinite(d):
                    continue
                row: list[Any] = [human(_patient_label(ds, p))] if npat > 1 else []
                row += [human(site), str(k + 1), format_day(d)]
                row += [_session_cell(ds, c, p, site, k) for c in cols]
                rows.append(row)
    banded = any(f"{c}_low" in ds for c in cols)
    caption = "Below a value: its 10th–90th percentile over the draws." if banded else ""
    return page.table(columns, rows, caption=caption, label="Sessions")


def _endpoint_when(row: Any, reduce: dict[str, str]) -> str:
    t = float(row["time_days"])
    if math.isnan(t):
        how = {"sum": "total over sessions", "max": "worst session", "mean": "mean per session"}
        return how.get(reduce.get(str(row["variable"]), ""), "over the course")
    return f"day {format_day(t)}"


def _endpoints(result: Result | xr.Dataset, table: pd.DataFrame | None = None) -> dict[str, Any]:
    """The end-point table: one block per (patient, site), rows in end-point/time order
    (``table``: ``result.endpoints()`` when the caller has made it already)."""
    res = _result(result)
    df = res.endpoints() if table is None else table
    columns = [
        page.column("Claim"),
        page.column("End point"),
        page.column("When"),
        page.column("Value", num=True),
        page.column("10–90% interval", num=True),
        page.column("Units"),
        page.column("Published validation"),
    ]
    if df.empty:
        return page.table(
            columns, [], label="End points", empty="No end points apply to this course."
        )
    outside = _outside_validation(_dataset(result))
    reduce: dict[str, str] = {v.name: v.reduce for v in variables.VARIABLES}
    multi = df["patient"].nunique() > 1
    ds = _dataset(result)
    order = {s: i for i, s in enumerate(_sites(ds))}
    pats = [str(p) for p in ds["patient"].values] if "patient" in ds.coords else []
    porder = {p: i for i, p in enumerate(pats)}
    df = df.assign(
        _p=df["patient"].astype(str).map(porder).fillna(len(porder)),
        _s=df["site"].map(order).fillna(len(order)),
    )
    df = df.sort_values(["_p", "_s"], kind="stable")
    rows: list[Any] = []
    last = None
    for _, r in df.iterrows():
        group = (r["patient"], r["site"])
        if group != last:
            site = human(r["site"])
            rows.append({"group": f"{human(r['patient'])} · {site}" if multi else site})
            last = group
        iv = format_interval(r["low"], r["high"])
        rows.append(
            [
                human(r["claim"]),
                str(r["endpoint"]),
                _endpoint_when(r, reduce),
                format_number(r["value"]),
                iv or "—",
                units_words(r["units"], r["variable"]),
                _validation_cell(outside, str(r["variable"])),
            ]
        )
    return page.table(columns, rows, label="End points")


def _outside_validation(ds: xr.Dataset) -> dict[str, list[str]] | None:
    """The run's applicability flags (output -> reasons), or ``None`` for a run made before they
    were recorded."""
    raw = ds.attrs.get("applicability")
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return (
        {str(k): [str(x) for x in v] for k, v in parsed.items()}
        if isinstance(parsed, dict)
        else None
    )


def _validation_cell(outside: dict[str, list[str]] | None, variable: str) -> str:
    """Whether published validation covers this output at the course's settings, in words."""
    if outside is None:
        return "not recorded"
    reasons = outside.get(variable)
    if not reasons:
        return "within the validated settings"
    if reasons == ["no validation row tests this output"]:
        return "untested: no validation data"
    return "outside: " + "; ".join(reasons)


def _references(result: Result | xr.Dataset) -> list[dict[str, Any]]:
    res = _result(result)
    usage = reference_usage(res)
    out = []
    for r in res.sources():
        # what a user is shown: the citation without the developers' remarks, a link only to a
        # DOI, PubMed/PMC, a registry or a journal (the recorded note stays in result.nc)
        url = r.user_url
        out.append(
            {
                "key": r.key,
                "citation": r.user_citation,
                "link": url if url.startswith(("https://", "http://")) else "",
                "url": "",
                "used": len(usage.get(r.key, [])),
                "note": "",
            }
        )
    return out


def _provenance(ds: xr.Dataset) -> list[tuple[str, str]]:
    res = Result(ds)
    return page.kv(
        [
            ("microneedling version (run)", res.version or "unknown"),
            ("Report written by", f"microneedling {__version__}"),
            ("Parameter set", res.parameter_set_label or "unknown"),
            ("Parameter-set hash", res.parameter_set_hash or "unknown"),
            ("Parameters used", len(res.parameter_names)),
            ("Random seed", "unknown" if res.seed is None else res.seed),
            ("Uncertainty draws", res.n_draws),
            ("Created", ds.attrs.get("created", "unknown")),
        ]
    )


def _figure_files(figures: Sequence[str | Path]) -> list[str]:
    """The PNG files written beside the report, named with what they show."""
    return [
        f"{Path(f).name}: {_FIGURE_CAPTIONS.get(Path(f).stem, human(Path(f).stem))}"
        for f in figures
    ]


_TOC = (
    ("summary", "Course"),
    ("warnings", "Warnings"),
    ("endpoints", "End points"),
    ("downtime", "Downtime and risk"),
    ("trajectories", "Trajectories"),
    ("tissue", "Tissue and absorption"),
    ("references", "References"),
    ("provenance", "Provenance"),
)


def page_context(
    result: Result | xr.Dataset,
    figures: Sequence[str | Path] = (),
    *,
    library_url: str | None = None,
    endpoints: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Everything ``run.html.j2`` reads, for the CLI's report (library inlined after rendering)
    and the web result page (``library_url``: the library's address); ``endpoints``: the table
    of ``result.endpoints()`` when the caller has it already."""
    ds = _dataset(result)
    res = _result(result)
    sections = chart_sections(ds)
    every = [c for group in sections.values() for c in group]
    return {
        "kind": "Simulation report",
        "title": res.course_name or "Untitled course",
        "subtitle": f"In-silico microneedling simulation · run made with microneedling "
        f"{res.version or __version__}",
        "toc": list(_TOC),
        "provenance": _provenance(ds),
        "summary": _summary(ds, res),
        "course_toml": res.course_toml,
        "sessions": _sessions(ds),
        "warnings": res.warnings,
        "endpoints": _endpoints(result, endpoints),
        "chart_sections": sections,
        "pih": pih_summary(ds),
        "figure_files": _figure_files(figures),
        "references": _references(result),
        **charts.context(every, library_url=library_url),
    }


def render_html(
    result: Result | xr.Dataset,
    figures: Sequence[str | Path] = (),
    *,
    endpoints: pd.DataFrame | None = None,
) -> str:
    """The report as one self-contained HTML string, the chart library inlined (see
    :func:`write_html_report`)."""
    return charts.embed_library(_page(result, figures, endpoints))


def _page(
    result: Result | xr.Dataset, figures: Sequence[str | Path], endpoints: pd.DataFrame | None
) -> str:
    """The report page with the chart library's placeholder (``charts.LIBRARY_PLACEHOLDER``)."""
    return page.render("run.html.j2", **page_context(result, figures, endpoints=endpoints))


def write_html_report(
    result: Result | xr.Dataset,
    out_dir: str | Path,
    figures: Sequence[str | Path] = (),
    *,
    endpoints: pd.DataFrame | None = None,
) -> Path:
    """Write ``out_dir/report.html``: one self-contained file (inline CSS, charts and their
    library) that opens offline.

    Contents: the disclaimer (top and bottom), course name, patient summary and sessions table,
    the end-points table with intervals and units, the downtime calendar and the PIH risk,
    interactive trajectories with their 10–90% bands and session markers, tissue and absorption
    charts, warnings, the references the run used and its provenance; ``figures`` (the PNG files
    written beside it) are listed by name; ``endpoints``: the table of ``result.endpoints()``
    when the caller has it already (made once for the CSV, the page and the terminal). Returns
    the path written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # render_html's page, encoded around the library's bytes (not as one 5 MB string)
    data = charts.embed_library_bytes(_page(result, figures, endpoints))
    return write_bytes_atomic(data, out / "report.html")

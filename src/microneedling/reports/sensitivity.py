"""The sensitivity figure (``microneedling sensitivity``): Sobol indices as bars, per end point.

The indices come from :func:`microneedling.studies.sensitivity.sobol_indices` (an
``xarray.Dataset``); the long table of them (``sobol.csv``) is the study's
:func:`~microneedling.studies.sensitivity.indices_table`. Nothing here computes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from microneedling.reports.figures import (
    LABEL_SIZE,
    PALETTE,
    SMALL_SIZE,
    TITLE_SIZE,
    new_figure,
    save_png,
    wrap,
)
from microneedling.reports.format import endpoint_label, human, pretty_units

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr
    from matplotlib.figure import Figure

__all__ = ["endpoint_title", "plot_indices", "save_indices_png"]

#: resolution of sobol.png (as the command always wrote it)
SOBOL_DPI = 120


def endpoint_title(ds: xr.Dataset, endpoint: str) -> str:
    """An end point of the indices in words, with its site (several sites) and units."""
    sub = ds.sel(endpoint=endpoint)
    spec = str(sub["spec"].values) if "spec" in sub.coords else str(endpoint)
    text = endpoint_label(spec)
    sites = {str(s) for s in ds["site"].values} if "site" in ds.coords else set()
    if len(sites) > 1:
        text += f" — {human(sub['site'].values)}"
    units = pretty_units(str(sub["units"].values)) if "units" in sub.coords else ""
    return f"{text} ({units})" if units else text


def plot_indices(ds: xr.Dataset, top: int = 12) -> Figure:
    """Bar chart of S1 and ST with their 95% confidence bars, one panel per end point, the ``top``
    parameters by ST in each. Returns the (pyplot-free) matplotlib Figure."""
    n = ds.sizes["endpoint"]
    rows = min(top, ds.sizes["parameter"])
    fig = new_figure(8.4, 1.3 + 0.32 * rows * n + 0.7 * n)
    axes = fig.subplots(n, 1, squeeze=False)
    for ax, e in zip(axes[:, 0], ds.endpoint.values, strict=True):
        sub = ds.sel(endpoint=e)
        st = np.nan_to_num(sub.ST.values, nan=-np.inf)
        order = np.argsort(-st, kind="stable")[:top][::-1]
        names = [str(ds.parameter.values[i]) for i in order]
        y = np.arange(len(order))
        h = 0.38
        ax.barh(y + h / 2, sub.ST.values[order], h, xerr=sub.ST_conf.values[order],
                color=PALETTE[3], label="total (ST)", capsize=2)  # fmt: skip
        ax.barh(y - h / 2, sub.S1.values[order], h, xerr=sub.S1_conf.values[order],
                color=PALETTE[0], label="first order (S1)", capsize=2)  # fmt: skip
        ax.set_yticks(y, names, fontsize=7)
        ax.axvline(0.0, color="0.3", lw=0.6)
        ax.set_xlabel("Sobol index (share of the output variance)", fontsize=LABEL_SIZE)
        ax.set_title(wrap(endpoint_title(ds, str(e)), 80), fontsize=SMALL_SIZE + 1)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"Sobol indices, N = {ds.attrs['n_base']} ({ds.attrs['n_runs']} runs); bars: 95% CI",
        fontsize=TITLE_SIZE,
    )
    return fig


def save_indices_png(ds: xr.Dataset, path: str | Path, top: int = 12) -> Path:
    """:func:`plot_indices` written as PNG atomically (``sobol.png``)."""
    return save_png(plot_indices(ds, top), Path(path), dpi=SOBOL_DPI)

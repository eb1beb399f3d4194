"""The sensitivity report (``microneedling sensitivity``): Sobol indices per end point as the
self-contained ``report.html`` (interactive bar charts and tables, the one report shell) and as
``sobol.png`` (for print).

The indices come from :func:`microneedling.studies.sensitivity.sobol_indices` (an
``xarray.Dataset``); the long table of them (``sobol.csv``) is the study's
:func:`~microneedling.studies.sensitivity.indices_table`. Nothing here computes them.

API::

    indices_charts(ds, top=12) -> list[Chart]                  (Plotly, one per end point)
    render_report(ds, *, top=12, warnings=()) -> str           (HTML)
    write_report(out_dir, ds, *, top=12, warnings=()) -> Path  (report.html, atomic)
    plot_indices(ds, top=12) -> Figure; save_indices_png(ds, path, top=12) -> Path
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.about import __version__
from microneedling.io import write_text_atomic
from microneedling.reports import charts, page
from microneedling.reports.figures import (
    LABEL_SIZE,
    PALETTE,
    SMALL_SIZE,
    TITLE_SIZE,
    new_figure,
    save_png,
    wrap,
)
from microneedling.reports.format import endpoint_label, format_number, human, pretty_units

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr
    from matplotlib.figure import Figure

__all__ = [
    "endpoint_title",
    "indices_charts",
    "plot_indices",
    "render_report",
    "save_indices_png",
    "write_report",
]

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


# ----------------------------------------------------------------------------- the HTML report
def _order(sub: xr.Dataset, top: int) -> np.ndarray:
    """Indices of the ``top`` parameters by total index (largest first; NaN last)."""
    st = np.nan_to_num(np.asarray(sub.ST.values, dtype=float), nan=-np.inf)
    return np.argsort(-st, kind="stable")[:top]


def indices_charts(ds: xr.Dataset, top: int = 12) -> list[charts.Chart]:
    """One bar chart per end point: S1 and ST with their confidence half-widths, the ``top``
    parameters by ST, largest first."""
    out = []
    conf = float(ds.attrs.get("conf_level", 0.95))
    for j, e in enumerate(ds.endpoint.values):
        sub = ds.sel(endpoint=e)
        order = _order(sub, top)
        names = [str(ds.parameter.values[i]) for i in order]
        first, total = sub.S1.values[order], sub.ST.values[order]
        lead = names[0] if names else ""
        summary = (
            f"{lead} has the largest total index ({format_number(float(total[0]), 2)}); bars "
            f"carry their {conf:.0%} bootstrap intervals."
            if names and np.isfinite(total[0])
            else "No finite index for this end point."
        )
        out.append(
            charts.sobol_chart(
                f"chart-sobol-{j}",
                endpoint_title(ds, str(e)),
                names[::-1],  # horizontal bars: the first category is drawn at the bottom
                first[::-1],
                total[::-1],
                sub.S1_conf.values[order][::-1],
                sub.ST_conf.values[order][::-1],
                summary=summary,
            )
        )
    return out


def _index_cell(value: Any, half: Any) -> dict[str, Any]:
    v, h = float(value), float(half)
    if not np.isfinite(v):
        return page.cell("n/a", title="not finite: a run of the design failed")
    interval = f"± {format_number(h, 2)}" if np.isfinite(h) else ""
    return page.cell(format_number(v, 3), interval=interval)


def _first_sentence(note: str, limit: int = 110) -> str:
    """The first sentence of a parameter's note, cut at ``limit`` characters (the whole note is
    the cell's tooltip)."""
    text = " ".join(note.split())
    end = text.find(". ")
    first = text if end < 0 else text[: end + 1]
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def _tables(ds: xr.Dataset, top: int) -> list[dict[str, Any]]:
    def coord(name: str) -> list[str]:
        if name in ds.coords:
            return [str(u) for u in ds[name].values]
        return [""] * ds.sizes["parameter"]

    units, notes = coord("parameter_units"), coord("parameter_note")
    out = []
    for e in ds.endpoint.values:
        sub = ds.sel(endpoint=e)
        order = _order(sub, top)
        rows = [
            [
                str(ds.parameter.values[i]),
                page.cell(_first_sentence(notes[i]) or "–", title=notes[i]),
                pretty_units(units[i]) or "–",
                _index_cell(sub.S1.values[i], sub.S1_conf.values[i]),
                _index_cell(sub.ST.values[i], sub.ST_conf.values[i]),
            ]
            for i in order
        ]
        out.append(
            page.table(
                [
                    page.column("Parameter"),
                    page.column("What it is"),
                    page.column("Its units"),
                    page.column("First order S1", num=True, note="share of the variance"),
                    page.column("Total ST", num=True, note="share including interactions"),
                ],
                rows,
                label=f"Sobol indices: {endpoint_title(ds, str(e))}",
                caption="Below each index: its bootstrap half-width.",
            )
        )
    return out


def render_report(ds: xr.Dataset, *, top: int = 12, warnings: Iterable[str] = ()) -> str:
    """The sensitivity report as one self-contained HTML string (the library inlined)."""
    figures = indices_charts(ds, top)
    tables = _tables(ds, top)
    endpoints = [
        {"title": endpoint_title(ds, str(e)), "chart": c, "table": t}
        for e, c, t in zip(ds.endpoint.values, figures, tables, strict=True)
    ]
    a = ds.attrs
    provenance: list[tuple[str, Any]] = [
        ("Report written by", f"microneedling {__version__}"),
        ("Indices computed by", f"microneedling {a.get('microneedling_version', '?')}"),
        ("Method", a.get("method", "")),
        ("Parameter ranges", a.get("prior", "")),
        ("Base samples N", a.get("n_base")),
        ("Model runs", a.get("n_runs")),
        ("Parameters varied", a.get("n_factors")),
        ("Failed runs", a.get("n_failed")),
        ("Random seed", a.get("seed")),
        (
            "Parameter set",
            f"{a.get('parameter_set_label', '')} ({a.get('parameter_set_hash', '')})",
        ),
    ]
    html = page.render(
        "sensitivity.html.j2",
        kind="Sensitivity report",
        title=str(a.get("course_name", "Sensitivity")),
        subtitle="Which parameters drive each end point: Sobol indices over the parameters' "
        "90% intervals",
        toc=[
            ("method", "How to read it"),
            ("endpoints", "End points"),
            ("provenance", "Provenance"),
        ],
        provenance=page.kv(provenance),
        endpoints=endpoints,
        warnings=list(warnings),
        top=min(top, ds.sizes["parameter"]),
        n_parameters=ds.sizes["parameter"],
        **charts.context(figures),
    )
    return charts.embed_library(html)


def write_report(
    out_dir: str | Path, ds: xr.Dataset, *, top: int = 12, warnings: Iterable[str] = ()
) -> Path:
    """:func:`render_report` written to ``out_dir/report.html`` atomically; returns the path."""
    return write_text_atomic(
        render_report(ds, top=top, warnings=warnings), Path(out_dir) / "report.html"
    )

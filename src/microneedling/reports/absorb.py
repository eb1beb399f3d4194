"""The absorption report (``microneedling absorb``): the self-contained ``report.html`` with its
interactive charts, and the concentration maps and cumulative-absorption curves of the resolved
unit cell as PNG files (``figures/``, for print).

The numbers come from :mod:`microneedling.studies.absorb` (``absorption_table`` and the
``Resolved`` solutions); nothing here computes them. The page is a child of the one report shell
(:mod:`microneedling.reports.page`, ``templates/absorb.html.j2``); its charts are built by
:mod:`microneedling.reports.charts` (Plotly; the library inlined, so the file opens offline):
amounts per session and per layer with their 10–90% intervals over the parameter draws, and per
resolved case the r–z concentration maps and the cumulative curves.

API::

    plot_map(resolved, path, *, title) / plot_curves(resolved, path, *, title) -> Path   (PNG, atomic)
    amount_charts(table) / case_charts(resolved, index) -> list[Chart]                     (Plotly)
    write_report(out_dir, table, resolved, course_name, *, draws, seed) -> Path          (HTML, atomic)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.about import __version__
from microneedling.io import write_text_atomic
from microneedling.reports import charts, page
from microneedling.reports.figures import (
    LABEL_SIZE,
    PALETTE,
    TITLE_SIZE,
    label_box,
    new_figure,
    save_png,
    wrap,
)
from microneedling.reports.format import (
    field_label,
    field_units,
    format_day,
    format_field,
    format_number,
    human,
    yes_no,
)
from microneedling.studies.absorb import (
    ENGINE_LAYERS,
    KG_M2_TO_UG_CM2,
    SKIN_LAYER_NAMES,
    Resolved,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "amount_charts",
    "case_charts",
    "map_chart",
    "plot_curves",
    "plot_map",
    "render_report",
    "write_report",
]

UG = "µg/cm²"


# ----------------------------------------------------------------------------- figures
def _frames(rv: Resolved) -> list[int]:
    """Output indices shown on the map: about 30 min (or a quarter of the contact) and the end."""
    h = rv.hours
    early = int(np.searchsorted(h, min(0.5, 0.25 * h[-1])))
    return sorted({min(early, len(h) - 1), len(h) - 1})


def plot_map(rv: Resolved, path: str | Path, *, title: str | None = None) -> Path:
    """Concentration map (r–z, mirrored about the channel axis; log colour scale) at ~30 min and at
    the end of the contact time, with the layer boundaries and the channel outline. PNG, atomic.

    Layer names sit on dark boxes: they stay readable over the bright (yellow) end of the map."""
    from matplotlib.colors import LogNorm

    sol = rv.with_channel
    conc = sol.concentration
    if conc is None:
        raise ValueError("plot_map: the solution holds no concentration fields")
    rf = sol.r_faces * 1e6
    zf = sol.z_faces * 1e6
    xf = np.concatenate([-rf[::-1], rf[1:]])
    frames = _frames(rv)
    top = float(np.nanmax(conc[frames]))
    vmin = max(top * 1e-5, 1e-30)
    norm = LogNorm(vmin=vmin, vmax=max(top, 1e-29))
    fig = new_figure(5.4 * len(frames), 5.0)
    axes = fig.subplots(1, len(frames), squeeze=False)[0]
    c = rv.case
    a, d = c.channel_radius_um, c.channel_depth_um
    bounds = np.cumsum((0.0, *c.layers_um))
    for ax, k in zip(axes, frames, strict=True):
        field = conc[k]
        full = np.concatenate([field[:, ::-1], field], axis=1)
        mesh = ax.pcolormesh(
            xf, zf, np.maximum(full, vmin), norm=norm, cmap="magma", shading="flat"
        )
        for zb, name in zip(bounds[1:-1], SKIN_LAYER_NAMES[1:], strict=True):
            ax.axhline(zb, color="white", lw=0.8, ls="--")
            ax.text(
                xf[0] * 0.97,
                zb + 8,
                human(name),
                color="white",
                fontsize=7.5,
                va="top",
                bbox=label_box(),
            )
        ax.plot([-a, -a, a, a], [0, d, d, 0], color="cyan", lw=1.2, label="channel")
        ax.set_ylim(zf[-1], 0.0)
        ax.set_xlabel("Distance from the channel axis (µm), mirrored", fontsize=LABEL_SIZE)
        ax.set_ylabel("Depth below the surface (µm)", fontsize=LABEL_SIZE)
        ax.set_title(f"{format_number(rv.hours[k], 2)} h after application", fontsize=TITLE_SIZE)
        fig.colorbar(mesh, ax=ax, label="Tissue concentration (mg/mL)", shrink=0.85)
    fig.suptitle(
        wrap(title or f"{human(c.product)}: {c.label}", 90)
        + f"\n{c.puncture_density_cm2:.0f} channels/cm², {d:.0f} µm deep, radius {a:.0f} µm",
        fontsize=TITLE_SIZE,
    )
    return save_png(fig, Path(path))


def plot_curves(rv: Resolved, path: str | Path, *, title: str | None = None) -> Path:
    """Cumulative absorption over the contact time: total with channels (resolved and the engine's
    homogenised channel model, without the vehicle film) and through intact skin (left); per layer, with (solid) and without
    (dashed) channels (right, log scale). PNG, atomic."""
    u = KG_M2_TO_UG_CM2
    w, it, h = rv.with_channel, rv.intact, rv.hours
    fig = new_figure(11.5, 4.8)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(h, w.absorbed * u, color=PALETTE[0], lw=2, label="with channels (resolved)")
    ax1.plot(
        rv.homogenised_hours,
        rv.homogenised_curve,
        color=PALETTE[1],
        ls="-.",
        marker="o",
        ms=3,
        label="with channels (homogenised channel model)",
    )
    ax1.plot(h, it.absorbed * u, color=PALETTE[7], ls="--", label="intact skin (resolved)")
    ax1.set_xlabel("Time after application (h)", fontsize=LABEL_SIZE)
    ax1.set_ylabel(f"Absorbed ({UG})", fontsize=LABEL_SIZE)
    ax1.legend(fontsize=8, frameon=False)
    ax1.grid(alpha=0.3)
    q_r, q_h = w.absorbed[-1] * u, rv.homogenised_curve[-1]
    ax1.set_title(
        wrap(
            f"Total at {h[-1]:.3g} h: resolved {q_r:.3g}, homogenised {q_h:.3g} {UG} "
            f"({100 * (q_h - q_r) / q_r:+.1f}%)",
            60,
        ),
        fontsize=9,
    )
    floor = 1e-6 * max(float(w.absorbed[-1]) * u, 1e-30)
    series: list[tuple[str, np.ndarray, np.ndarray | None]] = [
        ("channel fluid", w.stored_channel, None)
    ]
    for j, name in enumerate(SKIN_LAYER_NAMES):
        series.append((human(name), w.absorbed_by_layer[:, j], it.absorbed_by_layer[:, j]))
    for i, (name, y_ch, y_in) in enumerate(series):
        col = PALETTE[i % len(PALETTE)]
        ax2.plot(h, np.maximum(y_ch * u, floor), color=col, lw=1.8, label=name)
        if y_in is not None:
            ax2.plot(h, np.maximum(y_in * u, floor), color=col, lw=1.0, ls="--")
    ax2.set_yscale("log")
    ax2.set_ylim(bottom=floor)
    ax2.set_xlabel("Time after application (h)", fontsize=LABEL_SIZE)
    ax2.set_ylabel(f"Stored + cleared ({UG})", fontsize=LABEL_SIZE)
    ax2.set_title("Per layer: solid with channels, dashed intact skin", fontsize=9)
    ax2.legend(fontsize=7, frameon=False)
    ax2.grid(alpha=0.3, which="both")
    c = rv.case
    fig.suptitle(wrap(title or f"{human(c.product)}: {c.label}", 100), fontsize=TITLE_SIZE)
    return save_png(fig, Path(path))


# ----------------------------------------------------------------------------- charts
def map_chart(rv: Resolved, k: int, cid: str) -> charts.Chart:
    """The r–z concentration map at output ``k`` as an interactive heatmap (mirrored about the
    channel axis, log colour scale with its units on the colour bar), the channel outline and the
    layer boundaries; layer names in white on dark boxes, readable on every colour of the map."""
    sol = rv.with_channel
    conc = sol.concentration
    if conc is None:
        raise ValueError("map_chart: the solution holds no concentration fields")
    rc = 0.5 * (sol.r_faces[1:] + sol.r_faces[:-1]) * 1e6
    zc = 0.5 * (sol.z_faces[1:] + sol.z_faces[:-1]) * 1e6
    x = np.concatenate([-rc[::-1], rc])
    field = conc[k]
    full = np.concatenate([field[:, ::-1], field], axis=1)
    c = rv.case
    a, d = c.channel_radius_um, c.channel_depth_um
    bounds = np.cumsum((0.0, *c.layers_um))
    hours = format_number(rv.hours[k], 2)
    return charts.heatmap_chart(
        cid,
        f"Concentration map {hours} h after application",
        x,
        zc,
        full,
        x_title="Distance from the channel axis (µm), mirrored",
        y_title="Depth below the surface (µm)",
        colour_title="Tissue concentration (mg/mL)",
        lines=[
            {"name": "channel", "x": [-a, -a, a, a], "y": [0.0, d, d, 0.0], "colour": "#00e5ff"}
        ],
        hlines=[float(zb) for zb in bounds[1:-1]],
        labels=[
            (float(x[0]), float(zb) + 4.0, human(name))
            for zb, name in zip(bounds[1:-1], SKIN_LAYER_NAMES[1:], strict=True)
        ],
        summary=(
            f"One channel {d:.0f} µm deep, radius {a:.0f} µm ({c.puncture_density_cm2:.0f} "
            f"channels/cm²), {hours} h after {human(c.product)} was applied; log colour scale."
        ),
    )


def case_charts(rv: Resolved, index: int) -> list[charts.Chart]:
    """The resolved unit cell of one case: concentration maps at about 30 min and at the end of
    the contact time, the cumulative amount absorbed (resolved with and without channels, and the
    engine's homogenised channel model) and the amount per layer (log scale)."""
    u = KG_M2_TO_UG_CM2
    w, it, h = rv.with_channel, rv.intact, rv.hours
    out = [map_chart(rv, k, f"chart-map-{index}-{j}") for j, k in enumerate(_frames(rv))]
    q_r, q_h = float(w.absorbed[-1]) * u, float(rv.homogenised_curve[-1])
    diff = f" ({100 * (q_h - q_r) / q_r:+.1f}%)" if q_r > 0 else ""
    out.append(
        charts.line_chart(
            f"chart-curves-{index}",
            "Cumulative amount absorbed",
            [
                charts.series("with channels (resolved)", h, w.absorbed * u),
                charts.series(
                    "with channels (homogenised channel model)",
                    rv.homogenised_hours,
                    rv.homogenised_curve,
                    dash="dashdot",
                    markers=True,
                ),
                charts.series(
                    "intact skin (resolved)", h, it.absorbed * u, dash="dash", colour=PALETTE[7]
                ),
            ],
            x_title="Time after application (h)",
            y_title=f"Absorbed ({UG})",
            units=UG,
            summary=(
                f"At {format_number(h[-1])} h: resolved {format_number(q_r)} {UG}, homogenised "
                f"channel model {format_number(q_h)} {UG}{diff}."
            ),
        )
    )
    floor = 1e-6 * max(q_r, 1e-30)
    lines = [charts.series("channel fluid", h, np.maximum(w.stored_channel * u, floor),
                           colour=PALETTE[0])]  # fmt: skip
    for j, name in enumerate(SKIN_LAYER_NAMES):
        colour = PALETTE[(j + 1) % len(PALETTE)]
        lines.append(charts.series(human(name), h, np.maximum(w.absorbed_by_layer[:, j] * u, floor),
                                   colour=colour, group=name))  # fmt: skip
        lines.append(charts.series(f"{human(name)}, intact skin", h,
                                   np.maximum(it.absorbed_by_layer[:, j] * u, floor),
                                   colour=colour, dash="dash", group=name))  # fmt: skip
    out.append(
        charts.line_chart(
            f"chart-layers-{index}",
            "Amount per layer: solid with channels, dashed intact skin",
            lines,
            x_title="Time after application (h)",
            y_title=f"Stored + cleared ({UG}, log scale)",
            units=UG,
            log_y=True,
            summary="Amount stored in or cleared from each layer (and the channel fluid) over "
            "the contact time.",
        )
    )
    return out


def _has(table: pd.DataFrame, col: str) -> bool:
    return f"{col}_low" in table.columns and f"{col}_high" in table.columns


def amount_charts(table: pd.DataFrame) -> list[charts.Chart]:
    """Per session: the amount absorbed with channels and through intact skin (the engine with its
    10–90% interval over the parameter draws as error bars; the resolved cell beside it when run)
    and the engine's amount per entry layer."""
    sessions = [_session(r) for _, r in table.iterrows()]

    def group(name: str, col: str) -> dict[str, Any]:
        central = f"{col}_median" if f"{col}_median" in table.columns else col
        g: dict[str, Any] = {"name": name, "values": table[central].to_numpy(float)}
        if _has(table, col):
            g["low"] = table[f"{col}_low"].to_numpy(float)
            g["high"] = table[f"{col}_high"].to_numpy(float)
        return g

    groups = [group("with channels (engine)", "absorbed_ug_cm2"),
              group("intact skin (engine)", "intact_ug_cm2")]  # fmt: skip
    if "resolved_absorbed_ug_cm2" in table.columns:
        groups += [group("with channels (resolved)", "resolved_absorbed_ug_cm2"),
                   group("intact skin (resolved)", "resolved_intact_ug_cm2")]  # fmt: skip
    values = np.concatenate([g["values"] for g in groups])
    log = bool(np.all(np.isfinite(values) & (values > 0)))
    drawn = _has(table, "absorbed_ug_cm2")
    band = (
        " Bars: the median over the parameter draws; error bars: their 10–90% interval."
        if drawn
        else ""
    )
    absorbed = charts.bar_chart(
        "chart-absorbed",
        "Absorbed during the contact time, with channels and through intact skin",
        sessions,
        groups,
        x_title="Session",
        y_title=f"Absorbed ({UG}{', log scale' if log else ''})",
        units=UG,
        log=log,
        summary="The engine's homogenised model"
        + (" beside the resolved unit cell" if len(groups) > 2 else "")
        + "."
        + band,
    )
    layers = [human(n) for n in ENGINE_LAYERS]
    per_layer = []
    for i, (_, r) in enumerate(table.iterrows()):
        tag = "_median" if "absorbed_epidermis_ug_cm2_median" in table.columns else ""
        g: dict[str, Any] = {
            "name": sessions[i],
            "values": [float(r[f"absorbed_{n}_ug_cm2{tag}"]) for n in ENGINE_LAYERS],
        }
        if all(_has(table, f"absorbed_{n}_ug_cm2") for n in ENGINE_LAYERS):
            g["low"] = [float(r[f"absorbed_{n}_ug_cm2_low"]) for n in ENGINE_LAYERS]
            g["high"] = [float(r[f"absorbed_{n}_ug_cm2_high"]) for n in ENGINE_LAYERS]
        per_layer.append(g)
    by_layer = charts.bar_chart(
        "chart-absorbed-layers",
        "Absorbed per entry layer (engine)",
        layers,
        per_layer,
        x_title="Entry layer",
        y_title=f"Absorbed ({UG})",
        units=UG,
        summary="Amount by the layer it entered, per session (the epidermis includes the "
        "intact-skin route)." + band,
    )
    return [absorbed, by_layer]


# ----------------------------------------------------------------------------- report
def _num(v: Any) -> str:
    """An amount or ratio (∞ where the engine has no intact-skin path)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "—"
    if math.isinf(x) and x < 0:
        return "—"
    return format_number(x)


def banded_cell(
    row: Mapping[str, Any], col: str, fmt: Callable[[Any], str] = _num
) -> dict[str, Any]:
    """A value with its 10–90% interval (when the table has one) below it. With draws the value
    is their median, inside its interval, and the value at the median parameters (the nominal
    run, which with few draws can lie outside the interval) is shown on a line below the interval
    (the cell's interval keeps its line breaks: report.css)."""
    lo, hi, med = row.get(f"{col}_low"), row.get(f"{col}_high"), row.get(f"{col}_median")
    if lo is None or hi is None:
        return page.cell(fmt(row.get(col)))
    iv = f"[{fmt(lo)}–{fmt(hi)}]"
    if med is None:  # a table written before the median was
        return page.cell(fmt(row.get(col)), interval=iv)
    return page.cell(fmt(med), interval=f"{iv}\n{fmt(row.get(col))} {AT_MEDIAN}")


AT_MEDIAN = "at the median parameters"
"""How a nominal value is named beside the median over the draws."""

BANDS = (
    "A value is the median over the parameter draws; below it, its 10–90% interval over the "
    f"draws, then the value {AT_MEDIAN} (the posterior's centre, one run), which with few draws "
    "can lie outside the interval."
)
"""The amount tables' caption."""


def _cell(row: Mapping[str, Any], col: str) -> dict[str, Any]:
    return banded_cell(row, col)


def _session(row: Mapping[str, Any]) -> str:
    return f"{human(row['site'])}, session {row['session']} (day {format_day(row['day'])})"


def _amounts(table: pd.DataFrame, resolved: bool) -> dict[str, Any]:
    columns = [
        page.column("Session"),
        page.column("Product"),
        page.column("Dose applied", UG, num=True),
        page.column("Absorbed, engine", UG, num=True),
        page.column("Intact skin, engine", UG, num=True),
        page.column("Enhancement ratio, engine", num=True),
    ]
    if resolved:
        columns += [
            page.column("Absorbed, resolved", UG, num=True),
            page.column("Of which in the stratum corneum", UG, num=True),
            page.column("Intact skin, resolved", UG, num=True),
            page.column("Enhancement ratio, resolved", num=True),
            page.column("Channel model vs resolved", "%", num=True),
        ]
    rows = []
    for _, r in table.iterrows():
        cells: list[Any] = [
            _session(r),
            human(r["product"]),
            _num(r["dose_ug_cm2"]),
            _cell(r, "absorbed_ug_cm2"),
            _cell(r, "intact_ug_cm2"),
            _cell(r, "enhancement_ratio"),
        ]
        if resolved:
            cells += [
                _num(r["resolved_absorbed_ug_cm2"]),
                _num(r["resolved_sc_ug_cm2"]),
                _num(r["resolved_intact_ug_cm2"]),
                _num(r["resolved_enhancement_ratio"]),
                f"{float(r['difference_pct']):+.1f}",
            ]
        rows.append(cells)
    return page.table(columns, rows, label="Absorbed during the contact time")


def _layers(table: pd.DataFrame, resolved: bool) -> dict[str, Any]:
    columns = [page.column("Session")]
    columns += [
        page.column(f"Engine: {human(n)}" + (" (incl. intact-skin route)" if i == 0 else ""), UG,
                    num=True)
        for i, n in enumerate(ENGINE_LAYERS)
    ]  # fmt: skip
    if resolved:
        columns += [
            page.column(f"Resolved: {human(n)}", UG, num=True) for n in SKIN_LAYER_NAMES[1:]
        ]
        columns += [page.column("Resolved: channel fluid", UG, num=True)]
    rows = []
    for _, r in table.iterrows():
        cells: list[Any] = [_session(r)]
        cells += [_cell(r, f"absorbed_{n}_ug_cm2") for n in ENGINE_LAYERS]
        if resolved:
            cells += [_num(r[f"resolved_{n}_ug_cm2"]) for n in SKIN_LAYER_NAMES[1:]]
            cells += [_num(r["resolved_channel_ug_cm2"])]
        rows.append(cells)
    return page.table(columns, rows, label="Absorbed per layer")


def _settings(table: pd.DataFrame) -> dict[str, Any]:
    fields = (
        "concentration_mg_ml",
        "volume_ul_cm2",
        "contact_hours",
        "occluded",
        "needle_length_mm",
        "puncture_density_cm2",
        "channel_depth_um",
        "channel_radius_um",
    )
    columns = [page.column("Session"), page.column("Product")]
    columns += [page.column(field_label(f), field_units(f), num=f != "occluded") for f in fields]
    rows = []
    for _, r in table.iterrows():
        cells: list[Any] = [_session(r), human(r["product"])]
        for f in fields:
            v = r[f]
            cells.append(yes_no(v) if f == "occluded" else _setting(f, v))
        rows.append(cells)
    return page.table(columns, rows, label="Session settings")


def _setting(field: str, v: Any) -> str:
    # inputs as written (0.5 mm, 6 h); channel geometry computed: significant digits
    if field in ("puncture_density_cm2", "channel_depth_um", "channel_radius_um"):
        return format_number(v)
    return format_field(field, float(v)).split(" ")[0]


def render_report(
    table: pd.DataFrame,
    resolved: Iterable[Resolved] | Mapping[Any, Resolved],
    course_name: str,
    *,
    draws: int | None = None,
    seed: int | None = None,
) -> str:
    """The absorption report as one self-contained HTML string (see :func:`write_report`)."""
    has_resolved = "resolved_absorbed_ug_cm2" in table.columns
    intervals = "absorbed_ug_cm2_low" in table.columns
    cases = list(resolved.values() if isinstance(resolved, Mapping) else resolved)
    amounts_charts = amount_charts(table) if len(table) else []
    per_case = [case_charts(rv, i) for i, rv in enumerate(cases)]
    groups = [
        {"label": f"{human(rv.case.product)}: {rv.case.label}", "charts": cs}
        for rv, cs in zip(cases, per_case, strict=True)
    ]
    provenance: list[tuple[str, Any]] = [
        ("Report written by", f"microneedling {__version__}"),
        ("Topical sessions", len(table)),
        ("Resolved unit cell", "yes" if has_resolved else "no"),
    ]
    if draws is not None:
        provenance.append(("Parameter draws", draws))
    if seed is not None:
        provenance.append(("Random seed", seed))
    html = page.render(
        "absorb.html.j2",
        kind="Absorption report",
        title=course_name,
        subtitle="Topical absorption per session: the engine's homogenised model"
        + (" beside the resolved unit cell" if has_resolved else ""),
        toc=[
            ("amounts", "Absorbed"),
            ("layers", "Per layer"),
            ("settings", "Session settings"),
            ("figures", "Maps and curves"),
            ("provenance", "Provenance"),
        ],
        provenance=page.kv(provenance),
        amounts=_amounts(table, has_resolved),
        layers=_layers(table, has_resolved),
        settings=_settings(table),
        resolved=has_resolved,
        intervals=intervals,
        amount_charts=amounts_charts,
        figures=groups,
        **charts.context([*amounts_charts, *(c for cs in per_case for c in cs)]),
    )
    return charts.embed_library(html)


def write_report(
    out_dir: str | Path,
    table: pd.DataFrame,
    resolved: Iterable[Resolved] | Mapping[Any, Resolved],
    course_name: str,
    *,
    draws: int | None = None,
    seed: int | None = None,
) -> Path:
    """A self-contained ``report.html`` (interactive charts, the chart library inlined) with the
    disclaimer, written atomically into ``out_dir``. ``resolved``: the resolved unit cells of the
    table's sessions (``absorption_table``'s second value; empty without ``--resolved``)."""
    html = render_report(table, resolved, course_name, draws=draws, seed=seed)
    return write_text_atomic(html, Path(out_dir) / "report.html")

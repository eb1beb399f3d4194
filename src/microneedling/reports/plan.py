"""Planner outputs: the Pareto plot (PNG), the plan report (self-contained HTML) and the run directory.

``write_plan_directory`` writes, atomically: ``course.toml`` (the recommended plan, a course file
that ``microneedling simulate`` runs unchanged), ``pareto.png``, ``pareto.csv``, ``predictions.csv``
(the recommended plan's end points with 10–90% intervals), ``screening.txt`` and ``report.html``
(a child of the one report shell, :mod:`microneedling.reports.page`, ``templates/plan.html.j2``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from microneedling.about import DISCLAIMER, __version__
from microneedling.engine.endpoints import parse_endpoint
from microneedling.errors import InputError
from microneedling.io import atomic_directory, write_bytes_atomic, write_text_atomic
from microneedling.reports import charts, page
from microneedling.reports.figures import LABEL_SIZE, TITLE_SIZE, new_figure, png_bytes
from microneedling.reports.format import (
    endpoint_label,
    format_day,
    format_interval,
    format_number,
    human,
    pretty_units,
)
from microneedling.studies.planning.search import Plan, PlanResult

__all__ = [
    "pareto_figure",
    "pareto_png",
    "pareto_points",
    "pareto_rows",
    "report_html",
    "write_plan_directory",
]


def pareto_png(result: PlanResult) -> bytes:
    """Improvement score vs total downtime, one colour per number of sessions; the recommended plan
    is the star. PNG bytes."""
    from matplotlib import colormaps

    fig = new_figure(7.4, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    plans = result.pareto
    sessions = sorted({p.n_sessions for p in plans})
    colours = colormaps["viridis"]
    for j, n in enumerate(sessions):
        sub = [p for p in plans if p.n_sessions == n]
        ax.scatter(
            [p.total_downtime_days for p in sub],
            [p.score for p in sub],
            color=colours(j / max(1, len(sessions) - 1)),
            label=f"{n} session{'s' if n > 1 else ''}",
            s=30,
            zorder=2,
        )
    rec = result.recommended
    ax.scatter(
        [rec.total_downtime_days],
        [rec.score],
        marker="*",
        s=320,
        facecolor="none",
        edgecolor="crimson",
        linewidth=1.6,
        label="recommended",
        zorder=3,
    )
    ax.set_xlabel("Total downtime over the course (d)", fontsize=LABEL_SIZE)
    ax.set_ylabel("Weighted normalised improvement (1 = best in the search)", fontsize=LABEL_SIZE)
    ax.set_title(
        f"Pareto set: {len(plans)} plans of {result.n_plans} feasible", fontsize=TITLE_SIZE
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return png_bytes(fig)


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def pareto_rows(result: PlanResult) -> list[dict[str, Any]]:
    """One row per Pareto plan (the table of ``pareto.csv``)."""
    out = []
    for p in result.pareto:
        out.append(
            {
                "recommended": p.recommended,
                "device": p.device,
                "topical": p.topical or "",
                "sessions": p.n_sessions,
                "interval_days": p.interval_days,
                "needle_length_mm": "; ".join(f"{s}={v:g}" for s, v in p.lengths_mm.items()),
                "passes": "; ".join(f"{s}={v}" for s, v in p.passes.items()),
                "score": round(p.score, 4),
                "total_downtime_days": round(p.total_downtime_days, 2),
                "max_session_downtime_days": round(max(p.downtime_per_session), 2),
                "max_pih_risk": round(p.max_pih_risk, 4),
            }
        )
    return out


# ----------------------------------------------------------------------------- page data
def _per_site(values: dict[str, Any], fmt: str = "{:g}") -> str:
    return ", ".join(f"{human(s)} {fmt.format(v)}" for s, v in values.items())


def _recommended(result: PlanResult) -> list[tuple[str, str]]:
    rec = result.recommended
    items: list[tuple[str, Any]] = [
        ("Device", human(rec.device)),
        ("Sessions", rec.n_sessions),
    ]
    if rec.n_sessions > 1:
        items.append(("Interval between sessions", f"{rec.interval_days} d"))
    items += [
        ("Needle length", _per_site(rec.lengths_mm, "{:g} mm")),
        ("Passes", _per_site(rec.passes, "{}")),
        ("Topical", human(rec.topical) if rec.topical else "none"),
        ("Total downtime", f"{format_number(rec.total_downtime_days)} d"),
        ("Worst session downtime", f"{format_number(max(rec.downtime_per_session))} d"),
        (
            "Worst-session PIH risk",
            f"{format_number(rec.max_pih_risk)} (limit {format_number(result.pih_limit)})",
        ),
        ("Score", f"{rec.score:.3f} (1 = the best the search offers for every concern)"),
    ]
    return page.kv(items)


def _weights(result: PlanResult) -> dict[str, Any]:
    rec = result.recommended
    columns = [
        page.column("Site"),
        page.column("Concern (end point)"),
        page.column("Weight", num=True, note="normalised concern weight"),
        page.column("Full improvement at", num=True, note="the value each end point is divided by"),
        page.column("Predicted (nominal)", num=True),
        page.column("Units"),
    ]
    rows = [
        [
            human(s),
            page.cell(endpoint_label(t), title=t),
            format_number(result.weights[s][t]),
            format_number(result.normalisers[s][t]),
            format_number(rec.concern_values[s][t]),
            _units(t),
        ]
        for s in result.weights
        for t in result.weights[s]
    ]
    return page.table(columns, rows, label="Concern weights")


def _units(endpoint: str) -> str:
    try:
        return pretty_units(parse_endpoint(endpoint).units)
    except InputError:
        return ""


def _predictions(predictions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    columns = [
        page.column("Site"),
        page.column("End point"),
        page.column("Value", num=True),
        page.column("10–90% interval", num=True),
        page.column("Units"),
    ]
    rows = [
        [
            human(r["site"]),
            page.cell(endpoint_label(r["endpoint"]), title=str(r["endpoint"])),
            format_number(r["value"]),
            format_interval(r["low"], r["high"]) or "—",
            pretty_units(r["units"]),
        ]
        for r in predictions
    ]
    return page.table(columns, rows, label="Predicted end points")


def _alternative(p: Plan) -> dict[str, Any]:
    cells = [
        "★ yes" if p.recommended else "no",
        human(p.device),
        human(p.topical) if p.topical else "none",
        str(p.n_sessions),
        format_day(p.interval_days) if p.n_sessions > 1 else "—",
        _per_site(p.lengths_mm),
        _per_site(p.passes, "{}"),
        f"{p.score:.3f}",
        format_number(p.total_downtime_days),
        format_number(max(p.downtime_per_session)),
        format_number(p.max_pih_risk),
    ]
    return {"cells": cells, "highlight": p.recommended}


def _alternatives(result: PlanResult) -> dict[str, Any]:
    columns = [
        page.column("Recommended"),
        page.column("Device"),
        page.column("Topical"),
        page.column("Sessions", num=True),
        page.column("Interval", "d", num=True),
        page.column("Needle length", "mm"),
        page.column("Passes"),
        page.column("Score", num=True),
        page.column("Total downtime", "d", num=True),
        page.column("Worst session downtime", "d", num=True),
        page.column("Worst-session PIH risk", num=True),
    ]
    return page.table(
        columns, [_alternative(p) for p in result.pareto], label="Pareto set of plans"
    )


def pareto_points(result: PlanResult) -> list[dict[str, Any]]:
    """The Pareto plans as points of :func:`microneedling.reports.charts.pareto_chart` (index in
    ``result.pareto``, total downtime, score, sessions, a one-line label, recommended or not)."""
    return [
        {"index": i, "downtime": p.total_downtime_days, "score": p.score,
         "sessions": p.n_sessions, "label": p.summary(), "recommended": p.recommended}
        for i, p in enumerate(result.pareto)
    ]  # fmt: skip


def pareto_figure(result: PlanResult) -> charts.Chart:
    """The interactive Pareto chart of the report (the same chart as the web plan page)."""
    return charts.pareto_chart(
        "chart-pareto",
        f"Pareto set: {len(result.pareto)} plans of {result.n_plans} that meet the limits",
        pareto_points(result),
        summary="Each point is a plan no other plan beats on improvement, downtime and number "
        "of sessions; the star is the recommended plan.",
    )


def report_html(
    result: PlanResult, predictions: Sequence[dict[str, Any]], pareto: bytes | None
) -> str:
    """The plan report: why this plan, what to expect, the alternatives (the Pareto set as an
    interactive chart, the library inlined: the file opens offline), the screening. ``pareto``:
    the static figure's PNG, or ``None`` for a report without figures."""
    p = result.patient
    provenance = page.kv(
        [
            ("Report written by", f"microneedling {__version__}"),
            ("Search", f"{result.method}, {result.elapsed_s:.1f} s"),
            ("Candidate site courses simulated", result.n_simulated),
            ("Complete feasible plans compared", result.n_plans),
            ("Plans in the Pareto set", len(result.pareto)),
            ("Patient seed (prediction draws)", p.seed),
        ]
    )
    chart = pareto_figure(result) if pareto is not None else None
    html = page.render(
        "plan.html.j2",
        kind="Treatment plan",
        title=f"Treatment plan: {p.name}",
        subtitle=result.recommended.summary(),
        toc=[
            ("recommended", "Recommended plan"),
            ("why", "Why this plan"),
            ("predictions", "Predicted end points"),
            ("alternatives", "Alternatives"),
            ("screening", "Screening"),
            ("provenance", "Provenance"),
        ],
        provenance=provenance,
        recommended=_recommended(result),
        warnings=result.warnings(),
        explanation=list(result.explanation),
        weights=_weights(result),
        predictions=_predictions(predictions),
        pareto=chart,
        alternatives=_alternatives(result),
        findings=[f.text() for f in result.screening.findings],
        notes=list(result.notes),
        **charts.context([chart]),
    )
    return charts.embed_library(html)


def write_plan_directory(
    result: PlanResult,
    predictions: Sequence[dict[str, Any]],
    out: str | Path,
    *,
    overwrite: bool = False,
    figures: bool = True,
) -> list[Path]:
    """Write the plan's files into ``out`` atomically; returns the paths written."""
    out = Path(out)
    png = pareto_png(result) if figures else None
    with atomic_directory(out, overwrite=overwrite) as tmp:
        written = [write_text_atomic(result.recommended.course.to_toml(), tmp / "course.toml")]
        if png is not None:
            written.append(write_bytes_atomic(png, tmp / "pareto.png"))
        written.append(write_text_atomic(_csv(pareto_rows(result)), tmp / "pareto.csv"))
        written.append(write_text_atomic(_csv(list(predictions)), tmp / "predictions.csv"))
        lines = [f.text() for f in result.screening.findings] or ["no findings"]
        written.append(
            write_text_atomic(
                "\n".join([*lines, "", f"NOTE: {DISCLAIMER}"]) + "\n", tmp / "screening.txt"
            )
        )
        written.append(
            write_text_atomic(report_html(result, predictions, png), tmp / "report.html")
        )
    return [out / p.relative_to(tmp) for p in written]

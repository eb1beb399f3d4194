"""Planner outputs: the Pareto plot (PNG), the plan report (self-contained HTML) and the run directory.

``write_plan_directory`` writes, atomically: ``course.toml`` (the recommended plan, a course file
that ``microneedling simulate`` runs unchanged), ``pareto.png``, ``pareto.csv``, ``predictions.csv``
(the recommended plan's end points with 10–90% intervals), ``screening.txt`` and ``report.html``.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from microneedling.about import DISCLAIMER, __version__
from microneedling.io import atomic_directory, write_bytes_atomic, write_text_atomic
from microneedling.reports.run import _e, format_number
from microneedling.studies.planning.search import PlanResult

__all__ = ["pareto_png", "report_html", "write_plan_directory"]


def pareto_png(result: PlanResult) -> bytes:
    """Improvement score vs total downtime, one colour per number of sessions; the recommended plan
    is the star. PNG bytes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    plans = result.pareto
    sessions = sorted({p.n_sessions for p in plans})
    from matplotlib import colormaps

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
    ax.set_xlabel("total downtime over the course (d)")
    ax.set_ylabel("weighted normalised improvement (1 = best in the search)")
    ax.set_title(f"Pareto set: {len(plans)} plans of {result.n_plans} feasible", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.text(
        0.5,
        0.005,
        f"Model estimate, not medical advice · microneedling {__version__}",
        ha="center",
        va="bottom",
        fontsize=7,
        color="0.35",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def pareto_rows(result: PlanResult) -> list[dict[str, Any]]:
    """One row per Pareto plan (the table of ``pareto.csv`` and of the report)."""
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


def _table(rows: Sequence[dict[str, Any]], highlight: str | None = None) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{_e(k)}</th>" for k in rows[0])
    body = []
    for r in rows:
        cls = ' class="rec"' if highlight and r.get(highlight) else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(v)}</td>" for v in r.values()) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
tr.rec{background:#fde8e8;font-weight:600}
.disclaimer{background:#fff6d6;border:1px solid #e0c060;padding:.7em 1em;font-weight:600}
.warn{background:#fde8e8;border-left:4px solid #c33;padding:.4em .8em;margin:.3em 0}
img{max-width:100%}
"""


def report_html(
    result: PlanResult, predictions: Sequence[dict[str, Any]], pareto: bytes | None
) -> str:
    """The plan report: why this plan, what to expect, the alternatives, the screening."""
    rec = result.recommended
    p = result.patient
    warnings = result.warnings()
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Treatment plan: {_e(p.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Treatment plan: {_e(p.name)}</h1>",
        f"<p class='disclaimer'>{_e(DISCLAIMER)} This plan is a model estimate to discuss with "
        "a qualified practitioner; it is not a diagnosis, a prescription or medical advice.</p>",
        "<h2>Recommended plan</h2>",
        f"<p><b>{_e(rec.summary())}</b></p>",
        f"<p>Predicted total downtime {format_number(rec.total_downtime_days)} d "
        f"(worst session {format_number(max(rec.downtime_per_session))} d); worst-session PIH "
        f"risk {format_number(rec.max_pih_risk)} (limit {format_number(result.pih_limit)}); "
        f"score {rec.score:.3f} (1 = the best the search space offers for every concern).</p>",
    ]
    if warnings:
        parts.append("<h2>Warnings</h2>")
        parts += [f"<div class='warn'>{_e(w)}</div>" for w in warnings]
    parts.append("<h2>Why this plan</h2><ul>")
    parts += [f"<li>{_e(x)}</li>" for x in result.explanation]
    parts.append(
        "</ul><p>Concern weights (normalised) and the value each end point is divided by:</p>"
    )
    wrows = [
        {
            "site": s,
            "end point": t,
            "weight": round(result.weights[s][t], 3),
            "normaliser": format_number(result.normalisers[s][t]),
            "predicted (nominal)": format_number(rec.concern_values[s][t]),
        }
        for s in result.weights
        for t in result.weights[s]
    ]
    parts.append(_table(wrows))
    parts.append("<h2>Predicted end points of the recommended plan</h2>")
    prow = [
        {
            "site": r["site"],
            "end point": r["endpoint"],
            "value": format_number(r["value"]),
            "10–90% interval": f"{format_number(r['low'])} – {format_number(r['high'])}",
            "units": r["units"],
        }
        for r in predictions
    ]
    parts.append(_table(prow))
    parts.append(
        "<p>Intervals: 10th–90th percentile over parameter draws (prior or calibrated intervals "
        "of the parameter files); they do not include the spread between real patients.</p>"
    )
    parts.append("<h2>Alternatives: the Pareto set</h2>")
    if pareto is not None:
        b64 = base64.b64encode(pareto).decode("ascii")
        parts.append(f"<img alt='Pareto plot' src='data:image/png;base64,{b64}'>")
    parts.append(
        "<p>Improvement vs total downtime vs number of sessions: no plan below is beaten on all "
        "three by another feasible plan. The recommended one (highlighted) scores highest.</p>"
    )
    parts.append(_table(pareto_rows(result), highlight="recommended"))
    parts.append("<h2>Screening</h2>")
    if result.screening.findings:
        parts += [f"<div class='warn'>{_e(f.text())}</div>" for f in result.screening.findings]
    else:
        parts.append("<p>No contraindication in the questionnaire answers.</p>")
    parts.append(
        "<p>Rules: <code>data/contraindications.toml</code> (classification, source, and whether "
        "the classification is a judgement); site needle limits: "
        "<code>data/parameters/safety.toml</code>.</p>"
    )
    if result.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in result.notes))
        parts.append("</ul>")
    parts.append(
        f"<h2>Search</h2><p>{result.n_simulated} candidate site courses simulated in batches, "
        f"{result.n_plans} complete feasible plans compared ({result.method} search, "
        f"{result.elapsed_s:.1f} s). microneedling {__version__}.</p>"
    )
    parts.append(f"<p class='disclaimer'>{_e(DISCLAIMER)}</p></body></html>")
    return "\n".join(parts)


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

"""The credibility report and the validation tables, rendered from the data the studies return.

* :func:`render_html` / :func:`write_report`: the self-contained HTML page of
  :func:`microneedling.studies.credibility.report.build_report` (context of use, code verification,
  calibration, validation with its figure, Sobol indices, limits), written with
  ``credibility.json`` through an atomic directory.
* :func:`validation_table`: the plain-text table of the held-out literature rows
  (:func:`microneedling.studies.credibility.validate.validate`), printed by ``microneedling
  validate``.
* :func:`delivery_table`: the markdown table of the transport's delivery validation
  (:func:`microneedling.studies.credibility.delivery.predict`), printed by ``microneedling validate
  --delivery`` (the table of ``docs/transport.md``).

Nothing here runs the model.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from microneedling.io import atomic_directory
from microneedling.studies.credibility.delivery import Prediction
from microneedling.studies.credibility.validate import Validation

__all__ = ["delivery_table", "render_html", "validation_table", "write_report"]


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, str):
        return html.escape(x)
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return html.escape(str(x))


def _table(head: Sequence[str], body: Sequence[Sequence[Any]], classes: Sequence[str] = ()) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    rows = []
    for i, r in enumerate(body):
        cls = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>")
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _svg_validation(rows: list[dict[str, Any]]) -> str:
    """Observed vs predicted (normalised by the tolerance) with the 80% interval, one line per row."""
    ev = [r for r in rows if r["status"] != "not evaluated"]
    if not ev:
        return ""
    W, rh, left = 720, 18, 230
    H = rh * len(ev) + 40
    x0, x1 = left, W - 20
    lim = 4.0

    def X(v: float) -> float:
        return x0 + (max(-lim, min(lim, v)) + lim) / (2 * lim) * (x1 - x0)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-size="11">']
    for k in (-1, 0, 1):
        parts.append(
            f'<line x1="{X(k)}" y1="10" x2="{X(k)}" y2="{H - 25}" stroke="#bbb" stroke-dasharray="3,3"/>'
        )
    for i, r in enumerate(ev):
        y = 20 + i * rh
        tol = r["tolerance"] or 1.0

        def n(v: Any, tol: float = tol, obs: float = r["observed"]) -> float:
            if v is None or isinstance(v, str):
                return lim if v == "inf" else -lim if v == "-inf" else math.nan
            return (float(v) - obs) / tol

        colour = "#2a7" if r["status"] == "pass" else "#c33"
        lo, hi, p = n(r["low"]), n(r["high"]), n(r["predicted"])
        parts.append(f'<text x="5" y="{y + 4}">{html.escape(r["key"])}</text>')
        if math.isfinite(lo) and math.isfinite(hi):
            parts.append(
                f'<line x1="{X(lo)}" y1="{y}" x2="{X(hi)}" y2="{y}" stroke="{colour}" stroke-width="3" opacity="0.4"/>'
            )
        if math.isfinite(p):
            parts.append(
                f'<circle cx="{X(p)}" cy="{y}" r="4" fill="{colour}"><title>{html.escape(r["key"])}: model {p:+.2f} tolerances from observed</title></circle>'
            )
    parts.append(
        f'<text x="{X(0) - 60}" y="{H - 8}">(model − observed) / tolerance (clipped at ±{lim:g})</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page (no external assets) of :func:`build_report`'s output."""
    cal, val, sens, ver = (
        report["calibration"],
        report["validation"],
        report["sensitivity"],
        report["code_verification"],
    )
    disc = f'<p class="disclaimer">{html.escape(report["disclaimer"])}</p>'
    s: list[str] = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(report['title'])}</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}",
        "tr.miss{background:#fde8e8}tr.pass{background:#eaf7ee}tr.ne{background:#f2f2f2}.disclaimer{background:#fff4d6;padding:.6em;border-left:4px solid #e0a800}",
        "</style></head><body>",
        f"<h1>{html.escape(report['title'])}</h1>",
        disc,
        f"<p>microneedling {html.escape(report['microneedling_version'])}; parameter set {html.escape(report['parameter_set_hash'])}; "
        f"calibration {html.escape(cal['version'])}.</p>",
        "<h2>1. Context of use</h2>",
        f"<p>{html.escape(report['context_of_use'])}</p>",
        "<h2>2. Code verification</h2>",
    ]
    if ver.get("status") == "ran":
        checks = ver["checks"]
        n_ok = sum(bool(c["passed"]) for c in checks)
        s.append(
            f"<p>{n_ok}/{len(checks)} verification checks passed ({ver['seconds']} s, run in "
            "process against exact or reference solutions).</p>"
        )
        s.append(
            _table(
                [
                    "check",
                    "verifies",
                    "measured quantity",
                    "measured",
                    "expected",
                    "tolerance",
                    "exact solution",
                    "result",
                    "detail",
                ],
                [
                    [
                        c["name"],
                        c["verifies"],
                        c["quantity"],
                        c["measured"],
                        c["expected"],
                        c["tolerance"],
                        c["exact_solution"],
                        "pass" if c["passed"] else "FAIL",
                        c["detail"],
                    ]
                    for c in checks
                ],
                ["pass" if c["passed"] else "miss" for c in checks],
            )
        )
    else:
        s.append(f"<p>Not run: {html.escape(str(ver.get('reason', ver.get('status'))))}.</p>")
    s += [
        "<h2>3. Calibration</h2>",
        f"<p>{html.escape(cal['method'])}. {cal['iterations']} iterations, χ² = {_fmt(cal['chi2'])}, condition number of the "
        f"weighted Jacobian {_fmt(cal['condition_number'])}. Reproduces the shipped calibration: "
        f"<b>{'yes' if cal['reproduces_shipped'] else 'NO'}</b> (shipped {html.escape(str(cal['shipped_version']))}).</p>",
        _table(
            ["row", "observed", "SE", "SE from", "model", "residual", "residual / SE"],
            [
                [
                    r["key"],
                    r["observed"],
                    r["se"],
                    r["se_rule"],
                    r["predicted"],
                    r["residual"],
                    r["normalised_residual"],
                ]
                for r in cal["rows"]
            ],
        ),
        _table(
            ["coordinate", "members", "posterior mean", "5%", "95%", "sd(log)"],
            [
                [p["label"], ", ".join(p["members"]), p["value"], p["low"], p["high"], p["sd_log"]]
                for p in cal["parameters"]
            ],
        ),
        "<p>Posterior correlations (log space):</p>",
        _table(
            ["", *[p["label"] for p in cal["parameters"]]],
            [
                [p["label"], *row]
                for p, row in zip(cal["parameters"], cal["correlation"], strict=True)
            ],
        ),
        "<h2>4. Validation</h2>",
        f"<p><b>{val['n_pass']}/{val['n_evaluated']}</b> evaluated rows within tolerance; "
        f"{val['n_rows'] - val['n_evaluated']} not evaluated. Coverage of the "
        f"{val['interval_percentiles'][0]:g}–{val['interval_percentiles'][1]:g}% prediction interval "
        f"({val['draws']} parameter draws): <b>{val['n_covered']}/{val['n_evaluated']}</b> = {_fmt(val['coverage'], 2)} "
        "(a well-calibrated 80% interval covers about 80%). Misses are listed, not hidden.</p>",
        _svg_validation(val["rows"]),
        _table(
            [
                "row",
                "quantity",
                "sources",
                "evidence",
                "observed",
                "tolerance",
                "bound",
                "model",
                "10%",
                "90%",
                "units",
                "result",
                "covered",
                "stand-ins / reason",
            ],
            [
                [
                    r["key"],
                    r["quantity"],
                    ", ".join(r["sources"]),
                    r["evidence"],
                    r["observed"],
                    r["tolerance"],
                    r["bound"],
                    r["predicted"],
                    r["low"],
                    r["high"],
                    r["units"],
                    r["status"],
                    "–" if r["covered"] is None else "yes" if r["covered"] else "no",
                    r["assumptions"],
                ]
                for r in val["rows"]
            ],
            [
                "pass"
                if r["status"] == "pass"
                else "ne"
                if r["status"] == "not evaluated"
                else "miss"
                for r in val["rows"]
            ],
        ),
        "<h2>5. Global sensitivity (Sobol indices)</h2>",
    ]
    if "endpoints" in sens:
        s.append(
            f"<p>{html.escape(sens['engine'])}; course <code>{html.escape(sens['course'])}</code>; N = {sens['n_base']} base samples, "
            f"{sens['n_factors']} parameters (independent marginals from their intervals). Three largest total indices per end point:</p>"
        )
        body = []
        for label, e in sens["endpoints"].items():
            for t in e["top"]:
                body.append([label, e["endpoint"], t["parameter"], t["ST"], t["ST_conf"], t["S1"]])
        s.append(_table(["end point", "spec", "parameter", "ST", "ST 95% conf.", "S1"], body))
    else:
        s.append("<p>Skipped.</p>")
    s.append("<h2>6. Known limits of applicability</h2><ul>")
    s += [f"<li>{html.escape(x)}</li>" for x in report["limits"]]
    s += ["</ul>", disc, "</body></html>"]
    return "\n".join(s)


def write_report(out: Path | str, report: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``report.html`` and ``credibility.json`` into ``out`` atomically."""

    out = Path(out)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        (Path(tmp) / "credibility.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        (Path(tmp) / "report.html").write_text(render_html(report), encoding="utf-8")
    return out


def validation_table(v: Validation) -> str:
    """Plain-text table of a validation (:func:`~microneedling.studies.credibility.validate.validate`):
    one line per row, then the pass count and the interval coverage."""
    lines = [
        f"{'row':30s} {'observed':>9s} {'tol':>7s} {'model':>9s} {'10%':>9s} {'90%':>9s} "
        "units     result  covered"
    ]
    for r in v.results:
        b = "<=" if r.bound == "upper" else ">=" if r.bound == "lower" else "  "
        cov = "-" if r.covered is None else "yes" if r.covered else "no"
        lines.append(
            f"{r.key:30s} {b}{r.observed:7.4g} {r.tolerance:7.3g} {r.predicted:9.4g} "
            f"{r.low:9.4g} {r.high:9.4g} {r.units:9s} {r.status:7s} {cov}"
        )
    lines.append(
        f"within tolerance: {v.n_pass}/{v.n_evaluated} evaluated rows "
        f"({len(v.results) - v.n_evaluated} not evaluated); "
        f"{v.interval[0]:g}-{v.interval[1]:g}% interval coverage: {v.n_covered}/{v.n_evaluated}"
        f" = {v.coverage:.0%} ({v.draws} draws, seed {v.seed})"
    )
    return "\n".join(lines)


def delivery_table(predictions: Sequence[Prediction]) -> str:
    """Markdown table of the delivery validation
    (:func:`~microneedling.studies.credibility.delivery.predict`): row, molecule, conditions,
    observed, predicted, ratio, tolerance, pass."""
    lines = [
        "| row | molecule | pretreatment (length, density) | time | observed | predicted "
        "| pred/obs | tolerance | evidence | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in predictions:
        r = p.row
        unit = "" if r.quantity == "enhancement_ratio" else " µg/cm²"
        lines.append(
            f"| {r.key} | {r.molecule} | {r.needle_length_um:g} µm, {r.density_per_cm2:g}/cm² "
            f"| {r.time_h:g} h | {r.observed:.3g}{unit} | {p.predicted:.3g}{unit} "
            f"| {p.ratio:.3g} | ×/÷{r.tolerance_factor:g} | {r.evidence} "
            f"| {'pass' if p.passed else 'MISS'} |"
        )
    return "\n".join(lines)

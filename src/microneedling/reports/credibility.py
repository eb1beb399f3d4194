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

from markupsafe import Markup

from microneedling.io import atomic_directory
from microneedling.reports.format import format_number, human, pretty_units, yes_no
from microneedling.reports.page import column, kv, render, table
from microneedling.studies.credibility.delivery import Prediction
from microneedling.studies.credibility.validate import Validation

__all__ = ["delivery_table", "render_html", "validation_table", "write_report"]


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


def _n(x: Any, sig: int = 4) -> str:
    """A number for a table (``–`` for none; ``inf`` kept as text)."""
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    return format_number(x, sig)


def render_html(report: dict[str, Any]) -> str:
    """The credibility report as one self-contained page on the shared shell (nothing external)."""
    cal, val, sens, ver = (
        report["calibration"],
        report["validation"],
        report["sensitivity"],
        report["code_verification"],
    )
    if ver.get("status") == "ran":
        checks = ver["checks"]
        n_ok = sum(bool(c["passed"]) for c in checks)
        ver_summary = (
            f"{n_ok}/{len(checks)} verification checks passed ({ver['seconds']} s, run in process "
            "against exact or reference solutions)."
        )
    else:
        checks = []
        ver_summary = f"Not run: {ver.get('reason', ver.get('status'))}."
    verification = table(
        [column("Check"), column("Verifies"), column("Measured quantity"),
         column("Measured", num=True), column("Expected", num=True),
         column("Tolerance", num=True), column("Exact or reference solution"), column("Result"),
         column("Detail")],
        [{"cells": [c["name"], c["verifies"], c["quantity"], _n(c["measured"]),
                    _n(c["expected"]), _n(c["tolerance"]), c["exact_solution"],
                    "pass" if c["passed"] else "FAIL", c["detail"]],
          "highlight": not c["passed"]} for c in checks],
        label="Code verification checks",
    )  # fmt: skip
    cal_summary = (
        f"{cal['method']}. {cal['iterations']} iterations, χ² = {_n(cal['chi2'])}, condition "
        f"number of the weighted Jacobian {_n(cal['condition_number'])}. Reproduces the shipped "
        f"calibration: {yes_no(cal['reproduces_shipped'])} (shipped {cal['shipped_version']})."
    )
    cal_rows = table(
        [column("Row"), column("Observed", num=True), column("Standard error", num=True),
         column("Standard error from"), column("Model", num=True), column("Residual", num=True),
         column("Residual / SE", num=True)],
        [[r["key"], _n(r["observed"]), _n(r["se"]), r["se_rule"], _n(r["predicted"]),
          _n(r["residual"]), _n(r["normalised_residual"])] for r in cal["rows"]],
        caption="Calibration rows: observed vs fitted",
    )  # fmt: skip
    cal_params = table(
        [column("Coordinate"), column("Members"), column("Posterior mean", num=True),
         column("5th percentile", num=True), column("95th percentile", num=True),
         column("SD of the log", num=True)],
        [[p["label"], ", ".join(p["members"]), _n(p["value"]), _n(p["low"]), _n(p["high"]),
          _n(p["sd_log"])] for p in cal["parameters"]],
        caption="Posterior of the calibrated coordinates",
    )  # fmt: skip
    cal_corr = table(
        [column("Coordinate"), *[column(p["label"], num=True) for p in cal["parameters"]]],
        [[p["label"], *[_n(x, 3) for x in row]]
         for p, row in zip(cal["parameters"], cal["correlation"], strict=True)],
        caption="Posterior correlations (log space)",
    )  # fmt: skip
    lo_p, hi_p = val["interval_percentiles"]
    val_summary = (
        f"{val['n_pass']}/{val['n_evaluated']} evaluated rows within tolerance; "
        f"{val['n_rows'] - val['n_evaluated']} not evaluated. Coverage of the "
        f"{lo_p:g}–{hi_p:g}% prediction interval ({val['draws']} parameter draws): "
        f"{val['n_covered']}/{val['n_evaluated']} = {_n(val['coverage'], 2)} (a well-calibrated "
        "80% interval covers about 80%). Misses are listed, not hidden."
    )
    validation = table(
        [column("Row"), column("Quantity"), column("Sources"), column("Evidence"),
         column("Observed", num=True), column("Tolerance", num=True), column("Bound"),
         column("Model", num=True), column("10th percentile", num=True),
         column("90th percentile", num=True), column("Units"), column("Result"),
         column("Covered"), column("Stand-ins or reason")],
        [{"cells": [r["key"], human(r["quantity"]), ", ".join(r["sources"]), r["evidence"],
                    _n(r["observed"]), _n(r["tolerance"]), r["bound"] or "–",
                    _n(r["predicted"]), _n(r["low"]), _n(r["high"]), pretty_units(r["units"]),
                    r["status"], "–" if r["covered"] is None else yes_no(r["covered"]),
                    r["assumptions"]],
          "highlight": r["status"] == "miss"} for r in val["rows"]],
        caption="Validation rows (highlighted: outside tolerance)",
    )  # fmt: skip
    sens_table = None
    if "endpoints" in sens:
        sens_summary = (
            f"{sens['engine']}; course {sens['course']}; N = {sens['n_base']} base samples, "
            f"{sens['n_factors']} parameters (independent marginals from their intervals). The "
            "three largest total indices per end point:"
        )
        sens_table = table(
            [column("End point"), column("Specification"), column("Parameter"),
             column("Total index", num=True), column("Total index 95% conf.", num=True),
             column("First-order index", num=True)],
            [[label, e["endpoint"], t["parameter"], _n(t["ST"], 3), _n(t["ST_conf"], 2),
              _n(t["S1"], 3)] for label, e in sens["endpoints"].items() for t in e["top"]],
            caption="Sobol indices",
        )  # fmt: skip
    else:
        sens_summary = "Skipped."
    return render(
        "credibility.html.j2",
        kind="Credibility report",
        title=report["title"],
        subtitle=(f"Parameter set {report['parameter_set_hash']}; calibration {cal['version']}."),
        toc=[
            ("context", "Context of use"),
            ("verification", "Code verification"),
            ("calibration", "Calibration"),
            ("validation", "Validation"),
            ("sensitivity", "Global sensitivity"),
            ("limits", "Known limits"),
        ],
        provenance=kv(
            [
                ("microneedling version", report["microneedling_version"]),
                ("parameter-set hash", report["parameter_set_hash"]),
                ("calibration", cal["version"]),
                ("validation draws", val["draws"]),
            ]
        ),
        context_of_use=report["context_of_use"],
        verification_summary=ver_summary,
        verification=verification,
        calibration_summary=cal_summary,
        calibration_rows=cal_rows,
        calibration_parameters=cal_params,
        calibration_correlation=cal_corr,
        validation_summary=val_summary,
        validation_chart=Markup(_svg_validation(val["rows"])),
        validation=validation,
        sensitivity_summary=sens_summary,
        sensitivity=sens_table,
        limits=list(report["limits"]),
    )


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
        unit = " µg/cm²" if r.quantity == "amount" else ""
        lines.append(
            f"| {r.key} | {r.molecule} | {r.needle_length_um:g} µm, {r.density_per_cm2:g}/cm² "
            f"| {r.time_h:g} h | {r.observed:.3g}{unit} | {p.predicted:.3g}{unit} "
            f"| {p.ratio:.3g} | ×/÷{r.tolerance_factor:g} | {r.evidence} "
            f"| {'pass' if p.passed else 'MISS'} |"
        )
    return "\n".join(lines)

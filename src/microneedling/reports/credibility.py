"""The credibility report and the validation tables, rendered from the data the studies return.

* :func:`render_html` / :func:`write_report`: the self-contained HTML page of
  :func:`microneedling.studies.credibility.report.build_report` (contexts of use with model risk,
  goals, achieved grades and adequacy; code and calculation verification; calibration: screening,
  statistical model, posterior, diagnostics, posterior-predictive and leave-one-study-out checks;
  validation with its figure, metrics and V&V 20 table; virtual cohorts; qualitative behaviours;
  Sobol indices; limits), written with ``credibility.json`` through an atomic directory.
* :func:`validation_table`: the plain-text table of the held-out literature rows
  (:func:`microneedling.studies.credibility.validate.validate`), printed by ``microneedling
  validate``.
* :func:`delivery_table`: the markdown table of the transport's delivery validation
  (:func:`microneedling.studies.credibility.delivery.predict`), printed by ``microneedling validate
  --delivery`` (the table of ``docs/transport.md``).

Nothing here runs the model.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from microneedling.io import atomic_directory
from microneedling.reports import charts
from microneedling.reports.format import format_number, pretty_units, yes_no
from microneedling.reports.page import column, kv, render, table
from microneedling.studies.credibility.delivery import Prediction
from microneedling.studies.credibility.validate import Validation

__all__ = ["delivery_table", "render_html", "validation_table", "write_report"]


def _sensitivity_charts(endpoints: dict[str, dict[str, Any]]) -> list[charts.Chart]:
    """Per end point of the report's Sobol study, its largest total indices as bars (first-order
    and total, with their 95% bootstrap half-widths; a report written before the first-order
    half-width was recorded draws those bars without error bars)."""
    out = []
    for j, (label, e) in enumerate(endpoints.items()):
        top = e.get("top", [])[::-1]  # horizontal bars: the first category is drawn lowest
        if not top:
            continue
        nan = float("nan")
        lead = top[-1]
        out.append(
            charts.sobol_chart(
                f"chart-credibility-sobol-{j}",
                str(label),
                [str(t["parameter"]) for t in top],
                [t.get("S1", nan) for t in top],
                [t.get("ST", nan) for t in top],
                [t.get("S1_conf", nan) for t in top],
                [t.get("ST_conf", nan) for t in top],
                summary=(
                    f"{lead['parameter']} has the largest total index "
                    f"({format_number(lead.get('ST', nan), 2)}) of {e.get('endpoint', label)}."
                ),
            )
        )
    return out


def _validation_chart(rows: list[dict[str, Any]]) -> charts.Chart | None:
    """The validation figure (:func:`microneedling.reports.charts.validation_chart`): each
    evaluated row's prediction and its 80% interval in tolerances from the observed value."""
    chart = charts.validation_chart(
        "chart-validation", "Validation: the model against each published value", rows
    )
    if chart is None:
        return None
    return dataclasses.replace(
        chart,
        notes=(
            "Each evaluated row: the model's nominal prediction (dot) and its 80% predictive "
            "interval (bar), in tolerances from the observed value (0: the observed value; "
            "dashed lines: ±1 tolerance); green within tolerance, red outside.",
        ),
    )


def _n(x: Any, sig: int = 4) -> str:
    """A number for a table (``–`` for none; ``inf`` kept as text)."""
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    return format_number(x, sig)


def _pct(x: Any) -> str:
    if x is None or isinstance(x, str):
        return "–"
    return f"{100 * float(x):.0f}%"


def _ci(d: dict[str, Any] | None) -> str:
    """``hits/n = rate (clustered 95% CI low–high)`` of a clustered rate."""
    if not d or not d.get("n"):
        return "no rows"
    return (
        f"{d['hits']}/{d['n']} = {_pct(d['rate'])} (study-clustered 95% CI "
        f"{_pct(d['low'])}–{_pct(d['high'])}; {d['clusters']} studies)"
    )


def _estimate(s: dict[str, Any]) -> str:
    """How a left-out study was scored: ``refit (posterior-…; IS elpd x)`` or importance
    sampling (older validation files have no ``estimate``)."""
    if s.get("estimate") == "refit":
        return f"refit ({s['posterior']}; importance sampling gave elpd {_n(s.get('elpd_is'), 3)})"
    return "importance sampling"


def _credibility_tables(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for u in report.get("credibility", {}).get("uses", []):
        t = table(
            [column("Factor"), column("Graded on"), column("Goal"), column("Achieved"),
             column("Evidence (this run)"), column("Adequate")],
            [{"cells": [f["name"], f["graded_on"], f["goal"], f["achieved"], f["evidence"],
                        yes_no(f["adequate"])],
              "highlight": not f["adequate"]} for f in u["factors"]],
            caption=f"{u['command']}: credibility goals and what this run achieved",
        )  # fmt: skip
        out.append(
            {
                "command": u["command"],
                "question": u["question"],
                "context": u["context"],
                "risk": (
                    f"Model influence {u['influence']} ({u['influence_reason']}) × decision "
                    f"consequence {u['consequence']} ({u['consequence_reason']}) → model risk "
                    f"{u['risk']}."
                ),
                "verdict": u["verdict"],
                "adequate": u["adequate"],
                "table": t,
            }
        )
    return out


def _calibration(cal: dict[str, Any]) -> dict[str, Any]:
    """Summary text and tables of the calibration section."""
    if cal.get("status") != "shipped":
        return {"summary": f"No calibration posterior: {cal.get('status')}.", "tables": []}
    d = cal.get("diagnostics", {})
    scr = cal.get("screening", {})
    hm = cal.get("history_matching", {})
    stats = {f["label"]: f for f in cal.get("statistics", {}).get("factors", [])}
    summary = (
        f"{cal['method']}. Posterior {cal['version']}: {cal['n_samples']} samples from "
        f"{d.get('walkers', '?')} walkers × {d.get('steps', '?')} steps (burn-in {d.get('burn', '?')}); "
        f"acceptance {_n(d.get('acceptance_mean'), 2)}, max R-hat {_n(d.get('r_hat_max'), 3)}, "
        f"min bulk ESS {_n(d.get('ess_bulk_min'), 3)}, max autocorrelation time "
        f"{_n(d.get('autocorr_max_steps'), 3)} steps, {_n(d.get('seconds_per_step'), 3)} s per "
        f"step. The shipped samples reproduce their summary: {yes_no(cal['reproduces_summary'])}; "
        f"they apply to the current parameter set: {yes_no(cal['applies_to_parameter_set'])} "
        f"(fitted on {cal['fitted_on_parameter_set']}, current {cal['current_parameter_set']})"
        + (
            "; the parameter set changed since the fit, so the screening and the posterior are "
            "stale until `microneedling calibrate` is re-run."
            if cal.get("fitted_on_parameter_set")
            and cal["fitted_on_parameter_set"] != cal.get("current_parameter_set")
            else "."
        )
    )
    screening = (
        f"Screening {scr.get('version', '–')}: {scr.get('rule', '')}; {len(scr.get('selected', []))} "
        f"parameters calibrated, {scr.get('at_prior', 0)} left at their priors (sampled there by "
        f"the ensemble); {scr.get('n_runs', 0)} model runs (Sobol N = {scr.get('sobol_n_base')}). "
        f"Collinearity index of the selection (Brun 2001): "
        f"{_n(scr.get('identifiability', {}).get('collinearity_index'), 3)}."
        if scr.get("version")
        else "No shipped screening."
    )
    waves = "; ".join(
        f"wave {w['wave']}: {w['non_implausible']} of {w['points']} non-implausible"
        for w in hm.get("waves", [])
    )
    conflicts = [r["key"] for r in hm.get("rows", []) if r.get("conflict")]
    history = (
        f"History matching (implausibility cut-off {hm.get('cutoff')}): {waves}."
        + (f" Rows no point reached: {', '.join(conflicts)}." if conflicts else "")
        if hm
        else ""
    )
    prows: list[list[str]] = []
    for f in cal.get("factors", []):
        fstats = stats.get(f["label"], {})
        members = {m.get("member"): m for m in fstats.get("members", [])}
        for p in f["prior"]:
            post: dict[str, Any] = members.get(p["member"], {})
            prows.append(
                [
                    p["member"],
                    f"{_n(p['value'])} [{_n(p['low'])}–{_n(p['high'])}]",
                    f["prior_source"],
                    _n(post.get("median")),
                    f"{_n(post.get('low'))}–{_n(post.get('high'))}",
                    _n(fstats.get("z_sd"), 3),
                ]
            )
    params = table(
        [column("Parameter"), column("Prior (mode, 5–95%)"), column("Prior from"),
         column("Posterior median", num=True), column("Posterior 5–95%"),
         column("Posterior/prior SD", num=True)],
        prows,
        caption="Calibrated parameters: prior and posterior",
    )  # fmt: skip
    groups = table(
        [column("Output family"), column("Prior scale", num=True), column("tau median", num=True),
         column("tau 5–95%")],
        [[g["name"], _n(g["prior_scale"], 3), _n(s.get("tau_median"), 3),
          f"{_n(s.get('tau_low'), 3)}–{_n(s.get('tau_high'), 3)}"]
         for g, s in zip(cal.get("groups", []), cal.get("statistics", {}).get("groups", []),
                         strict=False)],
        caption="Between-study discrepancy per output family (relative; counts on the logit)",
    )  # fmt: skip
    rows_t = table(
        [column("Row"), column("Type"), column("Study"), column("Observed", num=True),
         column("SE", num=True), column("Posterior median prediction", num=True),
         column("PIT", num=True)],
        [{"cells": [r["key"], r["kind"], r["study"], _n(r["observed"]), _n(r.get("se")),
                    _n(r.get("predicted_median")), _n(r.get("pit"), 2)],
          "highlight": isinstance(r.get("pit"), float) and not 0.1 <= r["pit"] <= 0.9}
         for r in cal.get("rows", [])],
        caption="Calibration rows (highlighted: PIT outside 0.1–0.9)",
    )  # fmt: skip
    corr = table(
        [column("Coordinate"), column("Coordinate"), column("Correlation", num=True)],
        [[c["a"], c["b"], _n(c["r"], 3)] for c in cal.get("largest_correlations", [])],
        caption="Largest posterior correlations",
    )  # fmt: skip
    return {
        "summary": summary,
        "screening": screening,
        "history": history,
        "tables": [params, groups, rows_t, corr],
    }


def _validation(val: dict[str, Any]) -> dict[str, Any]:
    s = val.get("summary", {})
    summary = (
        f"{val['n_pass']}/{val['n_evaluated']} evaluated rows within tolerance; "
        f"{val['n_rows'] - val['n_evaluated']} not evaluated (reason listed). "
        f"{val['draws']} ensemble draws (posterior {val.get('posterior') or 'not applied'}). "
        f"Coverage of the 80% predictive interval on two-sided and count rows: "
        f"{_ci(s.get('coverage_80'))}; of the 50% interval: {_ci(s.get('coverage_50'))}. "
        f"Bound rows consistent with the 80% interval: {s.get('bounds_consistent_80', 0)}/"
        f"{s.get('n_bounds', 0)}. PIT against uniform: Kolmogorov–Smirnov p = "
        f"{_n((s.get('pit_ks') or {}).get('p_value'), 2)}. Mean CRPS {_n(s.get('crps_mean'), 3)} "
        f"tolerances (previous ensemble: {_n(s.get('crps_baseline_mean'), 3)}); mean 80% interval "
        f"score {_n(s.get('interval_score_mean'), 3)}; median 80% width "
        f"{_n(s.get('sharpness_median'), 3)} tolerances. Misses are listed, not hidden."
    )
    rows_t = table(
        [column("Row"), column("Study"), column("Type"), column("Observed", num=True),
         column("Tolerance", num=True), column("Model", num=True), column("80% interval"),
         column("50% interval"), column("Parameter band"), column("Units"), column("Result"),
         column("Covered (80%)"), column("PIT", num=True), column("CRPS / tol.", num=True),
         column("Stand-ins or reason")],
        [{"cells": [r["key"], r["study"], r["kind"] or "–", _n(r["observed"]),
                    _n(r["tolerance"]), _n(r["predicted"]),
                    f"{_n(r['low'])}–{_n(r['high'])}", f"{_n(r['low50'])}–{_n(r['high50'])}",
                    f"{_n(r['band_low'])}–{_n(r['band_high'])}", pretty_units(r["units"]),
                    r["status"], "–" if r["covered"] is None else yes_no(r["covered"]),
                    _n(r["pit"], 2), _n(r["crps"], 3), r["assumptions"]],
          "highlight": r["status"] == "miss"} for r in val["rows"]],
        caption="Validation rows (highlighted: outside tolerance)",
    )  # fmt: skip
    vv = table(
        [column("Row"), column("E = S − D", num=True), column("u_num", num=True),
         column("u_input", num=True), column("u_D", num=True), column("u_val", num=True),
         column("|E| / u_val", num=True)],
        [[r["key"], _n(r["vv20"].get("E")), _n(r["vv20"].get("u_num"), 2),
          _n(r["vv20"].get("u_input")), _n(r["vv20"].get("u_D")), _n(r["vv20"].get("u_val")),
          _n(r["vv20"].get("E_over_u_val"), 3)]
         for r in val["rows"] if r.get("vv20")],
        caption="ASME V&V 20 comparison (prediction units; counts as proportions)",
    )  # fmt: skip
    calc = val.get("calculation_verification", {})
    calc_t = table(
        [column("Row"), column("Value", num=True), column("Grid change", num=True),
         column("Tolerance change", num=True), column("u_num", num=True),
         column("u_num / tolerance", num=True)],
        [[c["key"], _n(c["value"]), _n(c["grid_change"], 2), _n(c["tolerance_change"], 2),
          _n(c["u_num"], 2), _n(c["u_num_over_tolerance"], 2)] for c in calc.get("rows", [])],
        caption="Calculation verification",
    )  # fmt: skip
    cc = val.get("calibration_check", {})
    loso = cc.get("loso", {})
    check = (
        f"Calibration rows with a posterior-predictive PIT in 0.1–0.9: {cc.get('n_inside')}/"
        f"{cc.get('n_rows')}. Leave-one-study-out ({len(loso.get('studies', []))} studies): 80% "
        f"coverage {_ci(loso.get('coverage_80'))}; elpd {_n(loso.get('elpd'), 4)}; max Pareto k "
        f"{_n(loso.get('max_pareto_k'), 2)}. {loso.get('method', '')}."
        + (
            f" Not scored (no finite prediction with the study's settings redrawn): "
            f"{', '.join(loso['unscored'])}."
            if loso.get("unscored")
            else ""
        )
        + (
            " Scored by an exact refit without the study instead: "
            + ", ".join(f"{r['study']} ({r['posterior']})" for r in loso["refitted"])
            + "; the largest Pareto k is of the studies still scored by importance sampling."
            if loso.get("refitted")
            else ""
        )
        + (
            " Shipped refits not used: "
            + "; ".join(f"{r['file']}: {r['reason']}" for r in loso["refits_refused"])
            + "."
            if loso.get("refits_refused")
            else ""
        )
        + (
            " WARNING: the calibration's inputs (rows, protocols, parameter files, settings) "
            "changed since the posterior was fitted; these scores are of a likelihood it was not "
            "fitted with: recalibrate."
            if cc.get("inputs_as_fitted") is False
            else ""
        )
        if cc.get("n_rows")
        else f"Calibration check: {cc.get('status', 'not run')}."
    )
    loso_t = table(
        [column("Left-out study"), column("Estimate"), column("elpd", num=True),
         column("Pareto k", num=True), column("Rows (PIT; covered)")],
        [{"cells": [s["study"], _estimate(s), _n(s["elpd"], 3), _n(s["pareto_k"], 2),
                    "; ".join(f"{r['key']} ({_n(r['pit'], 2)}; {yes_no(r['covered_80'])})"
                              for r in s["rows"])],
          "highlight": s.get("estimate") != "refit" and isinstance(s["pareto_k"], float)
          and s["pareto_k"] > 0.7}
         for s in loso.get("studies", [])],
        caption="Leave-one-study-out cross-validation on the calibration set",
    )  # fmt: skip
    fam_t = table(
        [column("Claim family"), column("Rows", num=True), column("Evaluated", num=True),
         column("Studies", num=True), column("Within tolerance"), column("Covered (80%)"),
         column("Covered (50%)"), column("Bounds consistent (80%)")],
        [{"cells": [f["family"], f["rows"], f["evaluated"], f["studies"],
                    f"{f['pass']}/{f['evaluated']}",
                    f"{f['covered_80']}/{f['n_two_sided']}" if f["n_two_sided"] else "–",
                    f"{f['covered_50']}/{f['n_two_sided']}" if f["n_two_sided"] else "–",
                    f"{f['bounds_consistent_80']}/{f['n_bounds']}" if f["n_bounds"] else "–"],
          "highlight": f["evaluated"] > 0 and f["pass"] < f["evaluated"]}
         for f in s.get("by_family", [])],
        caption="Validation per claim family (two-sided and count rows covered; bound rows apart)",
        empty="No validation rows.",
    )  # fmt: skip
    who_t = table(
        [column("Assessor: kind of number"), column("Rows", num=True),
         column("Evaluated", num=True), column("Studies", num=True), column("Within tolerance"),
         column("Covered (80%)"), column("Bounds consistent (80%)")],
        [{"cells": [a["assessor"], a["rows"], a["evaluated"], a["studies"],
                    f"{a['pass']}/{a['evaluated']}",
                    f"{a['covered_80']}/{a['n_two_sided']}" if a["n_two_sided"] else "–",
                    f"{a['bounds_consistent_80']}/{a['n_bounds']}" if a["n_bounds"] else "–"],
          "highlight": a["evaluated"] > 0 and a["pass"] < a["evaluated"]}
         for a in s.get("by_assessor", [])],
        caption="Validation by who assessed the observed number and what kind of number it is "
        "(descriptive: a blinded or unblinded rater, blinding not stated, an instrument, the "
        "patient)",
        empty="No validation rows.",
    )  # fmt: skip
    co = val.get("cohorts", {})
    cohort_t = table(
        [column("Row"), column("Role"), column("Observed SD", num=True),
         column("Predicted SD (aleatory)", num=True), column("5–95% over draws"),
         column("Epistemic SD of the mean", num=True), column("Ratio", num=True),
         column("Within 0.5–2")],
        [{"cells": [r["key"], r["role"], _n(r["observed_sd"]), _n(r["predicted_sd"]),
                    f"{_n(r['predicted_sd_low'])}–{_n(r['predicted_sd_high'])}",
                    _n(r["epistemic_sd"]), _n(r["ratio"], 3), yes_no(r["within_goal"])],
          "highlight": not r["within_goal"]} for r in co.get("rows", [])],
        caption="Virtual cohorts: between-patient spread against the observed",
    )  # fmt: skip
    return {
        "summary": summary,
        "rows": rows_t,
        "families": fam_t,
        "assessors": who_t,
        "vv20": vv,
        "calculation": calc_t,
        "calculation_summary": (
            f"{calc.get('method', 'Not run')}. Largest relative u_num "
            f"{_n(calc.get('max_relative'), 2)}."
            if calc
            else "Not run."
        ),
        "check": check,
        "loso": loso_t,
        "cohorts": cohort_t,
        "cohort_summary": (
            f"{co.get('n_within', 0)}/{len(co.get('rows', []))} rows within "
            f"{co.get('goal', [0.5, 2])[0]:g}–{co.get('goal', [0.5, 2])[1]:g} × the observed SD "
            f"({co.get('patients')} virtual patients × {co.get('draws')} parameter draws)."
            if co
            else "Not run."
        ),
    }


def render_html(report: dict[str, Any]) -> str:
    """The credibility report as one self-contained page on the shared shell (nothing external:
    the validation chart's library is inlined)."""
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
    behaviours = table(
        [column("Behaviour"), column("Source"), column("Measured"), column("Result"),
         column("Test")],
        [{"cells": [b["behaviour"], b["source"],
                    "; ".join(f"{k} = {_fmt(v)}" for k, v in b["measured"].items()),
                    "holds" if b["passed"] else "FAILS", b["test"]],
          "highlight": not b["passed"]} for b in report.get("behaviours", [])],
        caption="Qualitative behaviours the model was not fitted to",
        empty="Not run.",
    )  # fmt: skip
    sens_table = None
    sens_charts: list[charts.Chart] = []
    if "endpoints" in sens:
        sens_charts = _sensitivity_charts(sens["endpoints"])
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
    c = _calibration(cal)
    v = _validation(val)
    env = report.get("environment", {})
    validation_chart = _validation_chart(val["rows"])
    html = render(
        "credibility.html.j2",
        kind="Credibility report",
        title=report["title"],
        subtitle=(
            f"Parameter set {report['parameter_set_hash']}; posterior {cal.get('version', 'none')}."
        ),
        toc=[
            ("context", "Context of use and credibility"),
            ("verification", "Code verification"),
            ("calculation", "Calculation verification"),
            ("calibration", "Calibration"),
            ("validation", "Validation"),
            ("population", "Population"),
            ("behaviours", "Qualitative behaviours"),
            ("sensitivity", "Global sensitivity"),
            ("limits", "Known limits"),
        ],
        provenance=kv(
            [
                ("microneedling version", report["microneedling_version"]),
                ("parameter-set hash", report["parameter_set_hash"]),
                ("posterior", cal.get("version", "none")),
                ("validation draws", val["draws"]),
                *((k, v_) for k, v_ in env.items()),
            ]
        ),
        context_of_use=report["context_of_use"],
        uses=_credibility_tables(report),
        assessed=report.get("credibility", {}).get("assessed", ""),
        verification_summary=ver_summary,
        verification=verification,
        calculation_summary=v["calculation_summary"],
        calculation=v["calculation"],
        calibration_summary=c["summary"],
        calibration_screening=c.get("screening", ""),
        calibration_history=c.get("history", ""),
        calibration_tables=c["tables"],
        calibration_check=v["check"],
        loso=v["loso"],
        validation_summary=v["summary"],
        validation_chart=validation_chart,
        validation=v["rows"],
        families=v["families"],
        assessors=v["assessors"],
        vv20=v["vv20"],
        cohort_summary=v["cohort_summary"],
        cohorts=v["cohorts"],
        behaviours=behaviours,
        sensitivity_summary=sens_summary,
        sensitivity=sens_table,
        sensitivity_charts=sens_charts,
        limits=list(report["limits"]),
        **charts.context([validation_chart, *sens_charts]),
    )
    return charts.embed_library(html)


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(_n(x, 3) for x in v)
    return _n(v, 4)


def write_report(out: Path | str, report: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``report.html`` and ``credibility.json`` into ``out`` atomically."""

    out = Path(out)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        (Path(tmp) / "credibility.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        (Path(tmp) / "report.html").write_text(render_html(report), encoding="utf-8")
    return out


def validation_table(v: Validation) -> str:
    """Plain-text table of a validation (:func:`~microneedling.studies.credibility.validate.validate`):
    one line per evaluated row (observed, or the bound '≤ x' / '≥ x' a row states, tolerance,
    nominal model, 80% predictive interval, PIT, units, result, covered; '—' where a row has no
    such number), then the rows not evaluated grouped by the reason, then the pass count, the
    coverage of the two-sided rows with its study-clustered CI, and the mean CRPS against the
    previous ensemble's."""

    def num(x: float, width: int, fmt: str = ".4g") -> str:
        return f"{x:{width}{fmt}}" if math.isfinite(x) else f"{'—':>{width}s}"

    evaluated = [r for r in v.results if r.status != "not evaluated"]
    w = max([len("row"), *(len(r.key) for r in evaluated)])
    lines = [
        f"{'row':{w}s} {'observed':>10s} {'tolerance':>9s} {'model':>9s} {'10%':>9s} "
        f"{'90%':>9s} {'PIT':>5s}  {'units':9s} {'result':6s} covered"
    ]
    for r in evaluated:
        sign = "≤ " if r.bound == "upper" else "≥ " if r.bound == "lower" else ""
        observed = f"{sign}{r.observed:.4g}" if math.isfinite(r.observed) else "—"
        cov = "—" if r.covered is None else yes_no(r.covered)
        lines.append(
            f"{r.key:{w}s} {observed:>10s} {num(r.tolerance, 9, '.3g')} {num(r.predicted, 9)} "
            f"{num(r.low, 9)} {num(r.high, 9)} {num(r.pit, 5, '.2f')}  "
            f"{pretty_units(r.units) or '-':9s} {r.status:6s} {cov}"
        )
    skipped: dict[str, list[str]] = {}
    for r in v.results:
        if r.status == "not evaluated":
            skipped.setdefault(r.assumptions.strip() or "no reason recorded", []).append(r.key)
    if skipped:
        n_skip = sum(len(k) for k in skipped.values())
        lines.append(f"not evaluated ({n_skip} rows), by reason:")
        for reason, keys in sorted(skipped.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            lines.append(f"  - {reason} ({len(keys)}): {', '.join(keys)}")
    lines.append(
        f"within tolerance: {v.n_pass}/{v.n_evaluated} evaluated rows "
        f"({len(v.results) - v.n_evaluated} not evaluated); "
        f"{v.interval[0]:g}-{v.interval[1]:g}% interval coverage: {v.n_covered}/{v.n_evaluated}"
        f" = {v.coverage:.0%} ({v.draws} draws, seed {v.seed})"
    )
    s = v.summary
    if s:
        lines.append(
            f"two-sided and count rows: 80% coverage {_ci(s.get('coverage_80'))}; 50% coverage "
            f"{_ci(s.get('coverage_50'))}; mean CRPS {_n(s.get('crps_mean'), 3)} tolerances "
            f"(previous ensemble {_n(s.get('crps_baseline_mean'), 3)})"
        )
        for f in s.get("by_family", []):
            if not f["evaluated"]:
                continue
            cov = f"{f['covered_80']}/{f['n_two_sided']}" if f["n_two_sided"] else "—"
            lines.append(
                f"  {f['family']}: {f['pass']}/{f['evaluated']} within tolerance, 80% covered "
                f"{cov}, bounds consistent {f['bounds_consistent_80']}/{f['n_bounds']} "
                f"({f['studies']} studies)"
            )
        for a in s.get("by_assessor", []):
            if a["evaluated"]:
                cov = f"{a['covered_80']}/{a['n_two_sided']}" if a["n_two_sided"] else "—"
                lines.append(
                    f"  assessed by {a['assessor']}: {a['pass']}/{a['evaluated']} within "
                    f"tolerance, 80% covered {cov} ({a['studies']} studies)"
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

"""The credibility report's data, in the structure of ASME V&V 40 (2018) and the FDA guidance
"Assessing the Credibility of Computational Modeling and Simulation in Medical Device Submissions"
(2023): the evidence that the model is right, collected by running it, not by quoting it.

* **Contexts of use** (one per command: simulate, plan, trial, absorb) with their model risk
  (influence x consequence) and a credibility goal per factor (``data/calibration/credibility.toml``,
  written before the results), the **achieved** grade of each factor computed from this run's
  evidence by the rules of :func:`grade_factors`, and an adequacy verdict per use.
* **Code verification**: :func:`microneedling.studies.credibility.verification.run_verification`.
* **Calculation verification**: every validation row re-run on a refined grid and at a tight
  tolerance (``u_num``).
* **Calibration**: the shipped posterior (``data/calibration/current.toml`` and its samples): what
  was calibrated and why (screening), the statistical model, sampler diagnostics, identifiability,
  whether the shipped samples reproduce their summary; the calibration rows against their posterior
  predictive and leave-one-study-out cross-validation.
* **Validation**: :func:`microneedling.studies.credibility.validate.validate` (pass/miss, intervals,
  PIT, coverage with study-clustered CIs, CRPS against the previous ensemble, V&V 20 table).
* **Population**: virtual-cohort spread against observed between-patient SDs.
* **Qualitative behaviours** the model was not fitted to, each checked live here and by a test
  (:func:`qualitative_behaviours`; ``tests/studies/credibility/test_behaviours.py``).
* **Global sensitivity** of three end points on one example course (:func:`sobol_summary`).
* **Known limits of applicability.**

:func:`build_report` returns all of it as JSON-able data; :mod:`microneedling.reports.credibility`
renders it (``report.html``) and writes it (``credibility.json``).
"""

from __future__ import annotations

import itertools
import math
import platform
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from microneedling.about import DISCLAIMER, __version__
from microneedling.course.model import Course
from microneedling.course.patient import planner_config
from microneedling.engine.batch import simulate_batch
from microneedling.engine.endpoints import endpoint_values, parse_endpoint
from microneedling.io import data_path, read_toml
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.parameters.sampling import (
    load_posterior,
    posterior_nominal,
    posterior_statistics,
    shipped_posterior,
)
from microneedling.studies.credibility.calibrate import (
    MF8,
    load_config,
    predict_rows,
)
from microneedling.studies.credibility.literature import load_protocols, rows
from microneedling.studies.credibility.metrics import clustered_rate
from microneedling.studies.credibility.screening import load_screening
from microneedling.studies.credibility.validate import validate
from microneedling.studies.credibility.verification import run_verification
from microneedling.studies.sensitivity import sobol_indices

__all__ = [
    "CONTEXT_OF_USE",
    "FACTORS",
    "GRADES",
    "LIMITS",
    "build_report",
    "calibration_section",
    "claim_checks",
    "code_verification",
    "credibility_assessment",
    "environment",
    "grade_factors",
    "known_limits",
    "qualitative_behaviours",
    "sobol_summary",
]

#: the course the sensitivity summary is computed on (a shipped example) and its end points
SOBOL_COURSE = "acne-scars-rolling-cheek"
SOBOL_ENDPOINTS: dict[str, str] = {
    "collagen gain": "collagen_change@last+90",
    "scar-depth reduction": "scar_depth:reduction@last+90",
    "downtime": "downtime_days",
}

GRADES: tuple[str, ...] = ("low", "medium", "high")

#: V&V 40 credibility factors graded here: key -> (V&V 40 activity and factor, what is graded)
FACTORS: dict[str, tuple[str, str]] = {
    "code_verification": (
        "Code verification: numerical code verification",
        "live checks against exact or reference solutions",
    ),
    "calculation_verification": (
        "Calculation verification: discretization and solver error",
        "u_num of every evaluated row relative to its tolerance",
    ),
    "model_inputs": (
        "Validation, model: model inputs",
        "inputs sampled from the calibration posterior (jointly) and the priors; draws; sampler "
        "diagnostics",
    ),
    "calibration": (
        "Calibration evidence (FDA category 2)",
        "calibration rows inside their posterior predictive; leave-one-study-out coverage",
    ),
    "test_samples": (
        "Validation, comparator: test samples",
        "validation rows whose study reported their spread (SE, SD, CI, range or k of n) and "
        "their studies",
    ),
    "output_quantity": (
        "Validation, assessment: output comparison, quantity",
        "evaluated validation rows and studies for the use's outputs",
    ),
    "output_rigor": (
        "Validation, assessment: output comparison, rigor",
        "probabilistic comparison (intervals, PIT, CRPS, V&V 20) with >= 256 draws",
    ),
    "agreement": (
        "Validation, assessment: output comparison, agreement",
        "80% coverage and pass rate on the use's validation rows",
    ),
    "input_equivalence": (
        "Validation, assessment: equivalency of input parameters",
        "validation rows graded equivalent or minor (graded before any result)",
    ),
    "applicability": (
        "Applicability: relevance of the QOIs and of the validation to the use",
        "the use's output families with at least 2 evaluated validation rows",
    ),
    "population": (
        "Population-based validation (FDA category 5)",
        "virtual-cohort between-patient SD within 0.5-2 x the observed",
    ),
}

CONTEXT_OF_USE = (
    "Question: how do needle length, device, number and spacing of sessions, site, skin type and a "
    "topical change the expected course of collagen, texture, scar depth, pigmentation, downtime "
    "and absorption after microneedling (collagen induction therapy)? Users: researchers, product "
    "developers and practitioners planning or comparing protocols. Role of the model: a research "
    "and planning aid that ranks and explains protocols with intervals; it is never the sole basis "
    "of a treatment decision. Patients: adults, Fitzpatrick I-VI, facial and body sites of the "
    "model, needle lengths within the published per-site limits. Each command's context of use, "
    "model risk and credibility goals are in the table below."
)

LIMITS: tuple[str, ...] = (
    "The calibration fits the parameters its screening found the calibration rows can inform; "
    "every other parameter stays at its prior (the ensemble samples it there). The posterior is "
    "conditional on those others at their prior modes during the fit.",
    "Each study's unreported settings are nuisance parameters (the influential ones sampled in the "
    "fit, the others at their stand-ins with their spread added to the row's noise); ranges are in "
    "data/calibration/protocols.toml.",
    "Between-study discrepancy is one tau per output family, estimated from the calibration rows "
    "under a half-normal prior that is our estimate; families with few studies keep a "
    "prior-dominated tau, so their intervals are wide by construction.",
    "Scar grades are the model's own Goodman & Baron grade (scar_grade: depth thresholds "
    "observe.scar_grade_mild_depth and scar_grade_obvious_depth, fitted to calibration grades); "
    "quantitative scar scores are compared through a proxy (relative score change = relative "
    "scar-depth change).",
    "Channel geometry is human: rat histology (Kalluri 2011) is shallower and narrower.",
    "Intact skin (physics/transport.py: intact_kp) is Potts-Guy for neutral molecules up to 500 Da "
    "with a log Kow; heavier, ionised (pH 5.5) or log-Kow-less molecules cross only by the polar "
    "pore pathway (ten Berge's coefficient, Renkin hindrance in ~2 nm pores), which is small, and "
    "zero for hyaluronan-size molecules (their enhancement ratio is infinite). Lipidated or "
    "SC-retained peptides therefore get too little intact uptake and too large an enhancement "
    "ratio (the run's figure for Mohammed 2014 follows).",
    "Adjunct products (triple combination cream, vitamin A/C, PRP) are not modelled; rows with them "
    "are not evaluated or compare the microneedling effect alone.",
    "Rows the model cannot compare yet (awaiting an observable) are listed as not evaluated and "
    "count in no metric.",
)

#: the validation row whose enhancement ratio :func:`known_limits` quotes
ENHANCEMENT_ROW = "mohammed2014_enhancement"


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def known_limits(report: Mapping[str, Any]) -> list[str]:
    """:data:`LIMITS` with this run's numbers: the intact-skin limit ends with the enhancement ratio
    the run predicts for Mohammed 2014 (its validation row: nominal and 80% predictive interval
    against the observed; else the qualitative behaviour's nominal value), then one line per claim
    of :func:`claim_checks` the run missed, with its measured values; never a figure written by
    hand."""
    row = next(
        (
            r
            for r in report.get("validation", {}).get("rows", [])
            if r.get("key") == ENHANCEMENT_ROW and r.get("status") != "not evaluated"
        ),
        None,
    )
    measured = next(
        (
            _num(b.get("measured", {}).get("enhancement_ratio"))
            for b in report.get("behaviours", [])
            if b.get("source") == "mohammed2014"
        ),
        math.nan,
    )
    if row is not None and math.isfinite(_num(row.get("predicted"))):
        text = (
            f"Mohammed 2014: observed {_num(row.get('observed')):.3g}x, predicted "
            f"{_num(row.get('predicted')):.3g}x"
        )
        lo, hi = _num(row.get("low")), _num(row.get("high"))
        if math.isfinite(lo) and math.isfinite(hi):
            text += f" (80% predictive interval {lo:.3g}-{hi:.3g}x)"
        text += f", a {row.get('status', 'miss')} in this run."
    elif math.isfinite(measured):
        text = f"Mohammed 2014: the nominal model gives {measured:.3g}x in this run."
    else:
        text = "Mohammed 2014: not computed in this run."
    missed = [
        f"Missed at the nominal set (a strict expected failure of {c['test']}): {c['claim']}; "
        + ", ".join(f"{k} = {_claim_value(v)}" for k, v in c["measured"].items())
        + "."
        for c in report.get("claims", [])
        if not c.get("passed", True)
    ]
    return [f"{t} {text}" if "Mohammed 2014" in t else t for t in LIMITS] + missed


def _claim_value(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_claim_value(x) for x in v) + "]"
    return f"{_num(v):.3g}"


# ----------------------------------------------------------------------------- verification
def code_verification() -> dict[str, Any]:
    """Run the code-verification checks in process (:func:`run_verification`, a few seconds).

    Returns ``{"status": "ran", "seconds": ..., "n_passed": ..., "checks": [...]}`` with one
    :meth:`CheckResult.to_dict <microneedling.studies.credibility.verification.CheckResult.to_dict>`
    per check.
    """
    t0 = time.perf_counter()
    results = run_verification()
    return {
        "status": "ran",
        "seconds": round(time.perf_counter() - t0, 1),
        "n_passed": sum(r.passed for r in results),
        "checks": [r.to_dict() for r in results],
    }


# ------------------------------------------------------------------------------ sensitivity
def _factors(ps: Any) -> list[tuple[str, tuple[str, ...]]]:
    """Sobol factors: (label, member names). Scalar healing/observe/needles parameters with an
    interval; the tied calibrated parameters (healing.k_1 = k_3) are one factor."""

    tied = {t.members[0]: t.members for t in load_config().ties if len(t.members) > 1}
    skip = {m for ms in tied.values() for m in ms[1:]}
    out = []
    for n in ps.names():
        p = ps.parameters[n]
        if n.split(".")[0] not in ("healing", "observe", "needles") or n in skip:
            continue
        if p.low is None or isinstance(p.value, dict) or p.low == p.high:
            continue
        members = tied.get(n, (n,))
        out.append(("=".join(members) if len(members) > 1 else n, members))
    return out


def sobol_summary(
    n_base: int = 64, seed: int = 0, names: Sequence[str] | None = None, top: int = 3
) -> dict[str, Any]:
    """First-order (S1) and total (ST) Sobol indices of :data:`SOBOL_ENDPOINTS` on the
    :data:`SOBOL_COURSE` example, over the parameter intervals (independent marginals).

    Computed by :func:`microneedling.studies.sensitivity.sobol_indices` (SALib's Sobol design and
    estimators, batched solves). The tied calibrated pair healing.k_1 = k_3 is varied through
    healing.k_1 only (healing.k_3 stays at its value).
    """

    course = Course.from_toml(_example_path(SOBOL_COURSE))
    ps = load_parameters()
    factors = _factors(ps)
    if names is not None:
        factors = [f for f in factors if f[0] in set(names) or f[1][0] in set(names)]

    ds = sobol_indices(
        course,
        list(SOBOL_ENDPOINTS.values()),
        parameters=ps,
        names=[f[1][0] for f in factors],
        n_base=n_base,
        seed=seed,
    )
    s1 = np.asarray(ds["S1"].transpose("endpoint", "parameter").values, dtype=float)
    st = np.asarray(ds["ST"].transpose("endpoint", "parameter").values, dtype=float)
    st_conf = np.asarray(ds["ST_conf"].transpose("endpoint", "parameter").values, dtype=float)
    s1_conf = np.asarray(ds["S1_conf"].transpose("endpoint", "parameter").values, dtype=float)
    labels = [str(x) for x in ds["parameter"].values]
    engine = "microneedling.studies.sensitivity.sobol_indices (SALib)"
    n_runs = n_base * (len(labels) + 2)
    out: dict[str, Any] = {
        "engine": engine,
        "course": SOBOL_COURSE,
        "n_base": n_base,
        "seed": seed,
        "n_factors": len(labels),
        "n_runs": n_runs,
        "endpoints": {},
    }
    for i, (label, spec) in enumerate(SOBOL_ENDPOINTS.items()):
        order = np.argsort(-np.nan_to_num(st[i], nan=-1.0))
        out["endpoints"][label] = {
            "endpoint": spec,
            "top": [
                {
                    "parameter": labels[k],
                    "ST": round(float(st[i, k]), 4),
                    "ST_conf": round(float(st_conf[i, k]), 4),
                    "S1": round(float(s1[i, k]), 4),
                    "S1_conf": round(float(s1_conf[i, k]), 4),
                }
                for k in order[:top]
            ],
            "sum_S1": round(float(np.nansum(s1[i])), 4),
        }
    return out


def _example_path(name: str) -> Path:
    """``examples/<name>.toml`` of the source tree the package runs from (the examples are not part
    of an installed package)."""
    for parent in Path(__file__).resolve().parents:
        path = parent / "examples" / f"{name}.toml"
        if path.is_file():
            return path
    raise FileNotFoundError(f"examples/{name}.toml not found beside the package")


# ---------------------------------------------------------------------------- calibration
def calibration_section(ps: ParameterSet | None = None) -> dict[str, Any]:
    """The shipped posterior as the report shows it: what was calibrated and why, the statistical
    model, diagnostics, identifiability, and whether its samples reproduce its summary."""
    ps = ps or load_parameters()
    try:
        post = load_posterior()
    except Exception as exc:  # a missing or foreign file is reported, not raised
        return {
            "status": f"no shipped posterior ({exc})",
            "version": "none",
            "reproduces_summary": False,
            "reproduces_shipped": False,
        }
    s = post.summary
    stats = posterior_statistics(post.x, post.factors, post.groups, post.nuisances)
    out: dict[str, Any] = {
        "status": "shipped",
        "version": post.version,
        "method": s.get("method", ""),
        "reproduces_summary": stats == s.get("statistics"),
        # the name the service's run summary reads (the samples reproduce the shipped summary)
        "reproduces_shipped": stats == s.get("statistics"),
        "applies_to_parameter_set": shipped_posterior(ps) is not None,
        "fitted_on_parameter_set": s.get("parameter_set_hash", ""),
        "current_parameter_set": ps.hash,
        "rows": s.get("rows", []),
        "factors": s.get("factors", []),
        "statistics": s.get("statistics", {}),
        "groups": s.get("groups", []),
        "nuisances": s.get("nuisances", []),
        "identifiability": s.get("identifiability", []),
        "largest_correlations": s.get("largest_correlations", []),
        "diagnostics": {k: v for k, v in s.get("diagnostics", {}).items() if k != "coordinates"},
        "history_matching": s.get("history_matching", {}),
        "discrepancy_prior_source": s.get("discrepancy_prior_source", ""),
        "n_samples": post.n_samples,
    }
    try:
        scr = load_screening()
        out["screening"] = {
            "version": scr.get("version"),
            "method": scr.get("method"),
            "selected": scr.get("selected", []),
            "at_prior": len(scr.get("selection", {}).get("at_prior", [])),
            "rule": scr.get("selection", {}).get("rule", ""),
            "n_runs": scr.get("n_runs"),
            "sobol_n_base": scr.get("sobol", {}).get("n_base"),
            "morris_top": scr.get("morris", {}).get("top", [])[:10],
            "identifiability": scr.get("identifiability", {}),
            "nuisances": scr.get("nuisances", {}),
        }
    except OSError as exc:
        out["screening"] = {"status": f"no shipped screening ({exc})"}
    return out


# ------------------------------------------------------------------- qualitative behaviours
def _course(**kw: Any) -> Course:
    """A one-site cheek course with the MF8 roller (protocols.toml) and 15 passes, settings
    overridden (``device``, ``passes``, ``pen_speed_cm_s`` for a pen, ``age_years``)."""
    device = dict(kw.pop("device", MF8))
    sessions = kw.pop("sessions", [0.0])
    length = kw.pop("needle_length_mm", 1.5)
    fitz = kw.pop("fitzpatrick", 3)
    horizon = kw.pop("horizon_days", 400.0)
    passes = kw.pop("passes", 15)
    age = kw.pop("age_years", 35)
    extra = {"pen_speed_cm_s": kw.pop("pen_speed_cm_s", 2.0)} if device["type"] == "pen" else {}
    if kw:
        raise TypeError(f"unknown course settings {sorted(kw)}")
    return Course.from_dict(
        {
            "name": "behaviour check",
            "horizon_days": horizon,
            "patient": {"age_years": age, "sex": "female", "fitzpatrick": fitz},
            "sites": [{"name": "cheek", "conditions": []}],
            "device": device,
            "sessions": [
                {
                    "day": float(d),
                    "site": "cheek",
                    "needle_length_mm": length,
                    "passes": passes,
                    **extra,
                }
                for d in sessions
            ],
        },
        source="behaviour check",
    )


def _pen() -> dict[str, Any]:
    """The pen of the claim checks: the planner's (``data/planner.toml`` ``[devices.pen]``,
    Dermapen-like: 12 needles at 110 strokes/s in a 7 mm cartridge) as a course's device."""
    d = planner_config()["devices"]["pen"]
    keys = ("needle_count", "needle_diameter_mm", "tip_radius_um", "tip", "frequency_hz")
    return {
        "type": "pen",
        **{k: d[k] for k in (*keys, "cartridge_width_mm")},
        "max_needle_length_mm": max(d["needle_lengths_mm"]),
    }


#: needle lengths (mm) of the redness checks: 0.1 to 2 mm, 0.05 mm apart
REDNESS_LENGTHS: tuple[float, ...] = tuple(round(0.1 + 0.05 * k, 2) for k in range(39))


def claim_checks(ps: ParameterSet | None = None) -> list[dict[str, Any]]:
    """Claims with a published range, checked at the nominal set (default: the set ``simulate``
    runs, the shipped posterior's medians), each with the test that asserts it (a claim the model
    misses is a strict expected failure there, and a known limit of the report):

    1. PIH course risk after three monthly 1.5 mm roller sessions: under 2% in types I-III (the
       0-of-n studies), 3-20% in IV-V (reported 5-20%), ordered.
    2. The same for type VI, held under 25% (no calibration count is of type VI).
    3. A roller's visible redness is smooth in needle length: no step above 12 h per 0.05 mm
       (0.1-2 mm).
    4. The same for a pen (8 passes at 2 cm/s).
    """
    ps = ps or posterior_nominal(load_parameters())
    out: list[dict[str, Any]] = []
    monthly = [0.0, 30.0, 60.0]
    run = simulate_batch(
        [_course(fitzpatrick=f, sessions=monthly, horizon_days=120.0) for f in range(1, 7)], ps
    )
    risk = [float(x) for x in endpoint_values(run, "pih_risk")]
    ordered = all(b > a for a, b in itertools.pairwise(risk))
    out.append(
        {
            "claim": "PIH course risk, types I-V (three monthly 1.5 mm sessions): ordered, "
            "under 2% in I-III, 3-20% in IV-V",
            "source": "chu2021",
            "measured": {"pih_risk_by_type_percent": [100.0 * r for r in risk[:5]]},
            "passed": bool(
                ordered and max(risk[:3]) < 0.02 and all(0.03 < r < 0.20 for r in risk[3:5])
            ),
            "test": "tests/physics/test_pigment.py::test_pih_by_fitzpatrick_type_as_shipped",
        }
    )
    out.append(
        {
            "claim": "PIH course risk, type VI (same course): under 25% (reported 5-20% for dark "
            "skin; no type-VI count in the calibration)",
            "source": "chu2021",
            "measured": {"pih_risk_type_vi_percent": 100.0 * risk[5]},
            "passed": bool(0.03 < risk[5] < 0.25),
            "test": "tests/physics/test_pigment.py::test_pih_type_vi_as_shipped_stays_under_a_quarter",
        }
    )
    for name, device, passes, test in (
        ("roller", MF8, 15, "test_roller_redness_is_smooth_in_needle_length_as_shipped"),
        ("pen", _pen(), 8, "test_pen_redness_is_smooth_in_needle_length_as_shipped"),
    ):
        courses = [
            _course(
                device=device, passes=passes, needle_length_mm=L, age_years=30, horizon_days=28.0
            )
            for L in REDNESS_LENGTHS
        ]
        hours = 24.0 * simulate_batch(courses, ps).per_session["erythema_days"][:, 0]
        steps = np.diff(hours)
        k = int(np.argmax(steps))
        out.append(
            {
                "claim": f"Visible redness after one {name} session is smooth in needle length "
                "(no step above 12 h per 0.05 mm from 0.1 to 2 mm)",
                "source": "graham_drpmg2016",
                "measured": {
                    "largest_step_h": float(steps[k]),
                    "between_mm": [REDNESS_LENGTHS[k], REDNESS_LENGTHS[k + 1]],
                    "hours_at_0_25_mm": float(hours[REDNESS_LENGTHS.index(0.25)]),
                    "hours_at_1_5_mm": float(hours[REDNESS_LENGTHS.index(1.5)]),
                },
                "passed": bool(np.all(steps >= -1e-9) and steps.max() < 12.0),
                "test": f"tests/physics/test_redness.py::{test}",
            }
        )
    return out


def qualitative_behaviours(ps: ParameterSet | None = None) -> list[dict[str, Any]]:
    """Behaviours the model was not fitted to, checked on the nominal model (default: the set
    ``simulate`` runs, the parameter files with the shipped posterior's medians; each also asserted
    by ``tests/studies/credibility/test_behaviours.py``):

    1. PIH risk of a session rises with the Fitzpatrick type (Chu 2021: darker skin a risk factor).
    2. The epidermal thickening of a course regresses after the last session (El-Domyati 2015,
       photoaging: "multiple sessions are usually needed to maintain the improvement").
    3. Microneedle pretreatment raises the delivered amount over intact skin (enhancement ratio
       > 1) for the peptide of Mohammed 2014 (a validation row, never fitted; its size is scored
       there, only the direction here).
    """
    ps = ps or posterior_nominal(load_parameters())
    out = []
    courses = [_course(fitzpatrick=f, horizon_days=60.0) for f in range(1, 7)]
    run = simulate_batch(courses, ps)
    risk = [float(run.per_session["pih_risk"][i, 0]) for i in range(6)]
    out.append(
        {
            "behaviour": "PIH risk of a session rises with the Fitzpatrick type (I to VI)",
            "source": "chu2021",
            "measured": {"pih_risk_by_type": risk},
            "passed": bool(all(b > a for a, b in itertools.pairwise(risk))),
            "test": "tests/studies/credibility/test_behaviours.py::test_pih_risk_rises_with_skin_type",
        }
    )
    c = _course(sessions=[0.0, 30.0, 60.0], horizon_days=60.0 + 365.0)
    r = simulate_batch([c], ps)
    early = float(endpoint_values(r, parse_endpoint("epidermal_thickness_change@last+56"))[0])
    late = float(endpoint_values(r, parse_endpoint("epidermal_thickness_change@last+365"))[0])
    out.append(
        {
            "behaviour": "Epidermal thickening regresses after the last session (8 weeks vs 1 year)",
            "source": "eldomyati2015_photoaging",
            "measured": {"at_8_weeks_percent": early, "at_1_year_percent": late},
            "passed": bool(early > 0 and late < early),
            "test": "tests/studies/credibility/test_behaviours.py::test_thickening_regresses",
        }
    )
    protocols = load_protocols()
    row = next((x for x in rows() if x.key == "mohammed2014_enhancement"), None)
    if row is not None and protocols[row.key].evaluable:
        er = float(predict_rows([row], [ps], protocols)[0, 0])
        out.append(
            {
                "behaviour": "Microneedle pretreatment raises delivery over intact skin "
                "(enhancement ratio > 1)",
                "source": "mohammed2014",
                "measured": {"enhancement_ratio": er},
                "passed": bool(er > 1.0),
                "test": "tests/studies/credibility/test_behaviours.py::test_pretreatment_enhances",
            }
        )
    return out


# ---------------------------------------------------------------------------- V&V 40 grading
def _at_least(a: str, b: str) -> bool:
    return GRADES.index(a) >= GRADES.index(b)


def _grade(high: bool, medium: bool) -> str:
    return "high" if high else "medium" if medium else "low"


def _use_rows(val: Mapping[str, Any], families: Sequence[str]) -> list[dict[str, Any]]:
    fams = set(families)
    return [
        r
        for r in val.get("rows", [])
        if r.get("status") != "not evaluated" and str(r.get("family", "")).split(" (")[0] in fams
    ]


def grade_factors(report: Mapping[str, Any], use: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Achieved grade of every factor for one context of use, from the run's evidence.

    Rules (also in docs/credibility.md): code verification high when >= 10 checks all pass, medium
    when all pass; calculation verification high when every u_num < 1% of its tolerance, medium
    < 10%; model inputs high when the ensemble draws the posterior with >= 256 draws and R-hat <=
    1.05 and bulk ESS >= 400, medium with the posterior and >= 256 draws; calibration high when >=
    90% of calibration rows have a PIT in 0.1-0.9 and leave-one-study-out 80% coverage is in 70-90%
    with Pareto k <= 0.7, medium when >= 70% and >= 60%; test samples high when >= 80% of the use's
    rows have a spread their study reported (SE, SD, CI, range or k of n; not a default SE) over
    >= 6 studies, medium >= 50% over >= 3; quantity high >= 20 rows over
    >= 6 studies, medium >= 8 over >= 3; rigor high when intervals, PIT, CRPS and V&V 20 were
    computed with >= 256 draws, else medium; agreement high when 80% coverage is in 70-90% and >=
    80% pass, medium when the coverage's clustered CI reaches 70-90% and >= 50% pass; input
    equivalence high when >= 80% of the rows are graded equivalent or minor, medium >= 50%;
    applicability high when >= 80% of the use's families have >= 2 evaluated rows, medium >= 50%;
    population high when every cohort ratio is in 0.5-2 over >= 3 rows, medium >= half of them.
    """
    val = report.get("validation", {})
    cal = report.get("calibration", {})
    ver = report.get("code_verification", {})
    fams = list(use["families"])
    urows = _use_rows(val, fams)
    studies = {r["study"] for r in urows}
    two = [r for r in urows if r.get("kind") in ("gaussian", "binomial", "ordinal")]
    draws = int(val.get("draws", 0))
    out: dict[str, tuple[str, str]] = {}
    checks = ver.get("checks", [])
    allp = bool(checks) and all(c["passed"] for c in checks)
    out["code_verification"] = (
        _grade(allp and len(checks) >= 10, allp),
        f"{sum(c['passed'] for c in checks)}/{len(checks)} checks passed" if checks else "not run",
    )
    calc = val.get("calculation_verification", {}).get("rows", [])
    ratios = [c["u_num_over_tolerance"] for c in calc if c.get("u_num_over_tolerance") is not None]
    worst = max(ratios) if ratios else math.inf
    out["calculation_verification"] = (
        _grade(bool(ratios) and worst < 0.01, bool(ratios) and worst < 0.1),
        f"max u_num/tolerance {worst:.2g} over {len(ratios)} rows" if ratios else "not run",
    )
    diag = cal.get("diagnostics", {})
    post = bool(val.get("posterior"))
    rhat = float(diag.get("r_hat_max", math.inf) or math.inf)
    ess = float(diag.get("ess_bulk_min", 0) or 0)
    out["model_inputs"] = (
        _grade(post and draws >= 256 and rhat <= 1.05 and ess >= 400, post and draws >= 256),
        f"posterior {'drawn' if post else 'not applied'}, {draws} draws, max R-hat {rhat:.3g}, "
        f"min bulk ESS {ess:.0f}",
    )
    cc = val.get("calibration_check", {})
    n_in, n_rows = int(cc.get("n_inside", 0)), int(cc.get("n_rows", 0))
    frac = n_in / n_rows if n_rows else 0.0
    loso = cc.get("loso", {})
    lcov = float((loso.get("coverage_80") or {}).get("rate") or 0.0)
    kmax = float(loso.get("max_pareto_k", math.inf) or math.inf)
    if math.isnan(kmax) and loso.get("refitted"):
        kmax = 0.0  # every study scored by a refit: no importance weights left to distrust
    out["calibration"] = (
        _grade(frac >= 0.9 and 0.7 <= lcov <= 0.9 and kmax <= 0.7, frac >= 0.7 and lcov >= 0.6),
        f"{n_in}/{n_rows} calibration rows inside their 80% posterior predictive (PIT in 0.1-0.9; "
        f"a bound on its side); leave-one-study-out 80% coverage "
        f"{lcov:.0%}, max Pareto k {kmax:.2g}"
        if n_rows
        else "no calibration check",
    )
    # a spread the study reported (SE, SD, CI, range, k of n); a default SE is not one
    spread = [r for r in urows if r.get("spread_reported")]
    fs = len(spread) / len(urows) if urows else 0.0
    out["test_samples"] = (
        _grade(fs >= 0.8 and len(studies) >= 6, fs >= 0.5 and len(studies) >= 3),
        f"{len(spread)}/{len(urows)} rows with a spread reported by the study, "
        f"{len(studies)} studies",
    )
    out["output_quantity"] = (
        _grade(len(urows) >= 20 and len(studies) >= 6, len(urows) >= 8 and len(studies) >= 3),
        f"{len(urows)} evaluated validation rows from {len(studies)} studies",
    )
    metrics_ok = draws >= 256 and bool(val.get("summary", {}).get("pit"))
    out["output_rigor"] = (
        _grade(metrics_ok, True),
        "intervals, PIT, CRPS, interval score and V&V 20 per row"
        + (f" with {draws} draws" if draws else ""),
    )
    hits = sum(bool(r.get("covered")) for r in two)
    cov = hits / len(two) if two else 0.0
    npass = sum(r.get("status") == "pass" for r in urows)
    prate = npass / len(urows) if urows else 0.0
    ci = _cluster_ci([bool(r.get("covered")) for r in two], [r["study"] for r in two])
    out["agreement"] = (
        _grade(
            bool(two) and 0.7 <= cov <= 0.9 and prate >= 0.8,
            bool(two) and ci[0] <= 0.9 and ci[1] >= 0.7 and prate >= 0.5,
        ),
        f"80% coverage {hits}/{len(two)} (clustered 95% CI {ci[0]:.0%}-{ci[1]:.0%}); "
        f"{npass}/{len(urows)} within tolerance",
    )
    eq = [r for r in urows if r.get("equivalence") in ("equivalent", "minor")]
    fe = len(eq) / len(urows) if urows else 0.0
    out["input_equivalence"] = (
        _grade(fe >= 0.8, fe >= 0.5),
        f"{len(eq)}/{len(urows)} rows graded equivalent or minor",
    )
    covered_fams = [
        f for f in fams if sum(str(r.get("family", "")).split(" (")[0] == f for r in urows) >= 2
    ]
    fa = len(covered_fams) / len(fams) if fams else 0.0
    out["applicability"] = (
        _grade(fa >= 0.8, fa >= 0.5),
        f"{len(covered_fams)}/{len(fams)} output families with >= 2 evaluated rows"
        + (f" ({', '.join(covered_fams)})" if covered_fams else ""),
    )
    co = val.get("cohorts", {}).get("rows", [])
    nw = sum(bool(r.get("within_goal")) for r in co)
    out["population"] = (
        _grade(bool(co) and nw == len(co) and len(co) >= 3, bool(co) and nw >= len(co) / 2),
        f"{nw}/{len(co)} cohorts with predicted/observed SD in 0.5-2" if co else "no cohort row",
    )
    table = []
    for key, (name, what) in FACTORS.items():
        achieved, evidence = out[key]
        goal = str(use["goals"][key])
        table.append(
            {
                "factor": key,
                "name": name,
                "graded_on": what,
                "goal": goal,
                "achieved": achieved,
                "evidence": evidence,
                "adequate": _at_least(achieved, goal),
            }
        )
    return table


def _cluster_ci(hits: Sequence[bool], clusters: Sequence[str]) -> tuple[float, float]:
    if not hits:
        return (0.0, 0.0)
    r = clustered_rate(hits, clusters, replicates=1000, seed=0)
    return (float(r["low"]), float(r["high"]))


def credibility_assessment(report: Mapping[str, Any]) -> dict[str, Any]:
    """Per context of use: risk, goals, achieved grades, evidence and the adequacy verdict."""
    cfg = read_toml(data_path("calibration", "credibility.toml"))
    uses = []
    for u in cfg["uses"]:
        risk = cfg["risk"][u["influence"]][u["consequence"]]
        factors = grade_factors(report, u)
        short = [f["factor"] for f in factors if not f["adequate"]]
        uses.append(
            {
                "command": u["command"],
                "question": u["question"],
                "context": u["context"],
                "influence": u["influence"],
                "influence_reason": u["influence_reason"],
                "consequence": u["consequence"],
                "consequence_reason": u["consequence_reason"],
                "risk": risk,
                "families": list(u["families"]),
                "factors": factors,
                "adequate": not short,
                "verdict": "adequate for this context of use"
                if not short
                else "not adequate for this context of use: below goal in " + ", ".join(short),
            }
        )
    return {"assessed": cfg["assessed"], "uses": uses}


def environment() -> dict[str, str]:
    """Versions of Python and of the numerical libraries the run used."""
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "scipy", "numba", "SALib", "emcee", "arviz", "scoringrules"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# ----------------------------------------------------------------------------------- report
def build_report(
    *,
    draws: int | None = None,
    seed: int = 0,
    sobol_n_base: int = 64,
    sobol: bool = True,
    verification: bool = True,
    checks: bool = True,
) -> dict[str, Any]:
    """Everything in the report as plain data (the content of ``credibility.json``)."""

    t0 = time.perf_counter()
    ps = load_parameters()
    val = validate(draws=draws, seed=seed, checks=checks, config=load_config())
    report: dict[str, Any] = {
        "title": "microneedling credibility report",
        "disclaimer": DISCLAIMER,
        "microneedling_version": __version__,
        "parameter_set_hash": ps.hash,
        "environment": environment(),
        "context_of_use": CONTEXT_OF_USE,
        "code_verification": code_verification() if verification else {"status": "skipped"},
        "calibration": calibration_section(ps),
        "validation": val.to_dict(),
        "behaviours": qualitative_behaviours(posterior_nominal(ps)) if checks else [],
        "claims": claim_checks(posterior_nominal(ps)) if checks else [],
        "sensitivity": sobol_summary(n_base=sobol_n_base, seed=seed)
        if sobol
        else {"status": "skipped"},
    }
    report["limits"] = known_limits(report)
    report["credibility"] = credibility_assessment(report)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return _plain(report)


def _plain(x: Any) -> Any:
    """JSON-able data (numpy scalars as Python numbers, non-finite floats as None/"inf")."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        return _plain(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x

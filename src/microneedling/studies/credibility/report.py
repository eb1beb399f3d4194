"""The credibility report's data: context of use, verification, calibration, validation,
sensitivity, limits.

In the spirit of ASME V&V 40 (2018) and the FDA guidance "Assessing the Credibility of Computational
Modeling and Simulation in Medical Device Submissions" (2023): the evidence that the model is right,
collected by running it, not by quoting it.

* **Context of use**: what question the model answers, for whom, and with what consequence.
* **Code verification**: :func:`microneedling.studies.credibility.verification.run_verification`,
  run in process: the integrator's orders of convergence, Robertson against Radau, conservation,
  the healing model's homeostasis, the transport's Potts–Guy pin and mass balance, the unit cell
  against Crank's solutions; measured value, tolerance and pass/fail per check.
* **Calibration**: :func:`microneedling.studies.credibility.calibrate.fit` re-run, its residuals
  and posterior, and whether it reproduces the shipped calibration.
* **Validation**: :func:`microneedling.studies.credibility.validate.validate`: every held-out row,
  pass/miss, coverage.
* **Global sensitivity**: first-order and total Sobol indices of the main end points (collagen gain,
  scar-depth reduction, downtime) over the parameter intervals (:func:`sobol_summary`).
* **Known limits of applicability.**

:func:`build_report` returns all of it as JSON-able data; :mod:`microneedling.reports.credibility`
renders it (``report.html``) and writes it (``credibility.json``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microneedling.about import DISCLAIMER, __version__
from microneedling.course.model import Course
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import load_calibration
from microneedling.studies.credibility.calibrate import calibration_toml, fit, fit_parameters
from microneedling.studies.credibility.validate import validate
from microneedling.studies.credibility.verification import run_verification
from microneedling.studies.sensitivity import sobol_indices

#: the course the sensitivity summary is computed on (a shipped example) and its end points
SOBOL_COURSE = "acne-scars-rolling-cheek"
SOBOL_ENDPOINTS: dict[str, str] = {
    "collagen gain": "collagen_change@last+90",
    "scar-depth reduction": "scar_depth:reduction@last+90",
    "downtime": "erythema_days",
}

CONTEXT_OF_USE = (
    "Question: how do needle length, device, number and spacing of sessions, site, skin type and a "
    "topical change the expected course of collagen, texture, scar depth, pigmentation, downtime "
    "and absorption after microneedling (collagen induction therapy)? Users: researchers, product "
    "developers and practitioners planning or comparing protocols. Role of the model: a research "
    "and planning aid that ranks and explains protocols with intervals; it is never the sole basis "
    "of a treatment decision (decision consequence: low to moderate; model influence: advisory). "
    "Patients: adults, Fitzpatrick I-VI, facial and body sites of the model, needle lengths within "
    "the published per-site limits."
)

LIMITS: tuple[str, ...] = (
    "Four numbers calibrate the amplitudes (Lotfi 2013 collagen and epidermis, Kenkel 2021 density, "
    "2 days of redness at 1.5 mm); each study's unreported settings (passes, age, device for "
    "Kenkel) are stand-ins listed in data/calibration/protocols.toml.",
    "The calibrated posterior is conditional on every other parameter at its value (a Laplace "
    "approximation over the four fitted coordinates); the ensemble samples the other parameters "
    "independently over their prior intervals, so the joint uncertainty is approximate.",
    "Scar grades and scores are compared through proxies (grade proportional to depth; relative "
    "score change = relative depth change); two Goodman-Baron rows without a baseline grade are not "
    "evaluated.",
    "Redness duration: the calibration row (2 d at 1.5 mm) and HK 2018 (3-6 h, needle not "
    "reported) cannot both hold for one protocol; the model follows the calibration row.",
    "Channel geometry is human: rat histology (Kalluri 2011) is shallower and narrower.",
    "Intact skin (physics/transport.py: intact_kp) is Potts-Guy for neutral molecules up to 500 Da "
    "with a log Kow; heavier, ionised (pH 5.5) or log-Kow-less molecules cross only by the polar "
    "pore pathway (ten Berge's coefficient, Renkin hindrance in ~2 nm pores), which is small, and "
    "zero for hyaluronan-size molecules (their enhancement ratio is infinite). Lipidated or "
    "SC-retained peptides therefore get too little intact uptake and too large an enhancement "
    "ratio: Mohammed 2014 (2-22x) comes out at several hundred.",
    "Adjunct products (triple combination cream, vitamin A/C) are not modelled; pigmentation rows "
    "with them compare the microneedling effect alone.",
    "PIH probabilities rest on estimates with wide intervals; course-level incidence from per-session "
    "risks assumes independent sessions.",
)


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

    tied = {fp.members[0]: fp.members for fp in fit_parameters() if len(fp.members) > 1}
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


# ----------------------------------------------------------------------------------- report
def build_report(
    *,
    draws: int | None = None,
    seed: int = 0,
    sobol_n_base: int = 64,
    sobol: bool = True,
    verification: bool = True,
) -> dict[str, Any]:
    """Everything in the report as plain data (the content of ``credibility.json``)."""

    t0 = time.perf_counter()
    cal = fit()
    version, _ = calibration_toml(cal)
    shipped = load_calibration()
    ps = load_parameters()
    shipped_values_match = all(
        math.isclose(float(ps.parameters[n].value), v, rel_tol=1e-6)  # type: ignore[arg-type]
        for n, v in cal.values.items()
    )
    val = validate(draws=draws, seed=seed)
    report: dict[str, Any] = {
        "title": "microneedling credibility report",
        "disclaimer": DISCLAIMER,
        "microneedling_version": __version__,
        "parameter_set_hash": ps.hash,
        "context_of_use": CONTEXT_OF_USE,
        "code_verification": code_verification() if verification else {"status": "skipped"},
        "calibration": {
            "version": version,
            "shipped_version": shipped.get("version"),
            "reproduces_shipped": version == shipped.get("version") and shipped_values_match,
            **cal.to_dict(),
        },
        "validation": val.to_dict(),
        "sensitivity": sobol_summary(n_base=sobol_n_base, seed=seed)
        if sobol
        else {"status": "skipped"},
        "limits": list(LIMITS),
    }
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report

"""Validation: every held-out literature row against the model's posterior predictive, with the
metrics a reviewer expects; plus the checks of the calibration itself.

Each ``role = "validation"`` row of ``data/literature.toml`` is reproduced by simulating its
protocol (``data/calibration/protocols.toml``). The ensemble (``draws`` >= 256 by default) draws the
calibrated parameters as whole rows of the shipped posterior samples and every other uncertain
parameter from its prior (:func:`microneedling.parameters.sampling.sample_parameter_sets`); each
study's unreported settings are drawn from their ranges (stand-in uncertainty). The **nominal**
prediction uses the posterior's nominal values and the stand-ins themselves.

A row's **predictive** for the observed number adds to each draw ``f_d`` the between-study
discrepancy of its output family (``tau`` from the posterior sample when the calibration had the
family, else from its half-normal prior) and the study's measurement error (its SE): the same
observation model as the calibration's likelihood (:mod:`.likelihood`). Count rows replicate a
count of ``n`` patients.

Per row: the nominal prediction, the 50% and 80% central predictive intervals and the parameter
band (draws of ``f`` alone: parameters and stand-ins), pass/miss of the nominal against the row's
tolerance (fixed before any result), covered or not, the PIT, the CRPS and the 80% interval score
(``scoringrules``) in units of the tolerance, the sharpness (80% width / tolerance) and the ASME
V&V 20 comparison (``E = S - D``, ``u_num``, ``u_input``, ``u_D``, ``u_val``).

Overall: coverage of the 50% and 80% intervals on two-sided and count rows with a confidence
interval clustered by study (bound rows are reported apart: "consistent" when the predictive's
interval reaches the bound), the PIT's Kolmogorov–Smirnov test, mean CRPS against that of the
previous construction of the ensemble (every parameter from its file interval, no stand-in,
discrepancy or measurement term), and:

* **calculation verification**: every row re-run on a refined output grid and at a tight solver
  tolerance; ``u_num`` = the larger change;
* **calibration check**: every calibration row against its posterior predictive (PIT within
  0.1-0.9) and **leave-one-study-out** cross-validation on the calibration set (Pareto-smoothed
  importance weights of the posterior samples, the left-out study's settings drawn afresh);
* **virtual cohorts**: between-patient spread of simulated cohorts at the protocols of rows with a
  reported patient SD (ratio predicted/observed; epistemic vs aleatory variance).

No validation row is ever used by the calibration (it reads ``rows("calibration")`` only).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from microneedling.errors import InputError
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.parameters.sampling import (
    Posterior,
    draw_indices,
    posterior_nominal,
    sample_parameter_sets,
    shipped_posterior,
)
from microneedling.studies.credibility.calibrate import (
    CalibrationConfig,
    cohort_values,
    load_config,
    nuisances,
    observed_value,
    predict_rows,
    responder_spread,
    row_specs,
    study_of,
    tolerance_value,
)
from microneedling.studies.credibility.likelihood import Likelihood, RowSpec, ordinal_probability
from microneedling.studies.credibility.literature import (
    ASSESSORS,
    OUTCOME_KINDS,
    LiteratureRow,
    Protocol,
    load_protocol_file,
    load_protocols,
    rows,
)
from microneedling.studies.credibility.loso import (
    distinct_draws,
    fitted_problem,
    leave_one_study_out,
    posterior_x,
)
from microneedling.studies.credibility.loso_refit import shipped_refits, with_refits
from microneedling.studies.credibility.metrics import (
    clustered_rate,
    crps,
    inside_interval,
    interval_score,
    ks_uniform,
    pit_consistent,
    variance_components,
    vv20,
)
from microneedling.studies.credibility.scoring import score
from microneedling.studies.credibility.screening import row_noise

__all__ = [
    "RowResult",
    "Validation",
    "by_assessor",
    "by_family",
    "calculation_verification",
    "calibration_check",
    "cohort_spread",
    "ensemble",
    "family_of",
    "validate",
]


@dataclass(frozen=True)
class RowResult:
    """The comparison of one row (values in ``units``; % for relative changes, a proportion for
    count rows' intervals)."""

    key: str
    quantity: str
    sources: tuple[str, ...]
    study: str
    family: str
    kind: str  # likelihood kind: gaussian | upper | lower | binomial | ordinal
    evidence: str
    units: str
    observed: float
    tolerance: float
    bound: str | None
    predicted: float
    median: float
    low: float  # 80% predictive interval
    high: float
    low50: float
    high50: float
    band_low: float  # 80% parameter band (f only)
    band_high: float
    status: str  # "pass" | "miss" | "not evaluated"
    covered: bool | None  # 80%
    covered50: bool | None
    pit: float
    crps: float
    crps_baseline: float
    interval_score: float
    sharpness: float
    vv20: dict[str, float]
    comparable: str
    assumptions: str
    equivalence: str = ""
    assessor: str = ""  # who judged the observed number (literature.ASSESSORS; "" unknown)
    outcome_kind: str = ""  # what kind of number it is (literature.OUTCOME_KINDS; "" unknown)
    #: the study reported the number's spread (SE, SD, CI, range or k of n:
    #: ``LiteratureRow.spread_reported``); else its SE is the default CV's
    spread_reported: bool = False

    @property
    def error(self) -> float:
        """Model minus observed."""
        return self.predicted - self.observed


@dataclass(frozen=True)
class Validation:
    """All validation rows, the pass count, coverage and the other metrics."""

    results: tuple[RowResult, ...]
    draws: int
    seed: int
    interval: tuple[float, float]
    parameter_set_hash: str
    posterior: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    calculation: dict[str, Any] = field(default_factory=dict)
    cohorts: dict[str, Any] = field(default_factory=dict)

    @property
    def evaluated(self) -> list[RowResult]:
        return [r for r in self.results if r.status != "not evaluated"]

    @property
    def n_pass(self) -> int:
        return sum(r.status == "pass" for r in self.results)

    @property
    def n_evaluated(self) -> int:
        return len(self.evaluated)

    @property
    def n_covered(self) -> int:
        return sum(bool(r.covered) for r in self.evaluated)

    @property
    def coverage(self) -> float:
        """Fraction of evaluated rows whose observation is inside the 80% predictive interval."""
        return self.n_covered / self.n_evaluated if self.n_evaluated else math.nan

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "draws": self.draws,
                "seed": self.seed,
                "interval_percentiles": list(self.interval),
                "parameter_set_hash": self.parameter_set_hash,
                "posterior": self.posterior,
                "n_rows": len(self.results),
                "n_evaluated": self.n_evaluated,
                "n_pass": self.n_pass,
                "n_covered": self.n_covered,
                "coverage": self.coverage,
                "summary": self.summary,
                "rows": [{**asdict(r), "sources": list(r.sources)} for r in self.results],
                "calibration_check": self.calibration,
                "calculation_verification": self.calculation,
                "cohorts": self.cohorts,
            }
        )


def _clean(x: Any) -> Any:
    """JSON-able: non-finite floats as None/"inf"/"-inf", tuples as lists, numpy as Python."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.generic):
        return _clean(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


# ------------------------------------------------------------------------------- ensemble
def ensemble(
    ps: ParameterSet, draws: int, seed: int
) -> tuple[ParameterSet, list[ParameterSet], Posterior | None, np.ndarray | None]:
    """(nominal set, ``draws`` sets, the posterior used, its sample indices): the nominal set holds
    the posterior's nominal values when the shipped posterior applies to ``ps``."""
    post = shipped_posterior(ps)
    idx = draw_indices(post.n_samples, draws, seed) if post is not None else None
    return posterior_nominal(ps), sample_parameter_sets(ps, draws, seed), post, idx


def stand_in_draws(
    lit_rows: Sequence[LiteratureRow],
    protocols: Mapping[str, Protocol],
    draws: int,
    seed: int,
) -> list[dict[str, dict[str, float]]]:
    """Per draw, ``{row key: {setting: value}}``: each study's unreported settings drawn uniformly
    from their ranges (integers on the integers), shared by the study's rows."""
    nus = nuisances(lit_rows, protocols)
    rng = np.random.default_rng([seed, 1729])
    u = rng.standard_normal((draws, len(nus)))
    out: list[dict[str, dict[str, float]]] = [{} for _ in range(draws)]
    for m, nu in enumerate(nus):
        vals = nu.at(u[:, m])
        for d in range(draws):
            for key in nu.rows:
                out[d].setdefault(key, {})[nu.setting] = float(vals[d])
    return out


def _tau_draws(
    post: Posterior | None,
    idx: np.ndarray | None,
    groups: Sequence[str],
    scales: np.ndarray,
    draws: int,
    seed: int,
) -> tuple[np.ndarray, list[str]]:
    """(draws, Q) discrepancy scales: the posterior's samples for groups it calibrated, the
    half-normal prior for the others; and where each came from."""
    rng = np.random.default_rng([seed, 4242])
    out = np.abs(rng.standard_normal((draws, len(groups)))) * scales[None, :]
    src = ["prior"] * len(groups)
    if post is not None and idx is not None:
        for q, g in enumerate(groups):
            t = post.tau_of(g)
            if t is not None:
                out[:, q] = t[idx]
                src[q] = "posterior"
    return out, src


def _quant(x: np.ndarray, q: Sequence[float]) -> list[float]:
    x = x[np.isfinite(x)]
    return [float(v) for v in np.quantile(x, q)] if x.size else [math.nan] * len(q)


# ------------------------------------------------------------------- calculation verification
def calculation_verification(
    lit_rows: Sequence[LiteratureRow],
    nominal: ParameterSet,
    protocols: Mapping[str, Protocol],
    settings: Mapping[str, Any],
    config: CalibrationConfig,
) -> dict[str, Any]:
    """Every row's nominal prediction on the default grid, on a refined grid and at a tight
    tolerance; ``u_num`` = the larger absolute change (row units)."""
    vc = config.validation
    t0 = time.perf_counter()
    base = predict_rows(lit_rows, [nominal], protocols, settings)[0]
    fine = predict_rows(
        lit_rows,
        [nominal],
        protocols,
        settings,
        refine=(vc.refine_factor, vc.refine_minutes, vc.refine_days),
    )[0]
    tight = predict_rows(lit_rows, [nominal], protocols, settings, rtol=vc.rtol_tight)[0]
    out: list[dict[str, Any]] = []
    for r, b, f, t in zip(lit_rows, base, fine, tight, strict=True):
        if not math.isfinite(b):
            continue
        dg = abs(f - b) if math.isfinite(f) else math.inf
        dt = abs(t - b) if math.isfinite(t) else math.inf
        u = max(dg, dt)
        tol = tolerance_value(r, protocols[r.key])
        out.append(
            {
                "key": r.key,
                "value": float(b),
                "grid_change": float(dg),
                "tolerance_change": float(dt),
                "u_num": float(u),
                "relative": float(u / abs(b)) if b else float(u),
                "u_num_over_tolerance": float(u / tol) if tol else None,
            }
        )
    rel = [float(o["relative"]) for o in out if math.isfinite(float(o["relative"]))]
    return {
        "method": f"default output grid vs the grid refined {vc.refine_factor}x plus every "
        f"{vc.refine_minutes:g} min for {vc.refine_days:g} d after each session; solver rtol "
        f"1e-6 vs {vc.rtol_tight:g}; u_num = the larger change",
        "rows": out,
        "max_relative": max(rel) if rel else math.nan,
        "seconds": round(time.perf_counter() - t0, 1),
    }


# --------------------------------------------------------------------------- the rows' scores
def _score_rows(
    lit_rows: Sequence[LiteratureRow],
    protocols: Mapping[str, Protocol],
    settings: Mapping[str, Any],
    config: CalibrationConfig,
    nominal_pred: np.ndarray,
    f: np.ndarray,
    f_base: np.ndarray | None,
    post: Posterior | None,
    idx: np.ndarray | None,
    seed: int,
    u_num: Mapping[str, float],
    patient_spread: Mapping[str, tuple[float, float]] | None = None,
) -> list[RowResult]:
    specs, groups, scales, factor = row_specs(
        lit_rows, protocols, settings, config, patient_spread=patient_spread
    )
    lik = Likelihood(specs, len(groups))
    D = f.shape[0]
    tau, _ = _tau_draws(post, idx, groups, scales, D, seed)
    rng = np.random.default_rng([seed, 99])
    levels = sorted(config.validation.intervals)
    out = []
    for i, (r, spec) in enumerate(zip(lit_rows, specs, strict=True)):
        p = protocols[r.key]
        fi = f[:, i] * factor[i]
        ti = tau[:, spec.group]
        y = lik.predictive(i, fi, ti, rng)
        obs = spec.observed
        count = spec.kind in ("binomial", "ordinal")
        if count:
            y = y / spec.n
        q = {c: _quant(y, [(1 - c / 100) / 2, (1 + c / 100) / 2]) for c in levels}
        # the model's numbers in the row's units (fs: draws, nom: nominal); ``unit`` takes them to
        # the scale of ``obs`` and ``y`` (a fraction for counts)
        fs, nom, unit = f[:, i], float(nominal_pred[i]), float(factor[i])
        u_i = float(u_num.get(r.key, 0.0))
        noise_spec = spec
        if spec.kind == "ordinal":  # a graded count: the typical patient's value -> % in category

            def percent(v: Any, s: RowSpec = spec) -> np.ndarray:
                return 100.0 * np.asarray(ordinal_probability(v, s.threshold, s.se, s.direction))

            u_i = abs(float(percent(nom + u_i)) - float(percent(nom)))
            fs, nom, unit = percent(fs), float(percent(nom)), 0.01
            noise_spec = dataclasses.replace(spec, kind="binomial")  # noise of the fraction
        band = _quant(fs * unit, [0.1, 0.9])
        pit = lik.pit(i, fi, ti)
        tol_raw = tolerance_value(r, p)
        tol = float(tol_raw) if tol_raw else math.nan
        # scores are in units of the tolerance, or of the row's noise where it has none
        tol_pred = tol * factor[i] if tol_raw else row_noise(noise_spec, float(scales[spec.group]))

        lo80, hi80 = q.get(80.0, [math.nan, math.nan])
        lo50, hi50 = q.get(50.0, [math.nan, math.nan])
        two_sided = spec.kind in ("gaussian", "binomial", "ordinal")
        c_val = crps(obs, y) if two_sided else math.nan
        c_base = math.nan
        if f_base is not None and two_sided:
            base_i = f_base[:, i]
            if spec.kind == "ordinal":
                base_i = percent(base_i)
            c_base = crps(obs, base_i * unit)
        u_d = spec.se if not count else math.sqrt(max(obs * (1 - obs), 0.25 / spec.n) / spec.n)
        out.append(
            RowResult(
                key=r.key,
                quantity=r.quantity,
                sources=r.sources,
                study=study_of(r),
                family=groups[spec.group],
                kind=spec.kind,
                evidence=r.evidence,
                assessor=r.assessor or "",
                outcome_kind=r.outcome_kind or "",
                spread_reported=r.spread_reported,
                units="%" if p.compare == "relative_change" else r.units,
                observed=observed_value(r, p),
                tolerance=tol,
                bound=r.bound,
                predicted=nom,
                median=float(np.nanmedian(y)) if np.any(np.isfinite(y)) else math.nan,
                low=lo80,
                high=hi80,
                low50=lo50,
                high50=hi50,
                band_low=band[0],
                band_high=band[1],
                status=score(
                    r,
                    nom,
                    observed=observed_value(r, p),
                    tolerance=tol_raw if r.kind in ("value", "bound", "two_arm") else None,
                    draws=fs,
                ).status,
                covered=inside_interval(spec.kind, 80.0, pit, obs, lo80, hi80),
                covered50=inside_interval(spec.kind, 50.0, pit, obs, lo50, hi50),
                pit=pit,
                crps=c_val / tol_pred if tol_pred else math.nan,
                crps_baseline=c_base / tol_pred if tol_pred else math.nan,
                interval_score=(interval_score(obs, lo80, hi80, 0.2) / tol_pred)
                if two_sided and tol_pred
                else math.nan,
                sharpness=(hi80 - lo80) / tol_pred if tol_pred else math.nan,
                vv20=vv20(
                    (nom * unit) - obs,
                    u_i * unit,
                    float(np.nanstd(fs * unit, ddof=1)) if D > 1 else 0.0,
                    u_d,
                ),
                comparable=r.comparable,
                assumptions=p.assumptions,
                equivalence=str(getattr(r, "equivalence", "")),
            )
        )
    return out


def family_of(r: RowResult) -> str:
    """A row's claim family without the likelihood's note ('pih (counts, logit)' -> 'pih')."""
    return str(r.family).split(" (")[0]


def by_family(results: Sequence[RowResult]) -> list[dict[str, Any]]:
    """Per claim family, in order of first appearance: rows, evaluated, within tolerance, and the
    two-sided and count rows covered by the 80% and 50% predictive intervals (bound rows have no
    two-sided interval to cover; their consistency is counted apart)."""
    return _by_group(results, family_of, "family")


def by_assessor(results: Sequence[RowResult]) -> list[dict[str, Any]]:
    """The same counts as :func:`by_family` per assessor of the observed numbers and kind of
    number (``"not stated: subjective rating"``: a rated grade whose rater's blinding the source
    does not state; ``literature.ASSESSORS``, ``OUTCOME_KINDS``), assessors in that order:
    descriptive, to show where the misses lie; no likelihood reads them."""
    order = {a: i for i, a in enumerate(ASSESSORS)}
    kinds = {k: i for i, k in enumerate(OUTCOME_KINDS)}
    rows = sorted(
        results,
        key=lambda r: (order.get(r.assessor, len(order)), kinds.get(r.outcome_kind, len(kinds))),
    )
    return _by_group(
        rows, lambda r: f"{r.assessor or 'unknown'}: {r.outcome_kind or 'unknown'}", "assessor"
    )


def _by_group(
    results: Sequence[RowResult], group: Callable[[RowResult], str], name: str
) -> list[dict[str, Any]]:
    groups: dict[str, list[RowResult]] = {}
    for r in results:
        groups.setdefault(group(r), []).append(r)
    out = []
    for g, rs in groups.items():
        ev = [r for r in rs if r.status != "not evaluated"]
        two = [r for r in ev if r.kind in ("gaussian", "binomial", "ordinal")]
        bounds = [r for r in ev if r.kind in ("upper", "lower")]
        out.append(
            {
                name: g,
                "rows": len(rs),
                "evaluated": len(ev),
                "pass": sum(r.status == "pass" for r in ev),
                "studies": len({r.study for r in ev}),
                "n_two_sided": len(two),
                "covered_80": sum(bool(r.covered) for r in two),
                "covered_50": sum(bool(r.covered50) for r in two),
                "n_bounds": len(bounds),
                "bounds_consistent_80": sum(bool(r.covered) for r in bounds),
            }
        )
    return out


def _summary(results: Sequence[RowResult], config: CalibrationConfig, seed: int) -> dict[str, Any]:
    ev = [r for r in results if r.status != "not evaluated"]
    two = [r for r in ev if r.kind in ("gaussian", "binomial", "ordinal")]
    bounds = [r for r in ev if r.kind in ("upper", "lower")]
    B = config.validation.bootstrap
    out: dict[str, Any] = {
        "n_two_sided": len(two),
        "n_bounds": len(bounds),
        "coverage_80": clustered_rate(
            [bool(r.covered) for r in two], [r.study for r in two], replicates=B, seed=seed
        ),
        "coverage_50": clustered_rate(
            [bool(r.covered50) for r in two], [r.study for r in two], replicates=B, seed=seed
        ),
        "bounds_consistent_80": sum(bool(r.covered) for r in bounds),
        "pass": clustered_rate(
            [r.status == "pass" for r in ev], [r.study for r in ev], replicates=B, seed=seed
        ),
        "pit_ks": ks_uniform([r.pit for r in two]),
        "pit": [r.pit for r in two],
        "by_family": by_family(results),
        "by_assessor": by_assessor(results),
    }
    c = [r.crps for r in two if math.isfinite(r.crps)]
    cb = [r.crps_baseline for r in two if math.isfinite(r.crps_baseline)]
    s = [r.sharpness for r in two if math.isfinite(r.sharpness)]
    i = [r.interval_score for r in two if math.isfinite(r.interval_score)]
    out.update(
        {
            "crps_mean": float(np.mean(c)) if c else math.nan,
            "crps_baseline_mean": float(np.mean(cb)) if cb else math.nan,
            "interval_score_mean": float(np.mean(i)) if i else math.nan,
            "sharpness_median": float(np.median(s)) if s else math.nan,
            "goals": {
                "coverage_80_in_70_90": bool(two and 0.7 <= out["coverage_80"]["rate"] <= 0.9),
                "pass_rate_at_least_80": bool(ev and out["pass"]["rate"] >= 0.8),
                "crps_below_baseline": bool(c and cb and np.mean(c) < np.mean(cb)),
            },
        }
    )
    return out


# ----------------------------------------------------------------------- calibration check
def calibration_check(
    post: Posterior, config: CalibrationConfig, draws: int, seed: int
) -> dict[str, Any]:
    """Calibration rows against their posterior predictive, and leave-one-study-out CV: by
    importance sampling, except for the studies of the refits shipped for ``post``
    (:func:`~microneedling.studies.credibility.loso_refit.shipped_refits`), which are scored by
    their refit; a shipped refit that does not apply is listed in ``loso["refits_refused"]``."""
    t0 = time.perf_counter()
    problem = fitted_problem(post, config)
    idx = distinct_draws(post.n_samples, draws, seed)
    x = posterior_x(problem, post, idx, seed)
    _, f, by = problem.evaluate(x)
    P, Q = problem.P, problem.Q
    tau = np.exp(x[:, P : P + Q])
    lik = problem.likelihood
    rows_out = []
    for i, spec in enumerate(lik.specs):
        pit = lik.pit(i, f[:, i], tau[:, spec.group])
        rows_out.append(
            {
                "key": spec.key,
                "study": spec.study,
                "kind": spec.kind,
                "observed": spec.observed,
                "median": float(np.nanmedian(f[:, i])),
                "pit": pit,
                "inside_0.1_0.9": pit_consistent(spec.kind, pit),
            }
        )
    loso = leave_one_study_out(problem, x, seed, bootstrap=config.validation.bootstrap, by=by)
    refits, refused = shipped_refits(post, config, problem.likelihood.studies)
    if refits:
        loso = with_refits(
            loso, problem, refits, draws=len(idx), seed=seed, bootstrap=config.validation.bootstrap
        )
    loso["refits_refused"] = refused
    return {
        "posterior": post.version,
        "draws": len(idx),
        # False: the calibration's inputs changed since the fit, and these scores are of a
        # likelihood the posterior was not fitted with
        "inputs_as_fitted": problem.fingerprint() == post.summary.get("fingerprint"),
        "rows": rows_out,
        "n_inside": sum(r["inside_0.1_0.9"] for r in rows_out),
        "n_rows": len(rows_out),
        "loso": loso,
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ---------------------------------------------------------------------------- virtual cohorts
def cohort_spread(
    lit_rows: Sequence[LiteratureRow],
    protocols: Mapping[str, Protocol],
    sets: Sequence[ParameterSet],
    config: CalibrationConfig,
    seed: int,
) -> dict[str, Any]:
    """Simulated between-patient SD at the protocol of every row with a reported patient SD
    (``sd`` and ``n >= 5``; value, grade and per-session rows) against that SD.

    Patients differ by the inter-individual factors of a population preset (``acne-scar-adults``
    for scar protocols, else ``photoaging-adults``), by their own age, skin type and lesion drawn
    within the protocol's ranges (:func:`~.calibrate.cohort_values`; sex and the treatment kept) and,
    for grade rows with ``baseline_sd``, by their baseline grade. ``cohort_draws`` parameter draws x
    ``cohort_patients`` patients: the aleatory SD (between patients within a draw) and the epistemic
    SD (of the cohort mean between draws)."""
    vc = config.validation
    t0 = time.perf_counter()
    K = min(vc.cohort_draws, len(sets))
    N = vc.cohort_patients
    out = []
    for r in lit_rows:
        p = protocols[r.key]
        if r.sd is None or not r.n or r.n < 5 or not p.evaluable or p.course is None:
            continue
        if p.compare not in ("value", "grade", "per_session_mean") or p.stage is not None:
            continue
        if getattr(p, "reference", None) is not None or r.bound is not None:
            continue
        pop, v = cohort_values(r, p, sets[:K], N, seed)
        if p.compare == "grade" and r.baseline_sd:
            rng = np.random.default_rng([seed, 3])
            b = np.maximum(r.baseline + r.baseline_sd * rng.standard_normal(N), 0.0)  # type: ignore[operator]
            v = v / (r.baseline or 1.0) * b[None, :]
        comp = variance_components(v)
        within = np.nanstd(v, axis=1, ddof=1)
        obs_sd = float(r.sd)
        ratio = comp["aleatory_sd"] / obs_sd if obs_sd else math.nan
        out.append(
            {
                "key": r.key,
                "role": r.role,
                "population": pop.name if hasattr(pop, "name") else "",
                "observed_sd": obs_sd,
                "predicted_sd": comp["aleatory_sd"],
                "predicted_sd_low": float(np.nanpercentile(within, 5)),
                "predicted_sd_high": float(np.nanpercentile(within, 95)),
                "epistemic_sd": comp["epistemic_sd"],
                "ratio": ratio,
                "within_goal": bool(vc.cohort_ratio[0] <= ratio <= vc.cohort_ratio[1]),
            }
        )
    return {
        "rows": out,
        "goal": list(vc.cohort_ratio),
        "n_within": sum(o["within_goal"] for o in out),
        "patients": N,
        "draws": K,
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ------------------------------------------------------------------------------- validate
def validate(
    parameters: ParameterSet | None = None,
    *,
    draws: int | None = None,
    seed: int = 0,
    keys: Sequence[str] | None = None,
    checks: bool = True,
    config: CalibrationConfig | None = None,
) -> Validation:
    """Simulate every validation row (or those in ``keys``) under the nominal set and ``draws``
    ensemble draws; score them; with ``checks``, also calculation verification, the calibration
    check (posterior predictive, leave-one-study-out) and the virtual-cohort spread."""
    config = config or load_config()
    settings = load_protocol_file()["settings"]
    n_draws = config.validation.draws if draws is None else int(draws)
    if n_draws < 2:
        raise InputError("draws", n_draws, "at least 2 parameter draws (for the intervals)")
    ps = parameters or load_parameters()
    protocols = load_protocols()
    val = rows("validation")
    if keys is not None:
        known = {r.key for r in val}
        for k in keys:
            if k not in known:
                raise InputError("rows", k, f"a validation row key ({len(known)} known)")
        val = [r for r in val if r.key in set(keys)]
    missing = [r.key for r in val if r.key not in protocols]
    if missing:
        raise InputError("protocols.toml", missing, "a [rows.KEY] table for every validation row")
    nominal, sets, post, idx = ensemble(ps, n_draws, seed)
    ev = [r for r in val if protocols[r.key].evaluable]
    results: dict[str, RowResult] = {}
    calc: dict[str, Any] = {}
    if ev:
        ov = stand_in_draws(ev, protocols, n_draws, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pred = predict_rows(ev, [nominal, *sets], protocols, settings, overrides=[None, *ov])
            base = predict_rows(
                ev, sample_parameter_sets(ps, n_draws, seed, posterior=False), protocols, settings
            )
        if checks:
            calc = calculation_verification(ev, nominal, protocols, settings, config)
        u_num = {o["key"]: o["u_num"] for o in calc.get("rows", [])}
        typical = {r.key: float(v) for r, v in zip(ev, pred[0], strict=True)}
        spread = responder_spread(ev, protocols, nominal, config, seed, typical)
        for rr in _score_rows(
            ev,
            protocols,
            settings,
            config,
            pred[0],
            pred[1:],
            base,
            post,
            idx,
            seed,
            u_num,
            {k: (v["sd"], v["offset"]) for k, v in spread.items()},
        ):
            if rr.key in spread:  # say where the between-patient spread came from
                c = spread[rr.key]
                rr = dataclasses.replace(
                    rr,
                    assumptions=f"{rr.assumptions} Between-patient SD {c['sd']:.3g} "
                    f"(cohort mean {c['offset']:+.3g} from the typical patient) from a virtual "
                    f"cohort of {c['patients']} patients of population {c['population']!r} at "
                    "the nominal parameters.",
                )
            results[rr.key] = rr
    ordered = []
    for r in val:
        if r.key in results:
            ordered.append(results[r.key])
            continue
        p = protocols[r.key]
        tol = tolerance_value(r, p)
        nan = math.nan
        ordered.append(
            RowResult(
                key=r.key,
                quantity=r.quantity,
                sources=r.sources,
                study=study_of(r),
                family=str(getattr(r, "family", "") or r.observable),
                kind="",
                evidence=r.evidence,
                assessor=r.assessor or "",
                outcome_kind=r.outcome_kind or "",
                spread_reported=r.spread_reported,
                units="%" if p.compare == "relative_change" else r.units,
                observed=observed_value(r, p),
                tolerance=float(tol) if tol is not None else nan,
                bound=r.bound,
                predicted=nan,
                median=nan,
                low=nan,
                high=nan,
                low50=nan,
                high50=nan,
                band_low=nan,
                band_high=nan,
                status="not evaluated",
                covered=None,
                covered50=None,
                pit=nan,
                crps=nan,
                crps_baseline=nan,
                interval_score=nan,
                sharpness=nan,
                vv20={},
                comparable=r.comparable,
                assumptions=p.reason,
                equivalence=str(getattr(r, "equivalence", "")),
            )
        )
    cal_check: dict[str, Any] = {}
    cohorts: dict[str, Any] = {}
    if checks:
        if post is not None:
            cal_check = calibration_check(post, config, min(n_draws, post.n_samples), seed)
        else:
            cal_check = {"status": "no shipped posterior applies to this parameter set"}
        cohorts = cohort_spread(rows(), protocols, sets, config, seed)
    q_lo, q_hi = 10.0, 90.0
    return Validation(
        results=tuple(ordered),
        draws=n_draws,
        seed=seed,
        interval=(q_lo, q_hi),
        parameter_set_hash=ps.hash,
        posterior=post.version if post is not None else None,
        summary={
            **_summary(ordered, config, seed),
            "stand_in_ranges_moved": [
                {"setting": n.label, "given": list(n.given), "used": [n.low, n.high]}
                for n in nuisances(ev, protocols)
                if n.given is not None
            ],
        },
        calibration=cal_check,
        calculation=calc,
        cohorts=cohorts,
    )

"""Leave-one-study-out cross-validation of the calibration from its posterior samples.

Which parameters a study pulls the calibration towards is what leave-one-study-out (LOSO) asks:
would the calibration, fitted without study ``s``, have predicted ``s``'s rows? Two estimates:

* **importance sampling** (:func:`leave_one_study_out`): Pareto-smoothed importance weights
  ``w_d ~ 1/p(y_s | draw d)`` turn the full posterior into one without ``s`` (Vehtari, Gelman &
  Gabry 2017, *Stat Comput* 27:1413); no refit, but unreliable when the weights' tail is heavy
  (Pareto k > 0.7);
* **exact refits** (:mod:`.loso_refit`): the calibration re-run without ``s``, scored with the
  same :func:`left_out_scores`.

Both are scored on the likelihood the shipped posterior was fitted with (:func:`fitted_problem`):
its factors, the nuisance settings it sampled, the stand-ins' spread its screening added to each
row's SE and the graded counts' between-patient spread it recorded.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from microneedling.errors import InputError
from microneedling.parameters.sampling import Posterior
from microneedling.studies.credibility.calibrate import (
    CalibrationConfig,
    Problem,
    build_problem,
    nuisances,
    recorded_spread,
)
from microneedling.studies.credibility.likelihood import Likelihood
from microneedling.studies.credibility.literature import load_protocols, rows
from microneedling.studies.credibility.metrics import (
    clustered_rate,
    inside_interval,
    pit_consistent,
    psis_weights,
    weighted_quantile,
)
from microneedling.studies.credibility.screening import load_screening

__all__ = [
    "IMPORTANCE",
    "REFIT",
    "distinct_draws",
    "fitted_problem",
    "leave_one_study_out",
    "left_out_scores",
    "loso_totals",
    "posterior_x",
]

#: how a left-out study was scored: by reweighting the full posterior, or by a refit without it
IMPORTANCE = "importance sampling"
REFIT = "refit"


def fitted_problem(post: Posterior, config: CalibrationConfig) -> Problem:
    """The calibration problem ``post`` was fitted on: its factors, the nuisance settings it
    sampled, the spread of the other settings' stand-ins that its screening added to the rows'
    SE (recorded in its summary; for an older posterior, the shipped screening's, which must be the
    one it was fitted with), the graded counts' between-patient spread it was fitted with, every
    calibration study but the one a cross-validation refit left out (``left_out``). Its
    :meth:`~Problem.fingerprint` equals the posterior's ``fingerprint`` unless the calibration's
    inputs (rows, protocols, parameter files, settings) changed since the fit. An
    :class:`InputError` if the spread must come from the shipped screening and that is not the
    one the posterior was fitted with."""
    recorded = post.summary.get("screening", {})
    stand_in_sd = recorded.get("stand_in_sd")
    if stand_in_sd is None:  # a posterior older than the record: the shipped screening's
        screen = load_screening()
        want = recorded.get("version")
        if want is not None and screen.get("version") != want:
            raise InputError("data/calibration/screening.toml", screen.get("version"), f"{want}")
        stand_in_sd = screen.get("nuisances", {}).get("stand_in_sd", {})
    sampled = {n["label"] for n in post.nuisances}
    protocols = load_protocols()
    current = nuisances(rows("calibration"), protocols)
    return build_problem(
        [f["label"] for f in post.factors],
        config=config,
        exclude_studies=[str(s) for s in post.summary.get("left_out", [])],
        nuisance_labels=[n.label for n in current if n.label in sampled],
        stand_in_sd=dict(stand_in_sd),
        patient_spread=recorded_spread(post.summary, protocols),
    )


def distinct_draws(n_samples: int, draws: int, seed: int) -> np.ndarray:
    """``min(draws, n_samples)`` distinct sample indices, sorted (every one when ``draws >=
    n_samples``): importance weights over repeated draws put ties in the tail that Pareto
    smoothing fits, which makes its k noisier."""
    if draws >= n_samples:
        return np.arange(n_samples)
    rng = np.random.default_rng([int(seed) % 2**63, 61])
    return np.sort(rng.choice(n_samples, size=draws, replace=False))


def posterior_x(problem: Problem, post: Posterior, idx: np.ndarray, seed: int) -> np.ndarray:
    """Posterior samples ``idx`` of ``post`` in the coordinates of ``problem`` (matched by label);
    a coordinate the posterior lacks (a left-out study's settings, the discrepancy of a group it
    had no row of) is drawn from its prior."""
    labels = (
        [f["label"] for f in post.factors]
        + [f"tau[{g}]" for g in post.groups]
        + [n["label"] for n in post.nuisances]
    )
    rng = np.random.default_rng([seed, 31])
    x = rng.standard_normal((len(idx), problem.ndim))
    P, Q = problem.P, problem.Q
    x[:, P : P + Q] = np.log(
        np.maximum(np.abs(x[:, P : P + Q]), 1e-3) * problem.group_prior_scale[None, :]
    )
    for j, lab in enumerate(problem.labels):
        if lab in labels:
            x[:, j] = post.x[idx, labels.index(lab)]
    return x


def left_out_scores(
    lik: Likelihood,
    study: str,
    f: np.ndarray,
    tau: np.ndarray,
    loglik: np.ndarray,
    weights: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """How well draws of a posterior fitted without ``study`` predict its rows: ``elpd`` (nats) =
    log sum_d w_d p(y_study | draw d) (``loglik`` (D,): log p(y_study | draw d); ``weights`` (D,),
    normalised: importance weights, or 1/D for the draws of a refit) and per row the weighted PIT
    and whether the observation lies in the weighted 80% predictive interval (read from the PIT,
    the weighted mixture's CDF at the observation: :func:`pit_consistent`).
    ``f`` (D, R): the draws' predictions of every row; ``tau`` (D, Q): their discrepancy scales."""
    fin = np.isfinite(loglik)
    elpd = -math.inf
    if np.any(fin):
        top = float(np.max(loglik[fin]))
        mass = float(np.sum(weights[fin] * np.exp(loglik[fin] - top)))
        elpd = math.log(mass) + top if mass > 0 else -math.inf
    rows_s: list[dict[str, Any]] = []
    for i, spec in enumerate(lik.specs):
        if spec.study != study:
            continue
        fi, ti = f[:, i], tau[:, spec.group]
        pit_terms = np.array([lik.pit(i, fi[d : d + 1], ti[d : d + 1]) for d in range(len(fi))])
        good = np.isfinite(pit_terms)
        pit = (
            float(np.sum(weights[good] * pit_terms[good]) / np.sum(weights[good]))
            if good.any()
            else math.nan
        )
        # The observation lies in the central 80% interval of the weighted predictive mixture
        # F = sum_d w_d F_d exactly when F(y) = pit is in [0.1, 0.9] (on its side for a bound):
        # read from the PIT, which is that CDF computed, not from quantiles of one replicate per
        # draw, whose Monte Carlo error is large when few draws carry the weight.
        covered: bool | None
        if math.isfinite(pit):
            covered = pit_consistent(spec.kind, pit)
        else:  # no finite CDF: the replicates' interval, if they have one
            yrep = lik.predictive(i, fi, ti, rng)
            lo = hi = math.nan
            if spec.kind not in ("binomial", "ordinal"):
                lo, hi = weighted_quantile(yrep, weights, [0.1, 0.9])
            covered = inside_interval(spec.kind, 80.0, pit, spec.observed, lo, hi)
            if not (math.isfinite(lo) or math.isfinite(hi)):
                covered = None  # no finite prediction with the study's settings redrawn
        rows_s.append({"key": spec.key, "pit": pit, "covered_80": covered})
    return {"elpd": elpd, "rows": rows_s}


def leave_one_study_out(
    problem: Problem,
    x: np.ndarray,
    seed: int,
    *,
    bootstrap: int = 2000,
    by: np.ndarray | None = None,
) -> dict[str, Any]:
    """Leave-one-study-out cross-validation of a calibration from its posterior samples ``x`` (in
    the coordinates of ``problem``), without refitting.

    For each study ``s``: Pareto-smoothed importance weights ``w_d ~ 1/p(y_s | x_d)`` turn the
    full posterior into one without the study (Vehtari, Gelman & Gabry 2017); the study's own
    unreported settings (the nuisance coordinates) are drawn afresh from their prior, since a
    left-out study's settings are unknown. Per study: ``elpd`` = log sum_d w_d p(y_s | x'_d), the
    Pareto ``k``; per row: the weighted PIT and whether the observation lies in the weighted 80%
    predictive interval (counts by their PIT). Overall: the summed elpd, the 80% coverage with a
    study-clustered CI, the largest ``k`` and the rows that could not be scored. ``by``: the
    per-study log-likelihood of ``x`` when the caller has it (``problem.evaluate(x)[2]``)."""
    P, Q = problem.P, problem.Q
    lik = problem.likelihood
    if by is None:
        _, _, by = problem.evaluate(x)
    tau = np.exp(x[:, P : P + Q])
    # the settings drawn afresh
    x2 = x.copy()
    rng = np.random.default_rng([seed, 57])
    x2[:, P + Q :] = rng.standard_normal((len(x), problem.M))
    _, f2, by2 = problem.evaluate(x2)
    loso: list[dict[str, Any]] = []
    for s_i, study in enumerate(lik.studies):
        ok = np.isfinite(by[:, s_i])
        if not np.any(ok):
            continue
        w, k = psis_weights(-by[ok, s_i])
        scores = left_out_scores(lik, study, f2[ok], tau[ok], by2[ok, s_i], w, rng)
        loso.append({"study": study, **scores, "pareto_k": k, "estimate": IMPORTANCE})
    return loso_totals(loso, seed, bootstrap)


def loso_totals(studies: list[dict[str, Any]], seed: int, bootstrap: int) -> dict[str, Any]:
    """The leave-one-study-out summary of per-study scores (each with ``study``, ``elpd``,
    ``rows`` and ``estimate``: :data:`IMPORTANCE`, or :data:`REFIT` with the refit's
    ``posterior``): the summed elpd, the 80% coverage with a study-clustered CI, the largest
    Pareto k of the studies still estimated by importance sampling (a refit replaces an
    unreliable one), the studies scored by a refit and the rows that could not be scored."""
    scored = [(r, s["study"]) for s in studies for r in s["rows"] if r["covered_80"] is not None]
    by_is = [s["pareto_k"] for s in studies if s.get("estimate", IMPORTANCE) == IMPORTANCE]
    refits = [s for s in studies if s.get("estimate") == REFIT]
    return {
        "studies": studies,
        "elpd": float(sum(s["elpd"] for s in studies)),
        "coverage_80": clustered_rate(
            [bool(r["covered_80"]) for r, _ in scored],
            [study for _, study in scored],
            replicates=bootstrap,
            seed=seed,
        ),
        "max_pareto_k": max(by_is, default=math.nan),
        "refitted": [{"study": s["study"], "posterior": s["posterior"]} for s in refits],
        "unscored": [r["key"] for s in studies for r in s["rows"] if r["covered_80"] is None],
        "method": "Pareto-smoothed importance sampling of the posterior samples with weights "
        "1/p(y_study | draw) (Vehtari, Gelman & Gabry 2017), the left-out study's settings "
        "drawn afresh from their ranges; Pareto k > 0.7 flags a study whose weights are "
        "unreliable"
        + (
            f"; {len(refits)} "
            + ("study" if len(refits) == 1 else "studies")
            + " scored instead by an exact refit without it (the calibration re-run, shipped in "
            "data/calibration/refits)"
            if refits
            else " (a refit without it would be needed)"
        ),
    }

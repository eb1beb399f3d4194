"""The one calibrated coordinate of PIH, ``observe.pih_threshold``, by binomial maximum likelihood.

Every PIH count of the calibration role (a row of family ``pih`` with ``k`` of ``n`` patients and an
evaluable ``pih_risk`` protocol) is simulated on its stand-in protocol (``protocols.toml``) for each
Fitzpatrick type of the row's reported range (else the protocol's ``ranges``), with the study's
other stand-ins; the row's risk is the mean over those types (uniform). The course risk is
``Φ((ln max_k Q_k − ln θ50)/σ_P)`` (:func:`~microneedling.physics.pigment.pih_session_risk`, the
course taking the largest session), so a risk ``r`` simulated at ``θ_ref`` is exactly
``Φ(Φ⁻¹(r) − ln(θ/θ_ref)/σ_P)`` at any other ``θ`` (:func:`rescale_risk`): one simulation per
row and type serves the whole profile. The estimate maximises Σ log Binom(k | n, r(θ)) on a grid
in ``θ``; the interval is the 90% profile likelihood (a drop of χ²₁(0.90)/2 = 1.35), so that it
can stand as the parameter's low/high (a parameter file's 5th and 95th percentiles).

``python -m microneedling.studies.credibility.pih_threshold`` prints the fit and each row's risk
and binomial probability at the estimate (docs/model.md, "Post-inflammatory hyperpigmentation").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr, ndtri
from scipy.stats import binom

from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.studies.credibility.calibrate import apply_settings, predict_rows
from microneedling.studies.credibility.likelihood import profile_interval
from microneedling.studies.credibility.literature import (
    LiteratureRow,
    Protocol,
    load_literature,
    load_protocols,
)

__all__ = [
    "PihFit",
    "count_rows",
    "fit_from_risks",
    "fit_pih_threshold",
    "fitzpatrick_types",
    "rescale_risk",
    "row_risks",
]

FloatArray = NDArray[np.float64]

#: level of the profile interval written as the parameter's low/high (its 5th-95th percentiles)
LEVEL = 0.90

#: the grid of θ50 the likelihood is profiled on (log-spaced; resolution 0.75%)
THETA_GRID = np.exp(np.linspace(math.log(0.5), math.log(10.0), 401))


def count_rows(
    rows: Sequence[LiteratureRow], protocols: Mapping[str, Protocol], role: str = "calibration"
) -> list[LiteratureRow]:
    """The PIH counts of ``role`` that the fit uses: family ``pih``, ``k`` of ``n`` given, an
    evaluable protocol whose end point is ``pih_risk`` compared as a course incidence (the course
    risk in %: the largest session risk, for which :func:`rescale_risk` is exact)."""
    out = []
    for r in rows:
        p = protocols.get(r.key)
        if r.family != "pih" or r.role != role or r.k is None or not r.n:
            continue
        if p is None or not p.evaluable or p.endpoint != "pih_risk":
            continue
        if p.compare != "course_incidence":
            continue
        out.append(r)
    return out


def fitzpatrick_types(row: LiteratureRow, protocol: Protocol) -> list[int]:
    """Fitzpatrick types the row's risk is averaged over: its reported range, else the protocol's
    stand-in range, else the protocol's own type."""
    cond = row.conditions
    rng: Sequence[float] | None = (
        cond.fitzpatrick if cond is not None and cond.fitzpatrick else None
    )
    if rng is None:
        rng = (protocol.ranges or {}).get("fitzpatrick")
    if rng is None:
        assert protocol.course is not None
        f = int(protocol.course["patient"]["fitzpatrick"])
        return [f]
    lo, hi = (int(rng[0]), int(rng[-1]))
    return list(range(lo, hi + 1))


def row_risks(
    rows: Sequence[LiteratureRow], protocols: Mapping[str, Protocol], ps: ParameterSet
) -> dict[str, FloatArray]:
    """Course PIH risk (fraction, not %) at ``ps`` of every row for each of its Fitzpatrick types
    (:func:`fitzpatrick_types`), in one batched prediction."""
    batch: list[LiteratureRow] = []
    variants: dict[str, Protocol] = dict(protocols)
    owner: list[str] = []
    for r in rows:
        p = protocols[r.key]
        assert p.course is not None
        for f in fitzpatrick_types(r, p):
            key = f"{r.key}@FST{f}"
            course = apply_settings(p.course, {"fitzpatrick": f})
            variants[key] = dataclasses.replace(p, key=key, course=course)
            batch.append(dataclasses.replace(r, key=key))
            owner.append(r.key)
    values = np.asarray(predict_rows(batch, [ps], variants)[0], dtype=float) / 100.0
    out: dict[str, list[float]] = {}
    for key, v in zip(owner, values, strict=True):
        out.setdefault(key, []).append(float(v))
    return {k: np.asarray(v) for k, v in out.items()}


def rescale_risk(risk: ArrayLike, theta_ref: float, theta: ArrayLike, sd: float) -> FloatArray:
    """Course risk at threshold median ``theta`` from the risk at ``theta_ref`` (exact for the
    log-normal threshold of log-SD ``sd``): Φ(Φ⁻¹(r) − ln(θ/θ_ref)/σ_P). Broadcasts ``risk``
    against ``theta``."""
    r = np.clip(np.asarray(risk, dtype=float), 1e-300, 1.0 - 1e-16)
    shift = np.log(np.asarray(theta, dtype=float) / theta_ref) / sd
    return np.asarray(ndtr(ndtri(r) - shift))


@dataclass(frozen=True)
class PihFit:
    """Result of :func:`fit_pih_threshold`: the estimate and its 90% profile interval, and per row
    (key → (k, n, risk at the estimate, binomial probability of k at it))."""

    theta: float
    low: float
    high: float
    log_likelihood: float
    rows: dict[str, tuple[int, int, float, float]]


def fit_pih_threshold(
    ps: ParameterSet | None = None,
    rows: Sequence[LiteratureRow] | None = None,
    protocols: Mapping[str, Protocol] | None = None,
    grid: ArrayLike = THETA_GRID,
) -> PihFit:
    """Binomial maximum likelihood of ``observe.pih_threshold`` over the calibration-role PIH
    counts (module docstring), every other parameter at ``ps`` (default: the shipped set)."""
    ps = ps if ps is not None else load_parameters()
    protocols = protocols if protocols is not None else load_protocols()
    lit = count_rows(rows if rows is not None else load_literature(), protocols)
    theta_ref = ps.value("observe.pih_threshold", "1")
    sd = ps.value("observe.pih_threshold_sd", "1")
    return fit_from_risks(lit, row_risks(lit, protocols, ps), theta_ref, sd, grid)


def fit_from_risks(
    rows: Sequence[LiteratureRow],
    risks: Mapping[str, ArrayLike],
    theta_ref: float,
    sd: float,
    grid: ArrayLike = THETA_GRID,
) -> PihFit:
    """The likelihood part of :func:`fit_pih_threshold`: ``risks[key]`` holds row ``key``'s course
    risk (fraction) at ``theta_ref`` for each of its Fitzpatrick types; each row's risk along the
    grid is the mean over its types of :func:`rescale_risk`. Raises ``ValueError`` when the 90%
    profile interval reaches an end of the grid."""
    g = np.asarray(grid, dtype=float)
    # (rows, grid): each row's type-averaged risk along the grid
    per_row = np.stack(
        [
            rescale_risk(np.asarray(risks[r.key], dtype=float)[:, None], theta_ref, g, sd).mean(0)
            for r in rows
        ]
    )
    p = np.clip(per_row, 1e-12, 1.0 - 1e-12)
    k = np.array([r.k for r in rows], dtype=float)[:, None]
    n = np.array([r.n for r in rows], dtype=float)[:, None]
    ll = binom.logpmf(k, n, p).sum(axis=0)
    i, low, high = profile_interval(g, ll, "observe.pih_threshold", LEVEL)
    table = {
        r.key: (int(r.k), int(r.n), float(per_row[j, i]), float(binom.pmf(r.k, r.n, p[j, i])))
        for j, r in enumerate(rows)
        if r.k is not None and r.n
    }
    return PihFit(float(g[i]), low, high, float(ll[i]), table)


def main() -> None:  # pragma: no cover - a report printer, exercised by hand
    fit = fit_pih_threshold()
    print(
        f"observe.pih_threshold = {fit.theta:.3g} (90% profile likelihood {fit.low:.3g}-"
        f"{fit.high:.3g}); log-likelihood {fit.log_likelihood:.2f}"
    )
    for key, (k, n, risk, prob) in fit.rows.items():
        print(f"  {key:32s} {k:3d}/{n:<3d} risk {100 * risk:6.2f}%  P(k) {prob:.3g}")


if __name__ == "__main__":  # pragma: no cover
    main()

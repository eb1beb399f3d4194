"""The size of the bruise signal, ``observe.haem_ratio``, by maximum likelihood on the calibration
role's downtime rows.

Downtime (any sign visible: redness, swelling or the bruise a roller's clefts leave in the dermis,
:mod:`microneedling.physics.redness`) is what patients and adverse-event tables report; redness
alone is what an observer scores. The bruise signal H = ρ_H s(c) exp(−t/τ_H) has one amplitude
that no measurement gives directly: ρ_H is fitted to the calibration-role rows whose end point is
``downtime_days`` (a mean with its standard error, or a bound), every other parameter at the
parameter set's value (τ_H, the clefts' κ and the redness threshold θ_50 included). Only rollers
make clefts, so only roller rows inform ρ_H; pen rows are kept in the likelihood (their terms do not
change with ρ_H).

The rows are independent: a mean is a Gaussian with the study's SE, an upper (lower) bound a
censored Gaussian (:func:`~microneedling.studies.credibility.likelihood.independent_loglik`). The
estimate maximises the log-likelihood on a log-spaced grid; the interval is the 90% profile
likelihood (a drop of 1.35), written as the parameter's low/high (its 5th-95th percentiles) and
conditional on every other parameter.

``python -m microneedling.studies.credibility.haem_ratio`` prints the fit and each row's
prediction at the estimate (docs/model.md, "Redness and downtime").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.studies.credibility.calibrate import predict_on_grid
from microneedling.studies.credibility.likelihood import log_grid, profile_fit
from microneedling.studies.credibility.literature import (
    LiteratureRow,
    Protocol,
    load_literature,
    load_protocols,
)

__all__ = ["HaemFit", "downtime_rows", "fit_from_predictions", "fit_haem_ratio", "ratio_grid"]

FloatArray = NDArray[np.float64]

#: parameter fitted
NAME = "observe.haem_ratio"

#: level of the profile interval written as the parameter's low/high (its 5th-95th percentiles)
LEVEL = 0.90


def ratio_grid(low: float = 0.01, high: float = 100.0, points_per_e: int = 24) -> FloatArray:
    """Log-spaced grid of ρ_H from ``low`` to ``high`` (``points_per_e`` points per factor e)."""
    return np.asarray(log_grid(low, high, points_per_e))


def downtime_rows(
    rows: Sequence[LiteratureRow], protocols: Mapping[str, Protocol], role: str = "calibration"
) -> list[LiteratureRow]:
    """The rows of ``role`` the fit uses: observable ``downtime_days``, an evaluable one-arm
    protocol compared as a value or a per-session mean (a contrast between arms is left out: it
    is a difference)."""
    out = []
    for r in rows:
        p = protocols.get(r.key)
        if r.observable != "downtime_days" or r.role != role:
            continue
        if (
            p is None
            or not p.evaluable
            or p.compare not in ("value", "per_session_mean")
            or p.reference is not None
        ):
            continue
        out.append(r)
    return out


@dataclass(frozen=True)
class HaemFit:
    """Result of :func:`fit_haem_ratio`: the estimate, its 90% profile interval and log-likelihood,
    and per row (key → (observed, standard error, bound or None, prediction at the estimate))."""

    ratio: float
    low: float
    high: float
    log_likelihood: float
    rows: dict[str, tuple[float, float, str | None, float]]


def fit_from_predictions(
    rows: Sequence[LiteratureRow], se: ArrayLike, grid: ArrayLike, predictions: ArrayLike
) -> HaemFit:
    """The likelihood part of :func:`fit_haem_ratio`: ``predictions[g, j]`` is row ``j``'s
    downtime at ``grid[g]``, ``se[j]`` its standard error. Raises ``ValueError`` when the 90%
    profile interval reaches an end of the grid."""
    g = np.asarray(grid, dtype=float)
    pred = np.asarray(predictions, dtype=float)
    s = np.asarray(se, dtype=float)
    obs = [r.value for r in rows]
    i, low, high, ll = profile_fit(obs, s, [r.bound for r in rows], g, pred, NAME, LEVEL)
    table = {
        r.key: (float(r.value), float(s[j]), r.bound, float(pred[i, j])) for j, r in enumerate(rows)
    }
    return HaemFit(float(g[i]), low, high, float(ll[i]), table)


def fit_haem_ratio(
    ps: ParameterSet | None = None,
    rows: Sequence[LiteratureRow] | None = None,
    protocols: Mapping[str, Protocol] | None = None,
    grid: ArrayLike | None = None,
) -> HaemFit:
    """Maximum likelihood of ``observe.haem_ratio`` over the calibration-role downtime rows
    (module docstring), every other parameter at ``ps`` (default: the shipped set)."""
    ps = ps if ps is not None else load_parameters()
    protocols = protocols if protocols is not None else load_protocols()
    lit = downtime_rows(rows if rows is not None else load_literature(), protocols)
    if not lit:
        raise ValueError("no calibration-role downtime row to fit")
    g = np.asarray(grid, dtype=float) if grid is not None else ratio_grid()
    se, pred = predict_on_grid(lit, ps, NAME, g, protocols)
    return fit_from_predictions(lit, se, g, pred)


def main() -> None:  # pragma: no cover - a report printer, exercised by hand
    fit = fit_haem_ratio()
    print(
        f"{NAME} = {fit.ratio:.3g} (90% profile likelihood {fit.low:.3g}-{fit.high:.3g}); "
        f"log-likelihood {fit.log_likelihood:.2f}"
    )
    for key, (obs, se, bound, pred) in fit.rows.items():
        kind = {None: "=", "upper": "<=", "lower": ">="}[bound]
        print(f"  {key:28s} observed {kind} {obs:5.2f} (SE {se:.2f})  model {pred:5.2f}")


if __name__ == "__main__":  # pragma: no cover
    main()

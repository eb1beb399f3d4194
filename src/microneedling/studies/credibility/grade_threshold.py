"""The depth at which scar atrophy is seen, ``observe.scar_grade_mild_depth``, by maximum likelihood
on the calibration role's mean Goodman & Baron grades.

The depth → grade map (:func:`~microneedling.physics.scars.goodman_baron_grade`) has three
numbers: the depth seen at close inspection (grade ≥ 2, ``h_mild``), the depth obvious at 50 cm
(grade ≥ 3, ``h_obvious``; with stretching, grade 4) and the log-SD of both over observers and
lighting (``sigma``). No published depth-per-grade relation was found (docs/model.md); what the
calibration rows report is how far the mean grade of a cohort falls while its scars get shallower
(Vietnam: 3.29 before twelve weekly sessions, 2.23 at their end, 1.93 and 1.77 one and two months
later). Around the stand-in scars' depths that fall
is set by the spacing of the thresholds, ``h_obvious / h_mild``: one direction, so one coordinate
is fitted, ``h_mild`` (``h_obvious`` stays the grade-3 depth that also decides grade 4, ``sigma``
its estimate).

Every calibration-role row of the qualitative grade (observable ``scar_grade``, compared as a grade
after = baseline × (1 + the model's relative change), a reported SD and n) is simulated on its
stand-in protocol (``protocols.toml``) at each ``h_mild`` of a grid, every other parameter at the
parameter set's value; the rows are independent Gaussians with the study's standard error (SD/√n;
rows of one cohort at several times are counted as separate rows, which overweights that cohort: a
choice, stated). The estimate maximises the log-likelihood on the grid; the interval is the 90%
profile likelihood (a drop of χ²₁(0.90)/2 = 1.35), so that it can stand as the parameter's low/high
(a parameter file's 5th and 95th percentiles), and is conditional on every other parameter.

``python -m microneedling.studies.credibility.grade_threshold`` prints the fit and each row's
prediction at the estimate (docs/model.md, "Acne scars").
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

__all__ = ["GradeFit", "fit_from_predictions", "fit_grade_threshold", "grade_rows", "mild_grid"]

FloatArray = NDArray[np.float64]

#: parameter fitted
NAME = "observe.scar_grade_mild_depth"

#: level of the profile interval written as the parameter's low/high (its 5th-95th percentiles)
LEVEL = 0.90

#: grid points per factor e of h_mild (log-spaced; resolution 1.4%)
POINTS_PER_E = 72


def mild_grid(h_obvious: float, low: float = 0.01) -> FloatArray:
    """Log-spaced grid of ``h_mild`` (mm) from ``low`` to just below ``h_obvious`` (the map
    needs h_mild < h_obvious: atrophy is seen at close range before it is obvious at 50 cm)."""
    if not 0.0 < low < h_obvious:
        raise ValueError(f"low: {low} mm; allowed: 0 < low < h_obvious ({h_obvious} mm)")
    return np.asarray(log_grid(low, 0.95 * h_obvious, POINTS_PER_E))


def grade_rows(
    rows: Sequence[LiteratureRow], protocols: Mapping[str, Protocol], role: str = "calibration"
) -> list[LiteratureRow]:
    """The mean-grade rows of ``role`` the fit uses: observable ``scar_grade`` with a baseline, an
    SD and n, and an evaluable protocol compared as a grade."""
    out = []
    for r in rows:
        p = protocols.get(r.key)
        if r.observable != "scar_grade" or r.role != role:
            continue
        if r.baseline is None or r.sd is None or not r.n:
            continue
        if p is None or not p.evaluable or p.compare != "grade":
            continue
        out.append(r)
    return out


@dataclass(frozen=True)
class GradeFit:
    """Result of :func:`fit_grade_threshold`: the estimate (mm), its 90% profile interval and
    log-likelihood, and per row (key → (observed grade, standard error, grade at the estimate))."""

    h_mild: float
    low: float
    high: float
    log_likelihood: float
    rows: dict[str, tuple[float, float, float]]


def fit_from_predictions(
    rows: Sequence[LiteratureRow],
    se: ArrayLike,
    grid: ArrayLike,
    predictions: ArrayLike,
) -> GradeFit:
    """The likelihood part of :func:`fit_grade_threshold`: ``predictions[g, j]`` is row ``j``'s
    grade at ``grid[g]``, ``se[j]`` its standard error. Raises ``ValueError`` when the 90% profile
    interval reaches an end of the grid."""
    g = np.asarray(grid, dtype=float)
    pred = np.asarray(predictions, dtype=float)
    s = np.asarray(se, dtype=float)
    obs = [r.value for r in rows]
    i, low, high, ll = profile_fit(obs, s, [None] * len(rows), g, pred, f"{NAME} (mm)", LEVEL)
    table = {r.key: (float(r.value), float(s[j]), float(pred[i, j])) for j, r in enumerate(rows)}
    return GradeFit(float(g[i]), low, high, float(ll[i]), table)


def fit_grade_threshold(
    ps: ParameterSet | None = None,
    rows: Sequence[LiteratureRow] | None = None,
    protocols: Mapping[str, Protocol] | None = None,
    grid: ArrayLike | None = None,
) -> GradeFit:
    """Gaussian maximum likelihood of ``observe.scar_grade_mild_depth`` over the calibration-role
    mean grades (module docstring), every other parameter at ``ps`` (default: the shipped set)."""
    ps = ps if ps is not None else load_parameters()
    protocols = protocols if protocols is not None else load_protocols()
    lit = grade_rows(rows if rows is not None else load_literature(), protocols)
    if not lit:
        raise ValueError("no calibration-role mean-grade row to fit")
    g = (
        np.asarray(grid, dtype=float)
        if grid is not None
        else mild_grid(ps.value("observe.scar_grade_obvious_depth", "mm"))
    )
    se, pred = predict_on_grid(lit, ps, NAME, g, protocols)
    return fit_from_predictions(lit, se, g, pred)


def main() -> None:  # pragma: no cover - a report printer, exercised by hand
    fit = fit_grade_threshold()
    print(
        f"{NAME} = {fit.h_mild:.3g} mm (90% profile likelihood {fit.low:.3g}-{fit.high:.3g}); "
        f"log-likelihood {fit.log_likelihood:.2f}"
    )
    for key, (obs, se, pred) in fit.rows.items():
        print(f"  {key:24s} observed {obs:5.2f} (SE {se:.2f})  model {pred:5.2f}")


if __name__ == "__main__":  # pragma: no cover
    main()

"""The Gaussian fit of observe.scar_grade_mild_depth (studies/credibility/grade_threshold.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from microneedling.parameters.parameter_set import load_parameters
from microneedling.studies.credibility import grade_threshold as fit
from microneedling.studies.credibility.literature import load_literature, load_protocols


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return load_literature(), load_protocols()


def test_grade_rows_are_the_calibration_mean_grades(data) -> None:  # type: ignore[no-untyped-def]
    rows, protocols = data
    chosen = fit.grade_rows(rows, protocols)
    keys = {r.key for r in chosen}
    assert {"vietnam_gb_1mo", "vietnam_gb_2mo", "vietnam_gb_end", "sharma_mn_saline"} <= keys
    assert all(r.role == "calibration" and r.observable == "scar_grade" for r in chosen)
    assert all(protocols[r.key].compare == "grade" for r in chosen)
    assert all(r.baseline and r.sd and r.n for r in chosen)
    # responder fractions and grade changes of validation studies never enter the fit
    held_out = {r.key for r in fit.grade_rows(rows, protocols, role="validation")}
    assert not held_out & keys
    assert "majid2009_responders" not in keys and "ishfaq2022_responders" not in keys


def test_the_grid_stays_below_the_obvious_depth() -> None:
    g = fit.mild_grid(0.3)
    assert g[0] == pytest.approx(0.01) and g[-1] < 0.3
    assert np.all(np.diff(np.log(g)) == pytest.approx(np.log(g[1] / g[0])))
    with pytest.raises(ValueError, match="low"):
        fit.mild_grid(0.3, low=0.4)


@dataclass(frozen=True)
class _Row:
    key: str
    value: float


def test_a_linear_prediction_is_fitted_at_its_weighted_least_squares_solution() -> None:
    """Predictions a + b ln h of two rows: the maximum is the weighted least-squares ln h*, exact
    to the grid's resolution, and the 90% profile interval is ln h* ± 1.645 / sqrt(sum b^2 / se^2)."""
    rows = [_Row("x", 2.0), _Row("y", 1.6)]
    se = np.array([0.1, 0.2])
    grid = np.exp(np.linspace(np.log(0.01), np.log(0.5), 4001))
    a, b = np.array([1.0, 0.5]), np.array([-0.4, -0.5])
    pred = a + b * np.log(grid)[:, None]
    got = fit.fit_from_predictions(rows, se, grid, pred)
    w = b**2 / se**2
    z = np.sum(w * (np.array([2.0, 1.6]) - a) / b) / np.sum(w)
    half = 1.644854 / np.sqrt(np.sum(w))  # fit.LEVEL = 0.90
    assert got.h_mild == pytest.approx(np.exp(z), rel=2e-3)
    assert got.low == pytest.approx(np.exp(z - half), rel=3e-3)
    assert got.high == pytest.approx(np.exp(z + half), rel=3e-3)
    assert got.rows["x"][2] == pytest.approx(1.0 - 0.4 * z, abs=2e-3)


def test_an_interval_that_runs_off_the_grid_is_refused() -> None:
    grid = np.array([0.05, 0.06, 0.07])
    flat = np.full((3, 1), 2.0)  # the rows do not depend on h: no interval
    with pytest.raises(ValueError, match="end of the grid"):
        fit.fit_from_predictions([_Row("x", 2.0)], [0.1], grid, flat)
    with pytest.raises(ValueError, match="shape"):
        fit.fit_from_predictions([_Row("x", 2.0)], [0.1], grid, np.ones((2, 1)))


def test_the_shipped_depth_is_the_maximum_likelihood_of_the_current_model(data) -> None:  # type: ignore[no-untyped-def]
    """A change of the scar model or of the calibration grades must come with a refit
    (`python -m microneedling.studies.credibility.grade_threshold`): the shipped value and its
    interval are the fit's, to the grid's resolution and the file's 3 digits."""
    rows, protocols = data
    ps = load_parameters()
    result = fit.fit_grade_threshold(ps, rows, protocols)
    p = ps.parameter(fit.NAME)
    assert result.h_mild == pytest.approx(ps.value(fit.NAME, "mm"), rel=0.015)
    lo, hi = p.bounds_as("mm")
    assert result.low == pytest.approx(lo, rel=0.015)
    assert result.high == pytest.approx(hi, rel=0.015)
    assert set(result.rows) == {r.key for r in fit.grade_rows(rows, protocols)}
    # the fitted map reproduces Vietnam's mean grades within 3 standard errors; Sharma's split-face
    # cohort is a known miss (its saline half 2.6 SE above the reported grade with the pooled
    # recruitment, 3.1 SE with the per-session one of 2026-12-06: docs/model.md), held under 3.5
    z = {k: (pred - obs) / se for k, (obs, se, pred) in result.rows.items()}
    assert all(abs(v) < 3.0 for k, v in z.items() if k.startswith("vietnam")), z
    assert all(abs(v) < 3.5 for v in z.values()), z

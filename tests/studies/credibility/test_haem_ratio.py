"""The fit of observe.haem_ratio, the bruise signal's size (studies/credibility/haem_ratio.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.special import log_ndtr

from microneedling.parameters.parameter_set import load_parameters
from microneedling.studies.credibility import haem_ratio as fit
from microneedling.studies.credibility.literature import load_literature, load_protocols


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return load_literature(), load_protocols()


def test_the_rows_are_the_calibration_downtime_rows(data) -> None:  # type: ignore[no-untyped-def]
    """Calibration-role downtime rows with a one-arm protocol: Naspolini's mean adverse-event
    duration, chu2021's bound, the Dr. Pen bands; never a validation row (Chu 2012's arms)."""
    rows, protocols = data
    keys = {r.key for r in fit.downtime_rows(rows, protocols)}
    assert {"naspolini2019_ae", "chu2021_transient_ae", "drpen_downtime_0p8_1p5mm"} <= keys
    assert all(r.role == "calibration" for r in fit.downtime_rows(rows, protocols))
    held_out = {r.key for r in fit.downtime_rows(rows, protocols, role="validation")}
    assert "chu2012_roller_downtime" in held_out and not held_out & keys
    assert "chu2012_pen_minus_roller" not in held_out  # a contrast, not a level


@dataclass(frozen=True)
class _Row:
    key: str
    value: float
    bound: str | None = None


def test_a_linear_prediction_is_fitted_at_its_least_squares_solution() -> None:
    """One Gaussian row predicted a + b ln ρ: the maximum sits where the prediction meets the
    observation and the 90% interval is ±1.645 SE/|b| on ln ρ; a bound the prediction keeps adds a
    term that barely moves it; the censored term is log Φ."""
    grid = np.exp(np.linspace(np.log(0.01), np.log(100.0), 6001))
    a, b, y, se = 1.0, 0.8, 3.0, 0.3
    pred = a + b * np.log(grid)[:, None]
    got = fit.fit_from_predictions([_Row("x", y)], [se], grid, pred)
    z = (y - a) / b
    half = 1.644854 * se / b
    assert got.ratio == pytest.approx(np.exp(z), rel=2e-3)
    assert got.low == pytest.approx(np.exp(z - half), rel=3e-3)
    assert got.high == pytest.approx(np.exp(z + half), rel=3e-3)
    bounded = np.concatenate([pred, np.full((grid.size, 1), 2.0)], axis=1)
    rows = [_Row("x", y), _Row("cap", 7.0, "upper")]
    two = fit.fit_from_predictions(rows, [se, 1.0], grid, bounded)
    assert two.ratio == pytest.approx(got.ratio, rel=2e-3)
    assert two.log_likelihood == pytest.approx(got.log_likelihood + log_ndtr(5.0), abs=1e-6)
    assert two.rows["cap"] == (7.0, 1.0, "upper", 2.0)


def test_an_uninformative_fit_is_refused() -> None:
    grid = np.array([0.5, 1.0, 2.0])
    with pytest.raises(ValueError, match="end of the grid"):
        fit.fit_from_predictions([_Row("x", 2.0)], [0.1], grid, np.full((3, 1), 2.0))
    with pytest.raises(ValueError, match="low"):
        fit.ratio_grid(2.0, 1.0)


def test_the_shipped_ratio_is_the_maximum_likelihood_of_the_current_model(data) -> None:  # type: ignore[no-untyped-def]
    """A change of the redness model or of the downtime rows must come with a refit
    (`python -m microneedling.studies.credibility.haem_ratio`): the shipped value and its 90%
    interval are the fit's to the grid's resolution (4%) and the file's 3 digits."""
    rows, protocols = data
    ps = load_parameters()
    result = fit.fit_haem_ratio(ps, rows, protocols)
    lo, hi = ps.parameter(fit.NAME).bounds_as("1")
    assert result.ratio == pytest.approx(ps.value(fit.NAME, "1"), rel=0.045)
    assert result.low == pytest.approx(lo, rel=0.045)
    assert result.high == pytest.approx(hi, rel=0.045)
    # the fit reproduces the one roller mean (Naspolini 3 d) within one standard error
    obs, se, _, pred = result.rows["naspolini2019_ae"]
    assert abs(pred - obs) < se

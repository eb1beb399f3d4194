"""The binomial fit of observe.pih_threshold (studies/credibility/pih_threshold.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from microneedling.parameters.parameter_set import load_parameters
from microneedling.studies.credibility import pih_threshold as fit
from microneedling.studies.credibility.literature import load_literature, load_protocols


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return load_literature(), load_protocols()


def test_count_rows_are_the_calibration_pih_counts_with_a_pih_risk_protocol(data) -> None:  # type: ignore[no-untyped-def]
    rows, protocols = data
    chosen = fit.count_rows(rows, protocols)
    keys = {r.key for r in chosen}
    assert {"vietnam_pih", "dogra2014_pih", "fabbrocini2012_dyschromia"} <= keys
    assert all(r.k is not None and r.n for r in chosen)
    assert all(protocols[r.key].endpoint == "pih_risk" for r in chosen)
    assert all(protocols[r.key].compare == "course_incidence" for r in chosen)
    held_out = {r.key for r in fit.count_rows(rows, protocols, role="validation")}
    assert "poostiyan2023_pih" in held_out and not (held_out & keys)


def test_fitzpatrick_types_come_from_the_report_else_the_stand_in_range(data) -> None:  # type: ignore[no-untyped-def]
    rows, protocols = data
    by_key = {r.key: r for r in rows}
    dogra = by_key["dogra2014_pih"]  # reported IV-V
    assert fit.fitzpatrick_types(dogra, protocols[dogra.key]) == [4, 5]
    vietnam = by_key["vietnam_pih"]  # not reported: the protocol's stand-in range
    assert vietnam.conditions is not None and not vietnam.conditions.fitzpatrick
    lo, hi = protocols[vietnam.key].ranges["fitzpatrick"]
    assert fit.fitzpatrick_types(vietnam, protocols[vietnam.key]) == list(
        range(int(lo), int(hi) + 1)
    )


def test_a_risk_rescaled_to_another_threshold_equals_the_risk_simulated_there(data) -> None:  # type: ignore[no-untyped-def]
    rows, protocols = data
    chosen = [
        r for r in fit.count_rows(rows, protocols) if r.key in ("vietnam_pih", "dogra2014_pih")
    ]
    ps = load_parameters()
    ref = ps.value("observe.pih_threshold", "1")
    sd = ps.value("observe.pih_threshold_sd", "1")
    at_ref = fit.row_risks(chosen, protocols, ps)
    other = 1.7 * ref
    direct = fit.row_risks(chosen, protocols, ps.with_values({"observe.pih_threshold": other}))
    for key, r in at_ref.items():
        assert np.all(r > 1e-4)
        np.testing.assert_allclose(fit.rescale_risk(r, ref, other, sd), direct[key], rtol=1e-9)
        assert np.all(direct[key] < r)  # a higher threshold: fewer patients see PIH


@dataclass(frozen=True)
class _Count:
    key: str
    k: int
    n: int


def test_one_count_is_fitted_where_its_risk_equals_k_over_n() -> None:
    """One row, one type: the likelihood peaks where Φ(Φ⁻¹(r_ref) − ln(θ/θ_ref)/σ) = k/n, i.e.
    θ* = θ_ref·exp(σ (Φ⁻¹(r_ref) − Φ⁻¹(k/n))), exact to the grid's resolution."""
    from scipy.special import ndtri

    row = _Count("x", 3, 30)
    got = fit.fit_from_risks([row], {"x": [0.05]}, 2.0, 1.0)
    want = 2.0 * np.exp(ndtri(0.05) - ndtri(0.1))
    assert got.theta == pytest.approx(want, rel=0.008)
    assert got.low < want < got.high
    assert got.rows["x"][2] == pytest.approx(0.1, rel=0.02)
    # two types: the row's risk is their mean, not the risk of the mean threshold
    two = fit.fit_from_risks([row], {"x": [0.01, 0.2]}, 2.0, 1.0)
    r = fit.rescale_risk(np.array([0.01, 0.2]), 2.0, two.theta, 1.0).mean()
    assert two.rows["x"][2] == pytest.approx(r, rel=1e-9)
    assert two.rows["x"][2] == pytest.approx(0.1, rel=0.02)


def test_an_interval_that_runs_off_the_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="end of the grid"):
        fit.fit_from_risks([_Count("x", 0, 5)], {"x": [0.05]}, 2.0, 1.0)  # 0/5: no upper bound


def test_rescale_is_monotone_and_keeps_zero_and_one() -> None:
    theta = np.array([0.5, 1.0, 2.0, 4.0])
    r = fit.rescale_risk(0.1, 1.0, theta, 1.0)
    assert np.all(np.diff(r) < 0) and r[1] == pytest.approx(0.1)
    assert fit.rescale_risk(0.0, 1.0, 2.0, 1.0) == pytest.approx(0.0, abs=1e-12)


def test_the_shipped_threshold_is_the_maximum_likelihood_of_the_current_model(data) -> None:  # type: ignore[no-untyped-def]
    """A change of the model's PIH form or of the calibration counts must come with a refit
    (`python -m microneedling.studies.credibility.pih_threshold`): the shipped value and its
    interval are the fit's, to the grid's resolution and the file's 3 digits."""
    rows, protocols = data
    ps = load_parameters()
    result = fit.fit_pih_threshold(ps, rows, protocols)
    p = ps.parameter("observe.pih_threshold")
    assert result.theta == pytest.approx(ps.value("observe.pih_threshold", "1"), rel=0.012)
    lo, hi = p.bounds_as("1")
    assert result.low == pytest.approx(lo, rel=0.012)
    assert result.high == pytest.approx(hi, rel=0.012)
    assert set(result.rows) == {r.key for r in fit.count_rows(rows, protocols)}
    assert all(0.0 <= v[2] <= 1.0 for v in result.rows.values())

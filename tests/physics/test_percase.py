"""Coefficients of several parameter sets side by side (physics/percase.py): stacking and taking
rows, and the observation maps given them one value per case give each case's numbers under its
own set, bit for bit."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
import pytest

from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import sample_parameter_sets
from microneedling.physics import observe, percase, pigment, redness, scars
from microneedling.physics.healing_rhs import baseline_state
from tests.physics.test_observe import base

T, K = 40, 3
INDEX = np.array([0, 1, 2, 3, 3, 2, 1, 0])  # the set of each case
C = INDEX.size


@pytest.fixture(scope="module")
def sets() -> list[observe.ObserveParameters]:
    """Three draws and one set with another MASI scale, other region weights and skin-type
    factors (coefficients the shipped draws share)."""
    ps = load_parameters()
    draws = [observe.ObserveParameters.from_parameters(s) for s in sample_parameter_sets(ps, 3, 4)]
    other_pigment = replace(
        draws[0].pigment,
        area_midpoints=(4.0, 18.0, 35.0, 55.0, 75.0, 92.0),
        region_weights=(0.25, 0.3, 0.3, 0.15),
    )
    other_redness = replace(
        draws[0].redness,
        fitzpatrick_factor=(1.0, 1.1, 1.3, 1.8, 2.4, 3.0),
        oedema_threshold_factor=_factor_where_logs_differ(draws[0].redness.threshold),
    )
    return [*draws, replace(draws[1], pigment=other_pigment, redness=other_redness)]


def _factor_where_logs_differ(threshold: float) -> float:
    """An oedema factor whose swelling threshold has a ``math.log`` that NumPy's ``log`` of an
    array does not give to the last bit (the maps must take the number's)."""
    for k in range(10_000):
        f = 2.0 + 1e-4 * k
        x = threshold * f
        if math.log(x) != np.log(np.array([x]))[0]:
            return f
    raise AssertionError("no such factor")


def test_stack_puts_each_cases_values_in_its_row_and_take_selects_rows(
    sets: list[observe.ObserveParameters],
) -> None:
    op = percase.stack(sets, INDEX)
    assert op.papillary_weight.shape == (C, 1)  # type: ignore[attr-defined]
    assert op.redness.fitzpatrick_factor.shape == (C, 6)  # type: ignore[attr-defined]
    for c, s in enumerate(INDEX):
        assert op.papillary_weight[c, 0] == sets[s].papillary_weight  # type: ignore[index]
        assert op.pigment.pih_threshold[c, 0] == sets[s].pigment.pih_threshold  # type: ignore[index]
        assert tuple(op.pigment.area_midpoints[c]) == sets[s].pigment.area_midpoints  # type: ignore[arg-type]
    rows = np.array([5, 0])
    sub = percase.take(op, rows)
    assert sub.redness.threshold[:, 0].tolist() == [  # type: ignore[index]
        sets[INDEX[5]].redness.threshold,
        sets[INDEX[0]].redness.threshold,
    ]
    assert percase.take(sets[0], rows) is sets[0]  # numbers: one set for every case
    assert percase.at_rows(2.5, rows) == 2.5
    assert percase.is_stacked(op.immature_strength) and not percase.is_stacked(1.0)
    with pytest.raises(ValueError, match="no coefficients"):
        percase.stack([], INDEX)


def _inputs() -> tuple[np.ndarray, np.ndarray, observe.Baseline, observe.Floors, np.ndarray]:
    """Healing states after needling (C, T, N_STATE), session days and injured fractions, a
    baseline where half the cases have a melasma lesion, floors of every depressed feature."""
    rng = np.random.default_rng(3)
    y0 = baseline_state(np.zeros(C))
    y = y0[:, None, :] + rng.uniform(0.0, 0.4, (C, T, y0.shape[1]))
    b = base(C, fitzpatrick=2.0, age_years=52.0)
    lesion = np.arange(C) % 2 == 0
    area = np.where(lesion[:, None], rng.uniform(5.0, 60.0, (C, 4)), np.nan)
    b = replace(
        b,
        fitzpatrick=np.array([1, 2, 3, 4, 5, 6, 4, 2], dtype=float),
        age_years=rng.uniform(20.0, 70.0, C),
        melanin_index=np.where(lesion, 300.0, np.nan),
        perilesional_melanin_index=np.where(lesion, 220.0, np.nan),
        dermal_pigment_fraction=np.where(lesion, 0.3, np.nan),
        masi_area_pct=area,
        masi_darkness=np.where(lesion, 2.5, np.nan),
        masi_homogeneity=np.where(lesion, 2.0, np.nan),
    )
    g = rng.uniform(-0.05, 0.6, (C, T))
    s = rng.uniform(0.3, 1.0, (C, T))
    fl = observe.Floors(scar_gain=g, scar_tether=s, wrinkle_gain=g, striae_gain=g, striae_tether=s)
    days = np.array([[0.0, 30.0, 60.0]] * C)
    days[1, 2] = np.nan  # a case with two sessions
    injured = rng.uniform(0.0, 0.05, (C, K, 3))
    return y, days, b, fl, injured


def test_observables_of_every_case_in_one_call_are_each_case_under_its_set(
    sets: list[observe.ObserveParameters],
) -> None:
    y, days, b, fl, injured = _inputs()
    t = np.linspace(0.0, 90.0, T)
    got = observe.observables(
        t, y, b, percase.stack(sets, INDEX), floors=fl, sessions=(days, injured)
    )
    assert np.isfinite(got["masi_score"][0]).all() and np.isnan(got["masi_score"][1]).all()
    for c, s in enumerate(INDEX):
        r = slice(c, c + 1)
        want = observe.observables(
            t, y[r], percase.take(b, r), sets[s], floors=percase.take(fl, r),
            sessions=(days[r], injured[r]),
        )  # fmt: skip
        for name, x in want.items():
            assert np.array_equal(got[name][r], x, equal_nan=True), (name, c)
    gain, tether = observe.floor_state(y, percase.stack(sets, INDEX))
    for c, s in enumerate(INDEX):
        g1, s1 = observe.floor_state(y[c : c + 1], sets[s])
        assert np.array_equal(gain[c : c + 1], g1) and np.array_equal(tether[c : c + 1], s1)


def test_per_session_statistics_of_every_case_in_one_call_are_each_case_under_its_set(
    sets: list[observe.ObserveParameters],
) -> None:
    y, days, b, _, injured = _inputs()
    t = np.linspace(0.0, 90.0, T)
    ends = np.concatenate([days[:, 1:], np.full((C, 1), 90.0)], axis=1)
    ends[1, 1] = 90.0
    cleft = np.where(np.arange(C)[:, None] < 4, 0.02, 0.0) * np.ones((C, K))
    inflam = y[..., :2] * 0.5  # any two signals
    stacked = percase.stack(sets, INDEX)
    seen = redness.visible_durations(
        t, inflam[..., 0], inflam[..., 1], days, injured, cleft, days, ends, b.fitzpatrick,
        stacked.redness,
    )  # fmt: skip
    peak = np.abs(inflam[:, :K, 0])
    risk = pigment.pih_session_risk(peak, stacked.pigment)
    thr = redness.visibility_threshold(b.fitzpatrick, stacked.redness)
    for c, s in enumerate(INDEX):
        r = slice(c, c + 1)
        one = redness.visible_durations(
            t, inflam[r, :, 0], inflam[r, :, 1], days[r], injured[r], cleft[r], days[r], ends[r],
            b.fitzpatrick[r], sets[s].redness,
        )  # fmt: skip
        for f in fields(one):
            assert np.array_equal(getattr(seen, f.name)[r], getattr(one, f.name), equal_nan=True)
        assert np.array_equal(risk[r], pigment.pih_session_risk(peak[r], sets[s].pigment))
        assert thr[c] == redness.visibility_threshold(b.fitzpatrick[r], sets[s].redness)[0]
    assert np.isnan(seen.erythema[1, 2]) and np.nanmin(seen.downtime - seen.erythema) >= -1e-12
    other = redness.visible_durations(
        t, inflam[:1, :, 0], inflam[:1, :, 1], days[:1], injured[:1], cleft[:1], days[:1],
        ends[:1], b.fitzpatrick[:1], sets[INDEX[1]].redness,
    )  # fmt: skip
    assert not np.array_equal(other.erythema, seen.erythema[:1])  # the sets' numbers matter


def test_grade_drop_with_per_case_thresholds_is_each_case_with_its_numbers() -> None:
    """Thresholds and sigma one per row, a row with sigma 0 (no shortcut there): each row as
    with its own numbers."""
    rng = np.random.default_rng(0)
    h0 = rng.uniform(0.0, 1.0, (5, 30))
    h1 = h0 * rng.uniform(0.2, 1.2, (5, 30))
    fs = np.linspace(0.0, 0.9, 5)[:, None]
    mild = np.array([0.05, 0.08, 0.1, 0.06, 0.05])[:, None]
    obvious = np.array([0.3, 0.35, 0.4, 0.25, 0.3])[:, None]
    sigma = np.array([0.5, 0.3, 0.0, 0.8, 0.4])[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        got = scars.grade_drop_probability(h0, h1, fs, mild, obvious, sigma, steps=(1, 2))
        for i in range(5):
            want = scars.grade_drop_probability(
                h0[i], h1[i], fs[i, 0], mild[i, 0], obvious[i, 0], sigma[i, 0], steps=(1, 2)
            )
            assert np.array_equal(got[:, i], want, equal_nan=True), i
    assert np.any(got[0] > 0.0)


def test_distinct_rows_finds_repeats_in_order_of_first_appearance() -> None:
    a, b, c = np.zeros(3), np.ones(3), np.arange(3.0)
    rows = np.stack([b, a, b, c, a, b])
    days = np.zeros((6, 2))
    first, inverse = percase.distinct_rows(rows, days)
    assert first.tolist() == [0, 1, 3]
    assert inverse.tolist() == [0, 1, 0, 2, 1, 0]
    days[2, 1] = 5.0  # the third case now differs in its second input only
    first, inverse = percase.distinct_rows(rows, days)
    assert first.tolist() == [0, 1, 2, 3] and inverse.tolist() == [0, 1, 2, 3, 1, 0]


def test_distinct_rows_compare_bits() -> None:
    """Rows are the same only when equal bit for bit: 0.0 and -0.0 stay apart, equal NaNs merge."""
    a = np.array([[1.0, 0.0], [1.0, -0.0], [np.nan, 2.0], [1.0, 0.0], [np.nan, 2.0], [3.0, 1.0]])
    first, inverse = percase.distinct_rows(a)
    assert first.tolist() == [0, 1, 2, 5] and inverse.tolist() == [0, 1, 2, 0, 2, 3]
    assert np.array_equal(a[first][inverse].view(np.int64), a.view(np.int64))

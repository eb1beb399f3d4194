"""Scoring rules of literature rows (studies/credibility/scoring.py): exact boundaries of every
rule, the binomial test against a hand-computed sum, and two-arm contrasts from two simulations."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from microneedling.errors import InputError
from microneedling.studies.credibility.literature import (
    Conditions,
    LiteratureRow,
    Protocol,
    load_literature,
)
from microneedling.studies.credibility.scoring import (
    ALPHA,
    KINDS,
    binomial_p_value,
    score,
    two_arm_predictions,
)


def _row(**kw: Any) -> LiteratureRow:
    base: dict[str, Any] = dict(
        key="r",
        sources=("s",),
        quantity="q",
        observable="scar_depth",
        value=-30.0,
        units="%",
        evidence="SEEN",
        role="validation",
        conditions=Conditions(),
        comparable="c",
        tolerance=10.0,
    )
    base.update(kw)
    return LiteratureRow(**base)


def test_value_rule_is_inclusive_at_the_tolerance() -> None:
    r = _row()
    assert score(r, -20.0).passed and score(r, -40.0).passed
    assert not score(r, -19.99).passed and not score(r, -40.01).passed
    s = score(r, -25.0)
    assert (s.kind, s.status, s.observed, s.tolerance) == ("value", "pass", -30.0, 10.0)
    assert s.detail == "|-25 - -30| = 5 vs 10"
    # observed and tolerance in the prediction's units (e.g. a relative change)
    assert score(r, 1.5, observed=1.0, tolerance=0.5).passed
    assert not score(r, 1.6, observed=1.0, tolerance=0.5).passed


def test_non_finite_prediction_is_a_miss() -> None:
    for kind_row in (
        _row(),
        _row(bound="upper"),
        _row(value=0.0, bound="lower", direction_only=True, tolerance=None),
    ):
        for bad in (math.nan, math.inf, -math.inf):
            s = score(kind_row, bad)
            assert not s.passed and s.detail == "no finite prediction"


def test_bounds() -> None:
    up = _row(value=7.0, units="d", bound="upper", tolerance=1.0)
    assert score(up, 8.0).passed and not score(up, 8.01).passed
    assert score(up, -100.0).passed
    low = _row(value=4.0, units="d", bound="lower", tolerance=1.0)
    assert score(low, 3.0).passed and not score(low, 2.99).passed
    assert score(low, 100.0).passed
    assert score(up, 7.5).detail == "model 7.5 vs limit 8"


def test_direction_rows_score_the_sign_only() -> None:
    down = _row(value=0.0, bound="upper", direction_only=True, tolerance=None)
    assert down.kind == "direction"
    assert score(down, -1e-9).passed and score(down, -500.0).passed
    assert not score(down, 0.0).passed and not score(down, 1e-9).passed
    up = dataclasses.replace(down, bound="lower")
    assert score(up, 1e-9).passed and not score(up, 0.0).passed
    ratio_up = dataclasses.replace(up, compare_with="other arm", arm="arm", contrast="ratio")
    assert score(ratio_up, 1.01).passed and not score(ratio_up, 0.99).passed
    assert score(down, -1.0).tolerance is None


def test_two_arm_rows_need_size_and_the_sign_when_it_is_clear() -> None:
    clear = _row(value=10.0, tolerance=4.0, compare_with="b", arm="a")
    assert clear.kind == "two_arm"
    assert score(clear, 7.0).passed and score(clear, 14.0).passed
    assert not score(clear, 14.01).passed
    # the observed contrast (10) is farther from 0 than the tolerance: the sign is required
    clear_wide = dataclasses.replace(clear, tolerance=9.0)
    assert score(clear_wide, 1.0).passed and not score(clear_wide, -0.5).passed
    assert not score(clear_wide, 0.0).passed
    # within the tolerance of no effect (4.8 vs 10.8): size only, either sign
    unclear = _row(value=4.8, units="h", tolerance=10.8, compare_with="b", arm="a")
    assert score(unclear, -3.0).passed and score(unclear, 0.0).passed
    assert not score(unclear, -6.01).passed
    ratio = _row(value=3.0, units="1", tolerance=1.5, compare_with="b", arm="a", contrast="ratio")
    assert score(ratio, 2.0).passed and not score(ratio, 0.9).passed  # below 1: wrong sign


def _hand_p(k: int, n: int, p: float) -> float:
    pmf = [math.comb(n, x) * p**x * (1 - p) ** (n - x) for x in range(n + 1)]
    return min(1.0, sum(q for q in pmf if q <= pmf[k] * (1 + 1e-7)))


@pytest.mark.parametrize(
    ("k", "n", "p"), [(0, 32, 0.1), (0, 32, 0.01), (5, 30, 0.1), (1, 27, 0.3), (22, 30, 0.5)]
)
def test_binomial_p_value_is_the_exact_two_sided_sum(k: int, n: int, p: float) -> None:
    assert binomial_p_value(k, n, p) == pytest.approx(_hand_p(k, n, p), rel=1e-9)


@pytest.mark.parametrize("p", [0.0, 5e-324, 1e-310, 2.3e-308, 1.0])
def test_binomial_p_value_at_the_edges_of_the_probability(p: float) -> None:
    """p = 0, 1 and subnormal probabilities (a virtual cohort with almost no risk; scipy's binomial
    pmf overflows below the smallest normal float): all the probability is on one outcome."""
    for k, n in ((0, 27), (1, 27), (12, 29), (27, 27)):
        certain = 0 if p < 0.5 else n
        assert binomial_p_value(k, n, p) == pytest.approx(1.0 if k == certain else 0.0, abs=1e-300)


def test_count_rows_are_binomial_and_zero_of_n_is_data() -> None:
    zero = _row(value=0.0, k=0, n=32, tolerance=None)
    assert zero.kind == "count"
    # two-sided: P(0) plus every outcome no more likely than 0 (the upper tail)
    s = score(zero, 5.0)
    assert s.passed and s.p_value == pytest.approx(_hand_p(0, 32, 0.05), rel=1e-9)
    assert s.detail == "0 of 32 at p = 0.05: binomial p = 0.408"
    assert score(zero, 10.0).passed  # p = 0.070
    assert not score(zero, 11.0).passed  # p = 0.044 < ALPHA
    assert score(zero, 0.0).passed and score(zero, 0.0).p_value == 1.0
    five = _row(value=16.67, k=5, n=30, tolerance=None)
    assert score(five, 16.67).passed
    assert not score(five, 0.0).passed  # an event where the model allows none
    assert not score(five, 60.0).passed
    frac = _row(value=16.67, units="1", k=5, n=30, tolerance=None)
    assert score(frac, 0.1667).passed  # a probability in the row's units
    assert ALPHA == 0.05


def test_tolerance_is_required_where_the_rule_uses_it() -> None:
    with pytest.raises(InputError, match=r"r\.tolerance"):
        score(_row(tolerance=None), 1.0)
    with pytest.raises(InputError, match=r"r\.tolerance"):
        score(_row(tolerance=0.0), 1.0)
    with pytest.raises(InputError, match="k"):
        binomial_p_value(3, 2, 0.5)


def test_pass_fraction_over_draws() -> None:
    r = _row()
    s = score(r, -30.0, draws=[-30.0, -35.0, -45.0, math.nan])
    assert s.passed and s.pass_fraction == pytest.approx(0.5)
    assert score(r, -30.0).pass_fraction is None


def test_every_shipped_validation_row_has_a_rule() -> None:
    kinds = set()
    for r in load_literature():
        assert r.kind in KINDS, r.key
        if r.role == "validation":
            kinds.add(r.kind)
            observed = r.value
            s = score(r, observed if r.kind not in ("direction", "count") else -1.0)
            assert s.rule, r.key
    assert kinds == set(KINDS)


# ------------------------------------------------------------------------- two-arm predictions
def test_two_arm_predictions_simulate_both_arms() -> None:
    rows = [
        _row(key="plain"),
        _row(key="diff", compare_with="ref", arm="a", value=2.0),
        _row(key="ratio", compare_with="ref", arm="a", value=2.0, contrast="ratio"),
        _row(key="untreated", compare_with="control", arm="a", value=-3.0),
        _row(key="off", compare_with="ref", arm="a"),
    ]
    course = {
        "sessions": [{"day": 0.0, "needle_length_mm": 2.5, "passes": 4}],
        "horizon_days": 10.0,
    }
    protocols = {
        "plain": Protocol("plain", "value", "", course=course, endpoint="x"),
        "diff": Protocol(
            "diff", "value", "", course=course, endpoint="x", reference={"needle_length_mm": 1.5}
        ),
        "ratio": Protocol(
            "ratio", "value", "", course=course, endpoint="x", reference={"needle_length_mm": 0.5}
        ),
        "untreated": Protocol(
            "untreated", "value", "", course=course, endpoint="x", reference={"untreated": True}
        ),
        "off": Protocol(
            "off",
            "value",
            "",
            evaluable=False,
            reason="not modelled",
            reference={"needle_length_mm": 1.0},
        ),
    }
    calls = []

    def fake_predict(rows_, sets, prots, settings):  # type: ignore[no-untyped-def]
        calls.append([r.key for r in rows_])
        # a "model" that returns needle length x draw index (+1), NaN when not evaluable
        out = np.full((len(sets), len(rows_)), np.nan)
        for j, r in enumerate(rows_):
            p = prots[r.key]
            if p.evaluable and p.course is not None:
                length = p.course["sessions"][0]["needle_length_mm"]
                out[:, j] = [length * (s + 1) for s in range(len(sets))]
        return out

    got = two_arm_predictions(rows, [0, 1], protocols, {}, fake_predict)
    assert calls == [["plain", "diff", "ratio", "untreated", "off"], ["diff", "ratio"]]
    np.testing.assert_allclose(got[:, 0], [2.5, 5.0])  # untouched
    np.testing.assert_allclose(got[:, 1], [1.0, 2.0])  # 2.5 - 1.5 per draw
    np.testing.assert_allclose(got[:, 2], [5.0, 5.0])  # 2.5 / 0.5
    np.testing.assert_allclose(got[:, 3], [2.5, 5.0])  # minus an untreated arm (0)
    assert np.all(np.isnan(got[:, 4]))

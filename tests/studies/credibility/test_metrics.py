"""Validation metrics: exact values of the scores and intervals, and a metric-verification test on
a synthetic ensemble that is calibrated by construction (its coverage lies in its binomial interval
and its PIT is uniform), and one that is not (its coverage and PIT say so)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from microneedling.studies.credibility.metrics import (
    clustered_rate,
    crps,
    interval_score,
    ks_uniform,
    pit_consistent,
    psis_weights,
    quantile_mcse,
    variance_components,
    vv20,
    weighted_quantile,
    wilson,
)


def test_wilson_interval_matches_the_closed_form() -> None:
    for k, n in ((14, 25), (3, 40), (19, 20)):
        ref = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert wilson(k, n) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-15)
    assert wilson(10, 10)[1] == pytest.approx(1.0)


def test_crps_of_a_normal_ensemble_is_the_closed_form() -> None:
    draws = stats.norm.ppf((np.arange(20000) + 0.5) / 20000)
    for y in (0.0, 1.3):
        exact = y * (2 * stats.norm.cdf(y) - 1) + 2 * stats.norm.pdf(y) - 1 / math.sqrt(math.pi)
        assert crps(y, draws) == pytest.approx(exact, abs=2e-4)
    assert math.isnan(crps(1.0, np.array([np.nan, np.inf])))


def test_interval_score_and_vv20_exact() -> None:
    assert interval_score(0.0, -1.0, 1.0, 0.2) == pytest.approx(2.0)
    assert interval_score(3.0, -1.0, 1.0, 0.2) == pytest.approx(2.0 + 2 / 0.2 * 2.0)
    v = vv20(3.0, 0.0, 3.0, 4.0)
    assert v["u_val"] == pytest.approx(5.0) and v["E_over_u_val"] == pytest.approx(0.6)


def test_clustered_interval_resamples_studies() -> None:
    hits = [True, True, True, False, False, True]
    studies = ["a", "a", "a", "b", "b", "c"]
    r = clustered_rate(hits, studies, replicates=4000, seed=1)
    assert r["rate"] == pytest.approx(4 / 6) and r["clusters"] == 3
    assert r["low"] <= r["rate"] <= r["high"]
    # a study of only misses can be drawn three times: the lower end reaches 0
    assert r["low"] == 0.0 and r["high"] == 1.0
    # rows of one study are not independent: the clustered interval is wider than Wilson's
    many = clustered_rate([True] * 10 + [False] * 10, ["a"] * 10 + ["b"] * 10, seed=0)
    assert many["high"] - many["low"] > many["wilson"][1] - many["wilson"][0]


def test_variance_components_law_of_total_variance() -> None:
    # 3 draws x 4 patients: between-draw means 1, 2, 3; within-draw spread the same
    v = np.array([[0, 1, 1, 2], [1, 2, 2, 3], [2, 3, 3, 4]], dtype=float)
    c = variance_components(v)
    assert c["epistemic_sd"] == pytest.approx(1.0)
    assert c["aleatory_sd"] == pytest.approx(math.sqrt(np.var([0, 1, 1, 2], ddof=1)))
    assert c["total_sd"] ** 2 == pytest.approx(c["epistemic_sd"] ** 2 + c["aleatory_sd"] ** 2)


def test_weighted_quantiles_and_psis() -> None:
    x = np.arange(1.0, 5.0)
    assert weighted_quantile(x, np.ones(4), [0.5])[0] == pytest.approx(2.5)
    assert weighted_quantile(x, np.array([0, 0, 0, 1.0]), [0.5])[0] == pytest.approx(4.0)
    rng = np.random.default_rng(2)
    w, k = psis_weights(0.1 * rng.standard_normal(2000))
    assert w.sum() == pytest.approx(1.0) and w.max() < 3 / 2000 and k < 0.5
    _, k_heavy = psis_weights(rng.standard_cauchy(2000) * 3)
    assert k_heavy > 0.7  # weights that cannot be trusted are flagged
    assert quantile_mcse(np.sort(np.random.default_rng(0).standard_normal(4000)), 0.5) < 0.05


def test_metric_verification_on_calibrated_and_overconfident_ensembles() -> None:
    """200 synthetic rows: observations drawn from the same normal as the 1000-draw ensemble
    (calibrated), or from one twice as wide (overconfident ensemble)."""
    rng = np.random.default_rng(11)
    n, m = 200, 1000
    mu = rng.normal(0, 5, n)
    ens = mu[:, None] + rng.standard_normal((n, m))
    studies = [f"s{i // 4}" for i in range(n)]
    for scale, calibrated in ((1.0, True), (2.0, False)):
        y = mu + scale * rng.standard_normal(n)
        lo, hi = np.quantile(ens, [0.1, 0.9], axis=1)
        hits = (lo <= y) & (y <= hi)
        pit = np.mean(ens <= y[:, None], axis=1)
        r = clustered_rate(hits, studies, seed=3)
        ks = ks_uniform(pit)
        if calibrated:
            assert r["low"] <= 0.8 <= r["high"]
            assert ks["p_value"] > 0.01
        else:
            assert r["high"] < 0.8  # too narrow: coverage well below 80%
            assert ks["p_value"] < 1e-3  # U-shaped PIT


def test_psis_weights_of_equal_log_ratios_are_uniform() -> None:
    """A study whose likelihood is the same under every draw (Chakrawarty's sign bounds under the
    shipped posterior) leaves the posterior unchanged: equal weights, k = 0, no NaN (the generalized
    Pareto fit divides by zero there, and the weighted quantiles of validate --out had no points)."""
    w, k = psis_weights(np.full(64, -0.125))
    assert np.allclose(w, 1.0 / 64) and k == 0.0
    # a varying study still gets smoothed, normalised weights
    rng = np.random.default_rng(0)
    w, k = psis_weights(rng.normal(0.0, 1.0, 400))
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0) and np.isfinite(k)


def test_psis_weights_of_near_equal_log_ratios_over_many_decades_are_finite() -> None:
    """Chakrawarty's sign rows under posterior-0eb2763536d0 at 256 draws: the study's log-likelihood
    lies between -6e-5 and -1e-308, the smoothing's tail fit gives NaN weights (the rows were
    reported unscored); the raw importance weights are used instead, all but uniform."""
    rng = np.random.default_rng(1)
    lr = -np.concatenate([[2.0e-308], 10.0 ** rng.uniform(-300.0, np.log10(6e-5), 255)])
    w, k = psis_weights(lr)
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w, 1.0 / 256, rtol=1e-4)
    assert k == 0.0  # bounded ratios: no tail (the Pareto fit gave 4.87 on 256 distinct draws)


def test_psis_k_is_fitted_once_the_ratios_spread_beyond_the_bounded_range() -> None:
    """Log ratios within BOUNDED_RATIO_SPREAD (1 %) of each other are read as bounded (k = 0, raw
    weights); a heavy tail just beyond it is fitted and flagged."""
    from microneedling.studies.credibility.metrics import BOUNDED_RATIO_SPREAD

    rng = np.random.default_rng(4)
    c = rng.standard_cauchy(2000)
    inside = BOUNDED_RATIO_SPREAD * 0.99 * (c - c.min()) / np.ptp(c)
    w, k = psis_weights(inside)
    assert k == 0.0
    np.testing.assert_allclose(w, np.exp(inside) / np.exp(inside).sum())
    _, k_heavy = psis_weights(0.05 * c)
    assert k_heavy > 0.7


def test_weighted_quantile_of_no_finite_point_is_nan() -> None:
    """A predictive with no finite draw (or no positive weight) has no quantiles: NaN, not an
    error (validate --out scored such a row as a crash before)."""
    from microneedling.studies.credibility.metrics import weighted_quantile

    got = weighted_quantile(np.full(8, np.nan), np.full(8, 0.125), [0.1, 0.9])
    assert got.shape == (2,) and np.all(np.isnan(got))
    assert np.all(np.isnan(weighted_quantile(np.arange(4.0), np.zeros(4), [0.5])))
    assert weighted_quantile(np.arange(5.0), np.full(5, 0.2), [0.5])[0] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("kind", "pit", "inside"),
    [
        ("gaussian", 0.5, True),
        ("gaussian", 0.95, False),
        ("gaussian", 0.05, False),
        ("binomial", 0.1, True),
        ("upper", 1.0, True),  # every replicate below the bound: the bound holds
        ("upper", 0.05, False),  # 95% of the predictive above an upper bound
        ("lower", 0.0, True),
        ("lower", 0.95, False),
        ("gaussian", float("nan"), False),
    ],
)
def test_a_bound_is_inside_its_predictive_on_its_own_side(
    kind: str, pit: float, inside: bool
) -> None:
    assert pit_consistent(kind, pit) is inside

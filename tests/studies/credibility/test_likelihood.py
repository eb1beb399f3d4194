"""The calibration's likelihood: exact values on tiny synthetic cases against scipy's densities and
quadrature, the discrepancy shared within a study, bounds, counts (0 of n included), ordinal
counts, the tau prior, implausibility and the predictive."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import expit, logit

from microneedling.errors import InputError
from microneedling.studies.credibility.likelihood import (
    Likelihood,
    RowSpec,
    binomial_logpmf,
    gaussian_block_loglik,
    independent_loglik,
    log_grid,
    log_prior_log_tau,
    ordinal_probability,
    profile_interval,
)


def spec(key: str, kind: str = "gaussian", **kw: object) -> RowSpec:
    base: dict[str, object] = dict(study="s1", group=0, observed=1.0, se=0.5, scale=1.0)
    base.update(kw)
    return RowSpec(key=key, kind=kind, **base)  # type: ignore[arg-type]


def test_gaussian_block_is_the_multivariate_normal_with_a_shared_study_effect() -> None:
    rng = np.random.default_rng(1)
    se = np.array([0.3, 0.7, 1.1])
    s = np.array([2.0, 0.5, 1.5])
    resid = rng.standard_normal((4, 3))
    tau = np.array([0.0, 0.1, 0.8, 3.0])
    got = gaussian_block_loglik(resid, se, s, tau)
    for w in range(4):
        cov = np.diag(se**2) + tau[w] ** 2 * np.outer(s, s)
        want = stats.multivariate_normal(np.zeros(3), cov).logpdf(resid[w])
        assert got[w] == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_rows_of_one_read_out_share_the_study_effect_and_other_read_outs_do_not() -> None:
    """Two times of one read-out are one block (correlated through the study's discrepancy);
    a second read-out of the same study and group has its own discrepancy (independent)."""
    a1 = spec("a1", readout="collagen", observed=2.0, se=0.3, scale=2.0)
    a2 = spec("a2", readout="collagen", observed=2.5, se=0.4, scale=2.5)
    b = spec("b", readout="epidermis", observed=-1.0, se=0.5, scale=1.0)
    lik = Likelihood([a1, a2, b], 1)
    pred = np.array([[1.0, 1.2, 0.5], [2.1, 2.2, -0.8]])
    tau = np.array([[0.4], [1.3]])
    got = lik(pred, tau)
    for w in range(2):
        t = tau[w, 0]
        cov_a = np.diag([0.3**2, 0.4**2]) + t**2 * np.outer([2.0, 2.5], [2.0, 2.5])
        want = stats.multivariate_normal([pred[w, 0], pred[w, 1]], cov_a).logpdf([2.0, 2.5])
        want += stats.norm(pred[w, 2], math.sqrt(0.5**2 + t**2)).logpdf(-1.0)
        assert got[w] == pytest.approx(want, rel=1e-12)
    # the same rows as one read-out would be one block of three: a different number
    one = Likelihood([a1, a2, spec("b", readout="collagen", observed=-1.0, se=0.5)], 1)
    assert not np.allclose(one(pred, tau), got)


def test_binomial_logpmf_is_exact_including_zero_of_n() -> None:
    p = np.array([0.0, 1e-3, 0.2, 0.5, 1.0])
    for k, n in ((0, 60), (5, 30), (31, 31)):
        got = binomial_logpmf(k, n, p)
        want = stats.binom.logpmf(k, n, p)
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # 0 of 60 at p = 0.05: (0.95)^60
    assert math.exp(float(binomial_logpmf(0, 60, np.array([0.05]))[0])) == pytest.approx(
        0.95**60, rel=1e-12
    )


def test_count_row_integrates_the_study_discrepancy_on_the_logit() -> None:
    lik = Likelihood([spec("c", "binomial", observed=2 / 40, se=0.0, n=40, k=2)], 1)
    for p, tau in ((0.1, 0.0), (0.1, 0.7), (0.02, 1.5), (0.001, 3.0), (0.5, 6.0)):

        def f(z: float, p: float = p, tau: float = tau) -> float:
            return stats.binom.pmf(2, 40, expit(logit(p) + tau * z)) * stats.norm.pdf(z)

        want = math.log(integrate.quad(f, -12, 12, epsabs=1e-15, epsrel=1e-12, limit=400)[0])
        got = lik(np.array([[p]]), np.array([[tau]]))[0]
        assert got == pytest.approx(want, rel=1e-10)


def test_bounds_and_directions_are_censored_probits() -> None:
    specs = [
        spec("up", "upper", observed=2.0, se=0.5, scale=2.0),
        spec("lo", "lower", observed=0.0, se=0.25, scale=4.0, study="s2"),
    ]
    lik = Likelihood(specs, 1)
    pred = np.array([[1.5, -0.1]])
    tau = np.array([[0.2]])
    sd_up = math.hypot(0.5, 0.2 * 2.0)
    sd_lo = math.hypot(0.25, 0.2 * 4.0)
    want = stats.norm.logcdf((2.0 - 1.5) / sd_up) + stats.norm.logcdf((-0.1 - 0.0) / sd_lo)
    assert lik(pred, tau)[0] == pytest.approx(want, rel=1e-12)
    by = lik.by_study(pred, tau)[0]
    assert by[0] == pytest.approx(stats.norm.logcdf(0.5 / sd_up), rel=1e-12)


def test_ordinal_count_is_an_ordered_probit_integrated_over_the_study_effect() -> None:
    s = spec("o", "ordinal", observed=0.6, se=0.8, scale=1.0, n=30, k=18, threshold=-1.0)
    lik = Likelihood([s], 1)
    mean, tau = -1.3, 0.4

    def f(z: float) -> float:
        p = stats.norm.cdf((-1.0 - (mean + tau * z)) / 0.8)
        return stats.binom.pmf(18, 30, p) * stats.norm.pdf(z)

    want = math.log(integrate.quad(f, -12, 12, epsabs=1e-15, epsrel=1e-12, limit=400)[0])
    assert lik(np.array([[mean]]), np.array([[tau]]))[0] == pytest.approx(want, rel=1e-10)
    assert ordinal_probability(np.array([0.0]), 1.0, 1.0, "above")[0] == pytest.approx(
        stats.norm.sf(1.0)
    )


def test_rows_of_two_studies_are_independent_and_one_study_shares_its_effect() -> None:
    specs = [
        spec("a", observed=10.0, se=1.0, scale=10.0, readout="x"),
        spec("b", observed=20.0, se=2.0, scale=20.0, readout="x"),
        spec("c", observed=5.0, se=0.5, scale=5.0, study="s2"),
    ]
    lik = Likelihood(specs, 1)
    pred = np.array([[11.0, 18.0, 5.5]])
    tau = np.array([[0.3]])
    cov = np.diag([1.0, 4.0]) + 0.09 * np.outer([10.0, 20.0], [10.0, 20.0])
    want_s1 = stats.multivariate_normal([0, 0], cov).logpdf([10.0 - 11.0, 20.0 - 18.0])
    want_s2 = stats.norm(0, math.hypot(0.5, 1.5)).logpdf(-0.5)
    np.testing.assert_allclose(lik.by_study(pred, tau)[0], [want_s1, want_s2], rtol=1e-12)
    assert lik.studies == ("s1", "s2")
    # a non-finite prediction rules out its study only
    bad = lik.by_study(np.array([[np.nan, 18.0, 5.5]]), tau)[0]
    assert bad[0] == -np.inf and bad[1] == pytest.approx(want_s2)


def test_tau_prior_is_half_normal_in_log_coordinates() -> None:
    sigma = 0.3

    def dens(lt: float) -> float:
        return math.exp(float(log_prior_log_tau(np.array([[lt]]), np.array([sigma]))[0]))

    assert integrate.quad(dens, -30, 5)[0] == pytest.approx(1.0, rel=1e-8)
    lt = math.log(0.2)
    want = stats.halfnorm(scale=sigma).logpdf(0.2) + lt
    assert log_prior_log_tau(np.array([[lt]]), np.array([sigma]))[0] == pytest.approx(want)


def test_implausibility_values() -> None:
    specs = [
        spec("g", observed=10.0, se=3.0, scale=10.0),
        spec("u", "upper", observed=2.0, se=1.0, scale=0.0),
        spec("n", "binomial", observed=0.0, se=0.0, n=60, k=0),
    ]
    lik = Likelihood(specs, 1)
    imp = lik.implausibility(np.array([[14.0, 1.0, 0.05], [10.0, 5.0, 1e-9]]), np.array([[0.4]]))
    assert imp[0, 0] == pytest.approx(4.0 / 5.0)  # sqrt(9 + 16) = 5
    assert imp[0, 1] == 0.0 and imp[1, 1] == pytest.approx(3.0)  # a bound that holds is 0
    # 0 of 60: mid-p = P(K=0)/2; z of that tail
    assert imp[1, 2] < imp[0, 2]
    assert imp[1, 2] == pytest.approx(abs(stats.norm.ppf(0.5)), abs=1e-3)


def test_pit_and_predictive_agree_with_their_definitions() -> None:
    s = spec("g", observed=3.0, se=0.5, scale=2.0)
    lik = Likelihood([s], 1)
    f = np.array([2.0])
    tau = np.array([0.25])
    sd = math.hypot(0.5, 0.25 * 2.0)
    assert lik.pit(0, f, tau) == pytest.approx(stats.norm.cdf((3.0 - 2.0) / sd))
    y = lik.predictive(0, np.full(200_000, 2.0), np.full(200_000, 0.25), np.random.default_rng(0))
    assert y.mean() == pytest.approx(2.0, abs=0.01)
    assert y.std() == pytest.approx(sd, rel=0.01)
    counts = Likelihood([spec("c", "binomial", observed=0.1, se=0.0, n=20, k=2)], 1)
    k = counts.predictive(0, np.full(100_000, 0.1), np.zeros(100_000), np.random.default_rng(1))
    assert k.mean() == pytest.approx(2.0, abs=0.03)
    mid = stats.binom.cdf(1, 20, 0.1) + 0.5 * stats.binom.pmf(2, 20, 0.1)
    assert counts.pit(0, np.array([0.1]), np.array([0.0])) == pytest.approx(mid)


def test_a_log_row_is_the_log_normal_with_the_reported_mean_and_se() -> None:
    # 4.5 h reported with SE 1.5 h; the discrepancy is relative (scale 1 on the log scale)
    y, se, tau = 4.5, 1.5, 0.4
    s = spec("h", observed=y, se=se, scale=y, log=True)
    lik = Likelihood([s], 1)
    sigma = math.sqrt(math.log1p((se / y) ** 2))
    # sigma is the log-normal's whose coefficient of variation is the reported se / y
    ln = stats.lognorm(sigma, scale=y)
    assert ln.std() / ln.mean() == pytest.approx(se / y, rel=1e-12)
    f = np.array([1.5, 4.5, 13.5, 50.0])
    total = math.hypot(sigma, tau)
    want = stats.lognorm(total, scale=f).logpdf(y)
    got = lik(f[:, None], np.full((4, 1), tau))
    assert got == pytest.approx(want, rel=1e-12)
    # 3x above and 3x below the observation are equally unlikely (plus the same Jacobian)
    assert got[0] == pytest.approx(got[2], rel=1e-12)
    assert lik.pit(0, f[2:3], np.array([tau])) == pytest.approx(
        stats.norm.cdf(-math.log(3) / total)
    )
    imp = lik.implausibility(f[:, None], np.full((4, 1), tau))
    assert imp[:, 0] == pytest.approx(np.abs(np.log(f / y)) / total)


def test_log_rows_replicate_positive_observations_and_censor_positive_bounds() -> None:
    lik = Likelihood([spec("h", observed=2.0, se=1.0, scale=2.0, log=True)], 1)
    draws = lik.predictive(
        0, np.full(200_000, 2.0), np.full(200_000, 0.5), np.random.default_rng(3)
    )
    assert np.all(draws > 0)
    sd = math.hypot(math.sqrt(math.log1p(0.25)), 0.5)
    assert np.log(draws).mean() == pytest.approx(math.log(2.0), abs=0.005)
    assert np.log(draws).std() == pytest.approx(sd, rel=0.01)
    # the natural scale's replicate of the same row goes below 0
    nat = Likelihood([spec("h", observed=2.0, se=1.0, scale=2.0)], 1)
    assert np.any(
        nat.predictive(0, np.full(10_000, 2.0), np.full(10_000, 0.5), np.random.default_rng(3)) < 0
    )
    upper = Likelihood([spec("u", "upper", observed=48.0, se=10.0, scale=48.0, log=True)], 1)
    sig = math.sqrt(math.log1p((10.0 / 48.0) ** 2))
    f = np.array([[24.0], [96.0]])
    want = stats.norm.logcdf(np.log(48.0 / f[:, 0]) / math.hypot(sig, 0.3))
    assert upper(f, np.full((2, 1), 0.3)) == pytest.approx(want, rel=1e-12)


def test_a_log_row_floors_a_non_positive_prediction_and_keeps_nan_as_nan() -> None:
    lik = Likelihood([spec("h", observed=2.0, se=0.5, scale=2.0, log=True)], 1)
    ll = lik(np.array([[0.0], [-1.0], [np.nan], [2.0]]), np.full((4, 1), 0.2))
    assert np.isfinite(ll[:2]).all() and ll[0] == ll[1] and ll[0] < ll[3] - 100
    assert ll[2] == -np.inf


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"kind": "gaussian", "observed": 0.0, "log": True}, "log"),
        ({"kind": "binomial", "n": 10, "k": 1, "observed": 0.1, "log": True}, "log"),
        ({"kind": "normal"}, "kind"),
        ({"kind": "gaussian", "se": 0.0}, "se"),
        ({"kind": "binomial", "n": 10, "k": 11}, "k"),
        ({"kind": "ordinal", "n": 10, "k": 1}, "sd"),
        ({"kind": "gaussian", "scale": -1.0}, "scale"),
    ],
)
def test_bad_row_specs_name_the_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as exc:
        spec("r1", **kw)  # type: ignore[arg-type]
    assert exc.value.field == f"r1.{field}"


def test_profile_interval_of_a_gaussian_log_likelihood_is_mean_plus_minus_1_96_sd() -> None:
    grid = np.linspace(-5.0, 7.0, 12001)
    ll = -0.5 * ((grid - 1.2) / 0.8) ** 2
    i, lo, hi = profile_interval(grid, ll, "x")
    assert grid[i] == pytest.approx(1.2, abs=1e-3)
    assert lo == pytest.approx(1.2 - 1.959964 * 0.8, abs=2e-3)
    assert hi == pytest.approx(1.2 + 1.959964 * 0.8, abs=2e-3)
    _, lo80, hi80 = profile_interval(grid, ll, "x", level=0.8)
    assert hi80 - lo80 == pytest.approx(2 * 1.281552 * 0.8, abs=4e-3)
    with pytest.raises(ValueError, match="x reaches the end of the grid"):
        profile_interval(grid[:3000], ll[:3000], "x")


def test_independent_rows_are_gaussians_and_censored_gaussians() -> None:
    """A mean row is the normal log density, an upper bound log P(truth <= y) = log Φ((y − f)/se),
    a lower one log Φ((f − y)/se); rows add; an unknown bound kind and a wrong shape are refused."""
    f = np.array([[1.0, 2.0, 3.0], [2.5, 0.0, 5.0]])
    y, se = np.array([1.5, 1.0, 4.0]), np.array([0.5, 0.4, 2.0])
    got = independent_loglik(y, se, [None, "upper", "lower"], f)
    want = (
        stats.norm.logpdf(y[0], f[:, 0], se[0])
        + stats.norm.logcdf((y[1] - f[:, 1]) / se[1])
        + stats.norm.logcdf((f[:, 2] - y[2]) / se[2])
    )
    assert got == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="bound"):
        independent_loglik(y, se, [None, "above", None], f)
    with pytest.raises(ValueError, match="shape"):
        independent_loglik(y, se, [None, None, None], f[:, :2])


def test_log_grid_spacing_and_ends() -> None:
    """Equal steps in ln, both ends included, at least the asked density per factor e."""
    g = log_grid(0.5, 8.0, 10)
    assert g[0] == pytest.approx(0.5) and g[-1] == pytest.approx(8.0)
    steps = np.diff(np.log(g))
    assert np.allclose(steps, steps[0]) and steps[0] <= 0.1 + 1e-12
    assert len(log_grid(1.0, 1.0001, 10)) == 2
    with pytest.raises(ValueError, match="low"):
        log_grid(2.0, 1.0, 10)

"""Leave-one-study-out by importance sampling (:mod:`microneedling.studies.credibility.loso`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from microneedling.studies.credibility.loso import leave_one_study_out


def test_leave_one_study_out_matches_the_exact_conjugate_predictive() -> None:
    """A conjugate Gaussian case: every row of five one-row studies measures one mean ``mu`` (prior
    N(0, 1), the first parameter score) with a known SE, so the posterior and each leave-one-out
    posterior predictive are Gaussian in closed form. The importance-weighted LOSO of exact
    posterior draws reproduces each left-out study's log predictive density and PIT, and scores
    the one surprising study (2.6) as outside its 80% interval. Without the weights (the full
    posterior's predictive) the elpd of that study is off by 0.7 and its PIT by 0.015."""
    from scipy.stats import norm

    from tests.studies.credibility.toy import ToyProblem, toy_problem

    class MeanOnly(ToyProblem):
        model = staticmethod(lambda z: np.repeat(z[:, :1], 5, axis=1))
        name = "mean"

    y = np.array([0.2, -0.2, 0.9, 0.1, 2.6])
    se = np.array([1.0, 0.8, 1.2, 1.0, 1.0])
    problem = toy_problem(MeanOnly, y, se)
    prec = 1.0 + np.sum(1.0 / se**2)
    mean = np.sum(y / se**2) / prec
    rng = np.random.default_rng(1)
    D = 4000
    x = np.column_stack(
        [
            mean + rng.standard_normal(D) / math.sqrt(prec),  # exact posterior of mu
            rng.standard_normal(D),  # the second score: no row reads it, prior = posterior
            np.full(D, math.log(0.3)),  # log tau: the rows have no discrepancy scale
        ]
    )
    out = leave_one_study_out(problem, x, seed=0, bootstrap=200)
    assert [s["study"] for s in out["studies"]] == [f"s{j}" for j in range(5)]
    for j, s in enumerate(out["studies"]):
        keep = np.arange(5) != j
        p_j = 1.0 + np.sum(1.0 / se[keep] ** 2)
        m_j = np.sum(y[keep] / se[keep] ** 2) / p_j
        sd_j = math.sqrt(1.0 / p_j + se[j] ** 2)  # left-out predictive N(m_j, sd_j)
        assert s["elpd"] == pytest.approx(norm.logpdf(y[j], m_j, sd_j), abs=0.02), s["study"]
        (row,) = s["rows"]
        exact_pit = float(norm.cdf((y[j] - m_j) / sd_j))
        assert row["pit"] == pytest.approx(exact_pit, abs=0.005), s["study"]
        assert row["covered_80"] is (0.1 <= exact_pit <= 0.9), s["study"]
        assert s["pareto_k"] < 0.7
    assert [r["covered_80"] for s in out["studies"] for r in s["rows"]] == [True] * 4 + [False]
    assert out["coverage_80"]["hits"] == 4 and out["coverage_80"]["n"] == 5
    exact = sum(
        norm.logpdf(
            y[j],
            np.sum((y / se**2)[np.arange(5) != j]) / (1 + np.sum((1 / se**2)[np.arange(5) != j])),
            math.sqrt(1 / (1 + np.sum((1 / se**2)[np.arange(5) != j])) + se[j] ** 2),
        )
        for j in range(5)
    )
    assert out["elpd"] == pytest.approx(exact, abs=0.05)
    assert out["unscored"] == [] and out["max_pareto_k"] < 0.7


def test_the_problem_as_fitted_reads_the_stand_ins_spread_the_posterior_recorded() -> None:
    """A posterior that records its stand-ins' spread is rebuilt with it whatever screening file
    is shipped; one that does not falls back on the shipped screening, and refuses a screening it
    was not fitted with."""
    import copy

    from microneedling.errors import InputError
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.parameters.sampling import Posterior, shipped_posterior
    from microneedling.studies.credibility.calibrate import load_config
    from microneedling.studies.credibility.loso import fitted_problem
    from microneedling.studies.credibility.screening import load_screening

    post = shipped_posterior(load_parameters())
    assert post is not None
    config = load_config()
    sd = dict(load_screening()["nuisances"]["stand_in_sd"])
    assert "stand_in_sd" not in post.summary["screening"]  # fitted before the record
    summary = copy.deepcopy(post.summary)
    summary["screening"]["version"] = "screening-other"
    with pytest.raises(InputError, match=r"screening\.toml"):
        fitted_problem(Posterior(post.version, summary, post.x), config)
    summary["screening"]["stand_in_sd"] = sd
    recorded = fitted_problem(Posterior(post.version, summary, post.x), config)
    assert recorded.fingerprint() == post.summary["fingerprint"]
    summary["screening"]["stand_in_sd"] = {k: 2.0 * v for k, v in sd.items()}
    wider = fitted_problem(Posterior(post.version, summary, post.x), config)
    assert wider.fingerprint() != post.summary["fingerprint"]


def test_a_left_out_row_is_inside_its_interval_by_the_predictives_cdf_not_by_replicates() -> None:
    """All the weight on one draw whose prediction equals the observation: the predictive is that
    draw's N(f, sd), the PIT is 0.5 and the row is inside its 80% interval. (One replicate of that
    draw, the interval the quantiles gave before, has zero width and misses almost surely.) A row
    two predictive SDs away is outside on either side."""
    from microneedling.studies.credibility.loso import left_out_scores
    from tests.studies.credibility.toy import ToyProblem, toy_problem

    class MeanOnly(ToyProblem):
        model = staticmethod(lambda z: np.repeat(z[:, :1], 5, axis=1))
        name = "mean"

    y = np.array([0.2, -0.2, 0.9, 0.1, 2.6])
    se = np.ones(5)
    lik = toy_problem(MeanOnly, y, se).likelihood
    D = 50
    f = np.zeros((D, 5))
    f[0] = y  # the one weighted draw predicts every row exactly
    f[0, 4] = y[4] - 2.5  # ... but row 4, 2.5 SDs (of its observation) below
    tau = np.full((D, 1), 1e-6)
    w = np.zeros(D)
    w[0] = 1.0
    rng = np.random.default_rng(0)
    got = {}
    for j in range(5):
        (row,) = left_out_scores(lik, f"s{j}", f, tau, np.zeros(D), w, rng)["rows"]
        got[j] = (round(row["pit"], 3), row["covered_80"])
    assert got[0] == (0.5, True)
    assert got[4][1] is False and got[4][0] > 0.99

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

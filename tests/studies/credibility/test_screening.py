"""Screening: on a model whose sensitivities are known exactly (the calibration problem's predict
replaced by a linear function of a few coordinates), Morris keeps, Sobol measures and the selection
picks exactly the informative parameters; the identifiability check sees collinearity; the noise
of a row is its likelihood's."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from microneedling.studies.credibility import calibrate, screening
from microneedling.studies.credibility.calibrate import Problem, build_problem, load_config
from microneedling.studies.credibility.likelihood import RowSpec


@pytest.fixture(scope="module")
def problem() -> Problem:
    return build_problem(None)


def test_row_noise_is_the_likelihood_scale() -> None:
    g = RowSpec("g", "gaussian", "s", 0, observed=10.0, se=3.0, scale=10.0)
    assert screening.row_noise(g, 0.4) == pytest.approx(5.0)
    b = RowSpec("b", "binomial", "s", 0, observed=0.0, se=0.0, scale=1.0, n=50, k=0)
    p = 0.5 / 50
    assert screening.row_noise(b, 0.0) == pytest.approx(math.sqrt(p * (1 - p) / 50))


def test_select_ranks_by_information_ratio() -> None:
    st = np.array([[0.9, 0.0], [0.05, 0.5], [0.001, 0.001]])
    var = np.array([100.0, 4.0])
    noise = np.array([5.0, 1.0])
    chosen, info = screening.select(["a", "b", "c"], st, var, noise, 1.0, 20)
    assert chosen == ["a", "b"]  # a: 0.9*100/25 = 3.6; b: max(0.2, 2.0) = 2.0; c: 0.004
    assert info["a"] == pytest.approx(3.6) and info["b"] == pytest.approx(2.0)
    assert screening.select(["a", "b", "c"], st, var, noise, 1.0, 1)[0] == ["a"]


def _linear(problem: Problem, weights: dict[str, dict[str, float]]) -> Any:
    """A predict function: row -> {coordinate label: coefficient in noise units}."""
    noise = np.array(
        [screening.row_noise(s, float(problem.group_prior_scale[s.group]))
         for s in problem.likelihood.specs]
    )  # fmt: skip
    keys = [s.key for s in problem.likelihood.specs]
    obs = np.array([s.observed for s in problem.likelihood.specs])

    def predict(self: Problem, x: np.ndarray, *, strict: bool = False) -> np.ndarray:
        x = np.atleast_2d(x)
        out = np.tile(obs, (len(x), 1))
        for key, coefs in weights.items():
            i = keys.index(key)
            for label, a in coefs.items():
                out[:, i] += a * noise[i] * x[:, self.labels.index(label)]
        return out

    return predict


def test_screening_recovers_known_sensitivities(
    problem: Problem, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = [f.label for f in problem.factors]
    nus = [n.label for n in problem.nuisances]
    strong, medium, weak = params[3], params[10], params[20]
    rows = [s.key for s in problem.likelihood.specs]
    weights = {rows[0]: {strong: 3.0, weak: 0.2}, rows[1]: {medium: 1.5}}
    if nus:
        weights[rows[1]][nus[0]] = 2.0
    monkeypatch.setattr(Problem, "predict", _linear(problem, weights))
    cfg = load_config()
    cfg = cfg.model_copy(
        update={
            "screening": cfg.screening.model_copy(
                update={"morris_candidates": 6, "morris_trajectories": 4, "morris_keep": 4,
                        "morris_keep_nuisances": 2, "sobol_n_base": 512}
            )
        }
    )  # fmt: skip
    res = screening.run_screening(config=cfg)
    assert {strong, medium, weak} <= set(res["morris"]["kept"])
    assert res["selected"] == [strong, medium]  # weak: 0.2^2 x Var < 1 noise^2
    sob = {f["factor"]: f for f in res["sobol"]["factors"]}
    # linear model: ST = a^2 / sum a^2 on the row it acts on
    assert sob[strong]["ST"][0] == pytest.approx(9 / 9.04, abs=0.05)
    assert sob[weak]["ST"][0] == pytest.approx(0.04 / 9.04, abs=0.02)
    if nus:
        assert res["nuisances"]["sampled"] == [nus[0]]
        assert nus[0] not in res["selected"]  # settings are nuisances, never calibrated
    assert res["morris"]["runs"] == 4 * (len(params) + len(nus) + 1)
    assert res["sobol"]["runs"] == 512 * (4 + min(2, len(nus)) + 2)
    ident = res["identifiability"]
    assert [f["label"] for f in ident["factors"]] == [strong, medium]
    assert ident["collinearity_index"] == pytest.approx(1.0, rel=1e-6)  # separate rows
    assert res["version"].startswith("screening-")


def test_identifiability_sees_collinear_parameters(
    problem: Problem, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = [f.label for f in problem.factors]
    a, b = params[0], params[1]
    rows = [s.key for s in problem.likelihood.specs]
    monkeypatch.setattr(
        Problem, "predict", _linear(problem, {rows[0]: {a: 2.0, b: 2.0}, rows[1]: {a: 1.0, b: 1.0}})
    )
    noise = np.array(
        [screening.row_noise(s, float(problem.group_prior_scale[s.group]))
         for s in problem.likelihood.specs]
    )  # fmt: skip
    ident = screening.identifiability(problem, [a, b], noise)
    assert ident["collinearity_index"] > 1e6  # only a + b is identified
    # linearised posterior (J^T J + I)^-1 with J = [[2, 2], [1, 1]] (noise units): r = -5/6
    assert ident["correlations"][0]["r"] == pytest.approx(-5 / 6, abs=1e-3)


def test_stand_in_spread_is_the_sd_over_the_ranges(
    problem: Problem, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not problem.nuisances:
        pytest.skip("no calibration row has a stand-in range")
    nu = problem.nuisances[0]
    key = nu.rows[0]
    monkeypatch.setattr(Problem, "predict", _linear(problem, {key: {nu.label: 1.0}}))
    spread = screening.stand_in_spread(problem, [nu.label], seed=1, n=256)
    spec = next(s for s in problem.likelihood.specs if s.key == key)
    noise = screening.row_noise(spec, float(problem.group_prior_scale[spec.group]))
    assert set(spread) == set(nu.rows) & {s.key for s in problem.likelihood.specs}
    assert spread[key] == pytest.approx(noise, rel=0.1)  # SD of a standard-normal score x noise
    assert calibrate.SETTINGS[nu.setting] in (True, False)


def test_every_row_gets_its_most_influential_parameter_through_morris(
    problem: Problem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row moved only by a small effect keeps its parameter in Sobol, ahead of a second, larger
    effect on a row that already has one."""
    params = [f.label for f in problem.factors]
    rows = [s.key for s in problem.likelihood.specs]
    big, second, small = params[3], params[20], params[30]
    weights = {rows[0]: {big: 30.0, second: 10.0}, rows[2]: {small: 0.5}}
    monkeypatch.setattr(Problem, "predict", _linear(problem, weights))
    cfg = load_config()
    cfg = cfg.model_copy(
        update={
            "screening": cfg.screening.model_copy(
                update={"morris_candidates": 4, "morris_trajectories": 2, "morris_keep": 2,
                        "morris_keep_nuisances": 0, "sobol_n_base": 8}
            )
        }
    )  # fmt: skip
    res = screening.run_screening(config=cfg)
    assert set(res["morris"]["kept"]) == {big, small}

"""Leave-one-study-out by refitting (``studies/credibility/loso_refit.py``) and the calibration's
``--leave-out``: scored against the closed-form predictive of a conjugate case; refits never
shipped."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from microneedling.errors import InputError
from microneedling.parameters.sampling import Posterior
from tests.studies.credibility.toy import ToyProblem, toy_problem

Y = np.array([0.2, -0.2, 0.9, 0.1, 2.6])
SE = np.array([1.0, 0.8, 1.2, 1.0, 1.0])


class MeanOnly(ToyProblem):
    """Every row of five one-row studies measures one mean mu (the first parameter score)."""

    model = staticmethod(lambda z: np.repeat(z[:, :1], 5, axis=1))
    name = "mean"


def _posterior_without(keep: np.ndarray, left_out: list[str], n: int, seed: int) -> Posterior:
    """Exact draws of mu's posterior from the rows ``keep`` (prior N(0, 1)), as a refit would ship
    them: factors p0 and p1, the group g, no nuisance setting."""
    prec = 1.0 + np.sum(1.0 / SE[keep] ** 2)
    mean = np.sum(Y[keep] / SE[keep] ** 2) / prec
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            mean + rng.standard_normal(n) / math.sqrt(prec),
            rng.standard_normal(n),
            np.full(n, math.log(0.3)),
        ]
    )
    summary = {
        "factors": [{"label": "p0", "prior": []}, {"label": "p1", "prior": []}],
        "groups": [{"name": "g", "prior_scale": 0.3}],
        "nuisances": [],
        "left_out": left_out,
    }
    return Posterior(version="posterior-test", summary=summary, x=x)


@pytest.mark.parametrize("j", [0, 4])
def test_a_refit_scores_the_left_out_study_by_its_exact_predictive(j: int) -> None:
    """Draws of the exact posterior without study j give that study's closed-form log predictive
    density N(y_j; m_j, sqrt(1/p_j + se_j^2)), PIT and 80% verdict (study 4, at 2.6, is outside);
    draws of the full posterior, scored as if they were a refit, miss the surprising study's elpd
    by more than 0.5 (so the test tells a refit from a fit that kept the study)."""
    from microneedling.studies.credibility.loso_refit import refit_scores

    problem = toy_problem(MeanOnly, Y, SE)
    keep = np.arange(5) != j
    refit = _posterior_without(keep, [f"s{j}"], 4000, seed=1)
    (scores,) = refit_scores(problem, refit, draws=4000, seed=0).values()
    p_j = 1.0 + np.sum(1.0 / SE[keep] ** 2)
    m_j = np.sum(Y[keep] / SE[keep] ** 2) / p_j
    sd_j = math.sqrt(1.0 / p_j + SE[j] ** 2)
    assert scores["elpd"] == pytest.approx(norm.logpdf(Y[j], m_j, sd_j), abs=0.02)
    (row,) = scores["rows"]
    exact_pit = float(norm.cdf((Y[j] - m_j) / sd_j))
    assert row["pit"] == pytest.approx(exact_pit, abs=0.005)
    assert row["covered_80"] is (0.1 <= exact_pit <= 0.9)
    assert row["covered_80"] is (j != 4)
    assert scores["draws"] == 4000 and scores["posterior"] == "posterior-test"
    kept = _posterior_without(np.ones(5, dtype=bool), [f"s{j}"], 4000, seed=1)
    (wrong,) = refit_scores(problem, kept, draws=4000, seed=0).values()
    if j == 4:
        assert wrong["elpd"] - scores["elpd"] > 0.5  # the study's own pull, seen in the fit


def test_a_refit_must_name_studies_of_the_problem() -> None:
    from microneedling.studies.credibility.loso_refit import refit_scores

    problem = toy_problem(MeanOnly, Y, SE)
    refit = _posterior_without(np.ones(5, dtype=bool), ["nosuch"], 10, seed=1)
    with pytest.raises(InputError, match=r"left_out.*nosuch"):
        refit_scores(problem, refit, draws=10, seed=0)


def test_the_comparison_table_puts_each_estimate_beside_the_refit() -> None:
    from microneedling.studies.credibility.loso_refit import format_table

    table = [
        {
            "study": "s4",
            "posterior": "posterior-test",
            "pareto_k": 1.2,
            "elpd_is": -3.1,
            "elpd_refit": -3.9,
            "rows": [
                {"key": "r4", "pit_is": 0.93, "pit_refit": 0.97, "covered_is": False,
                 "covered_refit": False},
                {"key": "r5", "pit_is": 0.5, "pit_refit": 0.6, "covered_is": True,
                 "covered_refit": None},
            ],
        }
    ]  # fmt: skip
    text = format_table(table).splitlines()
    assert text[2].startswith("| s4 (posterior-test) | 1.20 | -3.10 | -3.90 | r4 | 0.930 | 0.970")
    assert text[3] == "|  | | | | r5 | 0.500 | 0.600 | yes | – |"


def test_a_run_directory_without_a_left_out_study_is_not_a_refit(tmp_path: Path) -> None:
    from microneedling.studies.credibility.loso_refit import refit_posterior
    from microneedling.studies.credibility.posterior import write_posterior

    with pytest.raises(InputError, match="posterior-"):
        refit_posterior(tmp_path)
    write_posterior({"factors": [], "groups": [], "nuisances": []}, np.zeros((3, 1)), tmp_path)
    with pytest.raises(InputError, match="--leave-out"):
        refit_posterior(tmp_path)


def test_a_refit_is_never_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ship_run`` refuses a posterior that left a study out, before writing anything."""
    from microneedling.studies.credibility import pipeline
    from microneedling.studies.credibility.posterior import write_posterior

    shipped: list[object] = []
    monkeypatch.setattr(pipeline, "ship", lambda paths: shipped.append(paths))
    summary = {"factors": [], "groups": [], "nuisances": [], "left_out": ["hkjdv2018"]}
    write_posterior(summary, np.zeros((3, 1)), tmp_path)
    with pytest.raises(InputError, match="left out hkjdv2018"):
        pipeline.ship_run(tmp_path)
    assert shipped == []


def test_leaving_out_an_unknown_study_names_the_calibration_studies(tmp_path: Path) -> None:
    from microneedling.studies.credibility.pipeline import run_pipeline

    with pytest.raises(InputError, match=r"--leave-out.*nosuch.*calibration studies: \['"):
        run_pipeline(tmp_path, screening="shipped", leave_out=["nosuch"], log=lambda m: None)
    assert not any(tmp_path.iterdir())  # refused before any work


def test_the_cli_refuses_to_ship_a_refit(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from microneedling.cli.app import app

    res = CliRunner().invoke(
        app,
        ["calibrate", "--out", str(tmp_path / "run"), "--leave-out", "hkjdv2018", "--write"],
    )
    assert res.exit_code != 0
    assert "--write" in res.output and "never shipped" in res.output
    assert not (tmp_path / "run").exists()

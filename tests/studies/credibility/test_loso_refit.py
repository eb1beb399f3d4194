"""Leave-one-study-out by refitting (``studies/credibility/loso_refit.py``) and the calibration's
``--leave-out``: scored against the closed-form predictive of a conjugate case; refits never
shipped."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from microneedling.errors import InputError, ParameterError
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
    density N(y_j; m_j, sqrt(1/p_j + se_j^2)), PIT and 80% verdict (study 4, at 2.6, is outside),
    to about 4 Monte Carlo SDs; draws of the full posterior, scored as if they were a refit, miss
    the surprising study's elpd by more than 0.5 (so the test tells a refit from a fit that kept
    the study)."""
    from microneedling.studies.credibility.loso_refit import refit_scores

    problem = toy_problem(MeanOnly, Y, SE)
    keep = np.arange(5) != j
    refit = _posterior_without(keep, [f"s{j}"], 4000, seed=1)
    scores = refit_scores(problem, refit, draws=4000, seed=0)
    p_j = 1.0 + np.sum(1.0 / SE[keep] ** 2)
    m_j = np.sum(Y[keep] / SE[keep] ** 2) / p_j
    sd_j = math.sqrt(1.0 / p_j + SE[j] ** 2)
    assert scores["study"] == f"s{j}"
    assert scores["elpd"] == pytest.approx(norm.logpdf(Y[j], m_j, sd_j), abs=0.1)
    (row,) = scores["rows"]
    exact_pit = float(norm.cdf((Y[j] - m_j) / sd_j))
    assert row["pit"] == pytest.approx(exact_pit, abs=0.015)
    assert row["covered_80"] is (0.1 <= exact_pit <= 0.9)
    assert row["covered_80"] is (j != 4)
    assert scores["draws"] == 4000 and scores["posterior"] == "posterior-test"
    if j == 4:
        kept = _posterior_without(np.ones(5, dtype=bool), [f"s{j}"], 4000, seed=1)
        wrong = refit_scores(problem, kept, draws=4000, seed=0)
        assert wrong["elpd"] - scores["elpd"] > 0.5  # the study's own pull, seen in the fit


@pytest.mark.parametrize(
    ("left_out", "match"),
    [(["nosuch"], "left_out.*nosuch"), (["s0", "s1"], "one study per refit"), ([], "one study")],
)
def test_a_refit_leaves_out_one_study_of_the_problem(left_out: list[str], match: str) -> None:
    from microneedling.studies.credibility.loso_refit import refit_scores

    problem = toy_problem(MeanOnly, Y, SE)
    refit = _posterior_without(np.ones(5, dtype=bool), left_out, 10, seed=1)
    with pytest.raises(InputError, match=match):
        refit_scores(problem, refit, draws=10, seed=0)


def test_a_refit_of_other_factors_is_refused() -> None:
    from microneedling.studies.credibility.loso_refit import refit_scores

    problem = toy_problem(MeanOnly, Y, SE)
    refit = _posterior_without(np.arange(5) != 0, ["s0"], 10, seed=1)
    refit.summary["factors"] = [{"label": "p1", "prior": []}, {"label": "p0", "prior": []}]
    with pytest.raises(InputError, match="factors"):
        refit_scores(problem, refit, draws=10, seed=0)


def test_posterior_draws_are_mapped_by_label_and_a_missing_scale_drawn_from_its_prior() -> None:
    """A posterior whose factors come in another order lands each column on its own label; a
    discrepancy group it lacks gets tau from the half-normal prior of scale 0.3 (mean 0.3 sqrt(2/pi)
    = 0.239, SD 0.181: 4,000 draws put the mean within 0.015)."""
    from microneedling.studies.credibility.loso import posterior_x

    problem = toy_problem(MeanOnly, Y, SE)
    n = 4000
    cols = np.column_stack([np.full(n, 7.0), np.full(n, -3.0)])  # p1, then p0
    post = Posterior(
        version="posterior-test",
        summary={
            "factors": [{"label": "p1", "prior": []}, {"label": "p0", "prior": []}],
            "groups": [],
            "nuisances": [],
        },
        x=cols,
    )
    x = posterior_x(problem, post, np.arange(n), seed=0)
    assert np.all(x[:, 0] == -3.0) and np.all(x[:, 1] == 7.0)
    tau = np.exp(x[:, 2])
    assert np.all(tau > 0)
    assert float(np.mean(tau)) == pytest.approx(0.3 * math.sqrt(2 / math.pi), abs=0.015)
    assert float(np.std(tau)) == pytest.approx(0.3 * math.sqrt(1 - 2 / math.pi), abs=0.015)


def test_distinct_draws_are_distinct_sorted_and_every_sample_when_there_are_few() -> None:
    from microneedling.studies.credibility.loso import distinct_draws

    idx = distinct_draws(1000, 256, seed=3)
    assert idx.size == 256 and np.unique(idx).size == 256 and np.all(np.diff(idx) > 0)
    assert np.array_equal(distinct_draws(100, 256, seed=3), np.arange(100))
    assert np.array_equal(idx, distinct_draws(1000, 256, seed=3))  # seeded


def test_the_calibration_check_scores_the_likelihood_the_posterior_was_fitted_with() -> None:
    """``fitted_problem`` rebuilds the shipped posterior's problem exactly: its fingerprint (rows
    with their SEs as fitted, stand-ins' spread included, protocols, priors, factors, settings) is
    the one the posterior recorded. It failed when the stand-ins' spread was left out (50 of 70
    rows with another SE). A change of the calibration's inputs without a new calibration fails
    it too: recalibrate."""
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.parameters.sampling import shipped_posterior
    from microneedling.studies.credibility.calibrate import load_config
    from microneedling.studies.credibility.loso import fitted_problem

    post = shipped_posterior(load_parameters())
    assert post is not None
    assert fitted_problem(post, load_config()).fingerprint() == post.summary["fingerprint"]


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
    """Every way to ship a posterior refuses a refit before writing: ``ship_run``, ``ship`` and
    ``write_values``; a ``current.toml`` that is a refit is refused when read."""
    from microneedling.parameters import sampling
    from microneedling.studies.credibility import pipeline, posterior

    run = tmp_path / "run"
    summary = {"factors": [], "groups": [], "nuisances": [], "left_out": ["hkjdv2018"]}
    paths = posterior.write_posterior(summary, np.zeros((3, 1)), run)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(posterior, "calibration_dir", lambda: shipped)
    monkeypatch.setattr(sampling, "calibration_dir", lambda: shipped)
    with pytest.raises(InputError, match="left out hkjdv2018"):
        pipeline.ship_run(run)
    with pytest.raises(InputError, match="left out hkjdv2018"):
        posterior.ship(paths)
    with pytest.raises(InputError, match="left out hkjdv2018"):
        pipeline.write_values(paths["summary"], directory=tmp_path / "parameters")
    assert not any(shipped.iterdir())
    (shipped / "current.toml").write_text(paths["summary"].read_text())
    sampling.shipped_calibration.cache_clear()
    try:
        with pytest.raises(ParameterError, match="cross-validation refit"):
            sampling.shipped_calibration()
    finally:
        sampling.shipped_calibration.cache_clear()


@pytest.mark.parametrize(
    ("study", "screening", "match"),
    [
        ("nosuch", "shipped", r"--leave-out.*nosuch.*a study with rows in the likelihood: \['"),
        ("ablon2018", "shipped", "ablon2018"),  # its rows set parameters or are not evaluable
        ("hkjdv2018", "run", "--screening.*'shipped' with --leave-out"),
    ],
)
def test_a_refit_is_refused_before_any_work(
    tmp_path: Path, study: str, screening: str, match: str
) -> None:
    from microneedling.studies.credibility.pipeline import run_pipeline

    out = tmp_path / "run"
    with pytest.raises(InputError, match=match):
        run_pipeline(out, screening=screening, leave_out=study, log=lambda m: None)
    assert not out.exists()


def test_a_refit_loses_the_left_out_studys_rows_and_settings() -> None:
    """The refit's problem (as ``run_pipeline`` builds it) has every row but the study's, none of
    its sampled settings, and another fingerprint (its run directory never resumes a full run)."""
    from microneedling.studies.credibility.calibrate import build_problem, load_config
    from microneedling.studies.credibility.screening import load_screening

    screen = load_screening()
    nus = screen["nuisances"]

    def problem(left: list[str]):  # type: ignore[no-untyped-def]
        return build_problem(
            list(screen["selected"]),
            config=load_config(),
            exclude_studies=left,
            nuisance_labels=[n for n in nus["sampled"] if n.split(":", 1)[0] not in left],
            stand_in_sd=dict(nus["stand_in_sd"]),
        )

    full, refit = problem([]), problem(["hkjdv2018"])
    assert "hkjdv2018" in full.likelihood.studies
    assert "hkjdv2018" not in refit.likelihood.studies
    assert {s.key for s in full.likelihood.specs} - {s.key for s in refit.likelihood.specs} == {
        s.key for s in full.likelihood.specs if s.study == "hkjdv2018"
    }
    assert [n.label for n in refit.nuisances] == [
        n.label for n in full.nuisances if n.study != "hkjdv2018"
    ]
    assert refit.fingerprint() != full.fingerprint()


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


def test_the_comparison_command_refuses_a_directory_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m ...loso_refit DIR`` on a directory that holds no refit says so in one line on
    stderr and exits with status 1 (it showed a traceback)."""
    from microneedling.studies.credibility.loso_refit import main

    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path)])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("not compared:") and "posterior-" in err and "\n" not in err
    # a refit's summary without its samples file: one line too (it showed a traceback)
    from microneedling.studies.credibility.posterior import write_posterior

    summary = {"factors": [], "groups": [], "nuisances": [], "left_out": ["s0"]}
    write_posterior(summary, np.zeros((3, 1)), tmp_path)
    for samples in tmp_path.glob("*.npz"):
        samples.unlink()
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path)])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("not compared:") and "\n" not in err


# ------------------------------------------------------------------ refits shipped for validate
def _shipped_refits() -> list:  # type: ignore[type-arg]
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.parameters.sampling import load_posterior, shipped_posterior
    from microneedling.studies.credibility.loso_refit import refits_dir

    post = shipped_posterior(load_parameters())
    assert post is not None
    return [load_posterior(p) for p in sorted(refits_dir(post).glob("posterior-*.toml"))]


def test_every_shipped_refit_stands_for_the_shipped_calibration_without_its_study() -> None:
    """The refits shipped beside the posterior (``data/calibration/refits/<version>``) each leave
    out one study, converged, reproduce their summary from their samples, and were fitted on
    today's inputs (the problem rebuilt without the study has the fingerprint they recorded). A
    new calibration, or a change of the calibration's inputs, fails this: refit again or remove
    them."""
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.parameters.sampling import (
        posterior_statistics,
        samples_hash,
        shipped_posterior,
    )
    from microneedling.studies.credibility.calibrate import load_config
    from microneedling.studies.credibility.loso import fitted_problem
    from microneedling.studies.credibility.loso_refit import shipped_refits

    post = shipped_posterior(load_parameters())
    assert post is not None
    refits = _shipped_refits()
    assert len(refits) >= 2
    config = load_config()
    usable, refused = shipped_refits(post, config, fitted_problem(post, config).likelihood.studies)
    assert refused == []
    assert [r.version for r in usable] == [r.version for r in refits]
    for r in refits:
        assert samples_hash({"x": r.x}) == r.summary["samples_sha256"]
        assert (
            posterior_statistics(r.x, r.factors, r.groups, r.nuisances) == r.summary["statistics"]
        )
        assert len(r.summary["left_out"]) == 1
    assert len({r.summary["left_out"][0] for r in refits}) == len(refits)  # one per study


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.update(left_out=["hkjdv2018", "lotfi2013"]), "not one study"),
        (lambda s: s.update(left_out=["nosuch"]), "nosuch is not a study"),
        (  # emcee on the model: no importance correction, R-hat decides
            lambda s: (s["diagnostics"].pop("importance"), s["diagnostics"].update(r_hat_max=1.02)),
            None,
        ),
        (
            lambda s: (s["diagnostics"].pop("importance"), s["diagnostics"].pop("r_hat_max")),
            "no convergence diagnostic",
        ),
        (
            lambda s: (s["diagnostics"].pop("importance"), s["diagnostics"].update(r_hat_max=1.2)),
            r"did not mix \(max R-hat 1.2",
        ),
        (lambda s: s["factors"].reverse(), "factors"),
        (lambda s: s.update(model_parameter_hash="0" * 16), "model_parameter_hash"),
        (lambda s: s["screening"].update(version="screening-other"), "screening"),
        (
            lambda s: s["diagnostics"]["importance"].update(k_hat=1.4),
            r"did not converge \(k_hat 1.40",
        ),
        (lambda s: s.update(fingerprint="0" * 16), "inputs changed since the refit"),
    ],
)
def test_a_refit_that_does_not_stand_for_the_calibration_without_its_study_says_why(
    change,
    match: str | None,  # type: ignore[no-untyped-def]
) -> None:
    import copy

    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.parameters.sampling import shipped_posterior
    from microneedling.studies.credibility.calibrate import load_config
    from microneedling.studies.credibility.loso import fitted_problem
    from microneedling.studies.credibility.loso_refit import refit_issue

    post = shipped_posterior(load_parameters())
    assert post is not None
    refit = _shipped_refits()[0]
    config = load_config()
    studies = fitted_problem(post, config).likelihood.studies
    assert refit_issue(post, refit, config, studies) is None
    summary = copy.deepcopy(refit.summary)
    change(summary)
    bad = Posterior(version=refit.version, summary=summary, x=refit.x)
    issue = refit_issue(post, bad, config, studies)
    if match is None:  # a refit by emcee on the model whose chains mixed (R-hat <= 1.05)
        assert issue is None
    else:
        assert issue is not None and re.search(match, issue), issue


def test_a_refit_whose_study_left_the_calibration_since_is_refused() -> None:
    """The study a refit left out must still be a study of the posterior's problem as rebuilt
    today (its rows moved to validation, say): the refit's own fingerprint cannot see that
    change, since its problem never had the study. Found in review: such a refit used to pass
    and then stopped ``validate``."""
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.parameters.sampling import shipped_posterior
    from microneedling.studies.credibility.calibrate import load_config
    from microneedling.studies.credibility.loso import fitted_problem
    from microneedling.studies.credibility.loso_refit import refit_issue

    post = shipped_posterior(load_parameters())
    assert post is not None
    config = load_config()
    refit = _shipped_refits()[0]
    study = refit.summary["left_out"][0]
    studies = fitted_problem(post, config).likelihood.studies
    assert refit_issue(post, refit, config, studies) is None
    today = [s for s in studies if s != study]  # the study's rows gone from the calibration
    issue = refit_issue(post, refit, config, today)
    assert issue is not None and f"{study} is not a study of the calibration problem" in issue


def test_unreadable_and_duplicate_refits_are_refused_never_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refit file that cannot be read, and two refits of one study (an interrupted shipping),
    are listed with the reason; neither is used."""
    import shutil

    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.parameters.sampling import shipped_posterior
    from microneedling.studies.credibility import loso_refit
    from microneedling.studies.credibility.calibrate import load_config
    from microneedling.studies.credibility.loso import fitted_problem
    from microneedling.studies.credibility.posterior import write_posterior

    post = shipped_posterior(load_parameters())
    assert post is not None
    config = load_config()
    studies = fitted_problem(post, config).likelihood.studies
    refits = _shipped_refits()
    target = tmp_path / "refits"
    shutil.copytree(loso_refit.refits_dir(post), target)
    monkeypatch.setattr(loso_refit, "refits_dir", lambda p: target)
    good = refits[0]
    (target / "posterior-000000000000.toml").write_text("not = [toml")
    usable, refused = loso_refit.shipped_refits(post, config, studies)
    assert [r.version for r in usable] == [r.version for r in refits]
    assert [r["file"] for r in refused] == ["posterior-000000000000.toml"]
    summary = {
        k: v for k, v in good.summary.items() if k not in ("version", "samples", "samples_sha256")
    }
    write_posterior(summary, good.x[::-1].copy(), target)  # a second refit of good's study
    usable, refused = loso_refit.shipped_refits(post, config, studies)
    assert [r.version for r in usable] == [r.version for r in refits[1:]]
    again = [r["reason"] for r in refused if "another shipped refit" in r["reason"]]
    assert len(again) == 2 and all(good.summary["left_out"][0] in r for r in again)


def test_shipping_a_refit_refuses_one_that_did_not_converge_and_replaces_an_older_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ship_refit`` copies a run directory's refit next to the shipped posterior; a refit whose
    importance correction did not converge is refused with nothing written; a second refit of the
    same study replaces the first."""
    import copy

    from microneedling.studies.credibility import loso_refit
    from microneedling.studies.credibility.posterior import write_posterior

    refit = _shipped_refits()[0]
    study = refit.summary["left_out"][0]
    target = tmp_path / "refits"
    monkeypatch.setattr(loso_refit, "refits_dir", lambda post: target / post.version)

    def run(name: str, k_hat: float, x: np.ndarray) -> Path:
        summary = copy.deepcopy(refit.summary)
        for key in ("version", "samples", "samples_sha256"):
            summary.pop(key)
        summary["diagnostics"]["importance"]["k_hat"] = k_hat
        write_posterior(summary, x, tmp_path / name)
        return tmp_path / name

    with pytest.raises(InputError, match="did not converge"):
        loso_refit.ship_refit(run("bad", 0.9, refit.x))
    assert not target.exists()
    first = loso_refit.ship_refit(run("first", 0.5, refit.x))
    assert first.exists() and (first.parent / f"{first.stem}.npz").exists()
    second = loso_refit.ship_refit(run("second", 0.5, refit.x[::-1].copy()))
    assert second != first and not first.exists()
    assert sorted(p.name for p in second.parent.iterdir()) == [f"{second.stem}.npz", second.name]
    assert loso_refit.load_posterior(second).summary["left_out"] == [study]


def test_a_refit_replaces_the_importance_sampling_estimate_of_its_study() -> None:
    """On the conjugate case: the study whose refit is given (s4, the surprising one) is scored by
    the refit (its exact predictive), the importance-sampling elpd and Pareto k are kept beside it,
    the other studies keep their estimate, the largest Pareto k is of the studies still estimated
    by importance sampling, and the totals are recomputed."""
    from microneedling.studies.credibility.loso import leave_one_study_out
    from microneedling.studies.credibility.loso_refit import with_refits

    problem = toy_problem(MeanOnly, Y, SE)
    full = _posterior_without(np.ones(5, dtype=bool), [], 4000, seed=2)
    loso = leave_one_study_out(problem, full.x, seed=0, bootstrap=200)
    loso["studies"][4]["pareto_k"] = 5.0  # as if its weights had been unreliable
    refit = _posterior_without(np.arange(5) != 4, ["s4"], 4000, seed=1)
    out = with_refits(loso, problem, [refit], draws=4000, seed=0, bootstrap=200)
    s4 = out["studies"][4]
    p_4 = 1.0 + np.sum(1.0 / SE[:4] ** 2)
    m_4 = np.sum(Y[:4] / SE[:4] ** 2) / p_4
    assert s4["estimate"] == "refit" and s4["posterior"] == "posterior-test"
    assert s4["elpd"] == pytest.approx(norm.logpdf(Y[4], m_4, math.sqrt(1 / p_4 + 1.0)), abs=0.1)
    assert s4["elpd_is"] == loso["studies"][4]["elpd"] and s4["pareto_k"] == 5.0
    assert [s["estimate"] for s in out["studies"][:4]] == ["importance sampling"] * 4
    assert out["studies"][:4] == [
        dict(s, estimate="importance sampling") for s in loso["studies"][:4]
    ]
    assert out["max_pareto_k"] == max(s["pareto_k"] for s in loso["studies"][:4]) < 0.7
    assert out["refitted"] == [{"study": "s4", "posterior": "posterior-test"}]
    assert out["elpd"] == pytest.approx(sum(s["elpd"] for s in out["studies"]))
    assert out["coverage_80"]["n"] == 5 and out["coverage_80"]["hits"] == 4
    assert "scored instead by an exact refit" in out["method"]

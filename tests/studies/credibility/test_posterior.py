"""Posterior sampling on a cheap synthetic model: emcee recovers the exact linear-Gaussian
posterior, a resumed run is the same chain, and the posterior files round-trip with their content
hash (and refuse tampered samples)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from microneedling import interrupts
from microneedling.errors import ParameterError
from microneedling.parameters.sampling import load_posterior, posterior_statistics, samples_hash
from microneedling.studies.credibility.calibrate import (
    CalibrationConfig,
    Problem,
    load_config,
)
from microneedling.studies.credibility.posterior import run_sampler, summarise, write_posterior
from tests.studies.credibility.toy import ToyProblem, toy_problem

A = np.array([[2.0, 0.5], [0.3, -1.5], [1.0, 1.0]])
C = np.array([1.0, -2.0, 0.5])
SE = np.array([0.8, 0.6, 1.2])
Z_TRUE = np.array([0.7, -0.4])
Y = A @ Z_TRUE + C + np.array([0.3, -0.2, 0.5])  # a fixed "noisy" observation


def _linear(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = z @ A.T + C[None, :]
    return out


class LinearProblem(ToyProblem):
    """f(z) = A z + C."""

    model = staticmethod(_linear)
    name = "linear"


def linear_problem() -> ToyProblem:
    return toy_problem(LinearProblem, Y, SE)


def small_config(**sampler: Any) -> CalibrationConfig:
    c = load_config()
    upd = {"walkers": 16, "steps": 800, "chunk_steps": 100, "keep": 2000, "burn_fraction": 0.25}
    upd.update(sampler)
    return c.model_copy(update={"sampler": c.sampler.model_copy(update=upd)})


def exact_posterior() -> tuple[np.ndarray, np.ndarray]:
    prec = np.eye(2) + A.T @ np.diag(1 / SE**2) @ A
    cov = np.linalg.inv(prec)
    mean = cov @ A.T @ np.diag(1 / SE**2) @ (Y - C)
    return mean, cov


def init_walkers(problem: Problem, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, problem.ndim))
    x[:, 2] = np.log(0.3 * np.abs(rng.standard_normal(n)) + 1e-3)
    return x


@pytest.fixture(scope="module")
def chain() -> Any:
    problem = linear_problem()
    return run_sampler(problem, init_walkers(problem, 16), small_config())


def test_emcee_recovers_the_exact_linear_gaussian_posterior(chain: Any) -> None:
    mean, cov = exact_posterior()
    x = chain.samples
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(x[:, :2].mean(axis=0), mean, atol=0.15 * sd.max())
    np.testing.assert_allclose(x[:, :2].std(axis=0), sd, rtol=0.15)
    r = np.corrcoef(x[:, 0], x[:, 1])[0, 1]
    assert r == pytest.approx(cov[0, 1] / (sd[0] * sd[1]), abs=0.1)
    # tau does not enter this likelihood: its posterior is its half-normal prior (mean s sqrt(2/pi))
    assert np.exp(x[:, 2]).mean() == pytest.approx(0.3 * np.sqrt(2 / np.pi), rel=0.2)


def test_summary_diagnostics_and_identifiability(chain: Any) -> None:
    problem = linear_problem()
    s = summarise(problem, chain, small_config())
    d = s["diagnostics"]
    assert d["steps"] == 800 and d["walkers"] == 16 and d["burn"] == 200
    assert 0.1 < d["acceptance_mean"] < 0.9
    assert d["r_hat_max"] < 1.1
    assert d["ess_bulk_min"] > 100
    _, cov = exact_posterior()
    for j, ident in enumerate(s["identifiability"]):
        assert ident["posterior_prior_sd"] == pytest.approx(np.sqrt(cov[j, j]), rel=0.2)
    assert [r["key"] for r in s["rows"]] == ["r0", "r1", "r2"]
    assert all(0.0 <= r["pit"] <= 1.0 for r in s["rows"])


def test_the_summary_records_the_stand_ins_spread_it_was_fitted_with(chain: Any) -> None:
    """The screening's stand-ins' spread (added to each row's SE) is part of the likelihood, so
    the posterior records it; a screening without one records none."""
    problem = linear_problem()
    screen = {"version": "screening-x", "selected": [], "nuisances": {"stand_in_sd": {"r0": 0.4}}}
    s = summarise(problem, chain, small_config(), screening=screen)
    assert s["screening"] == {"version": "screening-x", "selected": [], "stand_in_sd": {"r0": 0.4}}
    bare = summarise(problem, chain, small_config(), screening={"version": "screening-y"})
    assert bare["screening"] == {"version": "screening-y"}


def test_a_resumed_run_is_the_same_chain(tmp_path: Path) -> None:
    problem = linear_problem()
    cfg = small_config(steps=300, chunk_steps=50)
    init = init_walkers(problem, 16, seed=4)
    full = run_sampler(problem, init, cfg, tmp_path / "a")
    # an interrupted run: only the first three chunks were written
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for p in sorted((tmp_path / "b").glob("chunk-*.pkl"))[3:]:
        p.unlink()
    resumed = run_sampler(linear_problem(), init, cfg, tmp_path / "b")
    np.testing.assert_array_equal(resumed.chain, full.chain)
    np.testing.assert_array_equal(resumed.log_prob, full.log_prob)
    assert resumed.evaluations < full.evaluations  # the stored chunks were not recomputed


class Interrupted(KeyboardInterrupt):
    """Stands in for the CLI's Terminated (SIGTERM), a KeyboardInterrupt subclass."""


class InterruptedAfter(LinearProblem):
    """Raises :class:`Interrupted` in its ``calls``-th posterior evaluation, as a signal
    arriving during a model solve does."""

    calls = 0
    evaluations_at_interrupt = -1

    def predict(self, x: np.ndarray, *, strict: bool = False) -> np.ndarray:
        self.calls -= 1
        if self.calls == 0:
            self.evaluations_at_interrupt = self.n_evaluations
            raise Interrupted("SIGTERM")
        return super().predict(x, strict=strict)


def test_an_interrupt_in_the_likelihood_stops_cleanly_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = small_config(steps=300, chunk_steps=50)
    init = init_walkers(linear_problem(), 16, seed=4)
    counting = toy_problem(InterruptedAfter, Y, SE)  # calls only counts down: never interrupts
    full = run_sampler(counting, init, cfg, tmp_path / "a")
    per_chunk = (-counting.calls - 1) // 6  # 6 chunks of 50 steps after the starting walkers
    problem = toy_problem(InterruptedAfter, Y, SE)
    problem.calls = 1 + 2 * per_chunk + per_chunk // 2  # in the middle of the third chunk
    with pytest.raises(Interrupted):
        run_sampler(problem, init, cfg, tmp_path / "b")
    err = capsys.readouterr()
    assert "emcee" not in err.err + err.out and "Traceback" not in err.err + err.out
    # the rest of the interrupted chunk ran without evaluating the model
    assert problem.calls == 0 and problem.n_evaluations == problem.evaluations_at_interrupt > 0
    assert len(list((tmp_path / "b").glob("chunk-*.pkl"))) == 2  # the finished chunks only
    assert interrupts.pending() is None  # the kept interrupt was raised, not left behind
    interrupts._INTERRUPTED.clear()  # defer marked the process interrupted: not for later tests
    resumed = run_sampler(linear_problem(), init, cfg, tmp_path / "b")
    np.testing.assert_array_equal(resumed.chain, full.chain)
    np.testing.assert_array_equal(resumed.log_prob, full.log_prob)


def test_posterior_files_round_trip_and_refuse_tampering(chain: Any, tmp_path: Path) -> None:
    problem = linear_problem()
    s = summarise(problem, chain, small_config())
    paths = write_posterior(s, chain.samples, tmp_path)
    digest = samples_hash({"x": chain.samples})
    assert paths["samples"].name == f"posterior-{digest[:12]}.npz"
    post = load_posterior(paths["summary"])
    np.testing.assert_array_equal(post.x, chain.samples)
    stats = posterior_statistics(post.x, post.factors, post.groups, post.nuisances)
    assert stats == post.summary["statistics"]  # the shipped summary is what the samples give
    # change one sample: refused
    x = chain.samples.copy()
    x[0, 0] += 1e-9
    np.savez(paths["samples"], x=x)
    with pytest.raises(ParameterError, match="content hash"):
        load_posterior(paths["summary"])


def test_the_shipped_samples_reproduce_their_shipped_summary() -> None:
    """Not the chain: the shipped samples, their content hash, and the summary statistics the
    report shows, recomputed from them."""
    from microneedling.parameters.sampling import CURRENT, calibration_dir

    d = calibration_dir()
    current = (d / CURRENT).read_text(encoding="utf-8")
    post = load_posterior(d / CURRENT)  # refuses samples whose hash differs from the summary's
    assert post.version == f"posterior-{post.summary['samples_sha256'][:12]}"
    assert (d / f"{post.version}.toml").read_text(encoding="utf-8") == current
    assert samples_hash({"x": post.x}) == post.summary["samples_sha256"]
    stats = posterior_statistics(post.x, post.factors, post.groups, post.nuisances)
    assert stats == post.summary["statistics"]
    labels = [f["label"] for f in post.factors]
    assert labels == post.summary["screening"]["selected"]  # what the screening chose
    assert post.x.shape[1] == len(labels) + len(post.groups) + len(post.nuisances)

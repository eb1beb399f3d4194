"""Emulate-sample-correct on a cheap nonlinear model whose posterior is known by quadrature: the
importance-corrected samples match it, also when the emulator is deliberately wrong; the weights,
resampling and emulator pieces on their own; a stored run resumes without re-running the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from microneedling.errors import InputError
from microneedling.studies.credibility.calibrate import (
    CalibrationConfig,
    HistoryMatch,
    Problem,
    load_config,
    weighted_median,
)
from microneedling.studies.credibility.emulator import (
    Emulator,
    emulate_sample_correct,
    fit_emulator,
    importance_weights,
    systematic_resample,
)
from tests.studies.credibility.toy import ToyProblem, toy_problem

SE = np.array([0.25, 0.3, 0.2])
Y = np.array([1.9, -0.3, 0.75])


def model(z: np.ndarray) -> np.ndarray:
    """Three nonlinear rows of two parameters (W, 3)."""
    z0, z1 = z[:, 0], z[:, 1]
    return np.column_stack([np.exp(0.5 * z0) + 0.3 * z1, z0 - 0.5 * z1**2, np.tanh(z0 + z1)])


class CurvedProblem(ToyProblem):
    """f(z) = :func:`model`."""

    model = staticmethod(model)
    name = "curved"


def curved_problem() -> ToyProblem:
    return toy_problem(CurvedProblem, Y, SE)


def exact_moments() -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and SD of z by quadrature on a fine grid (prior N(0, I))."""
    g = np.linspace(-5, 5, 801)
    z0, z1 = np.meshgrid(g, g, indexing="ij")
    z = np.column_stack([z0.ravel(), z1.ravel()])
    logp = -0.5 * np.sum(z**2, axis=1) - 0.5 * np.sum(((model(z) - Y) / SE) ** 2, axis=1)
    w = np.exp(logp - logp.max())
    w /= w.sum()
    mean = w @ z
    sd = np.sqrt(w @ (z - mean) ** 2)
    return mean, sd


def history(problem: Problem, n: int = 600, seed: int = 0) -> HistoryMatch:
    """Prior draws run on the model, as a history-matching wave would give."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, problem.ndim))
    x[:, 2] = np.log(0.2)
    lp, pred, _ = problem.evaluate(x)
    imp = problem.likelihood.implausibility(pred, np.full((n, 1), 0.2))
    return HistoryMatch(
        x=x,
        wave=np.ones(n, dtype=int),
        implausibility=imp,
        log_posterior=lp,
        predictions=pred,
        cutoff=3.0,
        rank=1,
        keys=problem.likelihood.keys,
    )


def small_config(**emulator: Any) -> CalibrationConfig:
    c = load_config()
    sampler = {"walkers": 16, "steps": 600, "chunk_steps": 100, "keep": 1500, "burn_fraction": 0.3}
    emu = {"rounds": 2, "steps": 600, "draws": 1500, "hidden": (32, 32), "members": 1,
           "holdout": 0.15}  # fmt: skip
    emu.update(emulator)
    return c.model_copy(
        update={
            "sampler": c.sampler.model_copy(update=sampler),
            "emulator": c.emulator.model_copy(update=emu),
        }
    )


@pytest.fixture(scope="module")
def corrected() -> tuple[np.ndarray, np.ndarray, dict[str, Any], CurvedProblem]:
    problem = curved_problem()
    hm = history(problem)
    x, blobs, diag = emulate_sample_correct(problem, hm, small_config())
    return x, blobs, diag, problem


def test_the_corrected_samples_match_the_posterior_by_quadrature(corrected: Any) -> None:
    x, _, diag, _ = corrected
    mean, sd = exact_moments()
    got_mean, got_sd = x[:, :2].mean(axis=0), x[:, :2].std(axis=0)
    # Monte Carlo error of a mean with ESS n: sd / sqrt(n); 4 of those, plus 10% of the SD
    ess = diag["importance"]["ess"]
    assert ess > 200
    np.testing.assert_allclose(got_mean, mean, atol=4 * sd.max() / np.sqrt(ess))
    np.testing.assert_allclose(got_sd, sd, rtol=0.12)
    assert diag["importance"]["k_hat"] < 0.7
    # the samples' blobs are the model's own predictions at the samples
    assert len(diag["importance"]["rounds"]) == 2


def test_the_blobs_are_the_models_predictions_at_the_samples(corrected: Any) -> None:
    x, blobs, _, problem = corrected
    np.testing.assert_allclose(blobs[:, :3], model(x[:, :2]), rtol=1e-12)
    _, _, by = problem.evaluate(x)
    np.testing.assert_allclose(blobs[:, 3:], by, rtol=1e-12)


def test_a_biased_emulator_is_corrected_by_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """An emulator off by a constant (0.6 noise SDs on every row) moves the emulated posterior;
    the importance weights computed with the model bring the samples back."""
    original = Emulator.predict

    def biased(self: Emulator, x: np.ndarray) -> np.ndarray:
        return original(self, x) + 0.6 * SE[None, :]

    monkeypatch.setattr(Emulator, "predict", biased)
    problem = curved_problem()
    (
        x,
        _,
        diag,
    ) = emulate_sample_correct(problem, history(problem, seed=3), small_config(rounds=1))
    mean, sd = exact_moments()
    ess = diag["importance"]["ess"]
    np.testing.assert_allclose(x[:, :2].mean(axis=0), mean, atol=4 * sd.max() / np.sqrt(ess))
    # and the emulated chain alone is measurably off: the correction did something
    draws = diag["importance"]["rounds"][0]
    assert draws["ess_fraction"] < 0.9


@pytest.mark.parametrize(
    ("rounds", "max_rounds", "k_hats", "ran"),
    [
        (1, None, [1.2], 1),  # no max_rounds: the rounds asked for, whatever k_hat is
        (1, 3, [1.2, 0.5], 2),  # one more round, until the weights are reliable
        (1, 3, [1.2, 0.9, 0.8], 3),  # at most max_rounds
        (2, 4, [0.4, 0.5], 2),  # reliable after the rounds asked for: stop there
    ],
)
def test_rounds_continue_while_the_importance_weights_are_unreliable(
    monkeypatch: pytest.MonkeyPatch,
    rounds: int,
    max_rounds: int | None,
    k_hats: list[float],
    ran: int,
) -> None:
    """``max_rounds`` adds rounds while the last round's k_hat is above 0.7 (the weights' own
    k_hat replaced by a script, so each case is exact)."""
    from microneedling.studies.credibility import emulator

    original = emulator.importance_weights
    script = iter(k_hats)

    def scripted(log_target: np.ndarray, log_proposal: np.ndarray) -> dict[str, Any]:
        return {**original(log_target, log_proposal), "k_hat": next(script)}

    monkeypatch.setattr(emulator, "importance_weights", scripted)
    problem = curved_problem()
    cfg = small_config(rounds=rounds, max_rounds=max_rounds, draws=300)
    _, _, diag = emulate_sample_correct(problem, history(problem), cfg)
    got = [r["k_hat"] for r in diag["importance"]["rounds"]]
    assert got == k_hats[:ran]
    assert diag["importance"]["k_hat"] == k_hats[ran - 1]


def test_a_stored_run_resumes_without_running_the_model_again(tmp_path: Path) -> None:
    problem = curved_problem()
    hm = history(problem)
    cfg = small_config(rounds=1, draws=300)
    x1, b1, _ = emulate_sample_correct(problem, hm, cfg, tmp_path)
    again = curved_problem()
    x2, b2, _ = emulate_sample_correct(again, hm, cfg, tmp_path)
    assert again.n_evaluations == 0
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(b1, b2)


def test_importance_weights_turn_a_wide_normal_into_the_standard_normal() -> None:
    rng = np.random.default_rng(1)
    x = 1.5 * rng.standard_normal(20000) + 0.3
    log_q = -0.5 * ((x - 0.3) / 1.5) ** 2
    log_p = -0.5 * x**2
    iw = importance_weights(log_p, log_q)
    w = iw["weights"]
    assert abs(np.sum(w) - 1.0) < 1e-12
    assert abs(np.sum(w * x)) < 0.03
    assert abs(np.sum(w * x**2) - 1.0) < 0.05
    assert iw["k_hat"] < 0.5
    # ESS ~ N / E_q[(p/q)^2]; for these normals E_q[(p/q)^2] = 1.5 / sqrt(2 pi) x
    # sqrt(pi / a) exp(b^2 / 4a + c) with a = 1 - 1/4.5, b = 0.6/4.5, c = 0.09/4.5: 1.234
    assert 0.77 * len(x) < iw["ess"] < 0.85 * len(x)


def test_a_draw_the_model_cannot_run_gets_weight_zero() -> None:
    lp = np.array([0.0, -np.inf, np.nan, -1.0, -0.5, -2.0, -0.1])
    iw = importance_weights(lp, np.zeros(7))
    assert iw["weights"][1] == 0 and iw["weights"][2] == 0
    assert iw["usable"] == 5


def test_systematic_resampling_copies_each_draw_floor_or_ceil_of_n_w_times() -> None:
    w = np.array([0.05, 0.5, 0.0, 0.3, 0.15])
    n = 1000
    idx = systematic_resample(w, n, seed=4)
    counts = np.bincount(idx, minlength=len(w))
    assert np.all(np.abs(counts - n * w) <= 1.0)
    assert counts[2] == 0
    with pytest.raises(ValueError):
        systematic_resample(np.zeros(3), 5, seed=0)


def test_the_emulator_learns_a_smooth_map_and_keeps_probabilities_inside_0_1() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1500, 4))
    p = 1.0 / (1.0 + np.exp(-(x[:, 0] - 0.5 * x[:, 3])))
    y = np.column_stack([np.sin(x[:, 0]) + x[:, 3] ** 2, p, np.full(len(x), 7.0)])
    emu = fit_emulator(
        x, y, np.array([0, 3]), np.array([False, True, False]), np.array([0.1, 0.05, 1.0]),
        hidden=(32, 32), members=1, seed=0,
    )  # fmt: skip
    assert emu.holdout["r2"][0] > 0.98 and emu.holdout["r2"][1] > 0.98
    got = emu.predict(rng.standard_normal((200, 4)) * 3.0)
    assert np.all((got[:, 1] > 0) & (got[:, 1] < 1))
    np.testing.assert_array_equal(got[:, 2], 7.0)  # a constant row stays that constant


def test_every_round_after_the_first_takes_the_graded_spread_at_the_last_posterior() -> None:
    """With ``respread``, round 2 asks for the graded counts' spread at round 1's
    importance-weighted median (near the posterior's centre, not the prior's), and records it."""
    problem = curved_problem()
    asked: list[np.ndarray] = []

    def respread(z: np.ndarray) -> dict[str, tuple[float, float]]:
        asked.append(np.array(z))
        return {"graded": (2.5, -1.0)}

    _, _, diag = emulate_sample_correct(
        problem, history(problem), small_config(rounds=2, draws=600), respread=respread
    )
    assert len(asked) == 1 and asked[0].shape == (problem.P,)
    mean, sd = exact_moments()
    assert np.all(np.abs(asked[0] - mean) < 1.5 * sd)  # the posterior's median, not 0
    assert np.linalg.norm(mean) > 1.0  # which is far from the prior's
    rounds = diag["importance"]["rounds"]
    assert "patient_spread" not in rounds[0]
    assert rounds[1]["patient_spread"] == {"graded": [2.5, -1.0]}


def test_weighted_median_is_the_median_under_the_weights() -> None:
    x = np.array([[3.0, -1.0], [1.0, 5.0], [2.0, 0.0], [10.0, 2.0]])
    np.testing.assert_array_equal(weighted_median(x, np.ones(4)), [2.0, 0.0])  # lower median
    np.testing.assert_array_equal(weighted_median(x, [0, 0, 0, 1.0]), [10.0, 2.0])
    np.testing.assert_array_equal(weighted_median(x, [0.1, 0.1, 0.1, 0.7]), [10.0, 2.0])
    with pytest.raises(InputError):
        weighted_median(x, np.zeros(4))


def test_max_rounds_is_not_part_of_a_rounds_fingerprint() -> None:
    """A stored round resumes under another ``max_rounds`` (it decides only whether more rounds
    follow); ``rounds`` itself still changes the fingerprint."""
    c = load_config()

    def fp(**emulator: Any) -> str:
        cfg = c.model_copy(update={"emulator": c.emulator.model_copy(update=emulator)})
        return cfg.fingerprint("history_matching", "emulator", "sampler")

    assert fp(max_rounds=None) == fp(max_rounds=5) == fp(max_rounds=9)
    assert fp(rounds=2) != fp(rounds=3)

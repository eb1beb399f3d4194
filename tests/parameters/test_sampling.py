"""The ensemble draws calibrated parameters as whole rows of the posterior samples (jointly, ties
and correlations kept) and every other uncertain parameter from its prior; draws are reproducible
and prefix-stable; an edited set falls back to the priors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from microneedling.parameters import sampling
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import (
    Z95,
    draw_indices,
    sample_parameter_sets,
    shipped_posterior,
    split_normal_value,
)
from microneedling.studies.credibility.posterior import write_posterior


def _factor(label: str, members: list[str], v: float, lo: float, hi: float) -> dict:
    return {
        "label": label,
        "members": members,
        "prior": [{"member": m, "value": v, "low": lo, "high": hi} for m in members],
        "prior_source": "test",
    }


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sampling.Posterior]:
    """A synthetic posterior shipped in a temporary calibration folder: healing.k_1 = k_3 (tied)
    and healing.k_H, strongly correlated; one discrepancy group."""
    ps = load_parameters()
    k1 = ps.parameters["healing.k_1"].value
    kh = ps.parameters["healing.k_H"].value
    factors = [
        _factor("healing.k_1", ["healing.k_1", "healing.k_3"], k1, k1 / 3, k1 * 3),
        _factor("healing.k_H", ["healing.k_H"], kh, kh / 3, kh * 3),
    ]
    rng = np.random.default_rng(5)
    z = rng.multivariate_normal([0.5, -0.3], [[0.04, -0.035], [-0.035, 0.04]], size=400)
    x = np.column_stack([z, np.log(0.2 + 0.05 * rng.random(400))])
    summary = {
        "method": "test",
        "parameter_set_hash": ps.hash,  # fitted to the files as they are
        "factors": factors,
        "groups": [{"name": "collagen_elastin", "prior_scale": 0.3}],
        "nuisances": [],
        "statistics": sampling.posterior_statistics(x, factors, ["collagen_elastin"], []),
    }
    paths = write_posterior(summary, x, tmp_path)
    (tmp_path / sampling.CURRENT).write_text(paths["summary"].read_text(), encoding="utf-8")
    monkeypatch.setattr(sampling, "calibration_dir", lambda: tmp_path)
    sampling.shipped_calibration.cache_clear()
    yield sampling.shipped_calibration()  # type: ignore[misc]
    sampling.shipped_calibration.cache_clear()


def test_split_normal_hits_its_percentiles() -> None:
    assert split_normal_value(2.0, 1.0, 8.0, 0.0) == 2.0
    assert split_normal_value(2.0, 1.0, 8.0, -Z95) == pytest.approx(1.0)
    assert split_normal_value(2.0, 1.0, 8.0, Z95) == pytest.approx(8.0)
    assert split_normal_value(0.0, -1.0, 3.0, Z95) == pytest.approx(3.0)  # linear when not positive


def test_draws_are_whole_posterior_rows(shipped: sampling.Posterior) -> None:
    ps = load_parameters()
    post = shipped_posterior(ps)
    assert post is not None and post.version == shipped.version
    draws = sample_parameter_sets(ps, 300, seed=2)
    idx = draw_indices(post.n_samples, 300, 2)
    for d in (0, 17, 299):
        want = post.values(int(idx[d]))
        for name, v in want.items():
            assert draws[d].parameters[name].value == pytest.approx(v, rel=1e-12), name
    k1 = np.array([d.parameters["healing.k_1"].value for d in draws])
    k3 = np.array([d.parameters["healing.k_3"].value for d in draws])
    kh = np.array([d.parameters["healing.k_H"].value for d in draws])
    assert np.array_equal(k1, k3)  # a tie moves together
    # the posterior correlation of the scores (-0.875) survives in the values (log space)
    assert np.corrcoef(np.log(k1), np.log(kh))[0, 1] == pytest.approx(-0.875, abs=0.08)
    # and the uncalibrated parameters still vary from their priors
    other = np.array([d.parameters["healing.mu_I"].value for d in draws])
    assert other.std() > 0


def test_draws_are_reproducible_and_prefix_stable(shipped: sampling.Posterior) -> None:
    ps = load_parameters()
    a = sample_parameter_sets(ps, 10, seed=7)
    b = sample_parameter_sets(ps, 25, seed=7)
    for x, y in zip(a, b[:10], strict=True):
        assert x.hash == y.hash
    assert sample_parameter_sets(ps, 10, seed=8)[0].hash != a[0].hash


def test_an_edited_set_and_posterior_false_use_the_priors(shipped: sampling.Posterior) -> None:
    ps = load_parameters()
    edited = ps.with_values({"healing.k_1": ps.parameters["healing.k_1"].value * 1.7})
    assert shipped_posterior(edited) is None
    k1 = np.array([d.parameters["healing.k_1"].value for d in sample_parameter_sets(edited, 50, 1)])
    k3 = np.array([d.parameters["healing.k_3"].value for d in sample_parameter_sets(edited, 50, 1)])
    assert not np.array_equal(k1, k3)  # independent prior draws
    prior = sample_parameter_sets(ps, 50, 1, posterior=False)
    post = sample_parameter_sets(ps, 50, 1)
    assert [p.parameters["healing.k_1"].value for p in prior] != [
        p.parameters["healing.k_1"].value for p in post
    ]


def test_a_posterior_of_other_parameter_files_does_not_apply(
    shipped: sampling.Posterior, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A posterior fitted to other parameter files (another model version or other priors) is not
    a posterior of this set, even where the calibrated members' values agree; the values
    `calibrate --write-values` wrote (the posterior's nominal) are accepted."""
    ps = load_parameters()
    assert shipped_posterior(ps) is not None
    monkeypatch.setitem(shipped.summary, "parameter_set_hash", "0123456789abcdef")
    assert shipped_posterior(ps) is None
    k1 = [d.parameters["healing.k_1"].value for d in sample_parameter_sets(ps, 20, 1)]
    k3 = [d.parameters["healing.k_3"].value for d in sample_parameter_sets(ps, 20, 1)]
    assert k1 != k3  # prior draws, not the tied posterior rows
    assert sampling.posterior_nominal(ps) is ps  # and the nominal is the files' own
    assert shipped_posterior(ps.with_values(shipped.nominal())) is not None


def test_a_posterior_recording_the_set_at_its_prior_modes_applies(
    shipped: sampling.Posterior, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`calibrate` records the hash of its base: the files with each calibrated member at its
    prior mode. A posterior whose recorded hash is that of today's files at those modes was fitted
    to today's files (even where a file value is not the prior mode); one whose priors give another
    set was not."""
    ps = load_parameters()
    k1 = ps.parameters["healing.k_1"].value
    k3 = ps.parameters["healing.k_3"].value
    factors = list(shipped.factors)
    factors[0] = _factor("healing.k_1", ["healing.k_1", "healing.k_3"], k1 * 1.5, k1 / 3, k1 * 3)
    for p, v in zip(factors[0]["prior"], (k1, k3), strict=True):
        p["file_value"] = v  # what the files held when it ran (calibrate records it)
    monkeypatch.setitem(shipped.summary, "factors", factors)
    at_prior = ps.with_values({"healing.k_1": k1 * 1.5, "healing.k_3": k1 * 1.5}).hash
    assert at_prior != ps.hash
    monkeypatch.setitem(shipped.summary, "parameter_set_hash", at_prior)
    assert shipped_posterior(ps) is not None
    other = ps.with_values({"healing.mu_I": ps.parameters["healing.mu_I"].value * 1.1})
    assert shipped_posterior(other) is None  # another set: its at-prior hash differs


def test_the_nominal_is_the_posterior_median_when_it_applies(shipped: sampling.Posterior) -> None:
    ps = load_parameters()
    centre = sampling.posterior_nominal(ps)
    for name, v in shipped.nominal().items():
        assert centre.parameters[name].value == pytest.approx(v, rel=1e-12)
    assert centre.parameters["healing.mu_I"].value == ps.parameters["healing.mu_I"].value


def test_the_nominal_medians_are_computed_once_and_each_call_gets_its_own_dict(
    shipped: sampling.Posterior,
) -> None:
    first = shipped.nominal()
    first["healing.k_1"] = -1.0  # a caller's edit does not reach the next caller
    again = shipped.nominal()
    assert again["healing.k_1"] != -1.0
    for j, f in enumerate(shipped.factors):
        zm = float(np.median(shipped.x[:, j]))
        for p in f["prior"]:
            assert again[p["member"]] == sampling._value_at(p, zm)  # bit-identical


def test_the_posterior_applies_at_its_nominal_values(shipped: sampling.Posterior) -> None:
    ps = load_parameters()
    nominal = ps.with_values(shipped.nominal())
    assert shipped_posterior(nominal) is not None
    # the nominal is the value at the median score
    zm = float(np.median(shipped.x[:, 0]))
    p = shipped.factors[0]["prior"][0]
    assert shipped.nominal()["healing.k_1"] == pytest.approx(
        split_normal_value(p["value"], p["low"], p["high"], zm)
    )
    assert math.isfinite(shipped.tau()[:, 0].mean())
    assert shipped.tau_of("no such family") is None

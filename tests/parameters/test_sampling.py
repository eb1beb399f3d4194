"""The ensemble draws calibrated parameters as whole rows of the posterior samples (jointly, ties
and correlations kept) and every other uncertain parameter from its prior; draws are reproducible
and prefix-stable; an edited set falls back to the priors."""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from microneedling.errors import InputError, ParameterError
from microneedling.parameters import sampling
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
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


# ------------------------------------------------------------------ draws without re-validation
def sample_one_by_one(
    ps: ParameterSet, draws: int, seed: int, *, posterior: bool = True
) -> list[ParameterSet]:
    """The ensemble as :func:`sample_parameter_sets` made it before its sets were validated as a
    whole (kept as the reference): each draw's values computed value by value, clipped one by
    one and built by the checking ``with_values``."""
    names = [n for n in ps.names() if ps.parameters[n].low is not None]
    z = np.empty((draws, len(names)))
    for j, n in enumerate(names):
        ss = np.random.SeedSequence([int(seed) % 2**63, zlib.crc32(n.encode())])
        z[:, j] = np.random.default_rng(ss).standard_normal(draws)
    post = shipped_posterior(ps) if draws > 0 and posterior else None
    idx = draw_indices(post.n_samples, draws, seed) if post is not None else None
    calibrated = set(post.members) if post is not None else set()
    out = []
    for d in range(draws):
        values: dict[str, Any] = {}
        for j, n in enumerate(names):
            if n in calibrated:
                continue
            p = ps.parameters[n]
            if isinstance(p.value, dict):
                values[n] = {
                    k: split_normal_value(v, p.low[k], p.high[k], z[d, j])  # type: ignore[index]
                    for k, v in p.value.items()
                }
            else:
                values[n] = split_normal_value(p.value, p.low, p.high, z[d, j])  # type: ignore[arg-type]
        if post is not None and idx is not None:
            values.update({k: v for k, v in post.values(int(idx[d])).items() if k in ps.parameters})
        for n, v in values.items():
            dom = ps.parameters[n].domain
            values[n] = (
                {k: dom.clip(x) for k, x in v.items()} if isinstance(v, dict) else dom.clip(v)
            )
        out.append(ps.with_values(values, label=f"{ps.label}#draw{d}"))
    return out


def _bits(v: Any) -> Any:
    """A value's float bits, keyed entries in their order (``==`` would equate 0.0 and -0.0)."""
    if isinstance(v, dict):
        return [(k, _bits(x)) for k, x in v.items()]
    return (type(v), struct.pack("<d", v))


def assert_same_sets(got: list[ParameterSet], want: list[ParameterSet]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g.label, g.hash, list(g.parameters)) == (w.label, w.hash, list(w.parameters))
        assert g == w  # every Parameter: value, kind, interval, domain, sources
        for n, p in g.parameters.items():
            assert _bits(p.value) == _bits(w.parameters[n].value), n
        assert g.is_draw and not w.is_draw


@pytest.mark.parametrize(("draws", "seed", "posterior"), [(400, 3, True), (40, 11, False)])
def test_draws_are_the_sets_with_values_built_one_by_one(
    draws: int, seed: int, posterior: bool
) -> None:
    """The shipped posterior (when it applies) and every prior: same values bit for bit, kinds,
    intervals, labels and hashes as the value-by-value reference; the 400 draws include values
    clipped at a physical bound."""
    ps = load_parameters()
    got = sample_parameter_sets(ps, draws, seed, posterior=posterior)
    assert_same_sets(got, sample_one_by_one(ps, draws, seed, posterior=posterior))
    if draws == 400:
        assert any(d.parameters["needles.capillary_loop_fraction"].value == 0.0 for d in got)


def test_draws_of_a_tied_posterior_are_the_sets_built_one_by_one(
    shipped: sampling.Posterior,
) -> None:
    ps = load_parameters()
    got = sample_parameter_sets(ps, 60, seed=4)
    assert_same_sets(got, sample_one_by_one(ps, 60, 4))
    assert sample_parameter_sets(ps, 0, seed=4) == []


def _error(call: Any) -> str:
    with pytest.raises((InputError, ParameterError)) as info:
        call()
    return f"{type(info.value).__name__}: {info.value}"


@pytest.mark.parametrize(
    ("name", "key", "bad"),
    [
        ("healing.mu_I", None, -1.0),
        ("healing.mu_I", None, math.nan),
        ("healing.mu_I", None, math.inf),
        ("needles.roller_contact_fraction", None, 1.5),
        ("needles.pen_needles", None, 2.5),
        ("skin.sc_thickness", "cheek", -1.0),
    ],
)
def test_ensemble_sets_refuse_what_with_values_refuses_with_its_words(
    name: str, key: str | None, bad: float
) -> None:
    """A value outside its domain in one draw of an ensemble: the error ``with_values`` gives for
    that draw, word for word (the public path keeps its checks)."""
    ps = load_parameters()
    p = ps.parameters[name]
    entries = [(name, k) for k in p.value] if isinstance(p.value, dict) else [(name, None)]
    good = [p.value[k] if k is not None else p.value for _, k in entries]  # type: ignore[index]
    x = np.array([good, good, good], dtype=float)
    x[1, [k for _, k in entries].index(key)] = bad
    values = dict(zip([k for _, k in entries], x[1].tolist(), strict=True))
    edit = {name: values if key is not None else values[None]}
    want = _error(lambda: ps.with_values(edit))
    assert want.startswith(f"InputError: {name}")
    assert _error(lambda: sampling.ensemble_sets(ps, entries, x, ["a", "b", "c"])) == want
    assert len(sampling.ensemble_sets(ps, entries, x[[0, 2]], ["a", "c"])) == 2


def test_ensemble_sets_refuse_unknown_names_shapes_and_keys_as_with_values_does() -> None:
    ps = load_parameters()
    one = np.ones((1, 1))
    assert _error(lambda: sampling.ensemble_sets(ps, [("healing.mu_l", None)], one, ["a"])) == (
        _error(lambda: ps.with_values({"healing.mu_l": 1.0}))
    )
    assert _error(
        lambda: sampling.ensemble_sets(ps, [("skin.sc_thickness", None)], one, ["a"])
    ) == _error(lambda: ps.with_values({"skin.sc_thickness": 1.0}))
    assert _error(
        lambda: sampling.ensemble_sets(ps, [("skin.sc_thickness", "cheek")], one * 15, ["a"])
    ) == _error(lambda: ps.with_values({"skin.sc_thickness": {"cheek": 15.0}}))
    with pytest.raises(InputError, match="float64"):
        sampling.ensemble_sets(ps, [("healing.mu_I", None)], np.ones((1, 1), dtype=int), ["a"])
    with pytest.raises(InputError, match="one value"):
        sampling.ensemble_sets(ps, [("healing.mu_I", None)] * 2, np.ones((1, 2)), ["a"])


def test_a_posterior_applies_when_only_an_acceptance_limit_changed(
    shipped: sampling.Posterior, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A posterior recording the model hash (calibrate does since 2026-12-06) still applies
    after a limit that no equation reads changed (a course's longest needle per site), and not
    after a model parameter changed; one recording only the full hash needs every number equal."""
    ps = load_parameters()
    monkeypatch.setitem(shipped.summary, "model_parameter_hash", ps.model_hash)
    cap = dict(ps.parameters["safety.max_needle_length"].value)
    cap["cheek"] = 2.9
    wider = ps.with_values({"safety.max_needle_length": cap})
    assert wider.hash != ps.hash and wider.model_hash == ps.model_hash
    assert shipped_posterior(wider) is not None
    other = ps.with_values({"healing.mu_I": ps.parameters["healing.mu_I"].value * 1.1})
    assert other.model_hash != ps.model_hash
    assert shipped_posterior(other) is None
    monkeypatch.delitem(shipped.summary, "model_parameter_hash")
    assert shipped_posterior(ps) is not None
    assert shipped_posterior(wider) is None  # the older record: every number must match

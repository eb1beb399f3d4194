"""Trials carry parameter (epistemic) as well as patient (aleatory) spread: patient i runs under
posterior draw i mod K in every arm; the statistics separate the two (issue 11, item 4)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from microneedling.engine.batch import Reads, simulate_batch
from microneedling.engine.endpoints import endpoint_values, parse_endpoint
from microneedling.errors import InputError
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import posterior_nominal
from microneedling.studies.trial import run as run_module
from microneedling.studies.trial import spec as spec_module
from microneedling.studies.trial.population import sample_patients
from microneedling.studies.trial.run import (
    arm_grid,
    difference_components,
    draw_of,
    plan_chunks,
    responder_spread,
    run_trial,
    trial_parameter_draws,
    variance_components,
)
from microneedling.studies.trial.spec import (
    DEFAULT_PARAMETER_DRAWS,
    EndpointDef,
    TrialSpec,
    arm_course,
)
from tests.counting import count_calls
from tests.paths import REPO as ROOT

EXAMPLES = ROOT / "examples" / "trials"
PAIRED = EXAMPLES / "split-face-needle-length.toml"
PARALLEL = EXAMPLES / "acne-roller-vs-pen.toml"

#: the columns of summary.csv / comparisons.csv before parameter draws (K = 0 keeps exactly them)
SUMMARY_COLUMNS = [
    "endpoint", "units", "arm", "responder_rule", "n", "mean", "sd", "ci95_low", "ci95_high",
    "median", "p10", "p90", "responder_rate", "responder_ci95_low", "responder_ci95_high",
]  # fmt: skip
DRAW_COLUMNS = [
    "parameter_draws", "epistemic_median", "epistemic80_low", "epistemic80_high",
    "epistemic95_low", "epistemic95_high", "epistemic_sd", "aleatory_sd", "var_epistemic",
    "var_aleatory", "var_total", "epistemic_fraction",
]  # fmt: skip


def _spec(path: Path, n: int, k: int) -> TrialSpec:
    return dataclasses.replace(TrialSpec.from_toml(path), n_per_arm=n, parameter_draws=k)


# --------------------------------------------------------------------------- the estimator
def test_decomposition_of_a_balanced_table_exact() -> None:
    # three draws of four patients: means 2.5, 4.5, 6.5; within-draw variance 5/3 in each
    x = np.array([1, 2, 3, 4, 3, 4, 5, 6, 5, 6, 7, 8], dtype=float)
    draw = np.repeat([0, 1, 2], 4)
    c = variance_components(x, draw, 3)
    # MSB = 4 * (4 + 0 + 4) / 2 = 16, MSW = 15 / 9, n0 = 4: (16 - 5/3) / 4 = 43/12
    assert c["var_aleatory"] == pytest.approx(5 / 3, rel=1e-14)
    assert c["var_epistemic"] == pytest.approx(43 / 12, rel=1e-14)
    assert c["var_total"] == pytest.approx(43 / 12 + 5 / 3, rel=1e-14)
    assert c["epistemic_fraction"] == pytest.approx((43 / 12) / (43 / 12 + 5 / 3), rel=1e-14)
    assert c["aleatory_sd"] == pytest.approx(math.sqrt(5 / 3), rel=1e-14)
    assert c["epistemic_sd"] == pytest.approx(math.sqrt(43 / 12), rel=1e-14)
    # percentiles (linear) of the per-draw means 2.5, 4.5, 6.5
    assert c["epistemic_median"] == pytest.approx(4.5)
    assert (c["epistemic80_low"], c["epistemic80_high"]) == pytest.approx((2.9, 6.1))
    assert (c["epistemic95_low"], c["epistemic95_high"]) == pytest.approx((2.6, 6.4))
    assert c["parameter_draws"] == 3


def test_decomposition_of_an_unbalanced_table_and_nan_exact() -> None:
    # draw 0: 0, 2 (mean 1); draw 1: 4, 5, 6 (mean 5); a NaN (no value) is left out; draw 2 empty
    x = np.array([0.0, 4.0, 2.0, 5.0, np.nan, 6.0])
    draw = np.array([0, 1, 0, 1, 2, 1])
    c = variance_components(x, draw, 3)
    # grand mean 3.4; MSB = 2 * 2.4² + 3 * 1.6² = 19.2; MSW = 4 / 3; n0 = 5 - 13/5 = 2.4
    assert c["var_aleatory"] == pytest.approx(4 / 3, rel=1e-14)
    assert c["var_epistemic"] == pytest.approx(67 / 9, rel=1e-14)
    assert c["parameter_draws"] == 2
    # draws alike: the between-draw term is the patient noise alone and is clipped at 0
    same = variance_components(np.array([1.0, 3.0, 1.0, 3.0]), np.array([0, 0, 1, 1]), 2)
    assert same["var_epistemic"] == 0.0 and same["var_aleatory"] == pytest.approx(2.0)
    assert same["epistemic_fraction"] == 0.0
    # one patient per draw: no within-draw variance, nothing to decompose
    one = variance_components(np.array([1.0, 2.0]), np.array([0, 1]), 2)
    assert math.isnan(one["var_aleatory"]) and math.isnan(one["var_epistemic"])


def test_difference_components_exact() -> None:
    draw = np.array([0, 0, 1, 1])
    x, y = np.array([1.0, 3.0, 5.0, 7.0]), np.array([0.0, 0.0, 1.0, 1.0])
    par = difference_components(x, y, draw, 2, paired=False)
    # d = (2 - 0, 6 - 1) = (2, 5): s² = 4.5; noise mean(2/2 + 0, 2/2 + 0) = 1; MSW_x + MSW_y = 2
    assert par["var_epistemic"] == pytest.approx(3.5, rel=1e-14)
    assert par["var_aleatory"] == pytest.approx(2.0, rel=1e-14)
    assert (par["epistemic80_low"], par["epistemic80_high"]) == pytest.approx((2.3, 4.7))
    paired = difference_components(x, y, draw, 2, paired=True)
    # per-patient differences 1, 3 | 4, 6: the balanced ANOVA, (n s²(d) - MSW) / n
    assert paired == variance_components(x - y, draw, 2)
    assert paired["var_epistemic"] == pytest.approx(3.5) and paired["var_aleatory"] == 2.0


def test_decomposition_recovers_known_components() -> None:
    rng = np.random.default_rng(11)
    K, n, sb, sw = 400, 25, 2.0, 1.5
    draw = np.repeat(np.arange(K), n)
    x = 10.0 + rng.normal(0, sb, K)[draw] + rng.normal(0, sw, K * n)
    c = variance_components(x, draw, K)
    assert c["var_epistemic"] == pytest.approx(sb**2, rel=0.15)
    assert c["var_aleatory"] == pytest.approx(sw**2, rel=0.03)
    # the uncorrected variance of the draw means would carry sw² / n more
    means = x.reshape(K, n).mean(axis=1)
    assert np.var(means, ddof=1) - c["var_epistemic"] == pytest.approx(sw**2 / n, rel=0.05)


def test_responder_rate_per_draw_exact() -> None:
    e = EndpointDef(parse_endpoint("collagen_change"), above=25.0)
    x = np.array([30.0, 30.0, 10.0, 30.0, np.nan])
    r = responder_spread(x, np.array([0, 0, 1, 1, 2]), 3, e)  # rates 1 and 1/2; draw 2 empty
    assert (r["responder_epistemic80_low"], r["responder_epistemic80_high"]) == pytest.approx(
        (0.55, 0.95)
    )
    assert r["responder_epistemic95_low"] == pytest.approx(0.5125)


# ----------------------------------------------------------------------------- assignment
def test_draw_is_the_patient_index_mod_k() -> None:
    assert draw_of(np.arange(7), 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert draw_of(np.arange(3, 5), 0).tolist() == [-1, -1]
    assert DEFAULT_PARAMETER_DRAWS > 0  # trials carry parameter uncertainty unless told not to


def test_draws_are_the_ensembles_and_drawn_once() -> None:
    a = trial_parameter_draws(7, 4)
    assert trial_parameter_draws(7, 4) is a  # once per process
    assert a.source == "posterior" and len(a.sets) == 4 and (a.samples >= 0).all()
    from microneedling.parameters.sampling import sample_parameter_sets

    again = sample_parameter_sets(load_parameters(), 4, 7)
    assert [s.hash for s in a.sets] == [s.hash for s in again]
    assert len({s.hash for s in a.sets}) == 4
    assert [s.hash for s in trial_parameter_draws(7, 6).sets[:4]] == [s.hash for s in a.sets]
    with pytest.raises(InputError):
        trial_parameter_draws(7, 0)


def test_without_a_posterior_the_draws_come_from_the_priors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    post = trial_parameter_draws(3, 4)
    monkeypatch.setattr(run_module, "shipped_posterior", lambda ps: None)
    prior = trial_parameter_draws(3, 4)
    assert prior.source == "prior" and prior.posterior == "" and (prior.samples == -1).all()
    assert [s.hash for s in prior.sets] != [s.hash for s in post.sets]
    res = run_module.TrialResult(
        spec=_spec(PAIRED, 4, 4), values=np.zeros((2, 4, 1)), covariates={}, grids={},
        moments={}, rejection={}, summary=None, comparisons=None, n_steps=0.0,
        draws=draw_of(np.arange(4), 4), parameter_draws=prior,
    )  # fmt: skip
    assert "prior intervals" in res.parameter_source


# ---------------------------------------------------------------------------------- K = 0
def test_k0_is_every_patient_at_the_posterior_median() -> None:
    """K = 0 gives the numbers of the code before parameter draws, bit for bit: each chunk one
    simulate_batch of its patients at the posterior median (computed here without run_chunk)."""
    spec = _spec(PARALLEL, 5, 0)
    res = run_trial(spec, chunk_size=3)
    nominal = posterior_nominal(load_parameters())
    expected = np.full(res.values.shape, np.nan)
    for task in plan_chunks(spec, 3):
        batch = sample_patients(
            spec.population, task.start, task.stop, seed=spec.seed, stream=task.stream
        )
        (a,) = task.arms
        courses = [arm_course(spec.arms[a], batch, i, spec.population) for i in range(len(batch))]
        reads = Reads(tuple(e.spec for e in spec.endpoints), tuple(arm_grid(spec.arms[a])))
        run = simulate_batch(courses, nominal, healing_factors=batch.factors, reads=reads)
        for j, e in enumerate(spec.endpoints):
            v = endpoint_values(run, e.spec)
            for i in range(len(batch)):
                expected[a, task.start + i, j] = np.nanmean(v[run.course_index == i])
    assert np.array_equal(res.values, expected, equal_nan=True)
    assert list(res.summary.columns) == SUMMARY_COLUMNS
    assert not set(DRAW_COLUMNS) & set(res.comparisons.columns)
    assert res.draws is None and res.parameter_draws is None
    ds = res.dataset()
    assert ds.attrs["parameter_draws"] == 0 and "posterior median" in ds.attrs["parameter_source"]
    assert "parameter_draw" not in ds and "draw" not in ds.dims


# ------------------------------------------------------------------------- K > 0 in a trial
@pytest.fixture(scope="module")
def drawn() -> Any:
    return run_trial(_spec(PARALLEL, 40, 8), chunk_size=16)


def test_draws_independent_of_chunking_and_workers(drawn: Any) -> None:
    spec = drawn.spec
    other = run_trial(spec, chunk_size=7)  # chunk boundaries across draws
    dask = run_trial(spec, chunk_size=9, workers=2)
    assert drawn.draws.tolist() == (np.arange(40) % 8).tolist()
    for r in (other, dask):
        assert np.array_equal(r.draws, drawn.draws)
        np.testing.assert_allclose(r.values, drawn.values, rtol=1e-12, atol=0)
        for col in DRAW_COLUMNS:
            np.testing.assert_allclose(r.summary[col], drawn.summary[col], rtol=1e-9)


def test_a_patient_runs_under_their_draw(drawn: Any) -> None:
    """Patient 9 of the 'pen' arm alone, under set 9 mod 8 = 1: the trial's numbers."""
    spec = drawn.spec
    a = 1
    batch = sample_patients(spec.population, 9, 10, seed=spec.seed, stream=a)
    course = arm_course(spec.arms[a], batch, 0, spec.population)
    sets = trial_parameter_draws(spec.seed, 8).sets
    run = simulate_batch([course], sets[1], healing_factors=batch.factors)
    for j, e in enumerate(spec.endpoints):
        v = float(np.nanmean(endpoint_values(run, e.spec)))
        assert v == pytest.approx(drawn.values[a, 9, j], rel=1e-9)
    at_median = simulate_batch([course], posterior_nominal(load_parameters()),
                               healing_factors=batch.factors)  # fmt: skip
    j = 0
    assert float(np.nanmean(endpoint_values(at_median, spec.endpoints[j].spec))) != pytest.approx(
        drawn.values[a, 9, j], rel=1e-6
    )


def test_posterior_interval_and_total_variance(drawn: Any) -> None:
    s = drawn.summary
    assert set(DRAW_COLUMNS) <= set(s.columns) and set(DRAW_COLUMNS) <= set(drawn.comparisons)
    assert drawn.parameter_draws.source == "posterior"
    n_k = np.bincount(drawn.draws, minlength=8).astype(float)
    N = n_k.sum()
    c = (N - (n_k**2).sum() / N) / (N - 1)  # E[s²] = var_aleatory + c var_epistemic
    for r in s.to_dict("records"):
        if not np.isfinite(r["var_total"]):
            continue
        assert r["epistemic80_low"] < r["epistemic_median"] < r["epistemic80_high"]
        assert r["epistemic95_low"] <= r["epistemic80_low"] < r["epistemic80_high"]
        assert r["epistemic80_high"] <= r["epistemic95_high"]
        assert r["epistemic_sd"] > 0 and r["aleatory_sd"] > 0
        # the sample variance of the patients is the sum of the components (exactly, up to the
        # finite number of draws: c < 1 weighs the between-draw term; no clipping here)
        sd2 = r["sd"] ** 2
        assert sd2 == pytest.approx(r["var_aleatory"] + c * r["var_epistemic"], rel=1e-9)
        assert abs(r["var_total"] - sd2) <= r["var_epistemic"] / 8 * 1.01
    for r in drawn.comparisons.to_dict("records"):
        if np.isfinite(r["difference"]):
            assert r["epistemic95_low"] <= r["epistemic80_low"] <= r["epistemic80_high"]


def test_dataset_carries_the_draws(drawn: Any) -> None:
    ds = drawn.dataset()
    assert ds.attrs["parameter_draws"] == 8 and "posterior" in ds.attrs["parameter_source"]
    assert ds.attrs["posterior_sha256"] == drawn.parameter_draws.posterior != ""
    assert ds["parameter_draw"].dims == ("patient",)
    assert ds["parameter_draw"].values.tolist() == (np.arange(40) % 8).tolist()
    assert ds["draw_mean"].dims == ("arm", "draw", "endpoint")
    assert ds["draw_n"].sum(dim="draw").values.max() == 40
    # the per-draw means' spread is the summary's interval
    j, a = 0, 0
    m = ds["draw_mean"].values[a, :, j]
    assert np.percentile(m, 10) == pytest.approx(ds["epistemic80_low"].values[a, j])
    d = ds["draw_difference"].values[1, :, j]
    np.testing.assert_allclose(d, m * 0 + ds["draw_mean"].values[1, :, j] - m)
    assert np.isnan(ds["difference_epistemic_sd"].values[drawn.spec.control]).all()
    for v in ("draw_mean", "epistemic_sd", "var_epistemic", "difference_var_total"):
        assert "endpoint_units" in ds[v].attrs["long_name"], v
    ruled = [i for i, e in enumerate(drawn.spec.endpoints) if e.rule]
    assert ruled and np.isfinite(ds["responder_epistemic80_high"].values[:, ruled]).all()
    assert "responder_epistemic80_low" in drawn.summary
    assert "squared" in ds["var_aleatory"].attrs["long_name"]
    # each variable names how it was estimated: the ANOVA's, or percentiles of per-draw values
    assert "ANOVA" in ds["epistemic_sd"].attrs["estimator"]
    assert "ANOVA" in ds["difference_var_total"].attrs["estimator"]
    for v in ("epistemic80_low", "responder_epistemic80_high", "difference_epistemic95_high"):
        assert "percentiles" in ds[v].attrs["estimator"], v


def test_split_face_sides_share_the_draw() -> None:
    res = run_trial(_spec(PAIRED, 12, 3), chunk_size=5)
    assert res.draw_warning == ""
    small = dataclasses.replace(res, spec=_spec(PAIRED, 5, 3))  # a set with one patient
    assert "use n_per_arm >= 6 or parameter_draws <= 2" in small.draw_warning
    assert res.draws.tolist() == [i % 3 for i in range(12)]
    ds = res.dataset()
    x, y = res.values[1, :, 0], res.values[0, :, 0]
    for k in range(3):
        assert ds["draw_difference"].values[1, k, 0] == pytest.approx(np.mean((x - y)[k::3]))


# --------------------------------------------------------------------------- spec and resume
def test_spec_field_fingerprint_and_written_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    base = TrialSpec.from_toml(PARALLEL)
    assert base.parameter_draws == DEFAULT_PARAMETER_DRAWS
    d = tomllib.loads(PARALLEL.read_text())
    d["trial"]["parameter_draws"] = 0
    zero = TrialSpec.from_dict(d, base=EXAMPLES)
    assert zero.parameter_draws == 0
    assert TrialSpec.from_dict(tomllib.loads(zero.to_toml())).parameter_draws == 0
    d["trial"]["parameter_draws"] = -1
    with pytest.raises(InputError) as e:
        TrialSpec.from_dict(d, base=EXAMPLES)
    assert e.value.field == "trial.parameter_draws"
    fp = base.fingerprint(256)
    assert dataclasses.replace(base, parameter_draws=16).fingerprint(256) != fp
    assert zero.fingerprint(256) != fp
    # written explicitly or by default: the same trial
    d["trial"]["parameter_draws"] = DEFAULT_PARAMETER_DRAWS
    assert TrialSpec.from_dict(d, base=EXAMPLES).fingerprint(256) == fp
    monkeypatch.setattr(spec_module, "posterior_hash", lambda: "another posterior")
    assert base.fingerprint(256) != fp


def test_cli_flag_and_refusal(tmp_path: Path) -> None:
    import xarray as xr
    from typer.testing import CliRunner

    from microneedling.cli.app import app

    out = tmp_path / "o"
    args = ["trial", str(PAIRED), "--out", str(out), "--n", "6", "-q"]
    r = CliRunner().invoke(app, [*args, "--parameter-draws", "3"])
    assert r.exit_code == 0, r.output
    assert "Warning: 6 patients per arm under 3 parameter sets" not in r.output
    with xr.open_dataset(out / "trial.nc") as ds:
        assert ds.attrs["parameter_draws"] == 3 and ds.attrs["parameter_draws_warning"] == ""
        assert ds["parameter_draw"].values.tolist() == [0, 1, 2, 0, 1, 2]
    head = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert set(DRAW_COLUMNS) <= set(head)
    assert "parameter_draws = 3" in (out / "trial.toml").read_text()
    r = CliRunner().invoke(app, [*args[:3], str(tmp_path / "p"), "--parameter-draws", "5000"])
    assert r.exit_code == 2 and "parameter_draws" in r.output


def test_the_parameter_values_are_part_of_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The digest of the drawn values: another seed or K draws other values, and a prior interval
    (which the parameter files' hash does not cover) moves them too; the fingerprint follows."""
    d4 = run_module.parameter_digest(2026, 4)
    assert d4 == run_module.parameter_digest(2026, 4)
    assert d4 != run_module.parameter_digest(2027, 4) != run_module.parameter_digest(2026, 0)
    base = TrialSpec.from_toml(PARALLEL)
    assert base.fingerprint(256, parameters=d4) != base.fingerprint(256, parameters="other")
    # other drawn values under the same files' hash (as a changed prior interval gives): caught
    sets = run_module.trial_parameter_draws(2026, 4)
    moved = dataclasses.replace(sets, sets=(*sets.sets[1:], sets.sets[0]))
    monkeypatch.setattr(run_module, "trial_parameter_draws", lambda seed, k: moved)
    assert run_module.parameter_digest(2026, 4) != d4


def test_a_chunk_under_other_parameter_sets_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk that reports other parameter values than the trial drew (a worker with other
    parameter files or posterior) stops the trial and is not kept for a resume."""
    spec = _spec(PARALLEL, 8, 2)
    digests = iter(["this process", "a worker"])
    monkeypatch.setattr(run_module, "parameter_digest", lambda seed, k: next(digests, "a worker"))
    with pytest.raises(run_module.ParameterDrawError, match="other parameter sets"):
        run_module.run_trial(spec, resume_dir=tmp_path / "out", chunk_size=4)
    assert (tmp_path / "out" / "FINGERPRINT").exists()  # the store was opened: nothing kept
    assert not list((tmp_path / "out").glob("chunk-*.pkl"))


def test_confidence_intervals_given_the_parameter_sets_exact() -> None:
    """Given the sets, a mean's (or a difference's) variance comes from the within-set spread only.
    By hand: x = 1, 3 | 5, 7 under sets 0 | 1: set means 2 and 6, MSW = 2, N = 4, mean 4, SE =
    sqrt(2 / 4), 2 dof; control y = 0, 2 | 2, 4: MSW 2, difference 2, SE 1, Welch-Satterthwaite
    dof (0.5 + 0.5)^2 / (0.5^2 / 2 + 0.5^2 / 2) = 4."""
    x, y, g = np.array([1.0, 3, 5, 7]), np.array([0.0, 2, 2, 4]), np.array([0, 0, 1, 1])
    v = variance_components(x, g, 2)
    assert v["given_draws_ci95_low"] == pytest.approx(0.9575651, abs=1e-6)
    assert v["given_draws_ci95_high"] == pytest.approx(7.0424349, abs=1e-6)
    assert v["given_draws_p_t"] == pytest.approx(0.0298575, abs=1e-6)
    d = difference_components(x, y, g, 2, paired=False)
    assert d["given_draws_ci95_low"] == pytest.approx(-0.7764451, abs=1e-6)
    assert d["given_draws_ci95_high"] == pytest.approx(4.7764451, abs=1e-6)
    assert d["given_draws_p_t"] == pytest.approx(0.1161165, abs=1e-6)
    # the same values with the set effect removed (every set's mean 4): the spread between sets
    # no longer counts in Welch's interval either, and both agree on the difference
    z = difference_components(x - np.array([2, 2, 6, 6]) + 4, y, g, 2, paired=False)
    assert z["given_draws_ci95_high"] == pytest.approx(d["given_draws_ci95_high"])
    # split-face: the per-patient differences under their sets
    pd_ = difference_components(x, y, g, 2, paired=True)  # differences 1, 1, 3, 3: MSW 0
    assert pd_["given_draws_ci95_low"] == pd_["given_draws_ci95_high"] == 2.0
    # one patient per set: not estimable
    one = variance_components(np.array([1.0, 2.0]), np.array([0, 1]), 2)
    assert math.isnan(one["given_draws_ci95_low"]) and math.isnan(one["given_draws_p_t"])


def test_given_the_sets_is_narrower_when_the_sets_differ(drawn: Any) -> None:
    """In a trial whose parameter sets move the end points, the interval given the sets is
    narrower than Welch's over all patients (which pools the spread between sets in)."""
    c = drawn.comparisons.dropna(subset=["given_draws_ci95_low", "ci95_low"])
    assert len(c)
    given = c["given_draws_ci95_high"] - c["given_draws_ci95_low"]
    welch = c["ci95_high"] - c["ci95_low"]
    assert (given <= welch * 1.0001).all() and (given < welch).any()


def test_a_chunk_finds_its_parameter_sets_coefficients_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The coefficients of a trial's 32 sets stay made from one chunk to the next (the draws' pool
    holds them all); with a bound below what one chunk makes (two entries per set since a chunk's
    pairs are prepared in one pass, 64; five before, when the old bound of 128 was too small),
    cycling through the sets evicts each before its next use and every chunk remakes them all."""
    from microneedling.engine import prepare as prepare_module

    spec = _spec(PARALLEL, 64, 32)
    tasks = [t for t in run_module.plan_chunks(spec, 32, parallel=False) if t.arms == (0,)]
    run_module.run_chunk(tasks[0])
    calls = count_calls(monkeypatch, prepare_module.healing, "parameter_vector")
    run_module.run_chunk(tasks[1])  # the same 32 sets, other patients
    assert calls == []
    monkeypatch.setattr(prepare_module, "PER_DRAW_ENTRIES", 32)
    monkeypatch.setattr(prepare_module, "_PER_DRAW", {})
    run_module.run_chunk(tasks[0])
    run_module.run_chunk(tasks[1])
    assert len(calls) >= 2 * 32 - 1  # evicted before their next use: made again every chunk


def test_noise_fraction_of_the_per_draw_values_exact() -> None:
    """x = 1, 3 | 5, 7: per-draw means 2 and 6 (variance 8), MSW 2, noise of a mean 2 / 2 = 1:
    a share of 1/8. Without a set effect (3, 5 | 3, 5) the means are equal: all noise (1); with
    one patient per set nothing is estimable."""
    g = np.array([0, 0, 1, 1])
    assert variance_components(np.array([1.0, 3, 5, 7]), g, 2)["draw_noise_fraction"] == 0.125
    assert variance_components(np.array([3.0, 5, 3, 5]), g, 2)["draw_noise_fraction"] == 1.0
    one = variance_components(np.array([1.0, 2.0]), np.array([0, 1]), 2)
    assert math.isnan(one["draw_noise_fraction"])
    # parallel difference: d_j = 2 - 1 and 6 - 3 (variance 2), noise 2/2 + 2/2 = 2: capped at 1
    x, y = np.array([1.0, 3, 5, 7]), np.array([0.0, 2, 2, 4])
    assert difference_components(x, y, g, 2, paired=False)["draw_noise_fraction"] == 1.0
    # many patients per set: the per-draw values are the parameters' spread, little noise
    rng = np.random.default_rng(0)
    gg = np.repeat(np.arange(8), 200)
    xx = rng.normal(0, 1, gg.size) + 3.0 * gg
    assert variance_components(xx, gg, 8)["draw_noise_fraction"] < 0.01


def test_the_command_s_tables_show_the_spread_and_the_interval_given_the_sets() -> None:
    from rich.console import Console

    from microneedling.cli.trial import _print_tables

    console = Console(record=True, width=300)
    _print_tables(run_trial(_spec(PAIRED, 6, 3), chunk_size=6), console)
    text = console.export_text()
    assert "Over draws (80%)" in text and "Param. share" in text and "95% CI given sets" in text
    console = Console(record=True, width=300)
    _print_tables(run_trial(_spec(PAIRED, 6, 0), chunk_size=6), console)
    assert "95% CI given sets" not in console.export_text()

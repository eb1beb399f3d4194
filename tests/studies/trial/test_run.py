"""In-silico trials: statistics, refusals, reproducibility (chunks, Dask workers), resume after kill."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from microneedling.engine.endpoints import parse_endpoint
from microneedling.errors import CourseValidationError, InputError
from microneedling.physics import redness
from microneedling.studies.trial import run as run_module
from microneedling.studies.trial.population import PatientBatch, sample_patients
from microneedling.studies.trial.run import (
    _moments,
    _wilson,
    arm_summary,
    compare_arms,
    merge_moments,
    plan_chunks,
    run_trial,
)
from microneedling.studies.trial.spec import (
    EndpointDef,
    TrialSpec,
    TrialSpecError,
    arm_course,
    arm_courses,
)
from tests.paths import REPO as ROOT
from tests.physics.test_redness import DURATION_RTOL, numpy_visible_durations

EXAMPLES = ROOT / "examples" / "trials"
PAIRED = EXAMPLES / "split-face-needle-length.toml"
PARALLEL = EXAMPLES / "acne-roller-vs-pen.toml"


def _small(path: Path, n: int) -> TrialSpec:
    spec = TrialSpec.from_toml(path)
    return dataclasses.replace(spec, n_per_arm=n)


# ----------------------------------------------------------------------------- statistics
def test_wilson_interval_known_value() -> None:
    lo, hi = _wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)


def test_arm_summary_mean_ci_and_responders() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 10.0])
    e = EndpointDef(parse_endpoint("collagen_change"), above=3.0)
    s = arm_summary(x, e)
    fin = x[np.isfinite(x)]
    half = stats.t.ppf(0.975, 4) * fin.std(ddof=1) / math.sqrt(5)
    assert s["n"] == 5 and s["mean"] == pytest.approx(4.0)
    assert s["ci95_low"] == pytest.approx(4.0 - half) and s["ci95_high"] == pytest.approx(
        4.0 + half
    )
    assert s["responder_rate"] == pytest.approx(3 / 5)


def test_compare_parallel_matches_hand_formulas() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, 40), rng.normal(0.0, 2.0, 60)
    c = compare_arms(x, y, paired=False)
    sp = math.sqrt((39 * x.var(ddof=1) + 59 * y.var(ddof=1)) / 98)
    d = (x.mean() - y.mean()) / sp
    assert c["cohens_d"] == pytest.approx(d)
    assert c["hedges_g"] == pytest.approx(d * (1 - 3 / (4 * 100 - 9)))
    assert c["p_t"] == pytest.approx(stats.ttest_ind(x, y, equal_var=False).pvalue)
    assert c["p_rank"] == pytest.approx(stats.mannwhitneyu(x, y).pvalue)
    assert c["ci95_low"] < x.mean() - y.mean() < c["ci95_high"]


def test_compare_paired_uses_differences() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0, 5, 30)
    x, y = base + 1.0 + rng.normal(0, 0.1, 30), base
    c = compare_arms(x, y, paired=True)
    assert c["p_t"] == pytest.approx(stats.ttest_rel(x, y).pvalue)
    assert c["p_rank"] == pytest.approx(stats.wilcoxon(x, y).pvalue)
    assert c["cohens_dz"] > 5 > abs(c["cohens_d"])  # pairing removes the between-patient spread
    assert c["ci95_low"] < 1.0 < c["ci95_high"]


def test_streaming_moments_equal_one_pass() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(3, 2, (101, 7))
    x[rng.random(x.shape) < 0.1] = np.nan
    m = _moments(x[:13])
    for a, b in [(13, 50), (50, 51), (51, 101)]:
        m = merge_moments(m, _moments(x[a:b]))
    full = _moments(x)
    np.testing.assert_allclose(m, full, rtol=1e-12)
    np.testing.assert_allclose(m[2] / (m[0] - 1), np.nanvar(x, axis=0, ddof=1), rtol=1e-12)


# ------------------------------------------------------------------------------- refusals
def _move_to_forehead(d: dict[str, Any]) -> None:
    p = d["arms"][1]["protocol"]
    p["sites"] = [{"name": "forehead"}]
    for s in p["sessions"]:
        s["site"] = "forehead"


def _spec_dict() -> dict[str, Any]:
    import tomllib

    return tomllib.loads(PAIRED.read_text())


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["trial"].pop("n_per_arm"), "trial.n_per_arm"),
        (lambda d: d["trial"].update(n_per_arm=1), "trial.n_per_arm"),
        (lambda d: d["trial"].update(design="crossover"), "trial.design"),
        (lambda d: d["trial"].update(population="martians"), "trial.population"),
        (lambda d: d["trial"].update(endpoints=["scar_depth:shrinkage"]), "trial.endpoints[0]"),
        (
            lambda d: d["trial"].update(endpoints=[{"name": "scar_depth", "responder_above": "x"}]),
            "trial.endpoints[0].responder_above",
        ),
        (lambda d: d["trial"].update(time_points=[-5]), "trial.time_points[0]"),
        (lambda d: d["trial"].update(control="placebo"), "trial.control"),
        (lambda d: d["trial"].update(colour="red"), "trial.colour"),
        (lambda d: d["trial"].update(lanes=0), "trial.lanes"),
        (lambda d: d["trial"].update(lanes=1000), "trial.lanes"),
        (
            lambda d: d["arms"].append(
                {"name": "third", "course": "../acne-scars-rolling-cheek.toml"}
            ),
            "arms",
        ),
        (lambda d: d["arms"][0].update(course="nope.toml"), "arms[0].course"),
        (
            lambda d: d["arms"][1]["protocol"].update(patient={"age_years": 30}),
            "arms[1].protocol.patient",
        ),
        (
            lambda d: d["arms"][1]["protocol"]["sessions"][0].update(needle_length_mm=9.0),
            "arms[1].protocol",
        ),
        (_move_to_forehead, "arms[1].sites"),
        (lambda d: d["arms"][1].update(name="1.5 mm"), "arms[].name"),
    ],
)
def test_bad_trial_specs_refused(edit: Any, field: str) -> None:
    d = _spec_dict()
    edit(d)
    with pytest.raises(InputError) as e:
        TrialSpec.from_dict(d, base=EXAMPLES)
    assert e.value.field == field


def test_every_problem_of_a_spec_is_reported() -> None:
    d = _spec_dict()
    d["trial"].update(design="crossover", n_per_arm=1, colour="red")
    d["trial"]["endpoints"].append(
        {"name": "erythema_days", "responder_above": 1, "responder_below": 2}
    )
    with pytest.raises(TrialSpecError) as e:
        TrialSpec.from_dict(d, base=EXAMPLES)
    assert [p.field for p in e.value.problems] == [
        "trial.design",
        "trial.n_per_arm",
        "trial.endpoints[3]",
        "trial.colour",
    ]
    assert e.value.field == "trial.design" and "did you mean" not in e.value.allowed
    assert e.value.problems[1].allowed == "an integer from 2 to 10000000"


def test_unreadable_arm_course_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "binary.toml").write_bytes(b'name = "\xff\xfe"\n')
    (tmp_path / "broken.toml").write_text("name = = 1\n", encoding="utf-8")
    (tmp_path / "folder.toml").mkdir()
    for name, words in (
        ("binary.toml", "UTF-8"),
        ("broken.toml", "valid TOML"),
        ("folder.toml", "a TOML file"),
        ("missing.toml", "an existing TOML file"),
    ):
        d = _spec_dict()
        d["arms"][0]["course"] = name
        with pytest.raises(InputError) as e:
            TrialSpec.from_dict(d, base=tmp_path)
        assert e.value.field == "arms[0].course" and e.value.value == name
        assert words in e.value.allowed


def test_unreadable_spec_file_is_an_input_error(tmp_path: Path) -> None:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'[trial]\nname = "\xff"\n')
    for path, words in ((binary, "UTF-8"), (tmp_path / "missing.toml", "no such file")):
        with pytest.raises(InputError) as e:
            TrialSpec.from_toml(path)
        assert e.value.field == "<file>" and words in e.value.allowed


def test_inline_population_refusals_are_named_under_the_trial() -> None:
    d = _spec_dict()
    d["trial"]["population"] = {
        "name": "inline",
        "age": {"distribution": "normal", "mean": 40.0, "sd": -1.0, "min": 20, "max": 60},
        "sex": "female",
        "fitzpatrick": "III",
    }
    with pytest.raises(InputError) as e:
        TrialSpec.from_dict(d, base=EXAMPLES)
    assert e.value.field == "trial.population.age.sd"
    d["trial"]["population"]["age"]["sd"] = 5.0
    assert TrialSpec.from_dict(d, base=EXAMPLES).population.name == "inline"


def test_time_points_expand_endpoints() -> None:
    spec = TrialSpec.from_toml(PARALLEL)
    names = [e.name for e in spec.endpoints]
    assert names[:2] == ["scar_depth:reduction@180", "scar_depth:reduction@365"]
    assert "erythema_days" in names and spec.endpoints[0].above == 25.0


def test_plan_chunks_cover_every_patient_once() -> None:
    spec = _small(PARALLEL, 23)
    tasks = plan_chunks(spec, 5)
    for a in range(2):
        covered = [i for t in tasks if t.arms == (a,) for i in range(t.start, t.stop)]
        assert covered == list(range(23))
    paired = plan_chunks(_small(PAIRED, 23), 5)
    assert all(t.arms == (0, 1) and t.stream == 0 for t in paired)


# ------------------------------------------------------------------------- reproducibility
@pytest.fixture(scope="module")
def reference() -> Any:
    return run_trial(_small(PAIRED, 12), chunk_size=12)


def test_same_numbers_for_any_chunk_size_and_a_dask_local_cluster(reference: Any) -> None:
    spec = _small(PAIRED, 12)
    other = run_trial(spec, chunk_size=5)
    dask = run_trial(spec, chunk_size=4, workers=2)
    assert np.isfinite(reference.values).all()
    # same patients, same numbers; batch composition may only move the last bits (SIMD order)
    np.testing.assert_allclose(other.values, reference.values, rtol=1e-12, atol=0)
    np.testing.assert_allclose(dask.values, reference.values, rtol=1e-12, atol=0)
    for label, m in reference.moments[0].items():
        np.testing.assert_allclose(dask.moments[0][label], m, rtol=1e-12)


def test_lockstep_lanes_agree_with_one_by_one_stepping_and_repeat_exactly(reference: Any) -> None:
    """``[trial] lanes``: the chunk's cases solved 8 at a time in lockstep give the numbers of
    stepping each alone to the solver's tolerance (not bit for bit: a shared step), the same
    numbers again for the same chunk size, in process or on a local cluster, and another
    fingerprint (a resumed run never mixes the two)."""
    spec = dataclasses.replace(_small(PAIRED, 12), lanes=8)
    lanes = run_trial(spec, chunk_size=12)
    again = run_trial(spec, chunk_size=6, workers=2)
    same_chunks = run_trial(spec, chunk_size=12, workers=2)
    assert np.isfinite(lanes.values).all()
    np.testing.assert_allclose(lanes.values, reference.values, rtol=1e-5, atol=1e-8)
    assert not np.array_equal(lanes.values, reference.values)  # the lanes did run
    np.testing.assert_array_equal(same_chunks.values, lanes.values)
    np.testing.assert_allclose(again.values, lanes.values, rtol=1e-5, atol=1e-8)
    raw = {**spec.raw, "trial": {**spec.raw["trial"], "lanes": 8}}
    assert dataclasses.replace(spec, raw=raw).fingerprint(12) != _small(PAIRED, 12).fingerprint(12)


@pytest.mark.parametrize("path", [PAIRED, PARALLEL])
def test_a_chunk_observed_where_it_reads_equals_the_whole_grid(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_chunk observes only the output times its end points and weekly bands read
    (engine.batch.Reads); every number leaving the chunk is that of the whole grid."""
    from microneedling.studies.trial import run as run_module

    spec = _small(path, 7)
    tasks = plan_chunks(spec, 7, parallel=False)
    fast = [run_module.run_chunk(t) for t in tasks]
    simulate_batch = run_module.simulate_batch
    seen: list[Any] = []

    def whole_grid(*args: Any, reads: Any = None, **kw: Any) -> Any:
        seen.append(reads)
        return simulate_batch(*args, **kw)

    monkeypatch.setattr(run_module, "simulate_batch", whole_grid)
    slow = [run_module.run_chunk(t) for t in tasks]
    assert seen and all(r is not None and r.endpoints for r in seen)
    for a, b in zip(fast, slow, strict=True):
        assert np.array_equal(a.values, b.values, equal_nan=True)
        assert a.moments.keys() == b.moments.keys()
        for arm, bands in a.moments.items():
            for label, m in bands.items():
                assert np.array_equal(m, b.moments[arm][label], equal_nan=True), label
        assert a.n_steps == b.n_steps and a.rejected == b.rejected


@pytest.mark.parametrize("path", [PAIRED, PARALLEL])
def test_arm_courses_are_each_patients_validated_course(path: Path) -> None:
    """The chunk's courses assembled from the first one's validated fields equal each patient's
    course validated whole (equal, same hash, same data), with the population's conditions and
    without; a patient that does not validate raises the course's own error."""
    spec = TrialSpec.from_toml(path)
    pop = spec.population
    batch = sample_patients(pop, 0, 25, seed=spec.seed, stream=0)
    for arm in spec.arms:
        for p in (pop, dataclasses.replace(pop, conditions=())):
            got = arm_courses(arm, batch, p)
            want = [arm_course(arm, batch, i, p) for i in range(len(batch))]
            assert got == want
            assert [hash(c) for c in got] == [hash(c) for c in want]
            assert [c.to_dict() for c in got] == [c.to_dict() for c in want]
    assert len({c.patient for c in got}) > 1  # the patients differ

    class Odd(PatientBatch):
        def patient_of(self, i: int) -> dict[str, Any]:
            return {**super().patient_of(i), "fitzpatrick": 9} if i == 3 else super().patient_of(i)

    odd = Odd(**{f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)})
    with pytest.raises(CourseValidationError) as exc:
        arm_courses(spec.arms[0], odd, pop)
    with pytest.raises(CourseValidationError) as ref:
        arm_course(spec.arms[0], odd, 3, pop)
    assert str(exc.value) == str(ref.value)


def test_a_trial_gives_the_numbers_of_the_reference_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 40-patient, 2-arm trial (the spec's 32 parameter sets) against the path it replaced:
    every course validated whole and the redness durations by NumPy (tests/physics/test_redness's
    reference). End points other than redness bit for bit; erythema days within DURATION_RTOL."""
    spec = _small(PARALLEL, 20)
    fast = run_trial(spec, chunk_size=10)

    def every_course_validated(arm: Any, batch: Any, pop: Any) -> list[Any]:
        return [arm_course(arm, batch, i, pop) for i in range(len(batch))]

    monkeypatch.setattr(run_module, "arm_courses", every_course_validated)
    monkeypatch.setattr(redness, "visible_durations", numpy_visible_durations)
    slow = run_trial(spec, chunk_size=10)
    assert np.isfinite(slow.values).all()
    for j, e in enumerate(spec.endpoints):
        a, b = fast.values[..., j], slow.values[..., j]
        if e.name.startswith("erythema_days"):
            assert np.all(np.abs(a - b) <= DURATION_RTOL * np.abs(b)), e.name
            assert np.nanmax(b) > 0.5  # days of redness, not nothing
        else:
            assert np.array_equal(a, b), e.name


def test_split_face_pairs_the_same_patient(reference: Any) -> None:
    cov = reference.covariates
    for k in ("age", "fitzpatrick", "factor.k_1", "acne_scar.depth_mm"):
        np.testing.assert_array_equal(cov[k][0], cov[k][1])
    # deeper needles, more erythema, in every single patient (paired design)
    j = [e.name for e in reference.spec.endpoints].index("erythema_days")
    assert np.all(reference.values[0, :, j] > reference.values[1, :, j])


def test_parallel_arms_are_different_patients() -> None:
    res = run_trial(_small(PARALLEL, 6), chunk_size=6)
    assert not np.array_equal(res.covariates["factor.k_1"][0], res.covariates["factor.k_1"][1])
    assert set(res.comparisons["tests"]) == {"Welch t; Mann-Whitney U"}


# ---------------------------------------------------------------------------------- resume
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "microneedling", "trial", *args]


def test_resume_after_kill_equals_uninterrupted(tmp_path: Path) -> None:
    out = tmp_path / "run"
    chunks = tmp_path / "run.partial" / "chunks"
    n, m = 120, 4  # 30 chunks of 4 patients x 2 sides
    proc = subprocess.Popen(
        _cli(str(PAIRED), "--out", str(out), "--n", str(n), "--chunk-size", str(m), "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(chunks.glob("chunk-*.pkl"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = list(chunks.glob("chunk-*.pkl"))
    assert 3 <= len(kept) < n // m, "the run was not interrupted part-way"
    assert not out.exists()
    assert (
        not [p for p in chunks.iterdir() if p.name.startswith(".")] or True
    )  # temp files may remain
    done = subprocess.run(
        _cli(str(PAIRED), "--out", str(out), "--n", str(n), "--chunk-size", str(m), "-q"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "run.partial").exists()
    resumed = xr.open_dataset(out / "trial.nc")
    straight = run_trial(_small(PAIRED, n), chunk_size=n)
    np.testing.assert_allclose(resumed["value"].values, straight.values, rtol=1e-12, atol=0)
    # with the spec's parameter draws (the default): the same sets per patient
    assert resumed.attrs["parameter_draws"] == straight.spec.parameter_draws > 0
    np.testing.assert_array_equal(resumed["parameter_draw"].values, straight.draws)
    np.testing.assert_allclose(
        resumed["epistemic80_low"].values, straight.dataset()["epistemic80_low"].values, rtol=1e-9
    )
    assert (
        "not medical advice" in (out / "report.html").read_text().lower()
        or "diagnosis" in (out / "report.html").read_text()
    )
    assert set(os.listdir(out)) >= {"trial.nc", "summary.csv", "comparisons.csv", "report.html"}


def test_cli_refuses_bad_spec_with_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from microneedling.cli.app import app

    bad = tmp_path / "bad.toml"
    bad.write_text(PAIRED.read_text().replace('design = "split-face"', 'design = "crossover"'))
    r = CliRunner().invoke(app, ["trial", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "trial.design" in r.output and "crossover" in r.output
    assert not (tmp_path / "o").exists()


def test_written_spec_is_self_contained() -> None:
    import tomllib

    spec = _small(PARALLEL, 9)
    again = TrialSpec.from_dict(tomllib.loads(spec.to_toml()))
    assert again.n_per_arm == 9 and again.population == spec.population
    assert again.arms == spec.arms and again.endpoints == spec.endpoints
    assert again.fingerprint(7) == spec.fingerprint(7) != spec.fingerprint(8)


def test_written_spec_is_the_package_toml_writer() -> None:
    from microneedling.io import dumps_toml, loads_toml

    spec = _small(PAIRED, 5)
    text = spec.to_toml()
    assert text == dumps_toml(loads_toml(text))
    assert loads_toml(text)["trial"]["population"] == dict(spec.population.raw)


def test_a_chunk_prepared_in_one_pass_gives_the_numbers_of_each_set_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 40-patient, 2-arm trial with the spec's 32 parameter sets: a chunk's (course, set) pairs
    prepared in one pass (engine.prepare.prepare_pairs) give every end point, weekly band,
    summary statistic and the step count of each set's courses prepared on their own, bit for
    bit."""
    from microneedling.engine import batch
    from tests.engine.test_prepare import pairs_reference

    spec = _small(PARALLEL, 20)
    assert spec.parameter_draws == 32
    calls: list[int] = []
    prepare_pairs = batch.prepare_pairs

    def counted(courses: Any, sets: Any) -> Any:
        calls.append(len({id(s) for s in sets}))
        return prepare_pairs(courses, sets)

    monkeypatch.setattr(batch, "prepare_pairs", counted)
    fast = run_trial(spec, chunk_size=10)
    assert calls and max(calls) == 10  # ten patients, each under their own set
    monkeypatch.setattr(batch, "prepare_pairs", pairs_reference)
    slow = run_trial(spec, chunk_size=10)
    assert np.isfinite(slow.values).all()
    assert np.array_equal(fast.values, slow.values)
    assert fast.moments.keys() == slow.moments.keys()
    for arm, bands in fast.moments.items():
        for label, m in bands.items():
            assert np.array_equal(m, slow.moments[arm][label], equal_nan=True), label
    assert fast.n_steps == slow.n_steps and np.array_equal(fast.draws, slow.draws)
    assert fast.summary.equals(slow.summary) and fast.comparisons.equals(slow.comparisons)

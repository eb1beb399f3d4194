"""simulate_batch: small healing solves stay on the calling thread, larger ones use the thread
pool, and the outputs are the same bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from microneedling.course.model import Course
from microneedling.engine import batch
from microneedling.engine.batch import THREADS_FROM, simulate_batch
from microneedling.physics import healing
from tests.paths import EXAMPLES


def _same(a: Any, b: Any) -> None:
    assert np.array_equal(a.t, b.t) and np.array_equal(a.n_steps, b.n_steps)
    for name in a.observables:
        assert np.array_equal(a.observables[name], b.observables[name], equal_nan=True), name
    for name in a.per_session:
        assert np.array_equal(a.per_session[name], b.per_session[name], equal_nan=True), name


@pytest.mark.parametrize("n_courses", [1, 2])
def test_threads_only_for_batches_large_enough(
    n_courses: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = Course.from_file(EXAMPLES / "acne-scars-rolling-cheek.toml")  # a case and its floor
    seen: list[tuple[int, bool]] = []
    solve = healing.solve_distinct

    def spy(params: np.ndarray, *args: Any, **kw: Any) -> tuple[healing.HealingSolution, Any]:
        seen.append((params.shape[0], kw["parallel"]))
        return solve(params, *args, **kw)

    monkeypatch.setattr(batch.healing, "solve_distinct", spy)
    threaded = simulate_batch([course] * n_courses)
    serial = simulate_batch([course] * n_courses, parallel=False)
    rows = 2 * n_courses
    assert seen == [(rows, rows >= THREADS_FROM), (rows, False)]
    _same(threaded, serial)


def test_a_large_batch_on_threads_equals_one_thread() -> None:
    courses = [
        Course.from_file(EXAMPLES / f"{name}.toml")
        for name in ("acne-scars-rolling-cheek", "neck-rejuvenation", "forehead-fine-lines")
    ]
    assert sum(len(c.sites) for c in courses) + 2 >= THREADS_FROM  # floors: scar, wrinkle
    _same(simulate_batch(courses), simulate_batch(courses, parallel=False))


def _reading_cohort() -> list[Course]:
    """Every example (topicals, pigment, scars, wrinkles, striae, several sites) and virtual
    patients of both arms of the acne trial."""
    from microneedling.studies.trial.population import sample_patients
    from microneedling.studies.trial.spec import TrialSpec, arm_course

    courses = [Course.from_file(p) for p in sorted(EXAMPLES.glob("*.toml"))]
    spec = TrialSpec.from_toml(EXAMPLES / "trials" / "acne-roller-vs-pen.toml")
    b = sample_patients(spec.population, 0, 6, seed=spec.seed, stream=0)
    return courses + [arm_course(a, b, i, spec.population) for a in spec.arms for i in range(6)]


def test_a_run_observed_only_where_it_is_read_gives_the_same_numbers() -> None:
    from microneedling.engine.endpoints import endpoint_values, parse_endpoint
    from microneedling.engine.variables import session_variables, time_variables

    courses = _reading_cohort()
    texts = [
        "scar_depth:reduction",
        "collagen_change.reticular@180",
        "melanin_index:percent_change@last+30",
        "collagen_change@0.5",  # a read time on the fine grid just after a session
        "texture_roughness:change@1000",  # after every horizon: clipped to the last time
        "wrinkle_depth@last+0",
    ]
    specs = [parse_endpoint(t) for t in texts]
    specs += [parse_endpoint(f"{v.name}@77.3") for v in time_variables()]
    specs += [parse_endpoint(v.name) for v in session_variables()]
    days = (0.0, 3.5, 7.0, 100.0, 365.0)
    whole = simulate_batch(courses, parallel=False)
    reads = batch.Reads(tuple(specs), days)
    part = simulate_batch(courses, parallel=False, reads=reads)
    cols = batch.read_columns(whole, reads)
    assert 0 < cols.size < whole.t.size // 2  # a fraction of the grid: the test is not vacuous
    assert np.array_equal(part.t, whole.t[cols]) and np.array_equal(part.n_steps, whole.n_steps)
    for name, x in whole.observables.items():
        assert np.array_equal(part.observables[name], x[..., cols], equal_nan=True), name
    for name, x in whole.per_session.items():  # on the whole grid in both
        assert np.array_equal(part.per_session[name], x, equal_nan=True), name
    for spec in specs:
        a, b = endpoint_values(whole, spec), endpoint_values(part, spec)
        assert np.array_equal(a, b, equal_nan=True), spec.text
    # interpolated trajectories at the days read (as a trial's weekly bands read them)
    for name in ("collagen_change", "scar_depth"):
        x, y = whole.observables[name], part.observables[name]
        for d in days:
            i1 = int(np.clip(np.searchsorted(whole.t, d), 1, whole.t.size - 1))
            j1 = int(np.clip(np.searchsorted(part.t, d), 1, part.t.size - 1))
            assert part.t[j1] == whole.t[i1] and part.t[j1 - 1] == whole.t[i1 - 1]
            assert np.array_equal(y[..., j1 - 1 : j1 + 1], x[..., i1 - 1 : i1 + 1], equal_nan=True)
    # several parameter sets (their cases observed in one call) read the same way
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.parameters.sampling import sample_parameter_sets

    sets = sample_parameter_sets(load_parameters(), 3, 2)
    few = courses[:3]
    whole_3 = simulate_batch(few, sets, parallel=False)
    part_3 = simulate_batch(few, sets, parallel=False, reads=reads)
    cols_3 = batch.read_columns(whole_3, reads)
    for name, x in whole_3.observables.items():
        assert np.array_equal(part_3.observables[name], x[..., cols_3], equal_nan=True), name
    for name, x in whole_3.per_session.items():
        assert np.array_equal(part_3.per_session[name], x, equal_nan=True), name


def test_a_run_computes_the_visible_durations_its_end_points_read() -> None:
    """With reads, only the redness, swelling and downtime days an end point reads are computed
    (the others NaN), each the number of the run that computes all three, bit for bit; every
    other per-session output as before."""
    from microneedling.engine.endpoints import parse_endpoint

    courses = _reading_cohort()
    whole = simulate_batch(courses, parallel=False)
    names = ("erythema_days", "oedema_days", "downtime_days")
    assert all(np.isfinite(whole.per_session[n]).any() for n in names)
    for read in [("erythema_days",), ("downtime_days",), ("oedema_days", "erythema_days"), ()]:
        reads = batch.Reads((parse_endpoint("scar_depth"), *map(parse_endpoint, read)), (30.0,))
        assert batch.read_durations(reads) == tuple(
            batch.DURATION_OF[n] for n in names if n in read
        )
        part = simulate_batch(courses, parallel=False, reads=reads)
        for name, x in whole.per_session.items():
            if name in names and name not in read:
                assert np.isnan(part.per_session[name]).all(), (read, name)
            else:
                assert np.array_equal(part.per_session[name], x, equal_nan=True), (read, name)


@pytest.mark.parametrize(
    "name", ["acne-scars-rolling-cheek", "melasma-tranexamic-acid", "striae-abdomen"]
)
def test_an_ensemble_observed_in_one_call_is_the_set_by_set_observation(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """simulate(draws=8) of a scar, a melasma with a topical and a stretch-mark course: every
    variable of the ensemble observed in one call (the sets' coefficients one value per case) as
    observed set by set, bit for bit."""
    import microneedling as mn

    course = Course.from_file(EXAMPLES / f"{name}.toml")
    calls: list[int] = []
    observables = batch.observe.observables

    def spy(t: np.ndarray, y: np.ndarray, *args: Any, **kw: Any) -> dict[str, np.ndarray]:
        calls.append(y.shape[0])
        return observables(t, y, *args, **kw)

    monkeypatch.setattr(batch.observe, "observables", spy)
    got = mn.simulate(course, draws=8, parallel=False).dataset
    assert calls == [9 * len(course.sites)]  # the nominal set and 8 draws, one call
    monkeypatch.setattr(batch, "OBSERVE_STACKED_FROM", 10**9)
    calls.clear()
    want = mn.simulate(course, draws=8, parallel=False).dataset
    assert calls == [len(course.sites)] * 9
    assert set(got.data_vars) == set(want.data_vars) and len(want.data_vars) > 100
    for var in want.data_vars:
        x, y = got[var].values, want[var].values
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), var


def test_a_cohort_under_many_sets_observed_in_one_call_is_observed_set_by_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every example and trial patients, each course under one of three draws or the nominal set
    (as calibration runs its walkers' rows), with per-patient healing factors and reads (as a
    trial chunk): observed in one call as set by set."""
    from microneedling.engine.endpoints import parse_endpoint
    from microneedling.engine.prepare import nominal_set
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.parameters.sampling import sample_parameter_sets

    courses = _reading_cohort()
    ps = load_parameters()
    pool = [nominal_set(ps)[0], *sample_parameter_sets(ps, 3, 7)]
    sets = [pool[i % len(pool)] for i in range(len(courses))]
    factors = {"k_1": np.linspace(0.8, 1.2, len(courses))}
    reads = batch.Reads((parse_endpoint("scar_depth"), parse_endpoint("erythema_days")), (30.0,))
    runs = []
    for stacked_from in (2, 10**9):
        monkeypatch.setattr(batch, "OBSERVE_STACKED_FROM", stacked_from)
        runs.append(
            [
                simulate_batch(courses, sets, healing_factors=factors, parallel=False, **kw)
                for kw in ({}, {"reads": reads})
            ]
        )
    for one_call, per_set in zip(*runs, strict=True):
        _same(one_call, per_set)
    assert np.isfinite(runs[0][0].observables["masi_score"]).any()


def test_session_inputs_that_are_no_longer_healing_states_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from microneedling.engine.endpoints import parse_endpoint

    course = Course.from_file(EXAMPLES / "acne-scars-rolling-cheek.toml")
    observables = batch.observe.observables

    def changed(*args: Any, **kw: Any) -> dict[str, np.ndarray]:
        out = observables(*args, **kw)
        out["pih_stimulus"] = 2.0 * out["pih_stimulus"]  # a new definition in physics.observe
        return out

    monkeypatch.setattr(batch.observe, "observables", changed)
    reads = batch.Reads((parse_endpoint("scar_depth"),))
    with pytest.raises(RuntimeError, match="pih_stimulus"):
        simulate_batch([course], parallel=False, reads=reads)


def test_session_jumps_put_blood_only_where_a_roller_cut_clefts() -> None:
    """A roller below the capillary loops leaves retained blood (Bl) in both dermal layers; a pen's
    and a stamp's vertical strokes cut no cleft and leave none; a scar floor gets the site's
    clefts in the proportion its channels reach it (none where no needle reaches the floor)."""
    from microneedling.engine.prepare import FEATURE_INJURY, prepare_many
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.physics.healing_rhs import IX_BL, N_DERMAL

    ps = load_parameters()
    roller = Course.from_toml(EXAMPLES / "acne-scars-rolling-cheek.toml")
    stamp = Course.from_toml(EXAMPLES / "stamp-small-scar.toml")
    pen = Course.from_toml(EXAMPLES / "forehead-fine-lines.toml")
    prep = prepare_many([roller, stamp, pen], ps)
    kinds = [c.device.type for c in (roller, stamp, pen)]
    assert kinds[0] == "roller" and "roller" not in kinds[1:]
    jumps = batch.session_jumps(prep)
    on = prep.session_mask
    blood = jumps[:, :, [IX_BL, N_DERMAL + IX_BL]]
    assert np.all(blood[0][on[0]] > 0.0)
    assert np.all(blood[1:] == 0.0)
    # the roller's scar floor: clefts scaled by the floor's reach, never above the site's blood
    name = FEATURE_INJURY["scar"]
    floor = batch.session_jumps(prep, injured=getattr(prep, name), rows=np.array([0]))
    site_phi = prep.injured_fraction[0][:, 1:].sum(axis=1)
    floor_phi = getattr(prep, name)[0][:, 1:].sum(axis=1)
    assert np.all(floor[0, :, IX_BL] <= blood[0, :, 0] + 1e-15)
    assert np.all((floor[0, :, IX_BL] > 0.0) == (floor_phi > 0.0))
    assert np.all(floor_phi <= site_phi + 1e-15)
    # no reach, no blood: the same floor with its injury removed
    none = batch.session_jumps(prep, injured=np.zeros_like(getattr(prep, name)), rows=np.array([0]))
    assert np.all(none[0, :, IX_BL] == 0.0)


def test_a_cohort_under_many_sets_prepared_in_one_pass_is_prepared_set_by_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Heterogeneous cohorts (every example, trial patients of both arms) each course under one
    of several sets, some (course, set) pairs repeated and some courses under two sets, with
    per-patient healing factors, with and without reads: every output and prepared field as with
    each set's courses prepared on their own (tests/engine/test_prepare.pairs_reference)."""
    from microneedling.engine.endpoints import parse_endpoint
    from microneedling.engine.prepare import nominal_set
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.parameters.sampling import sample_parameter_sets
    from tests.engine.test_prepare import _fields_equal, pairs_reference

    cohort = _reading_cohort()
    plain = [c for c in cohort if not any(s.topical is not None for s in c.sessions)]
    ps = load_parameters()
    pool = [nominal_set(ps)[0], *sample_parameter_sets(ps, 4, 11)]
    reads = batch.Reads((parse_endpoint("scar_depth"), parse_endpoint("erythema_days")), (30.0,))
    cases = [
        (cohort, [pool[i % 3] for i in range(len(cohort))]),  # topicals: set by set
        (plain, [pool[(i * 7) % 5] for i in range(len(plain))]),
        # repeated pairs, and courses under two sets (not an ensemble)
        (plain[:8] + plain[:8] + plain[2:5], [pool[i % 2] for i in range(8)] * 2 + pool[2:5]),
    ]
    runs = []
    for reference in (False, True):
        if reference:
            monkeypatch.setattr(batch, "prepare_pairs", pairs_reference)
        runs.append(
            [
                simulate_batch(
                    courses,
                    sets,
                    healing_factors={"k_1": np.linspace(0.8, 1.2, len(courses))},
                    parallel=False,
                    **kw,
                )
                for courses, sets in cases
                for kw in ({}, {"reads": reads})
            ]
        )
    for got, want in zip(*runs, strict=True):
        _same(got, want)
        assert _fields_equal(got.prepared, want.prepared) == []
        assert np.array_equal(got.course_index, want.course_index) and got.site == want.site

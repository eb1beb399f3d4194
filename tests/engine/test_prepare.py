"""``prepare_many``: a cohort prepared in one batched call gives the numbers of each course
prepared alone (every step is elementwise over cases), and ``simulate_batch`` keeps the course
order when courses share parameter sets, repeat, or use different devices."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

import microneedling as mn
from microneedling.engine.batch import simulate_batch
from microneedling.engine.prepare import Prepared, concat_prepared, prepare, prepare_many
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import sample_parameter_sets
from microneedling.physics.healing_rhs import PARAM_NAMES
from microneedling.studies.trial.population import sample_patients
from microneedling.studies.trial.spec import TrialSpec, arm_course
from tests.paths import EXAMPLES


def _fields_equal(a: Prepared, b: Prepared) -> list[str]:
    """Names of the fields (and baseline fields) that are not bit-identical."""
    bad = []
    for f in dataclasses.fields(Prepared):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "observe":
            if x != y:
                bad.append(f.name)
        elif f.name == "baseline":
            bad += [
                f"baseline.{g.name}"
                for g in dataclasses.fields(x)
                if not np.array_equal(getattr(x, g.name), getattr(y, g.name), equal_nan=True)
            ]
        elif not (np.shape(x) == np.shape(y) and np.array_equal(x, y, equal_nan=True)):
            bad.append(f.name)
    return bad


def _cohort() -> list[mn.Course]:
    """Every shipped example, and virtual patients of a two-arm trial on two devices (a roller
    arm and a pen arm), topicals, scars and pigment included."""
    courses = [mn.Course.from_file(p) for p in sorted(EXAMPLES.glob("*.toml"))]
    spec = TrialSpec.from_toml(EXAMPLES / "trials" / "acne-roller-vs-pen.toml")
    batch = sample_patients(spec.population, 0, 12, seed=spec.seed, stream=0)
    for arm in spec.arms:
        courses += [arm_course(arm, batch, i, spec.population) for i in range(12)]
    return courses


def test_a_cohort_in_one_call_is_each_course_alone_bit_for_bit() -> None:
    ps = load_parameters()
    courses = _cohort()
    devices = {c.device.type for c in courses}
    assert {"roller", "pen", "stamp"} <= devices  # several device groups are scattered back
    assert any(s.topical is not None for c in courses for s in c.sessions)
    together = prepare_many(courses, ps)
    alone = concat_prepared([prepare(c, ps) for c in courses])
    assert _fields_equal(together, alone) == []
    assert together.session_days.shape[0] == sum(len(c.sites) for c in courses)


def test_order_of_the_courses_only_reorders_the_cases() -> None:
    ps = load_parameters()
    courses = _cohort()[:20]
    order = np.random.default_rng(1).permutation(len(courses))
    shuffled = prepare_many([courses[i] for i in order], ps)
    rows = np.concatenate(
        [np.flatnonzero(np.repeat(np.arange(len(courses)), [len(c.sites) for c in courses]) == i)
         for i in order]
    )  # fmt: skip
    direct = prepare_many(courses, ps)
    np.testing.assert_array_equal(shuffled.params, direct.params[rows])
    np.testing.assert_array_equal(shuffled.injured_fraction, direct.injured_fraction[rows])


def test_prepare_many_refuses_no_course() -> None:
    with pytest.raises(ValueError, match="no course"):
        prepare_many([], load_parameters())


def test_batch_with_repeated_courses_and_several_sets_keeps_the_course_order() -> None:
    """[a, b, a, b] under [s0, s0, s1, s0]: each course-set pair gives what it gives alone."""
    ps = load_parameters()
    s0, s1 = ps, sample_parameter_sets(ps, 1, seed=3)[0]
    a = mn.Course.from_file(EXAMPLES / "acne-scars-rolling-cheek.toml")
    b = mn.Course.from_file(EXAMPLES / "melasma-tranexamic-acid.toml")
    courses, sets = [a, b, a, b], [s0, s0, s1, s0]
    run = simulate_batch(courses, sets)
    t_out = run.t
    for j, (c, s) in enumerate(zip(courses, sets, strict=True)):
        alone = simulate_batch([c], s, t_out=t_out)
        rows = np.flatnonzero(run.course_index == j)
        for name in ("collagen_change", "melanin_index", "scar_depth"):
            got: Any = run.observables[name][rows]
            np.testing.assert_allclose(got, alone.observables[name], rtol=1e-9, equal_nan=True)
    assert not np.allclose(
        run.observables["collagen_change"][np.flatnonzero(run.course_index == 0)],
        run.observables["collagen_change"][np.flatnonzero(run.course_index == 2)],
    )  # the second set does change the result: the comparison is not vacuous


def test_coefficients_kept_per_set_of_values_record_their_lookups_and_follow_edits() -> None:
    course = mn.Course.from_toml(EXAMPLES / "melasma-tranexamic-acid.toml")  # a topical too
    base = load_parameters()
    first = base.recording()
    a = prepare(course, first)
    again = base.recording()  # same values: the coefficients come from the kept ones
    b = prepare(course, again)
    assert _fields_equal(a, b) == [] and a.observe is b.observe
    assert again.used == first.used  # the lookups are recorded as if made
    assert {"healing.mu_I", "observe.erythema_threshold", "needles.damage_zone_factor"} <= set(
        again.used
    )
    # the same values made afresh (nothing kept) give the same numbers
    fresh = dataclasses.replace(base, parameters=dict(base.parameters), _used=set())
    c = prepare(course, fresh)
    assert _fields_equal(a, c) == [] and fresh.used == first.used and c.observe is not a.observe
    # an edited set gets its own coefficients
    mu = base.parameters["healing.mu_I"].value
    thr = base.parameters["observe.erythema_threshold"].value
    edited = base.with_values({"healing.mu_I": 0.5 * mu, "observe.erythema_threshold": 0.5 * thr})
    d = prepare(course, edited)
    col = PARAM_NAMES.index("mu_I")
    assert np.all(d.params[:, col] == 0.5 * a.params[:, col])
    assert d.observe.erythema_threshold == 0.5 * a.observe.erythema_threshold
    assert prepare(course, base.recording()).params[0, col] == a.params[0, col]
    assert a.params.flags.writeable  # the per-case matrix is the run's own

"""``prepare_many``: a cohort prepared in one batched call gives the numbers of each course
prepared alone (every step is elementwise over cases), and ``simulate_batch`` keeps the course
order when courses share parameter sets, repeat, or use different devices."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

import microneedling as mn
from microneedling.engine import prepare as prepare_module
from microneedling.engine.batch import simulate_batch
from microneedling.engine.prepare import (
    Prepared,
    concat_prepared,
    prepare,
    prepare_many,
    prepare_pairs,
    prepare_sets,
    take_prepared,
)
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import sample_parameter_sets
from microneedling.physics.healing_rhs import PARAM_NAMES
from microneedling.studies.trial.population import sample_patients
from microneedling.studies.trial.spec import TrialSpec, arm_course
from tests.counting import count_calls
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


def test_repeated_topical_sessions_are_computed_once_with_the_same_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = (EXAMPLES / "melasma-tranexamic-acid.toml").read_text()
    # 12 identical topical sessions; then some differing in concentration and pH
    mixed = text.replace("concentration_mg_ml = 5.0", "concentration_mg_ml = 2.0\nph = 6.5", 3)
    mixed = mixed.replace("concentration_mg_ml = 5.0", "concentration_mg_ml = 2.0", 2)
    courses = [
        mn.Course.from_toml_text(text),
        mn.Course.from_toml_text(mixed),
        mn.Course.from_toml(EXAMPLES / "serum-absorption-study.toml"),
    ]
    ps = load_parameters()
    calls = count_calls(  # the sessions each call computes
        monkeypatch,
        prepare_module.transport,
        "absorb",
        lambda solute, c0, *args, **kw: len(np.atleast_1d(c0)),
    )
    monkeypatch.setattr(prepare_module, "_ABSORBED", {})  # no result kept from other tests
    once = [prepare(c, ps) for c in courses]
    assert calls == [1, 3, 1]  # 12 sessions -> 1; 12 -> (5.0), (2.0, pH 6.5), (2.0); 1 -> 1
    monkeypatch.setattr(  # every row computed
        prepare_module.percase, "distinct_rows", lambda x: (np.arange(len(x)), np.arange(len(x)))
    )
    monkeypatch.setattr(prepare_module, "_ABSORBED", {})
    every = [prepare(c, ps) for c in courses]
    assert calls[3:] == [12, 12, 1]
    for a, b in zip(once, every, strict=True):
        assert _fields_equal(a, b) == []
    absorbed = once[1].absorbed_ug_cm2[0]  # less absorbed from the weaker product
    assert np.all(absorbed[:5] < absorbed[-1]) and np.all(absorbed[5:] == absorbed[-1])


def test_nominal_set_is_posterior_nominal_made_once_per_set_of_values() -> None:
    from microneedling.engine.prepare import nominal_set
    from microneedling.parameters.sampling import posterior_nominal, shipped_posterior

    base = load_parameters()
    expected, post = posterior_nominal(base), shipped_posterior(base)
    assert post is not None  # the shipped posterior applies to the shipped set: not vacuous
    first, post_1 = nominal_set(base.recording())
    second, post_2 = nominal_set(base.recording())
    assert post_1 is post and post_2 is post
    for got in (first, second):
        assert got.label == expected.label and got.hash == expected.hash
        assert dict(got.parameters) == dict(expected.parameters)
        assert got.used == []  # a fresh view: its lookups are its own
    assert first.parameters is second.parameters  # made once: the per-set coefficients are kept
    assert first is not second
    # the lookups of a course prepared under either view are those under posterior_nominal's set
    course = mn.Course.from_toml(EXAMPLES / "acne-scars-rolling-cheek.toml")
    a, b = prepare(course, expected), prepare(course, first)
    assert _fields_equal(a, b) == [] and first.used == expected.used
    # a set the posterior does not apply to (an edited calibrated member) is its own nominal set
    member = post.factors[0]["prior"][0]["member"]
    value = base.parameters[member].value
    edited = base.with_values({member: 0.5 * value if isinstance(value, float) else value})
    assert shipped_posterior(edited) is None
    same, none = nominal_set(edited)
    assert same is edited and none is None


def test_ensemble_draws_do_not_evict_the_nominal_sets_coefficients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 70-draw simulate prepares 71 sets (140 entries of draws); the draws' entries go to a pool
    of their own, so the nominal set's coefficients are still kept for the next run (in one
    shared pool of 128 they were evicted every run), and a reused draw still finds its own."""
    from microneedling.engine.prepare import nominal_set

    course = mn.Course.from_toml(EXAMPLES / "acne-scars-rolling-cheek.toml")
    monkeypatch.setattr(prepare_module, "_PER_SET", {})
    monkeypatch.setattr(prepare_module, "_PER_DRAW", {})
    monkeypatch.setattr(prepare_module, "PER_DRAW_ENTRIES", 128)  # the bound, at a cheap size
    mn.simulate(course, draws=70, seed=2)  # per draw: healing and observation coefficients
    centre, _ = nominal_set(load_parameters())
    nominal_keys = {k[1] for k in prepare_module._PER_SET if k[0] == id(centre.parameters)}
    assert {"healing", "observe"} <= nominal_keys  # (needles, closure: read side by side)
    assert all(not v[1].is_draw for v in prepare_module._PER_SET.values())
    assert len(prepare_module._PER_DRAW) == 128  # the draws' own pool, bounded (140 made)
    calls = count_calls(monkeypatch, prepare_module.healing, "parameter_vector")
    draw = sample_parameter_sets(load_parameters(), 1, seed=2)[0]
    assert draw.is_draw
    prepare(course, centre)  # kept: not made again
    assert calls == []
    first = prepare(course, draw)
    again = prepare(course, draw)  # a reused draw: made once
    assert calls == [1] and _fields_equal(first, again) == []
    assert all(k[0] != id(draw.parameters) for k in prepare_module._PER_SET)


# ------------------------------------------------------------------ several sets in one pass
def _per_set_reference(courses: list[mn.Course], sets: list[Any]) -> tuple[Prepared, list[Any]]:
    """The path :func:`prepare_sets` replaces, kept as the reference: each set on its own."""
    parts = [prepare_many(courses, s) for s in sets]
    return concat_prepared(parts), [p.observe for p in parts]


def _ensemble(posterior: bool, seed: int) -> list[Any]:
    from microneedling.engine.prepare import nominal_set

    ps = load_parameters()
    return [nominal_set(ps)[0], *sample_parameter_sets(ps, 6, seed, posterior=posterior)]


@pytest.mark.parametrize("posterior", [True, False])
def test_sets_side_by_side_give_each_set_alone_bit_for_bit(posterior: bool) -> None:
    """Every example and trial patient (three device kinds, scars, wrinkles, striae, pigment,
    primed and photoprotected patients) under the nominal set and six draws: the same numbers
    and the same recorded lookups as set by set, for a cohort and for each course alone."""
    every = _cohort()
    plain = [c for c in every if not any(s.topical is not None for s in c.sessions)]
    assert len({c.device.type for c in plain}) == 3 and len(plain) > 20
    for courses in (plain, plain[:1], plain[-1:], every[:6]):  # every[:6]: topicals, set by set
        sets, ref_sets = _ensemble(posterior, 5), _ensemble(posterior, 5)
        got, observes = prepare_sets(courses, sets)
        want, want_observes = _per_set_reference(courses, ref_sets)
        assert _fields_equal(got, want) == []
        assert observes == want_observes
        assert [s.used for s in sets] == [s.used for s in ref_sets]
    first = prepare_sets(plain, _ensemble(posterior, 5))[0]
    other = prepare_sets(plain, _ensemble(posterior, 6))[0]
    assert not np.array_equal(
        first.penetration_depth_um, other.penetration_depth_um, equal_nan=True
    )


def pairs_reference(courses: list[mn.Course], sets: list[Any]) -> tuple[Prepared, list[Any]]:
    """The path :func:`prepare_pairs` replaces, kept as the reference: each distinct set's
    courses with :func:`prepare_many`, the cases then taken back into pair order."""
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(sets):
        groups.setdefault(id(s), []).append(i)
    parts = [prepare_many([courses[i] for i in mine], sets[mine[0]]) for mine in groups.values()]
    n_sites = [len(c.sites) for c in courses]
    first = np.concatenate([[0], np.cumsum(n_sites)])
    order = np.concatenate(
        [first[i] + np.arange(n_sites[i]) for mine in groups.values() for i in mine]
    )
    rows = np.argsort(order)
    observe_of = {key: part.observe for key, part in zip(groups, parts, strict=True)}
    return take_prepared(concat_prepared(parts), rows), [observe_of[id(s)] for s in sets]


@pytest.mark.parametrize("posterior", [True, False])
def test_pairs_side_by_side_give_each_set_alone_bit_for_bit(posterior: bool) -> None:
    """Every example and trial patient (three device kinds, sessions of different counts,
    scars, wrinkles, striae, pigment, primed and photoprotected patients), each course under one
    of seven sets (in turn, and shuffled, and one set left without courses): the numbers and
    recorded lookups of each set's courses prepared alone, in pair order. With topicals the sets
    are prepared one by one (same numbers)."""
    every = _cohort()
    plain = [c for c in every if not any(s.topical is not None for s in c.sessions)]
    rng = np.random.default_rng(3)
    assert len({len(c.sessions) for c in plain}) > 1
    for courses, pick in (
        (plain, lambda i: i % 7),
        (plain, lambda i: int(rng.integers(1, 7))),  # set 0 unused
        (plain[:3], lambda i: 2),  # one set: prepare_many
        (every[:9], lambda i: i % 3),  # topicals: set by set
    ):
        sets, ref_sets = _ensemble(posterior, 5), _ensemble(posterior, 5)
        which = [pick(i) for i in range(len(courses))]
        got, observes = prepare_pairs(courses, [sets[w] for w in which])
        want, want_observes = pairs_reference(courses, [ref_sets[w] for w in which])
        assert _fields_equal(got, want) == []
        assert observes == want_observes
        assert [s.used for s in sets] == [s.used for s in ref_sets]
    with pytest.raises(ValueError, match="one parameter set per course"):
        prepare_pairs(plain[:2], _ensemble(posterior, 5)[:1])


def test_sets_with_other_units_are_prepared_set_by_set() -> None:
    """A set holding a needle parameter in other units (the same quantity): its values cannot
    stand beside the others' as they are, so the sets are prepared one by one, same numbers."""
    ps = load_parameters()
    p = ps.parameters["needles.cone_length"]
    assert p.units == "um"
    other_units = dataclasses.replace(p, value=p.value * 1e-3, units="mm")
    edited = dataclasses.replace(ps, parameters={**ps.parameters, p.name: other_units}, _used=set())
    course = mn.Course.from_toml(EXAMPLES / "acne-scars-rolling-cheek.toml")
    sets = [ps.recording(), edited, sample_parameter_sets(ps, 1, 1)[0]]
    got, _ = prepare_sets([course], sets)
    want, _ = _per_set_reference([course], [ps.recording(), edited, sets[2]])
    assert _fields_equal(got, want) == []
    stack = prepare_module._Stack(sets)
    with pytest.raises(prepare_module._Unstackable):
        stack.value("needles.cone_length", "m")


def test_simulate_with_draws_is_the_set_by_set_ensemble_in_every_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """simulate(draws=8): every variable and attribute (but the time of creation) as with each
    set prepared on its own."""
    from microneedling.engine import batch

    course = mn.Course.from_toml(EXAMPLES / "acne-scars-rolling-cheek.toml")
    got = mn.simulate(course, draws=8, parallel=False).dataset
    monkeypatch.setattr(batch, "prepare_sets", _per_set_reference)
    want = mn.simulate(course, draws=8, parallel=False).dataset
    assert set(got.variables) == set(want.variables) and len(got.data_vars) > 100
    for name in want.variables:
        x, y = got[name].values, want[name].values
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
        assert got[name].attrs == want[name].attrs
    assert {k: v for k, v in got.attrs.items() if k != "created"} == {
        k: v for k, v in want.attrs.items() if k != "created"
    }


def test_absorption_is_kept_for_the_same_transport_inputs_across_parameter_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two parameter sets that differ only outside transport (and needles) prepare a topical
    course with one absorption solve; a transport coefficient that differs makes another. The
    kept result gives the numbers of a fresh solve, bit for bit."""
    course = mn.Course.from_toml(EXAMPLES / "melasma-tranexamic-acid.toml")
    ps = load_parameters()
    other_healing = ps.with_values({"healing.k_D": 1.3 * float(ps.parameter("healing.k_D").value)})  # type: ignore[arg-type]
    k = float(ps.parameter("transport.clearance_rate").value)  # type: ignore[arg-type]
    other_transport = ps.with_values({"transport.clearance_rate": 1.5 * k})
    monkeypatch.setattr(prepare_module, "_ABSORBED", {})
    calls = count_calls(monkeypatch, prepare_module.transport, "absorb")
    first = prepare(course, ps)
    same = prepare(course, other_healing)
    assert len(calls) == 1
    moved = prepare(course, other_transport)
    assert len(calls) == 2
    assert not np.array_equal(moved.absorbed_ug_cm2, first.absorbed_ug_cm2)
    monkeypatch.setattr(prepare_module, "_ABSORBED", {})
    fresh = prepare(course, other_healing)
    assert len(calls) == 3
    assert _fields_equal(same, fresh) == []

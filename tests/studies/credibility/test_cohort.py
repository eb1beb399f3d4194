"""Virtual cohorts whose patients differ in their lesions and in themselves (calibrate.cohort_values):
the rule of who differs (calibrate.PATIENT_ATTRIBUTES / TREATMENT_SETTINGS, docs/credibility.md),
the patients' draws within the protocol's ranges, and what they do to the cohort's spread."""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

import numpy as np
import pytest

from microneedling.errors import InputError
from microneedling.parameters.parameter_set import load_parameters
from microneedling.studies.credibility.calibrate import (
    PATIENT_ATTRIBUTES,
    TREATMENT_SETTINGS,
    apply_patient,
    cohort_courses,
    cohort_values,
    patient_draws,
    patient_ranges,
    setting_role,
)
from microneedling.studies.credibility.literature import (
    Protocol,
    load_protocol_file,
    load_protocols,
    rows,
)
from tests.paths import REPO

PARK = "park2012_marked_excellent"  # striae: age, skin type, width, depth, stage with ranges


@pytest.fixture(scope="module")
def protocols() -> dict[str, Protocol]:
    return load_protocols()


def _with_courses(protocols: dict[str, Protocol]) -> list[Protocol]:
    return [p for p in protocols.values() if p.evaluable and p.course is not None]


def test_the_rule_is_the_one_docs_credibility_writes() -> None:
    """The marked line of docs/credibility.md ("Virtual cohorts: who differs") lists the code's
    two lists, in order, and the section names every entry."""
    text = (REPO / "docs" / "credibility.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- cohort-rule: patient=(\S+) treatment=(\S+) -->", text)
    assert m is not None
    assert tuple(m.group(1).split(",")) == PATIENT_ATTRIBUTES
    assert tuple(m.group(2).split(",")) == TREATMENT_SETTINGS
    section = text[text.index("### Virtual cohorts: who differs") : m.start()]
    assert "decided 2026-12-07, before any result" in section
    for name in (*PATIENT_ATTRIBUTES, *TREATMENT_SETTINGS):
        assert f"`{name}`" in section, name
    assert not set(PATIENT_ATTRIBUTES) & set(TREATMENT_SETTINGS)


def test_every_range_and_stand_in_of_the_protocols_file_has_one_role() -> None:
    """Every name of a ``ranges`` or ``stand_ins`` table in protocols.toml is a patient attribute
    or a treatment setting (not both); an unknown name is an error, not silently kept."""
    seen: dict[str, str] = {}
    for t in load_protocol_file()["rows"].values():
        for name in (*t.get("ranges", {}), *t.get("stand_ins", {})):
            seen[name] = setting_role(name)
    assert {n for n, r in seen.items() if r == "patient"} >= {
        "age_years",
        "fitzpatrick",
        "scar_type",
        "scar.depth_mm",
        "striae.width_mm",
        "striae.stage",
        "striae.depth_mm",
        "pigment.melanin_index",
        "wrinkles.depth_um",
    }
    for name in ("needle_length_mm", "passes", "interval_days", "device", "site", "sessions"):
        assert seen[name] == "treatment", name
    assert seen["time_after_last_days"] == seen["topical.volume_ul_cm2"] == "treatment"
    with pytest.raises(InputError):
        setting_role("hair_colour")


def _treatment(course: dict[str, Any], attributes: dict[str, Any]) -> dict[str, Any]:
    """The course with the patient attributes the protocol draws blanked out."""
    c = copy.deepcopy(course)
    for name in attributes:
        if name in ("age_years", "fitzpatrick"):
            c["patient"][name] = None
            continue
        fld = "scar_type" if name == "scar_type" else name.split(".", 1)[1]
        for site in c["sites"]:
            for cond in site["conditions"]:
                cond.pop(fld, None)  # drawn, whether or not the protocol's course gives it
    return c


def test_treatment_settings_never_vary_across_patients(protocols: dict[str, Protocol]) -> None:
    """For every protocol with a course: the virtual patients' courses differ from the protocol's
    only in the patient attributes it gives a range for, each drawn inside its range (or among
    its choices); the device, sessions (days, needle, passes, topical), site, horizon and sex are
    the protocol's. A protocol without patient ranges gives the protocol's course to all."""
    drawn = 0
    for p in _with_courses(protocols):
        assert p.course is not None
        ranges = patient_ranges(p)
        courses = cohort_courses(p, 12, 0)
        want = _treatment(p.course, ranges)
        for c in courses:
            assert _treatment(c, ranges) == want, p.key
            if not ranges:
                assert c == p.course, p.key
        for name, (kind, spec) in ranges.items():
            drawn += 1
            if name in ("age_years", "fitzpatrick"):
                got = [c["patient"][name] for c in courses]
            else:
                fld = "scar_type" if name == "scar_type" else name.split(".", 1)[1]
                got = [
                    x[fld] for c in courses for s in c["sites"] for x in s["conditions"] if fld in x
                ]
            assert got, (p.key, name)
            if kind == "choice":
                assert set(got) <= set(spec), (p.key, name)
            else:
                assert all(spec[0] <= g <= spec[1] for g in got), (p.key, name)
            if kind == "integer":
                assert all(isinstance(g, int) for g in got), (p.key, name)
    assert drawn > 200  # most protocols give an age and a skin type range


def test_same_seed_same_patients_and_each_attribute_its_own_stream(
    protocols: dict[str, Protocol],
) -> None:
    """The draws are a function of the seed: the same seed gives the same patients, another seed
    others; an attribute's draws do not change when the protocol loses another attribute."""
    p = protocols[PARK]
    a, b, c = patient_draws(p, 32, 7), patient_draws(p, 32, 7), patient_draws(p, 32, 8)
    assert a.keys() == {
        "age_years",
        "fitzpatrick",
        "striae.width_mm",
        "striae.depth_mm",
        "striae.stage",
    }
    for k in a:
        assert np.array_equal(a[k], b[k])
        assert not np.array_equal(a[k], c[k]), k
    fewer = dataclasses.replace(p, stand_ins={"device": ("mf8", "pen")})
    d = patient_draws(fewer, 32, 7)
    assert d.keys() == {"age_years", "fitzpatrick"}
    assert np.array_equal(d["age_years"], a["age_years"])
    assert set(a["striae.stage"]) == {"alba", "rubra"}


def test_apply_patient_sets_the_condition_and_refuses_a_treatment_setting(
    protocols: dict[str, Protocol],
) -> None:
    p = next(
        q
        for q in _with_courses(protocols)
        if q.course is not None
        and any(x["type"] == "acne_scar" for s in q.course["sites"] for x in s["conditions"])
    )
    assert p.course is not None
    c = apply_patient(p.course, {"scar_type": "icepick", "scar.depth_mm": 0.9, "age_years": 33.4})
    (scar,) = [x for s in c["sites"] for x in s["conditions"] if x["type"] == "acne_scar"]
    assert scar["scar_type"] == "icepick" and scar["depth_mm"] == 0.9
    assert c["patient"]["age_years"] == 33
    assert p.course != c  # a copy: the protocol's course is untouched
    with pytest.raises(InputError):
        apply_patient(p.course, {"needle_length_mm": 2.0})
    with pytest.raises(InputError):
        apply_patient(p.course, {"striae.width_mm": 2.0})  # no striae on a scar course


def test_a_cohort_over_the_ranges_spreads_more_and_repeats_for_a_seed(
    protocols: dict[str, Protocol],
) -> None:
    """Von Dalwig 2020's rolling-scar cohort (32 patients at the parameter file's values): with
    each patient's own age, skin type and scar depth (0.3-1.0 mm) the between-patient SD of the
    grade change is larger than with the protocol's one patient and scar (healing factors only;
    1.7-fold at seed 0); the same seed gives the same numbers bit for bit, another seed others."""
    key = "vondalwig2020_rolling"
    p = protocols[key]
    assert "scar.depth_mm" in patient_ranges(p)
    row = next(r for r in rows() if r.key == key)
    ps = load_parameters()
    fixed = dataclasses.replace(p, ranges={}, stand_ins={})
    _, uniform = cohort_values(row, fixed, [ps], 32, 0)
    _, varied = cohort_values(row, p, [ps], 32, 0)
    _, again = cohort_values(row, p, [ps], 32, 0)
    _, other = cohort_values(row, p, [ps], 32, 1)
    assert varied.shape == (1, 32) and np.all(np.isfinite(varied))
    assert np.array_equal(varied, again)
    assert not np.array_equal(varied, other)
    _, two = cohort_values(row, p, [ps, ps], 32, 0)  # the same patients under every set
    assert np.array_equal(two, np.vstack([varied, varied]))
    assert np.std(varied, ddof=1) > 1.3 * np.std(uniform, ddof=1)

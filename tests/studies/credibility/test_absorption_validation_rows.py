"""The absorption validation rows whose protocols were written on 2026-12-07 (issue 10): the three
niacinamide donor-pH rows (Sci Rep s41598-026-41992-4, Table 1) made evaluable by the rule their
protocols stated (the end point ``absorbed_intact``, ``topical.ph`` and ``topical.in_vitro``
exist), and amantadine's passive flux (PMC4695825), left not evaluable (no donor concentration in
any stored copy). Structure only: these are held-out rows, and nothing here runs the model on
them."""

from __future__ import annotations

import copy

from microneedling.course.model import Course
from microneedling.studies.credibility.literature import load_literature, load_protocols

ARMS = {"niacinamide_ph5p0_permeated": 5.0, "niacinamide_ph7p4_permeated": 7.4}
CONTRAST = "niacinamide_ph7p4_minus_ph5p0"
AMANTADINE = "amantadine_passive_flux"


def test_the_niacinamide_rows_are_evaluable_validation_rows_of_intact_skin_in_vitro() -> None:
    lit = {r.key: r for r in load_literature()}
    protocols = load_protocols()
    tops = []
    for key, ph in {**ARMS, CONTRAST: 7.4}.items():
        assert lit[key].role == "validation" and lit[key].observable == "absorbed_intact", key
        p = protocols[key]
        assert p.evaluable and not p.awaiting and not p.reason, key
        assert p.endpoint == "absorbed_intact" and p.compare == "value", key
        assert p.course is not None
        Course.from_dict(p.course, source=key)  # a course the engine accepts
        (s,) = p.course["sessions"]
        top = s["topical"]
        # reported: the molecule, the donor pH, 24 h, an excised skin in a diffusion cell
        assert top["product"] == "niacinamide" and top["ph"] == ph, key
        assert top["contact_hours"] == 24.0 and top["in_vitro"] is True, key
        # the stand-ins lie in their ranges, and the assumptions name them
        lo, hi = p.stand_ins["topical.concentration_mg_ml"]
        assert lo <= top["concentration_mg_ml"] <= hi, key
        lo, hi = p.stand_ins["topical.volume_ul_cm2"]
        assert lo <= top["volume_ul_cm2"] <= hi, key
        for word in ("Stand-ins", "DERIVED", "receptor", "before any model run"):
            assert word in p.assumptions, (key, word)
        tops.append({k: v for k, v in top.items() if k != "ph"})
    assert all(t == tops[0] for t in tops)  # the arms differ in the pH only


def test_the_contrast_rows_comparator_is_the_same_course_at_ph_5() -> None:
    lit = {r.key: r for r in load_literature()}
    assert lit[CONTRAST].two_arm and lit[CONTRAST].contrast == "difference"
    p = load_protocols()[CONTRAST]
    ref = p.reference_protocol()
    assert ref is not None and ref.course is not None and p.course is not None
    assert ref.endpoint == p.endpoint == "absorbed_intact"
    assert ref.course["sessions"][0]["topical"]["ph"] == 5.0
    # nothing but the pH (and the course's name) differs between the arms
    same = copy.deepcopy(ref.course)
    same["sessions"][0]["topical"]["ph"] = 7.4
    same["name"] = p.course["name"]
    assert same == p.course
    # the comparator arm is the pH 5.0 row's own course
    arm = load_protocols()["niacinamide_ph5p0_permeated"].course
    assert arm is not None
    assert arm["sessions"] == ref.course["sessions"]


def test_amantadine_flux_stays_not_evaluable_with_its_reason() -> None:
    p = load_protocols()[AMANTADINE]
    assert not p.evaluable and not p.awaiting
    for words in ("donor concentration", "stored copy", "delivery_validation.toml"):
        assert words in p.reason, words

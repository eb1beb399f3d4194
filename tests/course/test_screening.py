"""Screening: every rule of data/contraindications.toml refuses (absolute) or warns (relative)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from microneedling.course.patient import PatientFile
from microneedling.course.screening import PlanRefused, load_rules, screen
from microneedling.parameters.parameter_set import load_references
from microneedling.studies.planning.search import search
from tests.paths import DATA
from tests.planner_helpers import patient_dict

RULES = load_rules()
REQUIRED_TOPICS = {
    "isotretinoin_recent",
    "active_infection",
    "active_acne",
    "keloid_history",
    "hypertrophic_scar_history",
    "anticoagulants",
    "bleeding_disorder",
    "pregnancy",
    "diabetes_uncontrolled",
    "immunosuppressed",
    "radiotherapy_recent",
    "eczema_psoriasis_active",
    "vitiligo_active",
    "gold_threads",
    "filler_recent",
}


def _trigger(rule: Any, value: Any = None) -> PatientFile:
    if value is None:
        value = True if rule.test == "true" else rule.threshold_months / 2.0
    if rule.scope == "patient":
        return PatientFile.from_dict(patient_dict(history={rule.field: value}))
    return PatientFile.from_dict(patient_dict(site_answers={rule.field: value}))


def test_rule_file_covers_the_required_contraindications() -> None:
    keys = {r.key for r in RULES}
    assert REQUIRED_TOPICS <= keys
    refs = load_references()
    for r in RULES:
        assert r.sources and all(s in refs for s in r.sources), r.key
        assert r.classification in ("absolute", "relative")
        assert r.reason and r.note


def test_every_rule_names_a_course_flag_the_course_schema_knows() -> None:
    from microneedling.course.model import History

    for r in RULES:
        if r.course_flag is not None:
            assert r.course_flag in History.model_fields, r.key


def test_thresholds_come_from_safety_toml() -> None:
    from microneedling.parameters.parameter_set import load_parameters

    ps = load_parameters()
    for r in RULES:
        if r.test == "within":
            assert r.threshold_months == pytest.approx(ps.value(r.threshold, "yr") * 12.0)
    iso = next(r for r in RULES if r.key == "isotretinoin_recent")
    assert iso.threshold_months == pytest.approx(6.0)


def test_clean_questionnaire_has_no_findings() -> None:
    assert screen(PatientFile.from_dict(patient_dict())).findings == ()


ABSOLUTE = [r for r in RULES if r.classification == "absolute"]
RELATIVE = [r for r in RULES if r.classification == "relative"]


@pytest.mark.parametrize("rule", ABSOLUTE, ids=lambda r: r.key)
def test_absolute_rule_refuses_before_simulating(rule: Any, monkeypatch) -> None:
    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("simulated despite an absolute contraindication")

    monkeypatch.setattr("microneedling.studies.planning.search.simulate_batch", boom)
    pf = _trigger(rule)
    with pytest.raises(PlanRefused) as exc:
        search(pf)
    msg = str(exc.value)
    assert "\n" not in msg
    assert rule.key in msg and "absolute" in msg
    for s in rule.sources:
        assert s in msg
    assert [f.rule.key for f in exc.value.findings] == [rule.key]


@pytest.mark.parametrize("rule", RELATIVE, ids=lambda r: r.key)
def test_relative_rule_plans_with_a_visible_warning(rule: Any) -> None:
    pf = _trigger(rule)
    result = search(pf)
    texts = result.warnings()
    assert any(rule.key in t and "relative" in t for t in texts)
    if rule.course_flag:
        # the written course carries the finding, so `microneedling simulate` warns too
        hist = result.recommended.course.patient.history
        assert getattr(hist, rule.course_flag)
        assert result.recommended.course.warnings


@pytest.mark.parametrize("rule", [r for r in RULES if r.test == "within"], ids=lambda r: r.key)
def test_window_boundary(rule: Any) -> None:
    assert screen(_trigger(rule, rule.threshold_months * 0.99)).findings
    assert not screen(_trigger(rule, rule.threshold_months)).findings


def test_site_rule_applies_to_its_site_only() -> None:
    d = patient_dict(sites=("cheek", "forehead"))
    d["sites"][1]["active_infection"] = True
    (f,) = screen(PatientFile.from_dict(d)).findings
    assert f.site == "forehead" and f.field_path == "sites[1].active_infection"


def test_rule_file_shape() -> None:
    path = DATA / "contraindications.toml"
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    assert set(raw) == {r.key for r in RULES}
    judged = [k for k, v in raw.items() if v["judgement"]]
    assert judged, "classifications that are judgements must be marked"

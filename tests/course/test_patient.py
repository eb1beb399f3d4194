"""Patient file schema: examples parse; every refusal names the field, the value and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from microneedling.course.patient import PatientFile, PatientFileError, planner_config
from tests.paths import EXAMPLES as EXAMPLES_DIR
from tests.planner_helpers import patient_dict

EXAMPLES = sorted((EXAMPLES_DIR / "patients").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_parse(path: Path) -> None:
    pf = PatientFile.from_toml(path)
    assert pf.sites and all(s.concerns for s in pf.sites)


def test_defaults_come_from_planner_toml() -> None:
    d = patient_dict()
    del d["limits"]
    pf = PatientFile.from_dict(d)
    dflt = planner_config()["default_limits"]
    assert pf.limits.max_sessions == dflt["max_sessions"]
    assert pf.limits.max_downtime_days_per_session == dflt["max_downtime_days_per_session"]
    assert pf.limits.earliest_interval_days == dflt["earliest_interval_days"]
    # the PIH constraint defaults to the parameter file's value
    from microneedling.parameters.parameter_set import load_parameters

    assert pf.limits.pih_limit() == load_parameters().value("planning.max_pih_risk", "1")


def _problems(d: dict) -> list[tuple[str, object, str]]:
    with pytest.raises(PatientFileError) as exc:
        PatientFile.from_dict(d, source="p.toml")
    assert exc.value.source == "p.toml"
    return [(p.field, p.value, p.allowed) for p in exc.value.problems]


@pytest.mark.parametrize(
    ("edit", "field", "value", "allowed_part"),
    [
        (lambda d: d["patient"].update(fitzpatrick="VII"), "patient.fitzpatrick", "VII", "1 to 6"),
        (lambda d: d["patient"].update(age_years=16), "patient.age_years", 16, "18"),
        (
            lambda d: d["sites"][0]["concerns"][0].update(depth_mm=-1.0),
            "sites[0].concerns[0].depth_mm",
            -1.0,
            "> 0",
        ),
        (lambda d: d["sites"][0].update(name="cheeks"), "sites[0].name", "cheeks", "'cheek'"),
        (
            lambda d: d["limits"].update(allowed_topicals=["glitter"]),
            "limits.allowed_topicals[0]",
            "glitter",
            "tranexamic_acid",
        ),
        (
            lambda d: d["limits"].update(earliest_interval_days=42, latest_interval_days=28),
            "limits.latest_interval_days",
            28,
            "earliest_interval_days",
        ),
        (lambda d: d["limits"].update(max_pih_risk=1.5), "limits.max_pih_risk", 1.5, "< 1"),
        (
            lambda d: d["history"].update(isotretinoin_months_ago=-2),
            "history.isotretinoin_months_ago",
            -2,
            "from 0 to 1200",
        ),
        (lambda d: d["sites"][0].update(concerns=[]), "sites[0].concerns", [], "at least one"),
        (
            lambda d: d["history"].update(pregnnt=True),
            "history.pregnnt",
            True,
            "no field 'pregnnt' in history",
        ),
    ],
)
def test_refusals_name_field_value_and_allowed(edit, field, value, allowed_part) -> None:
    d = patient_dict()
    edit(d)
    problems = _problems(d)
    assert len(problems) == 1, problems
    f, v, a = problems[0]
    assert f == field
    assert v == value
    assert allowed_part in a


def test_duplicate_site_refused() -> None:
    d = patient_dict(sites=("cheek", "cheek"))
    ((f, v, _a),) = _problems(d)
    assert f == "sites[1].name" and v == "cheek"


def test_with_limits_overrides_and_validates() -> None:
    pf = PatientFile.from_dict(patient_dict())
    assert pf.with_limits(max_sessions=5, max_pih_risk=None).limits.max_sessions == 5
    with pytest.raises(PatientFileError) as exc:
        pf.with_limits(max_downtime_days_per_session=-1.0)
    assert exc.value.problems[0].field == "limits.max_downtime_days_per_session"


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(PatientFileError, match="no such file"):
        PatientFile.from_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [", encoding="utf-8")
    with pytest.raises(PatientFileError, match="valid TOML"):
        PatientFile.from_toml(bad)

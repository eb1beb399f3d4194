"""Forms ↔ input tables (microneedling.web.forms, presets): exact round trips and refusals."""

from __future__ import annotations

import pytest

from microneedling.course.model import Course
from microneedling.errors import InputError, InputFileError
from microneedling.web.forms import field_errors, flatten, nest, parse_name, typed
from microneedling.web.presets import ABSORB_COURSE, DEVICES, arm_protocol, deep_merge


def test_parse_name() -> None:
    assert parse_name("sites[0].concerns[12].depth_mm") == ["sites", 0, "concerns", 12, "depth_mm"]
    assert parse_name("name") == ["name"]
    for bad in ("", "a..b", "a[x]", "[0]x", "a]"):
        with pytest.raises(InputError):
            parse_name(bad)


def test_typed_values() -> None:
    assert typed("passes", "15") == 15 and isinstance(typed("passes", "15"), int)
    assert typed("needle_length_mm", "1.5") == 1.5
    assert typed("needle_length_mm", "1e-1") == 0.1
    assert typed("occlusion", "true") is True
    assert typed("name", "123") == "123"  # text fields stay text
    assert typed("needle_length_mm", "abc") == "abc"  # left for the model to refuse


def test_nest_lists_variants_json_and_blanks() -> None:
    pairs = [
        ("csrf_token", "x"), ("name", " A course "), ("horizon_days", "180"),
        ("sites[0].name", "cheek"), ("sites[0].conditions:json", '[{"type": "pores", "diameter_um": 250}]'),
        ("device.type", "pen"), ("device.roller:drum_width_mm", "20"), ("device.pen:frequency_hz", "110"),
        ("sessions[3].day", "28"), ("sessions[0].day", "0"), ("sessions[0].pen_speed_cm_s", ""),
        ("limits.allowed_devices:list", ""), ("limits.allowed_devices:list", "pen"),
    ]  # fmt: skip
    out = nest(pairs)
    assert out == {
        "name": "A course",
        "horizon_days": 180,
        "sites": [{"name": "cheek", "conditions": [{"type": "pores", "diameter_um": 250}]}],
        "device": {"type": "pen", "frequency_hz": 110},
        "sessions": [{"day": 0}, {"day": 28}],  # removed rows leave no hole
        "limits": {"allowed_devices": ["pen"]},
    }
    assert nest([("limits.allowed_devices:list", "")]) == {"limits": {"allowed_devices": []}}
    with pytest.raises(InputError, match="JSON"):
        nest([("sites[0].conditions:json", "[")])


def test_flatten_inverts_nest() -> None:
    course = {**ABSORB_COURSE, "description": "text 1"}
    flat = flatten(course)
    assert flat["sessions[0].topical.product"] == "niacinamide"
    assert flat["device.drum_width_mm"] == 20.0
    pairs = [(k, "true" if v is True else "" if v is False else str(v)) for k, v in flat.items()]
    back = nest(pairs)
    want = flatten(course)
    assert {k: v for k, v in flatten(back).items()} == {
        k: v for k, v in want.items() if v is not False
    }
    Course.from_dict(back, source="course")  # still a valid course


def test_field_errors_are_the_models_messages() -> None:
    bad = deep_merge(ABSORB_COURSE, {"sessions": [{"day": -1, "passes": 0}]})
    with pytest.raises(InputFileError) as exc:
        Course.from_dict(bad, source="course")
    errors = field_errors(exc.value)
    assert set(errors) == {"sessions[0].day", "sessions[0].passes"}
    for p in exc.value.problems:
        assert errors[p.field] == [str(p)]
        assert str(p).startswith(f"{p.field}: got ")
    single = field_errors(InputError("sessions", 3, "x"))
    assert single == {"sessions": ["sessions: got 3; allowed: x"]}


def test_deep_merge_and_arm_protocol() -> None:
    merged = deep_merge({"a": {"b": 1, "c": 2}, "l": [{"x": 1}, {"x": 2}]},
                       {"a": {"b": 3}, "l": [{"y": 1}]})  # fmt: skip
    assert merged == {"a": {"b": 3, "c": 2}, "l": [{"x": 1, "y": 1}, {"x": 2}]}
    arm = arm_protocol({"name": "pen", "device": "pen", "needle_length_mm": 1.0, "sessions": 3,
                        "interval_days": 30}, 210)  # fmt: skip
    assert [s["day"] for s in arm["sessions"]] == [0, 30, 60]
    assert all(s["pen_speed_cm_s"] == 2.0 for s in arm["sessions"])
    assert arm["device"] == DEVICES["pen"]
    odd = arm_protocol({"device": "laser", "needle_length_mm": 1.0, "sessions": 1}, 100)
    assert odd["device"] == {"type": "laser"}  # left for the trial spec to refuse, with its name

"""The one set of formatting helpers: numbers, intervals, days, units, labels, user text."""

from __future__ import annotations

import pytest

from microneedling.engine.variables import VARIABLES
from microneedling.reports.format import (
    clean_text,
    endpoint_label,
    field_label,
    field_units,
    format_day,
    format_field,
    format_interval,
    format_number,
    format_p,
    format_percent,
    format_value,
    human,
    pretty_units,
    roman,
    with_units,
    yes_no,
)
from tests.reports.shell import RAW_FIELD


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (1234.6, "1235"),
        (18.4644, "18.5"),
        (0.012345, "0.0123"),
        (0.0, "0"),
        (-2.5, "-2.50"),
        (float("nan"), "—"),
        (float("inf"), "∞"),
        (1.5e7, "1.50e+07"),
        (3e-6, "3.00e-06"),
        ("text", "text"),
    ],
)
def test_format_number(x: object, expected: str) -> None:
    assert format_number(x) == expected


def test_format_interval_and_day() -> None:
    assert format_interval(1.0, 2.5) == "1.00–2.50"
    assert format_interval(float("nan"), 2.0) == ""
    assert format_interval(None, 2.0) == ""
    assert format_interval(-13.8, 14.0) == "-13.8 to 14.0"
    assert format_day(28.0) == "28"
    assert format_day(86.43) == "86.4"
    assert format_day(float("nan")) == "—"


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        ("ug/cm^2", "µg/cm²"),
        ("um", "µm"),
        ("cm^-2", "/cm²"),
        ("1/d", "/d"),
        ("s^-1", "/s"),
        ("m s^-1", "m/s"),
        ("m^2/s", "m²/s"),
        ("kg/m^3", "kg/m³"),
        ("mg/ml", "mg/mL"),
        ("uL/cm^2", "µL/cm²"),
        ("1", ""),
        ("", ""),
        ("mm", "mm"),
        ("%", "%"),
        ("d", "d"),
    ],
)
def test_pretty_units(units: str, expected: str) -> None:
    assert pretty_units(units) == expected


def test_every_unit_of_the_variable_table_reads_without_carets() -> None:
    for v in VARIABLES:
        u = pretty_units(v.units)
        assert "^" not in u and "ug" not in u and u != "1", (v.name, u)


def test_values_with_units() -> None:
    assert with_units("12.3", "%") == "12.3%"
    assert with_units("230", "cm^-2") == "230/cm²"
    assert with_units("4", "um") == "4 µm"
    assert with_units("0.5", "1") == "0.5"
    assert with_units("—", "mm") == "—"


def test_field_names_in_words_with_units() -> None:
    assert field_label("tip_radius_um") == "Tip radius"
    assert field_units("tip_radius_um") == "µm"
    assert field_label("cartridge_width_mm") == "Cartridge width"
    assert field_units("stamp_area_cm2") == "cm²"
    assert field_units("puncture_density_cm2") == "/cm²"  # per cm², not an area
    assert field_label("p_t") == "p (t test)"
    assert field_label("responder_ci95_low") == "Responders, 95% CI low"
    # every label of the table reads as words
    for name in ("needle_count", "max_needle_length_mm", "hedges_g", "u_stat", "some_new_field"):
        assert not RAW_FIELD.search(field_label(name)), name


def test_field_values_as_people_read_them() -> None:
    assert format_field("fitzpatrick", 4) == "IV"
    assert format_field("fitzpatrick", "III") == "III"
    assert format_field("tip_radius_um", 4.0) == "4 µm"  # an input keeps its digits
    assert format_field("needle_diameter_mm", 0.25) == "0.25 mm"
    assert format_field("horizon_days", 365) == "365 d"
    assert format_field("occlusion", False) == "no"
    assert format_field("seed", 7) == "7"
    assert format_value(True) == "yes"
    assert format_value("acne_scar") == "acne scar"
    assert format_value("Lotfi 2013; scar_type = rolling") == "Lotfi 2013; scar_type = rolling"
    assert format_value(None) == "—"
    assert format_value(0.01234, "ug/cm^2") == "0.0123 µg/cm²"
    assert roman(6) == "VI" and roman(0) == "0"
    assert yes_no(1.0) == "yes" and yes_no(0) == "no" and yes_no(float("nan")) == "—"
    assert human("dorsal_hand") == "dorsal hand"


def test_percent_and_p_values() -> None:
    assert format_percent(0.734) == "73.4%"
    assert format_percent(0.0) == "0%"
    assert format_percent(float("nan")) == "—"
    assert format_p(0.0342) == "0.034"
    assert format_p(1e-30) == "< 0.0001"
    assert format_p(None) == "—"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scar_depth:reduction@last+90", "Atrophic scar depth, reduction, 90 d after the last session"),
        ("collagen_change.reticular@180", "Dermal collagen (I+III), reticular dermis, day 180"),
        ("collagen_change@last+90", "Dermal collagen (I+III), papillary dermis, 90 d after the last session"),
        ("wrinkle_depth:percent_change@end", "Wrinkle depth, % change, at the end of follow-up"),
        ("erythema_days", "Visible redness, all sessions"),
        ("not a grammar text", "not a grammar text"),
    ],
)  # fmt: skip
def test_endpoint_label(text: str, expected: str) -> None:
    assert endpoint_label(text) == expected


def test_clean_text_drops_control_characters() -> None:
    assert clean_text("a\x00b") == "ab"
    assert clean_text("\x1b[31mred\x1b[0m text") == "red text"
    assert clean_text("bell\x07 del\x7f c1\x85") == "bell del c1"
    assert clean_text("rtl\u202eoverride") == "rtloverride"
    assert clean_text("tab\tand\nnewline") == "tab\tand\nnewline"
    assert clean_text("µg/cm² — ok") == "µg/cm² — ok"

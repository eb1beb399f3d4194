"""The engine's applicability flags (engine/applicability.py): which outputs of a course lie outside
the settings the validation covers, one flag per output, with exact messages."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from microneedling.course.model import Course
from microneedling.engine import applicability as A
from microneedling.io import read_toml
from tests.paths import EXAMPLES

ROLLING = EXAMPLES / "acne-scars-rolling-cheek.toml"


def _course(path: Path = ROLLING, **change: Any) -> Course:
    data = read_toml(path)
    data = copy.deepcopy(data)
    for s in data["sessions"]:
        for k in ("needle_length_mm", "passes"):
            if k in change:
                s[k] = change[k]
    if "fitzpatrick" in change:
        data["patient"]["fitzpatrick"] = change["fitzpatrick"]
    if "days" in change:
        data["sessions"] = [dict(data["sessions"][0], day=float(d)) for d in change["days"]]
        data["horizon_days"] = max(float(data["horizon_days"]), change["days"][-1] + 30.0)
    return Course.from_dict(data)


DOMAINS = {
    "scar_depth": A.Domain(
        "scar_depth",
        rows=("a", "b"),
        studies=2,
        needle_length_mm=(1.0, 2.0),
        devices=("roller",),
        sites=("cheek",),
        fitzpatrick=(2.0, 5.0),
        sessions=(2.0, 6.0),
        interval_days=(14.0, 42.0),
    ),
    "erythema_days": A.Domain(
        "erythema_days",
        rows=("c",),
        studies=1,
        needle_length_mm=(0.5, 2.0),
        devices=("roller", "pen"),
        sites=("cheek",),
        fitzpatrick=(1.0, 6.0),
        sessions=(1.0, 1.0),
    ),
}


def test_a_course_inside_every_axis_has_no_flag() -> None:
    c = _course()
    s = A.course_settings(c)
    assert s["devices"] == ["roller"] and s["sites"] == ["cheek"]
    assert s["sessions"] == [float(len(c.sessions))]
    assert A.flags(c, outputs=["scar_depth"], domains=DOMAINS) == []


def test_each_axis_outside_is_one_reason_of_one_flag() -> None:
    c = _course(needle_length_mm=0.5, fitzpatrick=6, days=[0, 7, 14, 21, 28, 35, 42, 49])
    (f,) = A.flags(c, outputs=["scar_depth"], domains=DOMAINS)
    assert f.output == "scar_depth"
    assert f.reasons == (
        "needle length 0.5 mm (validated 1–2 mm)",
        "Fitzpatrick type 6 (validated 2–5)",
        "sessions 8 (validated 2–6)",
        "interval 7 d (validated 14–42 d)",
    )
    assert f.message.startswith("outside validation: scar_depth: needle length 0.5 mm")


def test_an_untested_output_is_flagged_and_irrelevant_outputs_are_not() -> None:
    c = _course()
    got = {f.output: f.reasons for f in A.flags(c, domains=DOMAINS)}
    assert got["elasticity_index"] == ("no validation row tests this output",)
    assert "scar_depth" not in got  # inside its domain
    # outputs of conditions the course does not have are not checked
    assert not {"melanin_index", "pore_diameter", "striae_width", "wrinkle_depth"} & set(got)
    assert "enhancement_ratio" not in got  # no topical in this course


def test_per_session_outputs_ignore_the_number_of_sessions() -> None:
    """Redness days are validated per session: a 4-session course is not outside for them."""
    c = _course()
    assert len(c.sessions) > 1
    assert A.flags(c, outputs=["erythema_days"], domains=DOMAINS) == []
    (f,) = A.flags(_course(needle_length_mm=0.25), outputs=["erythema_days"], domains=DOMAINS)
    assert f.reasons == ("needle length 0.25 mm (validated 0.5–2 mm)",)


def test_an_axis_no_row_reports_is_said() -> None:
    d = {"scar_depth": A.Domain("scar_depth", rows=("x",), studies=1, needle_length_mm=(1.0, 2.0))}
    (f,) = A.flags(_course(), outputs=["scar_depth"], domains=d)
    assert f.reasons[0] == "device: no validation row reports it"
    assert len(f.reasons) == 5  # device, site, Fitzpatrick, sessions, interval


def test_the_shipped_map_is_read_and_gives_one_line_warnings(tmp_path: Path) -> None:
    table = A.load_domains()
    assert "scar_depth" in table and table["scar_depth"].studies >= 3
    lo, hi = table["scar_depth"].needle_length_mm or (0, 0)
    assert lo <= 1.5 <= hi
    w = A.warnings(_course(needle_length_mm=0.25))
    assert any(x.startswith("outside validation: scar_depth: needle length 0.25 mm") for x in w)
    assert all(x.startswith("outside validation: ") and "\n" not in x for x in w)
    # a file of the same format
    p = tmp_path / "map.toml"
    p.write_text(
        '[outputs.scar_depth]\nrows = ["r"]\nstudies = 1\nneedle_length_mm = [3.0, 3.0]\n',
        encoding="utf-8",
    )
    (f,) = A.flags(_course(), outputs=["scar_depth"], domains=A.load_domains(p))
    assert f.reasons[0] == "needle length 1.5 mm (validated 3 mm)"


@pytest.mark.parametrize(
    "name", ["acne-scars-rolling-cheek", "striae-abdomen", "forehead-fine-lines"]
)
def test_flags_name_only_outputs_of_the_variable_table(name: str) -> None:
    from microneedling.engine.variables import by_name

    for f in A.flags(Course.from_toml(EXAMPLES / f"{name}.toml")):
        assert f.output in by_name() and f.reasons


def test_simulate_attaches_one_warning_per_flag_and_the_flags() -> None:
    import json

    from microneedling.engine.simulate import simulate

    course = _course(needle_length_mm=0.5)
    res = simulate(course, draws=0)
    expected = A.flags(course)
    assert any(f.output == "scar_depth" for f in expected)  # 0.5 mm: below the validated lengths
    for f in expected:
        assert f.message in res.warnings
    assert json.loads(res.dataset.attrs["applicability"]) == {
        f.output: list(f.reasons) for f in expected
    }


def test_flags_of_the_shipped_map_are_kept_per_settings_and_equal_the_computed_ones() -> None:
    table = A.load_domains()
    A._FLAGS.clear()
    for path in sorted(EXAMPLES.glob("*.toml")):
        course = Course.from_file(path)
        settings = A.course_settings(course)
        want = A._flags(settings, None, table)
        first = A.flags(course)
        assert first == want and A.flags(course) == want  # computed, then kept
        first.append(A.Flag("x", ("y",)))  # the caller's list is its own
        assert A.flags(course) == want
        some = ["scar_depth", "erythema_days"]
        assert A.flags(course, iter(some)) == A._flags(settings, some, table)
    assert any(A.flags(Course.from_file(p)) for p in EXAMPLES.glob("*.toml"))  # not vacuous
    assert len(A._FLAGS) <= 2 * len(list(EXAMPLES.glob("*.toml")))


SERUM = EXAMPLES / "serum-absorption-study.toml"


def _with_product(product: str) -> Course:
    data = copy.deepcopy(read_toml(SERUM))
    for s in data["sessions"]:
        if s.get("topical"):
            s["topical"]["product"] = product
    return Course.from_dict(data)


def test_a_topical_product_the_rows_did_not_apply_is_a_reason() -> None:
    """The product axis: only outputs whose validation rows applied a topical have it; a course
    applying another product is outside there (and says which products were validated), and a
    course applying one of them is not; outputs whose rows applied none ignore the product."""
    wide: dict[str, Any] = {
        "needle_length_mm": (0.1, 3.0),
        "devices": ("roller", "pen", "stamp"),
        "sites": tuple(A.course_settings(_with_product("caffeine"))["sites"]),
        "fitzpatrick": (1.0, 6.0),
        "sessions": (1.0, 10.0),
        "interval_days": (1.0, 400.0),
    }
    domains = {
        "enhancement_ratio": A.Domain("enhancement_ratio", rows=("m",), studies=1,
                                      products=("palmitoyl_pentapeptide_4",), **wide),
        "erythema_days": A.Domain("erythema_days", rows=("c",), studies=1, **wide),
    }  # fmt: skip
    outside = A.flags(_with_product("caffeine"), ["enhancement_ratio", "erythema_days"], domains)
    assert [f.message for f in outside] == [
        "outside validation: enhancement_ratio: topical product caffeine "
        "(validated: palmitoyl_pentapeptide_4)"
    ]
    inside = A.flags(
        _with_product("palmitoyl_pentapeptide_4"), ["enhancement_ratio", "erythema_days"], domains
    )
    assert inside == []


def test_the_shipped_map_records_the_products_of_its_rows() -> None:
    """The generated map lists the products of the validation rows' courses: Mohammed 2014's
    peptide for the enhancement ratio, tranexamic acid for the MASI rows; scar depth has none."""
    shipped = A.load_domains()
    assert "palmitoyl_pentapeptide_4" in (shipped["enhancement_ratio"].products or ())
    assert "tranexamic_acid" in (shipped["masi_score"].products or ())
    assert shipped["scar_depth"].products is None


def test_the_intact_skin_amount_ignores_the_needling_of_the_course() -> None:
    """``absorbed_intact`` (the same topical through intact skin) does not depend on the needle,
    device, sessions or interval: none of them is in its domain or makes a flag, while the site
    still does."""
    domain = A.Domain(
        "absorbed_intact",
        rows=("n",),
        studies=1,
        sites=("abdomen",),
        fitzpatrick=(1.0, 4.0),
    )
    c = _course(needle_length_mm=1.5, fitzpatrick=3, days=[0, 7, 14, 21, 28, 35, 42, 49])
    (f,) = A.flags(c, outputs=["absorbed_intact"], domains={"absorbed_intact": domain})
    assert f.reasons == ("site cheek (validated: abdomen)",)
    shipped = A.load_domains()["absorbed_intact"]
    assert all(getattr(shipped, axis) is None for axis in A.INDEPENDENT_AXES["absorbed_intact"])


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.stem)
def test_a_flag_is_only_for_an_output_the_course_has(path: Path) -> None:
    """Every flagged output of a shipped example has a value in its simulation: the acne-scar
    examples flagged an all-NaN ``striae_depth``, the others the scar responder chances too, and
    the hands' lentigo a MASI (a melasma's score); a course has no such output to be outside a
    domain."""
    import numpy as np

    from microneedling.engine.simulate import simulate

    course = Course.from_file(path)
    ds = simulate(course, draws=0).dataset
    for f in A.flags(course):
        assert f.output in ds, f.output
        assert np.isfinite(np.asarray(ds[f.output], dtype=float)).any(), f.output

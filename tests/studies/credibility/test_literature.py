"""Tests of the published-outcome table ``data/literature.toml`` and its loader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from microneedling.io import data_path as _data_dir
from microneedling.parameters.parameter_set import load_parameters, load_references
from microneedling.studies.credibility.calibrate import fit_parameters, observed_value
from microneedling.studies.credibility.literature import (
    EVIDENCE,
    ROLE_RULES,
    ROLES,
    LiteratureError,
    calibration_keys,
    load_literature,
    load_protocols,
    load_references_all,
    load_roles,
    point_fit_rows,
    rows,
)
from microneedling.units import parse_unit

LIT = _data_dir() / "literature.toml"


@pytest.fixture(scope="module")
def all_rows():
    return load_literature()


def test_file_loads_with_unique_keys(all_rows):
    keys = [r.key for r in all_rows]
    assert len(keys) == len(set(keys))
    assert len(all_rows) >= 20
    assert {r.role for r in all_rows} == set(ROLES)


def test_every_source_resolves(all_rows):
    refs = load_references_all()
    package_refs = load_references()
    for r in all_rows:
        for s in r.sources:
            assert s in refs, (r.key, s)
            assert refs[s].citation.strip(), (r.key, s)
    # the file's own references are additions, never redefinitions
    own = set(refs) - set(package_refs)
    assert own == set()  # references used only by these rows are in data/references/literature.toml


def test_every_row_has_a_protocol_and_calibration_rows_are_absolute(all_rows):
    protocols = load_protocols()
    assert set(protocols) == {r.key for r in all_rows}
    assert len(point_fit_rows()) == 4
    members = {m for fp in fit_parameters() for m in fp.members}
    assert members == {
        "healing.k_1",
        "healing.k_3",
        "healing.k_H",
        "observe.density_per_collagen_I",
        "observe.erythema_threshold",
    }
    for r in point_fit_rows():
        p = protocols[r.key]
        assert p.evaluable and p.course is not None and p.endpoint is not None, r.key
        # fitted numbers are the published ones, in the row's units
        assert observed_value(r, p) == pytest.approx(r.value, rel=1e-12), r.key
    # no more unknowns than data
    assert len(fit_parameters()) <= len(point_fit_rows()) <= len(calibration_keys())


def test_no_validation_row_repeats_a_calibration_protocol_and_end_point():
    protocols = load_protocols()
    cal = {(repr(protocols[r.key].course), protocols[r.key].endpoint) for r in rows("calibration")}
    for v in rows("validation"):
        p = protocols[v.key]
        if p.endpoint is None:
            continue
        assert (repr(p.course), p.endpoint) not in cal, v.key


def test_validation_rows_do_not_reuse_calibration_data():
    cal = rows("calibration")
    for v in rows("validation"):
        for c in cal:
            shared = set(v.sources) & set(c.sources)
            same = shared and v.quantity == c.quantity and v.time_point_days == c.time_point_days
            assert not same, (v.key, c.key)


def test_validation_rows_have_positive_tolerance_and_mapping():
    val = rows("validation")
    assert val
    for r in val:
        assert r.tolerance is not None and r.tolerance > 0, r.key
        assert r.tolerance_reason.strip(), r.key
        assert r.comparable.strip(), r.key


def test_units_evidence_and_intervals(all_rows):
    for r in all_rows:
        parse_unit(r.units)
        assert r.evidence in EVIDENCE
        for lo, hi in ((r.ci_low, r.ci_high), (r.range_low, r.range_high)):
            if lo is not None:
                assert hi is not None and lo <= r.value <= hi, r.key
        if r.conditions.fitzpatrick is not None:
            lo, hi = r.conditions.fitzpatrick
            assert 1 <= lo <= hi <= 6


def test_published_numbers(all_rows):
    by_key = {r.key: r for r in all_rows}
    dogra = by_key["dogra2014_score"]
    assert dogra.relative_change_percent == pytest.approx(-44.6, abs=0.05)
    assert by_key["kalluri2011_channel_depth"].value_in("m") == pytest.approx(152.5e-6)
    assert by_key["hkjdv2018_erythema"].value_in("d") == pytest.approx(4.5 / 24)
    assert by_key["lotfi2013_collagen"].layer == "papillary_dermis"
    assert by_key["lima2017_masi"].tolerance_reason.lower().count("cream") >= 1
    assert by_key["aust2008_spinosum"].time_point_days == 365


def test_rows_filter_and_bad_role():
    assert len(rows()) == len(rows("calibration")) + len(rows("validation"))
    with pytest.raises(LiteratureError, match="role"):
        rows("fit")


def _variant(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    text = LIT.read_text(encoding="utf-8")
    assert old in text
    p = tmp_path / "literature.toml"
    p.write_text(text.replace(old, new, count), encoding="utf-8")
    return p


def test_unknown_reference_names_the_row(tmp_path):
    p = _variant(tmp_path, 'source = "dogra2014"', 'source = "nosuchref1999"')
    with pytest.raises(LiteratureError, match=r"dogra2014_score.*nosuchref1999"):
        load_literature(p)


def test_bad_role_unit_evidence_tolerance_refused(tmp_path):
    cases = [
        (
            'role = "calibration"\ntolerance = 2.7',
            'role = "holdout"\ntolerance = 2.7',
            r"dogra2014_score.*role",
        ),
        (
            'value = 152.5\nsd = 9.6\nunits = "µm"',
            'value = 152.5\nsd = 9.6\nunits = "furlong"',
            r"kalluri2011_channel_depth.*units",
        ),
        (
            'tolerance = 15.0\ntolerance_reason = "Secondary',
            'tolerance = 0.0\ntolerance_reason = "Secondary',
            r"fabbrocini2009_rolling_depth.*tolerance",
        ),
    ]
    for old, new, pattern in cases:
        p = _variant(tmp_path, old, new)
        with pytest.raises(LiteratureError, match=pattern):
            load_literature(p)
    text = LIT.read_text(encoding="utf-8")
    first_seen = re.search(r'evidence = "SEEN"', text)
    assert first_seen is not None
    p = tmp_path / "recalled.toml"
    p.write_text(
        text[: first_seen.start()] + 'evidence = "RECALLED"' + text[first_seen.end() :],
        encoding="utf-8",
    )
    with pytest.raises(LiteratureError, match=r"lotfi2013_collagen.*evidence"):
        load_literature(p)


def test_own_reference_may_not_shadow_package_reference(tmp_path):
    p = _variant(tmp_path, "[_roles]", '[_references.lotfi2013]\ncitation = "again"\n\n[_roles]')
    with pytest.raises(LiteratureError, match="lotfi2013"):
        load_literature(p)


def test_every_problem_of_the_table_is_reported(tmp_path):
    text = LIT.read_text(encoding="utf-8")
    text = text.replace(
        'role = "calibration"\ntolerance = 2.7', 'role = "holdout"\ntolerance = 2.7'
    )
    text = text.replace(
        'value = 152.5\nsd = 9.6\nunits = "µm"', 'value = 152.5\nsd = -9.6\nunits = "µm"'
    )
    text = text.replace("fitzpatrick = [3, 4]", "fitzpatrick = [4, 3]", 1)
    p = tmp_path / "literature.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(LiteratureError) as e:
        load_literature(p)
    assert [q.field for q in e.value.problems] == [
        "lotfi2013_collagen.conditions.fitzpatrick",
        "dogra2014_score.role",
        "kalluri2011_channel_depth.sd",
    ]
    assert e.value.source == str(p)


def test_an_interval_must_hold_the_value(tmp_path):
    depth = "value = 152.5\nsd = 9.6\n"
    p = _variant(tmp_path, depth, depth + "ci_low = 160.0\n")
    with pytest.raises(LiteratureError) as e:
        load_literature(p)
    (q,) = e.value.problems
    assert (q.field, q.allowed) == (
        "kalluri2011_channel_depth.ci_high",
        "a number given with ci_low (both or neither)",
    )
    p = _variant(tmp_path, depth, depth + "ci_low = 160.0\nci_high = 170.0\n")
    with pytest.raises(LiteratureError) as e:
        load_literature(p)
    (q,) = e.value.problems
    assert (q.field, q.value) == ("kalluri2011_channel_depth.ci_low", 160.0)
    assert q.allowed.startswith("a number <= value (152.5)")


def test_unreadable_table_is_a_literature_error(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'[row]\nsource = "\xff"\n')
    for path, words in ((binary, "UTF-8"), (tmp_path / "missing.toml", "no such file")):
        with pytest.raises(LiteratureError) as e:
            load_literature(path)
        assert e.value.problems[0].field == "<file>" and words in e.value.problems[0].allowed


PROTOCOLS = _data_dir() / "calibration" / "protocols.toml"


def _protocols_variant(tmp_path: Path, old: str, new: str) -> Path:
    text = PROTOCOLS.read_text(encoding="utf-8")
    assert old in text
    p = tmp_path / "protocols.toml"
    p.write_text(text.replace(old, new, 1), encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        (
            'compare = "value"\nassumptions = "15',
            'compare = "values"\nassumptions = "15',
            "rows.lotfi2013_collagen.compare",
            "did you mean 'value'?",
        ),
        (
            'device = "mf8"\nneedle_length_mm = 1.5\npasses = 15\nsession_days = [0, 30, 60, 90, 120]',
            'device = "mf9"\nneedle_length_mm = 1.5\npasses = 15\nsession_days = [0, 30, 60, 90, 120]',
            "rows.lotfi2013_collagen.device",
            "protocols.toml [devices]",
        ),
        (
            'endpoint = "collagen_change@last+56"',
            'endpoint = "collagen_chnage@last+56"',
            "rows.lotfi2013_collagen.endpoint",
            "a variable among",
        ),
        (
            'session_days = [0, 30, 60, 90, 120]\nsite = "cheek"\nage_years = 25',
            'site = "cheek"\nage_years = 25',
            "rows.lotfi2013_collagen.session_days",
            "required for a row with a course",
        ),
        (
            'stage = "resealing_time"\nclosure = "pores"',
            'stage = "resealing_time"',
            "rows.kalluri2011_closure_370.closure",
            "'pores' or 'barrier'",
        ),
        (
            'endpoint = "collagen_change@last+56"',
            'endpoint = "collagen_change@last+56"\nstage = "channel_depth"',
            "rows.lotfi2013_collagen.endpoint/stage",
            "exactly one of endpoint or stage",
        ),
        (
            'evaluable = false\nreason = "Grade change',
            'evaluable = false\nreason = " "  # "Grade change',
            "rows.vondalwig2020_grade.reason",
            "why the row is not evaluable",
        ),
    ],
)
def test_bad_protocols_refused(tmp_path, old, new, field, words):
    with pytest.raises(LiteratureError) as e:
        load_protocols(_protocols_variant(tmp_path, old, new))
    assert e.value.problems[0].field == field, e.value
    assert words in e.value.problems[0].allowed


# ------------------------------------------------------------------------------------ roles
def test_roles_are_by_study_dated_and_ruled(all_rows):
    roles = load_roles()
    assert roles.assigned == "2026-12-04"
    assert set(roles.rules) == set(ROLE_RULES) and roles.rule.strip()
    by_study: dict[str, set[str]] = {}
    for r in all_rows:
        for s in r.sources:
            assert s in roles.studies, (r.key, s)
            assert r.role == roles.studies[s].role, (r.key, s)
            by_study.setdefault(s, set()).add(r.role)
    both = [s for s, seen in by_study.items() if len(seen) > 1]
    assert not both, f"studies in both roles: {both}"
    for s in roles.studies.values():
        assert s.reason.strip(), s.study
        if s.rule == "c":  # kept in validation: never a study that sets a parameter
            assert s.role == "validation", s.study


def test_no_validation_study_sets_a_parameter_by_hand():
    """Rule (a): a study named in any parameter's source is calibration, so a validation row is an
    independent check. This fails when a parameter starts citing a validation study."""
    roles = load_roles()
    ps = load_parameters()
    validation = set(roles.of("validation"))
    leaks = sorted(
        (name, s) for name, p in ps.parameters.items() for s in p.sources if s in validation
    )
    assert not leaks, f"validation studies used as parameter sources: {leaks}"
    # the studies rule (a) moved say which parameters they set
    for s in roles.of("calibration"):
        entry = roles.studies[s]
        if entry.rule == "a" and any(s in p.sources for p in ps.parameters.values()):
            assert "sets " in entry.reason or "count" in entry.reason, s


def test_a_row_may_not_contradict_its_study_role(tmp_path):
    p = _variant(
        tmp_path,
        'fabbrocini2009 = { role = "validation"',
        'fabbrocini2009 = { role = "calibration"',
    )
    with pytest.raises(LiteratureError) as e:
        load_literature(p)
    (q,) = e.value.problems
    assert q.field == "fabbrocini2009_rolling_depth.role" and q.value == "validation"
    assert "never both" in q.allowed and "'calibration'" in q.allowed


def test_every_source_needs_a_role_and_every_role_a_rule(tmp_path):
    text = LIT.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("fabbrocini2009 = {"))
    p = tmp_path / "literature.toml"
    p.write_text(text.replace(line + "\n", ""), encoding="utf-8")
    with pytest.raises(LiteratureError) as e:
        load_literature(p)
    assert [q.field for q in e.value.problems] == ["fabbrocini2009_rolling_depth.source"]
    p = _variant(
        tmp_path,
        'mohammed2014 = { role = "validation", rule = "c"',
        'mohammed2014 = { role = "validation", rule = "d"',
    )
    with pytest.raises(LiteratureError, match=r"_roles.studies.mohammed2014.rule"):
        load_literature(p)
    p = _variant(tmp_path, 'assigned = "2026-12-04"', 'assigned = "4 Dec 2026"')
    with pytest.raises(LiteratureError, match=r"_roles.assigned"):
        load_literature(p)


def test_point_fit_rows_must_be_calibration_rows(tmp_path):
    p = _protocols_variant(
        tmp_path,
        'point_fit_rows = ["lotfi2013_collagen"',
        'point_fit_rows = ["mohammed2014_enhancement"',
    )
    with pytest.raises(LiteratureError) as e:
        point_fit_rows(protocols_path=p)
    assert e.value.problems[0].field == "settings.point_fit_rows"
    assert e.value.problems[0].value == "mohammed2014_enhancement"

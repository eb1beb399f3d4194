"""Result: typed access to what a run recorded about itself, for every writer and reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microneedling.course.model import Course
from microneedling.engine.result import ParameterRecord, Result
from microneedling.engine.simulate import simulate
from microneedling.errors import CourseValidationError
from tests.conftest import COURSE_NAME, COURSE_TOML, SITES, USED_PARAMETERS, WARNINGS
from tests.paths import EXAMPLES


def test_accessors_of_the_synthetic_result(synthetic_result: Result) -> None:
    r = synthetic_result
    assert r.course_name == COURSE_NAME and r.sites == list(SITES)
    assert r.course == Course.from_toml_text(COURSE_TOML)
    assert r.warnings == WARNINGS
    assert r.seed == 12345 and r.n_draws == 32
    assert r.parameter_names == sorted(USED_PARAMETERS)
    assert not r.records_parameters  # names only: no value or source recorded
    assert all(p.value is None for p in r.parameters_used)
    assert r.threshold("erythema") == pytest.approx(0.2) and r.threshold("fibroblasts") is None
    assert r.disclaimer and COURSE_NAME in repr(r)


def test_a_recorded_course_that_fails_validation_is_refused(synthetic_result: Result) -> None:
    synthetic_result.dataset.attrs["course_toml"] = 'name = "x"\n'
    with pytest.raises(CourseValidationError, match=r"result\.course_toml"):
        _ = synthetic_result.course


def test_warnings_of_every_shape(synthetic_result: Result) -> None:
    attrs = synthetic_result.dataset.attrs
    attrs["warnings"] = ""
    assert synthetic_result.warnings == []
    attrs["warnings"] = "plain text, not JSON"
    assert synthetic_result.warnings == ["plain text, not JSON"]
    attrs["warnings"] = json.dumps([{"site": "cheek", "why": "deep"}])
    assert synthetic_result.warnings == ["site: cheek; why: deep"]


def test_a_real_run_records_parameters_with_intervals_and_round_trips(tmp_path: Path) -> None:
    course = Course.from_file(EXAMPLES / "acne-scars-rolling-cheek.toml")
    res = simulate(course, draws=0)
    assert res.course == course and res.seed == course.seed and res.n_draws == 0
    assert res.records_parameters
    by_name = {p.name: p for p in res.parameters_used}
    mu = by_name["healing.mu_I"]
    assert isinstance(mu, ParameterRecord) and mu.units == "1/d" and mu.sources
    assert mu.low is not None and mu.high is not None and mu.low < mu.value < mu.high
    again = Result.from_netcdf(res.to_netcdf(tmp_path / "r.nc"))
    assert again.parameters_used == res.parameters_used and again.course == course
    assert [s.key for s in again.sources()] == [s.key for s in res.sources()]

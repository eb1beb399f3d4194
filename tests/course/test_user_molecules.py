"""A course may name a user molecule as its topical product inside ``using_molecules`` only."""

from __future__ import annotations

import pytest

from microneedling.course.model import Course
from microneedling.errors import CourseValidationError
from microneedling.parameters.molecules import molecules_from_tables, using_molecules
from tests.user_molecules import COPY, copy_table, serum_course


def _refused(data: dict) -> CourseValidationError:  # type: ignore[type-arg]
    with pytest.raises(CourseValidationError) as e:
        Course.from_dict(data, source="course")
    return e.value


def test_a_course_naming_a_user_molecule_validates_only_inside_its_scope() -> None:
    data = serum_course(COPY)
    outside = _refused(data).problems[0]
    assert outside.field == "sessions[0].topical.product" and outside.value == COPY
    assert COPY not in outside.allowed
    mine = molecules_from_tables({COPY: copy_table()})
    with using_molecules(mine):
        course = Course.from_dict(data, source="course")
        assert course.sessions[0].topical is not None
        assert course.sessions[0].topical.product == COPY
        # the validated course reads back from its TOML inside the scope
        assert Course.from_toml_text(course.to_toml()) == course
    assert _refused(data).problems[0].value == COPY  # gone after the block


def test_unknown_product_lists_the_names_in_scope_with_did_you_mean() -> None:
    mine = molecules_from_tables({COPY: copy_table()})
    with using_molecules(mine):
        problem = _refused(serum_course("house_cafeine")).problems[0]
    assert problem.field == "sessions[0].topical.product"
    assert problem.allowed.startswith("one of niacinamide, caffeine")
    assert problem.allowed.endswith(f"{COPY}; did you mean '{COPY}'?")

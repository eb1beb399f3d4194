"""The planner carries the applicability flags (engine/applicability.py) of its plans: every plan
names its outputs outside the validated settings, and the recommended plan's are warnings."""

from __future__ import annotations

from microneedling.course.patient import PatientFile
from microneedling.engine import applicability
from microneedling.studies.planning.search import search
from tests.paths import EXAMPLES


def test_plans_carry_the_flags_of_their_courses() -> None:
    pf = PatientFile.from_toml(EXAMPLES / "patients" / "acne-scars-two-sites.toml")
    result = search(pf)
    for plan in [result.recommended, *result.pareto]:
        assert plan.outside_validation == applicability.warnings(plan.course)
    flags = result.recommended.outside_validation
    assert flags and all(f.startswith("outside validation: ") for f in flags)
    warnings = result.warnings()
    assert warnings[-len(flags) :] == flags

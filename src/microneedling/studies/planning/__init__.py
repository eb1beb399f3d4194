"""Treatment planner: patient file → screening → plan search → report.

>>> from microneedling.studies.planning import PatientFile, search       # doctest: +SKIP
>>> result = search(PatientFile.from_toml("examples/patients/acne-scars-two-sites.toml"))
>>> result.recommended.summary()

Every plan is a model estimate to discuss with a qualified practitioner, not medical advice.
"""

from microneedling.course.patient import Limits, PatientFile, PatientFileError, planner_config
from microneedling.course.screening import Finding, PlanRefused, Screening, load_rules, screen
from microneedling.studies.planning.search import (
    Plan,
    PlanResult,
    build_course,
    exhaustive_search,
    pareto_mask,
    predict,
    rescore,
    search,
    site_caps,
)

__all__ = [
    "Finding",
    "Limits",
    "PatientFile",
    "PatientFileError",
    "Plan",
    "PlanRefused",
    "PlanResult",
    "Screening",
    "build_course",
    "exhaustive_search",
    "load_rules",
    "pareto_mask",
    "planner_config",
    "predict",
    "rescore",
    "screen",
    "search",
    "site_caps",
]

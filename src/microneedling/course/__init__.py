"""What a user writes: the treatment course, the planner's patient file, and the safety rules that
refuse or warn about them (needle limits per site, contraindications).

The course model and its safety limits are imported with the package; the planner's patient file
and its screening (pydantic models of their own and the contraindication rules, ~40 ms) on first
use of one of their names, so that simulating a course never loads them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from microneedling.course.model import (
    AcneScar,
    Condition,
    Course,
    Device,
    History,
    Hyperpigmentation,
    Patient,
    Pen,
    Photoaging,
    Pores,
    Roller,
    Session,
    Site,
    Stamp,
    Striae,
    Topical,
    Wrinkles,
)
from microneedling.course.safety import SafetyLimits, safety_limits

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.course.patient import PatientFile, PatientFileError
    from microneedling.course.screening import PlanRefused, Screening, screen

#: names of the planner's modules -> the module that defines them (imported on first use)
_LAZY = {
    "PatientFile": "microneedling.course.patient",
    "PatientFileError": "microneedling.course.patient",
    "PlanRefused": "microneedling.course.screening",
    "Screening": "microneedling.course.screening",
    "screen": "microneedling.course.screening",
}

__all__ = [
    "AcneScar",
    "Condition",
    "Course",
    "Device",
    "History",
    "Hyperpigmentation",
    "Patient",
    "PatientFile",
    "PatientFileError",
    "Pen",
    "Photoaging",
    "PlanRefused",
    "Pores",
    "Roller",
    "SafetyLimits",
    "Screening",
    "Session",
    "Site",
    "Stamp",
    "Striae",
    "Topical",
    "Wrinkles",
    "safety_limits",
    "screen",
]


def __getattr__(name: str) -> Any:
    """Import a planner name's module on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'microneedling.course' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

"""What a user writes: the treatment course, the planner's patient file, and the safety rules that
refuse or warn about them (needle limits per site, contraindications).
"""

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
from microneedling.course.patient import PatientFile, PatientFileError
from microneedling.course.safety import SafetyLimits, safety_limits
from microneedling.course.screening import PlanRefused, Screening, screen

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

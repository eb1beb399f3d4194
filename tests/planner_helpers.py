"""Helpers of the planner tests: small patient files (kept tiny so every search is quick).

Not a conftest.py: tests/test_cli.py imports the top-level conftest by name."""

from __future__ import annotations

from typing import Any


def patient_dict(
    *,
    fitzpatrick: int = 3,
    sites: tuple[str, ...] = ("cheek",),
    history: dict[str, Any] | None = None,
    site_answers: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A valid patient file as a dict: acne scars on the cheek, wrinkles elsewhere."""
    concern = {
        "cheek": {"type": "acne_scar", "scar_type": "rolling", "depth_mm": 0.5, "count": 20},
        "nose": {"type": "pores", "diameter_um": 250.0},
    }
    entries = []
    for s in sites:
        c = concern.get(s, {"type": "wrinkles", "depth_um": 100.0})
        entries.append(
            {"name": s, **(site_answers or {}), "concerns": [{**c, "severity": "moderate"}]}
        )
    lim = {
        "max_sessions": 2,
        "earliest_interval_days": 28,
        "latest_interval_days": 28,
        "allowed_devices": ["roller"],
        **(limits or {}),
    }
    return {
        "name": "test patient",
        "patient": {"age_years": 35, "sex": "female", "fitzpatrick": fitzpatrick},
        "history": dict(history or {}),
        "sites": entries,
        "limits": lim,
    }


def make_patient(**kw: Any) -> Any:
    """A validated :class:`PatientFile` from :func:`patient_dict`."""
    from microneedling.course.patient import PatientFile

    return PatientFile.from_dict(patient_dict(**kw))

"""Starting points of the pages' forms: the devices, the absorption study's course and the trial
builder's arms, taken from the shipped examples (``examples/acne-scars-rolling-cheek.toml``,
``examples/serum-absorption-study.toml``, ``examples/trials/acne-roller-vs-pen.toml``), where each
number has its source in a comment. A user changes them on the page; the package validates what
they submit."""

from __future__ import annotations

import copy
from typing import Any

__all__ = [
    "ABSORB_COURSE",
    "DEVICES",
    "ENDPOINT_CHOICES",
    "absorb_course",
    "arm_protocol",
    "deep_merge",
]

#: device tables (geometry of examples/acne-scars-rolling-cheek.toml and the pen arm of
#: examples/trials/acne-roller-vs-pen.toml; the stamp is the roller's needle with a 1 cm² plate)
DEVICES: dict[str, dict[str, Any]] = {
    "roller": {
        "type": "roller",
        "needle_count": 192,
        "needle_diameter_mm": 0.25,
        "tip_radius_um": 4.0,
        "tip": "cone",
        "max_needle_length_mm": 2.0,
        "drum_diameter_mm": 20.0,
        "drum_width_mm": 20.0,
    },
    "pen": {
        "type": "pen",
        "needle_count": 12,
        "needle_diameter_mm": 0.25,
        "tip_radius_um": 4.0,
        "tip": "cone",
        "max_needle_length_mm": 2.5,
        "frequency_hz": 110.0,
        "cartridge_width_mm": 7.0,
    },
    "stamp": {
        "type": "stamp",
        "needle_count": 35,
        "needle_diameter_mm": 0.25,
        "tip_radius_um": 4.0,
        "tip": "cone",
        "max_needle_length_mm": 2.0,
        "stamp_area_cm2": 1.0,
    },
}

#: the absorption study's course (examples/serum-absorption-study.toml)
ABSORB_COURSE: dict[str, Any] = {
    "name": "Absorption study",
    "horizon_days": 14,
    "seed": 1,
    "patient": {"age_years": 30, "sex": "female", "fitzpatrick": 2},
    "sites": [{"name": "cheek", "area_cm2": 100.0}],
    "device": {**DEVICES["roller"], "max_needle_length_mm": 2.0},
    "sessions": [
        {
            "day": 0,
            "site": "cheek",
            "needle_length_mm": 0.5,
            "passes": 15,
            "occlusion": False,
            "topical": {
                "product": "niacinamide",
                "concentration_mg_ml": 50.0,
                "volume_ul_cm2": 10.0,
                "contact_hours": 6.0,
            },
        }
    ],
}

#: end points the trial builder offers (the grammar of engine/endpoints.py)
ENDPOINT_CHOICES: dict[str, str] = {
    "scar_depth:reduction": "Atrophic scar depth, reduction (%)",
    "collagen_change": "Collagen change, papillary dermis (%)",
    "erythema_days": "Days of visible redness (d)",
    "pih_risk": "PIH risk (probability)",
}


def deep_merge(base: Any, update: Any) -> Any:
    """``base`` with ``update`` written over it (tables merged key by key, lists item by item)."""
    if isinstance(base, dict) and isinstance(update, dict):
        out = dict(base)
        for k, v in update.items():
            out[k] = deep_merge(base.get(k), v) if k in base else v
        return out
    if isinstance(base, list) and isinstance(update, list):
        return [deep_merge(base[i], v) if i < len(base) else v for i, v in enumerate(update)] + [
            copy.deepcopy(x) for x in base[len(update) :]
        ]
    return update


def absorb_course(form: dict[str, Any]) -> dict[str, Any]:
    """The absorption study's course with the form's fields (course paths) written over it."""
    return deep_merge(copy.deepcopy(ABSORB_COURSE), form)


def arm_protocol(arm: dict[str, Any], horizon_days: int) -> dict[str, Any]:
    """A trial arm's protocol from the builder's fields: device, needle length, sessions and
    their interval, on the cheek (the population's patient and scars are put in per patient)."""
    device = str(arm.get("device", "roller"))
    length = arm.get("needle_length_mm")
    n = arm.get("sessions")
    every = arm.get("interval_days")
    sessions = []
    count = n if isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 52 else 1
    step = every if isinstance(every, int | float) and not isinstance(every, bool) else 28
    for k in range(count):
        s: dict[str, Any] = {
            "day": k * step,
            "site": "cheek",
            "needle_length_mm": length,
            "passes": 4 if device == "pen" else 15,
        }
        if device == "pen":
            s["pen_speed_cm_s"] = 2.0
        sessions.append(s)
    return {
        "name": str(arm.get("name", "arm")),
        "horizon_days": horizon_days,
        "sites": [{"name": "cheek"}],
        "device": copy.deepcopy(DEVICES.get(device, {"type": device})),
        "sessions": sessions,
    }

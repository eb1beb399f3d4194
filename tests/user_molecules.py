"""User molecules for the tests: a shipped molecule's table under a new key (the same numbers, so
that a run with it can be compared with the shipped product's), as tables, a file and courses."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from microneedling.io import dumps_toml
from microneedling.parameters.molecules import shipped_molecules
from tests.paths import EXAMPLES

SHIPPED = "caffeine"
"""The shipped product copied: no depigmenting effect (``observe.depigmenting_ec50`` has rows for
shipped products only), so every number of a run with its copy equals the shipped one's."""
COPY = "house_caffeine"
"""The copy's key."""


def copy_table(key: str = SHIPPED, label: str = "House caffeine serum") -> dict[str, Any]:
    """The shipped molecule ``key``'s table (the file's format) with another label."""
    return {**shipped_molecules()[key].table, "label": label}


def write_copy(path: Path, new_key: str = COPY, key: str = SHIPPED) -> Path:
    """A user molecule file with ``key``'s table under ``new_key``."""
    path.write_text(dumps_toml({new_key: copy_table(key)}), encoding="utf-8")
    return path


def serum_course(product: str = COPY) -> dict[str, Any]:
    """The serum example (one session with a topical) naming ``product``."""
    data = tomllib.loads((EXAMPLES / "serum-absorption-study.toml").read_text(encoding="utf-8"))
    data["sessions"][0]["topical"]["product"] = product
    return data


def write_serum_course(path: Path, product: str = COPY) -> Path:
    path.write_text(dumps_toml(serum_course(product)), encoding="utf-8")
    return path


def protocol(product: str) -> dict[str, Any]:
    """The rolling acne-scar course without its patient, two sessions each with ``product``."""
    course = tomllib.loads((EXAMPLES / "acne-scars-rolling-cheek.toml").read_text("utf-8"))
    course.pop("patient")
    topical = {"concentration_mg_ml": 20.0, "volume_ul_cm2": 10.0, "contact_hours": 4.0}
    course["sessions"] = [
        {**s, "topical": {"product": product, **topical}} for s in course["sessions"][:2]
    ]
    course["horizon_days"] = 120
    return course


def trial_data(n: int = 6) -> dict[str, Any]:
    """A two-arm trial (as the file's tables): shipped caffeine against its copy."""
    return {
        "trial": {
            "name": "shipped caffeine vs the house copy",
            "design": "parallel",
            "n_per_arm": n,
            "seed": 11,
            "population": "acne-scar-adults",
            "time_points": [90],
            "endpoints": ["absorbed_amount", "collagen_change"],
            "chunk_size": 3,
        },
        "arms": [
            {"name": "shipped", "protocol": protocol(SHIPPED)},
            {"name": "house", "protocol": protocol(COPY)},
        ],
    }

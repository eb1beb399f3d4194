"""Names used across the package, defined once: sites, layers, devices, scar types, striae stages,
pigment kinds, Fitzpatrick types, severities and concern types.

The input schema spells some of these as ``Literal`` types for validation; a test keeps every
``Literal`` equal to the tuple here.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "CONCERN_TYPES",
    "DEPRESSION_PROFILES",
    "DERMAL_LAYERS",
    "DEVICES",
    "FITZPATRICK_ROMAN",
    "LAYERS",
    "PIGMENT_KINDS",
    "SCAR_TYPES",
    "SEVERITIES",
    "SITES",
    "SITE_ALIASES",
    "STRIAE_STAGES",
    "SiteName",
    "fitzpatrick_number",
    "roman",
]

SiteName = Literal[
    "forehead",
    "periorbital",
    "nose",
    "cheek",
    "perioral",
    "chin",
    "neck",
    "decolletage",
    "dorsal_hand",
    "abdomen",
    "thigh",
]
SITES: tuple[str, ...] = get_args(SiteName)
"""Treatable sites, top of the head down, in the order of the skin tables."""

SITE_ALIASES: dict[str, str] = {
    "eye": "periorbital",
    "eyes": "periorbital",
    "eyelid": "periorbital",
    "under_eye": "periorbital",
    "undereye": "periorbital",
    "crows_feet": "periorbital",
    "lip": "perioral",
    "lips": "perioral",
    "upper_lip": "perioral",
    "mouth": "perioral",
    "cheeks": "cheek",
    "jaw": "chin",
    "hand": "dorsal_hand",
    "hands": "dorsal_hand",
    "back_of_hand": "dorsal_hand",
    "chest": "decolletage",
    "décolletage": "decolletage",
    "decollete": "decolletage",
    "belly": "abdomen",
    "stomach": "abdomen",
    "tummy": "abdomen",
    "thighs": "thigh",
    "face": "cheek",
}
"""Common words for sites: used only to suggest a name in an error message, never accepted."""

LAYERS: tuple[str, ...] = ("epidermis", "papillary_dermis", "reticular_dermis")
"""Skin layers that needles injure and the model resolves, top to bottom."""

DERMAL_LAYERS: tuple[str, ...] = ("papillary_dermis", "reticular_dermis")
"""The two dermal layers of the healing model."""

DEVICES: tuple[str, ...] = ("roller", "pen", "stamp")
"""Microneedling devices."""

SCAR_TYPES: tuple[str, ...] = ("rolling", "boxcar", "icepick")
"""Atrophic acne-scar types (Jacob et al. 2001)."""

STRIAE_STAGES: tuple[str, ...] = ("rubra", "alba")
"""Stretch-mark stages: early red (rubra) and mature white (alba)."""

DEPRESSION_PROFILES: tuple[str, ...] = ("v_shaped", "box", "rounded")
"""Floor profiles of a depressed feature (scar, wrinkle groove, stretch mark): a V-shaped tract
(icepick), a box with vertical walls (boxcar), a rounded undulation (rolling scar)."""

PIGMENT_KINDS: tuple[str, ...] = ("melasma", "pih", "lentigo")
"""Kinds of hyperpigmentation a site may have."""

SEVERITIES: tuple[str, ...] = ("mild", "moderate", "severe")
"""Severity of a planner concern."""

CONCERN_TYPES: tuple[str, ...] = (
    "acne_scar",
    "wrinkles",
    "pores",
    "striae",
    "hyperpigmentation",
    "photoaging",
)
"""Condition types (``type`` of a course condition or a planner concern)."""

FITZPATRICK_ROMAN: tuple[str, ...] = ("I", "II", "III", "IV", "V", "VI")
"""Fitzpatrick skin types as roman numerals; type ``n`` is ``FITZPATRICK_ROMAN[n - 1]``."""


def roman(fitzpatrick: int | float) -> str:
    """The roman numeral of Fitzpatrick type 1..6."""
    return FITZPATRICK_ROMAN[int(fitzpatrick) - 1]


def fitzpatrick_number(text: str) -> int | None:
    """1..6 for a roman numeral I..VI (any case, blanks ignored), else ``None``."""
    key = text.strip().upper()
    return FITZPATRICK_ROMAN.index(key) + 1 if key in FITZPATRICK_ROMAN else None

"""Pure, batch-first physics of microneedling: arrays in, arrays out, SI units (healing in days).

Nothing here reads files, parses input or imports from the layers above (course, simulation, result,
report, cli).
"""

LAYERS: tuple[str, ...] = ("epidermis", "papillary_dermis", "reticular_dermis")
"""Skin layers that needles injure and the model resolves, top to bottom."""

SITES: tuple[str, ...] = (
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
)
"""Treatment sites, in the order of the skin tables. ``course.SiteName`` spells the same names as a
``Literal`` for the input schema (a test keeps the two equal)."""

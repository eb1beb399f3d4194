"""What this package is: its version and the disclaimer every output carries."""

from __future__ import annotations

__all__ = ["DISCLAIMER", "__version__"]

__version__ = "0.1.0"

DISCLAIMER = (
    "Model estimate for research and treatment planning only; not a diagnosis and not medical "
    "advice. Discuss any treatment with a qualified practitioner."
)

"""microneedling: in-silico collagen induction therapy.

A research and planning aid, never a diagnosis: every output is a model estimate, not medical advice.

>>> import microneedling as mn
>>> course = mn.Course.from_toml("examples/acne-scars-rolling-cheek.toml")  # doctest: +SKIP
>>> result = mn.simulate(course)                                           # doctest: +SKIP
>>> result.endpoints()                                                     # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

DISCLAIMER = (
    "Model estimate for research and treatment planning only; not a diagnosis and not medical "
    "advice. Discuss any treatment with a qualified practitioner."
)

if TYPE_CHECKING:  # pragma: no cover
    from .course import Course
    from .parameters import ParameterSet, load_parameters
    from .result import Result
    from .simulation import simulate

__all__ = [
    "DISCLAIMER",
    "Course",
    "ParameterSet",
    "Result",
    "__version__",
    "load_parameters",
    "simulate",
]

_LAZY = {
    "Course": ("course", "Course"),
    "ParameterSet": ("parameters", "ParameterSet"),
    "load_parameters": ("parameters", "load_parameters"),
    "Result": ("result", "Result"),
    "simulate": ("simulation", "simulate"),
}


def __getattr__(name: str) -> Any:
    """Import heavy submodules only when first used (keeps ``import microneedling`` cheap)."""
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'microneedling' has no attribute {name!r}")

"""microneedling: in-silico collagen induction therapy.

A research and planning aid, never a diagnosis: every output is a model estimate, not medical advice.

>>> import microneedling as mn
>>> course = mn.Course.from_toml("examples/acne-scars-rolling-cheek.toml")  # doctest: +SKIP
>>> result = mn.simulate(course)                                           # doctest: +SKIP
>>> result.endpoints()                                                     # doctest: +SKIP

The names below are the public face of the package; they are imported on first use so that
``import microneedling`` stays cheap (the engine pulls in numba and the physics).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from microneedling.about import DISCLAIMER, __version__

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.course.model import Course
    from microneedling.engine.batch import BatchRun, simulate_batch
    from microneedling.engine.endpoints import EndpointSpec, endpoint_values, parse_endpoint
    from microneedling.engine.result import Result
    from microneedling.engine.simulate import simulate
    from microneedling.errors import InputError, MicroneedlingError
    from microneedling.parameters.molecules import user_molecules, using_molecules
    from microneedling.parameters.parameter_set import ParameterSet, load_parameters

#: public name -> module that defines it
_PUBLIC = {
    "Course": "microneedling.course.model",
    "ParameterSet": "microneedling.parameters.parameter_set",
    "load_parameters": "microneedling.parameters.parameter_set",
    "simulate": "microneedling.engine.simulate",
    "simulate_batch": "microneedling.engine.batch",
    "BatchRun": "microneedling.engine.batch",
    "Result": "microneedling.engine.result",
    "EndpointSpec": "microneedling.engine.endpoints",
    "endpoint_values": "microneedling.engine.endpoints",
    "parse_endpoint": "microneedling.engine.endpoints",
    "InputError": "microneedling.errors",
    "MicroneedlingError": "microneedling.errors",
    "user_molecules": "microneedling.parameters.molecules",
    "using_molecules": "microneedling.parameters.molecules",
}

__all__ = [
    "DISCLAIMER",
    "BatchRun",
    "Course",
    "EndpointSpec",
    "InputError",
    "MicroneedlingError",
    "ParameterSet",
    "Result",
    "__version__",
    "endpoint_values",
    "load_parameters",
    "parse_endpoint",
    "simulate",
    "simulate_batch",
    "user_molecules",
    "using_molecules",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'microneedling' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))

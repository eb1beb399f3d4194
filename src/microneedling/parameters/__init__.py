"""Every number the model uses, with its units and its sources.

:mod:`~microneedling.parameters.parameter_set` reads the parameter files and the bibliography;
:mod:`~microneedling.parameters.molecules` the library of topical actives;
:mod:`~microneedling.parameters.sampling` draws parameter sets from the intervals and the shipped
calibration posterior.
"""

from microneedling.parameters.parameter_set import (
    KINDS,
    Parameter,
    ParameterSet,
    Reference,
    load_parameters,
    load_references,
)

__all__ = ["KINDS", "Parameter", "ParameterSet", "Reference", "load_parameters", "load_references"]

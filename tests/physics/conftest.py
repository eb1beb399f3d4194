"""Fixtures shared by the physics tests."""

from __future__ import annotations

import pytest

from microneedling.parameters.parameter_set import ParameterSet, load_parameters


@pytest.fixture(scope="session")
def shipped() -> ParameterSet:
    """The set ``simulate`` and ``plan`` run: the parameter files with every calibrated member at
    the shipped posterior's median (the claim tests "as shipped" run at it)."""
    from microneedling.parameters.sampling import posterior_nominal, shipped_posterior

    files = load_parameters()
    assert shipped_posterior(files) is not None  # the shipped posterior applies to the files
    return posterior_nominal(files)

"""The shipped calibrated values are what `python -m microneedling.calibrate` reproduces."""

from __future__ import annotations

import pytest

from microneedling.calibrate import TARGETS, fit, model_value
from microneedling.parameters import load_parameters


@pytest.mark.parametrize("target", TARGETS, ids=[t.key for t in TARGETS])
def test_shipped_parameters_reproduce_each_calibration_target(target) -> None:  # type: ignore[no-untyped-def]
    assert model_value(target, load_parameters()) == pytest.approx(target.observed, rel=0.01)


def test_refitting_reproduces_the_shipped_values() -> None:
    ps = load_parameters()
    for name, value in fit(ps).items():
        shipped = ps.parameters[name]
        assert shipped.kind == "calibrated", name
        assert value == pytest.approx(shipped.value, rel=1e-3), name

"""The derivation of healing.rho_B from purpura's lengthening of erythema
(studies/credibility/blood_ratio.py)."""

from __future__ import annotations

import numpy as np
import pytest

from microneedling.parameters.parameter_set import load_parameters
from microneedling.studies.credibility import blood_ratio as br


def test_ratio_for_interpolates_and_refuses_targets_off_the_grid() -> None:
    grid = np.array([0.1, 0.2, 0.3])
    ratio = np.array([1.2, 1.6, 2.0])
    assert br.ratio_for(1.4, grid, ratio) == pytest.approx(0.15)
    assert br.ratio_for(2.0, grid, ratio) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="outside"):
        br.ratio_for(2.5, grid, ratio)


def test_the_shipped_value_reproduces_its_derivation() -> None:
    """The file's rho_B makes the 1.5 mm roller session red x1.7 (within the rounding of its
    value) as long as without its clefts' blood, and its low/high give the x1.3 and x2.2 ends;
    more blood, longer redness (a model change that breaks this must re-derive rho_B)."""
    ps = load_parameters()
    p = ps.parameter(br.NAME)
    assert p.low is not None and p.high is not None
    ratio = br.erythema_ratio([p.low, float(p.value), p.high], ps)  # type: ignore[arg-type]
    assert np.all(np.diff(ratio) > 0.0)
    assert ratio[1] == pytest.approx(br.RATIOS[1], rel=0.05)
    assert ratio[0] == pytest.approx(br.RATIOS[0], rel=0.05)
    assert ratio[2] == pytest.approx(br.RATIOS[2], rel=0.05)

"""The strength of the blood a roller's clefts leave in the dermis, ``healing.rho_B``, derived from
the lengthening of erythema by purpura.

A roller's needles cut clefts beside their paths (``needles``, "Roller clefts") and the blood they
hold recruits inflammation once it lyses (:mod:`microneedling.physics.healing_rhs`, Bl and Hm).
No needling study measures that part alone. The closest human contrast is Alam et al. (pulsed-dye
laser on the face): erythema lasted 3.3 days without purpura and 5.6 days with trace to mild
purpura, ×1.7 (taken as 1.3–2.2: the purpuric settings also deliver more energy). ρ_B is the value
at which a 1.5 mm MF8 roller session (15 passes, cheek: the ``downtime_1p5mm`` protocol) is red
that many times as long as the same session without its clefts' blood (ρ_B = 0), every other
parameter at the parameter set's value. This is a derivation from a published ratio, not a fit to
a calibration or validation row: the row's observed value is not used.

``python -m microneedling.studies.credibility.blood_ratio`` prints the ratio at a grid of ρ_B and
the values that give ×1.3, ×1.7 and ×2.2 (docs/model.md, "Retained blood").
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.studies.credibility.calibrate import predict_rows
from microneedling.studies.credibility.literature import load_literature, load_protocols

__all__ = ["PROTOCOL", "RATIOS", "erythema_ratio", "ratio_for"]

FloatArray = NDArray[np.float64]

NAME = "healing.rho_B"

#: the protocol whose session is compared with and without its clefts' blood
PROTOCOL = "downtime_1p5mm"

#: erythema with purpura over erythema without (Alam et al.): low, central, high
RATIOS = (1.3, 1.7, 2.2)


def erythema_ratio(values: ArrayLike, ps: ParameterSet | None = None) -> FloatArray:
    """Erythema days of the :data:`PROTOCOL` session at each ρ_B in ``values`` over its erythema
    days at ρ_B = 0 (dimensionless), every other parameter at ``ps`` (default: the shipped set)."""
    ps = ps if ps is not None else load_parameters()
    protocols = load_protocols()
    row = [r for r in load_literature() if r.key == PROTOCOL]
    grid = [0.0, *(float(v) for v in np.atleast_1d(np.asarray(values, dtype=float)))]
    sets = [ps.with_values({NAME: v}) for v in grid]
    days = predict_rows(row, sets, protocols)[:, 0]
    if not days[0] > 0.0:
        raise ValueError(f"{PROTOCOL}: no erythema without the clefts' blood ({days[0]} d)")
    return np.asarray(days[1:] / days[0])


def ratio_for(target: float, grid: FloatArray, ratio: FloatArray) -> float:
    """ρ_B at which the (increasing) ratio on ``grid`` reaches ``target``, by linear interpolation;
    ``ValueError`` outside the grid."""
    if not ratio[0] <= target <= ratio[-1]:
        raise ValueError(f"ratio {target} outside {ratio[0]:.3g}-{ratio[-1]:.3g} on the grid")
    return float(np.interp(target, ratio, grid))


def main() -> None:  # pragma: no cover - a report printer, exercised by hand
    grid = np.array([0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5])
    ratio = erythema_ratio(grid)
    for g, r in zip(grid, ratio, strict=True):
        print(f"  {NAME} = {g:4.2f}: erythema x{r:.2f} of the session without its clefts' blood")
    low, mid, high = (ratio_for(t, grid, ratio) for t in RATIOS)
    print(f"x{RATIOS[1]} at {mid:.3g} (x{RATIOS[0]} at {low:.3g}, x{RATIOS[2]} at {high:.3g})")


if __name__ == "__main__":  # pragma: no cover
    main()

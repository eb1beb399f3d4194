"""The healing model's lane kernels equal its scalar kernels bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from microneedling.physics import healing_lanes as hl
from microneedling.physics import healing_rhs as hr


def states_and_params(lanes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random states around baseline and parameters ±50 % around the nominal set, (n, L)."""
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.physics import healing

    rng = np.random.default_rng(seed)
    nominal = healing.parameter_vector(load_parameters())
    p = nominal[None, :] * rng.uniform(0.5, 1.5, (lanes, nominal.size))
    y = hr.baseline_state(p[:, hr.PIDX["lesion_drive"]]) + rng.uniform(
        0.0, 0.3, (lanes, hr.N_STATE)
    )
    return np.ascontiguousarray(y.T), np.ascontiguousarray(p.T)


@pytest.mark.parametrize("lanes", [1, 3, 8, 37])
def test_lane_kernels_equal_scalar_kernels_bit_for_bit(lanes: int) -> None:
    n = hr.N_STATE
    y, p = states_and_params(lanes, seed=lanes)
    out = np.empty((n, lanes))
    hl.healing_rhs_lanes(y, p, out)
    jac = np.zeros((n * n, lanes))
    hl.healing_jacobian_lanes(y, p, jac)
    fac = 1.0 / (0.25 * 0.37)
    dinv = np.empty((n, lanes))
    good = np.empty(lanes, dtype=np.bool_)
    hl.healing_factor_lanes(fac, jac, dinv, good)
    x0 = np.random.default_rng(1).standard_normal((n, lanes))
    b = x0.copy()
    x = np.empty((n, lanes))
    hl.healing_solve_lanes(fac, jac, dinv, b, x, np.empty((5, lanes)), np.empty((3, lanes)))
    assert np.array_equal(b, x0)  # out of place
    for lane in range(lanes):
        ys, ps = y[:, lane].copy(), p[:, lane].copy()
        f = np.empty(n)
        hr.healing_rhs(0.0, ys, ps, f)
        assert np.array_equal(f, out[:, lane])
        js = np.zeros((n, n))
        hr.healing_jacobian(0.0, ys, ps, js)
        assert np.array_equal(js, jac[:, lane].reshape(n, n))
        ds = np.empty(n)
        assert hr.healing_factor(fac, js, ds) and good[lane]
        xs = x0[:, lane].copy()
        hr.healing_solve(fac, js, ds, xs)
        assert np.array_equal(xs, x[:, lane])


def test_a_singular_lane_is_flagged_alone() -> None:
    n = hr.N_STATE
    y, p = states_and_params(4, seed=9)
    jac = np.zeros((n * n, 4))
    hl.healing_jacobian_lanes(y, p, jac)
    fac = 2.0
    jac[5 * n + 5, 2] = fac  # G_55 = fac - J_55 = 0 in lane 2
    dinv = np.empty((n, 4))
    good = np.empty(4, dtype=np.bool_)
    hl.healing_factor_lanes(fac, jac, dinv, good)
    assert good.tolist() == [True, True, False, True]

"""Lockstep lanes: L cases that share their impulse times advanced with one RODAS4 step size.

Draft (measurement stage): the lane RODAS4 step of the healing model.
"""

from __future__ import annotations

from numba import njit

from microneedling.physics.healing_lanes import (
    NoAliasCompiler,
    healing_factor_lanes,
    healing_rhs_lanes,
    healing_solve_lanes,
)
from microneedling.physics.ode.integrate import (
    A21,
    A31,
    A32,
    A41,
    A42,
    A43,
    A51,
    A52,
    A53,
    A54,
    C21,
    C31,
    C32,
    C41,
    C42,
    C43,
    C51,
    C52,
    C53,
    C54,
    C61,
    C62,
    C63,
    C64,
    C65,
    D1,
    D2,
    D3,
    D4,
    GAMMA,
)  # fmt: skip


@njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
def rodas4_step_lanes(  # type: ignore[no-untyped-def]
    h, y, p, f0, ft, jac, k1, k2, k3, k4, k5, k6, ytmp, fw, ynew, dinv, good
):
    """One RODAS4 step of size h (shared) for every lane; arrays (n, L), no two overlapping."""
    n = y.shape[0]
    L = y.shape[1]
    fac = 1.0 / (h * GAMMA)
    healing_factor_lanes(fac, jac, dinv, good)
    hd1 = h * D1
    hd2 = h * D2
    hd3 = h * D3
    hd4 = h * D4
    ih = 1.0 / h
    for i in range(n):
        for c in range(L):
            k1[i, c] = f0[i, c] + hd1 * ft[i, c]
    healing_solve_lanes(fac, jac, dinv, k1)
    for i in range(n):
        for c in range(L):
            ytmp[i, c] = y[i, c] + A21 * k1[i, c]
    healing_rhs_lanes(ytmp, p, fw)
    for i in range(n):
        for c in range(L):
            k2[i, c] = fw[i, c] + (C21 * ih) * k1[i, c] + hd2 * ft[i, c]
    healing_solve_lanes(fac, jac, dinv, k2)
    for i in range(n):
        for c in range(L):
            ytmp[i, c] = y[i, c] + A31 * k1[i, c] + A32 * k2[i, c]
    healing_rhs_lanes(ytmp, p, fw)
    for i in range(n):
        for c in range(L):
            k3[i, c] = fw[i, c] + ih * (C31 * k1[i, c] + C32 * k2[i, c]) + hd3 * ft[i, c]
    healing_solve_lanes(fac, jac, dinv, k3)
    for i in range(n):
        for c in range(L):
            ytmp[i, c] = y[i, c] + A41 * k1[i, c] + A42 * k2[i, c] + A43 * k3[i, c]
    healing_rhs_lanes(ytmp, p, fw)
    for i in range(n):
        for c in range(L):
            k4[i, c] = (
                fw[i, c] + ih * (C41 * k1[i, c] + C42 * k2[i, c] + C43 * k3[i, c]) + hd4 * ft[i, c]
            )
    healing_solve_lanes(fac, jac, dinv, k4)
    for i in range(n):
        for c in range(L):
            ytmp[i, c] = y[i, c] + A51 * k1[i, c] + A52 * k2[i, c] + A53 * k3[i, c] + A54 * k4[i, c]
    healing_rhs_lanes(ytmp, p, fw)
    for i in range(n):
        for c in range(L):
            k5[i, c] = fw[i, c] + ih * (
                C51 * k1[i, c] + C52 * k2[i, c] + C53 * k3[i, c] + C54 * k4[i, c]
            )
    healing_solve_lanes(fac, jac, dinv, k5)
    for i in range(n):
        for c in range(L):
            ytmp[i, c] += k5[i, c]
    healing_rhs_lanes(ytmp, p, fw)
    for i in range(n):
        for c in range(L):
            k6[i, c] = fw[i, c] + ih * (
                C61 * k1[i, c] + C62 * k2[i, c] + C63 * k3[i, c] + C64 * k4[i, c] + C65 * k5[i, c]
            )
    healing_solve_lanes(fac, jac, dinv, k6)
    for i in range(n):
        for c in range(L):
            ynew[i, c] = ytmp[i, c] + k6[i, c]

"""The RODAS4 method's table, its step-size control constants, the integrator's status codes and the
dense LU of its diagonal blocks: what :mod:`~microneedling.physics.ode.integrate` (one case at a
time) and :mod:`~microneedling.physics.ode.lanes` (lockstep lanes) share.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# RODAS4 coefficients, Hairer & Wanner (1996) §IV.7, Fortran rodas.f (METH = 1).
GAMMA = 0.25
ALPHA2 = 0.386
ALPHA3 = 0.21
ALPHA4 = 0.63
D1 = 0.25
D2 = -0.1043
D3 = 0.1035
D4 = -0.3620000000000023e-01
A21 = 0.1544000000000000e01
A31 = 0.9466785280815826
A32 = 0.2557011698983284
A41 = 0.3314825187068521e01
A42 = 0.2896124015972201e01
A43 = 0.9986419139977817
A51 = 0.1221224509226641e01
A52 = 0.6019134481288629e01
A53 = 0.1253708332932087e02
A54 = -0.6878860361058950
C21 = -0.5668800000000000e01
C31 = -0.2430093356833875e01
C32 = -0.2063599157091915
C41 = -0.1073529058151375
C42 = -0.9594562251023355e01
C43 = -0.2047028614809616e02
C51 = 0.7496443313967647e01
C52 = -0.1024680431464352e02
C53 = -0.3399990352819905e02
C54 = 0.1170890893206160e02
C61 = 0.8083246795921522e01
C62 = -0.7981132988064893e01
C63 = -0.3152159432874371e02
C64 = 0.1631930543123136e02
C65 = -0.6058818238834054e01

ORDER = 4
"""Classical order of the main solution of RODAS4 (embedded: 3)."""

FAC_MIN = 0.2
FAC_MAX = 6.0
SAFETY = 0.9

OK = 0
TOO_MANY_STEPS = 1
STEP_TOO_SMALL = 2
SINGULAR = 3
NOT_FINITE = 4
STATUS_MESSAGES = {
    OK: "success",
    TOO_MANY_STEPS: "max_steps exceeded",
    STEP_TOO_SMALL: "step size underflow (t + h == t)",
    SINGULAR: "singular iteration matrix in fixed-step mode",
    NOT_FINITE: "non-finite state in fixed-step mode",
}


# ---------------------------------------------------------------------------------------------
# Dense LU with partial pivoting on a diagonal block a[lo:hi, lo:hi] (row-major, in place)
# ---------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def lu_factor(a, piv, lo, hi):
    """In-place LU with partial pivoting of the block ``a[lo:hi, lo:hi]``: P A = L U.

    Unit L below the diagonal, U on and above it; ``piv[k]`` (lo <= k < hi) is the row swapped
    with row k. Returns False if a pivot is zero or not finite (singular to working precision).
    """
    for k in range(lo, hi):
        p = k
        amax = abs(a[k, k])
        for i in range(k + 1, hi):
            v = abs(a[i, k])
            if v > amax:
                amax = v
                p = i
        piv[k] = p
        if not (amax > 0.0 and amax < np.inf):
            return False
        if p != k:
            for j in range(lo, hi):
                tmp = a[k, j]
                a[k, j] = a[p, j]
                a[p, j] = tmp
        inv = 1.0 / a[k, k]
        for i in range(k + 1, hi):
            m = a[i, k] * inv
            a[i, k] = m
            if m != 0.0:
                for j in range(k + 1, hi):
                    a[i, j] -= m * a[k, j]
    return True


@njit(cache=True, error_model="numpy")
def lu_solve(a, piv, b, lo, hi):
    """Solve with the factors of :func:`lu_factor` of block [lo, hi), in place in ``b[lo:hi]``."""
    for k in range(lo, hi):
        p = piv[k]
        if p != k:
            tmp = b[k]
            b[k] = b[p]
            b[p] = tmp
    for i in range(lo + 1, hi):
        s = b[i]
        for j in range(lo, i):
            s -= a[i, j] * b[j]
        b[i] = s
    for i in range(hi - 1, lo - 1, -1):
        s = b[i]
        for j in range(i + 1, hi):
            s -= a[i, j] * b[j]
        b[i] = s / a[i, i]

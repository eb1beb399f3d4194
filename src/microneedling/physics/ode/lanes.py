"""Lockstep lanes: L cases that share their impulse times and outputs, advanced with one step size.

The cases of a trial arm or a calibration batch share their session (impulse) times and the
output grid; only parameters and jump sizes differ. :func:`solve_groups` integrates them L at a
time with the RODAS4 method of :mod:`~microneedling.physics.ode.integrate` (same coefficients,
error norm, step-size control, clipping to outputs and impulses), with ONE step size per group:
a step is accepted only when every lane accepts it (error = max over the lanes of each lane's
norm), and the next step is chosen from that max. The state is laid out (n, L) so that each
kernel's inner loop runs over the lanes: for the healing model the kernels of
:mod:`~microneedling.physics.healing_lanes` (vectorised by LLVM); any other model of the registry
runs its scalar kernels lane by lane with a dense LU (correct, not faster; for tests and
cross-checks).

A group whose step fails (a lane's state not finite, or a step-size underflow, or too many steps)
stops and reports it in ``group_status``: the caller
(:func:`~microneedling.physics.ode.integrate.integrate` with ``lanes``) solves its cases again one
by one, so a failing lane never changes another case's result. A lane that needs small steps
without failing makes its whole group take them (more steps, smaller errors for the others).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microneedling.physics.healing_lanes import (
    NoAliasCompiler,
    healing_factor_lanes,
    healing_jacobian_lanes,
    healing_rhs_lanes,
    healing_solve_lanes,
)
from microneedling.physics.ode import registry as odes
from microneedling.physics.ode import rodas4
from microneedling.physics.ode.cache import bind_cache_to_sources, jitted_in, source_files
from microneedling.physics.ode.registry import (
    HEALING,
    is_autonomous,
    jacobian,
    rhs,
    time_derivative,
)
from microneedling.physics.ode.rodas4 import (
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
    ALPHA2,
    ALPHA3,
    ALPHA4,
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
    FAC_MAX,
    FAC_MIN,
    GAMMA,
    OK,
    SAFETY,
    STEP_TOO_SMALL,
    TOO_MANY_STEPS,
    lu_factor,
    lu_solve,
)


@njit(cache=True, error_model="numpy")
def _gather(src, dst, lane):  # type: ignore[no-untyped-def,unused-ignore]
    """dst[:] = src[:, lane]."""
    for i in range(dst.shape[0]):
        dst[i] = src[i, lane]


@njit(cache=True, error_model="numpy")
def _scatter(src, dst, lane):  # type: ignore[no-untyped-def,unused-ignore]
    """dst[:, lane] = src[:]."""
    for i in range(src.shape[0]):
        dst[i, lane] = src[i]


@njit(cache=True, error_model="numpy")
def lane_rhs(model, t, y, p, out, w):  # type: ignore[no-untyped-def,unused-ignore]
    """f(t, y) of every lane into ``out`` (n, L); ``w`` = (yc, pc, fc) work vectors."""
    if model == HEALING:
        healing_rhs_lanes(y, p, out)  # autonomous
        return
    yc, pc, fc = w
    for lane in range(y.shape[1]):
        _gather(y, yc, lane)
        _gather(p, pc, lane)
        rhs(model, t, yc, pc, fc)
        _scatter(fc, out, lane)


@njit(cache=True, error_model="numpy")
def lane_jacobian(model, t, y, p, jac, w, jw):  # type: ignore[no-untyped-def,unused-ignore]
    """J of every lane into ``jac`` (n·n, L), entry (i, j) in row i·n + j; returns the RHS
    evaluations each lane spent (0 when analytic). ``jw`` = (J, complex y, complex f) work."""
    if model == HEALING:
        healing_jacobian_lanes(y, p, jac)
        return 0
    yc, pc = w[0], w[1]
    jl, ycx, fcx = jw
    n = y.shape[0]
    n_f = 0
    for lane in range(y.shape[1]):
        _gather(y, yc, lane)
        _gather(p, pc, lane)
        n_f = jacobian(model, t, yc, pc, jl, ycx, fcx)
        for i in range(n):
            for j in range(n):
                jac[i * n + j, lane] = jl[i, j]
    return n_f


@njit(cache=True, error_model="numpy")
def lane_time_derivative(model, t, y, p, ft, w, fw):  # type: ignore[no-untyped-def,unused-ignore]
    """f_t of every lane into ``ft`` (zero for autonomous models); returns RHS evaluations per
    lane."""
    if is_autonomous(model):
        return 0
    yc, pc, fc = w
    n_f = 0
    for lane in range(y.shape[1]):
        _gather(y, yc, lane)
        _gather(p, pc, lane)
        n_f = time_derivative(model, t, yc, pc, fc, fw)
        _scatter(fc, ft, lane)
    return n_f


@njit(cache=True, error_model="numpy")
def lane_factor(model, fac, jac, dinv, good, g, piv):  # type: ignore[no-untyped-def,unused-ignore]
    """Factor G = fac·I − J of every lane; ``good[lane]`` False where it is singular."""
    if model == HEALING:
        healing_factor_lanes(fac, jac, dinv, good)
        return
    n = g.shape[1]
    for lane in range(jac.shape[1]):
        gl = g[lane]
        for i in range(n):
            for j in range(n):
                gl[i, j] = -jac[i * n + j, lane]
            gl[i, i] += fac
        good[lane] = lu_factor(gl, piv[lane], 0, n)


@njit(cache=True, error_model="numpy")
def lane_solve(model, fac, jac, dinv, b, x, g, piv, xc, sa, sb):  # type: ignore[no-untyped-def,unused-ignore]
    """x = G^{-1} b for every lane (``b``, ``x`` (n, L), distinct), with the factors of
    :func:`lane_factor`; ``sa``, ``sb``: the healing solve's scratch."""
    if model == HEALING:
        healing_solve_lanes(fac, jac, dinv, b, x, sa, sb)
        return
    n = x.shape[0]
    for lane in range(x.shape[1]):
        _gather(b, xc, lane)
        lu_solve(g[lane], piv[lane], xc, 0, n)
        _scatter(xc, x, lane)


@njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
def rodas4_step_lanes(  # type: ignore[no-untyped-def,unused-ignore]
    model, t, h, y, p, f0, ft, jac, k1, k2, k3, k4, k5, k6, ytmp, fw, ynew, dinv, good, g, piv,
    w, xc, bb, sa, sb,
):  # fmt: skip
    """Attempt one RODAS4 step of size ``h`` (shared) from (t, y) for every lane.

    The scalar :func:`~microneedling.physics.ode.integrate.rodas4_step`, term for term, on (n, L)
    arrays (no two of them overlapping): f0 = f(t, y), ft = f_t(t, y), jac = J (n·n, L). Writes
    the new state into ``ynew`` and the error estimate into ``k6``; ``good[lane]`` is False where
    that lane's iteration matrix is singular (its results are then not valid). ``bb`` (n, L),
    ``sa`` (5, L), ``sb`` (3, L) are work arrays (each stage's right-hand side, then the solve's
    scratch: :func:`~microneedling.physics.healing_lanes.healing_solve_lanes`).
    """
    n = y.shape[0]
    L = y.shape[1]
    fac = 1.0 / (h * GAMMA)
    # flat views (C-contiguous): the stage arithmetic is one loop over n·L values
    bb_f = bb.reshape(n * L)
    f0_f = f0.reshape(n * L)
    ft_f = ft.reshape(n * L)
    fw_f = fw.reshape(n * L)
    k1_f = k1.reshape(n * L)
    k2_f = k2.reshape(n * L)
    k3_f = k3.reshape(n * L)
    k4_f = k4.reshape(n * L)
    k5_f = k5.reshape(n * L)
    k6_f = k6.reshape(n * L)
    y_f = y.reshape(n * L)
    ynew_f = ynew.reshape(n * L)
    ytmp_f = ytmp.reshape(n * L)
    lane_factor(model, fac, jac, dinv, good, g, piv)
    hd1 = h * D1
    hd2 = h * D2
    hd3 = h * D3
    hd4 = h * D4
    ih = 1.0 / h
    for q in range(n * L):
        bb_f[q] = f0_f[q] + hd1 * ft_f[q]
    lane_solve(model, fac, jac, dinv, bb, k1, g, piv, xc, sa, sb)
    for q in range(n * L):
        ytmp_f[q] = y_f[q] + A21 * k1_f[q]
    lane_rhs(model, t + ALPHA2 * h, ytmp, p, fw, w)
    for q in range(n * L):
        bb_f[q] = fw_f[q] + (C21 * ih) * k1_f[q] + hd2 * ft_f[q]
    lane_solve(model, fac, jac, dinv, bb, k2, g, piv, xc, sa, sb)
    for q in range(n * L):
        ytmp_f[q] = y_f[q] + A31 * k1_f[q] + A32 * k2_f[q]
    lane_rhs(model, t + ALPHA3 * h, ytmp, p, fw, w)
    for q in range(n * L):
        bb_f[q] = fw_f[q] + ih * (C31 * k1_f[q] + C32 * k2_f[q]) + hd3 * ft_f[q]
    lane_solve(model, fac, jac, dinv, bb, k3, g, piv, xc, sa, sb)
    for q in range(n * L):
        ytmp_f[q] = y_f[q] + A41 * k1_f[q] + A42 * k2_f[q] + A43 * k3_f[q]
    lane_rhs(model, t + ALPHA4 * h, ytmp, p, fw, w)
    for q in range(n * L):
        bb_f[q] = fw_f[q] + ih * (C41 * k1_f[q] + C42 * k2_f[q] + C43 * k3_f[q]) + hd4 * ft_f[q]
    lane_solve(model, fac, jac, dinv, bb, k4, g, piv, xc, sa, sb)
    for q in range(n * L):
        ytmp_f[q] = y_f[q] + A51 * k1_f[q] + A52 * k2_f[q] + A53 * k3_f[q] + A54 * k4_f[q]
    lane_rhs(model, t + h, ytmp, p, fw, w)
    for q in range(n * L):
        bb_f[q] = fw_f[q] + ih * (C51 * k1_f[q] + C52 * k2_f[q] + C53 * k3_f[q] + C54 * k4_f[q])
    lane_solve(model, fac, jac, dinv, bb, k5, g, piv, xc, sa, sb)
    for q in range(n * L):
        ytmp_f[q] += k5_f[q]
    lane_rhs(model, t + h, ytmp, p, fw, w)
    for q in range(n * L):
        bb_f[q] = fw_f[q] + ih * (
            C61 * k1_f[q] + C62 * k2_f[q] + C63 * k3_f[q] + C64 * k4_f[q] + C65 * k5_f[q]
        )
    lane_solve(model, fac, jac, dinv, bb, k6, g, piv, xc, sa, sb)
    for q in range(n * L):
        ynew_f[q] = ytmp_f[q] + k6_f[q]


@njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
def lane_error(k6, y, ynew, atol, rtol, errl):  # type: ignore[no-untyped-def,unused-ignore]
    """Each lane's error norm into ``errl`` (L,): max_i |k6_i| / (atol_i + rtol·max(|y_i|,
    |ynew_i|)), a zero |k6_i| counting 0, as the scalar step; NaN when ``ynew`` or the norm of
    the lane is not finite anywhere (the scalar step's running max can lose a NaN to a later
    finite component, and a finite |k6_i| over an infinite ``ynew_i`` counts 0 there: a lane
    that overflowed could be accepted; here it is rejected, its group fails and its cases are
    solved again one by one)."""
    n = y.shape[0]
    L = y.shape[1]
    for lane in range(L):
        errl[lane] = 0.0
    for i in range(n):
        for lane in range(L):
            e = abs(k6[i, lane])
            d = atol[i] + rtol * max(abs(y[i, lane]), abs(ynew[i, lane]))
            q = e / d if e != 0.0 else 0.0
            # + 0·ynew: NaN when ynew is inf or NaN; + 0·q: when q is; + 0·old: once NaN, stays
            old = errl[lane]
            errl[lane] = (old if q <= old else q) + 0.0 * ynew[i, lane] + 0.0 * q + 0.0 * old


@njit(cache=True, nogil=True, error_model="numpy")
def solve_groups(
    model, y0, params, t_out, imp_t, imp_v, rtol, atol, h0, h_max, max_steps, groups, n_real,
    y_out, stats, group_status, g_start, g_stop,
):  # fmt: skip
    """Integrate lane groups ``g_start <= gi < g_stop`` (one shared step size per group).

    ``groups`` (G, L): the case index of each lane (every lane of a group has the impulse times of
    its first lane); its first ``n_real[gi]`` lanes are distinct cases, the rest padding (copies
    of a real lane: they never change the shared step). Writes ``y_out[b]`` (T, n) and ``stats[b]
    = [n_steps, n_rejected, n_rhs, status]`` of each real case (the group's steps, each lane's
    RHS evaluations) and ``group_status[gi]`` (0, or the status at which the group stopped; its
    outputs are then incomplete and the caller solves its cases again one by one). Runs without
    the GIL.
    """
    n = y0.shape[1]
    n_p = params.shape[1]
    n_t = t_out.shape[0]
    n_imp = imp_t.shape[1]
    L = groups.shape[1]
    y = np.empty((n, L))
    p = np.empty((n_p, L))
    f0 = np.empty((n, L))
    ft = np.zeros((n, L))
    jac = np.zeros((n * n, L))
    k1 = np.empty((n, L))
    k2 = np.empty((n, L))
    k3 = np.empty((n, L))
    k4 = np.empty((n, L))
    k5 = np.empty((n, L))
    k6 = np.empty((n, L))
    ytmp = np.empty((n, L))
    fw = np.empty((n, L))
    ynew = np.empty((n, L))
    dinv = np.empty((n, L))
    good = np.empty(L, dtype=np.bool_)
    errl = np.empty(L)
    generic = model != HEALING
    m = n if generic else 1  # per-lane dense LU only for the generic path
    g = np.empty((L, m, m))
    piv = np.empty((L, m), dtype=np.int64)
    w = (np.empty(n), np.empty(n_p), np.empty(n))
    jw = (np.empty((n, n)), np.empty(n, dtype=np.complex128), np.empty(n, dtype=np.complex128))
    fwc = np.empty(n)
    xc = np.empty(n)
    bb = np.empty((n, L))
    sa = np.empty((5, L))
    sb = np.empty((3, L))
    for gi in range(g_start, g_stop):
        b0 = groups[gi, 0]
        for lane in range(L):
            b = groups[gi, lane]
            for i in range(n):
                y[i, lane] = y0[b, i]
            for i in range(n_p):
                p[i, lane] = params[b, i]
        t = t_out[0]
        ki = 0
        while ki < n_imp and imp_t[b0, ki] <= t:
            for lane in range(L):
                b = groups[gi, lane]
                for i in range(n):
                    y[i, lane] += imp_v[b, ki, i]
            ki += 1
        for lane in range(n_real[gi]):
            for i in range(n):
                y_out[groups[gi, lane], 0, i] = y[i, lane]
        for q in range(n * n):
            for lane in range(L):
                jac[q, lane] = 0.0
        n_acc = 0
        n_rej = 0
        n_f = 0
        status = OK
        h = min(h0, h_max)
        j = 1
        while j < n_t:
            tj = t_out[j]
            while t < tj:
                t_stop = tj
                if ki < n_imp and imp_t[b0, ki] < t_stop:
                    t_stop = imp_t[b0, ki]
                if n_acc + n_rej >= max_steps:
                    status = TOO_MANY_STEPS
                    break
                lane_rhs(model, t, y, p, f0, w)
                n_f += 1
                n_f += lane_time_derivative(model, t, y, p, ft, w, fwc)
                n_f += lane_jacobian(model, t, y, p, jac, w, jw)
                rejected = False
                while True:  # until every lane accepts the step
                    remaining = t_stop - t
                    hs = h
                    last = False
                    if hs * (1.0 + 1e-10) >= remaining:
                        hs = remaining
                        last = True
                    elif 2.0 * hs > remaining:
                        hs = 0.5 * remaining
                    if t + hs == t:
                        status = STEP_TOO_SMALL
                        break
                    if hs < 1e-250:  # as the scalar path: an Euler step is exact enough
                        for i in range(n):
                            for lane in range(L):
                                y[i, lane] += hs * f0[i, lane]
                        t = t_stop if last else t + hs
                        n_acc += 1
                        break
                    rodas4_step_lanes(
                        model, t, hs, y, p, f0, ft, jac, k1, k2, k3, k4, k5, k6, ytmp, fw, ynew,
                        dinv, good, g, piv, w, xc, bb, sa, sb,
                    )  # fmt: skip
                    n_f += 5
                    lane_error(k6, y, ynew, atol, rtol, errl)
                    err = 0.0
                    for lane in range(L):
                        e = errl[lane] if good[lane] else 1e300
                        if not (e <= 1e300):  # NaN or inf: this lane rejects
                            e = 1e300
                        if e > err:
                            err = e
                    if err <= 1.0:
                        for i in range(n):
                            for lane in range(L):
                                y[i, lane] = ynew[i, lane]
                        t = t_stop if last else t + hs
                        n_acc += 1
                        fac = FAC_MAX if err == 0.0 else SAFETY * err**-0.25
                        h_new = min(max(hs * fac, FAC_MIN * hs), FAC_MAX * h)
                        if rejected:
                            h_new = min(h_new, hs)
                        h = min(h_new, h_max)
                        break
                    n_rej += 1
                    if n_acc + n_rej >= max_steps:
                        status = TOO_MANY_STEPS
                        break
                    h = hs * max(FAC_MIN, SAFETY * err**-0.25)
                    rejected = True
                if status != OK:
                    break
                jumped = False
                while ki < n_imp and imp_t[b0, ki] <= t:
                    for lane in range(L):
                        b = groups[gi, lane]
                        for i in range(n):
                            y[i, lane] += imp_v[b, ki, i]
                    ki += 1
                    jumped = True
                if jumped:
                    h = min(h, h0)
            if status != OK:
                break
            for lane in range(n_real[gi]):
                b = groups[gi, lane]
                for i in range(n):
                    y_out[b, j, i] = y[i, lane]
            j += 1
        group_status[gi] = status
        for lane in range(n_real[gi]):
            b = groups[gi, lane]
            stats[b, 0] = n_acc
            stats[b, 1] = n_rej
            stats[b, 2] = n_f
            stats[b, 3] = status


bind_cache_to_sources(
    jitted_in(__name__, globals()), [__file__, str(rodas4.__file__), *source_files(odes)]
)


def plan_groups(
    impulse_times: np.ndarray, lanes: int, params: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group the cases of a batch into lockstep groups of ``lanes`` cases with identical impulse
    times (rows of ``impulse_times`` (B, K), days or the model's time unit, equal bit for bit).

    Returns ``groups`` (G, lanes) int64 case indices, ``n_real`` (G,) int64 (the first
    ``n_real[g]`` lanes are distinct cases; the others pad the last group of a set of identical
    impulse times with copies of its first case), and ``single`` (int64), the cases left to the
    scalar path: the remainder of a set when it has fewer than ``lanes / 2`` cases (a padded
    group costs about as much as ``lanes`` cases).

    With ``params`` (B, n_p), the cases of a set are taken in the lexicographic order of their
    parameter rows, so that cases with equal leading parameters (a trial's parameter draw, shared
    by its patients) share groups: their step-size needs are alike, and a group takes fewer steps
    than with cases mixed at random (measured on a trial chunk: +15 % steps over the scalar path
    at 32 lanes, against +42 % in the batch's order; ``benchmarks/bench_lanes.py``).
    """
    nb = impulse_times.shape[0]
    if nb == 0:
        return np.zeros((0, lanes), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, inverse = np.unique(impulse_times, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if params is None:
        order = np.argsort(inverse, kind="stable")
    else:  # np.lexsort: the last key is the primary one
        order = np.lexsort((*params.T[::-1], inverse))
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    groups: list[np.ndarray] = []
    n_real: list[int] = []
    single: list[np.ndarray] = []
    for cases in np.split(order.astype(np.int64), bounds):
        full = cases.size // lanes
        if full:
            groups.extend(cases[: full * lanes].reshape(full, lanes))
            n_real.extend([lanes] * full)
        rest = cases[full * lanes :]
        if rest.size == 0:
            continue
        if 2 * rest.size >= lanes:
            groups.append(np.concatenate([rest, np.full(lanes - rest.size, rest[0])]))
            n_real.append(rest.size)
        else:
            single.append(rest)
    return (
        np.array(groups, dtype=np.int64).reshape(-1, lanes),
        np.array(n_real, dtype=np.int64),
        np.concatenate(single) if single else np.zeros(0, np.int64),
    )

"""Batched, adaptive, stiff ODE integrator with impulses (compiled with numba).

Method
------
RODAS4: the 6-stage, L-stable, stiffly accurate Rosenbrock method of order 4 with an embedded
method of order 3 for error control, of E. Hairer & G. Wanner, *Solving Ordinary Differential
Equations II. Stiff and Differential-Algebraic Problems*, 2nd ed., Springer 1996, §IV.7 (the code
RODAS), with the coefficients of Hairer's Fortran ``rodas.f`` (METH = 1; the same table is in
KPP/FATODE, A. Sandu et al.). In the transformed variables of that code, one step of size h from
(t, y) is::

    G     = I / (h gamma) - J,              J = df/dy (t, y),  gamma = 1/4
    G K_i = f(t + alpha_i h, y + sum_{j<i} a_ij K_j) + sum_{j<i} (c_ij / h) K_j + h d_i f_t(t, y)
    y_new = y + sum_i m_i K_i,              error estimate = K_6  (m_i = a_6i, m_6 = 1)

J must be exact, as Rosenbrock methods require: analytic where the model has one (the healing
model has a hand-derived one, :func:`~microneedling.physics.healing_rhs.healing_jacobian`), else by
complex-step differentiation (:mod:`microneedling.physics.ode.registry`). f_t is zero for autonomous
models, analytic or a central difference otherwise
(:func:`~microneedling.physics.ode.registry.time_derivative`).
The tests measure the convergence order: 4.0 on a stiff linear system, on Kaps' nonlinear problem
and on the non-autonomous Prothero-Robinson problem.

Linear algebra: per case, the sparsity pattern of J is found once and put in block-triangular
form (:func:`jacobian_structure`); G is factored once per step (dense LU with partial pivoting of
each diagonal block, :func:`lu_factor`) and reused for all six stages, which are block forward
substitutions. For an irreducible J this is plain dense LU with partial pivoting.
``exploit_sparsity=False`` forces the dense path. A model may instead provide its own written-out
factor/solve of G (:func:`~microneedling.physics.ode.registry.has_structured_solve`): the healing model
(26 states, 24 diagonal blocks of size 1-2 in a fixed dependency order) does, which with its
analytic Jacobian makes a step ~4x cheaper than the generic block LU with complex-step Jacobians
(measured: ``benchmarks/bench_integrator.py``).

Step-size control: per case, on the max-norm of ``K_6 / (atol + rtol * max(|y|, |y_new|))``;
h_new = h * clamp(0.9 err^(-1/4), 0.2, 6), no increase right after a rejection. Steps are clipped
to land exactly on every output time and every impulse time (no interpolation at outputs; a step
that would leave less than a step is split in two halves); the step proposed before a clip is
remembered, so outputs do not throttle the step size. After an impulse the step restarts from
``min(h, h0)``.

With ``lanes=L`` cases that share their impulse times are instead solved L at a time with one
shared step size (:mod:`~microneedling.physics.ode.lanes`; SIMD kernels for the healing model).
The method's table, the step-control constants, the status codes and the dense LU are in
:mod:`~microneedling.physics.ode.rodas4`.

Cases are independent (own step sizes, structure and Jacobians): the batch is a loop over cases
inside one compiled function that releases the GIL; with ``parallel=True`` contiguous chunks of
cases run on a thread pool. A batch gives the same bits as its cases run one by one, whatever
``parallel`` or the number of threads.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit

from microneedling.physics.ode import lanes as lane_solver
from microneedling.physics.ode import registry as odes
from microneedling.physics.ode import rodas4
from microneedling.physics.ode.cache import bind_cache_to_sources, jitted_in, source_files
from microneedling.physics.ode.registry import (
    COMPLEX_STEP,
    has_analytic_jacobian,
    has_structured_solve,
    is_autonomous,
    jacobian,
    jacobian_complex_step,
    jacobian_update,
    rhs,
    structured_factor,
    structured_solve,
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
    NOT_FINITE,
    OK,
    SAFETY,
    SINGULAR,
    STATUS_MESSAGES,
    STEP_TOO_SMALL,
    TOO_MANY_STEPS,
    lu_factor,
    lu_solve,
)
from microneedling.physics.ode.rodas4 import (
    ORDER as ORDER,
)

# ---------------------------------------------------------------------------------------------
# Jacobian structure: sparsity pattern, block-triangular form, column colouring
# ---------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def jacobian_structure(
    model, t, y, p, dense, jac, yc, fc, pat, perm, bstart, col_ptr, col_rows, color_ptr,
    color_cols, off_ptr, off_col,
):  # fmt: skip
    """Find the structure of J = df/dy of one case and prepare the sparse step algebra.

    1. Pattern: entries of J that are non-zero (or NaN) at (t, y) or at two deterministic
       pseudo-random points near it. A right-hand side that is complex-analytic in y (required for
       complex-step Jacobians anyway: no branches on the state) has structural non-zeros that vanish
       only on a set of measure zero, so this finds the structural pattern. ``dense`` skips all
       this (pattern = all ones).
    2. Block-triangular form (Tarjan's strongly connected components of the graph i -> j when
       J[i, j] != 0): ``perm`` lists the states block by block, each block depending only on
       earlier ones, so G = I/(h gamma) - J needs LU only of its diagonal blocks and the stage
       solves are block forward substitutions (Duff & Reid, ACM TOMS 4:137-147, 1978).
    3. Column colouring (Curtis, Powell & Reid, IMA J Appl Math 13:117-119, 1974): columns with
       no row in common share one complex-step evaluation.

    Returns (n_blocks, n_colors, n_rhs spent).
    """
    n = y.shape[0]
    n_f = 0
    analytic = has_analytic_jacobian(model)
    for i in range(n):
        for j in range(n):
            pat[i, j] = dense
    if not dense:
        ytry = np.empty(n)
        for r in range(3):
            for k in range(n):
                frac = (0.6180339887498949 * (k + 1) * (r + 1) + 0.3819660112501051 * r) % 1.0
                ytry[k] = y[k] + (0.0 if r == 0 else (0.5 + frac) * 0.25 * (1.0 + abs(y[k])))
            ttry = t + (0.0 if r == 0 else 0.37 * r * (1.0 + abs(t)))
            if analytic:
                jacobian(model, ttry, ytry, p, jac, yc, fc)
            else:
                n_f += jacobian_complex_step(model, ttry, ytry, p, jac, yc, fc)
            for i in range(n):
                for j in range(n):
                    if jac[i, j] != 0.0:  # NaN counts as non-zero
                        pat[i, j] = True
    for i in range(n):
        for j in range(n):
            jac[i, j] = 0.0

    # --- Tarjan's SCC, iterative; emits each component after all components it depends on
    index = np.full(n, -1, dtype=np.int64)
    low = np.zeros(n, dtype=np.int64)
    on_stack = np.zeros(n, dtype=np.bool_)
    stack = np.empty(n, dtype=np.int64)
    call_node = np.empty(n, dtype=np.int64)
    call_next = np.empty(n, dtype=np.int64)
    counter = 0
    sp = 0
    q = 0
    n_blk = 0
    for s in range(n):
        if index[s] >= 0:
            continue
        top = 0
        call_node[0] = s
        call_next[0] = 0
        index[s] = counter
        low[s] = counter
        counter += 1
        stack[sp] = s
        sp += 1
        on_stack[s] = True
        while top >= 0:
            v = call_node[top]
            w = call_next[top]
            if w < n:
                call_next[top] = w + 1
                if w == v or not pat[v, w]:
                    continue
                if index[w] < 0:
                    index[w] = counter
                    low[w] = counter
                    counter += 1
                    stack[sp] = w
                    sp += 1
                    on_stack[w] = True
                    top += 1
                    call_node[top] = w
                    call_next[top] = 0
                elif on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
            else:
                if low[v] == index[v]:
                    bstart[n_blk] = q
                    n_blk += 1
                    while True:
                        sp -= 1
                        w = stack[sp]
                        on_stack[w] = False
                        perm[q] = w
                        q += 1
                        if w == v:
                            break
                top -= 1
                if top >= 0:
                    u = call_node[top]
                    if low[v] < low[u]:
                        low[u] = low[v]
    bstart[n_blk] = n

    # --- off-diagonal-block entries per permuted row (the forward-substitution couplings)
    block_of = np.empty(n, dtype=np.int64)
    for b in range(n_blk):
        for qq in range(bstart[b], bstart[b + 1]):
            block_of[perm[qq]] = b
    e = 0
    for qq in range(n):
        off_ptr[qq] = e
        i = perm[qq]
        for j in range(n):
            if pat[i, j] and block_of[j] != block_of[i]:
                off_col[e] = j
                e += 1
    off_ptr[n] = e

    # --- rows of each column, and a greedy colouring of the columns
    e = 0
    for k in range(n):
        col_ptr[k] = e
        for i in range(n):
            if pat[i, k]:
                col_rows[e] = i
                e += 1
    col_ptr[n] = e
    color = np.full(n, -1, dtype=np.int64)
    forbidden = np.full(n, -1, dtype=np.int64)
    n_colors = 0
    for k in range(n):
        for ee in range(col_ptr[k], col_ptr[k + 1]):
            i = col_rows[ee]
            for k2 in range(k):
                if pat[i, k2]:
                    forbidden[color[k2]] = k
        c = 0
        while forbidden[c] == k:
            c += 1
        color[k] = c
        if c + 1 > n_colors:
            n_colors = c + 1
    e = 0
    for c in range(n_colors):
        color_ptr[c] = e
        for k in range(n):
            if color[k] == c:
                color_cols[e] = k
                e += 1
    color_ptr[n_colors] = e
    return n_blk, n_colors, n_f


@njit(cache=True, error_model="numpy")
def jacobian_compressed(
    model, t, y, p, jac, yc, fc, col_ptr, col_rows, color_ptr, color_cols, n_colors,
):  # fmt: skip
    """J by complex step, one evaluation per colour (entries outside the pattern stay as they are).

    Returns the number of (complex) RHS evaluations.
    """
    n = y.shape[0]
    for i in range(n):
        yc[i] = y[i]
    for c in range(n_colors):
        for e in range(color_ptr[c], color_ptr[c + 1]):
            k = color_cols[e]
            yc[k] = complex(y[k], COMPLEX_STEP * max(1.0, abs(y[k])))
        rhs(model, t, yc, p, fc)
        for e in range(color_ptr[c], color_ptr[c + 1]):
            k = color_cols[e]
            inv = 1.0 / (COMPLEX_STEP * max(1.0, abs(y[k])))
            for ee in range(col_ptr[k], col_ptr[k + 1]):
                i = col_rows[ee]
                jac[i, k] = fc[i].imag * inv
            yc[k] = y[k]
    return n_colors


# ---------------------------------------------------------------------------------------------
# One RODAS4 step
# ---------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _stage_solve(g, piv, off_val, perm, bstart, n_blk, off_ptr, off_col, x, w):
    """x <- G^{-1} x by block forward substitution (G = I/(h gamma) - J).

    Diagonal blocks are LU-factored in ``g`` (a 1x1 block holds its inverse); ``off_val[e]`` =
    J[perm[q], off_col[e]] are the couplings to earlier blocks of permuted row q.
    """
    for b in range(n_blk):
        lo = bstart[b]
        hi = bstart[b + 1]
        if hi - lo == 1:
            i = perm[lo]
            s = x[i]
            for e in range(off_ptr[lo], off_ptr[lo + 1]):
                s += off_val[e] * x[off_col[e]]  # -G_ij x_j with G_ij = -J_ij
            x[i] = s * g[lo, lo]
        else:
            for q in range(lo, hi):
                s = x[perm[q]]
                for e in range(off_ptr[q], off_ptr[q + 1]):
                    s += off_val[e] * x[off_col[e]]
                w[q] = s
            lu_solve(g, piv, w, lo, hi)
            for q in range(lo, hi):
                x[perm[q]] = w[q]


@njit(cache=True, error_model="numpy")
def rodas4_step(
    model, t, h, y, p, f0, ft, jac, g, piv, k, ytmp, fw, ynew, perm, bstart, n_blk, off_ptr,
    off_col, off_val, w, structured, dinv,
):  # fmt: skip
    """Attempt one RODAS4 step of size h from (t, y); f0 = f(t, y), ft = f_t(t, y), jac = J.

    Writes the new state into ``ynew`` and the error estimate into ``k[5]``. Returns False if the
    iteration matrix is singular (nothing else is then valid).
    """
    n = y.shape[0]
    fac = 1.0 / (h * GAMMA)
    if structured:
        if not structured_factor(model, fac, jac, dinv):
            return False
    else:
        for b in range(n_blk):
            lo = bstart[b]
            hi = bstart[b + 1]
            if hi - lo == 1:
                d = fac - jac[perm[lo], perm[lo]]
                if not (abs(d) > 0.0 and abs(d) < np.inf):
                    return False
                g[lo, lo] = 1.0 / d
            else:
                for q1 in range(lo, hi):
                    i = perm[q1]
                    for q2 in range(lo, hi):
                        g[q1, q2] = -jac[i, perm[q2]]
                    g[q1, q1] += fac
                if not lu_factor(g, piv, lo, hi):
                    return False
        for q in range(n):
            i = perm[q]
            for e in range(off_ptr[q], off_ptr[q + 1]):
                off_val[e] = jac[i, off_col[e]]
    k1 = k[0]
    k2 = k[1]
    k3 = k[2]
    k4 = k[3]
    k5 = k[4]
    k6 = k[5]
    hd1 = h * D1
    hd2 = h * D2
    hd3 = h * D3
    hd4 = h * D4
    ih = 1.0 / h
    # stage 1
    for i in range(n):
        k1[i] = f0[i] + hd1 * ft[i]
    if structured:
        structured_solve(model, fac, jac, dinv, k1)
    else:
        _stage_solve(g, piv, off_val, perm, bstart, n_blk, off_ptr, off_col, k1, w)
    # stage 2
    for i in range(n):
        ytmp[i] = y[i] + A21 * k1[i]
    rhs(model, t + ALPHA2 * h, ytmp, p, fw)
    for i in range(n):
        k2[i] = fw[i] + (C21 * ih) * k1[i] + hd2 * ft[i]
    if structured:
        structured_solve(model, fac, jac, dinv, k2)
    else:
        _stage_solve(g, piv, off_val, perm, bstart, n_blk, off_ptr, off_col, k2, w)
    # stage 3
    for i in range(n):
        ytmp[i] = y[i] + A31 * k1[i] + A32 * k2[i]
    rhs(model, t + ALPHA3 * h, ytmp, p, fw)
    for i in range(n):
        k3[i] = fw[i] + ih * (C31 * k1[i] + C32 * k2[i]) + hd3 * ft[i]
    if structured:
        structured_solve(model, fac, jac, dinv, k3)
    else:
        _stage_solve(g, piv, off_val, perm, bstart, n_blk, off_ptr, off_col, k3, w)
    # stage 4
    for i in range(n):
        ytmp[i] = y[i] + A41 * k1[i] + A42 * k2[i] + A43 * k3[i]
    rhs(model, t + ALPHA4 * h, ytmp, p, fw)
    for i in range(n):
        k4[i] = fw[i] + ih * (C41 * k1[i] + C42 * k2[i] + C43 * k3[i]) + hd4 * ft[i]
    if structured:
        structured_solve(model, fac, jac, dinv, k4)
    else:
        _stage_solve(g, piv, off_val, perm, bstart, n_blk, off_ptr, off_col, k4, w)
    # stage 5 (alpha = 1, d = 0)
    for i in range(n):
        ytmp[i] = y[i] + A51 * k1[i] + A52 * k2[i] + A53 * k3[i] + A54 * k4[i]
    rhs(model, t + h, ytmp, p, fw)
    for i in range(n):
        k5[i] = fw[i] + ih * (C51 * k1[i] + C52 * k2[i] + C53 * k3[i] + C54 * k4[i])
    if structured:
        structured_solve(model, fac, jac, dinv, k5)
    else:
        _stage_solve(g, piv, off_val, perm, bstart, n_blk, off_ptr, off_col, k5, w)
    # stage 6 (a_6j = m_j for j < 6: stiffly accurate)
    for i in range(n):
        ytmp[i] += k5[i]
    rhs(model, t + h, ytmp, p, fw)
    for i in range(n):
        k6[i] = fw[i] + ih * (C61 * k1[i] + C62 * k2[i] + C63 * k3[i] + C64 * k4[i] + C65 * k5[i])
    if structured:
        structured_solve(model, fac, jac, dinv, k6)
    else:
        _stage_solve(g, piv, off_val, perm, bstart, n_blk, off_ptr, off_col, k6, w)
    for i in range(n):
        ynew[i] = ytmp[i] + k6[i]
    return True


# ---------------------------------------------------------------------------------------------
# A range of cases: outputs, impulses, adaptive steps
# ---------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def step_error(k5, y, ynew, atol, rtol):  # type: ignore[no-untyped-def,unused-ignore]
    """The step's error norm: max_i |k5_i| / (atol_i + rtol max(|y_i|, |ynew_i|)), a zero |k5_i|
    counting 0 (0/0 when atol = 0 at a zero component is no error); NaN as soon as one term is
    NaN or ``ynew`` is not finite anywhere, so that such a step is rejected (a running max that
    skipped NaN could let a later finite term hide it, and a finite |k5_i| over an infinite
    ``ynew_i`` would count 0)."""
    err = 0.0
    for i in range(y.shape[0]):
        e = abs(k5[i])
        if e != 0.0:
            e /= atol[i] + rtol * max(abs(y[i]), abs(ynew[i]))
        # + 0·ynew: NaN when ynew is inf or NaN; + 0·e: when e is; + 0·err: once NaN, stays NaN
        err = (err if e <= err else e) + 0.0 * ynew[i] + 0.0 * e + 0.0 * err
    return err


@njit(cache=True, nogil=True, error_model="numpy")
def solve_range(
    model, y0, params, t_out, imp_t, imp_v, rtol, atol, h0, h_max, fixed, max_steps, dense,
    use_analytic, y_out, stats, b_start, b_stop,
):  # fmt: skip
    """Integrate cases ``b_start <= b < b_stop`` of the batch (the whole per-case algorithm).

    Writes ``y_out[b]`` (T, n) and ``stats[b] = [n_steps, n_rejected, n_rhs, status]``. Runs
    without the GIL, so disjoint ranges can run on threads.
    """
    n = y0.shape[1]
    n_t = t_out.shape[0]
    n_imp = imp_t.shape[1]
    y = np.empty(n)
    f0 = np.empty(n)
    ft = np.zeros(n)
    jac = np.zeros((n, n))
    g = np.empty((n, n))
    piv = np.empty(n, dtype=np.int64)
    k = np.empty((6, n))
    ytmp = np.empty(n)
    fw = np.empty(n)
    ynew = np.empty(n)
    w = np.empty(n)
    yc = np.empty(n, dtype=np.complex128)
    fc = np.empty(n, dtype=np.complex128)
    pat = np.empty((n, n), dtype=np.bool_)
    perm = np.empty(n, dtype=np.int64)
    bstart = np.empty(n + 1, dtype=np.int64)
    col_ptr = np.empty(n + 1, dtype=np.int64)
    col_rows = np.empty(n * n, dtype=np.int64)
    color_ptr = np.empty(n + 1, dtype=np.int64)
    color_cols = np.empty(n, dtype=np.int64)
    off_ptr = np.empty(n + 1, dtype=np.int64)
    off_col = np.empty(n * n, dtype=np.int64)
    off_val = np.empty(n * n)
    autonomous = is_autonomous(model)
    analytic = has_analytic_jacobian(model) and use_analytic
    structured = has_structured_solve(model) and use_analytic and not dense
    dinv = np.empty(n)
    adaptive = not (fixed > 0.0)

    for b in range(b_start, b_stop):
        p = params[b]
        for i in range(n):
            y[i] = y0[b, i]
        t = t_out[0]
        ki = 0
        while ki < n_imp and imp_t[b, ki] <= t:
            for i in range(n):
                y[i] += imp_v[b, ki, i]
            ki += 1
        for i in range(n):
            y_out[b, 0, i] = y[i]
        n_acc = 0
        n_rej = 0
        status = OK
        n_blk, n_colors, n_f = jacobian_structure(
            model, t, y, p, dense, jac, yc, fc, pat, perm, bstart, col_ptr, col_rows, color_ptr,
            color_cols, off_ptr, off_col,
        )  # fmt: skip
        h = min(h0, h_max)
        j = 1
        while j < n_t:
            tj = t_out[j]
            while t < tj:
                t_stop = tj
                if ki < n_imp and imp_t[b, ki] < t_stop:
                    t_stop = imp_t[b, ki]
                if n_acc + n_rej >= max_steps:
                    status = TOO_MANY_STEPS
                    break
                # f, f_t and J at the start of the step (reused after a rejection: same point)
                rhs(model, t, y, p, f0)
                n_f += 1
                if not autonomous:
                    n_f += time_derivative(model, t, y, p, ft, fw)
                if analytic:  # (jac is zero outside the pattern: jacobian_structure zeroed it)
                    jacobian_update(model, t, y, p, jac, yc, fc)
                else:
                    n_f += jacobian_compressed(
                        model, t, y, p, jac, yc, fc, col_ptr, col_rows, color_ptr, color_cols,
                        n_colors,
                    )  # fmt: skip
                rejected = False
                while True:  # until the step is accepted
                    remaining = t_stop - t
                    hs = h if adaptive else fixed
                    last = False
                    if hs * (1.0 + 1e-10) >= remaining:
                        hs = remaining
                        last = True
                    elif adaptive and 2.0 * hs > remaining:
                        hs = 0.5 * remaining
                    if t + hs == t:
                        status = STEP_TOO_SMALL
                        break
                    if hs < 1e-250:  # 1/(h gamma) would overflow: an Euler step is exact enough
                        for i in range(n):
                            y[i] += hs * f0[i]
                        t = t_stop if last else t + hs
                        n_acc += 1
                        break
                    ok = rodas4_step(
                        model, t, hs, y, p, f0, ft, jac, g, piv, k, ytmp, fw, ynew, perm, bstart,
                        n_blk, off_ptr, off_col, off_val, w, structured, dinv,
                    )  # fmt: skip
                    if ok:
                        n_f += 5
                    err = 0.0
                    if not adaptive:
                        if not ok:
                            status = SINGULAR
                            break
                        for i in range(n):
                            if not np.isfinite(ynew[i]):
                                status = NOT_FINITE
                        if status != OK:
                            break
                    elif ok:
                        err = step_error(k[5], y, ynew, atol, rtol)
                        if not (err <= 1e300):  # NaN or inf: rejected
                            err = 1e300
                    else:
                        err = 1e300
                    if err <= 1.0:
                        for i in range(n):
                            y[i] = ynew[i]
                        t = t_stop if last else t + hs
                        n_acc += 1
                        if adaptive:
                            fac = FAC_MAX if err == 0.0 else SAFETY * err**-0.25
                            # bounds relative to the step proposed before clipping (h >= hs)
                            h_new = min(max(hs * fac, FAC_MIN * hs), FAC_MAX * h)
                            if rejected:
                                h_new = min(h_new, hs)
                            h = min(h_new, h_max)
                        break
                    n_rej += 1
                    if n_acc + n_rej >= max_steps:
                        status = TOO_MANY_STEPS
                        break
                    h = hs * (max(FAC_MIN, SAFETY * err**-0.25) if ok else 0.25)
                    rejected = True
                if status != OK:
                    break
                jumped = False
                while ki < n_imp and imp_t[b, ki] <= t:
                    for i in range(n):
                        y[i] += imp_v[b, ki, i]
                    ki += 1
                    jumped = True
                if jumped:
                    h = min(h, h0)
            if status != OK:
                break
            for i in range(n):
                y_out[b, j, i] = y[i]
            j += 1
        for jj in range(j, n_t):  # outputs a failed case did not reach
            for i in range(n):
                y_out[b, jj, i] = np.nan
        stats[b, 0] = n_acc
        stats[b, 1] = n_rej
        stats[b, 2] = n_f
        stats[b, 3] = status


bind_cache_to_sources(
    jitted_in(__name__, globals()), [__file__, str(rodas4.__file__), *source_files(odes)]
)


# ---------------------------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------------------------

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _n_threads() -> int:
    """Threads for ``parallel=True``: numba's setting (NUMBA_NUM_THREADS), at most the CPU count."""
    cpus = os.cpu_count() or 1
    return max(1, min(int(getattr(numba.config, "NUMBA_NUM_THREADS", cpus)), cpus))


def _pool(n_threads: int) -> ThreadPoolExecutor:
    """A process-wide thread pool; the compiled kernel releases the GIL, so threads run in parallel.

    (Plain threads instead of numba's ``prange``: a ``parallel=True`` kernel costs ~5 s more cold
    compile time and gives nothing more for independent cases.)
    """
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE != n_threads:
            _POOL = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="integrate")
            _POOL_SIZE = n_threads
        return _POOL


def _forget_pool_after_fork() -> None:
    """A forked child has none of the parent's threads: start a fresh pool when needed."""
    global _POOL, _POOL_SIZE, _POOL_LOCK
    _POOL, _POOL_SIZE, _POOL_LOCK = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


@dataclass(frozen=True)
class Solution:
    """Result of :func:`integrate`.

    Attributes
    ----------
    t : (T,) output times.
    y : (B, T, n) states at the output times (right-continuous at impulses); NaN from the first
        output a failed case could not reach.
    n_steps : (B,) accepted steps.
    n_rejected : (B,) rejected step attempts.
    n_rhs : (B,) right-hand-side evaluations: 1 per step and 5 per attempt plus, for models
        without an analytic Jacobian, one complex evaluation per colour per step (n without sparsity) and
        those spent finding the sparsity pattern; plus 2 per step for a finite-difference f_t.
    status : (B,) 0 on success, else a key of :data:`STATUS_MESSAGES`.
    """

    t: np.ndarray
    y: np.ndarray
    n_steps: np.ndarray
    n_rejected: np.ndarray
    n_rhs: np.ndarray
    status: np.ndarray

    @property
    def success(self) -> bool:
        """True when every case reached the last output time."""
        return bool(np.all(self.status == OK))


def _as_float_array(name: str, x: object, ndim: int) -> np.ndarray:
    try:
        a = np.require(np.asarray(x, dtype=np.float64), requirements=["C", "W", "A"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not convertible to a float array ({exc})") from exc
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {a.shape}")
    return a


def _positive_scalar(name: str, x: object, allow_inf: bool = False) -> float:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a number, got {x!r}") from exc
    if not (v > 0.0) or (math.isinf(v) and not allow_inf) or math.isnan(v):
        raise ValueError(f"{name}: must be {'> 0' if allow_inf else 'finite and > 0'}, got {x!r}")
    return v


def _validate(
    model: int | None,
    y0: object,
    params: object,
    t_out: object,
    impulse_times: object,
    impulse_values: object,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if model is not None:
        if isinstance(model, bool) or not isinstance(model, int | np.integer):
            raise ValueError(f"model: expected an integer model id, got {model!r}")
        if int(model) not in odes.MODEL_NAMES:
            raise ValueError(f"model: unknown id {model!r}; known: {odes.MODEL_NAMES}")
    y0a = _as_float_array("y0", y0, 2)
    nb, n = y0a.shape
    if n < 1:
        raise ValueError("y0: needs at least one state component (shape (B, n), n >= 1)")
    pa = _as_float_array("params", params, 2)
    if pa.shape[0] != nb:
        raise ValueError(f"params: expected {nb} rows (one per case of y0), got {pa.shape[0]}")
    ta = _as_float_array("t_out", t_out, 1)
    if ta.size < 1:
        raise ValueError("t_out: needs at least one time (t_out[0] is the initial time)")
    ita = _as_float_array("impulse_times", impulse_times, 2)
    if ita.shape[0] != nb:
        raise ValueError(f"impulse_times: expected shape ({nb}, K), got {ita.shape}")
    iva = _as_float_array("impulse_values", impulse_values, 3)
    if iva.shape != (nb, ita.shape[1], n):
        raise ValueError(
            f"impulse_values: expected shape ({nb}, {ita.shape[1]}, {n}), got {iva.shape}"
        )
    for name, a in (("y0", y0a), ("params", pa), ("t_out", ta), ("impulse_values", iva)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: contains NaN or infinite values")
    if np.any(np.diff(ta) < 0.0):
        raise ValueError("t_out: must be sorted (non-decreasing)")
    if np.any(np.isnan(ita)) or np.any(ita == -np.inf):
        raise ValueError("impulse_times: contains NaN or -inf (pad with +inf)")
    if ita.shape[1] > 1 and np.any(ita[:, 1:] < ita[:, :-1]):
        raise ValueError("impulse_times: each row must be sorted (non-decreasing, +inf padding)")
    if np.any(ita < ta[0]):
        raise ValueError(f"impulse_times: must be >= the initial time t_out[0] = {ta[0]!r}")
    if model is not None:
        odes.check_params(int(model), n, pa)
    return y0a, pa, ta, ita, iva


def _run_chunked(fn: Callable[..., None], args: tuple[object, ...], m: int, n_threads: int) -> None:
    """``fn(*args, lo, hi)`` over [0, m) in contiguous chunks on the thread pool (4 per thread),
    or in one call on this thread."""
    if n_threads > 1 and m > 1:
        edges = np.linspace(0, m, min(m, 4 * n_threads) + 1).astype(np.int64)
        futures = [
            _pool(n_threads).submit(fn, *args, int(lo), int(hi))
            for lo, hi in itertools.pairwise(edges)
        ]
        try:
            for fut in futures:
                fut.result()
        except BaseException:  # an interrupt (or a failed chunk): the chunks not started are
            for fut in futures:  # dropped; a running one cannot be stopped and ends on its own
                fut.cancel()
            raise
    else:
        fn(*args, 0, m)


def _lane_count(lanes: object) -> int:
    if isinstance(lanes, bool) or not isinstance(lanes, int | np.integer) or lanes < 1:
        raise ValueError(f"lanes: expected an integer >= 1, got {lanes!r}")
    return int(lanes)


def integrate(
    model: int,
    y0: np.ndarray,
    params: np.ndarray,
    t_out: np.ndarray,
    impulse_times: np.ndarray,
    impulse_values: np.ndarray,
    *,
    rtol: float = 1e-6,
    atol: float | np.ndarray = 1e-9,
    h0: float = 1e-3,
    h_max: float = np.inf,
    fixed_step: float | None = None,
    parallel: bool = True,
    max_steps: int = 1_000_000,
    exploit_sparsity: bool = True,
    analytic_jacobian: bool = True,
    lanes: int = 1,
) -> Solution:
    """Integrate a batch of independent stiff ODE cases with impulses, with RODAS4.

    Parameters
    ----------
    model:
        Model id from :mod:`microneedling.physics.ode.registry` (``LINEAR``, ``ROBERTSON``, ``HEALING``,
        ...).
    y0:
        (B, n) initial states at t0 = ``t_out[0]``.
    params:
        (B, n_p) parameter vectors (layout per model, see :mod:`~microneedling.physics.ode.registry`).
    t_out:
        (T,) output times shared by all cases, sorted; ``t_out[0]`` is the initial time.
    impulse_times:
        (B, K) per-case impulse times, sorted, >= t0, padded with +inf.
    impulse_values:
        (B, K, n) additive jumps: y <- y + impulse_values[b, k] at impulse_times[b, k]. The output
        at a time equal to an impulse time includes the jump (right-continuous).
    rtol, atol:
        Error control on max_i |err_i| / (atol_i + rtol |y_i|); atol scalar or (n,).
    h0:
        Initial step, also the restart step after each impulse (``min(h, h0)``).
    h_max:
        Largest step.
    fixed_step:
        If given, no adaptivity: steps of exactly this size, clipped to outputs and impulses.
    parallel:
        Spread chunks of cases over a thread pool (``NUMBA_NUM_THREADS`` threads, at most the CPU
        count). Results are bitwise identical either way.
    max_steps:
        Per case, accepted plus rejected steps; a case that needs more fails (status 1, NaN).
    exploit_sparsity:
        Detect the Jacobian's sparsity per case and use a block-triangular LU and compressed
        complex-step Jacobians (see :func:`jacobian_structure`); False = dense LU and one RHS
        evaluation per column. Both give the same solution up to round-off.
    analytic_jacobian:
        Use the model's analytic Jacobian (and its written-out solve of G, HEALING) where it has
        them. False forces complex-step Jacobians and the generic block LU for every model, the
        pre-analytic path, kept for cross-checks and before/after benchmarks; same solution up to
        round-off.
    lanes:
        L > 1: lockstep lanes (:mod:`~microneedling.physics.ode.lanes`). Cases with identical
        impulse times are solved L at a time with one shared step size (the largest step every
        lane accepts; each lane's error is at most the scalar path's tolerance), SIMD-vectorised
        for the healing model; the cases of a set are grouped in the lexicographic order of their
        parameter rows (alike cases together: fewer shared steps); the last group of a set of identical impulse times is padded, a
        remainder of fewer than L/2 cases and any group whose step fails (a non-finite lane, step
        underflow, too many steps) are solved one by one as with ``lanes=1``. ``n_steps`` and
        ``n_rejected`` of a lane are its group's. Only with adaptive steps, sparsity and analytic
        Jacobians (otherwise ignored).

    Returns
    -------
    Solution
        Failed cases (``status != 0``) are NaN from the first output they did not reach; a
        ``RuntimeWarning`` says how many failed.

    Raises
    ------
    ValueError
        On inconsistent shapes, non-finite values, unsorted times or bad tolerances; the message
        names the argument.
    """
    y0a, pa, ta, ita, iva = _validate(model, y0, params, t_out, impulse_times, impulse_values)
    nb, n = y0a.shape
    rtol_f = _positive_scalar("rtol", rtol)
    if rtol_f >= 1.0:
        raise ValueError(f"rtol: must be < 1, got {rtol!r}")
    if np.ndim(atol) > 1 or np.size(atol) not in (1, n):
        raise ValueError(f"atol: expected a scalar or shape ({n},), got shape {np.shape(atol)}")
    atol_a = np.array(np.broadcast_to(np.asarray(atol, dtype=np.float64).ravel(), (n,)))
    if not np.all(np.isfinite(atol_a)) or np.any(atol_a < 0.0):
        raise ValueError("atol: must be finite and >= 0")
    h0_f = _positive_scalar("h0", h0)
    h_max_f = _positive_scalar("h_max", h_max, allow_inf=True)
    fixed_f = 0.0 if fixed_step is None else _positive_scalar("fixed_step", fixed_step)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer) or max_steps < 1:
        raise ValueError(f"max_steps: expected an integer >= 1, got {max_steps!r}")

    y_out = np.empty((nb, ta.size, n))
    stats = np.zeros((nb, 4), dtype=np.int64)
    n_threads = _n_threads() if parallel else 1
    lanes_i = _lane_count(lanes)
    use_lanes = lanes_i > 1 and fixed_step is None and exploit_sparsity and analytic_jacobian

    def solve_cases(idx: np.ndarray | None) -> None:
        """The scalar path for cases ``idx`` (all when None), results into y_out and stats."""
        if idx is not None and idx.size == 0:
            return
        sub = (y0a, pa, ita, iva) if idx is None else (y0a[idx], pa[idx], ita[idx], iva[idx])
        m = sub[0].shape[0]
        yo = y_out if idx is None else np.empty((m, ta.size, n))
        st = stats if idx is None else np.zeros((m, 4), dtype=np.int64)
        args = (
            int(model), sub[0], sub[1], ta, sub[2], sub[3], rtol_f, atol_a, h0_f, h_max_f,
            fixed_f, int(max_steps), not exploit_sparsity, bool(analytic_jacobian), yo, st,
        )  # fmt: skip
        _run_chunked(solve_range, args, m, n_threads)
        if idx is not None:
            y_out[idx] = yo
            stats[idx] = st

    if use_lanes:
        groups, n_real, single = lane_solver.plan_groups(ita, lanes_i, pa)
        group_status = np.zeros(groups.shape[0], dtype=np.int64)
        if groups.shape[0]:
            args = (
                int(model), y0a, pa, ta, ita, iva, rtol_f, atol_a, h0_f, h_max_f,
                int(max_steps), groups, n_real, y_out, stats, group_status,
            )  # fmt: skip
            _run_chunked(lane_solver.solve_groups, args, groups.shape[0], n_threads)
        failed = np.flatnonzero(group_status)
        redo = [groups[g, : n_real[g]] for g in failed]  # a failed group's cases, one by one
        solve_cases(np.sort(np.concatenate([single, *redo])).astype(np.int64))
    else:
        solve_cases(None)
    status = stats[:, 3].copy()
    n_fail = int(np.count_nonzero(status))
    if n_fail:
        first = int(np.flatnonzero(status)[0])
        warnings.warn(
            f"integrate: {n_fail} of {nb} case(s) failed (first: case {first}, "
            f"{STATUS_MESSAGES.get(int(status[first]), status[first])}); their outputs are NaN "
            "from the failure on",
            RuntimeWarning,
            stacklevel=2,
        )
    return Solution(
        t=ta,
        y=y_out,
        n_steps=stats[:, 0].copy(),
        n_rejected=stats[:, 1].copy(),
        n_rhs=stats[:, 2].copy(),
        status=status,
    )


def integrate_reference(
    fun: Callable[[float, np.ndarray, np.ndarray], np.ndarray],
    y0: np.ndarray,
    params: np.ndarray,
    t_out: np.ndarray,
    impulse_times: np.ndarray,
    impulse_values: np.ndarray,
    method: str = "Radau",
    rtol: float = 1e-6,
    atol: float | np.ndarray = 1e-9,
    jac: Callable[[float, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Solution:
    """Slow, obviously-correct reference: one ``scipy.integrate.solve_ivp`` call per segment.

    For each case, the interval is cut at its impulse times; each segment is integrated by
    ``solve_ivp(fun, ..., method=method, t_eval=...)`` from the (jumped) state at its start, and the
    state at its end gets the next jump. ``fun(t, y, p) -> dy/dt`` is a plain Python function (and
    ``jac(t, y, p) -> J`` an optional Jacobian). Same conventions and return type as
    :func:`integrate` (``n_steps`` = solver steps are not reported: 0; ``n_rhs`` = ``nfev``).
    """
    from scipy.integrate import solve_ivp

    y0a, pa, ta, ita, iva = _validate(None, y0, params, t_out, impulse_times, impulse_values)
    nb, n = y0a.shape
    y_out = np.full((nb, ta.size, n), np.nan)
    n_rhs = np.zeros(nb, dtype=np.int64)
    status = np.zeros(nb, dtype=np.int64)
    t0, t_end = float(ta[0]), float(ta[-1])
    for b in range(nb):
        p = pa[b]

        def f(t: float, y: np.ndarray, p: np.ndarray = p) -> np.ndarray:
            return np.asarray(fun(t, y, p), dtype=np.float64)

        kw = {} if jac is None else {"jac": lambda t, y, p=p: jac(t, y, p)}
        jumps = [(float(tk), iva[b, k]) for k, tk in enumerate(ita[b]) if tk <= t_end]
        ends = [tk for tk, _ in jumps if tk > t0] + [t_end]
        y = y0a[b].copy()
        t = t0
        k = 0
        while k < len(jumps) and jumps[k][0] <= t:
            y = y + jumps[k][1]
            k += 1
        y_out[b, ta == t] = y
        for end in ends:
            if end > t:
                inside = (ta > t) & (ta <= end)
                sol = solve_ivp(f, (t, end), y, method=method, t_eval=np.unique(np.append(
                    ta[inside], end)), rtol=rtol, atol=atol, **kw)  # fmt: skip
                n_rhs[b] += sol.nfev
                if sol.status != 0:
                    status[b] = STEP_TOO_SMALL
                    break
                for j, tj in enumerate(sol.t):
                    y_out[b, ta == tj] = sol.y[:, j]
                y = sol.y[:, -1].copy()
                t = end
            while k < len(jumps) and jumps[k][0] <= t:
                y = y + jumps[k][1]
                k += 1
            y_out[b, ta == t] = y  # right-continuous: the output at t includes the jump
    return Solution(
        t=ta,
        y=y_out,
        n_steps=np.zeros(nb, dtype=np.int64),
        n_rejected=np.zeros(nb, dtype=np.int64),
        n_rhs=n_rhs,
        status=status,
    )

"""The healing ODE's kernels on L cases at once ("lanes"), for a lockstep integrator.

The same right-hand side, analytic Jacobian and structured factor/solve as
:mod:`microneedling.physics.healing_rhs` (time in days), written for a state laid out as
(N_STATE, L): state ``i`` of lane ``lane`` is ``y[i, lane]``, parameter ``k`` is ``p[k, lane]``, the Jacobian
entry (i, j) is ``jac[i * N_STATE + j, lane]``. Each kernel is a loop over lanes whose body is the scalar
kernel's straight-line code, with no branch on the state, so that LLVM can run the lanes in SIMD
registers. Every expression is the scalar kernel's, term for term and in the same order, and no
fast-math is used: a lane's result equals the scalar kernel's on the same inputs bit for bit (the
tests check it).

The kernels are compiled with :class:`NoAliasCompiler`: every array argument is declared not to
overlap any other (LLVM ``noalias``). Without it LLVM must check at run time that the output rows do
not overlap the input rows before it vectorises the loop over lanes, and with tens of rows that is
more checks than it allows (measured: no SIMD code at all, ``benchmarks/bench_lanes.py``). So a
caller must never pass overlapping arrays (two views of one array included) to one call.
"""

from __future__ import annotations

import sys

import numba as nb
import numpy as np
from numba.core.compiler import CompilerBase, DefaultPassBuilder

from microneedling.physics import healing_rhs as _scalar_kernels
from microneedling.physics.healing_rhs import (
    EPI0,
    IX_F,
    IX_I,
    IX_M,
    IX_N1,
    IX_N3,
    IX_NX,
    IX_R,
    N_DERMAL,
    N_STATE,
)
from microneedling.physics.ode.cache import bind_cache_to_sources, jitted_in, source_files


class NoAliasCompiler(CompilerBase):  # type: ignore[misc,unused-ignore]
    """numba's nopython pipeline with the ``noalias`` flag set: LLVM may assume that no two array
    arguments of the compiled function overlap (so its loops vectorise without run-time overlap
    checks). Only for functions whose callers never pass overlapping arrays."""

    def define_pipelines(self):  # type: ignore[no-untyped-def,unused-ignore]
        """The default nopython pipeline, with ``flags.noalias`` set."""
        self.state.flags.noalias = True
        return [DefaultPassBuilder.define_nopython_pipeline(self.state)]


@nb.njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
def _dermal_rhs_lanes(y, p, o, out):  # type: ignore[no-untyped-def,unused-ignore]
    """Right-hand side of one dermal block (offset ``o``) of every lane."""
    L = y.shape[1]
    for lane in range(L):
        D = y[o + 0, lane]
        I = y[o + 1, lane]  # noqa: E741
        M = y[o + 2, lane]
        F = y[o + 3, lane]
        P = y[o + 4, lane]
        N3 = y[o + 5, lane]
        N1 = y[o + 6, lane]
        NE = y[o + 7, lane]
        LE = y[o + 8, lane]
        S = y[o + 9, lane]
        NX = y[o + 10, lane]
        R = y[o + 11, lane]
        Bl = y[o + 12, lane]
        Hm = y[o + 13, lane]
        Fx = F - 1.0
        Px = P - 1.0
        T = M + p[7, lane] * Fx
        clear = p[0, lane] + p[1, lane] * I
        out[o + 0, lane] = -clear * D
        out[o + 1, lane] = p[2, lane] * (R + Hm) / p[3, lane] - p[4, lane] * I
        out[o + 2, lane] = p[5, lane] * I - p[6, lane] * M
        out[o + 3, lane] = (
            p[8, lane] * F * T / (p[9, lane] + T) * (1.0 - F / p[10, lane]) - p[11, lane] * Fx
        )
        out[o + 4, lane] = p[12, lane] * I + p[13, lane] * Fx - p[14, lane] * Px
        out[o + 5, lane] = p[15, lane] * Fx - (p[17, lane] + p[18, lane] * P) * N3
        out[o + 6, lane] = (
            p[16, lane] * Fx + p[17, lane] * N3 - (p[42, lane] + p[19, lane] * P) * N1
        )
        out[o + 7, lane] = p[22, lane] * Fx - p[23, lane] * P * NE
        out[o + 8, lane] = p[24, lane] * Px * (1.0 - LE)
        out[o + 9, lane] = -(p[25, lane] * D + p[26, lane] * Px) * S
        out[o + 10, lane] = (
            p[42, lane] * N1 - p[43, lane] * P * NX - p[20, lane] * Px * (p[21, lane] + NX)
        )
        out[o + 11, lane] = -clear * R
        out[o + 12, lane] = -p[47, lane] * Bl
        out[o + 13, lane] = p[47, lane] * Bl - p[48, lane] * Hm


@nb.njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
def healing_rhs_lanes(y, p, out):  # type: ignore[no-untyped-def,unused-ignore]
    """dy/dt (1/d) of every lane: ``y`` (N_STATE, L), ``p`` (N_PARAM, L) into ``out`` (N_STATE, L).

    Lane ``lane`` of ``out`` equals :func:`~microneedling.physics.healing_rhs.healing_rhs` of
    ``y[:, lane]``, ``p[:, lane]`` bit for bit. Autonomous (no time argument).
    """
    _dermal_rhs_lanes(y, p, 0, out)
    _dermal_rhs_lanes(y, p, N_DERMAL, out)
    L = y.shape[1]
    for lane in range(L):
        T_pap = y[IX_M, lane] + p[7, lane] * (y[IX_F, lane] - 1.0)
        e = EPI0
        De = y[e + 0, lane]
        K = y[e + 1, lane]
        H = y[e + 2, lane]
        Mp = y[e + 3, lane]
        Q = y[e + 4, lane]
        A = y[e + 5, lane]
        Ma = y[e + 6, lane]
        I_pap = y[IX_I, lane]
        out[e + 0, lane] = -p[27, lane] * De
        out[e + 1, lane] = (
            p[28, lane] * De / (p[29, lane] + De) + p[30, lane] * T_pap - p[31, lane] * K
        )
        out[e + 2, lane] = p[32, lane] * K - p[33, lane] * H
        agent = 1.0 - p[35, lane] * A / (p[36, lane] + A)
        dermal = np.exp(-p[44, lane] * (y[IX_N3, lane] + y[IX_N1, lane] + y[IX_NX, lane]))
        out[e + 3, lane] = p[34, lane] * (Ma - (1.0 + p[37, lane] * K) * Mp)
        out[e + 4, lane] = p[38, lane] * agent * I_pap - p[39, lane] * (1.0 + p[37, lane] * K) * Q
        out[e + 5, lane] = -p[40, lane] * A
        out[e + 6, lane] = p[45, lane] * (p[41, lane] * agent * dermal - Ma)


@nb.njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
def _dermal_jacobian_lanes(y, p, o, jac):  # type: ignore[no-untyped-def,unused-ignore]
    """Non-zero entries of d(dermal block)/dy at offset ``o`` of every lane.

    Three loops over the lanes of at most 12 stores each: LLVM vectorises a loop that stores into
    more than 16 rows of one array only after run-time overlap checks between them, which it
    refuses (measured: scalar code with the 31 stores in one loop).
    """
    L = y.shape[1]
    iD, iI, iM, iF, iP = o, o + 1, o + 2, o + 3, o + 4
    i3, i1, iE, iL, iS, iX, iR = o + 5, o + 6, o + 7, o + 8, o + 9, o + 10, o + 11
    iBl, iHm = o + 12, o + 13
    for lane in range(L):
        D = y[iD, lane]
        I = y[iI, lane]  # noqa: E741
        R = y[iR, lane]
        # D' = -(k_D + k_DI I) D and R' = -(k_D + k_DI I) R: the same clearance
        clear = p[0, lane] + p[1, lane] * I
        jac[iD * N_STATE + iD, lane] = -clear
        jac[iD * N_STATE + iI, lane] = -p[1, lane] * D
        jac[iR * N_STATE + iR, lane] = -clear
        jac[iR * N_STATE + iI, lane] = -p[1, lane] * R
        # I' = s_I (R + Hm)/K_D - mu_I I
        jac[iI * N_STATE + iR, lane] = p[2, lane] / p[3, lane]
        jac[iI * N_STATE + iHm, lane] = p[2, lane] / p[3, lane]
        jac[iI * N_STATE + iI, lane] = -p[4, lane]
        # Bl' = -k_lys Bl,  Hm' = k_lys Bl - k_Hm Hm
        jac[iBl * N_STATE + iBl, lane] = -p[47, lane]
        jac[iHm * N_STATE + iBl, lane] = p[47, lane]
        jac[iHm * N_STATE + iHm, lane] = -p[48, lane]
        # M' = s_M I - mu_M M
        jac[iM * N_STATE + iI, lane] = p[5, lane]
        jac[iM * N_STATE + iM, lane] = -p[6, lane]
    for lane in range(L):
        M = y[iM, lane]
        F = y[iF, lane]
        P = y[iP, lane]
        N3 = y[i3, lane]
        N1 = y[i1, lane]
        T = M + p[7, lane] * (F - 1.0)
        # F' = r_F F g(T) (1 - F/F_max) - mu_F (F - 1), g = T/(K_T + T), T = M + sigma_TF (F - 1)
        kt = p[9, lane] + T
        g = T / kt
        dg = p[9, lane] / (kt * kt)
        logistic = 1.0 - F / p[10, lane]
        jac[iF * N_STATE + iM, lane] = p[8, lane] * F * logistic * dg
        jac[iF * N_STATE + iF, lane] = (
            p[8, lane] * (g * (1.0 - 2.0 * F / p[10, lane]) + F * logistic * dg * p[7, lane])
            - p[11, lane]
        )
        # P' = sigma_PI I + sigma_PF (F - 1) - mu_P (P - 1)
        jac[iP * N_STATE + iI, lane] = p[12, lane]
        jac[iP * N_STATE + iF, lane] = p[13, lane]
        jac[iP * N_STATE + iP, lane] = -p[14, lane]
        # N3' = k_3 (F - 1) - (k_mat + delta_3 P) N3
        jac[i3 * N_STATE + iF, lane] = p[15, lane]
        jac[i3 * N_STATE + iP, lane] = -p[18, lane] * N3
        jac[i3 * N_STATE + i3, lane] = -(p[17, lane] + p[18, lane] * P)
        # N1' = k_1 (F - 1) + k_mat N3 - (k_x + delta_1 P) N1
        jac[i1 * N_STATE + iF, lane] = p[16, lane]
        jac[i1 * N_STATE + iP, lane] = -p[19, lane] * N1
        jac[i1 * N_STATE + i3, lane] = p[17, lane]
        jac[i1 * N_STATE + i1, lane] = -(p[42, lane] + p[19, lane] * P)
    for lane in range(L):
        D = y[iD, lane]
        P = y[iP, lane]
        NE = y[iE, lane]
        LE = y[iL, lane]
        S = y[iS, lane]
        NX = y[iX, lane]
        Px = P - 1.0
        # NE' = k_E (F - 1) - delta_E P NE
        jac[iE * N_STATE + iF, lane] = p[22, lane]
        jac[iE * N_STATE + iP, lane] = -p[23, lane] * NE
        jac[iE * N_STATE + iE, lane] = -p[23, lane] * P
        # LE' = delta_bE (P - 1) (1 - LE)
        jac[iL * N_STATE + iP, lane] = p[24, lane] * (1.0 - LE)
        jac[iL * N_STATE + iL, lane] = -p[24, lane] * Px
        # S' = -(k_SD D + k_SP (P - 1)) S
        jac[iS * N_STATE + iD, lane] = -p[25, lane] * S
        jac[iS * N_STATE + iP, lane] = -p[26, lane] * S
        jac[iS * N_STATE + iS, lane] = -(p[25, lane] * D + p[26, lane] * Px)
        # NX' = k_x N1 - delta_X P NX - delta_b (P - 1) (C1_0 + NX)
        jac[iX * N_STATE + i1, lane] = p[42, lane]
        jac[iX * N_STATE + iP, lane] = -p[43, lane] * NX - p[20, lane] * (p[21, lane] + NX)
        jac[iX * N_STATE + iX, lane] = -p[43, lane] * P - p[20, lane] * Px


@nb.njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
def healing_jacobian_lanes(y, p, jac):  # type: ignore[no-untyped-def,unused-ignore]
    """Analytic J (1/d) of every lane into ``jac`` (N_STATE·N_STATE, L), entry (i, j) in row
    ``i·N_STATE + j``: the structural non-zeros of
    :func:`~microneedling.physics.healing_rhs.healing_jacobian`, bit for bit; other entries are
    left as they are (pass a zeroed array once). Two loops over the epidermis (see
    :func:`_dermal_jacobian_lanes`)."""
    _dermal_jacobian_lanes(y, p, 0, jac)
    _dermal_jacobian_lanes(y, p, N_DERMAL, jac)
    L = y.shape[1]
    e = EPI0
    iDe, iK, iH, iMp, iQ, iA, iMa = e, e + 1, e + 2, e + 3, e + 4, e + 5, e + 6
    for lane in range(L):
        De = y[iDe, lane]
        K = y[iK, lane]
        Mp = y[iMp, lane]
        # De' = -k_De De
        jac[iDe * N_STATE + iDe, lane] = -p[27, lane]
        # K' = s_K De/(K_De + De) + s_KT T_pap - mu_K K,  T_pap = M_pap + sigma_TF (F_pap - 1)
        kde = p[29, lane] + De
        jac[iK * N_STATE + iDe, lane] = p[28, lane] * p[29, lane] / (kde * kde)
        jac[iK * N_STATE + IX_M, lane] = p[30, lane]
        jac[iK * N_STATE + IX_F, lane] = p[30, lane] * p[7, lane]
        jac[iK * N_STATE + iK, lane] = -p[31, lane]
        # H' = k_H K - mu_H H
        jac[iH * N_STATE + iK, lane] = p[32, lane]
        jac[iH * N_STATE + iH, lane] = -p[33, lane]
        # Mp' = kappa_T (Ma - (1 + beta_K K) Mp)
        jac[iMp * N_STATE + iMa, lane] = p[34, lane]
        jac[iMp * N_STATE + iMp, lane] = -p[34, lane] * (1.0 + p[37, lane] * K)
        jac[iMp * N_STATE + iK, lane] = -p[34, lane] * p[37, lane] * Mp
        # A' = -k_A A
        jac[iA * N_STATE + iA, lane] = -p[40, lane]
    for lane in range(L):
        K = y[iK, lane]
        A = y[iA, lane]
        I_pap = y[IX_I, lane]
        # Ma' = kappa_R (L (1 - e_A A/(EC_A + A)) exp(-beta_N R) - Ma),
        # R = N3 + N1 + NX of the papillary layer
        ka = p[36, lane] + A
        dagent = -p[35, lane] * p[36, lane] / (ka * ka)  # d/dA of 1 - e_A A/(EC_A + A)
        dermal = np.exp(-p[44, lane] * (y[IX_N3, lane] + y[IX_N1, lane] + y[IX_NX, lane]))
        jac[iMa * N_STATE + iA, lane] = p[45, lane] * p[41, lane] * dagent * dermal
        d_r = (
            -p[45, lane] * p[41, lane] * (1.0 - p[35, lane] * A / ka) * p[44, lane] * dermal
        )  # d/dR
        jac[iMa * N_STATE + IX_N3, lane] = d_r
        jac[iMa * N_STATE + IX_N1, lane] = d_r
        jac[iMa * N_STATE + IX_NX, lane] = d_r
        jac[iMa * N_STATE + iMa, lane] = -p[45, lane]
        # Q' = g_Q (1 - e_A A/(EC_A + A)) I_pap - mu_Q (1 + beta_K K) Q
        jac[iQ * N_STATE + IX_I, lane] = p[38, lane] * (1.0 - p[35, lane] * A / ka)
        jac[iQ * N_STATE + iA, lane] = p[38, lane] * I_pap * dagent
        jac[iQ * N_STATE + iQ, lane] = -p[39, lane] * (1.0 + p[37, lane] * K)
        jac[iQ * N_STATE + iK, lane] = -p[39, lane] * p[37, lane] * y[iQ, lane]


@nb.njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
def healing_factor_lanes(fac, jac, dinv, good):  # type: ignore[no-untyped-def,unused-ignore]
    """Factor G = fac·I − J of every lane (``fac`` = 1/(h·γ) in 1/d, one step size for all lanes).

    As :func:`~microneedling.physics.healing_rhs.healing_factor`, into ``dinv`` (N_STATE, L), with
    no branch on the values: ``good[lane]`` is False when a pivot of that lane is zero or not finite
    (that lane's ``dinv`` is then meaningless; the other lanes' are valid).
    """
    L = jac.shape[1]
    for lane in range(L):
        good[lane] = True
    for i in range(N_STATE):
        if i == IX_R or i == IX_I or i == N_DERMAL + IX_R or i == N_DERMAL + IX_I:
            continue  # inside a 2x2 block
        for lane in range(L):
            d = fac - jac[i * N_STATE + i, lane]
            ad = abs(d)
            good[lane] = good[lane] & (ad > 0.0) & (ad < np.inf)
            dinv[i, lane] = 1.0 / d
    for o in (0, N_DERMAL):
        iR = o + IX_R
        iI = o + IX_I
        for lane in range(L):
            det = (fac - jac[iR * N_STATE + iR, lane]) * (fac - jac[iI * N_STATE + iI, lane]) - jac[
                iR * N_STATE + iI, lane
            ] * jac[iI * N_STATE + iR, lane]
            ad = abs(det)
            good[lane] = good[lane] & (ad > 0.0) & (ad < np.inf)
            dinv[iR, lane] = 1.0 / det


# rows of the scratch arrays of healing_solve_lanes: what later loops read of a dermal block
SA_D, SA_I, SA_M, SA_F, SA_P = range(5)
SB_N3, SB_N1, SB_NX = range(3)


@nb.njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
def _dermal_solve_a(fac, jac, dinv, o, b, x, sa):  # type: ignore[no-untyped-def,unused-ignore]
    """Forward substitution, first part of one dermal block (offset ``o``): Bl, Hm, (R, I), D, M,
    F, P of every lane from ``b`` into ``x``, and D, I, M, F, P into ``sa`` for later loops."""
    L = x.shape[1]
    iD, iI, iM, iF, iP, iR = o, o + 1, o + 2, o + 3, o + 4, o + 11
    iBl, iHm = o + 12, o + 13
    for lane in range(L):
        # the retained blood (Bl, then Hm) feeds I and depends on nothing else
        xBl = b[iBl, lane] * dinv[iBl, lane]
        xHm = (b[iHm, lane] + jac[iHm * N_STATE + iBl, lane] * xBl) * dinv[iHm, lane]
        # (R, I): 2x2 block [[fac - J_RR, -J_RI], [-J_IR, fac - J_II]], Cramer's rule
        rR = b[iR, lane]
        rI = b[iI, lane] + jac[iI * N_STATE + iHm, lane] * xHm
        xR = ((fac - jac[iI * N_STATE + iI, lane]) * rR + jac[iR * N_STATE + iI, lane] * rI) * dinv[
            iR, lane
        ]
        xI = ((fac - jac[iR * N_STATE + iR, lane]) * rI + jac[iI * N_STATE + iR, lane] * rR) * dinv[
            iR, lane
        ]
        xD = (b[iD, lane] + jac[iD * N_STATE + iI, lane] * xI) * dinv[iD, lane]
        xM = (b[iM, lane] + jac[iM * N_STATE + iI, lane] * xI) * dinv[iM, lane]
        xF = (b[iF, lane] + jac[iF * N_STATE + iM, lane] * xM) * dinv[iF, lane]
        xP = (
            b[iP, lane] + jac[iP * N_STATE + iI, lane] * xI + jac[iP * N_STATE + iF, lane] * xF
        ) * dinv[iP, lane]
        x[iBl, lane] = xBl
        x[iHm, lane] = xHm
        x[iR, lane] = xR
        x[iI, lane] = xI
        x[iD, lane] = xD
        x[iM, lane] = xM
        x[iF, lane] = xF
        x[iP, lane] = xP
        sa[SA_D, lane] = xD
        sa[SA_I, lane] = xI
        sa[SA_M, lane] = xM
        sa[SA_F, lane] = xF
        sa[SA_P, lane] = xP


@nb.njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
def _dermal_solve_b(jac, dinv, o, b, x, sa, sb):  # type: ignore[no-untyped-def,unused-ignore]
    """Forward substitution, second part of one dermal block: N3, N1, NX, NE, LE, S of every lane
    (D, F, P from ``sa``) into ``x``, and N3, N1, NX into ``sb``."""
    L = x.shape[1]
    iD, iF, iP = o, o + 3, o + 4
    i3, i1, iE, iL, iS, iX = o + 5, o + 6, o + 7, o + 8, o + 9, o + 10
    for lane in range(L):
        xD = sa[SA_D, lane]
        xF = sa[SA_F, lane]
        xP = sa[SA_P, lane]
        x3 = (
            b[i3, lane] + jac[i3 * N_STATE + iF, lane] * xF + jac[i3 * N_STATE + iP, lane] * xP
        ) * dinv[i3, lane]
        x1 = (
            b[i1, lane]
            + jac[i1 * N_STATE + iF, lane] * xF
            + jac[i1 * N_STATE + iP, lane] * xP
            + jac[i1 * N_STATE + i3, lane] * x3
        ) * dinv[i1, lane]
        xX = (
            b[iX, lane] + jac[iX * N_STATE + i1, lane] * x1 + jac[iX * N_STATE + iP, lane] * xP
        ) * dinv[iX, lane]
        xE = (
            b[iE, lane] + jac[iE * N_STATE + iF, lane] * xF + jac[iE * N_STATE + iP, lane] * xP
        ) * dinv[iE, lane]
        xL = (b[iL, lane] + jac[iL * N_STATE + iP, lane] * xP) * dinv[iL, lane]
        xS = (
            b[iS, lane] + jac[iS * N_STATE + iD, lane] * xD + jac[iS * N_STATE + iP, lane] * xP
        ) * dinv[iS, lane]
        x[i3, lane] = x3
        x[i1, lane] = x1
        x[iX, lane] = xX
        x[iE, lane] = xE
        x[iL, lane] = xL
        x[iS, lane] = xS
        sb[SB_N3, lane] = x3
        sb[SB_N1, lane] = x1
        sb[SB_NX, lane] = xX


@nb.njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
def _epidermal_solve(jac, dinv, b, x, sa, sb):  # type: ignore[no-untyped-def,unused-ignore]
    """Forward substitution through the epidermis of every lane (the papillary I, M, F from
    ``sa`` and N3, N1, NX from ``sb``) into ``x``."""
    L = x.shape[1]
    e = EPI0
    iDe, iK, iH, iMp, iQ, iA, iMa = e, e + 1, e + 2, e + 3, e + 4, e + 5, e + 6
    for lane in range(L):
        xDe = b[iDe, lane] * dinv[iDe, lane]
        xK = (
            b[iK, lane]
            + jac[iK * N_STATE + iDe, lane] * xDe
            + jac[iK * N_STATE + IX_M, lane] * sa[SA_M, lane]
            + jac[iK * N_STATE + IX_F, lane] * sa[SA_F, lane]
        ) * dinv[iK, lane]
        xH = (b[iH, lane] + jac[iH * N_STATE + iK, lane] * xK) * dinv[iH, lane]
        xA = b[iA, lane] * dinv[iA, lane]
        xMa = (
            b[iMa, lane]
            + jac[iMa * N_STATE + iA, lane] * xA
            + jac[iMa * N_STATE + IX_N3, lane] * sb[SB_N3, lane]
            + jac[iMa * N_STATE + IX_N1, lane] * sb[SB_N1, lane]
            + jac[iMa * N_STATE + IX_NX, lane] * sb[SB_NX, lane]
        ) * dinv[iMa, lane]
        xMp = (
            b[iMp, lane] + jac[iMp * N_STATE + iMa, lane] * xMa + jac[iMp * N_STATE + iK, lane] * xK
        ) * dinv[iMp, lane]
        xQ = (
            b[iQ, lane]
            + jac[iQ * N_STATE + IX_I, lane] * sa[SA_I, lane]
            + jac[iQ * N_STATE + iA, lane] * xA
            + jac[iQ * N_STATE + iK, lane] * xK
        ) * dinv[iQ, lane]
        x[iDe, lane] = xDe
        x[iK, lane] = xK
        x[iH, lane] = xH
        x[iA, lane] = xA
        x[iMa, lane] = xMa
        x[iMp, lane] = xMp
        x[iQ, lane] = xQ


@nb.njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
def healing_solve_lanes(fac, jac, dinv, b, x, sa, sb):  # type: ignore[no-untyped-def,unused-ignore]
    """x = (fac·I − J)^{-1} b of every lane (``b``, ``x`` (N_STATE, L), distinct), factored by
    :func:`healing_factor_lanes`; ``sa`` (5, L) and ``sb`` (3, L) are scratch. Lane ``lane``
    equals :func:`~microneedling.physics.healing_rhs.healing_solve` of ``b[:, lane]`` bit for
    bit (the same expressions in the same order).

    Out of place, and each loop over the lanes reads no row of an array it writes: a loop that
    reads and writes rows of one array vectorises only behind run-time overlap checks, which LLVM
    judges worth it only from ~24 lanes on (measured: scalar code below that). The papillary
    layer goes first, then the epidermis (which needs its I, M, F, N3, N1, NX), then the
    reticular layer.
    """
    _dermal_solve_a(fac, jac, dinv, 0, b, x, sa)
    _dermal_solve_b(jac, dinv, 0, b, x, sa, sb)
    _epidermal_solve(jac, dinv, b, x, sa, sb)
    _dermal_solve_a(fac, jac, dinv, N_DERMAL, b, x, sa)
    _dermal_solve_b(jac, dinv, N_DERMAL, b, x, sa, sb)


# numba keys its cache on this file only: an edit of healing_rhs (whose constants these kernels
# compile in) must recompile them too
bind_cache_to_sources(
    jitted_in(__name__, globals()),
    [*source_files(sys.modules[__name__]), str(_scalar_kernels.__file__)],
)

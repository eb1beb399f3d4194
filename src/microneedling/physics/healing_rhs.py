"""Right-hand side of the wound-healing ODE (compiled with numba; time in days).

One *case* is one treated site of one patient. Its state has two dermal blocks (papillary, reticular
dermis) of :data:`N_DERMAL` states each and one epidermal block of :data:`N_EPIDERMAL` states:

dermal block (per layer ℓ)                      epidermal block
---------------------------------------------  -------------------------------------------------
D   injured volume fraction still uncleared    De  epidermal injury (open channels in the epidermis)
I   inflammation (neutrophils + M1, 1 = ref.)  K   keratinocyte activation
M   repair macrophages (M2)                    H   epidermal thickening, fraction of baseline
F   fibroblasts, relative to baseline (F0 = 1) Mp  lesional pigment excess, fraction of baseline
P   MMP activity, relative to baseline          Q   inflammation-induced pigment (PIH) excess
N3  new collagen III, fraction of baseline      A   depigmenting-agent effect (delivered topical)
    total collagen                              Ma  lesional melanocyte activity (melanogenic
N1  new, immature collagen I (incl. matured         drive), fraction of the untreated lesion's
    III; reducible cross-links, MMP-labile),
    same unit
NE  new elastic fibre, fraction of baseline
    elastin
LE  pre-existing elastin lost to MMP
S   scar tethering left (1 = untreated)
NX  mature (cross-linked) new collagen I, minus
    pre-existing matrix lost to excess MMP,
    fraction of baseline total collagen
R   injury still recruiting inflammation
    (K_D·s(φ) at a session, cleared like D)
Bl  blood retained in a roller's clefts, not
    yet lysed (recruiting-injury units)
Hm  lysed retained blood, recruiting
    inflammation (same units as R)

Equations (per dermal layer; T is a quasi-steady TGF-β signal because its decay, 9.1–15 d⁻¹
[Waugh & Sherratt 2006; Jin et al. 2011], is much faster than every other rate)::

    D'  = −(k_D + k_DI·I)·D
    R'  = −(k_D + k_DI·I)·R,   R jumps by K_D·s(φ_k) at session k, s(φ) = φ/(K_D + φ)
    Bl' = −k_lys·Bl,           Bl jumps by ρ_B·K_D·s(c_k) at session k (c_k: the clefts' share)
    Hm' = k_lys·Bl − k_Hm·Hm
    I'  = s_I·(R + Hm)/K_D − μ_I·I                              shape: Cooper et al. 2015
    M'  = s_M·I − μ_M·M
    T   = M + σ_TF·(F − 1)
    F'  = r_F·F·T/(K_T + T)·(1 − F/F_max) − μ_F·(F − 1)          Jin et al. 2011; Adler et al. 2020
    P'  = σ_PI·I + σ_PF·(F − 1) − μ_P·(P − 1)                     Jin et al. 2011 (MMP-9 decay)
    N3' = k_3·(F − 1) − (k_mat + δ_3·P)·N3
    N1' = k_1·(F − 1) + k_mat·N3 − (k_x + δ_1·P)·N1
    NE' = k_E·(F − 1) − δ_E·P·NE
    LE' = δ_bE·(P − 1)·(1 − LE)
    S'  = −(k_SD·D + k_SP·(P − 1))·S
    NX' = k_x·N1 − δ_X·P·NX − δ_b·(P − 1)·(C1_0 + NX)

Recruitment by density and by time: a session's injured fraction φ_k is the sum of many separate
channels, each a small wound whose signal to circulating leukocytes is cleared on its own clock.
Density sets how strong the pooled signal is, saturating once the channels' zones of influence
overlap, s(φ_k) = φ_k/(K_D + φ_k); how long it lasts is each channel's clearance, k_D + k_DI·I
(the clearance of D: debris and the recruiting signal leave together). So R, the recruiting
injury, starts at K_D·s(φ_k) and decays as D does, and recruitment is s_I·s(φ_k) at the session,
falling with the channels' clearance. (A pooled Michaelis-Menten recruitment s_I·D/(K_D + D),
the form before 2026-12-06, treats the punctures as one wound: a dense session stays on its
plateau until D has fallen to ~K_D, so its recruitment lasts ln(φ/K_D)/(k_D + k_DI·I) and a dense
pen session inflamed for days longer than a roller's, against Chu 2012 and the pen
literature.) D is kept for what grows with the injured volume itself, the release of scar tethers
(S). Sessions whose R overlaps add.

Retained blood recruits on its own, later clock. A clean puncture inflames little; blood kept in
the dermis inflames intensely once it lyses (rat skin: no infiltrate after needle puncture alone,
an intense one where blood was injected, Ross et al. 2013; the blood-driven infiltrate peaks at
48-72 h, after red-cell lysis). A roller's needle cuts a cleft beside its path and the blood stays
there (``needles``, "Roller clefts"; a pen's or a stamp's vertical stroke cuts none, c_k = 0):
each session puts ρ_B·K_D·s(c_k) of blood into Bl, which lyses at k_lys into Hm, whose recruiting
signal macrophages clear at k_Hm. So a roller's redness has a late tail a pen's lacks, as purpura
lengthens erythema after pulsed-dye laser (3.3 to 5.6 days, Alam et al.).

Durable collagen: new type I collagen is first immature (N1: reducible cross-links, pepsin-soluble,
turned over by MMPs at δ_1·P); it cross-links into the stable network at k_x (half-life ~60 d, from
the rise of wound tensile strength) and then turns over like mature dermal collagen, δ_X (half-life
~15 years). What excess MMP activity destroys is mature matrix, so that loss is booked on NX, and a
deficit refills at the mature turnover. Gains therefore persist for years and return to baseline on
a multi-year horizon. The loss is mass action in the mature type I matrix still there, C1_0 + NX
(pre-existing share C1_0 of baseline collagen plus the mature new collagen, less what was lost):
collagen is cleaved through an MMP-collagen complex formed at a rate proportional to both (Jin et
al. 2011, whose k_on is per collagen density), as the pre-existing elastin's loss is (LE). Near
baseline it is δ_b·(P − 1)·C1_0, the form before 2026-12-07; unlike it, it stops when the mature
matrix is gone, so NX ≥ −C1_0 and the collagen change stays above −100·C1_0 % for every
parameter set (the zero-order form took some parameter draws of a weekly course to −129 %).

Epidermis (driven by the papillary layer's T and I)::

    De' = −k_De·De
    K'  = s_K·De/(K_De + De) + s_KT·T_pap − μ_K·K
    H'  = k_H·K − μ_H·H
    Ma' = κ_R·(L·(1 − e_A·A/(EC_A + A))·exp(−β_N·R) − Ma)       melanocyte activity (κ_R)
    Mp' = κ_T·(Ma − (1 + β_K·K)·Mp)                              epidermal turnover (κ_T)
    Q'  = g_Q·(1 − e_A·A/(EC_A + A))·I_pap − μ_Q·(1 + β_K·K)·Q
    A'  = −k_A·A

Mp is the lesional epidermal pigment excess (L = 1 when the site has a lesion): melanin handed to
keratinocytes leaves with them at the epidermal turnover rate κ_T, needling speeds that turnover in
proportion to it (β_K per unit keratinocyte activation), and the lesion's melanocytes make it at
their activity Ma. A delivered depigmenting agent (occupancy A/(EC_A + A), maximal effect e_A)
lowers the melanocytes' activity and the inflammation-driven (PIH) pigment production. Activity
follows its drive at κ_R, not at once: a depigmenting treatment's gain builds over weeks and is lost
over about two months after it stops (del Rosario et al. 2018: the drug's part of the mMASI gain of
oral tranexamic acid fell from 31 to 7 points in the 3 months after it; with the turnover in series
that is κ_R ≈ 1/37 d). ``e_A``, ``k_A`` and ``g_Q`` may differ per case (product,
photoprotection); the parameter files give their defaults.

Q is the pigment that inflammation adds to the epidermis (PIH). It is handed to keratinocytes like
the lesion's pigment, so it leaves the same way: at its fading rate μ_Q, sped by needling's
turnover in the same proportion (1 + β_K·K) as Mp. Sessions close together therefore also shed the
pigment of the previous ones faster; without the factor a weekly course piled up Q as if the
epidermis were at rest between sessions.

The lesion's melanogenic drive also depends on the dermis beneath it: melasma is kept up by signals
from a photoaged papillary dermis (solar elastosis, senescent fibroblasts, vessels; Han et al. 2024),
and dermal remodelling is what holds an improvement (Han et al. 2024: monthly microneedling-RF
maintained it while the untreated side relapsed over 6 months). The drive (and so the activity it
sets) falls as exp(−β_N·R) with R = N3 + N1 + NX of the papillary layer (new collagen, fraction of
baseline; matrix lost to MMP makes R < 0 and raises the drive). Because R persists for months to
years, so does this part of the improvement, while the part from faster turnover (β_K·K) fades
within about one turnover after the course and the agent's over about two months.

With no impulse the baseline (D = R = I = M = 0, F = P = 1, N· = LE = 0, S = 1, epidermis 0 but
Ma = Mp = L) is an exact fixed point: every term above is identically zero there, so a course with no
session stays at baseline to the last bit. F ≥ 1 and P ≥ 1 hold by construction (their sources are
non-negative), so fibroblasts and MMPs never fall below homeostasis.

The fibroblast–TGF-β loop is stable at baseline iff r_F·σ_TF·(1 − 1/F_max)/K_T < μ_F (linearise F'
around F = 1, M = 0): the default parameters satisfy it, so the skin returns to homeostasis after a
course; a parameter set that violates it has a second, fibrotic fixed point (the Adler et al. 2020
healing-vs-fibrosis picture), which tests use as the "keloid-prone" region.

All functions accept float64 or complex128 state arrays (complex-step Jacobians): they use only
+, −, ×, ÷ and exp on the state.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# ----------------------------------------------------------------- state layout
N_DERMAL = 14
N_EPIDERMAL = 7
DERMAL_LAYERS = ("papillary_dermis", "reticular_dermis")
N_STATE = 2 * N_DERMAL + N_EPIDERMAL

IX_D, IX_I, IX_M, IX_F, IX_P, IX_N3, IX_N1, IX_NE, IX_LE, IX_S, IX_NX, IX_R, IX_BL, IX_HM = range(
    N_DERMAL
)
DERMAL_STATE_NAMES = ("D", "I", "M", "F", "P", "N3", "N1", "NE", "LE", "S", "NX", "R", "Bl", "Hm")
EPI0 = 2 * N_DERMAL
IX_DE, IX_K, IX_H, IX_MP, IX_Q, IX_A, IX_MA = (EPI0 + i for i in range(N_EPIDERMAL))
EPIDERMAL_STATE_NAMES = ("De", "K", "H", "Mp", "Q", "A", "Ma")

# -------------------------------------------------------------- parameter layout
PARAM_NAMES: tuple[str, ...] = (
    # dermal block (shared by both dermal layers)
    "k_D", "k_DI", "s_I", "K_D", "mu_I", "s_M", "mu_M", "sigma_TF", "r_F", "K_T", "F_max",
    "mu_F", "sigma_PI", "sigma_PF", "mu_P", "k_3", "k_1", "k_mat", "delta_3", "delta_1",
    "delta_b", "C1_0", "k_E", "delta_E", "delta_bE", "k_SD", "k_SP",
    # epidermal block
    "k_De", "s_K", "K_De", "s_KT", "mu_K", "k_H", "mu_H", "kappa_T", "e_A", "EC_A", "beta_K",
    "g_Q", "mu_Q", "k_A",
    # per-case inputs
    "lesion_drive",
    # durable collagen (dermal block; appended so the indices above stay fixed)
    "k_x", "delta_X",
    # the papillary dermis's hold on the lesion's melanogenesis (epidermal block; appended)
    "beta_N",
    # the melanocytes' activity follows its drive at kappa_R (epidermal block; appended)
    "kappa_R",
    # blood retained in a roller's clefts: how strongly it recruits (session impulses), its lysis
    # and the clearance of the lysed blood's signal (dermal block; appended)
    "rho_B", "k_lys", "k_Hm",
)  # fmt: skip
N_PARAM = len(PARAM_NAMES)
PIDX = {name: i for i, name in enumerate(PARAM_NAMES)}


@nb.njit(cache=True, error_model="numpy")
def _dermal_rhs(y, p, o, out):  # type: ignore[no-untyped-def,unused-ignore]
    """Right-hand side of one dermal block starting at offset ``o``."""
    D = y[o + 0]
    I = y[o + 1]  # noqa: E741
    M = y[o + 2]
    F = y[o + 3]
    P = y[o + 4]
    N3 = y[o + 5]
    N1 = y[o + 6]
    NE = y[o + 7]
    LE = y[o + 8]
    S = y[o + 9]
    NX = y[o + 10]
    R = y[o + 11]
    Bl = y[o + 12]
    Hm = y[o + 13]
    Fx = F - 1.0
    Px = P - 1.0
    T = M + p[7] * Fx
    clear = p[0] + p[1] * I
    out[o + 0] = -clear * D
    out[o + 1] = p[2] * (R + Hm) / p[3] - p[4] * I
    out[o + 2] = p[5] * I - p[6] * M
    out[o + 3] = p[8] * F * T / (p[9] + T) * (1.0 - F / p[10]) - p[11] * Fx
    out[o + 4] = p[12] * I + p[13] * Fx - p[14] * Px
    out[o + 5] = p[15] * Fx - (p[17] + p[18] * P) * N3
    out[o + 6] = p[16] * Fx + p[17] * N3 - (p[42] + p[19] * P) * N1
    out[o + 7] = p[22] * Fx - p[23] * P * NE
    out[o + 8] = p[24] * Px * (1.0 - LE)
    out[o + 9] = -(p[25] * D + p[26] * Px) * S
    out[o + 10] = p[42] * N1 - p[43] * P * NX - p[20] * Px * (p[21] + NX)
    out[o + 11] = -clear * R
    out[o + 12] = -p[47] * Bl
    out[o + 13] = p[47] * Bl - p[48] * Hm
    return T


@nb.njit(cache=True, error_model="numpy")
def healing_rhs(t, y, p, out):  # type: ignore[no-untyped-def,unused-ignore]
    """dy/dt of one case (``t`` in days; ``y`` length :data:`N_STATE`; ``p`` length :data:`N_PARAM`).

    Writes into ``out`` (same dtype as ``y``). Autonomous: ``t`` is unused.
    """
    T_pap = _dermal_rhs(y, p, 0, out)
    _dermal_rhs(y, p, N_DERMAL, out)
    e = EPI0
    De = y[e + 0]
    K = y[e + 1]
    H = y[e + 2]
    Mp = y[e + 3]
    Q = y[e + 4]
    A = y[e + 5]
    Ma = y[e + 6]
    I_pap = y[IX_I]
    out[e + 0] = -p[27] * De
    out[e + 1] = p[28] * De / (p[29] + De) + p[30] * T_pap - p[31] * K
    out[e + 2] = p[32] * K - p[33] * H
    agent = 1.0 - p[35] * A / (p[36] + A)
    dermal = np.exp(-p[44] * (y[IX_N3] + y[IX_N1] + y[IX_NX]))
    out[e + 3] = p[34] * (Ma - (1.0 + p[37] * K) * Mp)
    out[e + 4] = p[38] * agent * I_pap - p[39] * (1.0 + p[37] * K) * Q
    out[e + 5] = -p[40] * A
    out[e + 6] = p[45] * (p[41] * agent * dermal - Ma)


@nb.njit(cache=True, error_model="numpy")
def _dermal_jacobian(y, p, o, jac):  # type: ignore[no-untyped-def,unused-ignore]
    """Non-zero entries of d(dermal block)/dy at offset ``o`` (rows o..o+13), hand-derived."""
    D = y[o + 0]
    I = y[o + 1]  # noqa: E741
    M = y[o + 2]
    F = y[o + 3]
    P = y[o + 4]
    N3 = y[o + 5]
    N1 = y[o + 6]
    NE = y[o + 7]
    LE = y[o + 8]
    S = y[o + 9]
    NX = y[o + 10]
    R = y[o + 11]
    Px = P - 1.0
    T = M + p[7] * (F - 1.0)
    iD, iI, iM, iF, iP = o, o + 1, o + 2, o + 3, o + 4
    i3, i1, iE, iL, iS, iX, iR = o + 5, o + 6, o + 7, o + 8, o + 9, o + 10, o + 11
    # D' = -(k_D + k_DI I) D and R' = -(k_D + k_DI I) R: the same clearance
    clear = p[0] + p[1] * I
    jac[iD, iD] = -clear
    jac[iD, iI] = -p[1] * D
    jac[iR, iR] = -clear
    jac[iR, iI] = -p[1] * R
    # I' = s_I (R + Hm)/K_D - mu_I I
    jac[iI, iR] = p[2] / p[3]
    jac[iI, o + 13] = p[2] / p[3]
    jac[iI, iI] = -p[4]
    # Bl' = -k_lys Bl,  Hm' = k_lys Bl - k_Hm Hm
    jac[o + 12, o + 12] = -p[47]
    jac[o + 13, o + 12] = p[47]
    jac[o + 13, o + 13] = -p[48]
    # M' = s_M I - mu_M M
    jac[iM, iI] = p[5]
    jac[iM, iM] = -p[6]
    # F' = r_F F g(T) (1 - F/F_max) - mu_F (F - 1), g = T/(K_T + T), T = M + sigma_TF (F - 1)
    kt = p[9] + T
    g = T / kt
    dg = p[9] / (kt * kt)
    logistic = 1.0 - F / p[10]
    jac[iF, iM] = p[8] * F * logistic * dg
    jac[iF, iF] = p[8] * (g * (1.0 - 2.0 * F / p[10]) + F * logistic * dg * p[7]) - p[11]
    # P' = sigma_PI I + sigma_PF (F - 1) - mu_P (P - 1)
    jac[iP, iI] = p[12]
    jac[iP, iF] = p[13]
    jac[iP, iP] = -p[14]
    # N3' = k_3 (F - 1) - (k_mat + delta_3 P) N3
    jac[i3, iF] = p[15]
    jac[i3, iP] = -p[18] * N3
    jac[i3, i3] = -(p[17] + p[18] * P)
    # N1' = k_1 (F - 1) + k_mat N3 - (k_x + delta_1 P) N1
    jac[i1, iF] = p[16]
    jac[i1, iP] = -p[19] * N1
    jac[i1, i3] = p[17]
    jac[i1, i1] = -(p[42] + p[19] * P)
    # NE' = k_E (F - 1) - delta_E P NE
    jac[iE, iF] = p[22]
    jac[iE, iP] = -p[23] * NE
    jac[iE, iE] = -p[23] * P
    # LE' = delta_bE (P - 1) (1 - LE)
    jac[iL, iP] = p[24] * (1.0 - LE)
    jac[iL, iL] = -p[24] * Px
    # S' = -(k_SD D + k_SP (P - 1)) S
    jac[iS, iD] = -p[25] * S
    jac[iS, iP] = -p[26] * S
    jac[iS, iS] = -(p[25] * D + p[26] * Px)
    # NX' = k_x N1 - delta_X P NX - delta_b (P - 1) (C1_0 + NX)
    jac[iX, i1] = p[42]
    jac[iX, iP] = -p[43] * NX - p[20] * (p[21] + NX)
    jac[iX, iX] = -p[43] * P - p[20] * Px


@nb.njit(cache=True, error_model="numpy")
def healing_jacobian(t, y, p, jac):  # type: ignore[no-untyped-def,unused-ignore]
    """Analytic J = d(healing_rhs)/dy of one case into ``jac`` (N_STATE x N_STATE, float64).

    Hand-derived from the equations in this module's docstring (every entry a closed form).
    Writes the structural non-zeros only: the other entries of ``jac`` are left as they are, so
    pass a zeroed matrix (the integrator zeroes it once per case and then rewrites only these
    entries every step). Exact up to round-off: the tests compare it with complex-step
    differentiation of :func:`healing_rhs` at random states and parameters (agreement ~1e-13
    relative). Autonomous: ``t`` is unused.
    """
    _dermal_jacobian(y, p, 0, jac)
    _dermal_jacobian(y, p, N_DERMAL, jac)
    e = EPI0
    De = y[e + 0]
    K = y[e + 1]
    Mp = y[e + 3]
    A = y[e + 5]
    iDe, iK, iH, iMp, iQ, iA, iMa = e, e + 1, e + 2, e + 3, e + 4, e + 5, e + 6
    # De' = -k_De De
    jac[iDe, iDe] = -p[27]
    # K' = s_K De/(K_De + De) + s_KT T_pap - mu_K K,  T_pap = M_pap + sigma_TF (F_pap - 1)
    kde = p[29] + De
    jac[iK, iDe] = p[28] * p[29] / (kde * kde)
    jac[iK, IX_M] = p[30]
    jac[iK, IX_F] = p[30] * p[7]
    jac[iK, iK] = -p[31]
    # H' = k_H K - mu_H H
    jac[iH, iK] = p[32]
    jac[iH, iH] = -p[33]
    I_pap = y[IX_I]
    # Ma' = kappa_R (L (1 - e_A A/(EC_A + A)) exp(-beta_N R) - Ma),
    # R = N3 + N1 + NX of the papillary layer
    ka = p[36] + A
    dagent = -p[35] * p[36] / (ka * ka)  # d/dA of 1 - e_A A/(EC_A + A)
    dermal = np.exp(-p[44] * (y[IX_N3] + y[IX_N1] + y[IX_NX]))
    jac[iMa, iA] = p[45] * p[41] * dagent * dermal
    d_r = -p[45] * p[41] * (1.0 - p[35] * A / ka) * p[44] * dermal  # d/dR
    jac[iMa, IX_N3] = d_r
    jac[iMa, IX_N1] = d_r
    jac[iMa, IX_NX] = d_r
    jac[iMa, iMa] = -p[45]
    # Mp' = kappa_T (Ma - (1 + beta_K K) Mp)
    jac[iMp, iMa] = p[34]
    jac[iMp, iMp] = -p[34] * (1.0 + p[37] * K)
    jac[iMp, iK] = -p[34] * p[37] * Mp
    # Q' = g_Q (1 - e_A A/(EC_A + A)) I_pap - mu_Q (1 + beta_K K) Q
    jac[iQ, IX_I] = p[38] * (1.0 - p[35] * A / ka)
    jac[iQ, iA] = p[38] * I_pap * dagent
    jac[iQ, iQ] = -p[39] * (1.0 + p[37] * K)
    jac[iQ, iK] = -p[39] * p[37] * y[iQ]
    # A' = -k_A A
    jac[iA, iA] = -p[40]


@nb.njit(cache=True, error_model="numpy")
def healing_factor(fac, jac, dinv):  # type: ignore[no-untyped-def,unused-ignore]
    """Factor G = fac·I − J for :func:`healing_solve` (J from :func:`healing_jacobian`).

    J of this model is block lower triangular in a fixed order (see :func:`healing_solve`): every
    state's row is a 1x1 diagonal block (Bl and Hm included) except (R, I) of each dermal layer, a
    2x2 block. Stores
    1/G_ii for the 1x1 blocks and 1/det for each 2x2 block in ``dinv`` (length N_STATE, at R's
    index). Returns False when a pivot is zero or not finite (for physical states, R ≥ 0, it never
    is: the 2x2 determinant is (fac − J_RR)(fac − J_II) + |J_RI|·|J_IR| > 0).
    """
    for i in range(N_STATE):
        if i == IX_R or i == IX_I or i == N_DERMAL + IX_R or i == N_DERMAL + IX_I:
            continue  # inside a 2x2 block
        d = fac - jac[i, i]
        if not (abs(d) > 0.0 and abs(d) < np.inf):
            return False
        dinv[i] = 1.0 / d
    for o in (0, N_DERMAL):
        iR = o + IX_R
        iI = o + IX_I
        det = (fac - jac[iR, iR]) * (fac - jac[iI, iI]) - jac[iR, iI] * jac[iI, iR]
        if not (abs(det) > 0.0 and abs(det) < np.inf):
            return False
        dinv[iR] = 1.0 / det
    return True


@nb.njit(cache=True, error_model="numpy")
def _dermal_solve(fac, jac, dinv, o, x):  # type: ignore[no-untyped-def,unused-ignore]
    """Forward substitution through one dermal block (offset ``o``), in dependency order."""
    iD, iI, iM, iF, iP = o, o + 1, o + 2, o + 3, o + 4
    i3, i1, iE, iL, iS, iX, iR = o + 5, o + 6, o + 7, o + 8, o + 9, o + 10, o + 11
    # the retained blood (Bl, then Hm) feeds I and depends on nothing else
    iBl, iHm = o + 12, o + 13
    x[iBl] = x[iBl] * dinv[iBl]
    x[iHm] = (x[iHm] + jac[iHm, iBl] * x[iBl]) * dinv[iHm]
    # (R, I): 2x2 block [[fac - J_RR, -J_RI], [-J_IR, fac - J_II]], Cramer's rule
    rR = x[iR]
    rI = x[iI] + jac[iI, iHm] * x[iHm]
    x[iR] = ((fac - jac[iI, iI]) * rR + jac[iR, iI] * rI) * dinv[iR]
    x[iI] = ((fac - jac[iR, iR]) * rI + jac[iI, iR] * rR) * dinv[iR]
    x[iD] = (x[iD] + jac[iD, iI] * x[iI]) * dinv[iD]
    x[iM] = (x[iM] + jac[iM, iI] * x[iI]) * dinv[iM]
    x[iF] = (x[iF] + jac[iF, iM] * x[iM]) * dinv[iF]
    x[iP] = (x[iP] + jac[iP, iI] * x[iI] + jac[iP, iF] * x[iF]) * dinv[iP]
    x[i3] = (x[i3] + jac[i3, iF] * x[iF] + jac[i3, iP] * x[iP]) * dinv[i3]
    x[i1] = (x[i1] + jac[i1, iF] * x[iF] + jac[i1, iP] * x[iP] + jac[i1, i3] * x[i3]) * dinv[i1]
    x[iX] = (x[iX] + jac[iX, i1] * x[i1] + jac[iX, iP] * x[iP]) * dinv[iX]
    x[iE] = (x[iE] + jac[iE, iF] * x[iF] + jac[iE, iP] * x[iP]) * dinv[iE]
    x[iL] = (x[iL] + jac[iL, iP] * x[iP]) * dinv[iL]
    x[iS] = (x[iS] + jac[iS, iD] * x[iD] + jac[iS, iP] * x[iP]) * dinv[iS]


@nb.njit(cache=True, error_model="numpy")
def healing_solve(fac, jac, dinv, x):  # type: ignore[no-untyped-def,unused-ignore]
    """x <- (fac·I − J)^{-1} x for the healing Jacobian, factored by :func:`healing_factor`.

    Block forward substitution in the model's dependency order, written out: per dermal layer
    Bl → Hm → (R, I) → D → M → F → P → N3 → N1 → NX → NE → LE → S; then the epidermis De → K
    (needs the papillary M, F) → H, A → Ma (needs the papillary N3, N1, NX) → Mp, and Q (needs
    the papillary I, A and K). Only the structural non-zeros of :func:`healing_jacobian` are used; the tests check the
    result against a dense solve.
    """
    _dermal_solve(fac, jac, dinv, 0, x)
    _dermal_solve(fac, jac, dinv, N_DERMAL, x)
    e = EPI0
    iDe, iK, iH, iMp, iQ, iA, iMa = e, e + 1, e + 2, e + 3, e + 4, e + 5, e + 6
    x[iDe] = x[iDe] * dinv[iDe]
    x[iK] = (
        x[iK] + jac[iK, iDe] * x[iDe] + jac[iK, IX_M] * x[IX_M] + jac[iK, IX_F] * x[IX_F]
    ) * dinv[iK]
    x[iH] = (x[iH] + jac[iH, iK] * x[iK]) * dinv[iH]
    x[iA] = x[iA] * dinv[iA]
    x[iMa] = (
        x[iMa]
        + jac[iMa, iA] * x[iA]
        + jac[iMa, IX_N3] * x[IX_N3]
        + jac[iMa, IX_N1] * x[IX_N1]
        + jac[iMa, IX_NX] * x[IX_NX]
    ) * dinv[iMa]
    x[iMp] = (x[iMp] + jac[iMp, iMa] * x[iMa] + jac[iMp, iK] * x[iK]) * dinv[iMp]
    x[iQ] = (x[iQ] + jac[iQ, IX_I] * x[IX_I] + jac[iQ, iA] * x[iA] + jac[iQ, iK] * x[iK]) * dinv[iQ]


def baseline_state(lesion_drive: np.ndarray) -> np.ndarray:
    """Homeostatic state for a batch, shape (B, N_STATE); ``lesion_drive`` (B,) sets Mp and Ma
    (every new-matrix state, NX included, is 0)."""
    lesion_drive = np.asarray(lesion_drive, dtype=float)
    y = np.zeros((lesion_drive.shape[0], N_STATE))
    for o in (0, N_DERMAL):
        y[:, o + IX_F] = 1.0
        y[:, o + IX_P] = 1.0
        y[:, o + IX_S] = 1.0
    y[:, IX_MP] = lesion_drive
    y[:, IX_MA] = lesion_drive
    return y


def healing_rhs_py(t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Plain-Python wrapper returning dy/dt (for scipy reference solvers and tests)."""
    out = np.empty_like(y)
    healing_rhs(t, y, p, out)
    return out

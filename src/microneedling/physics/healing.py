"""Wound healing after each session, for a batch of cases (one case = one treated site of one patient).

The equations are in :mod:`microneedling.physics.healing_rhs` (compiled); this module builds the
per-case parameter matrix from a :class:`~microneedling.parameters.ParameterSet`, turns sessions into
impulses on the state, and integrates all cases together with the batched stiff integrator
(:func:`microneedling.physics.ode.integrate.integrate`). Time is in days.

Sources of the model structure: inflammation cascade after Cooper et al. 2015 (BioModels
BIOMD0000000855) and Waugh & Sherratt 2006 (macrophage phenotypes, TGF-β); fibroblast logistic growth,
removal and MMP decay after Jin et al. 2011 (BMC Syst Biol 5:60); healing-vs-fibrosis fixed points
after Adler et al. 2020; collagen III-then-I sequence from the wound-healing literature summarised in
``shared/research/models.md`` §A.7. Amplitudes are calibrated on microneedling studies (see the
parameter notes in ``data/parameters/healing.toml``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from microneedling.parameters.parameter_set import ParameterSet
from microneedling.physics.healing_rhs import (
    EPI0,
    IX_A,
    IX_BL,
    IX_D,
    IX_DE,
    IX_R,
    N_DERMAL,
    N_PARAM,
    N_STATE,
    PARAM_NAMES,
    PIDX,
    baseline_state,
)
from microneedling.physics.ode.integrate import integrate
from microneedling.physics.ode.registry import HEALING
from microneedling.physics.percase import distinct_rows

#: unit in which each healing parameter is used (file units are converted to these)
PARAM_UNITS: dict[str, str] = {
    **{n: "1/d" for n in (
        "k_D", "s_I", "mu_I", "mu_M", "r_F", "mu_F", "mu_P", "k_3", "k_1", "k_mat", "delta_3",
        "delta_1", "delta_b", "k_E", "delta_E", "delta_bE", "k_SP", "k_De", "s_K", "mu_K",
        "k_H", "mu_H", "kappa_T", "g_Q", "mu_Q", "k_A", "s_M", "sigma_PI", "sigma_PF",
        "s_KT", "k_DI", "k_SD", "k_x", "delta_X", "kappa_R", "k_lys", "k_Hm",
    )},
    **{n: "1" for n in ("K_D", "K_T", "F_max", "C1_0", "e_A", "EC_A", "K_De", "beta_K", "beta_N", "rho_B")},
}  # fmt: skip

#: parameters that are inputs per case rather than values of the parameter files
CASE_INPUTS = ("lesion_drive", "g_Q")
#: parameters derived from others rather than read from the files
DERIVED = ("sigma_TF",)


def parameter_vector(ps: object) -> np.ndarray:
    """Nominal healing parameters (length :data:`N_PARAM`) from a ParameterSet, in model units.

    ``g_Q`` (PIH gain) and ``lesion_drive`` are per-case inputs (Fitzpatrick type, lesion present);
    they are set to 0 here and filled by :func:`parameter_matrix`.
    """

    assert isinstance(ps, ParameterSet)
    v = np.zeros(N_PARAM)
    for name in PARAM_NAMES:
        if name in CASE_INPUTS or name in DERIVED:
            continue
        v[PIDX[name]] = ps.value(f"healing.{name}", PARAM_UNITS[name])
    gain = ps.value("healing.fibroblast_loop_gain", "1")
    v[PIDX["sigma_TF"]] = sigma_tf_from_loop_gain(
        gain, v[PIDX["K_T"]], v[PIDX["mu_F"]], v[PIDX["r_F"]], v[PIDX["F_max"]]
    )
    return v


def sigma_tf_from_loop_gain(
    gain: float, K_T: float, mu_F: float, r_F: float, F_max: float
) -> float:
    """σ_TF giving the baseline fibroblast–TGF-β loop gain ``gain`` (< 1 is stable; see
    :func:`fibrosis_margin`)."""
    return gain * K_T * mu_F / (r_F * (1.0 - 1.0 / F_max))


def parameter_matrix(
    nominal: np.ndarray, n_cases: int, per_case: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """Broadcast ``nominal`` to (n_cases, N_PARAM) and overwrite columns given ``per_case``.

    ``per_case`` maps parameter names to arrays of shape (n_cases,) — e.g. ``lesion_drive``,
    ``g_Q``, the depigmenting product's ``e_A`` and ``k_A`` (the files hold their defaults), or any
    rate scaled per patient (age, inter-individual variability).
    """
    p = np.repeat(np.asarray(nominal, dtype=float)[None, :], n_cases, axis=0)
    for name, values in (per_case or {}).items():
        if name not in PIDX:
            raise KeyError(f"unknown healing parameter {name!r}; known: {PARAM_NAMES}")
        p[:, PIDX[name]] = _shaped(values, (n_cases,))
    return p


def recruitment_saturation(x: ArrayLike, half: ArrayLike) -> np.ndarray:
    """s(x) = x/(K_D + x) of an injured fraction x ≥ 0 (negative x counts as 0), with ``half`` =
    K_D: how strongly a session's many channels recruit inflammation, saturating once their zones
    of influence overlap (:mod:`~microneedling.physics.healing_rhs`; the vascular flare and the
    bruise of :mod:`~microneedling.physics.redness` use the same law)."""
    xx = np.maximum(np.asarray(x, dtype=float), 0.0)
    return np.asarray(xx / (np.asarray(half, dtype=float) + xx))


def _shaped(x: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """``x`` as floats of ``shape``: itself when it has that shape, else broadcast to it."""
    a = np.asarray(x, dtype=float)
    return a if a.shape == shape else np.broadcast_to(a, shape)


def session_impulses(
    injured_fraction: np.ndarray,
    agent_effect: np.ndarray,
    recruitment_half: ArrayLike,
    cleft_fraction: np.ndarray | None = None,
    blood_ratio: ArrayLike = 0.0,
) -> np.ndarray:
    """State jumps of each session, shape (B, K, N_STATE).

    Parameters
    ----------
    injured_fraction:
        (B, K, 3) injured volume fraction per session and layer (epidermis, papillary dermis,
        reticular dermis), dimensionless, from :mod:`microneedling.physics.injury`.
    agent_effect:
        (B, K) depigmenting-agent exposure added by each session's topical, in units of its
        half-effect amount (0 when there is no such topical).
    recruitment_half:
        K_D (dimensionless), scalar or (B,) (the ``K_D`` column of the case's parameters): the
        injured fraction at which a session's recruiting signal is half its maximum. Each dermal
        layer's injured volume D jumps by φ_k and its recruiting injury R by K_D·s(φ_k),
        s(x) = x/(K_D + x) (:mod:`~microneedling.physics.healing_rhs`).
    cleft_fraction:
        (B, K) fraction of the dermis cut by a roller's clefts at each session, c_k
        (:func:`microneedling.physics.injury.cleft_fraction`; 0 for pens and stamps), or None
        (no clefts). Taken as spread evenly over both dermal layers.
    blood_ratio:
        ρ_B (dimensionless), scalar or (B,) (the ``rho_B`` column): how strongly a session's
        retained blood recruits, relative to its clean channels' saturated signal. Each dermal
        layer's retained blood Bl jumps by ρ_B·K_D·s(c_k).
    """
    phi = np.asarray(injured_fraction, dtype=float)
    B, K, _ = phi.shape
    half = _shaped(recruitment_half, (B,))[:, None]
    jumps = np.zeros((B, K, N_STATE))
    jumps[:, :, IX_DE] = phi[:, :, 0]
    blood = None
    if cleft_fraction is not None:
        rho = _shaped(blood_ratio, (B,))[:, None]
        c = _shaped(cleft_fraction, (B, K))
        blood = rho * half * recruitment_saturation(c, half)
    for layer, o in ((1, 0), (2, N_DERMAL)):
        jumps[:, :, o + IX_D] = phi[:, :, layer]
        jumps[:, :, o + IX_R] = half * recruitment_saturation(phi[:, :, layer], half)
        if blood is not None:
            jumps[:, :, o + IX_BL] = blood
    jumps[:, :, IX_A] = np.asarray(agent_effect, dtype=float)
    return jumps


@dataclass(frozen=True)
class HealingSolution:
    """States of every case at the output times: ``y`` (B, T, N_STATE); ``t`` (T,) in days."""

    t: np.ndarray
    y: np.ndarray
    n_steps: np.ndarray

    def dermal(self, layer: int, index: int) -> np.ndarray:
        """(B, T) trajectory of dermal state ``index`` in dermal layer ``layer`` (0 pap, 1 ret)."""
        return self.y[:, :, layer * N_DERMAL + index]

    def epidermal(self, index: int) -> np.ndarray:
        """(B, T) trajectory of an epidermal state (absolute index, e.g. ``IX_H``)."""
        return self.y[:, :, index]


def solve(
    params: np.ndarray,
    t_out: np.ndarray,
    session_days: np.ndarray,
    impulses: np.ndarray,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    parallel: bool = True,
    lanes: int = 1,
) -> HealingSolution:
    """Integrate the healing ODE for every case from baseline through all sessions.

    Parameters
    ----------
    params:
        (B, N_PARAM) from :func:`parameter_matrix`.
    t_out:
        (T,) output times in days, sorted; ``t_out[0]`` is the start (baseline).
    session_days:
        (B, K) session times in days (sorted per case, padded with ``inf``).
    impulses:
        (B, K, N_STATE) from :func:`session_impulses`.
    lanes:
        L > 1: cases with the same session days are solved L at a time in lockstep (one shared
        step size, SIMD kernels; :func:`~microneedling.physics.ode.integrate.integrate`).
    """
    sol, inverse = solve_distinct(
        params, t_out, session_days, impulses, rtol=rtol, atol=atol, parallel=parallel, lanes=lanes
    )
    if sol.y.shape[0] == inverse.size:
        return sol
    return HealingSolution(t=sol.t, y=sol.y[inverse], n_steps=sol.n_steps[inverse])


def solve_distinct(
    params: np.ndarray,
    t_out: np.ndarray,
    session_days: np.ndarray,
    impulses: np.ndarray,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    parallel: bool = True,
    lanes: int = 1,
) -> tuple[HealingSolution, np.ndarray]:
    """:func:`solve` with each distinct case integrated once (:func:`~microneedling.physics.percase.distinct_rows`: equal
    inputs bit for bit; each case steps on its own, so one solve serves all its copies): the
    solution of the distinct cases (U, T, N_STATE) and ``inverse`` (B,), the row of it that holds
    each case, so that ``y[inverse]`` is :func:`solve`'s ``y`` bit for bit. A caller that reads
    a few output times or states indexes before it expands (a one-at-a-time design repeats most
    cases; copying every case's whole trajectory would cost more than it saves)."""
    params = np.ascontiguousarray(params, dtype=float)
    session_days = np.ascontiguousarray(session_days, dtype=float)
    impulses = np.ascontiguousarray(impulses, dtype=float)
    first, inverse = distinct_rows(params, session_days, impulses)
    if first.size < params.shape[0]:
        params, session_days, impulses = params[first], session_days[first], impulses[first]
    y0 = baseline_state(params[:, PIDX["lesion_drive"]])
    sol = integrate(
        HEALING,
        y0,
        params,
        np.ascontiguousarray(t_out, dtype=float),
        session_days,
        impulses,
        rtol=rtol,
        atol=atol,
        parallel=parallel,
        lanes=lanes,
    )
    t = np.asarray(t_out, dtype=float)
    return HealingSolution(t=t, y=sol.y, n_steps=sol.n_steps), inverse


def fibrosis_margin(params: np.ndarray) -> np.ndarray:
    """Stability margin of the baseline fixed point against the fibroblast–TGF-β loop.

    Returns μ_F − r_F·σ_TF·(1 − 1/F_max)/K_T per case (1/d): positive means the skin returns to
    homeostasis after injury; negative means a fibrotic (keloid-like) attractor exists.
    """
    p = np.atleast_2d(params)
    g = PIDX
    return (
        p[:, g["mu_F"]]
        - p[:, g["r_F"]] * p[:, g["sigma_TF"]] * (1.0 - 1.0 / p[:, g["F_max"]]) / p[:, g["K_T"]]
    )


__all__ = [
    "EPI0",
    "HealingSolution",
    "fibrosis_margin",
    "parameter_matrix",
    "parameter_vector",
    "recruitment_saturation",
    "session_impulses",
    "solve",
    "solve_distinct",
]

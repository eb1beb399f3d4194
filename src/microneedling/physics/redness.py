"""Visible redness and swelling after a session, smooth in the injury (docs/model.md, "Redness").

Redness has two parts: the immediate vascular response of needling (flare and capillary-loop
injury, minutes to hours) and the inflammatory hump of the healing model (neutrophils and M1
macrophages, peaking about a day later). Both enter one signal, in the units of the healing
model's inflammation::

    R(t) = V(t) + I_pap(t) + w_ret · I_ret(t)
    V(t) = ρ_V · Σ_k s(x_k) · exp(−(t − t_k)/τ_V)   for t ≥ t_k,   s(x) = x/(K_D + x),
    x_k  = φ_pap,k + w_epi · φ_epi,k + w_ret · φ_ret,k                (injured fractions of session k)

V uses the same saturating recruitment as inflammation (K_D = ``healing.K_D``), so it needs no
new ODE state. Whether redness is *seen* depends on the patient (observer, lighting, baseline
colour, and pigment that hides it): each patient has a visibility threshold θ, log-normal across
patients with median θ_50·m_FST (``observe.erythema_threshold``, the Fitzpatrick factor m_FST of
``observe.erythema_fitzpatrick_factor``: dark skin hides erythema) and log-SD σ_θ::

    P(red at t) = Φ((ln R(t) − ln(θ_50 m_FST)) / σ_θ)
    expected duration = ∫ P(red at t) dt       (the population mean over patients)

Because Φ is smooth, the expected duration is a smooth, non-decreasing function of needle length,
passes and density; one virtual patient (one θ) keeps a threshold-like response. Swelling is the
same signal against a higher threshold (``observe.oedema_threshold_factor`` × θ_50, not hidden by
pigment). With no session V = I = 0 and nothing is red.

The integrals run on a fine grid after each session (``DURATION_GRID``): V (closed form) needs
minutes, the inflammation (linearly interpolated from the solver's output times) hours.

Public API
----------
``RednessParameters.from_parameters(ps)``; ``vascular_signal(t, session_days, injured, params)``
(B, T); ``redness_signal(t, inflammation_pap, inflammation_ret, session_days, injured, params)``;
``visibility_threshold(fitzpatrick, params)`` (B,); ``expected_duration(t, inflammation_pap,
inflammation_ret, session_days, injured, starts, ends, threshold, params)`` → days (B, K).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from microneedling.parameters.parameter_set import ParameterSet
from microneedling.vocabulary import roman

__all__ = [
    "DURATION_GRID",
    "RednessParameters",
    "expected_duration",
    "redness_signal",
    "vascular_signal",
    "visibility_threshold",
]

FloatArray = NDArray[np.float64]

DURATION_GRID = np.unique(
    np.concatenate(
        [
            np.arange(0.0, 0.5, 1.0 / 288.0),  # 5 min for 12 h (the vascular flare, τ ~ 2 h)
            np.arange(0.5, 3.0, 1.0 / 48.0),  # 30 min to day 3 (the inflammatory hump)
            np.arange(3.0, 28.0 + 1e-9, 0.125),  # 3 h to day 28
        ]
    )
)
"""Times after a session [d] on which the expected visible duration is integrated."""


@dataclass(frozen=True)
class RednessParameters:
    """The redness and swelling observation (dimensionless unless stated; times in days).

    ``fitzpatrick_factor`` has one entry per type I..VI.
    """

    threshold: float
    threshold_sd: float
    oedema_threshold_factor: float
    reticular_weight: float
    vascular_ratio: float
    vascular_time: float
    vascular_epidermal_weight: float
    recruitment_half: float
    fitzpatrick_factor: tuple[float, float, float, float, float, float]

    @classmethod
    def from_parameters(cls, ps: ParameterSet) -> RednessParameters:
        """Read ``observe.erythema_*``, ``observe.vascular_*`` and ``healing.K_D``."""
        v = ps.value
        table = ps.table("observe.erythema_fitzpatrick_factor", "1")
        missing = [roman(f) for f in range(1, 7) if roman(f) not in table]
        if missing:
            raise KeyError(f"observe.erythema_fitzpatrick_factor: no entry for {missing}")
        fac = tuple(float(table[roman(f)]) for f in range(1, 7))
        return cls(
            threshold=v("observe.erythema_threshold", "1"),
            threshold_sd=v("observe.erythema_threshold_sd", "1"),
            oedema_threshold_factor=v("observe.oedema_threshold_factor", "1"),
            reticular_weight=v("observe.erythema_reticular_weight", "1"),
            vascular_ratio=v("observe.vascular_ratio", "1"),
            vascular_time=v("observe.vascular_time", "d"),
            vascular_epidermal_weight=v("observe.vascular_epidermal_weight", "1"),
            recruitment_half=v("healing.K_D", "1"),
            fitzpatrick_factor=fac,  # type: ignore[arg-type]
        )

    @property
    def oedema_threshold(self) -> float:
        """Median swelling threshold on the redness signal (θ_50 × the oedema factor)."""
        return self.threshold * self.oedema_threshold_factor


def _f(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=float)


def _amplitudes(injured: ArrayLike, params: RednessParameters) -> FloatArray:
    """ρ_V·s(x_k) (B, K) of the vascular response of each session."""
    phi = _f(injured)
    p = params
    x = phi[..., 1] + p.vascular_epidermal_weight * phi[..., 0] + p.reticular_weight * phi[..., 2]
    x = np.maximum(x, 0.0)
    return np.asarray(p.vascular_ratio * x / (p.recruitment_half + x))


def vascular_signal(
    t: ArrayLike, session_days: ArrayLike, injured: ArrayLike, params: RednessParameters
) -> FloatArray:
    """V(t) (B, T) of the sessions (``session_days`` (B, K), non-finite = no session) with
    injured fractions (B, K, 3) (epidermis, papillary, reticular); ``t`` (T,) or (B, T) [d]."""
    days = _f(session_days)
    amp = _amplitudes(injured, params)
    tt = _f(t)
    tt = np.broadcast_to(tt, (days.shape[0], tt.shape[-1]))
    out = np.zeros(tt.shape)
    for k in range(days.shape[1]):
        d = days[:, k][:, None]
        ok = np.isfinite(d)
        dt = tt - np.where(ok, d, 0.0)
        on = ok & (dt >= 0.0)
        decay = np.exp(-np.where(on, dt, 0.0) / params.vascular_time)
        out += np.where(on, amp[:, k][:, None] * decay, 0.0)
    return out


def redness_signal(
    t: ArrayLike,
    inflammation_pap: ArrayLike,
    inflammation_ret: ArrayLike,
    session_days: ArrayLike,
    injured: ArrayLike,
    params: RednessParameters,
) -> FloatArray:
    """R = V + I_pap + w_ret·I_ret (B, T) on the output times ``t``."""
    v = vascular_signal(t, session_days, injured, params)
    return np.asarray(v + _f(inflammation_pap) + params.reticular_weight * _f(inflammation_ret))


def visibility_threshold(fitzpatrick: ArrayLike, params: RednessParameters) -> FloatArray:
    """Median visibility threshold of redness θ_50·m_FST (B,) for Fitzpatrick types 1..6."""
    f = np.clip(np.rint(_f(fitzpatrick)).astype(int), 1, 6)
    return np.asarray(params.threshold * np.asarray(params.fitzpatrick_factor)[f - 1])


def expected_duration(
    t: ArrayLike,
    inflammation_pap: ArrayLike,
    inflammation_ret: ArrayLike,
    session_days: ArrayLike,
    injured: ArrayLike,
    starts: ArrayLike,
    ends: ArrayLike,
    threshold: ArrayLike,
    params: RednessParameters,
) -> FloatArray:
    """Expected visible duration [d] (B, K) over patients in each window [start, end).

    ∫ Φ((ln R − ln θ)/σ_θ) dt on ``DURATION_GRID`` after each window's start (cut at its end),
    with the inflammation linearly interpolated from the output times ``t`` (T,) and V in closed
    form. ``threshold`` (B,) is the median threshold (``visibility_threshold``, or the swelling
    threshold); NaN windows give NaN.
    """
    tt = _f(t)
    ip, ir = _f(inflammation_pap), _f(inflammation_ret)
    st, en = _f(starts), _f(ends)
    thr = np.broadcast_to(_f(threshold), (st.shape[0],))
    B, K = st.shape
    out = np.full((B, K), np.nan)
    sd = max(params.threshold_sd, 1e-12)
    for k in range(K):
        ok = np.isfinite(st[:, k])
        if not np.any(ok):
            continue
        s0 = np.where(ok, st[:, k], 0.0)
        e0 = np.where(ok & np.isfinite(en[:, k]), en[:, k], s0 + DURATION_GRID[-1])
        grid = s0[:, None] + DURATION_GRID[None, :]  # (B, G)
        inside = grid <= e0[:, None]
        g = np.minimum(grid, e0[:, None])
        pap = np.array([np.interp(g[b], tt, ip[b]) for b in range(B)])
        ret = np.array([np.interp(g[b], tt, ir[b]) for b in range(B)])
        r = vascular_signal(g, session_days, injured, params) + pap + params.reticular_weight * ret
        with np.errstate(divide="ignore"):
            z = (np.log(np.maximum(r, 1e-300)) - np.log(thr)[:, None]) / sd
        prob = np.where(inside, ndtr(z), 0.0)
        dur = np.sum(0.5 * (prob[:, 1:] + prob[:, :-1]) * np.diff(g, axis=1), axis=1)
        out[:, k] = np.where(ok, dur, np.nan)
    return out

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
    last = tt.max(axis=1, initial=-np.inf)
    for k in range(days.shape[1]):
        # a session that is not over any of a row's times adds exactly +0 there: such rows (no
        # session, or one after the row's last time) are skipped
        rows = np.flatnonzero(np.isfinite(days[:, k]) & (days[:, k] <= last))
        if rows.size == 0:
            continue
        every = rows.size == days.shape[0]
        tk = tt if every else tt[rows]
        d = days[rows, k][:, None]
        dt = tk - d
        on = dt >= 0.0
        decay = np.exp(-np.where(on, dt, 0.0) / params.vascular_time)
        add = np.where(on, amp[rows, k][:, None] * decay, 0.0)
        if every:
            out += add
        else:
            out[rows] += add
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
    threshold); NaN windows give NaN. Thresholds (M, B) give (M, B, K), one signal R for all
    (redness and swelling are the same signal against different thresholds).
    """
    tt = _f(t)
    ip, ir = _f(inflammation_pap), _f(inflammation_ret)
    st, en = _f(starts), _f(ends)
    B, K = st.shape
    thr_in = _f(threshold)
    several = thr_in.ndim == 2
    thr = np.broadcast_to(thr_in, (thr_in.shape[0] if several else 1, B))
    out = np.full((thr.shape[0], B, K), np.nan)
    sd = max(params.threshold_sd, 1e-12)
    # every window (row b, session k) that is set, as one batch of rows
    b, k = np.nonzero(np.isfinite(st))
    if b.size == 0:
        return out if several else out[0]
    s0 = st[b, k]
    e0 = np.where(np.isfinite(en[b, k]), en[b, k], s0 + DURATION_GRID[-1])
    grid = s0[:, None] + DURATION_GRID[None, :]  # (windows, G)
    inside = grid <= e0[:, None]
    g = np.minimum(grid, e0[:, None])
    pap = np.array([np.interp(g[i], tt, ip[r]) for i, r in enumerate(b)]).reshape(g.shape)
    ret = np.array([np.interp(g[i], tt, ir[r]) for i, r in enumerate(b)]).reshape(g.shape)
    days, inj = _f(session_days), _f(injured)
    r = vascular_signal(g, days[b], inj[b], params) + pap + params.reticular_weight * ret
    log_r = np.log(np.maximum(r, 1e-300))
    step = np.diff(g, axis=1)
    for m in range(thr.shape[0]):
        with np.errstate(divide="ignore"):
            z = (log_r - np.log(thr[m, b])[:, None]) / sd
        prob = np.where(inside, ndtr(z), 0.0)
        out[m, b, k] = np.sum(0.5 * (prob[:, 1:] + prob[:, :-1]) * step, axis=1)
    return out if several else out[0]

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

Downtime is longer than redness after a roller: its needles cut clefts in the dermis beside their
paths (``needles``, "Roller clefts") and the blood stays there as microbruises, which outlast the
flare and the inflammation (clinics name bruising "for initial 2-3 days" after rollers; bruises
clear over days). The bruise signal decays slowly from each session's cleft fraction c_k (the
fraction of the dermis cut, ``Prepared.cleft_fraction``; 0 for pens and stamps)::

    H(t) = ρ_H · Σ_k s(c_k) · exp(−(t − t_k)/τ_H)       (``observe.haem_ratio``, ``haem_time``)

and the *downtime* is the expected time during which any sign is visible: redness, swelling or the
bruise, each against the patient's threshold (one latent per patient, so the chance of seeing
something is Φ of the largest of the three standardised signals)::

    P(downtime at t) = Φ((ln max(R/θ, R/θ_oedema, H/θ) ) / σ_θ)    (θ = the patient's redness threshold)

so downtime ≥ redness and ≥ swelling, and equals their longer one for a pen or a stamp.

The integrals run on a fine grid after each session (``DURATION_GRID``): V and H (closed form) need
minutes, the inflammation (linearly interpolated from the solver's output times) hours.

Public API
----------
``RednessParameters.from_parameters(ps)``; ``vascular_signal(t, session_days, injured, params)``
(B, T); ``haem_signal(t, session_days, cleft, params)`` (B, T); ``redness_signal(t,
inflammation_pap, inflammation_ret, session_days, injured, params)``; ``visibility_threshold(
fitzpatrick, params)`` (B,); ``expected_duration(t, inflammation_pap, inflammation_ret,
session_days, injured, starts, ends, threshold, params)`` → days (B, K); ``visible_durations(...,
cleft, starts, ends, fitzpatrick, params)`` → redness, swelling and downtime days (B, K) each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from microneedling.parameters.parameter_set import ParameterSet
from microneedling.physics import percase
from microneedling.physics.healing import recruitment_saturation
from microneedling.vocabulary import roman

__all__ = [
    "DURATION_GRID",
    "RednessParameters",
    "VisibleDurations",
    "expected_duration",
    "haem_signal",
    "redness_signal",
    "vascular_signal",
    "visibility_threshold",
    "visible_durations",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

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

    ``fitzpatrick_factor`` has one entry per type I..VI. The functions of this module also take
    these coefficients one value per case (:func:`~microneedling.physics.percase.stack`: (B, 1)
    columns, ``fitzpatrick_factor`` (B, 6)).
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
    haem_ratio: float = 0.0
    haem_time: float = 2.0

    @classmethod
    def from_parameters(cls, ps: ParameterSet) -> RednessParameters:
        """Read ``observe.erythema_*``, ``observe.vascular_*``, ``observe.haem_*`` and
        ``healing.K_D``."""
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
            haem_ratio=v("observe.haem_ratio", "1"),
            haem_time=v("observe.haem_time", "d"),
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
    return np.asarray(p.vascular_ratio * recruitment_saturation(x, p.recruitment_half))


#: largest batch (cases x sessions x times) whose impulse sums are computed for every session at
#: once (:func:`_impulse_sum`); larger ones session by session, only over the rows where a
#: session is over. The same numbers either way (tested).
IMPULSE_AT_ONCE = 20_000


def _impulse_sum(
    t: ArrayLike, session_days: ArrayLike, amp: FloatArray, tau: float | FloatArray
) -> FloatArray:
    """Σ_k amp_k exp(−(t − t_k)/τ) over the sessions at or before t, (B, T); ``t`` (T,) or (B, T),
    ``session_days`` and ``amp`` (B, K), non-finite days = no session; τ a number or (B, 1)."""
    days = _f(session_days)
    tt = _f(t)
    B, K = days.shape
    if B * K * tt.shape[-1] <= IMPULSE_AT_ONCE:
        return _impulse_sum_at_once(tt, days, amp, tau)
    tt = np.broadcast_to(tt, (B, tt.shape[-1]))
    out = np.zeros(tt.shape)
    last = tt.max(axis=1, initial=-np.inf)
    for k in range(K):
        # a session that is not over any of a row's times adds exactly +0 there: such rows (no
        # session, or one after the row's last time) are skipped
        rows = np.flatnonzero(np.isfinite(days[:, k]) & (days[:, k] <= last))
        if rows.size == 0:
            continue
        every = rows.size == B
        tk = tt if every else tt[rows]
        dt = tk - days[rows, k][:, None]
        on = dt >= 0.0
        # exp and product only where the session is over (the rest stays +0): the same values,
        # bit for bit, as exp(−max(dt, 0)/τ) masked afterwards, without the exponentials of the
        # times before the session (in a window: every time before the next session's day)
        add = np.zeros(dt.shape)
        np.negative(dt, out=dt)
        np.divide(dt, percase.at_rows(tau, rows), out=dt)
        np.exp(dt, out=add, where=on)
        np.multiply(amp[rows, k][:, None], add, out=add, where=on)
        if every:
            out += add
        else:
            out[rows] += add
    return out


def _impulse_sum_at_once(
    tt: FloatArray, days: FloatArray, amp: FloatArray, tau: float | FloatArray
) -> FloatArray:
    """:func:`_impulse_sum` of a small batch: every session's impulses as one (B, K, T) array,
    then added session after session onto zeros, as the session-by-session loop adds them (a
    session not yet over adds +0, which leaves a sum unchanged)."""
    B, K = days.shape
    dt = (tt[:, None, :] if tt.ndim == 2 else tt[None, None, :]) - days[:, :, None]
    on = dt >= 0.0  # the session is over (False for a non-finite day)
    add = np.zeros(dt.shape)
    np.negative(dt, out=dt)
    np.divide(dt, tau[:, :, None] if isinstance(tau, np.ndarray) else tau, out=dt)
    np.exp(dt, out=add, where=on)
    np.multiply(amp[:, :, None], add, out=add, where=on)
    out = np.zeros((B, tt.shape[-1]))
    for k in range(K):
        out += add[:, k]
    return out


def vascular_signal(
    t: ArrayLike, session_days: ArrayLike, injured: ArrayLike, params: RednessParameters
) -> FloatArray:
    """V(t) (B, T) of the sessions (``session_days`` (B, K), non-finite = no session) with
    injured fractions (B, K, 3) (epidermis, papillary, reticular); ``t`` (T,) or (B, T) [d]."""
    return _impulse_sum(t, session_days, _amplitudes(injured, params), params.vascular_time)


def haem_signal(
    t: ArrayLike, session_days: ArrayLike, cleft: ArrayLike, params: RednessParameters
) -> FloatArray:
    """The bruise signal H(t) = ρ_H Σ_k s(c_k) exp(−(t − t_k)/τ_H) (B, T) of sessions with cleft
    fractions ``cleft`` (B, K) (``injury.cleft_fraction``); ``t`` (T,) or (B, T) [d]."""
    amp = params.haem_ratio * recruitment_saturation(cleft, params.recruitment_half)
    return _impulse_sum(t, session_days, amp, params.haem_time)


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
    factor = np.asarray(params.fitzpatrick_factor)
    if factor.ndim == 2:  # one set of coefficients per case
        theta = np.asarray(params.threshold).reshape(-1)
        return np.asarray(theta * factor[np.arange(f.shape[0]), f - 1])
    return np.asarray(params.threshold * factor[f - 1])


def _threshold_sd(params: RednessParameters, rows: IntArray) -> float | FloatArray:
    """σ_θ (at least 1e-12) of the windows' cases ``rows``: a number, or (W, 1)."""
    return percase.at_rows(percase.at_least(params.threshold_sd, 1e-12), rows)


def _log_oedema_threshold(params: RednessParameters, rows: IntArray) -> float | FloatArray:
    """ln of the median swelling threshold of the windows' cases ``rows``: a number, or (W, 1)
    (each by ``math.log``, as for a number: NumPy's ``log`` may differ in the last bit)."""
    theta = params.oedema_threshold
    if percase.is_stacked(theta):
        logs = [math.log(v) for v in np.asarray(theta).reshape(-1).tolist()]
        return np.array(logs).reshape(-1, 1)[rows]
    return math.log(theta)


def _windows(
    t: FloatArray,
    inflammation_pap: FloatArray,
    inflammation_ret: FloatArray,
    session_days: FloatArray,
    injured: FloatArray,
    starts: FloatArray,
    ends: FloatArray,
    params: RednessParameters,
) -> tuple[IntArray, IntArray, FloatArray, BoolArray, FloatArray, FloatArray]:
    """Every set window (row b, session k) as one batch: (b, k, grid g (W, G) cut at the window's
    end, inside (W, G), the redness signal R on g, the trapezoid steps (W, G − 1))."""
    b, k = np.nonzero(np.isfinite(starts))
    s0 = starts[b, k]
    e0 = np.where(np.isfinite(ends[b, k]), ends[b, k], s0 + DURATION_GRID[-1])
    grid = s0[:, None] + DURATION_GRID[None, :]  # (windows, G)
    inside = grid <= e0[:, None]
    g = np.minimum(grid, e0[:, None])
    ip, ir = inflammation_pap, inflammation_ret
    pap, ret = np.empty(g.shape), np.empty(g.shape)
    for i, row in enumerate(b.tolist()):
        pap[i] = np.interp(g[i], t, ip[row])
        ret[i] = np.interp(g[i], t, ir[row])
    pw = percase.take(params, b)  # the coefficients of each window's case
    r = vascular_signal(g, session_days[b], injured[b], pw) + pap
    r = r + pw.reticular_weight * ret
    return b, k, g, inside, r, np.diff(g, axis=1)


def _visible_days(
    log_ratio: FloatArray, inside: BoolArray, step: FloatArray, sd: float | FloatArray
) -> FloatArray:
    """∫ Φ(ln(signal/θ)/σ) dt by the trapezoid rule (W,), from ln(signal/θ) (W, G)."""
    prob = np.where(inside, ndtr(log_ratio / sd), 0.0)
    return np.asarray(np.sum(0.5 * (prob[:, 1:] + prob[:, :-1]) * step, axis=1))


def _log(x: FloatArray) -> FloatArray:
    return np.asarray(np.log(np.maximum(x, 1e-300)))


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
    st, en = _f(starts), _f(ends)
    B, K = st.shape
    thr_in = _f(threshold)
    several = thr_in.ndim == 2
    thr = np.broadcast_to(thr_in, (thr_in.shape[0] if several else 1, B))
    out = np.full((thr.shape[0], B, K), np.nan)
    if np.isfinite(st).any():
        b, k, _, inside, r, step = _windows(
            _f(t), _f(inflammation_pap), _f(inflammation_ret), _f(session_days), _f(injured),
            st, en, params,
        )  # fmt: skip
        log_r = _log(r)
        sd = _threshold_sd(params, b)
        for m in range(thr.shape[0]):
            with np.errstate(divide="ignore"):
                ratio = log_r - np.log(thr[m, b])[:, None]
            out[m, b, k] = _visible_days(ratio, inside, step, sd)
    return out if several else out[0]


@dataclass(frozen=True)
class VisibleDurations:
    """Expected days [d] (B, K) over patients of visible redness, swelling and downtime (any of
    redness, swelling or bruise seen) in each session's window; NaN where no session."""

    erythema: FloatArray
    oedema: FloatArray
    downtime: FloatArray


def visible_durations(
    t: ArrayLike,
    inflammation_pap: ArrayLike,
    inflammation_ret: ArrayLike,
    session_days: ArrayLike,
    injured: ArrayLike,
    cleft: ArrayLike,
    starts: ArrayLike,
    ends: ArrayLike,
    fitzpatrick: ArrayLike,
    params: RednessParameters,
) -> VisibleDurations:
    """Redness, swelling and downtime days (module docstring) of each window [start, end).

    As :func:`expected_duration` for redness (threshold ``visibility_threshold(fitzpatrick)``) and
    swelling (``params.oedema_threshold``); downtime integrates Φ of the largest of ln(R/θ),
    ln(R/θ_oedema) and ln(H/θ) over σ_θ, with the bruise signal H of the sessions' cleft fractions
    ``cleft`` (B, K). One interpolation of the inflammation serves all three.
    """
    st, en = _f(starts), _f(ends)
    B, K = st.shape
    out = np.full((3, B, K), np.nan)
    if np.isfinite(st).any():
        days = _f(session_days)
        b, k, g, inside, r, step = _windows(
            _f(t), _f(inflammation_pap), _f(inflammation_ret), days, _f(injured), st, en, params
        )
        red = np.log(visibility_threshold(fitzpatrick, params))[b][:, None]
        swell = _log_oedema_threshold(params, b)
        log_r = _log(r)
        log_h = _log(haem_signal(g, days[b], _f(cleft)[b], percase.take(params, b)))
        sd = _threshold_sd(params, b)
        out[0, b, k] = _visible_days(log_r - red, inside, step, sd)
        out[1, b, k] = _visible_days(log_r - swell, inside, step, sd)
        worst = np.maximum(np.maximum(log_r - red, log_r - swell), log_h - red)
        out[2, b, k] = _visible_days(worst, inside, step, sd)
    return VisibleDurations(out[0], out[1], out[2])

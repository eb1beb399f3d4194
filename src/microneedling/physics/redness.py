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
cleft, starts, ends, fitzpatrick, params[, which])`` → redness, swelling and downtime days (B, K)
each (those not in ``which`` NaN).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from microneedling.parameters.parameter_set import ParameterSet
from microneedling.physics import percase
from microneedling.physics.healing import recruitment_saturation
from microneedling.vocabulary import roman

__all__ = [
    "DURATION_GRID",
    "VISIBLE",
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


def _per_case(value: float | FloatArray, n: int) -> FloatArray:
    """A coefficient as one value per case (n,): a number repeated, or the rows of a (n, 1)
    column."""
    return np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype=float).reshape(-1), (n,)))


def _log_oedema_threshold(params: RednessParameters, n: int) -> FloatArray:
    """ln of the median swelling threshold (n,) of n cases, each by ``math.log`` (NumPy's ``log``
    may differ from it in the last bit)."""
    theta = params.oedema_threshold
    if percase.is_stacked(theta):
        return np.array([math.log(v) for v in np.asarray(theta).reshape(-1).tolist()])
    return np.full(n, math.log(theta))


# ---------------------------------------------------------------------------------------------
# The durations, compiled: every window in one pass (signal, Φ and the trapezoid sum per grid
# point) without (windows x grid) arrays of intermediate values
# ---------------------------------------------------------------------------------------------

_SQRT_HALF = math.sqrt(0.5)


@njit(cache=True, error_model="numpy")
def _phi(z):  # type: ignore[no-untyped-def,unused-ignore]
    """Standard normal CDF Φ(z) = erfc(−z/√2)/2 (libm's erfc: relative accuracy in both tails)."""
    return 0.5 * math.erfc(-z * _SQRT_HALF)


@njit(cache=True, error_model="numpy")
def _block_sum(a, lo, n):  # type: ignore[no-untyped-def,unused-ignore]
    """Σ a[lo:lo + n] of a block of at most 128 terms as NumPy adds it: in order below 8 terms,
    else in eight interleaved partial sums added pairwise, then the remainder in order."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    whole = n - n % 8
    while i < whole:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, error_model="numpy")
def _pairwise_sum(a, n):  # type: ignore[no-untyped-def,unused-ignore]
    """Σ a[:n] in the order NumPy's ``sum`` adds a contiguous row, so the same bits: blocks of at
    most 128 terms (:func:`_block_sum`), a longer run split in two at the multiple of 8 nearest
    below its half and the two sums added. Written with an explicit stack of runs (a recursive
    function loaded from numba's disk cache crashes)."""
    start = np.empty(64, dtype=np.int64)
    size = np.empty(64, dtype=np.int64)
    left_done = np.zeros(64, dtype=np.bool_)
    left_sum = np.empty(64)
    top = 0
    start[0], size[0] = 0, n
    while True:
        if size[top] > 128 and not left_done[top]:  # descend into the left half
            half = size[top] // 2
            half -= half % 8
            start[top + 1], size[top + 1], left_done[top + 1] = start[top], half, False
            top += 1
            continue
        v = _block_sum(a, start[top], size[top])
        top -= 1
        while top >= 0 and left_done[top]:  # a right half done: its run's sum is done
            v = left_sum[top] + v
            top -= 1
        if top < 0:
            return v
        left_sum[top], left_done[top] = v, True  # a left half done: on to the right half
        half = size[top] // 2
        half -= half % 8
        start[top + 1], size[top + 1] = start[top] + half, size[top] - half
        left_done[top + 1] = False
        top += 1


@njit(cache=True, error_model="numpy")
def _interp_at(x, t, f, row, j, slope):  # type: ignore[no-untyped-def,unused-ignore]
    """``np.interp(x, t, f[row])`` (its formula and end values) for x in [t[j], t[j + 1]) with
    the interval's ``slope`` (as NumPy computes it), or x at or after the last time."""
    if j == t.size - 1 or t[j] == x:
        return f[row, j]
    v = slope * (x - t[j]) + f[row, j]
    if np.isnan(v):  # as NumPy: from the other end, then the flat value
        v = slope * (x - t[j + 1]) + f[row, j + 1]
        if np.isnan(v) and f[row, j] == f[row, j + 1]:
            v = f[row, j]
    return v


@njit(cache=True, error_model="numpy")
def _slope(t, f, row, j):  # type: ignore[no-untyped-def,unused-ignore]
    """The slope of ``f[row]`` over [t[j], t[j + 1]] as ``np.interp`` computes it (0 past the
    last time, where it is not used)."""
    if j + 1 >= t.size:
        return 0.0
    return (f[row, j + 1] - f[row, j]) / (t[j + 1] - t[j])


@njit(cache=True, error_model="numpy")
def _impulses(x, days, amp, row, tau):  # type: ignore[no-untyped-def,unused-ignore]
    """Σ_k amp_k exp(−(x − t_k)/τ) over the sessions over at time x [d] (row ``row`` of ``days``
    and ``amp``, in session order; a session not over, or without a day, adds nothing)."""
    acc = 0.0
    for k in range(days.shape[1]):
        dt = x - days[row, k]
        if dt >= 0.0:
            acc += amp[row, k] * math.exp(-dt / tau)
    return acc


_LOG_TINY = math.log(1e-300)


@njit(cache=True, error_model="numpy")
def _log_floor(x):  # type: ignore[no-untyped-def,unused-ignore]
    """ln(max(x, 1e-300)), NaN kept."""
    return _LOG_TINY if x < 1e-300 else math.log(x)


@njit(cache=True, error_model="numpy")
def _durations(  # type: ignore[no-untyped-def,unused-ignore]
    grid, t, pap, ret, w_ret, days, amp_v, tau_v, amp_h, tau_h, starts, ends, log_thr, sd,
    downtime, out,
):  # fmt: skip
    """Fill ``out[m, b, k]`` with ∫ Φ((ln R − ln θ_m)/σ) dt [d] over the window (b, k): on
    ``grid`` [d] after its start, cut at its end, by the trapezoid rule; R = V + I_pap + w_ret·I_ret
    with the inflammation (B, T) interpolated from the output times ``t`` [d]; one threshold's log
    ``log_thr[m]`` (M, B) per m. With ``downtime``, ``out[M]`` is the same integral of the largest
    of ln R − ln θ_m and ln H − ln θ_0 (H the bruise signal). Windows without a finite start are
    left as they are; per case: ``w_ret``, τ ``tau_v`` and ``tau_h`` [d], σ ``sd`` (B,).

    Until the next session of the case, the sessions over at a grid time g are those at or
    before the window's start s, so V = A_V·exp(−(g − s)/τ_V) and ln H = ln A_H − (g − s)/τ_H with
    A the impulses at s: one exponential per grid time instead of one per session and signal, and
    no logarithm of H (the same numbers to rounding: ≤ 1e-12 relative on a duration, tested). From
    the next session on, the impulses are summed term by term."""
    n_cases, n_sessions = starts.shape
    n_thr = log_thr.shape[0]
    n_out = n_thr + 1 if downtime else n_thr
    n_grid = grid.size
    n_times = t.size
    terms = np.empty((n_out, n_grid - 1))
    prob = np.empty(n_out)
    last = np.empty(n_out)
    for b in range(n_cases):
        for k in range(n_sessions):
            s0 = starts[b, k]
            if not np.isfinite(s0):
                continue
            e0 = ends[b, k]
            if not np.isfinite(e0):
                e0 = s0 + grid[n_grid - 1]
            a_v = 0.0  # the impulses at s0 and the day of the next session
            a_h = 0.0
            d_next = np.inf
            for q in range(n_sessions):
                d = days[b, q]
                dt = s0 - d
                if dt >= 0.0:
                    a_v += amp_v[b, q] * math.exp(-dt / tau_v[b])
                    a_h += amp_h[b, q] * math.exp(-dt / tau_h[b])
                elif d < d_next:
                    d_next = d
            log_a_h = math.log(a_h) if a_h > 0.0 else -np.inf
            j = -1  # the output interval [t[j], t[j + 1]) of g, and its slopes
            slope_p = slope_r = 0.0
            g_last = 0.0
            for i in range(n_grid):
                g = s0 + grid[i]
                if g <= e0:
                    if g < t[0]:  # np.interp's value left of the first time
                        p, r = pap[b, 0], ret[b, 0]
                    else:
                        j_old = j
                        if j < 0:
                            j = 0
                        while j + 1 < n_times and t[j + 1] <= g:
                            j += 1
                        if j != j_old:
                            slope_p = _slope(t, pap, b, j)
                            slope_r = _slope(t, ret, b, j)
                        p = _interp_at(g, t, pap, b, j, slope_p)
                        r = _interp_at(g, t, ret, b, j, slope_r)
                    before_next = g < d_next
                    if before_next:
                        v = a_v * math.exp(-(g - s0) / tau_v[b])
                    else:
                        v = _impulses(g, days, amp_v, b, tau_v[b])
                    red = v + p
                    red = red + w_ret[b] * r
                    log_r = _log_floor(red)
                    worst = -np.inf  # the largest ln R − ln θ_m and its m
                    at = 0
                    for m in range(n_thr):
                        z = log_r - log_thr[m, b]
                        prob[m] = _phi(z / sd[b])
                        if np.isnan(z) or np.isnan(worst):
                            worst = np.nan
                        elif z > worst:
                            worst, at = z, m
                    if downtime:
                        if before_next:
                            log_h = log_a_h - (g - s0) / tau_h[b]
                            if not log_h >= _LOG_TINY:
                                log_h = _LOG_TINY
                        else:
                            log_h = _log_floor(_impulses(g, days, amp_h, b, tau_h[b]))
                        zh = log_h - log_thr[0, b]
                        if np.isnan(zh) or np.isnan(worst):
                            prob[n_thr] = np.nan
                        elif zh > worst:
                            prob[n_thr] = _phi(zh / sd[b])
                        else:  # the largest is one of the thresholds' own: its Φ
                            prob[n_thr] = prob[at]
                else:
                    g = e0
                    for m in range(n_out):
                        prob[m] = 0.0
                if i > 0:
                    step = g - g_last
                    for m in range(n_out):
                        terms[m, i - 1] = 0.5 * (prob[m] + last[m]) * step
                for m in range(n_out):
                    last[m] = prob[m]
                g_last = g
            for m in range(n_out):
                out[m, b, k] = _pairwise_sum(terms[m], n_grid - 1)


def _window_durations(
    t: ArrayLike,
    inflammation_pap: ArrayLike,
    inflammation_ret: ArrayLike,
    session_days: ArrayLike,
    injured: ArrayLike,
    starts: ArrayLike,
    ends: ArrayLike,
    log_thresholds: FloatArray,
    params: RednessParameters,
    cleft: ArrayLike | None = None,
) -> FloatArray:
    """Durations [d] (M, B, K) of every window against the M thresholds' logs (M, B), and with
    ``cleft`` (B, K) the downtime as entry M (:func:`_durations`); NaN where no window."""
    st = np.ascontiguousarray(_f(starts))
    B, K = st.shape
    days = np.ascontiguousarray(np.broadcast_to(_f(session_days), (B, K)))
    n_out = log_thresholds.shape[0] + (cleft is not None)
    out = np.full((n_out, B, K), np.nan)
    if B == 0 or K == 0:
        return out
    p = params
    amp_h = (
        np.zeros((B, K))
        if cleft is None
        else p.haem_ratio * recruitment_saturation(cleft, p.recruitment_half)
    )
    _durations(
        DURATION_GRID,
        np.ascontiguousarray(_f(t)),
        np.ascontiguousarray(_f(inflammation_pap)),
        np.ascontiguousarray(_f(inflammation_ret)),
        _per_case(p.reticular_weight, B),
        days,
        np.ascontiguousarray(np.broadcast_to(_amplitudes(injured, p), (B, K))),
        _per_case(p.vascular_time, B),
        np.ascontiguousarray(np.broadcast_to(amp_h, (B, K))),
        _per_case(p.haem_time, B),
        st,
        np.ascontiguousarray(np.broadcast_to(_f(ends), (B, K))),
        np.ascontiguousarray(log_thresholds),
        _per_case(percase.at_least(p.threshold_sd, 1e-12), B),
        cleft is not None,
        out,
    )
    return out


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
    thr_in = _f(threshold)
    several = thr_in.ndim == 2
    B = _f(starts).shape[0]
    thr = np.broadcast_to(thr_in, (thr_in.shape[0] if several else 1, B))
    with np.errstate(divide="ignore"):
        log_thr = np.log(thr)
    out = _window_durations(
        t, inflammation_pap, inflammation_ret, session_days, injured, starts, ends, log_thr, params
    )
    return out if several else out[0]


@dataclass(frozen=True)
class VisibleDurations:
    """Expected days [d] (B, K) over patients of visible redness, swelling and downtime (any of
    redness, swelling or bruise seen) in each session's window; NaN where no session."""

    erythema: FloatArray
    oedema: FloatArray
    downtime: FloatArray


#: the durations :func:`visible_durations` can give
VISIBLE = ("erythema", "oedema", "downtime")


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
    which: Collection[str] = VISIBLE,
) -> VisibleDurations:
    """Redness, swelling and downtime days (module docstring) of each window [start, end).

    As :func:`expected_duration` for redness (threshold ``visibility_threshold(fitzpatrick)``) and
    swelling (``params.oedema_threshold``); downtime integrates Φ of the largest of ln(R/θ),
    ln(R/θ_oedema) and ln(H/θ) over σ_θ, with the bruise signal H of the sessions' cleft fractions
    ``cleft`` (B, K). One interpolation of the inflammation serves all three.

    ``which`` (of :data:`VISIBLE`): the durations computed; the others are NaN. Each is the same
    number, bit for bit, whichever others are computed with it (tested): a caller that reads only
    redness pays for one Φ per grid time instead of three, and for no bruise signal.
    """
    unknown = set(which) - set(VISIBLE)
    if unknown:
        raise ValueError(f"visible_durations: which has {sorted(unknown)}; allowed: {VISIBLE}")
    st = _f(starts)
    B = st.shape[0]
    downtime = "downtime" in which
    # downtime is the largest of the three signs: it needs both thresholds
    names = [n for n in VISIBLE[:2] if downtime or n in which]
    with np.errstate(divide="ignore"):
        red = np.log(np.broadcast_to(visibility_threshold(fitzpatrick, params), (B,)))
    logs = {"erythema": red, "oedema": _log_oedema_threshold(params, B)}
    if not names:
        out = np.empty((0, *st.shape))
    else:
        out = _window_durations(
            t, inflammation_pap, inflammation_ret, session_days, injured, starts, ends,
            np.stack([logs[n] for n in names]), params, cleft if downtime else None,
        )  # fmt: skip
    got = dict(zip([*names, "downtime"] if downtime else names, out, strict=True))
    return VisibleDurations(*(got[n] if n in which else np.full(st.shape, np.nan) for n in VISIBLE))

"""Pigment observables: the melasma lesion's MASI / mMASI, the melanin index with its floor, and
the risk of post-inflammatory hyperpigmentation (docs/model.md, "Pigment" and "PIH").

Lesion. The healing model's epidermal state E (``Mp``: the lesion's epidermal pigment excess, 1 at
baseline) falls with epidermal turnover, faster after needling and while a delivered depigmenting
agent suppresses melanogenesis (``physics.healing_rhs``). Dermal pigment (melanophages) is taken
as fixed over a course, so the lesion's contrast is E_tot = (1 − f_derm)·E + f_derm, f_derm by
melasma type (epidermal, mixed, dermal).

MASI from one state. A lesion is a patchwork: the local contrast is C(x, t) = C0·E_tot(t)·ξ(x),
ξ log-normal over the lesion's pixels (mean 1, log-SD σ_L). A pixel is seen as lesion when its
contrast exceeds the visibility c_vis; z = c_vis/(C0·E_tot), z0 its baseline value::

    area           a_r(t) = a_r0 · P(ξ > z_t) / P(ξ > z0)                 (each MASI region r)
    darkness       D(t)   = min(4, D0 · E_tot · E[ξ | ξ > z_t] / E[ξ | ξ > z0])
    homogeneity    H(t)   = H0 · P(ξ > z_t) / P(ξ > z0)
    MASI  = Σ_r w_r · A(a_r) · (D + H)          (0-48; Kimbrough-Green)
    mMASI = Σ_r w_r · A(a_r) · D                (0-24; Pandya 2011)

A(a) is the MASI area score (0-6) interpolated through the midpoints of its bins. A uniform fall of
the excess leaves what stays visible paler (darkness falls) and, once the faint parts of the patch
drop out of view, shrinks the area: MASI falls in proportion to the contrast at first and faster
beyond a fall of about 20% (E_tot 0.7 → −32%, 0.5 → −59% at the default lesion and parameters).

Melanin index (Mexameter-like) of the lesion: MI = MI_peri + (MI0 − MI_peri)·E_tot + MI0·c_Q·Q:
the surrounding skin MI_peri is its floor (the lesion cannot become lighter than its surroundings
by fading); Q is the inflammation-induced (PIH) pigment.

PIH risk. Visible PIH needs the inflammation-driven pigment stimulus Q (the healing model's Q,
whose gain carries the Fitzpatrick type's melanocyte reactivity, photoprotection and priming) to
exceed a patient's threshold θ. Susceptibility is a trait of the patient (log-normal θ across
patients, median θ_50, log-SD σ_P), so after session k::

    p_k = Φ((ln S_k − ln θ_50) / σ_P),   S_k = max of Q over the session's window,
    course risk = P(max_k S_k > θ) = max_k p_k                   (exact: one θ per patient)

Deeper, denser, more frequent sessions raise Q (it integrates the papillary inflammation and fades
with turnover), so they raise the risk; no session gives Q ≡ 0 and risk 0.

Public API
----------
``PigmentParameters.from_parameters(ps)``; ``lesion_contrast(E, dermal_fraction)``;
``masi(contrast, area0, darkness0, homogeneity0, params) -> (masi, mmasi)``;
``area_score(area_pct, params)``; ``melanin_index(mi0, mi_peri, contrast, q, params)``;
``pih_session_risk(q_peak, params)``; ``pih_course_risk(session_risk)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from microneedling.parameters.parameter_set import ParameterSet
from microneedling.physics import percase

__all__ = [
    "MASI_REGIONS",
    "PigmentParameters",
    "area_score",
    "lesion_contrast",
    "masi",
    "melanin_index",
    "pih_course_risk",
    "pih_session_risk",
]

FloatArray = NDArray[np.float64]

MASI_REGIONS: tuple[str, ...] = ("forehead", "malar_right", "malar_left", "chin")
"""The four regions of the MASI, in the order of the area arrays."""
MASI_SCORES = 6
"""Area scores 1..6 of the MASI (0 = no lesion)."""


def _f(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=float)


@dataclass(frozen=True)
class PigmentParameters:
    """Coefficients of the pigment observables (``observe.*``), dimensionless.

    ``region_weights`` in the order of ``MASI_REGIONS``; ``area_midpoints`` [%] the area of
    scores 1..6 (the scale's bin midpoints). The functions of this module also take these
    coefficients one value per case (:func:`~microneedling.physics.percase.stack`: (B, 1)
    columns, the tuples (B, 4) and (B, 6)).
    """

    region_weights: tuple[float, float, float, float]
    area_midpoints: tuple[float, ...]
    contrast_sd: float
    visibility: float
    pih_melanin_per_q: float
    pih_threshold: float
    pih_threshold_sd: float

    @classmethod
    def from_parameters(cls, ps: ParameterSet) -> PigmentParameters:
        """Read ``observe.masi_*``, ``observe.lesion_*`` and ``observe.pih_*``."""
        v = ps.value
        w = ps.table("observe.masi_region_weights", "1")
        mids = ps.table("observe.masi_area_midpoints", "%")
        return cls(
            region_weights=tuple(float(w[r]) for r in MASI_REGIONS),  # type: ignore[arg-type]
            area_midpoints=tuple(float(mids[f"score{i}"]) for i in range(1, MASI_SCORES + 1)),
            contrast_sd=v("observe.lesion_contrast_sd", "1"),
            visibility=v("observe.lesion_visibility", "1"),
            pih_melanin_per_q=v("observe.pih_melanin_per_q", "1"),
            pih_threshold=v("observe.pih_threshold", "1"),
            pih_threshold_sd=v("observe.pih_threshold_sd", "1"),
        )


# ----------------------------------------------------------------------------- the lesion
def lesion_contrast(epidermal_excess: ArrayLike, dermal_fraction: ArrayLike) -> FloatArray:
    """E_tot = (1 − f_derm)·E + f_derm: the lesion's contrast relative to baseline (1 at
    baseline; dermal pigment fixed). ``dermal_fraction`` broadcasts against E's leading axis."""
    e = _f(epidermal_excess)
    f = np.clip(_f(dermal_fraction), 0.0, 1.0)
    if f.ndim and e.ndim > f.ndim:
        f = f.reshape(f.shape + (1,) * (e.ndim - f.ndim))
    return np.asarray((1.0 - f) * e + f)


def _above(z: FloatArray, s: float | FloatArray) -> FloatArray:
    """P(ξ > z) for log-normal ξ with mean 1 and log-SD s."""
    return np.asarray(ndtr((-np.log(z) - 0.5 * s * s) / s))


def _mean_above(z: FloatArray, s: float | FloatArray) -> FloatArray:
    """E[ξ | ξ > z] for log-normal ξ with mean 1 and log-SD s."""
    num = ndtr((-np.log(z) + 0.5 * s * s) / s)
    return np.asarray(num / np.maximum(_above(z, s), 1e-300))


def area_score(area_pct: ArrayLike, params: PigmentParameters) -> FloatArray:
    """MASI area score (0-6), continuous: linear through (0, 0) and the bin midpoints, 6 beyond
    the last. With midpoints one row per case (B, 6), ``area_pct`` has the cases on its first
    axis, and each case is scored on its own scale (the cases of one scale in one call)."""
    ys = np.concatenate([np.arange(MASI_SCORES + 1, dtype=float), [float(MASI_SCORES)]])
    a = np.clip(_f(area_pct), 0.0, 100.0)
    mids = np.asarray(params.area_midpoints, dtype=float)
    if mids.ndim == 1:
        return np.asarray(np.interp(a, np.concatenate([[0.0], mids, [100.0]]), ys))
    scales, which = np.unique(mids, axis=0, return_inverse=True)
    out = np.empty(a.shape)
    for j, scale in enumerate(scales):
        rows = np.flatnonzero(which.reshape(-1) == j)
        out[rows] = np.interp(a[rows], np.concatenate([[0.0], scale, [100.0]]), ys)
    return out


def masi(
    contrast: ArrayLike,
    area0: ArrayLike,
    darkness0: ArrayLike,
    homogeneity0: ArrayLike,
    params: PigmentParameters,
) -> tuple[FloatArray, FloatArray]:
    """(MASI, mMASI), each shaped like ``contrast`` (B, T), of lesions with baseline region
    areas ``area0`` (B, 4) [%] (``MASI_REGIONS``), darkness and homogeneity (B,) (0-4).

    At contrast 1 they are the baseline scores; both fall monotonically to 0 as the contrast
    falls to 0; NaN rows (no lesion) stay NaN.
    """
    c = np.maximum(_f(contrast), 1e-12)
    s: float | FloatArray = percase.at_least(params.contrast_sd, 1e-9)
    z0 = params.visibility
    z = z0 / c
    keep = _above(z, s) / _above(np.asarray(z0), s)  # share of the baseline lesion still seen
    dark = np.minimum(
        4.0, _f(darkness0)[:, None] * c * _mean_above(z, s) / _mean_above(np.asarray(z0), s)
    )
    homog = _f(homogeneity0)[:, None] * keep
    a0 = _f(area0)  # (B, 4)
    w = np.asarray(params.region_weights)  # (4,) or one row per case (B, 4)
    score = area_score(a0[:, :, None] * keep[:, None, :], params)  # (B, 4, T)
    weighted = np.sum((w[None, :, None] if w.ndim == 1 else w[:, :, None]) * score, axis=1)
    return np.asarray(weighted * (dark + homog)), np.asarray(weighted * dark)


def melanin_index(
    mi0: ArrayLike,
    mi_peri: ArrayLike,
    contrast: ArrayLike,
    q: ArrayLike,
    params: PigmentParameters,
) -> FloatArray:
    """MI = MI_peri + (MI0 − MI_peri)·E_tot + MI0·c_Q·Q (B, T); ``mi0``, ``mi_peri`` (B,)."""
    m0 = _f(mi0)[:, None]
    mp = _f(mi_peri)[:, None]
    return np.asarray(mp + (m0 - mp) * _f(contrast) + m0 * params.pih_melanin_per_q * _f(q))


# ------------------------------------------------------------------------------------ PIH
def pih_session_risk(q_peak: ArrayLike, params: PigmentParameters) -> FloatArray:
    """Probability of visible PIH after each session, Φ((ln S_k − ln θ_50)/σ_P) (B, K);
    S_k = the peak of the PIH stimulus Q in the session's window (0 → 0, NaN → NaN)."""
    q = _f(q_peak)
    sd: float | FloatArray = percase.at_least(params.pih_threshold_sd, 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.log(np.maximum(q, 0.0)) - np.log(params.pih_threshold)) / sd
    return np.asarray(np.where(np.isnan(q), np.nan, ndtr(z)))


def pih_course_risk(session_risk: ArrayLike) -> FloatArray:
    """Course risk (B,) = max over the sessions (NaN sessions ignored; all NaN → NaN): exact
    when the threshold is one per patient (``pih_session_risk``)."""
    r = _f(session_risk)
    has = np.any(np.isfinite(r), axis=-1)
    out = np.full(r.shape[:-1], np.nan)
    if np.any(has):
        out[has] = np.nanmax(r[has], axis=-1)
    return out

"""From healing states to clinical observables, batch-first (B cases, T times).

Every map is monotone in the state that drives it and bounded; its coefficients live in
``data/parameters/observe.toml`` with sources. Conditions a case does not have are NaN in and NaN
out. Time is in days.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from microneedling.parameters.parameter_set import ParameterSet
from microneedling.physics import pigment, redness
from microneedling.physics.healing_rhs import (
    IX_F,
    IX_H,
    IX_I,
    IX_LE,
    IX_MP,
    IX_N1,
    IX_N3,
    IX_NE,
    IX_NX,
    IX_Q,
    IX_S,
    N_DERMAL,
)
from microneedling.physics.pigment import PigmentParameters
from microneedling.physics.redness import RednessParameters

SCAR_TYPES = ("rolling", "boxcar", "icepick")
STRIAE_STAGES = ("rubra", "alba")


@dataclass(frozen=True)
class ObserveParameters:
    """Coefficients of the observation maps (dimensionless unless stated)."""

    erythema_threshold: float
    erythema_reticular_weight: float
    density_per_collagen_I: float
    thickness_per_collagen: float
    papillary_weight: float
    immature_strength: float  # theta: load carried by immature relative to mature collagen
    elasticity_gain: float
    elasticity_elastin_weight: float
    elasticity_baseline_young: float
    elasticity_age_slope: float  # per decade
    wrinkle_max_reduction: float
    wrinkle_half_gain: float
    scar_fill: tuple[float, float, float]  # rolling, boxcar, icepick
    scar_tether: tuple[float, float, float]
    scar_half_gain: float
    pore_max_reduction: float
    pore_half_gain: float
    striae_max_reduction: tuple[float, float]  # rubra, alba
    striae_half_gain: float
    lesion_excess_fraction: float
    pih_melanin_per_q: float
    collagen_I_fraction: float  # healing.C1_0
    # the pigment (MASI, melanin index, PIH) and redness maps (physics.pigment, physics.redness)
    pigment: PigmentParameters
    redness: RednessParameters

    @classmethod
    def from_parameters(cls, ps: object) -> ObserveParameters:
        """Read every coefficient from ``observe.*`` of a ParameterSet."""

        assert isinstance(ps, ParameterSet)
        g = "observe."
        kw: dict[str, object] = {}
        for f in fields(cls):
            if f.name == "collagen_I_fraction":
                kw[f.name] = ps.value("healing.C1_0", "1")
            elif f.name == "pigment":
                kw[f.name] = PigmentParameters.from_parameters(ps)
            elif f.name == "redness":
                kw[f.name] = RednessParameters.from_parameters(ps)
            elif f.name == "scar_fill" or f.name == "scar_tether":
                kw[f.name] = tuple(ps.value(g + f.name, "1", key=k) for k in SCAR_TYPES)
            elif f.name == "striae_max_reduction":
                kw[f.name] = tuple(ps.value(g + f.name, "1", key=k) for k in STRIAE_STAGES)
            else:
                kw[f.name] = ps.value(g + f.name, "1")
        return cls(**kw)  # type: ignore[arg-type]

    @property
    def oedema_threshold(self) -> float:
        """Median swelling threshold on the redness signal (``physics.redness``)."""
        return self.redness.oedema_threshold


def collagen_gain(y: np.ndarray, layer: int) -> np.ndarray:
    """New collagen (III + immature I + mature I) in dermal ``layer`` (0 papillary, 1 reticular),
    fraction of baseline collagen: what a histological stain counts."""
    o = layer * N_DERMAL
    return y[..., o + IX_N1] + y[..., o + IX_N3] + y[..., o + IX_NX]


def structural_gain(y: np.ndarray, layer: int, theta: float) -> np.ndarray:
    """Mechanically effective new collagen G_s = NX + θ·(N1 + N3) in dermal ``layer``, fraction of
    baseline collagen: cross-linked collagen carries load fully, immature collagen a share θ
    (``observe.immature_strength``). The maps of density, fill, elasticity and texture read it."""
    o = layer * N_DERMAL
    return y[..., o + IX_NX] + theta * (y[..., o + IX_N1] + y[..., o + IX_N3])


def saturating(gain: np.ndarray, max_reduction: np.ndarray | float, half: float) -> np.ndarray:
    """Fractional improvement max·g/(half + g) for g ≥ 0 (0 for g ≤ 0): monotone, bounded."""
    g = np.maximum(gain, 0.0)
    return np.asarray(max_reduction) * g / (half + g)


def time_above(
    t: np.ndarray, x: np.ndarray, threshold: float, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """Duration (days) that ``x`` stays above ``threshold`` inside each window [start, end).

    Linear interpolation between output times locates the crossings.

    Parameters
    ----------
    t: (T,) times; x: (B, T) signal; starts, ends: (B, K) windows (NaN windows give NaN).
    """
    B, K = starts.shape
    out = np.full((B, K), np.nan)
    dt = np.diff(t)
    x0 = x[:, :-1] - threshold
    x1 = x[:, 1:] - threshold
    # fraction of each interval spent above the threshold (exact for a linear interpolant)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(
            (x0 > 0) & (x1 > 0),
            1.0,
            np.where(
                (x0 > 0) & (x1 <= 0),
                x0 / (x0 - x1),
                np.where((x0 <= 0) & (x1 > 0), x1 / (x1 - x0), 0.0),
            ),
        )
    above = frac * dt[None, :]
    cum = np.concatenate([np.zeros((B, 1)), np.cumsum(above, axis=1)], axis=1)
    for k in range(K):
        s, e = starts[:, k], ends[:, k]
        ok = np.isfinite(s)
        i0 = np.searchsorted(t, np.where(ok, s, t[0]), side="left")
        i1 = np.searchsorted(t, np.where(ok, np.minimum(e, t[-1]), t[0]), side="left")
        val = cum[np.arange(B), i1] - cum[np.arange(B), i0]
        out[:, k] = np.where(ok, val, np.nan)
    return out


def window_max(t: np.ndarray, x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Maximum of ``x`` (B, T) inside each window [start, end) of (B, K); NaN for NaN windows."""
    B, K = starts.shape
    out = np.full((B, K), np.nan)
    for k in range(K):
        s = starts[:, k][:, None]
        e = ends[:, k][:, None]
        mask = (t[None, :] >= s) & (t[None, :] < e)
        vals = np.where(mask, x, -np.inf).max(axis=1)
        out[:, k] = np.where(np.isfinite(starts[:, k]) & np.isfinite(vals), vals, np.nan)
    return out


@dataclass(frozen=True)
class Baseline:
    """Per-case baseline description (B,) arrays; NaN where a condition is absent."""

    dermis_thickness_um: np.ndarray
    papillary_fraction: np.ndarray
    age_years: np.ndarray
    fitzpatrick: np.ndarray  # 1..6
    elasticity_r2: np.ndarray  # NaN → from age
    wrinkle_depth_um: np.ndarray
    scar_depth_mm: np.ndarray
    scar_type: np.ndarray  # int index into SCAR_TYPES, -1 none
    pore_diameter_um: np.ndarray
    striae_width_mm: np.ndarray
    striae_stage: np.ndarray  # int index into STRIAE_STAGES, -1 none
    melanin_index: np.ndarray  # NaN → no pigment end point
    # the lesion (physics.pigment): its floor, dermal share and baseline MASI components
    perilesional_melanin_index: np.ndarray
    dermal_pigment_fraction: np.ndarray
    masi_area_pct: np.ndarray  # (B, 4) in the order of pigment.MASI_REGIONS; NaN: not melasma
    masi_darkness: np.ndarray
    masi_homogeneity: np.ndarray


def observables(
    t: np.ndarray,
    y: np.ndarray,
    base: Baseline,
    op: ObserveParameters,
    sessions: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Time-resolved observables, each (B, T) (layered ones (B, 2, T) for papillary, reticular).

    Returns a dict with keys: collagen_change, collagen_I_change, collagen_III_change,
    elastin_change, new_elastin_change, inflammation, fibroblasts (layered, %, % ... 1);
    erythema, oedema (1); epidermal_thickness_change, dermal_density_change (%);
    dermal_thickness (um); elasticity_index (1); wrinkle_depth (um); scar_depth (mm);
    pore_diameter (um); striae_width (mm); melanin_index (Mexameter-like units).

    Pigment and redness: masi_score, mmasi_score (1), pih_stimulus (1); ``sessions`` =
    (session days (B, K), injured fractions (B, K, 3)) gives the immediate vascular part
    of the redness signal (default: none).
    """
    c1_0 = op.collagen_I_fraction
    out: dict[str, np.ndarray] = {}
    layered = {
        k: []
        for k in (
            "collagen_change",
            "collagen_I_change",
            "collagen_III_change",
            "mature_collagen_change",
            "elastin_change",
            "new_elastin_change",
            "inflammation",
            "fibroblasts",
        )
    }  # type: dict[str, list[np.ndarray]]
    for layer in (0, 1):
        o = layer * N_DERMAL
        n1, n3, nx = y[..., o + IX_N1], y[..., o + IX_N3], y[..., o + IX_NX]
        layered["collagen_change"].append(100.0 * (n1 + n3 + nx))
        layered["collagen_I_change"].append(100.0 * (n1 + nx) / c1_0)
        layered["collagen_III_change"].append(100.0 * n3 / (1.0 - c1_0))
        layered["mature_collagen_change"].append(100.0 * nx)
        layered["elastin_change"].append(100.0 * (y[..., o + IX_NE] - y[..., o + IX_LE]))
        layered["new_elastin_change"].append(100.0 * y[..., o + IX_NE])
        layered["inflammation"].append(y[..., o + IX_I])
        layered["fibroblasts"].append(y[..., o + IX_F])
    for k, v in layered.items():
        out[k] = np.stack(v, axis=1)

    w = op.papillary_weight
    gain_pap = collagen_gain(y, 0)
    gain_ret = collagen_gain(y, 1)
    gain_mix = w * gain_pap + (1.0 - w) * gain_ret
    th = op.immature_strength
    mature = w * structural_gain(y, 0, th) + (1.0 - w) * structural_gain(y, 1, th)
    new_el = w * y[..., IX_NE] + (1.0 - w) * y[..., N_DERMAL + IX_NE]

    no_session = (np.full((y.shape[0], 1), np.inf), np.zeros((y.shape[0], 1, 3)))
    days, injured = sessions if sessions is not None else no_session
    red = redness.redness_signal(
        t, y[..., IX_I], y[..., N_DERMAL + IX_I], days, injured, op.redness
    )
    out["erythema"] = red
    out["oedema"] = red  # same signal, higher visibility threshold
    out["epidermal_thickness_change"] = 100.0 * y[..., IX_H]
    out["dermal_density_change"] = 100.0 * op.density_per_collagen_I * mature
    pf = base.papillary_fraction[:, None]
    thick = base.dermis_thickness_um[:, None]
    out["dermal_thickness"] = thick * (
        1.0 + op.thickness_per_collagen * (pf * gain_pap + (1.0 - pf) * gain_ret)
    )
    # elasticity (R2-like, 0..1): baseline from the input or from age; gains saturate towards 1
    r2_age = op.elasticity_baseline_young + op.elasticity_age_slope * (base.age_years - 20.0) / 10.0
    r2_0 = np.where(
        np.isfinite(base.elasticity_r2), base.elasticity_r2, np.clip(r2_age, 0.0, 1.0 - 1e-9)
    )  # R2 lies in [0, 1) by definition
    drive = np.maximum(mature + op.elasticity_elastin_weight * new_el, 0.0)
    out["elasticity_index"] = r2_0[:, None] + (1.0 - r2_0[:, None]) * op.elasticity_gain * drive / (
        1.0 + op.elasticity_gain * drive
    )
    out["wrinkle_depth"] = base.wrinkle_depth_um[:, None] * (
        1.0 - saturating(gain_pap, op.wrinkle_max_reduction, op.wrinkle_half_gain)
    )
    # atrophic scars: tether release (reticular S) and fill by new collagen, type-specific
    st = base.scar_type
    has = st >= 0
    idx = np.where(has, st, 0)
    fill = np.where(has, np.asarray(op.scar_fill)[idx], np.nan)[:, None]
    teth = np.where(has, np.asarray(op.scar_tether)[idx], np.nan)[:, None]
    release = 1.0 - y[..., N_DERMAL + IX_S]
    out["scar_depth"] = (
        base.scar_depth_mm[:, None]
        * (1.0 - teth * release)
        * (1.0 - saturating(gain_mix, fill, op.scar_half_gain))
    )
    out["pore_diameter"] = base.pore_diameter_um[:, None] * (
        1.0 - saturating(gain_pap, op.pore_max_reduction, op.pore_half_gain)
    )
    ss = base.striae_stage
    smax = np.where(ss >= 0, np.asarray(op.striae_max_reduction)[np.where(ss >= 0, ss, 0)], np.nan)
    out["striae_width"] = base.striae_width_mm[:, None] * (
        1.0 - saturating(gain_mix, smax[:, None], op.striae_half_gain)
    )
    # the lesion: contrast from the epidermal excess Mp (1 at baseline) over fixed dermal pigment;
    # melanin index down to its floor (the surrounding skin), PIH pigment adds; MASI / mMASI
    contrast = pigment.lesion_contrast(y[..., IX_MP], base.dermal_pigment_fraction)
    out["melanin_index"] = pigment.melanin_index(
        base.melanin_index, base.perilesional_melanin_index, contrast, y[..., IX_Q], op.pigment
    )
    out["masi_score"], out["mmasi_score"] = pigment.masi(
        contrast, base.masi_area_pct, base.masi_darkness, base.masi_homogeneity, op.pigment
    )
    out["pih_stimulus"] = y[..., IX_Q]
    return out

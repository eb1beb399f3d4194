"""From healing states to clinical observables, batch-first (B cases, T times).

Every map is monotone in the state that drives it and bounded; its coefficients live in
``data/parameters/observe.toml`` with sources (the elasticity baseline too: ``observe.r2_*``).
Conditions a case does not have are NaN in and NaN out. Time is in days. The mechanisms, equations
and sources of the dermal maps are in ``docs/model.md``.

Dermal maps read the *structural* collagen G_s = NX + θ·(N1 + N3) (:func:`structural_gain`):
cross-linked collagen carries load, immature collagen a share θ. Depressed features (acne scars,
static wrinkle grooves, striae) respond through their own floor, simulated as an extra case of the
healing ODE (:mod:`microneedling.physics.scars`) and passed in as :class:`Floors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from microneedling.parameters.parameter_set import ParameterSet
from microneedling.physics import percase, pigment, redness, scars
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
from microneedling.physics.needles import power
from microneedling.physics.pigment import PigmentParameters
from microneedling.physics.redness import RednessParameters
from microneedling.vocabulary import SCAR_TYPES as SCAR_TYPES
from microneedling.vocabulary import STRIAE_STAGES as STRIAE_STAGES

#: depressed features that get their own floor case (see :class:`Floors`)
FEATURES = ("scar", "wrinkle", "striae")

#: units in which the coefficients are used (default "1")
_UNITS = {
    "scar_grade_mild_depth": "mm",
    "scar_grade_obvious_depth": "mm",
    "sa_micro": "um",
    "pore_density": "1/cm^2",
    "sa_reference_age": "yr",
}


@dataclass(frozen=True)
class ObserveParameters:
    """Coefficients of the observation maps (dimensionless unless stated).

    One parameter set's numbers, or several sets' side by side, one value per case
    (:func:`~microneedling.physics.percase.stack`: (B, 1) columns), which :func:`observables`
    and :func:`floor_state` take as well (the cases under many sets in one call).
    """

    erythema_threshold: float
    erythema_reticular_weight: float
    density_per_collagen_I: float
    thickness_per_collagen: float
    papillary_weight: float
    immature_strength: float  # θ: load carried by immature relative to mature collagen
    # elasticity (logit R2) and firmness
    elastin_functional_fraction: float  # q_E
    r2_elastin_sensitivity: float  # s_E
    r2_collagen_sensitivity: float  # s_C
    modulus_collagen_exponent: float  # m: dermal modulus ∝ (1 + G_s)^m
    # depressions: one fill law; the Goodman & Baron grade map
    depression_fill_max: float
    depression_fill_half: float
    scar_grade_mild_depth: float  # mm
    scar_grade_obvious_depth: float  # mm
    scar_grade_sigma: float
    # texture (areal roughness Sa)
    sa_micro: float  # um, micro-relief at sa_reference_age
    sa_reference_age: float  # yr
    sa_micro_age_slope: float  # relative change per decade
    texture_collagen_exponent: float  # β
    pore_density: float  # 1/cm^2
    pore_depth_ratio: float
    # wrinkles and pores
    wrinkle_static_share: float
    pore_support_share: float
    # pigment
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
            else:
                kw[f.name] = ps.value(g + f.name, _UNITS.get(f.name, "1"))
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


#: largest (cases x sessions x times) whose windows :func:`window_max` takes at once; larger
#: batches window by window (a maximum is exact: the same values either way, tested)
WINDOWS_AT_ONCE = 20_000


def window_max(t: np.ndarray, x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Maximum of ``x`` (B, T) inside each window [start, end) of (B, K); NaN for NaN windows."""
    B, K = starts.shape
    if B * K * t.size <= WINDOWS_AT_ONCE:  # a course or a few: every window at once (B, K, T)
        inside = (t >= starts[:, :, None]) & (t < ends[:, :, None])
        vals = np.where(inside, x[:, None, :], -np.inf).max(axis=2)
        return np.where(np.isfinite(starts) & np.isfinite(vals), vals, np.nan)
    out = np.full((B, K), np.nan)
    for k in range(K):
        s = starts[:, k][:, None]
        e = ends[:, k][:, None]
        mask = (t[None, :] >= s) & (t[None, :] < e)
        vals = np.where(mask, x, -np.inf).max(axis=1)
        out[:, k] = np.where(np.isfinite(starts[:, k]) & np.isfinite(vals), vals, np.nan)
    return out


def _unset() -> np.ndarray:
    """Default of a baseline field the engine fills after construction (empty: not yet set)."""
    return np.empty(0)


@dataclass(frozen=True)
class Baseline:
    """Per-case baseline description, (B,) arrays; NaN (or −1 for codes) where a condition is
    absent. Lengths in the unit their name says; shares dimensionless. The keyword-only fields
    (dermal geometry, site area) are filled by the engine after the conditions are read
    (``engine.prepare``)."""

    dermis_thickness_um: np.ndarray
    papillary_fraction: np.ndarray
    age_years: np.ndarray
    fitzpatrick: np.ndarray  # 1..6
    elasticity_r2: np.ndarray  # baseline Cutometer R2 (measured, or the age x sex x site table)
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
    site_area_cm2: np.ndarray = field(default_factory=_unset, kw_only=True)
    # acne scars: geometry (type defaults or the course's values)
    scar_count: np.ndarray = field(default_factory=_unset, kw_only=True)
    scar_width_mm: np.ndarray = field(default_factory=_unset, kw_only=True)
    # int index into DEPRESSION_PROFILES, -1 none
    scar_profile: np.ndarray = field(default_factory=_unset, kw_only=True)
    scar_tethered: np.ndarray = field(default_factory=_unset, kw_only=True)
    scar_epithelial: np.ndarray = field(default_factory=_unset, kw_only=True)
    scar_distensible: np.ndarray = field(default_factory=_unset, kw_only=True)
    # chance that no needle reached a scar (a wrinkle groove, a stretch mark) in the course
    scar_untouched: np.ndarray = field(default_factory=_unset, kw_only=True)
    wrinkle_untouched: np.ndarray = field(default_factory=_unset, kw_only=True)
    striae_depth_mm: np.ndarray = field(default_factory=_unset, kw_only=True)
    striae_tethered: np.ndarray = field(default_factory=_unset, kw_only=True)
    striae_untouched: np.ndarray = field(default_factory=_unset, kw_only=True)


@dataclass(frozen=True)
class Floors:
    """What the floor of each depressed feature did, (B, T) arrays, NaN where a case does not have
    the feature: ``<feature>_gain`` the floor's structural collagen gain (papillary/reticular
    weighted, fraction of baseline collagen) and ``scar_tether``, ``striae_tether`` the floor's
    reticular tether state S (1 = untreated). :func:`floor_state` computes them from the floor
    cases' healing states."""

    scar_gain: np.ndarray
    scar_tether: np.ndarray
    wrinkle_gain: np.ndarray
    striae_gain: np.ndarray
    striae_tether: np.ndarray

    @classmethod
    def absent(cls, shape: tuple[int, int]) -> Floors:
        """No feature anywhere: every array NaN."""
        return cls(**{f.name: np.full(shape, np.nan) for f in fields(cls)})


def floor_state(y_floor: np.ndarray, op: ObserveParameters) -> tuple[np.ndarray, np.ndarray]:
    """(structural gain, reticular tether S) of floor cases from their states (R, T, N_STATE)."""
    w, th = op.papillary_weight, op.immature_strength
    gain = w * structural_gain(y_floor, 0, th) + (1.0 - w) * structural_gain(y_floor, 1, th)
    return gain, y_floor[..., N_DERMAL + IX_S]


def elasticity_baseline(
    age_years: np.ndarray,
    male: np.ndarray,
    r2_young: np.ndarray,
    age_slope: np.ndarray,
    reference_age: float | np.ndarray,
    male_offset: float | np.ndarray,
    male_slope_factor: float | np.ndarray,
) -> np.ndarray:
    """Baseline Cutometer R2 from age, sex and site (``observe.r2_*``), (B,):

    R2₀ = R2_young[site] + Δ_male − slope[site]·k_male·(age − age_ref)/10, kept inside [0.05, 0.98]
    (R2 is a ratio of deformations in (0, 1)). Non-increasing in age for a non-negative slope."""
    m = np.asarray(male, dtype=float)
    k = 1.0 + m * (male_slope_factor - 1.0)
    r2 = r2_young + m * male_offset - age_slope * k * (np.asarray(age_years) - reference_age) / 10.0
    return np.asarray(np.clip(r2, 0.05, 0.98))


def _nans(shape: tuple[int, ...]) -> np.ndarray:
    """``np.full(shape, np.nan)`` without its Python overhead (float64, the same NaN)."""
    out = np.empty(shape)
    out.fill(np.nan)
    return out


def _present(*fields: np.ndarray) -> bool:
    """Whether any of the baseline ``fields`` (B,) has a value (not NaN) in some case."""
    return any(not np.isnan(f).all() for f in fields)


def _logit(p: np.ndarray) -> np.ndarray:
    return np.asarray(np.log(p) - np.log1p(-p))


def observables(
    t: np.ndarray,
    y: np.ndarray,
    base: Baseline,
    op: ObserveParameters,
    floors: Floors | None = None,
    sessions: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Time-resolved observables, each (B, T) (layered ones (B, 2, T) for papillary, reticular).

    Returns a dict with keys: collagen_change, collagen_I_change, collagen_III_change,
    mature_collagen_change, elastin_change, new_elastin_change, inflammation, fibroblasts
    (layered, %, ..., 1); erythema, oedema (1); epidermal_thickness_change, dermal_density_change,
    firmness_change (%); dermal_thickness (um); elasticity_index (1); texture_roughness (um);
    wrinkle_depth (um); scar_depth (mm); scar_grade, scar_grade_responder,
    scar_grade_responder_two (1); pore_diameter (um); striae_width, striae_depth (mm);
    melanin_index (Mexameter-like units). ``floors`` (default: no feature has a floor, so
    depressed features keep their depth) comes from the floor cases of the engine.

    Pigment and redness: masi_score, mmasi_score (1), pih_stimulus (1); ``sessions`` =
    (session days (B, K), injured fractions (B, K, 3)) gives the immediate vascular part
    of the redness signal (default: none).
    """
    B, T = y.shape[0], y.shape[1]
    fl = floors if floors is not None else Floors.absent((B, T))
    c1_0 = op.collagen_I_fraction
    out: dict[str, np.ndarray] = {}
    # the layered outputs (B, 2, T), written in place layer by layer
    for k in (
        "collagen_change",
        "collagen_I_change",
        "collagen_III_change",
        "mature_collagen_change",
        "elastin_change",
        "new_elastin_change",
        "inflammation",
        "fibroblasts",
    ):
        out[k] = np.empty((B, 2, T))
    for layer in (0, 1):
        o = layer * N_DERMAL
        n1, n3, nx = y[..., o + IX_N1], y[..., o + IX_N3], y[..., o + IX_NX]
        np.multiply(100.0, n1 + n3 + nx, out=out["collagen_change"][:, layer])
        np.divide(100.0 * (n1 + nx), c1_0, out=out["collagen_I_change"][:, layer])
        np.divide(100.0 * n3, 1.0 - c1_0, out=out["collagen_III_change"][:, layer])
        np.multiply(100.0, nx, out=out["mature_collagen_change"][:, layer])
        elastin = y[..., o + IX_NE] - y[..., o + IX_LE]
        np.multiply(100.0, elastin, out=out["elastin_change"][:, layer])
        np.multiply(100.0, y[..., o + IX_NE], out=out["new_elastin_change"][:, layer])
        out["inflammation"][:, layer] = y[..., o + IX_I]
        out["fibroblasts"][:, layer] = y[..., o + IX_F]

    w = op.papillary_weight
    th = op.immature_strength
    gain_pap = collagen_gain(y, 0)
    gain_ret = collagen_gain(y, 1)
    gs_pap = structural_gain(y, 0, th)
    gs_mix = w * gs_pap + (1.0 - w) * structural_gain(y, 1, th)
    # relative structural collagen (1 at baseline); kept > 0 for the power laws below
    c_mix = np.maximum(1.0 + gs_mix, 0.05)
    c_pap = np.maximum(1.0 + gs_pap, 0.05)
    # functional elastic fibre, fraction of baseline: a share q_E of new tropoelastin becomes
    # functional fibre, pre-existing elastin lost to MMPs (LE) is gone
    new_el = w * y[..., IX_NE] + (1.0 - w) * y[..., N_DERMAL + IX_NE]
    lost_el = w * y[..., IX_LE] + (1.0 - w) * y[..., N_DERMAL + IX_LE]
    e_f = np.maximum(1.0 + op.elastin_functional_fraction * new_el - lost_el, 1e-3)
    # dermal modulus relative to baseline (``power``: a per-case exponent gives the bits of
    # ``x ** p`` with p a number)
    modulus = power(c_mix, op.modulus_collagen_exponent)

    if sessions is not None:
        days, injured = sessions
    else:  # no session
        days, injured = np.full((B, 1), np.inf), np.zeros((B, 1, 3))
    red = redness.redness_signal(
        t, y[..., IX_I], y[..., N_DERMAL + IX_I], days, injured, op.redness
    )
    out["erythema"] = red
    out["oedema"] = red  # same signal, higher visibility threshold
    out["epidermal_thickness_change"] = 100.0 * y[..., IX_H]
    # ultrasound density: a power of the structural collagen (positive for every state; slope β
    # at baseline, as the linear map it replaced on 2026-12-07)
    out["dermal_density_change"] = 100.0 * (power(c_mix, op.density_per_collagen_I) - 1.0)
    pf = base.papillary_fraction[:, None]
    thick = base.dermis_thickness_um[:, None]
    out["dermal_thickness"] = thick * (
        1.0 + op.thickness_per_collagen * (pf * gain_pap + (1.0 - pf) * gain_ret)
    )
    # elasticity: Cutometer R2 in logit space from functional elastin and structural collagen
    r2_0 = np.clip(base.elasticity_r2, 1e-6, 1.0 - 1e-6)[:, None]
    z = (
        _logit(r2_0)
        + op.r2_elastin_sensitivity * np.log(e_f)
        + op.r2_collagen_sensitivity * np.log(c_mix)
    )
    out["elasticity_index"] = 1.0 / (1.0 + np.exp(-z))
    # firmness: suction deformation (R0 = Uf) ∝ 1/modulus, firmness ∝ modulus
    out["firmness_change"] = 100.0 * (modulus - 1.0)

    # depressed features: expected over touched / untouched features (scars.py). A feature no
    # case has (its baseline fields NaN in every row) is NaN throughout: it is set so without
    # the arithmetic on NaN, which gives the same NaN (cohorts of one condition skip the others)
    fmax, fhalf = op.depression_fill_max, op.depression_fill_half
    sa_scar: float | np.ndarray = 0.0  # areal roughness the scars add (um)
    if _present(base.scar_depth_mm, base.scar_untouched):
        p0 = base.scar_untouched[:, None]
        h0 = base.scar_depth_mm[:, None]
        tau, eps = base.scar_tethered[:, None], base.scar_epithelial[:, None]
        fs = base.scar_distensible[:, None]
        s_floor = np.where(np.isfinite(fl.scar_tether), fl.scar_tether, 1.0)
        g_floor = np.where(np.isfinite(fl.scar_gain), fl.scar_gain, 0.0)
        treated = scars.depth(h0, tau, eps, s_floor, g_floor, fmax, fhalf)
        out["scar_depth"] = p0 * h0 + (1.0 - p0) * treated
        grade = [
            scars.goodman_baron_grade(
                hh,
                fs,
                op.scar_grade_mild_depth,
                op.scar_grade_obvious_depth,
                op.scar_grade_sigma,
            )
            for hh in (h0, treated)  # the baseline grade once per case (B, 1)
        ]
        out["scar_grade"] = p0 * grade[0] + (1.0 - p0) * grade[1]
        # chance that the integer grade fell by >= 1 (>= 2) grades since baseline (an untouched
        # scar keeps its grade)
        one, two = scars.grade_drop_probability(
            np.broadcast_to(h0, treated.shape),
            treated,
            fs,
            op.scar_grade_mild_depth,
            op.scar_grade_obvious_depth,
            op.scar_grade_sigma,
            steps=(1, 2),
        )
        out["scar_grade_responder"] = (1.0 - p0) * one
        out["scar_grade_responder_two"] = (1.0 - p0) * two
        # texture: the scars' share of the site's area; the scars cover at most the whole site
        # (a tiny site with many wide scars would otherwise overflow)
        w_mm = base.scar_width_mm[:, None]
        area_mm2 = 100.0 * base.site_area_cm2[:, None]
        a_scar = (
            np.minimum(base.scar_count[:, None] * np.pi * (0.5 * w_mm) ** 2, area_mm2) / area_mm2
        )
        zbar = 1000.0 * out["scar_depth"] * scars.mean_depth_share(base.scar_profile)[:, None]
        sa_scar = np.nan_to_num(scars.sparse_depression_sa(a_scar, zbar))
    else:
        for name in (
            "scar_depth",
            "scar_grade",
            "scar_grade_responder",
            "scar_grade_responder_two",
        ):
            out[name] = _nans((B, T))
    # static wrinkles: groove fill (floor case) + buckling amplitude of the upper layer, which
    # scales as substrate modulus^(-1/4) (Cerda & Mahadevan 2003)
    if _present(base.wrinkle_depth_um):
        p0w = base.wrinkle_untouched[:, None]
        gw = np.where(np.isfinite(fl.wrinkle_gain), fl.wrinkle_gain, 0.0)
        groove = p0w + (1.0 - p0w) * (1.0 - scars.fill_fraction(gw, fmax, fhalf))
        buckling = power(c_pap, -op.modulus_collagen_exponent / 4.0)
        fst = op.wrinkle_static_share
        out["wrinkle_depth"] = base.wrinkle_depth_um[:, None] * (
            fst * groove + (1.0 - fst) * buckling
        )
    else:
        out["wrinkle_depth"] = _nans((B, T))
    # pores: the opening of a hole in a tensioned sheet ∝ tension / stiffness of its support
    sa_pore: float | np.ndarray = 0.0  # areal roughness the pores add (um)
    if _present(base.pore_diameter_um):
        support = power(c_pap, op.modulus_collagen_exponent) * e_f
        fsup = op.pore_support_share
        d_pore = base.pore_diameter_um[:, None] * (fsup / support + (1.0 - fsup))  # um
        out["pore_diameter"] = d_pore
        a_pore = op.pore_density * 1e-8 * np.pi * d_pore**2 / 4.0  # density per cm^2 x um^2 area
        z_pore = op.pore_depth_ratio * d_pore * scars.MEAN_DEPTH_SHARE["v_shaped"]
        sa_pore = np.nan_to_num(scars.sparse_depression_sa(a_pore, z_pore))
    else:
        out["pore_diameter"] = _nans((B, T))
    # stretch marks: rounded linear atrophic scars, by the scars' depth law (a contracted,
    # tether-like share released with the floor's S, the rest filled); visible width = band
    # deeper than the threshold of visible atrophy
    if _present(base.striae_depth_mm, base.striae_untouched, base.striae_width_mm):
        p0s = base.striae_untouched[:, None]
        gsd = np.where(np.isfinite(fl.striae_gain), fl.striae_gain, 0.0)
        ssd = np.where(np.isfinite(fl.striae_tether), fl.striae_tether, 1.0)
        sd0 = base.striae_depth_mm[:, None]
        streated = scars.depth(sd0, base.striae_tethered[:, None], 0.0, ssd, gsd, fmax, fhalf)
        sdepth = p0s * sd0 + (1.0 - p0s) * streated
        out["striae_depth"] = sdepth
        out["striae_width"] = scars.visible_width(
            base.striae_width_mm[:, None],
            sd0,
            sdepth,
            op.scar_grade_mild_depth,
            op.scar_grade_sigma,
        )
    else:
        out["striae_depth"], out["striae_width"] = _nans((B, T)), _nans((B, T))
    # texture: areal roughness Sa (um) = micro-relief x collagen term + sparse depressions (0
    # where a batch has none: x + 0.0 as with an array of zeros)
    age = base.age_years[:, None]
    age_rel = 1.0 + op.sa_micro_age_slope * (age - op.sa_reference_age) / 10.0
    micro = op.sa_micro * np.maximum(age_rel, 0.1) * power(c_pap, -op.texture_collagen_exponent)
    out["texture_roughness"] = micro + sa_scar + sa_pore
    # the lesion: contrast from the epidermal excess Mp (1 at baseline) over fixed dermal pigment;
    # melanin index down to its floor (the surrounding skin), PIH pigment adds; MASI / mMASI
    # only for the cases with a melasma (every region's area known); NaN otherwise, as the NaN
    # area of the others makes their scores (each row is computed on its own)
    lesion = np.flatnonzero(~np.any(np.isnan(base.masi_area_pct), axis=1))
    contrast = np.empty(0)
    if _present(base.perilesional_melanin_index) or lesion.size:
        contrast = pigment.lesion_contrast(y[..., IX_MP], base.dermal_pigment_fraction)
        out["melanin_index"] = pigment.melanin_index(
            base.melanin_index, base.perilesional_melanin_index, contrast, y[..., IX_Q], op.pigment
        )
    else:
        out["melanin_index"] = _nans((B, T))
    out["masi_score"], out["mmasi_score"] = _nans((B, T)), _nans((B, T))
    if lesion.size:
        masi, mmasi = pigment.masi(
            contrast[lesion],
            base.masi_area_pct[lesion],
            base.masi_darkness[lesion],
            base.masi_homogeneity[lesion],
            percase.take(op.pigment, lesion),
        )
        out["masi_score"][lesion], out["mmasi_score"][lesion] = masi, mmasi
    out["pih_stimulus"] = y[..., IX_Q]
    return out

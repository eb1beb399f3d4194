"""Needles: device → puncture density, penetration depth, channel geometry, layers reached.

Also the skin-layer thicknesses (stratum corneum, viable epidermis, papillary and reticular dermis)
per site, sex and age that the needles go through. Everything is SI (m, s), batch-first: the leading
axis is the case; one case is a batch of one. Equations and sourced numbers:
``shared/research/models.md`` (Stage 1, C.2) and ``clinical_data.md`` (§4, §6); parameter values
live in ``data/parameters/needles.toml`` and ``skin.toml``.

Public API
----------
Constants
    ``ROLLER, PEN, STAMP`` (device-kind codes 0, 1, 2), ``DEVICE_KINDS``, ``SITES``,
    ``SKIN_LAYERS`` (the four thickness layers, top to bottom).
Device → punctures
    ``device_code(kind) -> int array``;
    ``puncture_density(kind, passes, needles, *, drum_diameter, drum_width, stroke_frequency,
    hand_speed, cartridge_width, stamp_area) -> n [1/m²]`` (NaN where a needed geometry is NaN).
Insertion (how deep a channel goes)
    ``needle_speed(kind, needle_length, stroke_frequency, params) -> v [m/s]``;
    ``puncture_deflection(tip_radius, speed, params) -> δ_p [m]``;
    ``force_limited_depth(kind, needles, params) -> d_F [m]`` (inf for pens);
    ``smooth_min(x, y, p)``;
    ``penetration_depth(needle_length, skin_thickness, deflection, insertion_factor=1,
    force_depth=inf, smoothness=4) -> d [m]``;
    ``insertion_depth(kind, needle_length, skin_thickness, *, tip_radius, stroke_frequency,
    needles, species, params) -> d [m]`` (the whole chain).
Geometry
    ``channel_surface_radius(needle_diameter, ratio, depth=None, cone_length=None) -> a [m]``;
    ``channel_radius(z, depth, surface_radius) -> r(z) [m]`` (cone);
    ``layer_boundaries(layers) -> (..., 5)``; ``layer_reach(depth, layers) -> (..., 4)``;
    ``reaches_capillaries(depth, layers, loop_fraction) -> bool``;
    ``capillary_loop_depth(layers, loop_fraction) -> z [m]``;
    ``roller_cleft_width(z, depth, needle_length, drum_radius) -> w [m]`` and
    ``roller_cleft_area(z_top, depth, needle_length, drum_radius) -> A [m²]`` (the dermal cleft a
    drum needle sweeps, below).
Convenience for the simulation glue
    ``NeedleParameters.from_parameters(ps)``; ``DeviceGeometry`` (``from_fields``, ``mf8``);
    ``channels(geometry, needle_length_m, passes, pen_speed_m_s, skin, params, species=...)
    -> Channels``.
Skin
    ``SkinLayers`` (thicknesses in m; ``stack()`` gives (B, 4)); ``SkinParameters.from_parameters``;
    ``skin_layers_from_parameters(site_idx, age_years, male, params) -> SkinLayers`` (pure);
    ``skin_layers(site, age_years, sex, ps)`` and ``skin_layers_batch(sites, age_years, sex, ps)``.

Puncture density per area (models.md Stage 1)::

    roller  n = passes · N / (π · D_drum · W_drum)     (MF8: 192/(π·2 cm·2 cm) = 15.3 cm⁻² per pass)
    pen     n = passes · f · N_c / (v · w)              (stroke frequency f, hand speed v, width w)
    stamp   n = passes · N / A_stamp

Insertion (docs/model.md, "Penetration"). Skin dimples before a needle punctures it; after the
puncture the needle advances the rest of its length, a hand-held device only as far as the force
each needle receives allows::

    δ_p = δ_ref · (r_tip / r_ref)^β_tip / (1 + v / v_c)          deflection before puncture
    d_geo = η_species · max(L − δ_p, 0)                           geometric depth
    d_F = (F_hand / N_contact − F_punct) / f_shaft                 force-limited depth (roller, stamp)
    d = min(smooth_min_p(d_geo, d_F), skin thickness),  smooth_min_p(x, y) = (x^−p + y^−p)^(−1/p)

v is the needle's speed into the skin: the hand speed of a roller, the pressing speed of a stamp,
2·(L + stroke offset)·f for a pen stroking at f. Sharp, fast needles dimple less (Römgens 2014;
Verbaan 2008); pens drive the needle to a depth stop and insert nearly fully (Sasaki 2019). The
channel's surface radius follows the needle's conical tip until the full shank width:
a = ρ_a · R_shank · min(1, d / L_cone).

Roller clefts (docs/model.md, "Redness and downtime"). A drum needle does not go straight in and
out: fixed radially on a drum of radius R that rolls without slipping, with its tip at R + L from
the axis and inserted to depth d (so the skin surface is c = R + L − d below the axis), it enters
at an angle and turns while in the skin. At depth z below the surface the needle's line passes
through x(ψ) = Rψ − (c + z)·tan ψ while the drum turns through |ψ| ≤ ψ_z = arccos((c + z)/(R + L)),
so in rigid skin it cuts a cleft of width

    w(z) = 2 [(c + z) tan ψ_z − R ψ_z]         (0 at z = d; 2R(tan θ₀ − θ₀) at the surface)

in the plane of rolling (Schwarz & Laaff 2011's MF8: R = 1 cm; a 1.5 mm needle enters at 29.6°
and its surface crossing travels 1.03 mm). Skin follows the needle (round surface holes, "a bit of
slitting in the dermis"), so only a fraction κ (``needles.roller_sweep_fraction``, an estimate) of
that cleft is cut tissue; a pen's needle goes in vertically for a few ms and a stamp's straight
down, so neither sweeps. ``roller_cleft_area`` integrates w between two depths (Gauss-Legendre);
``channels`` keeps κ × needle diameter × the area below the capillary loops as the cleft volume of
each roller puncture, the vessel-cutting injury that leaves blood in the dermis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from microneedling.vocabulary import SITES

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.parameters.parameter_set import ParameterSet

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

ROLLER = 0
"""Device-kind code of a drum roller."""
PEN = 1
"""Device-kind code of an automated (stamping) pen."""
STAMP = 2
"""Device-kind code of a flat stamp."""
DEVICE_KINDS: tuple[str, ...] = ("roller", "pen", "stamp")
"""Device names, indexed by their code."""


SKIN_LAYERS: tuple[str, ...] = (
    "stratum_corneum",
    "viable_epidermis",
    "papillary_dermis",
    "reticular_dermis",
)
"""The four thickness layers, top to bottom (``vocabulary.LAYERS`` merges the first two)."""

SEX_MALE_FRACTION: dict[str, float] = {"female": 0.0, "male": 1.0}
"""Sex as the weight of the male tables (0 = female tables, 1 = male tables)."""


def _f(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=float)


#: exponents NumPy raises an array to by another function than ``pow`` (``x ** 2.0`` squares,
#: ``x ** 0.5`` takes the square root ...; the last bit can differ from ``np.power``)
_FAST_EXPONENTS = (-1.0, 0.0, 0.5, 1.0, 2.0)


def power(x: ArrayLike, p: ArrayLike) -> FloatArray:
    """``x ** p`` for an array ``x`` and an exponent ``p`` that is a number or an array over the
    rows of ``x`` (a parameter of several parameter sets side by side, one value per row).

    With an array ``p`` every element has the bits ``x ** float(p_i)`` gives on an array:
    ``np.power``, except where ``p_i`` is one of the exponents NumPy computes otherwise (2: square, 0.5: square
    root, -1: reciprocal, 0, 1), which take that path here too. A number ``p``: ``x ** p``."""
    if np.ndim(p) == 0:
        number: Any = p  # as given (a float exponent of 2 or 0.5 takes NumPy's fast path)
        return np.asarray(_f(x) ** number)
    xa, pa = np.broadcast_arrays(_f(x), _f(p))
    out = np.power(xa, pa)
    for e in _FAST_EXPONENTS:
        at = pa == e
        if at.any():
            out[at] = xa[at] ** e
    return out


def _scalar_power(x: ArrayLike, p: ArrayLike) -> FloatArray:
    """``x ** p`` element by element as NumPy scalars compute it (the C library's ``pow``): a
    number raised to a parameter value, per row of several parameter sets."""
    xa, pa = np.broadcast_arrays(_f(x), _f(p))
    flat = [
        np.float64(a) ** np.float64(b)
        for a, b in zip(xa.ravel().tolist(), pa.ravel().tolist(), strict=True)
    ]
    return np.array(flat, dtype=float).reshape(xa.shape)


# --------------------------------------------------------------------------- device → density
def device_code(kind: str | Sequence[str] | ArrayLike) -> NDArray[np.int64]:
    """Device-kind code(s) (``ROLLER``, ``PEN``, ``STAMP``) of names or codes.

    Raises ``ValueError`` naming the allowed kinds for anything else.
    """
    arr = np.asarray(kind)
    if arr.dtype.kind in "US":
        flat = [str(k) for k in arr.ravel()]
        bad = [k for k in flat if k not in DEVICE_KINDS]
        if bad:
            raise ValueError(f"device kind {bad[0]!r}; allowed: {', '.join(DEVICE_KINDS)}")
        return np.array([DEVICE_KINDS.index(k) for k in flat], dtype=np.int64).reshape(arr.shape)
    codes = arr.astype(np.int64)
    # integer codes in {ROLLER, PEN, STAMP} = {0, 1, 2}, given as integers
    if not ((codes >= ROLLER) & (codes <= STAMP)).all() or not np.array_equal(codes, arr):
        raise ValueError(f"device code(s) {arr!r}; allowed: 0 (roller), 1 (pen), 2 (stamp)")
    return codes


def puncture_density(
    kind: ArrayLike,
    passes: ArrayLike,
    needles: ArrayLike,
    *,
    drum_diameter: ArrayLike = math.nan,
    drum_width: ArrayLike = math.nan,
    stroke_frequency: ArrayLike = math.nan,
    hand_speed: ArrayLike = math.nan,
    cartridge_width: ArrayLike = math.nan,
    stamp_area: ArrayLike = math.nan,
) -> FloatArray:
    """Punctures per skin area [1/m²] after ``passes`` passes, per device kind.

    Parameters
    ----------
    kind:
        Device-kind codes (``ROLLER`` 0, ``PEN`` 1, ``STAMP`` 2) or names, shape (B,).
    passes:
        Passes over the area (roller passes, pen passes, stamps per spot) [1].
    needles:
        Needles on the drum (roller), in the cartridge (pen) or on the plate (stamp) [1].
    drum_diameter, drum_width:
        Roller drum diameter and width [m]; NaN where not a roller.
    stroke_frequency, hand_speed, cartridge_width:
        Pen stamps per second [1/s], hand speed over the skin [m/s] and swept width [m].
    stamp_area:
        Stamp plate area [m²].

    Returns
    -------
    Puncture density n [1/m²], shape of the broadcast inputs; NaN where the geometry the kind
    needs is NaN. One roller revolution covers π·D·W, so
    n = passes·N/(π·D·W) (Dermaroller MF8: 15.3 cm⁻² per pass, ≈229 after 15 passes, against the
    ≈250 cm⁻² clinicians quote); a pen lays f/(v·w) stamps per area and pass; a stamp N/A.
    """
    code = device_code(kind)
    p, N = _f(passes), _f(needles)
    with np.errstate(divide="ignore", invalid="ignore"):
        roller = p * N / (np.pi * _f(drum_diameter) * _f(drum_width))
        pen = p * _f(stroke_frequency) * N / (_f(hand_speed) * _f(cartridge_width))
        stamp = p * N / _f(stamp_area)
    return _by_kind(code, roller, pen, stamp)


# ------------------------------------------------------------------------------ insertion
SPECIES: tuple[str, ...] = ("human", "rat")
"""Species whose skin the insertion model knows (``needles.insertion_factor`` keys)."""


def needle_speed(
    kind: ArrayLike,
    needle_length: ArrayLike,
    stroke_frequency: ArrayLike,
    params: NeedleParameters,
) -> FloatArray:
    """Speed [m/s] at which a needle meets the skin, per device kind.

    Roller: the hand rolling speed ``needles.roller_speed``; stamp: the pressing speed
    ``needles.stamp_speed``; pen: the mean stroke speed 2·(L + offset)·f of a needle travelling its
    stroke (needle length L plus ``needles.pen_stroke_offset``) out and back f times a second.
    """
    code = device_code(kind)
    length = np.maximum(_f(needle_length), 0.0)
    pen = 2.0 * (length + params.pen_stroke_offset) * _f(stroke_frequency)
    return _by_kind(
        code,
        np.broadcast_to(params.roller_speed, length.shape),
        pen,
        np.broadcast_to(params.stamp_speed, length.shape),
    )


def _by_kind(code: NDArray[np.int64], roller: Any, pen: Any, stamp: Any) -> FloatArray:
    """The value of each element's device kind, ``roller``, ``pen`` or ``stamp`` (broadcast
    against ``code``; NaN for another code), as float: ``np.select`` of the three kinds
    (the conditions exclude each other) without building its lists of arrays."""
    out = np.where(
        code == ROLLER, roller, np.where(code == PEN, pen, np.where(code == STAMP, stamp, np.nan))
    )
    return np.asarray(out, dtype=float)


def puncture_deflection(
    tip_radius: ArrayLike, speed: ArrayLike, params: NeedleParameters
) -> FloatArray:
    """Skin deflection before puncture δ_p = δ_ref·(r_tip/r_ref)^β/(1 + v/v_c) [m].

    δ_ref is the quasi-static dimple of a sharp needle (tip radius r_ref) in human skin; blunter
    tips dimple more (β = ``needles.tip_exponent``), fast needles less (v_c =
    ``needles.critical_speed``). Non-increasing in speed, non-decreasing in tip radius.
    """
    r = np.maximum(_f(tip_radius), 0.0) / params.tip_radius_ref
    v = np.maximum(_f(speed), 0.0)
    if np.ndim(params.tip_exponent) == 0:
        rp = r**params.tip_exponent
    elif np.ndim(tip_radius) == 0:  # one device's tip under per-row parameters: as a scalar
        rp = _scalar_power(r, params.tip_exponent)
    else:
        rp = power(r, params.tip_exponent)
    return np.asarray(params.puncture_deflection * rp / (1.0 + v / params.critical_speed))


def force_limited_depth(
    kind: ArrayLike, needles: ArrayLike, params: NeedleParameters
) -> FloatArray:
    """Depth [m] at which the hand force a needle receives is used up: (F/N − F_p)/f_shaft.

    Roller: the hand force spread over the needles in contact at once (``roller_contact_fraction``
    of the drum's needles); stamp: over every needle of the plate. Pens are motor-driven to a depth
    stop: inf. 0 where a needle does not even get the puncture force.
    """
    code = device_code(kind)
    n = np.maximum(_f(needles), 1.0)
    in_contact = np.where(code == ROLLER, np.maximum(n * params.roller_contact_fraction, 1.0), n)
    per_needle = params.hand_force / in_contact
    d = np.maximum(per_needle - params.puncture_force, 0.0) / params.shaft_resistance
    return np.asarray(np.where(code == PEN, np.inf, d), dtype=float)


def smooth_min(x: ArrayLike, y: ArrayLike, p: ArrayLike) -> FloatArray:
    """(x^−p + y^−p)^(−1/p) for x, y ≥ 0: ≤ min(x, y), → min for p → ∞, 0 if either is 0, and
    the other when one is inf. Smooth in both arguments where both are positive. ``p`` a number or
    one exponent per element (:func:`power`)."""
    x_, y_ = np.broadcast_arrays(np.maximum(_f(x), 0.0), np.maximum(_f(y), 0.0))
    lo = np.minimum(x_, y_)
    hi = np.maximum(x_, y_)
    ok = (lo > 0.0) & np.isfinite(lo)
    ratio = np.divide(lo, hi, out=np.zeros_like(lo), where=ok & (hi > 0.0))
    ratio = np.where(np.isfinite(hi), ratio, 0.0)
    out = lo * power(1.0 + power(ratio, p), -1.0 / _f(p))
    return np.asarray(np.where(ok, out, np.where(np.isinf(lo), np.inf, 0.0)))


def penetration_depth(
    needle_length: ArrayLike,
    skin_thickness: ArrayLike,
    deflection: ArrayLike,
    insertion_factor: ArrayLike = 1.0,
    force_depth: ArrayLike = np.inf,
    smoothness: ArrayLike = 4.0,
) -> FloatArray:
    """Channel depth d = min(smooth_min(η·max(L − δ_p, 0), d_F), skin thickness) [m].

    ``deflection`` δ_p (``puncture_deflection``) is lost before the skin is punctured;
    ``insertion_factor`` η is the share of the remaining length that enters (species);
    ``force_depth`` d_F caps hand-held devices (``force_limited_depth``), joined by a smooth minimum
    of exponent ``smoothness``. The depth is capped by the full skin thickness [m]: never below 0,
    never beyond L or the skin. Non-decreasing in L.
    """
    length = np.maximum(_f(needle_length), 0.0)
    geo = np.maximum(_f(insertion_factor), 0.0) * np.maximum(length - _f(deflection), 0.0)
    d = smooth_min(geo, force_depth, smoothness)
    return np.asarray(np.minimum(np.minimum(d, length), _f(skin_thickness)))


def insertion_depth(
    kind: ArrayLike,
    needle_length: ArrayLike,
    skin_thickness: ArrayLike,
    *,
    tip_radius: ArrayLike,
    stroke_frequency: ArrayLike,
    needles: ArrayLike,
    params: NeedleParameters,
    species: str = "human",
) -> FloatArray:
    """The whole insertion chain (speed → deflection → depth) for devices of ``kind`` [m]."""
    eta = params.insertion_factor_of(species)
    v = needle_speed(kind, needle_length, stroke_frequency, params)
    dp = puncture_deflection(tip_radius, v, params)
    d_f = force_limited_depth(kind, needles, params)
    return penetration_depth(needle_length, skin_thickness, dp, eta, d_f, params.smoothness)


# ------------------------------------------------------------------------------- geometry
def channel_surface_radius(
    needle_diameter: ArrayLike,
    ratio: ArrayLike,
    depth: ArrayLike | None = None,
    cone_length: ArrayLike | None = None,
) -> FloatArray:
    """Channel radius at the skin surface a = ratio · needle radius · min(1, d / L_cone) [m].

    ``ratio`` = channel surface radius / needle shank radius, 70.7/140 = 0.505 for Kalluri 2011's
    Dermaroller channels (``needles.channel_radius_ratio``). Without ``depth`` the channel is
    taken as full-width; with it, a channel that stops inside the needle's conical tip (depth
    below ``cone_length``, ``needles.cone_length``) is as wide as the part of the cone that went in.
    """
    a = np.maximum(_f(ratio), 0.0) * _f(needle_diameter) / 2.0
    if depth is None:
        return np.asarray(a)
    if cone_length is None:
        raise ValueError("channel_surface_radius: cone_length is required with depth")
    cone = np.maximum(_f(cone_length), 1e-30)
    return np.asarray(a * np.clip(np.maximum(_f(depth), 0.0) / cone, 0.0, 1.0))


def channel_radius(z: ArrayLike, depth: ArrayLike, surface_radius: ArrayLike) -> FloatArray:
    """Radius [m] of the conical channel at depth ``z`` [m]: a·(1 − z/d) for 0 ≤ z ≤ d, else 0."""
    z_, d, a = np.broadcast_arrays(_f(z), _f(depth), _f(surface_radius))
    inside = (z_ >= 0.0) & (z_ <= d) & (d > 0.0)
    frac = np.divide(z_, d, out=np.ones_like(z_), where=d > 0.0)
    return np.asarray(np.where(inside, a * (1.0 - frac), 0.0))


def layer_boundaries(layers: ArrayLike) -> FloatArray:
    """Depths [m] of the layer boundaries, (..., 5): 0, SC/VE, VE/papillary, papillary/reticular,
    bottom of the dermis, from thicknesses (..., 4) ordered as ``SKIN_LAYERS``."""
    t = _f(layers)
    zero = np.zeros((*t.shape[:-1], 1))
    return np.concatenate([zero, np.cumsum(t, axis=-1)], axis=-1)


def layer_reach(depth: ArrayLike, layers: ArrayLike) -> FloatArray:
    """Depth [m] a channel of depth ``depth`` (B,) reaches into each layer, (B, 4).

    Entry ℓ is clip(d − top_ℓ, 0, thickness_ℓ); a layer is hit when its entry is positive.
    """
    t = _f(layers)
    tops = layer_boundaries(t)[..., :-1]
    return np.asarray(np.clip(_f(depth)[..., None] - tops, 0.0, t))


def reaches_capillaries(depth: ArrayLike, layers: ArrayLike, loop_fraction: ArrayLike) -> BoolArray:
    """True where the channel passes the papillary capillary loops (pinpoint bleeding).

    The loops are taken at ``loop_fraction`` (0..1, ``needles.capillary_loop_fraction``) of the
    papillary thickness below the dermal-epidermal junction.
    """
    return np.asarray(_f(depth) > capillary_loop_depth(layers, loop_fraction))


def capillary_loop_depth(layers: ArrayLike, loop_fraction: ArrayLike) -> FloatArray:
    """Depth [m] of the papillary capillary loops: ``loop_fraction`` of the papillary thickness
    below the dermal-epidermal junction (``layers`` (..., 4) as ``SKIN_LAYERS``)."""
    t = _f(layers)
    return np.asarray(t[..., 0] + t[..., 1] + np.clip(_f(loop_fraction), 0.0, 1.0) * t[..., 2])


def roller_cleft_width(
    z: ArrayLike, depth: ArrayLike, needle_length: ArrayLike, drum_radius: ArrayLike
) -> FloatArray:
    """Width [m] of the cleft a drum needle's line sweeps at depth ``z`` below the skin surface,
    in the plane of rolling, in rigid skin (module docstring): 2[(c + z) tan ψ_z − R ψ_z],
    c = R + L − d, ψ_z = arccos((c + z)/(R + L)); 0 outside 0 ≤ z < d or where R is NaN.

    All arguments broadcast; lengths in m.
    """
    # each step broadcasts its operands: the result has the shape of all four arguments
    zz, d, L, R = _f(z), _f(depth), _f(needle_length), _f(drum_radius)
    d = np.clip(d, 0.0, L)
    c = R + L - d
    inside = (zz >= 0.0) & (zz < d) & np.isfinite(R) & (R > 0.0)
    ratio = np.where(inside, (c + zz) / np.where(inside, R + L, 1.0), 1.0)
    psi = np.arccos(np.clip(ratio, -1.0, 1.0))
    w = 2.0 * ((c + zz) * np.tan(psi) - R * psi)
    return np.asarray(np.where(inside, np.maximum(w, 0.0), 0.0))


# Gauss-Legendre nodes and weights on [0, 1] for the cleft area (w vanishes as (d - z)^(3/2) at
# the tip; 32 nodes integrate it to < 1e-5 relative, tests/physics/test_needles.py)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(32)
_GL_X = 0.5 * (_GL_X + 1.0)
_GL_W = 0.5 * _GL_W


def roller_cleft_area(
    z_top: ArrayLike, depth: ArrayLike, needle_length: ArrayLike, drum_radius: ArrayLike
) -> FloatArray:
    """Area [m²] of the cleft (:func:`roller_cleft_width`) between depth ``z_top`` and the tip
    ``depth``: ∫ w(z) dz over [max(z_top, 0), d]; 0 where z_top ≥ d or the device has no drum.

    Broadcasts its arguments; lengths in m.
    """
    zt, d, L, R = _f(z_top), _f(depth), _f(needle_length), _f(drum_radius)
    d = np.clip(d, 0.0, L)
    lo = np.clip(zt, 0.0, None)
    span = np.maximum(d - lo, 0.0)
    z = lo[..., None] + span[..., None] * _GL_X
    w = roller_cleft_width(z, d[..., None], L[..., None], R[..., None])
    return np.asarray(span * np.sum(w * _GL_W, axis=-1))


# ------------------------------------------------------------------------------- skin layers
@dataclass(frozen=True)
class SkinLayers:
    """Layer thicknesses [m] per case, each shape (B,) (or 0-d)."""

    stratum_corneum_m: FloatArray
    viable_epidermis_m: FloatArray
    papillary_dermis_m: FloatArray
    reticular_dermis_m: FloatArray

    @classmethod
    def from_stack(cls, layers: ArrayLike) -> SkinLayers:
        """From thicknesses (..., 4) ordered as ``SKIN_LAYERS``."""
        t = _f(layers)
        return cls(t[..., 0], t[..., 1], t[..., 2], t[..., 3])

    def stack(self) -> FloatArray:
        """Thicknesses (B, 4), ordered as ``SKIN_LAYERS`` (a new array)."""
        parts = (
            _f(self.stratum_corneum_m),
            _f(self.viable_epidermis_m),
            _f(self.papillary_dermis_m),
            _f(self.reticular_dermis_m),
        )
        shape = parts[0].shape
        if any(p.shape != shape for p in parts):
            shape = np.broadcast_shapes(*(p.shape for p in parts))
        out = np.empty((*shape, 4))
        for i, p in enumerate(parts):
            out[..., i] = p
        return out

    @property
    def epidermis_m(self) -> FloatArray:
        """Stratum corneum + viable epidermis [m] (the model's ``epidermis`` layer)."""
        return np.asarray(_f(self.stratum_corneum_m) + _f(self.viable_epidermis_m))

    @property
    def dermis_thickness_m(self) -> FloatArray:
        """Papillary + reticular dermis [m]."""
        return np.asarray(_f(self.papillary_dermis_m) + _f(self.reticular_dermis_m))

    @property
    def papillary_thickness_m(self) -> FloatArray:
        """Papillary dermis [m] (alias of ``papillary_dermis_m``)."""
        return _f(self.papillary_dermis_m)

    @property
    def viable_m(self) -> FloatArray:
        """Viable skin below the stratum corneum [m] (epidermis + dermis)."""
        return np.asarray(_f(self.viable_epidermis_m) + self.dermis_thickness_m)

    @property
    def total_m(self) -> FloatArray:
        """Full skin thickness above the subcutis [m]."""
        return np.asarray(self.epidermis_m + self.dermis_thickness_m)

    def repeat(self, k: int) -> SkinLayers:
        """Each case repeated ``k`` times along the batch axis (case-major, like ``np.repeat``)."""
        return SkinLayers.from_stack(np.repeat(np.atleast_2d(self.stack()), k, axis=0))

    def select(self, i: int) -> SkinLayers:
        """Case ``i`` as a batch of one."""
        return SkinLayers.from_stack(np.atleast_2d(self.stack())[i : i + 1])

    def __len__(self) -> int:
        return int(np.atleast_2d(self.stack()).shape[0])


@dataclass(frozen=True)
class SkinParameters:
    """Skin tables from ``skin.toml`` in SI, per site in the order of ``SITES``.

    Thicknesses in m; thinning rates as fractions per decade; reference age in years.
    """

    sc_m: tuple[float, ...]
    viable_epidermis_female_m: tuple[float, ...]
    dermis_female_m: tuple[float, ...]
    dermis_male_m: tuple[float, ...]
    epidermis_male_factor: float
    papillary_fraction: float
    reference_age_yr: float
    epidermal_thinning_male: float
    epidermal_thinning_female: float
    dermal_thinning: float

    @classmethod
    def from_parameters(cls, ps: ParameterSet) -> SkinParameters:
        """Read ``skin.*`` from a ParameterSet (values converted to SI)."""

        def per_site(name: str) -> tuple[float, ...]:
            table = ps.table(f"skin.{name}", "m")
            missing = [s for s in SITES if s not in table]
            if missing:
                raise KeyError(f"skin.{name}: no entry for site(s) {missing}")
            # a number per site; an array per site when several sets are read side by side
            return tuple(
                t if isinstance(t, np.ndarray) else float(t) for t in (table[s] for s in SITES)
            )

        return cls(
            sc_m=per_site("sc_thickness"),
            viable_epidermis_female_m=per_site("viable_epidermis_thickness"),
            dermis_female_m=per_site("dermis_thickness_female"),
            dermis_male_m=per_site("dermis_thickness_male"),
            epidermis_male_factor=ps.value("skin.epidermis_male_factor", "1"),
            papillary_fraction=ps.value("skin.papillary_fraction", "1"),
            reference_age_yr=ps.value("skin.reference_age", "yr"),
            epidermal_thinning_male=ps.value("skin.epidermal_thinning_male", "1"),
            epidermal_thinning_female=ps.value("skin.epidermal_thinning_female", "1"),
            dermal_thinning=ps.value("skin.dermal_thinning", "1"),
        )


def site_index(sites: str | Sequence[str]) -> NDArray[np.int64]:
    """Index of each site name in ``SITES``; ``ValueError`` naming the allowed sites otherwise."""
    names = [sites] if isinstance(sites, str) else list(sites)
    bad = [s for s in names if s not in SITES]
    if bad:
        raise ValueError(f"site {bad[0]!r}; allowed: {', '.join(SITES)}")
    return np.array([SITES.index(s) for s in names], dtype=np.int64)


def _male_fraction(sex: str | float | Sequence[str | float] | ArrayLike) -> FloatArray:
    def one(s: Any) -> float:
        if isinstance(s, str):
            if s not in SEX_MALE_FRACTION:
                raise ValueError(f"sex {s!r}; allowed: female, male (or a number 0..1)")
            return SEX_MALE_FRACTION[s]
        return float(s)

    if isinstance(sex, str | float | int):
        return np.asarray(one(sex))
    return np.array([one(s) for s in np.asarray(sex, dtype=object).ravel()])


def _by_site(table: Sequence[Any], idx: NDArray[np.int64]) -> FloatArray:
    """Entry ``idx[b]`` of a per-site table for each case b: the table holds a number per site,
    or (parameter sets side by side) an array over the cases per site."""
    t = np.asarray(table, dtype=float)
    return t[idx] if t.ndim == 1 else t[idx, np.arange(idx.size)]


def _clip(x: Any, lo: float, hi: float) -> Any:
    """``x`` kept inside [lo, hi]: a number as a number, an array (one value per case) as one."""
    return np.clip(x, lo, hi) if isinstance(x, np.ndarray) else min(max(x, lo), hi)


def skin_layers_from_parameters(
    site_idx: ArrayLike, age_years: ArrayLike, male: ArrayLike, params: SkinParameters
) -> SkinLayers:
    """Layer thicknesses [m] for sites (indices into ``SITES``), ages [yr] and sex weights, batched.

    ``male`` is 0 for the female tables, 1 for the male ones (values between interpolate).
    Model: the viable epidermis is the female table value times
    1 + male·(``epidermis_male_factor`` − 1); the dermis interpolates the female and male tables and
    is split into papillary (``papillary_fraction``) and reticular parts; above the reference age
    the viable epidermis shrinks by the factor (1 − r_e)^(Δage/10) (r_e = 7.2 %/decade men, 5.7 %
    women, Branchet 1990) and both dermal layers by (1 − 0.06)^(Δage/10); the stratum corneum does
    not change with age or sex.
    """
    idx = np.asarray(site_idx, dtype=np.int64)
    age = _f(age_years)
    m = np.clip(_f(male), 0.0, 1.0)
    p = params
    sc = _by_site(p.sc_m, idx)
    ve = _by_site(p.viable_epidermis_female_m, idx) * (1.0 + m * (p.epidermis_male_factor - 1.0))
    dermis_f = _by_site(p.dermis_female_m, idx)
    dermis = dermis_f + m * (_by_site(p.dermis_male_m, idx) - dermis_f)
    decades = np.maximum(age - p.reference_age_yr, 0.0) / 10.0
    r_e = p.epidermal_thinning_female + m * (
        p.epidermal_thinning_male - p.epidermal_thinning_female
    )
    r_e = np.clip(r_e, 0.0, 0.99)
    r_d = _clip(p.dermal_thinning, 0.0, 0.99)
    ve = ve * (1.0 - r_e) ** decades
    dermis = dermis * (1.0 - r_d) ** decades
    frac = _clip(p.papillary_fraction, 0.0, 1.0)
    b = np.broadcast_arrays(sc, ve, dermis)
    return SkinLayers(
        stratum_corneum_m=np.asarray(b[0], dtype=float),
        viable_epidermis_m=np.asarray(b[1], dtype=float),
        papillary_dermis_m=np.asarray(frac * b[2], dtype=float),
        reticular_dermis_m=np.asarray((1.0 - frac) * b[2], dtype=float),
    )


def skin_layers_batch(
    sites: Sequence[str],
    age_years: float | ArrayLike,
    sex: str | float | Sequence[str | float],
    ps: ParameterSet | SkinParameters,
) -> SkinLayers:
    """Layer thicknesses [m] for a batch of sites (names), age(s) [yr] and sex(es).

    ``age_years`` and ``sex`` ("female", "male" or a male weight 0..1) may be scalars (shared by
    all cases) or sequences of the length of ``sites``. ``ps``: the parameter set, or its skin
    tables already read (``SkinParameters.from_parameters(ps)``). Returns ``SkinLayers`` of shape
    (B,).
    """
    idx = site_index(sites)
    params = ps if isinstance(ps, SkinParameters) else SkinParameters.from_parameters(ps)
    age = np.broadcast_to(_f(age_years), idx.shape)
    male = np.broadcast_to(_male_fraction(sex), idx.shape)
    return skin_layers_from_parameters(idx, age, male, params)


def skin_layers(site: str, age_years: float, sex: str | float, ps: ParameterSet) -> SkinLayers:
    """Layer thicknesses [m] of one site, age [yr] and sex, as a batch of one."""
    return skin_layers_batch([site], age_years, sex, ps)


# ----------------------------------------------------------------------- glue-level helpers
@dataclass(frozen=True)
class NeedleParameters:
    """Insertion, channel and injury-zone parameters from ``needles.toml``, in SI (m, m/s, N, N/m).

    ``insertion_factor`` maps species to η (``SPECIES``).
    """

    channel_radius_ratio: float
    capillary_loop_fraction: float
    damage_zone_factor: float
    roller_sweep_fraction: float = 0.3
    puncture_deflection: float = 160e-6
    tip_radius_ref: float = 4e-6
    tip_exponent: float = 0.5
    critical_speed: float = 0.15
    insertion_factor: Mapping[str, float] = field(default_factory=lambda: {"human": 1.0})
    roller_speed: float = 0.05
    stamp_speed: float = 0.01
    pen_stroke_offset: float = 0.5e-3
    hand_force: float = 5.0
    roller_contact_fraction: float = 0.1875
    puncture_force: float = 0.03
    shaft_resistance: float = 100.0
    cone_length: float = 150e-6
    smoothness: float = 4.0

    @classmethod
    def from_parameters(cls, ps: ParameterSet) -> NeedleParameters:
        """Read ``needles.*`` from a ParameterSet (converted to SI)."""
        v = ps.value
        return cls(
            channel_radius_ratio=v("needles.channel_radius_ratio", "1"),
            capillary_loop_fraction=v("needles.capillary_loop_fraction", "1"),
            damage_zone_factor=v("needles.damage_zone_factor", "1"),
            roller_sweep_fraction=v("needles.roller_sweep_fraction", "1"),
            puncture_deflection=v("needles.puncture_deflection", "m"),
            tip_radius_ref=v("needles.tip_radius_ref", "m"),
            tip_exponent=v("needles.tip_exponent", "1"),
            critical_speed=v("needles.critical_speed", "m/s"),
            insertion_factor=dict(ps.table("needles.insertion_factor", "1")),
            roller_speed=v("needles.roller_speed", "m/s"),
            stamp_speed=v("needles.stamp_speed", "m/s"),
            pen_stroke_offset=v("needles.pen_stroke_offset", "m"),
            hand_force=v("needles.hand_force", "kg*m/s^2"),
            roller_contact_fraction=v("needles.roller_contact_fraction", "1"),
            puncture_force=v("needles.puncture_force", "kg*m/s^2"),
            shaft_resistance=v("needles.shaft_resistance", "kg/s^2"),
            cone_length=v("needles.cone_length", "m"),
            smoothness=v("needles.depth_smoothness", "1"),
        )

    def insertion_factor_of(self, species: str) -> float | FloatArray:
        """η of ``species``; ``ValueError`` naming the species the parameters know otherwise."""
        if species not in self.insertion_factor:
            raise ValueError(
                f"species {species!r}; allowed: {', '.join(sorted(self.insertion_factor))}"
            )
        eta = self.insertion_factor[species]
        return eta if isinstance(eta, np.ndarray) else float(eta)  # per row: several sets


@dataclass(frozen=True)
class DeviceGeometry:
    """One device in SI; fields a kind does not use are NaN.

    ``kind`` is ``ROLLER``, ``PEN`` or ``STAMP``; ``needles`` counts the needles on the drum,
    cartridge or plate.
    """

    kind: int
    needles: float
    needle_diameter_m: float
    drum_diameter_m: float = math.nan
    drum_width_m: float = math.nan
    stroke_frequency_hz: float = math.nan
    cartridge_width_m: float = math.nan
    stamp_area_m2: float = math.nan
    tip_radius_m: float = 4e-6

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> DeviceGeometry:
        """From plain input-schema fields (e.g. ``course.device.model_dump()``).

        Reads ``type`` ("roller" | "pen" | "stamp"), ``needle_count``, ``needle_diameter_mm`` and,
        by kind, ``drum_diameter_mm``/``drum_width_mm``, ``frequency_hz``/``cartridge_width_mm`` or
        ``stamp_area_cm2``, and ``tip_radius_um`` (default 4 µm); other keys are ignored.
        """
        kind = int(device_code(str(fields.get("type", fields.get("kind", "")))))

        def get(key: str, factor: float) -> float:
            v = fields.get(key)
            return math.nan if v is None else float(v) * factor

        return cls(
            kind=kind,
            needles=float(fields["needle_count"]),
            needle_diameter_m=get("needle_diameter_mm", 1e-3),
            drum_diameter_m=get("drum_diameter_mm", 1e-3),
            drum_width_m=get("drum_width_mm", 1e-3),
            stroke_frequency_hz=get("frequency_hz", 1.0),
            cartridge_width_m=get("cartridge_width_mm", 1e-3),
            stamp_area_m2=get("stamp_area_cm2", 1e-4),
            tip_radius_m=4e-6
            if fields.get("tip_radius_um") is None
            else get("tip_radius_um", 1e-6),
        )

    @classmethod
    def mf8(cls, ps: ParameterSet) -> DeviceGeometry:
        """The Dermaroller MF8 (192 needles, 0.25 mm, drum 2 cm × 2 cm; Schwarz & Laaff 2011; tip
        radius 4 µm, Kalluri 2011's SEM of a Dermaroller needle)."""
        return cls(
            kind=ROLLER,
            needles=ps.value("needles.mf8_needles", "1"),
            needle_diameter_m=ps.value("needles.mf8_needle_diameter", "m"),
            drum_diameter_m=ps.value("needles.mf8_drum_diameter", "m"),
            drum_width_m=ps.value("needles.mf8_drum_width", "m"),
            tip_radius_m=ps.value("needles.tip_radius_ref", "m"),
        )


@dataclass(frozen=True)
class Channels:
    """The puncture field of each case (arrays (B,) unless noted), SI units.

    ``reach_m`` (B, 4) is the depth reached into each of ``SKIN_LAYERS``; ``cleft_volume_m3`` is
    the dermal tissue a roller's needle cuts beside its own path below the capillary loops, per
    puncture (κ × needle diameter × :func:`roller_cleft_area`; 0 for pens and stamps).
    """

    density_m2: FloatArray
    depth_m: FloatArray
    surface_radius_m: FloatArray
    reach_m: FloatArray
    reaches_capillaries: BoolArray
    reaches_subcutis: BoolArray
    cleft_volume_m3: FloatArray

    @property
    def area_fraction(self) -> FloatArray:
        """Fraction of the surface opened by channels, ε = n·π·a² (capped at 1)."""
        return np.asarray(np.minimum(self.density_m2 * np.pi * self.surface_radius_m**2, 1.0))

    @property
    def hits(self) -> BoolArray:
        """(B, 4): True where the channel enters the layer."""
        return np.asarray(self.reach_m > 0.0)

    def select(self, i: int) -> Channels:
        """Case ``i`` as a batch of one."""
        s = slice(i, i + 1)
        return Channels(
            density_m2=np.atleast_1d(self.density_m2)[s],
            depth_m=np.atleast_1d(self.depth_m)[s],
            surface_radius_m=np.atleast_1d(self.surface_radius_m)[s],
            reach_m=np.atleast_2d(self.reach_m)[s],
            reaches_capillaries=np.atleast_1d(self.reaches_capillaries)[s],
            reaches_subcutis=np.atleast_1d(self.reaches_subcutis)[s],
            cleft_volume_m3=np.atleast_1d(self.cleft_volume_m3)[s],
        )

    def __len__(self) -> int:
        return int(np.atleast_1d(self.depth_m).shape[0])


def channels(
    geometry: DeviceGeometry,
    needle_length_m: ArrayLike,
    passes: ArrayLike,
    pen_speed_m_s: ArrayLike,
    skin: SkinLayers,
    params: NeedleParameters,
    *,
    species: str = "human",
) -> Channels:
    """Puncture density, depth, surface radius and layers reached for a batch of sessions.

    ``needle_length_m``, ``passes`` and ``pen_speed_m_s`` (hand speed; NaN unless a pen) are (B,);
    ``skin`` is a batch of B. The depth is ``insertion_depth`` of the device (its kind, tip radius,
    stroke frequency and needle count) in the skin of ``species``; a channel that would go deeper
    than the skin is capped at its full thickness and flagged ``reaches_subcutis``. The surface
    radius follows the needle's cone (``channel_surface_radius`` with the depth). A roller's
    punctures also carry the cleft volume its needles sweep below the capillary loops (module
    docstring, "Roller clefts").
    """
    g = geometry
    length = _f(needle_length_m)
    kind = np.full(length.shape, g.kind)
    n = puncture_density(
        kind,
        passes,
        g.needles,
        drum_diameter=g.drum_diameter_m,
        drum_width=g.drum_width_m,
        stroke_frequency=g.stroke_frequency_hz,
        hand_speed=pen_speed_m_s,
        cartridge_width=g.cartridge_width_m,
        stamp_area=g.stamp_area_m2,
    )
    layers = skin.stack()
    total = skin.total_m
    free = insertion_depth(
        kind,
        length,
        np.inf,
        tip_radius=g.tip_radius_m,
        stroke_frequency=g.stroke_frequency_hz,
        needles=g.needles,
        params=params,
        species=species,
    )
    depth = np.asarray(np.minimum(free, total))
    a = channel_surface_radius(
        g.needle_diameter_m, params.channel_radius_ratio, depth, params.cone_length
    )
    if a.shape != depth.shape:
        a = np.broadcast_to(a, depth.shape).astype(float)
    if g.kind == ROLLER:
        loops = capillary_loop_depth(layers, params.capillary_loop_fraction)
        area = roller_cleft_area(loops, depth, length, 0.5 * g.drum_diameter_m)
        cleft = params.roller_sweep_fraction * g.needle_diameter_m * area
    else:
        cleft = np.zeros(depth.shape)
    return Channels(
        density_m2=n,
        depth_m=depth,
        surface_radius_m=a,
        reach_m=layer_reach(depth, layers),
        reaches_capillaries=reaches_capillaries(depth, layers, params.capillary_loop_fraction),
        reaches_subcutis=np.asarray(free >= total),
        cleft_volume_m3=np.asarray(cleft, dtype=float),
    )

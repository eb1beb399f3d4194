"""Injury: the puncture field × skin layers → injured volume fraction per layer.

Each channel is a cone of surface radius a and depth d (``needles``); the tissue injured around it is
the same cone widened by the damage-zone factor w (``needles.damage_zone_factor``, an estimate: the
measured channel is the open lumen, the compressed/torn zone around it was not measured), i.e.
radius w·a·(1 − z/d) at depth z. With n channels per area the injured volume fraction of layer ℓ
(between depths z_top and z_bot, thickness T) is, without overlap,

    raw_ℓ = n · V_ℓ / T,   V_ℓ = ∫_{z_top}^{z_bot} π (w a)² (1 − z/d)² dz
                                 = π (w a)² d/3 · [s_top³ − s_bot³],   s = 1 − clip(z, 0, d)/d.

Saturation. Channels of a roller or pen land at effectively random places and overlap, so raw can
exceed 1 for dense, wide damage zones. Treating the channel positions as a Poisson field, the
fraction of a horizontal slice at depth z that lies inside at least one damage zone is
1 − exp(−n π r(z)²) (the covered fraction of a Boolean model), and the layer fraction is its
average over the layer:

    φ_ℓ = (1/T) ∫ [1 − exp(−α (1 − z/d)²)] dz,   α = n π (w a)²,
        = (d/T) [F(s_top) − F(s_bot)],   F(s) = s − √π erf(√α s) / (2 √α).

This is a smooth saturation in [0, 1]; to first order in α it equals raw (cone volume), and for a
cylinder it is exactly 1 − exp(−raw). It is monotone non-decreasing in depth, density (passes) and
radius, and zero when the density or the depth is zero.

Public API
----------
``cone_volume_between(surface_radius, depth, z_top, z_bottom) -> V [m³]``;
``injured_fraction(n, surface_radius, depth, layers, damage_zone_factor=1.0, *, saturate=True)
-> (B, 3)`` for layers ``vocabulary.LAYERS`` (epidermis = SC + viable epidermis, papillary,
reticular dermis); ``injured_fraction_from_channels(channels, skin, params) -> (B, 3)``;
``cleft_fraction(n, cleft_volume, dermis_thickness) -> (B,)``.

Roller clefts. A drum needle also cuts a cleft beside its path in the dermis (``needles``, "Roller
clefts"): volume V_c per puncture below the capillary loops. Placed at random like the channels, the
clefts cut a fraction 1 − exp(−n V_c / T_d) of the dermis (thickness T_d): the vessel-cutting injury
whose blood stays in the tissue (``physics.redness``, the bruise term). Pens and stamps have V_c = 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erf

from microneedling.physics.needles import Channels, NeedleParameters, SkinLayers

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.parameters.parameter_set import ParameterSet

FloatArray = NDArray[np.float64]

# series of g(x) = 1 − √π erf(x)/(2x) = Σ_{k≥1} (−1)^{k+1} x^{2k} / (k! (2k+1)), used for x < 0.3
_G_SERIES = (
    1.0 / 3.0,
    -1.0 / 10.0,
    1.0 / 42.0,
    -1.0 / 216.0,
    1.0 / 1320.0,
    -1.0 / 9360.0,
    1.0 / 75600.0,
    -1.0 / 685440.0,
)


def _f(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=float)


def _broadcast(*arrays: FloatArray) -> tuple[FloatArray, ...]:
    """``np.broadcast_arrays`` of ``arrays``, or the arrays themselves when their shapes agree."""
    shape = arrays[0].shape
    if all(a.shape == shape for a in arrays):
        return arrays
    return tuple(np.broadcast_arrays(*arrays))


def _g(x: FloatArray) -> FloatArray:
    """g(x) = 1 − √π·erf(x)/(2x) for x ≥ 0 (g(0) = 0), accurate to ~1e-15 relative."""
    # in place (the same operations in the same order, without a new array for each step:
    # the footprint of a cohort's scar floors evaluates this on ~10^5 points)
    x2 = x * x
    series = np.zeros_like(x)
    for c in reversed(_G_SERIES):
        series *= x2
        series += c
    series *= x2
    safe = np.where(x > 0.0, x, 1.0)
    direct = erf(safe)
    direct *= np.sqrt(np.pi)
    safe *= 2.0
    direct /= safe
    np.subtract(1.0, direct, out=direct)
    np.copyto(direct, series, where=x < 0.3)  # np.where(x < 0.3, series, direct)
    return direct


def _layer_bounds(layers: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(tops, bottoms), each (B, 3), of the model layers from thicknesses (B, 4)."""
    t = _f(layers)
    epi = t[..., 0] + t[..., 1]
    pap_bottom = epi + t[..., 2]
    tops, bots = np.empty((*epi.shape, 3)), np.empty((*epi.shape, 3))
    tops[..., 0] = 0.0
    tops[..., 1] = bots[..., 0] = epi
    tops[..., 2] = bots[..., 1] = pap_bottom
    bots[..., 2] = pap_bottom + t[..., 3]
    return tops, bots


def _s(z: FloatArray, d: FloatArray) -> FloatArray:
    """s = 1 − clip(z, 0, d)/d (0 where d = 0)."""
    # in place: clip(z, 0, d)/d where d > 0, else 1, then 1 − that
    frac = np.asarray(np.clip(z, 0.0, d))  # an array also for numbers
    positive = d > 0.0
    np.divide(frac, d, out=frac, where=positive)
    np.copyto(frac, 1.0, where=~positive)
    np.subtract(1.0, frac, out=frac)
    return frac


def cone_volume_between(
    surface_radius: ArrayLike, depth: ArrayLike, z_top: ArrayLike, z_bottom: ArrayLike
) -> FloatArray:
    """Volume [m³] of the cone r(z) = a·(1 − z/d), 0 ≤ z ≤ d, between depths z_top ≤ z_bottom [m].

    Exact: π a² d/3 · [s_top³ − s_bot³] with s = 1 − clip(z, 0, d)/d.
    """
    a, d, zt, zb = np.broadcast_arrays(_f(surface_radius), _f(depth), _f(z_top), _f(z_bottom))
    st, sb = _s(zt, d), _s(zb, d)
    return np.asarray(np.pi * a**2 * d / 3.0 * (st**3 - sb**3))


def injured_fraction(
    n: ArrayLike,
    surface_radius: ArrayLike,
    depth: ArrayLike,
    layers: ArrayLike,
    damage_zone_factor: ArrayLike = 1.0,
    *,
    saturate: bool = True,
) -> FloatArray:
    """Injured volume fraction of each model layer, (B, 3), in [0, 1].

    Parameters
    ----------
    n:
        Puncture density [1/m²], (B,).
    surface_radius:
        Channel radius at the surface a [m], (B,).
    depth:
        Channel depth d [m], (B,).
    layers:
        Thicknesses [m], (B, 4): stratum corneum, viable epidermis, papillary, reticular dermis.
    damage_zone_factor:
        Injured radius / channel radius w ≥ 1 (estimate; ``needles.damage_zone_factor``).
    saturate:
        True (default): Poisson-overlap coverage φ (see the module docstring). False: the raw
        non-overlapping volume fraction n·V_ℓ/T (may exceed 1; exact cone-volume integral).

    Layers of zero thickness get 0.
    """
    n_, a, d = _broadcast(_f(n), _f(surface_radius), _f(depth))
    w = np.maximum(_f(damage_zone_factor), 0.0)
    tops, bots = _layer_bounds(layers)
    thick = bots - tops
    dd = np.maximum(d, 0.0)[..., None]
    st, sb = _s(tops, dd), _s(bots, dd)
    alpha = (np.maximum(n_, 0.0) * np.pi * (w * a) ** 2)[..., None]
    if saturate:
        # dd * (st * g(ra * st) - sb * g(ra * sb)), in place (products taken in either order
        # are the same numbers)
        ra = np.sqrt(alpha)
        covered = _g(ra * st)
        covered *= st
        bottom = _g(ra * sb)
        bottom *= sb
        covered -= bottom
        covered *= dd
    else:
        covered = alpha * dd / 3.0 * (st**3 - sb**3)
    out = np.zeros_like(covered)
    np.divide(covered, thick, out=out, where=thick > 0.0)
    np.maximum(out, 0.0, out=out)
    if saturate:
        np.minimum(out, 1.0, out=out)
    return out


def injured_fraction_from_channels(
    channels: Channels, skin: SkinLayers | ArrayLike, params: ParameterSet | NeedleParameters
) -> FloatArray:
    """Injured volume fraction (B, 3) of the puncture field ``channels`` in ``skin``: its
    :class:`SkinLayers`, or their thicknesses (B, 4) as ``SkinLayers.stack`` gives them.

    ``params`` is a ParameterSet (``needles.damage_zone_factor`` is read) or NeedleParameters.
    """
    npar = (
        params if isinstance(params, NeedleParameters) else NeedleParameters.from_parameters(params)
    )
    return injured_fraction(
        channels.density_m2,
        channels.surface_radius_m,
        channels.depth_m,
        skin.stack() if isinstance(skin, SkinLayers) else skin,
        npar.damage_zone_factor,
    )


def cleft_fraction(
    n: ArrayLike, cleft_volume: ArrayLike, dermis_thickness: ArrayLike
) -> FloatArray:
    """Fraction of the dermis cut by roller clefts, 1 − exp(−n·V_c/T_d), in [0, 1).

    ``n`` punctures per m², ``cleft_volume`` V_c [m³] per puncture (``Channels.cleft_volume_m3``),
    ``dermis_thickness`` T_d [m] (papillary + reticular); all broadcast. 0 where V_c or n is 0 or
    the dermis has no thickness.
    """
    n_, v, t = np.broadcast_arrays(_f(n), _f(cleft_volume), _f(dermis_thickness))
    raw = np.divide(
        np.maximum(n_, 0.0) * np.maximum(v, 0.0), t, out=np.zeros(t.shape), where=t > 0.0
    )
    return np.asarray(-np.expm1(-raw))

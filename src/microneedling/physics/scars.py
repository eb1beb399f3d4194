"""Depressed skin features from their geometry: atrophic acne scars, static wrinkle grooves, striae.

A feature is a depression of the skin surface described by measurable descriptors, not by a
response coefficient per type:

``width`` w, ``depth`` h
    surface width and depth of the depression (m);
``profile``
    the shape of its floor, z(r) = h·p(2r/w): ``v_shaped`` p = 1 − x (an icepick tract, a wrinkle
    groove), ``box`` p = 1 (boxcar: vertical walls, flat floor), ``rounded`` p = cos²(πx/2)
    (rolling scar, striae trough);
``tethered`` τ, ``epithelial`` ε
    shares of the depth held down by fibrous bands to the subcutis (released when needles cut
    them or MMPs remodel them) and lined by epithelium (a tract no dermal matrix can fill);
``distensible`` f_s
    the share of the depression flattened when the skin is stretched during needling.

**Needle access.** A device riding on the surrounding skin loses the part of its needle length that
crosses the depression's air gap: under the point at radius r the needle meets tissue over
L − (1 − f_s)·z(r), so the channel there is the flat-skin channel shortened in proportion,
d_loc = d·max(0, 1 − (1 − f_s)·z(r)/L), a similar cone (surface radius a·d_loc/d). The injured
fraction of the floor's layers is the package's injury model (:mod:`.injury`) at that local channel,
averaged over the footprint by area (:func:`footprint_injury`). A scar receives on average
λ = n·π(w/2)² punctures per session (n per area); the chance that it receives none in a course is
P₀ = exp(−Σλ) (:func:`untouched_probability`).

**Response.** The floor is simulated as its own case of the healing ODE, driven by the footprint
injury. Its structural collagen G (:func:`~.observe.structural_gain`) fills the fillable share of
the depression and its reticular tether state S releases the tethered share; the epithelial share
stays:

    depth(t) = h·[τ·S(t) + (1 − τ − ε)·(1 − Φ·G⁺/(G½ + G⁺)) + ε]            (:func:`depth`)

with one fill law (Φ = ``observe.depression_fill_max``, G½ = ``observe.depression_fill_half``) for
every type. Depth falls only through these *differential* effects: a uniform gain of the floor and
the surrounding skin lifts both and leaves the relative depth unchanged. Expected over scars, the
ones no needle touched keep their depth: E[depth] = P₀·h + (1 − P₀)·depth (the floor case is then
driven by the injury of the touched scars, mean/(1 − P₀)).

**Observation.** The expected Goodman & Baron qualitative grade (:func:`goodman_baron_grade`) and
the areal roughness that sparse depressions add to a surface (:func:`sparse_depression_sa`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from microneedling.physics import injury
from microneedling.vocabulary import DEPRESSION_PROFILES

FloatArray = NDArray[np.float64]

#: mean depth over the footprint area, as a share of the maximal depth h, of each profile (exact:
#: ∫₀¹ p(x)·2x dx = 1/3, 1, 1/2 − 2/π²)
MEAN_DEPTH_SHARE: dict[str, float] = {
    "v_shaped": 1.0 / 3.0,
    "box": 1.0,
    "rounded": 0.5 - 2.0 / np.pi**2,
}
assert tuple(MEAN_DEPTH_SHARE) == DEPRESSION_PROFILES

#: radial quadrature points (midpoints in area): exact for the box profile, < 1e-3 relative for the
#: others (measured against 4000 points in the tests)
N_RADIAL = 64


def _f(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=float)


def _code(profile: ArrayLike) -> NDArray[np.int_]:
    """Profile codes as integers (NaN or negative: no feature, −1)."""
    c = np.asarray(profile, dtype=float)
    return np.asarray(np.where(c >= 0, c, -1), dtype=int)  # NaN >= 0 is False


def profile_share(x: ArrayLike, profile: ArrayLike) -> FloatArray:
    """Depth z/h at relative radius x = 2r/w in [0, 1] of each profile code (index into
    :data:`~microneedling.vocabulary.DEPRESSION_PROFILES`)."""
    x = np.clip(_f(x), 0.0, 1.0)
    code = _code(profile)
    return np.asarray(
        np.where(
            code == 0,
            1.0 - x,
            np.where(code == 1, 1.0, np.cos(0.5 * np.pi * x) ** 2),
        )
    )


def mean_depth_share(profile: ArrayLike) -> FloatArray:
    """Mean depth over the footprint / maximal depth, per profile code (NaN for code −1)."""
    code = _code(profile)
    table = np.array(list(MEAN_DEPTH_SHARE.values()))
    return np.asarray(np.where(code >= 0, table[np.clip(code, 0, None)], np.nan))


def footprint_injury(
    n: ArrayLike,
    surface_radius: ArrayLike,
    channel_depth: ArrayLike,
    needle_length: ArrayLike,
    layers: ArrayLike,
    damage_zone_factor: ArrayLike,
    depth: ArrayLike,
    profile: ArrayLike,
    distensible: ArrayLike,
    *,
    n_radial: int = N_RADIAL,
) -> FloatArray:
    """Injured volume fraction (M, 3) of the skin under a depression's floor, footprint average.

    Parameters (SI, arrays broadcast to (M,), ``layers`` (M, 4) as in :mod:`.injury`)
    ----------
    n, surface_radius, channel_depth:
        Puncture density [1/m²], channel surface radius and depth [m] in flat skin.
    needle_length:
        Needle length [m] (the part of it lost to the air gap shortens the channel in proportion).
    damage_zone_factor:
        ``needles.damage_zone_factor``.
    depth, profile, distensible:
        The depression: maximal depth [m], profile code, distensible share (its width does not
        enter: the footprint average is over the relative radius 2r/w; width sets how many
        punctures land in it, :func:`punctures_per_session`).

    Midpoint quadrature in the area variable u = x² (uniform in area) with ``n_radial`` points.
    A depression of zero depth gives the flat-skin injury exactly.
    """
    args = (
        _f(n),
        _f(surface_radius),
        _f(channel_depth),
        _f(needle_length),
        _f(depth),
        _code(profile),
        _f(distensible),
    )
    shape = args[0].shape
    same = all(x.shape == shape for x in args)
    n_, a, d, L, h, prof, fs = args if same else np.broadcast_arrays(*args)
    M = n_.shape[0] if n_.ndim else 1
    lay = np.broadcast_to(_f(layers), (M, 4))
    wz = np.broadcast_to(_f(damage_zone_factor), (M,))
    rows = tuple(x.reshape(M, -1) for x in (n_, a, d, L, h, prof, fs, lay, wz))
    out = np.empty((M, 3))
    for i in range(0, M, FOOTPRINT_BLOCK):
        block = slice(i, min(i + FOOTPRINT_BLOCK, M))
        out[block] = _footprint_rows(tuple(x[block] for x in rows), n_radial)
    return out


FOOTPRINT_BLOCK = 128
"""Rows of :func:`footprint_injury` computed together (each row's numbers do not depend on the
others). Its temporaries are (rows × ``n_radial``) arrays: a trial chunk's 1,000 (scar, session)
rows at once took 19.2 ms, in blocks of 512, 256, 128, 64, 32 rows 16.0, 13.1, 10.6, 10.9,
11.9 ms (CPU, 2026-12-07; the smaller arrays stay in cache), the same numbers bit for bit."""


def _footprint_rows(rows: tuple[np.ndarray, ...], n_radial: int) -> FloatArray:
    """:func:`footprint_injury` of M rows: ``rows`` are its arguments n, surface radius, channel
    depth, needle length, depth, profile code, distensible share (each (M, 1)), layers (M, 4)
    and damage-zone factor (M, 1), in SI units; returns (M, 3)."""
    n_, a, d, L, h, prof, fs, lay, wz = rows
    M = n_.shape[0]
    # the depth share of each profile at the quadrature points, the row of each depression's
    # profile (code −1 takes the last, as profile_share does)
    shares = _radial_shares(n_radial)[np.where((prof == 0) | (prof == 1), prof, 2)]
    z = h * shares.reshape(M, n_radial)  # (M, R)
    gap = (1.0 - fs) * z
    keep = np.clip(np.divide(L - gap, L, out=np.zeros_like(gap), where=L > 0.0), 0.0, 1.0)
    d_loc = d * keep
    a_loc = a * keep
    phi = injury.injured_fraction(
        np.repeat(n_.reshape(M), n_radial),
        a_loc.reshape(-1),
        d_loc.reshape(-1),
        np.repeat(lay, n_radial, axis=0),
        np.repeat(wz.reshape(M), n_radial),
    ).reshape(M, n_radial, 3)
    return np.asarray(phi.mean(axis=1))


_RADIAL_SHARES: dict[int, FloatArray] = {}


def _radial_shares(n_radial: int) -> FloatArray:
    """:func:`profile_share` of profile codes 0, 1, 2 (rows) at the midpoints in area of
    ``n_radial`` rings, x = √((i + ½)/n), (3, n_radial); made once per ``n_radial``."""
    shares = _RADIAL_SHARES.get(n_radial)
    if shares is None:
        x = np.sqrt((np.arange(n_radial) + 0.5) / n_radial)
        shares = np.stack([profile_share(x, code) for code in range(3)])
        shares.setflags(write=False)
        _RADIAL_SHARES[n_radial] = shares
    return shares


def punctures_per_session(n: ArrayLike, width: ArrayLike) -> FloatArray:
    """Mean punctures landing in a depression's footprint per session, λ = n·π(w/2)²."""
    return np.asarray(_f(n) * np.pi * (0.5 * _f(width)) ** 2)


def untouched_probability(lam: ArrayLike, axis: int = -1) -> FloatArray:
    """Probability that a depression receives no puncture in any session, exp(−Σλ) (Poisson field
    of puncture positions, independent sessions); ``lam`` (..., K) with 0 for absent sessions."""
    return np.asarray(np.exp(-np.sum(np.nan_to_num(_f(lam)), axis=axis)))


def fill_fraction(gain: ArrayLike, fill_max: ArrayLike, fill_half: ArrayLike) -> FloatArray:
    """Share of the fillable deficit replaced by new matrix, Φ·G⁺/(G½ + G⁺) (0 for G ≤ 0)."""
    g = np.maximum(_f(gain), 0.0)
    return np.asarray(_f(fill_max) * g / (_f(fill_half) + g))


def depth(
    depth0: ArrayLike,
    tethered: ArrayLike,
    epithelial: ArrayLike,
    tether_left: ArrayLike,
    floor_gain: ArrayLike,
    fill_max: ArrayLike,
    fill_half: ArrayLike,
) -> FloatArray:
    """Depth of a treated depression: h·[τ·S + (1 − τ − ε)·(1 − fill(G)) + ε] (module docstring).

    ``depth0``, ``tethered``, ``epithelial`` broadcast against ``tether_left`` and ``floor_gain``
    (the floor's reticular S and structural collagen gain). Equal to ``depth0`` at S = 1, G = 0;
    non-increasing in G and non-decreasing in S.
    """
    tau, eps = _f(tethered), _f(epithelial)
    fill = fill_fraction(floor_gain, fill_max, fill_half)
    return np.asarray(_f(depth0) * (tau * _f(tether_left) + (1.0 - tau - eps) * (1.0 - fill) + eps))


def goodman_baron_grade(
    depth: ArrayLike,
    distensible: ArrayLike,
    h_mild: ArrayLike,
    h_obvious: ArrayLike,
    sigma: ArrayLike,
) -> FloatArray:
    """Expected Goodman & Baron qualitative grade (1 macular … 4 severe) of scars of depth ``depth``.

    E[grade] = 1 + P(≥ 2) + P(≥ 3) + P(≥ 4) with, over observers and lighting (log-normal
    visibility thresholds of log-SD ``sigma``):

    * grade ≥ 2 (mild: atrophy seen at close inspection): depth > ``h_mild``;
    * grade ≥ 3 (moderate: obvious at a social distance of 50 cm): depth > ``h_obvious``;
    * grade ≥ 4 (severe: not flattened by manual stretching): the part that stretching does not
      flatten, (1 − f_s)·depth, is still obvious (> ``h_obvious``).

    The thresholds are estimates (``observe.scar_grade_*``); the grade definitions are Goodman &
    Baron's. Monotone in depth; 1 for a flat surface.
    """
    h = np.maximum(_f(depth), 0.0)
    rigid = (1.0 - _f(distensible)) * h
    sg = _f(sigma)
    with np.errstate(divide="ignore"):
        z2 = np.log(h / _f(h_mild)) / sg
        z3 = np.log(h / _f(h_obvious)) / sg
        z4 = np.log(rigid / _f(h_obvious)) / sg
    return np.asarray(1.0 + ndtr(z2) + ndtr(z3) + ndtr(z4))


def grade_drop_probability(
    before: ArrayLike,
    after: ArrayLike,
    distensible: ArrayLike,
    h_mild: ArrayLike,
    h_obvious: ArrayLike,
    sigma: ArrayLike,
    steps: int | Sequence[int] = 1,
) -> FloatArray:
    """Probability that a scar's integer Goodman & Baron grade fell by at least ``steps`` grades
    when its depth went from ``before`` to ``after`` (mm).

    :func:`goodman_baron_grade` is the expectation over a visibility latent ``u ~ N(0, 1)``: the
    integer grade is ``1 + #{j : ln(h / c_j) + sigma u > 0}`` with ``c = (h_mild, h_obvious,
    h_obvious / (1 - f_s))``. The latent is kept between the two visits (the same assessor and
    lighting, the same scar), so threshold ``j`` is crossed for ``u`` in ``(a_j, b_j]``, ``a_j =
    -ln(before / c_j) / sigma``, ``b_j = -ln(after / c_j) / sigma``; the probability is the normal
    measure of the ``u`` where at least ``steps`` of the three intervals overlap. For ``steps = 1``
    and intervals that do not overlap it equals the fall of the expected grade (so a fall of 0.7
    expected grades is a 70% chance of a one-grade drop, not a fall below a 1.0 cut). 0 where the
    scar did not get shallower.

    ``steps`` may be a sequence: the result then has a leading axis, one entry per element (the
    crossing intervals are computed once for all of them). The thresholds and ``sigma`` may be
    arrays that broadcast against the depths (e.g. (B, 1): one parameter set per case).
    """
    ss: tuple[int, ...]
    if isinstance(steps, int | np.integer):
        many, ss = False, (int(steps),)
    else:
        many, ss = True, tuple(int(k) for k in steps)
    if not ss:
        raise ValueError("steps: an empty sequence; allowed: an integer or a non-empty sequence")
    h0 = np.maximum(_f(before), 0.0)
    h1 = np.maximum(_f(after), 0.0)
    h0, h1, fs = np.broadcast_arrays(h0, h1, _f(distensible))
    # the thresholds and sigma: numbers, or arrays over the depths' shape
    hm, ho, sg = (
        np.broadcast_to(v, h0.shape) if v.ndim else v for v in map(_f, (h_mild, h_obvious, sigma))
    )
    if min(ss) >= 1:
        # nothing is crossed downward (every interval (a_j, b_j] empty, so exactly 0) where the
        # scar did not get shallower, or was flat or unknown before (a_j = +inf), at sigma > 0:
        # the general computation only where it can give something
        need = ~((h1 >= h0) | np.isnan(h0) | (h0 == 0.0)) | ~(sg > 0.0)
        if need.all():  # every point (point by point, as on the subset below)
            out = _drop_probability(h0, h1, fs, hm, ho, sg, ss)
        else:
            out = np.zeros((len(ss), *h0.shape))
            if np.any(need):
                hm, ho, sg = (v[need] if v.ndim else v for v in (hm, ho, sg))
                out[:, need] = _drop_probability(h0[need], h1[need], fs[need], hm, ho, sg, ss)
    else:
        out = _drop_probability(h0, h1, fs, hm, ho, sg, ss)
    return np.asarray(out if many else out[0])


def _drop_probability(
    h0: FloatArray,
    h1: FloatArray,
    fs: FloatArray,
    h_mild: FloatArray,
    h_obvious: FloatArray,
    sigma: FloatArray,
    steps: tuple[int, ...],
) -> FloatArray:
    """``grade_drop_probability`` of depths h0 → h1 (≥ 0) at every point, with the thresholds
    and sigma numbers or of each point (h0's shape), for each of ``steps`` along a new first
    axis."""
    shape = h0.shape
    # the three thresholds c_j of every point (..., 3), then a_j and b_j side by side (..., 6)
    c = np.empty((*shape, 3))
    c[..., 0] = h_mild
    c[..., 1] = h_obvious
    ab = np.empty((*shape, 6))
    with np.errstate(divide="ignore", invalid="ignore"):
        c[..., 2] = np.where(fs < 1.0, h_obvious / np.maximum(1.0 - fs, 0.0), np.inf)
        sg = sigma[..., None]
        for part, h in ((ab[..., :3], h0), (ab[..., 3:], h1)):
            np.divide(h[..., None], c, out=part)
            np.log(part, out=part)
            np.negative(part, out=part)
            np.divide(part, sg, out=part)  # a: -inf for a flat scar before: never crossed
    ab[np.isnan(ab)] = np.inf
    a, b = ab[..., :3], ab[..., 3:]
    np.maximum(a, b, out=b)  # a scar that got deeper crosses nothing downward
    edges = np.sort(ab, axis=-1)  # (..., 6)
    lo, hi = edges[..., :-1], edges[..., 1:]
    finite = np.isfinite(edges)
    with np.errstate(invalid="ignore"):  # inf + (-inf) where a grade has no finite interval
        finite_mid = np.where(
            finite[..., :-1] & finite[..., 1:],
            0.5 * (lo + hi),
            np.where(finite[..., :-1], lo + 1.0, hi - 1.0),
        )
    # how many of the three intervals (a_j, b_j] hold each segment (by its midpoint)
    count = np.zeros(finite_mid.shape, dtype=np.uint8)
    for j in range(3):
        count += (a[..., j, None] < finite_mid) & (finite_mid <= b[..., j, None])
    cdf = ndtr(edges)
    # ndtr is monotone only to its rounding: across an interval of a few ulps (a depth that moved
    # by one ulp) the difference can be -6e-17, never a probability; it is 0 there
    mass = np.where(hi > lo, np.maximum(cdf[..., 1:] - cdf[..., :-1], 0.0), 0.0)
    out = np.empty((len(steps), *shape))
    for j, k in enumerate(steps):
        # the sum over the five segments in order, as np.sum adds an axis this short
        m = np.where(count >= k, mass, 0.0)
        out[j] = (((m[..., 0] + m[..., 1]) + m[..., 2]) + m[..., 3]) + m[..., 4]
    return out


def sparse_depression_sa(area_fraction: ArrayLike, mean_depth: ArrayLike) -> FloatArray:
    """Areal roughness Sa that sparse depressions add to a flat surface: 2·a·(1 − a)·z̄.

    Exact for flat-floored pits of depth z̄ covering the area fraction a (mean height −a·z̄, so
    mean |z − z̄_surface| = (1 − a)·a·z̄ + a·(1 − a)·z̄); for sloped floors z̄ is the footprint mean
    depth (an approximation). Units of ``mean_depth``.
    """
    a = np.clip(_f(area_fraction), 0.0, 1.0)
    return np.asarray(2.0 * a * (1.0 - a) * _f(mean_depth))


def _span(depth: FloatArray, h_vis: FloatArray) -> FloatArray:
    """Share of a rounded (cos²) trough's width deeper than ``h_vis``: (2/π)·arccos(√(h_vis/h));
    0 when the trough is not deeper than ``h_vis``."""
    r = np.divide(
        h_vis, depth, out=np.full(np.broadcast(h_vis, depth).shape, np.inf), where=depth > 0.0
    )
    return np.asarray((2.0 / np.pi) * np.arccos(np.sqrt(np.clip(r, 0.0, 1.0))))


#: midpoints in the visibility threshold's normal score from -7 up to the baseline depth's (at
#: most +7), for :func:`visible_width` (within 3e-3 of the width of a Monte Carlo in the tests)
N_THRESHOLD = 96
_Z_LOW, _Z_HIGH = -7.0, 7.0


def visible_width(
    width0: ArrayLike,
    depth0: ArrayLike,
    depth_now: ArrayLike,
    h_vis: ArrayLike,
    sigma: ArrayLike = 0.0,
) -> FloatArray:
    """Visible width of a rounded (cos²) trough as its depth falls: the band deeper than the
    visibility threshold, expected over observers and lighting.

    For z(x) = h·cos²(πx/2) across the band, the part deeper than a threshold v spans
    s(h, v) = (2/π)·arccos(√(v/h)) of the width. An observer whose threshold is v sees the
    relative width s(h, v)/s(h₀, v) of the one seen at the baseline depth h₀, so the width is
    ``width0`` at ``depth0``. The thresholds are log-normal over observers, lighting and skin,
    median ``h_vis`` and log-SD ``sigma`` (those of the grade map, :func:`goodman_baron_grade`);
    the observers who saw the trough at baseline (v < h₀) judge its change:

        W(h) = W₀ · E[s(h, v)/s(h₀, v) | v < h₀]

    computed by the midpoint rule in the threshold's normal score (:data:`N_THRESHOLD` points).
    Smooth and non-increasing as the depth falls; 0 at depth 0. ``sigma = 0`` is one threshold:
    the band deeper than ``h_vis`` (0 once the trough is shallower than it), and a trough not
    deeper than ``h_vis`` at baseline keeps ``width0`` (its visible width is not set by its depth).
    """
    w0, h0, h, hv, sg = np.broadcast_arrays(
        _f(width0), np.maximum(_f(depth0), 0.0), np.maximum(_f(depth_now), 0.0), _f(h_vis),
        _f(sigma),
    )  # fmt: skip
    one = sg <= 0.0
    s0, s1 = _span(h0, hv), _span(h, hv)
    out = w0 * np.divide(s1, s0, out=np.ones(s1.shape), where=s0 > 0.0)
    if np.all(one):
        return np.asarray(out)
    # normal score of the threshold at the baseline depth: the observers with v < h0
    sg_pos = np.where(one, 1.0, sg)
    with np.errstate(divide="ignore"):
        z0 = np.log(np.divide(h0, hv, out=np.zeros(h0.shape), where=hv > 0.0)) / sg_pos
    z0 = np.where(np.isfinite(z0), z0, _Z_LOW)
    hi = np.clip(z0, _Z_LOW, _Z_HIGH)
    dz = (hi - _Z_LOW) / N_THRESHOLD
    k = (np.arange(N_THRESHOLD) + 0.5).reshape((-1,) + (1,) * h0.ndim)
    z = _Z_LOW + k * dz[None]  # (N, *shape)
    v = hv[None] * np.exp(sg_pos[None] * z)
    w = np.exp(-0.5 * z**2) * dz[None]
    base = _span(h0[None], v)
    ratio = np.divide(_span(h[None], v), base, out=np.zeros(z.shape), where=base > 0.0)
    mass = np.sum(w, axis=0)
    smooth = w0 * np.divide(
        np.sum(w * ratio, axis=0), mass, out=np.ones(mass.shape), where=mass > 0
    )
    return np.asarray(np.where(one, out, smooth))


__all__ = [
    "MEAN_DEPTH_SHARE",
    "N_RADIAL",
    "N_THRESHOLD",
    "depth",
    "fill_fraction",
    "footprint_injury",
    "goodman_baron_grade",
    "grade_drop_probability",
    "mean_depth_share",
    "profile_share",
    "punctures_per_session",
    "sparse_depression_sa",
    "untouched_probability",
    "visible_width",
]

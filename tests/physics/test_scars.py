"""Depressed features from geometry (physics/scars.py): exact limits, quadrature, monotonicity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from microneedling.physics import injury, scars
from microneedling.vocabulary import DEPRESSION_PROFILES

V, BOX, ROUNDED = (DEPRESSION_PROFILES.index(p) for p in ("v_shaped", "box", "rounded"))
#: cheek of a young woman: SC, viable epidermis, papillary, reticular dermis (m)
LAYERS = np.array([[16.8e-6, 54.5e-6, 174e-6, 696e-6]])
N = 229e4  # punctures per m² (15 passes of a 192-needle roller)
A = 0.063e-3  # channel surface radius (m)
D = 0.75e-3  # channel depth in flat skin (m)
L = 1.5e-3  # needle length (m)


def floor(depth_mm: float, profile: int, fs: float, n_radial: int = scars.N_RADIAL, **kw: float):
    args = {"n": N, "a": A, "d": D, "L": L} | kw
    return scars.footprint_injury(
        args["n"], args["a"], args["d"], args["L"], LAYERS, 1.5, depth_mm * 1e-3, profile, fs,
        n_radial=n_radial,
    )[0]  # fmt: skip


def test_mean_depth_shares_are_the_area_integrals_of_the_profiles() -> None:
    x = np.sqrt((np.arange(200_000) + 0.5) / 200_000)  # uniform in area
    for name, code in (("v_shaped", V), ("box", BOX), ("rounded", ROUNDED)):
        numeric = scars.profile_share(x, code).mean()
        assert numeric == pytest.approx(scars.MEAN_DEPTH_SHARE[name], rel=1e-6)
        assert scars.mean_depth_share(np.array([code]))[0] == scars.MEAN_DEPTH_SHARE[name]
    assert np.isnan(scars.mean_depth_share(np.array([-1]))[0])


def test_flat_floor_gets_the_flat_skin_injury_exactly() -> None:
    flat = injury.injured_fraction(N, A, D, LAYERS, 1.5)[0]
    # (equal up to the rounding of the footprint mean of identical values)
    np.testing.assert_allclose(floor(0.0, ROUNDED, 0.0), flat, rtol=1e-14)
    # a fully distensible depression is stretched flat under the needles
    np.testing.assert_allclose(floor(0.5, BOX, 1.0), flat, rtol=1e-14)


def test_box_floor_is_the_flat_injury_of_the_shortened_channel() -> None:
    h, fs = 0.4e-3, 0.3
    keep = 1.0 - (1.0 - fs) * h / L
    expected = injury.injured_fraction(N, A * keep, D * keep, LAYERS, 1.5)[0]
    np.testing.assert_allclose(floor(0.4, BOX, fs), expected, rtol=1e-14)


@pytest.mark.parametrize("profile", [V, ROUNDED])
def test_radial_quadrature_has_converged(profile: int) -> None:
    coarse = floor(0.8, profile, 0.0)
    fine = floor(0.8, profile, 0.0, n_radial=4000)
    np.testing.assert_allclose(coarse, fine, rtol=1e-3)


def test_deeper_depressions_get_less_and_longer_needles_more() -> None:
    depths = (0.0, 0.2, 0.4, 0.7, 1.0)
    dermal = [floor(h, BOX, 0.3)[1:].sum() for h in depths]
    assert np.all(np.diff(dermal) < 0)
    # a longer needle (channel in proportion) reaches a deep floor: the gain is largest there
    gain = [floor(h, BOX, 0.3, L=2.5e-3, d=1.25e-3)[1:].sum() / floor(h, BOX, 0.3)[1:].sum()
            for h in (0.2, 0.7)]  # fmt: skip
    assert 1.0 < gain[0] < gain[1]


def test_no_reach_no_dermal_injury() -> None:
    # the needle loses all of its length to the air gap of a deep, rigid box: nothing is injured
    phi = floor(1.6, BOX, 0.0)
    np.testing.assert_array_equal(phi, 0.0)
    # a shallow channel that only reaches the epidermis leaves the floor's dermis untouched
    shallow = floor(0.2, BOX, 0.0, L=0.3e-3, d=0.06e-3)
    assert shallow[0] >= 0 and shallow[1] == shallow[2] == 0.0


def test_untouched_probability_is_poisson() -> None:
    lam = scars.punctures_per_session(np.array([[N, N, N, 0.0]]), 0.5e-3)
    assert lam[0, 0] == pytest.approx(N * np.pi * 0.25e-3**2)
    p0 = scars.untouched_probability(lam)
    assert p0[0] == pytest.approx(np.exp(-3 * lam[0, 0]), rel=1e-14)
    assert scars.untouched_probability(np.zeros((1, 4)))[0] == 1.0


def test_depth_law_limits_and_monotonicity() -> None:
    h, tau, eps = 0.5, 0.4, 0.2
    assert scars.depth(h, tau, eps, 1.0, 0.0, 0.6, 0.5) == pytest.approx(h)
    s = np.linspace(0.0, 1.0, 11)
    g = np.linspace(0.0, 2.0, 11)
    d_s = scars.depth(h, tau, eps, s, 0.3, 0.6, 0.5)
    d_g = scars.depth(h, tau, eps, 0.5, g, 0.6, 0.5)
    assert np.all(np.diff(d_s) > 0) and np.all(np.diff(d_g) < 0)
    # the epithelial share never fills; a fully released, fully filled floor keeps it
    assert scars.depth(h, tau, eps, 0.0, 1e12, 1.0, 0.5) == pytest.approx(h * eps)
    assert scars.depth(h, 0.0, 1.0, 0.0, 10.0, 0.6, 0.5) == pytest.approx(h)


def test_goodman_baron_grade_map() -> None:
    grade = lambda h, fs: scars.goodman_baron_grade(h, fs, 0.05, 0.3, 0.5)  # noqa: E731
    assert grade(0.0, 0.0) == 1.0  # flat: macular
    assert grade(20.0, 0.0) == pytest.approx(4.0, abs=1e-9)  # deep and rigid: severe
    assert grade(20.0, 1.0) == pytest.approx(3.0, abs=1e-9)  # flattens when stretched: moderate
    h = np.linspace(0.0, 2.0, 50)
    assert np.all(np.diff(grade(h, 0.3)) >= 0)
    assert np.all(grade(h, 0.0) >= grade(h, 0.8))
    # at the mild threshold P(>= 2) is one half; fully distensible: never grade 4
    expected = 1.0 + 0.5 + float(ndtr(np.log(0.05 / 0.3) / 0.5))
    assert grade(0.05, 1.0) == pytest.approx(expected, abs=1e-12)


def test_sparse_depression_sa_is_the_exact_sa_of_a_pitted_surface() -> None:
    rng = np.random.default_rng(3)
    z = np.zeros(1_000_000)
    pits = rng.random(z.size) < 0.07
    z[pits] = -12.0  # flat-floored pits 12 um deep on 7% of the area
    a = pits.mean()
    sa_exact = np.mean(np.abs(z - z.mean()))
    assert scars.sparse_depression_sa(a, 12.0) == pytest.approx(sa_exact, rel=1e-12)


def test_visible_width_of_a_rounded_trough() -> None:
    w = scars.visible_width(4.0, 0.2, np.array([0.2, 0.1, 0.06, 0.05, 0.01]), 0.05)
    assert w[0] == pytest.approx(4.0)
    assert np.all(np.diff(w) <= 0) and w[1] < w[0]
    assert w[-1] == 0.0 and w[-2] == 0.0
    # exact span of cos² above the threshold, relative to baseline
    span = lambda h: np.arccos(np.sqrt(0.05 / h))  # noqa: E731
    assert w[1] == pytest.approx(4.0 * span(0.1) / span(0.2), rel=1e-12)
    # a trough not deeper than the threshold at baseline keeps its width
    assert scars.visible_width(3.0, 0.04, 0.01, 0.05) == pytest.approx(3.0)


@pytest.mark.parametrize(("h0", "sigma"), [(0.2, 0.5), (0.1, 0.5), (0.05, 0.3), (0.4, 0.8)])
def test_visible_width_over_observers_is_the_conditional_expectation(
    h0: float, sigma: float
) -> None:
    """With log-normal visibility thresholds (median h_vis, log-SD sigma): against a Monte Carlo
    of observers (2e6 thresholds; those who saw the trough at baseline judge its change), the
    width at five depths within 3e-3 of the baseline width; non-increasing, positive at every
    depth above 0 (no depth below which every observer loses it), 0 at depth 0 and the baseline
    width at the baseline depth."""
    hv = 0.0916
    v = hv * np.exp(sigma * np.random.default_rng(1).standard_normal(2_000_000))
    v = v[v < h0]
    depths = np.array([h0, 0.8 * h0, 0.5 * h0, 0.3 * h0, 0.0])
    got = scars.visible_width(3.0, h0, depths, hv, sigma)
    span = lambda h, t: np.arccos(np.sqrt(np.clip(t / h, 0.0, 1.0))) if h > 0 else 0.0 * t  # noqa: E731
    for h, g in zip(depths, got, strict=True):
        want = 3.0 * np.mean(span(h, v) / span(h0, v))
        assert g == pytest.approx(
            want, abs=3e-3 + 4.0 * 3.0 * np.std(span(h, v) / span(h0, v)) / np.sqrt(v.size)
        )
    assert got[0] == pytest.approx(3.0, abs=1e-12) and got[-1] == 0.0
    grid = np.linspace(h0, 0.0, 2001)
    fine = scars.visible_width(3.0, h0, grid, hv, sigma)
    assert np.all(np.diff(fine) <= 1e-12)
    # some observers still see a trough shallower than the median threshold (the one-threshold
    # band is 0 there, or keeps its whole width when it was never deeper than the threshold)
    assert np.all(fine[grid > hv * np.exp(-5.0 * sigma)] > 0.0)  # 5 SDs of the thresholds


def test_visible_width_with_one_threshold_is_the_old_band() -> None:
    d = np.array([0.2, 0.1, 0.06, 0.05, 0.01])
    np.testing.assert_array_equal(
        scars.visible_width(4.0, 0.2, d, 0.05, 0.0), scars.visible_width(4.0, 0.2, d, 0.05)
    )
    # a small spread tends to it
    np.testing.assert_allclose(
        scars.visible_width(4.0, 0.2, d[:3], 0.05, 1e-4),
        scars.visible_width(4.0, 0.2, d[:3], 0.05),
        rtol=2e-3,
    )


@pytest.mark.parametrize(
    ("before", "after", "distensible"),
    [(0.5, 0.2, 0.8), (0.5, 0.45, 0.3), (1.0, 0.2, 0.0), (0.5, 0.1, 0.3), (0.31, 0.29, 0.5)],
)
def test_grade_drop_probability_is_the_latent_measure_of_crossed_thresholds(
    before: float, after: float, distensible: float
) -> None:
    """Against a Monte Carlo of the integer grade with the visibility latent kept between visits
    (4e5 draws: SE below 1e-3), for one and two grades; for one grade and intervals that do not
    overlap it is the fall of the expected grade."""
    hm, ho, sg = 0.05, 0.3, 0.5
    u = np.random.default_rng(0).standard_normal(400_000)
    c = np.array([hm, ho, ho / (1.0 - distensible) if distensible < 1 else np.inf])

    def grade(h: float) -> np.ndarray:
        return np.asarray((np.log(h / c)[None, :] + sg * u[:, None] > 0).sum(axis=1))

    drop = grade(before) - grade(after)
    for steps in (1, 2):
        p = float(scars.grade_drop_probability(before, after, distensible, hm, ho, sg, steps))
        assert p == pytest.approx(np.mean(drop >= steps), abs=4e-3)
    fall = float(
        scars.goodman_baron_grade(before, distensible, hm, ho, sg)
        - scars.goodman_baron_grade(after, distensible, hm, ho, sg)
    )
    if float(scars.grade_drop_probability(before, after, distensible, hm, ho, sg, 2)) < 1e-9:
        assert float(
            scars.grade_drop_probability(before, after, distensible, hm, ho, sg)
        ) == pytest.approx(fall, rel=1e-9)


def test_grade_drop_probability_is_zero_without_a_shallower_scar() -> None:
    p = scars.grade_drop_probability([0.5, 0.5, 0.0], [0.6, 0.5, 0.0], 0.3, 0.05, 0.3, 0.5)
    assert np.array_equal(p, [0.0, 0.0, 0.0])
    deeper_fall = scars.grade_drop_probability(0.5, [0.4, 0.3, 0.2, 0.1], 0.3, 0.05, 0.3, 0.5)
    assert np.all(np.diff(deeper_fall) > 0)  # a larger fall, a likelier drop


def _drop_reference(
    before: np.ndarray,
    after: np.ndarray,
    fs: np.ndarray,
    hm: float,
    ho: float,
    sg: float,
    steps: int,
) -> np.ndarray:
    """``grade_drop_probability`` as it was before it skipped the points that cannot drop: the
    interval overlap computed at every point."""
    h0, h1, fs = np.broadcast_arrays(np.maximum(before, 0.0), np.maximum(after, 0.0), fs)
    with np.errstate(divide="ignore", invalid="ignore"):
        c3 = np.where(fs < 1.0, ho / np.maximum(1.0 - fs, 0.0), np.inf)
        c = np.stack([np.full(h0.shape, hm), np.full(h0.shape, ho), c3], axis=-1)
        inf = {"nan": np.inf, "posinf": np.inf, "neginf": -np.inf}
        a = np.nan_to_num(-np.log(h0[..., None] / c) / sg, **inf)
        b = np.nan_to_num(-np.log(h1[..., None] / c) / sg, **inf)
        b = np.maximum(a, b)
        edges = np.sort(np.concatenate([a, b], axis=-1), axis=-1)
        lo, hi = edges[..., :-1], edges[..., 1:]
        both = np.isfinite(lo) & np.isfinite(hi)
        mid = np.where(both, 0.5 * (lo + hi), np.where(np.isfinite(lo), lo + 1.0, hi - 1.0))
    inside = (a[..., None, :] < mid[..., :, None]) & (mid[..., :, None] <= b[..., None, :])
    keep = (inside.sum(axis=-1) >= steps) & (hi > lo)
    return np.asarray(np.sum(np.where(keep, ndtr(hi) - ndtr(lo), 0.0), axis=-1))


def test_grade_drop_probability_skips_only_points_that_cannot_drop() -> None:
    """Bit for bit the computation at every point (kept above) over depths that fell, rose, stayed,
    were 0, negative, NaN or infinite before or after, distensibility 0..1.5 and NaN, one to three
    grades and a zero or negative sigma (no skipping then)."""
    rng = np.random.default_rng(1)
    vals = np.array([0.0, -0.0, -1.0, np.nan, np.inf, 0.04, 0.05, 0.2, 0.3, 0.6, 1.0, 2.0])
    h0, h1 = rng.choice(vals, (120, 40)), rng.choice(vals, (120, 40))
    h0[:, :20] = rng.uniform(0.0, 1.5, (120, 20))
    h1[:, :20] = h0[:, :20] * rng.uniform(0.3, 1.1, (120, 20))
    fs = rng.choice(np.array([0.0, 0.5, 0.99, 1.0, 1.5, np.nan]), (120, 1))
    fell = 0
    for hm, ho, sg in ((0.05, 0.3, 0.5), (0.0, 0.3, 0.5), (0.05, 0.3, -0.5), (0.05, 0.3, 0.0)):
        for steps in (0, 1, 2, 3):
            want = _drop_reference(h0, h1, fs, hm, ho, sg, steps)
            with np.errstate(invalid="ignore"):
                got = scars.grade_drop_probability(h0, h1, fs, hm, ho, sg, steps)
            assert np.array_equal(got, want, equal_nan=True), (hm, ho, sg, steps)
            assert np.array_equal(np.signbit(got), np.signbit(want))
            fell += int(np.sum(want > 0.0))
    assert fell > 1000  # the comparison covers many points that did drop


def test_grade_drop_probability_of_several_steps_is_the_stack_of_single_calls() -> None:
    """One call with ``steps=(1, 2, 3)`` (the intervals computed once) gives, bit for bit, the three
    single-step results along a leading axis, for arrays and for a scalar scar."""
    rng = np.random.default_rng(7)
    h0 = rng.uniform(0.0, 1.5, (30, 8))
    h1 = h0 * rng.uniform(0.2, 1.2, (30, 8))
    for sg in (0.5, 0.0):
        got = scars.grade_drop_probability(h0, h1, 0.4, 0.05, 0.3, sg, steps=(1, 2, 3))
        assert got.shape == (3, 30, 8)
        for i, k in enumerate((1, 2, 3)):
            single = scars.grade_drop_probability(h0, h1, 0.4, 0.05, 0.3, sg, k)
            assert np.array_equal(got[i], single)
    pair = scars.grade_drop_probability(0.8, 0.2, 0.5, 0.05, 0.3, 0.5, steps=[1, 2])
    assert pair.shape == (2,) and pair[0] >= pair[1] > 0.0
    with pytest.raises(ValueError, match="steps"):
        scars.grade_drop_probability(0.8, 0.2, 0.5, 0.05, 0.3, 0.5, steps=())


def test_grade_drop_probability_is_never_negative_when_the_depth_moved_one_ulp() -> None:
    """A scar whose depth fell by one ulp (0.5 mm to the float just below, as a draw of the
    rolling-scar example gave) crosses intervals a few ulps wide, where ndtr's rounding made
    the normal measure -5.6e-17 before 2026-12-07; a probability is in [0, 1]."""
    h0 = np.array([0.5])
    h1 = np.nextafter(h0, 0.0)
    fs, mild, obvious, sigma = (
        0.7018889864318697,
        0.27352489394313023,
        0.1641182353500635,
        0.7278153598313241,
    )
    one, two = scars.grade_drop_probability(h0, h1, fs, mild, obvious, sigma, steps=(1, 2))
    assert one[0] >= 0.0 and two[0] >= 0.0
    assert one[0] < 1e-12  # the scar barely moved: no drop


def test_footprint_injury_in_blocks_is_all_rows_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows computed in blocks of FOOTPRINT_BLOCK (and a last, shorter one) give the numbers of
    all rows at once, bit for bit: every profile code, depths from 0 to past the needle."""
    rng = np.random.default_rng(0)
    M = 3 * scars.FOOTPRINT_BLOCK + 17
    layers = np.sort(rng.uniform(1e-5, 2e-3, (M, 4)), axis=1)
    args = (
        rng.uniform(1e6, 1e8, M),
        rng.uniform(1e-5, 1e-4, M),
        rng.uniform(1e-4, 2e-3, M),
        rng.uniform(2e-4, 2.5e-3, M),
        layers,
        rng.uniform(0.5, 2.0, M),
        np.where(rng.random(M) < 0.1, 0.0, rng.uniform(0.0, 3e-3, M)),
        rng.integers(-1, 3, M),
        rng.uniform(0.0, 1.0, M),
    )
    blocks = scars.footprint_injury(*args)
    monkeypatch.setattr(scars, "FOOTPRINT_BLOCK", 10**9)
    whole = scars.footprint_injury(*args)
    assert blocks.shape == (M, 3) and np.isfinite(whole).all()
    assert np.array_equal(blocks, whole)

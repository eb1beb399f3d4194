"""Dermal observation maps (physics/observe.py): exact baseline, elasticity in logit space, firmness,
texture, wrinkles, pores, striae; monotone in the state that drives them."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest

from microneedling.parameters.parameter_set import load_parameters
from microneedling.physics import observe, pigment, scars
from microneedling.physics.healing_rhs import (
    IX_LE,
    IX_MP,
    IX_N1,
    IX_N3,
    IX_NE,
    IX_NX,
    IX_S,
    N_DERMAL,
    baseline_state,
)
from microneedling.vocabulary import DEPRESSION_PROFILES, SITES

PS = load_parameters()
OP = observe.ObserveParameters.from_parameters(PS)
T = 5


def base(n: int = 1, **over: float) -> observe.Baseline:
    """A site with every dermal condition (a rolling scar, a wrinkle, pores, a stretch mark)."""
    vals = {
        "dermis_thickness_um": 870.0,
        "papillary_fraction": 0.2,
        "age_years": 45.0,
        "fitzpatrick": 2.0,
        "elasticity_r2": 0.75,
        "wrinkle_depth_um": 150.0,
        "scar_depth_mm": 0.5,
        "scar_type": 0,
        "pore_diameter_um": 200.0,
        "striae_width_mm": 4.0,
        "striae_stage": 1,
        "melanin_index": np.nan,
        "site_area_cm2": 50.0,
        "scar_count": 20,
        "scar_width_mm": 5.0,
        "scar_profile": DEPRESSION_PROFILES.index("rounded"),
        "scar_tethered": 0.8,
        "scar_epithelial": 0.0,
        "scar_distensible": 0.8,
        "scar_untouched": 0.0,
        "wrinkle_untouched": 0.0,
        "striae_depth_mm": 0.2,
        "striae_tethered": 0.5,
        "striae_untouched": 0.0,
    } | over
    arrays = {k: np.full(n, float(v)) for k, v in vals.items()}
    # no pigment lesion at this site: the lesion fields are NaN
    for f in fields(observe.Baseline):
        arrays.setdefault(f.name, np.full((n, 4) if f.name == "masi_area_pct" else n, np.nan))
    return observe.Baseline(**arrays)


def states(n: int = 1) -> np.ndarray:
    y0 = baseline_state(np.zeros(n))
    return np.repeat(y0[:, None, :], T, axis=1)


def floors(n: int, gain: float = 0.0, tether: float = 1.0) -> observe.Floors:
    g, s = np.full((n, T), gain), np.full((n, T), tether)
    return observe.Floors(
        scar_gain=g, scar_tether=s, wrinkle_gain=g, striae_gain=g, striae_tether=s
    )


def run(y: np.ndarray, b: observe.Baseline, fl: observe.Floors | None = None) -> dict:
    return observe.observables(np.arange(float(T)), y, b, OP, fl)


def test_baseline_state_gives_the_baseline_of_every_dermal_observable_exactly() -> None:
    b = base()
    for fl in (None, floors(1)):
        o = run(states(), b, fl)
        assert np.all(o["elasticity_index"] == pytest.approx(0.75, rel=1e-15))
        np.testing.assert_array_equal(o["firmness_change"], 0.0)
        np.testing.assert_array_equal(o["dermal_density_change"], 0.0)
        np.testing.assert_array_equal(o["mature_collagen_change"], 0.0)
        np.testing.assert_array_equal(o["scar_depth"], 0.5)
        np.testing.assert_array_equal(o["wrinkle_depth"], 150.0)
        np.testing.assert_array_equal(o["pore_diameter"], 200.0)
        np.testing.assert_array_equal(o["striae_depth"], 0.2)
        np.testing.assert_array_equal(o["striae_width"], 4.0)
        # texture: micro-relief at age 45 plus the exact Sa of the scars and pores
        micro = OP.sa_micro * (1.0 + OP.sa_micro_age_slope * (45.0 - OP.sa_reference_age) / 10)
        a_scar = 20 * np.pi * 2.5**2 / 5000.0
        z_scar = 500.0 * scars.MEAN_DEPTH_SHARE["rounded"]
        a_pore = OP.pore_density * 1e-8 * np.pi * 200.0**2 / 4
        z_pore = OP.pore_depth_ratio * 200.0 / 3.0
        sa = micro + 2 * a_scar * (1 - a_scar) * z_scar + 2 * a_pore * (1 - a_pore) * z_pore
        np.testing.assert_allclose(o["texture_roughness"], sa, rtol=1e-12)


#: baseline fields of a case without scars, wrinkles, pores or stretch marks
NO_FEATURES: dict[str, float] = dict(
    wrinkle_depth_um=np.nan, scar_depth_mm=np.nan, pore_diameter_um=np.nan,
    striae_width_mm=np.nan, striae_depth_mm=np.nan, scar_count=np.nan, scar_width_mm=np.nan,
    scar_profile=-1, scar_untouched=np.nan, wrinkle_untouched=np.nan, striae_untouched=np.nan,
)  # fmt: skip


def test_absent_conditions_are_nan_and_texture_is_always_defined() -> None:
    b = base(**NO_FEATURES)
    o = run(states(), b)
    for k in ("scar_depth", "scar_grade", "wrinkle_depth", "pore_diameter", "striae_width"):
        assert np.all(np.isnan(o[k])), k
    micro = OP.sa_micro * (1.0 + OP.sa_micro_age_slope * 2.0)
    np.testing.assert_allclose(o["texture_roughness"], micro, rtol=1e-12)


def test_elasticity_change_lives_in_logit_space() -> None:
    """The same dermal change moves logit R2 by the same amount whatever the baseline, and R2
    stays in (0, 1); functional elastin raises it, elastin lost to MMPs lowers it."""
    y = states(3)
    y[:, :, IX_NE] = 0.4  # new elastic fibre in the papillary dermis
    y[:, :, IX_NX] = 0.2
    b = base(3)
    b = replace(b, elasticity_r2=np.array([0.3, 0.6, 0.9]))
    r2 = run(y, b)["elasticity_index"][:, -1]
    dlogit = np.log(r2 / (1 - r2)) - np.log(b.elasticity_r2 / (1 - b.elasticity_r2))
    np.testing.assert_allclose(dlogit, dlogit[0], rtol=1e-12)
    assert dlogit[0] > 0 and np.all((r2 > 0) & (r2 < 1))
    y_loss = states(1)
    y_loss[:, :, IX_LE] = 0.2
    assert run(y_loss, base())["elasticity_index"][0, -1] < 0.75


def test_baseline_elasticity_table_by_age_sex_and_site() -> None:
    young = np.array([PS.value("observe.r2_young", "1", key=s) for s in SITES])
    slope = np.array([PS.value("observe.r2_age_slope", "1", key=s) for s in SITES])
    ref = PS.value("observe.r2_reference_age", "yr")
    off = PS.value("observe.r2_male_offset", "1")
    k = PS.value("observe.r2_male_slope_factor", "1")

    def r2(age: float, male: float) -> np.ndarray:
        n = len(SITES)
        return observe.elasticity_baseline(
            np.full(n, age), np.full(n, male), young, slope, ref, off, k
        )

    ages = [20.0, 25.0, 40.0, 55.0, 70.0, 90.0]
    for male in (0.0, 1.0):
        table = np.array([r2(a, male) for a in ages])
        assert np.all(np.diff(table, axis=0) <= 0)  # never rises with age
        assert np.all(np.diff(table, axis=0)[2:] < 0)
    assert np.all(r2(25.0, 0.0) > r2(25.0, 1.0))  # women higher when young (Luebberding)
    face = SITES.index("cheek")
    body = SITES.index("abdomen")
    assert r2(40.0, 0.0)[body] > r2(40.0, 0.0)[face]  # forearm-like body skin above the cheek
    # the seen facial range 0.66-0.82 holds for women of 25-65 on the cheek
    assert 0.66 <= r2(65.0, 0.0)[face] < r2(25.0, 0.0)[face] <= 0.82


def test_firmness_follows_the_dermal_modulus_and_texture_falls_with_collagen() -> None:
    y = states(4)
    for i, g in enumerate((0.0, 0.1, 0.3, 0.6)):
        y[i, :, IX_NX] = g
        y[i, :, N_DERMAL + IX_NX] = g
    o = run(y, base(4))
    firm = o["firmness_change"][:, -1]
    assert firm[0] == 0 and np.all(np.diff(firm) > 0)
    assert firm[2] == pytest.approx(100 * (1.3**OP.modulus_collagen_exponent - 1), rel=1e-12)
    for k in ("texture_roughness", "wrinkle_depth", "pore_diameter"):
        assert np.all(np.diff(o[k][:, -1]) < 0), k


def test_depressions_fill_through_their_floor_and_release_their_tethers() -> None:
    b = base(1)
    y = states()
    gains = [run(y, b, floors(1, gain=g))["scar_depth"][0, -1] for g in (0.0, 0.2, 0.5, 1.0)]
    assert np.all(np.diff(gains) < 0)
    tethers = [run(y, b, floors(1, tether=s))["scar_depth"][0, -1] for s in (1.0, 0.6, 0.2)]
    assert np.all(np.diff(tethers) < 0)
    # a uniform gain of the site without any floor response leaves the scar as deep as it was
    y_up = states()
    y_up[:, :, IX_NX] = 0.5
    y_up[:, :, N_DERMAL + IX_NX] = 0.5
    assert run(y_up, b)["scar_depth"][0, -1] == 0.5
    # scars no needle touched keep their depth (expected over scars)
    half = replace(b, scar_untouched=np.array([0.5]))
    d = run(y, half, floors(1, gain=0.5, tether=0.5))["scar_depth"][0, -1]
    d1 = run(y, b, floors(1, gain=0.5, tether=0.5))["scar_depth"][0, -1]
    assert d == pytest.approx(0.5 * 0.5 + 0.5 * d1)


def test_scar_grade_follows_the_depth() -> None:
    o = [run(states(), base(), floors(1, gain=g, tether=s)) for g, s in ((0, 1), (0.3, 0.5))]
    g0, g1 = (x["scar_grade"][0, -1] for x in o)
    assert 1.0 <= g1 < g0 <= 4.0
    expected = scars.goodman_baron_grade(
        0.5, 0.8, OP.scar_grade_mild_depth, OP.scar_grade_obvious_depth, OP.scar_grade_sigma
    )
    assert g0 == pytest.approx(float(expected), rel=1e-14)


def test_striae_width_narrows_as_the_trough_fills() -> None:
    w = [run(states(), base(), floors(1, gain=g))["striae_width"][0, -1] for g in (0, 0.3, 1.0)]
    assert w[0] == pytest.approx(4.0) and w[0] > w[1] > w[2] > 0


def test_a_stretch_mark_follows_the_depression_law_of_scars() -> None:
    """A stretch mark is a rounded atrophic scar: its contracted share (``striae_tethered``) is
    released as the floor's S falls and the rest is filled, exactly as :func:`scars.depth`; with
    no contracted share only the fill acts, and releasing the band narrows the visible width."""
    for tau in (0.0, 0.5, 0.9):
        for s_left, g in ((1.0, 0.0), (0.4, 0.0), (1.0, 0.5), (0.3, 0.4)):
            o = run(states(), base(striae_tethered=tau), floors(1, gain=g, tether=s_left))
            want = scars.depth(0.2, tau, 0.0, s_left, g, OP.depression_fill_max,
                               OP.depression_fill_half)  # fmt: skip
            assert o["striae_depth"][0, -1] == pytest.approx(float(want), rel=1e-14)
    w = [
        run(states(), base(), floors(1, gain=0.2, tether=s))["striae_width"][0, -1]
        for s in (1.0, 0.8, 0.6, 0.05)
    ]
    assert w[0] > w[1] > w[2] > w[3] > 0
    # released enough to be shallower than the median visibility threshold (depth 0.088 mm
    # against observe.scar_grade_mild_depth, 0.0916 mm): most observers no longer see it, those
    # with a lower threshold (log-SD observe.scar_grade_sigma) still see a narrow band
    h_vis, sg = OP.scar_grade_mild_depth, OP.scar_grade_sigma
    d = float(run(states(), base(), floors(1, gain=0.2, tether=0.05))["striae_depth"][0, -1])
    assert d < h_vis
    assert w[3] == pytest.approx(float(scars.visible_width(4.0, 0.2, d, h_vis, sg)), rel=1e-12)
    assert w[3] < 0.5 * w[0]  # most of the band is gone
    untouched = run(states(), base(striae_untouched=1.0), floors(1, gain=0.5, tether=0.2))
    assert untouched["striae_depth"][0, -1] == pytest.approx(0.2)


def test_structural_collagen_weights_immature_collagen_by_theta() -> None:
    y = states()
    y[:, :, IX_N1] = 0.1
    y[:, :, IX_N3] = 0.05
    y[:, :, IX_NX] = 0.2
    assert observe.structural_gain(y, 0, 0.2)[0, 0] == pytest.approx(0.2 + 0.2 * 0.15)
    assert observe.collagen_gain(y, 0)[0, 0] == pytest.approx(0.35)
    o = run(y, base())
    assert o["mature_collagen_change"][0, 0, 0] == pytest.approx(20.0)
    assert o["collagen_change"][0, 0, 0] == pytest.approx(35.0)
    assert y[0, 0, N_DERMAL + IX_S] == 1.0


def test_outputs_computed_in_place_or_on_the_cases_that_have_them_are_unchanged() -> None:
    """The layered outputs written in place, MASI computed only for the cases with a melasma and
    the baseline scar grade once per case: the same numbers as the whole-batch formulas (NaN where
    a case has no melasma or no scar), over cases with and without either and perturbed states."""
    rng = np.random.default_rng(5)
    n = 6
    nan = np.nan
    b = base(n)
    area = rng.uniform(0.0, 80.0, (n, 4))
    area[[1, 4]] = nan
    area[3, 2] = nan  # one unknown region: no MASI either
    b = replace(
        b,
        masi_area_pct=area,
        masi_darkness=rng.uniform(0.5, 3.5, n),
        masi_homogeneity=rng.uniform(0.5, 3.5, n),
        dermal_pigment_fraction=rng.uniform(0.0, 0.5, n),
        scar_depth_mm=np.array([0.5, nan, 0.3, 1.2, 0.05, 0.8]),
        scar_untouched=np.array([0.0, nan, 0.2, 0.0, 0.5, 0.1]),
    )
    y = states(n) * (1.0 + rng.uniform(-0.3, 0.3, (n, T, states(1).shape[2])))
    y[..., N_DERMAL + IX_N1] += rng.uniform(0.0, 0.4, (n, T))
    fl = observe.Floors(
        scar_gain=rng.uniform(0.0, 0.6, (n, T)),
        scar_tether=rng.uniform(0.3, 1.0, (n, T)),
        wrinkle_gain=rng.uniform(0.0, 0.6, (n, T)),
        striae_gain=rng.uniform(0.0, 0.6, (n, T)),
        striae_tether=rng.uniform(0.3, 1.0, (n, T)),
    )
    o = run(y, b, fl)
    for layer in (0, 1):
        k = layer * N_DERMAL
        n1, n3, nx = y[..., k + IX_N1], y[..., k + IX_N3], y[..., k + IX_NX]
        c1 = OP.collagen_I_fraction
        want = {
            "collagen_change": 100.0 * (n1 + n3 + nx),
            "collagen_I_change": 100.0 * (n1 + nx) / c1,
            "collagen_III_change": 100.0 * n3 / (1.0 - c1),
            "mature_collagen_change": 100.0 * nx,
            "elastin_change": 100.0 * (y[..., k + IX_NE] - y[..., k + IX_LE]),
            "new_elastin_change": 100.0 * y[..., k + IX_NE],
        }
        for name, arr in want.items():
            assert np.array_equal(o[name][:, layer], arr), name
    contrast = pigment.lesion_contrast(y[..., IX_MP], b.dermal_pigment_fraction)
    masi, mmasi = pigment.masi(
        contrast, b.masi_area_pct, b.masi_darkness, b.masi_homogeneity, OP.pigment
    )
    assert np.array_equal(o["masi_score"], masi, equal_nan=True)
    assert np.array_equal(o["mmasi_score"], mmasi, equal_nan=True)
    assert np.sum(np.isfinite(o["masi_score"][:, 0])) == 3
    h0, p0 = b.scar_depth_mm[:, None], b.scar_untouched[:, None]
    fs = b.scar_distensible[:, None]
    treated = scars.depth(
        h0, b.scar_tethered[:, None], b.scar_epithelial[:, None], fl.scar_tether, fl.scar_gain,
        OP.depression_fill_max, OP.depression_fill_half,
    )  # fmt: skip
    grade_args = (OP.scar_grade_mild_depth, OP.scar_grade_obvious_depth, OP.scar_grade_sigma)
    g0 = scars.goodman_baron_grade(np.broadcast_to(h0, treated.shape), fs, *grade_args)
    g1 = scars.goodman_baron_grade(treated, fs, *grade_args)
    assert np.array_equal(o["scar_grade"], p0 * g0 + (1.0 - p0) * g1, equal_nan=True)
    assert np.sum(np.isfinite(o["scar_grade"][:, 0])) == 5


def test_one_and_two_grade_responders_are_the_grade_drop_probabilities() -> None:
    """``scar_grade_responder`` and ``scar_grade_responder_two`` are the chances that the integer
    Goodman & Baron grade fell by at least one and at least two grades (the same visibility latent
    at both visits), for the scars a needle touched; the second is never above the first."""
    b = base(scar_untouched=0.25)
    # a released, well-filled scar (0.5 -> 0.05 mm) crosses two grade thresholds for some
    # assessors; a smaller fall (0.5 -> 0.19 mm) crosses one for all but two for none
    small = run(states(), b, floors(1, gain=0.4, tether=0.3))
    assert small["scar_grade_responder"][0, -1] > 0.5
    assert small["scar_grade_responder_two"][0, -1] == 0.0
    o = run(states(), b, floors(1, gain=2.0, tether=0.0))
    h1 = o["scar_depth"][0, -1]
    treated = (h1 - 0.25 * 0.5) / 0.75
    for name, steps in (("scar_grade_responder", 1), ("scar_grade_responder_two", 2)):
        want = 0.75 * scars.grade_drop_probability(
            0.5, treated, 0.8, OP.scar_grade_mild_depth, OP.scar_grade_obvious_depth,
            OP.scar_grade_sigma, steps=steps,
        )  # fmt: skip
        assert o[name][0, -1] == pytest.approx(float(want), rel=1e-12)
    assert 0.0 < o["scar_grade_responder_two"][0, -1] < o["scar_grade_responder"][0, -1]
    still = run(states(), b)
    assert still["scar_grade_responder_two"][0, -1] == 0.0


def test_a_feature_no_case_has_is_skipped_with_the_same_bits() -> None:
    """Where no case of a batch has a feature (scars, wrinkles, pores, striae, a pigment lesion)
    its outputs are NaN without the arithmetic: the bits (NaN payload included) and the texture
    are those the case gets inside a batch where another case has every feature."""
    rng = np.random.default_rng(21)
    bare = dict(NO_FEATURES)
    full = base(1)
    full = replace(
        full, melanin_index=np.array([40.0]), perilesional_melanin_index=np.array([30.0])
    )
    pair = observe.Baseline(
        **{
            f.name: np.concatenate([getattr(base(1, **bare), f.name), getattr(full, f.name)])
            for f in fields(observe.Baseline)
        }
    )
    y = states(2) * (1.0 + rng.uniform(-0.3, 0.3, (2, T, states(1).shape[2])))
    fl = floors(2, gain=0.2, tether=0.7)
    alone = run(y[:1], base(1, **bare), floors(1, gain=0.2, tether=0.7))
    together = run(y, pair, fl)
    assert list(alone) == list(together)
    for name, arr in alone.items():
        assert arr.tobytes() == together[name][:1].tobytes(), name


@pytest.mark.parametrize("at_once", [True, False])
def test_window_max_is_the_maximum_of_each_window(
    at_once: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The largest value of x inside each window [start, end), every window at once or window by
    window: NaN for a missing window, for a window without an output time and where x is NaN
    inside it."""
    monkeypatch.setattr(observe, "WINDOWS_AT_ONCE", 10**9 if at_once else 0)
    t = np.linspace(0.0, 10.0, 41)
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 1.0, (3, t.size))
    x[2, 20] = np.nan
    starts = np.array([[0.0, 2.0, 7.5], [1.0, np.nan, 9.9], [4.0, 4.9, np.nan]])
    ends = np.array([[2.0, 7.5, 10.0], [3.0, np.nan, 9.95], [4.9, 6.0, np.nan]])
    got = observe.window_max(t, x, starts, ends)
    for b in range(3):
        for k in range(3):
            inside = (t >= starts[b, k]) & (t < ends[b, k])
            want = x[b, inside].max() if inside.any() else np.nan
            assert np.array_equal(got[b, k], want, equal_nan=True), (b, k)
    assert np.isnan(got[2, 1])  # x is NaN inside it

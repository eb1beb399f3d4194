"""Needles: puncture density, depth, channel geometry, layers reached, skin tables.

Published anchors: Dermaroller MF8 geometry (Schwarz & Laaff 2011) → 15.3 punctures/cm² per pass and
≈229 after 15 passes against the ≈250 cm⁻² clinicians quote; insertion depth by study (Kalluri 2011
hairless rat, Donnelly 2010 human OCT, Sasaki 2019 set-depth device); Kalluri 2011 surface diameter;
skin tables (Meng 2022, Egawa 2007, Tsugita 2013, Branchet 1990).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.physics import needles as nd

CM2 = 1e-4  # m² per cm²


@pytest.fixture(scope="module")
def ps() -> ParameterSet:
    return load_parameters()


# --------------------------------------------------------------------------------- density
def test_mf8_roller_density_per_pass_and_after_15_passes(ps: ParameterSet) -> None:
    geo = nd.DeviceGeometry.mf8(ps)
    per_pass = nd.puncture_density(
        nd.ROLLER, 1, geo.needles, drum_diameter=geo.drum_diameter_m, drum_width=geo.drum_width_m
    )
    assert per_pass * CM2 == pytest.approx(192 / (math.pi * 2.0 * 2.0), rel=1e-12)
    assert per_pass * CM2 == pytest.approx(15.3, abs=0.05)
    after15 = nd.puncture_density("roller", 15, 192, drum_diameter=0.02, drum_width=0.02) * CM2
    assert after15 == pytest.approx(229.2, abs=0.1)
    # the clinicians' "about 250 holes/cm² after 15 passes" (secondary) within 10 %
    assert abs(after15 - 250.0) / 250.0 < 0.10


def test_pen_density_formula() -> None:
    # 3 passes, 110 stamps/s, 12 needles, hand 5 cm/s, cartridge 8 mm wide
    n = nd.puncture_density(
        nd.PEN, 3, 12, stroke_frequency=110.0, hand_speed=0.05, cartridge_width=0.008
    )
    assert n == pytest.approx(3 * 110 * 12 / (0.05 * 0.008), rel=1e-12)
    assert n * CM2 == pytest.approx(990.0, rel=1e-12)
    slower = nd.puncture_density(
        nd.PEN, 3, 12, stroke_frequency=110.0, hand_speed=0.025, cartridge_width=0.008
    )
    assert slower == pytest.approx(2.0 * n, rel=1e-12)  # half the speed, twice the punctures


def test_stamp_density_and_mixed_batch() -> None:
    kind = np.array([nd.ROLLER, nd.PEN, nd.STAMP])
    nan = math.nan
    n = nd.puncture_density(
        kind,
        np.array([2.0, 1.0, 4.0]),
        np.array([192.0, 12.0, 36.0]),
        drum_diameter=np.array([0.02, nan, nan]),
        drum_width=np.array([0.02, nan, nan]),
        stroke_frequency=np.array([nan, 100.0, nan]),
        hand_speed=np.array([nan, 0.1, nan]),
        cartridge_width=np.array([nan, 0.01, nan]),
        stamp_area=np.array([nan, nan, 1e-4]),
    )
    assert n * CM2 == pytest.approx([2 * 192 / (math.pi * 4.0), 100 * 12 / (10 * 1.0), 4 * 36])
    # a pen row without a hand speed is NaN, not a silent number
    bad = nd.puncture_density(nd.PEN, 1, 12, stroke_frequency=100.0, cartridge_width=0.01)
    assert np.isnan(bad)


def test_device_codes_are_checked() -> None:
    assert list(nd.device_code(["roller", "pen", "stamp"])) == [0, 1, 2]
    with pytest.raises(ValueError, match="allowed: roller, pen, stamp"):
        nd.device_code("drill")
    with pytest.raises(ValueError):
        nd.puncture_density(3, 1, 10, stamp_area=1e-4)
    # integer-valued codes of any dtype pass; others, negative ones and NaN do not
    assert list(nd.device_code(np.array([2.0, 0.0, 1.0]))) == [2, 0, 1]
    assert list(nd.device_code(np.array([True, False]))) == [1, 0]
    for bad in (np.array([1.5]), np.array([-1]), np.array([3]), np.array([np.nan])):
        with pytest.raises(ValueError, match="allowed: 0 "), np.errstate(invalid="ignore"):
            nd.device_code(bad)


def test_device_geometry_from_input_fields() -> None:
    geo = nd.DeviceGeometry.from_fields(
        {
            "type": "pen",
            "needle_count": 12,
            "needle_diameter_mm": 0.25,
            "frequency_hz": 110,
            "cartridge_width_mm": 8.0,
            "tip": "cone",
            "tip_radius_um": 4.0,
        }
    )
    assert geo.kind == nd.PEN
    assert geo.cartridge_width_m == pytest.approx(0.008)
    assert geo.needle_diameter_m == pytest.approx(2.5e-4)
    assert math.isnan(geo.drum_diameter_m)


# ----------------------------------------------------------------------------- insertion
@pytest.fixture(scope="module")
def npar(ps: ParameterSet) -> nd.NeedleParameters:
    return nd.NeedleParameters.from_parameters(ps)


def _depth(
    kind: str,
    length_m: float | np.ndarray,
    npar: nd.NeedleParameters,
    *,
    species: str = "human",
    tip_m: float = 4e-6,
    needles: float = 192.0,
    freq: float = math.nan,
    skin_m: float = 5e-3,
) -> np.ndarray:
    L = np.atleast_1d(np.asarray(length_m, dtype=float))
    return nd.insertion_depth(
        np.full(L.shape, nd.device_code(kind)),
        L,
        skin_m,
        tip_radius=tip_m,
        stroke_frequency=freq,
        needles=needles,
        params=npar,
        species=species,
    )


def test_depth_formula_exact() -> None:
    # d = min(smooth_min(η (L − δ), d_F), skin): hand-checked numbers
    d = nd.penetration_depth([0.5e-3, 1.5e-3, 3.0e-3], 1.0e-3, 100e-6)
    assert d == pytest.approx([0.4e-3, 1.0e-3, 1.0e-3], rel=1e-12)
    assert nd.penetration_depth(0.2e-3, 1e-3, 250e-6) == 0.0  # shorter than the dimple
    d2 = nd.penetration_depth(1.5e-3, 5e-3, 0.0, 1.0, 1.0e-3, 4.0)
    assert d2 == pytest.approx((1.5e-3**-4 + 1.0e-3**-4) ** -0.25, rel=1e-12)
    assert nd.smooth_min(2.0, np.inf, 4.0) == 2.0 and nd.smooth_min(0.0, 3.0, 4.0) == 0.0
    p = nd.NeedleParameters(0.505, 0.5, 1.5)
    dp = nd.puncture_deflection([4e-6, 16e-6], [0.0, 0.0], p)
    assert dp == pytest.approx([160e-6, 320e-6])  # √(16/4) = 2 with β = 0.5
    assert nd.puncture_deflection(4e-6, 0.15, p) == pytest.approx(80e-6)  # v = v_c halves it
    v = nd.needle_speed(["roller", "pen", "stamp"], 1.5e-3, [math.nan, 110.0, math.nan], p)
    assert v == pytest.approx([0.05, 2 * 2.0e-3 * 110.0, 0.01])
    d_f = nd.force_limited_depth(["roller", "pen", "stamp"], [192, 12, 35], p)
    assert d_f[0] == pytest.approx((5.0 / 36.0 - 0.03) / 100.0)
    assert np.isinf(d_f[1]) and d_f[2] == pytest.approx((5.0 / 35.0 - 0.03) / 100.0)


def test_kalluri_rat_depth_and_diameter(npar: nd.NeedleParameters) -> None:
    """Kalluri 2011 (hairless rat, Dermaroller 770 µm): channels 152.5 ± 9.6 µm deep and
    70.7 ± 9.9 µm wide at the surface. Kalluri calibrates the rat insertion factor (derived from
    this depth), so the depth reproduces it within its SD; the diameter follows from the cone."""
    d = _depth("roller", 770e-6, npar, species="rat")[0]
    assert d * 1e6 == pytest.approx(152.5, abs=9.6)
    a = nd.channel_surface_radius(140e-6, npar.channel_radius_ratio, d, npar.cone_length)
    assert 2 * a * 1e6 == pytest.approx(70.7, abs=9.9)
    # rat skin takes 0.1-0.3 of the needle length at every clinical length
    L = np.array([0.25, 0.5, 1.0, 1.5, 2.0]) * 1e-3
    frac = _depth("roller", L, npar, species="rat") / L
    assert np.all((frac > 0.1) & (frac < 0.3))
    # and the human channel of the same needle is several times deeper
    assert _depth("roller", 770e-6, npar)[0] > 3.0 * d


def test_human_depths_against_published_checks(npar: nd.NeedleParameters) -> None:
    """Human skin (independent of every human insertion number: η_human = 1 is an estimate):
    Donnelly 2010 OCT in vivo, 600 µm polymer needles pressed by hand, 'extended approximately
    460 µm' (a slowly pressed array here, geometric depth: the application force and needle count
    are not in our notes, so the force limit is left out; within 15%); Sasaki 2019, set-depth
    device ex vivo, channels 'closely approximated' the 0.5 and 1.5 mm lengths (a pen here:
    ≥ 85% of L)."""
    dimple = nd.puncture_deflection(4e-6, npar.stamp_speed, npar)
    stamp = nd.penetration_depth(600e-6, np.inf, dimple, npar.insertion_factor_of("human"))
    assert abs(stamp * 1e6 - 460.0) / 460.0 < 0.15
    pen = _depth("pen", np.array([0.5e-3, 1.5e-3]), npar, needles=12.0, freq=110.0)
    assert np.all(pen / np.array([0.5e-3, 1.5e-3]) >= 0.85)
    # hand rollers lose more: 0.5-0.85 of the length at 0.25-1.0 mm (the "50-70%" often quoted
    # for clinical rollers is recalled, not measured), and the force caps the depth near 1.1 mm
    L = np.array([0.25, 0.5, 0.75, 1.0]) * 1e-3
    roller = _depth("roller", L, npar) / L
    assert np.all((roller >= 0.5) & (roller <= 0.85))
    assert _depth("roller", 2.0e-3, npar)[0] < 1.2e-3


def test_depth_depends_on_device_tip_speed_and_species(npar: nd.NeedleParameters) -> None:
    L = 1.0e-3
    roller = _depth("roller", L, npar)[0]
    pen = _depth("pen", L, npar, needles=12.0, freq=110.0)[0]
    assert pen > roller  # a fast, motor-driven stroke dimples less and is not force-limited
    blunt = _depth("roller", L, npar, tip_m=25e-6)[0]
    assert blunt < roller  # a blunter tip dimples more
    slow_pen = _depth("pen", L, npar, needles=12.0, freq=20.0)[0]
    assert slow_pen < pen  # slower strokes dimple more
    assert _depth("roller", L, npar, species="rat")[0] < 0.3 * roller
    with pytest.raises(ValueError, match="allowed: human, rat"):
        _depth("roller", L, npar, species="pig")


def test_channel_radius_is_a_cone() -> None:
    z = np.array([-1e-6, 0.0, 50e-6, 100e-6, 200e-6, 201e-6])
    r = nd.channel_radius(z, 200e-6, 35e-6)
    assert r == pytest.approx([0.0, 35e-6, 26.25e-6, 17.5e-6, 0.0, 0.0], abs=1e-18)
    assert np.all(nd.channel_radius(z, 0.0, 35e-6) == 0.0)


def test_layer_reach_and_flags() -> None:
    layers = np.array([[15e-6, 55e-6, 200e-6, 730e-6]] * 4)  # total 1000 um
    depth = np.array([10e-6, 100e-6, 300e-6, 1000e-6])
    reach = nd.layer_reach(depth, layers)
    assert reach.sum(axis=1) == pytest.approx(depth, rel=1e-12)
    assert reach[1] == pytest.approx([15e-6, 55e-6, 30e-6, 0.0], abs=1e-18)
    assert list(reach[0] > 0) == [True, False, False, False]
    # capillary loops at half the papillary dermis: 70 + 100 = 170 um
    caps = nd.reaches_capillaries(depth, layers, 0.5)
    assert list(caps) == [False, False, True, True]
    assert not nd.reaches_capillaries(170e-6, layers[0], 0.5)
    assert nd.reaches_capillaries(170.001e-6, layers[0], 0.5)


def test_channels_glue(ps: ParameterSet) -> None:
    geo = nd.DeviceGeometry.mf8(ps)
    par = nd.NeedleParameters.from_parameters(ps)
    skin = nd.skin_layers_batch(["cheek"] * 3, 35, "female", ps)
    length = np.array([0.25e-3, 1.5e-3, 3.0e-3])
    ch = nd.channels(geo, length, np.full(3, 15), np.full(3, np.nan), skin, par)
    assert ch.density_m2 * CM2 == pytest.approx(229.18, abs=0.01)
    free = nd.insertion_depth(
        np.zeros(3, dtype=int), length, np.inf, tip_radius=geo.tip_radius_m,
        stroke_frequency=np.nan, needles=192, params=par,
    )  # fmt: skip
    assert ch.depth_m == pytest.approx(np.minimum(free, skin.total_m))
    assert ch.depth_m[0] == pytest.approx(free[0])  # 0.25 mm: not capped
    assert list(ch.reaches_subcutis) == list(free >= skin.total_m)
    assert list(ch.reaches_capillaries) == [False, True, True]
    # the 0.25 mm channel stops inside the cone: narrower than the full-shank channels
    assert ch.surface_radius_m[1] == pytest.approx(0.505 * 0.125e-3)
    assert ch.surface_radius_m[0] < ch.surface_radius_m[1]
    assert len(ch.select(1)) == 1 and ch.select(1).depth_m[0] == ch.depth_m[1]


# ------------------------------------------------------------------------------ roller clefts
@pytest.mark.parametrize("length_mm", [0.25, 0.5, 1.0, 1.5, 2.0])
def test_roller_cleft_width_and_area_against_rolling_geometry(length_mm: float) -> None:
    """A fully inserted needle on a 1 cm drum: at the surface the cleft is the surface travel
    2R(tan θ₀ − θ₀), θ₀ = arccos(R/(R + L)) (29.6° and 1.03 mm at 1.5 mm); it closes at the tip;
    its area matches a 200,001-point trapezoid of the width to 1e-5."""
    R, L = 10e-3, length_mm * 1e-3
    theta = math.acos(R / (R + L))
    assert nd.roller_cleft_width(0.0, L, L, R) == pytest.approx(2 * R * (math.tan(theta) - theta))
    assert nd.roller_cleft_width(L, L, L, R) == 0.0
    assert nd.roller_cleft_width(-1e-6, L, L, R) == 0.0
    z = np.linspace(0.0, L, 200_001)
    exact = np.trapezoid(nd.roller_cleft_width(z, L, L, R), z)
    assert nd.roller_cleft_area(0.0, L, L, R) == pytest.approx(exact, rel=1e-5)
    if length_mm == 1.5:
        assert math.degrees(theta) == pytest.approx(29.6, abs=0.05)
        assert nd.roller_cleft_width(0.0, L, L, R) == pytest.approx(1.028e-3, abs=1e-6)
    # below a depth: the area between z_top and the tip, nothing when z_top is past the tip
    half = nd.roller_cleft_area(L / 2, L, L, R)
    keep = z >= L / 2
    assert half == pytest.approx(np.trapezoid(nd.roller_cleft_width(z[keep], L, L, R), z[keep]),
                                 rel=1e-4)  # fmt: skip
    assert nd.roller_cleft_area(L, L, L, R) == 0.0


def test_roller_cleft_partial_insertion_no_drum_and_monotone() -> None:
    """A needle inserted to d < L sweeps less than one inserted fully; a device without a drum
    (NaN radius) sweeps nothing; the cleft grows with the needle length and shrinks with the drum."""
    R, L = 10e-3, 1.5e-3
    assert 0.0 < nd.roller_cleft_area(0.0, 0.9e-3, L, R) < nd.roller_cleft_area(0.0, L, L, R)
    assert nd.roller_cleft_area(0.0, L, L, np.nan) == 0.0
    lengths = np.linspace(0.1e-3, 2.5e-3, 25)
    area = nd.roller_cleft_area(0.0, lengths, lengths, R)
    assert np.all(np.diff(area) > 0)
    assert nd.roller_cleft_area(0.0, L, L, 5e-3) > nd.roller_cleft_area(0.0, L, L, R)


def test_channels_cleft_volume_only_for_rollers_below_the_loops(ps: ParameterSet) -> None:
    """``channels`` gives a roller puncture κ × needle diameter × the cleft area below the
    capillary loops; a pen's or a stamp's 0; a roller channel that stops above the loops 0."""
    par = nd.NeedleParameters.from_parameters(ps)
    skin = nd.skin_layers_batch(["cheek"] * 3, 35, "female", ps)
    length = np.array([0.1e-3, 1.0e-3, 1.5e-3])
    roller = nd.DeviceGeometry.mf8(ps)
    ch = nd.channels(roller, length, np.full(3, 15), np.full(3, np.nan), skin, par)
    loops = nd.capillary_loop_depth(skin.stack(), par.capillary_loop_fraction)
    want = (
        par.roller_sweep_fraction
        * roller.needle_diameter_m
        * nd.roller_cleft_area(loops, ch.depth_m, length, roller.drum_diameter_m / 2)
    )
    assert ch.cleft_volume_m3 == pytest.approx(want)
    assert ch.cleft_volume_m3[0] == 0.0 and not ch.reaches_capillaries[0]
    assert 0.0 < ch.cleft_volume_m3[1] < ch.cleft_volume_m3[2]
    pen = nd.DeviceGeometry.from_fields(
        {"type": "pen", "needle_count": 12, "needle_diameter_mm": 0.25, "frequency_hz": 110.0,
         "cartridge_width_mm": 7.0}
    )  # fmt: skip
    stamp = nd.DeviceGeometry.from_fields(
        {"type": "stamp", "needle_count": 35, "needle_diameter_mm": 0.25, "stamp_area_cm2": 0.5}
    )
    for geo, speed in ((pen, 0.02), (stamp, np.nan)):
        other = nd.channels(geo, length, np.full(3, 3), np.full(3, speed), skin, par)
        assert np.all(other.cleft_volume_m3 == 0.0)
    assert ch.select(2).cleft_volume_m3[0] == ch.cleft_volume_m3[2]


# -------------------------------------------------------------------------------- skin
def test_skin_tables_cheek_female_at_reference_age(ps: ParameterSet) -> None:
    s = nd.skin_layers("cheek", 30.0, "female", ps)
    assert s.stratum_corneum_m[0] * 1e6 == pytest.approx(16.8)  # Egawa 2007
    assert s.viable_epidermis_m[0] * 1e6 == pytest.approx(54.5)  # Tsugita 2013 68.6 - 14.1
    assert s.dermis_thickness_m[0] * 1e3 == pytest.approx(0.87)  # Meng 2022 zygoma, women
    assert s.papillary_thickness_m[0] / s.dermis_thickness_m[0] == pytest.approx(0.2)
    assert s.total_m[0] == pytest.approx(s.stack().sum())


def test_skin_sex_and_ageing(ps: ParameterSet) -> None:
    f30 = nd.skin_layers("forehead", 30.0, "female", ps)
    m30 = nd.skin_layers("forehead", 30.0, "male", ps)
    assert m30.dermis_thickness_m[0] * 1e3 == pytest.approx(1.17)  # Meng 2022 men
    assert f30.dermis_thickness_m[0] * 1e3 == pytest.approx(0.86)  # Meng 2022 women
    assert m30.viable_epidermis_m[0] > f30.viable_epidermis_m[0]
    f60 = nd.skin_layers("forehead", 60.0, "female", ps)
    m60 = nd.skin_layers("forehead", 60.0, "male", ps)
    # Branchet 1990: epidermis -5.7 %/decade (women), -7.2 % (men); dermis -6 %/decade
    assert f60.viable_epidermis_m[0] / f30.viable_epidermis_m[0] == pytest.approx(0.943**3)
    assert m60.viable_epidermis_m[0] / m30.viable_epidermis_m[0] == pytest.approx(0.928**3)
    assert f60.dermis_thickness_m[0] / f30.dermis_thickness_m[0] == pytest.approx(0.94**3)
    assert f60.stratum_corneum_m[0] == f30.stratum_corneum_m[0]
    f20 = nd.skin_layers("forehead", 20.0, "female", ps)
    assert f20.stack() == pytest.approx(f30.stack())  # no change below the reference age


def test_skin_batch_covers_every_site(ps: ParameterSet) -> None:
    s = nd.skin_layers_batch(list(nd.SITES), 45.0, "female", ps)
    assert s.stack().shape == (len(nd.SITES), 4)
    assert np.all(s.stack() > 0)
    assert np.all((s.total_m > 0.5e-3) & (s.total_m < 3e-3))
    idx = {k: i for i, k in enumerate(nd.SITES)}
    assert s.total_m[idx["periorbital"]] == s.total_m.min()  # thinnest: eyelid (Meng, Chopra)
    assert s.dermis_thickness_m[idx["abdomen"]] > s.dermis_thickness_m[idx["cheek"]]
    rep = s.repeat(3)
    assert len(rep) == 3 * len(nd.SITES)
    assert rep.stack()[3] == pytest.approx(s.stack()[1])
    # the skin tables read beforehand give the same layers
    again = nd.skin_layers_batch(
        list(nd.SITES), 45.0, "female", nd.SkinParameters.from_parameters(ps)
    )
    assert again.stack().tobytes() == s.stack().tobytes()
    with pytest.raises(ValueError, match="allowed: forehead"):
        nd.skin_layers_batch(["elbow"], 40.0, "female", ps)
    with pytest.raises(ValueError, match="allowed: female, male"):
        nd.skin_layers_batch(["cheek"], 40.0, "robot", ps)


# ----------------------------------------------------------------------- properties
lengths = st.floats(0.0, 3e-3)
passes_st = st.integers(0, 50)


@settings(max_examples=200, deadline=None)
@given(
    lengths,
    lengths,
    passes_st,
    passes_st,
    st.sampled_from(["roller", "pen", "stamp"]),
    st.floats(0.3e-3, 3e-3),
    st.floats(0.5e-6, 50e-6),
)
def test_monotone_in_length_and_passes(
    l1: float, l2: float, p1: int, p2: int, kind: str, skin: float, tip: float
) -> None:
    p = nd.NeedleParameters(0.505, 0.5, 1.5, insertion_factor={"human": 1.0, "rat": 0.24})
    lo, hi = sorted((l1, l2))
    d_lo, d_hi = nd.insertion_depth(
        np.full(2, nd.device_code(kind)), [lo, hi], skin, tip_radius=tip,
        stroke_frequency=110.0, needles=24, params=p,
    )  # fmt: skip
    assert 0.0 <= d_lo <= d_hi <= min(skin, hi)
    plo, phi = sorted((p1, p2))
    n = nd.puncture_density(nd.ROLLER, [plo, phi], 192, drum_diameter=0.02, drum_width=0.02)
    assert 0.0 <= n[0] <= n[1] and np.all(np.isfinite(n))


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.0, 4e-3),
    st.lists(st.floats(1e-6, 2e-3), min_size=4, max_size=4),
    st.floats(-0.5, 1.5),
)
def test_reach_bounded_and_consistent(depth: float, thick: list[float], loop: float) -> None:
    layers = np.array([thick])
    reach = nd.layer_reach([depth], layers)
    assert np.all(reach >= 0.0) and np.all(reach <= layers)
    assert reach.sum() == pytest.approx(min(depth, layers.sum()), rel=1e-12, abs=1e-18)
    flag = nd.reaches_capillaries([depth], layers, loop)
    assert flag.dtype == bool


# ------------------------------------------------------- parameters of several sets, per row
def test_power_with_an_exponent_per_row_has_the_bits_of_each_exponent_alone() -> None:
    """``power(x, p)`` with an array p: each element as ``x ** float(p_i)`` on an array, also for
    the exponents NumPy computes by square, square root, reciprocal (np.power differs there in
    the last bit for some x: the comparison is not vacuous)."""
    x = np.random.default_rng(0).uniform(1e-3, 30.0, 4000)
    exponents = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 0.44, 4.0, -0.25])
    p = np.repeat(exponents, x.size // exponents.size)
    got = nd.power(x, p)
    for e in exponents:
        at = p == e
        assert np.array_equal(got[at], x[at] ** e), e
    assert not np.array_equal(np.power(x, np.full(x.size, 0.5)), x**0.5)
    assert np.array_equal(nd.power(x, 0.5), x**0.5)  # a number: as before


def test_needle_coefficients_per_row_give_each_sets_numbers(ps: ParameterSet) -> None:
    """NeedleParameters whose fields are arrays over the rows (one value per parameter set, as
    ``engine.prepare.prepare_sets`` builds them): the channels of each row are those of its own
    set's scalar coefficients, bit for bit, for the three device kinds."""
    import dataclasses

    from microneedling.parameters.sampling import sample_parameter_sets

    sets = [ps, *sample_parameter_sets(ps, 5, 2, posterior=False)]
    own = [nd.NeedleParameters.from_parameters(s) for s in sets]
    assert own[0].tip_exponent == 0.5 and own[0].smoothness == 4.0  # fast-path exponents
    n = 3  # rows per set
    rows: dict[str, object] = {}
    for f in dataclasses.fields(nd.NeedleParameters):
        if f.name == "insertion_factor":
            rows[f.name] = {
                k: np.repeat([o.insertion_factor[k] for o in own], n)
                for k in own[0].insertion_factor
            }
        else:
            rows[f.name] = np.repeat([getattr(o, f.name) for o in own], n)
    stacked = nd.NeedleParameters(**rows)  # type: ignore[arg-type]
    length = np.tile([0.5e-3, 1.5e-3, 2.5e-3], len(sets))
    skin = nd.skin_layers_batch(["cheek"] * length.size, 40.0, "female", ps)
    for geometry in (
        nd.DeviceGeometry.mf8(ps),
        nd.DeviceGeometry(kind=nd.PEN, needles=12, needle_diameter_m=2.5e-4,
                          stroke_frequency_hz=110.0, cartridge_width_m=8e-3, tip_radius_m=9e-6),
        nd.DeviceGeometry(kind=nd.STAMP, needles=35, needle_diameter_m=2.5e-4, stamp_area_m2=1e-4,
                          tip_radius_m=2.5e-6),
    ):  # fmt: skip
        # (tip radii whose (r/r_ref)**beta a NumPy array computes 1 ulp off the scalar for some
        # draw: the rows must be raised as the scalar of one set is)
        speed = np.full(length.size, 0.05 if geometry.kind == nd.PEN else np.nan)
        got = nd.channels(geometry, length, np.full(length.size, 4.0), speed, skin, stacked)
        for i, o in enumerate(own):
            at = slice(i * n, (i + 1) * n)
            want = nd.channels(
                geometry, length[at], np.full(n, 4.0), speed[at], nd.SkinLayers(
                    *(getattr(skin, f.name)[at] for f in dataclasses.fields(nd.SkinLayers))
                ), o,
            )  # fmt: skip
            for f in dataclasses.fields(nd.Channels):
                assert np.array_equal(getattr(got, f.name)[at], getattr(want, f.name)), f.name
        assert len(set(got.depth_m.tolist())) > n  # the sets do differ
    # the deflection itself, where a last-bit difference is not rounded away by the depth
    speed = np.linspace(0.0, 0.2, length.size)
    for tip in (9e-6, 2.5e-6, 13e-6, 6e-6):
        got_d = nd.puncture_deflection(tip, speed, stacked)
        for i, o in enumerate(own):
            at = slice(i * n, (i + 1) * n)
            assert np.array_equal(got_d[at], nd.puncture_deflection(tip, speed[at], o)), tip


def test_skin_tables_per_case_give_each_sets_layers(ps: ParameterSet) -> None:
    """SkinParameters holding one value per case (several sets side by side, per-site tables as
    arrays over the cases): each case's layers as under its own set's numbers, bit for bit."""
    import dataclasses

    from microneedling.parameters.sampling import sample_parameter_sets

    sets = [ps, *sample_parameter_sets(ps, 4, 8, posterior=False)]
    own = [nd.SkinParameters.from_parameters(s) for s in sets]
    sites = ["cheek", "forehead", "abdomen", "neck"]
    age = np.array([25.0, 47.0, 63.0, 81.0])
    male = np.array([0.0, 1.0, 1.0, 0.0])
    n = len(sites)
    per_case: dict[str, object] = {}
    for f in dataclasses.fields(nd.SkinParameters):
        v = getattr(own[0], f.name)
        if isinstance(v, tuple):
            per_case[f.name] = tuple(
                np.repeat([getattr(o, f.name)[j] for o in own], n) for j in range(len(v))
            )
        else:
            per_case[f.name] = np.repeat([getattr(o, f.name) for o in own], n)
    idx = np.tile(nd.site_index(sites), len(sets))
    got = nd.skin_layers_from_parameters(
        idx,
        np.tile(age, len(sets)),
        np.tile(male, len(sets)),
        nd.SkinParameters(**per_case),  # type: ignore[arg-type]
    ).stack()
    for i, o in enumerate(own):
        want = nd.skin_layers_from_parameters(nd.site_index(sites), age, male, o).stack()
        assert np.array_equal(got[i * n : (i + 1) * n], want)
    assert len({float(x) for x in got[::n, 2]}) > 1  # the sets differ

"""Injury: injured volume fraction per layer against exact integrals, limits and monotonicity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from microneedling.parameters.parameter_set import load_parameters
from microneedling.physics import injury as inj
from microneedling.physics import needles as nd

LAYERS = np.array([[15e-6, 55e-6, 200e-6, 730e-6]])  # SC, VE, papillary, reticular (1 mm)
BOUNDS = [(0.0, 70e-6), (70e-6, 270e-6), (270e-6, 1000e-6)]  # model layers


def test_cone_volume_total_and_between() -> None:
    a, d = 35e-6, 300e-6
    assert inj.cone_volume_between(a, d, 0.0, d) == pytest.approx(np.pi * a**2 * d / 3, rel=1e-14)
    assert inj.cone_volume_between(a, d, 0.0, 2 * d) == pytest.approx(np.pi * a**2 * d / 3)
    top = inj.cone_volume_between(a, d, 0.0, 100e-6)
    ref, _ = quad(lambda z: np.pi * (a * (1 - z / d)) ** 2, 0.0, 100e-6, epsabs=0, epsrel=1e-13)
    assert top == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("depth", [50e-6, 150e-6, 500e-6, 1000e-6])
def test_raw_fraction_is_the_cone_volume_integral(depth: float) -> None:
    n, a, w = 250e4, 35e-6, 1.5  # 250 cm^-2
    raw = inj.injured_fraction([n], [a], [depth], LAYERS, w, saturate=False)[0]
    for k, (z0, z1) in enumerate(BOUNDS):
        hi = min(z1, depth)
        vol = 0.0
        if hi > z0:
            vol, _ = quad(
                lambda z: np.pi * (w * a * (1 - z / depth)) ** 2, z0, hi, epsabs=0, epsrel=1e-13
            )
        assert raw[k] == pytest.approx(n * vol / (z1 - z0), rel=1e-11, abs=1e-300)


@pytest.mark.parametrize("n_cm2", [10.0, 250.0, 3000.0, 1e5])
def test_saturated_fraction_is_the_poisson_coverage_integral(n_cm2: float) -> None:
    n, a, w, depth = n_cm2 * 1e4, 60e-6, 2.0, 800e-6
    phi = inj.injured_fraction([n], [a], [depth], LAYERS, w)[0]
    for k, (z0, z1) in enumerate(BOUNDS):
        hi = min(z1, depth)
        cov, _ = quad(
            lambda z: 1 - np.exp(-n * np.pi * (w * a * (1 - z / depth)) ** 2),
            z0,
            hi,
            epsabs=0,
            epsrel=1e-13,
            limit=200,
        )
        assert phi[k] == pytest.approx(cov / (z1 - z0), rel=1e-10)
    assert np.all(phi <= 1.0)


def test_small_density_limit_equals_raw_and_cylinder_limit() -> None:
    args = ([1e2], [35e-6], [600e-6], LAYERS, 1.5)  # 0.01 cm^-2: no overlap
    phi = inj.injured_fraction(*args)
    raw = inj.injured_fraction(*args, saturate=False)
    assert phi == pytest.approx(raw, rel=1e-6)
    # near the surface of a deep cone the channel is a cylinder: phi = 1 - exp(-raw)
    thin = np.array([[0.5e-6, 0.5e-6, 1e-6, 1e-6]])  # 1 um epidermis, depth 10 cm
    big = ([3e7], [40e-6], [0.1], thin, 1.0)
    raw_c = inj.injured_fraction(*big, saturate=False)[0, 0]
    assert inj.injured_fraction(*big)[0, 0] == pytest.approx(1 - np.exp(-raw_c), rel=1e-4)


def test_zero_passes_or_length_gives_zero() -> None:
    assert np.all(inj.injured_fraction([0.0], [35e-6], [500e-6], LAYERS, 1.5) == 0.0)
    assert np.all(inj.injured_fraction([250e4], [35e-6], [0.0], LAYERS, 1.5) == 0.0)
    ps = load_parameters()
    geo = nd.DeviceGeometry.mf8(ps)
    par = nd.NeedleParameters.from_parameters(ps)
    skin = nd.skin_layers_batch(["cheek", "cheek"], 40, "male", ps)
    ch = nd.channels(geo, [0.0, 1.5e-3], [10, 0], [np.nan, np.nan], skin, par)
    phi = inj.injured_fraction_from_channels(ch, skin, ps)
    assert np.all(phi == 0.0)
    ch2 = nd.channels(geo, [1.5e-3], [10], [np.nan], skin.select(0), par)
    phi2 = inj.injured_fraction_from_channels(ch2, skin.select(0), par)
    assert np.all(phi2 > 0.0) and np.all(phi2 < 1.0)


def test_deep_channel_injures_every_layer_shallow_only_epidermis() -> None:
    phi = inj.injured_fraction(
        [250e4, 250e4], [60e-6] * 2, [60e-6, 900e-6], np.repeat(LAYERS, 2, 0)
    )
    assert phi[0, 0] > 0 and phi[0, 1] == 0 and phi[0, 2] == 0
    assert np.all(phi[1] > 0)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.0, 5e7),  # up to 5000 cm^-2
    st.floats(0.0, 2e-3),
    st.floats(0.0, 2e-3),
    st.floats(1e-6, 150e-6),
    st.floats(1.0, 3.0),
    st.lists(st.floats(1e-6, 2e-3), min_size=4, max_size=4),
)
def test_bounded_and_monotone(
    n: float, d1: float, d2: float, a: float, w: float, thick: list[float]
) -> None:
    layers = np.array([thick, thick])
    lo, hi = sorted((d1, d2))
    phi = inj.injured_fraction([n, n], [a, a], [lo, hi], layers, w)
    assert np.all(np.isfinite(phi)) and np.all(phi >= 0.0) and np.all(phi <= 1.0)
    assert np.all(phi[1] >= phi[0] - 1e-15)  # deeper never injures less
    more = inj.injured_fraction([n, 2 * n + 1.0], [a, a], [hi, hi], layers, w)
    assert np.all(more[1] >= more[0] - 1e-15)  # more passes never injure less
    raw = inj.injured_fraction([n], [a], [hi], layers[:1], w, saturate=False)
    assert np.all(phi[1] <= raw[0] * (1 + 1e-12) + 1e-300)  # overlap only removes volume


def test_cleft_fraction_is_a_saturating_volume_fraction() -> None:
    """1 − exp(−n V/T): n V/T to first order, below 1 (to rounding) however dense, 0 without clefts, punctures
    or dermis, non-decreasing in density."""
    n, v, t = 229e4, 2e-13, 0.8e-3  # 229/cm², 0.2 nl per puncture, 0.8 mm of dermis
    raw = n * v / t
    assert inj.cleft_fraction(n, v, t) == pytest.approx(raw, rel=raw)
    assert inj.cleft_fraction(1e10, v, t) < 1.0
    assert inj.cleft_fraction(1e12, v, t) == pytest.approx(1.0)
    assert inj.cleft_fraction(n, 0.0, t) == 0.0
    assert inj.cleft_fraction(0.0, v, t) == 0.0
    assert inj.cleft_fraction(n, v, 0.0) == 0.0
    dens = np.linspace(0.0, 2e7, 50)
    assert np.all(np.diff(inj.cleft_fraction(dens, v, t)) > 0)

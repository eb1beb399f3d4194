"""Transport: Potts–Guy unit pin, Renkin, the leaky-channel conductance against an ODE solution,
the finite-dose integrator against exact solutions and Radau, conservation, and the qualitative
claims (enhancement, resealing, occlusion, deeper needles deliver more)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_bvp, solve_ivp
from scipy.linalg import expm

from microneedling.errors import ParameterError
from microneedling.parameters.molecules import Molecule, load_molecules, shipped_molecules
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.physics import needles as nd
from microneedling.physics import transport as tr

CM_H = 1e-2 / 3600.0  # m/s per cm/h
SHIPPED = tuple(shipped_molecules())  # the products a course may name (the input schema's list)


@pytest.fixture(scope="module")
def ps() -> ParameterSet:
    return load_parameters()


@pytest.fixture(scope="module")
def tp(ps: ParameterSet) -> tr.TransportParameters:
    return tr.TransportParameters.from_parameters(ps)


@pytest.fixture(scope="module")
def mols() -> dict[str, Molecule]:
    return load_molecules()


CHEEK = np.array([[16.8e-6, 54.5e-6, 174e-6, 696e-6]])
_MOLS = load_molecules()
_TP = tr.TransportParameters.from_parameters(load_parameters())


def run(
    mol: Molecule,
    tp: tr.TransportParameters,
    *,
    n_cm2: float = 229.0,
    a: float = 63e-6,
    depth: float = 500e-6,
    c0: float = 50.0,
    h: float = 20e-6,
    hours: float = 1.0,
    occluded: bool = False,
    layers: np.ndarray = CHEEK,
    **kw: object,
) -> tr.Absorption:
    return tr.absorb(
        tr.Solute.from_molecules([mol]),
        c0,
        h,
        hours * 3600.0,
        n_cm2 * 1e4,
        a,
        depth,
        layers,
        occluded,
        tp,
        **kw,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------ intact skin
def test_potts_guy_unit_pin_niacinamide(tp: tr.TransportParameters) -> None:
    kp = float(tr.potts_guy_kp(-0.37, 122.1, tp))  # m/s
    # log10 kp[cm/s] = -6.3 + 0.71(-0.37) - 0.0061(122.1) = -7.3075 -> 4.93e-8 cm/s
    assert kp / 1e-2 == pytest.approx(4.93e-8, rel=0.01)
    assert kp / CM_H == pytest.approx(1.8e-4, rel=0.03)  # cm/h (models.md B.1 table)
    # a 3600x slip (treating the cm/s constant as cm/h or vice versa) cannot pass
    assert 1.5e-4 < kp / CM_H < 2.1e-4
    assert kp == pytest.approx(10 ** (-7.3075) * 1e-2, rel=1e-3)


def test_dermwin_fixture_chlorpyrifos(tp: tr.TransportParameters) -> None:
    kp = float(tr.dermwin_kp(4.96, 350.59, tp))
    assert kp / CM_H == pytest.approx(0.0334, rel=0.05)  # DERMWIN output, 5 % (rounded coeffs)


def test_intact_pathways(tp: tr.TransportParameters, mols: dict[str, Molecule]) -> None:
    """Parallel routes: lipid (neutral fraction at the vehicle pH + ion pairs, Potts-Guy domain
    only) + hindered polar pores, each against its closed form."""
    sol = tr.Solute.from_molecules([mols[k] for k in SHIPPED])
    path = tr.intact_pathways(sol, tp)
    kp = dict(zip(SHIPPED, path.total, strict=True))
    lipid = dict(zip(SHIPPED, path.lipid, strict=True))
    polar = dict(zip(SHIPPED, path.polar, strict=True))
    assert tr.intact_kp(sol, tp) == pytest.approx(path.lipid + path.polar, rel=1e-15)
    for k in ("hyaluronic_acid_50kda", "hyaluronic_acid_1mda"):
        assert kp[k] == 0.0, k  # larger than the SC's aqueous pores and outside Potts-Guy
    for k in SHIPPED:
        m = mols[k]
        r = (
            m.radius_m
            if math.isfinite(m.radius_m)
            else tr.stokes_einstein_radius(m.d_aq, tp.water_viscosity)
        )
        expect = tp.polar_pathway_coefficient / math.sqrt(m.mw_g_per_mol)
        expect *= float(tr.renkin_hindrance(r / tp.polar_pore_radius))
        assert polar[k] == pytest.approx(expect, rel=1e-12), k
        assert polar[k] < 2.0e-5 * CM_H, k  # c / sqrt(58.4) for NaCl at most
        if m.mw_g_per_mol > tp.intact_mw_limit or not math.isfinite(m.log_kow):
            assert lipid[k] == 0.0, k  # outside the Potts-Guy domain: no lipid route
    # neutral molecules: Potts-Guy itself
    for k in ("niacinamide", "caffeine", "retinol"):
        m = mols[k]
        assert lipid[k] == pytest.approx(float(tr.potts_guy_kp(m.log_kow, m.mw_g_per_mol, tp)))
    assert kp["caffeine"] / CM_H == pytest.approx(1.1e-4, rel=0.1)  # models.md B.1 table (+polar)
    # ascorbic acid at its formulation pH 3.2 (molecules.toml vehicle_ph): 90% neutral
    m = mols["ascorbic_acid"]
    fn = 1.0 / (1.0 + 10.0 ** (3.2 - m.pka))
    pg = float(tr.potts_guy_kp(m.log_kow, m.mw_g_per_mol, tp))
    pair = float(tr.potts_guy_kp(m.log_kow - tp.ion_pair_drop, m.mw_g_per_mol, tp))
    assert lipid["ascorbic_acid"] == pytest.approx(fn * pg + (1 - fn) * pair, rel=1e-12)
    # tranexamic acid: a zwitterion takes Potts-Guy of its log Kow (its distribution coefficient)
    m = mols["tranexamic_acid"]
    assert lipid["tranexamic_acid"] == pytest.approx(
        float(tr.potts_guy_kp(m.log_kow, m.mw_g_per_mol, tp))
    )
    # a permanent ion with no log Kow (saline, calcein) has the polar route only
    assert lipid["saline"] == 0.0 and lipid["calcein"] == 0.0
    # bigger solutes are more hindered on the polar route
    assert polar["tranexamic_acid"] > polar["palmitoyl_pentapeptide_4"] > polar["insulin"]


def test_ascorbic_acid_lipid_route_falls_with_vehicle_ph(
    tp: tr.TransportParameters, mols: dict[str, Molecule]
) -> None:
    """The neutral fraction of an acid falls tenfold per pH unit above its pKa: ascorbic acid's
    lipid route falls about 20-fold from its formulation pH 3.2 to skin pH 5.5 (design: 6.7e-6 to
    3.6e-7 cm/h), while the polar route does not depend on pH."""
    sol = tr.Solute.from_molecules([mols["ascorbic_acid"]] * 3)
    path = tr.intact_pathways(sol, tp, [3.2, 5.5, 7.0])
    assert path.lipid[0] / CM_H == pytest.approx(6.7e-6, rel=0.05)
    assert path.lipid[1] / CM_H == pytest.approx(3.6e-7, rel=0.1)
    assert path.lipid[0] > path.lipid[1] > path.lipid[2] > 0.0
    assert path.polar[0] == path.polar[1] == path.polar[2]
    assert path.neutral_fraction == pytest.approx(
        1.0 / (1.0 + 10.0 ** (np.array([3.2, 5.5, 7.0]) - 4.17)), rel=1e-12
    )


def test_renkin_values() -> None:
    lam = np.array([0.0, 0.01, 0.05, 0.1, 0.2, 0.4, 1.0, 2.0])
    h = tr.renkin_hindrance(lam)
    assert h == pytest.approx([1.0, 0.959, 0.808, 0.641, 0.381, 0.102, 0.0, 0.0], abs=6e-4)


def test_stokes_einstein(tp: tr.TransportParameters) -> None:
    # insulin monomer R_h 1.3 nm <-> D 1.9e-10 m2/s at 25 C (models.md B.5)
    r = tr.stokes_einstein_radius(1.9e-10, tp.water_viscosity)
    assert r * 1e9 == pytest.approx(1.3, rel=0.01)
    # small solute: D 8.4e-10 (niacinamide estimate) -> about 0.29 nm
    assert tr.stokes_einstein_radius(8.4e-10, tp.water_viscosity) * 1e9 == pytest.approx(
        0.292, abs=0.002
    )


# ------------------------------------------------------------------- channel conductance
def test_series_pore_formula_and_notes_example() -> None:
    # models.md C.4: niacinamide, D_pore 8e-10, D_t 2e-10, a 35 um, d 150 um -> g = 1.2e-14 m3/s,
    # n g = 3.0e-8 m/s at 250 cm^-2 (K = 1 in the notes)
    a, d, dp, dt = 35e-6, 150e-6, 8e-10, 2e-10
    g = tr.pore_conductance(a, d, 15e-6, dp, dt, 1.0, 5e-10, 3.5e-4, wall_exchange=False)
    exact = 1.0 / (d / (math.pi * a**2 * dp) + 1.0 / (4 * a * dt))
    assert g == pytest.approx(exact, rel=1e-13)
    assert g == pytest.approx(1.2e-14, rel=0.02)
    assert 250e4 * g == pytest.approx(3.0e-8, rel=0.02)


def _fin_reference(
    a: float, ell: float, dp: float, dt: float, kt: float, kcl: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """Numerical fin: K_ax c'' = h_w c on [0, ell], c(0) = 1, -K_ax c'(ell) = G_tip c(ell)."""
    k_ax = math.pi * a**2 * dp
    h_w = float(tr.wall_conductance(a, dt, kt, kcl))
    g_tip = 4 * a * dt * kt
    x = np.linspace(0.0, ell, 401)

    def f(_x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.vstack([y[1], h_w / k_ax * y[0]])

    def bc(ya: np.ndarray, yb: np.ndarray) -> np.ndarray:
        return np.array([ya[0] - 1.0, k_ax * yb[1] + g_tip * yb[0]])

    sol = solve_bvp(
        f, bc, x, np.vstack([np.ones_like(x), np.zeros_like(x)]), tol=1e-10, max_nodes=100000
    )
    assert sol.success
    return -k_ax * sol.sol(0.0)[1], sol.x, h_w * sol.y[0]


def test_leaky_channel_matches_fin_ode(ps: ParameterSet, tp: tr.TransportParameters) -> None:
    a, dp, kt, kcl = 63e-6, 8.4e-10, 0.7, 3.5e-4
    dt = float(tr.tissue_diffusivity(122.13, tp))
    for ell in (50e-6, 300e-6, 1500e-6):
        ref, _, _ = _fin_reference(a, ell, dp, dt, kt, kcl)
        # sc = 0: the whole channel is the fin
        g = tr.pore_conductance(a, ell, 0.0, dp, dt, kt, 0.0, kcl)
        assert g == pytest.approx(ref, rel=1e-6)


def test_outflow_split_matches_fin_profile(tp: tr.TransportParameters) -> None:
    a, dp, kt, kcl = 63e-6, 8.4e-10, 0.7, 3.5e-4
    dt = float(tr.tissue_diffusivity(122.13, tp))
    sc, ve, pap, ret = 15e-6, 55e-6, 200e-6, 730e-6
    depth = 600e-6
    ell = depth - sc
    total, x, q = _fin_reference(a, ell, dp, dt, kt, kcl)
    z = sc + x  # depth below the surface
    tip = total - np.trapezoid(q, x)

    def lateral(z0: float, z1: float) -> float:
        sel = (z >= z0) & (z <= z1)
        return float(np.trapezoid(q[sel], z[sel]))

    ref = (
        np.array(
            [
                lateral(sc, sc + ve),
                lateral(sc + ve, sc + ve + pap),
                lateral(sc + ve + pap, depth) + tip,
            ]
        )
        / total
    )
    split = tr.channel_outflow_split(a, depth, [[sc, ve, pap, ret]], dp, dt, kt, kcl)[0]
    assert split.sum() == pytest.approx(1.0, rel=1e-14)
    assert split == pytest.approx(ref, abs=2e-3)  # trapezoid over a 401-node mesh
    shallow = tr.channel_outflow_split(a, 50e-6, [[sc, ve, pap, ret]], dp, dt, kt, kcl)[0]
    assert shallow == pytest.approx([1.0, 0.0, 0.0])


def test_depth_raises_conductance_only_with_wall_exchange(
    tp: tr.TransportParameters, mols: dict[str, Molecule]
) -> None:
    depths = np.linspace(50e-6, 1500e-6, 30)
    for key in SHIPPED:
        m = mols[key]
        r = (
            m.radius_m
            if not math.isnan(m.radius_m)
            else float(tr.stokes_einstein_radius(m.d_aq, tp.water_viscosity))
        )
        dp = m.d_aq * float(tr.renkin_hindrance(r / 63e-6))
        dt = float(tr.tissue_diffusivity(m.mw_g_per_mol, tp))
        g = tr.pore_conductance(63e-6, depths, 15e-6, dp, dt, 0.7, 0.0, tp.clearance_rate)
        assert np.all(np.diff(g) > 0.0), key  # Davidson 2008: depth matters most
        g0 = tr.pore_conductance(
            63e-6, depths, 15e-6, dp, dt, 0.7, 0.0, tp.clearance_rate, wall_exchange=False
        )
        assert np.all(np.diff(g0) < 0.0), key  # the pure series form of C.4 would say the opposite


def test_channel_ending_in_sc_gives_back_intact_skin() -> None:
    kp, a, n = 5e-10, 35e-6, 250e4
    g = tr.pore_conductance(a, 0.0, 15e-6, 8e-10, 1.4e-10, 0.7, kp, 3.5e-4)
    eps = n * math.pi * a**2
    p = tr.permeability(0.0, kp, n, a, g, 1e-4)
    assert p == pytest.approx(kp, rel=1e-14)  # a channel that does not breach the SC adds nothing
    assert eps > 0.009
    assert tr.permeability(0.0, kp, 0.0, a, 1e-13, 1e-4) == pytest.approx(kp, rel=1e-15)  # n = 0
    assert tr.permeability(1e9, kp, n, a, 1e-13, 1e-4) == pytest.approx(kp, rel=1e-12)  # shut


# -------------------------------------------------------------------- finite-dose solver
def _radau(
    dose: float,
    h: float,
    T: float,
    kp: float,
    ng: float,
    eps: float,
    k: float,
    cap: float,
    kcl: float,
) -> np.ndarray:
    def rhs(t: float, y: np.ndarray) -> list[float]:
        s = math.exp(-k * t)
        p = kp * (1 - eps * s) + ng * s
        j = p * (y[0] / h - y[1] / cap)
        return [-j, j - kcl * y[1], kcl * y[1], ng * s * (y[0] / h - y[1] / cap)]

    sol = solve_ivp(rhs, (0.0, T), [dose, 0.0, 0.0, 0.0], method="Radau", rtol=1e-12, atol=1e-15)
    return np.asarray(sol.y[:, -1])


CASES = [  # h, T, kp, n g, eps, k_close, capacity K H, k_cl
    (20e-6, 3600.0, 4.9e-10, 8e-8, 0.03, 1.9e-4, 6.5e-4, 3.5e-4),
    (2.3e-6, 22068.0, 3.8e-9, 2.3e-8, 0.028, 5.9e-4, 1.6e-4, 4.8e-5),
    (6.1e-5, 48559.0, 7.6e-12, 5.9e-7, 0.04, 1.2e-4, 1.6e-4, 5.5e-5),
    (1e-4, 86400.0, 0.0, 3e-8, 0.01, 8.3e-6, 6.5e-4, 1.4e-3),
    (5e-6, 300.0, 1e-8, 1e-6, 0.1, 4e-4, 1e-4, 1e-4),
]


def test_finite_dose_matches_radau() -> None:
    c = np.array(CASES).T
    fd = tr.finite_dose(1.0, *c)
    got = np.stack([fd.vehicle, fd.tissue, fd.cleared, fd.via_channels], axis=1)
    ref = np.array([_radau(1.0, *case) for case in CASES])
    assert got == pytest.approx(ref, abs=1e-6)


def test_finite_dose_fourth_order() -> None:
    c = np.array(CASES).T
    ref = np.array([_radau(1.0, *case) for case in CASES])[:, :3]

    def err(steps: int) -> float:
        fd = tr.finite_dose(1.0, *c, steps=steps)
        return float(np.abs(np.stack([fd.vehicle, fd.tissue, fd.cleared], 1) - ref).max())

    e8, e16 = err(8), err(16)
    assert e8 / e16 > 10.0  # fourth order: 16x per halving (second order would give 4x)


def test_finite_dose_exact_cases() -> None:
    h, T, kp, ng, eps, k, kcl = 20e-6, 7200.0, 4.9e-10, 8e-8, 0.03, 1.9e-4, 3.5e-4
    # no back-flux (sink): the vehicle is exactly M0 exp(-int P dt / h)
    fd = tr.finite_dose(1.0, h, T, kp, ng, eps, k, np.inf, kcl)
    phi = kp * T + (ng - eps * kp) * (1 - math.exp(-k * T)) / k
    assert fd.vehicle[0] == pytest.approx(math.exp(-phi / h), rel=1e-12)
    # constant P (closed channels, no delay effect): the exact matrix exponential
    cap = 6.5e-4
    fd2 = tr.finite_dose(1.0, h, T, kp, 0.0, 0.0, 0.0, cap, kcl)
    gen = np.array([[-kp / h, kp / cap, 0], [kp / h, -kp / cap - kcl, 0], [0, kcl, 0]])
    exact = expm(gen * T) @ np.array([1.0, 0.0, 0.0])
    assert [fd2.vehicle[0], fd2.tissue[0], fd2.cleared[0]] == pytest.approx(exact, rel=1e-12)
    # no clearance: A(t) = P(t) E commutes with itself -> exact for any P(t)
    fd3 = tr.finite_dose(1.0, h, T, kp, ng, eps, k, cap, 0.0, steps=4)
    e = np.array([[-1 / h, 1 / cap], [1 / h, -1 / cap]])
    exact3 = expm(e * phi) @ np.array([1.0, 0.0])
    assert [fd3.vehicle[0], fd3.tissue[0]] == pytest.approx(exact3, rel=1e-12)


# ------------------------------------------------------------------------------ absorb
def test_mass_conservation_every_molecule(
    tp: tr.TransportParameters, mols: dict[str, Molecule]
) -> None:
    for key in SHIPPED:
        for occluded in (False, True):
            ab = run(mols[key], tp, occluded=occluded, hours=8.0, h=50e-6)
            dose = ab.dose[0]
            assert abs(ab.vehicle[0] + ab.retained[0] + ab.cleared[0] - dose) <= 1e-12 * dose
            assert ab.total[0] == pytest.approx(ab.retained[0] + ab.cleared[0], rel=1e-12)
            assert ab.by_layer[0].sum() == pytest.approx(ab.total[0], rel=1e-12)
            assert np.all(ab.by_layer >= 0.0)


def test_enhancement_for_niacinamide_and_resealing_limit(
    tp: tr.TransportParameters, mols: dict[str, Molecule]
) -> None:
    nia = mols["niacinamide"]
    # a thick film (200 um) so that the dose is not exhausted
    ab = run(nia, tp, h=200e-6, hours=1.0)
    assert ab.enhancement[0] > 5.0
    assert ab.intact[0] > 0.0 and ab.total[0] > ab.intact[0]
    ratios = []
    for k_per_h in (0.7, 7.0, 70.0, 7e3, 7e6, 7e8):
        fast = dataclasses.replace(tp, k_close_open=k_per_h / 3600.0)
        ratios.append(run(nia, fast, h=200e-6, hours=1.0).enhancement[0])
    assert all(r1 >= r2 for r1, r2 in itertools.pairwise(ratios))
    # channels shut at once -> intact skin. The charging flux into empty tissue falls as 1/sqrt(t),
    # so what passes before closure vanishes as 1/sqrt(k_close): x100 in k -> /10 in the excess
    assert ratios[-1] == pytest.approx(1.0, abs=0.01)
    assert (ratios[-2] - 1.0) / (ratios[-1] - 1.0) == pytest.approx(10.0, rel=0.05)
    qs = dataclasses.replace(tp, k_close_open=7e8 / 3600.0)
    assert run(nia, qs, h=200e-6, quasi_steady=True).enhancement[0] == pytest.approx(1.0, abs=1e-4)


def test_zero_over_zero_guard(tp: tr.TransportParameters, mols: dict[str, Molecule]) -> None:
    ins = mols["hyaluronic_acid_50kda"]  # no intact-skin path at all (kp = 0)
    none = run(ins, tp, n_cm2=0.0)
    assert none.total[0] == 0.0 and none.intact[0] == 0.0
    assert none.enhancement[0] == 1.0
    some = run(ins, tp)
    floor = tp.enhancement_floor_fraction * some.dose[0]
    assert some.intact[0] == 0.0
    assert some.enhancement[0] == pytest.approx((some.total[0] + floor) / floor, rel=1e-12)
    assert np.isfinite(some.enhancement[0])


def test_occlusion_increases_absorption(
    tp: tr.TransportParameters, mols: dict[str, Molecule]
) -> None:
    for key in ("niacinamide", "tranexamic_acid", "hyaluronic_acid_50kda", "insulin"):
        open_ = run(mols[key], tp, h=200e-6, hours=6.0)
        occl = run(mols[key], tp, h=200e-6, hours=6.0, occluded=True)
        assert occl.total[0] > open_.total[0], key
        if open_.total[0] < 0.5 * open_.dose[0]:  # not limited by the dose
            # (hyaluronan 50 kDa: 2.06x with the isolated channel, 1.99x in the finite cell)
            assert occl.total[0] > 1.9 * open_.total[0], key


def test_longer_needles_deliver_more(
    ps: ParameterSet, tp: tr.TransportParameters, mols: dict[str, Molecule]
) -> None:
    par = nd.NeedleParameters.from_parameters(ps)
    geo = nd.DeviceGeometry.mf8(ps)
    length = np.array([0.25, 0.5, 1.0, 1.5, 2.0]) * 1e-3
    skin = nd.skin_layers_batch(["cheek"] * 5, 40, "female", ps)
    ch = nd.channels(geo, length, np.full(5, 15), np.full(5, np.nan), skin, par)
    for key in (
        "niacinamide",
        "ascorbic_acid",
        "palmitoyl_pentapeptide_4",
        "insulin",
        "hyaluronic_acid_1mda",
    ):
        ab = tr.absorb(
            tr.Solute.from_molecules([mols[key]] * 5),
            50.0,
            500e-6,
            1800.0,
            ch.density_m2,
            ch.surface_radius_m,
            ch.depth_m,
            skin,
            False,
            tp,
        )
        # more until the fin's gain saturates (~1/m: tens of um for hyaluronan, a few 100 um for
        # small molecules), then flat: the one-rate charging transient lets the total dip by up
        # to 0.4% (hyaluronan 1 MDa, 0.25 -> 0.5 mm deep; insulin 6e-4 at full depth), a known
        # artefact of the shape (docs/transport.md). In the finite cell (229 /cm², R = 373 um,
        # shorter than a small molecule's clearance length) a channel deeper than ~1 mm of needle
        # replaces clearing tissue with non-clearing vehicle and gains nothing: up to -0.4% from
        # 1 to 2 mm needles for niacinamide (the tissue ends at the bottom of the dermis); the
        # transient's dip for hyaluronan 1 MDa (0.5 -> 1 mm) is 0.6% with the cell model
        assert ab.total[1] > ab.total[0], key
        assert np.all(np.diff(ab.total) > -1e-2 * ab.total[1:]), key
        if key in ("niacinamide", "ascorbic_acid", "palmitoyl_pentapeptide_4"):
            assert np.all(np.diff(ab.total[:3]) > 0.0), key
        # and deeper channels put more of it into the dermis (1.5 and 2 mm roller channels both
        # reach the bottom of this cheek's dermis: equal there)
        dermal = ab.by_layer[:, 1:].sum(axis=1) / ab.total
        deeper = np.diff(ch.depth_m) > 0.0
        assert np.all(np.diff(dermal)[deeper] > 0.0), key
        assert np.all(np.abs(np.diff(dermal)[~deeper]) < 1e-12), key


def test_absorb_session_equals_batch(ps: ParameterSet, mols: dict[str, Molecule]) -> None:
    par = nd.NeedleParameters.from_parameters(ps)
    geo = nd.DeviceGeometry.mf8(ps)
    skin = nd.skin_layers_batch(["cheek", "forehead"], 50, "male", ps)
    ch = nd.channels(geo, [1.0e-3, 0.5e-3], [8, 8], [np.nan, np.nan], skin, par)
    one = tr.absorb_session(
        mols["tranexamic_acid"], 5.0, 20e-6, 7200.0, False, ch.select(1), skin.select(1), ps
    )
    batch = tr.absorb(
        tr.Solute.from_molecules([mols["tranexamic_acid"]] * 2),
        5.0,
        20e-6,
        7200.0,
        ch.density_m2,
        ch.surface_radius_m,
        ch.depth_m,
        skin,
        False,
        tr.TransportParameters.from_parameters(ps),
    )
    assert np.ndim(one.total) == 0 and one.by_layer.shape == (3,)
    assert float(one.total) == pytest.approx(batch.total[1], rel=1e-14)
    assert one.by_layer == pytest.approx(batch.by_layer[1], rel=1e-14)
    with pytest.raises(ValueError, match="one case"):
        tr.absorb_session(mols["caffeine"], 5.0, 20e-6, 7200.0, False, ch, skin, ps)


def test_application_delay_reduces_uptake(
    tp: tr.TransportParameters, mols: dict[str, Molecule]
) -> None:
    now = run(mols["caffeine"], tp, h=200e-6)
    later = run(mols["caffeine"], tp, h=200e-6, delay=2 * 3600.0)
    assert later.total[0] < now.total[0]
    assert later.total[0] > now.intact[0]


# ---------------------------------------------------------------------------- molecules
def test_molecules_file(mols: dict[str, Molecule]) -> None:
    assert set(SHIPPED) <= set(mols)
    nia = mols["niacinamide"]
    assert nia.mw_g_per_mol == pytest.approx(122.13) and nia.log_kow == -0.37
    assert mols["ascorbic_acid"].d_aq == pytest.approx(0.77 * 1.055e-9, rel=0.01)  # ascorbate ion
    assert mols["insulin"].radius_m == pytest.approx(1.3e-9)
    assert math.isnan(mols["niacinamide"].radius_m)
    assert mols["tranexamic_acid"].ionic and mols["saline"].ionic
    assert not mols["caffeine"].ionic
    for m in mols.values():
        assert m.mw_g_per_mol > 0 and 1e-13 < m.d_aq < 3e-9


USER_TOML = """
[my_peptide]
label = "a user's peptide"
[my_peptide.mw]
value = 1.2
units = "kg/mol"
source = "lab notebook 12"
kind = "user"
[my_peptide.log_kow]
value = -2.0
units = "1"
source = "lab notebook 12"
kind = "user"
[my_peptide.d_aq]
value = 3.0e-6
units = "cm^2/s"
source = "lab notebook 12"
kind = "user"
[my_peptide.charge]
value = 0.0
units = "1"
source = "lab notebook 12"
kind = "user"
"""


def test_user_molecule_file(tmp_path: Path) -> None:
    p = tmp_path / "mine.toml"
    p.write_text(USER_TOML, encoding="utf-8")
    mols = load_molecules(extra=p)
    mine = mols["my_peptide"]
    assert mine.mw_g_per_mol == pytest.approx(1200.0)  # kg/mol -> g/mol
    assert mine.d_aq == pytest.approx(3.0e-10)  # cm2/s -> m2/s
    assert "niacinamide" in mols
    dup = tmp_path / "dup.toml"
    dup.write_text(USER_TOML.replace("my_peptide", "caffeine"), encoding="utf-8")
    with pytest.raises(ParameterError, match="already defined"):
        load_molecules(extra=dup)
    bad = tmp_path / "bad.toml"
    bad.write_text(USER_TOML.replace('units = "cm^2/s"', 'units = "cm/s"'), encoding="utf-8")
    with pytest.raises(ParameterError, match="cannot convert"):
        load_molecules(extra=bad)
    # the shipped file must cite known references; free text is refused there
    with pytest.raises(ParameterError, match="keys of the bibliography"):
        load_molecules(p)


# ---------------------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(SHIPPED),
    st.floats(0.0, 3000.0),  # cm^-2
    st.floats(5e-6, 150e-6),  # a
    st.floats(0.0, 3e-3),  # depth
    st.floats(1e-6, 1e-3),  # film
    st.floats(1.0, 72 * 3600.0),  # contact
    st.booleans(),
    st.floats(0.0, 1e5),  # delay
    st.lists(st.floats(5e-6, 2e-3), min_size=4, max_size=4),
)
def test_absorb_bounded(
    key: str,
    n_cm2: float,
    a: float,
    depth: float,
    h: float,
    t: float,
    occl: bool,
    delay: float,
    thick: list[float],
) -> None:
    mol = _MOLS[key]
    layers = np.array([thick])
    tp = _TP
    ab = tr.absorb(
        tr.Solute.from_molecules([mol]),
        10.0,
        h,
        t,
        n_cm2 * 1e4,
        a,
        min(depth, layers.sum()),
        layers,
        occl,
        tp,
        delay=delay,
    )
    for v in (
        ab.total,
        ab.intact,
        ab.retained,
        ab.cleared,
        ab.vehicle,
        ab.by_layer,
        ab.enhancement,
    ):
        assert np.all(np.isfinite(v)) and np.all(v >= 0.0)
    dose = ab.dose[0]
    assert ab.total[0] <= dose * (1 + 1e-12)
    assert abs(ab.vehicle[0] + ab.retained[0] + ab.cleared[0] - dose) <= 1e-12 * dose
    assert ab.by_layer.sum() == pytest.approx(ab.total[0], rel=1e-9, abs=1e-300)
    assert ab.enhancement[0] <= (1.0 / tp.enhancement_floor_fraction + 1.0) * (1 + 1e-12)
    assert ab.enhancement[0] >= 1.0 - 1e-9  # channels never make skin less permeable


# ------------------------------------------------ charging transient, partly open channels
def test_uptake_shape_danckwerts_limits() -> None:
    k = 3.5e-4
    t = np.array([1.0, 100.0, 1e5])
    f = tr.uptake_shape(t, k)
    assert f[0] == pytest.approx(2.0 * math.sqrt(t[0] / (math.pi * k)), rel=1e-3)  # early √t
    assert f[2] == pytest.approx(t[2] + 0.5 / k, rel=1e-12)  # late: t + 1/(2k)
    # the flux factor is the derivative of the shape
    h = 1e-3 * t
    num = (tr.uptake_shape(t + h, k) - tr.uptake_shape(t - h, k)) / (2 * h)
    assert tr.uptake_flux_factor(t, k) == pytest.approx(num, rel=1e-6)
    assert np.all(tr.uptake_shape(t, np.inf) == t)  # quasi-steady
    # 1-D uptake into clearing tissue (g ∝ √k): the effective rate is the clearance rate itself
    assert tr.transient_rate(2.0 * math.sqrt(k), 1.0 / math.sqrt(k)) == pytest.approx(k)


def test_clearance_sensitivity_step_independent() -> None:
    """dg/dk by central difference: independent of the step (1e-4 vs 1e-6 relative) and positive
    (faster clearance, more steady uptake)."""
    args = (50e-6, 600e-6, 16.8e-6, 5e-10, 1.4e-10, 0.7, 0.0)
    s1 = tr.clearance_sensitivity(*args, 3.5e-4)
    s2 = tr.clearance_sensitivity(*args, 3.5e-4, rel_step=1e-6)
    assert float(s1) > 0.0 and float(s1) == pytest.approx(float(s2), rel=1e-5)


def test_partly_open_channel_conductance() -> None:
    args = (50e-6, 600e-6, 16.8e-6, 5e-10, 1.4e-10, 0.7, 4.9e-10, 3.5e-4)
    g1 = tr.pore_conductance(*args)
    assert tr.pore_conductance(*args, open_fraction=1.0) == g1
    s = np.linspace(0.0, 1.0, 11)
    gs = tr.pore_conductance(*args, open_fraction=s)
    assert np.all(np.diff(gs) > 0.0)
    # shut: the intact patch the channel replaces (the floor π a² kp)
    assert gs[0] == pytest.approx(math.pi * 50e-6**2 * 4.9e-10, rel=1e-9)
    # tissue-limited: half a channel conducts more than half as much
    assert gs[5] > 0.5 * g1


def test_finite_dose_steps_exact_for_constant_permeability() -> None:
    h, T, kp, ng, cap, kcl = 20e-6, 7200.0, 4.9e-10, 8e-8, 6.5e-4, 3.5e-4
    nodes = np.linspace(0.0, T, 9)[None, :]
    fd = tr.finite_dose_steps(1.0, h, nodes, kp, np.full((1, 8), ng), cap, kcl)
    p = kp + ng
    gen = np.array([[-p / h, p / cap, 0], [p / h, -p / cap - kcl, 0], [0, kcl, 0]])
    exact = expm(gen * T) @ np.array([1.0, 0.0, 0.0])
    assert [fd.vehicle[0], fd.tissue[0], fd.cleared[0]] == pytest.approx(exact, rel=1e-12)
    assert fd.via_channels[0] == pytest.approx(fd.delivered[0] * ng / p, rel=1e-12)


def test_absorb_converges_in_steps(tp: tr.TransportParameters, mols: dict[str, Molecule]) -> None:
    """The graded steps of the transient integrator: 64 steps within 1e-5 of the dose of 1024."""
    for key, occ in (("niacinamide", False), ("insulin", True), ("tranexamic_acid", False)):
        a = run(mols[key], tp, hours=4.0, occluded=occ)
        b = run(mols[key], tp, hours=4.0, occluded=occ, steps=1024)
        assert abs(a.total[0] - b.total[0]) < 1e-5 * a.dose[0], key
        assert a.retained[0] + a.cleared[0] + a.vehicle[0] == pytest.approx(a.dose[0], rel=1e-12)


def test_transient_and_conductance_closure_raise_uptake(
    tp: tr.TransportParameters, mols: dict[str, Molecule]
) -> None:
    """Against the quasi-steady model (before issue 6): an empty tissue takes up more at first,
    and a channel that closes by conductance keeps conducting while the tissue limits uptake."""
    ins = mols["insulin"]
    new = run(ins, tp, h=200e-6, hours=2.0)
    old = run(ins, tp, h=200e-6, hours=2.0, quasi_steady=True)
    assert new.total[0] > 1.2 * old.total[0]
    assert new.intact[0] == old.intact[0]


# ----------------------------------------------------- one channel in its finite cell (modal)
D_INS, K_T, K_CL, SC = 1.08e-11, 0.7, 3.5e-4, 16.8e-6  # insulin-size tissue D, partition, k_cl


def test_cell_wall_conductance_limits() -> None:
    """2-D annulus with clearance: R → ∞ is the isolated wall exchange (K1/K0); a thin annulus
    clears its whole volume, π (R² − a²) K k."""
    a = 50e-6
    far = tr.cell_wall_conductance(a, 1.0, D_INS, K_T, K_CL)
    assert float(far) == pytest.approx(float(tr.wall_conductance(a, D_INS, K_T, K_CL)), rel=1e-12)
    thin = tr.cell_wall_conductance(a, 51e-6, D_INS, K_T, K_CL)
    assert float(thin) == pytest.approx(math.pi * (51e-6**2 - a**2) * K_T * K_CL, rel=1e-4)
    mid = tr.cell_wall_conductance(a, np.array([100e-6, 200e-6, 400e-6]), D_INS, K_T, K_CL)
    assert np.all(np.diff(mid) > 0.0) and mid[-1] < float(far)


def test_cell_conductance_single_channel_limit() -> None:
    """n → 0 and a channel much longer than its fin: the isolated fin of pore_conductance
    (1.006 at ℓ = 17 λ; 1.05 at ℓ = 5.7 λ, where 3-D spreading near the ends still adds)."""
    a, dp = 50e-6, 1e-9
    ratios = []
    for ell in (1e-3, 3e-3):
        g = tr.cell_conductance(a, SC + ell, SC, dp, D_INS, K_T, 0.0, K_CL, 1e2, 2 * ell)
        ratios.append(float(g / tr.pore_conductance(a, SC + ell, SC, dp, D_INS, K_T, 0.0, K_CL)))
    assert 1.0 < ratios[1] < 1.01 and ratios[1] < ratios[0] < 1.07, ratios


def test_cell_conductance_dense_limit_is_the_slab() -> None:
    """Cells barely wider than the channel, channel concentration = vehicle (large D_pore): the
    1-D slab, n g = σ [ℓ (1 − ε)/λ² + tanh((H − ℓ)/λ)/λ]; within 0.5% at R = 1.2 a, and the
    radial resistance of the tissue lowers it as R grows."""
    a, d, h = 50e-6, 400e-6, 924e-6
    ell, lam = d - SC, math.sqrt(D_INS / K_CL)
    out = []
    for rr in (1.2, 2.0):
        r = rr * a
        n = 1.0 / (math.pi * r * r)
        slab = K_T * D_INS * (ell * (1 - (a / r) ** 2) / lam**2 + math.tanh((h - ell) / lam) / lam)
        out.append(
            float(n * tr.cell_conductance(a, d, SC, 1e-3, D_INS, K_T, 0.0, K_CL, n, h)) / slab
        )
    assert out[0] == pytest.approx(1.0, abs=0.005) and 0.85 < out[1] < out[0], out


def test_overlapping_channels_take_the_dense_limit() -> None:
    """Channels whose mouths overlap (R ≤ a, n π a² ≥ 1) have no cell of their own: per area they
    take the cell model's own dense limit (the surface open to the channel depth, the open column
    in series with the clearing slab below), continuous across R = a within 5%, and the same
    however many more punctures there are (before: the isolated g counted n times, unbounded)."""
    a, d, h, dp, d_t = 50e-6, 400e-6, 924e-6, 5e-10, 7.1e-11
    dense = float(tr.overlapping_channel_permeability(d, SC, dp, d_t, K_T, 0.0, K_CL, h))
    ell, lam, sig = d - SC, math.sqrt(d_t / K_CL), d_t * K_T
    by_hand = 1.0 / (SC / dp + ell / dp + lam / (sig * math.tanh((h - ell) / lam)))
    assert dense == pytest.approx(by_hand, rel=1e-12)

    def per_area(rr: float) -> float:
        n = 1.0 / (math.pi * (rr * a) ** 2)
        return float(n * tr.cell_conductance(a, d, SC, dp, d_t, K_T, 0.0, K_CL, n, h))

    assert per_area(1.01) == pytest.approx(per_area(0.99), rel=0.05)
    for rr in (0.99, 0.5, 0.2):
        assert per_area(rr) == pytest.approx(dense, rel=1e-12)
    iso = float(tr.pore_conductance(a, d, SC, dp, d_t, K_T, 0.0, K_CL))
    n_over = 1.0 / (math.pi * (0.2 * a) ** 2)
    assert n_over * iso > 10.0 * dense  # what the isolated fallback gave
    # a closed column (S = 0) is the intact SC in series with the tissue: about kp
    kp = 1e-9
    shut = float(
        tr.overlapping_channel_permeability(d, SC, dp, d_t, K_T, kp, K_CL, h, open_fraction=0.0)
    )
    assert shut < kp and shut == pytest.approx(kp, rel=0.05)


def test_cell_conductance_resolution() -> None:
    """Default segments (24, Richardson with 12) and modes (96) within 0.7% of 128 segments and
    300 modes, for a small, a large and a very large molecule, sparse and dense, short and long."""
    mols = load_molecules()
    params = tr.TransportParameters.from_parameters(load_parameters())
    for key in ("niacinamide", "insulin", "hyaluronic_acid_1mda"):
        m = mols[key]
        d_t = float(tr.tissue_diffusivity(m.mw_g_per_mol, params))
        for a, n, d in itertools.product((25e-6, 50e-6), (5e5, 1e7), (50e-6, 600e-6)):
            args = (a, d, SC, 0.5 * m.d_aq, d_t, K_T, 0.0, K_CL, n, 924e-6)
            g = tr.cell_conductance(*args)
            ref = tr.cell_conductance(*args, segments=128, modes=300)
            assert float(g) == pytest.approx(float(ref), rel=7e-3), (key, a, n, d)
    with pytest.raises(ValueError, match="segments"):
        tr.cell_conductance(*args, segments=7)


def test_cell_conductance_batch_open_fraction_and_fallbacks() -> None:
    """Batched = one by one; monotone in the open fraction; pore_conductance(density=...)
    dispatches to it; no clearance, no channel below the SC or no density: the isolated form."""
    dp, d_t, kp = 5e-10, 1.4e-10, 4.9e-10
    n = np.array([5e5, 2e6, 1e7])
    d = np.array([100e-6, 300e-6, 600e-6])
    g = tr.cell_conductance(50e-6, d, SC, dp, d_t, K_T, kp, K_CL, n, 924e-6)
    for i in range(3):
        one = tr.cell_conductance(50e-6, d[i], SC, dp, d_t, K_T, kp, K_CL, n[i], 924e-6)
        assert float(one) == pytest.approx(g[i], rel=1e-12)
    via = tr.pore_conductance(
        50e-6, d, SC, dp, d_t, K_T, kp, K_CL, density=n, tissue_thickness=924e-6
    )
    assert np.array_equal(via, g)
    s = np.linspace(0.0, 1.0, 6)
    gs = tr.cell_conductance(
        50e-6, 300e-6, SC, dp, d_t, K_T, kp, K_CL, 2e6, 924e-6, open_fraction=s
    )
    assert np.all(np.diff(gs) > 0.0)
    iso_args = (50e-6, 300e-6, SC, dp, d_t, K_T, kp)
    for kcl, depth, dens in ((0.0, 300e-6, 2e6), (K_CL, 10e-6, 2e6), (K_CL, 300e-6, 0.0)):
        got = tr.cell_conductance(*iso_args[:1], depth, *iso_args[2:], kcl, dens, 924e-6)
        want = tr.pore_conductance(*iso_args[:1], depth, *iso_args[2:], kcl)
        assert float(got) == float(want)


def test_absorb_cell_model(tp: tr.TransportParameters, mols: dict[str, Molecule]) -> None:
    """absorb(cell=False) is the isolated channel; the cell model's closing-channel ratio
    interpolation (9 open fractions) is within 1e-3 of 65; mass is conserved."""
    for key, occ in (("niacinamide", False), ("insulin", True)):
        cell = run(mols[key], tp, hours=2.0, occluded=occ)
        iso = run(mols[key], tp, hours=2.0, occluded=occ, cell=False)
        assert cell.total[0] != iso.total[0]
        assert cell.retained[0] + cell.cleared[0] + cell.vehicle[0] == pytest.approx(
            cell.dose[0], rel=1e-12
        )
        old = tr.CELL_OPEN_NODES
        try:
            tr.CELL_OPEN_NODES = 65
            fine = run(mols[key], tp, hours=2.0, occluded=occ)
        finally:
            tr.CELL_OPEN_NODES = old
        assert cell.total[0] == pytest.approx(fine.total[0], rel=1e-3), key


# ------------------------------------------- the reservoir model (issue 10): drying film, SC
# ------------------------------------------- reservoir, follicles, channel filling, closure by size
CLINIC = np.array(
    [[16.8e-6, 54.5e-6, 300e-6, 1300e-6]]
)  # design scenario (cheek-like, thick dermis)
SMALL_ACTIVES = ("ascorbic_acid", "tranexamic_acid", "niacinamide", "caffeine")


def clinic(
    keys: tuple[str, ...],
    mols: dict[str, Molecule],
    tp: tr.TransportParameters,
    ps: ParameterSet,
    *,
    length_mm: float = 1.5,
    passes: int = 15,
    film_ul: float = 5.0,
    hours: float = 4.0,
    occluded: bool = False,
    in_vitro: bool = False,
    layers: np.ndarray = CLINIC,
    follicle: float = 3.0,
    **veh: object,
) -> tr.Absorption:
    """Needled (MF8 roller, the insertion model) vs intact for ``keys``, one batch."""
    B = len(keys)
    par = nd.NeedleParameters.from_parameters(ps)
    skin = nd.SkinLayers.from_stack(np.repeat(layers, B, axis=0))
    ch = nd.channels(
        nd.DeviceGeometry.mf8(ps), np.full(B, length_mm * 1e-3), np.full(B, passes),
        np.full(B, np.nan), skin, par,
    )  # fmt: skip
    vehicle = tr.Vehicle.default(B, tp, follicle_factor=follicle, in_vitro=in_vitro, **veh)  # type: ignore[arg-type]
    return tr.absorb(
        tr.Solute.from_molecules([mols[k] for k in keys]), 10.0, film_ul * 1e-5, hours * 3600.0,
        ch.density_m2, ch.surface_radius_m, ch.depth_m, skin.stack(), occluded, tp,
        vehicle=vehicle,
    )  # fmt: skip


def test_reservoir_mass_balance_exact(
    mols: dict[str, Molecule], tp: tr.TransportParameters, ps: ParameterSet
) -> None:
    """vehicle + stratum corneum + viable tissue + cleared = dose to round-off, for every shipped
    molecule, open (drying) and occluded, in vivo and in vitro; every amount non-negative."""
    for occluded, in_vitro in ((False, False), (True, False), (True, True)):
        ab = clinic(SHIPPED, mols, tp, ps, occluded=occluded, in_vitro=in_vitro, hours=6.0)
        assert ab.stratum_corneum is not None
        parts = ab.vehicle + ab.stratum_corneum + ab.retained + ab.cleared
        assert np.max(np.abs(parts - ab.dose) / ab.dose) < 1e-12
        for arr in (ab.vehicle, ab.stratum_corneum, ab.retained, ab.cleared, ab.total):
            assert np.all(arr >= -1e-14 * ab.dose)
        assert ab.by_layer.sum(axis=1) == pytest.approx(ab.total, rel=1e-12, abs=1e-30)
        assert ab.total == pytest.approx(ab.retained + ab.cleared, rel=1e-12, abs=1e-30)


def _reservoir_reference(
    m0: np.ndarray,
    h0: np.ndarray,
    nd: np.ndarray,
    tw: np.ndarray,
    rate: np.ndarray,
    pch: np.ndarray,
    kpf: np.ndarray,
    sup: np.ndarray,
    kpsc: np.ndarray,
    ksc: np.ndarray,
    lsc: np.ndarray,
    lsup: np.ndarray,
    sup_time: float,
    dry: float,
    cap: np.ndarray,
    kcl: np.ndarray,
) -> dict[str, np.ndarray]:
    """``reservoir_dose`` as it was before its eigendecompositions were shared (arrays (B,), nodes
    (B, M + 1)): a fresh ``eigh`` of the whole batch at every step."""
    bsz, m1 = nd.shape
    n = tr.SC_NODES + 3
    iv, isup, it = 0, 1, tr.SC_NODES + 2
    h_safe = np.maximum(h0, 1e-300)
    dx = tr.sc_grid(lsc, tr.SC_NODES)
    d_sc = np.divide(kpsc * lsc, ksc, out=np.zeros_like(ksc), where=ksc > 0.0)
    cond_sup = np.divide(lsup * ksc, sup_time, out=np.zeros_like(lsup), where=lsup > 0.0)
    face = d_sc * ksc / (0.5 * dx[:, 0])
    inner = d_sc[:, None] * ksc[:, None] / (0.5 * (dx[:, :-1] + dx[:, 1:]))
    bottom = d_sc * ksc / (0.5 * dx[:, -1])
    vol = np.empty((bsz, n))
    vol[:, isup] = np.maximum(lsup * ksc, 1e-30)
    vol[:, 2:it] = np.maximum(ksc[:, None] * dx, 1e-30)
    vol[:, it] = cap
    lap0 = np.zeros((bsz, n, n))

    def link(lap: np.ndarray, i: int, j: int, c: np.ndarray) -> None:
        lap[:, i, i] += c
        lap[:, j, j] += c
        lap[:, i, j] -= c
        lap[:, j, i] -= c

    link(lap0, iv, isup, cond_sup)
    link(lap0, iv, 2, face)
    for k in range(tr.SC_NODES - 1):
        link(lap0, 2 + k, 3 + k, inner[:, k])
    link(lap0, it - 1, it, bottom)
    x = np.zeros((bsz, n))
    x[:, iv] = np.where(h0 > 0.0, m0, 0.0)
    total0 = x.sum(axis=1)
    via = {"ch": np.zeros(bsz), "fo": np.zeros(bsz), "sc": np.zeros(bsz)}
    for j in range(m1 - 1):
        t0, t1 = nd[:, j], nd[:, j + 1]
        dt = np.maximum(t1 - t0, 0.0)
        wet = t1 <= tw * (1.0 + 1e-12) + 1e-9
        a, b_ = h0 - rate * t0, h0 - rate * t1
        ok = (rate > 0.0) & (t1 - t0 > 0.0) & (b_ > 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            num = np.log(np.where(ok, a / np.where(ok, b_, 1.0), 1.0))
        mean_inv = np.where(
            ok, num / np.where(ok, rate * (t1 - t0), 1.0), 1.0 / np.maximum(a, 1e-300)
        )
        inv_h = np.where(wet, mean_inv, dry / h_safe)
        vol[:, iv] = 1.0 / np.maximum(inv_h, 1e-300)
        h_mean = np.where(wet, h0 - rate * 0.5 * (t0 + t1), h0)
        g_film = np.multiply(sup, h_mean, out=np.zeros_like(h_mean), where=h_mean > 0.0)
        p_raw = pch[:, j]
        with np.errstate(invalid="ignore", divide="ignore"):
            series = np.where(np.isfinite(g_film), p_raw * g_film / (p_raw + g_film), p_raw)
        p_ch = np.where(wet & (p_raw > 0.0), np.nan_to_num(series), 0.0)
        p_fo = np.where(wet, kpf, 0.0)
        lap = lap0.copy()
        link(lap, iv, it, p_ch + p_fo)
        sq = np.sqrt(vol)
        sym = lap / (sq[:, :, None] * sq[:, None, :])
        sym[:, it, it] += kcl
        w, q = np.linalg.eigh(sym)
        ex = np.exp(-np.maximum(w, 0.0) * dt[:, None])
        y = np.einsum("bij,bj->bi", q.transpose(0, 2, 1), x / sq)
        x_new = sq * np.einsum("bij,bj->bi", q, ex * y)
        cm = 0.5 * (x / vol + x_new / vol)
        f_direct = (p_ch + p_fo) * np.maximum(cm[:, iv] - cm[:, it], 0.0)
        f_sc = bottom * np.maximum(cm[:, it - 1] - cm[:, it], 0.0)
        gain = (x_new[:, it] - x[:, it]) + (x.sum(axis=1) - x_new.sum(axis=1))
        tot = f_direct + f_sc
        share_d = np.divide(f_direct, tot, out=np.zeros_like(tot), where=tot > 0.0)
        share_ch = np.divide(p_ch, p_ch + p_fo, out=np.zeros_like(p_ch), where=p_ch + p_fo > 0.0)
        via["ch"] += gain * share_d * share_ch
        via["fo"] += gain * share_d * (1.0 - share_ch)
        via["sc"] += gain * (1.0 - share_d)
        x = x_new
    return {
        "vehicle": x[:, iv],
        "stratum_corneum": x[:, isup:it].sum(axis=1),
        "tissue": x[:, it],
        "cleared": total0 - x.sum(axis=1),
        "via_channels": via["ch"],
        "via_follicles": via["fo"],
        "via_sc": via["sc"],
    }


def test_reservoir_shared_eigendecompositions_are_bit_identical() -> None:
    """Cases that differ only in the dose share one eigendecomposition per step, and a case whose
    step generator repeats (dried film; occluded film on intact skin) keeps it: every output is
    bit for bit that of a fresh ``eigh`` of the whole batch at every step (the loop kept above),
    over a batch with repeated cases, drying and occluded films, intact skin, a film that dries
    half-way with three dry steps after it, and a case with no film."""
    rng = np.random.default_rng(7)
    bsz, m = 12, 20
    tc = 4 * 3600.0
    h0 = np.full(bsz, 50e-6)
    h0[11] = 0.0
    rate = np.where(np.arange(bsz) % 3 == 2, 0.0, 2.8e-9)  # every third case occluded
    tw = np.where(rate > 0.0, 0.8 * h0 / np.where(rate > 0.0, rate, 1.0), np.inf)
    dry_from = np.minimum(tw, tc)
    grid = np.linspace(0.0, 1.0, m - 2) ** 2
    nodes = np.concatenate(
        [dry_from[:, None] * grid, (dry_from + (tc - dry_from) * 0.2)[:, None],
         (dry_from + (tc - dry_from) * 0.6)[:, None], np.full((bsz, 1), tc)], axis=1,
    )  # fmt: skip
    nodes[:, m - 3] = dry_from
    pch = np.outer(np.where(np.arange(bsz) < 6, 1.0, 0.0), 2e-8 * np.exp(-np.arange(m) / 8.0))
    dose = np.array([0.8, 8.0, 40.0, 0.8, 8.0, 40.0, 1.0, 1.0, 3.0, 1.0, 2.0, 1.0]) * 1e-3
    pch[3:6] = pch[0]  # cases 3-5 repeat 0-2 but for the dose
    kpf = np.full(bsz, 7.6e-10)
    kpf[9] = 1.1e-9
    sup = np.where(np.arange(bsz) == 10, np.inf, 2.5e-3)
    kpsc, ksc = np.full(bsz, 3.4e-11), np.full(bsz, 1.14)
    lsc, lsup = np.full(bsz, 16.8e-6), np.full(bsz, 2e-6)
    cap, kcl = np.full(bsz, 6.2e-4), np.full(bsz, 3.5e-4)
    cap[8] = 6.4e-4 + rng.uniform(0.0, 1e-5)
    args = (dose, h0, nodes, tw, rate, pch, kpf, sup, kpsc, ksc, lsc, lsup, 360.0, 0.1, cap, kcl)
    ref = _reservoir_reference(*args)
    res = tr.reservoir_dose(*args)
    assert np.all(np.diff(nodes, axis=1) >= 0.0)
    assert np.all(ref["tissue"][:-1] > 0.0)  # a run in which something happens
    for name, want in ref.items():
        got = getattr(res, name)
        assert np.array_equal(got, want), name
        assert np.array_equal(np.signbit(got), np.signbit(want)), name
    # each case alone gives the same numbers (a case's result does not depend on the others)
    for b in (0, 5, 9, 11):
        one = tr.reservoir_dose(*(a[b : b + 1] if isinstance(a, np.ndarray) else a for a in args))
        for name in ref:
            assert np.array_equal(getattr(one, name), getattr(res, name)[b : b + 1]), (b, name)


def test_absorb_cases_alike_but_for_the_dose_share_the_cell_solves(
    mols: dict[str, Molecule], tp: tr.TransportParameters, ps: ParameterSet
) -> None:
    """A batch with repeated molecules at different concentrations (and one exact repeat) shares
    the channel's cell solves and the reservoir's eigendecompositions: every output is bit for bit
    that of each case computed alone (a batch of one shares nothing)."""
    keys = ("ascorbic_acid", "caffeine", "ascorbic_acid", "niacinamide", "caffeine", "caffeine")
    c0 = np.array([10.0, 10.0, 3.0, 10.0, 50.0, 10.0])
    B = len(keys)
    par = nd.NeedleParameters.from_parameters(ps)
    skin = nd.SkinLayers.from_stack(np.repeat(CLINIC, B, axis=0))
    ch = nd.channels(
        nd.DeviceGeometry.mf8(ps), np.full(B, 1.5e-3), np.full(B, 15), np.full(B, np.nan), skin,
        par,
    )  # fmt: skip
    occluded = np.array([False, False, False, True, False, False])

    def run(rows: list[int]) -> tr.Absorption:
        vehicle = tr.Vehicle.default(len(rows), tp, follicle_factor=3.0)
        return tr.absorb(
            tr.Solute.from_molecules([mols[keys[r]] for r in rows]), c0[rows], 5e-5,
            4 * 3600.0, ch.density_m2[rows], ch.surface_radius_m[rows], ch.depth_m[rows],
            skin.stack()[rows], occluded[rows], tp, vehicle=vehicle,
        )  # fmt: skip

    batch = run(list(range(B)))
    assert batch.total[4] == pytest.approx(5.0 * batch.total[1], rel=1e-6)  # dose-linear
    for b in range(B):
        one = run([b])
        for f in dataclasses.fields(tr.Absorption):
            got, want = getattr(batch, f.name), getattr(one, f.name)
            if want is None:
                assert got is None, f.name
                continue
            assert np.array_equal(got[b : b + 1], want, equal_nan=True), (b, f.name)


def test_reservoir_exact_for_a_well_mixed_pair(tp: tr.TransportParameters) -> None:
    """With only the vehicle → tissue path (no SC, no channels) the step exponential is the exact
    two-compartment solution: v(t) = v0 (K + e^(−(P/h)(1 + h/K) t))/(1 + K') ..., checked against
    scipy's expm of the generator over one long step and over 50 steps."""
    h, cap, p_d, kcl = 50e-6, 500e-6, 1e-8, 0.0
    gen = np.array([[-p_d / h, p_d / cap, 0.0], [p_d / h, -p_d / cap - kcl, 0.0], [0, kcl, 0]])
    T = 4 * 3600.0
    exact = expm(gen * T) @ np.array([1.0, 0.0, 0.0])
    for m in (1, 50):
        nodes = np.linspace(0.0, T, m + 1)[None, :]
        res = tr.reservoir_dose(
            1.0, h, nodes, np.inf, 0.0, np.full((1, m), p_d), 0.0, np.inf, 0.0, 1.0, 15e-6,
            0.0, 360.0, 0.1, cap, kcl,
        )  # fmt: skip
        assert res.vehicle[0] == pytest.approx(exact[0], rel=1e-10)
        assert res.tissue[0] == pytest.approx(exact[1], rel=1e-10)
        assert res.via_channels[0] == pytest.approx(res.delivered[0], rel=1e-12)


def test_sc_slab_uptake_matches_crank(tp: tr.TransportParameters) -> None:
    """The SC slab alone under a constant vehicle (huge film, no channels, sink tissue): the
    amount that crossed at time t follows Crank's membrane solution (lag time L²/(6D)) within 3%
    once t exceeds the lag time, with the graded 10-node grid."""
    L, K, kp = 15e-6, 2.0, 1e-9  # m, 1, m/s  -> D = kp L / K
    D = kp * L / K
    lag = L**2 / (6 * D)
    T = 5 * lag
    nodes = (np.linspace(0.0, 1.0, 65) ** 2 * T)[None, :]
    res = tr.reservoir_dose(
        1.0, 1.0, nodes, np.inf, 0.0, np.zeros((1, 64)), 0.0, np.inf, kp, K, L,
        0.0, 360.0, 0.1, 1e6, 0.0,
    )  # fmt: skip
    # Crank (1975) eq. 4.24a: Q/(L C1) = D t/L² − 1/6 − (2/π²) Σ (−1)^n/n² exp(−D n² π² t/L²)
    n = np.arange(1, 200)
    tau = D * T / L**2
    q = tau - 1 / 6 - 2 / np.pi**2 * np.sum((-1.0) ** n / n**2 * np.exp(-(n**2) * np.pi**2 * tau))
    exact = q * L * K * 1.0  # vehicle concentration 1 (dose 1 in a 1 m film)
    assert res.delivered[0] == pytest.approx(exact, rel=0.03)


def test_enhancement_ratios_of_small_actives_in_the_published_range(
    mols: dict[str, Molecule], tp: tr.TransportParameters, ps: ParameterSet
) -> None:
    """Small ionised actives (ascorbic acid, tranexamic acid) and neutral references (niacinamide,
    caffeine) after a clinical 1.5 mm session with a 5 µL/cm² serum left on 4 h: enhancement
    ratios of the amount delivered into the viable skin in 2-30 (published ratios through needled
    skin: Mohammed 2014 2-22 fold; Park 2010 10.5 fold for ascorbic acid). The shipped engine
    before issue 10 gave 89-2500 for the ionised ones (design_epidermis §5a)."""
    ab = clinic(SMALL_ACTIVES, mols, tp, ps)
    assert np.all((ab.enhancement >= 2.0) & (ab.enhancement <= 30.0)), ab.enhancement
    thin = clinic(SMALL_ACTIVES, mols, tp, ps, length_mm=0.5, passes=8, film_ul=2.0)
    assert np.all((thin.enhancement >= 2.0) & (thin.enhancement <= 30.0)), thin.enhancement


def test_lipidated_peptide_skin_ratio_in_the_published_range(
    mols: dict[str, Molecule], tp: tr.TransportParameters, ps: ParameterSet
) -> None:
    """pal-KTTKS in a Franz cell (infinite donor, 24 h, in vitro, 500 µm roller at 250 /cm²):
    the ratio of the amount in the skin, the quantity Mohammed 2014 imaged (2-22 fold), lies in
    2-30: the SC reservoir holds the lipopeptide on intact skin (Choi 2014)."""
    franz = np.array([[15e-6, 60e-6, 200e-6, 800e-6]])
    ab = clinic(
        ("palmitoyl_pentapeptide_4",), mols, tp, ps, length_mm=0.5, passes=16, film_ul=500.0,
        hours=24.0, occluded=True, in_vitro=True, layers=franz, follicle=1.0,
    )  # fmt: skip
    assert ab.enhancement_skin is not None
    assert 2.0 <= float(ab.enhancement_skin[0]) <= 30.0
    assert ab.stratum_corneum is not None and float(ab.stratum_corneum[0]) > 0.0


def test_enhancement_limits_and_monotonicity(
    mols: dict[str, Molecule], tp: tr.TransportParameters
) -> None:
    """ER = 1 without channels (n = 0), → 1 for channels that stay in the SC; increasing in the
    fraction of channels filled, the density and the depth; the intact amount does not depend on
    any of them."""
    sol = tr.Solute.from_molecules([mols["tranexamic_acid"]])

    def er(n: float, d: float, fill: float) -> tr.Absorption:
        veh = tr.Vehicle.default(1, tp, follicle_factor=3.0, fill_fraction=fill)
        return tr.absorb(
            sol, 10.0, 50e-6, 4 * 3600.0, n * 1e4, 60e-6, d, CLINIC, False, tp, vehicle=veh
        )

    assert float(er(0.0, 800e-6, 0.5).enhancement[0]) == pytest.approx(1.0, rel=1e-9)
    # a channel that stops inside the SC only thins the barrier locally: ER barely above 1
    assert 1.0 <= float(er(229.0, 10e-6, 0.5).enhancement[0]) < 1.01
    base = er(229.0, 800e-6, 0.5)
    fills = [float(er(229.0, 800e-6, f).enhancement[0]) for f in (0.15, 0.5, 0.98)]
    dens = [float(er(n, 800e-6, 0.5).enhancement[0]) for n in (50.0, 229.0, 500.0)]
    deps = [float(er(229.0, d, 0.5).enhancement[0]) for d in (100e-6, 400e-6, 800e-6)]
    for seq in (fills, dens, deps):
        assert np.all(np.diff(seq) > 0.0), seq
    assert float(er(500.0, 100e-6, 0.98).intact[0]) == pytest.approx(float(base.intact[0]))


def test_film_drying_limits_channel_uptake(
    mols: dict[str, Molecule], tp: tr.TransportParameters
) -> None:
    """A film that dries stops the channel and follicular uptake: the wet time is the volatile
    share of the film over the thinning rate, and faster evaporation delivers less; an occluded
    film never dries."""
    sol = tr.Solute.from_molecules([mols["niacinamide"]])
    veh = tr.Vehicle.default(1, tp)
    ab = tr.absorb(sol, 10.0, 50e-6, 4 * 3600.0, 229e4, 60e-6, 800e-6, CLINIC, False, tp,
                   vehicle=veh)  # fmt: skip
    rate = tp.water_evaporation / tr.WATER_DENSITY
    assert ab.wet_time is not None
    assert float(ab.wet_time[0]) == pytest.approx(tp.volatile_fraction * 50e-6 / rate)
    fast = dataclasses.replace(tp, water_evaporation=3 * tp.water_evaporation)
    ab_fast = tr.absorb(sol, 10.0, 50e-6, 4 * 3600.0, 229e4, 60e-6, 800e-6, CLINIC, False,
                        fast, vehicle=veh)  # fmt: skip
    assert float(ab_fast.total[0]) < float(ab.total[0])
    occl = tr.absorb(sol, 10.0, 50e-6, 4 * 3600.0, 229e4, 60e-6, 800e-6, CLINIC, True, tp,
                     vehicle=veh)  # fmt: skip
    assert occl.wet_time is not None and np.isinf(occl.wet_time[0])


def test_closure_rate_by_channel_size(ps: ParameterSet, tp: tr.TransportParameters) -> None:
    """Wider channels close more slowly: Kalluri 2011 (hairless rat) pores closed by 12 h for
    370 µm needles and by 18 h for 770 µm. With the rat channels of the insertion model the ratio
    of closure times is 18/12 (the exponent is derived from it: a calibration, not a check)."""
    par = nd.NeedleParameters.from_parameters(ps)
    L = np.array([370e-6, 770e-6])
    d = nd.insertion_depth(np.zeros(2, dtype=int), L, 2e-3, tip_radius=4e-6,
                           stroke_frequency=np.nan, needles=192, params=par, species="rat")  # fmt: skip
    a = nd.channel_surface_radius(140e-6, par.channel_radius_ratio, d, par.cone_length)
    t = tr.closure_time(a, False, tp)
    assert t[1] / t[0] == pytest.approx(18.0 / 12.0, rel=0.03)
    # monotone in size, occlusion slows it, the reference radius gives the reference rate
    radii = np.array([10e-6, 30e-6, 63e-6, 120e-6])
    k = tr.closure_rate(radii, False, tp)
    assert np.all(np.diff(k) < 0.0)
    assert np.all(tr.closure_rate(radii, True, tp) < k)
    ref = tr.closure_rate(tp.closure_reference_radius, False, tp)
    assert float(ref) == pytest.approx(tp.k_close_open)
    with pytest.raises(ValueError, match="closed_fraction"):
        tr.closure_time(radii, False, tp, 1.0)


def test_closure_rate_with_coefficients_per_row_gives_each_sets_numbers(
    ps: ParameterSet,
) -> None:
    """ClosureParameters with one value per row (several parameter sets side by side): each row
    as under its own set, bit for bit, including an exponent of exactly 0.5 and 2 (NumPy's
    square root and square paths)."""
    from microneedling.parameters.sampling import sample_parameter_sets

    sets = [ps, *sample_parameter_sets(ps, 4, 3, posterior=False)]
    own = [tr.ClosureParameters.from_parameters(s) for s in sets]
    own += [dataclasses.replace(own[0], closure_size_exponent=e) for e in (0.5, 2.0)]
    a = np.tile([20e-6, 35e-6, 0.0, 80e-6], len(own))
    occ = np.tile([False, True, False, True], len(own))
    rows = tr.ClosureParameters(
        **{
            f.name: np.repeat([getattr(o, f.name) for o in own], 4)
            for f in dataclasses.fields(tr.ClosureParameters)
        }
    )
    got = tr.closure_time(a, occ, rows)
    for i, o in enumerate(own):
        assert np.array_equal(got[4 * i : 4 * i + 4], tr.closure_time(a[:4], occ[:4], o))


# ---------------------------------- what limits channel uptake (issue 10 item 6, 2026-12-07)
def _naloxone_pen(
    tp: tr.TransportParameters,
    mols: dict[str, Molecule],
    *,
    density_cm2: float = 18857.0,
    radius_um: float = 63.1,
    depth_um: float = 174.0,
    occluded: bool = False,
    in_vitro: bool = False,
    params: tr.TransportParameters | None = None,
) -> tr.Absorption:
    """The naloxone2021 Franz case: 18 mg/mL in 200 uL/cm2 for 6 h at pH 4.7, no evaporation,
    abdomen layers (SC 22.6, VE 80.7, dermis 338 + 1354 um), pen channels as the insertion model
    gives them (about 19,000 /cm2 of 63 um radius: n pi a^2 = 2.4)."""
    lay = np.array([[22.6e-6, 80.72e-6, 338.4e-6, 1353.6e-6]])
    veh = tr.Vehicle.default(1, tp, ph=4.7, volatile_fraction=0.0, in_vitro=in_vitro)
    return tr.absorb(
        tr.Solute.from_molecules([mols["naloxone"]]), 18.0, 2e-3, 6 * 3600.0,
        density_cm2 * 1e4, radius_um * 1e-6, depth_um * 1e-6, lay, occluded,
        params or tp, vehicle=veh,
    ).squeeze()  # fmt: skip


def test_needled_uptake_is_bounded_by_the_open_surface(
    tp: tr.TransportParameters, mols: dict[str, Molecule]
) -> None:
    """Beyond overlap (n pi a^2 >= 1) more punctures add nothing (the surface is open; the viable
    tissue limits); below it the uptake falls with a thinner open area (fewer or narrower
    channels). The pen stand-in no longer takes up the donor (before: 93% of it in vivo)."""
    dense = _naloxone_pen(tp, mols)
    denser = _naloxone_pen(tp, mols, density_cm2=3 * 18857.0)
    assert float(denser.total) == pytest.approx(float(dense.total), rel=1e-6)
    assert float(dense.total) < 0.5 * float(dense.dose)
    sparse = [float(_naloxone_pen(tp, mols, density_cm2=n).total) for n in (20.0, 80.0, 320.0)]
    assert sparse[0] < sparse[1] < sparse[2] < float(dense.total) * 1.2
    thin = [float(_naloxone_pen(tp, mols, density_cm2=200.0, radius_um=r).total)
            for r in (10.0, 20.0, 40.0)]  # fmt: skip
    assert thin[0] < thin[1] < thin[2]


def test_overlapping_channels_close_monotonically(
    tp: tr.TransportParameters, mols: dict[str, Molecule]
) -> None:
    """Faster resealing never delivers more (the dense limit is exact in the open fraction; the
    9-node interpolation of the cell ratio gave +73% between 0.3 and 0.7 /h)."""
    tot = []
    for k in (0.03, 0.3, 0.5, 0.7, 1.0, 2.0):
        p = dataclasses.replace(tp, k_close_occluded=k / 3600.0)
        tot.append(float(_naloxone_pen(tp, mols, occluded=True, params=p).total))
    assert np.all(np.diff(tot) < 0.0), tot


def test_a_diffusion_cell_differs_from_living_skin_as_its_mechanism_says(
    tp: tr.TransportParameters, mols: dict[str, Molecule]
) -> None:
    """In vitro (no blood flow: the tissue drains to the receptor at pi^2 D_t/(4 H^2), slower
    than k_cl for naloxone) the viable tissue fills and the needled uptake falls against living
    skin under the same closure; what leaves the tissue goes to the receptor. A diffusion cell's
    channels close at the occluded rate, covered or not (excised skin does not heal)."""
    for n in (200.0, 18857.0):
        vivo = _naloxone_pen(tp, mols, density_cm2=n, occluded=True)
        vitro = _naloxone_pen(tp, mols, density_cm2=n, occluded=True, in_vitro=True)
        assert float(vitro.total) < float(vivo.total)
        assert float(vitro.retained) > float(vivo.retained)
        open_cell = _naloxone_pen(tp, mols, density_cm2=n, in_vitro=True)
        assert float(open_cell.total) == pytest.approx(float(vitro.total), rel=1e-12)
        assert float(open_cell.k_close) == float(vitro.k_close)
    assert float(_naloxone_pen(tp, mols).k_close) > 10 * float(vitro.k_close)

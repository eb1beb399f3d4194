"""Resolved unit-cell solver against exact solutions (Crank, The Mathematics of Diffusion, 2nd ed.
1975; models.md D.1–D.3), observed orders of convergence, mass conservation and the qualitative
claims (a channel enhances absorption; deeper channels deliver more)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.special import erfc

from microneedling.physics.unitcell import UnitCell, build_grid, solve

L = 1.0e-4  # m, membrane thickness
D = 1.0e-10  # m²/s
TD = L * L / D  # s, diffusion time (100 s)


def crank_q(t: float, c1: float = 1.0, terms: int = 400) -> float:
    """Cumulative amount [kg/m²] out at x = L of a membrane with C(0) = c1, C(L) = 0, C(x, 0) = 0.

    Crank 1975 eq. 4.24a: Q = L c1 [D t/L² − 1/6 − (2/π²) Σ (−1)ⁿ/n² exp(−D n² π² t/L²)]
    (valid for D t/L² ≥ 0.1 with 400 terms; models.md D.2).
    """
    n = np.arange(1, terms + 1)
    s = np.sum((-1.0) ** n / n**2 * np.exp(-D * n**2 * np.pi**2 * t / L**2))
    return float(L * c1 * (D * t / L**2 - 1.0 / 6.0 - 2.0 / np.pi**2 * s))


def membrane(nz: int, nr: int = 1, **kw: object) -> UnitCell:
    return UnitCell((L,), (D,), (1.0,), nr=nr, nz=nz, **kw)  # type: ignore[arg-type]


def observed_orders(errors: list[float]) -> np.ndarray:
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


# ----------------------------------------------------------------------------- (1) Crank membrane
def test_crank_membrane_q_series_and_lag_time() -> None:
    cell = membrane(40)
    times = TD * np.array([0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    sol = solve(cell, times, dt=TD / 400)
    exact = np.array([crank_q(t) for t in times])
    rel = np.abs(sol.passed_bottom - exact) / exact
    assert rel.max() <= 0.01, rel
    # lag time from the late-time asymptote Q = (D c1/L)(t − L²/6D)
    slope = (sol.passed_bottom[-1] - sol.passed_bottom[-2]) / (times[-1] - times[-2])
    lag = times[-1] - sol.passed_bottom[-1] / slope
    assert slope == pytest.approx(D / L, rel=1e-3)
    assert lag == pytest.approx(L * L / (6 * D), rel=0.01)
    assert sol.mass_balance_residual < 1e-10


def test_one_dimensional_degenerate_is_independent_of_radial_grid() -> None:
    """a = 0: the cell is a layered membrane whatever R and nr are."""
    times = TD * np.array([0.5, 1.0])
    one = solve(membrane(20), times, dt=TD / 200)
    two = solve(membrane(20, nr=7, puncture_density=3.0e7), times, dt=TD / 200)
    np.testing.assert_allclose(two.passed_bottom, one.passed_bottom, rtol=1e-12)
    assert two.concentration is not None
    assert np.ptp(two.concentration, axis=2).max() < 1e-12


# ----------------------------------------------------------------------------- (2) erfc
def test_semi_infinite_erfc_profile_and_uptake() -> None:
    """Deep domain (10 diffusion lengths), early times: C = C0 erfc(z/2√(Dt)) (Crank eq. 2.45),
    uptake M = 2 C0 √(D t/π) (models.md D.1). Tolerances: 2e-3 C0 on the profile, 0.5% on M."""
    H = 1.0e-3
    cell = UnitCell((H,), (D,), (1.0,), nr=1, nz=200, bottom="zero_flux")
    times = np.array([25.0, 50.0, 100.0])
    sol = solve(cell, times, dt=0.1)
    assert sol.concentration is not None
    for k, t in enumerate(times):
        exact = erfc(sol.z / (2 * math.sqrt(D * t)))
        assert np.max(np.abs(sol.concentration[k, :, 0] - exact)) <= 2e-3
        assert sol.absorbed[k] == pytest.approx(2 * math.sqrt(D * t / math.pi), rel=5e-3)
    assert sol.passed_bottom[-1] == 0.0


# ----------------------------------------------------------------------------- (3) orders
def test_spatial_order_two() -> None:
    errs = []
    t = TD
    for nz in (10, 20, 40, 80):
        sol = solve(membrane(nz), [t], dt=TD / 4000)
        errs.append(abs(sol.passed_bottom[0] - crank_q(t)) / crank_q(t))
    p = observed_orders(errs)
    assert np.all(np.abs(p - 2.0) <= 0.2), (errs, p)


@pytest.mark.parametrize(
    ("method", "levels", "order"),
    [("bdf2", (40, 80, 160), 2.0), ("euler", (160, 320, 640), 1.0)],
)
def test_temporal_order(method: str, levels: tuple[int, ...], order: float) -> None:
    """Fine grid (8000 cells: spatial error ~2e-9 relative) so the time error dominates."""
    errs = []
    t = TD
    for m in levels:
        sol = solve(membrane(8000), [t], dt=TD / m, method=method)  # type: ignore[arg-type]
        errs.append(abs(sol.passed_bottom[0] - crank_q(t)) / crank_q(t))
    p = observed_orders(errs)
    assert np.all(np.abs(p - order) <= 0.1 * order), (errs, p)


# ----------------------------------------------------------------------------- 2-D layered cell
def skin(**kw: object) -> UnitCell:
    """SC 15 µm, viable epidermis 85 µm, dermis 900 µm; 25 µm channel; 100 punctures/cm²."""
    base: dict[str, object] = dict(
        layer_thickness=(15e-6, 85e-6, 900e-6),
        layer_diffusivity=(1e-14, 1e-10, 2e-10),
        layer_partition=(5.0, 0.8, 0.8),
        layer_clearance=(0.0, 0.0, 1e-3),
        puncture_density=1.0e6,
        channel_radius=25e-6,
        channel_depth=400e-6,
        channel_diffusivity=5e-10,
        vehicle_concentration=10.0,
        nr=16,
        nz=40,
    )
    base.update(kw)
    return UnitCell(**base)  # type: ignore[arg-type]


def test_grid_aligns_with_channel_and_layers() -> None:
    cell = skin()
    rf, zf = build_grid(cell)
    assert rf[-1] == pytest.approx(1 / math.sqrt(math.pi * 1e6))
    assert np.any(np.isclose(rf, 25e-6, rtol=1e-12))
    for z in (15e-6, 100e-6, 400e-6, 1e-3):
        assert np.any(np.isclose(zf, z, rtol=1e-12))
    assert len(rf) == 17 and len(zf) == 41


# ----------------------------------------------------------------------------- (4) mass balance
@pytest.mark.parametrize("method", ["bdf2", "euler"])
def test_mass_balance_full_2d(method: str) -> None:
    cell = skin(closure_rate=0.7 / 3600)
    times = np.linspace(0.5, 6.0, 12) * 3600
    closures = np.linspace(0.25, 4.0, 16) * 3600
    sol = solve(cell, times, closures, dt=90.0, method=method)  # type: ignore[arg-type]
    assert sol.mass_balance_residual <= 1e-10
    total = sol.absorbed_by_layer.sum(axis=1) + sol.stored_channel + sol.passed_bottom
    np.testing.assert_allclose(total, sol.absorbed, rtol=1e-10)
    assert np.all(sol.cleared_by_layer[:, :2] == 0) and np.all(sol.cleared_by_layer[-1, 2] > 0)
    assert np.all(np.diff(sol.absorbed) > 0)
    assert sol.n_factorizations <= 2 * (len(closures) + 1) + 4


def test_closure_reduces_uptake_and_closed_channel_is_intact_at_steady_state() -> None:
    times = np.array([2.0, 6.0]) * 3600
    open_ = solve(skin(), times, dt=120.0)
    closing = solve(skin(), times, [1800.0], dt=120.0)
    assert closing.absorbed[-1] < open_.absorbed[-1]
    # closed from t = 0: conductivities are the host layer's, so steady flux = intact laminate
    small = dict(layer_clearance=None, nz=30, nr=8, layer_diffusivity=(1e-12, 1e-10, 2e-10))
    t_ss = np.array([1e7])
    closed = solve(skin(**small), t_ss, [0.0], dt=1e6, method="euler")
    intact = solve(skin(channel_depth=0.0, **small), t_ss, dt=1e6, method="euler")
    assert closed.flux_bottom[-1] == pytest.approx(intact.flux_bottom[-1], rel=1e-8)


# ----------------------------------------------------------------------------- (5) channels enhance
def test_channel_enhances_and_deeper_delivers_more() -> None:
    times = np.array([1.0, 4.0]) * 3600
    intact = solve(skin(channel_depth=0.0), times, dt=120.0)
    # below ~0.2 mm the gain saturates (channel resistance); the spread here is well above the
    # discretisation error (< 2% between 16x40 and 32x80 grids)
    depths = (20e-6, 50e-6, 120e-6)
    uptakes = [solve(skin(channel_depth=d), times, dt=120.0).absorbed for d in depths]
    assert np.all(uptakes[0] > 1.5 * intact.absorbed)
    for shallow, deep in itertools.pairwise(uptakes):
        assert np.all(deep > shallow)


# ----------------------------------------------------------------------------- (6) laminate
def test_steady_laminate_flux() -> None:
    """1/P = Σ L_i/(K_i D_i) (models.md D.3); steady flux J = P c_v at top and bottom."""
    cell = UnitCell(
        layer_thickness=(10e-6, 50e-6, 100e-6),
        layer_diffusivity=(1e-12, 1e-10, 3e-10),
        layer_partition=(5.0, 1.0, 0.7),
        vehicle_concentration=3.0,
        nr=1,
        nz=30,
    )
    sol = solve(cell, [1e5], dt=1e3, method="euler")
    J = cell.laminate_permeability() * 3.0
    assert sol.flux_bottom[-1] == pytest.approx(J, rel=1e-9)
    assert sol.flux_top[-1] == pytest.approx(J, rel=1e-9)
    # C/K continuous at each interface: extrapolate u = C/K linearly from both sides with J/(D K)
    assert sol.concentration is not None
    lay = np.searchsorted(cell.interfaces, sol.z) - 1
    u = sol.concentration[-1, :, 0] / np.asarray(cell.layer_partition)[lay]
    dk = np.multiply(cell.layer_diffusivity, cell.layer_partition)[lay]
    for zi in (10e-6, 60e-6):
        i = int(np.searchsorted(sol.z, zi))
        left = u[i - 1] - J * (zi - sol.z[i - 1]) / dk[i - 1]
        right = u[i] + J * (sol.z[i] - zi) / dk[i]
        assert left == pytest.approx(right, rel=1e-9)


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="layer_partition"):
        UnitCell((1e-4,), (1e-10,), (1.0, 2.0))
    with pytest.raises(ValueError, match="channel_radius"):
        skin(channel_radius=1e-3)
    with pytest.raises(ValueError, match="times"):
        solve(membrane(5), [2.0, 1.0])


# ----------------------------------------------------------------------------- linear solves
def test_iterative_steps_match_factoring_every_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the LU solver, rarely used matrices (start step, short closure levels) are solved by PCG
    on a neighbouring LU; the answer equals factoring every matrix to 1e-9 and mass stays balanced
    to 1e-10."""
    from microneedling.physics import unitcell

    cell = skin(closure_rate=0.7 / 3600)
    times = np.linspace(0.5, 6.0, 12) * 3600
    closures = np.linspace(0.25, 4.0, 16) * 3600
    pcg = solve(cell, times, closures, dt=120.0, direct="lu")
    monkeypatch.setattr(unitcell, "_FACTOR_COST_SOLVES", 0)
    lu = solve(cell, times, closures, dt=120.0, direct="lu")
    assert pcg.n_iterative > 0 and lu.n_iterative == 0
    assert pcg.n_factorizations < lu.n_factorizations
    np.testing.assert_allclose(pcg.absorbed, lu.absorbed, rtol=1e-9)
    assert pcg.concentration is not None and lu.concentration is not None
    assert np.max(np.abs(pcg.concentration - lu.concentration)) <= 1e-9 * np.max(lu.concentration)
    assert pcg.mass_balance_residual <= 1e-10


def test_closure_levels_override_the_exponential() -> None:
    """closure_levels = exp(−k t_j) reproduces the default levels; other levels change the answer."""
    k = 0.7 / 3600
    cell = skin(closure_rate=k)
    times = np.array([1.0, 3.0]) * 3600
    cl = np.array([0.5, 1.0, 2.0]) * 3600
    default = solve(cell, times, cl, dt=120.0)
    same = solve(cell, times, cl, closure_levels=np.exp(-k * cl), dt=120.0)
    np.testing.assert_allclose(same.absorbed, default.absorbed, rtol=1e-12)
    shut = solve(cell, times, cl, closure_levels=[0.0, 0.0, 0.0], dt=120.0)
    assert shut.absorbed[-1] < default.absorbed[-1]
    with pytest.raises(ValueError, match="closure_levels"):
        solve(cell, times, cl, closure_levels=[0.5, 2.0, 0.1])


_R = 1.0 / math.sqrt(math.pi * 1.0e6)  # cell radius of skin() [m]


@pytest.mark.parametrize(
    ("case", "kw", "closures", "method"),
    [
        ("open channel", {}, None, "bdf2"),
        ("closing channel", {"closure_rate": 0.7 / 3600}, [900.0, 1800.0, 5400.0], "bdf2"),
        ("finite dose, zero-flux bottom, closing", {"vehicle_thickness": 20e-6,
         "bottom": "zero_flux", "closure_rate": 0.7 / 3600}, [1800.0, 7200.0], "bdf2"),
        ("no channel", {"channel_depth": 0.0}, None, "bdf2"),
        ("backward Euler", {}, None, "euler"),
        ("faces off the channel wall", {"nr": 4, "r_faces": (0.0, 10e-6, 30e-6, 200e-6, _R)},
         [1800.0], "bdf2"),
        ("one column inside the channel", {"nr": 2, "r_faces": (0.0, 26e-6, _R)}, None, "bdf2"),
        ("a single cell", {"nr": 1, "nz": 1, "r_faces": (0.0, _R), "z_faces": (0.0, 1e-3),
         "vehicle_thickness": 20e-6}, None, "bdf2"),
    ],
)  # fmt: skip
def test_separable_solver_equals_lu(
    case: str, kw: dict[str, object], closures: list[float] | None, method: str
) -> None:
    """The default direct solver (column blocks: radial modes, tridiagonal solves, the Schur
    complement on the faces between the blocks, the film as a bordered system) gives the answer of
    sparse LU on the assembled matrix to round-off (measured ~3e-14 relative; tolerance 1e-11), and
    sets up every matrix instead of iterating (its setup costs fewer solves than PCG needs)."""
    cell = skin(**kw)
    times = np.array([1.0, 2.5, 4.0]) * 3600
    sep = solve(cell, times, closures, dt=120.0, method=method)  # type: ignore[arg-type]
    lu = solve(cell, times, closures, dt=120.0, method=method, direct="lu")  # type: ignore[arg-type]
    np.testing.assert_allclose(sep.absorbed, lu.absorbed, rtol=1e-11, err_msg=case)
    np.testing.assert_allclose(sep.vehicle, lu.vehicle, rtol=1e-11, err_msg=case)
    np.testing.assert_allclose(sep.cleared_by_layer, lu.cleared_by_layer, rtol=1e-11, err_msg=case)
    assert sep.concentration is not None and lu.concentration is not None
    assert np.max(np.abs(sep.concentration - lu.concentration)) <= 1e-11 * np.max(lu.concentration)
    assert sep.mass_balance_residual <= 1e-10
    assert sep.n_iterative == 0


def test_unknown_direct_solver_raises() -> None:
    with pytest.raises(ValueError, match="direct"):
        solve(skin(), [3600.0], direct="cholesky")  # type: ignore[arg-type]

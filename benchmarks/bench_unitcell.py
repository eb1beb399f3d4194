"""Benchmark: the resolved unit-cell solver (``physics.unitcell``) vs FiPy and py-pde.

Run on its own (not a test), from the repository root, with the ``bench`` extras (fipy, py-pde)::

    python benchmarks/bench_unitcell.py             # ~2-3 minutes on 2 idle cores
    python benchmarks/bench_unitcell.py --profile   # also cProfile the 200x400 solve

Every case solves the SAME problem in the same process, in the potential u = C/K
(K u_t = div(D K grad u) - k K u, u = c_v at the surface, sink at the bottom), and errors are
max over the compared output times of |u - u_ref| / c_v, u_ref being a fine reference from our
solver (grid refined m times inside every coarse cell, volume-averaged back to the coarse cells;
BDF2 with a much smaller step).

(a) 1-D laminate (a = 0, nr = 1): 3 layers 10/40/150 um, D = 1e-12/5e-11/1e-10 m^2/s,
    K = 5/0.8/0.8, clearance 1e-3 1/s in the last layer; uniform 1 um cells; t_end = 600 s.
    Ours: backward Euler, factor once. FiPy: the same finite volumes (harmonic face values of D K,
    Dirichlet at half-cell distance), backward Euler, default solver, written as a user would
    (``eq.solve(var, dt=dt)`` in a loop, which re-assembles the matrix every step). py-pde: the same
    finite-volume right-hand side (numba) with its "implicit" stepper (fixed-point backward Euler),
    its "scipy" stepper (solve_ivp BDF, adaptive, different scheme) and its explicit Euler stepper at
    0.9 x the stable step (different scheme, ~10^5 steps).
(b) axisymmetric r-z skin cell (SC/VE/dermis 15/85/900 um, 25 um x 400 um channel, 100 /cm^2) on
    ``build_grid`` 40x80 (our default), 24 h, 8 outputs. FiPy: ``CylindricalGrid2D`` on the same
    faces (same volumes and face areas up to the common factor 2 pi, so the same discrete problem),
    backward Euler with dt = 432 s, all 200 steps (``--fipy-steps N`` runs N and extrapolates).
    Ours: the same backward Euler (same error), and BDF2 with the fewest steps (from a fixed list)
    whose error against the reference is <= FiPy's: the "equal error" ratio.
(c) the same skin cell on a 200x400 grid (the 100x200 ``build_grid`` refined 2x, so that a
    Richardson estimate of its spatial error is available) over 24 h with 24 hourly outputs: BDF2 and
    backward Euler at the default dt (24 h/200; median of 3), the time error at dt = 24 h/200 ... /48
    against dt = 24 h/1600 on the same grid, and a closing channel (24 coefficient levels). The
    solver before issue 15 (``direct="lu"``: sparse LU, rarely used matrices by PCG on a neighbouring
    LU, or one LU per level when forced by ``_FACTOR_COST_SOLVES = 0``) is timed in the same run
    against the default separable solver (``direct="separable"``), interleaved.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from microneedling.physics.unitcell import UnitCell, build_grid, solve

Row = tuple[str, str, str, str, str, str]
ROWS: list[Row] = []


def row(case: str, method: str, grid: str, steps: str, t: str, err: str) -> None:
    ROWS.append((case, method, grid, steps, t, err))
    print(f"  {method:<44} {grid:<10} {steps:<14} {t:<26} {err}", flush=True)


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    ts, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def refine(f: np.ndarray, m: int) -> np.ndarray:
    """Split every cell of the face array ``f`` into ``m`` equal cells."""
    parts = [np.linspace(f[i], f[i + 1], m + 1)[:-1] for i in range(len(f) - 1)]
    return np.concatenate([*parts, f[-1:]])


def coarsen(u: np.ndarray, rf: np.ndarray, zf: np.ndarray, m: int) -> np.ndarray:
    """Volume average of a fine (nz m, nr m) field back to the coarse cells (cylindrical)."""
    w = np.diff(zf)[:, None] * np.diff(rf**2)[None, :]
    nz, nr = u.shape[0] // m, u.shape[1] // m
    num = (u * w).reshape(nz, m, nr, m).sum(axis=(1, 3))
    return num / w.reshape(nz, m, nr, m).sum(axis=(1, 3))


def potential(cell: UnitCell, sol: Any) -> np.ndarray:
    """u = C/K (T, nz, nr) from a solution's tissue concentration."""
    K = _mesh_from(cell, sol.r_faces, sol.z_faces)[0]
    return np.asarray(sol.concentration) / K


def _mesh_from(
    cell: UnitCell, rf: np.ndarray, zf: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cell storage K, conductivity D K and clearance k K (open channel), own construction."""
    zc, rc = 0.5 * (zf[:-1] + zf[1:]), 0.5 * (rf[:-1] + rf[1:])
    nl = len(cell.layer_thickness)
    lay = np.clip(np.searchsorted(cell.interfaces, zc, side="right") - 1, 0, nl - 1)
    shape = (len(zc), len(rc))
    D = np.broadcast_to(np.asarray(cell.layer_diffusivity)[lay][:, None], shape).copy()
    K = np.broadcast_to(np.asarray(cell.layer_partition)[lay][:, None], shape).copy()
    kc = np.zeros(nl) if cell.layer_clearance is None else np.asarray(cell.layer_clearance)
    k = np.broadcast_to(kc[lay][:, None], shape).copy()
    if cell.has_channel:
        ch = (zc[:, None] < cell.channel_depth) & (rc[None, :] < cell.channel_radius)
        D[ch], K[ch], k[ch] = cell.channel_diffusivity, cell.channel_partition, 0.0
    return K, D * K, k * K


def err(u: np.ndarray, ref: np.ndarray, cv: float) -> float:
    return float(np.max(np.abs(u - ref)) / cv)


# ----------------------------------------------------------------------------- FiPy
def fipy_run(
    cell: UnitCell, rf: np.ndarray, zf: np.ndarray, dt: float, n_steps: int, out_every: int
) -> tuple[float, list[np.ndarray], str]:
    """Backward Euler with FiPy as a user writes it. Returns (seconds, [u at outputs], solver)."""
    import fipy

    K, DK, kK = _mesh_from(cell, rf, zf)
    nz, nr = K.shape
    if nr == 1:
        mesh = fipy.Grid1D(dx=np.diff(zf))
        top, bot = mesh.facesLeft, mesh.facesRight
        K, DK, kK = K[:, 0], DK[:, 0], kK[:, 0]
    else:  # x = r, y = depth; cells ordered x fastest = our (nz, nr) ravel
        mesh = fipy.CylindricalGrid2D(dr=np.diff(rf), dz=np.diff(zf))
        top, bot = mesh.facesBottom, mesh.facesTop
    u = fipy.CellVariable(mesh=mesh, value=0.0)
    u.constrain(cell.vehicle_concentration, top)
    u.constrain(0.0, bot)
    kv = fipy.CellVariable(mesh=mesh, value=K.ravel())
    dkv = fipy.CellVariable(mesh=mesh, value=DK.ravel())
    kkv = fipy.CellVariable(mesh=mesh, value=kK.ravel())
    eq = fipy.TransientTerm(coeff=kv) == fipy.DiffusionTerm(
        coeff=dkv.harmonicFaceValue
    ) - fipy.ImplicitSourceTerm(coeff=kkv)
    solver = fipy.DefaultSolver()
    outs: list[np.ndarray] = []
    t0 = time.perf_counter()
    for n in range(1, n_steps + 1):
        eq.solve(var=u, dt=dt, solver=solver)
        if n % out_every == 0:
            outs.append(np.array(u.value).reshape(nz, nr))
    return time.perf_counter() - t0, outs, type(solver).__name__


# ----------------------------------------------------------------------------- (a) 1-D
def laminate_1d() -> tuple[UnitCell, np.ndarray]:
    zf = np.linspace(0.0, 200e-6, 201)
    cell = UnitCell(
        layer_thickness=(10e-6, 40e-6, 150e-6),
        layer_diffusivity=(1e-12, 5e-11, 1e-10),
        layer_partition=(5.0, 0.8, 0.8),
        layer_clearance=(0.0, 0.0, 1e-3),
        nr=1,
        z_faces=tuple(zf),
    )
    return cell, zf


def pypde_fv_pde(cell: UnitCell, zf: np.ndarray) -> Any:
    """A py-pde PDE whose right-hand side is the SAME 1-D finite-volume operator (numba or numpy)."""
    import numba
    import pde

    K, DK, kK = (x[:, 0] for x in _mesh_from(cell, np.array([0.0, 1.0]), zf))
    dz = np.diff(zf)
    zc = 0.5 * (zf[:-1] + zf[1:])
    g = 1.0 / ((zf[1:-1] - zc[:-1]) / DK[:-1] + (zc[1:] - zf[1:-1]) / DK[1:])
    gt, gb = DK[0] / (zc[0] - zf[0]), DK[-1] / (zf[-1] - zc[-1])
    m = K * dz
    kdz = kK * dz
    cv = cell.vehicle_concentration

    def rate_np(u: np.ndarray) -> np.ndarray:
        net = -kK * dz * u
        f = g * (u[:-1] - u[1:])
        net[:-1] -= f
        net[1:] += f
        net[0] += gt * (cv - u[0])
        net[-1] -= gb * u[-1]
        return net / m

    @numba.njit(cache=False)
    def rate_nb(u: np.ndarray, t: float) -> np.ndarray:
        n = u.size
        out = np.empty(n)
        for j in range(n):
            out[j] = -kdz[j] * u[j]
        for j in range(n - 1):
            f = g[j] * (u[j] - u[j + 1])
            out[j] -= f
            out[j + 1] += f
        out[0] += gt * (cv - u[0])
        out[n - 1] -= gb * u[n - 1]
        for j in range(n):
            out[j] /= m[j]
        return out

    class FVLaminate(pde.PDEBase):
        explicit_time_dependence = False

        def evolution_rate(self, state: Any, t: float = 0) -> Any:
            return state.copy(data=rate_np(state.data))

        def make_evolution_rate(self, state: Any, backend: Any) -> Any:
            if "numba" in str(getattr(backend, "name", backend)):
                return rate_nb
            return lambda u, t: rate_np(u)

    grid = pde.CartesianGrid([[0.0, float(zf[-1])]], len(dz))  # uniform: field storage only
    diag = (np.r_[gt, g] + np.r_[g, gb] + kdz) / m  # Gershgorin: lambda_max <= 2 max(diag)
    return FVLaminate(), pde.ScalarField(grid, 0.0), float(2.0 * diag.max())


def case_a() -> dict[str, float]:
    print("\n(a) 1-D laminate, 200 uniform cells, t_end = 600 s", flush=True)
    cell, zf = laminate_1d()
    cv = cell.vehicle_concentration
    t_end, n_steps, n_out = 600.0, 400, 10
    dt = t_end / n_steps
    times = np.linspace(t_end / n_out, t_end, n_out)
    mref = 8
    ref_cell = UnitCell(**{**cell.__dict__, "z_faces": tuple(refine(zf, mref))})
    ref = solve(ref_cell, times, dt=dt / 64, method="bdf2")
    fine = potential(ref_cell, ref)[:, :, 0]
    w = np.diff(ref.z_faces)
    u_ref = (fine * w).reshape(n_out, -1, mref).sum(axis=2) / w.reshape(-1, mref).sum(axis=1)
    solve(cell, times, dt=dt, method="euler")  # warm-up
    t_ours, sol = timed(lambda: solve(cell, times, dt=dt, method="euler"), repeat=5)
    u_ours = potential(cell, sol)[:, :, 0]
    e_ours = err(u_ours, u_ref, cv)
    row(
        "a",
        "ours backward Euler (one matrix set up)",
        "200",
        str(n_steps),
        f"{t_ours * 1e3:.1f} ms",
        f"{e_ours:.2e}",
    )
    t_bdf, solb = timed(lambda: solve(cell, times, dt=dt, method="bdf2"), repeat=5)
    e_bdf = err(potential(cell, solb)[:, :, 0], u_ref, cv)
    row("a", "ours BDF2 (same dt)", "200", str(n_steps), f"{t_bdf * 1e3:.1f} ms", f"{e_bdf:.2e}")

    t_fipy, outs, sname = fipy_run(cell, np.array([0.0, 1.0]), zf, dt, n_steps, n_steps // n_out)
    u_fipy = np.array([x[:, 0] for x in outs])
    e_fipy = err(u_fipy, u_ref, cv)
    row(
        "a",
        f"FiPy BE, {sname}, re-assembled",
        "200",
        str(n_steps),
        f"{t_fipy:.2f} s ({t_fipy / n_steps * 1e3:.1f} ms/step)",
        f"{e_fipy:.2e}",
    )
    print(f"    FiPy vs ours (same scheme): max |du|/cv = {err(u_fipy, u_ours, cv):.1e}")
    print(f"    ... at the first output: {err(u_fipy[:1], u_ours[:1], cv):.1e}")

    res = {"t_ours": t_ours, "t_fipy": t_fipy, "e_ours": e_ours, "e_fipy": e_fipy}
    # py-pde
    try:
        import pde

        eq, state0, lam = pypde_fv_pde(cell, zf)
        for solver, kw in (
            ("implicit", {"dt": dt}),
            ("scipy", {"method": "BDF", "rtol": 1e-6, "atol": 1e-9}),
            ("explicit", {"dt": 0.9 * 2.0 / lam, "adaptive": False}),
        ):
            storage = pde.MemoryStorage()
            label = f"py-pde {solver}" + (
                " (fixed-point BE, same dt)" if solver == "implicit" else ""
            )
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.perf_counter()
                    _, info = eq.solve(
                        state0.copy(),
                        t_range=t_end,
                        solver=solver,
                        tracker=[storage.tracker(list(times))],
                        ret_info=True,
                        **kw,
                    )
                    tp = time.perf_counter() - t0
            except Exception as exc:
                row("a", label, "200", "-", "FAILED", f"{type(exc).__name__}: {str(exc)[:40]}")
                continue
            u_p = np.array([f.data for f in storage])[-n_out:]
            steps = info.get("solver", {}).get("steps", "?")
            e_p = err(u_p, u_ref, cv)
            extra = " (solve_ivp BDF, adaptive)" if solver == "scipy" else ""
            if solver == "explicit":
                extra = f" (dt = {kw['dt']:.1e} s, incl. JIT)"
            row("a", label + extra, "200", str(steps), f"{tp:.2f} s", f"{e_p:.2e}")
            res[f"t_pypde_{solver}"], res[f"e_pypde_{solver}"] = tp, e_p
    except ImportError:
        print("  py-pde not installed")
    return res


# ----------------------------------------------------------------------------- (b) r-z
def skin(nr: int, nz: int, **kw: Any) -> UnitCell:
    base: dict[str, Any] = dict(
        layer_thickness=(15e-6, 85e-6, 900e-6),
        layer_diffusivity=(1e-14, 1e-10, 2e-10),
        layer_partition=(5.0, 0.8, 0.8),
        layer_clearance=(0.0, 0.0, 1e-3),
        puncture_density=1.0e6,
        channel_radius=25e-6,
        channel_depth=400e-6,
        channel_diffusivity=5e-10,
        vehicle_concentration=10.0,
        nr=nr,
        nz=nz,
    )
    base.update(kw)
    return UnitCell(**base)


def case_b(n_fipy: int) -> dict[str, float]:
    print("\n(b) axisymmetric r-z skin cell 40x80 (build_grid), 24 h", flush=True)
    cell = skin(40, 80)
    cv = cell.vehicle_concentration
    rf, zf = build_grid(cell)
    t_end, n_steps, n_out = 86400.0, 200, 8
    dt = t_end / n_steps
    times = np.linspace(t_end / n_out, t_end, n_out)
    m = 3
    fine = UnitCell(
        **{**cell.__dict__, "r_faces": tuple(refine(rf, m)), "z_faces": tuple(refine(zf, m))}
    )
    t_ref, ref = timed(lambda: solve(fine, times, dt=dt / 16, method="bdf2"))
    print(f"  reference: {3 * 40}x{3 * 80} grid, BDF2 dt/16 ({t_ref:.1f} s)")
    uref = np.array([coarsen(x, ref.r_faces, ref.z_faces, m) for x in potential(fine, ref)])

    def e_of(sol: Any) -> float:
        return err(potential(cell, sol), uref, cv)

    solve(cell, times, dt=dt, method="euler")  # warm-up
    t_be, sol = timed(lambda: solve(cell, times, dt=dt, method="euler"), repeat=5)
    u_be = potential(cell, sol)
    e_be = err(u_be, uref, cv)
    row("b", "ours BE (same scheme, grid, dt as FiPy)", "40x80", str(n_steps),
        f"{t_be * 1e3:.1f} ms", f"{e_be:.2e}")  # fmt: skip
    n_run = n_fipy if n_fipy > 0 else n_steps
    t_f, outs, sname = fipy_run(cell, rf, zf, dt, n_run, n_steps // n_out)
    if n_run == n_steps:
        u_f = np.array(outs)
        e_f = err(u_f, uref, cv)
        t_fipy = t_f
        row("b", f"FiPy CylindricalGrid2D BE, {sname}", "40x80", str(n_steps), f"{t_f:.2f} s",
            f"{e_f:.2e}")  # fmt: skip
        print(f"    FiPy vs ours BE: max |du|/cv = {err(u_f, u_be, cv):.1e}")
    else:  # short run: per-step cost extrapolated, error = ours BE (same discrete problem)
        t_fipy = t_f / n_run * n_steps
        e_f = e_be
        row("b", f"FiPy BE, {sname} ({n_run} steps, extrapolated)", "40x80", str(n_steps),
            f"{t_fipy:.2f} s", "= ours BE")  # fmt: skip
    # ours at equal error: BDF2 with the fewest steps whose error is <= FiPy's
    best = (t_be, n_steps, e_be)
    for n in (8, 16, 24, 32, 48, 64, 96, 128, 200):
        t_n, sol_n = timed(lambda n=n: solve(cell, times, dt=t_end / n, method="bdf2"), repeat=5)
        e_n = e_of(sol_n)
        if e_n <= e_f * (1 + 1e-9):
            best = (t_n, n, e_n)
            break
    row("b", "ours BDF2, fewest steps with error <= FiPy's", "40x80", str(best[1]),
        f"{best[0] * 1e3:.1f} ms", f"{best[2]:.2e}")  # fmt: skip
    return {"t_ours": t_be, "t_fipy": t_fipy, "e_ours": e_be, "e_fipy": e_f,
            "t_equal": best[0], "n_equal": best[1], "e_equal": best[2]}  # fmt: skip


# ----------------------------------------------------------------------------- (c) 200x400
def case_c(profile: bool) -> dict[str, float]:
    print("\n(c) skin cell 200x400 (80 000 cells), 24 h, 24 hourly outputs", flush=True)
    # the 200x400 grid is the 100x200 build_grid refined 2x (nested: Richardson error estimate)
    coarse = skin(100, 200)
    rf, zf = build_grid(coarse)
    cell = skin(200, 400, r_faces=tuple(refine(rf, 2)), z_faces=tuple(refine(zf, 2)))
    cv = cell.vehicle_concentration
    times = np.linspace(1.0, 24.0, 24) * 3600
    res: dict[str, float] = {}
    sols: dict[str, Any] = {}
    for method in ("bdf2", "euler"):
        for direct in ("lu", "separable"):  # interleaved repeats: same load for both
            ts = []
            for _ in range(3):
                t, sol = timed(
                    lambda method=method, direct=direct: solve(
                        cell, times, method=method, store_fields=False, direct=direct
                    )
                )
                ts.append(t)
            t = statistics.median(ts)
            what = "LU + PCG (before issue 15)" if direct == "lu" else "separable (default)"
            kind = "LU" if direct == "lu" else "set-ups"
            row("c", f"ours {method}, {what}, dt = 24 h/200 (median of 3)", "200x400",
                f"{len(times) * 9} ({sol.n_factorizations} {kind}, {sol.n_iterative} PCG)",
                f"{t:.2f} s", "-")  # fmt: skip
            res[f"{method}_{direct}"] = t
            sols[f"{method}_{direct}"] = sol
        a, b = sols[f"{method}_separable"].absorbed, sols[f"{method}_lu"].absorbed
        print(f"    separable vs LU: max rel. diff of absorbed {np.max(np.abs(a - b) / b):.1e}")
    res["bdf2"], res["euler"] = res["bdf2_separable"], res["euler_separable"]
    # errors: time (vs dt/8, same grid) and space (Richardson: (fine - coarse)/3, second order)
    t_ref, ref = timed(lambda: solve(cell, times, dt=86400.0 / 1600, method="bdf2"))
    u_ref = potential(cell, ref)
    u_c = potential(coarse, solve(coarse, times, dt=86400.0 / 1600, method="bdf2"))
    e_space = float(
        np.max(np.abs(np.array([coarsen(x, ref.r_faces, ref.z_faces, 2) for x in u_ref]) - u_c))
        / 3.0
        / cv
    )
    print(f"  time reference: dt = 24 h/1600 ({t_ref:.1f} s); spatial error of the 200x400 grid "
          f"(Richardson) {e_space:.2e}")  # fmt: skip
    res["e_space"] = e_space
    for n in (200, 100, 72, 48):
        t_n, sol_n = timed(lambda n=n: solve(cell, times, dt=86400.0 / n, method="bdf2"), repeat=3)
        e_t = err(potential(cell, sol_n), u_ref, cv)
        row("c", f"ours BDF2 dt = 24 h/{n}", "200x400",
            f"{sol_n.n_factorizations} set-ups, {sol_n.n_iterative} PCG", f"{t_n:.2f} s",
            f"time error {e_t:.2e} (space {e_space:.2e})")  # fmt: skip
        res[f"t_{n}"], res[f"e_{n}"] = t_n, e_t
    # closure: 24 coefficient changes. Before issue 15: sparse LU, with PCG on a neighbouring LU
    # (its default) or one factorization per level (forced by _FACTOR_COST_SOLVES = 0); now the
    # separable solver, set up per level
    from microneedling.physics import unitcell as uc

    closing = skin(200, 400, closure_rate=0.7 / 3600, r_faces=cell.r_faces, z_faces=cell.z_faces)
    cl = np.linspace(0.25, 6.0, 24) * 3600
    t_pcg, s_pcg = timed(lambda: solve(closing, times, cl, store_fields=False, direct="lu"))
    saved = uc._FACTOR_COST_SOLVES
    uc._FACTOR_COST_SOLVES = 0  # what-if: factor every matrix
    try:
        t_lu, s_lu = timed(lambda: solve(closing, times, cl, store_fields=False, direct="lu"))
    finally:
        uc._FACTOR_COST_SOLVES = saved
    t_sep, s_sep = timed(lambda: solve(closing, times, cl, store_fields=False), repeat=3)

    def diff(s: Any) -> float:
        return float(np.max(np.abs(s.absorbed - s_lu.absorbed) / s_lu.absorbed))

    row("c", "closing channel, 24 levels: LU per level", "200x400",
        f"{s_lu.n_factorizations} LU", f"{t_lu:.2f} s",
        f"balance {s_lu.mass_balance_residual:.0e}")  # fmt: skip
    row("c", "closing channel, 24 levels: LU + PCG on a neighbour LU", "200x400",
        f"{s_pcg.n_factorizations} LU, {s_pcg.n_iterative} PCG", f"{t_pcg:.2f} s",
        f"absorbed vs LU per level {diff(s_pcg):.1e}; balance "
        f"{s_pcg.mass_balance_residual:.0e}")  # fmt: skip
    row("c", "closing channel, 24 levels: separable (default, median of 3)", "200x400",
        f"{s_sep.n_factorizations} set-ups, {s_sep.n_iterative} PCG", f"{t_sep:.2f} s",
        f"absorbed vs LU per level {diff(s_sep):.1e}; balance "
        f"{s_sep.mass_balance_residual:.0e}")  # fmt: skip
    res["t_close_lu"], res["t_close_pcg"], res["t_close_sep"] = t_lu, t_pcg, t_sep
    if profile:
        pr = cProfile.Profile()
        pr.enable()
        solve(cell, times)
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(8)
        print(s.getvalue())
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", action="store_true", help="cProfile the 200x400 solve")
    ap.add_argument(
        "--fipy-steps",
        type=int,
        default=0,
        help="FiPy steps in case (b) (0: all 200; fewer: extrapolate its per-step cost)",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    a = case_a()
    b = case_b(args.fipy_steps)
    c = case_c(args.profile)
    print("\n| case | method | grid | steps | time | error (max |u-u_ref|/c_v) |")
    print("|---|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(x.strip() for x in r) + " |")
    print("\nratios")
    print(
        f"  (a) FiPy / ours (BE, same grid, dt): {a['t_fipy'] / a['t_ours']:.0f}x at error {a['e_fipy']:.2e} vs {a['e_ours']:.2e}"
    )
    for k in ("implicit", "scipy", "explicit"):
        if f"t_pypde_{k}" in a:
            print(
                f"  (a) py-pde {k} / ours BE: {a[f't_pypde_{k}'] / a['t_ours']:.0f}x at error {a[f'e_pypde_{k}']:.2e}"
            )
    print(
        f"  (b) FiPy / ours BE (same scheme, grid, dt): {b['t_fipy'] / b['t_ours']:.0f}x at error "
        f"{b['e_fipy']:.2e} vs {b['e_ours']:.2e}"
    )
    print(
        f"  (b) FiPy / ours at equal error (BDF2, {b['n_equal']:.0f} steps): "
        f"{b['t_fipy'] / b['t_equal']:.0f}x (error {b['e_equal']:.2e} <= {b['e_fipy']:.2e}); "
        f"goal >= 100x: {'met' if b['t_fipy'] / b['t_equal'] >= 100 else 'NOT met'}"
    )
    fast = [n for n in (200, 100, 72, 48) if c[f"e_{n}"] <= 0.25 * c["e_space"]]
    print(
        f"  (c) 200x400 over 24 h: default dt BDF2 {c['bdf2']:.2f} s, BE {c['euler']:.2f} s "
        f"(goal <= 1 s: {'met' if c['bdf2'] <= 1.0 else 'NOT met'}); before issue 15 (LU) BDF2 "
        f"{c['bdf2_lu']:.2f} s, BE {c['euler_lu']:.2f} s: {c['bdf2_lu'] / c['bdf2']:.1f}x and "
        f"{c['euler_lu'] / c['euler']:.1f}x; time error at the default dt "
        f"{c['e_200']:.1e} vs the grid's spatial error {c['e_space']:.1e}"
    )
    if fast:
        n_ok = min(fast)
        print(
            f"      fewer steps at equal error: dt = 24 h/{n_ok} (time error "
            f"{c[f'e_{n_ok}']:.1e} <= 1/4 of the spatial error) in {c[f't_{n_ok}']:.2f} s"
        )
    else:
        print("      fewer steps do not keep the error: the time error already exceeds 1/4 of the "
              "spatial error at the default dt")  # fmt: skip
    print(
        f"  (c) closing channel, 24 levels: separable {c['t_close_sep']:.2f} s (goal <= 3 s: "
        f"{'met' if c['t_close_sep'] <= 3.0 else 'NOT met'}); before issue 15: LU per level "
        f"{c['t_close_lu']:.2f} s ({c['t_close_lu'] / c['t_close_sep']:.1f}x), LU + PCG "
        f"{c['t_close_pcg']:.2f} s ({c['t_close_pcg'] / c['t_close_sep']:.1f}x)"
    )
    print(f"\ntotal benchmark time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

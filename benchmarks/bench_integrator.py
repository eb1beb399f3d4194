"""Benchmark: the batched RODAS4 integrator vs loops of ``scipy.integrate.solve_ivp``.

Run on its own (not a test), from the repository root::

    python benchmarks/bench_integrator.py            # ~1-2 minutes on 2 cores
    python benchmarks/bench_integrator.py --quick    # smaller batches, no compile timing

For each model (LINEAR: a stiff 26-compartment system; ROBERTSON; HEALING: the wound-healing
model, 26 states), one "case" is a 1-year-like course with 4 impulses and 300 output times. It prints:

* compile cost: cold (fresh process, empty numba cache), warm (fresh process, cache on disk) and
  in-process (second call), for ``integrate`` on HEALING;
* in-process ms per single case (B = 1), and µs per case for B = 1, 100, 10 000 (all threads)
  and for B = 100 on one thread; for HEALING also B = 100 on one thread with
  ``analytic_jacobian=False`` (complex-step Jacobians and the generic block LU: the integrator
  before the analytic healing Jacobian), i.e. the before/after ratio in one process;
* on a subset of cases, the per-case time of :func:`integrate_reference` (solve_ivp BDF and Radau,
  Python right-hand side) and the speed ratio;
* the achieved error of every run against a tight reference (exact for LINEAR, Radau at
  rtol 1e-11 otherwise), so that times are compared at equal accuracy. Error = max over outputs
  and components of |y - y_ref| / max_t |y_ref| (per component, i.e. relative to its peak).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from microneedling.physics import healing
from microneedling.physics.healing_rhs import N_STATE, PIDX, baseline_state, healing_rhs_py
from microneedling.physics.ode import registry as odes
from microneedling.physics.ode.integrate import integrate, integrate_reference

Fun = Callable[[float, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Problem:
    name: str
    model: int
    y0: np.ndarray
    params: np.ndarray
    t_out: np.ndarray
    imp_t: np.ndarray
    imp_v: np.ndarray
    atol: float | np.ndarray
    fun: Fun
    jac: Fun | None
    exact: Callable[[np.ndarray], np.ndarray] | None = None  # case indices -> (b, T, n)

    def subset(self, idx: np.ndarray) -> Problem:
        return Problem(
            self.name, self.model, self.y0[idx], self.params[idx], self.t_out, self.imp_t[idx],
            self.imp_v[idx], self.atol, self.fun, self.jac, self.exact,
        )  # fmt: skip


# ------------------------------------------------------------------------------------ problems


def linear_problem(nb: int, rng: np.random.Generator) -> Problem:
    """Stiff compartmental system, 26 states: a transfer chain with 5 back-transfers and losses.

    Rates 1e-3 .. 1e2 per day (log-uniform, x U(0.7, 1.3) per case), so the system is stiff and
    its Jacobian sparse (block-triangular with a few 2x2 blocks), like a linearised healing model.
    """
    n = 26
    fwd = 10.0 ** rng.uniform(-3.0, 2.0, n - 1)
    loss = 10.0 ** rng.uniform(-3.0, 0.0, n)
    back = np.zeros(n - 1)
    back[rng.choice(n - 1, 5, replace=False)] = 10.0 ** rng.uniform(-2.0, 1.0, 5)
    base = np.zeros((n, n))
    for i in range(n - 1):
        base[i + 1, i] += fwd[i]
        base[i, i] -= fwd[i]
        base[i, i + 1] += back[i]
        base[i + 1, i + 1] -= back[i]
    base -= np.diag(loss)
    a = base[None] * rng.uniform(0.7, 1.3, (nb, 1, 1))
    b = np.zeros((nb, n))
    b[:, 0] = rng.uniform(0.0, 0.01, nb)  # a small constant source into the first compartment
    params = odes.pack_linear(a, b)
    y0 = np.zeros((nb, n))
    imp_t = np.sort(rng.uniform(0.0, 150.0, (nb, 4)), axis=1)
    imp_v = np.zeros((nb, 4, n))
    imp_v[:, :, 0] = rng.uniform(0.5, 1.0, (nb, 4))
    t_out = np.linspace(0.0, 365.0, 300)

    def fun(t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
        return p[1 : 1 + n * n].reshape(n, n) @ y + p[1 + n * n :]

    def jac(t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
        return p[1 : 1 + n * n].reshape(n, n)

    def exact(idx: np.ndarray) -> np.ndarray:
        """Piecewise y(t) = expm(A (t - s)) (y(s) + A^-1 b) - A^-1 b between impulses."""
        out = np.empty((idx.size, t_out.size, n))
        for r, c in enumerate(idx):
            shift = np.linalg.solve(a[c], b[c])

            def flow(y: np.ndarray, dt: float, c: int = c, shift: np.ndarray = shift) -> np.ndarray:
                return scipy.linalg.expm(a[c] * dt) @ (y + shift) - shift

            y, t, k = y0[c].copy(), 0.0, 0
            for j, tj in enumerate(t_out):
                while k < 4 and imp_t[c, k] <= tj:
                    y = flow(y, imp_t[c, k] - t) + imp_v[c, k]
                    t = imp_t[c, k]
                    k += 1
                out[r, j] = flow(y, tj - t)
        return out

    return Problem("LINEAR (compartmental, n=26)", odes.LINEAR, y0, params, t_out, imp_t, imp_v,
                   1e-9, fun, jac, exact)  # fmt: skip


def robertson_py(t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    k1, k2, k3 = p[0], p[1], p[2]
    return np.array(
        [
            -k1 * y[0] + k3 * y[1] * y[2],
            k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] * y[1],
            k2 * y[1] * y[1],
        ]
    )


def robertson_jac_py(t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    k1, k2, k3 = p[0], p[1], p[2]
    return np.array(
        [
            [-k1, k3 * y[2], k3 * y[1]],
            [k1, -2 * k2 * y[1] - k3 * y[2], -k3 * y[1]],
            [0.0, 2 * k2 * y[1], 0.0],
        ]
    )


def robertson_problem(nb: int, rng: np.random.Generator) -> Problem:
    """Robertson kinetics (k x U(0.5, 2)), 4 doses of y1, outputs log-spaced to t = 1e5."""
    params = np.array([0.04, 3e7, 1e4]) * rng.uniform(0.5, 2.0, (nb, 3))
    y0 = np.tile([1.0, 0.0, 0.0], (nb, 1))
    imp_t = np.sort(10.0 ** rng.uniform(-2.0, 4.0, (nb, 4)), axis=1)
    imp_v = np.zeros((nb, 4, 3))
    imp_v[:, :, 0] = rng.uniform(0.1, 0.5, (nb, 4))
    t_out = np.concatenate([[0.0], np.logspace(-6.0, 5.0, 299)])
    return Problem("ROBERTSON (n=3)", odes.ROBERTSON, y0, params, t_out, imp_t, imp_v,
                   np.array([1e-10, 1e-14, 1e-10]), robertson_py, robertson_jac_py)  # fmt: skip


def healing_problem(nb: int, rng: np.random.Generator) -> Problem:
    """The wound-healing model, default parameters with ±20% variation of 6 rates, 4 sessions."""
    from microneedling.parameters.parameter_set import load_parameters

    nominal = healing.parameter_vector(load_parameters())
    per_case = {"g_Q": rng.uniform(0.05, 0.2, nb), "lesion_drive": rng.uniform(0.5, 1.5, nb)}
    for name in ("k_D", "mu_I", "mu_M", "r_F", "mu_F", "k_3"):
        per_case[name] = nominal[PIDX[name]] * rng.uniform(0.8, 1.2, nb)
    params = healing.parameter_matrix(nominal, nb, per_case)
    y0 = baseline_state(params[:, PIDX["lesion_drive"]])
    days = np.stack([np.zeros(nb), *(28.0 * k + rng.uniform(-5.0, 5.0, nb) for k in (1, 2, 3))], 1)
    phi = rng.uniform(0.005, 0.05, (nb, 4, 3)) * np.array([2.0, 1.0, 0.5])
    cleft = rng.uniform(0.0, 0.1, (nb, 4))  # roller-like sessions: their clefts' blood
    imp_v = healing.session_impulses(
        phi, rng.uniform(0.0, 2.0, (nb, 4)), params[:, PIDX["K_D"]], cleft, params[:, PIDX["rho_B"]]
    )
    t_out = np.linspace(0.0, 365.0, 300)
    # atol 1e-8: the default of healing.solve (states are O(0.01-1))
    return Problem(f"HEALING (n={N_STATE})", odes.HEALING, y0, params, t_out, days, imp_v, 1e-8,
                   healing_rhs_py, None)  # fmt: skip


# ------------------------------------------------------------------------------------ helpers


def achieved_error(y: np.ndarray, ref: np.ndarray) -> float:
    """max |y - ref| / (per-case, per-component peak |ref|), over all outputs."""
    scale = np.max(np.abs(ref), axis=1, keepdims=True)
    mask = np.broadcast_to(scale > 0, ref.shape)
    return float(np.max(np.abs(y - ref)[mask] / np.broadcast_to(scale, ref.shape)[mask]))


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def ours(
    pb: Problem, rtol: float, atol: float | np.ndarray | None = None, parallel: bool = True,
    analytic_jacobian: bool = True,
):  # fmt: skip
    return integrate(
        pb.model, pb.y0, pb.params, pb.t_out, pb.imp_t, pb.imp_v, rtol=rtol,
        atol=pb.atol if atol is None else atol, parallel=parallel,
        analytic_jacobian=analytic_jacobian,
    )  # fmt: skip


def reference(pb: Problem, method: str, rtol: float, atol: float | np.ndarray | None = None):
    return integrate_reference(
        pb.fun, pb.y0, pb.params, pb.t_out, pb.imp_t, pb.imp_v, method=method, rtol=rtol,
        atol=pb.atol if atol is None else atol, jac=pb.jac,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ compile


COMPILE_SNIPPET = textwrap.dedent(
    """
    import time
    t0 = time.perf_counter()
    import numpy as np
    from microneedling.physics.ode import registry as odes
    from microneedling.physics.ode.integrate import integrate
    from microneedling.physics.healing_rhs import N_PARAM, N_STATE, baseline_state
    t1 = time.perf_counter()
    jump = np.zeros((2, 1, N_STATE))
    jump[:, 0, 0] = 0.01
    args = (odes.HEALING, baseline_state(np.ones(2)), np.ones((2, N_PARAM)),
            np.array([0.0, 1.0]), np.zeros((2, 1)), jump)
    integrate(*args)
    t2 = time.perf_counter()
    integrate(*args)
    t3 = time.perf_counter()
    print(f"{t1 - t0:.3f} {t2 - t1:.3f} {(t3 - t2) * 1e3:.3f}")
    """
)


def compile_times() -> None:
    print("\n== compile / cache (integrate on HEALING, fresh processes) ==")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold (empty cache)", "warm (cache on disk)"):
            out = subprocess.run(
                [sys.executable, "-c", COMPILE_SNIPPET], env=env, capture_output=True, text=True,
                check=True,
            ).stdout.split()  # fmt: skip
            print(f"  {label:22s} import {float(out[0]):6.2f} s   first call {float(out[1]):6.2f} s"
                  f"   second call {float(out[2]):6.2f} ms")  # fmt: skip


# ------------------------------------------------------------------------------------ main


def bench_model(pb_all: Problem, batch_sizes: list[int], n_sub: int, quick: bool) -> None:
    print(f"\n== {pb_all.name}: {pb_all.t_out.size} outputs, 4 impulses per case ==")
    sub = pb_all.subset(np.arange(n_sub))
    t0 = time.perf_counter()
    if sub.exact is not None:
        tight = sub.exact(np.arange(n_sub))
        tight_label = "exact solution"
    else:
        tight_atol = np.asarray(sub.atol) * 1e-3
        tight = reference(sub, "Radau", 1e-11, tight_atol).y
        tight_label = "Radau rtol 1e-11"
    print(f"  tight reference ({tight_label}) on {n_sub} cases: {time.perf_counter() - t0:.1f} s")

    one = pb_all.subset(np.arange(1))
    ours(one, 1e-6)  # compile / load
    t_single = best_time(lambda: ours(one, 1e-6), 20 if not quick else 5)
    s1 = ours(one, 1e-6)
    print(f"  single case in-process (rtol 1e-6): {t_single * 1e3:.3f} ms "
          f"({s1.n_steps[0]} steps, {s1.n_rejected[0]} rejected, {s1.n_rhs[0]} RHS evals)")  # fmt: skip
    line = "  µs per case, rtol 1e-6:"
    for nb in batch_sizes:
        pb = pb_all.subset(np.arange(nb))
        rep = 3 if nb <= 100 else 1
        t = best_time(lambda pb=pb: ours(pb, 1e-6), rep)
        line += f"  B={nb}: {t / nb * 1e6:.0f}"
    print(line)
    t_par = t / nb  # the largest batch, all threads
    pb_mid = pb_all.subset(np.arange(batch_sizes[1]))
    t_ser = best_time(lambda: ours(pb_mid, 1e-6, parallel=False), 3) / batch_sizes[1]
    print(f"  B={batch_sizes[1]} serial (parallel=False): {t_ser * 1e6:.0f} µs per case")
    if pb_all.model == odes.HEALING:  # before/after the analytic Jacobian, same process
        t_cs = best_time(lambda: ours(pb_mid, 1e-6, parallel=False, analytic_jacobian=False), 3)
        a = ours(pb_mid, 1e-6, parallel=False)
        b = ours(pb_mid, 1e-6, parallel=False, analytic_jacobian=False)
        diff = achieved_error(a.y, b.y)
        print(f"  B={batch_sizes[1]} serial, complex-step J + generic block LU (before): "
              f"{t_cs / batch_sizes[1] * 1e6:.0f} µs per case -> analytic is "
              f"{t_cs / batch_sizes[1] / t_ser:.2f}x faster; steps {a.n_steps.mean():.0f} vs "
              f"{b.n_steps.mean():.0f}, RHS evals {a.n_rhs.mean():.0f} vs {b.n_rhs.mean():.0f}, "
              f"max difference {diff:.1e}")  # fmt: skip

    print(f"  work-precision on {n_sub} cases (time per case; error vs tight reference):")
    rows: list[tuple[str, float, float, float]] = []
    for rtol in (1e-3, 1e-4, 1e-6, 1e-8):
        t = best_time(lambda rtol=rtol: ours(sub, rtol, parallel=False), 3)
        rows.append(("ours RODAS4", rtol, t / n_sub, achieved_error(ours(sub, rtol).y, tight)))
    for method in ("BDF", "Radau"):
        for rtol in (1e-4, 1e-6):
            t0 = time.perf_counter()
            ref = reference(sub, method, rtol)
            t = time.perf_counter() - t0
            rows.append((f"solve_ivp {method}", rtol, t / n_sub, achieved_error(ref.y, tight)))
    for name, rtol, t, err in rows:
        print(f"    {name:16s} rtol {rtol:7.0e}: {t * 1e3:10.3f} ms/case   error {err:8.1e}")
    best_ref = min(t for n, r, t, e in rows if n.startswith("solve_ivp") and r == 1e-6)
    print(f"    batch: B={batch_sizes[-1]} at rtol 1e-6, all threads, is {best_ref / t_par:.0f}x "
          f"faster per case than the faster solve_ivp loop at rtol 1e-6")  # fmt: skip
    for method in ("BDF", "Radau"):
        for rtol in (1e-4, 1e-6):
            t_ref, err_ref = next((t, e) for n, r, t, e in rows if n.endswith(method) and r == rtol)
            same = next(t for n, r, t, e in rows if n.startswith("ours") and r == rtol)
            cand = [(t, e) for n, r, t, e in rows if n.startswith("ours") and e <= err_ref]
            eq = f"{t_ref / min(cand)[0]:8.0f}x" if cand else "     n/a"
            print(f"    speed-up vs {method:5s} rtol {rtol:.0e}: same rtol {t_ref / same:8.0f}x,"
                  f"   at <= its achieved error {eq} (single thread)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="B up to 1000, no compile timing")
    args = ap.parse_args()
    t_start = time.perf_counter()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if not args.quick:
        compile_times()
    batch_sizes = [1, 100, 1000] if args.quick else [1, 100, 10_000]
    rng = np.random.default_rng(2024)
    nb = batch_sizes[-1]
    for make, n_sub in ((linear_problem, 3), (robertson_problem, 3), (healing_problem, 3)):
        bench_model(make(nb, rng), batch_sizes, n_sub, args.quick)
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()

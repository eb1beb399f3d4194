"""Lockstep-lane benchmark of the healing solve (issue 15; run on its own:
``python benchmarks/bench_lanes.py [--patients 250] [--lanes 4,8,16,32] [--rounds 9]``, or with
``--whole 2000`` (the whole healing solve of a trial chunk) or ``--pipeline 2000`` (the whole trial
pipeline)).

Per case, the cost of the pieces of one RODAS4 step of the healing model, scalar (one case at a
time, the kernels :func:`~microneedling.physics.ode.integrate.solve_range` calls) against lanes
(L cases at once, state laid out (n, L), :mod:`microneedling.physics.healing_lanes`):

* RHS: one right-hand side (a step makes 6);
* Jacobian: the analytic Jacobian (1 per step);
* factor + 6 solves: the structured factor of G and the six stage solves;
* whole step: what one accepted step costs, f(y) + J + the RODAS4 stages (6 RHS, factor, 6
  solves, stage arithmetic).

The states and parameters are real: the cases (patients and their scar floors) of a trial chunk
of the acne roller arm, solved by the scalar path, at their output times. Every figure is a
ratio scalar/lane measured in this one process, alternating A and B in rounds; quartiles over
the rounds (the machine may be loaded: the ratio is what holds).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
from numba import njit

from microneedling.physics import healing
from microneedling.physics.healing_lanes import (
    healing_factor_lanes,
    healing_jacobian_lanes,
    healing_rhs_lanes,
    healing_solve_lanes,
)
from microneedling.physics.healing_rhs import N_STATE, healing_jacobian
from microneedling.physics.ode.integrate import rodas4_step
from microneedling.physics.ode.lanes import rodas4_step_lanes
from microneedling.physics.ode.registry import (
    HEALING,
    jacobian_update,
    rhs,
    structured_factor,
    structured_solve,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def trial_cases(n_patients: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The healing cases of one trial chunk (roller arm, its patients and their scar floors) as
    the pipeline passes them to ``solve_distinct``: params (B, N_PARAM), t_out (T,) in days,
    session days (B, K), jumps (B, K, N_STATE)."""
    import bench_trial  # the roller-only trial spec of the trial benchmark
    from microneedling.engine import batch
    from microneedling.studies.trial.run import plan_chunks, run_chunk

    spec = bench_trial._spec(n_patients)
    task = next(t for t in plan_chunks(spec, n_patients, parallel=False) if t.arms == (0,))
    with mock.patch.object(batch.healing, "solve_distinct", wraps=healing.solve_distinct) as spy:
        run_chunk(dataclasses.replace(task, stop=task.start + n_patients))
    a = spy.call_args.args
    return a[0], a[1], a[2], a[3]


# ----------------------------------------------------------------- timed loops (compiled)


@njit(cache=False)
def _scalar_rhs(ys, ps, out, reps):  # type: ignore[no-untyped-def]

    for _ in range(reps):
        for s in range(ys.shape[0]):
            rhs(HEALING, 0.0, ys[s], ps[s], out)


@njit(cache=False)
def _lane_rhs(yl, pl, out, reps):  # type: ignore[no-untyped-def]

    for _ in range(reps):
        for g in range(yl.shape[0]):
            healing_rhs_lanes(yl[g], pl[g], out)


@njit(cache=False)
def _scalar_jac(ys, ps, jac, reps):  # type: ignore[no-untyped-def]

    yc = np.empty(ys.shape[1], dtype=np.complex128)
    fc = np.empty(ys.shape[1], dtype=np.complex128)
    for _ in range(reps):
        for s in range(ys.shape[0]):
            jacobian_update(HEALING, 0.0, ys[s], ps[s], jac, yc, fc)


@njit(cache=False)
def _lane_jac(yl, pl, jac, reps):  # type: ignore[no-untyped-def]

    for _ in range(reps):
        for g in range(yl.shape[0]):
            healing_jacobian_lanes(yl[g], pl[g], jac)


@njit(cache=False)
def _scalar_solve(jacs, xs, fac, reps):  # type: ignore[no-untyped-def]

    n = xs.shape[1]
    dinv = np.empty(n)
    x = np.empty(n)
    for _ in range(reps):
        for s in range(xs.shape[0]):
            structured_factor(HEALING, fac, jacs[s], dinv)
            for _stage in range(6):
                for i in range(n):
                    x[i] = xs[s, i]
                structured_solve(HEALING, fac, jacs[s], dinv, x)


@njit(cache=False)
def _lane_solve(jacl, xl, fac, reps):  # type: ignore[no-untyped-def]

    n = xl.shape[1]
    L = xl.shape[2]
    dinv = np.empty((n, L))
    good = np.empty(L, dtype=np.bool_)
    b = np.empty((n, L))
    x = np.empty((n, L))
    sa = np.empty((5, L))
    sb = np.empty((3, L))
    for _ in range(reps):
        for g in range(xl.shape[0]):
            healing_factor_lanes(fac, jacl[g], dinv, good)
            for _stage in range(6):
                for i in range(n):  # (as the scalar loop: the right-hand side written each time)
                    for c in range(L):
                        b[i, c] = xl[g, i, c]
                healing_solve_lanes(fac, jacl[g], dinv, b, x, sa, sb)


@njit(cache=False)
def _scalar_step(ys, ps, h, reps):  # type: ignore[no-untyped-def]

    n = ys.shape[1]
    f0 = np.empty(n)
    ft = np.zeros(n)
    jac = np.zeros((n, n))
    g = np.empty((1, 1))
    piv = np.empty(1, dtype=np.int64)
    k = np.empty((6, n))
    ytmp = np.empty(n)
    fw = np.empty(n)
    ynew = np.empty(n)
    iz = np.zeros(n + 1, dtype=np.int64)
    off_val = np.empty(1)
    w = np.empty(n)
    yc = np.empty(n, dtype=np.complex128)
    fc = np.empty(n, dtype=np.complex128)
    dinv = np.empty(n)
    acc = 0.0
    for _ in range(reps):
        for s in range(ys.shape[0]):
            rhs(HEALING, 0.0, ys[s], ps[s], f0)
            jacobian_update(HEALING, 0.0, ys[s], ps[s], jac, yc, fc)
            rodas4_step(
                HEALING, 0.0, h, ys[s], ps[s], f0, ft, jac, g, piv, k, ytmp, fw, ynew, iz, iz, 0,
                iz, iz, off_val, w, True, dinv,
            )  # fmt: skip
            acc += ynew[0]
    return acc


@njit(cache=False)
def _lane_step(yl, pl, h, reps):  # type: ignore[no-untyped-def]

    n = yl.shape[1]
    L = yl.shape[2]
    f0 = np.empty((n, L))
    ft = np.zeros((n, L))
    jac = np.zeros((n * n, L))
    k1 = np.empty((n, L))
    k2 = np.empty((n, L))
    k3 = np.empty((n, L))
    k4 = np.empty((n, L))
    k5 = np.empty((n, L))
    k6 = np.empty((n, L))
    ytmp = np.empty((n, L))
    fw = np.empty((n, L))
    ynew = np.empty((n, L))
    dinv = np.empty((n, L))
    good = np.empty(L, dtype=np.bool_)
    gl = np.empty((L, 1, 1))  # (the dense LU of the generic models: unused for HEALING)
    piv = np.empty((L, 1), dtype=np.int64)
    w = (np.empty(n), np.empty(pl.shape[1]), np.empty(n))
    xc = np.empty(n)
    bb = np.empty((n, L))
    sa = np.empty((5, L))
    sb = np.empty((3, L))
    acc = 0.0
    for _ in range(reps):
        for g in range(yl.shape[0]):
            healing_rhs_lanes(yl[g], pl[g], f0)
            healing_jacobian_lanes(yl[g], pl[g], jac)
            rodas4_step_lanes(
                HEALING, 0.0, h, yl[g], pl[g], f0, ft, jac, k1, k2, k3, k4, k5, k6, ytmp, fw,
                ynew, dinv, good, gl, piv, w, xc, bb, sa, sb,
            )  # fmt: skip
            acc += ynew[0, 0]
    return acc


def _quartiles(x: list[float]) -> str:
    q1, q2, q3 = np.percentile(x, [25, 50, 75])
    return f"{q2:5.2f}x (quartiles {q1:.2f}-{q3:.2f})"


def bench_whole(n_patients: int, lane_counts: list[int], rounds: int) -> None:
    """Per-case time of the healing solve of a trial chunk (its patients and their scar floors,
    one arm: one session schedule, 32 parameter sets), ``integrate(lanes=L)`` against the scalar
    path, alternating in this process on one thread; steps per case and the error against a tight
    reference (scalar path, rtol 1e-10, atol 1e-14) on a sample."""
    from microneedling.physics.healing_rhs import PIDX
    from microneedling.physics.ode.integrate import integrate

    params, t_out, days, jumps = trial_cases(n_patients)
    y0 = healing.baseline_state(params[:, PIDX["lesion_drive"]])
    args = (HEALING, y0, params, t_out, days, jumps)
    kw = {"rtol": 1e-6, "atol": 1e-8, "parallel": False}  # the pipeline's tolerances
    nb = params.shape[0]
    print(f"whole solve: {nb} cases ({n_patients} patients and their floors), {t_out.size} outputs")
    sols = {}
    times: dict[int, list[float]] = {L: [] for L in [1, *lane_counts]}
    for L in times:
        integrate(*(a[:64] if hasattr(a, "shape") and a.ndim and a.shape[0] == nb else a
                    for a in args), lanes=L, **kw)  # fmt: skip
    for _ in range(rounds):
        for L in times:
            t0 = time.perf_counter()
            sols[L] = integrate(*args, lanes=L, **kw)
            times[L].append((time.perf_counter() - t0) / nb)
    m = min(nb, 512)  # accuracy on a sample: the first m cases, as solved in the timed runs
    ref = integrate(*(a[:m] if hasattr(a, "shape") and a.ndim and a.shape[0] == nb else a
                      for a in args), rtol=1e-10, atol=1e-14)  # fmt: skip
    scale = 1e-8 + 1e-6 * np.abs(ref.y)
    err = {L: np.max(np.abs(sols[L].y[:m] - ref.y) / scale, axis=(1, 2)) for L in times}
    nz = err[1] > 0.0
    print(
        f"   error per case against the reference (first {m} cases, max over outputs and states "
        f"of |y - ref| / (1e-8 + 1e-6 |ref|)): scalar median {np.median(err[1]):.3f}, max "
        f"{err[1].max():.3f}"
    )
    for L in lane_counts:
        r = err[L][nz] / err[1][nz]
        print(
            f"   L = {L:2d}: median {np.median(err[L]):.3f}, max {err[L].max():.3f}; per case "
            f"lanes/scalar: median {np.median(r):.3f}, max {r.max():.3f}, worse in "
            f"{np.count_nonzero(r > 1.0)} of {r.size} (cases with zero scalar error: "
            f"{np.count_nonzero(~nz)}, their lane error max {err[L][~nz].max(initial=0.0):.1e})"
        )
    for L in lane_counts:
        r = np.array(times[1]) / np.array(times[L])
        q1, q2, q3 = np.percentile(r, [25, 50, 75])
        print(
            f"   L = {L:2d}: {np.median(times[L]) * 1e6:7.1f} us/case vs scalar "
            f"{np.median(times[1]) * 1e6:7.1f}: {q2:.2f}x (quartiles {q1:.2f}-{q3:.2f}); steps/case "
            f"{sols[L].n_steps.mean():.1f} vs {sols[1].n_steps.mean():.1f} "
            f"(+{100 * (sols[L].n_steps.mean() / sols[1].n_steps.mean() - 1):.0f} %), rejected "
            f"{sols[L].n_rejected.sum()} vs {sols[1].n_rejected.sum()}"
        )


def bench_pipeline(n_patients: int, lane_counts: list[int]) -> None:
    """The whole trial pipeline (``run_chunk``: sampling, courses, needles, injury, the healing
    solve, observables, end points) on the roller arm in chunks of 250 patients, one thread, with
    ``healing.solve_distinct(..., lanes=L)`` against lanes=1, alternating chunk by chunk (CPU
    time of this process)."""
    import bench_trial
    from microneedling.engine import batch
    from microneedling.studies.trial.run import plan_chunks, run_chunk

    spec = bench_trial._spec(n_patients)
    tasks = [t for t in plan_chunks(spec, 250, parallel=False) if t.arms == (0,)]
    orig = healing.solve_distinct

    def with_lanes(lanes: int):  # type: ignore[no-untyped-def]
        def solve_distinct(*a, **k):  # type: ignore[no-untyped-def]
            return orig(*a, **{**k, "lanes": lanes})

        return solve_distinct

    n = sum(t.stop - t.start for t in tasks)
    for L in lane_counts:
        for lanes in (1, L):  # warm-up
            with mock.patch.object(batch.healing, "solve_distinct", with_lanes(lanes)):
                run_chunk(dataclasses.replace(tasks[0], stop=tasks[0].start + 40))
        cpu = {1: 0.0, L: 0.0}
        ratios = []
        for k, t in enumerate(tasks):
            c = {}
            for lanes in (1, L) if k % 2 == 0 else (L, 1):
                with mock.patch.object(batch.healing, "solve_distinct", with_lanes(lanes)):
                    c0 = time.process_time()
                    run_chunk(t)
                    c[lanes] = time.process_time() - c0
                cpu[lanes] += c[lanes]
            ratios.append(c[1] / c[L])
        print(
            f"trial pipeline, roller arm, {n} patients in {len(tasks)} chunks of 250, one thread, "
            f"CPU time: lanes=1 {n / cpu[1]:.1f} patients/s, lanes={L} {n / cpu[L]:.1f} "
            f"patients/s: {_quartiles(ratios)} per chunk"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=250)
    ap.add_argument("--lanes", default="4,8")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--samples", type=int, default=2048, help="states per piece (multiple of 8)")
    ap.add_argument(
        "--whole", type=int, default=0, metavar="PATIENTS",
        help="instead: the whole healing solve of a trial chunk of PATIENTS patients",
    )  # fmt: skip
    ap.add_argument(
        "--pipeline", type=int, default=0, metavar="PATIENTS",
        help="instead: the whole trial pipeline on PATIENTS patients, lanes vs none",
    )  # fmt: skip
    a = ap.parse_args()
    if a.pipeline:
        bench_pipeline(a.pipeline, [int(x) for x in a.lanes.split(",")])
        return
    if a.whole:
        bench_whole(a.whole, [int(x) for x in a.lanes.split(",")], a.rounds)
        return

    params, t_out, days, jumps = trial_cases(a.patients)
    sol = healing.solve(params, t_out, days, jumps, parallel=False)
    rng = np.random.default_rng(1)
    b = rng.integers(0, params.shape[0], a.samples)
    j = rng.integers(1, t_out.size, a.samples)
    ys = np.ascontiguousarray(sol.y[b, j])
    ps = np.ascontiguousarray(params[b])
    n = N_STATE
    h = 0.5  # days; the cost does not depend on it (no branch on values)
    fac = 1.0 / (h * 0.25)
    jacs = np.zeros((a.samples, n, n))
    for s in range(a.samples):
        healing_jacobian(0.0, ys[s], ps[s], jacs[s])
    xs = rng.standard_normal((a.samples, n))
    print(
        f"{params.shape[0]} cases ({a.patients} patients and their scar floors), {a.samples} "
        f"(state, parameter) samples at their output times, {a.rounds} rounds alternating "
        "scalar and lanes; per-case speed-up = scalar time / lane time for the same samples"
    )
    for L in (int(x) for x in a.lanes.split(",")):
        G = a.samples // L
        yl = np.ascontiguousarray(ys[: G * L].reshape(G, L, n).transpose(0, 2, 1))
        pl = np.ascontiguousarray(ps[: G * L].reshape(G, L, -1).transpose(0, 2, 1))
        xl = np.ascontiguousarray(xs[: G * L].reshape(G, L, n).transpose(0, 2, 1))
        jacl = np.ascontiguousarray(jacs[: G * L].reshape(G, L, n * n).transpose(0, 2, 1))
        dl = np.empty((n, L))
        good = np.empty(L, dtype=np.bool_)
        for g in range(G):
            healing_factor_lanes(fac, jacl[g], dl, good)
            assert good.all()
        out_s = np.empty(n)
        out_l = np.empty((n, L))
        jac_s = np.zeros((n, n))
        jac_l = np.zeros((n * n, L))
        pieces = {
            "RHS": (
                (_scalar_rhs, (ys, ps, out_s)),
                (_lane_rhs, (yl, pl, out_l)),
            ),
            "Jacobian": (
                (_scalar_jac, (ys, ps, jac_s)),
                (_lane_jac, (yl, pl, jac_l)),
            ),
            "factor + 6 solves": (
                (_scalar_solve, (jacs, xs, fac)),
                (_lane_solve, (jacl, xl, fac)),
            ),
            "whole step": (
                (_scalar_step, (ys, ps, h)),
                (_lane_step, (yl, pl, h)),
            ),
        }
        print(f"L = {L}")
        for name, (fs, fl) in pieces.items():
            fs[0](*fs[1], 1)
            fl[0](*fl[1], 1)
            ratios, ts, tl = [], [], []
            reps = 20
            for _ in range(a.rounds):
                t0 = time.perf_counter()
                fs[0](*fs[1], reps)
                t1 = time.perf_counter()
                fl[0](*fl[1], reps)
                t2 = time.perf_counter()
                ts.append((t1 - t0) / (reps * a.samples))
                tl.append((t2 - t1) / (reps * G * L))
                ratios.append(ts[-1] / tl[-1])
            print(
                f"   {name:18s} scalar {np.median(ts) * 1e9:7.1f} ns/case, lanes "
                f"{np.median(tl) * 1e9:7.1f} ns/case: {_quartiles(ratios)}"
            )


if __name__ == "__main__":
    main()

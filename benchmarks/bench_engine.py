"""Engine benchmark (run on its own: ``python benchmarks/bench_engine.py [--sections 1,2]``; not part
of the tests).

Reports, in one process so that ratios are meaningful on a noisy machine:

1. in-process time of ``simulate`` for one 4-session, 1-year course (nominal, no ensemble), split into
   its stages, median of repeated runs after a warm-up, and its CPU time (every thread); the
   healing solve as simulate makes it (the patient case and its scar floor) on one and two threads;
2. wall time of the whole ``microneedling simulate`` command in a fresh process (imports included);
3. time per patient of the healing ODE for a batch of 10,000 identical-structure courses, against a
   loop of SciPy ``solve_ivp`` calls (Radau and BDF) on the same equations, each with its achieved
   error against a tight reference, so that the comparison is at stated accuracy.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "acne-scars-rolling-cheek.toml"


def median_time(fn, repeat: int = 20) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up (numba cache load, first imports)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def mean_cpu_time(fn, repeat: int = 20) -> float:  # type: ignore[no-untyped-def]
    """Mean CPU time of the process per call (every thread; what a server pays per request)."""
    fn()
    c0 = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - c0) / repeat


def bench_single_course(repeat: int = 20) -> None:
    import microneedling as mn
    from microneedling.engine import batch
    from microneedling.engine.batch import session_jumps, simulate_batch
    from microneedling.engine.prepare import output_times, prepare
    from microneedling.parameters.sampling import posterior_nominal
    from microneedling.physics import healing, observe

    course = mn.Course.from_toml(EXAMPLE)
    ps = mn.load_parameters()
    total = median_time(lambda: mn.simulate(course, draws=0), repeat)
    cpu = mean_cpu_time(lambda: mn.simulate(course, draws=0), repeat)
    prep = prepare(course, ps)
    t = output_times(prep.session_days, float(course.horizon_days))
    jumps = session_jumps(prep)
    t_prep = median_time(lambda: prepare(course, ps), repeat)
    t_ode = median_time(lambda: healing.solve(prep.params, t, prep.session_days, jumps), repeat)
    sol = healing.solve(prep.params, t, prep.session_days, jumps)
    t_obs = median_time(lambda: observe.observables(t, sol.y, prep.baseline, prep.observe), repeat)
    # the solve simulate makes: the patient case and its scar floor
    with mock.patch.object(batch.healing, "solve_distinct", wraps=healing.solve_distinct) as spy:
        simulate_batch([course], posterior_nominal(ps))
    a = spy.call_args.args
    ode_1 = median_time(lambda: healing.solve(*a, parallel=False), repeat)
    ode_2 = median_time(lambda: healing.solve(*a, parallel=True), repeat)
    print(f"1. one course (4 sessions, 365 d, nominal), in-process, median of {repeat}")
    print(f"   simulate() total          {total * 1e3:8.2f} ms   (goal <= 2 ms, issue 15)")
    print(f"   simulate() CPU time       {cpu * 1e3:8.2f} ms   (mean, every thread)")
    print(f"   needles+injury (prepare)  {t_prep * 1e3:8.2f} ms")
    print(
        f"   healing ODE, patient case {t_ode * 1e3:8.2f} ms   ({int(sol.n_steps[0])} steps, {len(t)} outputs)"
    )
    print(
        f"   healing ODE as simulated  {ode_1 * 1e3:8.2f} ms on one thread, {ode_2 * 1e3:.2f} ms on "
        f"{'two threads' if a[0].shape[0] > 1 else 'one'} ({a[0].shape[0]} cases: patient, floor)"
    )
    nominal = posterior_nominal(ps)
    t_batch = median_time(lambda: simulate_batch([course], nominal), repeat)
    print(f"   observables (patient case) {t_obs * 1e3:7.2f} ms")
    print(
        f"   simulate_batch, all stages {t_batch * 1e3:7.2f} ms   (prepare, the ODE of the patient "
        "and its scar floor, observables with floors, redness/PIH session statistics)"
    )
    print(f"   labelling (xarray) and the rest {(total - t_batch) * 1e3:6.2f} ms")
    ens = median_time(lambda: mn.simulate(course, draws=32), repeat=5)
    print(f"   simulate(draws=32)        {ens * 1e3:8.2f} ms   (33 parameter sets as one batch)")


def bench_process() -> None:
    exe = [sys.executable, "-m", "microneedling"]
    runs = {"--draws 0 --no-figures": [], "default (32 draws, figures, report)": []}
    for label in runs:
        for _ in range(3):
            with tempfile.TemporaryDirectory() as d:
                args = [*exe, "simulate", str(EXAMPLE), "--out", str(Path(d) / "run"), "--quiet"]
                if label.startswith("--draws"):
                    args += ["--draws", "0", "--no-figures"]
                t0 = time.perf_counter()
                subprocess.run(args, check=True, capture_output=True)
                runs[label].append(time.perf_counter() - t0)
    print("2. whole `microneedling simulate` process, median of 3 (goal <= 1 s)")
    for label, ts in runs.items():
        print(f"   {label:38s} {statistics.median(ts):6.2f} s")


def bench_batch(n_batch: int = 10_000, n_loop: int = 20) -> None:
    import microneedling as mn
    from microneedling.engine.batch import session_jumps
    from microneedling.engine.prepare import output_times, prepare
    from microneedling.physics import healing
    from microneedling.physics.healing_rhs import PIDX, healing_rhs_py
    from microneedling.physics.ode.integrate import integrate_reference

    course = mn.Course.from_toml(EXAMPLE)
    prep = prepare(course, mn.load_parameters())
    t = output_times(prep.session_days, float(course.horizon_days))
    rng = np.random.default_rng(0)
    # identical structure, different patients: ±20% on every rate
    params = np.repeat(prep.params, n_batch, axis=0)
    params[:, : PIDX["lesion_drive"]] *= rng.uniform(0.8, 1.2, (n_batch, PIDX["lesion_drive"]))
    days = np.repeat(prep.session_days, n_batch, axis=0)
    jumps = np.repeat(session_jumps(prep), n_batch, axis=0)
    y0 = healing.baseline_state(params[:, PIDX["lesion_drive"]])

    healing.solve(params[:2], t, days[:2], jumps[:2])  # warm-up
    t0 = time.perf_counter()
    ours = healing.solve(params, t, days, jumps, rtol=1e-6, atol=1e-10)
    per_ours = (time.perf_counter() - t0) / n_batch

    sub = slice(0, n_loop)
    ref = integrate_reference(
        healing_rhs_py,
        y0[sub],
        params[sub],
        t,
        days[sub],
        jumps[sub],
        method="Radau",
        rtol=1e-11,
        atol=1e-14,
    ).y
    scale = np.maximum(np.abs(ref), 1e-6)

    def err(y: np.ndarray) -> float:
        return float(np.max(np.abs(y - ref) / scale))

    print(f"3. healing ODE, batch of {n_batch} patients (26 states, 4 sessions, {len(t)} outputs)")
    print(
        f"   ours (Rodas4, rtol 1e-6 atol 1e-10) {per_ours * 1e3:8.3f} ms/patient   max rel err {err(ours.y[sub]):.1e}"
    )
    for method in ("Radau", "BDF"):
        t0 = time.perf_counter()
        y = integrate_reference(
            healing_rhs_py,
            y0[sub],
            params[sub],
            t,
            days[sub],
            jumps[sub],
            method=method,
            rtol=1e-6,
            atol=1e-10,
        ).y
        per = (time.perf_counter() - t0) / n_loop
        print(
            f"   solve_ivp {method:5s} loop (rtol 1e-6)   {per * 1e3:8.3f} ms/patient   max rel err {err(y):.1e}"
            f"   ratio {per / per_ours:7.0f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections", default="1,2,3", help="which sections to run, e.g. 1,2 (default: all)"
    )
    chosen = set(parser.parse_args().sections.split(","))
    if "1" in chosen:
        bench_single_course()
    if "2" in chosen:
        bench_process()
    if "3" in chosen:
        bench_batch()

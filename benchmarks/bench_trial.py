"""In-silico trial benchmark (run on its own: ``python benchmarks/bench_trial.py [parts]``).

Parts (default: all), each printing ratios measured in this one run:

``throughput``
    patients per second for a 4-session, 1-year course (the acne roller example, virtual patients
    from the ``acne-scar-adults`` population): ours end to end (sampling, courses, needles,
    injury, batched healing solve, observables, end points) on one thread, and the healing ODE
    alone, against a per-patient SciPy ``solve_ivp`` loop (Radau and BDF) on the same patients'
    healing equations at the same tolerances (rtol 1e-6, atol 1e-8), on a sample of patients;
``scale``
    peak memory (ru_maxrss of the trial process and of its largest Dask worker) and wall time of
    a trial at two sizes, in fresh subprocesses, with 2 local workers: memory must not grow with n
    beyond the end-point table (8 bytes x arms x n x end points, plus covariates);
``workers``
    speed-up of the same trial from 1 to 2 local Dask workers (wall time of the whole call,
    cluster start included).

``draws=K`` (before ``throughput``): the trial's parameter sets (``parameter_draws``; default the
spec's, 32; 0: every patient at the posterior median, as trials ran before 2026-12-07).
``lanes=L`` (before ``scale``): the trial's ``[trial] lanes`` (lockstep solver lanes; default 1).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "trials" / "acne-roller-vs-pen.toml"


def _spec(n: int, roller_only: bool = True):  # type: ignore[no-untyped-def]
    from microneedling.studies.trial.spec import TrialSpec

    spec = TrialSpec.from_toml(SPEC)
    arms = spec.arms
    if roller_only:  # both arms the 4-session roller course: one course type throughout
        arms = (arms[0], dataclasses.replace(arms[0], name="roller (copy)"))
    draws = {} if PARAMETER_DRAWS is None else {"parameter_draws": PARAMETER_DRAWS}
    return dataclasses.replace(spec, n_per_arm=n, arms=arms, lanes=LANES, **draws)


PARAMETER_DRAWS: int | None = None
"""``draws=K`` on the command line (throughput only): the trial's parameter sets."""
LANES = 1
"""``lanes=L`` on the command line: the trial's lockstep solver lanes (``[trial] lanes``)."""


def bench_throughput(n_ours: int = 2000, n_loop: int = 200) -> None:
    from unittest import mock

    from microneedling.engine import batch
    from microneedling.engine.batch import session_jumps, simulate_batch
    from microneedling.engine.prepare import FEATURE_INJURY
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.physics import healing
    from microneedling.physics.healing_rhs import PIDX, healing_rhs_py
    from microneedling.physics.ode.integrate import integrate_reference
    from microneedling.studies.trial.population import sample_patients
    from microneedling.studies.trial.run import plan_chunks, run_chunk
    from microneedling.studies.trial.spec import arm_course as _course

    spec = _spec(n_ours)
    tasks = [t for t in plan_chunks(spec, 250, parallel=False) if t.arms == (0,)]
    run_chunk(dataclasses.replace(tasks[0], stop=tasks[0].start + 2))  # warm-up (numba load)
    # interleaved, chunk by chunk: the whole pipeline, then the healing ODE of exactly the cases
    # it solved (patients and scar floors, same arguments, one thread), so that the ratio holds
    # on a loaded machine (CPU time of the process)
    pipe_cpu = ode_cpu = pipe_wall = 0.0
    for t in tasks:
        with mock.patch.object(
            batch.healing, "solve_distinct", wraps=healing.solve_distinct
        ) as spy:
            c0, t0 = time.process_time(), time.perf_counter()
            run_chunk(t)
            pipe_cpu += time.process_time() - c0
            pipe_wall += time.perf_counter() - t0
        args, kw = spy.call_args.args, spy.call_args.kwargs
        c0 = time.process_time()
        healing.solve(*args, **{**kw, "parallel": False})
        ode_cpu += time.process_time() - c0
    ours = n_ours / pipe_wall

    # the same patients' healing equations: ours (batched) vs solve_ivp per patient
    pop = spec.population
    b = sample_patients(pop, 0, n_loop, seed=spec.seed, stream=0)
    courses = [_course(spec.arms[0], b, i, pop) for i in range(n_loop)]
    run = simulate_batch(courses, load_parameters(), healing_factors=b.factors, parallel=False)
    prep = run.prepared
    params = prep.params.copy()
    for k, f in b.factors.items():
        params[:, PIDX[k]] *= f[run.course_index]
    jumps = session_jumps(prep, params)
    y0 = healing.baseline_state(params[:, PIDX["lesion_drive"]])
    t = run.t
    t0 = time.perf_counter()
    ode = healing.solve(params, t, prep.session_days, jumps, rtol=1e-6, atol=1e-8, parallel=False)
    ours_ode = n_loop / (time.perf_counter() - t0)
    print(f"1. throughput, 4-session 1-year roller course, one thread ({len(t)} output times)")
    # the pipeline also solves one floor case per patient with a depressed feature (the scar's
    # floor, driven by the injury under it): the ODE work of a patient is all of its cases
    floors = [
        np.flatnonzero(np.isfinite(getattr(prep, name)[:, 0, 0]))
        for name in FEATURE_INJURY.values()
    ]
    rows = np.concatenate([np.arange(params.shape[0]), *floors])
    floor_jumps = [
        session_jumps(prep, params, injured=getattr(prep, name), rows=r)
        for name, r in zip(FEATURE_INJURY.values(), floors, strict=True)
    ]
    every_jump = np.concatenate([jumps, *floor_jumps])
    t0 = time.perf_counter()
    healing.solve(params[rows], t, prep.session_days[rows], every_jump, rtol=1e-6, atol=1e-8,
                  parallel=False)  # fmt: skip
    ours_cases = n_loop / (time.perf_counter() - t0)
    print(f"   ours, whole trial pipeline ({n_ours} patients)   {ours:9.1f} patients/s")
    print(
        f"   interleaved per chunk (CPU time): pipeline {n_ours / pipe_cpu:7.1f} patients/s, "
        f"the ODE of its cases {n_ours / ode_cpu:7.1f} patients/s: the pipeline runs at "
        f"{100 * ode_cpu / pipe_cpu:.1f}% of its ODE (goal >= 90%, issue 15)"
    )
    print(f"   ours, healing ODE only ({n_loop} patients)       {ours_ode:9.1f} patients/s")
    print(
        f"   ours, healing ODE of every case ({rows.size} cases: the patients and their scar "
        f"floors) {ours_cases:9.1f} patients/s; the pipeline runs at {100 * ours / ours_cases:.0f}% "
        "of it"
    )
    ref = integrate_reference(
        healing_rhs_py,
        y0[:20],
        params[:20],
        t,
        prep.session_days[:20],
        jumps[:20],
        method="Radau",
        rtol=1e-10,
        atol=1e-13,
    ).y
    scale = np.maximum(np.abs(ref), 1e-6)
    print(
        f"      max rel err vs Radau rtol 1e-10 (20 patients): {np.max(np.abs(ode.y[:20] - ref) / scale):.1e}"
    )
    for method in ("Radau", "BDF"):
        t0 = time.perf_counter()
        y = integrate_reference(
            healing_rhs_py,
            y0,
            params,
            t,
            prep.session_days,
            jumps,
            method=method,
            rtol=1e-6,
            atol=1e-8,
        ).y
        rate = n_loop / (time.perf_counter() - t0)
        err = np.max(np.abs(y[:20] - ref) / scale)
        print(
            f"   solve_ivp {method:5s} loop ({n_loop} patients)      {rate:9.1f} patients/s"
            f"   -> ours whole pipeline {ours / rate:5.1f}x, ODE {ours_ode / rate:5.1f}x"
            f"   (max rel err {err:.1e})"
        )


_CHILD = """
import json, resource, sys, time, dataclasses, tempfile
sys.path.insert(0, {bench!r})
import bench_trial
from bench_trial import _spec
from microneedling.studies.trial.run import run_trial
if __name__ == "__main__":
    bench_trial.LANES = {lanes}
    spec = _spec({n})
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        res = run_trial(spec, resume_dir=d + "/out", workers={workers}, chunk_size={chunk})
        wall = time.perf_counter() - t0
        t_map = res.map_s
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({{"wall": wall, "map": t_map, "self_mib": me, "child_mib": kids,
                      "patients": 2 * spec.n_per_arm, "finite": float((res.values == res.values).mean())}}))
"""


def _child(n: int, workers: int, chunk: int = 500) -> dict[str, float]:
    code = _CHILD.format(
        bench=str(Path(__file__).parent), n=n, workers=workers, chunk=chunk, lanes=LANES
    )
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "child.py"
        script.write_text(code)
        out = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, check=True
        ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def bench_scale(sizes: tuple[int, ...] = (5_000, 50_000)) -> None:
    print(
        f"2. trial scale, 2 local Dask workers, chunks of 500, lanes {LANES}, fresh process per size"
    )
    print("   (peak RSS of the trial process; of the largest worker: a worker holds one chunk)")
    rows = []
    for n in sizes:
        r = _child(n, workers=2)
        rows.append(r)
        print(
            f"   {int(r['patients']):>9,} patients  wall {r['wall']:8.1f} s  "
            f"{r['patients'] / r['wall']:7.1f} patients/s  peak trial process {r['self_mib']:7.1f} MiB  "
            f"largest worker {r['child_mib']:7.1f} MiB"
        )
    a, b = rows[0], rows[-1]
    slope = (b["self_mib"] - a["self_mib"]) / (b["patients"] - a["patients"]) * 1e6
    t_1m = 1e6 / (b["patients"] / b["wall"])
    print(
        f"   growth of the trial process: {slope:.0f} MiB per million patients; "
        f"extrapolated 1,000,000 patients: {b['self_mib'] + slope * (1e6 - b['patients']) / 1e6:.0f} MiB "
        f"+ workers, wall {t_1m / 60:.0f} min at the measured rate"
    )


def bench_workers(n: int = 1500) -> None:
    r1 = _child(n, workers=1, chunk=250)
    r2 = _child(n, workers=2, chunk=250)
    print(f"3. 1 -> 2 local Dask workers, {2 * n} patients, chunks of 250 (cluster start included)")
    print(
        f"   whole run_trial: 1 worker {r1['wall']:6.1f} s   2 workers {r2['wall']:6.1f} s   "
        f"speed-up {r1['wall'] / r2['wall']:.2f}x (goal >= 1.8x)"
    )
    print(
        f"   executor phase only (cluster start included): 1 worker {r1['map']:6.1f} s   "
        f"2 workers {r2['map']:6.1f} s   speed-up {r1['map'] / r2['map']:.2f}x"
    )


if __name__ == "__main__":
    # parts: throughput | scale | scale=N1,N2 (patients per arm, e.g. scale=5000,500000 for a
    # 1,000,000-patient trial) | workers
    parts = sys.argv[1:] or ["throughput", "scale", "workers"]
    for p in parts:
        if p.startswith("draws="):
            PARAMETER_DRAWS = int(p.split("=", 1)[1])
            continue
        if p.startswith("lanes="):
            LANES = int(p.split("=", 1)[1])
            continue
        if p.startswith("scale="):
            bench_scale(tuple(int(x) for x in p.split("=", 1)[1].split(",")))
            continue
        {"throughput": bench_throughput, "scale": bench_scale, "workers": bench_workers}[p]()

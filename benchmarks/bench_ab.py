"""Interleaved A/B of two source trees on a shared, loaded machine (run on its own, not a test):

    git worktree add /tmp/speedbase <commit>
    python benchmarks/bench_ab.py simulate --a /tmp/speedbase/src --b src [--draws 32] [--ode memo]
    python benchmarks/bench_ab.py sample --a /tmp/speedbase/src --b src --draws 32
    python benchmarks/bench_ab.py trial --a /tmp/speedbase/src --b src

``simulate``
    ``simulate(draws=0)`` (or ``--draws N``: the ensemble too) of the acne roller course
    (4 sessions, 1 year), on one thread. Two
    long-lived child processes (tree A, tree B, each importing ``microneedling`` from its
    ``PYTHONPATH``) are asked in turn for a short batch of calls; the ratio B/A of neighbouring
    batches (CPU time of the child) is robust to load that changes over seconds. ``--ode memo``
    times what surrounds the healing ODE: each child solves each distinct healing problem once
    and then hands the kept solution back (``engine.batch``'s ``healing.solve`` memoised by its
    arguments), so a call costs preparation, observation, session statistics and labelling.
``sample``
    ``sample_parameter_sets(ps, draws, seed)`` of the shipped set (``--draws``, default 32), the
    ensemble's draws alone, children as for ``simulate``.
``trial``
    250-patient chunks of the acne roller trial (``bench_trial.py``'s spec), each followed by the
    healing ODE of exactly the cases it solved (same arguments, one thread): the pipeline's share
    of its own ODE, per tree, children alternating A, B.

The figures are ratios measured in one run; say what else ran on the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "acne-scars-rolling-cheek.toml"


def _memoise_healing_solve() -> None:
    """Replace the healing solve the engine calls by one that solves each distinct problem (its
    arrays' bytes and keywords) once and returns the kept solution afterwards."""
    from microneedling.engine import batch

    name = _engine_solve(batch.healing)
    solve = getattr(batch.healing, name)
    kept: dict[tuple[Any, ...], Any] = {}

    def memoised(*args: Any, **kw: Any) -> Any:
        key = (*(a.tobytes() for a in args), *sorted(kw.items()))
        if key not in kept:
            kept[key] = solve(*args, **kw)
        return kept[key]

    setattr(batch.healing, name, memoised)


def _engine_solve(healing: Any) -> str:
    """The healing solve ``engine.batch`` calls: ``solve_distinct`` (each distinct case once,
    since 2026-12-07) where the tree has it, else ``solve``; both take the same arguments."""
    return "solve_distinct" if hasattr(healing, "solve_distinct") else "solve"


def _simulate_worker(draws: int) -> None:
    import microneedling as mn

    if os.environ.get("BENCH_AB_ODE") == "memo":
        _memoise_healing_solve()
    course = mn.Course.from_toml(EXAMPLE)
    for _ in range(3):  # warm-up: numba cache, first imports, per-set coefficients
        mn.simulate(course, draws=draws, parallel=False)
    print("ready", flush=True)
    for line in sys.stdin:
        k = int(line)
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(k):
            mn.simulate(course, draws=draws, parallel=False)
        cpu, wall = (time.process_time() - c0) / k, (time.perf_counter() - t0) / k
        print(json.dumps({"cpu": cpu, "wall": wall}), flush=True)


def _sample_worker(draws: int) -> None:
    import microneedling as mn
    from microneedling.parameters.sampling import sample_parameter_sets

    ps = mn.load_parameters()
    for seed in range(3):  # warm-up
        sample_parameter_sets(ps, draws, seed)
    print("ready", flush=True)
    seed = 3
    for line in sys.stdin:
        k = int(line)
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(k):
            sample_parameter_sets(ps, draws, seed)
            seed += 1
        cpu, wall = (time.process_time() - c0) / k, (time.perf_counter() - t0) / k
        print(json.dumps({"cpu": cpu, "wall": wall}), flush=True)


def _trial_worker(n: int) -> None:
    from unittest import mock

    sys.path.insert(0, str(HERE))
    from bench_trial import _spec
    from microneedling.engine import batch
    from microneedling.physics import healing
    from microneedling.studies.trial.run import plan_chunks, run_chunk

    tasks = [t for t in plan_chunks(_spec(n), 250, parallel=False) if t.arms == (0,)]
    run_chunk(dataclasses.replace(tasks[0], stop=tasks[0].start + 2))  # warm-up
    pipe = ode = 0.0
    for t in tasks:
        name = _engine_solve(healing)
        with mock.patch.object(batch.healing, name, wraps=getattr(healing, name)) as spy:
            c0 = time.process_time()
            run_chunk(t)
            pipe += time.process_time() - c0
        args, kw = spy.call_args.args, spy.call_args.kwargs
        c0 = time.process_time()
        healing.solve(*args, **{**kw, "parallel": False})
        ode += time.process_time() - c0
    print(json.dumps({"pipeline_s": pipe, "ode_s": ode, "patients": n}), flush=True)


def _child(
    kind: str, tree: str, n: int, stdin: Any = None, ode: str = "solve"
) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=tree, BENCH_AB_ODE=ode)
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", kind, "--n", str(n)],
        env=env,
        cwd="/",  # nothing imported from the working directory
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
    )


def _quartiles(x: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(x, n=4)
    return q[0], statistics.median(x), q[2]


def ab_simulate(
    a: str, b: str, rounds: int, n: int, draws: int = 0, what: str = "simulate", ode: str = "solve"
) -> None:
    kids = {
        tag: _child(what, tree, draws, stdin=subprocess.PIPE, ode=ode)
        for tag, tree in (("A", a), ("B", b))
    }
    for k in kids.values():
        assert k.stdout is not None and k.stdout.readline().strip() == "ready"
    got: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for r in range(rounds):
        for tag in ("A", "B") if r % 2 == 0 else ("B", "A"):
            k = kids[tag]
            assert k.stdin is not None and k.stdout is not None
            k.stdin.write(f"{n}\n")
            k.stdin.flush()
            got[tag].append(json.loads(k.stdout.readline()))
    for k in kids.values():
        assert k.stdin is not None
        k.stdin.close()
        k.wait()
    call = (
        f"simulate(draws={draws}), acne roller course, one thread"
        + (", healing ODE memoised (the time around it)" if ode == "memo" else "")
        if what == "simulate"
        else f"sample_parameter_sets(draws={draws}) of the shipped set"
    )
    print(f"{call}: {rounds} rounds x {n} calls per tree, load average {os.getloadavg()[0]:.1f}")
    for key in ("cpu", "wall"):
        xa = [x[key] * 1e3 for x in got["A"]]
        xb = [x[key] * 1e3 for x in got["B"]]
        lo, mid, hi = _quartiles([y / x for x, y in zip(xa, xb, strict=True)])
        print(
            f"   {key:4s} A {statistics.median(xa):7.2f} ms   B {statistics.median(xb):7.2f} ms   "
            f"B/A {mid:.3f} (quartiles {lo:.3f}-{hi:.3f})"
        )


def ab_trial(a: str, b: str, rounds: int, n: int) -> None:
    got: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for r in range(rounds):
        for tag in ("A", "B") if r % 2 == 0 else ("B", "A"):
            k = _child("trial", a if tag == "A" else b, n)
            out, _ = k.communicate()
            if k.returncode:
                raise SystemExit(f"tree {tag}: the trial child failed")
            got[tag].append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"trial pipeline vs the healing ODE of its cases, {n}-patient roller arm in chunks of 250, "
        f"one thread, {rounds} runs per tree, load average {os.getloadavg()[0]:.1f}"
    )
    for tag in ("A", "B"):
        share = [100 * x["ode_s"] / x["pipeline_s"] for x in got[tag]]
        rate = [x["patients"] / x["pipeline_s"] for x in got[tag]]
        print(
            f"   {tag}: pipeline at {statistics.median(share):5.1f}% of its ODE "
            f"(runs {', '.join(f'{s:.1f}' for s in share)}); {statistics.median(rate):6.1f} "
            "patients per CPU second"
        )
    ratio = [y["pipeline_s"] / x["pipeline_s"] for x, y in zip(got["A"], got["B"], strict=True)]
    print(f"   pipeline CPU time B/A per pair of runs: {', '.join(f'{r:.3f}' for r in ratio)}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("simulate", "sample", "trial"))
    p.add_argument("--a", default="/tmp/speedbase/src", help="source tree A (the reference)")
    p.add_argument("--b", default=str(HERE.parent / "src"), help="source tree B")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--n", type=int, default=None, help="calls per batch / patients per run")
    p.add_argument("--draws", type=int, default=None, help="the ensemble's draws (simulate: 0)")
    p.add_argument(
        "--ode",
        choices=("solve", "memo"),
        default="solve",
        help="simulate: memo times what surrounds the healing ODE (each problem solved once)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    o = p.parse_args()
    if o.worker:
        import microneedling

        tree = os.environ["PYTHONPATH"]
        if not str(Path(microneedling.__file__).resolve()).startswith(tree):
            raise SystemExit(f"imported {microneedling.__file__}, not the tree {tree}")
        {"simulate": _simulate_worker, "sample": _sample_worker, "trial": _trial_worker}[o.what](
            o.n
        )
    elif o.what == "simulate":
        a, b, draws = str(Path(o.a).resolve()), str(Path(o.b).resolve()), o.draws or 0
        ab_simulate(a, b, o.rounds or 40, o.n or (20 if draws == 0 else 2), draws, ode=o.ode)
    elif o.what == "sample":
        a, b, draws = str(Path(o.a).resolve()), str(Path(o.b).resolve()), o.draws or 32
        ab_simulate(a, b, o.rounds or 40, o.n or 10, draws, what="sample")
    else:
        ab_trial(str(Path(o.a).resolve()), str(Path(o.b).resolve()), o.rounds or 4, o.n or 1000)

"""Planner benchmark (run on its own: ``python benchmarks/bench_planner.py``; not part of the tests).

Two-site patient (examples/patients/acne-scars-two-sites.toml: rolling scars on the cheek, pores on the
nose) over the FULL search space of data/planner.toml under the default limits (roller, pen and stamp;
1-6 sessions; 28-42 d intervals in 7 d steps; every device length up to the usual depth of each site;
every pass count), all in one process so the ratios are meaningful on a shared machine:

1. ``search`` (decomposed, with one-session pruning): wall time to a plan, single-site candidates
   simulated, complete plans compared;
2. ``search(prune_dominated=False)``: the exact decomposition without the heuristic pruning;
3. ``exhaustive_search``: every complete two-site course of the grid simulated (batched per schedule);
   the reference. The planner's recommended plan is re-scored with the exhaustive search's normalisers:
   it must match or beat the exhaustive optimum.

Goal (issue 5): a plan in under 10 s.
"""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATIENT = ROOT / "examples" / "patients" / "acne-scars-two-sites.toml"


def main() -> None:
    from microneedling.course.patient import PatientFile
    from microneedling.studies.planning.search import exhaustive_search, rescore, search

    base = PatientFile.from_toml(PATIENT)
    pf = base.model_copy(
        update={
            "limits": base.limits.model_validate({"allowed_devices": ("roller", "pen", "stamp")})
        }
    )
    lim = pf.limits
    print(
        f"patient: {pf.name}; sites {[s.name for s in pf.sites]}; devices {lim.allowed_devices}; "
        f"1-{lim.max_sessions} sessions, {lim.earliest_interval_days}-{lim.latest_interval_days} d; "
        f"max downtime {lim.max_downtime_days_per_session} d/session; PIH limit {lim.pih_limit()}"
    )
    # warm-up: numba cache load and imports, on a one-session space
    search(pf.with_limits(max_sessions=1))

    rows = []
    for label, fn in (
        ("planner (decomposed + pruning)", lambda: search(pf)),
        ("planner, no dominance pruning", lambda: search(pf, prune_dominated=False)),
        ("exhaustive grid", lambda: exhaustive_search(pf)),
    ):
        t0 = time.perf_counter()
        res = fn()
        rows.append((label, time.perf_counter() - t0, res))
    ref = rows[-1][2]
    ref_t = rows[-1][1]
    print(
        f"\n{'method':34s} {'time (s)':>9s} {'vs grid':>8s} {'simulated':>10s} {'plans':>7s} "
        f"{'score*':>8s}  recommended"
    )
    for label, t, res in rows:
        score = rescore(res.recommended, ref.normalisers, ref.weights)
        print(
            f"{label:34s} {t:9.2f} {ref_t / t:7.1f}x {res.n_simulated:10d} {res.n_plans:7d} "
            f"{score:8.4f}  {res.recommended.summary()}"
        )
    best = ref.recommended.score
    planner = rescore(rows[0][2].recommended, ref.normalisers, ref.weights)
    print(
        f"\n* score under the exhaustive search's normalisers. Planner {planner:.6f} vs exhaustive "
        f"{best:.6f}: {'MATCH or better' if planner >= best - 1e-9 else 'WORSE (miss)'}; "
        f"time to a plan {rows[0][1]:.2f} s (goal < 10 s: {'met' if rows[0][1] < 10 else 'MISSED'})"
    )
    print("simulated: single-site courses for the planner; two-site courses for the grid.")


if __name__ == "__main__":
    main()

"""Calibration cost benchmark (run on its own: ``python benchmarks/bench_calibrate.py [WALKERS]``;
not part of the tests).

Measures, on the calibration problem as the shipped screening selects it (or every candidate
factor when none is shipped), the cost that sizes a full ``microneedling calibrate`` run:

1. one log-posterior evaluation of a half-ensemble (WALKERS/2 vectors, one batched solve: what emcee
   calls twice per step), median of 3 after a warm-up; the courses per vector;
2. the seconds per emcee step and the projected wall time of each stage at the settings of
   ``data/calibration/calibrate.toml`` (screening: Morris + Sobol runs; history matching: waves x
   points; sampler: steps x walkers), so the settings can be chosen to fit the < 1 h budget;
3. the same half-ensemble through an emulator (trained here on ``TRAIN`` model runs, fewer than a
   real run uses, so its fit time is a lower bound): the ratio of a model evaluation to an emulated
   one, and the projected cost of emulate-sample-correct (history matching + rounds x draws model
   runs + the emulated chains) against emcee on the model;
4. the screening's kind of design (``--design N``: a Morris trajectory of N vectors, one factor
   moved per step over every candidate factor) with the repeated cases integrated once, the
   observables computed only where the rows read them and the topical absorption kept by its
   inputs, against the same design with all three off (the reference, in the same process): the
   ratio, and that the predictions are identical bit for bit.

``python benchmarks/bench_calibrate.py --design 64`` runs part 4 alone.

The machine is shared: run it when it is quiet, and read the numbers as an order of magnitude.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import numpy as np


def main(walkers: int | None = None) -> None:
    from microneedling.studies.credibility.calibrate import build_problem, load_config
    from microneedling.studies.credibility.screening import load_screening

    cfg = load_config()
    try:
        screen = load_screening()
        labels = list(screen["selected"])
        sampled = list(screen.get("nuisances", {}).get("sampled", []))
    except OSError:
        labels, sampled = None, None
    full = build_problem(None, config=cfg)
    problem = build_problem(labels, config=cfg, nuisance_labels=sampled)
    W = walkers or cfg.sampler.walkers or max(2 * problem.ndim + 2, cfg.sampler.min_walkers)
    W += W % 2
    rng = np.random.default_rng(0)
    x = rng.standard_normal((W // 2, problem.ndim))
    x[:, problem.P : problem.P + problem.Q] = np.log(problem.group_prior_scale)[None, :]
    problem.evaluate(x[:2])  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        problem.evaluate(x)
        times.append(time.perf_counter() - t0)
    half = statistics.median(times)
    per_vector = half / len(x)
    step = 2 * half
    sc, hm, sm = cfg.screening, cfg.history_matching, cfg.sampler
    D = full.P + full.M
    morris = sc.morris_trajectories * (D + 1)
    sobol = sc.sobol_n_base * (sc.morris_keep + min(sc.morris_keep_nuisances, full.M) + 2)
    print(
        f"problem: {len(problem.rows)} rows, {problem.P} parameters, {problem.Q} groups, "
        f"{problem.M} nuisances = {problem.ndim} dimensions; {W} walkers"
    )
    print(f"1. half-ensemble ({len(x)} vectors, one batched solve): {half:.2f} s")
    print(f"   per parameter vector: {per_vector * 1e3:.0f} ms")
    print(f"2. emcee step ({W} walkers): {step:.2f} s")
    print(
        f"   screening: {morris} Morris + {sobol} Sobol runs: {(morris + sobol) * per_vector / 60:.0f} min"
    )
    print(
        f"   history matching: {hm.waves * hm.points} points: {hm.waves * hm.points * per_vector / 60:.0f} min"
    )
    print(f"   sampler: {sm.steps} steps: {sm.steps * step / 60:.0f} min")
    total = (morris + sobol + hm.waves * hm.points) * per_vector + sm.steps * step
    print(f"   total: {total / 60:.0f} min (budget 60 min on 2 cores)")
    emulated(problem, cfg, x, half, per_vector, hm.waves * hm.points)


TRAIN = 512


def emulated(problem: object, cfg: object, x: np.ndarray, half: float, per_vector: float,
             hm_points: int) -> None:  # fmt: skip
    """Part 3 of the module doc."""
    from microneedling.studies.credibility.emulator import (
        EmulatedPosterior,
        fit_emulator,
        model_columns,
        probability_rows,
        row_noise,
    )

    pr: Any = problem
    ec, sm = cfg.emulator, cfg.sampler  # type: ignore[attr-defined]
    rng = np.random.default_rng(1)
    train = rng.standard_normal((TRAIN, pr.ndim))
    train[:, pr.P : pr.P + pr.Q] = np.log(pr.group_prior_scale)[None, :]
    pred = pr.predict(train)
    t0 = time.perf_counter()
    emu = fit_emulator(
        train, pred, model_columns(pr), probability_rows(pr), row_noise(pr),
        hidden=tuple(ec.hidden), members=ec.members, holdout=ec.holdout, seed=0,
    )  # fmt: skip
    fit = time.perf_counter() - t0
    post = EmulatedPosterior(pr, emu, "bench")
    post.evaluate(x[:2])
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        post.evaluate(x)
        times.append(time.perf_counter() - t0)
    half_emu = statistics.median(times)
    print(f"3. emulator ({ec.members} networks {tuple(ec.hidden)}, {TRAIN} runs): fit {fit:.1f} s")
    print(
        f"   half-ensemble emulated: {half_emu * 1e3:.1f} ms, model / emulator = "
        f"{half / half_emu:.0f}x"
    )
    chains = ec.rounds * sm.steps * 2 * half_emu
    runs = (hm_points + ec.rounds * ec.draws) * per_vector
    print(
        f"   emulate-sample-correct: {hm_points} + {ec.rounds} x {ec.draws} model runs "
        f"{runs / 60:.0f} min + emulated chains {chains / 60:.1f} min + fits (>= "
        f"{ec.rounds * fit / 60:.1f} min) against emcee on the model "
        f"{(hm_points * per_vector + sm.steps * 2 * half) / 60:.0f} min"
    )


def one_at_a_time(n: int = 64, repeats: int = 3) -> None:
    """Part 4 of the module doc."""
    from unittest import mock

    from microneedling.engine import prepare
    from microneedling.physics import healing
    from microneedling.studies.credibility import calibrate

    problem = calibrate.build_problem(None, config=calibrate.load_config())
    cols = list(range(problem.P)) + list(range(problem.P + problem.Q, problem.ndim))
    rng = np.random.default_rng(1)
    x = np.zeros((n, problem.ndim))
    x[:, problem.P : problem.P + problem.Q] = np.log(problem.group_prior_scale)[None, :]
    cur = rng.normal(0.0, 0.5, len(cols))
    for i in range(n):
        if i:
            cur[rng.integers(len(cols))] += 0.7
        x[i, cols] = cur

    def every_case(*rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = np.arange(rows[0].shape[0])
        return b, b

    reference = (
        mock.patch.object(healing, "distinct_rows", every_case),
        mock.patch.object(calibrate, "_batch_reads", lambda batches, *a: [None] * len(batches)),
        mock.patch.object(prepare, "_absorbed", lambda inputs, compute: compute()),
    )
    problem.predict(x[:2])  # warm-up (compiled kernels, caches of the parameter sets)

    def timed() -> tuple[float, np.ndarray]:
        prepare._ABSORBED.clear()
        t0 = time.perf_counter()
        y = problem.predict(x)
        return time.perf_counter() - t0, y

    new, ref = [], []
    for _ in range(repeats):  # alternated, so that load on the machine falls on both
        dt, y_new = timed()
        new.append(dt)
        with reference[0], reference[1], reference[2]:
            dt, y_ref = timed()
        ref.append(dt)
    same = np.array_equal(y_new, y_ref, equal_nan=True)
    a, b = statistics.median(new), statistics.median(ref)
    print(
        f"4. one-at-a-time design, {n} vectors over {len(problem.rows)} rows: "
        f"{a / n * 1e3:.0f} ms per vector against {b / n * 1e3:.0f} ms with every case solved, "
        f"observed on the whole grid and absorbed anew: {b / a:.2f}x; identical: {same}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--design":
        one_at_a_time(int(sys.argv[2]))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else None)

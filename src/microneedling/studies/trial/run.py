"""In-silico trials: chunked execution, streaming summaries and statistics of a trial spec.

The spec (a TOML file: population, arms, end points) is read and validated by
:mod:`microneedling.studies.trial.spec`. Each virtual patient gets the arm's course with their own
age, sex, Fitzpatrick type, conditions (from the population, replacing the course's) and healing
factors; patients are simulated in chunks, each chunk one
:func:`~microneedling.engine.batch.simulate_batch` call (no per-patient solver call), on the executor
of :mod:`microneedling.engine.executor`. Only per-patient end points and per-arm streaming summaries
of trajectories (count, mean, variance per time, merged with Chan's formula) leave a chunk, so memory
does not grow with the number of patients beyond the end-point table itself.

End points use :mod:`microneedling.engine.endpoints`. If a patient's course has several sites, the
patient's end point is the mean over the sites.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from microneedling.about import DISCLAIMER, __version__
from microneedling.engine.batch import Reads, simulate_batch
from microneedling.engine.endpoints import endpoint_values
from microneedling.engine.executor import (
    ChunkStore,
    ExecutorError,
    map_chunks,
    validate_executor,
)
from microneedling.errors import InputError, InputFileFieldError
from microneedling.parameters.molecules import using_molecules
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import posterior_nominal
from microneedling.studies.trial.population import sample_patients
from microneedling.studies.trial.spec import MAX_CHUNK, Arm, EndpointDef, TrialSpec, arm_course

__all__ = [
    "ChunkResult",
    "ChunkTask",
    "TrialResult",
    "arm_grid",
    "arm_summary",
    "check_endpoints_apply",
    "compare_arms",
    "merge_moments",
    "plan_chunks",
    "run_chunk",
    "run_trial",
    "trajectory_variables",
]


# ---------------------------------------------------------------------------------- chunks
@dataclass(frozen=True)
class ChunkTask:
    """Patients ``start..stop-1`` of stream ``stream``, under the arms ``arms``."""

    spec: TrialSpec
    arms: tuple[int, ...]
    stream: int
    start: int
    stop: int
    parallel: bool = True


@dataclass
class ChunkResult:
    """What leaves a chunk: end points, covariates, trajectory moments, rejections."""

    arms: tuple[int, ...]
    start: int
    stop: int
    values: np.ndarray  # (len(arms), n, E)
    covariates: dict[str, np.ndarray]  # (n,)
    moments: dict[int, dict[str, np.ndarray]]  # arm -> var -> (3, T): count, mean, M2
    rejected: dict[str, int]
    n_steps: float


def plan_chunks(spec: TrialSpec, chunk_size: int, parallel: bool = True) -> list[ChunkTask]:
    """The chunks of a trial: per arm (parallel design) or per patient range (split-face)."""
    out = []
    groups = [((0, 1), 0)] if spec.paired else [((a,), a) for a in range(len(spec.arms))]
    for arms, stream in groups:
        for s in range(0, spec.n_per_arm, chunk_size):
            out.append(
                ChunkTask(spec, arms, stream, s, min(s + chunk_size, spec.n_per_arm), parallel)
            )
    return out


def trajectory_variables(spec: TrialSpec) -> list[tuple[str, str, str]]:
    """``(label, variable, layer)`` of the time-resolved end points (one band each)."""
    seen: dict[str, tuple[str, str, str]] = {}
    for e in spec.endpoints:
        s = e.spec
        if s.per_session:
            continue
        label = s.variable + (f".{s.layer}" if s.layer != "papillary" else "")
        seen.setdefault(label, (label, s.variable, s.layer))
    return list(seen.values())


def arm_grid(arm: Arm) -> np.ndarray:
    """Weekly trajectory-summary grid of an arm (days), ending at its horizon."""
    h = arm.horizon_days
    return np.unique(np.concatenate([np.arange(0.0, h, 7.0), [h]]))


def _interp_rows(t: np.ndarray, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    g = np.clip(grid, t[0], t[-1])
    i1 = np.clip(np.searchsorted(t, g, side="left"), 1, len(t) - 1)
    i0 = i1 - 1
    w = (g - t[i0]) / (t[i1] - t[i0])
    return np.asarray(x[:, i0] * (1.0 - w) + x[:, i1] * w)


def _moments(x: np.ndarray) -> np.ndarray:
    """(3, T): count, mean, M2 (sum of squared deviations) of the finite values per column."""
    ok = np.isfinite(x)
    n = ok.sum(axis=0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(ok, x, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
        m2 = np.where(ok, (x - mean) ** 2, 0.0).sum(axis=0)
    return np.stack([n, mean, m2])


def merge_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Combine two (3, T) moment arrays (Chan, Golub & LeVeque's pairwise update)."""
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(nb > 0, mb, 0.0) - np.where(na > 0, ma, 0.0)
        mean = np.where(
            n > 0,
            (np.where(na > 0, na * ma, 0.0) + np.where(nb > 0, nb * mb, 0.0)) / np.maximum(n, 1),
            np.nan,
        )
        m2 = sa + sb + np.where((na > 0) & (nb > 0), d * d * na * nb / np.maximum(n, 1), 0.0)
    return np.stack([n, mean, m2])


def run_chunk(task: ChunkTask) -> ChunkResult:
    """Simulate one chunk of patients under its arm(s) in ONE batched solve; return summaries.

    Runs inside the user molecules the spec's arms name (:attr:`TrialSpec.molecules`), so a chunk
    is self-contained on any worker."""
    with using_molecules(task.spec.molecules):
        return _run_chunk(task)


def _run_chunk(task: ChunkTask) -> ChunkResult:
    spec = task.spec
    pop = spec.population
    batch = sample_patients(pop, task.start, task.stop, seed=spec.seed, stream=task.stream)
    n = len(batch)
    courses = [arm_course(spec.arms[a], batch, i, pop) for a in task.arms for i in range(n)]
    factors = {k: np.tile(v, len(task.arms)) for k, v in batch.factors.items()}
    # what leaves the chunk: the end points, and the trajectories on the arms' weekly grids
    grids = np.concatenate([arm_grid(spec.arms[a]) for a in task.arms])
    reads = Reads(tuple(e.spec for e in spec.endpoints), tuple(grids.tolist()))
    run = simulate_batch(
        courses,
        posterior_nominal(load_parameters()),  # calibrated parameters at their posterior median
        healing_factors=factors or None,
        parallel=task.parallel,
        reads=reads,  # observed only at the output times these read (same values)
    )
    E = len(spec.endpoints)
    A = len(task.arms)
    n_courses = A * n
    counts = np.bincount(run.course_index, minlength=n_courses).astype(float)

    def per_course(v: np.ndarray) -> np.ndarray:
        ok = np.isfinite(v)
        s = np.bincount(run.course_index, weights=np.where(ok, v, 0.0), minlength=n_courses)
        k = np.bincount(run.course_index, weights=ok.astype(float), minlength=n_courses)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(k > 0, s / k, np.nan)

    values = np.empty((A, n, E))
    for j, e in enumerate(spec.endpoints):
        values[:, :, j] = per_course(endpoint_values(run, e.spec)).reshape(A, n)
    moments: dict[int, dict[str, np.ndarray]] = {}
    for ai, a in enumerate(task.arms):
        rows = np.flatnonzero((run.course_index >= ai * n) & (run.course_index < (ai + 1) * n))
        grid = arm_grid(spec.arms[a])
        moments[a] = {}
        for label, var, layer in trajectory_variables(spec):
            x = run.observables[var][rows]
            if x.ndim == 3:
                x = x[:, 0 if layer == "papillary" else 1, :]
            moments[a][label] = _moments(_interp_rows(run.t, x, grid))
    cov: dict[str, np.ndarray] = {
        "age": np.rint(batch.age_years),
        "sex_male": (batch.sex == "male").astype(float),
        "fitzpatrick": batch.fitzpatrick.astype(float),
    }
    for ctype, flds in batch.conditions:
        for k, arr in flds.items():
            if arr.dtype.kind in "fiu":
                cov[f"{ctype}.{k}"] = arr.astype(float)
            else:
                cov[f"{ctype}.{k}"] = arr.astype(str)
    for k, arr in batch.factors.items():
        cov[f"factor.{k}"] = arr
    return ChunkResult(
        arms=task.arms,
        start=task.start,
        stop=task.stop,
        values=values,
        covariates=cov,
        moments=moments,
        rejected={k: int(v.sum()) for k, v in batch.rejected.items()},
        n_steps=float(np.mean(run.n_steps)) if counts.size else 0.0,
    )


# ------------------------------------------------------------------------------ statistics
def _t_ci(x: np.ndarray) -> tuple[float, float, float, float, int]:
    """mean, sd, 95% CI (Student t) of the finite values; n."""
    from scipy import stats

    x = x[np.isfinite(x)]
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan, 0
    m = float(x.mean())
    if n == 1:
        return m, math.nan, math.nan, math.nan, 1
    sd = float(x.std(ddof=1))
    h = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return m, sd, m - h, m + h, n


def _wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return math.nan, math.nan
    z = 1.959963984540054
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


def arm_summary(x: np.ndarray, e: EndpointDef) -> dict[str, float]:
    """Per-arm statistics of one end point's values ``x`` (n,)."""
    m, sd, lo, hi, n = _t_ci(x)
    fin = x[np.isfinite(x)]
    row: dict[str, float] = {
        "n": float(n),
        "mean": m,
        "sd": sd,
        "ci95_low": lo,
        "ci95_high": hi,
        "median": float(np.median(fin)) if n else math.nan,
        "p10": float(np.percentile(fin, 10)) if n else math.nan,
        "p90": float(np.percentile(fin, 90)) if n else math.nan,
    }
    if e.above is not None or e.below is not None:
        k = int(e.responders(fin).sum())
        row["responder_rate"] = k / n if n else math.nan
        row["responder_ci95_low"], row["responder_ci95_high"] = _wilson(k, n)
    return row


def compare_arms(x: np.ndarray, y: np.ndarray, paired: bool) -> dict[str, float]:
    """Arm ``x`` vs control ``y``: difference of means with 95% CI, Cohen's d, Hedges' g, tests.

    Parallel: Welch's t test and the Mann-Whitney U test. Paired (split-face): the paired t test
    and the Wilcoxon signed-rank test on the per-patient differences; d uses the pooled SD of the two
    arms (comparable with parallel designs), d_z = mean difference / SD of differences is added.
    """
    from scipy import stats

    out: dict[str, float] = {}
    if paired:
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
    else:
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    nx, ny = x.size, y.size
    out["n_arm"], out["n_control"] = float(nx), float(ny)
    if nx < 2 or ny < 2:
        return out
    diff = float(x.mean() - y.mean())
    sx, sy = float(x.var(ddof=1)), float(y.var(ddof=1))
    sp = math.sqrt(((nx - 1) * sx + (ny - 1) * sy) / (nx + ny - 2))
    out["difference"] = diff
    with np.errstate(all="ignore"):
        d = diff / sp if sp > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    J = 1.0 - 3.0 / (4.0 * (nx + ny) - 9.0)
    out["cohens_d"] = d
    out["hedges_g"] = d * J
    if paired:
        dd = x - y
        sdd = float(dd.std(ddof=1))
        h = float(stats.t.ppf(0.975, nx - 1)) * sdd / math.sqrt(nx)
        out["ci95_low"], out["ci95_high"] = diff - h, diff + h
        out["cohens_dz"] = diff / sdd if sdd > 0 else math.nan
        if sdd > 0:
            out["t_stat"], out["p_t"] = (float(v) for v in stats.ttest_rel(x, y))
        if np.any(dd != 0):
            out["w_stat"], out["p_rank"] = (float(v) for v in stats.wilcoxon(x, y))
    else:
        se = math.sqrt(sx / nx + sy / ny)
        if se > 0:
            dof = se**4 / ((sx / nx) ** 2 / (nx - 1) + (sy / ny) ** 2 / (ny - 1))
            h = float(stats.t.ppf(0.975, dof)) * se
            out["ci95_low"], out["ci95_high"] = diff - h, diff + h
            out["t_stat"], out["p_t"] = (float(v) for v in stats.ttest_ind(x, y, equal_var=False))
        out["u_stat"], out["p_rank"] = (
            float(v) for v in stats.mannwhitneyu(x, y, alternative="two-sided")
        )
    return out


# ------------------------------------------------------------------------------ the trial
@dataclass
class TrialResult:
    """A finished trial: per-patient end points, covariates, trajectory bands and statistics."""

    spec: TrialSpec
    values: np.ndarray  # (A, n, E)
    covariates: dict[str, np.ndarray]  # name -> (A, n)
    grids: dict[int, np.ndarray]
    moments: dict[int, dict[str, np.ndarray]]  # arm -> label -> (3, T)
    rejection: dict[str, float]
    summary: Any  # pandas DataFrame
    comparisons: Any  # pandas DataFrame
    n_steps: float
    wall_s: float = 0.0  # run_trial before writing outputs (s)
    map_s: float = 0.0  # of which on the executor, cluster start included (s)
    workers: int = 0

    def dataset(self) -> Any:
        """xarray Dataset: end points (arm, patient, endpoint) with units, covariates, bands."""
        import xarray as xr

        spec = self.spec
        arms = [a.name for a in spec.arms]
        eps = [e.name for e in spec.endpoints]
        data: dict[str, Any] = {
            "value": (
                ("arm", "patient", "endpoint"),
                self.values,
                {"long_name": "End point value per virtual patient (units: endpoint_units)"},
            ),
            "endpoint_units": (("endpoint",), np.array([e.spec.units for e in spec.endpoints])),
            "responder_rule": (("endpoint",), np.array([e.rule for e in spec.endpoints])),
        }
        for k, v in self.covariates.items():
            data[f"covariate_{k}"] = (("arm", "patient"), v)
        for a, mom in self.moments.items():
            for label, m in mom.items():
                tdim = f"time_{a}"
                n, mean, m2 = m
                with np.errstate(invalid="ignore", divide="ignore"):
                    sd = np.sqrt(m2 / np.maximum(n - 1, 1))
                data[f"band_{a}_{label}_mean"] = ((tdim,), mean, {"arm": arms[a]})
                data[f"band_{a}_{label}_sd"] = ((tdim,), sd, {"arm": arms[a]})
                data[f"band_{a}_{label}_n"] = ((tdim,), n, {"arm": arms[a]})
        coords: dict[str, Any] = {
            "arm": arms,
            "patient": np.arange(spec.n_per_arm),
            "endpoint": eps,
        }
        for a, g in self.grids.items():
            coords[f"time_{a}"] = (f"time_{a}", g, {"units": "d", "arm": arms[a]})
        attrs = {
            "title": f"microneedling in-silico trial: {spec.name}",
            "disclaimer": DISCLAIMER,
            "microneedling_version": __version__,
            "design": spec.design,
            "seed": spec.seed,
            "n_per_arm": spec.n_per_arm,
            "population": spec.population.name,
            "control_arm": arms[spec.control],
            "rejection_rates": json.dumps(self.rejection),
            "trial_toml": spec.to_toml(),
            "patient_note": (
                "split-face: patient i is the same person in both arms"
                if spec.paired
                else "parallel: patient i of one arm is unrelated to patient i of another"
            ),
        }
        return xr.Dataset(data, coords=coords, attrs=attrs)


def _tables(spec: TrialSpec, values: np.ndarray) -> tuple[Any, Any]:
    import pandas as pd

    rows, comps = [], []
    for j, e in enumerate(spec.endpoints):
        for a, arm in enumerate(spec.arms):
            rows.append(
                {
                    "endpoint": e.name,
                    "units": e.spec.units,
                    "arm": arm.name,
                    "responder_rule": e.rule,
                    **arm_summary(values[a, :, j], e),
                }
            )
        c = spec.control
        for a, arm in enumerate(spec.arms):
            if a == c:
                continue
            comps.append(
                {
                    "endpoint": e.name,
                    "units": e.spec.units,
                    "arm": arm.name,
                    "control": spec.arms[c].name,
                    "design": spec.design,
                    "tests": "paired t; Wilcoxon" if spec.paired else "Welch t; Mann-Whitney U",
                    **compare_arms(values[a, :, j], values[c, :, j], spec.paired),
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(comps)


def check_endpoints_apply(spec: TrialSpec) -> None:
    """Refuse, before any patient is simulated, an end point that gives no value in an arm (a
    striae width in an acne-scar cohort, an absorbed amount in an arm without a topical, a read-out
    after the horizon): one nominal solve of the population's first patient in every arm.

    Every patient of an arm has the same condition types (the population's, or the course's when
    the population declares none) and the same sessions, so the first patient decides. Runs inside
    the user molecules the arms name.
    """
    pop = spec.population
    with using_molecules(spec.molecules):
        batch = sample_patients(pop, 0, 1, seed=spec.seed)
        courses = [arm_course(arm, batch, 0, pop) for arm in spec.arms]
        run = simulate_batch(courses, posterior_nominal(load_parameters()))
    problems: list[InputError] = []
    for j, e in enumerate(spec.endpoints):
        v = endpoint_values(run, e.spec)
        empty = [
            spec.arms[a].name
            for a in range(len(courses))
            if not np.any(np.isfinite(v[run.course_index == a]))
        ]
        if empty:
            problems.append(
                InputError(
                    f"trial.endpoints[{j}]",
                    e.name,
                    "an end point with a value in every arm; it has none in "
                    + ", ".join(repr(a) for a in empty)
                    + " (its condition is not in the population or the course, e.g. "
                    "striae_width needs striae and scar_depth acne scars; absorbed amounts need "
                    "a topical; a read-out day must lie within the horizon)",
                )
            )
    if problems:
        raise problems[0] if len(problems) == 1 else InputFileFieldError(problems, "trial")


def run_trial(
    spec: TrialSpec,
    *,
    resume_dir: str | Path | None = None,
    workers: int = 0,
    scheduler: str | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
) -> TrialResult:
    """Run a trial on the executor and return its data (writing the outputs is
    :func:`microneedling.reports.trial.write_trial`'s job).

    With ``resume_dir``, finished chunks are kept there as they arrive (atomically, with the
    spec's fingerprint), so a rerun of an interrupted trial computes only the missing chunks.
    The user molecules the arms name (:attr:`TrialSpec.molecules`) are in scope wherever a course
    is simulated: the end-point check and every chunk (:func:`run_chunk`) enter them.
    """
    validate_executor(workers, scheduler)
    chunk = spec.chunk_size if chunk_size is None else chunk_size
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= MAX_CHUNK:
        raise InputError("chunk_size", chunk, f"an integer from 1 to {MAX_CHUNK}")
    check_endpoints_apply(spec)  # before any chunk: refuse an end point without values
    in_process = workers == 0 and scheduler is None
    tasks = plan_chunks(spec, chunk, parallel=in_process)
    A, n, E = len(spec.arms), spec.n_per_arm, len(spec.endpoints)
    t0 = time.perf_counter()
    store: ChunkStore | None = None
    mem: dict[int, ChunkResult] = {}
    if resume_dir is not None:
        store = ChunkStore(Path(resume_dir), spec.fingerprint(chunk))

    def keep(i: int, r: ChunkResult) -> None:
        if store is not None:
            store.save(i, r)
        else:
            mem[i] = r

    t_map = time.perf_counter()
    try:
        map_chunks(
            run_chunk,
            tasks,
            workers=workers,
            scheduler=scheduler,
            progress=progress,
            label=f"{spec.name[:40]}",
            skip=store.done() if store is not None else (),
            on_result=keep,
            rate=lambda r: (r.stop - r.start) * len(r.arms),
            rate_unit="patients",
            keep=False,
        )
    except ExecutorError as exc:  # a cluster failure: say what is kept for the rerun
        if store is None:
            raise
        raise ExecutorError(
            f"{exc}; the {len(store.done())} of {len(tasks)} chunks finished are kept in "
            f"{store.directory} and the same command resumes from them"
        ) from None
    t_map = time.perf_counter() - t_map
    # stream the chunks back in (bounded memory: only end points and moments accumulate)
    values = np.full((A, n, E), np.nan)
    cov: dict[str, np.ndarray] = {}
    moments: dict[int, dict[str, np.ndarray]] = {}
    rejected: dict[str, int] = {}
    steps = 0.0
    for i in range(len(tasks)):
        r = store.load(i) if store is not None else mem.pop(i)
        sl = slice(r.start, r.stop)
        for ai, a in enumerate(r.arms):
            values[a, sl] = r.values[ai]
            for k, v in r.covariates.items():
                if k not in cov:
                    cov[k] = (
                        np.full((A, n), np.nan)
                        if v.dtype.kind == "f"
                        else np.full((A, n), "", dtype=object)
                    )
                cov[k][a, sl] = v
            for label, m in r.moments[a].items():
                cur = moments.setdefault(a, {}).get(label)
                moments[a][label] = m if cur is None else merge_moments(cur, m)
        for k, v in r.rejected.items():
            rejected[k] = rejected.get(k, 0) + v
        steps += r.n_steps * (r.stop - r.start)
    for k in cov:
        if cov[k].dtype == object:
            cov[k] = cov[k].astype(str)
    draws = n * (1 if spec.paired else A)
    rates = {k: v / (v + draws) for k, v in rejected.items()}
    summary, comps = _tables(spec, values)
    res = TrialResult(
        spec=spec,
        values=values,
        covariates=cov,
        grids={a: arm_grid(spec.arms[a]) for a in range(A)},
        moments=moments,
        rejection=rates,
        summary=summary,
        comparisons=comps,
        n_steps=steps / (n * (1 if spec.paired else A)),
        wall_s=time.perf_counter() - t0,
        map_s=t_map,
        workers=workers,
    )
    return res

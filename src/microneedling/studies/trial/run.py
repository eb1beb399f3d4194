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

Parameter uncertainty: with ``parameter_draws = K > 0`` (the default, :data:`DEFAULT_PARAMETER_DRAWS`)
the trial draws K parameter sets once (:func:`trial_parameter_draws`: whole rows of the shipped
posterior, the other uncertain parameters from their priors, as
:func:`~microneedling.engine.simulate.simulate`'s ensemble) and patient ``i`` runs under set
``i mod K`` (:func:`draw_of`) in every arm, whatever the chunk or worker. The statistics then add,
per arm end point and per comparison, the spread over the K per-draw means or differences
(epistemic) beside the patients' spread within a draw (aleatory) and a variance decomposition
(:func:`variance_components`, :func:`difference_components`). ``K = 0``: every patient at the
posterior median, as before (the same numbers, bit for bit).
"""

from __future__ import annotations

import dataclasses
import hashlib
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
from microneedling.errors import InputError, InputFileFieldError, MicroneedlingError
from microneedling.parameters.molecules import using_molecules
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.parameters.sampling import (
    draw_indices,
    posterior_hash,
    posterior_nominal,
    sample_parameter_sets,
    shipped_posterior,
)
from microneedling.studies.trial.population import sample_patients
from microneedling.studies.trial.spec import (
    MAX_CHUNK,
    MAX_PARAMETER_DRAWS,
    Arm,
    EndpointDef,
    TrialSpec,
    arm_course,
    arm_courses,
)

__all__ = [
    "ChunkResult",
    "ChunkTask",
    "ParameterDrawError",
    "ParameterDraws",
    "TrialResult",
    "arm_grid",
    "arm_summary",
    "check_endpoints_apply",
    "check_parameters",
    "compare_arms",
    "difference_components",
    "draw_of",
    "merge_moments",
    "parameter_digest",
    "plan_chunks",
    "responder_spread",
    "run_chunk",
    "run_trial",
    "trajectory_variables",
    "trial_chunks",
    "trial_parameter_draws",
    "variance_components",
]


# -------------------------------------------------------------------------- parameter draws
@dataclass(frozen=True)
class ParameterDraws:
    """The K parameter sets of a trial (:func:`trial_parameter_draws`)."""

    sets: tuple[ParameterSet, ...]
    source: str
    """``"posterior"`` (calibrated parameters as whole posterior rows, the others from their
    priors) or ``"prior"`` (no shipped posterior applies: every uncertain parameter from its
    prior interval)."""
    posterior: str
    """Content hash of the posterior's samples (``""`` with ``source = "prior"``)."""
    samples: np.ndarray
    """(K,) the posterior row each draw took (-1 with ``source = "prior"``)."""


_DRAWS: dict[tuple[int, int, str, str], ParameterDraws] = {}
"""The draws of a trial by (seed, K, posterior hash, parameter-set hash): drawn once per process
(every chunk of a trial, on any worker, uses the same sets; a few entries at most)."""


def trial_parameter_draws(seed: int, k: int) -> ParameterDraws:
    """The ``k`` parameter sets of a trial with seed ``seed``:
    :func:`~microneedling.parameters.sampling.sample_parameter_sets` of the shipped parameters
    (the calibrated ones as jointly drawn rows of the shipped posterior when it applies, every other
    uncertain parameter from its prior interval; without an applicable posterior all from the
    priors, as the ensemble of ``simulate`` does). Same seed, same sets, in any process; the first
    ``j`` sets are the same for any ``k >= j``."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_PARAMETER_DRAWS:
        raise InputError("parameter_draws", k, f"an integer from 1 to {MAX_PARAMETER_DRAWS}")
    ps = load_parameters()
    post = shipped_posterior(ps)
    key = (int(seed), k, posterior_hash() if post is not None else "", ps.hash)
    hit = _DRAWS.get(key)
    if hit is None:
        sets = tuple(sample_parameter_sets(ps, k, int(seed), posterior=post is not None))
        rows = (
            draw_indices(post.n_samples, k, int(seed)).astype(np.int64)
            if post is not None
            else np.full(k, -1, dtype=np.int64)
        )
        hit = ParameterDraws(sets, "posterior" if post is not None else "prior", key[2], rows)
        if len(_DRAWS) >= 4:
            _DRAWS.clear()
        _DRAWS[key] = hit
    return hit


def draw_of(patients: np.ndarray, k: int) -> np.ndarray:
    """The parameter draw of patients ``patients`` (indices in the arm), the same in every arm:
    ``i mod k`` (-1 for ``k = 0``, the posterior median). A function of the index alone (the
    draws themselves come from the seed), never of the chunk or worker; each draw gets
    ``n_per_arm // k`` or one more patient."""
    i = np.asarray(patients, dtype=np.int64)
    out: np.ndarray = i % k if k > 0 else np.full(i.shape, -1, dtype=np.int64)
    return out


def parameter_digest(seed: int, k: int) -> str:
    """SHA-256 (16 hex digits) of the parameter values every patient of a trial runs under: the
    :attr:`~microneedling.parameters.parameter_set.ParameterSet.hash` of each of the ``k`` drawn
    sets in order (``k = 0``: of the posterior median). It changes with anything that changes a
    drawn value (the posterior, a value, a prior interval or domain, the sampler), which the
    parameter files' hash alone does not see (a prior interval is not in it): part of the resume
    fingerprint, and each chunk reports it so that a worker that drew other sets is caught."""
    if k > 0:
        hashes = [ps.hash for ps in trial_parameter_draws(seed, k).sets]
    else:
        hashes = [posterior_nominal(load_parameters()).hash]
    return hashlib.sha256(json.dumps(hashes).encode()).hexdigest()[:16]


class ParameterDrawError(MicroneedlingError):
    """A chunk ran under parameter sets other than those the trial drew (:func:`parameter_digest`)."""


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
    parameters: str = ""
    """:func:`parameter_digest` of the trial as the submitter computed it ("": not checked)."""


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
    draws: np.ndarray | None = None  # (n,) each patient's parameter draw (-1: posterior median)
    parameters: str = ""  # parameter_digest of the sets this chunk ran under


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


def trial_chunks(
    spec: TrialSpec, chunk_size: int, parallel: bool = True
) -> tuple[list[ChunkTask], str]:
    """The chunks of a trial (:func:`plan_chunks`), each carrying the digest of the parameter
    values its patients run under (:func:`parameter_digest`), and the fingerprint of their store
    (resume): what :func:`run_trial` runs, and what a caller that maps the chunks itself (the
    service's job) must run for :func:`run_trial` to read them back."""
    digest = parameter_digest(spec.seed, spec.parameter_draws)
    tasks = [
        dataclasses.replace(t, parameters=digest)
        for t in plan_chunks(spec, chunk_size, parallel=parallel)
    ]
    return tasks, spec.fingerprint(chunk_size, parameters=digest)


def check_parameters(index: int, result: ChunkResult, digest: str) -> None:
    """Refuse a chunk that ran under other parameter values than the trial drew (a worker with
    other parameter files or posterior): :class:`ParameterDrawError`."""
    if result.parameters != digest:
        raise ParameterDrawError(
            f"chunk {index} ran under other parameter sets (digest {result.parameters or 'none'}) "
            f"than this process drew ({digest}): the workers' parameter files or posterior differ "
            "from this installation's"
        )


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
    courses = [c for a in task.arms for c in arm_courses(spec.arms[a], batch, pop)]
    factors = {k: np.tile(v, len(task.arms)) for k, v in batch.factors.items()}
    # what leaves the chunk: the end points, and the trajectories on the arms' weekly grids
    grids = np.concatenate([arm_grid(spec.arms[a]) for a in task.arms])
    reads = Reads(tuple(e.spec for e in spec.endpoints), tuple(grids.tolist()))
    K = spec.parameter_draws
    draws = draw_of(np.arange(task.start, task.stop), K)
    params: ParameterSet | list[ParameterSet]
    if K > 0:  # patient i under draw i mod K, in every arm (split-face: both sides)
        sets = trial_parameter_draws(spec.seed, K).sets
        params = [sets[d] for _ in task.arms for d in draws.tolist()]
    else:  # calibrated parameters at their posterior median
        params = posterior_nominal(load_parameters())
    run = simulate_batch(
        courses,
        params,
        healing_factors=factors or None,
        parallel=task.parallel,
        reads=reads,  # observed only at the output times these read (same values)
        lanes=spec.lanes,  # [trial] lanes: an arm's cases share a schedule (lockstep SIMD)
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
        draws=draws,
        parameters=parameter_digest(spec.seed, K) if task.parameters else "",
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


# ----------------------------------------------------------- parameter vs patient spread
EPISTEMIC_LEVELS = ((80, 10.0, 90.0), (95, 2.5, 97.5))
"""Intervals over the per-draw means (or differences): level, lower and upper percentile."""


def _draw_moments(x: np.ndarray, draw: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Per draw (k,): finite values n_k and their mean (NaN where n_k = 0); the pooled within-draw
    sum of squares."""
    ok = np.isfinite(x)
    x, g = x[ok], np.asarray(draw)[ok]
    n_k = np.bincount(g, minlength=k).astype(float)
    s_k = np.bincount(g, weights=x, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_k = np.where(n_k > 0, s_k / np.maximum(n_k, 1), np.nan)
    ssw = float(np.sum((x - mean_k[g]) ** 2)) if x.size else math.nan
    return n_k, mean_k, ssw


def _intervals(per_draw: np.ndarray) -> dict[str, float]:
    """Median and the :data:`EPISTEMIC_LEVELS` intervals (percentiles, linear interpolation) of
    the finite per-draw values."""
    v = per_draw[np.isfinite(per_draw)]
    out = {"epistemic_median": float(np.median(v)) if v.size else math.nan}
    for level, lo, hi in EPISTEMIC_LEVELS:
        a, b = np.percentile(v, [lo, hi]) if v.size else (math.nan, math.nan)
        out[f"epistemic{level}_low"], out[f"epistemic{level}_high"] = float(a), float(b)
    return out


def _components(var_epi: float, var_ale: float) -> dict[str, float]:
    tot = var_epi + var_ale
    return {
        "epistemic_sd": math.sqrt(var_epi) if math.isfinite(var_epi) else math.nan,
        "aleatory_sd": math.sqrt(var_ale) if math.isfinite(var_ale) else math.nan,
        "var_epistemic": var_epi,
        "var_aleatory": var_ale,
        "var_total": tot,
        "epistemic_fraction": var_epi / tot if math.isfinite(tot) and tot > 0 else math.nan,
    }


def variance_components(x: np.ndarray, draw: np.ndarray, k: int) -> dict[str, float]:
    """Parameter (epistemic) and patient (aleatory) spread of the values ``x`` (n,) whose patients
    ran under parameter draws ``draw`` (n,) of ``k``: one-way random-effects ANOVA over the draws
    (the law of total variance, Var X = Var E[X | θ] + E Var[X | θ], with the between-draw term
    corrected for the finite patients per draw).

    With N finite values in K' draws that have one (n_j each, means m_j, grand mean m):
    ``var_aleatory`` = MSW = Σ (x - m_j)² / (N - K') (pooled within-draw variance);
    ``var_epistemic`` = max(0, (MSB - MSW) / n0), MSB = Σ n_j (m_j - m)² / (K' - 1),
    n0 = (N - Σ n_j² / N) / (K' - 1) (n0 = n_j when the draws are balanced): the variance of the
    draw means with the part the patients' own spread puts into each mean (MSW / n_j) taken out;
    ``var_total`` = their sum, the variance of one patient's value when the parameters are also
    unknown. ``epistemic80_low`` ... ``epistemic95_high`` and ``epistemic_median``: percentiles of
    the K' per-draw means (their spread also holds that patient noise, MSW / n_j). NaN where a term
    is not estimable (K' < 2, or no draw with two patients)."""
    n_k, mean_k, ssw = _draw_moments(x, draw, k)
    occ = n_k > 0
    N, Kp = float(n_k.sum()), int(occ.sum())
    out: dict[str, float] = {"parameter_draws": float(Kp), **_intervals(mean_k[occ])}
    msw = ssw / (N - Kp) if N > Kp else math.nan
    var_epi = math.nan
    grand = float(np.sum(n_k[occ] * mean_k[occ]) / N) if N > 0 else math.nan
    if Kp >= 2:
        msb = float(np.sum(n_k[occ] * (mean_k[occ] - grand) ** 2)) / (Kp - 1)
        n0 = (N - float(np.sum(n_k[occ] ** 2)) / N) / (Kp - 1)
        var_epi = max(0.0, (msb - msw) / n0) if math.isfinite(msw) else math.nan
    out.update(_components(var_epi, msw))
    out["draw_noise_fraction"] = _noise_fraction(
        float(np.mean(msw / n_k[occ])) if Kp else math.nan, mean_k[occ]
    )
    out.update(_given_draws(grand, msw / N if N > 0 else math.nan, N - Kp))
    return out


def _noise_fraction(noise: float, per_draw: np.ndarray) -> float:
    """The share of the per-draw values' variance that the patients' own noise explains: the mean
    noise variance of a draw's value (MSW / n_j) over the variance of the values (at most 1; NaN
    when not estimable). Near 1, the interval over the draws (percentiles of these values) shows
    mostly patient noise, not the parameters' spread: add patients or use fewer sets."""
    if per_draw.size < 2 or not math.isfinite(noise):
        return math.nan
    spread = float(np.var(per_draw, ddof=1))
    if spread <= 0:
        return math.nan if noise <= 0 else 1.0
    return min(1.0, noise / spread)


def _given_draws(estimate: float, var: float, dof: float) -> dict[str, float]:
    """A 95% confidence interval and a two-sided t test (against 0) of ``estimate`` given the
    trial's parameter sets: its variance ``var`` from the within-set spread only (the sets' own
    effects are what is conditioned on), Student t with ``dof`` degrees of freedom. NaN where the
    within-set variance is not estimable (``dof`` < 1)."""
    from scipy import stats

    keys = ("given_draws_ci95_low", "given_draws_ci95_high", "given_draws_p_t")
    out = dict.fromkeys(keys, math.nan)
    if not (dof >= 1 and math.isfinite(var) and math.isfinite(estimate)):
        return out
    se = math.sqrt(var)
    h = float(stats.t.ppf(0.975, dof)) * se
    out["given_draws_ci95_low"], out["given_draws_ci95_high"] = estimate - h, estimate + h
    if se > 0:
        out["given_draws_p_t"] = float(2.0 * stats.t.sf(abs(estimate) / se, dof))
    return out


def responder_spread(x: np.ndarray, draw: np.ndarray, k: int, e: EndpointDef) -> dict[str, float]:
    """The responder rate under each parameter draw (its responders among its patients with a
    value): ``responder_epistemic80_low`` ... ``responder_epistemic95_high``, percentiles over the
    draws with a patient (each rate also holds the binomial noise of its n / K patients)."""
    ok = np.isfinite(x)
    n_k = np.bincount(np.asarray(draw)[ok], minlength=k).astype(float)
    r_k = np.bincount(np.asarray(draw)[ok], weights=e.responders(x[ok]).astype(float), minlength=k)
    rates = r_k[n_k > 0] / n_k[n_k > 0]
    return {
        f"responder_{key}": v for key, v in _intervals(rates).items() if key != "epistemic_median"
    }


def difference_components(
    x: np.ndarray, y: np.ndarray, draw: np.ndarray, k: int, paired: bool
) -> dict[str, float]:
    """Parameter and patient spread of the difference arm ``x`` minus control ``y`` (patients
    ``i`` of both under draw ``draw[i]``).

    Split-face: :func:`variance_components` of the per-patient differences (both sides finite).
    Parallel (other patients in each arm, the same draws): per draw the difference of the arms'
    means d_j; ``var_epistemic`` = max(0, s²(d_j) - mean_j(MSW_x / n_xj + MSW_y / n_yj)) over the
    draws with patients in both arms (the variance of the per-draw differences less the patient
    noise in them; balanced, the same estimator as the split-face one); ``var_aleatory`` =
    MSW_x + MSW_y, the within-draw variance of the difference between a patient under the arm and
    another under the control. ``epistemic80_low`` ...: percentiles of the d_j."""
    if paired:
        ok = np.isfinite(x) & np.isfinite(y)
        return variance_components(np.where(ok, x - y, np.nan), draw, k)
    nx, mx, sx = _draw_moments(x, draw, k)
    ny, my, sy = _draw_moments(y, draw, k)
    both = (nx > 0) & (ny > 0)
    d = mx[both] - my[both]
    out: dict[str, float] = {"parameter_draws": float(both.sum()), **_intervals(d)}
    kx, ky = int((nx > 0).sum()), int((ny > 0).sum())
    msw_x = sx / (nx.sum() - kx) if nx.sum() > kx else math.nan
    msw_y = sy / (ny.sum() - ky) if ny.sum() > ky else math.nan
    var_ale = msw_x + msw_y
    var_epi = math.nan
    noise = math.nan
    if d.size >= 2 and math.isfinite(var_ale):
        noise = float(np.mean(msw_x / nx[both] + msw_y / ny[both]))
        var_epi = max(0.0, float(np.var(d, ddof=1)) - noise)
    out.update(_components(var_epi, var_ale))
    out["draw_noise_fraction"] = _noise_fraction(noise, d)
    # given the sets: the difference of the arms' means (the same sets in both arms, so their
    # effects cancel), its variance from the within-set spread, Welch-Satterthwaite's dof
    Nx, Ny = float(nx.sum()), float(ny.sum())
    fx, fy = x[np.isfinite(x)], y[np.isfinite(y)]
    diff = float(fx.mean() - fy.mean()) if fx.size and fy.size else math.nan
    vx, vy = msw_x / Nx if Nx else math.nan, msw_y / Ny if Ny else math.nan
    dfx, dfy = Nx - kx, Ny - ky
    dof = (vx + vy) ** 2 / (vx**2 / dfx + vy**2 / dfy) if dfx >= 1 and dfy >= 1 else math.nan
    if not math.isfinite(dof) and dfx >= 1 and dfy >= 1:  # both within-set variances zero
        dof = dfx + dfy
    out.update(_given_draws(diff, vx + vy, dof))
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
    draws: np.ndarray | None = None  # (n,) each patient's parameter draw in every arm (-1: median)
    parameter_draws: ParameterDraws | None = None  # the K sets (None: posterior median, K = 0)
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
            "parameter_draws": int(spec.parameter_draws),
            "parameter_source": self.parameter_source,
            "parameter_draws_warning": self.draw_warning,
            "posterior_sha256": (
                self.parameter_draws.posterior
                if self.parameter_draws is not None
                else (posterior_hash() if shipped_posterior(load_parameters()) is not None else "")
            ),
        }
        if self.draws is not None and self.parameter_draws is not None:
            self._draw_variables(data, coords)
        return xr.Dataset(data, coords=coords, attrs=attrs)

    @property
    def parameter_source(self) -> str:
        """Where every patient's parameters came from, in words."""
        drawn = self.parameter_draws
        if drawn is None:
            if shipped_posterior(load_parameters()) is None:
                return (
                    "the parameter files' values (parameter_draws = 0, and no shipped posterior "
                    "applies to them): no parameter uncertainty"
                )
            return "posterior median (parameter_draws = 0: no parameter uncertainty)"
        k = len(drawn.sets)
        if drawn.source == "posterior":
            return (
                f"{k} parameter sets: the calibrated parameters as whole rows of the shipped "
                f"posterior (samples {drawn.posterior[:12]}), every other uncertain parameter from "
                "its prior interval; patient i (in every arm) under set i mod "
                f"{k}"
            )
        return (
            f"{k} parameter sets from the prior intervals (no shipped posterior applies to these "
            f"parameter values); patient i (in every arm) under set i mod {k}"
        )

    @property
    def draw_warning(self) -> str:
        """A warning when some parameter set has fewer than two patients per arm (``n_per_arm <
        2 K``): the within-set SD then rests on the few sets that have two (none when ``n <= K``:
        NaN), the decomposition is unreliable, and the interval over the sets holds the patients'
        spread as well; ``""`` otherwise."""
        k, n = self.spec.parameter_draws, self.spec.n_per_arm
        if k == 0 or n >= 2 * k:
            return ""
        state = (
            "not separated (NaN)"
            if n <= k
            else f"separated on only {n - min(n, k)} degrees of freedom (unreliable)"
        )
        return (
            f"{n} patients per arm under {k} parameter sets: some sets have fewer than two "
            f"patients, so the parameter and patient spread are {state} and the interval over "
            f"the sets also holds the patients' spread; use n_per_arm >= {2 * k} or "
            f"parameter_draws <= {n // 2}"
        )

    def _draw_variables(self, data: dict[str, Any], coords: dict[str, Any]) -> None:
        """The parameter-draw variables of :meth:`dataset` (K > 0)."""
        assert self.draws is not None and self.parameter_draws is not None
        spec = self.spec
        K = len(self.parameter_draws.sets)
        A, _, E = self.values.shape
        units = "units: endpoint_units"
        coords["draw"] = (
            "draw",
            np.arange(K),
            {"long_name": "Parameter draw (a parameter set of the trial)"},
        )
        data["parameter_draw"] = (
            ("patient",),
            self.draws,
            {
                "long_name": "Parameter draw each virtual patient ran under (the same in every "
                "arm): patient index mod parameter_draws",
            },
        )
        data["posterior_sample"] = (
            ("draw",),
            self.parameter_draws.samples,
            {"long_name": "Row of the shipped posterior's samples each draw took (-1: priors)"},
        )
        n_k = np.zeros((A, K, E))
        mean_k = np.full((A, K, E), np.nan)
        diff_k = np.full((A, K, E), np.nan)
        for a in range(A):
            for j in range(E):
                n_k[a, :, j], mean_k[a, :, j], _ = _draw_moments(
                    self.values[a, :, j], self.draws, K
                )
        c = spec.control
        for a in range(A):
            if a == c:
                continue
            for j in range(E):
                if spec.paired:
                    x, y = self.values[a, :, j], self.values[c, :, j]
                    ok = np.isfinite(x) & np.isfinite(y)
                    diff_k[a, :, j] = _draw_moments(np.where(ok, x - y, np.nan), self.draws, K)[1]
                else:
                    diff_k[a, :, j] = mean_k[a, :, j] - mean_k[c, :, j]
        data["draw_n"] = (
            ("arm", "draw", "endpoint"),
            n_k,
            {"long_name": "Virtual patients with a value per arm and parameter draw"},
        )
        data["draw_mean"] = (
            ("arm", "draw", "endpoint"),
            mean_k,
            {"long_name": f"Mean end point of the arm's patients under each draw ({units})"},
        )
        data["draw_difference"] = (
            ("arm", "draw", "endpoint"),
            diff_k,
            {
                "long_name": "Arm minus control per parameter draw: difference of the draw's "
                "means (parallel) or mean per-patient difference (split-face); NaN for the "
                f"control ({units})"
            },
        )
        described = {
            "epistemic_median": ("Median over the draws of the per-draw {what}", 1),
            "epistemic80_low": ("10th percentile over the draws of the per-draw {what}", 1),
            "epistemic80_high": ("90th percentile over the draws of the per-draw {what}", 1),
            "epistemic95_low": ("2.5th percentile over the draws of the per-draw {what}", 1),
            "epistemic95_high": ("97.5th percentile over the draws of the per-draw {what}", 1),
            "epistemic_sd": ("Between-draw (parameter, epistemic) SD of the {what}", 1),
            "aleatory_sd": ("Within-draw (patient, aleatory) SD of {one}", 1),
            "var_epistemic": ("Between-draw variance of the {what}, patient noise removed", 2),
            "var_aleatory": ("Within-draw variance of {one}", 2),
            "var_total": ("var_epistemic + var_aleatory: variance of {one}", 2),
            "epistemic_fraction": ("var_epistemic / var_total", 0),
            "draw_noise_fraction": ("Share of the variance of the per-draw {what} that is the "
                                    "patients' noise (near 1: the interval over the draws is "
                                    "mostly patient noise)", 0),
            "given_draws_ci95_low": ("Lower 95% confidence limit of the {what} given the "
                                     "parameter sets (within-set spread only)", 1),
            "given_draws_ci95_high": ("Upper 95% confidence limit of the {what} given the "
                                      "parameter sets (within-set spread only)", 1),
            "given_draws_p_t": ("Two-sided t test of the {what} against 0 given the parameter "
                                "sets (within-set spread only)", 0),
        }  # fmt: skip
        note = (
            "one-way random-effects ANOVA over the parameter draws (law of total variance), "
            "docs/trials.md"
        )
        percentiles = (
            "percentiles or count of the raw per-draw values (linear interpolation); they hold "
            "the patients' noise in each draw's value, docs/trials.md"
        )
        tables = (
            ("", self.summary, "means", "a patient's value"),
            ("difference_", self.comparisons, "differences", "a difference"),
        )
        rates = {
            f"responder_epistemic{lv}_{side}": (
                f"{pct} percentile over the draws of the per-draw responder rate; NaN without "
                "a responder rule",
                0,
            )
            for lv, lo, hi in EPISTEMIC_LEVELS
            for side, pct in (("low", f"{lo:g}th"), ("high", f"{hi:g}th"))
        }
        for prefix, df, what, one in tables:
            columns = {**described, **(rates if not prefix else {})}
            for col, (text, power) in columns.items():
                arr = np.full((A, E), np.nan)
                if len(df) and col in df.columns:
                    for r in df.to_dict("records"):
                        a = [x.name for x in spec.arms].index(r["arm"])
                        j = [e.name for e in spec.endpoints].index(r["endpoint"])
                        arr[a, j] = r[col]
                u = {0: "dimensionless", 1: units, 2: "units: endpoint_units squared"}[power]
                long = text.format(what=what, one=one)
                if prefix:
                    long = f"Arm vs control: {long}; NaN for the control"
                anova = col in _ANOVA_COLUMNS
                data[f"{prefix}{col}"] = (
                    ("arm", "endpoint"),
                    arr,
                    {"long_name": f"{long} ({u})", "estimator": note if anova else percentiles},
                )


_ANOVA_COLUMNS = frozenset(
    {"epistemic_sd", "aleatory_sd", "var_epistemic", "var_aleatory", "var_total",
     "epistemic_fraction", "draw_noise_fraction", "given_draws_ci95_low",
     "given_draws_ci95_high", "given_draws_p_t"}
)  # fmt: skip
"""The variables of :meth:`TrialResult.dataset` that the random-effects ANOVA estimates (the
others are percentiles or counts of the per-draw values)."""


def _tables(
    spec: TrialSpec, values: np.ndarray, draws: np.ndarray | None = None
) -> tuple[Any, Any]:
    """``summary`` and ``comparisons`` tables; with parameter draws (``draws``, K > 0) each row
    also carries :func:`variance_components` / :func:`difference_components`."""
    import pandas as pd

    K = spec.parameter_draws if draws is not None else 0
    d = draws if draws is not None else np.zeros(0, dtype=np.int64)
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
                    **(variance_components(values[a, :, j], d, K) if K else {}),
                    **(responder_spread(values[a, :, j], d, K, e) if K and e.rule else {}),
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
                    **(
                        difference_components(values[a, :, j], values[c, :, j], d, K, spec.paired)
                        if K
                        else {}
                    ),
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
    K = spec.parameter_draws
    if isinstance(K, bool) or not isinstance(K, int) or not 0 <= K <= MAX_PARAMETER_DRAWS:
        raise InputError("parameter_draws", K, f"an integer from 0 to {MAX_PARAMETER_DRAWS}")
    check_endpoints_apply(spec)  # before any chunk: refuse an end point without values
    in_process = workers == 0 and scheduler is None
    tasks, fingerprint = trial_chunks(spec, chunk, parallel=in_process)
    digest = tasks[0].parameters if tasks else ""
    A, n, E = len(spec.arms), spec.n_per_arm, len(spec.endpoints)
    t0 = time.perf_counter()
    store: ChunkStore | None = None
    mem: dict[int, ChunkResult] = {}
    if resume_dir is not None:
        store = ChunkStore(Path(resume_dir), fingerprint)

    def keep(i: int, r: ChunkResult) -> None:
        check_parameters(i, r, digest)  # before it is kept: a resume must not reuse it
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
    draws = np.full(n, -1, dtype=np.int64)
    for i in range(len(tasks)):
        r = store.load(i) if store is not None else mem.pop(i)
        check_parameters(i, r, digest)  # also the chunks another process stored (the service)
        sl = slice(r.start, r.stop)
        if r.draws is not None:
            draws[sl] = r.draws
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
    sampled = n * (1 if spec.paired else A)
    rates = {k: v / (v + sampled) for k, v in rejected.items()}
    summary, comps = _tables(spec, values, draws if K else None)
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
        draws=draws if K else None,
        parameter_draws=trial_parameter_draws(spec.seed, K) if K else None,
        wall_s=time.perf_counter() - t0,
        map_s=t_map,
        workers=workers,
    )
    return res

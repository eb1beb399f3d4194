"""What to calibrate: sensitivity of the calibration rows to every uncertain input.

1. **Morris** elementary effects (SALib, Campolongo's optimised trajectories) of every interval
   parameter of the simulated stages and every nuisance setting (a study's unreported setting with
   a range) on every calibration row's prediction. Effects are divided by the row's noise
   ``sigma_i = sqrt(se_i^2 + (tau_prior s_i)^2)``, the scale on which the likelihood sees the row;
   ``morris_keep`` parameters go on, every row's most influential ones first (ordered by the best
   rank a factor reaches on any row, then by its largest ``mu*/sigma``), so that a family of rows
   moved by its own parameters is not crowded out by rows with larger effects.
2. **Sobol** first-order and total indices (SALib, Saltelli design with ``N >= 512`` base samples,
   Jansen estimators) of the Morris survivors (``morris_keep`` parameters and
   ``morris_keep_nuisances`` nuisance settings); the rest are held at their prior modes.
3. **Selection**: a parameter is calibrated when, for some row, the prediction variance it accounts
   for (``ST_ij Var_i``) is at least ``select_ratio`` times the row's noise variance — the data can
   then move it; at most ``select_max``, largest first. Everything else stays at its prior (and the
   ensemble samples it there); nuisance settings are never "selected": each is a nuisance parameter
   of its study.
4. **Identifiability** of the selected set before sampling: the Jacobian at the prior mode
   (central differences of +-0.5 prior SD, in noise units) gives Brun's collinearity index and a
   linearised posterior (prior precision 1 in each coordinate): posterior/prior SD ratio and
   correlations. The sampled posterior's own correlations and SD ratios are in the posterior
   summary.

Inputs are sampled on the central ``prior_coverage`` of each prior (normal scores). Runs go through
:func:`microneedling.engine.executor.map_chunks` in chunks of parameter vectors (one batched solve
each), kept in a :class:`~microneedling.engine.executor.ChunkStore`: an interrupted screening
resumes. The result is written to ``screening.toml`` (and shipped in ``data/calibration``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from microneedling.engine.executor import ChunkStore, map_chunks
from microneedling.io import atomic_path, data_path, dumps_toml, read_toml
from microneedling.parameters.parameter_set import ParameterSet
from microneedling.studies.credibility.calibrate import (
    CalibrationConfig,
    Problem,
    build_problem,
    load_config,
    parallel_evaluation,
    tomlable,
)
from microneedling.studies.credibility.likelihood import RowSpec

__all__ = [
    "SCREENING",
    "identifiability",
    "load_screening",
    "row_noise",
    "run_screening",
    "select",
    "stand_in_spread",
    "write_screening",
]

SCREENING = "screening.toml"


def row_noise(spec: RowSpec, tau: float) -> float:
    """The row's noise on the prediction scale: ``sqrt(se^2 + (tau s)^2)``; for counts the binomial
    SD of the observed proportion (kept off 0 and 1 by half a patient) with tau on its logit
    (delta method)."""
    if spec.kind == "binomial":
        p = min(max(spec.k / spec.n, 0.5 / spec.n), 1.0 - 0.5 / spec.n)
        v = p * (1 - p)
        return math.sqrt(v / spec.n + (tau * v) ** 2)
    if spec.kind == "ordinal":
        return math.sqrt((spec.se**2) / max(spec.n, 1) + (tau * spec.scale) ** 2)
    return math.sqrt(spec.se**2 + (tau * spec.scale) ** 2)


def _eval_chunk(item: tuple[Problem, np.ndarray]) -> np.ndarray:
    problem, x = item
    return problem.predict(x)


def _run(
    problem: Problem,
    x: np.ndarray,
    chunk: int,
    store_dir: Path | None,
    fingerprint: str,
    label: str,
    progress: bool,
) -> np.ndarray:
    items = [(problem, x[i : i + chunk]) for i in range(0, len(x), chunk)]
    store = ChunkStore(store_dir, fingerprint) if store_dir is not None else None
    done = {i for i in store.done() if i < len(items)} if store is not None else set()
    results = map_chunks(
        _eval_chunk,
        items,
        progress=progress,
        label=label,
        skip=done,
        on_result=store.save if store is not None else None,
        rate=lambda r: float(len(r)),
        rate_unit="runs",
    )
    for i in done:
        assert store is not None
        results[i] = store.load(i)
    return np.concatenate([r for r in results if r is not None])


def _x_full(problem: Problem, cols: list[int], lat: np.ndarray) -> np.ndarray:
    """Latent design columns ``cols`` filled in; the rest at their prior modes (z = u = 0), tau at
    its prior scale (unused by predictions)."""
    x = np.zeros((len(lat), problem.ndim))
    x[:, problem.P : problem.P + problem.Q] = np.log(problem.group_prior_scale)[None, :]
    x[:, cols] = lat
    return x


def _fair_order(mu: np.ndarray, index: range) -> list[int]:
    """Factors ordered so that every row's most influential factors come first: by the best rank a
    factor reaches on any row (rows ranked by mu*/noise), then by its largest mu*/noise. A row the
    factors do not move does not rank them."""
    if mu.size == 0:
        return list(index)
    moved = np.max(mu, axis=0) > 0
    ranks = np.argsort(np.argsort(-mu[:, moved], axis=0), axis=0)
    best = ranks.min(axis=1) if moved.any() else np.zeros(len(mu), dtype=int)
    order = sorted(range(len(mu)), key=lambda k: (best[k], -float(np.max(mu[k]))))
    return [index[k] for k in order if np.max(mu[k]) > 0] + [
        index[k] for k in order if not np.max(mu[k]) > 0
    ]


def _impute(y: np.ndarray) -> tuple[np.ndarray, int]:
    """Non-finite predictions replaced by the row's median (counted and reported)."""
    bad = ~np.isfinite(y)
    if not np.any(bad):
        return y, 0
    y = y.copy()
    med = np.nanmedian(np.where(bad, np.nan, y), axis=0)
    med = np.where(np.isfinite(med), med, 0.0)
    y[bad] = np.broadcast_to(med, y.shape)[bad]
    return y, int(np.sum(np.any(bad, axis=1)))


def select(
    names: list[str],
    st: np.ndarray,
    var: np.ndarray,
    noise: np.ndarray,
    ratio: float,
    limit: int,
) -> tuple[list[str], dict[str, float]]:
    """Factors whose largest ``ST_ij Var_i / noise_i^2`` over rows is >= ``ratio``, largest first,
    at most ``limit``; also every factor's largest ratio (information ratio)."""
    info = np.nan_to_num(np.clip(st, 0, None)) * var[None, :] / (noise[None, :] ** 2)
    best = np.max(info, axis=1) if info.size else np.zeros(len(names))
    order = np.argsort(-best)
    chosen = [names[i] for i in order if best[i] >= ratio][:limit]
    return chosen, {n: float(b) for n, b in zip(names, best, strict=True)}


def identifiability(
    problem: Problem, labels: list[str], noise: np.ndarray, h: float = 0.5
) -> dict[str, Any]:
    """Linearised identifiability of the factors ``labels`` at the prior mode.

    ``J_ij = (f_i(z_j + h) - f_i(z_j - h)) / (2 h noise_i)``; collinearity index
    ``1 / sqrt(min eig(Jn^T Jn))`` of the column-normalised ``Jn`` (Brun et al. 2001: above about
    10-15 the set is not jointly identifiable); linearised posterior covariance
    ``(J^T J + I)^-1`` (prior SD 1 per coordinate): SD ratio and correlations.
    """
    cols = [problem.labels.index(lab) for lab in labels]
    if not cols:
        return {"collinearity_index": 0.0, "factors": [], "correlations": []}
    x0 = _x_full(problem, [], np.zeros((1, 0)))
    xs = [x0]
    for c in cols:
        for sgn in (1.0, -1.0):
            x = x0.copy()
            x[0, c] += sgn * h
            xs.append(x)
    y = problem.predict(np.vstack(xs))
    J = (
        np.stack([(y[1 + 2 * k] - y[2 + 2 * k]) / (2 * h) for k in range(len(cols))], axis=1)
        / noise[:, None]
    )
    J = np.nan_to_num(J)
    norms = np.linalg.norm(J, axis=0)
    Jn = J / np.where(norms > 0, norms, 1.0)
    ev = np.linalg.eigvalsh(Jn.T @ Jn)
    gamma = 1.0 / math.sqrt(max(float(ev[0]), 1e-300))
    cov = np.linalg.inv(J.T @ J + np.eye(len(cols)))
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    pairs = sorted(
        (
            (labels[i], labels[j], float(corr[i, j]))
            for i in range(len(cols))
            for j in range(i + 1, len(cols))
        ),
        key=lambda t: -abs(t[2]),
    )[:10]
    return {
        "collinearity_index": float(f"{min(gamma, 1e12):.4g}"),
        "factors": [
            {
                "label": lab,
                "sensitivity_norm": float(f"{n:.4g}"),
                "linearised_posterior_prior_sd": float(f"{s:.4g}"),
            }
            for lab, n, s in zip(labels, norms, sd, strict=True)
        ],
        "correlations": [{"a": a, "b": b, "r": float(f"{r:.4g}")} for a, b, r in pairs],
        "method": "Jacobian at the prior mode, central differences of +-0.5 prior SD in noise "
        "units; collinearity index of Brun, Reichert & Kuensch (2001); linearised posterior "
        "covariance (J^T J + I)^-1",
    }


def stand_in_spread(
    problem: Problem, labels: list[str], seed: int, n: int = 64
) -> dict[str, float]:
    """SD of each row's prediction over the ranges of the nuisance settings ``labels`` (the others
    and every parameter at their prior modes), from ``n`` scrambled-Sobol draws: the stand-in
    uncertainty of settings that are not sampled. Rows they do not touch are left out."""
    from scipy.special import ndtri
    from scipy.stats import qmc

    if not labels:
        return {}
    cols = [problem.labels.index(lab) for lab in labels]
    q = qmc.Sobol(len(cols), scramble=True, seed=seed).random(n)
    y = problem.predict(_x_full(problem, cols, ndtri(np.clip(q, 1e-6, 1 - 1e-6))))
    touched = {r for lab in labels for nu in problem.nuisances if nu.label == lab for r in nu.rows}
    out = {}
    for i, spec in enumerate(problem.likelihood.specs):
        if spec.key in touched:
            sd = float(np.nanstd(y[:, i], ddof=1))
            out[spec.key] = sd if math.isfinite(sd) else 0.0
    return out


def run_screening(
    *,
    config: CalibrationConfig | None = None,
    parameters: ParameterSet | None = None,
    store_dir: Path | None = None,
    progress: bool = False,
    workers: int = 1,
) -> dict[str, Any]:
    """Morris, Sobol, selection and identifiability on the calibration rows (see the module doc).

    Returns plain data (what ``screening.toml`` holds): what was run, per-row noise and prediction
    variance, Morris and Sobol indices, the selection and the identifiability check. ``workers``
    processes evaluate the parameter vectors (:func:`parallel_evaluation`; the same numbers).
    """
    config = config or load_config()
    problem = build_problem(None, config=config, parameters=parameters)
    with parallel_evaluation(problem, workers):
        return _screen(problem, config, store_dir, progress)


def _screen(
    problem: Problem, config: CalibrationConfig, store_dir: Path | None, progress: bool
) -> dict[str, Any]:
    from SALib.analyze import morris as morris_analyze
    from SALib.analyze import sobol as sobol_analyze
    from SALib.sample import morris as morris_sample
    from SALib.sample import sobol as sobol_sample
    from scipy.special import ndtri

    sc = config.screening
    t0 = time.perf_counter()
    specs = problem.likelihood.specs
    keys = [s.key for s in specs]
    noise = np.array(
        [row_noise(s, float(problem.group_prior_scale[s.group])) for s in specs], dtype=float
    )
    P, Q, M = problem.P, problem.Q, problem.M
    par_cols = list(range(P))
    nu_cols = list(range(P + Q, P + Q + M))
    all_cols = par_cols + nu_cols
    names = [problem.labels[c] for c in all_cols]
    lo_q = (1.0 - sc.prior_coverage) / 2.0
    fp = f"{problem.fingerprint()}-{config.fingerprint()}"

    # ---------------------------------------------------------------------- Morris
    mdef = {"num_vars": len(all_cols), "names": names, "bounds": [[lo_q, 1 - lo_q]] * len(all_cols)}
    Xm = morris_sample.sample(
        mdef,
        N=sc.morris_candidates,
        num_levels=sc.morris_levels,
        optimal_trajectories=min(sc.morris_trajectories, sc.morris_candidates),
        seed=sc.seed,
    )
    Ym = _run(
        problem,
        _x_full(problem, all_cols, ndtri(Xm)),
        sc.chunk,
        None if store_dir is None else Path(store_dir) / "morris",
        f"morris-{fp}",
        "Morris screening",
        progress,
    )
    Ym, failed_m = _impute(Ym)
    mu = np.zeros((len(all_cols), len(keys)))
    for i in range(len(keys)):
        if np.ptp(Ym[:, i]) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = morris_analyze.analyze(mdef, Xm, Ym[:, i], num_levels=sc.morris_levels)
        mu[:, i] = np.asarray(res["mu_star"], dtype=float) / noise[i]
    mu_best = np.max(mu, axis=1) if keys else np.zeros(len(all_cols))
    par_order = _fair_order(mu[:P], range(P))
    kept = sorted(par_order[: sc.morris_keep])
    nu_order = _fair_order(mu[P:], range(P, P + M))
    kept_nu = sorted(nu_order[: sc.morris_keep_nuisances])
    sob_cols = kept + kept_nu  # positions in all_cols
    sob_names = [names[k] for k in sob_cols]

    # ----------------------------------------------------------------------- Sobol
    sdef = {
        "num_vars": len(sob_cols),
        "names": sob_names,
        "bounds": [[lo_q, 1 - lo_q]] * len(sob_cols),
    }
    Xs = sobol_sample.sample(sdef, sc.sobol_n_base, calc_second_order=False, seed=sc.seed)
    Ys = _run(
        problem,
        _x_full(problem, [all_cols[k] for k in sob_cols], ndtri(Xs)),
        sc.chunk,
        None if store_dir is None else Path(store_dir) / "sobol",
        f"sobol-{fp}",
        "Sobol indices",
        progress,
    )
    Ys, failed_s = _impute(Ys)
    K = len(sob_cols)
    S1 = np.full((K, len(keys)), np.nan)
    ST = np.full((K, len(keys)), np.nan)
    STc = np.full((K, len(keys)), np.nan)
    var = np.var(Ys, axis=0) if len(Ys) else np.zeros(len(keys))
    for i in range(len(keys)):
        if var[i] <= 0:
            S1[:, i] = ST[:, i] = STc[:, i] = 0.0
            continue
        with warnings.catch_warnings():  # SALib warns on rows some factors do not move
            warnings.simplefilter("ignore")
            res = sobol_analyze.analyze(sdef, Ys[:, i], calc_second_order=False, seed=sc.seed)
        S1[:, i], ST[:, i], STc[:, i] = res["S1"], res["ST"], res["ST_conf"]
    par_in_sobol = [j for j, k in enumerate(sob_cols) if k < P]
    selected, info = select(
        [sob_names[j] for j in par_in_sobol],
        ST[par_in_sobol],
        var,
        noise,
        sc.select_ratio,
        sc.select_max,
    )
    nu_in_sobol = [j for j, k in enumerate(sob_cols) if k >= P]
    sampled_nu, nu_info = select(
        [sob_names[j] for j in nu_in_sobol],
        ST[nu_in_sobol],
        var,
        noise,
        sc.select_ratio,
        len(nu_in_sobol),
    )
    info.update(nu_info)
    fixed_nu = [names[k] for k in range(P, P + M) if names[k] not in sampled_nu]
    stand_in = stand_in_spread(problem, fixed_nu, sc.seed)
    ident = identifiability(problem, selected, noise)
    out: dict[str, Any] = {
        "method": "Morris elementary effects (SALib, optimised trajectories) on every interval "
        "parameter and nuisance setting, in units of each row's noise; Sobol first-order and "
        "total indices (SALib, Saltelli design, no second order) on the Morris survivors and the "
        "nuisance settings; selection by information ratio ST_ij Var_i / noise_i^2",
        "fingerprint": fp,
        "parameter_set_hash": problem.base.hash,
        "rows": [
            {
                "key": k,
                "noise": float(f"{n:.6g}"),
                "prediction_sd": float(f"{math.sqrt(v):.6g}"),
            }
            for k, n, v in zip(keys, noise, var, strict=True)
        ],
        "n_factors": len(all_cols),
        "n_parameters": P,
        "n_nuisances": M,
        "morris": {
            "trajectories": min(sc.morris_trajectories, sc.morris_candidates),
            "levels": sc.morris_levels,
            "runs": len(Xm),
            "failed_runs": failed_m,
            "top": [
                {"factor": names[k], "mu_star_over_noise": float(f"{mu_best[k]:.4g}")}
                for k in sorted(range(len(all_cols)), key=lambda k: -mu_best[k])[:40]
            ],
            "kept": [names[k] for k in kept],
            "kept_nuisances": [names[k] for k in kept_nu],
        },
        "sobol": {
            "n_base": sc.sobol_n_base,
            "runs": len(Xs),
            "failed_runs": failed_s,
            "factors": [
                {
                    "factor": sob_names[j],
                    "ST": [float(f"{v:.4g}") for v in np.nan_to_num(ST[j])],
                    "ST_conf": [float(f"{v:.4g}") for v in np.nan_to_num(STc[j])],
                    "S1": [float(f"{v:.4g}") for v in np.nan_to_num(S1[j])],
                    "information_ratio": float(f"{info.get(sob_names[j], 0.0):.4g}"),
                }
                for j in range(K)
            ],
        },
        "selection": {
            "rule": f"max over rows of ST_ij Var_i / noise_i^2 >= {sc.select_ratio}, at most "
            f"{sc.select_max}",
            "selected": selected,
            "at_prior": [n for n in names[:P] if n not in selected],
        },
        "selected": selected,
        "nuisances": {
            "rule": "a study's unreported setting is sampled as a nuisance parameter when its "
            "information ratio passes the same rule; the others stay at their stand-in values "
            "and their spread (SD of the prediction over their ranges, parameters at the prior "
            "modes, 64 quasi-random draws) is added to the row's noise",
            "sampled": sampled_nu,
            "fixed": fixed_nu,
            "stand_in_sd": {k: float(f"{v:.6g}") for k, v in stand_in.items()},
        },
        "identifiability": ident,
        "n_runs": int(len(Xm) + len(Xs)),
        "seconds": round(time.perf_counter() - t0, 1),
        "settings": sc.model_dump(),
    }
    out["version"] = (
        "screening-"
        + hashlib.sha256(
            json.dumps(
                {k: v for k, v in out.items() if k != "seconds"}, sort_keys=True, default=str
            ).encode()
        ).hexdigest()[:12]
    )
    return out


_HEADER = (
    "# Sensitivity screening of the calibration rows, written by `microneedling calibrate`\n"
    "# (microneedling.studies.credibility.screening): what was run, Morris and Sobol indices, the\n"
    "# parameters selected for calibration (the rest stay at their priors) and an identifiability\n"
    "# check of the selection.\n"
)


def write_screening(result: dict[str, Any], directory: Path) -> Path:
    """Write ``screening.toml`` into ``directory`` (atomically)."""
    path = Path(directory) / SCREENING
    with atomic_path(path) as tmp:
        tmp.write_text(_HEADER + dumps_toml(tomlable(result)), encoding="utf-8")
    return path


def load_screening(path: Path | None = None) -> dict[str, Any]:
    """A screening result (default: the shipped ``data/calibration/screening.toml``)."""
    return read_toml(path or data_path("calibration", SCREENING))

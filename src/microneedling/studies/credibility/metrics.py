"""Validation metrics for probabilistic predictions: coverage with study-clustered confidence
intervals, PIT, CRPS and interval score (``scoringrules``), sharpness, the ASME V&V 20 comparison,
variance components and Pareto-smoothed importance weights.

* **Coverage** of a central interval: the fraction of rows whose observation lies inside; its
  confidence interval resamples *studies* (cluster bootstrap, percentile interval), because rows
  of one study share its population, protocol and raters. The Wilson interval (rows independent)
  is given beside it, and the Monte Carlo standard error of each interval end from the draws.
* **PIT** ``F(y)`` of the predictive at the observation (Gneiting, Balabdaoui & Raftery 2007):
  uniform for a calibrated forecaster; U-shaped = overconfident or biased. Checked with a
  Kolmogorov–Smirnov test against U(0, 1).
* **CRPS** and the **interval score** (Gneiting & Raftery 2007), strictly proper: they reward
  calibration and sharpness together. Computed by ``scoringrules`` from the predictive draws.
* **V&V 20**: comparison error ``E = S - D`` and validation uncertainty
  ``u_val = sqrt(u_num^2 + u_input^2 + u_D^2)`` (ASME V&V 20-2009).
* **Variance components** of a (parameter draw x patient) array by the law of total variance:
  epistemic (between draws of the parameters) and aleatory (between patients).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import arviz as az
import numpy as np
import scoringrules as sr

__all__ = [
    "BOUNDED_RATIO_SPREAD",
    "clustered_rate",
    "crps",
    "inside_interval",
    "interval_score",
    "ks_uniform",
    "pit_consistent",
    "psis_weights",
    "quantile_mcse",
    "variance_components",
    "vv20",
    "weighted_quantile",
    "wilson",
]

Z975 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z975) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k/n`` (rows independent)."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1.0 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, c - h), min(1.0, c + h))


def clustered_rate(
    hits: Sequence[bool] | np.ndarray,
    clusters: Sequence[str],
    *,
    replicates: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """The hit rate and its cluster-bootstrap percentile interval: studies are resampled with
    replacement, all rows of a drawn study kept (rows of one study are not independent)."""
    h = np.asarray(hits, dtype=float)
    c = np.asarray(list(clusters))
    n = len(h)
    out: dict[str, Any] = {"n": n, "hits": int(h.sum()), "clusters": len(set(c.tolist()))}
    if n == 0:
        return {
            **out,
            "rate": math.nan,
            "low": math.nan,
            "high": math.nan,
            "wilson": [math.nan] * 2,
        }
    out["rate"] = float(h.mean())
    out["wilson"] = list(wilson(int(h.sum()), n))
    names = sorted(set(c.tolist()))
    sums = np.array([h[c == s].sum() for s in names])
    counts = np.array([(c == s).sum() for s in names])
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(names), size=(replicates, len(names)))
    rates = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    a = (1 - level) / 2
    out["low"], out["high"] = (float(v) for v in np.quantile(rates, [a, 1 - a]))
    return out


def crps(observed: float, draws: np.ndarray) -> float:
    """Continuous ranked probability score of the ensemble ``draws`` at ``observed``
    (``scoringrules.crps_ensemble``, quantile-decomposition estimator); non-finite draws dropped."""
    d = np.asarray(draws, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0 or not math.isfinite(observed):
        return math.nan
    return float(sr.crps_ensemble(np.asarray(observed, dtype=float), d))


def interval_score(observed: float, low: float, high: float, alpha: float) -> float:
    """Interval score of the central ``1 - alpha`` interval ``[low, high]``
    (``scoringrules.interval_score``): width plus ``2/alpha`` times the miss distance."""
    if not all(math.isfinite(v) for v in (observed, low, high)):
        return math.nan
    return float(sr.interval_score(np.asarray(observed), np.asarray(low), np.asarray(high), alpha))


def ks_uniform(pit: Sequence[float]) -> dict[str, float]:
    """Kolmogorov–Smirnov test of PIT values against U(0, 1) (statistic and p value)."""
    from scipy.stats import kstest

    p = np.asarray([v for v in pit if math.isfinite(v)], dtype=float)
    if p.size == 0:
        return {"n": 0, "statistic": math.nan, "p_value": math.nan}
    res = kstest(p, "uniform")
    return {"n": int(p.size), "statistic": float(res.statistic), "p_value": float(res.pvalue)}


def vv20(e: float, u_num: float, u_input: float, u_d: float) -> dict[str, float]:
    """ASME V&V 20 comparison: ``E``, the three uncertainties, ``u_val`` and ``|E|/u_val``."""
    u_val = math.sqrt(u_num**2 + u_input**2 + u_d**2)
    return {
        "E": e,
        "u_num": u_num,
        "u_input": u_input,
        "u_D": u_d,
        "u_val": u_val,
        "E_over_u_val": abs(e) / u_val if u_val > 0 else math.inf if e else 0.0,
    }


def quantile_mcse(draws: np.ndarray, q: float) -> float:
    """Monte Carlo standard error of the ``q`` quantile of ``draws`` (order-statistic interval,
    half-width of the 68% binomial band of ranks)."""
    d = np.sort(np.asarray(draws, dtype=float)[np.isfinite(draws)])
    n = d.size
    if n < 2:
        return math.nan
    s = math.sqrt(n * q * (1 - q))
    lo = int(max(0, math.floor(n * q - s)))
    hi = int(min(n - 1, math.ceil(n * q + s)))
    return float((d[hi] - d[lo]) / 2.0)


def variance_components(values: np.ndarray) -> dict[str, float]:
    """Law of total variance of ``values`` (draws, patients): epistemic = variance over parameter
    draws of the cohort mean; aleatory = mean over draws of the between-patient variance."""
    v = np.asarray(values, dtype=float)
    means = np.nanmean(v, axis=1)
    within = np.nanvar(v, axis=1, ddof=1)
    epi = float(np.nanvar(means, ddof=1)) if v.shape[0] > 1 else 0.0
    ale = float(np.nanmean(within))
    return {
        "epistemic_sd": math.sqrt(max(epi, 0.0)),
        "aleatory_sd": math.sqrt(max(ale, 0.0)),
        "total_sd": math.sqrt(max(epi + ale, 0.0)),
        "epistemic_fraction": epi / (epi + ale) if epi + ale > 0 else 0.0,
    }


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Quantiles of ``x`` under normalised weights ``w`` (inverse of the weighted empirical CDF at
    mid-points); NaN when no point has a finite value and a positive weight."""
    x = np.asarray(x, dtype=float)
    w = np.asarray(w, dtype=float)
    ok = np.isfinite(x) & np.isfinite(w) & (w > 0)
    x, w = x[ok], w[ok]
    if x.size == 0:
        return np.full(len(q), np.nan)
    order = np.argsort(x)
    x, w = x[order], w[order] / w.sum()
    c = np.cumsum(w) - 0.5 * w
    out: np.ndarray = np.interp(np.asarray(q, dtype=float), c, x)
    return out


BOUNDED_RATIO_SPREAD = 0.01
"""Largest spread of the log importance ratios (max - min) read as bounded (every ratio within 1 %
of the others): importance sampling then moves an average by at most 1 % and needs no tail fit."""


def psis_weights(log_ratios: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed importance weights (ArviZ ``psislw``; Vehtari et al. 2017), normalised, and
    the Pareto shape ``k`` (above 0.7 the weights are unreliable: report, do not trust).

    Ratios bounded within ``BOUNDED_RATIO_SPREAD`` of each other (a study whose likelihood is all
    but the same under every draw: rows that no calibrated parameter moves, or sign rows that every
    draw satisfies, e.g. a log-likelihood between -6e-5 and -1e-308) give the raw importance
    weights and ``k`` = 0: a bounded ratio has every moment finite, so its Pareto shape is at most
    0, and a generalized Pareto fit to a tail that spans 1e-4 of a log unit is noise (it gave k =
    4.9 for such a study; Vehtari et al. 2024, JMLR 25:72, read k as the number of finite
    moments). Where the smoothing itself gives weights that are not finite, the raw importance
    weights are returned too."""
    lr = np.asarray(log_ratios, dtype=float)
    finite = lr[np.isfinite(lr)]
    if finite.size == lr.size and (finite.size == 0 or np.ptp(finite) <= BOUNDED_RATIO_SPREAD):
        w0 = np.exp(lr - np.max(lr)) if lr.size else lr
        return w0 / max(float(np.sum(w0)), 1e-300), 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        lw, k = az.psislw(lr)
    w = np.exp(lw - np.max(lw))
    if not np.all(np.isfinite(w)):
        w = np.exp(lr - np.max(lr))
    return w / w.sum(), float(np.asarray(k))


# ------------------------------------------------------------- inside a central interval
def inside_interval(kind: str, level: float, pit: float, obs: float, lo: float, hi: float) -> bool:
    """Whether the observation lies in the central ``level``% predictive interval: by the mid-p PIT
    for counts; for a bound, whether the interval reaches it (the bound is consistent)."""
    if kind in ("binomial", "ordinal"):
        return pit_consistent(kind, pit, level)
    if kind == "upper":
        return bool(lo <= obs)
    if kind == "lower":
        return bool(hi >= obs)
    return bool(lo <= obs <= hi)


def pit_consistent(kind: str, pit: float, level: float = 80.0) -> bool:
    """Whether an observation with probability integral transform ``pit`` lies inside the central
    ``level``% predictive interval: a two-sided row (or a count) when ``pit`` is within
    [(1 - l)/2, (1 + l)/2]; an upper bound when at least (1 - l)/2 of the predictive is below it
    (``pit >= (1 - l)/2``), a lower bound when at least that much is above it. A bound that the
    whole predictive satisfies (PIT 1 for an upper bound) is consistent, not a miss (as
    :func:`inside_interval` treats the bounds of the validation rows)."""
    if not math.isfinite(pit):
        return False
    lo, hi = (1.0 - level / 100.0) / 2.0, (1.0 + level / 100.0) / 2.0
    if kind == "upper":
        return bool(pit >= lo)
    if kind == "lower":
        return bool(pit <= hi)
    return bool(lo <= pit <= hi)

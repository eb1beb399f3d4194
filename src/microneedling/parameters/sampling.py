"""Parameter uncertainty: draws from the prior intervals and from the shipped calibration posterior.

Every parameter with a plausible interval (``low``/``high`` in its file, read as 5th/95th
percentiles) is sampled from a split normal, in log space when positive. Parameters the shipped
calibration (``data/calibration/current.toml``) fitted are drawn jointly from its posterior. The
calibration study (:mod:`microneedling.studies.credibility.calibrate`) writes that file; this module
only reads it.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from microneedling.io import data_path, read_toml
from microneedling.parameters.parameter_set import ParameterSet

__all__ = [
    "CURRENT",
    "calibration_dir",
    "load_calibration",
    "sample_parameter_sets",
    "shipped_calibration",
    "shipped_posterior",
    "split_normal_value",
]

CURRENT = "current.toml"


def calibration_dir() -> Path:
    """``src/microneedling/data/calibration`` (protocols, versioned calibrations)."""
    return data_path("calibration")


def load_calibration(path: Path | None = None) -> dict[str, Any]:
    """A stored calibration (default: the shipped ``current.toml``)."""
    return read_toml(path or calibration_dir() / CURRENT)


@lru_cache(maxsize=1)
def shipped_calibration() -> dict[str, Any] | None:
    """The shipped calibration (``current.toml``), read once; ``None`` if there is none. A writer
    of that file calls ``shipped_calibration.cache_clear()``."""
    p = calibration_dir() / CURRENT
    return load_calibration(p) if p.exists() else None


def shipped_posterior(
    ps: ParameterSet,
) -> tuple[list[tuple[str, ...]], np.ndarray, np.ndarray] | None:
    """(members per coordinate, mean log, covariance log) of the shipped calibration, if ``ps``
    still holds its values (an edited set gets ``None``: its intervals are sampled independently)."""
    cal = shipped_calibration()
    if cal is None:
        return None
    members = [tuple(p["members"]) for p in cal["parameters"]]
    mean = np.array([float(p["mean_log"]) for p in cal["parameters"]])
    for m, mu in zip(members, mean, strict=True):
        for name in m:
            if name not in ps.parameters:
                return None
            v = ps.parameters[name].value
            if not isinstance(v, float) or not math.isclose(v, math.exp(mu), rel_tol=1e-5):
                return None
    return members, mean, np.asarray(cal["covariance_log"], dtype=float)


# ----------------------------------------------------------------------- uncertainty
def sample_parameter_sets(ps: ParameterSet, draws: int, seed: int) -> list[ParameterSet]:
    """``draws`` parameter sets sampled from each parameter's plausible interval.

    ``low``/``high`` are read as 5th/95th percentiles of a split normal — in log space when both are
    positive. Keyed parameters are sampled with one common z per parameter (entries move together).

    Calibrated parameters that still hold the shipped calibration's posterior mean
    (``data/calibration/current.toml``, :func:`shipped_posterior`) are drawn
    jointly from its log-normal posterior (mean and covariance in log space), tied members (e.g.
    ``healing.k_1`` and ``healing.k_3``) with one common value. Their marginals equal the
    ``low``/``high`` written by the calibration, so the joint draw only adds the correlations.

    Each parameter has its own random stream, seeded by ``(seed, crc32(name))``: a parameter's draws
    do not change when other parameters are added to or removed from the set, and the first k draws
    are the same for any ``draws >= k``.
    """
    names = [n for n in ps.names() if ps.parameters[n].low is not None]
    z = np.empty((draws, len(names)))
    for j, n in enumerate(names):
        ss = np.random.SeedSequence([int(seed) % 2**63, zlib.crc32(n.encode())])
        z[:, j] = np.random.default_rng(ss).standard_normal(draws)
    joint: dict[str, np.ndarray] = {}
    post = shipped_posterior(ps) if draws > 0 else None
    if post is not None:
        members, mean, cov = post
        if all(m[0] in names for m in members):
            cols = [names.index(m[0]) for m in members]
            x = mean[None, :] + z[:, cols] @ np.linalg.cholesky(cov).T  # (draws, P) log values
            for i, m in enumerate(members):
                for name in m:
                    joint[name] = np.exp(x[:, i])
    out = []
    for d in range(draws):
        values: dict[str, Any] = {}
        for j, n in enumerate(names):
            p = ps.parameters[n]
            if n in joint:
                values[n] = float(joint[n][d])
            elif isinstance(p.value, dict):
                values[n] = {
                    k: split_normal_value(v, p.low[k], p.high[k], z[d, j])  # type: ignore[index]
                    for k, v in p.value.items()
                }
            else:
                values[n] = split_normal_value(p.value, p.low, p.high, z[d, j])  # type: ignore[arg-type]
        for n, v in values.items():  # a split-normal tail past a physical bound stops at it
            dom = ps.parameters[n].domain
            values[n] = (
                {k: dom.clip(x) for k, x in v.items()} if isinstance(v, dict) else dom.clip(v)
            )
        out.append(ps.with_values(values, label=f"{ps.label}#draw{d}"))
    return out


def split_normal_value(v: float, lo: float, hi: float, z: float) -> float:
    """The value at standard-normal score ``z`` of a split normal with mode ``v`` whose 5th and
    95th percentiles are ``lo`` and ``hi`` (in log space when all three are positive)."""
    q = 1.6448536269514722  # 95th percentile of N(0, 1)
    if lo > 0 and v > 0 and hi > 0:
        s = math.log(v / lo) / q if z < 0 else math.log(hi / v) / q
        return v * math.exp(z * s)
    s = (v - lo) / q if z < 0 else (hi - v) / q
    return v + z * s

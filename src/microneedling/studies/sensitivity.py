"""Global sensitivity analysis: Sobol indices of scalar end points over the parameter intervals.

For a course and some end points (the :mod:`microneedling.engine.endpoints` grammar, e.g.
``scar_depth:reduction@last+90``), which parameters drive the answer, alone (first-order index S1)
and through interactions (total index ST)?

Method (Saltelli 2002; Saltelli et al. 2010, as implemented by SALib, Herman & Usher 2017):

1. A scrambled Sobol design of ``n_base·(D + 2)`` points in the unit cube [0, 1]^D (``n_base·(2D + 2)``
   with second-order indices) for D factors, from :func:`SALib.sample.sobol.sample` with ``seed``.
2. Each coordinate u is mapped to a parameter value through the inverse CDF of the same prior the
   uncertainty ensemble uses (:func:`microneedling.parameters.sampling.sample_parameter_sets`): ``low``/``high``
   of the parameter file are its 5th/95th percentiles, a split normal in log space when value, low
   and high are positive (linear otherwise); z = Φ⁻¹(u). A keyed parameter (a per-site or per-type
   table) is ONE factor: all its entries use the same z, as in the ensemble.
3. The points run in chunks of ``chunk_size``; each chunk is ONE batched healing solve,
   :func:`microneedling.engine.batch.simulate_batch` of the course under the chunk's parameter sets.
   Chunks go through ``map_chunks`` (e.g. :func:`microneedling.engine.executor.map_chunks` with local
   processes or a Dask cluster) or run in process.
4. :func:`SALib.analyze.sobol.analyze` estimates S1 and ST (Jansen/Saltelli estimators) with
   bootstrap 95% confidence half-widths (``*_conf``).

The indices are for the *prior* intervals of the parameter files (what the model assumes, not what
a patient population looks like); they rank which assumptions matter for an end point.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.about import DISCLAIMER, __version__
from microneedling.course.model import AcneScar, Hyperpigmentation, Pores, Striae, Wrinkles
from microneedling.engine.batch import simulate_batch
from microneedling.engine.endpoints import EndpointSpec, endpoint_table, parse_endpoint
from microneedling.errors import InputError
from microneedling.parameters.parameter_set import ParameterSet, load_parameters, suggest
from microneedling.parameters.sampling import split_normal_value

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from microneedling.course.model import Course

#: unit-cube coordinates are clipped to [U_CLIP, 1 − U_CLIP] before Φ⁻¹ (a Sobol point exactly on
#: the cube face would map to an infinite value); 1e-9 is z = ±6.0, far outside any design point a
#: scrambled sequence of practical size produces.
U_CLIP = 1e-9
#: bootstrap resamples for the confidence half-widths (SALib default) and their level
NUM_RESAMPLES = 100
CONF_LEVEL = 0.95

MapChunks = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


# --------------------------------------------------------------------------- design
def sobol_design(n_factors: int, n_base: int, seed: int, second_order: bool = False) -> np.ndarray:
    """Saltelli design in the unit cube: ``(n_base·(D + 2), D)`` (or ``n_base·(2D + 2)`` rows).

    ``n_base`` must be a power of two (the balance properties of the Sobol sequence need it).
    """
    from SALib.sample import sobol as sobol_sample

    _check_n_base(n_base)
    if n_factors < 1:
        raise InputError("names", "[]", "at least one parameter with an interval")
    problem = _problem(n_factors)
    u = sobol_sample.sample(
        problem, n_base, calc_second_order=second_order, scramble=True, seed=int(seed)
    )
    return np.asarray(u, dtype=float)


def sobol_analyze(
    y: np.ndarray, n_factors: int, seed: int, second_order: bool = False
) -> dict[str, np.ndarray]:
    """S1, ST (and S2) with confidence half-widths from outputs ``y`` (n_runs,) on the design of
    :func:`sobol_design`; bootstrap seeded with ``seed``. Non-finite outputs give NaN indices."""
    from SALib.analyze import sobol as sobol_an

    y = np.asarray(y, dtype=float)
    keys = ("S1", "S1_conf", "ST", "ST_conf")
    if not np.all(np.isfinite(y)):
        out = {k: np.full(n_factors, np.nan) for k in keys}
        if second_order:
            out["S2"] = np.full((n_factors, n_factors), np.nan)
            out["S2_conf"] = np.full((n_factors, n_factors), np.nan)
        return out

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sobol_an.analyze(
            _problem(n_factors),
            y,
            calc_second_order=second_order,
            num_resamples=NUM_RESAMPLES,
            conf_level=CONF_LEVEL,
            seed=int(seed),
        )
    out = {k: np.asarray(res[k], dtype=float) for k in keys}
    if second_order:
        out["S2"] = np.asarray(res["S2"], dtype=float)
        out["S2_conf"] = np.asarray(res["S2_conf"], dtype=float)
    return out


def _problem(n_factors: int) -> dict[str, Any]:
    return {
        "num_vars": n_factors,
        "names": [f"x{i}" for i in range(n_factors)],
        "bounds": [[0.0, 1.0]] * n_factors,
    }


def _check_n_base(n_base: int) -> None:
    if not isinstance(n_base, int | np.integer) or n_base < 2 or (n_base & (n_base - 1)) != 0:
        raise InputError("n_base", n_base, "a power of two >= 2 (e.g. 64, 128, 256)")


# --------------------------------------------------------------------- unit → values
def unit_to_z(u: np.ndarray) -> np.ndarray:
    """Standard-normal quantiles Φ⁻¹(u) of unit-cube coordinates (clipped by :data:`U_CLIP`)."""
    from scipy.special import ndtri

    return np.asarray(ndtri(np.clip(np.asarray(u, dtype=float), U_CLIP, 1.0 - U_CLIP)))


def parameter_values(ps: ParameterSet, name: str, z: float) -> float | dict[str, float]:
    """Value of parameter ``name`` at standard-normal quantile ``z`` of its prior (file units).

    Same split normal as :func:`microneedling.parameters.sampling.sample_parameter_sets` (z = −1.645 gives
    ``low``, +1.645 gives ``high``); keyed parameters move all entries with the same z.
    """

    p = ps.parameters[name]
    if p.low is None or p.high is None:
        raise InputError("names", name, "a parameter with a plausible interval (low/high)")
    clip = p.domain.clip  # a split-normal tail past a physical bound stops at it (as the draws)
    if isinstance(p.value, dict):
        lo, hi = p.low, p.high
        assert isinstance(lo, dict) and isinstance(hi, dict)
        return {k: clip(split_normal_value(v, lo[k], hi[k], z)) for k, v in p.value.items()}
    assert isinstance(p.low, float | int) and isinstance(p.high, float | int)
    return clip(split_normal_value(float(p.value), float(p.low), float(p.high), z))


def parameter_sets(ps: ParameterSet, names: Sequence[str], u: np.ndarray) -> list[ParameterSet]:
    """One ParameterSet per row of the unit-cube design ``u`` (n, len(names))."""
    z = unit_to_z(u)
    return [
        ps.with_values(
            {n: parameter_values(ps, n, float(z[i, j])) for j, n in enumerate(names)},
            label=f"{ps.label}#sobol{i}",
        )
        for i in range(z.shape[0])
    ]


def sensitive_names(course: Course, ps: ParameterSet) -> list[str]:
    """Parameters with an interval that simulating ``course`` looks up (sorted).

    Found by recording the lookups of one preparation and one (nominal) batch of the course.
    """

    rec = ps.recording()
    simulate_batch([course], rec)
    return [n for n in rec.used if rec.parameters[n].low is not None]


def validate_names(ps: ParameterSet, names: Sequence[str]) -> list[str]:
    """Check that every name exists and has an interval; refuse duplicates."""
    out: list[str] = []
    for i, n in enumerate(names):
        if n not in ps:
            close = suggest(str(n), ps.parameters)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise InputError(f"names[{i}]", n, f"a known parameter name{hint}")
        p = ps.parameters[n]
        if p.low is None or p.high is None:
            raise InputError(f"names[{i}]", n, "a parameter with a plausible interval (low/high)")
        if n in out:
            raise InputError(f"names[{i}]", n, "each parameter once")
        out.append(str(n))
    if not out:
        raise InputError("names", "[]", "at least one parameter with an interval")
    return out


# --------------------------------------------------------------------------- chunks
@dataclass(frozen=True)
class SobolChunk:
    """One unit of work: the course under the parameter sets of rows ``u`` of the design."""

    course: Any  # Course (pickles with pydantic)
    parameters: ParameterSet
    names: tuple[str, ...]
    u: np.ndarray  # (n, D)
    endpoints: tuple[str, ...]
    rtol: float = 1e-6


def evaluate_chunk(chunk: SobolChunk) -> np.ndarray:
    """End points of a chunk: (n, n_sites, n_endpoints), one batched solve for the whole chunk."""

    sets = parameter_sets(chunk.parameters, chunk.names, chunk.u)
    n = len(sets)
    run = simulate_batch([chunk.course] * n, sets, rtol=chunk.rtol)
    table = endpoint_table(run, list(chunk.endpoints))
    n_sites = run.n_cases // n
    return np.stack([table[e].reshape(n, n_sites) for e in chunk.endpoints], axis=-1)


def _in_process(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [fn(x) for x in items]


# ------------------------------------------------------------------------------ main
def sobol_indices(
    course: Course,
    endpoints: Sequence[str | EndpointSpec],
    *,
    parameters: ParameterSet | None = None,
    names: Sequence[str] | None = None,
    n_base: int = 64,
    seed: int = 0,
    map_chunks: MapChunks | None = None,
    chunk_size: int = 512,
    second_order: bool = False,
    rtol: float = 1e-6,
) -> xr.Dataset:
    """Saltelli/Sobol indices (SALib) of scalar end points over the declared parameter intervals.

    Parameters
    ----------
    course:
        A validated course. With several sites, every (end point, site) pair is one output.
    endpoints:
        End points in the :mod:`microneedling.engine.endpoints` grammar (``"scar_depth:reduction@last+90"``).
    parameters:
        Parameter set whose intervals are the factors' priors (default: the shipped set).
    names:
        Parameters to vary (each must have ``low``/``high``); default: every parameter with an
        interval that the course looks up. The others stay at their values.
    n_base:
        Base sample size N (a power of two); the model runs N·(D + 2) times (N·(2D + 2) with
        ``second_order``).
    seed:
        Seed of the scrambled Sobol design and of the bootstrap: same seed, same indices.
    map_chunks:
        ``map_chunks(fn, items) -> list`` (order-preserving), e.g.
        ``functools.partial(microneedling.engine.executor.map_chunks, workers=2)``; default in process.
    chunk_size:
        Design points per batched solve.
    second_order:
        Also estimate S2 (pairwise interactions).
    rtol:
        Relative tolerance of the healing integrator.

    Returns
    -------
    xarray.Dataset
        ``S1``, ``ST``, ``S1_conf``, ``ST_conf`` (dims ``endpoint``, ``parameter``; dimensionless;
        ``*_conf`` are 95% bootstrap half-widths), optionally ``S2``/``S2_conf`` (``endpoint``,
        ``parameter``, ``parameter_2``); ``output_mean``/``output_std`` of each end point over the
        design (in its units). Coordinates along ``endpoint``: ``spec`` (canonical text), ``site``
        and ``units``. Attributes: ``n_base``, ``n_runs``, ``seed``, ``units`` (JSON: end point →
        units), ``n_failed`` (runs with a non-finite end point), disclaimer, provenance.
    """
    import xarray as xr

    specs = _parse_endpoints(endpoints)
    _check_n_base(n_base)
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise InputError("chunk_size", chunk_size, "a positive integer")
    ps = parameters or load_parameters()
    chosen = validate_names(ps, names) if names is not None else sensitive_names(course, ps)
    if not chosen:
        raise InputError("names", "[]", "at least one parameter with an interval")
    check_endpoints_apply(course, ps, specs, rtol)  # before the N·(D + 2) runs, not after
    D = len(chosen)
    u = sobol_design(D, n_base, seed, second_order)
    n_runs = u.shape[0]
    texts = tuple(s.text for s in specs)
    chunks = [
        SobolChunk(course, ps, tuple(chosen), u[i : i + chunk_size], texts, rtol)
        for i in range(0, n_runs, chunk_size)
    ]
    mapper = map_chunks or _in_process
    parts = mapper(evaluate_chunk, chunks)
    y = np.concatenate([np.asarray(p, dtype=float) for p in parts], axis=0)  # (n_runs, S, E)
    if y.shape[0] != n_runs:
        raise RuntimeError(f"map_chunks returned {y.shape[0]} runs, expected {n_runs}")

    sites = [s.name for s in course.sites]
    labels, spec_c, site_c, unit_c, columns = [], [], [], [], []
    for e, spec in enumerate(specs):
        if not np.any(np.isfinite(y[:, :, e])):
            raise InputError(f"endpoints[{e}]", spec.text, _NOT_APPLICABLE)
        for s, site in enumerate(sites):
            col = y[:, s, e]
            if not np.any(np.isfinite(col)):
                continue  # the end point does not apply to this site (e.g. no scar there)
            labels.append(spec.text if len(sites) == 1 else f"{spec.text} [{site}]")
            spec_c.append(spec.text)
            site_c.append(site)
            unit_c.append(spec.units)
            columns.append(col)
    results = [sobol_analyze(c, D, seed, second_order) for c in columns]
    stack = {k: np.stack([r[k] for r in results]) for k in results[0]}
    n_failed = int(np.sum(~np.all(np.isfinite(np.stack(columns, axis=1)), axis=1)))

    data: dict[str, Any] = {}
    descr = {
        "S1": "first-order Sobol index",
        "ST": "total-order Sobol index",
        "S1_conf": f"{CONF_LEVEL:.0%} bootstrap half-width of S1",
        "ST_conf": f"{CONF_LEVEL:.0%} bootstrap half-width of ST",
        "S2": "second-order Sobol index",
        "S2_conf": f"{CONF_LEVEL:.0%} bootstrap half-width of S2",
    }
    for k, arr in stack.items():
        dims = (
            ("endpoint", "parameter", "parameter_2") if arr.ndim == 3 else ("endpoint", "parameter")
        )
        data[k] = (dims, arr, {"units": "1", "long_name": descr[k]})
    cols = np.stack(columns)  # (n_out, n_runs)
    with np.errstate(invalid="ignore"):
        data["output_mean"] = (
            ("endpoint",),
            np.nanmean(cols, axis=1),
            {"long_name": "mean over the design"},
        )
        data["output_std"] = (
            ("endpoint",),
            np.nanstd(cols, axis=1),
            {"long_name": "std over the design"},
        )
    coords: dict[str, Any] = {
        "endpoint": labels,
        "parameter": chosen,
        "spec": ("endpoint", spec_c),
        "site": ("endpoint", site_c),
        "units": ("endpoint", unit_c),
        "parameter_units": ("parameter", [ps.parameters[n].units for n in chosen]),
        "parameter_note": ("parameter", [ps.parameters[n].note for n in chosen]),
    }
    if second_order:
        coords["parameter_2"] = chosen
    attrs = {
        "title": f"Sobol sensitivity: {course.name}",
        "method": "Saltelli/Sobol (SALib sobol sample + analyze), scrambled Sobol design",
        "prior": (
            "low/high of each parameter = 5th/95th percentiles of a split normal (log space for "
            "positive parameters); keyed parameters are one factor"
        ),
        "n_base": int(n_base),
        "n_runs": int(n_runs),
        "n_factors": int(D),
        "seed": int(seed),
        "second_order": int(second_order),
        "num_resamples": NUM_RESAMPLES,
        "conf_level": CONF_LEVEL,
        "n_failed": n_failed,
        "units": json.dumps(dict(zip(labels, unit_c, strict=True))),
        "parameter_set_label": ps.label,
        "parameter_set_hash": ps.hash,
        "course_name": course.name,
        "course_toml": course.to_toml(),
        "microneedling_version": __version__,
        "disclaimer": DISCLAIMER,
    }
    return xr.Dataset(data_vars=data, coords=coords, attrs=attrs)


_NOT_APPLICABLE = (
    "an end point that applies to a site of the course (e.g. scar_depth needs an acne_scar "
    "condition, melanin_index a hyperpigmentation, absorbed_amount a topical)"
)


def check_endpoints_apply(
    course: Course, ps: ParameterSet, specs: Sequence[EndpointSpec], rtol: float = 1e-6
) -> None:
    """Refuse an end point that has no value at any site of ``course``: one nominal solve, before
    the design's runs."""
    run = simulate_batch([course], ps, rtol=rtol)
    table = endpoint_table(run, [s.text for s in specs])
    for e, spec in enumerate(specs):
        if not np.any(np.isfinite(table[spec.text])):
            raise InputError(f"endpoints[{e}]", spec.text, _NOT_APPLICABLE)


def _parse_endpoints(endpoints: Sequence[str | EndpointSpec]) -> list[EndpointSpec]:
    if isinstance(endpoints, str | EndpointSpec):
        endpoints = [endpoints]
    specs: list[EndpointSpec] = []
    for i, e in enumerate(endpoints):
        spec = e if isinstance(e, EndpointSpec) else parse_endpoint(e, field=f"endpoints[{i}]")
        if spec in specs:
            raise InputError(f"endpoints[{i}]", spec.text, "each end point once")
        specs.append(spec)
    if not specs:
        raise InputError("endpoints", "[]", "at least one end point")
    return specs


def indices_table(ds: xr.Dataset) -> Any:
    """Long pandas table: one row per (end point, parameter) with S1, S1_conf, ST, ST_conf,
    sorted by end point then decreasing ST."""
    import pandas as pd

    rows = []
    for e in ds.endpoint.values:
        sub = ds.sel(endpoint=e)
        for p in ds.parameter.values:
            r = sub.sel(parameter=p)
            rows.append(
                {
                    "endpoint": str(e),
                    "units": str(sub.units.values),
                    "parameter": str(p),
                    "S1": float(r.S1),
                    "S1_conf": float(r.S1_conf),
                    "ST": float(r.ST),
                    "ST_conf": float(r.ST_conf),
                }
            )
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["endpoint", "ST"], ascending=[True, False], kind="stable")
    return df.reset_index(drop=True)


def noise_warnings(ds: xr.Dataset) -> list[str]:
    """What a reader must know about the estimates' noise: negative first-order indices (a true
    index is never below 0, so a negative estimate is sampling noise) and how to firm them up."""
    s1 = [float(x) for x in np.asarray(ds["S1"].values, dtype=float).ravel()]
    conf = [float(x) for x in np.asarray(ds["S1_conf"].values, dtype=float).ravel() if x == x]
    neg = [x for x in s1 if x < 0.0]
    if not neg:
        return []
    return [
        f"{len(neg)} first-order indices (S1) are negative, down to {min(neg):.3f}: a true index "
        f"is never below 0, so these are sampling noise (95% half-widths up to "
        f"{max(conf, default=float('nan')):.3f}); a larger base sample (--n-base, now "
        f"{int(ds.attrs['n_base'])}) gives firmer indices"
    ]


def runs_needed(n_factors: int, n_base: int, second_order: bool = False) -> int:
    """Model runs of a Saltelli design: N·(D + 2), or N·(2D + 2) with second-order indices."""
    return int(n_base) * (2 * n_factors + 2 if second_order else n_factors + 2)


def ishigami(x: np.ndarray, a: float = 7.0, b: float = 0.1) -> np.ndarray:
    """Ishigami function sin x₁ + a·sin² x₂ + b·x₃⁴·sin x₁ (x in [−π, π]³), the standard test of
    Sobol estimators (Ishigami & Homma 1990); analytic indices in :func:`ishigami_indices`."""
    x = np.atleast_2d(x)
    return np.asarray(
        np.sin(x[:, 0]) + a * np.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * np.sin(x[:, 0])
    )


def ishigami_indices(a: float = 7.0, b: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Analytic (S1, ST) of :func:`ishigami` for uniform inputs on [−π, π]."""
    pi = math.pi
    v1 = 0.5 * (1.0 + b * pi**4 / 5.0) ** 2
    v2 = a**2 / 8.0
    v13 = b**2 * pi**8 * (1.0 / 18.0 - 1.0 / 50.0)
    var = v1 + v2 + v13
    s1 = np.array([v1, v2, 0.0]) / var
    st = np.array([v1 + v13, v2, v13]) / var
    return s1, st


def default_endpoints(course: Course) -> list[str]:
    """End points worth screening for ``course``: new collagen and downtime always, and the
    improvement of each condition present on its sites, all read 90 days after the last session."""

    by_condition = (
        (AcneScar, "scar_depth:reduction@last+90"),
        (Wrinkles, "wrinkle_depth:reduction@last+90"),
        (Pores, "pore_diameter:reduction@last+90"),
        (Striae, "striae_width:reduction@last+90"),
        (Hyperpigmentation, "melanin_index:reduction@last+90"),
    )
    out = ["collagen_change@last+90", "erythema_days"]
    for cls, text in by_condition:
        if any(isinstance(c, cls) for s in course.sites for c in s.conditions):
            out.append(text)
    return out


__all__ = [
    "SobolChunk",
    "check_endpoints_apply",
    "default_endpoints",
    "evaluate_chunk",
    "indices_table",
    "ishigami",
    "ishigami_indices",
    "noise_warnings",
    "parameter_sets",
    "parameter_values",
    "runs_needed",
    "sensitive_names",
    "sobol_analyze",
    "sobol_design",
    "sobol_indices",
    "unit_to_z",
    "validate_names",
]

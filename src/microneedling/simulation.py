"""Glue: a validated :class:`~microneedling.course.Course` and a ParameterSet → physics → Result.

This module owns no physics. It lays the course out as arrays (one *case* per treated site), calls
the pure functions of :mod:`microneedling.physics` for needles, injury, transport, healing and
observation, and labels the answer as an :class:`xarray.Dataset` inside a
:class:`~microneedling.result.Result`.

Uncertainty: with ``draws > 0`` every parameter that has a plausible interval (``low``/``high`` in its
file, read as the 5th–95th percentiles of a split normal in log space for positive quantities) is
sampled ``draws`` times with the course's seed; all draws run as one batch through the integrator,
and each observable gets ``_low``/``_high`` (10th/90th percentiles) beside its nominal value.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from . import DISCLAIMER, __version__
from .parameters import ParameterSet, load_parameters
from .physics import LAYERS

if TYPE_CHECKING:  # pragma: no cover
    from .course import Course
    from .result import Result

ROMAN = ("I", "II", "III", "IV", "V", "VI")

#: hours after each session at which outputs are stored (fine early: downtime is read off these)
_POST_SESSION_DAYS = np.unique(
    np.concatenate(
        [np.arange(0.0, 2.0, 1.0 / 12.0), np.arange(2.0, 8.0, 0.25), np.arange(8.0, 29.0, 1.0)]
    )
)


# ----------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class Prepared:
    """Everything the ODE and the observation maps need, as arrays over cases (B) and sessions (K)."""

    session_days: np.ndarray  # (B, K) d, inf padded
    session_mask: np.ndarray  # (B, K) bool
    needle_length_mm: np.ndarray  # (B, K)
    puncture_density_cm2: np.ndarray  # (B, K)
    penetration_depth_um: np.ndarray  # (B, K)
    reaches_capillaries: np.ndarray  # (B, K) float 0/1
    injured_fraction: np.ndarray  # (B, K, 3)
    absorbed_ug_cm2: np.ndarray  # (B, K)
    absorbed_intact_ug_cm2: np.ndarray  # (B, K)
    enhancement: np.ndarray  # (B, K)
    absorbed_by_layer_ug_cm2: np.ndarray  # (B, K, 3)
    agent_effect: np.ndarray  # (B, K)
    params: np.ndarray  # (B, N_PARAM) healing
    baseline: Any  # observe.Baseline
    observe: Any  # observe.ObserveParameters
    fitzpatrick: np.ndarray  # (B,)


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def prepare(course: Course, ps: ParameterSet) -> Prepared:
    """Lay a course out as arrays and run the non-ODE physics (needles, injury, transport)."""
    from .physics import healing, injury, needles, observe, transport

    sites = [s.name for s in course.sites]
    B = len(sites)
    per_site = [course.sessions_for(s) for s in sites]
    K = max(1, max(len(x) for x in per_site))
    pat = course.patient
    fitz = np.full(B, float(pat.fitzpatrick))

    days = np.full((B, K), np.inf)
    mask = np.zeros((B, K), dtype=bool)
    length_m = np.zeros((B, K))
    passes = np.zeros((B, K))
    speed = np.full((B, K), np.nan)
    occl = np.zeros((B, K), dtype=bool)
    for b, sess in enumerate(per_site):
        for k, s in enumerate(sess):
            days[b, k] = s.day
            mask[b, k] = True
            length_m[b, k] = s.needle_length_mm * 1e-3
            passes[b, k] = s.passes
            if s.pen_speed_cm_s is not None:
                speed[b, k] = s.pen_speed_cm_s * 1e-2
            occl[b, k] = s.occlusion

    skin = needles.skin_layers_batch(sites, pat.age_years, pat.sex, ps)  # arrays (B,)
    dev = course.device
    geo = needles.DeviceGeometry.from_fields(dev.model_dump())
    npar = needles.NeedleParameters.from_parameters(ps)
    flat = (B * K,)
    ch = needles.channels(
        geo,
        needle_length_m=length_m.reshape(flat),
        passes=passes.reshape(flat),
        pen_speed_m_s=speed.reshape(flat),
        skin=skin.repeat(K),
        params=npar,
    )
    phi = injury.injured_fraction_from_channels(ch, skin.repeat(K), ps).reshape(B, K, 3)
    phi = np.where(mask[:, :, None], phi, 0.0)

    # topical transport: every session with a topical, all in one batched call
    absorbed = np.full((B, K), np.nan)  # NaN: no topical at that session
    intact = np.full((B, K), np.nan)
    enh = np.full((B, K), np.nan)
    by_layer = np.full((B, K, 3), np.nan)
    agent = np.zeros((B, K))
    topical = [
        (b, k, s.topical, s.occlusion)
        for b, sess in enumerate(per_site)
        for k, s in enumerate(sess)
        if s.topical is not None
    ]
    if topical:
        bi = np.array([b for b, _, _, _ in topical])
        ki = np.array([k for _, k, _, _ in topical])
        flat_i = bi * K + ki
        tops = [t for _, _, t, _ in topical]
        mols = _shipped_molecules()
        c0 = np.array([t.concentration_mg_ml for t in tops])  # mg/mL == kg/m^3
        film = np.array([t.volume_ul_cm2 for t in tops]) * 1e-9 / 1e-4  # uL/cm^2 -> m
        ab = transport.absorb(
            transport.Solute.from_molecules([mols[t.product] for t in tops]),
            c0,
            film,
            np.array([t.contact_hours for t in tops]) * 3600.0,
            ch.density_m2[flat_i],
            ch.surface_radius_m[flat_i],
            ch.depth_m[flat_i],
            skin.stack()[bi],
            np.array([occ for _, _, _, occ in topical]),
            transport.TransportParameters.from_parameters(ps),
        )
        to_ug_cm2 = 1e9 / 1e4  # kg/m^2 -> ug/cm^2
        absorbed[bi, ki] = ab.total * to_ug_cm2
        intact[bi, ki] = ab.intact * to_ug_cm2
        # intact-skin uptake below 1e-9 of the dose (molecules as large as the polar pores, e.g.
        # hyaluronan): the ratio is unbounded
        enh[bi, ki] = np.where(ab.intact > 1e-9 * c0 * film, ab.enhancement, np.inf)
        by_layer[bi, ki] = ab.by_layer * to_ug_cm2
        ec50 = ps.table("observe.depigmenting_ec50", "ug/cm^2")
        half = np.array([ec50.get(t.product, np.inf) for t in tops])  # inf: no depigmenting effect
        agent[bi, ki] = by_layer[bi, ki].sum(axis=1) / half

    # healing parameters per case
    nominal = healing.parameter_vector(ps)
    gq = ps.table("healing.g_Q", "1/d")
    lesion = np.zeros(B)
    base = _baseline(course, sites, skin)
    lesion[np.isfinite(base.melanin_index)] = 1.0
    slope = ps.value("healing.collagen_age_slope", "1")
    floor = ps.value("healing.collagen_age_floor", "1")
    ref_age = ps.value("healing.collagen_reference_age", "yr")
    age_factor = max(floor, 1.0 + slope * (pat.age_years - ref_age) / 10.0)
    from .physics.healing_rhs import PIDX

    per_case = {
        "lesion_drive": lesion,
        "g_Q": np.array([gq[ROMAN[int(f) - 1]] for f in fitz]),
        "k_1": np.full(B, nominal[PIDX["k_1"]] * age_factor),
        "k_3": np.full(B, nominal[PIDX["k_3"]] * age_factor),
        "k_E": np.full(B, nominal[PIDX["k_E"]] * age_factor),
    }
    params = healing.parameter_matrix(nominal, B, per_case)
    return Prepared(
        session_days=days,
        session_mask=mask,
        needle_length_mm=np.where(mask, length_m * 1e3, np.nan),
        puncture_density_cm2=np.where(mask, ch.density_m2.reshape(B, K) * 1e-4, np.nan),
        penetration_depth_um=np.where(mask, ch.depth_m.reshape(B, K) * 1e6, np.nan),
        reaches_capillaries=np.where(mask, ch.reaches_capillaries.reshape(B, K), np.nan),
        injured_fraction=phi,
        absorbed_ug_cm2=np.where(mask, absorbed, np.nan),
        absorbed_intact_ug_cm2=np.where(mask, intact, np.nan),
        enhancement=enh,
        absorbed_by_layer_ug_cm2=np.where(mask[:, :, None], by_layer, np.nan),
        agent_effect=agent,
        params=params,
        baseline=base,
        observe=observe.ObserveParameters.from_parameters(ps),
        fitzpatrick=fitz,
    )


@functools.lru_cache(maxsize=1)
def _shipped_molecules() -> dict[str, Any]:
    """The shipped molecule library, read once per process (it is package data: it does not change
    while a process runs, and re-reading it cost ~45% of a planner search with topicals)."""
    from .physics import transport

    return transport.load_molecules()


def _baseline(course: Course, sites: Sequence[str], skin: Any) -> Any:
    """Per-case baseline conditions (NaN where the site does not have the condition)."""
    from .course import AcneScar, Hyperpigmentation, Photoaging, Pores, Striae, Wrinkles
    from .physics import observe

    B = len(sites)
    wr, sc, st, po, sw, ss, mi, r2 = (_nan(B) for _ in range(8))
    st = np.full(B, -1)
    ss = np.full(B, -1)
    for b, name in enumerate(sites):
        for c in course.site(name).conditions:
            if isinstance(c, Wrinkles):
                wr[b] = c.depth_um
            elif isinstance(c, AcneScar):
                sc[b] = c.depth_mm
                st[b] = observe.SCAR_TYPES.index(c.scar_type)
            elif isinstance(c, Pores):
                po[b] = c.diameter_um
            elif isinstance(c, Striae):
                sw[b] = c.width_mm
                ss[b] = observe.STRIAE_STAGES.index(c.stage)
            elif isinstance(c, Hyperpigmentation):
                mi[b] = c.melanin_index
            elif isinstance(c, Photoaging) and c.elasticity_r2 is not None:
                r2[b] = c.elasticity_r2
    return observe.Baseline(
        dermis_thickness_um=skin.dermis_thickness_m * 1e6,
        papillary_fraction=skin.papillary_thickness_m / skin.dermis_thickness_m,
        age_years=np.full(B, float(course.patient.age_years)),
        fitzpatrick=np.full(B, float(course.patient.fitzpatrick)),
        elasticity_r2=r2,
        wrinkle_depth_um=wr,
        scar_depth_mm=sc,
        scar_type=st,
        pore_diameter_um=po,
        striae_width_mm=sw,
        striae_stage=ss,
        melanin_index=mi,
    )


def output_times(session_days: np.ndarray, horizon_days: float) -> np.ndarray:
    """Output grid (days): fine after every session (2-hourly for 2 days, 6-hourly to day 8,
    daily to day 28), weekly elsewhere, always including 0 and the horizon."""
    d = session_days[np.isfinite(session_days)]
    parts: list[np.ndarray] = [np.arange(0.0, horizon_days, 7.0), np.array([horizon_days])]
    parts += [s + _POST_SESSION_DAYS for s in np.unique(d)]
    t: np.ndarray = np.unique(np.concatenate(parts))
    return t[(t >= 0.0) & (t <= horizon_days)]


# ----------------------------------------------------------------------- uncertainty
def sample_parameter_sets(ps: ParameterSet, draws: int, seed: int) -> list[ParameterSet]:
    """``draws`` parameter sets sampled from each parameter's plausible interval.

    ``low``/``high`` are read as 5th/95th percentiles of a split normal — in log space when both are
    positive. Keyed parameters are sampled with one common z per parameter (entries move together).

    Calibrated parameters that still hold the shipped calibration's posterior mean
    (``data/calibration/current.toml``, :func:`microneedling.calibrate.shipped_posterior`) are drawn
    jointly from its log-normal posterior (mean and covariance in log space), tied members (e.g.
    ``healing.k_1`` and ``healing.k_3``) with one common value. Their marginals equal the
    ``low``/``high`` written by the calibration, so the joint draw only adds the correlations.

    Each parameter has its own random stream, seeded by ``(seed, crc32(name))``: a parameter's draws
    do not change when other parameters are added to or removed from the set, and the first k draws
    are the same for any ``draws >= k``.
    """
    import zlib

    from .calibrate import shipped_posterior

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
                    k: _split(v, p.low[k], p.high[k], z[d, j])  # type: ignore[index]
                    for k, v in p.value.items()
                }
            else:
                values[n] = _split(p.value, p.low, p.high, z[d, j])  # type: ignore[arg-type]
        out.append(ps.with_values(values, label=f"{ps.label}#draw{d}"))
    return out


def _split(v: float, lo: float, hi: float, z: float) -> float:
    q = 1.6448536269514722  # 95th percentile of N(0, 1)
    if lo > 0 and v > 0 and hi > 0:
        s = math.log(v / lo) / q if z < 0 else math.log(hi / v) / q
        return v * math.exp(z * s)
    s = (v - lo) / q if z < 0 else (hi - v) / q
    return v + z * s


# ------------------------------------------------------------------------------ batch
@dataclass(frozen=True)
class BatchRun:
    """Unlabelled outputs of :func:`simulate_batch`: one row per *case* (a treated site of one course
    under one parameter set), all on a common output time grid.

    Attributes
    ----------
    t:
        (T,) output times in days: the union of every course's grid (fine after each session).
    course_index:
        (C,) index into the ``courses`` argument of the course each case belongs to.
    site:
        (C,) site name of each case.
    horizon_days:
        (C,) horizon of each case's course (d); values after it are simulated but not part of the
        course.
    observables:
        Time-resolved observables, (C, T) or (C, 2, T) for the layered ones (papillary, reticular);
        see :func:`microneedling.physics.observe.observables` for names and units.
    per_session:
        Per-session outputs (C, K), NaN where a case has fewer than K sessions: ``erythema_days``,
        ``oedema_days`` (d), ``pih_risk`` (1), ``absorbed_amount`` (ug/cm^2), ``enhancement_ratio``.
    prepared:
        The concatenated inputs of the healing solve (needles, injury, transport, parameters).
    n_steps:
        (C,) integrator steps taken per case.
    """

    t: np.ndarray
    course_index: np.ndarray
    site: tuple[str, ...]
    horizon_days: np.ndarray
    observables: dict[str, np.ndarray]
    per_session: dict[str, np.ndarray]
    prepared: Prepared
    n_steps: np.ndarray

    @property
    def n_cases(self) -> int:
        return len(self.site)


def _pad_sessions(arr: np.ndarray, K: int, fill: Any) -> np.ndarray:
    if arr.shape[1] == K:
        return arr
    pad = np.full((arr.shape[0], K - arr.shape[1], *arr.shape[2:]), fill, dtype=arr.dtype)
    return np.concatenate([arr, pad], axis=1)


def _concat_prepared(preps: Sequence[Prepared]) -> Prepared:
    """Stack the cases of several :class:`Prepared` (padding sessions to the largest K)."""
    from .physics import observe

    K = max(p.session_days.shape[1] for p in preps)
    fills: dict[str, Any] = {
        "session_days": np.inf,
        "session_mask": False,
        "injured_fraction": 0.0,
        "agent_effect": 0.0,
    }
    kw: dict[str, Any] = {}
    for f in fields(Prepared):
        name = f.name
        if name in ("baseline", "observe"):
            continue
        arrays = [getattr(p, name) for p in preps]
        if name in ("params", "fitzpatrick"):
            kw[name] = np.concatenate(arrays)
        else:
            kw[name] = np.concatenate(
                [_pad_sessions(a, K, fills.get(name, np.nan)) for a in arrays]
            )
    kw["baseline"] = observe.Baseline(
        **{
            f.name: np.concatenate([getattr(p.baseline, f.name) for p in preps])
            for f in fields(observe.Baseline)
        }
    )
    kw["observe"] = preps[0].observe
    return Prepared(**kw)


def simulate_batch(
    courses: Sequence[Course],
    parameters: ParameterSet | Sequence[ParameterSet] | None = None,
    *,
    healing_factors: Mapping[str, np.ndarray] | None = None,
    t_out: np.ndarray | None = None,
    rtol: float = 1e-6,
    parallel: bool = True,
) -> BatchRun:
    """Simulate many courses in one batched healing solve (no per-course solver call).

    This is the engine entry point for everything that runs more than one course: the uncertainty
    ensemble of :func:`simulate`, calibration, sensitivity analysis, virtual cohorts and the planner.

    Parameters
    ----------
    courses:
        N validated courses; their sites become the cases (a course with S sites gives S cases).
        Courses may differ in everything (sites, sessions, devices, patients, horizons).
    parameters:
        One ParameterSet for all courses, or one per course (length N), e.g. ensemble draws.
        Default: the shipped set.
    healing_factors:
        Optional per-course multiplicative factors on healing parameters, ``{name: (N,) array}``
        (names of :data:`microneedling.physics.healing_rhs.PARAM_NAMES`): inter-individual
        variability of virtual patients without building a ParameterSet per patient.
    t_out:
        Output times (d) to use instead of the union of the courses' grids; must start at 0 and
        reach the largest horizon.
    rtol:
        Relative tolerance of the healing integrator.
    """
    from .errors import InputError
    from .physics import healing, observe
    from .physics.healing_rhs import PIDX

    courses = list(courses)
    n = len(courses)
    if n == 0:
        raise InputError("courses", "[]", "at least one course")
    if parameters is None:
        sets: list[ParameterSet] = [load_parameters()] * n
    elif isinstance(parameters, ParameterSet):
        sets = [parameters] * n
    else:
        sets = list(parameters)
        if len(sets) != n:
            raise InputError(
                "parameters", f"{len(sets)} parameter sets", f"one set or {n} (one per course)"
            )
    # prepare each distinct (course, parameter set) pair once
    cache: dict[tuple[int, int], Prepared] = {}
    preps = []
    for c, s in zip(courses, sets, strict=True):
        key = (id(c), id(s))
        if key not in cache:
            cache[key] = prepare(c, s)
        preps.append(cache[key])
    n_sites = np.array([p.session_days.shape[0] for p in preps])
    course_index = np.repeat(np.arange(n), n_sites)
    sites = tuple(s.name for c in courses for s in c.sites)
    horizon = np.repeat(np.array([float(c.horizon_days) for c in courses]), n_sites)
    prep = _concat_prepared(preps)
    params = prep.params
    if healing_factors:
        params = params.copy()
        for name, factor in healing_factors.items():
            if name not in PIDX:
                raise InputError("healing_factors", name, f"one of {sorted(PIDX)}")
            f = np.asarray(factor, dtype=float)
            if f.shape != (n,):
                raise InputError(f"healing_factors.{name}", f"shape {f.shape}", f"shape ({n},)")
            if not np.all(np.isfinite(f) & (f > 0)):
                raise InputError(f"healing_factors.{name}", "non-positive", "finite factors > 0")
            params[:, PIDX[name]] *= f[course_index]
    if t_out is None:
        grids: dict[tuple[float, bytes], np.ndarray] = {}
        for c, p in zip(courses, preps, strict=True):
            grid_key = (float(c.horizon_days), p.session_days.tobytes())
            if grid_key not in grids:
                grids[grid_key] = output_times(p.session_days, float(c.horizon_days))
        t = np.unique(np.concatenate(list(grids.values())))
    else:
        t = np.asarray(t_out, dtype=float)
        if t.ndim != 1 or t[0] != 0.0 or t[-1] < horizon.max() or np.any(np.diff(t) <= 0):
            raise InputError(
                "t_out", "given grid", "increasing times from 0 to the largest horizon"
            )
    jumps = healing.session_impulses(prep.injured_fraction, prep.agent_effect)
    sol = healing.solve(params, t, prep.session_days, jumps, rtol=rtol, parallel=parallel)

    # observation maps: one call per distinct parameter set (their coefficients are scalars)
    C = len(sites)
    obs: dict[str, np.ndarray] = {}
    per_session: dict[str, np.ndarray] = {}
    observe_of = {id(s): p.observe for p, s in zip(preps, sets, strict=True)}
    set_of_case = np.repeat(np.array([id(s) for s in sets]), n_sites)
    for sid in dict.fromkeys(set_of_case.tolist()):
        rows = np.flatnonzero(set_of_case == sid)
        op = observe_of[sid]
        sub = dataclasses.replace(_take_prepared(prep, rows), observe=op)
        o = observe.observables(t, sol.y[rows], sub.baseline, op)
        st = _session_stats(t, o, sub, horizon[rows])
        for target, source in ((obs, o), (per_session, st)):
            for name, arr in source.items():
                if name not in target:
                    target[name] = np.empty((C, *arr.shape[1:]))
                target[name][rows] = arr
    return BatchRun(
        t=t,
        course_index=course_index,
        site=sites,
        horizon_days=horizon,
        observables=obs,
        per_session=per_session,
        prepared=prep,
        n_steps=sol.n_steps,
    )


def _take_prepared(prep: Prepared, rows: np.ndarray) -> Prepared:
    from .physics import observe

    kw: dict[str, Any] = {}
    for f in fields(Prepared):
        v = getattr(prep, f.name)
        if f.name == "baseline":
            kw[f.name] = observe.Baseline(
                **{g.name: getattr(v, g.name)[rows] for g in fields(observe.Baseline)}
            )
        elif f.name == "observe":
            kw[f.name] = v
        else:
            kw[f.name] = v[rows]
    return Prepared(**kw)


# ---------------------------------------------------------------------------- simulate
def simulate(
    course: Course,
    parameters: ParameterSet | None = None,
    *,
    draws: int = 32,
    seed: int | None = None,
    rtol: float = 1e-6,
    parallel: bool = True,
) -> Result:
    """Simulate one course: every session's needles, injury and topical uptake, then healing over the
    horizon, then the clinical observables.

    Parameters
    ----------
    course:
        A validated course (``Course.from_toml``).
    parameters:
        Parameter set (default: the shipped set).
    draws:
        Size of the parameter-uncertainty ensemble (0: nominal only, no intervals).
    seed:
        Seed of the ensemble (default: ``course.seed``).
    rtol:
        Relative tolerance of the healing integrator.
    """
    from .result import Result

    ps = (parameters or load_parameters()).recording()
    seed = course.seed if seed is None else seed
    sets = [ps] + (sample_parameter_sets(ps, draws, seed) if draws > 0 else [])
    run = simulate_batch([course] * len(sets), sets, rtol=rtol, parallel=parallel)
    for s in sets[1:]:
        ps._used.update(s._used)  # draws look up the same names
    B = len(course.sites)
    t = run.t
    obs = [
        {k: v[d * B : (d + 1) * B] for k, v in run.observables.items()} for d in range(len(sets))
    ]
    per_session = [
        {k: v[d * B : (d + 1) * B] for k, v in run.per_session.items()} for d in range(len(sets))
    ]
    nominal = _take_prepared(run.prepared, np.arange(B))  # observe: the nominal set's
    ds = _dataset(course, ps, nominal, t, obs, per_session, seed, len(sets) - 1)
    return Result(ds)


def _session_stats(
    t: np.ndarray, obs: dict[str, np.ndarray], prep: Prepared, horizon: float | np.ndarray
) -> dict[str, np.ndarray]:
    from .physics import observe

    starts = np.where(prep.session_mask, prep.session_days, np.nan)
    nxt = np.concatenate([prep.session_days[:, 1:], np.full((starts.shape[0], 1), np.inf)], axis=1)
    hz = np.broadcast_to(np.asarray(horizon, dtype=float), (starts.shape[0],))[:, None]
    ends = np.where(prep.session_mask, np.minimum(nxt, hz), np.nan)
    op = prep.observe
    ery = observe.time_above(t, obs["erythema"], op.erythema_threshold, starts, ends)
    oed = observe.time_above(t, obs["oedema"], op.oedema_threshold, starts, ends)
    peak = observe.window_max(t, obs["inflammation"][:, 0, :], starts, ends)
    risk = observe.pih_risk(peak, prep.fitzpatrick, op)
    return {
        "absorbed_amount": prep.absorbed_ug_cm2,
        "enhancement_ratio": prep.enhancement,
        "erythema_days": ery,
        "oedema_days": oed,
        "pih_risk": np.where(prep.session_mask, risk, np.nan),
    }


_ATTRS: dict[str, tuple[str, str]] = {
    "erythema": ("1", "Visible-redness signal (inflammation of the papillary plexus)"),
    "oedema": ("1", "Swelling signal"),
    "epidermal_thickness_change": ("%", "Epidermal thickness change vs baseline"),
    "dermal_density_change": ("%", "Ultrasound dermal density change vs baseline"),
    "dermal_thickness": ("um", "Dermal thickness"),
    "elasticity_index": ("1", "Gross elasticity index (cutometer R2-like, 0-1)"),
    "wrinkle_depth": ("um", "Wrinkle depth"),
    "scar_depth": ("mm", "Atrophic scar depth"),
    "pore_diameter": ("um", "Pore diameter"),
    "striae_width": ("mm", "Stretch-mark width"),
    "melanin_index": ("1", "Melanin index (Mexameter-like units)"),
    "collagen_change": ("%", "New dermal collagen (I+III), % of baseline collagen"),
    "collagen_I_change": ("%", "Collagen I change, % of baseline collagen I"),
    "collagen_III_change": ("%", "Collagen III change, % of baseline collagen III"),
    "elastin_change": ("%", "Net elastin change, % of baseline elastin"),
    "new_elastin_change": ("%", "New elastic fibre (tropoelastin), % of baseline elastin"),
    "inflammation": ("1", "Inflammation (neutrophils + M1; 1 = saturating response)"),
    "fibroblasts": ("1", "Fibroblast density relative to baseline"),
    "erythema_days": ("d", "Days of visible redness after the session"),
    "absorbed_amount": ("ug/cm^2", "Topical absorbed into the skin"),
    "enhancement_ratio": (
        "1",
        "Absorption with channels / intact skin (inf: no intact-skin path, e.g. hyaluronan)",
    ),
    "oedema_days": ("d", "Days of visible swelling after the session"),
    "pih_risk": ("1", "Probability of post-inflammatory hyperpigmentation after the session"),
}


def _dataset(
    course: Course,
    ps: ParameterSet,
    prep: Prepared,
    t: np.ndarray,
    obs: list[dict[str, np.ndarray]],
    per_session: list[dict[str, np.ndarray]],
    seed: int,
    n_draws: int,
) -> Any:
    import xarray as xr

    sites = [s.name for s in course.sites]
    B, K = prep.session_days.shape
    coords = {
        "patient": ["patient-0"],
        "site": sites,
        "layer": list(LAYERS),
        "time": ("time", t, {"units": "d", "long_name": "Time since the start of the course"}),
        "session": np.arange(K),
    }
    data: dict[str, Any] = {}

    def put(name: str, dims: tuple[str, ...], arrays: list[np.ndarray]) -> None:
        units, long_name = _ATTRS.get(name, ("1", name))
        nominal = arrays[0][None, ...]
        data[name] = (("patient", *dims), nominal, {"units": units, "long_name": long_name})
        if len(arrays) > 1:
            stack = np.stack(arrays[1:])
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    lo, hi = np.nanpercentile(stack, [10.0, 90.0], axis=0)
            for tag, arr in (("low", lo), ("high", hi)):
                data[f"{name}_{tag}"] = (
                    ("patient", *dims),
                    arr[None, ...],
                    {
                        "units": units,
                        "long_name": f"{long_name} ({'10th' if tag == 'low' else '90th'} percentile)",
                        "interval": f"10th-90th percentile over {len(arrays) - 1} parameter draws",
                    },
                )

    for name in obs[0]:
        arrs = [o[name] for o in obs]
        if arrs[0].ndim == 3:  # (B, 2, T) layered: pad the epidermis with NaN
            arrs = [np.concatenate([np.full((B, 1, len(t)), np.nan), a], axis=1) for a in arrs]
            put(name, ("site", "layer", "time"), arrs)
        else:
            put(name, ("site", "time"), arrs)
    for name in per_session[0]:
        put(name, ("site", "session"), [p[name] for p in per_session])

    def fixed(
        name: str, arr: np.ndarray, dims: tuple[str, ...], units: str, long_name: str
    ) -> None:
        data[name] = (("patient", *dims), arr[None, ...], {"units": units, "long_name": long_name})

    sd = np.where(prep.session_mask, prep.session_days, np.nan)
    fixed("session_day", sd, ("site", "session"), "d", "Day of the session")
    fixed("needle_length", prep.needle_length_mm, ("site", "session"), "mm", "Needle length")
    fixed(
        "puncture_density",
        prep.puncture_density_cm2,
        ("site", "session"),
        "cm^-2",
        "Punctures per cm²",
    )
    fixed(
        "penetration_depth",
        prep.penetration_depth_um,
        ("site", "session"),
        "um",
        "Channel depth reached",
    )
    fixed(
        "reaches_capillaries",
        prep.reaches_capillaries,
        ("site", "session"),
        "1",
        "Channel reaches the papillary capillaries (pinpoint bleeding)",
    )
    fixed(
        "absorbed_intact",
        prep.absorbed_intact_ug_cm2,
        ("site", "session"),
        "ug/cm^2",
        "Same topical through intact skin",
    )
    fixed(
        "injured_fraction",
        prep.injured_fraction,
        ("site", "session", "layer"),
        "1",
        "Injured volume fraction",
    )
    fixed(
        "absorbed_by_layer",
        prep.absorbed_by_layer_ug_cm2,
        ("site", "session", "layer"),
        "ug/cm^2",
        "Topical absorbed per layer",
    )

    refs = ps.references(ps.used)
    attrs = {
        "title": f"microneedling simulation: {course.name}",
        "disclaimer": DISCLAIMER,
        "microneedling_version": __version__,
        "parameter_set_label": ps.label,
        "parameter_set_hash": ps.hash,
        "seed": int(seed),
        "n_draws": int(n_draws),
        "course_name": course.name,
        "course_toml": course.to_toml(),
        "warnings": json.dumps(list(course.warnings)),
        "sources": json.dumps(
            [{"key": r.key, "citation": r.citation, "url": r.url, "note": r.note} for r in refs]
        ),
        "parameters_used": json.dumps(ps.used),
        "parameters": json.dumps(
            [
                {
                    "name": n,
                    "value": ps.parameters[n].value,
                    "units": ps.parameters[n].units,
                    "kind": ps.parameters[n].kind,
                    "sources": list(ps.parameters[n].sources),
                }
                for n in ps.used
            ]
        ),
        "erythema_threshold": prep.observe.erythema_threshold,
        "oedema_threshold": prep.observe.oedema_threshold,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "Conventions": "CF-1.8",
    }
    return xr.Dataset(data_vars=data, coords=coords, attrs=attrs)

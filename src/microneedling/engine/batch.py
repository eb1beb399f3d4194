"""The engine's batch entry point: many courses (or one course under many parameter sets) in one
batched healing solve, observed on a common time grid.

Everything that runs more than one course goes through :func:`simulate_batch`: the uncertainty
ensemble of :func:`~microneedling.engine.simulate.simulate`, calibration, sensitivity analysis,
virtual cohorts and the planner. It returns a :class:`BatchRun` of unlabelled arrays; end points
are read from it with :mod:`microneedling.engine.endpoints`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.engine.endpoints import EndpointSpec, read_times
from microneedling.engine.prepare import (
    FEATURE_INJURY,
    Prepared,
    nominal_set,
    output_times,
    prepare_pairs,
    prepare_sets,
    take_prepared,
)
from microneedling.errors import InputError
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.physics import healing, observe, percase, pigment, redness
from microneedling.physics.healing_rhs import IX_I, IX_Q, N_DERMAL, PIDX

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.course.model import Course

__all__ = [
    "BatchRun",
    "Reads",
    "read_columns",
    "read_durations",
    "session_jumps",
    "session_stats",
    "simulate_batch",
]


THREADS_FROM = 4
"""Smallest healing solve (cases, floors included) spread over threads; smaller ones run on the
calling thread (same numbers bit for bit). Measured on 2 cores (acne-scars-rolling-cheek, a case
~0.9 ms): 2 cases 1.87 ms on one thread; on two threads 1.13 ms with the other core idle, 1.98 ms
with it busy, 2.1-3.1 ms with both busy, and 5-40% more CPU time in every case (the hand-off).
From 4 cases the idle-core gain (3.6 -> 2.1 ms) outweighs the loss under load (3.7 -> 3.9 ms)."""

OBSERVE_STACKED_FROM = 2
"""Fewest parameter sets whose cases are observed in one call (observation maps and per-session
statistics with the coefficients one value per case, :func:`microneedling.physics.percase.stack`);
fewer are observed set by set. Both give the same numbers bit for bit (tested); one call per set
made the observation ~40% of a 32-draw ``simulate`` (cProfile)."""


# ------------------------------------------------------------------------------ batch
@dataclass(frozen=True)
class BatchRun:
    """Unlabelled outputs of :func:`simulate_batch`: one row per *case* (a treated site of one course
    under one parameter set), all on a common output time grid.

    Attributes
    ----------
    t:
        (T,) output times in days: the union of every course's grid (fine after each session);
        of a run given :class:`Reads`, the output times observed.
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
        ``oedema_days``, ``downtime_days`` (d, expected over patients), ``pih_risk`` (1, PIH after the session under
        a patient-level threshold), ``absorbed_amount`` (ug/cm^2), ``absorbed_intact`` (ug/cm^2,
        the same topical through intact skin), ``enhancement_ratio``.
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


def _prepare_all(
    courses: Sequence[Course], sets: Sequence[ParameterSet], n_sites: np.ndarray
) -> tuple[Prepared, dict[int, Any]]:
    """The cases of every course, in course order: each distinct (course, parameter set) pair is
    prepared once. The same courses under several sets (an ensemble's draws) in one pass over the
    sets (:func:`~microneedling.engine.prepare.prepare_sets`); otherwise every distinct pair in one
    pass (:func:`~microneedling.engine.prepare.prepare_pairs`: a cohort under one set is
    ``prepare_many``, a trial chunk's patients each under their own set are read side by side).
    Also returns each set's observation coefficients (``{id(set): ObserveParameters}``)."""
    # per set (by identity), its distinct courses in order of first appearance
    groups: dict[int, tuple[ParameterSet, dict[int, Course]]] = {}
    for c, s in zip(courses, sets, strict=True):
        groups.setdefault(id(s), (s, {}))[1].setdefault(id(c), c)
    lists = [list(unique) for _, unique in groups.values()]
    first_row: dict[tuple[int, int], int] = {}  # (set, course) -> its first case in ``every``
    row = 0
    if len(groups) > 1 and all(ids == lists[0] for ids in lists):
        # an ensemble (the same courses under every set): every set in one pass
        unique0 = next(iter(groups.values()))[1]
        every, observes = prepare_sets(list(unique0.values()), [s for s, _ in groups.values()])
        observe_of = dict(zip(groups, observes, strict=True))
        for set_id, (_, unique) in groups.items():
            for c in unique.values():
                first_row[(set_id, id(c))] = row
                row += len(c.sites)
    else:
        # the distinct pairs in order of first appearance (no copy when every pair is distinct)
        pairs: dict[tuple[int, int], tuple[Course, ParameterSet]] = {}
        for c, s in zip(courses, sets, strict=True):
            pairs.setdefault((id(s), id(c)), (c, s))
        every, observes = prepare_pairs(
            [c for c, _ in pairs.values()], [s for _, s in pairs.values()]
        )
        observe_of = {}
        for pair, (c, _), op in zip(pairs, pairs.values(), observes, strict=True):
            observe_of.setdefault(pair[0], op)
            first_row[pair] = row
            row += len(c.sites)
    rows = np.concatenate(
        [
            first_row[(id(s), id(c))] + np.arange(k)
            for c, s, k in zip(courses, sets, n_sites, strict=True)
        ]
    )
    if rows.size == every.session_days.shape[0] and np.array_equal(rows, np.arange(rows.size)):
        return every, observe_of
    return take_prepared(every, rows), observe_of


def session_jumps(
    prep: Prepared,
    params: np.ndarray | None = None,
    *,
    injured: np.ndarray | None = None,
    rows: np.ndarray | slice = slice(None),
) -> np.ndarray:
    """The healing model's session impulses (B, K, N_STATE) of prepared cases
    (:func:`microneedling.physics.healing.session_impulses` with the cases' injured fractions,
    depigmenting agent, roller clefts and their ``K_D`` and ``rho_B``).

    ``params`` (default ``prep.params``) may carry per-patient factors; ``rows`` selects cases.
    ``injured`` replaces the injured fractions with a depressed feature's floor
    (:data:`FEATURE_INJURY`). Such a floor case has no depigmenting agent, and the clefts reach
    its dermis in the proportion the channels do: its cleft fraction is the site's times the
    floor's dermal injured fraction over the site's (at most 1; 0 where no needle reaches the
    floor). The clefts' geometry under a feature is not modelled beyond that.
    """
    p = (prep.params if params is None else params)[rows]
    dose = prep.agent_effect[rows]
    cleft = prep.cleft_fraction[rows]
    if injured is None:
        phi = prep.injured_fraction[rows]
    else:
        phi, dose = injured[rows], np.zeros(dose.shape)
        site = prep.injured_fraction[rows][:, :, 1:].sum(axis=2)
        floor = phi[:, :, 1:].sum(axis=2)
        reach = np.divide(floor, site, out=np.zeros(site.shape), where=site > 0.0)
        cleft = cleft * np.minimum(reach, 1.0)
    return healing.session_impulses(phi, dose, p[:, PIDX["K_D"]], cleft, p[:, PIDX["rho_B"]])


def simulate_batch(
    courses: Sequence[Course],
    parameters: ParameterSet | Sequence[ParameterSet] | None = None,
    *,
    healing_factors: Mapping[str, np.ndarray] | None = None,
    t_out: np.ndarray | None = None,
    rtol: float = 1e-6,
    parallel: bool = True,
    reads: Reads | None = None,
    lanes: int = 1,
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
    reads:
        What the caller will read (:class:`Reads`): the time-resolved observables are then
        computed only at the output times those reads need, and ``t`` of the result is those
        times. Default: every output time.
    lanes:
        L > 1: cases that share their session days are integrated L at a time in lockstep (one
        shared step size, SIMD kernels; :func:`~microneedling.physics.healing.solve`); the
        numbers move within the solver's tolerance. Trials use it (their arms' cases share a
        schedule); the default 1 steps each case on its own.
    """

    courses = list(courses)
    n = len(courses)
    if n == 0:
        raise InputError("courses", "[]", "at least one course")
    if parameters is None:
        # the nominal set: calibrated parameters at their posterior median, as simulate() uses
        sets: list[ParameterSet] = [nominal_set(load_parameters())[0]] * n
    elif isinstance(parameters, ParameterSet):
        sets = [parameters] * n
    else:
        sets = list(parameters)
        if len(sets) != n:
            raise InputError(
                "parameters", f"{len(sets)} parameter sets", f"one set or {n} (one per course)"
            )
    n_sites = np.array([len(c.sites) for c in courses])
    starts = np.concatenate([[0], np.cumsum(n_sites)])
    prep, observe_of = _prepare_all(courses, sets, n_sites)
    course_index = np.repeat(np.arange(n), n_sites)
    sites = tuple(s.name for c in courses for s in c.sites)
    horizon = np.repeat(np.array([float(c.horizon_days) for c in courses]), n_sites)
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
        for j, c in enumerate(courses):
            days = prep.session_days[starts[j] : starts[j + 1]]
            grid_key = (float(c.horizon_days), days.tobytes())
            if grid_key not in grids:
                grids[grid_key] = output_times(days, float(c.horizon_days))
        # one grid (one course, or courses alike) is already sorted and unique
        t = (
            next(iter(grids.values()))
            if len(grids) == 1
            else np.unique(np.concatenate(list(grids.values())))
        )
    else:
        t = np.asarray(t_out, dtype=float)
        if t.ndim != 1 or t[0] != 0.0 or t[-1] < horizon.max() or np.any(np.diff(t) <= 0):
            raise InputError(
                "t_out", "given grid", "increasing times from 0 to the largest horizon"
            )
    jumps = session_jumps(prep, params)
    # the floor of each depressed feature (acne scars, wrinkle grooves, striae) is one more case
    # of the same patient, driven by the injury under the feature (physics.scars)
    n_main = params.shape[0]
    floor_of: dict[str, np.ndarray] = {}
    extra = [(params, prep.session_days, jumps)]
    n_rows = n_main
    for feature, name in FEATURE_INJURY.items():
        phi_floor = getattr(prep, name)
        has = np.flatnonzero(np.isfinite(phi_floor[:, 0, 0]))
        floor_of[feature] = np.full(n_main, -1)
        floor_of[feature][has] = n_rows + np.arange(has.size)
        n_rows += has.size
        if has.size:
            extra.append(
                (
                    params[has],
                    prep.session_days[has],
                    session_jumps(prep, params, injured=phi_floor, rows=has),
                )
            )
    # alike cases (a one-at-a-time design repeats most of them) are integrated once: ``distinct``
    # holds one row per distinct case, ``inverse`` maps every row (cases, then floors) to it
    distinct, inverse = healing.solve_distinct(
        np.concatenate([e[0] for e in extra]),
        t,
        np.concatenate([e[1] for e in extra]),
        np.concatenate([e[2] for e in extra]),
        rtol=rtol,
        parallel=parallel and n_rows >= THREADS_FROM,
        lanes=lanes,
    )
    n_steps = distinct.n_steps[inverse[:n_main]]

    # the output times observed: all, or those the reads interpolate between (and t = 0)
    t_obs = t
    cols: np.ndarray | None = None
    if reads is not None:
        unobserved = BatchRun(t, course_index, sites, horizon, {}, {}, prep, n_steps)
        cols = read_columns(unobserved, reads)
        t_obs = t[cols]
    y_all = distinct.y if cols is None else distinct.y[:, cols]
    if distinct.y.shape[0] < inverse.size:  # no copy when every case is distinct
        y_all = y_all[inverse]
    y_obs = y_all[:n_main]

    # observation maps: every case in one call, with each parameter set's coefficients in its
    # cases' rows; or one call per distinct set (their coefficients are numbers)
    set_of_case = np.repeat(np.array([id(s) for s in sets]), n_sites)
    groups = list(dict.fromkeys(set_of_case.tolist()))
    observed = _observe_stacked if len(groups) >= OBSERVE_STACKED_FROM else _observe_per_set
    obs, per_session = observed(
        _ToObserve(
            t,
            t_obs,
            y_obs,
            y_all,
            distinct.y,
            inverse[:n_main],
            cols,
            prep,
            observe_of,
            set_of_case,
            groups,
            floor_of,
            horizon,
            redness.VISIBLE if reads is None else read_durations(reads),
        )
    )
    return BatchRun(
        t=t_obs,
        course_index=course_index,
        site=sites,
        horizon_days=horizon,
        observables=obs,
        per_session=per_session,
        prepared=prep,
        n_steps=n_steps,
    )


@dataclass(frozen=True)
class _ToObserve:
    """What the observation of a batch reads: the solver's grid ``t`` and the observed times
    ``t_obs`` (the columns ``cols`` of ``t``, or all), the cases' states there (``y_obs``), every
    row's including the feature floors' (``y_all``), the distinct cases' states on the whole grid
    (``y_grid``, :func:`~microneedling.physics.healing.solve_distinct`) and the row of it of each
    case (``grid_rows``), the prepared cases, each set's observation coefficients (``observe_of``, by
    ``id`` of the set), each case's set (``set_of_case``), the distinct sets in order
    (``groups``), each feature's floor row per case (``floor_of``) and the horizons."""

    t: np.ndarray
    t_obs: np.ndarray
    y_obs: np.ndarray
    y_all: np.ndarray
    y_grid: np.ndarray
    grid_rows: np.ndarray
    cols: np.ndarray | None
    prep: Prepared
    observe_of: dict[int, Any]
    set_of_case: np.ndarray
    groups: list[int]
    floor_of: dict[str, np.ndarray]
    horizon: np.ndarray
    durations: tuple[str, ...] = redness.VISIBLE


def _observe_stacked(
    w: _ToObserve,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The observables (on ``w.t_obs``) and per-session statistics (on ``w.t``) of every case in one
    call: the coefficients of each case's parameter set side by side (``percase.stack``)."""
    where = {sid: j for j, sid in enumerate(w.groups)}
    index = np.array([where[sid] for sid in w.set_of_case.tolist()])
    op = percase.stack([w.observe_of[sid] for sid in w.groups], index)
    every = dataclasses.replace(w.prep, observe=op)
    o = observe.observables(
        w.t_obs,
        w.y_obs,
        w.prep.baseline,
        op,
        sessions=(w.prep.session_days, w.prep.injured_fraction),
        floors=_floors(w.y_all, w.floor_of, np.arange(index.size), op),
    )
    on_grid = o if w.cols is None else _session_inputs(o, w.y_grid, w.grid_rows, w.cols)
    return o, session_stats(w.t, on_grid, every, w.horizon, w.durations)


def _observe_per_set(
    w: _ToObserve,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`_observe_stacked` one call per distinct parameter set (their coefficients numbers):
    a single set's cases (a cohort) as they are, without copies."""
    C = w.set_of_case.size
    obs: dict[str, np.ndarray] = {}
    per_session: dict[str, np.ndarray] = {}
    for sid in w.groups:
        op = w.observe_of[sid]
        if len(w.groups) == 1:  # one parameter set (a cohort): every case, no copies
            rows = np.arange(C)
            take: np.ndarray | slice = slice(None)
            sub = w.prep if w.prep.observe is op else dataclasses.replace(w.prep, observe=op)
            y_rows = w.y_obs
        else:
            rows = np.flatnonzero(w.set_of_case == sid)
            # the cases of one set are usually contiguous (a walker's or a draw's courses):
            # a slice takes views instead of copies
            take = rows
            if rows[-1] - rows[0] + 1 == rows.size:
                take = slice(int(rows[0]), int(rows[-1]) + 1)
            sub, y_rows = (
                dataclasses.replace(take_prepared(w.prep, take), observe=op),
                w.y_obs[take],
            )
        o = observe.observables(
            w.t_obs,
            y_rows,
            sub.baseline,
            op,
            sessions=(sub.session_days, sub.injured_fraction),
            floors=_floors(w.y_all, w.floor_of, rows, op),
        )
        on_grid = o if w.cols is None else _session_inputs(o, w.y_grid, w.grid_rows[take], w.cols)
        st = session_stats(w.t, on_grid, sub, w.horizon[rows], w.durations)
        if len(w.groups) == 1:
            return o, st
        for target, source in ((obs, o), (per_session, st)):
            for name, arr in source.items():
                if name not in target:
                    target[name] = np.empty((C, *arr.shape[1:]))
                target[name][take] = arr
    return obs, per_session


@dataclass(frozen=True)
class Reads:
    """What a caller will read from a run: end points (:mod:`~microneedling.engine.endpoints`) and
    times (d) at which it interpolates the observables of every case (e.g. a trajectory grid).

    Given to :func:`simulate_batch`, the time-resolved observables are computed only at the output
    times these reads interpolate between, and at t = 0 (the baseline of ``change``
    transforms): the observation maps act on each output time on its own, so the values read are
    those of the whole grid, bit for bit (tested), for a fraction of the work (an in-silico
    trial reads ~60 of ~300 output times). Per-session outputs are computed on the whole grid;
    of the visible durations (``erythema_days``, ``oedema_days``, ``downtime_days``) only those an
    end point reads (:func:`read_durations`), the others NaN (each the same number either way).
    """

    endpoints: tuple[EndpointSpec, ...] = ()
    days: tuple[float, ...] = ()


def read_columns(run: BatchRun, reads: Reads) -> np.ndarray:
    """Indices into ``run.t`` of the output times ``reads`` interpolate between, and 0, sorted.

    Linear interpolation at a read time r (clipped to the grid) uses the two neighbours
    ``t[i1 - 1], t[i1]`` with ``i1 = clip(searchsorted(t, r), 1, T - 1)``; on the grid of the
    kept times the same r finds the same two neighbours and weights."""
    t = run.t
    wanted = [np.array([0.0]), np.asarray(reads.days, dtype=float).reshape(-1)]
    for spec in reads.endpoints:
        if not spec.per_session:
            wanted.append(read_times(run, spec))
    r = np.clip(np.concatenate(wanted), t[0], t[-1])
    r = r[np.isfinite(r)]
    i1 = np.clip(np.searchsorted(t, r, side="left"), 1, len(t) - 1)
    cols: np.ndarray = np.unique(np.concatenate([[0], i1 - 1, i1]))
    return cols


#: each per-session variable of :func:`~microneedling.physics.redness.visible_durations`
DURATION_OF = {"erythema_days": "erythema", "oedema_days": "oedema", "downtime_days": "downtime"}


def read_durations(reads: Reads) -> tuple[str, ...]:
    """The visible durations (:data:`~microneedling.physics.redness.VISIBLE`) whose per-session
    variables (:data:`DURATION_OF`) ``reads`` has an end point of; the others are not computed."""
    read = {DURATION_OF.get(spec.variable) for spec in reads.endpoints if spec.per_session}
    return tuple(n for n in redness.VISIBLE if n in read)


#: the observables the per-session statistics read (on the whole output grid)
SESSION_INPUTS = ("inflammation", "pih_stimulus")


def _session_inputs(
    observed: dict[str, np.ndarray], y: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> dict[str, np.ndarray]:
    """:data:`SESSION_INPUTS` on the whole output grid from the states ``y`` (U, T, N_STATE) of
    the distinct cases, row ``rows[c]`` for case ``c``, for a run observed only at the output
    times ``cols``: the inflammation of each dermal layer and
    the PIH stimulus are states of the healing ODE. Checked against the observation maps at the
    observed times, so that a change of their definition in ``physics.observe`` cannot go
    unnoticed here (a ``RuntimeError``)."""
    inflammation = np.stack([y[..., IX_I][rows], y[..., N_DERMAL + IX_I][rows]], axis=1)
    out = {"inflammation": inflammation, "pih_stimulus": y[..., IX_Q][rows]}
    for name in SESSION_INPUTS:
        if not np.array_equal(out[name][..., cols], observed[name], equal_nan=True):
            raise RuntimeError(
                f"engine.batch: {name} is no longer the healing state physics.observe maps it "
                "from; update _session_inputs"
            )
    return out


_FLOOR_FIELDS = tuple(f.name for f in dataclasses.fields(observe.Floors))


def _floors(
    y: np.ndarray, floor_of: dict[str, np.ndarray], rows: np.ndarray, op: observe.ObserveParameters
) -> observe.Floors:
    """The :class:`~microneedling.physics.observe.Floors` of cases ``rows`` from the states of
    the whole solve ``y`` (main cases first, then the floor cases indexed by ``floor_of``)."""
    shape = (rows.size, y.shape[1])
    out = {name: np.empty(shape) for name in _FLOOR_FIELDS}
    for arr in out.values():
        arr.fill(np.nan)
    for feature, index in floor_of.items():
        at = index[rows]
        has = np.flatnonzero(at >= 0)
        if has.size == 0:
            continue
        gain, tether = observe.floor_state(y[at[has]], percase.take(op, has))
        out[f"{feature}_gain"][has] = gain
        if f"{feature}_tether" in out:
            out[f"{feature}_tether"][has] = tether
    return observe.Floors(**out)


def session_stats(
    t: np.ndarray,
    obs: dict[str, np.ndarray],
    prep: Prepared,
    horizon: float | np.ndarray,
    durations: Collection[str] = redness.VISIBLE,
) -> dict[str, np.ndarray]:

    starts = np.where(prep.session_mask, prep.session_days, np.nan)
    nxt = np.concatenate([prep.session_days[:, 1:], np.full((starts.shape[0], 1), np.inf)], axis=1)
    hz = np.broadcast_to(np.asarray(horizon, dtype=float), (starts.shape[0],))[:, None]
    ends = np.where(prep.session_mask, np.minimum(nxt, hz), np.nan)
    op = prep.observe
    # visible redness and swelling: expected duration over patients (physics.redness)
    inflam = obs["inflammation"]
    seen = redness.visible_durations(
        t,
        inflam[:, 0, :],
        inflam[:, 1, :],
        prep.session_days,
        prep.injured_fraction,
        prep.cleft_fraction,
        starts,
        ends,
        prep.fitzpatrick,
        op.redness,
        durations,
    )
    # PIH: the peak of the pigment stimulus in each session's window against a patient-level
    # threshold; the course risk (max over sessions, the variable's reduce) is then exact
    peak = observe.window_max(t, obs["pih_stimulus"], starts, ends)
    risk = pigment.pih_session_risk(peak, op.pigment)
    return {
        "absorbed_amount": prep.absorbed_ug_cm2,
        "absorbed_intact": prep.absorbed_intact_ug_cm2,
        "enhancement_ratio": prep.enhancement,
        **{var: getattr(seen, name) for var, name in DURATION_OF.items()},
        "pih_risk": np.where(prep.session_mask, risk, np.nan),
    }

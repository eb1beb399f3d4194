"""One course, simulated and labelled: :func:`simulate` returns a :class:`~microneedling.engine.result.Result`.

With ``draws > 0`` the parameter-uncertainty ensemble (:func:`~microneedling.parameters.sampling.sample_parameter_sets`)
runs in the same batch, and each observable gets ``_low``/``_high`` (10th/90th percentiles) beside
its nominal value.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from microneedling.about import DISCLAIMER, __version__
from microneedling.course.model import Course
from microneedling.engine import applicability, variables
from microneedling.engine.batch import simulate_batch
from microneedling.engine.ensemble import nan_percentiles
from microneedling.engine.prepare import Prepared, nominal_set, setting_values, take_prepared
from microneedling.engine.result import Result, labelled_dataset
from microneedling.engine.variables import Variable, by_name
from microneedling.errors import InputError
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.parameters.sampling import (
    Posterior,
    posterior_members,
    sample_parameter_sets,
)
from microneedling.schema import INT64_MAX
from microneedling.vocabulary import LAYERS

__all__ = ["MAX_DRAWS", "MIN_DRAWS_FOR_INTERVALS", "check_arguments", "simulate"]

MAX_DRAWS = 1000
"""Largest ensemble (each draw is one more case of the batched solve; 1000 takes minutes)."""
MIN_DRAWS_FOR_INTERVALS = 20
"""Below this many draws a 10th-90th percentile band is rough (a run carries a warning). Measured
on the first six shipped examples: with 8 draws the nominal value fell outside its own band in 408
of 43,007 read-outs (0.9%), with 20 and with 32 draws in none."""


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def check_arguments(
    course: object, parameters: object, draws: object, seed: object, rtol: object
) -> None:
    """Refuse (:class:`~microneedling.errors.InputError`) arguments :func:`simulate` cannot use,
    naming the argument, the value and what is allowed."""
    if not isinstance(course, Course):
        raise InputError(
            "course",
            type(course).__name__,
            "a Course (Course.from_toml(path), Course.from_dict(data), ...)",
        )
    if parameters is not None and not isinstance(parameters, ParameterSet):
        raise InputError(
            "parameters", type(parameters).__name__, "a ParameterSet (load_parameters()) or None"
        )
    if not _is_int(draws) or not 0 <= int(draws) <= MAX_DRAWS:  # type: ignore[call-overload]
        raise InputError("draws", draws, f"an integer from 0 to {MAX_DRAWS}")
    if seed is not None and (not _is_int(seed) or not 0 <= int(seed) <= INT64_MAX):  # type: ignore[call-overload]
        raise InputError("seed", seed, f"None or an integer from 0 to {INT64_MAX}")
    if (
        isinstance(rtol, bool)
        or not isinstance(rtol, int | float)
        or not 1e-12 <= float(rtol) <= 1e-2
    ):
        raise InputError("rtol", rtol, "a number from 1e-12 to 1e-2")


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

    Bad arguments raise :class:`~microneedling.errors.InputError` (:func:`check_arguments`).
    """
    check_arguments(course, parameters, draws, seed, rtol)

    ps = (parameters or load_parameters()).recording()
    seed = course.seed if seed is None else seed
    # the nominal case: the calibrated parameters at their posterior median (when the shipped
    # posterior applies), the centre of the posterior the draws sample
    centre, post = nominal_set(ps)
    sets = [centre] + (sample_parameter_sets(ps, draws, seed) if draws > 0 else [])
    run = simulate_batch([course] * len(sets), sets, rtol=rtol, parallel=parallel)
    for s in sets:
        if s is not ps:
            ps.record_use(s)  # the nominal and the draws look up the same names
    B = len(course.sites)
    t = run.t
    obs = [
        {k: v[d * B : (d + 1) * B] for k, v in run.observables.items()} for d in range(len(sets))
    ]
    per_session = [
        {k: v[d * B : (d + 1) * B] for k, v in run.per_session.items()} for d in range(len(sets))
    ]
    # the nominal set's cases (views; observe: the nominal set's): every case without draws
    nominal = run.prepared if len(sets) == 1 else take_prepared(run.prepared, slice(0, B))
    ds = _dataset(course, ps, nominal, t, obs, per_session, seed, len(sets) - 1, post)
    return Result(ds)


def _dataset(
    course: Course,
    ps: ParameterSet,
    prep: Prepared,
    t: np.ndarray,
    obs: list[dict[str, np.ndarray]],
    per_session: list[dict[str, np.ndarray]],
    seed: int,
    n_draws: int,
    post: Posterior | None = None,
) -> Any:
    sites = [s.name for s in course.sites]
    B, K = prep.session_days.shape
    coords: dict[str, tuple[Any, dict[str, Any]]] = {
        "patient": (["patient-0"], {}),
        "site": (sites, {}),
        "layer": (list(LAYERS), {}),
        "time": (t, {"units": "d", "long_name": "Time since the start of the course"}),
        "session": (np.arange(K), {}),
    }
    data: dict[str, Any] = {}

    def put(v: Variable, dims: tuple[str, ...], arrays: list[np.ndarray]) -> None:
        attrs = {"units": v.units, "long_name": v.long_name}
        data[v.name] = (("patient", *dims), arrays[0][None, ...], attrs)
        if len(arrays) > 1:
            lo, hi = nan_percentiles(np.stack(arrays[1:]), (10.0, 90.0))  # NaN: not applicable
            for tag, arr in (("low", lo), ("high", hi)):
                data[f"{v.name}_{tag}"] = (
                    ("patient", *dims),
                    arr[None, ...],
                    {
                        **attrs,
                        "long_name": f"{v.long_name} ({'10th' if tag == 'low' else '90th'} "
                        "percentile)",
                        "interval": f"10th-90th percentile over {len(arrays) - 1} parameter draws",
                    },
                )

    unknown = sorted((set(obs[0]) | set(per_session[0])) - set(by_name()))
    if unknown:
        raise KeyError(f"outputs {unknown} have no row in microneedling.engine.variables")
    fixed = setting_values(prep)
    for v in variables.VARIABLES:
        if v.kind == "time" and v.name in obs[0]:
            arrs = [o[v.name] for o in obs]
            if v.layered:  # (B, 2, T): pad the epidermis with NaN
                arrs = [np.concatenate([np.full((B, 1, len(t)), np.nan), a], axis=1) for a in arrs]
                put(v, ("site", "layer", "time"), arrs)
            else:
                put(v, ("site", "time"), arrs)
        elif v.kind == "session" and v.name in per_session[0]:
            put(v, ("site", "session"), [p[v.name] for p in per_session])
        elif v.kind == "setting" and v.name in fixed:
            dims = ("site", "session", "layer") if v.layered else ("site", "session")
            put(v, dims, [fixed[v.name]])

    flags = applicability.flags(course)  # outputs outside the validated settings
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
        "warnings": json.dumps(
            list(course.warnings)
            + _draw_warnings(n_draws)
            + _posterior_warnings(post)
            + [f.message for f in flags]
        ),
        "applicability": json.dumps({f.output: list(f.reasons) for f in flags}),
        **_provenance(ps, post),  # sources, parameters_used, parameters
        "posterior": post.version if post is not None else "",
        "erythema_threshold": prep.observe.erythema_threshold,
        "oedema_threshold": prep.observe.oedema_threshold,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "Conventions": "CF-1.8",
    }
    return labelled_dataset(data, coords, attrs)


_PROVENANCE: dict[tuple[int, int, tuple[str, ...], int], tuple[Any, Any, Any, dict[str, str]]] = {}
"""The provenance attributes of a run, by the identity of its parameter values, references and
posterior and the names it looked up; kept with those objects (at most 64 entries)."""


def _provenance(ps: ParameterSet, post: Posterior | None) -> dict[str, str]:
    """The attributes ``sources`` (the references of the parameters ``ps`` looked up),
    ``parameters_used`` and ``parameters`` (their records; a calibrated member's value and
    interval are the posterior's, ``post``), as JSON text. They depend only on the set's values,
    the names looked up and the posterior, which repeat from run to run (the same kind of course
    looks up the same names): made once per such combination (0.4 ms otherwise)."""
    used = ps.used
    key = (id(ps.parameters), id(ps.references_), tuple(used), id(post))
    hit = _PROVENANCE.get(key)
    if hit is not None and hit[0] is ps.parameters and hit[1] is ps.references_ and hit[2] is post:
        return hit[3]
    # calibrated members: the value the nominal case used (posterior median) and the posterior's
    # 5-95% interval, as `calibrate --write-values` would put them into the files (``post``: the
    # shipped posterior when the nominal case is its median, :func:`nominal_set`)
    calibrated = posterior_members(post) if post is not None else {}
    out = {
        "sources": _json_list(
            ps.references(used),
            lambda r: {"key": r.key, "citation": r.citation, "url": r.url, "note": r.note},
        ),
        "parameters_used": json.dumps(used),
        "parameters": _records_json(ps, used, calibrated),
    }
    if len(_PROVENANCE) >= 64:
        _PROVENANCE.clear()
    _PROVENANCE[key] = (ps.parameters, ps.references_, post, out)
    return out


def _posterior_warnings(post: Any) -> list[str]:
    """A warning when no shipped calibration applies to the run's parameter set (a calibrated value
    edited, or parameter files other than those it was fitted to): the run's numbers are then not
    those of the calibrated model."""
    if post is not None:
        return []
    return [
        "no shipped calibration applies to this parameter set (a calibrated value was edited, or "
        "the parameter files differ from those it was fitted to): the nominal case uses the set's "
        "own values and the draws sample every parameter from its prior interval"
    ]


def _draw_warnings(n_draws: int) -> list[str]:
    if 0 < n_draws < MIN_DRAWS_FOR_INTERVALS:
        return [
            f"draws = {n_draws}: a 10-90% interval from fewer than {MIN_DRAWS_FOR_INTERVALS} "
            "parameter draws is rough, and the nominal value can fall outside it; use 32 or more"
        ]
    return []


_JSON_OF: dict[tuple[int, str], tuple[object, str]] = {}
"""JSON text of a record of an immutable object (a Parameter under its name, a Reference), by the
object's id; the object is kept with its text, so its id is not reused while the entry lives (at
most 4096 entries: a few hundred per parameter set)."""


def _json_of(obj: object, tag: str, record: Callable[[], Any]) -> str:
    hit = _JSON_OF.get((id(obj), tag))
    if hit is None or hit[0] is not obj:
        if len(_JSON_OF) >= 4096:
            _JSON_OF.clear()
        hit = (obj, json.dumps(record()))
        _JSON_OF[(id(obj), tag)] = hit
    return hit[1]


def _json_list(items: Sequence[Any], record: Callable[[Any], Any]) -> str:
    """``json.dumps([record(x) for x in items])`` for immutable ``items``, each item's text
    made once per process (json.dumps of a list joins its items' texts with ", ")."""
    return "[" + ", ".join(_json_of(x, "", partial(record, x)) for x in items) + "]"


def _records_json(ps: ParameterSet, names: Sequence[str], calibrated: dict[str, Any]) -> str:
    """``json.dumps([_record(ps, n, calibrated) for n in names])``: a parameter's record is made
    once per process (0.3 ms for a course's ~130 parameters otherwise); a calibrated member's,
    which carries the posterior's numbers, each time."""
    parts = [
        json.dumps(_record(ps, n, calibrated))
        if n in calibrated
        else _json_of(ps.parameters[n], n, partial(_record, ps, n, {}))
        for n in names
    ]
    return "[" + ", ".join(parts) + "]"


def _record(ps: ParameterSet, name: str, calibrated: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a run records of one parameter it used; a calibrated member's value and interval are
    the posterior's (``calibrated``: :func:`posterior_members`)."""
    p = ps.parameters[name]
    rec = {
        "name": name,
        "value": p.value,
        "units": p.units,
        "low": p.low,
        "high": p.high,
        "kind": p.kind,
        "sources": list(p.sources),
    }
    if name in calibrated:
        c = calibrated[name]
        rec.update(value=c["median"], low=c["low"], high=c["high"], kind="calibrated")
    return rec

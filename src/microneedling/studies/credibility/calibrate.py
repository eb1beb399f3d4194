"""Bayesian calibration of the model on the calibration rows of the literature table.

Every row of ``data/literature.toml`` with ``role = "calibration"`` is reproduced by simulating the
study's own protocol (``data/calibration/protocols.toml``: the settings the study reported, stand-ins
where it is silent). The calibration is a statistical model, not a fit of four numbers:

1. **What to calibrate** comes from sensitivity (:mod:`.screening`): Morris screening of every
   interval parameter and protocol setting over the calibration protocols, then Sobol indices of
   the survivors; the parameters whose total effect on some row is at least that row's noise are
   calibrated, the rest stay at their priors (and the ensemble samples them from the priors).
2. **Likelihood** per row type with a between-study discrepancy per output family and measurement
   error (:mod:`.likelihood`); the settings a study did not report are nuisance parameters of the
   study with uniform priors over their ``ranges`` in ``protocols.toml``.
3. **History matching** (:func:`history_match`) rules out the implausible part of the prior before
   sampling and says whether any parameter vector is consistent with every row.
4. **Sampling** with ``emcee`` (:mod:`.posterior`): vectorised, one batched healing solve per
   half-ensemble update; chunks of steps kept on disk (resume); ArviZ diagnostics; thinned samples
   shipped content-hashed in ``data/calibration``.

Coordinates (what the sampler moves): each calibrated parameter's standard-normal score ``z`` in
its prior (the split normal of its ``value``/``low``/``high``, :func:`microneedling.parameters.
sampling.split_normal_value`; members of a tie share one ``z``), ``log tau`` of each discrepancy
group, and each nuisance setting's standard-normal score ``u`` (uniform over its range through the
normal CDF). The prior is therefore ``N(0, 1)`` on every ``z`` and ``u`` and half-normal on each tau.

Priors of parameters whose file entry already holds a calibrated value come from
``data/calibration/calibrate.toml [priors]`` (the calibration never uses a posterior as a prior).

Command line: ``microneedling calibrate`` (the whole pipeline, resumable; see
:func:`run_pipeline`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from microneedling.course.model import Course
from microneedling.engine.batch import Reads, simulate_batch
from microneedling.engine.endpoints import endpoint_values, parse_endpoint
from microneedling.engine.executor import ChunkStore, map_chunks
from microneedling.engine.prepare import output_times
from microneedling.engine.variables import variable
from microneedling.errors import InputError, InputFileError, MicroneedlingError
from microneedling.io import data_path
from microneedling.parameters.molecules import shipped_molecules
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.parameters.sampling import split_normal_value
from microneedling.physics import needles, pigment
from microneedling.physics.transport import (
    ClosureParameters,
    Solute,
    TransportParameters,
    closure_rate,
    intact_kp,
)
from microneedling.schema import InputModel, Integer, Number, Text
from microneedling.studies.credibility.likelihood import (
    Likelihood,
    RowSpec,
    log_prior_log_tau,
)
from microneedling.studies.credibility.literature import (
    LiteratureRow,
    Protocol,
    load_protocol_file,
    load_protocols,
    rows,
    standard_error,
)
from microneedling.studies.trial.population import load_population, sample_patients
from microneedling.units import convert

__all__ = [
    "MF8",
    "PATIENT_ATTRIBUTES",
    "SETTINGS",
    "TREATMENT_SETTINGS",
    "CalibrationConfig",
    "Factor",
    "FitParameter",
    "HistoryMatch",
    "Nuisance",
    "Problem",
    "apply_patient",
    "apply_settings",
    "build_problem",
    "candidate_factors",
    "clip_to_domains",
    "cohort_courses",
    "cohort_values",
    "fit_parameters",
    "graded_spread",
    "history_match",
    "likelihood_rows",
    "load_config",
    "needs_cohort_spread",
    "nuisances",
    "observed_value",
    "patient_draws",
    "patient_ranges",
    "predict_on_grid",
    "predict_rows",
    "protocol_ranges",
    "recorded_spread",
    "refined_grid",
    "responder_spread",
    "row_specs",
    "row_values",
    "setting_role",
    "spread_at",
    "tolerance_value",
    "tomlable",
    "weighted_median",
    "with_patient_spread",
]

Z95 = 1.6448536269514722  # 95th percentile of N(0, 1): low/high are 5th/95th percentiles
#: the Dermaroller MF8 device table of ``protocols.toml`` (course-schema fields)
MF8: dict[str, Any] = dict(load_protocol_file()["devices"]["mf8"])


def tomlable(x: Any) -> Any:
    """TOML-able data: ``None`` dropped (TOML has no null), tuples as lists, numpy scalars as
    Python numbers, non-finite floats as text ("inf", "nan")."""
    if isinstance(x, dict):
        return {str(k): tomlable(v) for k, v in x.items() if v is not None}
    if isinstance(x, list | tuple):
        return [tomlable(v) for v in x if v is not None]
    if isinstance(x, np.ndarray):
        return tomlable(x.tolist())
    if isinstance(x, np.generic):
        return tomlable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


# ================================================================================ configuration
class CalibrationConfigError(InputFileError):
    """``data/calibration/calibrate.toml`` is malformed; every problem names the field."""


class _Config(InputModel):
    file_kind: ClassVar[str] = "calibration settings"
    error_class: ClassVar[type[InputFileError]] = CalibrationConfigError


_Pos = Annotated[Integer, Field(ge=1)]
_Frac = Annotated[Number, Field(gt=0, lt=1)]


class ScreeningConfig(_Config):
    groups: tuple[Text, ...]
    morris_trajectories: _Pos
    morris_candidates: _Pos
    morris_levels: Annotated[Integer, Field(ge=2)]
    morris_keep: _Pos
    morris_keep_nuisances: Annotated[Integer, Field(ge=0)]
    sobol_n_base: _Pos
    prior_coverage: _Frac
    seed: Integer
    chunk: _Pos
    select_ratio: Annotated[Number, Field(gt=0)]
    select_max: _Pos


class DiscrepancyConfig(_Config):
    prior_scale_relative: Annotated[Number, Field(gt=0)]
    prior_scale_logit: Annotated[Number, Field(gt=0)]
    prior_source: Text


class HistoryConfig(_Config):
    points: _Pos
    waves: _Pos
    cutoff: Annotated[Number, Field(gt=0)]
    rank: _Pos
    inflate: Annotated[Number, Field(ge=1)]
    tau_quantile: _Frac
    seed: Integer


class SamplerConfig(_Config):
    walkers: Annotated[Integer, Field(ge=0)]
    min_walkers: _Pos
    steps: _Pos
    de_fraction: Annotated[Number, Field(ge=0, le=1)]
    burn_fraction: Annotated[Number, Field(ge=0, lt=1)]
    chunk_steps: _Pos
    keep: _Pos
    seed: Integer


class EmulatorConfig(_Config):
    rounds: Annotated[Integer, Field(ge=0)]
    # more rounds, up to this many, while the last one's importance correction is unreliable
    # (k_hat > 0.7); the default, ``rounds``, stops after ``rounds`` whatever k_hat is
    max_rounds: Annotated[Integer, Field(ge=0)] | None = None
    steps: _Pos
    draws: Annotated[Integer, Field(ge=16)]
    hidden: tuple[_Pos, ...]
    members: _Pos
    holdout: Annotated[Number, Field(ge=0, lt=0.5)]
    seed: Integer


class ValidationConfig(_Config):
    draws: Annotated[Integer, Field(ge=2)]
    intervals: tuple[Annotated[Number, Field(gt=0, lt=100)], ...]
    bootstrap: _Pos
    refine_factor: _Pos
    refine_minutes: Annotated[Number, Field(gt=0)]
    refine_days: Annotated[Number, Field(ge=0)]
    rtol_tight: Annotated[Number, Field(gt=0, lt=1e-6)]
    cohort_patients: Annotated[Integer, Field(ge=2)]
    cohort_draws: _Pos
    cohort_ratio: tuple[Number, Number]


class TieConfig(_Config):
    members: tuple[Text, ...]


class PriorConfig(_Config):
    value: Number
    low: Number
    high: Number
    source: tuple[Text, ...]
    note: Text = ""


class CalibrationConfig(_Config):
    """``data/calibration/calibrate.toml`` (see the comments in the file)."""

    screening: ScreeningConfig
    discrepancy: DiscrepancyConfig
    history_matching: HistoryConfig
    sampler: SamplerConfig
    emulator: EmulatorConfig
    validation: ValidationConfig
    ties: tuple[TieConfig, ...] = ()
    priors: dict[str, PriorConfig] = Field(default_factory=dict)

    def fingerprint(self, *sections: str) -> str:
        """Hash of the settings (part of every stage's fingerprint): of the named sections only
        (e.g. ``"history_matching"``), so a stage's stored chunks survive a change of the settings
        of later stages; all of them without names. ``[emulator] max_rounds`` is left out: it
        decides only whether more rounds follow, never what a round computes, so a stored round
        resumes under another ``max_rounds``."""
        dump = self.model_dump(exclude={"emulator": {"max_rounds"}})
        content = {k: dump[k] for k in sections} if sections else dump
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def config_path() -> Path:
    return data_path("calibration", "calibrate.toml")


def load_config(path: Path | None = None) -> CalibrationConfig:
    """Read and validate ``calibrate.toml``; a problem is a :class:`CalibrationConfigError`."""
    return CalibrationConfig.from_toml(path or config_path())


# ==================================================================== rows in prediction units
def _comparison(row: LiteratureRow, protocol: Protocol) -> tuple[float, float | None]:
    """(observed, tolerance) in the units the model prediction is expressed in."""
    tol = row.tolerance
    if protocol.compare == "relative_change":
        rel = row.relative_change_percent
        if rel is not None:
            base = abs(row.baseline or 1.0)
            return rel, None if tol is None else 100.0 * tol / base
        return row.value_in("%"), tol
    return row.value, tol


def observed_value(row: LiteratureRow, protocol: Protocol) -> float:
    """The row's number in the units of :func:`predict_rows` (e.g. % change for score rows)."""
    return _comparison(row, protocol)[0]


def tolerance_value(row: LiteratureRow, protocol: Protocol) -> float | None:
    """The row's tolerance in the units of :func:`predict_rows`."""
    return _comparison(row, protocol)[1]


def row_se(
    row: LiteratureRow, protocol: Protocol, settings: Mapping[str, Any]
) -> tuple[float, str]:
    """The row's standard error in prediction units (a relative-change row's SE is the value's SE
    divided by the baseline, the baseline's own uncertainty neglected) and its rule."""
    se, rule = standard_error(row, settings)
    if protocol.compare == "relative_change" and row.relative_change_percent is not None:
        return 100.0 * se / abs(row.baseline or 1.0), rule + " / |baseline| x 100"
    return se, rule


# ========================================================================= protocol settings
#: protocol settings the calibration may vary as nuisance parameters (integer settings rounded)
SETTINGS: dict[str, bool] = {
    "needle_length_mm": False,
    "passes": True,
    "age_years": True,
    "fitzpatrick": True,
    "interval_days": False,
}


def apply_settings(course: Mapping[str, Any], values: Mapping[str, float]) -> dict[str, Any]:
    """A copy of the course table with protocol settings replaced.

    ``needle_length_mm`` and ``passes`` apply to every session, ``age_years`` and ``fitzpatrick``
    to the patient; ``interval_days`` re-spaces the distinct session days from the first one and
    moves the horizon so that it keeps its distance from the last session (end points written
    ``@last+N`` stay at the study's time point).
    """
    c = copy.deepcopy(dict(course))
    for name, v in values.items():
        if name not in SETTINGS:
            raise InputError("ranges", name, "one of " + ", ".join(SETTINGS))
        if name == "needle_length_mm":
            for s in c["sessions"]:
                s["needle_length_mm"] = float(v)
        elif name == "passes":
            for s in c["sessions"]:
                s["passes"] = round(v)
        elif name in ("age_years", "fitzpatrick"):
            c["patient"][name] = round(v)
        else:
            days = sorted({float(s["day"]) for s in c["sessions"]})
            after = float(c["horizon_days"]) - days[-1]
            new = {d: days[0] + k * float(v) for k, d in enumerate(days)}
            for s in c["sessions"]:
                s["day"] = new[float(s["day"])]
            c["horizon_days"] = new[days[-1]] + after
    return c


def protocol_ranges(key: str, protocol: Protocol | None = None) -> dict[str, tuple[float, float]]:
    """The stand-in ranges of a row's protocol (``ranges`` in ``protocols.toml``): the settings the
    study did not report, each with the interval its uniform prior covers."""
    raw = getattr(protocol, "ranges", None)
    if raw is None:
        raw = load_protocol_file().get("rows", {}).get(key, {}).get("ranges", {})
    out: dict[str, tuple[float, float]] = {}
    for name, lohi in dict(raw or {}).items():
        if name not in SETTINGS:
            raise InputError(
                f"rows.{key}.ranges.{name}", lohi, "a setting among " + ", ".join(SETTINGS)
            )
        try:
            lo, hi = (float(x) for x in lohi)
        except (TypeError, ValueError):
            raise InputError(f"rows.{key}.ranges.{name}", lohi, "[low, high]") from None
        if not lo <= hi:
            raise InputError(f"rows.{key}.ranges.{name}", lohi, "[low, high] with low <= high")
        out[name] = (lo, hi)
    return out


# =============================================================================== predictions
def refined_grid(courses: Sequence[Any], factor: int, minutes: float, days: float) -> np.ndarray:
    """A refined common output grid for calculation verification: every course's default grid
    (:func:`~microneedling.engine.prepare.output_times`) subdivided ``factor`` times, plus a grid of
    ``minutes`` for ``days`` days after every session."""
    parts = []
    for c in courses:
        sd = np.array(sorted({float(s.day) for s in c.sessions}))
        t = output_times(sd, float(c.horizon_days))
        sub = [t]
        for k in range(1, factor):
            sub.append(t[:-1] + np.diff(t) * k / factor)
        step = minutes / (24.0 * 60.0)
        for d in sd:
            sub.append(d + np.arange(0.0, days + step / 2, step))
        g = np.concatenate(sub)
        parts.append(g[(g >= 0) & (g <= float(c.horizon_days))])
    out: np.ndarray = np.unique(np.concatenate(parts))
    return out


def _stage_value(
    row: LiteratureRow,
    protocol: Protocol,
    course: Mapping[str, Any] | None,
    ps: ParameterSet,
    prep_row: int | None,
    run: Any,
    settings: Mapping[str, Any],
) -> float:
    stage = protocol.stage
    if stage == "resealing_time":
        f = float(settings[f"closed_fraction_{protocol.closure}"])
        # the reference channel's rate (these rows' channel sizes are not reported), open or
        # under occlusion (physics.transport.closure_rate)
        k = float(closure_rate(0.0, protocol.occluded, ClosureParameters.from_parameters(ps)))
        return convert(-math.log(1.0 - f) / k, "s", row.units)
    if stage == "intact_kp":
        # the lipid and polar routes of intact stratum corneum at the vehicle pH (the
        # enhancement ratio's denominator without the follicular shunt, which acts only while a
        # film is liquid): physics.transport.intact_kp
        top = protocol.topical or {}
        solute = Solute.from_molecules([shipped_molecules()[str(top["product"])]])
        ph = np.nan if top.get("ph") is None else float(top["ph"])
        kp = intact_kp(solute, TransportParameters.from_parameters(ps), ph)
        return convert(float(kp[0]), "m/s", row.units)
    assert prep_row is not None and course is not None
    if stage == "puncture_density":
        return convert(float(run.prepared.puncture_density_cm2[prep_row, 0]), "1/cm^2", row.units)
    if stage == "channel_depth":
        return convert(float(run.prepared.penetration_depth_um[prep_row, 0]), "um", row.units)
    # channel_diameter: twice the surface radius of the channel
    npar = needles.NeedleParameters.from_parameters(ps)
    d_m = float(course["device"]["needle_diameter_mm"]) * 1e-3
    a = float(np.asarray(needles.channel_surface_radius(d_m, npar.channel_radius_ratio)))
    return convert(2.0 * a, "m", row.units)


def _arms(p: Protocol) -> list[tuple[Protocol, str]]:
    """The protocols a row evaluates: its own (``"main"``) and, for a two-arm row whose comparator
    is treated, the comparator arm (``"reference"``)."""
    out = [(p, "main")]
    if getattr(p, "reference", None) is not None and not getattr(p, "untreated_reference", False):
        ref = p.reference_protocol()
        if ref is not None:
            out.append((ref, "reference"))
    return out


def _contrast(
    row: LiteratureRow, p: Protocol, main: np.ndarray, ref: np.ndarray | None
) -> np.ndarray:
    """A two-arm row's model contrast (difference or ratio of the arms); an untreated comparator
    arm's change is 0 by construction."""
    if getattr(p, "reference", None) is None:
        return main
    ratio = getattr(row, "contrast", "difference") == "ratio"
    if ref is None:  # untreated comparator
        if ratio:
            return np.full_like(main, np.nan)
        return main
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = main / ref if ratio else main - ref
    return out


def row_values(run: Any, row: LiteratureRow, protocol: Protocol, cases: np.ndarray) -> np.ndarray:
    """A row's model number for the given cases of a batch run, in the units of
    :func:`observed_value`, by the protocol's ``compare`` rule (end point, course incidence,
    per-session mean, grade proxy, unit conversion)."""
    assert protocol.endpoint is not None
    spec = parse_endpoint(protocol.endpoint)
    if protocol.compare == "course_incidence":
        # the model's course risk: one PIH threshold per patient, so the chance of PIH in a course
        # is the largest session risk (physics.pigment.pih_course_risk), not 1 - prod(1 - p_k),
        # which would treat the sessions of one patient as independent draws
        risk = run.per_session["pih_risk"][cases]
        out: np.ndarray = 100.0 * pigment.pih_course_risk(risk)
        return out
    v = endpoint_values(run, spec)[cases]
    if spec.per_session:  # an unbounded per-session value (inf) is a result, not "n/a"
        raw = run.per_session[spec.variable][cases]
        v = np.where(np.isnan(v) & np.any(np.isposinf(raw), axis=1), np.inf, v)
    if protocol.compare == "per_session_mean":
        v = v / run.prepared.session_mask[cases].sum(axis=1)
    if protocol.compare == "grade":
        v = (row.baseline or 0.0) * (1.0 + v / 100.0)
    elif protocol.compare == "value" and protocol.threshold is None:
        v = v * convert(1.0, spec.units, row.units)
    # (a responder row's end point stays in its own units: its threshold is in them; the row's
    # units are those of the fraction of patients)
    return np.asarray(v, dtype=float)


#: largest cases x output times of one batched solve of :func:`predict_rows` (memory: each
#: time-resolved observable holds this many numbers)
GRID_BUDGET = 1_000_000


def _grid_batches(courses: Sequence[Any], common_grid: bool) -> list[np.ndarray]:
    """Cases (indices of ``courses``) grouped for batched solves: cases with the same output grid
    (session days and horizon) together, similar grids packed into one batch while the batch's
    cases x union-grid points stay under :data:`GRID_BUDGET` (a union grid of many different
    protocols would make every case output at every protocol's times). With a common grid given,
    one batch."""
    if not courses:
        return []
    if common_grid:
        return [np.arange(len(courses))]
    groups: dict[tuple[float, tuple[float, ...]], list[int]] = {}
    for i, c in enumerate(courses):
        key = (float(c.horizon_days), tuple(sorted({float(s.day) for s in c.sessions})))
        groups.setdefault(key, []).append(i)
    batches: list[np.ndarray] = []
    cur: list[int] = []
    grid: np.ndarray | None = None
    for key in sorted(groups):
        g = output_times(np.array(key[1]), key[0])
        union = g if grid is None else np.union1d(grid, g)
        if cur and len(union) * (len(cur) + len(groups[key])) > GRID_BUDGET:
            batches.append(np.array(cur))
            cur, union = [], g
        cur += groups[key]
        grid = union
    if cur:
        batches.append(np.array(cur))
    return batches


def _batch_reads(
    batches: Sequence[np.ndarray], n_cases: int, unit_case: np.ndarray, protocols: Sequence[Any]
) -> list[Reads]:
    """What each batched solve of :func:`predict_rows` is read for: the end points of the units
    (row arms) whose cases it holds, so that its observables are computed only at the output
    times those end points interpolate between (:class:`~microneedling.engine.batch.Reads`; the
    values read are those of the whole grid, bit for bit). Stage rows read the prepared cases
    only; per-session values are computed on the whole grid either way."""
    batch_of = np.full(n_cases, -1)
    for b, batch in enumerate(batches):
        batch_of[batch] = b
    wanted: list[dict[str, None]] = [{} for _ in batches]
    for u, q in enumerate(protocols):
        if q.stage is not None or q.endpoint is None:
            continue
        cases = unit_case[:, u]
        for b in np.unique(batch_of[cases[cases >= 0]]):
            wanted[int(b)][q.endpoint] = None
    return [Reads(endpoints=tuple(parse_endpoint(e) for e in w)) for w in wanted]


def predict_on_grid(
    lit_rows: Sequence[LiteratureRow],
    ps: ParameterSet,
    name: str,
    grid: np.ndarray,
    protocols: Mapping[str, Protocol] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The rows' standard errors (R,) (:func:`~.literature.standard_error`) and predictions
    (G, R) with parameter ``name`` at each value of ``grid`` and every other parameter at ``ps``:
    the two inputs of a one-parameter profile fit."""
    settings: dict[str, Any] = load_protocol_file()["settings"]
    se = np.array([standard_error(r, settings)[0] for r in lit_rows], dtype=float)
    sets = [ps.with_values({name: float(x)}) for x in np.asarray(grid, dtype=float)]
    return se, np.asarray(predict_rows(lit_rows, sets, protocols, settings), dtype=float)


def predict_rows(
    lit_rows: Sequence[LiteratureRow],
    sets: Sequence[ParameterSet],
    protocols: Mapping[str, Protocol] | None = None,
    settings: Mapping[str, Any] | None = None,
    *,
    overrides: Sequence[Mapping[str, Mapping[str, float]] | None] | None = None,
    t_out: np.ndarray | None = None,
    refine: tuple[int, float, float] | None = None,
    rtol: float = 1e-6,
) -> np.ndarray:
    """Model predictions (S, R) of every row under every parameter set, in batched solves (one per
    group of cases with alike output grids, :func:`_grid_batches`).

    Units are those of :func:`observed_value` (the row's units, or % for relative changes). NaN for
    rows whose protocol is not evaluable. A two-arm row (``reference`` in its protocol) is the
    contrast of its arm and the comparator arm, both simulated.

    ``overrides[s][row_key]`` replaces protocol settings of that row (both arms) under set ``s``
    (:func:`apply_settings`: stand-ins drawn from their ranges). ``refine = (factor, minutes, days)``
    runs on :func:`refined_grid` (calculation verification), ``t_out`` on a given grid, ``rtol`` is
    the integrator tolerance.
    """
    protocols = protocols if protocols is not None else load_protocols()
    settings = settings if settings is not None else load_protocol_file()["settings"]
    prots = [protocols[r.key] for r in lit_rows]
    S, R = len(sets), len(lit_rows)
    if overrides is not None and len(overrides) != S:
        raise InputError("overrides", f"{len(overrides)} entries", f"one per parameter set ({S})")
    units = [(j, q, arm) for j, p in enumerate(prots) if p.evaluable for q, arm in _arms(p)]
    course_objs: dict[str, Any] = {}
    cases_c: list[Any] = []
    cases_s: list[ParameterSet] = []
    case_of: dict[tuple[int, str], int] = {}
    unit_case = np.full((S, len(units)), -1)
    unit_course: dict[tuple[int, int], dict[str, Any]] = {}
    for s in range(S):
        ov = overrides[s] if overrides is not None else None
        for u, (j, q, _) in enumerate(units):
            if q.course is None:
                continue
            c = q.course
            key = lit_rows[j].key
            if ov and key in ov and ov[key]:
                c = apply_settings(c, ov[key])
            ck = json.dumps(c, sort_keys=True)
            unit_course[(s, u)] = c
            if (s, ck) not in case_of:
                if ck not in course_objs:
                    course_objs[ck] = Course.from_dict(c, source=f"protocols.toml [{q.key}]")
                case_of[(s, ck)] = len(cases_c)
                cases_c.append(course_objs[ck])
                cases_s.append(sets[s])
            unit_case[s, u] = case_of[(s, ck)]
    # one batched solve per group of cases whose output grids are alike (a common grid is the
    # union of the cases' grids: cases x union points is kept under GRID_BUDGET)
    runs: list[Any] = []
    where = np.full((len(cases_c), 2), -1)  # case -> (run, row in that run)
    batches = _grid_batches(cases_c, t_out is not None)
    reads = _batch_reads(batches, len(cases_c), unit_case, [q for _, q, _ in units])
    for batch, batch_reads in zip(batches, reads, strict=True):
        grid = t_out
        if refine is not None:
            grid = refined_grid([cases_c[c] for c in batch], *refine)
        run = simulate_batch(
            [cases_c[c] for c in batch],
            [cases_s[c] for c in batch],
            t_out=grid,
            rtol=rtol,
            reads=batch_reads,
        )
        assert run.n_cases == len(batch), "one site per protocol course"
        where[batch, 0] = len(runs)
        where[batch, 1] = np.arange(len(batch))
        runs.append(run)
    vals = np.full((S, len(units)), np.nan)
    for u, (j, q, _) in enumerate(units):
        row = lit_rows[j]
        cases = unit_case[:, u]
        if q.stage is not None:
            for s, ps in enumerate(sets):
                ci = int(cases[s])
                run_s = runs[int(where[ci, 0])] if ci >= 0 else None
                vals[s, u] = _stage_value(
                    row, q, unit_course.get((s, u)), ps, None if ci < 0 else int(where[ci, 1]),
                    run_s, settings,
                )  # fmt: skip
            continue
        for r_i in np.unique(where[cases, 0]):
            sel = np.flatnonzero(where[cases, 0] == r_i)
            vals[sel, u] = row_values(runs[r_i], row, q, where[cases[sel], 1])
    out = np.full((S, R), np.nan)
    for j, p in enumerate(prots):
        if not p.evaluable:
            continue
        main = next(u for u, (jj, _, arm) in enumerate(units) if jj == j and arm == "main")
        ref = [u for u, (jj, _, arm) in enumerate(units) if jj == j and arm == "reference"]
        out[:, j] = _contrast(lit_rows[j], p, vals[:, main], vals[:, ref[0]] if ref else None)
    return out


# ============================================================= virtual cohorts of a protocol
#: Who differs in a virtual cohort (decided 2026-12-07, before any cohort was run with it; the
#: same lists in docs/credibility.md, "Virtual cohorts: who differs"). A protocol setting is an
#: attribute of the PATIENT or of the TREATMENT. Each virtual patient draws its own value of every
#: patient attribute the protocol gives a range for (``ranges`` or ``stand_ins``: uniform on
#: ``[low, high]``, integers on the integers; equal chances over a list of choices; independent
#: draws, seeded per attribute), and keeps the protocol's value of the others; every treatment
#: setting stays at the protocol's value for every patient. A name ending in ``.*`` stands for
#: every field of that table (``scar.*``: the acne_scar condition, ``pigment.*``: the
#: hyperpigmentation condition, the others their condition of the same name; ``topical.*`` and
#: ``reference.*``: the product and the comparator arm). Sex has no range: it stays.
PATIENT_ATTRIBUTES: tuple[str, ...] = (
    "age_years",
    "fitzpatrick",
    "scar_type",
    "scar.*",
    "striae.*",
    "pigment.*",
    "wrinkles.*",
    "pores.*",
    "photoaging.*",
)
#: the treatment's settings (see :data:`PATIENT_ATTRIBUTES`): the study's value for every patient
TREATMENT_SETTINGS: tuple[str, ...] = (
    "device",
    "needle_length_mm",
    "passes",
    "pen_speed_cm_s",
    "sessions",
    "interval_days",
    "site",
    "time_after_last_days",
    "topical.*",
    "reference.*",
)
#: the course condition of each condition table of a protocol
_CONDITION_OF: dict[str, str] = {
    "scar": "acne_scar",
    "pigment": "hyperpigmentation",
    "striae": "striae",
    "wrinkles": "wrinkles",
    "pores": "pores",
    "photoaging": "photoaging",
}


def _matches(name: str, rule: Sequence[str]) -> bool:
    return any(name == r or (r.endswith(".*") and name.startswith(r[:-1])) for r in rule)


def setting_role(name: str) -> str:
    """``"patient"`` or ``"treatment"``: the role of a protocol setting (a name of ``ranges`` or
    ``stand_ins``) in a virtual cohort, by :data:`PATIENT_ATTRIBUTES` and
    :data:`TREATMENT_SETTINGS`; a name in neither is an :class:`InputError` (a new stand-in must be
    given a role)."""
    if _matches(name, PATIENT_ATTRIBUTES):
        return "patient"
    if _matches(name, TREATMENT_SETTINGS):
        return "treatment"
    raise InputError(
        "stand_ins",
        name,
        "a setting with a role in the virtual cohort: "
        + ", ".join((*PATIENT_ATTRIBUTES, *TREATMENT_SETTINGS)),
    )


def patient_ranges(p: Protocol) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """The patient attributes (:data:`PATIENT_ATTRIBUTES`) a protocol gives a range for, by name:
    ``("integer", (low, high))`` (age, skin type), ``("real", (low, high))`` or ``("choice",
    choices)``. Every name of the protocol's ``ranges`` and ``stand_ins`` must have a role
    (:func:`setting_role`)."""
    out: dict[str, tuple[str, tuple[Any, ...]]] = {}
    for name, (lo, hi) in sorted(p.ranges.items()):
        if setting_role(name) == "patient":
            out[name] = ("integer" if SETTINGS[name] else "real", (float(lo), float(hi)))
    for name, spec in sorted(p.stand_ins.items()):
        if setting_role(name) != "patient":
            continue
        numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in spec)
        if numeric and len(spec) == 2:
            out[name] = ("real", (float(spec[0]), float(spec[1])))
        else:
            out[name] = ("choice", tuple(spec))
    return out


def patient_draws(p: Protocol, n: int, seed: int) -> dict[str, np.ndarray]:
    """Each of ``n`` virtual patients' own value of every patient attribute the protocol gives a
    range for (:func:`patient_ranges`): uniform on the range (integers on the integers), equal
    chances over choices; each attribute its own stream, seeded by ``(seed, crc32(name))``, so
    one attribute's draws do not depend on which others the protocol has."""
    out: dict[str, np.ndarray] = {}
    for name, (kind, spec) in patient_ranges(p).items():
        rng = np.random.default_rng([int(seed) % 2**63, 36, zlib.crc32(name.encode())])
        if kind == "integer":
            lo, hi = math.ceil(spec[0]), math.floor(spec[1])
            out[name] = rng.integers(lo, hi + 1, size=n)
        elif kind == "real":
            out[name] = rng.uniform(float(spec[0]), float(spec[1]), size=n)
        else:
            out[name] = np.asarray(spec, dtype=object)[rng.integers(0, len(spec), size=n)]
    return out


def apply_patient(course: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the course table with patient attributes replaced: ``age_years`` and
    ``fitzpatrick`` as :func:`apply_settings`, ``scar_type`` and ``TABLE.FIELD`` (``scar.depth_mm``,
    ``striae.stage``, ...) on every condition of that table's type. A treatment setting, or a
    condition the course does not have, is an :class:`InputError`."""
    own = {k: float(v) for k, v in values.items() if k in ("age_years", "fitzpatrick")}
    c = apply_settings(course, own)
    for name, v in values.items():
        if name in own:
            continue
        if setting_role(name) != "patient":
            raise InputError(
                "patient", name, "a patient attribute: " + ", ".join(PATIENT_ATTRIBUTES)
            )
        table, fld = ("scar", "scar_type") if name == "scar_type" else name.split(".", 1)
        kind = _CONDITION_OF[table]
        hit = [x for site in c["sites"] for x in site["conditions"] if x.get("type") == kind]
        if not hit:
            raise InputError(f"stand_ins.{name}", v, f"a course with a {kind} condition")
        for x in hit:
            x[fld] = v.item() if isinstance(v, np.generic) else v
    return c


def cohort_courses(p: Protocol, n: int, seed: int) -> list[dict[str, Any]]:
    """The course tables of ``n`` virtual patients of a protocol: its course with each patient's
    own draw of the patient attributes (:func:`patient_draws`, :func:`apply_patient`); the
    treatment as the protocol's."""
    assert p.course is not None
    draws = patient_draws(p, n, seed)
    return [apply_patient(p.course, {k: v[i] for k, v in draws.items()}) for i in range(n)]


def cohort_values(
    r: LiteratureRow, p: Protocol, sets: Sequence[ParameterSet], n: int, seed: int
) -> tuple[Any, np.ndarray]:
    """The population preset of a protocol (``acne-scar-adults`` for scar protocols, else
    ``photoaging-adults``) and the row's value for ``n`` of its patients under each of ``sets``,
    (len(sets), n), in one batched solve: the protocol's treatment, each patient's own
    inter-individual factors and attributes (:func:`cohort_courses`: age, skin type and lesion
    drawn within the protocol's ranges; the same patients under every set)."""
    assert p.course is not None
    scar = any(c.get("type") == "acne_scar" for s in p.course["sites"] for c in s["conditions"])
    pop = load_population("acne-scar-adults" if scar else "photoaging-adults")
    batch = sample_patients(pop, 0, n, seed=seed)
    K = len(sets)
    factors = {k: np.tile(v, K) for k, v in batch.factors.items()}
    objs: dict[str, Course] = {}
    courses = []
    for c in cohort_courses(p, n, seed):
        ck = json.dumps(c, sort_keys=True)
        if ck not in objs:
            objs[ck] = Course.from_dict(c, source=f"protocols.toml [{p.key}]")
        courses.append(objs[ck])
    run = simulate_batch(
        courses * K,
        [s for s in sets for _ in range(n)],
        healing_factors=factors or None,
    )
    return pop, row_values(run, r, p, np.arange(K * n)).reshape(K, n)


def needs_cohort_spread(r: LiteratureRow, p: Protocol) -> bool:
    """Whether a row is a graded count (a count whose evaluable protocol names a ``threshold``)
    that reports no between-patient SD of its own, so that :func:`responder_spread` takes one
    from a virtual cohort."""
    graded = p.threshold is not None and r.k is not None and p.course is not None and p.evaluable
    return graded and r.sd is None and r.baseline_sd is None


def responder_spread(
    lit_rows: Sequence[LiteratureRow],
    protocols: Mapping[str, Protocol],
    ps: ParameterSet,
    config: CalibrationConfig,
    seed: int,
    typical: Mapping[str, float],
) -> dict[str, dict[str, Any]]:
    """The between-patient spread of every responder row (a count whose protocol names a
    ``threshold``) that reports no SD of its own: the protocol's course for a virtual cohort of
    ``cohort_patients`` patients at ``ps``, differing by the inter-individual factors of a
    population preset (``acne-scar-adults`` for scar protocols, else ``photoaging-adults``) and by
    their own age, skin type and lesion drawn within the protocol's ranges (:func:`cohort_values`,
    :data:`PATIENT_ATTRIBUTES`), as in ``validate.cohort_spread``.

    ``typical`` holds each row's value for the typical patient at ``ps`` (the nominal prediction).
    Returns ``{key: {"sd", "offset", "patients", "population"}}``: the SD of the end point over the
    cohort and the cohort mean minus the typical patient's value (both in the end point's units).
    """
    out: dict[str, dict[str, Any]] = {}
    N = config.validation.cohort_patients
    for r in lit_rows:
        p = protocols[r.key]
        if not needs_cohort_spread(r, p):
            continue
        pop, v = cohort_values(r, p, [ps], N, seed)
        out[r.key] = {
            "sd": float(np.nanstd(v[0], ddof=1)),
            "offset": float(np.nanmean(v[0]) - typical[r.key]),
            "patients": N,
            "population": str(getattr(pop, "name", "")),
        }
    return out


# ================================================================================== factors
@dataclass(frozen=True)
class Factor:
    """One uncertain parameter coordinate: the standard-normal score ``z`` of its prior.

    ``members`` move together (a tie); each member has its own prior ``(value, low, high)``
    (floats, or dicts for keyed parameters: entries move with one common z), read as the mode and
    5th/95th percentiles of a split normal (in log space when positive).
    """

    label: str
    members: tuple[str, ...]
    priors: tuple[tuple[Any, Any, Any], ...]
    prior_source: str  # "parameter file" | "calibrate.toml [priors]"

    def values_at(self, z: float) -> dict[str, Any]:
        """Every member's value at score ``z``."""
        out: dict[str, Any] = {}
        for name, (v, lo, hi) in zip(self.members, self.priors, strict=True):
            if isinstance(v, dict):
                out[name] = {k: split_normal_value(v[k], lo[k], hi[k], z) for k in v}
            else:
                out[name] = split_normal_value(v, lo, hi, z)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "members": list(self.members),
            "prior": [
                {"member": m, "value": v, "low": lo, "high": hi}
                for m, (v, lo, hi) in zip(self.members, self.priors, strict=True)
            ],
            "prior_source": self.prior_source,
        }


def _prior_of(name: str, ps: ParameterSet, config: CalibrationConfig) -> tuple[Any, Any, Any, str]:
    if name in config.priors:
        p = config.priors[name]
        return p.value, p.low, p.high, "calibrate.toml [priors]"
    par = ps.parameters[name]
    if par.low is None or par.high is None:
        raise InputError(name, "no interval", "a parameter with low/high (an uncertain one)")
    if par.kind == "calibrated":
        raise InputError(
            f"calibrate.toml priors.{name}",
            "missing",
            "a pre-calibration prior for a parameter whose file holds a calibrated value",
        )
    return par.value, par.low, par.high, "parameter file"


def candidate_factors(ps: ParameterSet, config: CalibrationConfig) -> list[Factor]:
    """Every uncertain parameter of the screened groups as a factor (ties merged), in file order."""
    ties = {t.members[0]: t.members for t in config.ties}
    tied = {m for t in config.ties for m in t.members[1:]}
    out = []
    for n in ps.names():
        par = ps.parameters[n]
        if n.split(".")[0] not in config.screening.groups or n in tied:
            continue
        if n not in config.priors and (par.low is None or par.high is None):
            continue
        if not isinstance(par.value, dict) and par.low == par.high and n not in config.priors:
            continue
        members = ties.get(n, (n,))
        priors = []
        src = "parameter file"
        for m in members:
            v, lo, hi, s = _prior_of(m, ps, config)
            priors.append((v, lo, hi))
            if s != "parameter file":
                src = s
        out.append(Factor(n, members, tuple(priors), src))
    return out


@dataclass(frozen=True)
class FitParameter:
    """A fitted coordinate of the previous least-squares calibration (``protocols.toml [[fit]]``);
    kept because the literature checks read it."""

    label: str
    members: tuple[str, ...]
    start: float


def fit_parameters(settings_file: Mapping[str, Any] | None = None) -> tuple[FitParameter, ...]:
    """The ``[[fit]]`` entries of ``protocols.toml`` (empty when the file has none)."""
    raw = settings_file or load_protocol_file()
    return tuple(
        FitParameter(f["label"], tuple(f["members"]), float(f["start"])) for f in raw.get("fit", ())
    )


# ================================================================================= nuisances
@dataclass(frozen=True)
class Nuisance:
    """An unreported setting of one study: uniform on ``[low, high]`` (integers: on the integers),
    reached from a standard-normal score ``u`` through the normal CDF."""

    study: str
    setting: str
    low: float
    high: float
    rows: tuple[str, ...]
    #: the range as protocols.toml gives it, when part of it is refused by the course
    given: tuple[float, float] | None = None

    @property
    def integer(self) -> bool:
        return SETTINGS[self.setting]

    @property
    def label(self) -> str:
        return f"{self.study}:{self.setting}"

    def at(self, u: np.ndarray) -> np.ndarray:
        from scipy.special import ndtr

        q = ndtr(np.asarray(u, dtype=float))
        if self.integer:
            lo, hi = math.ceil(self.low), math.floor(self.high)
            out: np.ndarray = np.minimum(lo + np.floor(q * (hi - lo + 1)), hi)
            return out
        out = self.low + (self.high - self.low) * q
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "study": self.study,
            "setting": self.setting,
            "low": self.low,
            "high": self.high,
            "integer": self.integer,
            "rows": list(self.rows),
            **({"given": list(self.given)} if self.given else {}),
        }


def study_of(row: LiteratureRow) -> str:
    """The study a row belongs to: its ``study`` field when present, else its first source."""
    return str(getattr(row, "study", None) or row.source)


def nuisances(
    lit_rows: Sequence[LiteratureRow], protocols: Mapping[str, Protocol]
) -> list[Nuisance]:
    """One nuisance per (study, setting with a range); rows of a study share it. Rows of one study
    that give one setting different ranges are refused (they describe one protocol). A range end
    the study's courses refuse is moved inward (:func:`_feasible`; the given range is kept in
    ``Nuisance.given`` and reported)."""
    found: dict[tuple[str, str], tuple[float, float, list[str]]] = {}
    for r in lit_rows:
        p = protocols[r.key]
        if not p.evaluable or p.course is None:
            continue
        for name, (lo, hi) in protocol_ranges(r.key, p).items():
            key = (study_of(r), name)
            if key in found and found[key][:2] != (lo, hi):
                raise InputError(
                    f"rows.{r.key}.ranges.{name}",
                    [lo, hi],
                    f"the range of the other rows of study {key[0]} {list(found[key][:2])}",
                )
            found.setdefault(key, (lo, hi, []))[2].append(r.key)
    out = []
    for (s, n), (lo, hi, rs) in found.items():
        courses: list[Mapping[str, Any]] = [
            c for c in (protocols[k].course for k in rs) if c is not None
        ]
        lo2, hi2 = _feasible(courses, n, lo, hi)
        out.append(
            Nuisance(s, n, lo2, hi2, tuple(rs), (lo, hi) if (lo2, hi2) != (lo, hi) else None)
        )
    return out


def _accepted(courses: Sequence[Mapping[str, Any]], setting: str, value: float) -> bool:
    try:
        for c in courses:
            Course.from_dict(apply_settings(c, {setting: value}), source="range check")
    except (InputError, InputFileError):
        return False
    return True


def _feasible(
    courses: Sequence[Mapping[str, Any]], setting: str, lo: float, hi: float
) -> tuple[float, float]:
    """The part of ``[lo, hi]`` every course of the study accepts: an end the course refuses (an
    age below 18, a needle past the site's limit) moves inward, in steps of 1 for integer
    settings and of a tenth of the range otherwise; a range no value of which is accepted is
    refused naming the setting."""
    step = 1.0 if SETTINGS[setting] else max((hi - lo) / 10.0, 1e-9)
    a, b = lo, hi
    while a <= b and not _accepted(courses, setting, a):
        a += step
    while b >= a and not _accepted(courses, setting, b):
        b -= step
    if a > b:
        raise InputError(
            f"ranges.{setting}", [lo, hi], "a range with values the study's course accepts"
        )
    return (a, b)


# ================================================================================= row specs
def _family(row: LiteratureRow) -> str:
    return str(getattr(row, "family", None) or row.observable)


def _count(row: LiteratureRow, protocol: Protocol) -> int | None:
    """The row's count ``k`` of ``n`` patients: its ``k`` field, or for an incidence reported as a
    percentage of ``n`` patients (``compare = "course_incidence"``, no bound) ``round(value n /
    100)``; ``None`` for other rows."""
    k = getattr(row, "k", None)
    if k is not None:
        return int(k)
    if protocol.compare == "course_incidence" and row.n and row.bound is None and row.units == "%":
        return round(row.value * row.n / 100.0)
    return None


def is_level_row(row: LiteratureRow, protocol: Protocol) -> bool:
    """Whether the row compares a level that cannot be negative (compared on the log scale by the
    likelihood): a needles/transport stage (density, depth, diameter, resealing time), or an end
    point's own value (``transform = "value"``) of a variable that is not a change from baseline
    (:attr:`~microneedling.engine.variables.Variable.signed`), read as a value or a per-session
    mean, or a grade (a positive baseline grade times one plus the change); in one arm (no
    contrast) and not a responder threshold."""
    if getattr(row, "direction_only", False) or protocol.reference is not None:
        return False
    if protocol.stage is not None:
        return True
    if protocol.endpoint is None or protocol.threshold is not None:
        return False
    if protocol.compare == "grade":  # the baseline grade times (1 + change): a grade after
        return (row.baseline or 0.0) > 0
    if protocol.compare not in ("value", "per_session_mean"):
        return False
    spec = parse_endpoint(protocol.endpoint)
    return spec.transform == "value" and not variable(spec.variable).signed


def _graded_scale(
    key: str, threshold: float, sd: float | None, offset: float
) -> tuple[float, float]:
    """A graded count's ordered-probit scale and threshold: SE = the between-patient ``sd``
    (reported, or a virtual cohort's), the protocol's ``threshold`` moved by the cohort's
    ``offset`` from the typical patient (so the typical patient's prediction stays the mean)."""
    if sd is None or not sd > 0:
        raise InputError(
            f"{key}.sd",
            sd,
            "a positive between-patient SD for a graded count (reported, or from a virtual cohort)",
        )
    return float(sd), float(threshold) - float(offset)


def row_specs(
    lit_rows: Sequence[LiteratureRow],
    protocols: Mapping[str, Protocol],
    settings: Mapping[str, Any],
    config: CalibrationConfig,
    patient_spread: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[list[RowSpec], list[str], np.ndarray, np.ndarray]:
    """The likelihood's view of the rows: (specs, group names, group prior scales, prediction
    factors). A prediction factor converts the model's number to the likelihood's (0.01 for a count
    row predicted in %).

    A graded count whose row reports no between-patient SD takes ``patient_spread[key] = (sd,
    offset)`` from a virtual cohort (:func:`responder_spread`):
    the patients' SD and the cohort mean minus the typical patient's value (the threshold is moved
    by it, so the typical patient's prediction stays the likelihood's ``f``).

    Row types (the literature's ``kind``: count, direction, two_arm, bound, value): a count (``k``
    of ``n``) -> ``binomial`` (``ordinal`` when the protocol names a ``threshold``: a graded count);
    a direction-only row -> a bound at 0 (``lower`` for an increase), the probit likelihood of the
    sign; ``bound`` -> ``upper``/``lower`` (censored); a value or a two-arm contrast (predicted as
    the contrast of the two simulated arms) -> ``gaussian``. Groups: the row's ``family`` (or observable); count rows form
    their own groups (their tau is on the logit scale). Discrepancy scale: ``|observed|``, or for a
    row at 0 the median ``|observed|`` of its group's other rows (else its SE, else 1). A row
    without a spread whose value is 0 gets SE = ``default_cv`` x that scale / sqrt(n). A positive level
    (:func:`is_level_row`: a duration, depth, density or absolute score) is compared on the log scale
    (``RowSpec.log``; the likelihood's module docstring).
    """
    groups: dict[str, float] = {}
    kinds, observed, raw_se, factors, gnames, extra = [], [], [], [], [], []
    for r in lit_rows:
        p = protocols[r.key]
        if not p.evaluable:
            raise InputError(f"{r.key}", "not evaluable", "an evaluable calibration row")
        k = _count(r, p)
        fam = _family(r)
        if k is not None:
            if not r.n:
                raise InputError(f"{r.key}.n", r.n, "the number of patients of a count row")
            threshold = p.threshold
            kind = "ordinal" if threshold is not None else "binomial"
            g = f"{fam} (counts, logit)"
            groups.setdefault(g, config.discrepancy.prior_scale_logit)
            y = k / r.n
            if kind == "ordinal":
                assert threshold is not None
                sd = r.sd if r.sd is not None else r.baseline_sd
                offset = 0.0
                if sd is None and patient_spread is not None and r.key in patient_spread:
                    sd, offset = patient_spread[r.key]
                se, thr = _graded_scale(r.key, threshold, sd, offset)
                extra.append((thr, p.direction, k, r.n))
                factors.append(1.0)
            else:
                se = 0.0
                extra.append((math.nan, "below", k, r.n))
                factors.append(0.01 if r.units == "%" else 1.0)
            kinds.append(kind)
            observed.append(y)
            raw_se.append(se)
        else:
            g = fam
            groups.setdefault(g, config.discrepancy.prior_scale_relative)
            y = observed_value(r, p)
            se, _ = row_se(r, p, settings)
            if getattr(r, "direction_only", False):
                # a sign without its size: a bound at 0 (an increase: the model above 0)
                kinds.append(r.bound or ("lower" if r.value >= 0 else "upper"))
                y, se = 0.0, 0.0
            else:
                kinds.append("gaussian" if r.bound is None else str(r.bound))
            observed.append(y)
            raw_se.append(se)
            extra.append((math.nan, "below", 0, 0))
            factors.append(1.0)
        gnames.append(g)
    names = list(groups)
    typical = {
        g: float(
            np.median([abs(y) for y, gg in zip(observed, gnames, strict=True) if gg == g and y])
        )
        if any(y for y, gg in zip(observed, gnames, strict=True) if gg == g)
        else math.nan
        for g in names
    }
    specs = []
    for r, kind, y, se, g, (thr, direction, k, n) in zip(
        lit_rows, kinds, observed, raw_se, gnames, extra, strict=True
    ):
        if kind == "binomial":
            scale = 1.0
        else:
            scale = abs(y) if y else typical[g]
            if not math.isfinite(scale) or scale <= 0:
                scale = se if se > 0 else 1.0
            if kind != "ordinal" and se <= 0:
                # a row at 0 without a reported spread (a direction, "no change"): the default CV
                # of the group's typical magnitude
                cv = float(settings["default_cv"])
                se = cv * scale / math.sqrt(r.n or 1)
        specs.append(
            RowSpec(
                key=r.key,
                kind=kind,
                study=study_of(r),
                group=names.index(g),
                observed=float(y),
                se=float(se),
                scale=float(scale),
                n=int(n),
                k=int(k),
                threshold=thr,
                direction=direction,
                # a two-arm contrast gets its own discrepancy: in the level rows' block a shared
                # delta (scaled by each row's |observed|) would "explain" a contrast the model
                # lacks and drag the levels with it (seen 2026-12-06: Ogunjimi's black - white
                # 16.3 h pulled the five lifetimes to half their observed values)
                readout=f"{r.observable}:{r.layer or ''}"
                + (":contrast" if protocols[r.key].reference is not None else ""),
                log=kind in ("gaussian", "upper", "lower")
                and y > 0
                and is_level_row(r, protocols[r.key]),
            )
        )
    return specs, names, np.array([groups[g] for g in names]), np.array(factors)


def clip_to_domains(ps: ParameterSet, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` moved inside each parameter's physical domain (integers rounded)."""
    out: dict[str, Any] = {}
    for n, v in values.items():
        dom = ps.parameters[n].domain
        out[n] = {k: dom.clip(x) for k, x in v.items()} if isinstance(v, dict) else dom.clip(v)
    return out


# ================================================================================== problem
class ModelEvaluationError(MicroneedlingError):
    """The model could not be evaluated for a parameter vector."""


@dataclass
class Problem:
    """The calibration's posterior over ``x = [z (P), log tau (Q), u (M)]`` (see the module doc).

    Vectorised: every method takes ``x`` of shape (W, D) and evaluates all W vectors in one
    batched healing solve.
    """

    rows: tuple[LiteratureRow, ...]
    protocols: Mapping[str, Protocol]
    settings: Mapping[str, Any]
    base: ParameterSet
    factors: tuple[Factor, ...]
    nuisances: tuple[Nuisance, ...]
    group_names: tuple[str, ...]
    group_prior_scale: np.ndarray
    likelihood: Likelihood
    pred_factor: np.ndarray
    skipped: tuple[tuple[str, str], ...] = ()
    n_evaluations: int = field(default=0, compare=False)
    #: worker processes of :func:`parallel_evaluation` (never pickled: a worker evaluates serially)
    _pool: Any = field(default=None, init=False, compare=False, repr=False)
    _workers: int = field(default=1, init=False, compare=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"], state["_workers"] = None, 1
        return state

    @property
    def P(self) -> int:
        return len(self.factors)

    @property
    def Q(self) -> int:
        return len(self.group_names)

    @property
    def M(self) -> int:
        return len(self.nuisances)

    @property
    def ndim(self) -> int:
        return self.P + self.Q + self.M

    @property
    def labels(self) -> list[str]:
        """Coordinate names: parameter labels, ``tau[group]``, ``study:setting``."""
        return (
            [f.label for f in self.factors]
            + [f"tau[{g}]" for g in self.group_names]
            + [n.label for n in self.nuisances]
        )

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != self.ndim:
            raise InputError("x", f"shape {x.shape}", f"(W, {self.ndim})")
        P, Q = self.P, self.Q
        return x[:, :P], x[:, P : P + Q], x[:, P + Q :]

    def parameter_sets(self, z: np.ndarray) -> list[ParameterSet]:
        """One parameter set per row of ``z``; a value past a physical bound (a split-normal tail)
        stops at it, as in the ensemble."""
        out = []
        for w, zw in enumerate(np.atleast_2d(z)):
            values: dict[str, Any] = {}
            for f, zi in zip(self.factors, zw, strict=True):
                values.update(f.values_at(float(zi)))
            out.append(
                self.base.with_values(clip_to_domains(self.base, values), label=f"calibration#{w}")
                if values
                else self.base
            )
        return out

    def settings_at(self, u: np.ndarray) -> list[dict[str, dict[str, float]]]:
        """Per walker: ``{row key: {setting: value}}`` of the nuisance values."""
        u = np.atleast_2d(u)
        out: list[dict[str, dict[str, float]]] = [{} for _ in range(u.shape[0])]
        for m, nu in enumerate(self.nuisances):
            vals = nu.at(u[:, m])
            for w in range(u.shape[0]):
                for key in nu.rows:
                    out[w].setdefault(key, {})[nu.setting] = float(vals[w])
        return out

    def predict(
        self, x: np.ndarray, *, strict: bool = False, columns: Sequence[int] | None = None
    ) -> np.ndarray:
        """Predictions (W, R) in likelihood units; NaN rows for a vector the model cannot run
        (found by bisecting the batch), unless ``strict``. Inside :func:`parallel_evaluation` the
        vectors are split over its worker processes (the numbers do not depend on the split: each
        case of a batched solve is integrated on its own steps).

        ``columns``: only these rows are simulated; the other columns are NaN. A row's course
        does not depend on the other rows, but a batched solve outputs at the union of its cases'
        output times, and an end point between two of them is interpolated: these numbers agree
        with the whole evaluation's within its calculation uncertainty, not bit for bit (Kenkel
        2021's 1-month attenuation moved by 3.2e-4 relative in the test, the other rows by
        < 1e-8).
        """
        x = np.atleast_2d(np.asarray(x, dtype=float))
        R = len(self.rows)
        if columns is None:
            cols = list(range(R))
        else:
            cols = list(columns)
            ints = all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in cols)
            if not ints or any(not 0 <= c < R for c in cols) or len(set(cols)) != len(cols):
                raise InputError(
                    "columns", columns, f"distinct integer row indices in 0 .. {R - 1}"
                )
            cols = [int(c) for c in cols]
        if self._pool is not None and self._workers > 1 and len(x) > 1:
            parts = np.array_split(x, min(self._workers, len(x)))
            n = len(parts)
            outs = list(self._pool.map(_predict_in_worker, parts, [strict] * n, [columns] * n))
            self.n_evaluations += len(x)
            return np.vstack(outs)
        z, _, u = self.split(x)
        sets = self.parameter_sets(z)
        ov = self.settings_at(u) if self.M else None
        self.n_evaluations += len(sets)
        out = np.full((len(sets), len(self.rows)), np.nan)
        try:
            pred = predict_rows(
                [self.rows[c] for c in cols], sets, self.protocols, self.settings, overrides=ov
            )
        except (MicroneedlingError, FloatingPointError, ValueError, ZeroDivisionError) as exc:
            if strict:
                raise ModelEvaluationError(f"model evaluation failed: {exc}") from exc
            if len(sets) == 1:
                return out
            h = len(sets) // 2
            return np.vstack(
                [self.predict(x[:h], columns=columns), self.predict(x[h:], columns=columns)]
            )
        out[:, cols] = pred * self.pred_factor[None, cols]
        return out

    def log_prior(self, x: np.ndarray) -> np.ndarray:
        z, lt, u = self.split(x)
        out: np.ndarray = (
            -0.5 * np.sum(z**2, axis=1)
            - 0.5 * np.sum(u**2, axis=1)
            - 0.5 * (self.P + self.M) * math.log(2 * math.pi)
            + (log_prior_log_tau(lt, self.group_prior_scale) if self.Q else 0.0)
        )
        return out

    def evaluate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log posterior (W,), predictions (W, R), log-likelihood per study (W, S))."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        lp = self.log_prior(x)
        pred = np.full((x.shape[0], len(self.likelihood.specs)), np.nan)
        by = np.full((x.shape[0], len(self.likelihood.studies)), -np.inf)
        ok = np.isfinite(lp)
        if np.any(ok):
            pred[ok] = self.predict(x[ok])
            _, lt, _ = self.split(x[ok])
            by[ok] = self.likelihood.by_study(pred[ok], np.exp(lt))
        total = lp + np.sum(by, axis=1)
        total = np.where(np.isnan(total), -np.inf, total)
        return total, pred, by

    def log_prob_blobs(self, x: np.ndarray) -> np.ndarray:
        """emcee's vectorised function: rows ``[log posterior, predictions..., log-lik per
        study...]`` (the blobs keep the predictions of every sample)."""
        lp, pred, by = self.evaluate(x)
        return np.column_stack([lp, pred, by])

    def fingerprint(self) -> str:
        """Hash of what defines the posterior: rows, protocols, prior, factors, nuisances."""
        content = {
            "rows": self.likelihood.describe(),
            "protocols": {
                r.key: [
                    self.protocols[r.key].course,
                    self.protocols[r.key].endpoint,
                    self.protocols[r.key].compare,
                ]
                for r in self.rows
            },
            # the model's numbers (not the acceptance limits, which no equation reads)
            "parameter_set": self.base.model_hash,
            "factors": [f.to_dict() for f in self.factors],
            "nuisances": [n.to_dict() for n in self.nuisances],
            "groups": list(self.group_names),
            "group_prior_scale": self.group_prior_scale.tolist(),
        }
        return hashlib.sha256(
            json.dumps(content, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]


def graded_spread(
    lit_rows: Sequence[LiteratureRow],
    protocols: Mapping[str, Protocol],
    ps: ParameterSet,
    config: CalibrationConfig,
) -> dict[str, tuple[float, float]]:
    """``{key: (sd, offset)}`` of the graded counts among ``lit_rows`` (a count whose protocol
    names a ``threshold``) that report no between-patient SD: :func:`responder_spread` of a
    virtual cohort at ``ps`` (the calibration's prior mode), seeded by ``[screening] seed``. The
    fit holds it fixed, as ``validate`` holds its own at the nominal set; the ordinal likelihood
    then maps the typical patient's change to the fraction past the threshold."""
    graded = [r for r in lit_rows if needs_cohort_spread(r, protocols[r.key])]
    if not graded:
        return {}
    typical = predict_rows(graded, [ps], protocols)[0]
    spread = responder_spread(
        graded,
        protocols,
        ps,
        config,
        config.screening.seed,
        {r.key: float(v) for r, v in zip(graded, typical, strict=True)},
    )
    return {k: (float(v["sd"]), float(v["offset"])) for k, v in spread.items()}


def weighted_median(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per column of ``x`` (N, D), the median under the non-negative ``weights`` (N,): the
    smallest value whose cumulative weight reaches half the total (an importance-weighted
    posterior's median)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    w = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    if w.shape != (x.shape[0],) or not np.sum(w) > 0:
        raise InputError(
            "weights", f"shape {w.shape}, sum {np.sum(w)}", f"({x.shape[0]},), sum > 0"
        )
    order = np.argsort(x, axis=0, kind="stable")
    cum = np.cumsum(w[order], axis=0)
    first = np.argmax(cum >= 0.5 * cum[-1], axis=0)
    cols = np.arange(x.shape[1])
    out: np.ndarray = x[order[first, cols], cols]
    return out


def spread_at(
    problem: Problem, z: np.ndarray, config: CalibrationConfig
) -> dict[str, tuple[float, float]]:
    """:func:`graded_spread` of the problem's graded counts at the parameter point ``z`` (P,)
    (the unreported settings at their stand-ins): a virtual cohort at that point."""
    ps = problem.parameter_sets(np.atleast_2d(np.asarray(z, dtype=float)))[0]
    return graded_spread(problem.rows, problem.protocols, ps, config)


def with_patient_spread(problem: Problem, spread: Mapping[str, tuple[float, float]]) -> Likelihood:
    """The problem's likelihood with the between-patient SD and offset of its graded counts (the
    ``ordinal`` rows without a reported SD) replaced by ``spread`` ({key: (sd, offset)}), as
    :func:`row_specs` places them (SE = sd, threshold = the protocol's minus offset); every other
    row as it is. A graded count missing from ``spread`` is an :class:`InputError`."""
    rows_by_key = {r.key: r for r in problem.rows}
    specs = []
    for s in problem.likelihood.specs:
        r = rows_by_key.get(s.key)
        if (
            s.kind == "ordinal"
            and r is not None
            and needs_cohort_spread(r, problem.protocols[r.key])
        ):
            if r.key not in spread:
                raise InputError("patient_spread", sorted(spread), f"a spread for {r.key}")
            threshold = problem.protocols[r.key].threshold
            assert threshold is not None  # needs_cohort_spread: a graded count has one
            se, thr = _graded_scale(r.key, threshold, *spread[r.key])
            s = dataclasses.replace(s, se=se, threshold=thr)
        specs.append(s)
    return Likelihood(specs, problem.likelihood.n_groups)


def recorded_spread(
    summary: Mapping[str, Any], protocols: Mapping[str, Protocol]
) -> dict[str, tuple[float, float]]:
    """The graded counts' (sd, offset) a posterior was fitted with, read back from its summary's
    ``rows`` (SE and threshold of each ``ordinal`` row; offset = the protocol's threshold minus
    the row's)."""
    out: dict[str, tuple[float, float]] = {}
    for row in summary.get("rows", []):
        if row.get("kind") != "ordinal" or row["key"] not in protocols:
            continue
        thr = protocols[row["key"]].threshold
        if thr is not None:
            out[row["key"]] = (float(row["se"]), float(thr) - float(row["threshold"]))
    return out


def likelihood_rows(
    lit_rows: Sequence[LiteratureRow], protocols: Mapping[str, Protocol]
) -> tuple[list[LiteratureRow], list[tuple[str, str]]]:
    """The calibration rows of ``lit_rows`` that enter the likelihood, and ``(key, reason)`` of
    those left out: a row the model cannot compare yet (its protocol not evaluable: awaiting an
    observable, an unmodelled co-treatment) and a row whose number set a parameter by hand (it is
    already in the model; in the likelihood it would count twice, also when that parameter is
    sampled, since its prior was formed from the row). An :class:`InputError` for a validation
    row, a row without a protocol, or none left."""
    cal = list(lit_rows)
    skipped = [
        (r.key, protocols[r.key].reason)
        for r in cal
        if r.key in protocols and not protocols[r.key].evaluable
    ]
    cal = [r for r in cal if r.key not in protocols or protocols[r.key].evaluable]
    if any(r.role != "calibration" for r in cal):
        bad = [r.key for r in cal if r.role != "calibration"]
        raise InputError("rows", bad, "calibration rows only (never a validation row)")
    if not cal:
        raise InputError("rows", [], "at least one calibration row")
    missing = [r.key for r in cal if r.key not in protocols]
    if missing:
        raise InputError("protocols.toml", missing, "a [rows.KEY] table for every calibration row")
    skipped += [
        (r.key, f"its number set {', '.join(r.sets_parameters)} by hand (derived)")
        for r in cal
        if r.sets_parameters
    ]
    cal = [r for r in cal if not r.sets_parameters]
    if not cal:
        raise InputError("rows", [], "at least one calibration row")
    return cal, skipped


def build_problem(
    labels: Sequence[str] | None = None,
    *,
    config: CalibrationConfig | None = None,
    parameters: ParameterSet | None = None,
    lit_rows: Sequence[LiteratureRow] | None = None,
    exclude_studies: Sequence[str] = (),
    nuisance_labels: Sequence[str] | None = None,
    stand_in_sd: Mapping[str, float] | None = None,
    patient_spread: Mapping[str, tuple[float, float]] | None = None,
) -> Problem:
    """The calibration problem with the factors named by ``labels`` (default: every candidate
    factor; screening passes the selected ones). Rows default to ``rows("calibration")`` (never a
    validation row); ``exclude_studies`` leaves studies out (leave-one-study-out).

    ``nuisance_labels`` (``study:setting``; default all) are the nuisance settings sampled; the
    others stay at their stand-ins and ``stand_in_sd[row key]`` (their spread, from screening) is
    added in quadrature to the row's SE (continuous rows)."""
    config = config or load_config()
    base = parameters or load_parameters()
    raw = load_protocol_file()
    settings = raw["settings"]
    protocols = load_protocols()
    cal = list(lit_rows) if lit_rows is not None else rows("calibration")
    cal = [r for r in cal if study_of(r) not in set(exclude_studies)]
    cal, skipped = likelihood_rows(cal, protocols)
    cands = {f.label: f for f in candidate_factors(base, config)}
    if labels is None:
        factors = list(cands.values())
    else:
        unknown = [lab for lab in labels if lab not in cands]
        if unknown:
            raise InputError("factors", unknown, f"labels of candidate factors ({len(cands)})")
        factors = [cands[lab] for lab in labels]
    # the base set holds each calibrated member at its prior mode (not a previous posterior)
    values: dict[str, Any] = {}
    for f in factors:
        values.update(f.values_at(0.0))
    base_at_prior = (
        base.with_values(clip_to_domains(base, values), label=f"{base.label}+prior")
        if values
        else base
    )
    specs, gnames, gscale, pf = row_specs(
        cal,
        protocols,
        settings,
        config,
        patient_spread={
            **graded_spread(
                [r for r in cal if r.key not in (patient_spread or {})],
                protocols,
                base_at_prior,
                config,
            ),
            **(patient_spread or {}),
        },
    )
    extra = dict(stand_in_sd or {})
    specs = [
        dataclasses.replace(sp, se=math.hypot(sp.se, extra[sp.key] * f))
        if sp.key in extra and sp.kind not in ("binomial", "ordinal")
        else sp
        for sp, f in zip(specs, pf, strict=True)
    ]
    nus = nuisances(cal, protocols)
    if nuisance_labels is not None:
        known = {n.label for n in nus}
        unknown = [lab for lab in nuisance_labels if lab not in known]
        if unknown:
            raise InputError("nuisances", unknown, f"labels of nuisance settings ({sorted(known)})")
        nus = [n for n in nus if n.label in set(nuisance_labels)]
    return Problem(
        rows=tuple(cal),
        protocols=protocols,
        settings=settings,
        base=base_at_prior,
        factors=tuple(factors),
        nuisances=tuple(nus),
        group_names=tuple(gnames),
        group_prior_scale=gscale,
        likelihood=Likelihood(specs, len(gnames)),
        pred_factor=pf,
        skipped=tuple(skipped),
    )


# ================================================================ parallel evaluation
_WORKER_PROBLEM: Problem | None = None


def _init_worker(problem: Problem, parent: int) -> None:
    global _WORKER_PROBLEM
    _WORKER_PROBLEM = problem
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int, every: float = 0.5) -> None:
    """End this worker when the process that started it is gone (killed, e.g. by a second
    SIGTERM or SIGKILL, it could not stop its workers; they would wait for work forever)."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _stop_now(pool: ProcessPoolExecutor, others: set[int | None]) -> None:
    """Cancel what is queued and end the workers at once (a chunk in flight is abandoned: its
    result would be discarded anyway), instead of waiting for the running tasks.

    The workers are the pool's processes and any child process started since the pool was made
    (``others``: the children before it): an interrupt that arrives while ``submit`` is starting
    a worker leaves that process out of the pool's table (seen in CI: a worker alive after the
    interrupted block).

    A second interrupt while the workers are being ended (a signal redelivered after a C
    callback, a second Ctrl-C) does not cut this short: the caller re-raises the first one once
    every worker is gone. A worker still alive 5 s after its SIGTERM is killed (:func:`_end_processes`)."""
    table = list((getattr(pool, "_processes", None) or {}).values())  # no public handle in 3.11
    late = [c for c in multiprocessing.active_children() if c.pid not in others]
    procs = list({p.pid: p for p in table + late}.values())
    pool.shutdown(wait=False, cancel_futures=True)
    _end_processes(procs)


def _end_processes(procs: list[Any], grace: float = 5.0) -> None:
    """SIGTERM, wait up to ``grace`` s in all, then SIGKILL what is left; interrupts meanwhile are
    absorbed (seen in CI: a redelivered SIGINT cut the wait short and a worker outlived the block)."""
    deadline = time.monotonic() + grace
    todo = list(procs)
    while todo:
        try:
            for proc in todo:
                if proc.is_alive():
                    proc.terminate()
            for proc in todo:
                proc.join(timeout=max(0.0, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5.0)
            todo = []
        except BaseException:  # a second interrupt: finish ending the workers first
            todo = [p for p in todo if p.is_alive()]


def _predict_in_worker(x: np.ndarray, strict: bool, columns: Sequence[int] | None) -> np.ndarray:
    assert _WORKER_PROBLEM is not None, "a worker of parallel_evaluation"
    if columns is None:  # every row: the call any Problem subclass answers
        return _WORKER_PROBLEM.predict(x, strict=strict)
    return _WORKER_PROBLEM.predict(x, strict=strict, columns=columns)


@contextmanager
def parallel_evaluation(problem: Problem, workers: int) -> Iterator[Problem]:
    """Evaluate ``problem``'s parameter vectors on ``workers`` processes while the block runs.

    The workers are started once (spawned: each imports the package and loads the compiled
    integrator from its cache, a few seconds) and receive the problem once; every
    :meth:`Problem.predict` of more than one vector then splits its vectors over them. One worker
    (or fewer) evaluates in this process. The processes are shut down when the block ends; on an
    error or an interruption at once (queued work cancelled, running work abandoned), and a worker
    whose parent process died ends itself."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise InputError("workers", workers, "a whole number of processes, at least 1")
    if workers == 1:
        yield problem
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds threads
    others = {c.pid for c in multiprocessing.active_children()}
    pool = ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(problem, os.getpid())
    )
    problem._pool, problem._workers = pool, workers
    try:
        yield problem
    except BaseException:
        _stop_now(pool, others)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        problem._pool, problem._workers = None, 1


# ========================================================================= history matching
@dataclass
class HistoryMatch:
    """Waves of history matching: every point evaluated (latent coordinates with tau at the
    conservative quantile), its implausibility per row and the non-implausible set of the last
    wave."""

    x: np.ndarray  # (N, D)
    wave: np.ndarray  # (N,)
    implausibility: np.ndarray  # (N, R)
    log_posterior: np.ndarray  # (N,) at tau = prior median
    predictions: np.ndarray  # (N, R) in likelihood units (NaN: the model could not run)
    cutoff: float
    rank: int
    keys: tuple[str, ...]
    seconds: float = 0.0

    def score(self) -> np.ndarray:
        """The rank-th largest implausibility of each point."""
        imp = np.sort(np.nan_to_num(self.implausibility, nan=np.inf), axis=1)[:, ::-1]
        out: np.ndarray = imp[:, min(self.rank, imp.shape[1]) - 1]
        return out

    @property
    def nroy(self) -> np.ndarray:
        """Mask of the non-implausible points (all waves)."""
        out: np.ndarray = self.score() <= self.cutoff
        return out

    def summary(self) -> dict[str, Any]:
        waves = []
        for w in np.unique(self.wave):
            m = self.wave == w
            waves.append(
                {
                    "wave": int(w),
                    "points": int(m.sum()),
                    "non_implausible": int(np.sum(self.nroy & m)),
                    "fraction": float(np.mean(self.nroy[m])),
                }
            )
        imp = np.nan_to_num(self.implausibility, nan=np.inf)
        best = np.min(imp, axis=0)
        return {
            "cutoff": self.cutoff,
            "rank": self.rank,
            "waves": waves,
            "rows": [
                {
                    "key": k,
                    "min_implausibility": float(f"{b:.4g}") if np.isfinite(b) else None,
                    "fraction_implausible": float(np.mean(imp[:, j] > self.cutoff)),
                    "conflict": bool(b > self.cutoff),
                }
                for j, (k, b) in enumerate(zip(self.keys, best, strict=True))
            ],
            "empty": bool(not np.any(self.nroy)),
            "seconds": round(self.seconds, 1),
        }


def _hm_chunk(
    item: tuple[Problem, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chunk of history-matching points: (implausibility (n, R), log posterior (n,),
    predictions (n, R))."""
    problem, x, tau_cons = item
    lp, pred, _ = problem.evaluate(x)
    imp = problem.likelihood.implausibility(pred, np.broadcast_to(tau_cons, (len(x), problem.Q)))
    return imp, lp, pred


def _saver(store: ChunkStore | None, offset: int) -> Any:
    """``on_result`` of a wave: chunk ``i`` saved as ``offset + i`` (None without a store)."""
    if store is None:
        return None

    def save(i: int, r: Any) -> None:
        store.save(offset + i, r)

    return save


def _count_points(r: tuple[np.ndarray, ...]) -> float:
    return float(len(r[1]))


def _sobol_normal(n: int, d: int, seed: int) -> np.ndarray:
    from scipy.special import ndtri
    from scipy.stats import qmc

    q = qmc.Sobol(d, scramble=True, seed=seed).random(n)
    out: np.ndarray = ndtri(np.clip(q, 1e-6, 1 - 1e-6))
    return out


def history_match(
    problem: Problem,
    config: CalibrationConfig,
    store_dir: Path | None = None,
    *,
    progress: bool = False,
) -> HistoryMatch:
    """Waves of history matching on the batched solver (no emulator: a course costs milliseconds).

    Wave 1: a scrambled Sobol sequence over the prior (``z``, ``u``; tau at its median in the log
    posterior, at ``tau_quantile`` in the implausibility, the most tolerant plausible value).
    Wave k: a normal fitted to the non-implausible points so far, covariance x ``inflate``.
    Chunks are kept in ``store_dir`` (resume).
    """
    from scipy.special import erfinv

    hc = config.history_matching
    t0 = time.perf_counter()
    D, P, Q = problem.ndim, problem.P, problem.Q
    q_tau = problem.group_prior_scale * math.sqrt(2.0) * float(erfinv(hc.tau_quantile))
    med_tau = problem.group_prior_scale * math.sqrt(2.0) * float(erfinv(0.5))
    xs: list[np.ndarray] = []
    waves: list[np.ndarray] = []
    imps: list[np.ndarray] = []
    lps: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    chunk = config.screening.chunk
    store = None
    if store_dir is not None:
        fp = config.fingerprint("history_matching")
        store = ChunkStore(store_dir, f"hm2-{problem.fingerprint()}-{fp}-{chunk}")
    offset = 0
    for w in range(1, hc.waves + 1):
        if w == 1:
            lat = _sobol_normal(hc.points, D - Q, hc.seed)
        else:
            prev = np.concatenate(xs)
            score = np.sort(np.concatenate(imps), axis=1)[:, ::-1][
                :, min(hc.rank, imps[0].shape[1]) - 1
            ]
            good = prev[score <= hc.cutoff]
            if len(good) < 2:
                good = prev[np.argsort(score)[: max(2, D + 1)]]
            keep = np.concatenate([np.arange(P), np.arange(P + Q, D)])
            g = good[:, keep]
            mu = g.mean(axis=0)
            cov = np.atleast_2d(np.cov(g.T)) * hc.inflate + 1e-9 * np.eye(len(keep))
            rng = np.random.default_rng([hc.seed, w])
            lat = rng.multivariate_normal(mu, cov, size=hc.points)
        x = np.empty((len(lat), D))
        x[:, :P] = lat[:, :P]
        x[:, P : P + Q] = np.log(med_tau)[None, :]
        x[:, P + Q :] = lat[:, P:]
        items = [(problem, x[i : i + chunk], q_tau) for i in range(0, len(x), chunk)]
        done: set[int] = set()
        if store is not None:
            done = {i - offset for i in store.done() if offset <= i < offset + len(items)}
        results = map_chunks(
            _hm_chunk,
            items,
            progress=progress,
            label=f"history matching, wave {w}",
            skip=done,
            on_result=_saver(store, offset),
            rate=_count_points,
            rate_unit="points",
        )
        for i in done:
            assert store is not None
            results[i] = store.load(offset + i)
        offset += len(items)
        imp = np.concatenate([r[0] for r in results if r is not None])
        lp = np.concatenate([r[1] for r in results if r is not None])
        preds.append(np.concatenate([r[2] for r in results if r is not None]))
        xs.append(x)
        waves.append(np.full(len(x), w))
        imps.append(imp)
        lps.append(lp)
    return HistoryMatch(
        x=np.concatenate(xs),
        wave=np.concatenate(waves),
        implausibility=np.concatenate(imps),
        log_posterior=np.concatenate(lps),
        predictions=np.concatenate(preds),
        cutoff=hc.cutoff,
        rank=hc.rank,
        keys=problem.likelihood.keys,
        seconds=time.perf_counter() - t0,
    )


def initial_walkers(hm: HistoryMatch, problem: Problem, walkers: int, seed: int) -> np.ndarray:
    """Starting positions of the ensemble: distinct non-implausible points (random, so the
    ensemble starts dispersed over the plausible region), topped up with the least implausible
    ones; each walker's ``log tau`` drawn from its prior."""
    rng = np.random.default_rng(seed)
    finite = np.isfinite(hm.log_posterior)
    nroy = np.flatnonzero(hm.nroy & finite)
    if len(nroy) >= walkers:
        pick = rng.choice(nroy, size=walkers, replace=False)
    else:
        order = [i for i in np.argsort(hm.score()) if finite[i] and i not in set(nroy)]
        pick = np.concatenate([nroy, np.array(order[: walkers - len(nroy)], dtype=int)])
    if len(pick) < walkers:
        raise ModelEvaluationError(
            f"history matching found {len(pick)} evaluable points; {walkers} walkers need more"
        )
    x = hm.x[pick].copy()
    P, Q = problem.P, problem.Q
    tau = np.abs(rng.standard_normal((walkers, Q))) * problem.group_prior_scale[None, :]
    x[:, P : P + Q] = np.log(np.maximum(tau, 1e-3 * problem.group_prior_scale[None, :]))
    return x

"""What each kind of run takes, computes and keeps.

:func:`prepare` validates a request when it is submitted (a bad course, patient file, trial spec or
option is refused then, with a 422, never later in a job) and resolves stored records into the
run's ``request`` (so a run needs nothing else to execute or to resume). :func:`execute` calls the
same engine, studies and report writers the command line calls, writes the outputs into a
temporary directory (atomically, as the CLI does), and returns them; the caller moves them into the
file store. Long runs report progress and stop at the next chunk when cancelled (:class:`Progress`);
a trial keeps its finished chunks in a chunk store, so a run taken over after a crash or a restart
computes only the missing ones.

User molecules: a request whose course (or trial arm) names a product that is not shipped is
validated inside the organisation's molecules (:class:`~microneedling.service.db.MoleculeRecord`),
and the tables of those it names are stored in the request (``request["molecules"]``, ``{key:
table}``): a run executes inside them (:func:`request_molecules`), whether or not the records still
exist, and another organisation's molecule is an unknown product.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
import xarray as xr
from sqlalchemy.orm import Session

from microneedling.about import DISCLAIMER
from microneedling.course.model import Course
from microneedling.course.patient import PatientFile
from microneedling.engine.endpoints import parse_endpoint
from microneedling.engine.executor import ChunkStore, map_chunks
from microneedling.engine.result import Result
from microneedling.engine.simulate import simulate
from microneedling.errors import InputError, InputFileError, MicroneedlingError, ParameterError
from microneedling.io import (
    atomic_directory,
    write_csv_atomic,
    write_netcdf_atomic,
    write_text_atomic,
)
from microneedling.parameters.molecules import (
    Molecule,
    molecules_from_tables,
    molecules_toml,
    named_products,
    shipped_molecules,
    using_molecules,
)
from microneedling.parameters.parameter_set import load_parameters
from microneedling.reports import absorb as absorb_report
from microneedling.reports import charts
from microneedling.reports.credibility import delivery_table, write_report
from microneedling.reports.plan import write_plan_directory
from microneedling.reports.run import render_html, write_figures
from microneedling.reports.sensitivity import save_indices_png
from microneedling.reports.sensitivity import write_report as write_sensitivity_report
from microneedling.reports.trial import write_trial
from microneedling.service.config import Settings
from microneedling.service.db import CourseRecord, MoleculeRecord, PatientRecord, PopulationRecord
from microneedling.service.errors import error_body, problem
from microneedling.service.schemas import (
    REQUESTS,
    AbsorbRequest,
    PlanRequest,
    SensitivityRequest,
    SimulateRequest,
    TrialRequest,
    ValidateRequest,
)
from microneedling.studies import absorb as absorb_study
from microneedling.studies.credibility.delivery import predict as delivery_predict
from microneedling.studies.credibility.report import build_report
from microneedling.studies.planning.search import predict, search
from microneedling.studies.sensitivity import (
    default_endpoints,
    indices_table,
    noise_warnings,
    sensitive_names,
    sobol_indices,
    validate_names,
)
from microneedling.studies.trial.population import list_populations, load_population
from microneedling.studies.trial.run import run_chunk, run_trial, trial_chunks
from microneedling.studies.trial.spec import TrialSpec

__all__ = [
    "DERIVED",
    "MEDIA_TYPES",
    "RESULT_BLOB",
    "Cancelled",
    "Outputs",
    "Prepared",
    "Progress",
    "Scope",
    "StoredResultError",
    "derive",
    "error_json",
    "execute",
    "jsonable",
    "media_type",
    "molecule_reader",
    "organisation_molecules",
    "prepare",
    "request_molecules",
    "simulate_inline",
]

log = logging.getLogger("microneedling.service")

MEDIA_TYPES = {
    ".nc": "application/x-netcdf",
    ".csv": "text/csv; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
    ".json": "application/json",
    ".toml": "application/toml",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}

#: files of a finished run made on first download from its stored result (kind -> names)
DERIVED: dict[str, tuple[str, ...]] = {
    "simulate": ("result.nc", "endpoints.csv", "report.html", "course.toml")
}


def media_type(name: str) -> str:
    return MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def jsonable(x: Any) -> Any:
    """``x`` as JSON data: numpy scalars and arrays as Python values, NaN as null, ±inf as text."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    if x is None or isinstance(x, bool | int | float | str):
        return x
    return str(x)


def error_json(exc: BaseException) -> dict[str, Any]:
    """The stored error of a failed run: the API's error body."""
    if isinstance(exc, InputFileError):
        return error_body(422, exc.one_line(), [problem(p) for p in exc.problems])
    if isinstance(exc, InputError):
        return error_body(422, str(exc), [problem(exc)])
    if isinstance(exc, MicroneedlingError):
        return error_body(400, str(exc) or type(exc).__name__)
    return error_body(500, "internal error; it was logged on the server")


# ------------------------------------------------------------------------------ progress
class Cancelled(Exception):
    """The run was cancelled; raised at the next check."""


class Progress:
    """Progress of one run: ``update`` records it (written to the database by the job manager's
    heartbeat), ``check`` raises :class:`Cancelled` once cancellation was requested."""

    def __init__(self) -> None:
        self.fraction = 0.0
        self.text = ""
        self.cancelled = False
        self.notes: dict[str, Any] = {}

    def update(self, fraction: float, text: str) -> None:
        self.fraction = float(min(max(fraction, 0.0), 1.0))
        self.text = text[:500]

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled()


# ---------------------------------------------------------------------------- preparing
@dataclass
class Prepared:
    """A validated request: what the run stores and the records it belongs to."""

    kind: str
    request: dict[str, Any]
    patient_id: int | None = None
    course_id: int | None = None
    inline: bool = False


def _course_data(
    db: Session, org: int, course_id: int | None, course: Mapping[str, Any] | None
) -> tuple[dict[str, Any], int | None, int | None]:
    """The course of a request (stored or inline; validated by the caller, inside the
    organisation's molecules); with its course and patient ids."""
    if course_id is not None:
        rec = db.get(CourseRecord, course_id)
        if rec is None or rec.organisation_id != org:
            raise InputError("course_id", course_id, "the id of a course of your organisation")
        return dict(rec.data), rec.id, rec.patient_id
    assert course is not None
    return dict(course), None, None


def prepare(
    kind: str, payload: Any, db: Session, organisation_id: int, settings: Settings
) -> Prepared:
    """Validate a request of ``kind`` (see the module docstring); raises :class:`InputError` /
    :class:`InputFileError` naming the field. A course or trial naming a product that is not
    shipped is validated inside the organisation's molecules, and the tables of those it names
    are kept in the request (``molecules``)."""
    if kind not in REQUESTS:
        raise InputError("kind", kind, "one of " + ", ".join(repr(k) for k in REQUESTS))
    req = REQUESTS[kind].from_dict(payload, source=f"{kind} request")
    out = req.model_dump(mode="json", exclude_none=True)
    return _prepare(req, out, db, organisation_id, settings)


def organisation_molecules(db: Session, org: int) -> dict[str, Molecule]:
    """The molecules an organisation added (``POST /molecules``), by key. A stored table that no
    longer validates (or whose key the shipped library took since) is left out: a course naming it
    gets the unknown-product error."""
    out: dict[str, Molecule] = {}
    rows = db.scalars(sa.select(MoleculeRecord).where(MoleculeRecord.organisation_id == org))
    for rec in rows.all():
        try:
            out.update(molecules_from_tables({rec.key: dict(rec.data)}, source="molecule"))
        except ParameterError as exc:
            log.warning("molecule %s of organisation %s left out: %s", rec.id, org, exc)
    return out


def molecule_reader(db: Session, org: int) -> Callable[[], dict[str, Molecule]]:
    """The organisation's molecules (:func:`organisation_molecules`), read on the first call only:
    a request that scopes many courses (a list of them) reads the database once, and not at all
    when none of them names a product that is not shipped."""
    return functools.cache(lambda: organisation_molecules(db, org))


@dataclass(frozen=True)
class Scope:
    """What :func:`organisation_scope` found in a course or a trial."""

    unshipped: frozenset[str]
    """The products it names that are not shipped: the organisation's molecules, or products
    unknown to it (a validation inside the scope refuses those)."""
    molecules: dict[str, Molecule]
    """The organisation's molecules it names, by key (sorted)."""


@contextlib.contextmanager
def organisation_scope(
    db: Session,
    org: int,
    data: Any,
    molecules: Callable[[], dict[str, Molecule]] | None = None,
) -> Iterator[Scope]:
    """The block inside the organisation's molecules when ``data`` (a course, a trial) names a
    product that is not shipped (the database is read only then: a course of shipped products
    costs nothing); yields what it names (:class:`Scope`). ``molecules``: the organisation's
    molecules from a :func:`molecule_reader` shared by many courses (one query for them all)."""
    names = named_products(data)
    shipped = shipped_molecules()
    unshipped = frozenset(n for n in names if n not in shipped)
    read = molecules or (lambda: organisation_molecules(db, org))
    own = read() if unshipped else {}
    with using_molecules(own):
        yield Scope(unshipped, {k: own[k] for k in sorted(names) if k in own})


def request_molecules(request: Mapping[str, Any]) -> dict[str, Molecule]:
    """The user molecules stored in a prepared request (``request["molecules"]``; none: ``{}``)."""
    tables = request.get("molecules")
    return molecules_from_tables(tables, source="molecules") if tables else {}


def _keep_molecules(out: dict[str, Any], used: Mapping[str, Molecule]) -> None:
    """Keep the tables of the user molecules a request names in it (the run needs nothing else)."""
    if used:
        out["molecules"] = {k: dict(m.table) for k, m in used.items()}


def _prepare(
    req: Any, out: dict[str, Any], db: Session, organisation_id: int, settings: Settings
) -> Prepared:
    if isinstance(req, SimulateRequest | AbsorbRequest):
        kind = "simulate" if isinstance(req, SimulateRequest) else "absorb"
        data, cid, pid = _course_data(db, organisation_id, req.course_id, req.course)
        out["course"] = data
        with organisation_scope(db, organisation_id, data) as scope:
            # a stored course was validated when it was stored; again when it names a product
            # that is not shipped (a user molecule, perhaps deleted since)
            if req.course is not None or scope.unshipped or isinstance(req, AbsorbRequest):
                course = Course.from_dict(data, source="course")
                if isinstance(req, AbsorbRequest):  # refuses a course without a topical
                    absorb_study.topical_sessions(course, load_parameters())
        _keep_molecules(out, scope.molecules)
        inline = isinstance(req, SimulateRequest) and (
            not req.background and req.draws <= settings.inline_max_draws
        )
        return Prepared(kind, out, pid, cid, inline)
    if isinstance(req, PlanRequest):
        pid = None
        if req.patient_id is not None:
            rec = db.get(PatientRecord, req.patient_id)
            if rec is None or rec.organisation_id != organisation_id:
                raise InputError(
                    "patient_id", req.patient_id, "the id of a patient of your organisation"
                )
            out["patient"], pid = dict(rec.data), rec.id
        _patient_file(out)
        return Prepared("plan", out, pid, None)
    if isinstance(req, SensitivityRequest):
        data, cid, pid = _course_data(db, organisation_id, req.course_id, req.course)
        out["course"] = data
        with organisation_scope(db, organisation_id, data) as scope:
            _sensitivity_factors(out, settings)  # validates the course
        _keep_molecules(out, scope.molecules)
        return Prepared("sensitivity", out, pid, cid)
    if isinstance(req, TrialRequest):
        out["trial"] = _resolve_trial(db, organisation_id, dict(req.trial))
        with organisation_scope(db, organisation_id, out["trial"]):
            spec = _trial_spec(out, settings)
        _keep_molecules(out, spec.molecules)
        total = spec.n_per_arm * len(spec.arms)
        if total > settings.max_trial_patients:
            raise InputError(
                "trial.n_per_arm",
                spec.n_per_arm,
                f"at most {settings.max_trial_patients // len(spec.arms)} patients per arm on "
                "this server (MICRONEEDLING_MAX_TRIAL_PATIENTS)",
            )
        return Prepared("trial", out, None, None)
    assert isinstance(req, ValidateRequest)
    n = req.sobol_n_base
    if n & (n - 1):
        raise InputError("sobol_n_base", n, "a power of two ≥ 2")
    return Prepared("validate", out, None, None)


def _patient_file(request: Mapping[str, Any]) -> PatientFile:
    return PatientFile.from_dict(request["patient"], source="patient").with_limits(
        max_downtime_days_per_session=request.get("max_downtime_days"),
        max_total_downtime_days=request.get("max_total_downtime_days"),
        max_sessions=request.get("max_sessions"),
        max_pih_risk=request.get("max_pih_risk"),
    )


def _sensitivity_factors(request: Mapping[str, Any], settings: Settings) -> list[str]:
    n = int(request.get("n_base", 64))
    if n & (n - 1):
        raise InputError("n_base", n, "a power of two ≥ 2")
    course = Course.from_dict(request["course"], source="course")
    for j, e in enumerate(request.get("endpoints") or ()):
        parse_endpoint(e, field=f"endpoints[{j}]")
    ps = load_parameters()
    names = request.get("parameters")
    chosen = validate_names(ps, names) if names else sensitive_names(course, ps)
    factor = 2 * len(chosen) + 2 if request.get("second_order") else len(chosen) + 2
    if n * factor > settings.max_sensitivity_runs:
        raise InputError(
            "n_base",
            n,
            f"at most {settings.max_sensitivity_runs} runs on this server (N·(D+2) = "
            f"{n * factor} with D = {len(chosen)}; MICRONEEDLING_MAX_SENSITIVITY_RUNS)",
        )
    return chosen


def _resolve_trial(db: Session, org: int, data: dict[str, Any]) -> dict[str, Any]:
    """The trial spec with every reference made inline: populations by name (a preset or one of the
    organisation's) and arms by ``course_id``. A file path is refused: the server reads no file a
    request names."""
    trial = data.get("trial")
    if isinstance(trial, Mapping) and isinstance(trial.get("population"), str):
        name = trial["population"]
        own = db.scalar(
            sa.select(PopulationRecord).where(
                PopulationRecord.organisation_id == org, PopulationRecord.name == name
            )
        )
        if own is not None:
            table = dict(own.data)
        elif name in list_populations():
            table = dict(load_population(name).raw)
        else:
            mine = db.scalars(
                sa.select(PopulationRecord.name).where(PopulationRecord.organisation_id == org)
            ).all()
            raise InputError(
                "trial.population",
                name,
                f"a preset among {list_populations()}, a population of your organisation "
                f"among {list(mine)} or an inline table",
            )
        data = {**data, "trial": {**trial, "population": table}}
    arms = data.get("arms")
    if isinstance(arms, list):
        resolved = []
        for i, arm in enumerate(arms):
            if isinstance(arm, Mapping) and "course" in arm:
                raise InputError(
                    f"arms[{i}].course",
                    arm["course"],
                    "on the server: protocol (a course without patient, inline) or course_id "
                    "(a stored course)",
                )
            if isinstance(arm, Mapping) and "course_id" in arm:
                cid = arm["course_id"]
                rec = db.get(CourseRecord, cid) if isinstance(cid, int) else None
                if rec is None or rec.organisation_id != org or isinstance(cid, bool):
                    raise InputError(
                        f"arms[{i}].course_id", cid, "the id of a course of your organisation"
                    )
                protocol = {k: v for k, v in rec.data.items() if k != "patient"}
                arm = {**{k: v for k, v in arm.items() if k != "course_id"}, "protocol": protocol}
            resolved.append(arm)
        data = {**data, "arms": resolved}
    return data


def _trial_spec(request: Mapping[str, Any], settings: Settings) -> TrialSpec:
    spec = TrialSpec.from_dict(request["trial"], base=settings.work_dir, source="trial")
    if request.get("n_per_arm") is not None:
        spec = dataclasses.replace(spec, n_per_arm=int(request["n_per_arm"]))
    return spec


# ---------------------------------------------------------------------------- executing
@dataclass
class Outputs:
    """What a finished run keeps: a JSON summary, files (name → content) and, for a simulation,
    its end points (made later, on first request, when absent)."""

    summary: dict[str, Any]
    files: dict[str, bytes | Path] = field(default_factory=dict)
    endpoints: list[dict[str, Any]] | None = None


#: the stored result of a simulation (:func:`result_blob`), read only by this server and never
#: served; ``result.nc`` and the other files are made from it on first download (:data:`DERIVED`)
RESULT_BLOB = ".result.pickle"


def _variable_state(v: xr.Variable) -> tuple[Any, ...]:
    return (v.dims, v.values, v.attrs, v.encoding)


def _variable(state: Sequence[Any]) -> xr.Variable:
    dims, values, attrs, encoding = state
    v = xr.Variable(dims, values, attrs)
    v.encoding = dict(encoding)
    return v


def result_blob(result: Result) -> bytes:
    """The stored form of a simulation's result: its Dataset's arrays, attributes and encodings
    (coordinates and data variables in their order) as plain Python and numpy objects, pickled.
    0.3 ms for one course against 0.8 ms for the Dataset pickled whole (xarray's objects are slow
    to pickle), 5 ms for NetCDF classic and 36 ms for NetCDF-4 (measured 2026-12-05, the
    acne-scars example at ``draws = 0``); :func:`result_of` rebuilds the identical Dataset."""
    ds = result.dataset
    state = {
        "format": 2,
        "attrs": ds.attrs,
        "encoding": ds.encoding,
        "coords": {k: _variable_state(ds.variables[k]) for k in ds.coords},
        "data_vars": {k: _variable_state(ds.variables[k]) for k in ds.data_vars},
    }
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def simulate_inline(request: Mapping[str, Any]) -> Outputs:
    """Simulate one course (the engine's :func:`~microneedling.engine.simulate.simulate`, as
    ``microneedling simulate`` calls it, inside the request's user molecules) and keep its result
    (and ``molecules.toml``, the user molecules it names)."""
    molecules = request_molecules(request)
    with using_molecules(molecules):
        course = Course.from_dict(request["course"], source="course")
        kwargs: dict[str, Any] = {"draws": int(request.get("draws", 32))}
        if request.get("seed") is not None:
            kwargs["seed"] = int(request["seed"])
        result = simulate(course, **kwargs)
    summary = {
        "course": course.name,
        "sites": result.sites,
        "warnings": list(result.warnings),
        "draws": result.n_draws,
        "seed": result.seed,
        "parameter_set_hash": result.parameter_set_hash,
        "disclaimer": DISCLAIMER,
    }
    files: dict[str, bytes | Path] = {RESULT_BLOB: result_blob(result)}
    if molecules:
        files["molecules.toml"] = molecules_toml(molecules).encode()
    return Outputs(summary, files)


def result_of(blob: bytes) -> Result:
    """A :class:`Result` from its stored form (:func:`result_blob`; a blob stored by an earlier
    version, the Dataset pickled whole, is read too)."""
    try:
        stored = pickle.loads(blob)
        if isinstance(stored, xr.Dataset):
            dataset = stored
        else:
            dataset = xr.Dataset(
                {k: _variable(v) for k, v in stored["data_vars"].items()},
                coords={k: _variable(v) for k, v in stored["coords"].items()},
                attrs=stored["attrs"],
            )
            dataset.encoding = dict(stored["encoding"])
    except Exception as exc:  # written by another version of the libraries
        raise StoredResultError(
            f"the stored result cannot be read by this version ({type(exc).__name__}); run the "
            "simulation again"
        ) from None
    return Result(dataset)


class StoredResultError(MicroneedlingError):
    """A stored result that this version of the server cannot read."""


def endpoint_records(result: Result) -> list[dict[str, Any]]:
    """The end points of a result as JSON rows (``Result.endpoints()``, the CLI's table)."""
    return [jsonable(r) for r in result.endpoints().to_dict("records")]


def derive(kind: str, name: str, blob: bytes, request: Mapping[str, Any] | None = None) -> bytes:
    """A file of a finished simulation made from its stored result (see :data:`DERIVED`):
    ``result.nc`` (NetCDF-4, :meth:`Result.to_netcdf` as the CLI writes it), ``endpoints.csv``,
    ``report.html`` (with figures) and ``course.toml``; inside the user molecules of the run's
    ``request`` (its course is validated again)."""
    with using_molecules(request_molecules(request or {})):
        return _derive(kind, name, blob)


def _derive(kind: str, name: str, blob: bytes) -> bytes:
    result = result_of(blob)
    if name == "result.nc":
        with tempfile.TemporaryDirectory(prefix="microneedling-nc-") as tmp:
            return result.to_netcdf(Path(tmp) / "result.nc").read_bytes()
    if name == "endpoints.csv":
        return result.endpoints().to_csv(index=False, lineterminator="\n").encode()
    if name == "report.html":
        with tempfile.TemporaryDirectory(prefix="microneedling-report-") as tmp:
            figs = write_figures(result, Path(tmp) / "figures")
            return render_html(result, figs).encode()
    if name == "course.toml":
        course = result.course
        if course is None:  # pragma: no cover - every simulation records its course
            raise KeyError(name)
        return course.to_toml().encode()
    raise KeyError(name)


def _write_molecules(request: Mapping[str, Any], directory: Path) -> None:
    """``molecules.toml``: the user molecules of the request, beside its ``course.toml``."""
    molecules = request_molecules(request)
    if molecules:
        write_text_atomic(molecules_toml(molecules), directory / "molecules.toml")


def _collect(directory: Path) -> dict[str, bytes | Path]:
    return {
        p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*")) if p.is_file()
    }


def chunk_mapper(
    settings: Settings,
    progress: Progress,
    label: str,
    store: ChunkStore | None = None,
) -> Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]:
    """A ``map_chunks(fn, items)`` on the service's executor that reports progress, stops at the
    next chunk when cancelled and, with ``store``, keeps every finished chunk (and skips those
    found there)."""

    def mapper(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        done = store.done() if store is not None else set()
        results: dict[int, Any] = {}
        progress.notes["chunks"] = len(items)
        progress.notes["chunks_reused"] = len(done)

        def finished(i: int, r: Any) -> None:
            if store is not None:
                store.save(i, r)
            else:
                results[i] = r
            n = len(done) + len(results) if store is None else len(store.done())
            progress.update(n / max(len(items), 1), f"{label}: {n} of {len(items)} chunks")
            progress.check()

        progress.update(len(done) / max(len(items), 1), f"{label}: {len(done)} chunks kept")
        progress.check()
        map_chunks(
            fn,
            items,
            workers=settings.dask_workers,
            scheduler=settings.scheduler,
            skip=done,
            on_result=finished,
            keep=False,
        )
        if store is not None:
            return [store.load(i) for i in range(len(items))]
        return [results[i] for i in range(len(items))]

    return mapper


def execute(
    kind: str,
    request: Mapping[str, Any],
    settings: Settings,
    progress: Progress,
    work: Path,
) -> Outputs:
    """Run a prepared request (see the module docstring). ``work`` is the run's own directory
    (kept across restarts until the run ends: a trial's chunks live there)."""
    progress.update(0.0, "starting")
    t0 = time.perf_counter()
    with using_molecules(request_molecules(request)):  # chunks on workers carry them along
        if kind == "simulate":
            progress.update(0.05, "simulating")
            out = simulate_inline(request)
        elif kind == "plan":
            out = _plan(request, progress, work)
        elif kind == "absorb":
            out = _absorb(request, progress, work)
        elif kind == "trial":
            out = _trial(request, settings, progress, work)
        elif kind == "sensitivity":
            out = _sensitivity(request, settings, progress, work)
        elif kind == "validate":
            out = _validate(request, progress, work)
        else:  # pragma: no cover - prepare refuses other kinds
            raise InputError("kind", kind, "a run kind")
    out.summary["elapsed_s"] = round(time.perf_counter() - t0, 3)
    progress.update(1.0, "done")
    return out


def _plan(request: Mapping[str, Any], progress: Progress, work: Path) -> Outputs:
    pf = _patient_file(request)
    progress.update(0.05, "screening and searching the plan space")
    result = search(pf)
    progress.check()
    progress.update(0.7, "predicting the recommended course")
    draws = int(request.get("draws", 32))
    preds = predict(result.recommended.course, pf, draws=draws)
    progress.check()
    out = work / "plan"
    write_plan_directory(
        result, preds, out, overwrite=True, figures=bool(request.get("figures", True))
    )
    rec = result.recommended
    summary = {
        "patient": pf.name,
        "recommended": rec.summary(),
        "total_downtime_days": rec.total_downtime_days,
        "max_pih_risk": rec.max_pih_risk,
        "pih_limit": result.pih_limit,
        "course": rec.course.to_dict(),
        "predictions": [jsonable(p) for p in preds],
        "explanation": list(result.explanation),
        "warnings": result.warnings(),
        "pareto_size": len(result.pareto),
        # every Pareto plan with its course, so that a page can offer any of them
        "pareto": [_pareto_entry(i, p) for i, p in enumerate(result.pareto)],
        "n_simulated": result.n_simulated,
        "n_plans": result.n_plans,
        "draws": draws,
        "disclaimer": DISCLAIMER,
    }
    return Outputs(jsonable(summary), _collect(out))


def _pareto_entry(index: int, plan: Any) -> dict[str, Any]:
    return {
        "index": index,
        "summary": plan.summary(),
        "recommended": bool(plan.recommended),
        "device": plan.device,
        "topical": plan.topical,
        "sessions": plan.n_sessions,
        "interval_days": plan.interval_days,
        "lengths_mm": dict(plan.lengths_mm),
        "passes": dict(plan.passes),
        "score": plan.score,
        "total_downtime_days": plan.total_downtime_days,
        "max_session_downtime_days": max(plan.downtime_per_session),
        "max_pih_risk": plan.max_pih_risk,
        "course": plan.course.to_dict(),
    }


def _absorb(request: Mapping[str, Any], progress: Progress, work: Path) -> Outputs:
    course = Course.from_dict(request["course"], source="course")
    draws = int(request.get("draws", 32))
    seed = request.get("seed")
    progress.update(0.05, "absorption per session (engine and resolved cell)")
    table, solved = absorb_study.absorption_table(
        course, None, draws=draws, seed=seed, resolved=bool(request.get("resolved", True))
    )
    progress.check()
    progress.update(0.8, "figures and report")
    records = [jsonable(r) for r in table.to_dict("records")]
    out = work / "absorb"
    with atomic_directory(out, overwrite=True) as tmp:
        figures = absorb_report.amount_charts(table)
        for index, rv in enumerate(solved.values()):  # PNG for print, Plotly for the web page
            absorb_report.plot_map(rv, tmp / "figures" / f"map_{rv.case.stem}.png")
            absorb_report.plot_curves(rv, tmp / "figures" / f"curves_{rv.case.stem}.png")
            figures.extend(absorb_report.case_charts(rv, index))
        write_text_atomic(charts.dumps(figures), tmp / "charts.json")
        write_csv_atomic(table, tmp / "absorption.csv")
        meta = {
            "course": course.name,
            "draws": draws,
            "units": "amounts in ug/cm^2 of skin; see docs/absorb.md for the columns",
            "disclaimer": DISCLAIMER,
            "sessions": records,
        }
        write_text_atomic(json.dumps(meta, indent=2), tmp / "absorption.json")
        write_text_atomic(course.to_toml(), tmp / "course.toml")
        _write_molecules(request, tmp)
        absorb_report.write_report(
            tmp,
            table,
            solved,
            course.name,
            draws=draws,
            seed=course.seed if seed is None else seed,
        )
    summary = {"course": course.name, "draws": draws, "sessions": records}
    return Outputs(summary, _collect(out))


def _trial(
    request: Mapping[str, Any], settings: Settings, progress: Progress, work: Path
) -> Outputs:
    spec = _trial_spec(request, settings)
    chunk = int(request.get("chunk_size") or spec.chunk_size)
    in_process = settings.dask_workers == 0 and settings.scheduler is None
    tasks, fingerprint = trial_chunks(spec, chunk, parallel=in_process)
    resume = work / "chunks"
    store = ChunkStore(resume, fingerprint)
    chunk_mapper(settings, progress, "patients", store)(run_chunk, tasks)
    progress.update(0.97, "statistics and report")
    # every chunk is in the store now: run_trial (the CLI's call) only reads them back
    res = run_trial(spec, resume_dir=resume, chunk_size=chunk)
    out = work / "trial"
    write_trial(res, out, overwrite=True)
    summary = {
        "trial": spec.name,
        "design": spec.design,
        "n_per_arm": spec.n_per_arm,
        "arms": [a.name for a in spec.arms],
        # patient i under parameter draw i mod K (0: the posterior median); the rows below then
        # carry the epistemic interval, aleatory SD and variance decomposition (docs/trials.md)
        "parameter_draws": spec.parameter_draws,
        "parameter_source": res.parameter_source,
        "parameter_draws_warning": res.draw_warning,
        "summary": [jsonable(r) for r in res.summary.to_dict("records")],
        "comparisons": [jsonable(r) for r in res.comparisons.to_dict("records")],
        "rejection": jsonable(res.rejection),
        "chunks": progress.notes.get("chunks"),
        "chunks_reused": progress.notes.get("chunks_reused"),
        "disclaimer": DISCLAIMER,
    }
    return Outputs(summary, _collect(out))


def _sensitivity(
    request: Mapping[str, Any], settings: Settings, progress: Progress, work: Path
) -> Outputs:
    course = Course.from_dict(request["course"], source="course")
    ends = list(request.get("endpoints") or default_endpoints(course))
    names = request.get("parameters")
    ds = sobol_indices(
        course,
        ends,
        names=list(names) if names else None,
        n_base=int(request.get("n_base", 64)),
        seed=int(request.get("seed", 0)),
        map_chunks=chunk_mapper(settings, progress, "Sobol runs"),
        chunk_size=int(request.get("chunk_size", 512)),
        second_order=bool(request.get("second_order", False)),
    )
    progress.update(0.95, "indices and figure")
    table = indices_table(ds)
    out = work / "sensitivity"
    with atomic_directory(out, overwrite=True) as tmp:
        write_netcdf_atomic(ds, tmp / "sobol.nc")
        write_csv_atomic(table, tmp / "sobol.csv")
        save_indices_png(ds, tmp / "sobol.png")
        write_sensitivity_report(tmp, ds, warnings=noise_warnings(ds))
        write_text_atomic(course.to_toml(), tmp / "course.toml")
        _write_molecules(request, tmp)
    summary = {
        "course": course.name,
        "endpoints": ends,
        "n_runs": int(ds.attrs["n_runs"]),
        "n_factors": int(ds.attrs["n_factors"]),
        "n_failed": int(ds.attrs["n_failed"]),
        "indices": [jsonable(r) for r in table.to_dict("records")],
    }
    return Outputs(summary, _collect(out))


def _validate(request: Mapping[str, Any], progress: Progress, work: Path) -> Outputs:
    if request.get("delivery"):
        progress.update(0.1, "delivery validation")
        preds = delivery_predict()
        text = delivery_table(preds)
        summary = {"delivery": text, "rows": len(preds), "disclaimer": DISCLAIMER}
        return Outputs(summary, {"delivery.md": text.encode()})
    progress.update(0.05, "calibration, validation rows, Sobol summary, verification checks")
    report = build_report(
        draws=request.get("draws"),
        seed=int(request.get("seed", 0)),
        sobol_n_base=int(request.get("sobol_n_base", 64)),
        sobol=bool(request.get("sobol", True)),
        verification=bool(request.get("verification", True)),
    )
    progress.check()
    out = work / "validate"
    write_report(out, report, overwrite=True)
    v, c = report["validation"], report["calibration"]
    summary = {
        "calibration": c["version"],
        "reproduces_shipped": c["reproduces_shipped"],
        "n_pass": v["n_pass"],
        "n_covered": v["n_covered"],
        "n_evaluated": v["n_evaluated"],
        "disclaimer": DISCLAIMER,
    }
    return Outputs(jsonable(summary), _collect(out))


def remove_work(work: Path) -> None:
    """Remove a run's work directory (its kept chunks) once the run has ended."""
    shutil.rmtree(work, ignore_errors=True)


def log_failure(run_id: int, exc: BaseException) -> None:
    if not isinstance(exc, MicroneedlingError | Cancelled):
        log.error("run %s failed", run_id, exc_info=exc)

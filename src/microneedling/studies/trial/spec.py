"""The trial spec: a TOML file read into models on the shared schema base, and the validated
:class:`TrialSpec` a run works from.

A trial is a TOML file (examples in ``examples/trials/``)::

    [trial]
    name = "Roller 1.5 mm vs pen 1.0 mm for acne scars"
    design = "parallel"            # or "split-face": the same patients get both arms, one per side
    n_per_arm = 500
    seed = 7
    population = "acne-scar-adults"          # a preset, a population TOML (path from this file),
                                             # or an inline table in the population format
    control = "roller"                       # arm the others are compared with (default: the first)
    time_points = [90, 180, 365]             # end points without @ are read at each of these days
    parameter_draws = 32                     # posterior parameter sets (0: posterior median only)
    lanes = 32                               # optional: lockstep solver lanes (default 1, below)
    endpoints = [
      { name = "scar_depth:reduction", responder_above = 25.0 },   # responders: >= 25 % reduction
      "collagen_change",
      "erythema_days",
    ]

    [[arms]]
    name = "roller"
    course = "../acne-scars-rolling-cheek.toml"   # a course file: its patient is replaced

    [[arms]]
    name = "pen"
    [arms.protocol]                               # or inline: a course without a patient
    ...

The file's shape (types, ranges, the design, the end-point grammar, responder rules, one course or
protocol per arm, distinct arm names, the control) is checked by :class:`TrialFile`, a model on
:class:`~microneedling.schema.InputModel`; :meth:`TrialSpec.from_dict` then resolves what lies
outside the file (the population, the arms' course files) and validates every arm's course with the
population's first patient. Every refusal is a :class:`TrialSpecError`, which holds all problems
found and is also an :class:`~microneedling.errors.InputError` naming the first one
(``trial.n_per_arm``, ``arms[1].protocol.patient``, ...).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator

from microneedling.about import __version__
from microneedling.course.model import Course, Patient, Site
from microneedling.engine.endpoints import EndpointSpec, parse_endpoint
from microneedling.errors import (
    CourseValidationError,
    InputError,
    InputFileError,
    InputFileFieldError,
)
from microneedling.io import dumps_toml, read_toml
from microneedling.parameters.molecules import (
    Molecule,
    molecules_toml,
    named_products,
    used_extras,
)
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import posterior_hash
from microneedling.schema import INT64_MAX, Allowed, InputModel, Integer, Number, Text, Unit
from microneedling.studies.trial.population import (
    PatientBatch,
    Population,
    load_population,
    sample_patients,
)

__all__ = [
    "DEFAULT_CHUNK",
    "DEFAULT_PARAMETER_DRAWS",
    "DESIGNS",
    "MAX_CHUNK",
    "MAX_N_PER_ARM",
    "MAX_PARAMETER_DRAWS",
    "Arm",
    "ArmTable",
    "EndpointDef",
    "EndpointTable",
    "TrialFile",
    "TrialSpec",
    "TrialSpecError",
    "TrialTable",
    "arm_course",
    "arm_courses",
]

DESIGNS = ("parallel", "split-face")
DEFAULT_CHUNK = 256
"""Patients per batched solve unless the spec or the command says otherwise."""
MAX_CHUNK = 1_000_000
MAX_N_PER_ARM = 10_000_000
DEFAULT_PARAMETER_DRAWS = 32
#: ``[trial] lanes``, the lockstep lanes of a chunk's healing solve: at most this many
MAX_LANES = 256
"""Parameter sets a trial draws from the posterior unless the spec or the command says otherwise:
patient ``i`` is simulated under set ``i mod K``, so the intervals carry parameter (epistemic) as
well as patient (aleatory) spread. 32, as :func:`~microneedling.engine.simulate.simulate`'s
ensemble: fewer make the 95% interval over the per-draw means little more than their range
(``docs/trials.md``). 0: every patient at the posterior median (no parameter uncertainty)."""
MAX_PARAMETER_DRAWS = 1000


class TrialSpecError(InputFileFieldError):
    """A trial spec failed validation; an :class:`~microneedling.errors.InputError` naming its first
    problem's field (``trial.design``, ``arms[0].course``, ...)."""


# ------------------------------------------------------------------------------ the file
class _Model(InputModel):
    """Base of the trial spec's tables: errors are :class:`TrialSpecError`."""

    file_kind: ClassVar[str] = "trial spec"
    error_class: ClassVar[type[InputFileError]] = TrialSpecError


def _non_empty(v: str) -> str:
    if not v.strip():
        raise InputError("", v, "non-empty text")
    return v


def _non_empty_list(allowed: str) -> Any:
    """A before-validator refusing an empty list with ``allowed`` (one problem, not two)."""

    def check(v: Any) -> Any:
        if isinstance(v, list | tuple) and not v:
            raise InputError("", v, allowed)
        return v

    return BeforeValidator(check)


Name = Annotated[Text, AfterValidator(_non_empty), Allowed("non-empty text")]

_ENDPOINT_TEXT = "an end point such as 'scar_depth:reduction@365' (microneedling.engine.endpoints)"


def _endpoint_text(v: str) -> str:
    parse_endpoint(v, field="")
    return v


def _endpoint_table(v: Any) -> Any:
    """A plain end point (text) is a table with only a name; its grammar is checked here, so that a
    refusal names the list item itself (``trial.endpoints[0]``)."""
    if isinstance(v, str):
        parse_endpoint(v, field="")
        return {"name": v}
    return v


class EndpointTable(_Model):
    """An entry of ``trial.endpoints``: an end point and, optionally, one responder threshold."""

    name: Annotated[Text, AfterValidator(_endpoint_text), Allowed(_ENDPOINT_TEXT)]
    responder_above: (
        Annotated[Number, Allowed("a finite number (end point units): responders have value ≥ it")]
        | None
    ) = None
    responder_below: (
        Annotated[Number, Allowed("a finite number (end point units): responders have value ≤ it")]
        | None
    ) = None

    @model_validator(mode="after")
    def _one_rule(self) -> EndpointTable:
        if self.responder_above is not None and self.responder_below is not None:
            raise InputError(
                "", self.model_dump(), "one of responder_above / responder_below, not both"
            )
        return self


Endpoint = Annotated[
    EndpointTable,
    BeforeValidator(_endpoint_table),
    Allowed(f"{_ENDPOINT_TEXT}, or a table {{name, responder_above or responder_below}}"),
]

_POPULATION = (
    "a population preset name, a population TOML file (path from the trial file) or an inline "
    "population table"
)


def _population_ref(v: Any) -> Any:
    if isinstance(v, str | Mapping):
        return v
    raise InputError("", v, _POPULATION)


class TrialTable(_Model):
    """The ``[trial]`` table."""

    name: Name
    description: Text | None = None
    design: Literal["parallel", "split-face"] = "parallel"
    n_per_arm: Annotated[Integer, Field(ge=2, le=MAX_N_PER_ARM)]
    seed: Annotated[Integer, Field(ge=0, le=INT64_MAX)] = 0
    population: Annotated[Any, BeforeValidator(_population_ref), Allowed(_POPULATION)]
    control: Annotated[Text, Allowed("an arm name (default: the first arm)")] | None = None
    time_points: (
        Annotated[
            tuple[Annotated[Number, Field(ge=0, le=3650), Unit("d")], ...],
            _non_empty_list("a non-empty list of days"),
            Allowed("a non-empty list of days from 0 to 3650"),
        ]
        | None
    ) = None
    endpoints: Annotated[
        tuple[Endpoint, ...],
        _non_empty_list("a non-empty list of end points"),
        Allowed("a non-empty list of end points"),
    ]
    chunk_size: Annotated[Integer, Field(ge=1, le=MAX_CHUNK)] = DEFAULT_CHUNK
    parameter_draws: Annotated[
        Integer,
        Field(ge=0, le=MAX_PARAMETER_DRAWS),
        Allowed(
            f"an integer from 0 to {MAX_PARAMETER_DRAWS}: parameter sets drawn from the posterior "
            "(0: every patient at the posterior median)"
        ),
    ] = DEFAULT_PARAMETER_DRAWS
    lanes: Annotated[
        Integer,
        Field(ge=1, le=MAX_LANES),
        Allowed(
            f"an integer from 1 to {MAX_LANES}: cases of a chunk solved together in lockstep "
            "(1: each case steps on its own)"
        ),
    ] = 1

    @model_validator(mode="after")
    def _distinct_endpoints(self) -> TrialTable:
        names = [e.name for e in self.endpoint_defs()]
        if len(set(names)) != len(names):
            raise InputError("endpoints", names, "distinct end points")
        return self

    def endpoint_defs(self) -> tuple[EndpointDef, ...]:
        """The end points, those without ``@`` expanded to one per time point."""
        days = self.time_points or ()
        out: list[EndpointDef] = []
        for j, e in enumerate(self.endpoints):
            spec = parse_endpoint(e.name, field=f"trial.endpoints[{j}]")
            if days and not spec.per_session and "@" not in e.name:
                specs = [parse_endpoint(f"{e.name}@{d:g}", field=spec.text) for d in days]
            else:
                specs = [spec]
            out.extend(EndpointDef(s, e.responder_above, e.responder_below) for s in specs)
        return tuple(out)


class ArmTable(_Model):
    """An ``[[arms]]`` table: a name and a course file or an inline protocol."""

    name: Name
    course: Annotated[Text, Allowed("a course file (TOML; path from the trial file)")] | None = None
    protocol: Annotated[dict[str, Any], Allowed("a course table without a patient")] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ArmTable:
        if (self.course is None) == (self.protocol is None):
            raise InputError(
                "",
                sorted(self.model_fields_set),
                "exactly one of course (a file) or protocol (inline)",
            )
        if self.protocol is not None and "patient" in self.protocol:
            raise InputError(
                "protocol.patient",
                self.protocol["patient"],
                "no patient (the population supplies them)",
            )
        return self


def _two_or_more(v: Any) -> Any:
    if isinstance(v, list | tuple) and len(v) < 2:
        raise InputError("", v, "two or more [[arms]] tables")
    return v


class TrialFile(_Model):
    """A trial spec file: ``[trial]`` and two or more ``[[arms]]``."""

    trial: TrialTable
    arms: Annotated[
        tuple[ArmTable, ...],
        BeforeValidator(_two_or_more),
        Allowed("two or more [[arms]] tables, each a name and a course (a file) or a protocol"),
    ]

    @model_validator(mode="after")
    def _arms_fit_the_design(self) -> TrialFile:
        names = self.arm_names
        problems: list[InputError] = []
        if len(set(names)) != len(names):
            problems.append(InputError("arms[].name", names, "distinct arm names"))
        if self.trial.design == "split-face" and len(self.arms) != 2:
            problems.append(
                InputError("arms", f"{len(self.arms)} arms", "exactly 2 arms (one per side)")
            )
        control = self.trial.control
        if control is not None and control not in names:
            problems.append(InputError("trial.control", control, f"an arm name among {names}"))
        if problems:
            raise InputFileError(problems)
        return self

    @property
    def arm_names(self) -> list[str]:
        return [a.name.strip() for a in self.arms]


# ---------------------------------------------------------------------- the validated spec
@dataclass(frozen=True)
class EndpointDef:
    """An end point and, optionally, its responder rule (``value >= above`` or ``value <= below``)."""

    spec: EndpointSpec
    above: float | None = None
    below: float | None = None

    @property
    def name(self) -> str:
        return self.spec.text

    def responders(self, x: np.ndarray) -> np.ndarray:
        """Boolean responders (False where the value is NaN)."""
        if self.above is not None:
            return np.asarray(x >= self.above)
        if self.below is not None:
            return np.asarray(x <= self.below)
        return np.zeros(x.shape, dtype=bool)

    @property
    def rule(self) -> str:
        if self.above is not None:
            return f">= {self.above:g} {self.spec.units}"
        if self.below is not None:
            return f"<= {self.below:g} {self.spec.units}"
        return ""


@dataclass(frozen=True)
class Arm:
    """A protocol: a course template (a course table without ``patient``)."""

    name: str
    template: Mapping[str, Any]

    @property
    def horizon_days(self) -> float:
        return float(self.template["horizon_days"])

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(str(s["name"]) for s in self.template.get("sites", []))

    @property
    def products(self) -> tuple[str, ...]:
        """The topical products the arm's sessions name (sorted)."""
        return tuple(sorted(named_products(self.template)))


@dataclass(frozen=True)
class TrialSpec:
    """A validated trial (see the module docstring)."""

    name: str
    design: str
    n_per_arm: int
    seed: int
    population: Population
    arms: tuple[Arm, ...]
    endpoints: tuple[EndpointDef, ...]
    control: int = 0
    chunk_size: int = DEFAULT_CHUNK
    parameter_draws: int = DEFAULT_PARAMETER_DRAWS
    """K parameter sets drawn once per trial from the shipped posterior (or, when it does not apply,
    the priors); patient ``i`` runs under set ``i mod K`` in every arm. 0: the posterior median."""
    lanes: int = 1
    """L > 1: a chunk's healing solve runs the cases that share a schedule L at a time in lockstep
    (one shared step size, SIMD kernels: :func:`~microneedling.physics.ode.integrate.integrate`),
    about 2.3x faster at L = 32 with an error no larger than stepping each case alone
    (docs/performance.md). A case's numbers then depend on its lane-mates at the solver's
    tolerance (about 1e-7 relative), so on the chunk size: the same chunk size gives the same
    numbers, in process or on a cluster; another chunk size agrees to the tolerance, not bit for
    bit. 1 (the default) steps each case alone: the same numbers for any chunk size."""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    molecules: Mapping[str, Molecule] = field(default_factory=dict, compare=False, repr=False)
    """The user molecules the arms name (from the scope the spec was read in,
    :func:`~microneedling.parameters.molecules.using_molecules`): every chunk runs inside them."""

    @property
    def paired(self) -> bool:
        return self.design == "split-face"

    @classmethod
    def from_toml(cls, path: str | Path) -> TrialSpec:
        """Read and validate a trial file; errors name the field (``trial.n_per_arm``, ...)."""
        p = Path(path)
        return cls.from_dict(TrialFile.read_toml_data(p), base=p.parent, source=str(p))

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], base: Path | None = None, *, source: str | None = None
    ) -> TrialSpec:
        """Validate a parsed trial table (paths relative to ``base``; ``source`` names the file in
        the error)."""
        base = base or Path.cwd()
        file = TrialFile.from_dict(d, source=source)
        t = file.trial
        pop = _population(t.population, base, source)
        probe = sample_patients(pop, 0, 1, seed=0)
        arms: list[Arm] = []
        problems: list[InputError] = []
        for i, table in enumerate(file.arms):
            try:
                arms.append(_arm(table, i, base, pop, probe))
            except InputError as exc:
                problems.append(exc)
        if not problems and file.trial.design == "split-face" and arms[0].sites != arms[1].sites:
            problems.append(
                InputError(
                    "arms[1].sites",
                    list(arms[1].sites),
                    f"the same site(s) as arms[0] ({list(arms[0].sites)}): one per side",
                )
            )
        if problems:
            raise TrialFile.refuse(problems, source)
        names = file.arm_names
        products = [p for a in arms for p in a.products]
        return cls(
            name=t.name.strip(),
            design=t.design,
            n_per_arm=t.n_per_arm,
            seed=t.seed,
            population=pop,
            arms=tuple(arms),
            endpoints=t.endpoint_defs(),
            control=names.index(t.control) if t.control is not None else 0,
            chunk_size=t.chunk_size,
            parameter_draws=t.parameter_draws,
            lanes=t.lanes,
            raw={
                "trial": dict(d["trial"]),
                "arms": [dict(a.template) for a in arms],
                "names": names,
            },
            molecules=used_extras(products),
        )

    def fingerprint(self, chunk_size: int, parameters: str = "") -> str:
        """Hash of everything that determines the chunks' numbers (for resume). ``parameters``:
        the digest of the parameter values the patients run under
        (:func:`~microneedling.studies.trial.run.parameter_digest`)."""
        blob = json.dumps(
            {
                "trial": {
                    **{
                        k: v
                        for k, v in self.raw.get("trial", {}).items()
                        if k not in ("population", "parameter_draws")
                    },
                    "n_per_arm": self.n_per_arm,
                },
                "seed": self.seed,
                "design": self.design,
                "arms": [[a.name, dict(a.template)] for a in self.arms],
                "endpoints": [[e.name, e.above, e.below] for e in self.endpoints],
                "control": self.control,
                "population": self.population.raw,
                "chunk_size": chunk_size,
                "version": __version__,
                # the parameters every patient runs under: K sets drawn from the shipped posterior
                # (or its median when K = 0) of the shipped parameter values; another posterior or
                # other values are another trial
                "parameter_draws": self.parameter_draws,
                "posterior": posterior_hash(),
                "parameters": load_parameters().hash,
                "parameter_sets": parameters,
                # user molecules: their tables (another molecule under the same name is new work)
                **(
                    {"molecules": {k: dict(m.table) for k, m in self.molecules.items()}}
                    if self.molecules
                    else {}
                ),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_toml(self) -> str:
        """The validated trial with arms inlined (patient-free course templates), as TOML."""
        t = {
            **self.raw.get("trial", {}),
            "n_per_arm": self.n_per_arm,
            "seed": self.seed,
            "parameter_draws": self.parameter_draws,
        }
        t["population"] = dict(self.population.raw)  # inlined: the copy is self-contained
        arms = [{"name": a.name, "protocol": dict(a.template)} for a in self.arms]
        return dumps_toml({"trial": t, "arms": arms})

    def molecules_toml(self) -> str | None:
        """The user molecules the arms name as a molecule file (``None`` without any)."""
        return molecules_toml(self.molecules) if self.molecules else None


def _population(ref: str | Mapping[str, Any], base: Path, source: str | None) -> Population:
    """The trial's population (a preset, a file from ``base`` or an inline table); its problems
    are named under ``trial.``."""
    try:
        if isinstance(ref, Mapping):
            return Population.from_dict(ref)
        return load_population(ref, base=base)
    except InputError as exc:
        found = exc.problems if isinstance(exc, InputFileError) else [exc]
        problems = [InputError(f"trial.{p.field}", p.value, p.allowed) for p in found]
        raise TrialFile.refuse(problems, source) from None


def _arm(table: ArmTable, i: int, base: Path, pop: Population, probe: PatientBatch) -> Arm:
    """The arm of ``[[arms]]`` number ``i``, its course checked with the population's first patient
    (``probe``); a refusal is an :class:`InputError` naming the arm's field."""
    f = f"arms[{i}]"
    if table.course is not None:
        where = f"{f}.course"
        p = base / table.course
        try:
            template = dict(read_toml(p))
        except InputError as exc:
            raise InputError(
                where,
                table.course,
                f"a course file, path relative to the trial file ({exc.field} is not "
                f"{exc.allowed})",
            ) from None
    else:
        assert table.protocol is not None  # ArmTable holds exactly one of the two
        where = f"{f}.protocol"
        template = dict(table.protocol)
    template.pop("patient", None)
    arm = Arm(table.name.strip(), template)
    try:
        arm_course(arm, probe, 0, pop)
    except CourseValidationError as exc:
        raise InputError(where, arm.name, exc.one_line()) from None
    return arm


def arm_course(arm: Arm, batch: PatientBatch, i: int, pop: Population) -> Course:
    """The course of ``arm`` for patient ``i`` of ``batch``: the arm's template with the patient's
    age, sex and Fitzpatrick type, and (when the population declares conditions) their conditions at
    every site."""
    d = dict(arm.template)
    d["patient"] = batch.patient_of(i)
    if pop.conditions:
        conds = batch.conditions_of(i)
        d["sites"] = [{**dict(s), "conditions": conds} for s in d.get("sites", [])]
    return Course.from_dict(d, source=f"arm {arm.name}")


def arm_courses(arm: Arm, batch: PatientBatch, pop: Population) -> list[Course]:
    """The courses of ``arm`` for every patient of ``batch``: equal to :func:`arm_course` of each
    (tested), without repeating what does not depend on the patient.

    The first patient's course is validated whole; the others are assembled from its fields with
    their own patient table and (when the population declares conditions) sites validated, since
    the course's own checks read only what the arm fixes (site names, device, sessions, horizon).
    A patient whose parts do not validate gets :func:`arm_course`, which raises the course's
    error as before."""
    n = len(batch)
    if n == 0:
        return []
    first = arm_course(arm, batch, 0, pop)
    fields = dict(first)
    out = [first]
    for i in range(1, n):
        try:
            patient = Patient.model_validate(batch.patient_of(i))
            sites = first.sites
            if pop.conditions:
                conds = batch.conditions_of(i)
                sites = tuple(
                    Site.model_validate({**dict(s), "conditions": conds})
                    for s in arm.template.get("sites", [])
                )
        except ValidationError:
            out.append(arm_course(arm, batch, i, pop))  # raises the course's error
            continue
        out.append(
            Course.model_construct(
                first.model_fields_set, **{**fields, "patient": patient, "sites": sites}
            )
        )
    return out

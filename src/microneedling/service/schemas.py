"""Request and response models of the API.

Requests are models on :class:`microneedling.schema.InputModel`, like every input file, so a bad
request is refused in the same words as a bad file. The routes take the JSON body as a mapping and
validate it here (``Model.from_dict``), so that the wording is the package's, not FastAPI's; the
OpenAPI document still shows each body's schema (:func:`body`). Input files inside a request (a
course, a patient file, a trial spec, a population) are validated by their own models
(``course.model.Course``, ``course.patient.PatientFile``, ``studies.trial.spec``,
``studies.trial.population``).

Responses are plain pydantic models (they describe what the server sends; nothing to refuse).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from microneedling.course.model import Course
from microneedling.course.patient import PatientFile
from microneedling.errors import InputError, InputFileError
from microneedling.schema import INT64_MAX, Allowed, Flag, InputModel, Integer, Number, Text
from microneedling.studies.trial.population import PopulationFile
from microneedling.studies.trial.spec import MAX_CHUNK, TrialFile

__all__ = [
    "COMPONENTS",
    "RUN_KINDS",
    "AbsorbRequest",
    "AuditOut",
    "CourseIn",
    "CourseOut",
    "ErrorOut",
    "FileOut",
    "Health",
    "LoginRequest",
    "MeOut",
    "MoleculeIn",
    "MoleculeOut",
    "NewToken",
    "NewTokenOut",
    "NewUser",
    "OrganisationOut",
    "ParameterOut",
    "PasswordTokenRequest",
    "PatientOut",
    "PlanRequest",
    "PopulationIn",
    "PopulationOut",
    "RunOut",
    "SensitivityRequest",
    "SimulateRequest",
    "SourceOut",
    "TokenOut",
    "TrialRequest",
    "UserOut",
    "ValidateRequest",
    "body",
]

RUN_KINDS = ("simulate", "plan", "absorb", "trial", "sensitivity", "validate")

#: JSON schemas of the request bodies, added to the OpenAPI document's components
COMPONENTS: dict[str, Any] = {}


def body(model: type[BaseModel], description: str = "") -> dict[str, Any]:
    """``openapi_extra`` of a route whose JSON body is validated by ``model`` inside the route."""
    schema = _schema(model)
    for field, file_model in _FILE_FIELDS.items():
        prop = schema.get("properties", {}).get(field)
        if prop is None or model.__name__ == file_model.__name__:
            continue
        _schema(file_model)
        ref = {"$ref": f"#/components/schemas/{file_model.__name__}"}
        described = {"description": prop.get("description", f"a {file_model.file_kind} as JSON")}
        if "anyOf" in prop:  # optional: the file or null
            schema["properties"][field] = {"anyOf": [ref, {"type": "null"}], **described}
        else:
            schema["properties"][field] = {"allOf": [ref], **described}
    COMPONENTS[model.__name__] = schema
    return {
        "requestBody": {
            "required": True,
            "description": description or (model.__doc__ or "").strip().split("\n\n")[0],
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema, its sub-schemas registered in :data:`COMPONENTS`."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        if COMPONENTS.setdefault(name, sub) != sub:
            raise RuntimeError(f"two different request schemas are both called {name!r}")
    COMPONENTS.setdefault(model.__name__, schema)
    return schema


# ------------------------------------------------------------------------------ requests
class _Request(InputModel):
    file_kind: ClassVar[str] = "request"
    error_class: ClassVar[type[InputFileError]] = InputFileError


Email = Annotated[Text, Field(min_length=3, max_length=320), Allowed("an e-mail address")]
Name = Annotated[Text, Field(min_length=1, max_length=200), Allowed("1 to 200 characters")]
Id = Annotated[Integer, Field(ge=1, le=INT64_MAX), Allowed("the id of a stored record")]
Draws = Annotated[Integer, Field(ge=0, le=1000)]


class LoginRequest(_Request):
    """Sign in a browser: a session cookie and a CSRF token."""

    email: Email
    password: Annotated[Text, Field(max_length=1024)]


class PasswordTokenRequest(_Request):
    """Create an API token with an e-mail and password (for scripts; shown once)."""

    email: Email
    password: Annotated[Text, Field(max_length=1024)]
    name: Name = "script"


class PasswordChange(_Request):
    """Change the caller's password: the current one and the new one (at least 12 characters)."""

    current_password: Annotated[Text, Field(max_length=1024)]
    new_password: Annotated[Text, Field(max_length=1024)]


class NewToken(_Request):
    """Create an API token for the signed-in user (shown once)."""

    name: Name


class NewUser(_Request):
    """Add a user to the caller's organisation (admins only)."""

    email: Email
    password: Annotated[Text, Field(max_length=1024)]
    role: Literal["admin", "member"] = "member"


class CourseIn(_Request):
    """Store a course (the course file as JSON), optionally under a stored patient."""

    course: Annotated[dict[str, Any], Allowed("a course (the course file's tables as JSON)")]
    patient_id: Id | None = None


class MoleculeIn(_Request):
    """Add a topical active to the organisation's library (the molecule library's format)."""

    key: Annotated[
        Text,
        Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*$"),
        Allowed("an identifier: lower-case letters, digits and _ (starting with a letter)"),
    ]
    molecule: Annotated[
        dict[str, Any],
        Allowed("a molecule table: mw, log_kow, d_aq, charge (each {value, units, source, kind})"),
    ]


class PopulationIn(_Request):
    """Add a virtual population (the population file as JSON) under its ``name``."""

    population: Annotated[dict[str, Any], Allowed("a population (the population file as JSON)")]


def _one_source(self: Any, a: str, b: str) -> None:
    if (getattr(self, a) is None) == (getattr(self, b) is None):
        raise InputError("", sorted(self.model_fields_set), f"exactly one of {a} or {b}")


class SimulateRequest(_Request):
    """Simulate one course (stored, or given inline). Answers inline (201, done) unless
    ``background`` is true or ``draws`` exceeds the server's inline limit (202, queued)."""

    course_id: Id | None = None
    course: Annotated[dict[str, Any], Allowed("a course (the course file as JSON)")] | None = None
    draws: Draws = 32
    seed: Annotated[Integer, Field(ge=0, le=INT64_MAX)] | None = None
    background: Flag = False

    @model_validator(mode="after")
    def _one(self) -> SimulateRequest:
        _one_source(self, "course_id", "course")
        return self


class AbsorbRequest(_Request):
    """Topical absorption per session of a course: engine (with intervals) and resolved cell."""

    course_id: Id | None = None
    course: Annotated[dict[str, Any], Allowed("a course (the course file as JSON)")] | None = None
    draws: Draws = 32
    seed: Annotated[Integer, Field(ge=0, le=INT64_MAX)] | None = None
    resolved: Flag = True

    @model_validator(mode="after")
    def _one(self) -> AbsorbRequest:
        _one_source(self, "course_id", "course")
        return self


class PlanRequest(_Request):
    """Plan a course for a patient (stored, or a patient file inline); limits may be overridden."""

    patient_id: Id | None = None
    patient: Annotated[dict[str, Any], Allowed("a patient file as JSON")] | None = None
    max_downtime_days: Annotated[Number, Field(ge=0)] | None = None
    max_total_downtime_days: Annotated[Number, Field(ge=0)] | None = None
    max_sessions: Annotated[Integer, Field(ge=1, le=1000)] | None = None
    max_pih_risk: Annotated[Number, Field(ge=0, le=1)] | None = None
    draws: Draws = 32
    figures: Flag = True

    @model_validator(mode="after")
    def _one(self) -> PlanRequest:
        _one_source(self, "patient_id", "patient")
        return self


class TrialRequest(_Request):
    """An in-silico trial: the trial spec as JSON. On the server an arm is a ``protocol`` (inline)
    or a ``course_id`` (a stored course; its patient is replaced), and ``trial.population`` a preset,
    a population of the organisation (by name) or an inline table; files are never read."""

    trial: Annotated[dict[str, Any], Allowed("a trial spec: [trial] and [[arms]] as JSON")]
    chunk_size: Annotated[Integer, Field(ge=1, le=MAX_CHUNK)] | None = None
    n_per_arm: Annotated[Integer, Field(ge=2)] | None = None


class SensitivityRequest(_Request):
    """Sobol indices of a course's end points over the parameter intervals."""

    course_id: Id | None = None
    course: Annotated[dict[str, Any], Allowed("a course (the course file as JSON)")] | None = None
    endpoints: tuple[Annotated[Text, Field(min_length=1)], ...] | None = None
    n_base: Annotated[Integer, Field(ge=2, le=1 << 20)] = 64
    seed: Annotated[Integer, Field(ge=0, le=INT64_MAX)] = 0
    parameters: tuple[Annotated[Text, Field(min_length=1)], ...] | None = None
    second_order: Flag = False
    chunk_size: Annotated[Integer, Field(ge=1, le=100_000)] = 512

    @model_validator(mode="after")
    def _one(self) -> SensitivityRequest:
        _one_source(self, "course_id", "course")
        return self


class ValidateRequest(_Request):
    """The held-out literature rows and the credibility report (or the delivery validation)."""

    draws: Draws | None = None
    seed: Annotated[Integer, Field(ge=0, le=INT64_MAX)] = 0
    sobol_n_base: Annotated[Integer, Field(ge=2, le=4096)] = 64
    sobol: Flag = True
    verification: Flag = True
    delivery: Flag = False


REQUESTS: dict[str, type[_Request]] = {
    "simulate": SimulateRequest,
    "plan": PlanRequest,
    "absorb": AbsorbRequest,
    "trial": TrialRequest,
    "sensitivity": SensitivityRequest,
    "validate": ValidateRequest,
}

#: request fields that hold an input file, and the file's model (named in the OpenAPI document;
#: the file's own model validates it)
_FILE_FIELDS: dict[str, type[InputModel]] = {
    "course": Course,
    "patient": PatientFile,
    "trial": TrialFile,
    "population": PopulationFile,
}


# ----------------------------------------------------------------------------- responses
class ErrorProblem(BaseModel):
    field: str
    value: Any = None
    allowed: str
    message: str
    missing: bool = Field(
        default=False, description="The field was absent (``value`` is then null)."
    )


class ErrorOut(BaseModel):
    """Every error: the status, one line in the CLI's words, and each problem."""

    status: int
    error: str
    problems: list[ErrorProblem] = []
    source: str | None = Field(
        default=None,
        description="What was being read when input was refused (e.g. 'course', 'trial spec').",
    )


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    database: str


class OrganisationOut(BaseModel):
    id: int
    name: str
    created_at: dt.datetime


class UserOut(BaseModel):
    id: int
    email: str
    role: str
    active: bool
    organisation_id: int
    created_at: dt.datetime


class MeOut(BaseModel):
    user: UserOut
    organisation: OrganisationOut
    auth: Literal["session", "token"]
    csrf_token: str | None = None


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class NewTokenOut(TokenOut):
    token: str = Field(description="The token itself: shown once, never stored in clear.")


class PatientOut(BaseModel):
    id: int
    name: str
    data: dict[str, Any]
    created_at: dt.datetime


class CourseOut(BaseModel):
    id: int
    name: str
    patient_id: int | None = None
    data: dict[str, Any]
    warnings: list[str] = []
    created_at: dt.datetime


class FileOut(BaseModel):
    name: str
    size: int
    media_type: str
    sha256: str
    url: str


class RunOut(BaseModel):
    id: int
    kind: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float
    progress_text: str
    patient_id: int | None = None
    course_id: int | None = None
    request: dict[str, Any]
    summary: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    cancel_requested: bool
    attempts: int = Field(description="How many times a job started it (2+: resumed).")
    files: list[FileOut] = []
    downloads: list[str] = Field(
        default=[], description="Files made on first download (from the stored result)."
    )
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class ParameterOut(BaseModel):
    name: str
    value: Any = None
    units: str
    low: Any = None
    high: Any = None
    kind: str
    sources: list[str]
    note: str = ""


class SourceOut(BaseModel):
    key: str
    citation: str
    url: str | None = None
    note: str | None = None


class MoleculeOut(BaseModel):
    key: str
    label: str
    mw_g_per_mol: float
    log_kow: float | None = None
    d_aq_m2_s: float
    charge: float
    sources: list[str]
    shipped: bool
    id: int | None = None
    data: dict[str, Any] | None = None


class PopulationOut(BaseModel):
    key: str = Field(description="What a trial's population names: a preset's key or your name.")
    name: str
    description: str = ""
    shipped: bool
    id: int | None = None
    data: dict[str, Any]


class AuditOut(BaseModel):
    id: int
    at: dt.datetime
    user_id: int | None = None
    token_id: int | None = None
    action: str
    resource: str
    resource_id: str | None = None
    detail: str
    ip: str | None = None

"""The planner's input: a patient file (person, questionnaire, sites with concerns, limits).

A patient file is TOML::

    name = "Acne scars and melasma"

    [patient]
    age_years = 34
    sex = "female"
    fitzpatrick = "V"

    [history]                       # questionnaire about the person (unanswered = no)
    isotretinoin_months_ago = 14
    anticoagulants = false

    [[sites]]
    name = "cheek"
    active_acne = false             # questionnaire about this site
    filler_months_ago = 2

    [[sites.concerns]]              # a course condition (same fields) + severity (+ weight)
    type = "acne_scar"
    scar_type = "rolling"
    depth_mm = 0.5
    count = 20
    severity = "moderate"

    [limits]
    max_downtime_days_per_session = 3
    max_sessions = 4
    allowed_devices = ["pen", "roller"]

Every refusal is a :class:`PatientFileError` (a :class:`~microneedling.errors.CourseValidationError`)
whose problems name the field (``sites[0].concerns[1].depth_mm``), the value and what is allowed.
Defaults of ``[limits]`` come from ``data/planner.toml`` (with their sources); the PIH constraint's
default is ``planning.max_pih_risk``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from microneedling.course.model import Condition, fitzpatrick_type
from microneedling.errors import CourseValidationError, InputError, InputFileError, ParameterError
from microneedling.io import data_path, read_toml
from microneedling.parameters.parameter_set import load_parameters, load_references
from microneedling.schema import INT64_MAX, Flag, InputModel, Integer, Number, Text, translate
from microneedling.vocabulary import (
    CONCERN_TYPES,
    DEVICES,
    SITE_ALIASES,
    SITES,
    SiteName,
)

__all__ = [
    "Concern",
    "Limits",
    "PatientFile",
    "PatientFileError",
    "PatientHistory",
    "PatientSite",
    "Person",
    "planner_config",
]

_Months = Annotated[Number, Field(ge=0, le=1200)]


class PatientFileError(CourseValidationError):
    """A patient file failed validation; every problem names field, value and what is allowed."""


@lru_cache(maxsize=1)
def planner_config() -> dict[str, Any]:
    """``data/planner.toml`` (search space, default limits, objective), parsed once; every cited
    source key must exist in the bibliography."""
    cfg = read_toml(data_path("planner.toml"))
    refs = load_references()

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key in node.get("source", []):
                if key not in refs:
                    raise ParameterError(f"planner.toml {path}: unknown source {key!r}")
            for k, v in node.items():
                if isinstance(v, Mapping):
                    walk(v, f"{path}.{k}" if path else k)

    walk(cfg, "")
    return cfg


class _Model(InputModel):
    """Base of the patient file's tables: errors are :class:`PatientFileError`."""

    file_kind: ClassVar[str] = "patient file"
    error_class: ClassVar[type[InputFileError]] = PatientFileError
    literal_aliases: ClassVar[Mapping[tuple[str, ...], Mapping[str, str]]] = {SITES: SITE_ALIASES}


class Person(_Model):
    """Age, sex and Fitzpatrick type (adults only, as in the course schema)."""

    age_years: Annotated[Integer, Field(ge=18, le=90)]
    sex: Literal["female", "male"]
    fitzpatrick: Annotated[Integer, BeforeValidator(fitzpatrick_type), Field(ge=1, le=6)]


class PatientHistory(_Model):
    """Questionnaire about the person (see ``data/contraindications.toml``); unanswered = no."""

    isotretinoin_months_ago: _Months | None = None
    herpes_labialis_history: Flag = False
    keloid_history: Flag = False
    hypertrophic_scar_history: Flag = False
    anticoagulants: Flag = False
    bleeding_disorder: Flag = False
    pregnant: Flag = False
    diabetes_uncontrolled: Flag = False
    immunosuppressed: Flag = False


class Concern(_Model):
    """A concern at a site: a course condition, its severity and an optional extra weight."""

    condition: Condition
    flattened_fields: ClassVar[frozenset[str]] = frozenset({"condition"})

    severity: Literal["mild", "moderate", "severe"] = "moderate"
    weight: Annotated[Number, Field(ge=0, le=100)] = 1.0

    @model_validator(mode="before")
    @classmethod
    def _nest_condition(cls, data: Any) -> Any:
        """A flat table (condition fields + severity + weight) becomes {condition, severity, weight}."""
        if isinstance(data, Mapping) and "condition" not in data:
            rest = {k: v for k, v in data.items() if k not in ("severity", "weight")}
            out = {k: data[k] for k in ("severity", "weight") if k in data}
            return {**out, "condition": rest}
        return data

    @property
    def type(self) -> str:
        return str(self.condition.type)


class PatientSite(_Model):
    """A site to treat, its questionnaire answers and its concerns (at least one)."""

    name: SiteName
    area_cm2: Annotated[Number, Field(gt=0, le=5000)] | None = None
    active_infection: Flag = False
    active_acne: Flag = False
    eczema_psoriasis_active: Flag = False
    vitiligo_active: Flag = False
    gold_threads: Flag = False
    radiotherapy_months_ago: _Months | None = None
    filler_months_ago: _Months | None = None
    concerns: tuple[Concern, ...]

    @field_validator("concerns")
    @classmethod
    def _some_concern(cls, v: tuple[Concern, ...]) -> tuple[Concern, ...]:
        # a check here, not Field(min_length=1): pydantic would also report an empty tuple
        # whenever one item failed, a misleading second problem
        if not v:
            raise InputError(
                "", [], f"at least one [[sites.concerns]] table, type one of {CONCERN_TYPES}"
            )
        return v


def _default(name: str) -> Any:
    return planner_config()["default_limits"][name]


class Limits(_Model):
    """What the patient accepts; defaults from ``data/planner.toml`` ``[default_limits]``."""

    max_downtime_days_per_session: Annotated[Number, Field(gt=0, le=30)] = Field(
        default_factory=lambda: float(_default("max_downtime_days_per_session"))
    )
    max_total_downtime_days: Annotated[Number, Field(gt=0, le=365)] | None = None
    max_sessions: Annotated[Integer, Field(ge=1, le=12)] = Field(
        default_factory=lambda: int(_default("max_sessions"))
    )
    earliest_interval_days: Annotated[Integer, Field(ge=7, le=180)] = Field(
        default_factory=lambda: int(_default("earliest_interval_days"))
    )
    latest_interval_days: Annotated[Integer, Field(ge=7, le=180)] = Field(
        default_factory=lambda: int(_default("latest_interval_days"))
    )
    allowed_devices: tuple[Literal["roller", "pen", "stamp"], ...] = ("roller", "pen", "stamp")
    allowed_topicals: tuple[str, ...] = ()
    concern_weights: dict[str, Annotated[Number, Field(ge=0, le=100)]] = Field(default_factory=dict)
    max_pih_risk: Annotated[Number, Field(gt=0, lt=1)] | None = None
    allow_above_usual_depth: Flag = False

    @model_validator(mode="after")
    def _consistent(self) -> Limits:
        if self.latest_interval_days < self.earliest_interval_days:
            raise InputError(
                "latest_interval_days",
                self.latest_interval_days,
                f"≥ earliest_interval_days ({self.earliest_interval_days} d)",
            )
        if not self.allowed_devices:
            raise InputError("allowed_devices", [], f"at least one of {DEVICES}")
        products = tuple(planner_config()["topicals"])
        for i, t in enumerate(self.allowed_topicals):
            if t not in products:
                raise InputError(
                    f"allowed_topicals[{i}]", t, f"one of {products} (data/planner.toml)"
                )
        for k in self.concern_weights:
            if k not in CONCERN_TYPES:
                raise InputError(f"concern_weights.{k}", k, f"a concern type among {CONCERN_TYPES}")
        return self

    def pih_limit(self) -> float:
        """The PIH constraint: ``max_pih_risk`` or the default ``planning.max_pih_risk``."""
        if self.max_pih_risk is not None:
            return float(self.max_pih_risk)
        return load_parameters().value("planning.max_pih_risk", "1")


class PatientFile(_Model):
    """A validated patient file (see the module docstring)."""

    name: Annotated[Text, Field(min_length=1)] = "patient"
    seed: Annotated[Integer, Field(ge=0, le=INT64_MAX)] = 0
    patient: Person
    history: PatientHistory = Field(default_factory=PatientHistory)
    sites: tuple[PatientSite, ...]
    limits: Limits = Field(default_factory=Limits)

    @field_validator("sites")
    @classmethod
    def _some_site(cls, v: tuple[PatientSite, ...]) -> tuple[PatientSite, ...]:
        if not v:
            raise InputError("", [], "at least one [[sites]] table")
        return v

    @model_validator(mode="after")
    def _unique_sites(self) -> PatientFile:
        seen: set[str] = set()
        for j, s in enumerate(self.sites):
            if s.name in seen:
                raise InputError(f"sites[{j}].name", s.name, "each site at most once")
            seen.add(s.name)
        return self

    def with_limits(self, **changes: Any) -> PatientFile:
        """A copy with some limits replaced (validated like the file; ``None`` values ignored)."""
        data = self.limits.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        try:
            limits = Limits.model_validate(data)
        except ValidationError as exc:
            raise PatientFileError(translate(exc, Limits, "limits"), source="limits") from None
        return self.model_copy(update={"limits": limits})

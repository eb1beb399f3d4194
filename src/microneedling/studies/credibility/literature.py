"""Published microneedling outcome data (``data/literature.toml``) as typed, validated rows.

Each row is one number a study reported (value, units, spread, n), the protocol it was measured
under, how firmly it was checked (``SEEN``, ``SEEN secondary`` or ``DERIVED``; recalled numbers are
never rows), and its role: ``calibration`` for exactly the targets fitted by
:mod:`microneedling.studies.credibility.calibrate` (same keys) and ``validation`` for the held-out
rest, each with a tolerance and a note on how the model observable maps onto the reported quantity.

``data/calibration/protocols.toml`` says how the model reproduces each row (:func:`load_protocols`,
:func:`protocol_course`: the stand-in course, the end point, the comparison), and
:func:`standard_error` gives a row's standard error for the weighted fit.

Both files are read into models on the shared schema base
(:class:`~microneedling.schema.InputModel`: :class:`LiteratureFile`, :class:`ProtocolsFile`);
every refusal is a :class:`LiteratureError` whose problems name the row and the field
(``dogra2014_score.role``, ``rows.dogra2014_score.compare``), the value and what is allowed.

References: a row's ``source`` names keys of ``data/references/*.toml`` (sources used only by
this file are in ``data/references/literature.toml``) or of the ``[_references.KEY]`` tables inside
``literature.toml``.

Roles are assigned by study, not by row: ``[_roles]`` gives every study (every reference key a row
names in ``source``) one role, the rule that decided it and the date it was decided, before any model
run (:func:`load_roles`). A row's ``role`` must be the role of each of its sources, so a study is
calibration or validation, never both.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from microneedling.course.model import Course, fitzpatrick_type
from microneedling.engine.endpoints import parse_endpoint
from microneedling.engine.variables import by_name
from microneedling.errors import InputError, InputFileError
from microneedling.io import data_path
from microneedling.parameters.molecules import shipped_molecules
from microneedling.parameters.parameter_set import Reference, load_references
from microneedling.schema import MISSING, Allowed, Flag, InputModel, Integer, Number, Text, Unit
from microneedling.units import UnitError, convert, parse_unit
from microneedling.vocabulary import DEVICES, SCAR_TYPES

__all__ = [
    "ASSESSORS",
    "BOUNDS",
    "COMPARES",
    "DEVICES",
    "EQUIVALENCE",
    "EVIDENCE",
    "FAMILIES",
    "OUTCOME_KINDS",
    "REFERENCES_TABLE",
    "ROLES",
    "ROLES_TABLE",
    "ROLE_RULES",
    "STAGES",
    "Conditions",
    "LiteratureError",
    "LiteratureFile",
    "LiteratureRow",
    "Protocol",
    "ProtocolTable",
    "ProtocolsFile",
    "ReferenceTable",
    "Roles",
    "RolesTable",
    "RowTable",
    "StudyRole",
    "StudyRoleTable",
    "calibration_keys",
    "load_literature",
    "load_protocol_file",
    "load_protocols",
    "load_references_all",
    "load_roles",
    "point_fit_rows",
    "protocol_course",
    "rows",
    "standard_error",
]

ROLES: tuple[str, ...] = ("calibration", "validation")
#: the claim families a row evidences (``family``), in the order reports show them
FAMILIES: tuple[str, ...] = (
    "collagen_elastin",
    "firmness_elasticity",
    "wrinkles",
    "texture",
    "acne_scars",
    "pores",
    "striae",
    "pigment",
    "pih",
    "downtime",
    "penetration_closure",
    "absorption",
)
EQUIVALENCE: tuple[str, ...] = ("equivalent", "minor", "major")
EVIDENCE: tuple[str, ...] = ("SEEN", "SEEN secondary", "DERIVED")
BOUNDS: tuple[str, ...] = ("upper", "lower")
REFERENCES_TABLE = "_references"
ROLES_TABLE = "_roles"
#: the labels of the rules that assign a study's role (their text is in ``[_roles.rules]``)
RoleRule = Literal["a", "b", "c", "d", "e", "f", "g"]
ROLE_RULES: tuple[str, ...] = get_args(RoleRule)


Assessor = Literal["blinded", "not blinded", "not stated", "instrument", "patient"]
ASSESSORS: tuple[str, ...] = get_args(Assessor)
"""Who judged a row's number (``assessor``): a rater blind to the treatment or time point, a rater
who was not, a rater whose blinding the source does not state, an instrument (profilometry,
colorimetry, histometry, imaging device, a measured time), or the patients themselves."""

OutcomeKind = Literal["subjective rating", "measurement", "count of events", "histology"]
OUTCOME_KINDS: tuple[str, ...] = get_args(OutcomeKind)
"""What kind of number a row is (``outcome_kind``): a rated grade, score or improvement category; a
measured quantity; a count of patients with an event (PIH, an adverse effect); or a histological
measure from biopsies."""


class LiteratureError(InputFileError):
    """``literature.toml`` or ``protocols.toml`` is malformed; every problem names the row and the
    field."""


class _Model(InputModel):
    """Base of the literature table's models: errors are :class:`LiteratureError`."""

    file_kind: ClassVar[str] = "literature table"
    error_class: ClassVar[type[InputFileError]] = LiteratureError


def _non_empty(v: str) -> str:
    if not v.strip():
        raise InputError("", v, "non-empty text")
    return v


NonEmpty = Annotated[Text, AfterValidator(_non_empty), Allowed("non-empty text")]


def _ordered(v: tuple[Any, Any]) -> tuple[Any, Any]:
    if v[0] > v[1]:
        raise InputError("", list(v), "[low, high] with low <= high")
    return v


def _unit(v: str) -> str:
    try:
        parse_unit(v)
    except UnitError as exc:
        raise InputError("", v, f"a unit of microneedling.units ({exc})") from None
    return v


def _listed(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


def _some(v: tuple[str, ...]) -> tuple[str, ...]:
    if not v:
        raise InputError("", [], "a reference key or a non-empty list of reference keys")
    return v


_FitzType = Annotated[Integer, Field(ge=1, le=6)]


class Conditions(_Model):
    """The protocol a number was measured under (``[KEY.conditions]``); ``None`` where the study
    does not report it."""

    device: Literal["roller", "pen", "stamp"] | None = None
    needle_length_mm: Annotated[Number, Field(ge=0), Unit("mm")] | None = None
    needle_length_range_mm: (
        Annotated[
            tuple[Annotated[Number, Field(ge=0)], Annotated[Number, Field(ge=0)]],
            AfterValidator(_ordered),
            Allowed("[low, high] in mm, low <= high: a band of needle lengths"),
        ]
        | None
    ) = None
    passes: Annotated[Integer, Field(ge=0)] | None = None
    sessions: Annotated[Integer, Field(ge=0)] | None = None
    interval_days: Annotated[Number, Field(ge=0), Unit("d")] | None = None
    time_after_last_days: Annotated[Number, Field(ge=0), Unit("d")] | None = None
    site: Text | None = None
    fitzpatrick: (
        Annotated[
            tuple[_FitzType, _FitzType],
            AfterValidator(_ordered),
            Allowed("[low, high]: Fitzpatrick types from 1 to 6, low <= high"),
        ]
        | None
    ) = None
    age_years: (
        Annotated[
            tuple[Number, Number],
            AfterValidator(_ordered),
            Allowed("[low, high] in years, low <= high"),
        ]
        | None
    ) = None
    species: Text = "human"
    note: Text = ""


class RowTable(_Model):
    """One row of ``literature.toml`` as the file spells it (see the file's header)."""

    source: Annotated[
        tuple[NonEmpty, ...],
        BeforeValidator(_listed),
        AfterValidator(_some),
        Allowed("a reference key or a list of reference keys"),
    ]
    quantity: NonEmpty
    observable: NonEmpty
    layer: Text | None = None
    family: Literal[
        "collagen_elastin",
        "firmness_elasticity",
        "wrinkles",
        "texture",
        "acne_scars",
        "pores",
        "striae",
        "pigment",
        "pih",
        "downtime",
        "penetration_closure",
        "absorption",
    ]
    value: Number
    units: Annotated[
        Text, AfterValidator(_non_empty), AfterValidator(_unit), Allowed("a unit string")
    ]
    baseline: Number | None = None
    baseline_sd: Annotated[Number, Field(ge=0)] | None = None
    sd: Annotated[Number, Field(ge=0)] | None = None
    se: Annotated[Number, Field(ge=0)] | None = None
    ci_low: Number | None = None
    ci_high: Number | None = None
    range_low: Number | None = None
    range_high: Number | None = None
    n: Annotated[Integer, Field(ge=0)] | None = None
    k: Annotated[Integer, Field(ge=0)] | None = None
    bound: Literal["upper", "lower"] | None = None
    direction_only: Flag = False
    arm: Text = ""
    compare_with: Text = ""
    contrast: Literal["difference", "ratio"] = "difference"
    co_treatment: Text = ""
    evidence: Annotated[
        Literal["SEEN", "SEEN secondary", "DERIVED"],
        Allowed("one of 'SEEN', 'SEEN secondary', 'DERIVED' (never RECALLED)"),
    ]
    read_at: NonEmpty
    role: Literal["calibration", "validation"]
    equivalence: Literal["equivalent", "minor", "major"]
    assessor: Assessor | None = None
    outcome_kind: OutcomeKind | None = None
    tolerance: Number | None = None
    tolerance_reason: Text = ""
    comparable: NonEmpty
    quote: Text = ""
    note: Text = ""
    sets_parameters: tuple[NonEmpty, ...] = ()
    conditions: Conditions = Field(default_factory=Conditions)

    @model_validator(mode="after")
    def _consistent(self) -> RowTable:
        problems: list[InputError] = []
        scored_by_rule = self.direction_only or self.k is not None
        if self.role == "validation" and self.sets_parameters:
            problems.append(
                InputError(
                    "sets_parameters",
                    list(self.sets_parameters),
                    "none on a validation row (a number that set a parameter by hand is "
                    "calibration data; its study cannot validate the model)",
                )
            )
        if self.role == "validation":
            if scored_by_rule:
                if self.tolerance is not None:
                    problems.append(
                        InputError(
                            "tolerance",
                            self.tolerance,
                            "no tolerance for a direction-only or count row (scored on the sign, "
                            "or with the binomial distribution)",
                        )
                    )
            elif self.tolerance is None or self.tolerance <= 0:
                tol = MISSING if self.tolerance is None else self.tolerance
                problems.append(
                    InputError("tolerance", tol, "a positive number for a validation row")
                )
            if not self.tolerance_reason.strip():
                reason = (
                    self.tolerance_reason
                    if "tolerance_reason" in self.model_fields_set
                    else MISSING
                )
                problems.append(
                    InputError(
                        "tolerance_reason",
                        reason,
                        "non-empty text for a validation row (why that tolerance or rule)",
                    )
                )
        if self.direction_only:
            if self.value != 0:
                problems.append(InputError("value", self.value, "0 for a direction-only row"))
            if self.bound is None:
                problems.append(
                    InputError(
                        "bound",
                        MISSING,
                        "'upper' (the change is below 0) or 'lower' (above 0) for a "
                        "direction-only row",
                    )
                )
        if self.k is not None:
            if self.n is None or self.k > self.n:
                problems.append(
                    InputError("k", self.k, "a count with n given and k <= n (k of n patients)")
                )
            elif self.units != "%" or abs(self.value - 100.0 * self.k / self.n) > 0.01:
                problems.append(
                    InputError(
                        "value",
                        self.value,
                        f"100 k / n = {100.0 * self.k / self.n:.2f} in units '%' for a count row",
                    )
                )
        if self.contrast == "ratio" and not self.compare_with.strip():
            problems.append(
                InputError("contrast", "ratio", "'difference' unless compare_with names an arm")
            )
        if self.evidence == "SEEN" and not self.quote.strip():
            problems.append(
                InputError("quote", MISSING, "the words the number was read in (evidence SEEN)")
            )
        if self.evidence != "SEEN" and not (self.quote.strip() or self.note.strip()):
            problems.append(
                InputError(
                    "note",
                    MISSING,
                    "a quote or a note saying how the number was formed (evidence "
                    f"{self.evidence})",
                )
            )
        for lo_f, hi_f in (("ci_low", "ci_high"), ("range_low", "range_high")):
            lo, hi = getattr(self, lo_f), getattr(self, hi_f)
            if (lo is None) != (hi is None):
                absent, given = (hi_f, lo_f) if hi is None else (lo_f, hi_f)
                problems.append(
                    InputError(absent, MISSING, f"a number given with {given} (both or neither)")
                )
            elif lo is not None and self.value < lo:
                problems.append(
                    InputError(
                        lo_f, lo, f"a number <= value ({self.value:g}): [{lo_f}, {hi_f}] holds it"
                    )
                )
            elif hi is not None and self.value > hi:
                problems.append(
                    InputError(
                        hi_f, hi, f"a number >= value ({self.value:g}): [{lo_f}, {hi_f}] holds it"
                    )
                )
        if problems:
            raise InputFileError(problems)
        return self


class ReferenceTable(_Model):
    """A ``[_references.KEY]`` table (same fields as ``data/references/*.toml``)."""

    citation: NonEmpty
    url: Text = ""
    note: Text = ""


def _iso_date(v: str) -> str:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
        raise InputError("", v, "a date YYYY-MM-DD")
    return v


class StudyRoleTable(_Model):
    """One study's entry of ``[_roles.studies]``: its role, the rule (a label of ``[_roles.rules]``)
    that decided it and why."""

    role: Literal["calibration", "validation"]
    rule: RoleRule
    reason: NonEmpty


class RolesTable(_Model):
    """``[_roles]``: when roles were assigned, the rule, and one role per study."""

    assigned: Annotated[Text, AfterValidator(_iso_date), Allowed("a date YYYY-MM-DD")]
    rule: NonEmpty
    rules: Annotated[
        dict[RoleRule, NonEmpty],
        Allowed("a table of rule texts keyed " + ", ".join(f"'{r}'" for r in ROLE_RULES)),
    ]
    studies: dict[
        str,
        Annotated[StudyRoleTable, Allowed("a table {role, rule, reason}")],
    ]

    @model_validator(mode="after")
    def _rules_defined(self) -> RolesTable:
        problems = [
            InputError(f"{ROLES_TABLE}.studies.{k}.rule", t.rule, f"a key of [{ROLES_TABLE}.rules]")
            for k, t in self.studies.items()
            if t.rule not in self.rules
        ]
        if problems:
            raise InputFileError(problems)
        return self


class LiteratureFile(_Model):
    """``literature.toml``: one row table per key, the roles by study ``[_roles]`` and the file's
    own ``[_references]``.

    Every row's sources must resolve (in ``data/references/*.toml`` or ``[_references]``), and the
    file's own references may add keys, never redefine those of ``data/references/*.toml``. Every
    source of every row has a role in ``[_roles.studies]`` and the row's ``role`` is that role.
    """

    roles: Annotated[
        RolesTable,
        Allowed("the table [_roles] (assigned, rule, rules, studies)"),
    ] = Field(alias="_roles")  # = ROLES_TABLE
    references: Annotated[
        dict[str, ReferenceTable],
        Allowed("a table of reference tables [_references.KEY] (citation, url, note)"),
    ] = Field(default_factory=dict, alias="_references")  # = REFERENCES_TABLE
    rows: dict[
        str, Annotated[RowTable, Allowed("a row table (fields: see the header of the file)")]
    ] = Field(default_factory=dict)
    flattened_fields: ClassVar[frozenset[str]] = frozenset({"rows"})

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        """Rows sit at the top of the file beside ``[_references]``."""
        if isinstance(data, Mapping):
            special = (REFERENCES_TABLE, ROLES_TABLE)
            out: dict[str, Any] = {"rows": {k: v for k, v in data.items() if k not in special}}
            for name in special:
                if name in data:
                    out[name] = data[name]
            return out
        return data

    @model_validator(mode="after")
    def _sources_resolve(self) -> LiteratureFile:
        package = load_references()
        problems = [
            InputError(
                f"{REFERENCES_TABLE}.{k}",
                k,
                "a key not in data/references/*.toml ([_references] adds references, it never "
                "redefines one)",
            )
            for k in sorted(set(self.references) & set(package))
        ]
        known = set(package) | set(self.references)
        studies = self.roles.studies
        problems += [
            InputError(f"{ROLES_TABLE}.studies.{k}", k, "a reference key (unknown)")
            for k in studies
            if k not in known
        ]
        for key, row in self.rows.items():
            for s in row.source:
                if s not in known:
                    problems.append(
                        InputError(
                            f"{key}.source",
                            s,
                            "a key of data/references/*.toml or of [_references] (unknown)",
                        )
                    )
                elif s not in studies:
                    problems.append(
                        InputError(
                            f"{key}.source",
                            s,
                            f"a study with a role in [{ROLES_TABLE}.studies] (every source has one)",
                        )
                    )
                elif studies[s].role != row.role:
                    problems.append(
                        InputError(
                            f"{key}.role",
                            row.role,
                            f"{studies[s].role!r}: the role of study {s!r} in "
                            f"[{ROLES_TABLE}.studies] (a study is calibration or validation, "
                            "never both)",
                        )
                    )
        for key, row in self.rows.items():
            other = row.compare_with.split(" ", 1)[0]
            if other in self.rows and not set(self.rows[other].source) & set(row.source):
                problems.append(
                    InputError(
                        f"{key}.compare_with",
                        other,
                        "an arm of the same study (a row with one of the sources "
                        f"{list(row.source)})",
                    )
                )
        if problems:
            raise InputFileError(problems)
        return self

    def all_references(self) -> dict[str, Reference]:
        """The package bibliography merged with the file's own references."""
        own = {
            k: Reference(key=k, citation=r.citation, url=r.url, note=r.note)
            for k, r in self.references.items()
        }
        return {**load_references(), **own}

    def study_roles(self) -> Roles:
        """The ``[_roles]`` table as plain data."""
        t = self.roles
        return Roles(
            assigned=t.assigned,
            rule=t.rule,
            rules={str(k): v for k, v in t.rules.items()},
            studies={
                k: StudyRole(study=k, role=v.role, rule=v.rule, reason=v.reason)
                for k, v in t.studies.items()
            },
        )

    def literature_rows(self) -> list[LiteratureRow]:
        """The rows, in file order."""
        return [_literature_row(k, r) for k, r in self.rows.items()]


@dataclass(frozen=True)
class StudyRole:
    """The role of one study (a reference key), the rule that decided it and why."""

    study: str
    role: str
    rule: str
    reason: str


@dataclass(frozen=True)
class Roles:
    """``[_roles]``: the date the roles were assigned, the rule (and its parts) and every study."""

    assigned: str
    rule: str
    rules: dict[str, str]
    studies: dict[str, StudyRole]

    def of(self, role: str) -> list[str]:
        """The studies with ``role``, sorted."""
        return sorted(k for k, v in self.studies.items() if v.role == role)


@dataclass(frozen=True)
class LiteratureRow:
    """One published number with its provenance, protocol and role."""

    key: str
    sources: tuple[str, ...]
    quantity: str
    observable: str
    value: float
    units: str
    evidence: str
    role: str
    conditions: Conditions
    comparable: str
    layer: str | None = None
    baseline: float | None = None
    baseline_sd: float | None = None
    sd: float | None = None
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    range_low: float | None = None
    range_high: float | None = None
    n: int | None = None
    k: int | None = None
    bound: str | None = None
    direction_only: bool = False
    arm: str = ""
    compare_with: str = ""
    contrast: str = "difference"
    co_treatment: str = ""
    family: str = ""
    read_at: str = ""
    equivalence: str = ""
    assessor: str | None = None
    outcome_kind: str | None = None
    tolerance: float | None = None
    tolerance_reason: str = ""
    quote: str = ""
    note: str = ""
    sets_parameters: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """The first (main) reference key."""
        return self.sources[0]

    @property
    def study(self) -> str:
        """The study the row belongs to (its first source; every source has the same role)."""
        return self.sources[0]

    @property
    def two_arm(self) -> bool:
        """The row gives the contrast (difference or ratio) between two arms of one study."""
        return bool(self.compare_with.strip())

    @property
    def spread_reported(self) -> bool:
        """The study reported the number's spread: an SE, an SD, a CI, a range, or a count (k of
        n, whose spread is binomial). A row without one gets a default SE from ``default_cv``
        (:func:`standard_error`), which is not evidence of the study's spread."""
        return (
            self.se is not None
            or self.sd is not None
            or self.ci_low is not None
            or self.range_low is not None
            or self.k is not None
        )

    @property
    def kind(self) -> str:
        """How the row is scored: ``count`` (k of n, binomial), ``direction`` (sign only),
        ``two_arm`` (sign and size of a contrast), ``bound`` or ``value``."""
        if self.k is not None:
            return "count"
        if self.direction_only:
            return "direction"
        if self.two_arm:
            return "two_arm"
        if self.bound is not None:
            return "bound"
        return "value"

    @property
    def time_point_days(self) -> float | None:
        """Time of the measurement after the last session (days), if reported."""
        return self.conditions.time_after_last_days

    @property
    def relative_change_percent(self) -> float | None:
        """100 (value - baseline) / baseline for "before -> after" rows, else ``None``."""
        if self.baseline is None or self.baseline == 0:
            return None
        return 100.0 * (self.value - self.baseline) / self.baseline

    def value_in(self, unit: str) -> float:
        """The value converted to ``unit`` (e.g. ``row.value_in("d")`` for an hours row)."""
        return float(convert(self.value, self.units, unit))


def _literature_row(key: str, t: RowTable) -> LiteratureRow:
    fields = t.model_dump(exclude={"source", "conditions"})
    return LiteratureRow(key=key, sources=t.source, conditions=t.conditions, **fields)


def _path() -> Path:
    return data_path("literature.toml")


def _read(path: Path | None) -> LiteratureFile:
    return LiteratureFile.from_toml(path or _path())


def load_references_all(path: Path | None = None) -> dict[str, Reference]:
    """The package bibliography merged with the ``[_references]`` tables of ``literature.toml``."""
    return _read(path).all_references()


def load_roles(path: Path | None = None) -> Roles:
    """The roles by study of ``literature.toml`` (``[_roles]``), with their date and rule."""
    return _read(path).study_roles()


def load_literature(path: Path | None = None) -> list[LiteratureRow]:
    """Read and validate ``data/literature.toml`` (or ``path``); rows in file order.

    Raises
    ------
    LiteratureError
        On an unknown reference key, role, evidence tag or unit, a missing field, or a validation
        row without a positive tolerance; every problem names the row and the field.
    """
    return _read(path).literature_rows()


def rows(role: str | None = None, path: Path | None = None) -> list[LiteratureRow]:
    """Rows of ``literature.toml``, optionally only those with ``role``."""
    if role is not None and role not in ROLES:
        allowed = "one of " + ", ".join(repr(r) for r in ROLES)
        raise LiteratureError([InputError("role", role, allowed)], source="rows()")
    return [r for r in load_literature(path) if role is None or r.role == role]


def calibration_keys(path: Path | None = None) -> tuple[str, ...]:
    """Keys of every calibration row."""
    return tuple(r.key for r in rows("calibration", path))


def point_fit_rows(
    path: Path | None = None, protocols_path: Path | None = None
) -> list[LiteratureRow]:
    """The calibration rows of the least-squares point fit, in the order listed in
    ``protocols.toml [settings] point_fit_rows`` (every one must be a calibration row).

    The point fit (:func:`microneedling.studies.credibility.calibrate.fit`) keeps its four targets
    while the calibration set grows; the other calibration rows are data for the statistical
    calibration (issue 11) and are never validation rows.
    """
    listed = load_protocol_file(protocols_path).get("settings", {}).get("point_fit_rows")
    cal = rows("calibration", path)
    keys = {r.key for r in cal}
    if not isinstance(listed, list) or not listed:
        raise LiteratureError(
            [
                InputError(
                    "settings.point_fit_rows",
                    MISSING if listed is None else listed,
                    "a non-empty list of calibration row keys",
                )
            ],
            source="protocols.toml",
        )
    unknown = [k for k in listed if k not in keys]
    if unknown:
        raise LiteratureError(
            [
                InputError(
                    "settings.point_fit_rows",
                    k,
                    "a key of a calibration row of literature.toml",
                )
                for k in unknown
            ],
            source="protocols.toml",
        )
    by_key = {r.key: r for r in cal}
    return [by_key[k] for k in listed]


# ----------------------------------------------------------------------------- protocols
COMPARES: tuple[str, ...] = (
    "value",
    "per_session_mean",
    "relative_change",
    "grade",
    "course_incidence",
)
STAGES: tuple[str, ...] = (
    "puncture_density",
    "channel_depth",
    "channel_diameter",
    "resealing_time",
    "intact_kp",
)
#: stages that need no course: the resealing time (a closure rate) and the intact-skin
#: permeability of a product (``topical`` names the molecule and, optionally, the vehicle pH)
COURSELESS_STAGES: tuple[str, ...] = ("resealing_time", "intact_kp")


@dataclass(frozen=True)
class Protocol:
    """How the model reproduces one literature row (``data/calibration/protocols.toml``).

    ``course`` is the stand-in course as a dict for :meth:`microneedling.course.Course.from_dict`
    (``None`` for stage rows that need no course), ``endpoint`` an end point of
    :mod:`microneedling.engine.endpoints` or ``stage`` a needles/transport output; ``compare`` says
    how model and row meet (see the header of ``protocols.toml``).
    """

    key: str
    compare: str
    assumptions: str
    course: dict[str, Any] | None = None
    endpoint: str | None = None
    stage: str | None = None
    closure: str | None = None
    #: resealing rows: the skin was covered (a patch, a dressing) while the channels closed
    occluded: bool = False
    #: ``intact_kp`` rows (no course): the product (``product``) and optional vehicle ``ph``
    topical: dict[str, Any] | None = None
    evaluable: bool = True
    reason: str = ""
    #: numeric stand-ins the calibration may sample as nuisance parameters: setting -> (low, high)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: the other stand-ins (choices, or ranges of settings the calibration does not sample yet)
    stand_ins: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    #: two-arm rows: the comparator arm as course overrides; ``{"untreated": True}`` for an
    #: untreated arm (the model's change there is 0 by construction)
    reference: dict[str, Any] | None = None
    #: an observable the row compares with that is not yet an output (the row waits for it)
    awaiting: str = ""
    #: a responder row (k of n patients in a category): the category is the end point's value
    #: ``<= threshold`` (``direction = "below"``) or ``>= threshold`` (``"above"``); the model's
    #: fraction is the ordered-probit map of the typical patient's value with the between-patient
    #: SD the row reports, else that of a virtual cohort (validate)
    threshold: float | None = None
    direction: str = "below"

    @property
    def untreated_reference(self) -> bool:
        """The comparator arm is untreated skin."""
        return bool(self.reference and self.reference.get("untreated"))

    def reference_protocol(self) -> Protocol | None:
        """The comparator arm of a two-arm row as a protocol of its own (same end point and
        comparison, the course with ``reference`` applied); ``None`` for an untreated arm or a
        row without a reference."""
        if self.reference is None or self.untreated_reference:
            return None
        course = None
        if self.course is not None:
            course = copy.deepcopy(self.course)
            ref = dict(self.reference)
            devices = ref.pop("device_table", None)
            if devices is not None:
                course["device"] = dict(devices)
                if devices.get("type") != "pen":
                    for s in course["sessions"]:
                        s.pop("pen_speed_cm_s", None)
            if "sessions" in ref:
                days = sorted({float(s["day"]) for s in course["sessions"]})
                keep = set(days[: int(ref["sessions"])])
                after = float(course["horizon_days"]) - days[-1]
                course["sessions"] = [s for s in course["sessions"] if float(s["day"]) in keep]
                course["horizon_days"] = max(keep) + after
            if "scar_type" in ref:
                for site in course["sites"]:
                    for c in site["conditions"]:
                        if c.get("type") == "acne_scar":
                            c["scar_type"] = ref["scar_type"]
            for s in course["sessions"]:
                for name in ("needle_length_mm", "passes", "pen_speed_cm_s"):
                    if name in ref:
                        s[name] = ref[name]
                if "topical" in ref:
                    if ref["topical"]:
                        s["topical"] = dict(ref["topical"])
                    else:
                        s.pop("topical", None)
            course["name"] = f"protocol {self.key} (comparator arm)"
        return dataclasses.replace(self, course=course, reference=None)


class _ProtocolModel(InputModel):
    """Base of the protocols file's models: errors are :class:`LiteratureError`."""

    file_kind: ClassVar[str] = "protocols file"
    error_class: ClassVar[type[InputFileError]] = LiteratureError


#: observables that literature rows compare with but that are not (yet) rows of
#: engine/variables.py: a protocol may name them, and the row is "awaiting" until they exist.
#: ``agreed``: in the list of outputs being built for issue 10; ``proposed``: suggested by the
#: research engineers with the rows, not yet agreed.
AWAITED_OBSERVABLES: dict[str, str] = {
    "mature_collagen_change": "agreed",
    "firmness_change": "agreed",
    "texture_roughness": "agreed",
    "scar_grade": "agreed",
    "masi_score": "agreed",
    "mmasi_score": "agreed",
    "closure_hours": "agreed",
    "scar_score": "proposed",
    "pain_score": "proposed",
    "melanin_contrast": "proposed",
    "elasticity_net": "proposed",
    "elasticity_biological": "proposed",
    "striae_improvement_score": "proposed",
    "striae_scar_score": "proposed",
    "melasma_recurrence": "proposed",
}
#: the numeric stand-ins a protocol may give as ``ranges`` (the calibration's nuisance settings)
RANGE_SETTINGS: tuple[str, ...] = (
    "needle_length_mm",
    "passes",
    "age_years",
    "fitzpatrick",
    "interval_days",
)


def endpoint_variable(endpoint: str) -> str:
    """The variable an end point names (the text before ``.``, ``:`` or ``@``)."""
    m = re.match(r"[A-Za-z_]+", endpoint)
    return m.group(0) if m else ""


def awaited(endpoint: str) -> str:
    """The awaited observable an end point names, or ``""`` when its variable is an output."""
    name = endpoint_variable(endpoint)
    if name in AWAITED_OBSERVABLES and name not in by_name():
        return name
    return ""


def _endpoint(v: str) -> str:
    if not awaited(v):
        parse_endpoint(v, field="")
    return v


def _non_empty_days(v: Any) -> Any:
    if isinstance(v, list | tuple) and not v:
        raise InputError("", v, "a non-empty list of days")
    return v


_NO_COURSE = "every evaluable row but those with stage = 'resealing_time' or 'intact_kp'"
#: what the comparator arm of a two-arm row may change
_REFERENCE_FIELDS = (
    "untreated",
    "device",
    "needle_length_mm",
    "passes",
    "pen_speed_cm_s",
    "topical",
    "sessions",
    "scar_type",
)
#: fields a row with a course needs (every row except ``stage = "resealing_time"`` or
#: ``"intact_kp"``)
_COURSE_FIELDS = (
    "device",
    "site",
    "session_days",
    "needle_length_mm",
    "horizon_days",
    "age_years",
    "fitzpatrick",
)


class ProtocolTable(_ProtocolModel):
    """A ``[rows.KEY]`` table: the stand-in protocol of a literature row (see the file's header).

    The course fields are passed to :class:`~microneedling.course.Course`, which validates them when
    the protocol runs (:func:`protocol_course`).
    """

    evaluable: Flag = True
    reason: Text = ""
    compare: Literal[
        "value", "per_session_mean", "relative_change", "grade", "course_incidence"
    ] | (None) = None
    assumptions: Text | None = None
    endpoint: Annotated[Text, AfterValidator(_endpoint)] | None = None
    stage: (
        Literal[
            "puncture_density", "channel_depth", "channel_diameter", "resealing_time", "intact_kp"
        ]
        | None
    ) = None
    closure: Literal["pores", "barrier", "half"] | None = None
    #: a resealing_time row measured under occlusion (transport.k_close_occluded)
    occluded: Flag = False
    device: Annotated[Text, Allowed("a device of [devices]")] | None = None
    site: Text | None = None
    session_days: (
        Annotated[
            tuple[Annotated[Number, Field(ge=0), Unit("d")], ...],
            BeforeValidator(_non_empty_days),
            Allowed("a non-empty list of days"),
        ]
        | None
    ) = None
    needle_length_mm: Annotated[Number, Unit("mm")] | None = None
    passes: Integer = 1
    pen_speed_cm_s: Annotated[Number, Field(gt=0), Unit("cm/s")] | None = None
    horizon_days: Annotated[Number, Unit("d")] | None = None
    age_years: Integer | None = None
    sex: Literal["female", "male"] = "female"
    fitzpatrick: (
        Annotated[
            Integer,
            BeforeValidator(fitzpatrick_type),
            Allowed("an integer from 1 to 6 or a roman numeral I to VI"),
        ]
        | None
    ) = None
    scar: Annotated[dict[str, Any], Allowed("acne_scar condition fields (a table)")] | None = None
    pigment: (
        Annotated[dict[str, Any], Allowed("hyperpigmentation condition fields (a table)")] | None
    ) = None
    topical: Annotated[dict[str, Any], Allowed("a course topical (a table)")] | None = None
    striae: Annotated[dict[str, Any], Allowed("striae condition fields (a table)")] | None = None
    wrinkles: Annotated[dict[str, Any], Allowed("wrinkles condition fields (a table)")] | None = (
        None
    )
    pores: Annotated[dict[str, Any], Allowed("pores condition fields (a table)")] | None = None
    photoaging: (
        Annotated[dict[str, Any], Allowed("photoaging condition fields (a table)")] | None
    ) = None
    ranges: Annotated[
        dict[str, tuple[Number, Number]],
        Allowed(
            "a table {setting = [low, high]} of the numeric stand-ins "
            "(needle_length_mm, passes, age_years, fitzpatrick, interval_days)"
        ),
    ] = Field(default_factory=dict)
    stand_ins: Annotated[
        dict[str, tuple[Number, Number] | tuple[Text, ...]],
        Allowed("a table {setting = [low, high] or [choice, ...]} of the other stand-ins"),
    ] = Field(default_factory=dict)
    threshold: Number | None = None
    direction: Literal["below", "above"] = "below"
    reference: (
        Annotated[
            dict[str, Any],
            Allowed(
                "the comparator arm of a two-arm row: {untreated = true} or overrides of "
                "device (a [devices] name), needle_length_mm, passes, pen_speed_cm_s (a pen's "
                "hand speed, for a pen comparator of a roller course), topical, sessions (the "
                "first N sessions), scar_type (the same scars of another type)"
            ),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _complete(self) -> ProtocolTable:
        if not self.evaluable:
            if not self.reason.strip():
                reason = self.reason if "reason" in self.model_fields_set else MISSING
                raise InputError("reason", reason, "non-empty text: why the row is not evaluable")
            return self
        problems: list[InputError] = []
        for name, allowed in (
            ("compare", "one of " + ", ".join(repr(c) for c in COMPARES)),
            ("assumptions", "text: every stand-in setting of the protocol"),
        ):
            if getattr(self, name) is None:
                problems.append(InputError(name, MISSING, f"required field: {allowed}"))
        if (self.stage is None) == (self.endpoint is None):
            problems.append(
                InputError(
                    "endpoint/stage",
                    [self.endpoint, self.stage],
                    "exactly one of endpoint or stage",
                )
            )
        if self.threshold is not None and (self.endpoint is None or self.compare != "value"):
            problems.append(
                InputError(
                    "threshold",
                    self.threshold,
                    "a threshold only on an end point compared by value (a responder row)",
                )
            )
        if self.stage == "resealing_time" and self.closure is None:
            problems.append(
                InputError(
                    "closure", MISSING, "'pores', 'barrier' or 'half' for a resealing_time row"
                )
            )
        if self.occluded and self.stage != "resealing_time":
            problems.append(
                InputError("occluded", self.occluded, "true only on a resealing_time row")
            )
        if self.stage == "intact_kp":
            problems += _intact_kp_problems(self.topical)
        if self.needs_course:
            problems += [
                InputError(name, MISSING, f"required for a row with a course ({_NO_COURSE})")
                for name in _COURSE_FIELDS
                if getattr(self, name) is None
            ]
        problems += self._stand_in_problems()
        if self.reference is not None:
            bad = sorted(set(self.reference) - set(_REFERENCE_FIELDS))
            problems += [
                InputError(
                    f"reference.{b}", self.reference[b], "one of " + ", ".join(_REFERENCE_FIELDS)
                )
                for b in bad
            ]
            scar_type = self.reference.get("scar_type")
            if scar_type is not None and (self.scar is None or scar_type not in SCAR_TYPES):
                problems.append(
                    InputError(
                        "reference.scar_type",
                        scar_type,
                        "one of " + ", ".join(SCAR_TYPES) + " on a row whose course has a scar",
                    )
                )
        if problems:
            raise InputFileError(problems)
        return self

    def setting_value(self, name: str) -> float | None:
        """The protocol's value of a numeric setting (``interval_days``: the spacing of the
        sessions), or ``None`` when the protocol has no such value."""
        if name == "interval_days":
            days = sorted(set(self.session_days or ()))
            return days[1] - days[0] if len(days) > 1 else None
        v = getattr(self, name, None)
        return None if v is None else float(v)

    def _stand_in_problems(self) -> list[InputError]:
        problems: list[InputError] = []
        for name, (lo, hi) in self.ranges.items():
            if name not in RANGE_SETTINGS:
                problems.append(
                    InputError(
                        f"ranges.{name}", [lo, hi], "a setting among " + ", ".join(RANGE_SETTINGS)
                    )
                )
                continue
            v = self.setting_value(name)
            if not lo <= hi:
                problems.append(InputError(f"ranges.{name}", [lo, hi], "[low, high], low <= high"))
            elif v is not None and not lo <= v <= hi:
                problems.append(
                    InputError(
                        f"ranges.{name}", [lo, hi], f"a range that holds the stand-in value {v:g}"
                    )
                )
        for name, spec in self.stand_ins.items():
            if name in RANGE_SETTINGS:
                problems.append(
                    InputError(
                        f"stand_ins.{name}", list(spec), f"in ranges, not stand_ins ({name})"
                    )
                )
            elif not spec:
                problems.append(InputError(f"stand_ins.{name}", [], "a range or choices"))
            elif all(isinstance(x, int | float) for x in spec) and (
                len(spec) != 2 or not spec[0] <= spec[1]  # type: ignore[operator]
            ):
                problems.append(
                    InputError(f"stand_ins.{name}", list(spec), "[low, high], low <= high")
                )
        return problems

    @property
    def needs_course(self) -> bool:
        return self.evaluable and self.stage not in COURSELESS_STAGES


def _intact_kp_problems(topical: dict[str, Any] | None) -> list[InputError]:
    """An ``intact_kp`` row's ``topical``: a shipped product and, optionally, a vehicle pH."""
    names = shipped_molecules()
    allowed = "a table {product = <a molecule of molecules.toml>, ph = <vehicle pH, optional>}"
    if topical is None:
        return [InputError("topical", MISSING, allowed)]
    problems = [
        InputError(f"topical.{k}", v, "only product and ph on an intact_kp row")
        for k, v in topical.items()
        if k not in ("product", "ph")
    ]
    if topical.get("product") not in names:
        problems.append(
            InputError(
                "topical.product", topical.get("product", MISSING), "one of " + ", ".join(names)
            )
        )
    ph = topical.get("ph")
    if ph is not None and not (isinstance(ph, int | float) and 0.0 < float(ph) < 14.0):
        problems.append(InputError("topical.ph", ph, "a vehicle pH between 0 and 14"))
    return problems


class ProtocolsFile(_ProtocolModel):
    """``protocols.toml``: ``[settings]`` and ``[[fit]]`` (read by the calibration as they are),
    ``[devices.NAME]`` (course device tables) and one ``[rows.KEY]`` per literature row."""

    settings: dict[str, Any] = Field(default_factory=dict)
    fit: tuple[dict[str, Any], ...] = ()
    devices: dict[str, dict[str, Any]] = Field(default_factory=dict)
    rows: dict[str, ProtocolTable] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _devices_known(self) -> ProtocolsFile:
        names = sorted(self.devices)
        problems = [
            InputError(
                f"rows.{key}.device", row.device, f"one of {names} (protocols.toml [devices])"
            )
            for key, row in self.rows.items()
            if row.needs_course and row.device not in self.devices
        ]
        problems += [
            InputError(
                f"rows.{key}.reference.device",
                row.reference["device"],
                f"one of {names} (protocols.toml [devices])",
            )
            for key, row in self.rows.items()
            if row.reference
            and "device" in row.reference
            and row.reference["device"] not in self.devices
        ]
        if problems:
            raise InputFileError(problems)
        return self

    def protocols(self) -> dict[str, Protocol]:
        """Every row's protocol, by row key."""
        out: dict[str, Protocol] = {}
        for key, t in self.rows.items():
            if not t.evaluable:
                out[key] = Protocol(key, "value", "", evaluable=False, reason=t.reason)
                continue
            assert t.compare is not None and t.assumptions is not None  # checked by the table
            waiting = awaited(t.endpoint) if t.endpoint else ""
            out[key] = Protocol(
                key=key,
                compare=t.compare,
                assumptions=t.assumptions,
                course=self._course(key, t) if t.needs_course else None,
                endpoint=t.endpoint,
                stage=t.stage,
                closure=t.closure,
                occluded=bool(t.occluded),
                topical=dict(t.topical) if t.stage == "intact_kp" and t.topical else None,
                evaluable=not waiting,
                reason=(
                    f"Awaiting the observable {waiting!r}: not yet an output of "
                    "engine/variables.py (the protocol is ready for it)."
                    if waiting
                    else ""
                ),
                ranges={k: (float(lo), float(hi)) for k, (lo, hi) in t.ranges.items()},
                stand_ins={k: tuple(v) for k, v in t.stand_ins.items()},
                reference=self._reference(t),
                awaiting=waiting,
                threshold=None if t.threshold is None else float(t.threshold),
                direction=t.direction,
            )
        return out

    def _reference(self, t: ProtocolTable) -> dict[str, Any] | None:
        """The comparator arm's overrides, with a device name replaced by its device table."""
        if t.reference is None:
            return None
        ref = dict(t.reference)
        if "device" in ref:
            ref["device_table"] = dict(self.devices[str(ref.pop("device"))])
        return ref

    def _course(self, key: str, t: ProtocolTable) -> dict[str, Any]:
        """The stand-in course of row ``key`` as a course table."""
        assert t.site is not None and t.session_days is not None  # checked by the table
        assert t.needle_length_mm is not None and t.horizon_days is not None
        conditions: list[dict[str, Any]] = []
        if t.scar is not None:
            conditions.append({"type": "acne_scar", "count": 10, **t.scar})
        if t.pigment is not None:
            conditions.append({"type": "hyperpigmentation", **t.pigment})
        for name in ("striae", "wrinkles", "pores", "photoaging"):
            table = getattr(t, name)
            if table is not None:
                conditions.append({"type": name, **table})
        sessions = []
        for d in t.session_days:
            s: dict[str, Any] = {
                "day": float(d),
                "site": t.site,
                "needle_length_mm": float(t.needle_length_mm),
                "passes": t.passes,
            }
            if t.pen_speed_cm_s is not None:
                s["pen_speed_cm_s"] = float(t.pen_speed_cm_s)
            if t.topical is not None:
                s["topical"] = dict(t.topical)
            sessions.append(s)
        return {
            "name": f"protocol {key}",
            "horizon_days": float(t.horizon_days),
            "patient": {"age_years": t.age_years, "sex": t.sex, "fitzpatrick": t.fitzpatrick},
            "sites": [{"name": t.site, "conditions": conditions}],
            "device": dict(self.devices[str(t.device)]),
            "sessions": sessions,
        }


def _protocols_path() -> Path:
    return data_path("calibration", "protocols.toml")


def load_protocol_file(path: Path | None = None) -> dict[str, Any]:
    """The raw ``protocols.toml`` (settings, fit, devices, rows), parsed but not validated; an
    unreadable or malformed file is a :class:`LiteratureError`."""
    return ProtocolsFile.read_toml_data(path or _protocols_path())


def load_protocols(path: Path | None = None) -> dict[str, Protocol]:
    """Every row's protocol, by row key; raises :class:`LiteratureError` naming the row and field."""
    p = path or _protocols_path()
    return ProtocolsFile.from_dict(load_protocol_file(p), source=str(p)).protocols()


def protocol_course(protocol: Protocol) -> Course:
    """The protocol's stand-in course, validated (:class:`microneedling.course.Course`)."""
    if protocol.course is None:
        raise LiteratureError(
            [
                InputError(
                    f"rows.{protocol.key}",
                    protocol.stage,
                    "a row with a course (not a resealing_time row)",
                )
            ],
            source="protocols.toml",
        )
    return Course.from_dict(protocol.course, source=f"protocols.toml [{protocol.key}]")


def standard_error(row: LiteratureRow, settings: Mapping[str, Any]) -> tuple[float, str]:
    """The row's standard error (row units) and how it was obtained.

    In order: the reported SE; SD/sqrt(n); a reported range read as +-2 SD (``range_sds``), divided
    by sqrt(n) when n is known; else ``default_cv`` x |value| / sqrt(n) (n = 1 when unknown).
    """
    n = row.n
    root = math.sqrt(n) if n else 1.0
    if row.se is not None:
        return row.se, "reported SE"
    if row.sd is not None:
        return row.sd / root, f"SD / sqrt({n})" if n else "SD (n unknown)"
    if row.range_low is not None and row.range_high is not None:
        sd = (row.range_high - row.range_low) / float(settings["range_sds"])
        return sd / root, f"range / {settings['range_sds']}" + (f" / sqrt({n})" if n else "")
    cv = float(settings["default_cv"])
    return cv * abs(row.value) / root, f"default CV {cv} x |value|" + (f" / sqrt({n})" if n else "")

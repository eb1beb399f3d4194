"""Published microneedling outcome data (``data/literature.toml``) as typed, validated rows.

Each row is one number a study reported (value, units, spread, n), the protocol it was measured
under, how firmly it was checked (``SEEN``, ``SEEN secondary`` or ``DERIVED``; recalled numbers are
never rows), and its role: ``calibration`` for exactly the targets fitted by
:mod:`microneedling.calibrate` (same keys) and ``validation`` for the held-out rest, each with a
tolerance and a note on how the model observable maps onto the reported quantity.

``data/calibration/protocols.toml`` says how the model reproduces each row (:func:`load_protocols`,
:func:`protocol_course`: the stand-in course, the end point, the comparison), and
:func:`standard_error` gives a row's standard error for the weighted fit.

References: a row's ``source`` names keys of ``data/references/*.toml`` or of the
``[_references.KEY]`` tables inside ``literature.toml`` (sources used only by this file live there
because the reference files are owned by the model stages).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microneedling.course.model import Course
from microneedling.engine.endpoints import parse_endpoint
from microneedling.errors import MicroneedlingError
from microneedling.io import data_path
from microneedling.parameters.parameter_set import Reference, load_references
from microneedling.units import UnitError, convert, parse_unit

ROLES: tuple[str, ...] = ("calibration", "validation")
EVIDENCE: tuple[str, ...] = ("SEEN", "SEEN secondary", "DERIVED")
BOUNDS: tuple[str, ...] = ("upper", "lower")
DEVICES: tuple[str, ...] = ("roller", "pen", "stamp")
REFERENCES_TABLE = "_references"

_ROW_FIELDS = frozenset(
    {
        "source",
        "quantity",
        "observable",
        "layer",
        "value",
        "units",
        "baseline",
        "baseline_sd",
        "sd",
        "se",
        "ci_low",
        "ci_high",
        "range_low",
        "range_high",
        "n",
        "bound",
        "evidence",
        "role",
        "tolerance",
        "tolerance_reason",
        "comparable",
        "quote",
        "note",
        "conditions",
    }
)
_CONDITION_FIELDS = frozenset(
    {
        "device",
        "needle_length_mm",
        "passes",
        "sessions",
        "interval_days",
        "time_after_last_days",
        "site",
        "fitzpatrick",
        "age_years",
        "species",
        "note",
    }
)


class LiteratureError(MicroneedlingError, ValueError):
    """``literature.toml`` is malformed; the message names the row and the field."""


@dataclass(frozen=True)
class Conditions:
    """The protocol a number was measured under; ``None`` where the study does not report it."""

    device: str | None = None
    needle_length_mm: float | None = None
    passes: int | None = None
    sessions: int | None = None
    interval_days: float | None = None
    time_after_last_days: float | None = None
    site: str | None = None
    fitzpatrick: tuple[int, int] | None = None
    age_years: tuple[float, float] | None = None
    species: str = "human"
    note: str = ""


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
    bound: str | None = None
    tolerance: float | None = None
    tolerance_reason: str = ""
    quote: str = ""
    note: str = ""

    @property
    def source(self) -> str:
        """The first (main) reference key."""
        return self.sources[0]

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


def _path() -> Path:
    return data_path("literature.toml")


def _err(key: str, field: str, value: Any, allowed: str) -> LiteratureError:
    return LiteratureError(f"literature row {key!r}: {field} = {value!r}; allowed: {allowed}")


def _num(key: str, field: str, v: Any, *, integer: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _err(key, field, v, "an integer" if integer else "a number")
    if integer and not isinstance(v, int):
        raise _err(key, field, v, "an integer")
    if not math.isfinite(float(v)):
        raise _err(key, field, v, "a finite number")
    return float(v)


def _opt_num(key: str, entry: Mapping[str, Any], field: str) -> float | None:
    return None if field not in entry else _num(key, field, entry[field])


def _opt_int(key: str, entry: Mapping[str, Any], field: str) -> int | None:
    if field not in entry:
        return None
    v = entry[field]
    _num(key, field, v, integer=True)
    if v < 0:
        raise _err(key, field, v, "a non-negative integer")
    return int(v)


def _str(key: str, entry: Mapping[str, Any], field: str, default: str | None = None) -> str:
    if field not in entry:
        if default is None:
            raise _err(key, field, "<missing>", "a non-empty string (required)")
        return default
    v = entry[field]
    if not isinstance(v, str) or (default is None and not v.strip()):
        raise _err(key, field, v, "a non-empty string")
    return v


def _pair(key: str, field: str, v: Any, *, integer: bool) -> tuple[Any, Any]:
    if not isinstance(v, list) or len(v) != 2:
        raise _err(key, field, v, "[low, high]")
    lo, hi = (_num(key, field, x, integer=integer) for x in v)
    if lo > hi:
        raise _err(key, field, v, "[low, high] with low <= high")
    return (int(lo), int(hi)) if integer else (lo, hi)


def _conditions(key: str, raw: Any) -> Conditions:
    if raw is None:
        return Conditions()
    if not isinstance(raw, dict):
        raise _err(key, "conditions", raw, "a table")
    unknown = set(raw) - _CONDITION_FIELDS
    if unknown:
        raise _err(key, "conditions", sorted(unknown), f"fields {sorted(_CONDITION_FIELDS)}")
    device = raw.get("device")
    if device is not None and device not in DEVICES:
        raise _err(key, "conditions.device", device, f"one of {list(DEVICES)}")
    fitz = raw.get("fitzpatrick")
    fitzpatrick = None if fitz is None else _pair(key, "conditions.fitzpatrick", fitz, integer=True)
    if fitzpatrick is not None and not (1 <= fitzpatrick[0] and fitzpatrick[1] <= 6):
        raise _err(key, "conditions.fitzpatrick", fitz, "types within [1, 6]")
    age = raw.get("age_years")
    for field in ("needle_length_mm", "interval_days", "time_after_last_days"):
        if field in raw and _num(key, f"conditions.{field}", raw[field]) < 0:
            raise _err(key, f"conditions.{field}", raw[field], "a non-negative number")
    return Conditions(
        device=device,
        needle_length_mm=_opt_num(key, raw, "needle_length_mm"),
        passes=_opt_int(key, raw, "passes"),
        sessions=_opt_int(key, raw, "sessions"),
        interval_days=_opt_num(key, raw, "interval_days"),
        time_after_last_days=_opt_num(key, raw, "time_after_last_days"),
        site=raw.get("site"),
        fitzpatrick=fitzpatrick,
        age_years=None if age is None else _pair(key, "conditions.age_years", age, integer=False),
        species=_str(key, raw, "species", "human"),
        note=_str(key, raw, "note", ""),
    )


def _row(key: str, entry: Any, refs: Mapping[str, Reference]) -> LiteratureRow:
    if not isinstance(entry, dict):
        raise _err(key, "<row>", entry, "a table")
    unknown = set(entry) - _ROW_FIELDS
    if unknown:
        raise _err(key, "<fields>", sorted(unknown), f"fields {sorted(_ROW_FIELDS)}")
    src = entry.get("source")
    sources = (src,) if isinstance(src, str) else tuple(src) if isinstance(src, list) else ()
    if not sources or not all(isinstance(s, str) for s in sources):
        raise _err(key, "source", src, "a reference key or a list of reference keys")
    for s in sources:
        if s not in refs:
            raise _err(
                key, "source", s, "a key of data/references/*.toml or of [_references] (unknown)"
            )
    units = _str(key, entry, "units")
    try:
        parse_unit(units)
    except UnitError as exc:
        raise _err(key, "units", units, f"a unit of microneedling.units ({exc})") from exc
    role = _str(key, entry, "role")
    if role not in ROLES:
        raise _err(key, "role", role, f"one of {list(ROLES)}")
    evidence = _str(key, entry, "evidence")
    if evidence not in EVIDENCE:
        raise _err(key, "evidence", evidence, f"one of {list(EVIDENCE)} (never RECALLED)")
    bound = entry.get("bound")
    if bound is not None and bound not in BOUNDS:
        raise _err(key, "bound", bound, f"one of {list(BOUNDS)}")
    tolerance = _opt_num(key, entry, "tolerance")
    if role == "validation":
        if tolerance is None or tolerance <= 0:
            raise _err(key, "tolerance", tolerance, "a positive number for a validation row")
        _str(key, entry, "tolerance_reason")
    for field in ("sd", "se", "baseline_sd"):
        v = _opt_num(key, entry, field)
        if v is not None and v < 0:
            raise _err(key, field, v, "a non-negative number")
    row = LiteratureRow(
        key=key,
        sources=sources,
        quantity=_str(key, entry, "quantity"),
        observable=_str(key, entry, "observable"),
        value=_num(key, "value", entry.get("value")),
        units=units,
        evidence=evidence,
        role=role,
        conditions=_conditions(key, entry.get("conditions")),
        comparable=_str(key, entry, "comparable"),
        layer=entry.get("layer"),
        baseline=_opt_num(key, entry, "baseline"),
        baseline_sd=_opt_num(key, entry, "baseline_sd"),
        sd=_opt_num(key, entry, "sd"),
        se=_opt_num(key, entry, "se"),
        ci_low=_opt_num(key, entry, "ci_low"),
        ci_high=_opt_num(key, entry, "ci_high"),
        range_low=_opt_num(key, entry, "range_low"),
        range_high=_opt_num(key, entry, "range_high"),
        n=_opt_int(key, entry, "n"),
        bound=bound,
        tolerance=tolerance,
        tolerance_reason=_str(key, entry, "tolerance_reason", ""),
        quote=_str(key, entry, "quote", ""),
        note=_str(key, entry, "note", ""),
    )
    for lo_f, hi_f in (("ci_low", "ci_high"), ("range_low", "range_high")):
        lo, hi = getattr(row, lo_f), getattr(row, hi_f)
        if (lo is None) != (hi is None):
            raise _err(key, f"{lo_f}/{hi_f}", (lo, hi), "both or neither")
        if lo is not None and not lo <= row.value <= hi:
            raise _err(key, f"{lo_f}/{hi_f}", (lo, hi), f"an interval containing value {row.value}")
    return row


def _own_references(raw: Any) -> dict[str, Reference]:
    if not isinstance(raw, dict):
        raise LiteratureError(f"[{REFERENCES_TABLE}] must be a table of reference tables")
    out: dict[str, Reference] = {}
    for key, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("citation"), str):
            raise LiteratureError(f"[{REFERENCES_TABLE}.{key}]: missing 'citation'")
        out[key] = Reference(
            key=key,
            citation=entry["citation"],
            url=str(entry.get("url", "")),
            note=str(entry.get("note", "")),
        )
    return out


def load_references_all(path: Path | None = None) -> dict[str, Reference]:
    """The package bibliography merged with the ``[_references]`` tables of ``literature.toml``."""
    with open(path or _path(), "rb") as fh:
        raw = tomllib.load(fh)
    return _merge_references(raw)


def _merge_references(raw: Mapping[str, Any]) -> dict[str, Reference]:
    refs = load_references()
    own = _own_references(raw.get(REFERENCES_TABLE, {}))
    clash = sorted(set(own) & set(refs))
    if clash:
        raise LiteratureError(
            f"[{REFERENCES_TABLE}] redefines keys of data/references/*.toml: {clash}"
        )
    return {**refs, **own}


def load_literature(path: Path | None = None) -> list[LiteratureRow]:
    """Read and validate ``data/literature.toml`` (or ``path``); rows in file order.

    Raises
    ------
    LiteratureError
        On an unknown reference key, role, evidence tag or unit, a missing field, or a validation
        row without a positive tolerance; the message names the row.
    """
    with open(path or _path(), "rb") as fh:
        raw = tomllib.load(fh)
    refs = _merge_references(raw)
    return [_row(k, v, refs) for k, v in raw.items() if k != REFERENCES_TABLE]


def rows(role: str | None = None, path: Path | None = None) -> list[LiteratureRow]:
    """Rows of ``literature.toml``, optionally only those with ``role``."""
    if role is not None and role not in ROLES:
        raise LiteratureError(f"role {role!r}; allowed: one of {list(ROLES)}")
    return [r for r in load_literature(path) if role is None or r.role == role]


def calibration_keys(path: Path | None = None) -> tuple[str, ...]:
    """Keys of the calibration rows (fitted by :mod:`microneedling.calibrate`)."""
    return tuple(r.key for r in rows("calibration", path))


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
)


@dataclass(frozen=True)
class Protocol:
    """How the model reproduces one literature row (``data/calibration/protocols.toml``).

    ``course`` is the stand-in course as a dict for :meth:`microneedling.course.Course.from_dict`
    (``None`` for stage rows that need no course), ``endpoint`` an end point of
    :mod:`microneedling.endpoints` or ``stage`` a needles/transport output; ``compare`` says how
    model and row meet (see the header of ``protocols.toml``).
    """

    key: str
    compare: str
    assumptions: str
    course: dict[str, Any] | None = None
    endpoint: str | None = None
    stage: str | None = None
    closure: str | None = None
    evaluable: bool = True
    reason: str = ""


def _protocols_path() -> Path:
    return data_path("calibration", "protocols.toml")


def load_protocol_file(path: Path | None = None) -> dict[str, Any]:
    """The raw ``protocols.toml`` (settings, fit, devices, rows)."""
    with open(path or _protocols_path(), "rb") as fh:
        return tomllib.load(fh)


def _course_dict(key: str, entry: Mapping[str, Any], devices: Mapping[str, Any]) -> dict[str, Any]:
    dev = entry.get("device")
    if dev not in devices:
        raise _err(key, "device", dev, f"one of {sorted(devices)} (protocols.toml [devices])")
    site = _str(key, entry, "site")
    days = entry.get("session_days")
    if not isinstance(days, list) or not days:
        raise _err(key, "session_days", days, "a non-empty list of days")
    conditions: list[dict[str, Any]] = []
    if "scar" in entry:
        conditions.append({"type": "acne_scar", "count": 10, **entry["scar"]})
    if "pigment" in entry:
        conditions.append({"type": "hyperpigmentation", **entry["pigment"]})
    sessions = []
    for d in days:
        s: dict[str, Any] = {
            "day": float(d),
            "site": site,
            "needle_length_mm": float(entry["needle_length_mm"]),
            "passes": int(entry.get("passes", 1)),
        }
        if "topical" in entry:
            s["topical"] = dict(entry["topical"])
        sessions.append(s)
    return {
        "name": f"protocol {key}",
        "horizon_days": float(entry["horizon_days"]),
        "patient": {
            "age_years": entry["age_years"],
            "sex": entry.get("sex", "female"),
            "fitzpatrick": entry["fitzpatrick"],
        },
        "sites": [{"name": site, "conditions": conditions}],
        "device": dict(devices[str(dev)]),
        "sessions": sessions,
    }


def load_protocols(path: Path | None = None) -> dict[str, Protocol]:
    """Every row's protocol, by row key; raises :class:`LiteratureError` naming the row and field."""
    raw = load_protocol_file(path)
    devices = raw.get("devices", {})
    out: dict[str, Protocol] = {}
    for key, entry in raw.get("rows", {}).items():
        if not entry.get("evaluable", True):
            out[key] = Protocol(
                key, "value", "", evaluable=False, reason=_str(key, entry, "reason")
            )
            continue
        compare = _str(key, entry, "compare")
        if compare not in COMPARES:
            raise _err(key, "compare", compare, f"one of {list(COMPARES)}")
        stage = entry.get("stage")
        if stage is not None and stage not in STAGES:
            raise _err(key, "stage", stage, f"one of {list(STAGES)}")
        endpoint = entry.get("endpoint")
        if (stage is None) == (endpoint is None):
            raise _err(key, "endpoint/stage", (endpoint, stage), "exactly one of the two")
        if endpoint is not None:
            parse_endpoint(endpoint, field=f"protocols.{key}.endpoint")
        closure = entry.get("closure")
        if stage == "resealing_time" and closure not in ("pores", "barrier"):
            raise _err(key, "closure", closure, "'pores' or 'barrier' for resealing_time")
        course = None if stage == "resealing_time" else _course_dict(key, entry, devices)
        out[key] = Protocol(
            key=key,
            compare=compare,
            assumptions=_str(key, entry, "assumptions"),
            course=course,
            endpoint=endpoint,
            stage=stage,
            closure=closure,
        )
    return out


def protocol_course(protocol: Protocol) -> Any:
    """The protocol's stand-in course, validated (:class:`microneedling.course.Course`)."""

    if protocol.course is None:
        raise _err(protocol.key, "course", None, "a protocol with a course (not a stage-only row)")
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

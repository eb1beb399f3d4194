"""The input model: a treatment course, the ONLY place raw input is trusted or refused.

A course file (TOML, or JSON with the same shape) describes one patient, the sites treated and their
conditions, one device, and the sessions (with optional topicals) over a time horizon::

    name = "Rolling acne scars, cheek"
    horizon_days = 365

    [patient]
    age_years = 32
    sex = "female"
    fitzpatrick = "IV"          # or 4

    [[sites]]
    name = "cheek"
    [[sites.conditions]]
    type = "acne_scar"
    scar_type = "rolling"
    depth_mm = 0.5
    count = 20

    [device]
    type = "roller"
    ...

    [[sessions]]
    day = 0
    site = "cheek"
    needle_length_mm = 1.5
    passes = 15

:meth:`Course.from_file` parses and validates; every refusal is a
:class:`~microneedling.errors.CourseValidationError` whose problems name the field as a dotted path
with list indices (``sessions[2].needle_length_mm``), the value given and what is allowed.
Needle lengths are checked against the per-site limits of ``data/parameters/safety.toml``
(refused above ``safety.max_needle_length``, a warning above ``safety.typical_needle_length``);
contraindications in the patient's history are warnings (:attr:`Course.warnings`), not refusals:
the model is a research and planning aid, and a warning says why the course is outside published
practice.

This module imports only pydantic and the standard library (no numpy), so the CLI starts fast.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from .errors import CourseValidationError, InputError, ParameterError

__all__ = [
    "KNOWN_PRODUCTS",
    "MISSING",
    "SITES",
    "AcneScar",
    "Condition",
    "Course",
    "Device",
    "History",
    "Hyperpigmentation",
    "Patient",
    "Pen",
    "Photoaging",
    "Pores",
    "Roller",
    "SafetyLimits",
    "Session",
    "Site",
    "Stamp",
    "Striae",
    "Topical",
    "Wrinkles",
    "dumps_toml",
    "known_products",
    "safety_limits",
]

# ------------------------------------------------------------------------------------------ names
SiteName = Literal[
    "forehead",
    "periorbital",
    "nose",
    "cheek",
    "perioral",
    "chin",
    "neck",
    "decolletage",
    "dorsal_hand",
    "abdomen",
    "thigh",
]
SITES: tuple[str, ...] = get_args(SiteName)
"""Treatable sites, top of the head down (the names used across the package)."""

KNOWN_PRODUCTS: tuple[str, ...] = (
    "hyaluronic_acid_50kda",
    "hyaluronic_acid_1mda",
    "ascorbic_acid",
    "tranexamic_acid",
    "niacinamide",
    "retinol",
    "palmitoyl_pentapeptide_4",
    "egf",
    "insulin",
    "caffeine",
    "calcein",
    "saline",
)
"""Topical products accepted when ``data/molecules.toml`` is absent (else its table names)."""

# Common words for sites: used only to suggest a name in an error message, never accepted.
_SITE_ALIASES = {
    "eye": "periorbital",
    "eyes": "periorbital",
    "eyelid": "periorbital",
    "under_eye": "periorbital",
    "undereye": "periorbital",
    "crows_feet": "periorbital",
    "lip": "perioral",
    "lips": "perioral",
    "upper_lip": "perioral",
    "mouth": "perioral",
    "cheeks": "cheek",
    "jaw": "chin",
    "hand": "dorsal_hand",
    "hands": "dorsal_hand",
    "back_of_hand": "dorsal_hand",
    "chest": "decolletage",
    "décolletage": "decolletage",
    "decollete": "decolletage",
    "belly": "abdomen",
    "stomach": "abdomen",
    "tummy": "abdomen",
    "thighs": "thigh",
    "face": "cheek",
}

NEEDLE_LENGTH_RANGE_MM = (0.1, 3.0)
"""Schema range of needle lengths (mm); 3.0 mm is the deepest pen setting seen (Dermapen 4)."""

_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}
_INT64_MAX = 2**63 - 1  # TOML integers are 64-bit signed


class _Missing:
    """The value of a problem whose field was not given at all."""

    _instance: ClassVar[_Missing | None] = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<missing>"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""``InputError.value`` of a required field that was absent."""


# ------------------------------------------------------------------- annotation markers (metadata)
@dataclass(frozen=True)
class _Unit:
    """Unit of a numeric field, for error messages (the name of the field carries it too)."""

    symbol: str


@dataclass(frozen=True)
class _Allowed:
    """Override of the automatically written 'allowed' text of a field."""

    text: str


_F = Annotated[float, Strict()]  # accepts int and float, never bool or str
_I = Annotated[int, Strict()]  # accepts int only (not 8.0, not "8", not true)
_B = Annotated[bool, Strict()]
_S = Annotated[str, Strict()]


def _text_ok(v: str) -> str:
    """Refuse text that cannot be written back to a UTF-8 TOML file (unpaired surrogates)."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("", v, "text without unpaired surrogate characters") from None
    return v


# ------------------------------------------------------------------------------ safety.toml
@dataclass(frozen=True)
class SafetyLimits:
    """Numbers of ``data/parameters/safety.toml`` the input model applies (lengths in mm)."""

    max_needle_length_mm: Mapping[str, float]
    typical_needle_length_mm: Mapping[str, float]
    max_sources: tuple[str, ...]
    typical_sources: tuple[str, ...]
    isotretinoin_washout_months: float
    default_area_cm2: Mapping[str, float]


_DATA = Path(__file__).resolve().parent / "data"


@lru_cache(maxsize=1)
def safety_limits() -> SafetyLimits:
    """Parse ``safety.toml`` (once per process) with the same checks as the parameter loader."""
    from .parameters import _check_entry, load_references

    refs = load_references([_DATA / "references" / "safety.toml"])
    with open(_DATA / "parameters" / "safety.toml", "rb") as fh:
        raw = tomllib.load(fh)
    params = {k: _check_entry(f"safety.{k}", v, refs) for k, v in raw.items()}

    def table(name: str, units: str) -> dict[str, float]:
        p = params[name]
        missing = [s for s in SITES if not isinstance(p.value, dict) or s not in p.value]
        if missing:
            raise ParameterError(f"safety.{name}: no entry for site(s) {missing}")
        return {s: p.as_units(units, key=s) for s in SITES}

    limits = SafetyLimits(
        max_needle_length_mm=table("max_needle_length", "mm"),
        typical_needle_length_mm=table("typical_needle_length", "mm"),
        max_sources=params["max_needle_length"].sources,
        typical_sources=params["typical_needle_length"].sources,
        isotretinoin_washout_months=params["isotretinoin_washout"].as_units("yr") * 12.0,
        default_area_cm2=table("default_treatment_area", "cm^2"),
    )
    for s in SITES:
        if limits.typical_needle_length_mm[s] > limits.max_needle_length_mm[s]:
            raise ParameterError(f"safety.typical_needle_length[{s}] exceeds the maximum")
    return limits


# --------------------------------------------------------------------------- molecule keys
_MOLECULES = _DATA / "molecules.toml"


@lru_cache(maxsize=4)
def _products_from(path: str, stamp: tuple[int, int]) -> tuple[str, ...]:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return ()
    return tuple(k for k, v in raw.items() if isinstance(v, dict) and not k.startswith("_"))


def known_products() -> tuple[str, ...]:
    """Topical products a session may name: the tables of ``data/molecules.toml`` if it exists
    (read at validation time, re-read when it changes), else :data:`KNOWN_PRODUCTS`."""
    try:
        st = _MOLECULES.stat()
    except OSError:
        return KNOWN_PRODUCTS
    keys = _products_from(str(_MOLECULES), (st.st_mtime_ns, st.st_size))
    return keys or KNOWN_PRODUCTS


def _did_you_mean(
    value: Any, choices: tuple[str, ...] | list[str], aliases: Mapping[str, str] | None = None
) -> str:
    """``"; did you mean 'x'?"`` for a near miss (or a known alias), else ``""``."""
    if not isinstance(value, str):
        return ""
    key = value.strip().lower().replace(" ", "_").replace("-", "_")
    if aliases and key in aliases:
        return f"; did you mean {aliases[key]!r}?"
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# ------------------------------------------------------------------------------------ models
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class History(_Model):
    """Medical history relevant to needling; every flag is optional. Flags that are
    contraindications produce :attr:`Course.warnings`, not refusals."""

    isotretinoin_months_ago: Annotated[_F, Field(ge=0), _Unit("months")] | None = None
    active_infection: _B = False  # herpes, impetigo, active acne at the treated site
    keloid_history: _B = False
    pregnant: _B = False
    anticoagulants: _B = False
    bleeding_disorder: _B = False
    diabetes_uncontrolled: _B = False
    immunosuppressed: _B = False
    radiotherapy_recent: _B = False
    eczema_psoriasis_active: _B = False
    vitiligo: _B = False
    filler_recent: _B = False


def _fitzpatrick(v: Any) -> Any:
    """Roman numerals I..VI (any case, surrounding blanks ignored) become 1..6."""
    if isinstance(v, str):
        key = v.strip().upper()
        if key in _ROMAN:
            return _ROMAN[key]
        raise InputError("", v, _FITZ_ALLOWED)
    return v


_FITZ_ALLOWED = "an integer from 1 to 6 or a roman numeral I to VI (Fitzpatrick skin type)"


class Patient(_Model):
    """The person treated. Adults only: the published protocols and data are for adults."""

    age_years: Annotated[
        _I, Field(ge=18, le=90), _Allowed("an integer from 18 to 90 years (adults only)")
    ]
    sex: Literal["female", "male"]
    fitzpatrick: Annotated[
        _I, BeforeValidator(_fitzpatrick), Field(ge=1, le=6), _Allowed(_FITZ_ALLOWED)
    ]
    history: History = Field(default_factory=History)


# --- conditions (tagged union on `type`)
class AcneScar(_Model):
    """Atrophic acne scars of one type (Jacob classification)."""

    type: Literal["acne_scar"] = "acne_scar"
    scar_type: Literal["rolling", "boxcar", "icepick"]
    depth_mm: Annotated[_F, Field(gt=0, le=3), _Unit("mm")]
    count: Annotated[_I, Field(ge=1, le=10_000)]


class Wrinkles(_Model):
    type: Literal["wrinkles"] = "wrinkles"
    depth_um: Annotated[_F, Field(gt=0, le=2000), _Unit("µm")]


class Pores(_Model):
    type: Literal["pores"] = "pores"
    diameter_um: Annotated[_F, Field(gt=0, le=2000), _Unit("µm")]


class Striae(_Model):
    type: Literal["striae"] = "striae"
    width_mm: Annotated[_F, Field(gt=0, le=50), _Unit("mm")]
    stage: Literal["rubra", "alba"]


class Hyperpigmentation(_Model):
    type: Literal["hyperpigmentation"] = "hyperpigmentation"
    kind: Literal["melasma", "pih", "lentigo"]
    melanin_index: Annotated[_F, Field(gt=0, le=1000), _Unit("(arbitrary Mexameter units)")]


class Photoaging(_Model):
    """Fine lines, laxity, rejuvenation; optionally a measured Cutometer R2-like elasticity."""

    type: Literal["photoaging"] = "photoaging"
    elasticity_r2: Annotated[_F, Field(gt=0, lt=1)] | None = None


Condition = Annotated[
    AcneScar | Wrinkles | Pores | Striae | Hyperpigmentation | Photoaging,
    Field(discriminator="type"),
]


class Site(_Model):
    """A treated site, its area and its conditions (zero or more)."""

    name: SiteName
    area_cm2: Annotated[
        _F,
        Field(gt=0),
        _Allowed("a number > 0 cm² (optional: default from safety.default_treatment_area)"),
    ]
    conditions: tuple[Condition, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _default_area(cls, data: Any) -> Any:
        """Fill a missing area from ``safety.default_treatment_area`` (an estimate per site)."""
        if isinstance(data, Mapping) and "area_cm2" not in data:
            name = data.get("name")
            table = safety_limits().default_area_cm2
            # an unknown name is refused by its own field; the placeholder area never escapes
            area = table.get(name, 1.0) if isinstance(name, str) else 1.0
            return {**data, "area_cm2": area}
        return data


# --- devices (tagged union on `type`)
class _DeviceBase(_Model):
    needle_count: Annotated[_I, Field(ge=1, le=1000)]
    needle_diameter_mm: Annotated[
        _F, Field(ge=0.05, le=0.5), _Unit("mm (shank diameter at the base)")
    ]
    tip_radius_um: Annotated[_F, Field(ge=0.5, le=50), _Unit("µm")]
    tip: Literal["cone", "pyramid"]
    max_needle_length_mm: Annotated[
        _F, Field(ge=NEEDLE_LENGTH_RANGE_MM[0], le=NEEDLE_LENGTH_RANGE_MM[1]), _Unit("mm")
    ]

    @model_validator(mode="after")
    def _tip_fits_shank(self) -> _DeviceBase:
        half_um = self.needle_diameter_mm * 1000.0 / 2.0
        if self.tip_radius_um > half_um:
            raise InputError(
                "tip_radius_um",
                self.tip_radius_um,
                f"from 0.5 to 50 µm and at most half the shank diameter "
                f"({half_um:g} µm for needle_diameter_mm = {self.needle_diameter_mm:g})",
            )
        return self


class Roller(_DeviceBase):
    """A drum roller (e.g. Dermaroller MF8: 192 needles, drum 20 mm x 20 mm)."""

    type: Literal["roller"] = "roller"
    drum_diameter_mm: Annotated[_F, Field(ge=5, le=60), _Unit("mm")]
    drum_width_mm: Annotated[_F, Field(ge=5, le=60), _Unit("mm")]


class Pen(_DeviceBase):
    """An automated pen: a cartridge of needles stamping at ``frequency_hz``."""

    type: Literal["pen"] = "pen"
    frequency_hz: Annotated[_F, Field(ge=10, le=200), _Unit("Hz")]
    cartridge_width_mm: Annotated[_F, Field(ge=1, le=20), _Unit("mm")]


class Stamp(_DeviceBase):
    """A stamp: a flat needle plate pressed onto each spot."""

    type: Literal["stamp"] = "stamp"
    stamp_area_cm2: Annotated[_F, Field(ge=0.01, le=10), _Unit("cm²")]


Device = Annotated[Roller | Pen | Stamp, Field(discriminator="type")]


class Topical(_Model):
    """A product applied to the needled skin after the session."""

    product: _S
    concentration_mg_ml: Annotated[_F, Field(gt=0, le=1000), _Unit("mg/mL")]
    volume_ul_cm2: Annotated[_F, Field(gt=0, le=200), _Unit("µL/cm² (applied film per area)")]
    contact_hours: Annotated[_F, Field(gt=0, le=72), _Unit("h (time on the skin)")]

    @field_validator("product")
    @classmethod
    def _known(cls, v: str) -> str:
        keys = known_products()
        if v not in keys:
            raise InputError("", v, "one of " + ", ".join(keys) + _did_you_mean(v, keys))
        return v


_NEEDLE_ALLOWED = (
    "a number from 0.1 to 3 mm, at most device.max_needle_length_mm and at most the site's "
    "limit (safety.max_needle_length)"
)


class Session(_Model):
    """One treatment of one site on one day."""

    day: Annotated[_F, Field(ge=0, le=3650), _Unit("d (days from the course start)")]
    site: SiteName
    needle_length_mm: Annotated[_F, Field(ge=NEEDLE_LENGTH_RANGE_MM[0]), _Allowed(_NEEDLE_ALLOWED)]
    passes: Annotated[
        _I,
        Field(ge=1, le=50),
        _Allowed("an integer from 1 to 50 (roller passes, stamps per spot or pen passes)"),
    ]
    pen_speed_cm_s: (
        Annotated[
            _F, Field(ge=0.1, le=20), _Allowed("a number from 0.1 to 20 cm/s (pen devices only)")
        ]
        | None
    ) = None
    occlusion: _B = False
    topical: Topical | None = None

    @model_validator(mode="after")
    def _site_limit(self) -> Session:
        """Refuse a needle longer than the schema range or the site's published limit."""
        lim = safety_limits()
        site_max = lim.max_needle_length_mm[self.site]
        top = min(site_max, NEEDLE_LENGTH_RANGE_MM[1])
        if self.needle_length_mm > top:
            raise InputError(
                "needle_length_mm",
                self.needle_length_mm,
                f"at most {top:g} mm for site {self.site!r} "
                f"(safety.max_needle_length[{self.site}] = {site_max:g} mm; sources: "
                f"{', '.join(lim.max_sources)}); the schema range is 0.1 to 3 mm",
            )
        return self


class Course(_Model):
    """A treatment course: patient, sites (with conditions), device, sessions, horizon.

    Build one with :meth:`from_file` / :meth:`from_toml` / :meth:`from_json` / :meth:`from_dict`;
    those turn every validation failure into a :class:`~microneedling.errors.CourseValidationError`.
    The object is immutable and hashable; ``Course.from_toml_text(c.to_toml()) == c``.
    """

    name: Annotated[_S, Field(min_length=1), _Allowed("non-empty text")]
    horizon_days: Annotated[
        _F, Field(gt=0, le=3650), _Allowed("a number > 0 and ≤ 3650 d, ≥ the last session day")
    ]
    seed: Annotated[_I, Field(ge=0, le=_INT64_MAX)] = 0
    description: _S | None = None
    patient: Patient
    sites: tuple[Site, ...]
    device: Device
    sessions: tuple[Session, ...]

    @field_validator("name", "description")
    @classmethod
    def _text(cls, v: str | None, info: Any) -> str | None:
        if v is None:
            return v
        _text_ok(v)
        if info.field_name == "name" and not v.strip():
            raise InputError("", v, "non-empty text")
        return v

    @field_validator("sites")
    @classmethod
    def _some_site(cls, v: tuple[Site, ...]) -> tuple[Site, ...]:
        # a length check here, not Field(min_length=1): pydantic would also report an empty
        # tuple whenever one item failed, a misleading second problem
        if not v:
            allowed = "at least one [[sites]] table, named one of " + ", ".join(SITES)
            raise InputError("", [], allowed)
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Course:
        problems: list[InputError] = []
        first_site: dict[str, int] = {}
        for j, s in enumerate(self.sites):
            if s.name in first_site:
                problems.append(
                    InputError(
                        f"sites[{j}].name",
                        s.name,
                        f"a site not declared before (sites[{first_site[s.name]}] is already "
                        f"{s.name!r}); each site at most once",
                    )
                )
            else:
                first_site[s.name] = j
        declared = tuple(first_site)
        dev = self.device
        seen: dict[tuple[float, str], int] = {}
        for i, ses in enumerate(self.sessions):
            f = f"sessions[{i}]"
            if ses.site not in first_site:
                problems.append(
                    InputError(
                        f"{f}.site",
                        ses.site,
                        "one of the declared sites (" + ", ".join(declared) + "); declare "
                        f"{ses.site!r} under [[sites]] to treat it",
                    )
                )
            if i > 0 and ses.day < self.sessions[i - 1].day:
                prev = self.sessions[i - 1].day
                problems.append(
                    InputError(
                        f"{f}.day",
                        ses.day,
                        f"≥ {prev:g} d (the day of sessions[{i - 1}]): sessions must be listed "
                        "in non-decreasing day order",
                    )
                )
            key = (ses.day, ses.site)
            if key in seen:
                problems.append(
                    InputError(
                        f"{f}.site",
                        ses.site,
                        f"a site not already treated on day {ses.day:g} (sessions[{seen[key]}] "
                        f"treats {ses.site!r} that day; raise its passes instead)",
                    )
                )
            else:
                seen[key] = i
            if ses.needle_length_mm > dev.max_needle_length_mm:
                problems.append(
                    InputError(
                        f"{f}.needle_length_mm",
                        ses.needle_length_mm,
                        f"at most {dev.max_needle_length_mm:g} mm "
                        "(device.max_needle_length_mm, the device's range)",
                    )
                )
            if isinstance(dev, Pen) and ses.pen_speed_cm_s is None:
                problems.append(
                    InputError(
                        f"{f}.pen_speed_cm_s",
                        MISSING,
                        "required for a pen device: a number from 0.1 to 20 cm/s (hand speed)",
                    )
                )
            elif not isinstance(dev, Pen) and ses.pen_speed_cm_s is not None:
                problems.append(
                    InputError(
                        f"{f}.pen_speed_cm_s",
                        ses.pen_speed_cm_s,
                        f"absent: pen_speed_cm_s applies to pen devices only "
                        f"(device.type is {dev.type!r})",
                    )
                )
        if self.sessions:
            k = max(range(len(self.sessions)), key=lambda n: self.sessions[n].day)
            last = self.sessions[k].day
            if self.horizon_days < last:
                problems.append(
                    InputError(
                        "horizon_days",
                        self.horizon_days,
                        f"≥ {last:g} d (the last session, sessions[{k}].day) and ≤ 3650 d",
                    )
                )
        if problems:
            raise CourseValidationError(problems)
        return self

    # ------------------------------------------------------------------------- queries
    def site(self, name: str) -> Site:
        """The declared site called ``name``."""
        for s in self.sites:
            if s.name == name:
                return s
        names = tuple(s.name for s in self.sites)
        allowed = "one of the declared sites: " + ", ".join(names)
        raise InputError("site", name, allowed + _did_you_mean(name, names))

    def sessions_for(self, site: str) -> list[Session]:
        """Sessions of ``site`` in day order (empty for a known site that is not treated)."""
        if site not in SITES:
            hint = _did_you_mean(site, SITES, _SITE_ALIASES)
            raise InputError("site", site, "one of " + ", ".join(SITES) + hint)
        return [s for s in self.sessions if s.site == site]

    @property
    def warnings(self) -> tuple[str, ...]:
        """Why this course is outside published practice, one line each (not refusals).

        Contraindications in the patient's history, and sessions deeper than the usual range of
        their site (``safety.typical_needle_length``).
        """
        lim = safety_limits()
        h = self.patient.history
        out: list[str] = []
        wash = lim.isotretinoin_washout_months
        if h.isotretinoin_months_ago is not None and h.isotretinoin_months_ago < wash:
            out.append(
                f"patient.history.isotretinoin_months_ago = {h.isotretinoin_months_ago:g}: oral "
                f"isotretinoin within the last {wash:g} months (safety.isotretinoin_washout) is a "
                "contraindication: risk of delayed healing and atypical scarring"
            )
        for flag, reason in _HISTORY_WARNINGS.items():
            if getattr(h, flag):
                out.append(f"patient.history.{flag}: {reason}")
        deep: dict[tuple[str, float], list[int]] = {}
        for i, ses in enumerate(self.sessions):
            if ses.needle_length_mm > lim.typical_needle_length_mm[ses.site]:
                deep.setdefault((ses.site, ses.needle_length_mm), []).append(i)
        for (site, length), idx in deep.items():
            typ = lim.typical_needle_length_mm[site]
            where = ", ".join(f"sessions[{i}]" for i in idx)
            srcs = ", ".join(lim.typical_sources)
            out.append(
                f"{where}: needle_length_mm = {length:g} mm is above the usual {typ:g} mm for "
                f"{site} (safety.typical_needle_length; sources: {srcs}): "
                "deeper needling means more bleeding and longer downtime, and a higher risk of "
                "post-inflammatory hyperpigmentation in darker skin types"
            )
        return tuple(out)

    # ------------------------------------------------------------------------- reading
    @classmethod
    def from_dict(cls, d: Any, source: str = "course") -> Course:
        """Validate a mapping shaped like a course file."""
        if not isinstance(d, Mapping):
            raise CourseValidationError(
                [InputError("<course>", d, "a table (mapping) of course fields")], source=source
            )
        try:
            return cls.model_validate(dict(d))
        except ValidationError as exc:
            raise CourseValidationError(_translate(exc), source=source) from None

    @classmethod
    def from_toml_text(cls, text: str, source: str = "course") -> Course:
        """Parse and validate TOML text."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CourseValidationError(
                [InputError("<file>", source, f"valid TOML; the parser said: {exc}")], source=source
            ) from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_toml(cls, path: str | Path) -> Course:
        """Read and validate a TOML course file."""
        source = str(path)
        raw = _read_bytes(path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CourseValidationError(
                [InputError("<file>", source, f"UTF-8 encoded TOML text ({exc})")], source=source
            ) from None
        return cls.from_toml_text(text, source=source)

    @classmethod
    def from_json(cls, path: str | Path) -> Course:
        """Read and validate a JSON course file (same shape as the TOML one)."""
        source = str(path)
        raw = _read_bytes(path)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CourseValidationError(
                [InputError("<file>", source, f"valid UTF-8 JSON; the parser said: {exc}")],
                source=source,
            ) from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> Course:
        """Read a ``.toml`` or ``.json`` course file (chosen by suffix)."""
        suffix = Path(path).suffix.lower()
        if suffix == ".toml":
            return cls.from_toml(path)
        if suffix == ".json":
            return cls.from_json(path)
        raise CourseValidationError(
            [InputError("<file>", str(path), "a course file ending in .toml or .json")],
            source=str(path),
        )

    # ------------------------------------------------------------------------- writing
    def to_dict(self) -> dict[str, Any]:
        """Plain data (no absent fields) that :meth:`from_dict` turns back into this course."""
        data = self.model_dump(mode="python", exclude_none=True)
        hist = {k: v for k, v in data["patient"]["history"].items() if v is not False}
        if hist:
            data["patient"]["history"] = hist
        else:
            del data["patient"]["history"]
        return data

    def to_toml(self) -> str:
        """This course as a TOML course file (``from_toml_text(c.to_toml()) == c``)."""
        lines = [f"# microneedling course file: {_toml_str(self.name)[1:-1]}"]
        lines += _emit_table(self.to_dict(), ())
        return "\n".join(lines) + "\n"


_HISTORY_WARNINGS = {
    "active_infection": "active infection at the treated site (herpes, impetigo, active acne) is a "
    "contraindication: needling can spread it; treat it first",
    "keloid_history": "a history of keloids is a contraindication: needle injury may trigger "
    "keloid or hypertrophic scarring, which the model's normal-healing parameters do not represent",
    "pregnant": "pregnancy: microneedling and most topicals have not been evaluated in pregnancy; "
    "treatment is usually deferred",
    "anticoagulants": "anticoagulant therapy: more bleeding and bruising when needles reach the "
    "dermis",
    "bleeding_disorder": "a bleeding disorder is a contraindication: bleeding and bruising when "
    "needles reach the dermis",
    "diabetes_uncontrolled": "uncontrolled diabetes: impaired wound healing and a higher infection "
    "risk; the model assumes normal healing",
    "immunosuppressed": "immunosuppression: impaired wound healing and a higher infection risk; "
    "the model assumes normal healing",
    "radiotherapy_recent": "recent radiotherapy: irradiated skin heals poorly; the model assumes "
    "normal healing",
    "eczema_psoriasis_active": "active eczema or psoriasis: needling can provoke lesions at the "
    "needled site (Koebner phenomenon)",
    "vitiligo": "vitiligo: needling can provoke new depigmented patches at the needled site "
    "(Koebner phenomenon)",
    "filler_recent": "recent dermal filler: needling over it risks displacement, infection and "
    "granulomas; wait until it has settled",
}


def _read_bytes(path: str | Path) -> bytes:
    source = str(path)
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        reason = "an existing course file (no such file)"
    except IsADirectoryError:
        reason = "a course file, not a directory"
    except OSError as exc:
        reason = f"a readable course file ({exc.strerror or exc})"
    raise CourseValidationError([InputError("<file>", source, reason)], source=source)


# ------------------------------------------------------------------------------ TOML writer
_BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def dumps_toml(table: Mapping[str, Any], header: str | None = None) -> str:
    """A mapping (str keys; values bool/int/float/str, lists, mappings, arrays of mappings) as TOML
    text: key/values first, then sub-tables, then arrays of tables. ``header``: an optional comment
    line at the top. Round-trips through ``tomllib.loads``."""
    lines = [f"# {header}"] if header else []
    lines += _emit_table(table, ())
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_key(k: str) -> str:
    return k if k and set(k) <= _BARE else _toml_str(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):  # never reached for a validated course
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list | tuple) and len(v) > 0 and all(isinstance(x, Mapping) for x in v)


def _emit_table(table: Mapping[str, Any], path: tuple[str, ...]) -> list[str]:
    """Key/values first (``type`` leading), then sub-tables, then arrays of tables."""
    keys = sorted(table, key=lambda k: k != "type")  # stable: only moves "type" to the front
    lines: list[str] = []
    for k in keys:
        v = table[k]
        if not isinstance(v, Mapping) and not _is_table_array(v):
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k in keys:
        v = table[k]
        sub = (*path, k)
        header = ".".join(_toml_key(p) for p in sub)
        if isinstance(v, Mapping):
            lines += ["", f"[{header}]", *_emit_table(v, sub)]
        elif _is_table_array(v):
            for item in v:
                lines += ["", f"[[{header}]]", *_emit_table(item, sub)]
    return lines


# ------------------------------------------------------------------- ValidationError -> words
def _unwrap(ann: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` layers (collecting their metadata) and a ``None`` union member."""
    meta: list[Any] = []
    while True:
        origin = get_origin(ann)
        if origin is Annotated:
            base, *extra = get_args(ann)
            for m in extra:
                meta.extend(m.metadata if isinstance(m, FieldInfo) else [m])
            ann = base
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(ann) if a is not type(None)]
            if len(args) == 1:
                ann = args[0]
            else:
                return ann, meta
        else:
            return ann, meta


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _union_models(ann: Any) -> list[type[BaseModel]]:
    if get_origin(ann) in (Union, types.UnionType):
        return [a for a in get_args(ann) if _is_model(a)]
    return []


def _tag(model: type[BaseModel]) -> str | None:
    f = model.model_fields.get("type")
    if f is None:
        return None
    args = get_args(f.annotation)
    return str(args[0]) if args else None


def _num(v: float) -> str:
    return f"{v:g}"


def _describe(ann: Any, meta: list[Any] | tuple[Any, ...] = ()) -> str:
    """What a field accepts, in words, from its annotation and constraints."""
    ann, inner = _unwrap(ann)
    meta = [*meta, *inner]
    for m in meta:
        if isinstance(m, _Allowed):
            return m.text
    unit = next((f" {m.symbol}" for m in meta if isinstance(m, _Unit)), "")
    origin = get_origin(ann)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(ann))
    models = _union_models(ann)
    if models:
        tags = ", ".join(repr(_tag(m)) for m in models)
        return f"a table with type = one of {tags}"
    if origin is tuple:
        item = get_args(ann)[0]
        return f"a list (array) whose items are: {_describe(item)}"
    if ann is bool:
        return "true or false"
    if ann is str:
        return "text"
    if ann in (int, float):
        what = "an integer" if ann is int else "a number"
        bounds: dict[str, float] = {}
        for m in meta:
            for op, attr in (("≥", "ge"), (">", "gt"), ("≤", "le"), ("<", "lt")):
                if isinstance(m, getattr(at, attr.capitalize())):
                    bounds[op] = float(getattr(m, attr))
        if "≥" in bounds and "≤" in bounds:
            return f"{what} from {_num(bounds['≥'])} to {_num(bounds['≤'])}{unit}"
        parts = [f"{op} {_num(x)}" for op, x in bounds.items()]
        return f"{what} {' and '.join(parts)}{unit}" if parts else f"{what}{unit}"
    if _is_model(ann):
        return "a table with fields: " + ", ".join(ann.model_fields)
    return str(ann)


def _resolve(loc: tuple[str | int, ...]) -> tuple[str, Any, list[Any], type[BaseModel] | None]:
    """Dotted path (tags of tagged unions dropped), annotation, metadata and owning model."""
    text = ""
    ann: Any = Course
    meta: list[Any] = []
    owner: type[BaseModel] | None = None
    for item in loc:
        base, _ = _unwrap(ann)
        if isinstance(item, int):
            text += f"[{item}]"
            args = get_args(base) if get_origin(base) is tuple else ()
            ann, meta = (args[0] if args else None), []
            continue
        tagged = {_tag(m): m for m in _union_models(base)}
        if item in tagged:
            ann, meta = tagged[item], []
            continue
        text = f"{text}.{item}" if text else str(item)
        if _is_model(base):
            owner = base
            finfo = base.model_fields.get(item)
            ann, meta = (finfo.annotation, list(finfo.metadata)) if finfo else (None, [])
        else:
            ann, meta = None, []
    return text, ann, meta, owner


def _join(path: str, field: str) -> str:
    if not field:
        return path or "<course>"
    return f"{path}.{field}" if path else field


def _translate(exc: ValidationError) -> list[InputError]:
    """One :class:`InputError` per pydantic error, with the dotted path, value and allowed text."""
    out: list[InputError] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path, ann, meta, owner = _resolve(loc)
        typ = err["type"]
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        value = err.get("input")
        if isinstance(inner, CourseValidationError):
            out += [InputError(_join(path, p.field), p.value, p.allowed) for p in inner.problems]
            continue
        if isinstance(inner, InputError):
            out.append(InputError(_join(path, inner.field), inner.value, inner.allowed))
            continue
        if typ in ("union_tag_invalid", "union_tag_not_found"):
            tags = ctx.get("expected_tags") or ", ".join(
                repr(_tag(m)) for m in _union_models(_unwrap(ann)[0])
            )
            got = ctx.get("tag", MISSING)
            allowed = f"one of {tags}"
            if typ == "union_tag_not_found":
                allowed = "required field: " + allowed
            else:
                allowed += _did_you_mean(got, [t.strip("'") for t in str(tags).split(", ")])
            out.append(InputError(_join(path, "type"), got, allowed))
            continue
        if typ == "extra_forbidden":
            fields = list(owner.model_fields) if owner is not None else []
            parent = path.rsplit(".", 1)[0] if "." in path else "the course"
            name = str(loc[-1])
            out.append(
                InputError(
                    path or "<course>",
                    value,
                    f"no field {name!r} in {parent}; allowed fields: "
                    + ", ".join(fields)
                    + _did_you_mean(name, fields),
                )
            )
            continue
        described = _describe(ann, meta) if ann is not None else err.get("msg", "")
        if typ == "missing":
            out.append(InputError(path or "<course>", MISSING, f"required field: {described}"))
            continue
        base, _ = _unwrap(ann)
        if get_origin(base) is Literal:
            choices = tuple(str(a) for a in get_args(base))
            aliases = _SITE_ALIASES if choices == SITES else {}
            described += _did_you_mean(value, choices, aliases)
        out.append(InputError(path or "<course>", value, described))
    return out

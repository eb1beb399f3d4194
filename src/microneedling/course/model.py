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

Reading, writing and the wording of errors come from the shared schema base
(:class:`~microneedling.schema.InputModel`); names of sites, devices and scar types from
:mod:`microneedling.vocabulary`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from microneedling.course.safety import HISTORY_WARNINGS, safety_limits
from microneedling.errors import CourseValidationError, InputError, InputFileError
from microneedling.io import dumps_toml
from microneedling.parameters.molecules import molecule_names
from microneedling.schema import (
    INT64_MAX,
    MISSING,
    Allowed,
    Flag,
    InputModel,
    Integer,
    Line,
    Number,
    Text,
    Unit,
    check_text,
    did_you_mean,
)
from microneedling.vocabulary import SITE_ALIASES, SITES, SiteName, fitzpatrick_number

__all__ = [
    "NEEDLE_LENGTH_RANGE_MM",
    "AcneScar",
    "Condition",
    "Course",
    "Device",
    "History",
    "Hyperpigmentation",
    "MasiArea",
    "Patient",
    "Pen",
    "Photoaging",
    "Pores",
    "Roller",
    "Session",
    "Site",
    "Stamp",
    "Striae",
    "Topical",
    "Wrinkles",
    "fitzpatrick_type",
]

NEEDLE_LENGTH_RANGE_MM = (0.1, 3.0)
"""Schema range of needle lengths (mm); 3.0 mm is the deepest pen setting seen (Dermapen 4)."""

# Limits where size is a cost (refused above them; the README's "Limits and guarantees")
MAX_SESSIONS = 500
"""Most sessions in one course (weekly for ten years at one site is 520)."""
MAX_SESSIONS_PER_SITE_YEAR = 52
"""Most sessions of one site in any 365 days (weekly; the shortest published interval is 7 d)."""
MAX_AREA_CM2 = 20_000.0
"""Largest treated area of a site (2 m², about the whole skin of an adult)."""
MIN_CONTACT_HOURS = 1.0 / 60.0
"""Shortest contact time of a topical (1 minute): a product wiped off sooner is not applied."""


class _Model(InputModel):
    """Base of the course's tables: errors are :class:`CourseValidationError` naming the course."""

    file_kind: ClassVar[str] = "course"
    error_class: ClassVar[type[InputFileError]] = CourseValidationError
    literal_aliases: ClassVar[Mapping[tuple[str, ...], Mapping[str, str]]] = {SITES: SITE_ALIASES}


class History(_Model):
    """Medical history relevant to needling; every flag is optional. Flags that are
    contraindications produce :attr:`Course.warnings`, not refusals."""

    isotretinoin_months_ago: Annotated[Number, Field(ge=0), Unit("months")] | None = None
    active_infection: Flag = False  # herpes, impetigo, active acne at the treated site
    keloid_history: Flag = False
    pregnant: Flag = False
    anticoagulants: Flag = False
    bleeding_disorder: Flag = False
    diabetes_uncontrolled: Flag = False
    immunosuppressed: Flag = False
    radiotherapy_recent: Flag = False
    eczema_psoriasis_active: Flag = False
    vitiligo: Flag = False
    filler_recent: Flag = False


def fitzpatrick_type(v: Any) -> Any:
    """Before-validator of a Fitzpatrick field: roman numerals I..VI (any case, blanks ignored)
    become 1..6; other text is refused; numbers pass on to the integer check."""
    if isinstance(v, str):
        number = fitzpatrick_number(v)
        if number is None:
            raise InputError("", v, _FITZ_ALLOWED)
        return number
    return v


_FITZ_ALLOWED = "an integer from 1 to 6 or a roman numeral I to VI (Fitzpatrick skin type)"


class Patient(_Model):
    """The person treated. Adults only: the published protocols and data are for adults."""

    age_years: Annotated[
        Integer, Field(ge=18, le=90), Allowed("an integer from 18 to 90 years (adults only)")
    ]
    sex: Literal["female", "male"]
    fitzpatrick: Annotated[
        Integer, BeforeValidator(fitzpatrick_type), Field(ge=1, le=6), Allowed(_FITZ_ALLOWED)
    ]
    history: History = Field(default_factory=History)
    # sun protection after the sessions (observe.pih_sun_factor) and hydroquinone priming before
    # the course (observe.pih_priming_effect): modifiers of the risk of PIH
    photoprotection: Literal["strict", "usual", "none"] = "usual"
    priming: Flag = False


# --- conditions (tagged union on `type`)
_DepthShare = Annotated[Number, Field(ge=0, le=1), Unit("(share of the scar's depth)")]


class AcneScar(_Model):
    """Atrophic acne scars of one type (Jacob classification) and their geometry.

    The response is computed from the geometry against the needles' reach
    (:mod:`microneedling.physics.scars`); ``scar_type`` selects the default geometry
    (``observe.scar_*`` tables; profile: rolling rounded, boxcar box, icepick V-shaped) and each
    optional field overrides it: surface width, floor profile, and the shares of the depth that
    are tethered to the subcutis, lined by epithelium, and flattened by stretching.
    """

    type: Literal["acne_scar"] = "acne_scar"
    scar_type: Literal["rolling", "boxcar", "icepick"]
    depth_mm: Annotated[Number, Field(gt=0, le=3), Unit("mm")]
    count: Annotated[Integer, Field(ge=1, le=10_000)]
    width_mm: Annotated[Number, Field(gt=0, le=20), Unit("mm")] | None = None
    profile: Literal["v_shaped", "box", "rounded"] | None = None
    tethered_share: _DepthShare | None = None
    epithelial_share: _DepthShare | None = None
    distensible_share: _DepthShare | None = None

    @model_validator(mode="after")
    def _shares_within_the_depth(self) -> AcneScar:
        tau, eps = self.tethered_share, self.epithelial_share
        if tau is not None and eps is not None and tau + eps > 1.0:
            raise InputError(
                "epithelial_share",
                eps,
                f"at most 1 - tethered_share = {1.0 - tau:g}: the tethered and the "
                "epithelium-lined parts are shares of the same depth",
            )
        return self


class Wrinkles(_Model):
    """Wrinkles of a given depth; ``width_mm`` (default ``observe.wrinkle_width``) is the surface
    width of the static groove."""

    type: Literal["wrinkles"] = "wrinkles"
    depth_um: Annotated[Number, Field(gt=0, le=2000), Unit("µm")]
    width_mm: Annotated[Number, Field(gt=0, le=10), Unit("mm")] | None = None


class Pores(_Model):
    type: Literal["pores"] = "pores"
    diameter_um: Annotated[Number, Field(gt=0, le=2000), Unit("µm")]


class Striae(_Model):
    """Stretch marks: visible width and stage; ``depth_mm`` of the depression (default
    ``observe.striae_depth``) is what needling can fill or release; ``tethered_share`` the share
    of it held down by the contracted scar band (default ``observe.striae_tethered_share``)."""

    type: Literal["striae"] = "striae"
    width_mm: Annotated[Number, Field(gt=0, le=50), Unit("mm")]
    stage: Literal["rubra", "alba"]
    depth_mm: Annotated[Number, Field(gt=0, le=3), Unit("mm")] | None = None
    tethered_share: _DepthShare | None = None


class MasiArea(_Model):
    """Area involved by the melasma in each MASI region [% of the region]."""

    forehead: Annotated[Number, Field(ge=0, le=100), Unit("%")]
    malar_right: Annotated[Number, Field(ge=0, le=100), Unit("%")]
    malar_left: Annotated[Number, Field(ge=0, le=100), Unit("%")]
    chin: Annotated[Number, Field(ge=0, le=100), Unit("%")]


class Hyperpigmentation(_Model):
    """A hyperpigmented lesion: its melanin index, and for melasma the MASI components.

    ``perilesional_melanin_index`` (the surrounding skin) is the floor the lesion can fade to
    (default: ``observe.lesion_excess_fraction`` below the lesion); ``melasma_type`` (Wood's lamp)
    sets how much of the pigment is dermal and fixed; ``masi_area_pct``, ``masi_darkness`` and
    ``masi_homogeneity`` are the baseline MASI components (defaults ``observe.masi_default_*``).
    """

    type: Literal["hyperpigmentation"] = "hyperpigmentation"
    kind: Literal["melasma", "pih", "lentigo"]
    melanin_index: Annotated[Number, Field(gt=0, le=1000), Unit("(arbitrary Mexameter units)")]
    perilesional_melanin_index: (
        Annotated[Number, Field(gt=0, le=1000), Unit("(arbitrary Mexameter units)")] | None
    ) = None
    melasma_type: Literal["epidermal", "mixed", "dermal"] = "epidermal"
    masi_area_pct: MasiArea | None = None
    masi_darkness: Annotated[Number, Field(ge=0, le=4), Unit("(MASI darkness, 0-4)")] | None = None
    masi_homogeneity: (
        Annotated[Number, Field(ge=0, le=4), Unit("(MASI homogeneity, 0-4)")] | None
    ) = None

    @model_validator(mode="after")
    def _lesion_darker_than_surroundings(self) -> Hyperpigmentation:
        peri = self.perilesional_melanin_index
        if peri is not None and peri > self.melanin_index:
            raise InputError(
                "perilesional_melanin_index",
                peri,
                f"at most the lesion's melanin_index ({self.melanin_index:g}): the surrounding "
                "skin is the floor the lesion fades to",
            )
        return self


class Photoaging(_Model):
    """Fine lines, laxity, rejuvenation. ``elasticity_r2`` is deprecated (a warning): the baseline
    R2 comes from age, sex and site (``observe.r2_*``); a value given is used as a measured R2."""

    type: Literal["photoaging"] = "photoaging"
    elasticity_r2: Annotated[Number, Field(gt=0, lt=1)] | None = None


Condition = Annotated[
    AcneScar | Wrinkles | Pores | Striae | Hyperpigmentation | Photoaging,
    Field(discriminator="type"),
]


class Site(_Model):
    """A treated site, its area and its conditions (zero or more)."""

    name: SiteName
    area_cm2: Annotated[
        Number,
        Field(gt=0, le=MAX_AREA_CM2),
        Allowed(
            f"a number > 0 and ≤ {MAX_AREA_CM2:g} cm² (2 m², the skin of a whole adult; "
            "optional: default from safety.default_treatment_area)"
        ),
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
    needle_count: Annotated[Integer, Field(ge=1, le=1000)]
    needle_diameter_mm: Annotated[
        Number, Field(ge=0.05, le=0.5), Unit("mm (shank diameter at the base)")
    ]
    tip_radius_um: Annotated[Number, Field(ge=0.5, le=50), Unit("µm")]
    tip: Literal["cone", "pyramid"]
    max_needle_length_mm: Annotated[
        Number, Field(ge=NEEDLE_LENGTH_RANGE_MM[0], le=NEEDLE_LENGTH_RANGE_MM[1]), Unit("mm")
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
    drum_diameter_mm: Annotated[Number, Field(ge=5, le=60), Unit("mm")]
    drum_width_mm: Annotated[Number, Field(ge=5, le=60), Unit("mm")]


class Pen(_DeviceBase):
    """An automated pen: a cartridge of needles stamping at ``frequency_hz``."""

    type: Literal["pen"] = "pen"
    frequency_hz: Annotated[Number, Field(ge=10, le=200), Unit("Hz")]
    cartridge_width_mm: Annotated[Number, Field(ge=1, le=20), Unit("mm")]


class Stamp(_DeviceBase):
    """A stamp: a flat needle plate pressed onto each spot."""

    type: Literal["stamp"] = "stamp"
    stamp_area_cm2: Annotated[Number, Field(ge=0.01, le=10), Unit("cm²")]


Device = Annotated[Roller | Pen | Stamp, Field(discriminator="type")]


class Topical(_Model):
    """A product applied to the needled skin (after the session, or before it: ``applied``)."""

    product: Text
    concentration_mg_ml: Annotated[Number, Field(gt=0, le=1000), Unit("mg/mL")]
    volume_ul_cm2: Annotated[Number, Field(gt=0, le=200), Unit("µL/cm² (applied film per area)")]
    contact_hours: Annotated[
        Number,
        Field(ge=MIN_CONTACT_HOURS, le=72),
        Allowed("a number from 1/60 h (1 minute) to 72 h (time on the skin)"),
    ]
    # the vehicle (physics.transport.Vehicle): its pH (default: the product's usual formulation pH,
    # molecules.toml vehicle_ph, else the skin's), its water share (default
    # transport.volatile_fraction) and when it is applied relative to the needling
    ph: Annotated[Number, Field(gt=0, lt=14), Unit("(vehicle pH)")] | None = None
    water_fraction: (
        Annotated[Number, Field(ge=0, le=1), Unit("(share of the film that evaporates)")] | None
    ) = None
    applied: Literal["after", "before"] = "after"
    # an excised skin in a diffusion cell (physics.transport.Vehicle.in_vitro): no blood flow (the
    # viable tissue drains to a receptor below the full skin), a donor that does not dry
    # (water_fraction is then not used). For in vitro studies only; a treatment course is in vivo
    in_vitro: Flag = False

    @field_validator("product")
    @classmethod
    def _known(cls, v: str) -> str:
        keys = molecule_names()
        if v not in keys:
            raise InputError("", v, "one of " + ", ".join(keys) + did_you_mean(v, keys))
        return v


_NEEDLE_ALLOWED = (
    "a number from 0.1 to 3 mm, at most device.max_needle_length_mm and at most the site's "
    "limit (safety.max_needle_length)"
)


class Session(_Model):
    """One treatment of one site on one day."""

    day: Annotated[Number, Field(ge=0, le=3650), Unit("d (days from the course start)")]
    site: SiteName
    needle_length_mm: Annotated[
        Number, Field(ge=NEEDLE_LENGTH_RANGE_MM[0]), Allowed(_NEEDLE_ALLOWED)
    ]
    passes: Annotated[
        Integer,
        Field(ge=1, le=50),
        Allowed("an integer from 1 to 50 (roller passes, stamps per spot or pen passes)"),
    ]
    pen_speed_cm_s: (
        Annotated[
            Number, Field(ge=0.1, le=20), Allowed("a number from 0.1 to 20 cm/s (pen devices only)")
        ]
        | None
    ) = None
    occlusion: Flag = False
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

    name: Annotated[Line, Field(min_length=1)]
    horizon_days: Annotated[
        Number, Field(gt=0, le=3650), Allowed("a number > 0 and ≤ 3650 d, ≥ the last session day")
    ]
    seed: Annotated[Integer, Field(ge=0, le=INT64_MAX)] = 0
    description: Text | None = None
    patient: Patient
    sites: tuple[Site, ...]
    device: Device
    sessions: tuple[Session, ...]

    @field_validator("name", "description")
    @classmethod
    def _text(cls, v: str | None, info: Any) -> str | None:
        if v is None:
            return v
        check_text(v)
        if info.field_name == "name" and not v.strip():
            raise InputError("", v, "non-empty text (one line of at most 200 characters)")
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
        problems += _session_limits(self.sessions)
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
        raise InputError("site", name, allowed + did_you_mean(name, names))

    def sessions_for(self, site: str) -> list[Session]:
        """Sessions of ``site`` in day order (empty for a known site that is not treated)."""
        if site not in SITES:
            hint = did_you_mean(site, SITES, SITE_ALIASES)
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
        for flag, reason in HISTORY_WARNINGS.items():
            if getattr(h, flag):
                out.append(f"patient.history.{flag}: {reason}")
        for i, treated in enumerate(self.sites):
            for j, c in enumerate(treated.conditions):
                if isinstance(c, Photoaging) and c.elasticity_r2 is not None:
                    out.append(
                        f"sites[{i}].conditions[{j}].elasticity_r2 = "
                        f"{c.elasticity_r2:g} is deprecated: the baseline Cutometer R2 now comes "
                        "from age, sex and site (observe.r2_young, observe.r2_age_slope); a value "
                        "given here is used as a measured R2 of this patient's site. Remove it "
                        "unless it was measured."
                    )
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
        name = self.name.encode("unicode_escape").decode("ascii")  # one comment line, printable
        return dumps_toml(self.to_dict(), header=f"microneedling course file: {name}")


def _session_limits(sessions: tuple[Session, ...]) -> list[InputError]:
    """Refusals where size is a cost: more than :data:`MAX_SESSIONS` sessions, or more than
    :data:`MAX_SESSIONS_PER_SITE_YEAR` sessions of one site in any 365 days."""
    if len(sessions) > MAX_SESSIONS:
        return [
            InputError(
                "sessions",
                f"<{len(sessions)} sessions>",
                f"at most {MAX_SESSIONS} sessions in one course",
            )
        ]
    problems: list[InputError] = []
    by_site: dict[str, list[tuple[float, int]]] = {}
    for i, ses in enumerate(sessions):
        by_site.setdefault(ses.site, []).append((ses.day, i))
    n = MAX_SESSIONS_PER_SITE_YEAR
    for site, days in by_site.items():
        days.sort()
        for j in range(n, len(days)):
            if days[j][0] - days[j - n][0] < 365.0:
                first, i = days[j - n], days[j][1]
                problems.append(
                    InputError(
                        f"sessions[{i}].day",
                        days[j][0],
                        f"at most {n} sessions of {site!r} in any 365 days (weekly); this is "
                        f"session {n + 1} of {site!r} since day {first[0]:g}",
                    )
                )
                break
    return problems

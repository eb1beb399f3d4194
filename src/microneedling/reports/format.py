"""The one set of formatting helpers of every report, figure and CLI table.

Numbers with significant digits (:func:`format_number`), intervals (:func:`format_interval`), days
(:func:`format_day`), percentages and p values, units for people (:func:`pretty_units`: ``ug/cm^2``
→ µg/cm², ``cm^-2`` → /cm², ``1`` → no unit), human labels for field names (:func:`field_label`,
:func:`format_field`: ``tip_radius_um = 4`` → "Tip radius", "4 µm"), end points in words
(:func:`endpoint_label`), Fitzpatrick types as roman numerals, booleans as yes/no, and
:func:`clean_text`, which removes control characters (a NUL or an ANSI escape in a course name)
before user text reaches a page.

Nothing here reads files or imports heavy libraries.

>>> format_number(0.012345), format_interval(1, 2.5), pretty_units("ug/cm^2")
('0.0123', '1.00–2.50', 'µg/cm²')
>>> field_label("tip_radius_um"), format_field("fitzpatrick", 4), format_value(True)
('Tip radius', 'IV', 'yes')
"""

from __future__ import annotations

import math
import re
from typing import Any

from microneedling.engine.endpoints import parse_endpoint
from microneedling.engine.variables import by_name
from microneedling.errors import InputError

__all__ = [
    "clean_text",
    "endpoint_label",
    "field_label",
    "field_units",
    "format_day",
    "format_field",
    "format_interval",
    "format_number",
    "format_p",
    "format_percent",
    "format_value",
    "human",
    "pretty_units",
    "roman",
    "units_words",
    "with_units",
    "yes_no",
]


# --------------------------------------------------------------------------- numbers
def format_number(x: Any, sig: int = 3) -> str:
    """A number with ``sig`` significant digits, without exponent for ordinary magnitudes.

    >>> format_number(1234.6), format_number(0.012345), format_number(float("nan"))
    ('1235', '0.0123', '—')
    """
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    if -4 <= mag < 6:
        decimals = max(sig - 1 - mag, 0)
        s = f"{v:.{decimals}f}"
        return "0" if float(s) == 0 else s
    return f"{v:.{sig - 1}e}"


def format_day(day: Any) -> str:
    """A day number: ``28`` for whole days, else one decimal (``86.4``).

    >>> format_day(28.0), format_day(86.43), format_day(float("nan"))
    ('28', '86.4', '—')
    """
    try:
        d = float(day)
    except (TypeError, ValueError):
        return str(day)
    if not math.isfinite(d):
        return "—"
    return str(round(d)) if abs(d - round(d)) < 5e-3 else f"{d:.1f}"


def format_interval(low: Any, high: Any, sig: int = 3) -> str:
    """``"lo–hi"`` (``"lo to hi"`` when a bound is negative), or ``""`` when one is missing.

    >>> format_interval(1, 2.5), format_interval(-13.8, 14.0)
    ('1.00–2.50', '-13.8 to 14.0')
    """
    try:
        lo, hi = float(low), float(high)
    except (TypeError, ValueError):
        return ""
    if math.isnan(lo) or math.isnan(hi):
        return ""
    sep = " to " if lo < 0 or hi < 0 else "–"  # "-13.8–14.0" would read as a range of negatives
    return f"{format_number(lo, sig)}{sep}{format_number(hi, sig)}"


def format_percent(fraction: Any, sig: int = 3) -> str:
    """A fraction as a percentage: ``0.734`` → ``73.4%`` (``—`` when missing).

    >>> format_percent(0.734), format_percent(1.0), format_percent(None)
    ('73.4%', '100%', '—')
    """
    try:
        v = float(fraction)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(v):
        return "—"
    pct = 100.0 * v
    return f"{pct:.0f}%" if pct in (0.0, 100.0) else f"{format_number(pct, sig)}%"


def format_p(p: Any) -> str:
    """A p value: two significant digits, ``< 0.0001`` below that.

    >>> format_p(0.0342), format_p(3e-12), format_p(float("nan"))
    ('0.034', '< 0.0001', '—')
    """
    try:
        v = float(p)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(v):
        return "—"
    return "< 0.0001" if v < 1e-4 else format_number(v, 2)


def yes_no(value: Any) -> str:
    """``yes``/``no`` for booleans (and 1/0 flags); ``—`` when missing."""
    if value is None:
        return "—"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "yes" if value else "no"
    if math.isnan(v):
        return "—"
    return "yes" if v else "no"


_ROMAN = ("", "I", "II", "III", "IV", "V", "VI")


def roman(n: Any) -> str:
    """Fitzpatrick skin type as a roman numeral: ``4`` → ``IV`` (roman input is kept).

    >>> roman(4), roman("III"), roman(9)
    ('IV', 'III', '9')
    """
    try:
        i = int(n)
    except (TypeError, ValueError):
        return str(n)
    return _ROMAN[i] if 1 <= i < len(_ROMAN) else str(n)


# --------------------------------------------------------------------------- units
def _sup(text: str) -> str:
    return text.translate(str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻"))


def pretty_units(units: Any) -> str:
    """Units for people: ``um`` → µm, ``ug/cm^2`` → µg/cm², ``cm^-2`` → /cm², ``1`` → empty.

    >>> pretty_units("ug/cm^2"), pretty_units("cm^-2"), pretty_units("1"), pretty_units("m^2/s")
    ('µg/cm²', '/cm²', '', 'm²/s')
    """
    u = str(units).strip()
    if u in ("", "1", "-", "dimensionless", "None"):
        return ""
    u = re.sub(r"\bu([mgLl])\b", lambda m: "µ" + m[1].replace("l", "L"), u)
    u = re.sub(r"\bml\b", "mL", u)
    if u.startswith("1/"):  # 1/d → /d
        u = u[1:]
    # a negative power at the start reads "per": cm^-2 → /cm^2, s^-1 → /s; after a unit: "x y^-1"
    u = re.sub(
        r"(^|\s+|\*)([A-Za-zµ]+)\^-(\d)",
        lambda m: "/" + m[2] + ("" if m[3] == "1" else f"^{m[3]}"),
        u,
    )
    return re.sub(r"\^(-?\d+)", lambda m: _sup(m[1]), u)


def units_words(units: Any, variable: Any = "") -> str:
    """Units for a table cell: :func:`pretty_units`, or for a dimensionless output what its
    number is (``variable``: the output's name, or an end point of the grammar; its
    :attr:`~microneedling.engine.variables.Variable.scale`).

    >>> units_words("um"), units_words("1", "pih_risk"), units_words("1", "scar_grade@last+90")
    ('µm', 'probability', 'grade, 1–4')
    """
    pretty = pretty_units(units)
    if pretty or str(units).strip() not in ("1", "dimensionless"):
        return pretty
    name = re.split(r"[:@]", str(variable or ""), maxsplit=1)[0]
    v = by_name().get(name)
    return v.scale if v is not None and v.scale else "no unit"


def with_units(text: str, units: Any) -> str:
    """``text`` followed by the pretty ``units`` (``12%``, ``230/cm²``, ``4 µm``); a missing value
    (``—``) or a dimensionless one gets none."""
    u = pretty_units(units)
    if not u or text in ("", "—"):
        return text
    return f"{text}{u}" if u == "%" or u.startswith("/") else f"{text} {u}"


# --------------------------------------------------------------------------- field names
#: unit suffixes of field names, longest first: ``tip_radius_um`` → ("tip radius", "um")
_SUFFIX_UNITS: tuple[tuple[str, str], ...] = (
    ("_ug_cm2", "ug/cm^2"),
    ("_mg_ml", "mg/mL"),
    ("_ul_cm2", "uL/cm^2"),
    ("_cm_s", "cm/s"),
    ("_mm_s", "mm/s"),
    ("_g_mol", "g/mol"),
    ("_cm2", "cm^2"),
    ("_um", "um"),
    ("_mm", "mm"),
    ("_cm", "cm"),
    ("_days", "d"),
    ("_day", "d"),
    ("_hours", "h"),
    ("_years", "years"),
    ("_pct", "%"),
    ("_percent", "%"),
)

#: human labels (and units, where the name does not carry them) of the field names reports show
FIELD_LABELS: dict[str, tuple[str, str]] = {
    # patient
    "age_years": ("Age", "years"),
    "age": ("Age", "years"),
    "sex": ("Sex", ""),
    "fitzpatrick": ("Fitzpatrick skin type", ""),
    "skin_type": ("Fitzpatrick skin type", ""),
    "smoker": ("Smoker", ""),
    # device
    "type": ("Type", ""),
    "kind": ("Type", ""),
    "model": ("Model", ""),
    "needle_count": ("Needles", ""),
    "needle_diameter_mm": ("Needle diameter", "mm"),
    "tip_radius_um": ("Tip radius", "um"),
    "tip": ("Tip shape", ""),
    "max_needle_length_mm": ("Longest needle length", "mm"),
    "drum_diameter_mm": ("Drum diameter", "mm"),
    "drum_width_mm": ("Drum width", "mm"),
    "frequency_hz": ("Stroke frequency", "Hz"),
    # topical
    "product": ("Product", ""),
    "concentration_mg_ml": ("Concentration", "mg/mL"),
    "volume_ul_cm2": ("Applied volume", "uL/cm^2"),
    "dose_ug_cm2": ("Dose", "ug/cm^2"),
    "contact_hours": ("Contact time", "h"),
    "occlusion": ("Occluded", ""),
    "occluded": ("Occluded", ""),
    # course and sessions
    "name": ("Name", ""),
    "description": ("Description", ""),
    "horizon_days": ("Simulated horizon", "d"),
    "seed": ("Random seed", ""),
    "site": ("Site", ""),
    "session": ("Session", ""),
    "day": ("Day", ""),
    "passes": ("Passes", ""),
    "needle_length_mm": ("Needle length", "mm"),
    "puncture_density_cm2": ("Puncture density", "cm^-2"),
    "channel_depth_um": ("Channel depth", "um"),
    "channel_radius_um": ("Channel radius", "um"),
    "pen_speed_cm_s": ("Pen speed", "cm/s"),
    "area_cm2": ("Treated area", "cm^2"),
    # statistics (trial tables)
    "n": ("n", ""),
    "n_arm": ("n (arm)", ""),
    "n_control": ("n (control)", ""),
    "mean": ("Mean", ""),
    "sd": ("SD", ""),
    "median": ("Median", ""),
    "p10": ("10th percentile", ""),
    "p90": ("90th percentile", ""),
    "ci95_low": ("95% CI, low", ""),
    "ci95_high": ("95% CI, high", ""),
    "responder_rate": ("Responders", ""),
    "responder_rule": ("Responder rule", ""),
    "responder_ci95_low": ("Responders, 95% CI low", ""),
    "responder_ci95_high": ("Responders, 95% CI high", ""),
    "difference": ("Difference vs control", ""),
    "cohens_d": ("Cohen's d", ""),
    "cohens_dz": ("Cohen's d_z", ""),
    "hedges_g": ("Hedges' g", ""),
    "t_stat": ("t statistic", ""),
    "p_t": ("p (t test)", ""),
    "u_stat": ("Mann–Whitney U", ""),
    "w_stat": ("Wilcoxon W", ""),
    "p_rank": ("p (rank test)", ""),
    "tests": ("Tests", ""),
    "arm": ("Arm", ""),
    "control": ("Control arm", ""),
    "design": ("Design", ""),
    "endpoint": ("End point", ""),
    "units": ("Units", ""),
}


_IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


def human(text: Any) -> str:
    """An identifier in words: ``dorsal_hand`` → ``dorsal hand`` (other text unchanged)."""
    return clean_text(str(text)).replace("_", " ")


def _split_field(name: str) -> tuple[str, str]:
    if name in FIELD_LABELS:
        return FIELD_LABELS[name]
    for suffix, units in _SUFFIX_UNITS:
        if name.endswith(suffix) and len(name) > len(suffix):
            words = name[: -len(suffix)].replace("_", " ")
            return words[:1].upper() + words[1:], units
    words = name.replace("_", " ")
    return words[:1].upper() + words[1:], ""


def field_label(name: str) -> str:
    """Human label of a field name: ``tip_radius_um`` → ``Tip radius``."""
    return _split_field(str(name))[0]


def field_units(name: str) -> str:
    """Pretty units of a field name (from its suffix or :data:`FIELD_LABELS`): ``um`` → µm."""
    return pretty_units(_split_field(str(name))[1])


def format_value(value: Any, units: Any = "", sig: int = 3) -> str:
    """One value for a table cell: booleans yes/no, numbers with ``sig`` digits and their pretty
    units, vocabulary words with underscores read as spaces (free text is kept as written, less
    control characters), lists joined by commas."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, int | float) or hasattr(value, "dtype"):
        try:
            return with_units(format_number(value, sig), units)
        except (TypeError, ValueError):
            pass
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v, units, sig) for v in value)
    text = clean_text(value)
    if _IDENTIFIER.fullmatch(text):  # a vocabulary word (acne_scar, dorsal_hand): in words
        text = text.replace("_", " ")
    return with_units(text, units)


def format_field(name: str, value: Any) -> str:
    """An input field's value as people read it: ``fitzpatrick = 4`` → ``IV``, ``tip_radius_um =
    4.0`` → ``4 µm`` (inputs keep their digits), ``occlusion = true`` → ``yes``."""
    if name in ("fitzpatrick", "skin_type"):
        return roman(value)
    units = _split_field(str(name))[1]
    if isinstance(value, int | float) and not isinstance(value, bool):
        # an input as its author wrote it (4, 0.25, 1500), not rounded to significant digits
        return with_units(f"{value:.6g}", units)
    return format_value(value, units)


# --------------------------------------------------------------------------- end points
_TRANSFORM_WORDS = {
    "value": "",
    "change": "change",
    "percent_change": "% change",
    "reduction": "reduction",
}


def endpoint_label(text: Any) -> str:
    """An end point of the grammar in words: ``scar_depth:reduction@last+90`` → ``Atrophic scar
    depth, reduction, 90 d after the last session``. Text that is not an end point is returned
    with underscores read as spaces."""
    try:
        spec = parse_endpoint(str(text))
    except InputError:
        return human(text)
    var = by_name()[spec.variable]
    base = (var.label or var.long_name).removesuffix(", papillary")
    parts = [base]
    if var.layered:
        parts.append(f"{spec.layer} dermis")
    if spec.per_session:
        return ", ".join(parts)
    if _TRANSFORM_WORDS.get(spec.transform):
        parts.append(_TRANSFORM_WORDS[spec.transform])
    kind, _, num = spec.when.partition(":")
    if kind == "day":
        parts.append(f"day {format_day(num)}")
    elif kind == "last":
        parts.append(f"{format_day(num)} d after the last session")
    else:
        parts.append("at the end of follow-up")
    return ", ".join(parts)


# --------------------------------------------------------------------------- user text
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: Any) -> str:
    """``text`` without control characters: ANSI escape sequences removed whole, other C0/C1
    controls (a NUL, a bell, DEL) and bidirectional overrides dropped; tabs and newlines kept.

    >>> clean_text("a\\x00b\\x1b[31mred\\x1b[0m")
    'abred'
    """
    return _CONTROL.sub("", _ANSI.sub("", str(text)))

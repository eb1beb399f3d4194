"""Where the published validation covers each output, and which outputs of a course lie outside.

``data/applicability.toml`` (written by
:mod:`microneedling.studies.credibility.applicability` from the validation rows of
``data/literature.toml``; a test regenerates it) gives, for each output variable, the needle lengths,
devices, sites, Fitzpatrick types, numbers of sessions and intervals at which validation rows compared
the model with published data, and the topical products their courses applied (a course applying
another product, a user's own molecule among them, is outside for that output). :func:`flags` checks a course against it, one :class:`Flag` per
output that the course's conditions make relevant and whose settings lie outside (or that no
validation row tests); :func:`warnings` turns them into the one-line warnings ``simulate`` and
``plan`` attach to their results. Outside is not wrong: it means no published data at those settings
was compared with the model, so the prediction is an extrapolation. For a per-session quantity
summed or averaged over a course (redness days, uptake per session) the number of sessions and the
interval are not axes: validation tests one session.

The engine reads the shipped file only (it never imports the studies that write it).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microneedling.course.model import Course
from microneedling.engine.variables import by_name, endpoint_variables
from microneedling.io import data_path, read_toml

__all__ = [
    "AXES",
    "INDEPENDENT_AXES",
    "RELEVANT_IF",
    "Domain",
    "Flag",
    "course_settings",
    "flags",
    "load_domains",
    "warnings",
]

AXES: tuple[str, ...] = (
    "needle_length_mm",
    "devices",
    "sites",
    "fitzpatrick",
    "sessions",
    "interval_days",
    "products",
)
"""The settings the map covers, in the order flags name them."""

_AXIS_WORDS = {
    "needle_length_mm": ("needle length", "mm"),
    "devices": ("device", ""),
    "sites": ("site", ""),
    "fitzpatrick": ("Fitzpatrick type", ""),
    "sessions": ("sessions", ""),
    "interval_days": ("interval", "d"),
    "products": ("topical product", ""),
}

RELEVANT_IF: dict[str, str] = {
    "scar_depth": "acne_scar",
    "scar_grade": "acne_scar",
    "scar_grade_responder": "acne_scar",
    "scar_grade_responder_two": "acne_scar",
    "wrinkle_depth": "wrinkles",
    "pore_diameter": "pores",
    "striae_width": "striae",
    "striae_depth": "striae",
    "melanin_index": "hyperpigmentation",
    "masi_score": "hyperpigmentation:melasma",
    "mmasi_score": "hyperpigmentation:melasma",
    "absorbed_amount": "topical",
    "absorbed_intact": "topical",
    "enhancement_ratio": "topical",
}
"""Outputs that only a course with this condition type (``type``, or ``type:kind`` for a kind of
condition: MASI is a melasma's score, not a lentigo's) or a topical makes relevant: the model
computes them only then (NaN otherwise, never flagged; tested on every shipped example). Every
other end-point output is relevant to every course."""


@dataclass(frozen=True)
class Domain:
    """The settings at which validation rows tested one output (``None``: no row informs that
    axis)."""

    output: str
    rows: tuple[str, ...]
    studies: int
    needle_length_mm: tuple[float, float] | None = None
    devices: tuple[str, ...] | None = None
    sites: tuple[str, ...] | None = None
    fitzpatrick: tuple[float, float] | None = None
    sessions: tuple[float, float] | None = None
    interval_days: tuple[float, float] | None = None
    products: tuple[str, ...] | None = None
    """The topical products the validation rows' courses applied (``None``: no row applies one;
    a course's product is then not an axis of this output)."""


@dataclass(frozen=True)
class Flag:
    """One output of a course outside the validated domain, and why (one reason per axis)."""

    output: str
    reasons: tuple[str, ...]

    @property
    def message(self) -> str:
        """One line: ``outside validation: scar_depth: needle length 2.5 mm (validated 1–2 mm)``."""
        return f"outside validation: {self.output}: " + "; ".join(self.reasons)


def _pair(v: Any) -> tuple[float, float] | None:
    if v is None:
        return None
    lo, hi = v
    return float(lo), float(hi)


@functools.lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Domain]:
    raw = read_toml(path)
    out: dict[str, Domain] = {}
    for name, t in dict(raw.get("outputs", {})).items():
        out[name] = Domain(
            output=name,
            rows=tuple(t.get("rows", ())),
            studies=int(t.get("studies", 0)),
            needle_length_mm=_pair(t.get("needle_length_mm")),
            devices=tuple(t["devices"]) if "devices" in t else None,
            sites=tuple(t["sites"]) if "sites" in t else None,
            fitzpatrick=_pair(t.get("fitzpatrick")),
            sessions=_pair(t.get("sessions")),
            interval_days=_pair(t.get("interval_days")),
            products=tuple(t["products"]) if "products" in t else None,
        )
    return out


def load_domains(path: Path | None = None) -> dict[str, Domain]:
    """The shipped map (``data/applicability.toml``), or the file at ``path``; read once."""
    return _load(str(path or data_path("applicability.toml")))


def course_settings(course: Course) -> dict[str, Any]:
    """The settings of a course on the map's axes: needle lengths, device type, sites, Fitzpatrick
    type, the number of sessions of each site and the intervals between them, the topical products
    its sessions apply, and the condition types (each also as ``type:kind`` when it has a kind; plus
    ``topical`` when a session carries one) that make outputs relevant."""
    by_site: dict[str, list[float]] = {}
    for s in course.sessions:
        by_site.setdefault(s.site, []).append(float(s.day))
    intervals = [
        b - a
        for days in by_site.values()
        for a, b in zip(sorted(days), sorted(days)[1:], strict=False)
    ]
    kinds: set[str] = set()
    for site in course.sites:
        for c in site.conditions:
            kinds.add(str(c.type))
            kind = getattr(c, "kind", None)
            if isinstance(kind, str):
                kinds.add(f"{c.type}:{kind}")
    if any(s.topical is not None for s in course.sessions):
        kinds.add("topical")
    return {
        "needle_length_mm": sorted({float(s.needle_length_mm) for s in course.sessions}),
        "devices": [course.device.type],
        "sites": sorted(by_site),
        "fitzpatrick": [float(course.patient.fitzpatrick)],
        "sessions": sorted({float(len(d)) for d in by_site.values()}),
        "interval_days": sorted(set(intervals)),
        "products": sorted({s.topical.product for s in course.sessions if s.topical is not None}),
        "conditions": sorted(kinds),
    }


def _fmt(x: float, unit: str) -> str:
    return f"{x:g} {unit}".strip()


#: axes that do not apply to a per-session quantity summed or averaged over sessions (the
#: redness of one session, the uptake of one session): what validation tests is one session
_COURSE_AXES = ("sessions", "interval_days")

#: axes an output does not depend on, by construction: the same topical through intact skin
#: (``absorbed_intact``, the enhancement ratio's denominator) sees no needle, so the needling of
#: the course (length, device, sessions, interval) neither enters the map nor makes a flag
INDEPENDENT_AXES: dict[str, tuple[str, ...]] = {
    "absorbed_intact": ("needle_length_mm", "devices", "sessions", "interval_days"),
}


def _per_session(name: str) -> bool:
    v = by_name().get(name)
    return v is not None and v.kind == "session" and v.reduce in ("sum", "mean")


def _reasons(domain: Domain, settings: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    per_session = _per_session(domain.output)
    for axis in AXES:
        if per_session and axis in _COURSE_AXES:
            continue
        if axis in INDEPENDENT_AXES.get(domain.output, ()):
            continue
        words, unit = _AXIS_WORDS[axis]
        have = settings[axis]
        if not have:
            continue
        allowed = getattr(domain, axis)
        if allowed is None:
            if axis != "products":  # an output no row tests with a topical has no product axis
                out.append(f"{words}: no validation row reports it")
            continue
        if axis in ("devices", "sites", "products"):
            off = [v for v in have if v not in allowed]
            if off:
                out.append(f"{words} {', '.join(off)} (validated: {', '.join(allowed)})")
            continue
        lo, hi = allowed
        off_n = [v for v in have if not lo - 1e-9 <= v <= hi + 1e-9]
        if off_n:
            shown = ", ".join(_fmt(v, unit) for v in off_n)
            span = _fmt(lo, unit) if lo == hi else f"{lo:g}–{_fmt(hi, unit)}"
            out.append(f"{words} {shown} (validated {span})")
    return out


def flags(
    course: Course,
    outputs: Iterable[str] | None = None,
    domains: Mapping[str, Domain] | None = None,
) -> list[Flag]:
    """One flag per relevant output whose course settings lie outside its validated domain, or
    that no validation row tests. ``outputs`` defaults to the end-point outputs of
    :mod:`microneedling.engine.variables` that the course's conditions make relevant
    (:data:`RELEVANT_IF`)."""
    settings = course_settings(course)
    if domains is None:  # the shipped map: the flags of these settings are kept
        table = load_domains()
        names = None if outputs is None else tuple(outputs)
        key = (id(table), names, tuple((k, tuple(v)) for k, v in settings.items()))
        hit = _FLAGS.get(key)
        if hit is None or hit[0] is not table:
            if len(_FLAGS) >= 256:
                _FLAGS.clear()
            hit = (table, tuple(_flags(settings, names, table)))
            _FLAGS[key] = hit
        return list(hit[1])
    return _flags(settings, outputs, domains)


_FLAGS: dict[tuple[Any, ...], tuple[Mapping[str, Domain], tuple[Flag, ...]]] = {}
"""The flags of the shipped map by the map's identity, the outputs asked for and the course's
settings (the flags depend on nothing else; ~0.1 ms each time otherwise); at most 256 entries."""


def _flags(
    settings: Mapping[str, Any], outputs: Iterable[str] | None, table: Mapping[str, Domain]
) -> list[Flag]:
    kinds = set(settings["conditions"])
    if outputs is None:
        outputs = [
            v.name
            for v in endpoint_variables()
            if v.name not in RELEVANT_IF or RELEVANT_IF[v.name] in kinds
        ]
    out: list[Flag] = []
    for name in outputs:
        d = table.get(name)
        if d is None:
            out.append(Flag(name, ("no validation row tests this output",)))
            continue
        reasons = _reasons(d, settings)
        if reasons:
            out.append(Flag(name, tuple(reasons)))
    return out


def warnings(course: Course, domains: Mapping[str, Domain] | None = None) -> list[str]:
    """The course's flags as one-line warnings (see :func:`flags`)."""
    return [f.message for f in flags(course, domains=domains)]

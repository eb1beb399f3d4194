"""The applicability map: for each output, the settings at which validation rows test it.

From every validation row of ``data/literature.toml`` whose protocol
(``data/calibration/protocols.toml``) simulates it, evaluated now or awaiting its observable (rows
the model cannot compare whatever its outputs, e.g. an unmodelled co-treatment, test nothing and
are left out), this collects per output (the row's ``observable``):

* the needle lengths, device types, sites, Fitzpatrick types, numbers of sessions and intervals the
  protocols simulate, widened by the ranges and choices of their stand-ins (what the study did not
  report is covered only as far as its stand-in range goes), the comparator arm of two-arm rows
  included;
* the rows and the number of studies behind it.

:func:`build` returns the map as plain data, :func:`map_toml` as the text of the shipped
``data/applicability.toml`` (the engine reads it through :mod:`microneedling.engine.applicability`
to flag outputs of ``simulate`` and ``plan`` outside it), :func:`write` writes it atomically.
``tests/studies/credibility/test_applicability.py`` fails when the shipped file differs from a
regeneration.

Command line: ``python -m microneedling.studies.credibility.applicability [--write]`` (prints the
map; ``--write`` replaces the shipped file).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from microneedling.engine.applicability import AXES, INDEPENDENT_AXES
from microneedling.io import atomic_path, data_path, dumps_toml
from microneedling.studies.credibility.literature import (
    LiteratureRow,
    Protocol,
    load_protocol_file,
    load_protocols,
    load_roles,
    rows,
)

__all__ = ["HEADER", "build", "main", "map_toml", "write"]

HEADER = (
    "# Applicability map: for each output, the settings at which validation rows of\n"
    "# data/literature.toml test it (their protocols in data/calibration/protocols.toml, stand-in\n"
    "# ranges included). Written by microneedling.studies.credibility.applicability (python -m\n"
    "# microneedling.studies.credibility.applicability --write); do not edit by hand: a test\n"
    "# regenerates it. Read by microneedling.engine.applicability, which flags outputs of simulate\n"
    "# and plan whose course lies outside.\n"
)


def _device_types(raw: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(t.get("type", name)) for name, t in dict(raw.get("devices", {})).items()}


def _arm_settings(
    r: LiteratureRow, p: Protocol, device_types: Mapping[str, str]
) -> dict[str, set[Any]]:
    """The settings one protocol (and its comparator arm) simulates, with its stand-in ranges."""
    out: dict[str, set[Any]] = {k: set() for k in _AXES}
    arms = [p.course]
    ref = p.reference_protocol()
    if ref is not None:
        arms.append(ref.course)
    for c in arms:
        if c is None:
            continue
        days_by_site: dict[str, list[float]] = {}
        for s in c["sessions"]:
            out["needle_length_mm"].add(float(s["needle_length_mm"]))
            days_by_site.setdefault(s["site"], []).append(float(s["day"]))
            if s.get("topical"):
                out["products"].add(str(s["topical"]["product"]))
        out["devices"].add(str(c["device"]["type"]))
        out["sites"].update(days_by_site)
        out["fitzpatrick"].add(float(c["patient"]["fitzpatrick"]))
        for days in days_by_site.values():
            d = sorted(set(days))
            out["sessions"].add(float(len(d)))
            out["interval_days"].update(b - a for a, b in itertools.pairwise(d))
    for name, (lo, hi) in p.ranges.items():
        if name in out and (name != "interval_days" or out["interval_days"]):
            out[name].update((float(lo), float(hi)))
    for name, spec in p.stand_ins.items():
        if name == "device":
            out["devices"].update(device_types.get(str(x), str(x)) for x in spec)
        elif name == "site":
            out["sites"].update(str(x) for x in spec)
        elif name == "sessions":
            out["sessions"].update(float(x) for x in spec)
        elif name == "reference.needle_length_mm":
            out["needle_length_mm"].update(float(x) for x in spec)
    if p.course is None:  # a stage row: the settings the study reports, if any
        if r.conditions.needle_length_mm is not None:
            out["needle_length_mm"].add(float(r.conditions.needle_length_mm))
    return out


#: the map's axes: the ones the engine checks a course on
_AXES = AXES
_LISTS = ("devices", "sites", "products")


def build(
    lit_rows: Sequence[LiteratureRow] | None = None,
    protocols: Mapping[str, Protocol] | None = None,
) -> dict[str, Any]:
    """The map as plain data: ``{"outputs": {name: {rows, studies, axis: ...}}}``.

    Numeric axes are ``[low, high]``; devices, sites and the topical products the rows' courses
    apply sorted lists; an axis no row informs is left out.
    """
    val = list(lit_rows) if lit_rows is not None else rows("validation")
    prots = protocols if protocols is not None else load_protocols()
    raw = load_protocol_file()
    types = _device_types(raw)
    acc: dict[str, dict[str, Any]] = {}
    for r in val:
        if r.role != "validation":
            continue
        p = prots[r.key]
        if not (p.evaluable or p.awaiting):
            continue
        entry = acc.setdefault(
            r.observable, {"rows": [], "studies": set(), **{a: set() for a in _AXES}}
        )
        entry["rows"].append(r.key)
        entry["studies"].add(r.study)
        for axis, values in _arm_settings(r, p, types).items():
            entry[axis].update(values)
    outputs: dict[str, Any] = {}
    for name in sorted(acc):
        e = acc[name]
        t: dict[str, Any] = {"rows": sorted(e["rows"]), "studies": len(e["studies"])}
        for axis in _AXES:
            vals = e[axis]
            if not vals or axis in INDEPENDENT_AXES.get(name, ()):
                continue
            if axis in _LISTS:
                t[axis] = sorted(vals)
            else:
                lo, hi = min(vals), max(vals)
                as_int = axis in ("fitzpatrick", "sessions")
                t[axis] = [int(lo), int(hi)] if as_int else [float(lo), float(hi)]
        outputs[name] = t
    return {"roles_assigned": load_roles().assigned, "outputs": outputs}


def map_toml(data: Mapping[str, Any] | None = None) -> str:
    """The text of ``data/applicability.toml`` (the package TOML writer, no dates)."""
    return HEADER + dumps_toml(dict(data if data is not None else build()))


def write(path: Path | None = None) -> Path:
    """Regenerate the map and write it atomically (default: the shipped file)."""
    target = path or data_path("applicability.toml")
    text = map_toml()
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Print the map; ``--write`` replaces the shipped ``data/applicability.toml``."""
    ap = argparse.ArgumentParser(prog="python -m microneedling.studies.credibility.applicability")
    ap.add_argument("--write", action="store_true", help="replace data/applicability.toml")
    args = ap.parse_args(argv)
    if args.write:
        print(f"wrote {write()}")
    else:
        print(map_toml(), end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

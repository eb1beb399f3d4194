"""Parameter values with units and sources.

Every number the model uses lives in a TOML file under ``microneedling/data/parameters/``; one file per
model stage (``skin.toml``, ``needles.toml``, ``healing.toml`` ...). A parameter is written as::

    [mu_I]
    value = 1.2            # a float, or an inline table keyed by e.g. site: {forehead = 1.0, ...}
    units = "1/d"          # the unit the value is written in (see microneedling.units)
    low = 0.8              # plausible interval (same shape as value), optional
    high = 2.0
    source = "cooper2015"  # key (or list of keys) into data/references.toml
    kind = "literature"    # literature | derived | estimate | calibrated
    note = "why this number"

Its qualified name is ``<file stem>.<key>``, e.g. ``healing.mu_I``. Physics code never reads a file: it
asks a :class:`ParameterSet` for a value *in the unit it computes in* (``ps.value("healing.mu_I", "1/d")``),
so a file may state a value in whatever unit its source used. Lookups are recorded, so a run can list
exactly the references it depended on (``microneedling sources``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from microneedling.errors import InputError, ParameterError
from microneedling.io import data_path, read_toml
from microneedling.units import conversion_factor, parse_unit

KINDS = ("literature", "derived", "estimate", "calibrated", "user")

Value = float | dict[str, float]


@dataclass(frozen=True)
class Reference:
    """One bibliography entry."""

    key: str
    citation: str
    url: str = ""
    note: str = ""

    def format(self) -> str:
        tail = f" {self.url}" if self.url else ""
        return f"[{self.key}] {self.citation}{tail}"


@dataclass(frozen=True)
class Parameter:
    """A model number with its unit, plausible interval and provenance."""

    name: str
    value: Value
    units: str
    sources: tuple[str, ...]
    kind: str
    note: str = ""
    low: Value | None = None
    high: Value | None = None

    def as_units(self, units: str, key: str | None = None) -> float:
        """The value (or the entry ``key`` of a keyed value) converted to ``units``."""
        factor = conversion_factor(self.units, units)
        if isinstance(self.value, dict):
            if key is None:
                raise ParameterError(
                    f"{self.name} is keyed by {sorted(self.value)}; ask for one key"
                )
            if key not in self.value:
                raise ParameterError(
                    f"{self.name}: no entry {key!r}; allowed: {sorted(self.value)}"
                )
            return self.value[key] * factor
        if key is not None:
            raise ParameterError(f"{self.name} is a scalar; it has no key {key!r}")
        return self.value * factor

    def bounds_as(self, units: str, key: str | None = None) -> tuple[float, float]:
        """(low, high) in ``units``; the value itself when no interval is given."""
        factor = conversion_factor(self.units, units)

        def pick(v: Value | None) -> float:
            if v is None:
                return self.as_units(units, key)
            if isinstance(v, dict):
                assert key is not None
                return v[key] * factor
            return v * factor

        return pick(self.low), pick(self.high)


def suggest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Close matches of ``name`` among ``known``, ignoring case (``mu_l`` finds ``mu_I``)."""
    lower: dict[str, str] = {}
    for k in known:
        lower.setdefault(k.lower(), k)
    return [lower[m] for m in difflib.get_close_matches(name.lower(), list(lower), n=n)]


def check_entry(
    qualified: str, entry: Mapping[str, Any], refs: Mapping[str, Reference]
) -> Parameter:
    """Validate one TOML table and build its Parameter."""
    required = ("value", "units", "source", "kind")
    missing = [k for k in required if k not in entry]
    if missing:
        raise ParameterError(f"parameter {qualified}: missing field(s) {missing}")
    unknown = set(entry) - {"value", "units", "source", "kind", "note", "low", "high"}
    if unknown:
        raise ParameterError(f"parameter {qualified}: unknown field(s) {sorted(unknown)}")
    units = str(entry["units"])
    parse_unit(units)  # raises UnitError with the offending symbol
    kind = str(entry["kind"])
    if kind not in KINDS:
        raise ParameterError(f"parameter {qualified}: kind {kind!r}; allowed: {KINDS}")
    src = entry["source"]
    sources = (src,) if isinstance(src, str) else tuple(src)
    for s in sources:
        if s not in refs:
            close = difflib.get_close_matches(s, list(refs), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParameterError(f"parameter {qualified}: unknown source {s!r}{hint}")

    def as_value(v: Any, what: str) -> Value:
        if isinstance(v, dict):
            return {str(k): float(x) for k, x in v.items()}
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ParameterError(f"parameter {qualified}: {what} must be a number, got {v!r}")
        return float(v)

    value = as_value(entry["value"], "value")
    low = as_value(entry["low"], "low") if "low" in entry else None
    high = as_value(entry["high"], "high") if "high" in entry else None
    for lo_hi in (low, high):
        if lo_hi is not None and isinstance(lo_hi, dict) != isinstance(value, dict):
            raise ParameterError(f"parameter {qualified}: low/high must have the shape of value")
    _check_order(qualified, value, low, high)
    return Parameter(
        name=qualified,
        value=value,
        units=units,
        sources=sources,
        kind=kind,
        note=str(entry.get("note", "")),
        low=low,
        high=high,
    )


def _check_order(name: str, value: Value, low: Value | None, high: Value | None) -> None:
    keys = list(value) if isinstance(value, dict) else [None]
    for k in keys:
        v = value[k] if isinstance(value, dict) and k is not None else value
        lo = low[k] if isinstance(low, dict) and k is not None else low
        hi = high[k] if isinstance(high, dict) and k is not None else high
        assert isinstance(v, float)
        if not math.isfinite(v):
            raise ParameterError(f"parameter {name}: value {v} is not finite")
        if isinstance(lo, float) and lo > v:
            raise ParameterError(f"parameter {name}{'.' + k if k else ''}: low {lo} > value {v}")
        if isinstance(hi, float) and hi < v:
            raise ParameterError(f"parameter {name}{'.' + k if k else ''}: high {hi} < value {v}")


@dataclass(frozen=True)
class ParameterSet:
    """An immutable, hashable collection of :class:`Parameter` with their references.

    Use :func:`load_parameters` to get the shipped default set.
    """

    parameters: Mapping[str, Parameter]
    references_: Mapping[str, Reference]
    label: str = "default"
    _used: set[str] = field(default_factory=set, compare=False, repr=False)

    # ----------------------------------------------------------------- lookup
    def parameter(self, name: str) -> Parameter:
        """The :class:`Parameter` called ``name``; unknown names raise with a suggestion."""
        try:
            p = self.parameters[name]
        except KeyError:
            close = suggest(name, self.parameters)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ParameterError(f"unknown parameter {name!r}{hint}") from None
        self._used.add(name)
        return p

    def value(self, name: str, units: str, key: str | None = None) -> float:
        """Value of ``name`` (entry ``key`` if keyed) in ``units``."""
        return self.parameter(name).as_units(units, key)

    def table(self, name: str, units: str) -> dict[str, float]:
        """A keyed parameter as a dict, every entry converted to ``units``."""
        p = self.parameter(name)
        if not isinstance(p.value, dict):
            raise ParameterError(f"{name} is a scalar, not a keyed table")
        f = conversion_factor(p.units, units)
        return {k: v * f for k, v in p.value.items()}

    def names(self, group: str | None = None) -> list[str]:
        """All qualified names, optionally only those of one file (``group``)."""
        if group is None:
            return sorted(self.parameters)
        return sorted(n for n in self.parameters if n.split(".", 1)[0] == group)

    def __contains__(self, name: object) -> bool:
        return name in self.parameters

    def __len__(self) -> int:
        return len(self.parameters)

    # ------------------------------------------------------------ provenance
    @property
    def hash(self) -> str:
        """SHA-256 (first 16 hex digits) of names, values and units: identifies the numbers used."""
        canon = {n: [p.value, p.units] for n, p in sorted(self.parameters.items())}
        blob = json.dumps(canon, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def recording(self) -> ParameterSet:
        """A view sharing these values whose lookups are recorded afresh (see :attr:`used`)."""
        return replace(self, _used=set())

    def record_use(self, other: ParameterSet) -> None:
        """Count the lookups recorded by ``other`` (e.g. an ensemble draw of this set) as this
        set's own: a run's sources are those of every parameter any draw looked up."""
        self._used.update(other._used)

    @property
    def used(self) -> list[str]:
        """Names looked up through this view, sorted."""
        return sorted(self._used)

    def references(self, names: Iterable[str] | None = None) -> list[Reference]:
        """References cited by ``names`` (default: every parameter), each once, sorted by key."""
        chosen = self.parameters if names is None else {n: self.parameters[n] for n in names}
        keys = sorted({s for p in chosen.values() for s in p.sources})
        return [self.references_[k] for k in keys]

    # --------------------------------------------------------------- editing
    def with_values(self, values: Mapping[str, Value], label: str | None = None) -> ParameterSet:
        """A new set with some values replaced (given in each parameter's file units)."""
        params = dict(self.parameters)
        for name, v in values.items():
            old = self.parameters.get(name) or self.parameter(name)  # (raises if unknown)
            if isinstance(old.value, dict) != isinstance(v, dict):
                raise ParameterError(f"{name}: new value must have the shape of the old one")
            newv: Value = {k: float(x) for k, x in v.items()} if isinstance(v, dict) else float(v)
            params[name] = replace(old, value=newv, kind="user", low=None, high=None)
        return replace(self, parameters=params, label=label or f"{self.label}+edits", _used=set())

    def to_records(self) -> list[dict[str, Any]]:
        """Rows (name, value, units, low, high, kind, sources, note) for tables and NetCDF attrs."""
        rows = []
        for n, p in sorted(self.parameters.items()):
            rows.append(
                {
                    "name": n,
                    "value": p.value,
                    "units": p.units,
                    "low": p.low,
                    "high": p.high,
                    "kind": p.kind,
                    "sources": list(p.sources),
                    "note": p.note,
                }
            )
        return rows


def load_references(paths: Iterable[Path] | None = None) -> dict[str, Reference]:
    """Read the bibliography: every ``data/references/*.toml`` by default.

    A key may appear in several files only with the same citation.
    """
    if paths is None:
        paths = sorted(data_path("references").glob("*.toml"))
    refs: dict[str, Reference] = {}
    for path in paths:
        raw = _read(path)
        for key, entry in raw.items():
            if "citation" not in entry:
                raise ParameterError(f"reference {key!r} in {path}: missing 'citation'")
            ref = Reference(
                key=key,
                citation=str(entry["citation"]),
                url=str(entry.get("url", "")),
                note=str(entry.get("note", "")),
            )
            if key in refs and refs[key].citation != ref.citation:
                raise ParameterError(f"reference {key!r} defined twice with different citations")
            refs[key] = ref
    return refs


def _read(path: Path) -> dict[str, Any]:
    """A parameter or reference file; a malformed one is a :class:`ParameterError`."""
    try:
        return read_toml(path)
    except InputError as exc:
        raise ParameterError(str(exc)) from None


_DEFAULT: ParameterSet | None = None


def load_parameters(directory: Path | str | None = None) -> ParameterSet:
    """Load every ``*.toml`` parameter file of ``directory`` (default: the shipped set).

    The default set is parsed once per process and shared (it is immutable).
    """
    global _DEFAULT
    if directory is None and _DEFAULT is not None:
        return _DEFAULT.recording()
    d = Path(directory) if directory is not None else data_path("parameters")
    refs = load_references()
    if directory is not None and (d / "references").is_dir():
        refs = {**refs, **load_references(sorted((d / "references").glob("*.toml")))}
    params: dict[str, Parameter] = {}
    files = sorted(d.glob("*.toml"))
    if not files:
        raise ParameterError(f"no parameter files in {d}")
    for f in files:
        raw = _read(f)
        for key, entry in raw.items():
            if key.startswith("_"):
                continue
            if not isinstance(entry, dict):
                raise ParameterError(f"{f}: top-level key {key!r} must be a table")
            qualified = f"{f.stem}.{key}"
            params[qualified] = check_entry(qualified, entry, refs)
    ps = ParameterSet(parameters=params, references_=refs, label=str(d.name))
    if directory is None:
        _DEFAULT = replace(ps, label="default")
        return _DEFAULT.recording()
    return ps

"""Topical actives: the one reader of the molecule library (``data/molecules.toml``) and its cache.

Every property has value, units, source and kind, as parameters do; values are converted to SI
(molecular weight stays in g/mol, as the permeability correlations use it). Users add molecules
with a TOML file of the same format (``extra=``); it may only add new identifiers.

The library a course may name is the shipped one plus the user molecules *in scope*
(:func:`molecule_library`): code inside ``with using_molecules(extra):`` sees ``extra`` too (a
context variable: per thread and per asyncio task, restored on exit, nestable). The engine, the
course's validation and the absorb study look products up there; chunks sent to worker processes
carry the scope with them (:mod:`microneedling.engine.executor`). ::

    mine = user_molecules("my-molecules.toml")      # only the file's molecules
    with using_molecules(mine):
        result = simulate(Course.from_file("serum.toml"))
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from microneedling.errors import MISSING, InputError, ParameterError
from microneedling.io import data_path, dumps_toml, read_toml
from microneedling.parameters.parameter_set import load_references
from microneedling.units import conversion_factor, parse_unit

__all__ = [
    "IONISATIONS",
    "Molecule",
    "MoleculeTableError",
    "in_scope",
    "load_molecules",
    "molecule_extras",
    "molecule_library",
    "molecule_names",
    "molecules_from_tables",
    "molecules_toml",
    "named_products",
    "shipped_molecules",
    "used_extras",
    "user_molecules",
    "using_molecules",
]


# ------------------------------------------------------------------------------ molecules
_PROPERTIES: dict[str, str] = {
    "mw": "g/mol",
    "log_kow": "1",
    "d_aq": "m^2/s",
    "charge": "1",
    "radius": "m",
    "pka": "1",
    "sc_partition": "1",
    "vehicle_ph": "1",
}

_REQUIRED = ("mw", "log_kow", "d_aq", "charge")

IONISATIONS = ("neutral", "acid", "base", "zwitterion")
"""How a molecule ionises (``ionisation`` of a molecule table): ``acid`` and ``base`` need a
``pka``; a ``zwitterion`` keeps net charge 0 over the skin's pH range."""


@dataclass(frozen=True)
class Molecule:
    """One topical active, SI units (molecular weight in g/mol, as the correlations use it).

    ``radius_m`` is NaN when the file gives none (the Stokes–Einstein radius is used then);
    ``log_kow`` is NaN where it is not defined. ``ionisation`` is one of :data:`IONISATIONS`, or
    ``""`` when the file does not say (then ``charge`` decides: a permanent ion or neutral);
    ``pka`` (acids, bases), ``sc_partition`` (stratum corneum/water partition, NaN: from log Kow)
    and ``vehicle_ph`` (the pH the product is usually formulated at, NaN: skin pH) are optional.
    """

    key: str
    label: str
    mw_g_per_mol: float
    log_kow: float
    d_aq: float
    charge: float
    radius_m: float = math.nan
    zwitterion: bool = False
    ionisation: str = ""
    pka: float = math.nan
    sc_partition: float = math.nan
    vehicle_ph: float = math.nan
    sources: tuple[str, ...] = ()
    kinds: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    table: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    """The molecule's table as read (the file's format): what :func:`molecules_toml` writes."""

    @property
    def ionic(self) -> bool:
        """An ion (|net charge| ≥ 0.5) or a zwitterion at pH 5.5."""
        return abs(self.charge) >= 0.5 or self.zwitterion


class MoleculeTableError(ParameterError):
    """A malformed molecule table: the message names the file, the molecule and the field (as
    every :class:`ParameterError` of this module); ``key``, ``field`` (a path inside the molecule's
    table, e.g. ``mw.value``; ``""``: the table itself), ``value`` and ``allowed`` say the same in
    parts, for a caller that reports fields (the service's 422)."""

    def __init__(self, where: str, key: str, field: str, value: Any, allowed: str) -> None:
        at = f".{field}" if field else ""
        super().__init__(f"{where}{at}: {value!r}; allowed: {allowed}")
        self.key = key
        self.field = field
        self.value = value
        self.allowed = allowed


def _read_molecules(
    path: Path, known_refs: Iterable[str] | None, user: bool
) -> dict[str, Molecule]:
    try:
        raw = read_toml(path)
    except InputError as exc:
        raise ParameterError(str(exc)) from None
    return _parse_molecules(raw, path.name, known_refs, user)


def _parse_molecules(
    raw: Mapping[str, Any], name: str, known_refs: Iterable[str] | None, user: bool
) -> dict[str, Molecule]:
    """The molecules of a parsed file (``name`` heads every error)."""
    refs = set(known_refs) if known_refs is not None else None
    out: dict[str, Molecule] = {}
    for key, table in raw.items():
        if key.startswith("_"):
            continue
        where = f"{name}: molecule {key!r}"
        if not isinstance(table, dict):
            raise MoleculeTableError(where, key, "", table, "a table of the molecule's properties")
        fields_allowed = {*_PROPERTIES, "label", "zwitterion", "ionisation"}
        unknown = sorted(set(table) - fields_allowed)
        if unknown:
            raise MoleculeTableError(
                where, key, unknown[0], table[unknown[0]], f"a field of {sorted(fields_allowed)}"
            )
        ionisation = str(table.get("ionisation", ""))
        if ionisation and ionisation not in IONISATIONS:
            raise MoleculeTableError(
                where, key, "ionisation", ionisation, "one of " + ", ".join(IONISATIONS)
            )
        if ionisation in ("acid", "base") and "pka" not in table:
            raise MoleculeTableError(
                where, key, "pka", MISSING, f"a pka table: ionisation {ionisation!r} needs one"
            )
        missing = [p for p in _REQUIRED if p not in table]
        if missing:
            raise MoleculeTableError(
                where,
                key,
                missing[0],
                MISSING,
                "a required property: a table with value, units, source, kind",
            )
        values: dict[str, float] = {}
        kinds: dict[str, str] = {}
        sources: list[str] = []
        for prop, si in _PROPERTIES.items():
            if prop not in table:
                continue
            entry = table[prop]
            if not isinstance(entry, dict) or not {"value", "units", "source", "kind"} <= set(
                entry
            ):
                raise MoleculeTableError(
                    where, key, prop, entry, "a table with value, units, source, kind (and note)"
                )
            units = str(entry["units"])
            try:
                parse_unit(units)
                factor = conversion_factor(units, si)
            except ParameterError as exc:
                raise MoleculeTableError(
                    where, key, f"{prop}.units", units, f"units convertible to {si!r} ({exc})"
                ) from None
            val = entry["value"]
            if isinstance(val, bool) or not isinstance(val, int | float):
                raise MoleculeTableError(where, key, f"{prop}.value", val, "a number")
            x = float(val) * factor
            if prop != "log_kow" and not math.isfinite(x):
                raise MoleculeTableError(where, key, f"{prop}.value", val, "a finite number")
            if prop in ("mw", "d_aq", "radius", "sc_partition") and not x > 0.0:
                raise MoleculeTableError(where, key, f"{prop}.value", val, "a positive number")
            kind = str(entry["kind"])
            allowed_kinds = ("literature", "derived", "estimate", "calibrated", "user")
            if kind not in allowed_kinds:
                raise MoleculeTableError(
                    where, key, f"{prop}.kind", kind, "one of " + ", ".join(allowed_kinds)
                )
            src = entry["source"]
            srcs = [src] if isinstance(src, str) else [str(s) for s in src]
            if refs is not None and not user:
                bad = [s for s in srcs if s not in refs]
                if bad:
                    raise MoleculeTableError(
                        where,
                        key,
                        f"{prop}.source",
                        bad,
                        "keys of the bibliography (data/references)",
                    )
            values[prop] = x
            kinds[prop] = kind
            sources += [s for s in srcs if s not in sources]
        out[key] = Molecule(
            key=key,
            label=str(table.get("label", key)),
            mw_g_per_mol=values["mw"],
            log_kow=values["log_kow"],
            d_aq=values["d_aq"],
            charge=values["charge"],
            radius_m=values.get("radius", math.nan),
            zwitterion=bool(table.get("zwitterion", False)) or ionisation == "zwitterion",
            ionisation=ionisation,
            pka=values.get("pka", math.nan),
            sc_partition=values.get("sc_partition", math.nan),
            vehicle_ph=values.get("vehicle_ph", math.nan),
            sources=tuple(sources),
            kinds=kinds,
            table=dict(table),
        )
    return out


def load_molecules(
    path: str | Path | None = None,
    *,
    extra: str | Path | Sequence[str | Path] | None = None,
    references: Iterable[str] | None = None,
) -> dict[str, Molecule]:
    """Read molecules: ``path`` (default: the shipped ``data/molecules.toml``) plus user file(s).

    The format is documented at the top of ``data/molecules.toml``. Sources of the main file must be
    keys of the bibliography (``references``; default: every ``data/references/*.toml``); a user
    file (``extra``) may cite free text. A user file may only add new identifiers.
    """
    if references is None:
        references = load_references().keys()
    refs = list(references)
    main = Path(path) if path is not None else data_path("molecules.toml")
    out = _read_molecules(main, refs, user=False)
    extras: list[str | Path] = (
        [] if extra is None else [extra] if isinstance(extra, str | Path) else list(extra)
    )
    for e in extras:
        more = _read_molecules(Path(e), refs, user=True)
        clash = sorted(set(more) & set(out))
        if clash:
            raise ParameterError(f"{e}: molecule(s) {clash} already defined; use new identifiers")
        out.update(more)
    return out


@lru_cache(maxsize=1)
def shipped_molecules() -> dict[str, Molecule]:
    """The shipped library, read once per process (package data does not change while a process
    runs, and re-reading it cost ~45% of a planner search with topicals). Treat it as read-only.

    Only checks of the shipped library itself use it (verification, delivery validation); what a
    course names is looked up in :func:`molecule_library`."""
    return load_molecules()


def user_molecules(paths: str | Path | Sequence[str | Path]) -> dict[str, Molecule]:
    """Only the molecules of the user file(s) ``paths`` (the library's format, free-text sources;
    new identifiers only: a shipped key or one defined twice is a :class:`ParameterError` naming
    the file and the key), for :func:`using_molecules`."""
    everything = load_molecules(extra=paths)
    shipped = shipped_molecules()
    return {k: m for k, m in everything.items() if k not in shipped}


def molecules_from_tables(
    tables: Mapping[str, Mapping[str, Any]], source: str = "molecules"
) -> dict[str, Molecule]:
    """User molecules from their tables (``{key: table}``, the file's format, as a service stores
    them): validated as a user file (``source`` names it in errors), new identifiers only."""
    out = _parse_molecules(tables, source, None, user=True)
    _refuse_shipped(out, source)
    return out


def molecules_toml(molecules: Mapping[str, Molecule]) -> str:
    """User molecules as a molecule file (their tables as read): ``user_molecules`` of it gives
    them back with the same numbers."""
    return dumps_toml(
        {k: dict(m.table) for k, m in sorted(molecules.items())},
        header="Molecules of this run (microneedling's molecule file format; --molecules FILE)",
    )


def _refuse_shipped(extra: Mapping[str, Molecule], where: str) -> None:
    clash = sorted(set(extra) & set(shipped_molecules()))
    if clash:
        raise ParameterError(
            f"{where}: molecule(s) {clash} already in the shipped library; use new identifiers"
        )


@dataclass(frozen=True)
class _Scope:
    extras: Mapping[str, Molecule]  # the user molecules in scope (read-only)
    library: Mapping[str, Molecule]  # shipped + extras


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "microneedling_molecules", default=None
)
"""The user molecules in scope (``None``: none, the shipped library only)."""


def molecule_extras() -> Mapping[str, Molecule]:
    """The user molecules in scope (read-only; empty outside :func:`using_molecules`)."""
    scope = _SCOPE.get()
    return MappingProxyType({}) if scope is None else scope.extras


def molecule_library() -> Mapping[str, Molecule]:
    """Every molecule a course may name here: the shipped library plus the user molecules in scope
    (:func:`using_molecules`). Outside any scope it is the shipped library itself (the same
    objects: the numbers of shipped products do not depend on the scope). Read-only."""
    scope = _SCOPE.get()
    return shipped_molecules() if scope is None else scope.library


def molecule_names() -> tuple[str, ...]:
    """Keys of :func:`molecule_library`: the topical products a course may name here."""
    return tuple(molecule_library())


@contextlib.contextmanager
def using_molecules(extra: Mapping[str, Molecule] | None) -> Iterator[Mapping[str, Molecule]]:
    """Add the user molecules ``extra`` (``{key: Molecule}``) to the library for the code inside
    the block; yields the library in scope.

    Nestable: an inner block adds to the outer one's molecules (an inner definition of the same
    key is the one used inside it) and the outer scope is back on exit. A shipped key is refused
    (:class:`ParameterError` naming it), as is a value that is not a :class:`Molecule` of that key.
    ``None`` or an empty mapping changes nothing.
    """
    if not extra:
        yield molecule_library()
        return
    for key, m in extra.items():
        if not isinstance(m, Molecule) or m.key != key:
            raise ParameterError(
                f"using_molecules: {key!r} must map to a Molecule with key {key!r}, "
                f"got {type(m).__name__}"
                + (f" with key {m.key!r}" if isinstance(m, Molecule) else "")
            )
    _refuse_shipped(extra, "using_molecules")
    outer = molecule_extras()
    extras = MappingProxyType({**outer, **extra})
    scope = _Scope(extras, MappingProxyType({**shipped_molecules(), **extras}))
    token = _SCOPE.set(scope)
    try:
        yield scope.library
    finally:
        _SCOPE.reset(token)


def in_scope(names: Iterable[str]) -> dict[str, Molecule]:
    """``{name: Molecule}`` of the products ``names`` from the library in scope; a name not there
    is an :class:`InputError` (a course validated inside :func:`using_molecules` and run outside
    it names a molecule that is gone)."""
    lib = molecule_library()
    out: dict[str, Molecule] = {}
    for n in names:
        m = lib.get(n)
        if m is None:
            raise InputError(
                "topical.product",
                n,
                "a molecule of the library in scope (the shipped library, or a user molecule "
                "inside using_molecules)",
            )
        out[n] = m
    return out


def named_products(data: Any) -> set[str]:
    """Every ``topical.product`` (a string) anywhere in ``data``, plain mappings and lists as read
    from a file or a request: the products a course, a trial arm's template or a whole trial names
    (read before validation, so the data may be malformed)."""
    found: set[str] = set()
    stack = [data]
    while stack:
        x = stack.pop()
        if isinstance(x, Mapping):
            top = x.get("topical")
            if isinstance(top, Mapping) and isinstance(top.get("product"), str):
                found.add(top["product"])
            stack.extend(x.values())
        elif isinstance(x, list | tuple):
            stack.extend(x)
    return found


def used_extras(products: Iterable[str]) -> dict[str, Molecule]:
    """The user molecules in scope among ``products`` (shipped products left out)."""
    extras = molecule_extras()
    return {p: extras[p] for p in sorted(set(products)) if p in extras}

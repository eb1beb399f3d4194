"""A small, fast unit converter for parameter files.

Parameter files state the unit each value is written in; the physics asks for the unit it computes in
(``ParameterSet.value(name, "1/d")``). Importing pint costs ~0.4 s, too much for a CLI that should start in
well under a second, so conversion uses this table-driven parser instead. The test suite checks it against
pint for every unit string that occurs in the package's parameter files.

Grammar: products and quotients of unit symbols with optional integer powers, e.g. ``"um"``, ``"1/d"``,
``"m^2/s"``, ``"ug/cm^2"``, ``"cm/h"``, ``"g/mol"``, ``"1"`` (dimensionless), ``"%"``.
"""

from __future__ import annotations

import re
from functools import lru_cache

from microneedling.errors import UnitError

# base dimensions: length, mass, time, amount
_Dim = tuple[int, int, int, int]

_UNITS: dict[str, tuple[float, _Dim]] = {
    # dimensionless
    "1": (1.0, (0, 0, 0, 0)),
    "%": (0.01, (0, 0, 0, 0)),
    # length
    "m": (1.0, (1, 0, 0, 0)),
    "cm": (1e-2, (1, 0, 0, 0)),
    "mm": (1e-3, (1, 0, 0, 0)),
    "um": (1e-6, (1, 0, 0, 0)),
    "µm": (1e-6, (1, 0, 0, 0)),
    "nm": (1e-9, (1, 0, 0, 0)),
    "angstrom": (1e-10, (1, 0, 0, 0)),
    # volume
    "L": (1e-3, (3, 0, 0, 0)),
    "mL": (1e-6, (3, 0, 0, 0)),
    "uL": (1e-9, (3, 0, 0, 0)),
    # mass
    "kg": (1.0, (0, 1, 0, 0)),
    "g": (1e-3, (0, 1, 0, 0)),
    "mg": (1e-6, (0, 1, 0, 0)),
    "ug": (1e-9, (0, 1, 0, 0)),
    "µg": (1e-9, (0, 1, 0, 0)),
    "ng": (1e-12, (0, 1, 0, 0)),
    "Da": (1e-3 / 6.02214076e23, (0, 1, 0, 0)),
    # amount
    "mol": (1.0, (0, 0, 0, 1)),
    "mmol": (1e-3, (0, 0, 0, 1)),
    # time
    "s": (1.0, (0, 0, 1, 0)),
    "min": (60.0, (0, 0, 1, 0)),
    "h": (3600.0, (0, 0, 1, 0)),
    "d": (86400.0, (0, 0, 1, 0)),
    "day": (86400.0, (0, 0, 1, 0)),
    "week": (7 * 86400.0, (0, 0, 1, 0)),
    "yr": (365.25 * 86400.0, (0, 0, 1, 0)),
    "year": (365.25 * 86400.0, (0, 0, 1, 0)),
    # frequency
    "Hz": (1.0, (0, 0, -1, 0)),
}

_TOKEN = re.compile(r"^\s*([A-Za-zµ%1]+)\s*(?:\^\s*(-?\d+))?\s*$")


@lru_cache(maxsize=512)
def parse_unit(unit: str) -> tuple[float, _Dim]:
    """Return (factor to SI, dimension exponents) of a unit string.

    Raises
    ------
    UnitError
        If a symbol is unknown or the string does not follow the grammar.
    """
    text = unit.strip().replace("**", "^").replace("·", "*").replace(" ", "*")
    if not text:
        raise UnitError(f"empty unit string; allowed: symbols {sorted(_UNITS)}")
    factor = 1.0
    dims = [0, 0, 0, 0]
    # split on / : first part numerator (with * products), every later part is a denominator
    parts = text.split("/")
    for i, part in enumerate(parts):
        sign = 1 if i == 0 else -1
        for token in part.split("*"):
            if token == "":
                continue
            m = _TOKEN.match(token)
            if m is None or m.group(1) not in _UNITS:
                raise UnitError(
                    f"unit {unit!r}: cannot read {token!r}; allowed symbols: {sorted(_UNITS)}"
                )
            f, d = _UNITS[m.group(1)]
            power = sign * int(m.group(2) or 1)
            factor *= f**power
            for k in range(4):
                dims[k] += d[k] * power
    return factor, (dims[0], dims[1], dims[2], dims[3])


@lru_cache(maxsize=1024)
def conversion_factor(from_unit: str, to_unit: str) -> float:
    """Multiplier that turns a value in ``from_unit`` into ``to_unit``.

    >>> round(conversion_factor("um", "m"), 12)
    1e-06
    >>> conversion_factor("1/d", "1/h")
    0.041666666666666664
    """
    f1, d1 = parse_unit(from_unit)
    f2, d2 = parse_unit(to_unit)
    if d1 != d2:
        raise UnitError(
            f"cannot convert {from_unit!r} to {to_unit!r}: dimensions differ "
            f"(L,M,T,N exponents {d1} vs {d2})"
        )
    return f1 / f2


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert a scalar between units."""
    return value * conversion_factor(from_unit, to_unit)

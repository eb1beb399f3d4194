"""The fast unit converter agrees with pint for every unit string the parameter files use."""

from __future__ import annotations

import pytest

from microneedling.errors import UnitError
from microneedling.parameters.parameter_set import load_parameters
from microneedling.units import conversion_factor, parse_unit

pint = pytest.importorskip("pint")
UREG = pint.UnitRegistry()
PINT_SPELLING = {
    "1": "dimensionless",
    "%": "percent",
    "d": "day",
    "yr": "julian_year",
    "year": "julian_year",
}


def _pint(unit: str) -> str:
    out = unit
    for token, spelled in (("um", "micrometer"), ("ug", "microgram"), ("µm", "micrometer")):
        out = out.replace(token, spelled)
    parts = []
    for factor in out.replace("^", "**").split("/"):
        parts.append("*".join(PINT_SPELLING.get(f, f) for f in factor.split("*")))
    return "/".join(f"({p})" for p in parts)


def all_units() -> list[str]:
    ps = load_parameters()
    return sorted({ps.parameters[n].units for n in ps.names()})


@pytest.mark.parametrize("unit", all_units())
def test_every_parameter_unit_matches_pint(unit: str) -> None:
    factor, _ = parse_unit(unit)
    expected = UREG.Quantity(1.0, _pint(unit)).to_base_units()
    # pint's base units are SI with kg; ours too
    assert factor == pytest.approx(expected.magnitude, rel=1e-12)


@pytest.mark.parametrize(
    ("a", "b", "f"),
    [
        ("um", "m", 1e-6),
        ("1/d", "1/s", 1 / 86400),
        ("cm/h", "m/s", 0.01 / 3600),
        ("m^2/s", "cm^2/s", 1e4),
        ("ug/cm^2", "kg/m^2", 1e-9 / 1e-4),
        ("%", "1", 0.01),
        ("mg/mL", "kg/m^3", 1.0),
    ],
)
def test_known_factors(a: str, b: str, f: float) -> None:
    assert conversion_factor(a, b) == pytest.approx(f, rel=1e-14)


def test_dimension_mismatch_is_refused() -> None:
    with pytest.raises(UnitError, match="dimensions differ"):
        conversion_factor("um", "s")


def test_unknown_symbol_is_named() -> None:
    with pytest.raises(UnitError, match="furlong"):
        parse_unit("furlong/s")

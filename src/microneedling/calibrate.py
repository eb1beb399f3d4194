"""Calibration of the engine's amplitude parameters on named microneedling studies.

Each target simulates the study's own protocol with :func:`microneedling.simulate` and solves for one
parameter (1-D root finding, Brent's method) so that the model reproduces the study's reported mean.
The shipped values of ``kind = "calibrated"`` parameters are the output of::

    python -m microneedling.calibrate            # prints the fitted values
    python -m microneedling.calibrate --write    # and writes them into the parameter files

``tests/test_calibrate.py`` re-runs it and fails if the shipped values no longer reproduce the
targets. Only the rows below are fitted; every other published number is kept for validation.
(Issue 3 replaces this with a joint fit with uncertainty.)
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .course import Course
from .parameters import ParameterSet, _data_dir, load_parameters

MF8 = {
    "type": "roller",
    "needle_count": 192,
    "needle_diameter_mm": 0.25,
    "tip_radius_um": 4.0,
    "tip": "cone",
    "max_needle_length_mm": 1.5,
    "drum_diameter_mm": 20.0,
    "drum_width_mm": 20.0,
}


def _roller_course(days: list[float], age: int, fitzpatrick: int, horizon: float) -> Course:
    return Course.from_dict(
        {
            "name": "calibration protocol",
            "horizon_days": horizon,
            "patient": {"age_years": age, "sex": "female", "fitzpatrick": fitzpatrick},
            "sites": [{"name": "cheek"}],
            "device": MF8,
            "sessions": [
                {"day": d, "site": "cheek", "needle_length_mm": 1.5, "passes": 15} for d in days
            ],
        },
        source="calibration",
    )


def lotfi_course() -> Course:
    """Lotfi 2013: 1.5 mm Dermaroller monthly x5 (FST III-IV, n=30); biopsy 8 weeks after the last
    session. Passes are not reported; 15 (about 230-250 punctures/cm²) is the usual clinical count.
    Age ~25 years (young adults with acne scars; the mean age is not in our notes)."""
    return _roller_course([0.0, 30.0, 60.0, 90.0, 120.0], 25, 4, 120.0 + 56.0)


def kenkel_course() -> Course:
    """Kenkel 2021: 4 monthly sessions of the face (age 44-65, FST I-IV); HFUS 3 months after the last.
    Device settings are not in our notes: a 1.5 mm roller on the cheek stands in for them."""
    return _roller_course([0.0, 30.0, 60.0, 90.0], 55, 2, 90.0 + 90.0)


def single_session_course() -> Course:
    """One 1.5 mm roller session (15 passes) on the cheek, for the downtime target."""
    return _roller_course([0.0], 30, 3, 28.0)


@dataclass(frozen=True)
class Target:
    """One calibration row: a study's mean, the protocol, what to read and which parameter to solve."""

    key: str
    study: str
    observed: float
    units: str
    course: Callable[[], Course]
    read: Callable[[Any], float]
    parameters: tuple[str, ...]  # solved jointly by one common scale factor
    bracket: tuple[float, float] = (0.05, 20.0)


def _at(result: Any, variable: str, day: float, layer: str | None = None) -> float:
    da = result.dataset[variable]
    if layer is not None:
        da = da.sel(layer=layer)
    return float(da.sel(time=day, method="nearest").isel(patient=0, site=0))


TARGETS: tuple[Target, ...] = (
    Target(
        "lotfi2013_collagen",
        "Lotfi 2013: papillary collagen +53.2% 8 weeks after 5 monthly 1.5 mm sessions",
        53.2,
        "%",
        lotfi_course,
        lambda r: _at(r, "collagen_change", 176.0, "papillary_dermis"),
        ("healing.k_1", "healing.k_3"),
    ),
    Target(
        "lotfi2013_epidermis",
        "Lotfi 2013: epidermal thickness +50% 8 weeks after 5 monthly 1.5 mm sessions",
        50.0,
        "%",
        lotfi_course,
        lambda r: _at(r, "epidermal_thickness_change", 176.0),
        ("healing.k_H",),
    ),
    Target(
        "kenkel2021_density",
        "Kenkel 2021: dermal density +101.86% 3 months after 4 monthly sessions",
        101.86,
        "%",
        kenkel_course,
        lambda r: _at(r, "dermal_density_change", 180.0),
        ("observe.density_per_collagen_I",),
    ),
    Target(
        "downtime_1p5mm",
        "Redness after a 1.5 mm roller session: 2 days (Vietnam 1-2 d; acne.org 2-3 d)",
        2.0,
        "d",
        single_session_course,
        lambda r: float(r.dataset["erythema_days"].isel(patient=0, site=0, session=0)),
        ("observe.erythema_threshold",),
    ),
)


def _scaled(ps: ParameterSet, names: tuple[str, ...], factor: float) -> ParameterSet:
    values: dict[str, Any] = {}
    for n in names:
        v = ps.parameters[n].value
        assert isinstance(v, float)
        values[n] = v * factor
    return ps.with_values(values)


def model_value(target: Target, ps: ParameterSet) -> float:
    """The model's prediction for ``target`` with parameter set ``ps`` (nominal, no ensemble)."""
    from .simulation import simulate

    return target.read(simulate(target.course(), ps, draws=0))


def fit(ps: ParameterSet | None = None) -> dict[str, float]:
    """Solve every target in order (later targets see earlier fits); return {name: value}."""
    from scipy.optimize import brentq

    ps = ps or load_parameters()
    fitted: dict[str, float] = {}
    for tg in TARGETS:

        def resid(logf: float, tg: Target = tg, base: ParameterSet = ps) -> float:
            return model_value(tg, _scaled(base, tg.parameters, math.exp(logf))) - tg.observed

        lo, hi = (math.log(b) for b in tg.bracket)
        logf = brentq(resid, lo, hi, xtol=1e-10, rtol=1e-10)
        ps = _scaled(ps, tg.parameters, math.exp(logf))
        for n in tg.parameters:
            v = ps.parameters[n].value
            assert isinstance(v, float)
            fitted[n] = float(f"{v:.6g}")
        ps = ps.with_values({n: fitted[n] for n in tg.parameters})
    return fitted


def write_values(values: dict[str, float], directory: Path | None = None) -> None:
    """Rewrite ``value``/``low``/``high`` of the given parameters in their TOML files (low/high at
    0.5x/2x the fit: the calibration's uncertainty is not estimated yet)."""
    d = directory or _data_dir() / "parameters"
    for name, v in values.items():
        group, key = name.split(".", 1)
        path = d / f"{group}.toml"
        text = path.read_text()
        m = re.search(rf"^\[{re.escape(key)}\]\n(.*?)(?=^\[|\Z)", text, flags=re.S | re.M)
        if m is None:
            raise KeyError(f"{name} not found in {path}")
        block = m.group(1)
        for field, val in (("value", v), ("low", v * 0.5), ("high", v * 2.0)):
            block = re.sub(rf"^{field} = .*$", f"{field} = {val:.6g}", block, flags=re.M)
        path.write_text(text[: m.start(1)] + block + text[m.end(1) :])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the fitted values")
    args = parser.parse_args(argv)
    values = fit()
    ps = load_parameters().with_values(values)
    for tg in TARGETS:
        print(
            f"{tg.key:22s} observed {tg.observed:8.3f} {tg.units:2s} model {model_value(tg, ps):8.3f}"
        )
    for n, v in values.items():
        print(f"  {n} = {v:.6g}")
    if args.write:
        write_values(values)
        print("written")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

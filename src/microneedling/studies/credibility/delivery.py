"""Validation of the engine's transport against published microneedle-enhanced delivery.

Each row of ``data/delivery_validation.toml`` (format documented at its top) is one published data
point: a molecule, a skin model, a microneedle pretreatment, a dose and a time, the observed
enhancement ratio or amount, its source and a tolerance factor with its reason. ``predict`` poses
every row to the engine's homogenised transport (``physics.transport.absorb``, all rows in one
batched call, with the shipped parameters: channel depth = ``needles.insertion_efficiency`` × needle
length capped at the sample thickness, channel surface radius = ``needles.channel_radius_ratio`` ×
needle radius) and returns predicted, observed, predicted/observed and pass/fail.

``microneedling validate --delivery`` prints the markdown table of ``docs/transport.md``
(:func:`microneedling.reports.credibility.delivery_table`).

API::

    load_rows(path=None) -> list[Row]
    predict(rows=None, parameters=None) -> list[Prediction]
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.errors import InputError
from microneedling.parameters.molecules import shipped_molecules
from microneedling.parameters.parameter_set import load_parameters, load_references
from microneedling.physics import transport as tr

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.parameters.parameter_set import ParameterSet

__all__ = ["QUANTITIES", "Prediction", "Row", "load_rows", "predict"]

QUANTITIES = ("enhancement_ratio", "amount")
"""Observable kinds: enhancement ratio [1]; amount delivered with microneedles [µg/cm²]."""
_UNITS = {"enhancement_ratio": "1", "amount": "ug/cm2"}
_EVIDENCE = ("SEEN", "SEEN-secondary", "RECALLED")
_NUMBERS = (
    "observed",
    "tolerance_factor",
    "needle_length_um",
    "needle_diameter_um",
    "density_per_cm2",
    "concentration_mg_per_ml",
    "film_thickness_um",
    "time_h",
    "sc_um",
    "viable_epidermis_um",
    "dermis_um",
)
_TEXTS = ("source", "evidence", "quantity", "units", "tolerance_reason", "molecule", "skin_model")
_KG_M2_TO_UG_CM2 = 1.0e5  # 1 kg/m² = 1e9 µg / 1e4 cm²


@dataclass(frozen=True)
class Row:
    """One published data point (units in the field names; see the data file's header)."""

    key: str
    source: str
    evidence: str
    quantity: str
    observed: float
    units: str
    tolerance_factor: float
    tolerance_reason: str
    molecule: str
    skin_model: str
    needle_length_um: float
    needle_diameter_um: float
    density_per_cm2: float
    occluded: bool
    concentration_mg_per_ml: float
    film_thickness_um: float
    time_h: float
    sc_um: float
    viable_epidermis_um: float
    dermis_um: float
    assumed: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Prediction:
    """A row with the engine's prediction; ``ratio`` = predicted/observed."""

    row: Row
    predicted: float
    channel_depth_um: float
    channel_radius_um: float

    @property
    def ratio(self) -> float:
        return self.predicted / self.row.observed

    @property
    def passed(self) -> bool:
        f = self.row.tolerance_factor
        return bool(1.0 / f <= self.ratio <= f)


def _data_path() -> Path:
    return Path(str(resources.files("microneedling") / "data" / "delivery_validation.toml"))


def _row(key: str, table: dict[str, Any], where: str) -> Row:
    def field(name: str) -> Any:
        if name not in table:
            raise InputError(f"{where}.{name}", None, "a value (the field is required)")
        return table[name]

    vals: dict[str, Any] = {}
    for name in _TEXTS:
        v = field(name)
        if not isinstance(v, str) or not v.strip():
            raise InputError(f"{where}.{name}", v, "a non-empty string")
        vals[name] = v
    for name in _NUMBERS:
        v = field(name)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InputError(f"{where}.{name}", v, "a finite number")
        if v < 0.0 or (v == 0.0 and name not in ("dermis_um",)):
            raise InputError(f"{where}.{name}", v, "a positive number")
        vals[name] = float(v)
    if vals["quantity"] not in QUANTITIES:
        raise InputError(f"{where}.quantity", vals["quantity"], f"one of {QUANTITIES}")
    if vals["units"] != _UNITS[vals["quantity"]]:
        raise InputError(
            f"{where}.units", vals["units"], f"{_UNITS[vals['quantity']]!r} for {vals['quantity']}"
        )
    if vals["evidence"] not in _EVIDENCE:
        raise InputError(f"{where}.evidence", vals["evidence"], f"one of {_EVIDENCE}")
    if not vals["tolerance_factor"] > 1.0:
        raise InputError(f"{where}.tolerance_factor", vals["tolerance_factor"], "a number > 1")
    occ = field("occluded")
    if not isinstance(occ, bool):
        raise InputError(f"{where}.occluded", occ, "true or false")
    assumed = table.get("assumed", [])
    if not isinstance(assumed, list) or any(a not in (*_NUMBERS, "occluded") for a in assumed):
        raise InputError(f"{where}.assumed", assumed, f"a list of condition fields {_NUMBERS}")
    unknown = set(table) - {*_TEXTS, *_NUMBERS, "occluded", "assumed", "note"}
    if unknown:
        raise InputError(f"{where}", sorted(unknown), "only the fields of the file's header")
    return Row(
        key=key, occluded=occ, assumed=tuple(assumed), note=str(table.get("note", "")), **vals
    )


def load_rows(path: str | Path | None = None) -> list[Row]:
    """Read the validation rows (default: the shipped ``data/delivery_validation.toml``).

    Raises ``InputError`` naming the row and field, the value and what is allowed.
    """
    p = _data_path() if path is None else Path(path)
    try:
        with open(p, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(p), "not valid TOML", f"a TOML file ({exc})") from None
    rows = []
    for key, tab in raw.items():
        if not isinstance(tab, dict):
            raise InputError(f"{p.name}: {key}", tab, "a table (one per data point)")
        rows.append(_row(key, tab, f"{p.name}: {key}"))
    return rows


def predict(
    rows: list[Row] | None = None, parameters: ParameterSet | None = None
) -> list[Prediction]:
    """Predict every row with ``transport.absorb`` (one batched call).

    Unknown molecules and unknown reference keys are refused with an ``InputError``.
    """

    rows = load_rows() if rows is None else rows
    if not rows:
        return []
    ps = load_parameters() if parameters is None else parameters
    mols = shipped_molecules()
    refs = load_references()
    for r in rows:
        if r.molecule not in mols:
            raise InputError(f"{r.key}.molecule", r.molecule, f"one of {sorted(mols)}")
        if r.source not in refs:
            raise InputError(f"{r.key}.source", r.source, "a key of data/references/*.toml")
    um = 1e-6

    def col(name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in rows], dtype=float)

    layers = np.stack(
        [col("sc_um"), col("viable_epidermis_um"), col("dermis_um") * 0.2, col("dermis_um") * 0.8],
        axis=1,
    )
    layers *= um
    eta = ps.value("needles.insertion_efficiency", "1")
    ratio = ps.value("needles.channel_radius_ratio", "1")
    depth = np.minimum(eta * col("needle_length_um") * um, layers.sum(axis=1))
    radius = ratio * col("needle_diameter_um") * um / 2.0
    ab = tr.absorb(
        tr.Solute.from_molecules([mols[r.molecule] for r in rows]),
        col("concentration_mg_per_ml"),  # mg/mL = kg/m³
        col("film_thickness_um") * um,
        col("time_h") * 3600.0,
        col("density_per_cm2") * 1e4,
        radius,
        depth,
        layers,
        np.array([r.occluded for r in rows]),
        tr.TransportParameters.from_parameters(ps),
    )
    out = []
    for i, r in enumerate(rows):
        if r.quantity == "enhancement_ratio":
            total, intact = float(ab.total[i]), float(ab.intact[i])
            value = total / intact if intact > 0.0 else math.inf
        else:
            value = float(ab.total[i]) * _KG_M2_TO_UG_CM2
        out.append(Prediction(r, value, float(depth[i]) / um, float(radius[i]) / um))
    return out

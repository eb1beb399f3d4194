"""Validation of the engine's transport against published microneedle-enhanced delivery.

Each row of ``data/delivery_validation.toml`` (format documented at its top) is one published data
point: a molecule, a skin model, a microneedle pretreatment, a dose and a time, the observed
enhancement ratio or amount, its source and a tolerance factor with its reason. ``predict`` poses
every row to the engine's homogenised transport (``physics.transport.absorb`` with its reservoir
model, all rows in one batched call, with the shipped parameters: channel depth from the insertion
model ``needles.insertion_depth`` for the row's device and species, capped at the sample thickness
(or the full needle length for a membrane on a rigid support, ``insertion = "full"``), channel
surface radius from ``needles.channel_surface_radius``; a diffusion cell runs ``in_vitro``, without
blood clearance) and returns predicted, observed, predicted/observed and pass/fail.

``microneedling validate --delivery`` prints the markdown table of ``docs/transport.md``
(:func:`microneedling.reports.credibility.delivery_table`).

API::

    load_rows(path=None) -> list[Row]
    predict(rows=None, parameters=None) -> list[Prediction]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, Field, model_validator

from microneedling.errors import InputError, InputFileError, InputFileFieldError
from microneedling.io import data_path
from microneedling.parameters.molecules import shipped_molecules
from microneedling.parameters.parameter_set import load_parameters, load_references
from microneedling.physics import needles as nd
from microneedling.physics import transport as tr
from microneedling.schema import Allowed, Flag, InputModel, Number, Text, Unit
from microneedling.vocabulary import SiteName

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.parameters.parameter_set import ParameterSet

__all__ = [
    "QUANTITIES",
    "DeliveryFile",
    "DeliveryFileError",
    "Prediction",
    "Row",
    "RowTable",
    "load_rows",
    "predict",
]

QUANTITIES = ("enhancement_ratio", "enhancement_ratio_skin", "amount")
"""Observable kinds: enhancement ratio of the amount delivered into the viable skin (and the
receptor) [1]; of the amount in the skin (stratum corneum + viable tissue: what imaging of the skin
sees) [1]; amount delivered with microneedles [µg/cm²]."""
_UNITS = {"enhancement_ratio": "1", "enhancement_ratio_skin": "1", "amount": "ug/cm2"}
_KG_M2_TO_UG_CM2 = 1.0e5  # 1 kg/m² = 1e9 µg / 1e4 cm²


class DeliveryFileError(InputFileFieldError):
    """``delivery_validation.toml`` failed validation; an :class:`~microneedling.errors.InputError`
    naming its first problem (``henry1998_calcein.quantity``, ...)."""


class _Model(InputModel):
    """Base of the delivery-validation file's models: errors are :class:`DeliveryFileError`."""

    file_kind: ClassVar[str] = "delivery-validation file"
    error_class: ClassVar[type[InputFileError]] = DeliveryFileError


def _non_empty(v: str) -> str:
    if not v.strip():
        raise InputError("", v, "non-empty text")
    return v


NonEmpty = Annotated[Text, AfterValidator(_non_empty), Allowed("non-empty text")]
Positive = Annotated[Number, Field(gt=0)]
Assumable = Literal[
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
    "occluded",
    "device",
    "needle_count",
    "species",
    "insertion",
    "in_vitro",
    "ph",
    "site",
]
"""Fields a row may declare as assumed (conditions the source does not give)."""


class RowTable(_Model):
    """One data point of ``delivery_validation.toml`` as the file spells it (see its header)."""

    source: NonEmpty
    evidence: Literal["SEEN", "SEEN-secondary", "RECALLED"]
    quantity: Literal["enhancement_ratio", "enhancement_ratio_skin", "amount"]
    observed: Positive
    units: NonEmpty
    tolerance_factor: Annotated[Number, Field(gt=1)]
    tolerance_reason: NonEmpty
    molecule: NonEmpty
    skin_model: NonEmpty
    needle_length_um: Annotated[Positive, Unit("µm")]
    needle_diameter_um: Annotated[Positive, Unit("µm (at the base)")]
    density_per_cm2: Annotated[Positive, Unit("punctures per cm²")]
    occluded: Flag
    concentration_mg_per_ml: Annotated[Positive, Unit("mg/mL")]
    film_thickness_um: Annotated[Positive, Unit("µm")]
    time_h: Annotated[Positive, Unit("h")]
    sc_um: Annotated[Positive, Unit("µm")]
    viable_epidermis_um: Annotated[Positive, Unit("µm")]
    dermis_um: Annotated[Number, Field(ge=0), Unit("µm")]
    device: Literal["roller", "stamp", "pen"] = "roller"
    needle_count: (
        Annotated[Number, Field(ge=1), Unit("needles on the drum, plate or cartridge")] | None
    ) = None
    species: Literal["human", "rat"] = "human"
    insertion: Literal["model", "full"] = "model"
    in_vitro: Flag = False
    ph: Annotated[Number, Field(gt=0, lt=14)] | None = None
    site: SiteName | None = None
    assumed: tuple[Assumable, ...] = ()
    note: Text = ""

    @model_validator(mode="after")
    def _units_of_the_quantity(self) -> RowTable:
        expected = _UNITS[self.quantity]
        if self.units != expected:
            raise InputError("units", self.units, f"{expected!r} for {self.quantity}")
        return self


class DeliveryFile(_Model):
    """``delivery_validation.toml``: one table per data point, keyed by its name."""

    rows: dict[str, Annotated[RowTable, Allowed("a table (one per data point)")]] = Field(
        default_factory=dict
    )
    flattened_fields: ClassVar[frozenset[str]] = frozenset({"rows"})

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        """The data points sit at the top of the file."""
        return {"rows": data} if isinstance(data, Mapping) else data


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
    device: str = "roller"
    needle_count: float | None = None
    species: str = "human"
    insertion: str = "model"
    in_vitro: bool = False
    ph: float | None = None
    site: str | None = None
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
    return data_path("delivery_validation.toml")


def load_rows(path: str | Path | None = None) -> list[Row]:
    """Read the validation rows (default: the shipped ``data/delivery_validation.toml``).

    Raises :class:`DeliveryFileError` (an ``InputError``) naming the row and field, the value and
    what is allowed.
    """
    p = _data_path() if path is None else Path(path)
    rows = DeliveryFile.from_toml(p).rows
    return [Row(key=key, **t.model_dump()) for key, t in rows.items()]


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
    npar = nd.NeedleParameters.from_parameters(ps)
    tp = tr.TransportParameters.from_parameters(ps)
    length = col("needle_length_um") * um
    total = layers.sum(axis=1)
    depth = np.empty(len(rows))
    for i, r in enumerate(rows):
        if r.insertion == "full":  # a membrane on a rigid support: no dimple, full length
            depth[i] = min(length[i], total[i])
            continue
        # the pen's stroke frequency: the reference pen (needles.pen_stroke_frequency)
        freq = ps.value("needles.pen_stroke_frequency", "Hz") if r.device == "pen" else np.nan
        default_count = {
            "roller": ps.value("needles.mf8_needles", "1"),
            "pen": ps.value("needles.pen_needles", "1"),
        }
        if r.needle_count is None and r.device not in default_count:
            raise InputError(
                f"{r.key}.needle_count", None, "the needle count of a stamp (no reference stamp)"
            )
        count = default_count[r.device] if r.needle_count is None else r.needle_count
        depth[i] = float(
            nd.insertion_depth(
                np.array([nd.device_code(r.device)]),
                np.array([length[i]]),
                total[i],
                tip_radius=npar.tip_radius_ref,
                stroke_frequency=freq,
                needles=count,
                params=npar,
                species=r.species,
            )[0]
        )
    radius = np.asarray(
        nd.channel_surface_radius(
            col("needle_diameter_um") * um, npar.channel_radius_ratio, depth, npar.cone_length
        )
    )
    site_factor = ps.table("transport.follicular_site_factor", "1")
    vehicle = tr.Vehicle.default(
        len(rows),
        tp,
        ph=np.array([np.nan if r.ph is None else r.ph for r in rows]),
        follicle_factor=np.array([1.0 if r.site is None else site_factor[r.site] for r in rows]),
        in_vitro=np.array([r.in_vitro for r in rows]),
    )
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
        tp,
        vehicle=vehicle,
    )
    assert ab.in_skin is not None and ab.intact_in_skin is not None
    out = []
    for i, r in enumerate(rows):
        if r.quantity == "enhancement_ratio":
            total, intact = float(ab.total[i]), float(ab.intact[i])
            value = total / intact if intact > 0.0 else math.inf
        elif r.quantity == "enhancement_ratio_skin":
            skin, skin0 = float(ab.in_skin[i]), float(ab.intact_in_skin[i])
            value = skin / skin0 if skin0 > 0.0 else math.inf
        else:
            value = float(ab.total[i]) * _KG_M2_TO_UG_CM2
        out.append(Prediction(r, value, float(depth[i]) / um, float(radius[i]) / um))
    return out

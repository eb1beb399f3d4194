"""Virtual populations: patients sampled from declared distributions, reproducibly, in blocks.

A population is a TOML file (presets in ``data/populations/``)::

    name = "Adults with atrophic acne scars"
    [age]                                   # years; rounded to whole years in the course
    distribution = "normal"
    mean = 27.0
    sd = 6.0
    min = 18                                # truncation (plausibility): out-of-range draws rejected
    max = 45
    source = ["estimate"]
    note = "why these numbers"

    [sex]
    distribution = "categorical"
    weights = {female = 0.6, male = 0.4}

    [fitzpatrick]
    distribution = "categorical"
    weights = {I = 0.05, II = 0.15, III = 0.3, IV = 0.3, V = 0.15, VI = 0.05}

    [[conditions]]                          # replaces the conditions of every treated site
    type = "acne_scar"
    scar_type = {distribution = "categorical", weights = {rolling = 0.5, boxcar = 0.5}}
    depth_mm = {distribution = "lognormal", median = 0.5, gsd = 1.5, min = 0.1, max = 2.0}
    count = 20                              # a plain value is fixed

    [variability.k_1]                       # inter-individual log-normal factor on a healing rate
    sd_log = 0.25
    min = 0.4
    max = 2.5

Distributions: ``normal`` (mean, sd), ``lognormal`` (median, gsd = geometric SD > 1), ``uniform``
(low, high), ``categorical`` (weights), ``fixed`` (value). Optional ``min``/``max`` truncate numbers
by rejection; the fraction of rejected draws is reported per variable. Each table may carry
``source``, ``note`` and ``units``.

The file is read into :class:`PopulationFile`, a model on the shared schema base
(:class:`~microneedling.schema.InputModel`); every refusal is a :class:`PopulationError`, which holds
all problems found and is also an :class:`~microneedling.errors.InputError` naming the first one
(``population.age.sd``, ``population.variability.k_1``, ...). :class:`Population` is what the
sampler works from.

Site thickness by age and sex is not sampled here: the engine's skin model
(:func:`microneedling.physics.needles.skin_layers_batch`) maps each patient's age, sex and site to
layer thicknesses (``data/parameters/skin.toml``, with sources).

Reproducibility: patients are drawn in fixed blocks of :data:`BLOCK` indices, each from its own
generator seeded by ``(seed, stream, block)``, so patient *i* is the same whichever chunk asks for it
(any chunk size, any worker count).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from microneedling.course.model import Course
from microneedling.errors import (
    CourseValidationError,
    InputError,
    InputFileError,
    InputFileFieldError,
)
from microneedling.io import data_path, read_toml
from microneedling.physics.healing_rhs import PARAM_NAMES
from microneedling.schema import MISSING, Allowed, InputModel, Number, Text, did_you_mean
from microneedling.vocabulary import CONCERN_TYPES, FITZPATRICK_ROMAN

__all__ = [
    "BLOCK",
    "ConditionSpec",
    "ConditionTable",
    "Distribution",
    "DistributionTable",
    "PatientBatch",
    "Population",
    "PopulationError",
    "PopulationFile",
    "VariabilityTable",
    "list_populations",
    "load_population",
    "rejection_rates",
    "sample_patients",
]

#: patients per generator block (fixed: changing it changes which patients a seed gives)
BLOCK = 256
_MAX_ROUNDS = 1000
ROMAN = FITZPATRICK_ROMAN


@dataclass(frozen=True)
class Distribution:
    """One declared marginal: ``kind`` with its numbers, optional truncation ``[lo, hi]``."""

    kind: str
    params: tuple[tuple[str, float], ...] = ()
    categories: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    lo: float = -math.inf
    hi: float = math.inf
    source: tuple[str, ...] = ()
    note: str = ""

    def p(self, name: str) -> float:
        return dict(self.params)[name]

    @property
    def categorical(self) -> bool:
        return self.kind == "categorical"

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` untruncated draws (category indices for a categorical)."""
        if self.kind == "normal":
            return rng.normal(self.p("mean"), self.p("sd"), n)
        if self.kind == "lognormal":
            return self.p("median") * np.exp(math.log(self.p("gsd")) * rng.standard_normal(n))
        if self.kind == "uniform":
            return rng.uniform(self.p("low"), self.p("high"), n)
        if self.kind == "categorical":
            return rng.choice(len(self.categories), size=n, p=np.asarray(self.weights))
        return np.full(n, self.p("value"))

    def sample(self, rng: np.random.Generator, n: int, field: str) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws within ``[lo, hi]`` by rejection; also the rejected-draw count per element."""
        x = self.draw(rng, n)
        rejected = np.zeros(n, dtype=np.int64)
        if self.categorical:
            return x, rejected
        bad = np.flatnonzero((x < self.lo) | (x > self.hi))
        rounds = 0
        while bad.size:
            rounds += 1
            if rounds > _MAX_ROUNDS:
                raise InputError(
                    field,
                    f"min={self.lo}, max={self.hi}",
                    "truncation bounds that keep a reasonable share of the distribution",
                )
            rejected[bad] += 1
            y = self.draw(rng, bad.size)
            x[bad] = y
            bad = bad[(y < self.lo) | (y > self.hi)]
        return x, rejected


# ----------------------------------------------------------------------------- the file
class PopulationError(InputFileFieldError):
    """A population failed validation; an :class:`~microneedling.errors.InputError` naming its
    first problem's field (``population.age.sd``, ``population.variability.k_1``, ...)."""


class _Model(InputModel):
    """Base of the population file's tables: errors are :class:`PopulationError`."""

    file_kind: ClassVar[str] = "population"
    error_class: ClassVar[type[InputFileError]] = PopulationError


#: the numbers each kind of distribution takes, in the order the sampler reads them
_PARAMS: dict[str, tuple[str, ...]] = {
    "normal": ("mean", "sd"),
    "lognormal": ("median", "gsd"),
    "uniform": ("low", "high"),
    "fixed": ("value",),
    "categorical": ("weights",),
}
_ALL_PARAMS = ("mean", "sd", "median", "gsd", "low", "high", "value", "weights")


def _listed(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


Sources = Annotated[
    tuple[Text, ...], BeforeValidator(_listed), Allowed("a reference key or a list of them")
]


class DistributionTable(_Model):
    """A declared marginal: ``distribution`` with its numbers, optional truncation ``min``/``max``
    (numbers only), and its provenance (``source``, ``note``, ``units``)."""

    distribution: Literal["normal", "lognormal", "uniform", "categorical", "fixed"]
    mean: Number | None = None
    sd: Annotated[Number, Field(gt=0)] | None = None
    median: Annotated[Number, Field(gt=0)] | None = None
    gsd: Annotated[Number, Field(gt=1), Allowed("a number > 1 (geometric SD)")] | None = None
    low: Number | None = None
    high: Number | None = None
    value: Number | None = None
    weights: (
        Annotated[
            dict[str, Annotated[Number, Field(ge=0)]],
            Allowed("a table {category = weight, ...} of non-negative weights, not all zero"),
        ]
        | None
    ) = None
    min: Number | None = None
    max: Number | None = None
    source: Sources = ()
    note: Text = ""
    units: Text = ""

    @model_validator(mode="after")
    def _numbers_of_the_kind(self) -> DistributionTable:
        kind = self.distribution
        needed = _PARAMS[kind]
        keys = ", ".join(needed) + ("" if kind == "categorical" else ", min, max")
        problems: list[InputError] = []
        for k in _ALL_PARAMS:
            v = getattr(self, k)
            if k in needed and v is None:
                what = "a table {category = weight, ...}" if k == "weights" else "a number"
                problems.append(
                    InputError(k, MISSING, f"required for a {kind} distribution: {what}")
                )
            elif k not in needed and v is not None:
                problems.append(InputError(k, v, f"absent: a {kind} distribution takes {keys}"))
        if kind == "categorical":
            for k in ("min", "max"):
                if getattr(self, k) is not None:
                    problems.append(
                        InputError(k, getattr(self, k), "absent: min/max truncate numbers only")
                    )
            if self.weights is not None and not sum(self.weights.values()) > 0:
                problems.append(
                    InputError("weights", self.weights, "non-negative weights, not all zero")
                )
        if problems:
            raise InputFileError(problems)
        if kind == "uniform" and self.high is not None and self.low is not None:
            if self.high <= self.low:
                raise InputError("high", self.high, f"a number > low ({self.low:g})")
        if self.min is not None and self.max is not None and self.max <= self.min:
            raise InputError("max", self.max, f"a number > min ({self.min:g})")
        return self

    def to_distribution(self) -> Distribution:
        """The sampler's :class:`Distribution`."""
        src, note = self.source, self.note
        if self.distribution == "categorical":
            assert self.weights is not None  # required above
            vals = list(self.weights.values())
            total = sum(vals)
            return Distribution(
                "categorical",
                categories=tuple(self.weights),
                weights=tuple(v / total for v in vals),
                source=src,
                note=note,
            )
        params = tuple((k, float(getattr(self, k))) for k in _PARAMS[self.distribution])
        lo = -math.inf if self.min is None else float(self.min)
        hi = math.inf if self.max is None else float(self.max)
        return Distribution(self.distribution, params=params, lo=lo, hi=hi, source=src, note=note)


def _number_or_table(v: Any) -> Any:
    """A plain number is a ``fixed`` distribution."""
    if isinstance(v, Mapping):
        return v
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise InputError("", v, "a number or a distribution table")
    return {"distribution": "fixed", "value": v}


def _category_or_table(v: Any) -> Any:
    """A plain value is a ``categorical`` distribution with that one category."""
    if isinstance(v, Mapping):
        return v
    return {"distribution": "categorical", "weights": {str(v): 1.0}}


def _categorical(d: DistributionTable) -> DistributionTable:
    if d.distribution != "categorical":
        raise InputError("distribution", d.distribution, "'categorical' (this field is a category)")
    return d


NumberDistribution = Annotated[
    DistributionTable,
    BeforeValidator(_number_or_table),
    Allowed(
        "a number or a distribution table (distribution = 'normal', 'lognormal', 'uniform', "
        "'categorical' or 'fixed', with its numbers)"
    ),
]
"""A numeric variable: a number (fixed) or a distribution table."""
CategoryDistribution = Annotated[
    DistributionTable,
    BeforeValidator(_category_or_table),
    AfterValidator(_categorical),
    Allowed("a category or a table {distribution = 'categorical', weights = {...}}"),
]
"""A categorical variable: a category (fixed) or a ``categorical`` table."""

#: condition fields that are categories (the rest are numbers); counts are rounded to integers
_CATEGORY_FIELDS = {"scar_type", "stage", "kind"}
_INTEGER_FIELDS = {"count"}
_CONDITION_FIELD = "a number, a category (scar_type, stage, kind) or a distribution table"


def _condition_field(name: str, v: Any) -> Any:
    if isinstance(v, Mapping):
        return v
    if name in _CATEGORY_FIELDS:
        return _category_or_table(v)
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return {"distribution": "fixed", "value": v}
    return v  # refused by the field's type, under the field's name


@dataclass(frozen=True)
class ConditionSpec:
    """A site condition whose fields are fixed values or distributions."""

    type: str
    fields: tuple[tuple[str, Distribution], ...]


class ConditionTable(_Model):
    """A ``[[conditions]]`` table: a course condition ``type`` and its fields, each a value, a
    category or a distribution (the table is flat in the file)."""

    type: Annotated[Text, Allowed("a course condition type: one of " + ", ".join(CONCERN_TYPES))]
    fields: dict[str, Annotated[DistributionTable, Allowed(_CONDITION_FIELD)]] = Field(
        default_factory=dict
    )
    flattened_fields: ClassVar[frozenset[str]] = frozenset({"fields"})

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        """The flat table (type + fields) becomes {type, fields}."""
        if isinstance(data, Mapping):
            out: dict[str, Any] = {
                "fields": {k: _condition_field(k, v) for k, v in data.items() if k != "type"}
            }
            if "type" in data:
                out["type"] = data["type"]
            return out
        return data

    @model_validator(mode="after")
    def _categories(self) -> ConditionTable:
        problems = [
            InputError(
                f"{k}.distribution", d.distribution, "'categorical' (this field is a category)"
            )
            for k, d in self.fields.items()
            if k in _CATEGORY_FIELDS and d.distribution != "categorical"
        ]
        if problems:
            raise InputFileError(problems)
        return self

    def spec(self) -> ConditionSpec:
        return ConditionSpec(
            self.type, tuple((k, d.to_distribution()) for k, d in self.fields.items())
        )


class VariabilityTable(_Model):
    """A ``[variability.<healing parameter>]`` table: a log-normal factor with median 1."""

    sd_log: Annotated[Number, Field(gt=0)]
    min: Annotated[Number, Field(gt=0), Allowed("a factor > 0")] | None = None
    max: Annotated[Number, Field(gt=0), Allowed("a factor > 0")] | None = None
    source: Sources = ()
    note: Text = ""
    units: Text = ""

    @model_validator(mode="after")
    def _range(self) -> VariabilityTable:
        if self.min is not None and self.max is not None and self.max <= self.min:
            raise InputError("max", self.max, f"a number > min ({self.min:g})")
        return self

    def to_distribution(self) -> Distribution:
        return Distribution(
            "lognormal",
            params=(("median", 1.0), ("gsd", math.exp(self.sd_log))),
            lo=-math.inf if self.min is None else float(self.min),
            hi=math.inf if self.max is None else float(self.max),
            source=self.source,
            note=self.note,
        )


class PopulationFile(_Model):
    """A population file (see the module docstring)."""

    name: Text
    description: Text = ""
    age: NumberDistribution
    sex: CategoryDistribution
    fitzpatrick: CategoryDistribution
    conditions: tuple[
        Annotated[
            ConditionTable,
            Allowed("a table with a condition 'type' and its fields (values or distributions)"),
        ],
        ...,
    ] = ()
    variability: Annotated[
        dict[str, VariabilityTable],
        Allowed("a table of healing parameters, each {sd_log, min, max, source, note}"),
    ] = Field(default_factory=dict)

    @field_validator("age")
    @classmethod
    def _adults(cls, v: DistributionTable) -> DistributionTable:
        lo, hi = _support(v.to_distribution())
        if lo < 18 or hi > 90:
            raise InputError(
                "", f"support [{lo}, {hi}]", "ages within 18-90 years: set min >= 18 and max <= 90"
            )
        return v

    @field_validator("sex")
    @classmethod
    def _sexes(cls, v: DistributionTable) -> DistributionTable:
        if not set(v.weights or ()) <= {"female", "male"}:
            raise InputError("weights", list(v.weights or ()), "female, male")
        return v

    @field_validator("fitzpatrick")
    @classmethod
    def _skin_types(cls, v: DistributionTable) -> DistributionTable:
        if not set(v.weights or ()) <= set(ROMAN):
            raise InputError("weights", list(v.weights or ()), ", ".join(ROMAN))
        return v

    @field_validator("variability", mode="before")
    @classmethod
    def _healing_parameters(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            bad = [
                InputError(
                    str(k),
                    k,
                    f"a healing parameter among {list(PARAM_NAMES)}" + did_you_mean(k, PARAM_NAMES),
                )
                for k in v
                if k not in PARAM_NAMES
            ]
            if bad:
                raise InputFileError(bad)
        return v


@dataclass(frozen=True)
class Population:
    """A declared virtual population (see the module docstring for the TOML format)."""

    name: str
    age: Distribution
    sex: Distribution
    fitzpatrick: Distribution
    conditions: tuple[ConditionSpec, ...] = ()
    variability: tuple[tuple[str, Distribution], ...] = ()
    description: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], source: str = "population", *, file: str | None = None
    ) -> Population:
        """Validate a parsed population table (:class:`PopulationFile`); problems name
        ``<source>.<field>``, the error names ``file`` (default ``source``). Raises
        :class:`PopulationError`."""
        where = file or source
        table = PopulationFile.from_dict(d, source=where, prefix=source)
        pop = cls(
            name=table.name,
            age=table.age.to_distribution(),
            sex=table.sex.to_distribution(),
            fitzpatrick=table.fitzpatrick.to_distribution(),
            conditions=tuple(c.spec() for c in table.conditions),
            variability=tuple((k, v.to_distribution()) for k, v in table.variability.items()),
            description=table.description,
            raw=dict(d),
        )
        pop._check_conditions(source, where)
        return pop

    def _check_conditions(self, source: str, where: str) -> None:
        """Sample one patient and validate their conditions against the course schema."""
        try:
            b = sample_patients(self, 0, 1, seed=0)
        except InputError as exc:  # truncation bounds that (almost) never accept a draw
            raise PopulationError([exc], source=where) from None
        problems: list[InputError] = []
        for j, c in enumerate(b.conditions_of(0)):
            try:
                Course.from_dict({**_PROBE, "sites": [{"name": "cheek", "conditions": [c]}]})
            except CourseValidationError as exc:
                inner = "sites[0].conditions[0]."
                why = "; ".join(
                    f"{p.field.removeprefix(inner)}: got {p.value!r}, allowed {p.allowed}"
                    for p in exc.problems
                )
                problems.append(
                    InputError(f"{source}.conditions[{j}]", c, f"a valid course condition ({why})")
                )
        if problems:
            raise PopulationError(problems, source=where)


_PROBE: dict[str, Any] = {
    "name": "probe",
    "horizon_days": 30,
    "patient": {"age_years": 30, "sex": "female", "fitzpatrick": 2},
    "device": {
        "type": "stamp",
        "needle_count": 10,
        "needle_diameter_mm": 0.25,
        "tip_radius_um": 4.0,
        "tip": "cone",
        "max_needle_length_mm": 1.0,
        "stamp_area_cm2": 1.0,
    },
    "sessions": [{"day": 0, "site": "cheek", "needle_length_mm": 0.5, "passes": 1}],
}


def _support(d: Distribution) -> tuple[float, float]:
    """Smallest interval holding every possible draw of ``d`` (after truncation)."""
    if d.kind == "fixed":
        return d.p("value"), d.p("value")
    if d.kind == "uniform":
        return max(d.lo, d.p("low")), min(d.hi, d.p("high"))
    lo = max(d.lo, 0.0) if d.kind == "lognormal" else d.lo
    return lo, d.hi


@dataclass(frozen=True)
class PatientBatch:
    """Patients ``index`` (N,) as arrays; ``rejected[var]`` counts rejected draws per patient."""

    index: np.ndarray
    age_years: np.ndarray  # float draws; the course gets them rounded to whole years
    sex: np.ndarray  # str
    fitzpatrick: np.ndarray  # int 1..6
    conditions: tuple[tuple[str, dict[str, np.ndarray]], ...]
    factors: dict[str, np.ndarray]
    rejected: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.index.size)

    def conditions_of(self, i: int) -> list[dict[str, Any]]:
        """Course-schema condition tables of patient ``i`` (position in the batch)."""
        out = []
        for ctype, fields_ in self.conditions:
            c: dict[str, Any] = {"type": ctype}
            for k, arr in fields_.items():
                v = arr[i]
                c[k] = v.item() if isinstance(v, np.generic) else v
            out.append(c)
        return out

    def patient_of(self, i: int) -> dict[str, Any]:
        """Course-schema patient table of patient ``i``."""
        return {
            "age_years": round(float(self.age_years[i])),
            "sex": str(self.sex[i]),
            "fitzpatrick": int(self.fitzpatrick[i]),
        }


def _sample_block(pop: Population, seed: int, stream: int, block: int) -> PatientBatch:
    rng = np.random.default_rng([seed, stream, block])
    n = BLOCK
    rej: dict[str, np.ndarray] = {}
    age, rej["age"] = pop.age.sample(rng, n, "population.age")
    sex_i, _ = pop.sex.sample(rng, n, "sex")
    fz_i, _ = pop.fitzpatrick.sample(rng, n, "fitzpatrick")
    conds = []
    for j, c in enumerate(pop.conditions):
        vals: dict[str, np.ndarray] = {}
        for k, dist in c.fields:
            x, r = dist.sample(rng, n, f"population.conditions[{j}].{k}")
            if dist.categorical:
                vals[k] = np.asarray(dist.categories, dtype=object)[x.astype(int)]
            else:
                vals[k] = np.rint(x).astype(np.int64) if k in _INTEGER_FIELDS else x
                rej[f"conditions[{j}].{k}"] = r
        conds.append((c.type, vals))
    factors = {}
    for name, dist in pop.variability:
        factors[name], rej[f"variability.{name}"] = dist.sample(
            rng, n, f"population.variability.{name}"
        )
    idx = block * n + np.arange(n)
    return PatientBatch(
        index=idx,
        age_years=age,
        sex=np.asarray(pop.sex.categories, dtype=object)[sex_i.astype(int)],
        fitzpatrick=np.array([ROMAN.index(pop.fitzpatrick.categories[k]) + 1 for k in fz_i]),
        conditions=tuple(conds),
        factors=factors,
        rejected=rej,
    )


def _take(b: PatientBatch, rows: np.ndarray) -> PatientBatch:
    return PatientBatch(
        index=b.index[rows],
        age_years=b.age_years[rows],
        sex=b.sex[rows],
        fitzpatrick=b.fitzpatrick[rows],
        conditions=tuple((t, {k: v[rows] for k, v in f.items()}) for t, f in b.conditions),
        factors={k: v[rows] for k, v in b.factors.items()},
        rejected={k: v[rows] for k, v in b.rejected.items()},
    )


def _concat(bs: list[PatientBatch]) -> PatientBatch:
    if len(bs) == 1:
        return bs[0]
    first = bs[0]
    return PatientBatch(
        index=np.concatenate([b.index for b in bs]),
        age_years=np.concatenate([b.age_years for b in bs]),
        sex=np.concatenate([b.sex for b in bs]),
        fitzpatrick=np.concatenate([b.fitzpatrick for b in bs]),
        conditions=tuple(
            (t, {k: np.concatenate([b.conditions[j][1][k] for b in bs]) for k in f})
            for j, (t, f) in enumerate(first.conditions)
        ),
        factors={k: np.concatenate([b.factors[k] for b in bs]) for k in first.factors},
        rejected={k: np.concatenate([b.rejected[k] for b in bs]) for k in first.rejected},
    )


def sample_patients(
    pop: Population, start: int, stop: int, *, seed: int, stream: int = 0
) -> PatientBatch:
    """Patients ``start .. stop-1`` of ``pop`` under ``seed`` (and ``stream``: one per independent
    group, e.g. per arm of a parallel trial). Independent of how the range is split."""
    if not 0 <= start < stop:
        raise InputError("patients", f"[{start}, {stop})", "0 <= start < stop")
    b0, b1 = start // BLOCK, (stop - 1) // BLOCK
    blocks = [_sample_block(pop, seed, stream, b) for b in range(b0, b1 + 1)]
    whole = _concat(blocks)
    return _take(whole, np.arange(start - b0 * BLOCK, stop - b0 * BLOCK))


def rejection_rates(rejected: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Fraction of rejected draws per variable: rejected / (rejected + accepted)."""
    out = {}
    for k, r in rejected.items():
        tot = float(np.sum(r))
        out[k] = tot / (tot + r.size) if r.size else 0.0
    return out


# ---------------------------------------------------------------------------------- files
def _presets() -> Path:
    return data_path("populations")


def list_populations() -> list[str]:
    """Names of the shipped population presets."""
    return sorted(p.stem for p in _presets().iterdir() if p.suffix == ".toml")


def load_population(name_or_path: str | Path, base: Path | None = None) -> Population:
    """A preset by name (``acne-scar-adults``) or a TOML file (relative paths from ``base``).

    Raises :class:`PopulationError` (an :class:`~microneedling.errors.InputError`): an unknown name
    or an unreadable file names the field ``population``, a bad table ``population.<field>``.
    """
    src = str(name_or_path)
    p = Path(name_or_path)
    if base is not None and not p.is_absolute():
        p = base / p
    if not (p.suffix == ".toml" and p.is_file()):
        if src not in list_populations():
            raise PopulationError(
                [
                    InputError(
                        "population",
                        src,
                        f"a population file (.toml) or a preset among {list_populations()}",
                    )
                ],
                source=src,
            )
        p = _presets() / f"{src}.toml"
    try:
        d = read_toml(p)
    except InputError as exc:
        raise PopulationError(
            [
                InputError(
                    "population", src, f"a population file ({exc.field} is not {exc.allowed})"
                )
            ],
            source=str(p),
        ) from None
    return Population.from_dict(d, source="population", file=str(p))

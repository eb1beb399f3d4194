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
(low, high), ``categorical`` (weights), ``fixed`` (value). Optional ``min``/``max`` truncate by
rejection; the fraction of rejected draws is reported per variable.

Site thickness by age and sex is not sampled here: the engine's skin model
(:func:`microneedling.physics.needles.skin_layers_batch`) maps each patient's age, sex and site to
layer thicknesses (``data/parameters/skin.toml``, with sources).

Reproducibility: patients are drawn in fixed blocks of :data:`BLOCK` indices, each from its own
generator seeded by ``(seed, stream, block)``, so patient *i* is the same whichever chunk asks for it
(any chunk size, any worker count).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from microneedling.course.model import Course
from microneedling.errors import InputError
from microneedling.physics.healing_rhs import PARAM_NAMES

__all__ = [
    "BLOCK",
    "Distribution",
    "PatientBatch",
    "Population",
    "list_populations",
    "load_population",
    "rejection_rates",
    "sample_patients",
]

#: patients per generator block (fixed: changing it changes which patients a seed gives)
BLOCK = 256
_MAX_ROUNDS = 1000
ROMAN = ("I", "II", "III", "IV", "V", "VI")
_KINDS = ("normal", "lognormal", "uniform", "categorical", "fixed")
_META = ("source", "note", "units")


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


def _number(d: Mapping[str, Any], key: str, field: str) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
        raise InputError(f"{field}.{key}", v, "a finite number")
    return float(v)


def parse_distribution(raw: Any, field: str, *, numeric: bool = True) -> Distribution:
    """A :class:`Distribution` from a TOML value (a table, or a plain value meaning ``fixed``)."""
    if not isinstance(raw, Mapping):
        if numeric and (
            isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw)
        ):
            raise InputError(field, raw, "a number or a distribution table")
        if not numeric:
            return Distribution("categorical", categories=(str(raw),), weights=(1.0,))
        return Distribution("fixed", params=(("value", float(raw)),))
    kind = raw.get("distribution")
    if kind not in _KINDS:
        raise InputError(f"{field}.distribution", kind, f"one of {list(_KINDS)}")
    needed = {
        "normal": ("mean", "sd"),
        "lognormal": ("median", "gsd"),
        "uniform": ("low", "high"),
        "fixed": ("value",),
        "categorical": (),
    }[kind]
    allowed_keys = {"distribution", "min", "max", "weights", *needed, *_META}
    for k in raw:
        if k not in allowed_keys:
            raise InputError(f"{field}.{k}", raw[k], f"keys among {sorted(allowed_keys)}")
    src = raw.get("source", ())
    src = (src,) if isinstance(src, str) else tuple(str(s) for s in src)
    note = str(raw.get("note", ""))
    if kind == "categorical":
        w = raw.get("weights")
        if not isinstance(w, Mapping) or not w:
            raise InputError(f"{field}.weights", w, "a table {category = weight, ...}")
        vals = [_number(w, k, f"{field}.weights") for k in w]
        if any(v < 0 for v in vals) or sum(vals) <= 0:
            raise InputError(f"{field}.weights", dict(w), "non-negative weights, not all zero")
        total = sum(vals)
        return Distribution(
            kind,
            categories=tuple(str(k) for k in w),
            weights=tuple(v / total for v in vals),
            source=src,
            note=note,
        )
    if not numeric:
        raise InputError(f"{field}.distribution", kind, "'categorical' (this field is a category)")
    params = tuple((k, _number(raw, k, field)) for k in needed)
    pd = dict(params)
    if kind == "normal" and pd["sd"] <= 0:
        raise InputError(f"{field}.sd", pd["sd"], "a number > 0")
    if kind == "lognormal" and (pd["median"] <= 0 or pd["gsd"] <= 1):
        raise InputError(
            f"{field}", f"median={pd['median']}, gsd={pd['gsd']}", "median > 0, gsd > 1"
        )
    if kind == "uniform" and pd["high"] <= pd["low"]:
        raise InputError(f"{field}.high", pd["high"], f"a number > low ({pd['low']})")
    lo = _number(raw, "min", field) if "min" in raw else -math.inf
    hi = _number(raw, "max", field) if "max" in raw else math.inf
    if hi <= lo:
        raise InputError(f"{field}.max", hi, f"a number > min ({lo})")
    return Distribution(kind, params=params, lo=lo, hi=hi, source=src, note=note)


@dataclass(frozen=True)
class ConditionSpec:
    """A site condition whose fields are fixed values or distributions."""

    type: str
    fields: tuple[tuple[str, Distribution], ...]


#: condition fields that are categories (the rest are numbers); counts are rounded to integers
_CATEGORY_FIELDS = {"scar_type", "stage", "kind"}
_INTEGER_FIELDS = {"count"}


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
    def from_dict(cls, d: Mapping[str, Any], source: str = "population") -> Population:
        """Validate a parsed TOML table; errors name ``<source>.<field>``."""
        if not isinstance(d, Mapping):
            raise InputError(source, d, "a table")
        known = {"name", "description", "age", "sex", "fitzpatrick", "conditions", "variability"}
        for k in d:
            if k not in known:
                raise InputError(f"{source}.{k}", d[k], f"keys among {sorted(known)}")
        for k in ("name", "age", "sex", "fitzpatrick"):
            if k not in d:
                raise InputError(f"{source}.{k}", None, "required")
        age = parse_distribution(d["age"], f"{source}.age")
        lo, hi = _support(age)
        if lo < 18 or hi > 90:
            raise InputError(
                f"{source}.age",
                f"support [{lo}, {hi}]",
                "ages within 18-90 years: set min >= 18 and max <= 90",
            )
        sex = parse_distribution(d["sex"], f"{source}.sex", numeric=False)
        if not set(sex.categories) <= {"female", "male"}:
            raise InputError(f"{source}.sex.weights", list(sex.categories), "female, male")
        fitz = parse_distribution(d["fitzpatrick"], f"{source}.fitzpatrick", numeric=False)
        if not set(fitz.categories) <= set(ROMAN):
            raise InputError(
                f"{source}.fitzpatrick.weights", list(fitz.categories), ", ".join(ROMAN)
            )
        conds = []
        for j, c in enumerate(d.get("conditions", [])):
            f = f"{source}.conditions[{j}]"
            if not isinstance(c, Mapping) or "type" not in c:
                raise InputError(f, c, "a table with a condition 'type' and its fields")
            fs = tuple(
                (k, parse_distribution(v, f"{f}.{k}", numeric=k not in _CATEGORY_FIELDS))
                for k, v in c.items()
                if k != "type"
            )
            conds.append(ConditionSpec(str(c["type"]), fs))

        var = []
        raw_var = d.get("variability", {})
        if not isinstance(raw_var, Mapping):
            raise InputError(f"{source}.variability", raw_var, "a table of healing parameters")
        for name, spec in raw_var.items():
            f = f"{source}.variability.{name}"
            if name not in PARAM_NAMES:
                raise InputError(f, name, f"a healing parameter among {list(PARAM_NAMES)}")
            if not isinstance(spec, Mapping) or "sd_log" not in spec:
                raise InputError(f, spec, "a table with sd_log (and optional min, max, source)")
            sd = _number(spec, "sd_log", f)
            if sd <= 0:
                raise InputError(f"{f}.sd_log", sd, "a number > 0")
            table = {k: v for k, v in spec.items() if k != "sd_log"}
            table.update(distribution="lognormal", median=1.0, gsd=math.exp(sd))
            dist = parse_distribution(table, f)
            if dist.lo <= 0 and math.isfinite(dist.lo):
                raise InputError(f"{f}.min", dist.lo, "a factor > 0")
            var.append((str(name), dist))
        pop = cls(
            name=str(d["name"]),
            age=age,
            sex=sex,
            fitzpatrick=fitz,
            conditions=tuple(conds),
            variability=tuple(var),
            description=str(d.get("description", "")),
            raw=dict(d),
        )
        pop._check_conditions(source)
        return pop

    def _check_conditions(self, source: str) -> None:
        """Validate one sampled patient's conditions against the course schema (field-named)."""

        b = sample_patients(self, 0, 1, seed=0)
        for j, c in enumerate(b.conditions_of(0)):
            try:
                Course.model_validate({**_PROBE, "sites": [{"name": "cheek", "conditions": [c]}]})
            except Exception as exc:  # pydantic's ValidationError, reported with our field
                raise InputError(
                    f"{source}.conditions[{j}]", c, f"a valid course condition ({exc})"
                ) from None


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
def _presets() -> Any:
    return resources.files("microneedling") / "data" / "populations"


def list_populations() -> list[str]:
    """Names of the shipped population presets."""
    return sorted(p.name[:-5] for p in _presets().iterdir() if p.name.endswith(".toml"))


def load_population(name_or_path: str | Path, base: Path | None = None) -> Population:
    """A preset by name (``acne-scar-adults``) or a TOML file (relative paths from ``base``)."""
    text = None
    src = str(name_or_path)
    p = Path(name_or_path)
    if base is not None and not p.is_absolute():
        p = base / p
    if p.suffix == ".toml" and p.is_file():
        text = p.read_text(encoding="utf-8")
        src = p.name
    elif str(name_or_path) in list_populations():
        text = (_presets() / f"{name_or_path}.toml").read_text(encoding="utf-8")
    else:
        raise InputError(
            "population",
            str(name_or_path),
            f"a population file (.toml) or a preset among {list_populations()}",
        )
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError("population", src, f"valid TOML ({exc})") from None
    return Population.from_dict(d, source="population")

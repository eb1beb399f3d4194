"""Validation: every held-out literature row against the model, with prediction intervals.

Each ``role = "validation"`` row of ``data/literature.toml`` is reproduced by simulating its
protocol (``data/calibration/protocols.toml``: the study's settings, stand-ins where it is silent).
The nominal parameter set and ``draws`` sampled parameter sets (the calibrated posterior jointly, the
other intervals independently: :func:`microneedling.parameters.sampling.sample_parameter_sets`) run as one
batched solve (:func:`microneedling.studies.credibility.calibrate.predict_rows`).

Per row:

* **pass** when ``|model - observed| <= tolerance``; for ``bound = "upper"`` rows when
  ``model <= observed + tolerance``. A non-finite model value is a miss.
* **covered** when the observed value lies inside the model's 80% prediction interval (10th-90th
  percentile of the draws); for upper-bound rows when the 10th percentile is at or below the bound.
* rows the model cannot compare (``evaluable = false`` in ``protocols.toml``) are listed as
  ``not evaluated`` with the reason, and count in neither numerator nor denominator.

No validation row is ever used by :mod:`microneedling.studies.credibility.calibrate` (it reads ``rows("calibration")``
only; ``tests/test_validate.py`` checks it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from microneedling.errors import InputError
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.parameters.sampling import sample_parameter_sets
from microneedling.studies.credibility.calibrate import (
    observed_value,
    predict_rows,
    tolerance_value,
)
from microneedling.studies.credibility.literature import (
    LiteratureRow,
    load_protocol_file,
    load_protocols,
    rows,
)


@dataclass(frozen=True)
class RowResult:
    """The comparison of one validation row (values in ``units``; % for relative changes)."""

    key: str
    quantity: str
    sources: tuple[str, ...]
    evidence: str
    units: str
    observed: float
    tolerance: float
    bound: str | None
    predicted: float
    low: float
    high: float
    status: str  # "pass" | "miss" | "not evaluated"
    covered: bool | None
    comparable: str
    assumptions: str

    @property
    def error(self) -> float:
        """Model minus observed."""
        return self.predicted - self.observed


@dataclass(frozen=True)
class Validation:
    """All validation rows, the pass count and the interval coverage."""

    results: tuple[RowResult, ...]
    draws: int
    seed: int
    interval: tuple[float, float]
    parameter_set_hash: str

    @property
    def evaluated(self) -> list[RowResult]:
        return [r for r in self.results if r.status != "not evaluated"]

    @property
    def n_pass(self) -> int:
        return sum(r.status == "pass" for r in self.results)

    @property
    def n_evaluated(self) -> int:
        return len(self.evaluated)

    @property
    def n_covered(self) -> int:
        return sum(bool(r.covered) for r in self.evaluated)

    @property
    def coverage(self) -> float:
        """Fraction of evaluated rows whose observation is inside the prediction interval."""
        return self.n_covered / self.n_evaluated if self.n_evaluated else math.nan

    def to_dict(self) -> dict[str, Any]:
        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
            return x

        return {
            "draws": self.draws,
            "seed": self.seed,
            "interval_percentiles": list(self.interval),
            "parameter_set_hash": self.parameter_set_hash,
            "n_rows": len(self.results),
            "n_evaluated": self.n_evaluated,
            "n_pass": self.n_pass,
            "n_covered": self.n_covered,
            "coverage": clean(self.coverage),
            "rows": [
                {k: clean(v) for k, v in {**asdict(r), "sources": list(r.sources)}.items()}
                for r in self.results
            ],
        }


def _judge(row: LiteratureRow, obs: float, tol: float, nominal: float) -> str:
    if not math.isfinite(nominal):
        return "miss"
    if row.bound == "upper":
        return "pass" if nominal <= obs + tol else "miss"
    if row.bound == "lower":
        return "pass" if nominal >= obs - tol else "miss"
    return "pass" if abs(nominal - obs) <= tol else "miss"


def _covered(row: LiteratureRow, obs: float, lo: float, hi: float) -> bool:
    if not (math.isfinite(lo) or math.isfinite(hi)) or math.isnan(lo) or math.isnan(hi):
        return False
    if row.bound == "upper":
        return lo <= obs
    if row.bound == "lower":
        return hi >= obs
    return lo <= obs <= hi


def validate(
    parameters: ParameterSet | None = None,
    *,
    draws: int | None = None,
    seed: int = 0,
    keys: Sequence[str] | None = None,
) -> Validation:
    """Simulate every validation row (or those in ``keys``) under the nominal set and ``draws``
    parameter draws; compare with the published values."""

    settings = load_protocol_file()["settings"]
    n_draws = int(settings["draws"]) if draws is None else int(draws)
    if n_draws < 2:
        raise InputError("draws", n_draws, "at least 2 parameter draws (for the 10-90% interval)")
    ps = parameters or load_parameters()
    protocols = load_protocols()
    val = rows("validation")
    if keys is not None:
        known = {r.key for r in val}
        for k in keys:
            if k not in known:
                raise InputError("rows", k, f"a validation row key ({len(known)} known)")
        val = [r for r in val if r.key in set(keys)]
    missing = [r.key for r in val if r.key not in protocols]
    if missing:
        raise InputError("protocols.toml", missing, "a [rows.KEY] table for every validation row")
    sets = [ps, *sample_parameter_sets(ps, n_draws, seed)]
    pred = predict_rows(val, sets, protocols, settings)
    q_lo, q_hi = (float(x) for x in settings["interval"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        finite = np.where(np.isfinite(pred[1:]), pred[1:], np.nan)
        lo, hi = np.nanpercentile(finite, [q_lo, q_hi], axis=0)
    results = []
    for j, row in enumerate(val):
        p = protocols[row.key]
        obs = observed_value(row, p)
        tol = tolerance_value(row, p)
        assert tol is not None, row.key  # the loader requires it for validation rows
        units = "%" if p.compare == "relative_change" else row.units
        if not p.evaluable:
            status, covered = "not evaluated", None
            nominal, lo_j, hi_j = math.nan, math.nan, math.nan
            assumptions = p.reason
        else:
            nominal, lo_j, hi_j = float(pred[0, j]), float(lo[j]), float(hi[j])
            status = _judge(row, obs, tol, nominal)
            covered = _covered(row, obs, lo_j, hi_j)
            assumptions = p.assumptions
        results.append(
            RowResult(
                key=row.key,
                quantity=row.quantity,
                sources=row.sources,
                evidence=row.evidence,
                units=units,
                observed=obs,
                tolerance=tol,
                bound=row.bound,
                predicted=nominal,
                low=lo_j,
                high=hi_j,
                status=status,
                covered=covered,
                comparable=row.comparable,
                assumptions=assumptions,
            )
        )
    return Validation(tuple(results), n_draws, seed, (q_lo, q_hi), ps.hash)

"""Scalar clinical end points from a batch run: one number per case, batch-first.

Trials, sensitivity analysis, calibration and the planner all ask the same question of a
:class:`~microneedling.engine.batch.BatchRun`: "what is end point E of each case?". This module answers
it once, with a small text grammar so end points can be named in TOML files and on the command line::

    <variable>[.<layer>][:<transform>][@<when>]

``variable``
    A time-resolved observable (``scar_depth``, ``collagen_change``, ...) or a per-session output
    (``erythema_days``, ``oedema_days``, ``downtime_days``, ``pih_risk``, ``absorbed_amount``,
    ``absorbed_intact``, ``enhancement_ratio``):
    the ``time`` and ``session`` rows of :data:`microneedling.engine.variables.VARIABLES`.
``layer``
    ``papillary`` (default) or ``reticular``, for the layered observables (collagen, elastin, ...).
``transform``
    ``value`` (default), ``change`` (value − baseline, in the variable's units), ``percent_change``
    (100·(value − baseline)/baseline, %) or ``reduction`` (−percent_change: % improvement of a depth,
    diameter, width or melanin index). Only for time-resolved variables.
``when``
    ``end`` (default: each case's horizon), a day number (``@365``: days from the first session of
    the course) or ``last+N`` (N days after each case's last session). Per-session variables are
    summarised over the sessions instead, as their row's ``reduce`` says (sum of downtime days, max
    of PIH risk, mean of absorption), and take no ``@``.

Examples: ``scar_depth:reduction@last+90``, ``collagen_change.reticular@180``, ``erythema_days``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from microneedling.engine.variables import session_variables, time_variables, variable
from microneedling.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.engine.batch import BatchRun

TRANSFORMS = ("value", "change", "percent_change", "reduction")
LAYERS = ("papillary", "reticular")
"""Layer names of the grammar (the dermal layers of layered variables)."""


_GRAMMAR = re.compile(
    r"^(?P<var>[a-zA-Z_]+?)(?:\.(?P<layer>[a-z]+))?(?::(?P<tr>[a-z_]+))?(?:@(?P<when>[^@]+))?$"
)


@dataclass(frozen=True)
class EndpointSpec:
    """A parsed end point (see the module docstring for the grammar)."""

    variable: str
    layer: str = "papillary"
    transform: str = "value"
    when: str = "end"  # "end", "day:<d>" or "last:<d>"

    @property
    def per_session(self) -> bool:
        """A per-session variable, summarised over the course."""
        return variable(self.variable).kind == "session"

    @property
    def units(self) -> str:
        """Units of the end point's values (``%`` for the relative transforms)."""
        if not self.per_session and self.transform in ("percent_change", "reduction"):
            return "%"
        return variable(self.variable).units

    @property
    def text(self) -> str:
        """Canonical text form (parses back to the same spec)."""
        if self.per_session:
            return self.variable
        s = self.variable
        if self.layer != "papillary":
            s += f".{self.layer}"
        if self.transform != "value":
            s += f":{self.transform}"
        kind, _, num = self.when.partition(":")
        if kind == "day":
            s += f"@{num}"
        elif kind == "last":
            s += f"@last+{num}"
        return s

    def __str__(self) -> str:
        return self.text


def parse_endpoint(text: str, field: str = "endpoint") -> EndpointSpec:
    """Parse ``text`` (see the module docstring); errors name ``field``, the text and the grammar."""
    m = _GRAMMAR.match(str(text).strip())
    allowed = "<variable>[.<layer>][:<transform>][@end|@<day>|@last+<days>]"
    if m is None:
        raise InputError(field, text, allowed)
    var, layer, tr, when = m["var"], m["layer"], m["tr"], m["when"]
    readable = {v.name: v for v in (*time_variables(), *session_variables())}
    if var not in readable:
        raise InputError(field, text, f"a variable among {sorted(readable)}")
    if readable[var].kind == "session":
        if layer or tr or when:
            raise InputError(
                field, text, f"{var!r} is summarised over sessions: no .layer, :transform or @time"
            )
        return EndpointSpec(var)
    if layer is not None:
        if not readable[var].layered:
            raise InputError(field, text, f"{var!r} has no layers")
        if layer not in LAYERS:
            raise InputError(field, text, f"a layer among {LAYERS}")
    tr = tr or "value"
    if tr not in TRANSFORMS:
        raise InputError(field, text, f"a transform among {TRANSFORMS}")
    w = (when or "end").strip()
    if w == "end":
        when_s = "end"
    elif w.startswith("last+"):
        when_s = f"last:{_days(w[5:], field, text):g}"
    else:
        when_s = f"day:{_days(w, field, text):g}"
    return EndpointSpec(var, layer or "papillary", tr, when_s)


def _days(s: str, field: str, text: str) -> float:
    try:
        d = float(s)
    except ValueError:
        raise InputError(field, text, "a time @end, @<day> or @last+<days> (days)") from None
    if not np.isfinite(d) or d < 0:
        raise InputError(field, text, "a finite, non-negative number of days")
    return d


def read_times(run: BatchRun, spec: EndpointSpec) -> np.ndarray:
    """(C,) day at which ``spec`` is read for each case (NaN for per-session end points)."""
    C = run.n_cases
    if spec.per_session:
        return np.full(C, np.nan)
    kind, _, num = spec.when.partition(":")
    if kind == "end":
        return run.horizon_days.astype(float)
    if kind == "day":
        return np.full(C, float(num))
    days = np.where(run.prepared.session_mask, run.prepared.session_days, -np.inf)
    last = days.max(axis=1)
    last = np.where(np.isfinite(last), last, 0.0)
    return last + float(num)


def endpoint_values(run: BatchRun, spec: EndpointSpec | str) -> np.ndarray:
    """End point ``spec`` for every case of ``run``: (C,) floats in ``spec.units``.

    Time-resolved variables are linearly interpolated at the read time (clipped to the output grid);
    NaN where the variable does not apply to the case (e.g. ``scar_depth`` without a scar).
    """
    if isinstance(spec, str):
        spec = parse_endpoint(spec)
    if spec.per_session:
        x = run.per_session[spec.variable]
        reducers: dict[str, Callable[..., np.ndarray]] = {
            "sum": np.nansum,
            "max": np.nanmax,
            "mean": np.nanmean,
        }
        red = reducers[variable(spec.variable).reduce]
        has = np.any(~np.isnan(x), axis=1)  # inf (e.g. an unbounded ratio) is a value
        out = np.full(x.shape[0], np.nan)
        if np.any(has):
            out[has] = red(x[has], axis=1)
        return out
    x = run.observables[spec.variable]
    if x.ndim == 3:
        x = x[:, LAYERS.index(spec.layer), :]
    t = run.t
    tr = np.clip(read_times(run, spec), t[0], t[-1])
    i1 = np.clip(np.searchsorted(t, tr, side="left"), 1, len(t) - 1)
    i0 = i1 - 1
    w = (tr - t[i0]) / (t[i1] - t[i0])
    rows = np.arange(x.shape[0])
    v = (1.0 - w) * x[rows, i0] + w * x[rows, i1]
    if spec.transform == "value":
        return np.asarray(v)
    v0 = x[:, 0]
    if spec.transform == "change":
        return np.asarray(v - v0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = 100.0 * (v - v0) / v0
    return np.asarray(pct if spec.transform == "percent_change" else -pct)


def endpoint_table(run: BatchRun, specs: Sequence[EndpointSpec | str]) -> dict[str, np.ndarray]:
    """``{canonical text: (C,) values}`` for several end points."""
    out: dict[str, np.ndarray] = {}
    for s in specs:
        spec = parse_endpoint(s) if isinstance(s, str) else s
        out[spec.text] = endpoint_values(run, spec)
    return out


__all__ = [
    "LAYERS",
    "TRANSFORMS",
    "EndpointSpec",
    "endpoint_table",
    "endpoint_values",
    "parse_endpoint",
    "read_times",
]

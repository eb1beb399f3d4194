"""Pass/miss of a literature row against the model's prediction: one rule per kind of row.

The rows of ``data/literature.toml`` are of five kinds (:attr:`LiteratureRow.kind
<microneedling.studies.credibility.literature.LiteratureRow.kind>`); each has its rule, fixed
before any result (header of ``literature.toml``):

``value``
    ``|model - observed| <= tolerance``.
``bound``
    ``upper``: ``model <= observed + tolerance``; ``lower``: ``model >= observed - tolerance``.
``direction``
    Only the sign was reported: ``upper`` passes when ``model < 0``, ``lower`` when ``model > 0``
    (for a ratio contrast: below or above 1). A model exactly at "no effect" is a miss.
``two_arm``
    The contrast between two arms of one study (difference, or ratio when ``contrast = "ratio"``):
    ``|model - observed| <= tolerance``, and the model's contrast has the observed sign whenever
    the observed contrast is farther from "no effect" (0, or 1 for a ratio) than the tolerance.
``count``
    ``k`` of ``n`` patients: the two-sided exact binomial test of ``k`` of ``n`` at the model's
    probability gives ``p > ALPHA`` (0 of n is data: it fails a model whose probability makes no
    event implausible).

A non-finite prediction is a miss. Observed values and tolerances are taken in the units of the
prediction: the caller passes them when they differ from the row's (a relative change, see
:func:`microneedling.studies.credibility.calibrate.observed_value`); count rows take the model's
probability in the row's units (``%``, as ``compare = "course_incidence"`` gives it).

API (what :mod:`microneedling.studies.credibility.validate` calls):

* :func:`score` -> :class:`Score` for one row, from the nominal prediction and optionally the draws
  (then :attr:`Score.pass_fraction` is the fraction of draws that pass the same rule);
* :func:`two_arm_predictions` turns a ``predict_rows``-like function into predictions of the
  contrast for two-arm rows (both arms simulated, the comparator from the protocol's
  ``reference``), leaving other rows as they are.

This module computes no model output itself (``two_arm_predictions`` calls the function it is
given).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from microneedling.errors import InputError
from microneedling.studies.credibility.literature import LiteratureRow, Protocol

__all__ = ["ALPHA", "KINDS", "Score", "binomial_p_value", "score", "two_arm_predictions"]

ALPHA = 0.05
"""Significance level of the two-sided exact binomial test of count rows."""
KINDS: tuple[str, ...] = ("value", "bound", "direction", "two_arm", "count")


@dataclass(frozen=True)
class Score:
    """The pass/miss of one row, with the rule and the numbers it used.

    ``observed``, ``predicted`` and ``tolerance`` are in the prediction's units (``%`` for a count
    row's probability); ``p_value`` is set for count rows; ``pass_fraction`` when draws were given.
    """

    key: str
    kind: str
    passed: bool
    observed: float
    predicted: float
    tolerance: float | None
    rule: str
    detail: str
    p_value: float | None = None
    pass_fraction: float | None = None

    @property
    def status(self) -> str:
        """``pass`` or ``miss`` (the words of the validation table)."""
        return "pass" if self.passed else "miss"


def binomial_p_value(k: int, n: int, p: float) -> float:
    """Two-sided exact binomial p-value of ``k`` events in ``n`` at probability ``p``: the total
    probability of the outcomes no more likely than ``k`` (scipy's ``binomtest``)."""
    from scipy.stats import binomtest

    if not 0 <= k <= n or n <= 0:
        raise InputError("k", [k, n], "0 <= k <= n, n > 0")
    if not 0.0 <= p <= 1.0:
        raise InputError("p", p, "a probability in [0, 1]")
    # At p = 0 or 1 one outcome has all the probability: the p-value is 1 there and 0 elsewhere.
    # So below 1e-300 (scipy's binomial pmf overflows up to ~5e-307), where P(X >= 1) <= n·p.
    if p < 1e-300:
        return 1.0 if k == 0 else 0.0
    if p == 1.0:
        return 1.0 if k == n else 0.0
    return float(binomtest(int(k), int(n), float(p)).pvalue)


def _null(row: LiteratureRow) -> float:
    return 1.0 if row.contrast == "ratio" else 0.0


def _rule(row: LiteratureRow, kind: str) -> str:
    if kind == "value":
        return "|model - observed| <= tolerance"
    if kind == "bound":
        return (
            "model <= observed + tolerance"
            if row.bound == "upper"
            else "model >= observed - tolerance"
        )
    if kind == "direction":
        side = "below" if row.bound == "upper" else "above"
        return f"model {side} {_null(row):g} (sign only)"
    if kind == "two_arm":
        return (
            "|model - observed| <= tolerance, and the observed sign when the observed contrast is "
            "farther from no effect than the tolerance"
        )
    return f"two-sided exact binomial p > {ALPHA:g} at the model's probability"


def _passes(
    row: LiteratureRow, kind: str, pred: np.ndarray, obs: float, tol: float | None
) -> np.ndarray:
    """The rule applied elementwise (NaN or infinite predictions fail)."""
    finite = np.isfinite(pred)
    x = np.where(finite, pred, 0.0)
    if kind == "count":
        assert row.k is not None and row.n is not None
        scale = 100.0 if row.units == "%" else 1.0
        prob = np.clip(x / scale, 0.0, 1.0)
        ok = np.array(
            [binomial_p_value(row.k, row.n, float(q)) > ALPHA for q in prob.ravel()], dtype=bool
        ).reshape(prob.shape)
        return finite & ok
    if kind == "direction":
        null = _null(row)
        return finite & ((x < null) if row.bound == "upper" else (x > null))
    assert tol is not None
    if kind == "bound":
        return finite & ((x <= obs + tol) if row.bound == "upper" else (x >= obs - tol))
    close = np.abs(x - obs) <= tol
    if kind == "two_arm":
        null = _null(row)
        if abs(obs - null) > tol:
            close = close & (np.sign(x - null) == math.copysign(1.0, obs - null))
    return finite & close


def score(
    row: LiteratureRow,
    predicted: float,
    *,
    observed: float | None = None,
    tolerance: float | None = None,
    draws: Sequence[float] | np.ndarray | None = None,
) -> Score:
    """Score one row against the model's nominal prediction (and, optionally, its draws).

    ``observed`` and ``tolerance`` default to the row's ``value`` and ``tolerance``; pass them in the
    prediction's units when those differ. Value, bound and two-arm rows need a tolerance; direction
    and count rows use none.

    Raises
    ------
    InputError
        A value, bound or two-arm row without a positive tolerance.
    """
    kind = row.kind
    obs = float(row.value if observed is None else observed)
    tol = row.tolerance if tolerance is None else tolerance
    if kind in ("value", "bound", "two_arm"):
        if tol is None or not tol > 0:
            raise InputError(f"{row.key}.tolerance", tol, f"a positive tolerance for a {kind} row")
        tol = float(tol)
    else:
        tol = None
    nominal = float(predicted)
    passed = bool(_passes(row, kind, np.array([nominal]), obs, tol)[0])
    fraction = None
    if draws is not None:
        d = np.asarray(draws, dtype=float).ravel()
        if d.size:
            fraction = float(np.mean(_passes(row, kind, d, obs, tol)))
    p_value = None
    if not math.isfinite(nominal):
        detail = "no finite prediction"
    elif kind == "count":
        assert row.k is not None and row.n is not None
        scale = 100.0 if row.units == "%" else 1.0
        prob = min(max(nominal / scale, 0.0), 1.0)
        p_value = binomial_p_value(row.k, row.n, prob)
        detail = f"{row.k} of {row.n} at p = {prob:.4g}: binomial p = {p_value:.3g}"
    elif kind == "direction":
        detail = f"model {nominal:.4g} vs {_null(row):g}"
    elif kind == "bound":
        limit = obs + tol if row.bound == "upper" else obs - tol  # type: ignore[operator]
        detail = f"model {nominal:.4g} vs limit {limit:.4g}"
    else:
        detail = f"|{nominal:.4g} - {obs:.4g}| = {abs(nominal - obs):.4g} vs {tol:.4g}"
    return Score(
        key=row.key,
        kind=kind,
        passed=passed,
        observed=obs,
        predicted=nominal,
        tolerance=tol,
        rule=_rule(row, kind),
        detail=detail,
        p_value=p_value,
        pass_fraction=fraction,
    )


PredictRows = Callable[..., np.ndarray]


def two_arm_predictions(
    lit_rows: Sequence[LiteratureRow],
    sets: Sequence[Any],
    protocols: Mapping[str, Protocol],
    settings: Mapping[str, Any],
    predict: PredictRows,
) -> np.ndarray:
    """Predictions (S, R) with two-arm rows replaced by their contrast.

    ``predict(rows, sets, protocols, settings)`` is a ``predict_rows``-like function (one batched
    solve). It runs once for every row as its protocol says (the arm), and once more for the
    two-arm rows whose protocol has a comparator arm (``reference``), with that arm's protocol; the
    row's prediction becomes arm - comparator (or arm / comparator for ``contrast = "ratio"``). An
    untreated comparator contributes 0 (its change is 0 by construction; a ratio to it is NaN).
    Rows that are not two-arm, or whose protocol is not evaluable, are as ``predict`` gives them.
    """
    arm = np.array(predict(lit_rows, sets, protocols, settings), dtype=float)
    idx, refs, ref_rows = [], {}, []
    for j, r in enumerate(lit_rows):
        p = protocols[r.key]
        if not r.two_arm or not p.evaluable or p.reference is None:
            continue
        if p.untreated_reference:
            if r.contrast == "ratio":
                arm[:, j] = np.nan
            continue
        ref = p.reference_protocol()
        assert ref is not None
        refs[r.key] = ref
        ref_rows.append(r)
        idx.append(j)
    if ref_rows:
        other = np.array(predict(ref_rows, sets, refs, settings), dtype=float)
        for i, (j, r) in enumerate(zip(idx, ref_rows, strict=True)):
            if r.contrast == "ratio":
                with np.errstate(divide="ignore", invalid="ignore"):
                    arm[:, j] = arm[:, j] / other[:, i]
            else:
                arm[:, j] = arm[:, j] - other[:, i]
    return arm

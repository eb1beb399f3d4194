"""Statistics over an ensemble axis: percentiles of many read-outs at once.

``numpy.nanpercentile(stack, q, axis=0)`` falls back to one Python-level 1-D quantile per
read-out as soon as any NaN is present (outputs that do not apply to a site or session are NaN), which
cost more than half of a 32-draw :func:`~microneedling.engine.simulate.simulate` (about 32,000 calls).
:func:`nan_percentiles` does the same arithmetic on whole arrays: one sort along the ensemble axis,
the count of valid members per read-out, and numpy's "linear" rule (Hyndman & Fan's 7th: virtual index
``(n - 1) q``, interpolated with numpy's two-sided ``lerp``), so its results are bit-identical to
``numpy.nanpercentile`` (tested), without its all-NaN warning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["nan_percentiles"]


def nan_percentiles(stack: np.ndarray, q: Sequence[float] | np.ndarray) -> np.ndarray:
    """Percentiles ``q`` (0-100) of ``stack`` along axis 0, ignoring NaN.

    Parameters
    ----------
    stack:
        (M, ...) ensemble of M members of any read-out shape.
    q:
        Percentiles in [0, 100].

    Returns
    -------
    (len(q), ...) array; NaN where a read-out has no valid member.
    """
    a = np.asarray(stack, dtype=float)
    qs = np.asarray(q, dtype=float)
    if qs.ndim != 1 or np.any((qs < 0) | (qs > 100)) or not np.all(np.isfinite(qs)):
        raise ValueError(f"q: percentiles in [0, 100] expected, got {q!r}")
    if a.ndim == 0 or a.shape[0] == 0:
        raise ValueError("stack: at least one member along axis 0 expected")
    n = np.sum(~np.isnan(a), axis=0)  # valid members per read-out
    ordered = np.sort(a, axis=0)  # NaN sort last
    out = np.empty((len(qs), *a.shape[1:]))
    for k, fraction in enumerate(np.true_divide(qs, 100)):
        virtual = (n - 1) * fraction
        prev = np.floor(virtual)
        nxt = prev + 1
        top = virtual >= n - 1
        prev = np.where(top, n - 1, prev)
        nxt = np.where(top, n - 1, nxt)
        low = virtual < 0  # no valid member: n = 0
        prev = np.where(low, 0, prev).astype(np.intp)
        nxt = np.where(low, 0, nxt).astype(np.intp)
        gamma = virtual - prev
        below = np.take_along_axis(ordered, prev[None, ...], axis=0)[0]
        above = np.take_along_axis(ordered, nxt[None, ...], axis=0)[0]
        with np.errstate(invalid="ignore"):  # inf - inf: NaN, as numpy gives
            diff = above - below
            lerp = below + diff * gamma
            out[k] = np.where(gamma >= 0.5, above - diff * (1 - gamma), lerp)
    return out

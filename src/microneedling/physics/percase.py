"""Coefficients of several parameter sets side by side: one value per case.

A coefficient dataclass of the observation maps (``observe.ObserveParameters`` and the
``RednessParameters``, ``PigmentParameters`` inside it) holds numbers, one parameter set's. An
ensemble observes its cases under many sets at once with the same classes whose fields are
*columns*: :func:`stack` puts each case's value of a number in row c of a (C, 1) array (which
broadcasts against the (C, T) and (C, K) arrays of the maps) and a tuple of n numbers in an
(C, n) array. The maps accept either form; where they act on a subset of the cases they select
the same rows of the coefficients with :func:`take` (which returns a set of numbers as it is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["at_least", "at_rows", "distinct_rows", "is_stacked", "stack", "take"]

T = TypeVar("T")


def stack(objs: Sequence[T], index: ArrayLike) -> T:
    """``objs[index[c]]``'s coefficients in row c, for every case c: number fields as (C, 1)
    arrays, tuple fields as (C, n) arrays, nested coefficient dataclasses likewise; the values as
    they are (no arithmetic on them)."""
    if not objs:
        raise ValueError("percase.stack: no coefficients to stack")
    idx = np.asarray(index, dtype=np.intp)
    first = objs[0]
    kw: dict[str, Any] = {}
    for f in fields(first):  # type: ignore[arg-type]
        values = [getattr(o, f.name) for o in objs]
        if is_dataclass(values[0]):
            kw[f.name] = stack(values, idx)
        elif isinstance(values[0], tuple):
            kw[f.name] = np.array(values, dtype=float)[idx]
        else:
            kw[f.name] = np.array(values, dtype=float)[idx][:, None]
    return replace(first, **kw)  # type: ignore[type-var]


def take(obj: T, rows: np.ndarray | slice) -> T:
    """``obj`` with the rows ``rows`` of each of its array fields (nested dataclasses too): the
    coefficients of a subset of the cases. Coefficients that are numbers are returned as they
    are."""
    kw: dict[str, Any] = {}
    for name in _field_names(type(obj)):
        v = getattr(obj, name)
        if isinstance(v, float):  # most coefficients of one set
            continue
        if isinstance(v, np.ndarray):
            kw[name] = v[rows]
        elif is_dataclass(v) and not isinstance(v, type):
            sub = take(v, rows)
            if sub is not v:
                kw[name] = sub
    return replace(obj, **kw) if kw else obj  # type: ignore[type-var]


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """The field names of a dataclass, read once per class."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def is_stacked(value: Any) -> bool:
    """Whether a coefficient is one value per case (an array) rather than a number or a tuple."""
    return isinstance(value, np.ndarray)


def at_rows(value: Any, rows: np.ndarray | slice) -> Any:
    """A coefficient for the cases ``rows``: its rows if it is one value per case, else itself."""
    return value[rows] if isinstance(value, np.ndarray) else value


def at_least(value: Any, floor: float) -> Any:
    """A coefficient raised to ``floor``: ``max(value, floor)`` for a number (a number still),
    ``np.maximum`` of each case's value for one value per case."""
    return np.maximum(value, floor) if isinstance(value, np.ndarray) else max(value, floor)


def distinct_rows(*arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct cases of a batch: ``first`` (U,) indexes the first case of each distinct
    input, in order of first appearance, and ``inverse`` (B,) maps every case to its entry of
    ``first`` (so ``x[first][inverse]`` is ``x``).

    ``arrays`` share their first axis, the case (e.g. parameters (B, P), session days (B, K),
    impulses (B, K, S)); two cases are alike when every input is equal bit for bit (NaN equals a
    NaN of the same bits; signed zeros stay apart). A row-by-row computation done on ``first``
    only and expanded with ``inverse`` gives every case the numbers it would have had.
    """
    b = arrays[0].shape[0]
    flat = np.ascontiguousarray(
        np.concatenate([np.asarray(a, dtype=float).reshape(b, -1) for a in arrays], axis=1)
    )
    seen: dict[bytes, int] = {}
    inverse = np.fromiter(
        (seen.setdefault(key, len(seen)) for key in map(bytes, flat)), dtype=np.intp, count=b
    )
    first = np.empty(len(seen), dtype=np.intp)
    first[inverse[::-1]] = np.arange(b)[::-1]  # the earliest case of each: the last write wins
    return first, inverse

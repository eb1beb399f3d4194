"""xarray without its duck-array probes: :func:`import_xarray` for code that builds Datasets.

To tell a NumPy array from a Dask, pint, CuPy or sparse array, xarray imports each of those
libraries the first time it checks (``xarray.namedarray.pycompat.DuckArrayModule``): building the
first Dataset of a process imports ``dask.array`` (with scipy.sparse, scipy.fftpack and numbagg
behind it) and pint, 0.3-0.45 s of a single course's 2.4 s command, for arrays that are all NumPy.

An object of one of those array types cannot exist before its library has been imported, so
until it has been, the answer to "is this a Dask (pint, ...) array?" is no without importing
anything. :func:`quiet_duck_array_probes` puts that answer into xarray's cache of probed modules:
an entry whose array types are ``()`` while the library is not in :data:`sys.modules`, and which
hands over to xarray's own probe (kept from then on) as soon as it is, or whenever something asks
for more than the array types (the module, its version, whether it is installed). So a process
that goes on to use Dask arrays (a trial, a sensitivity run) sees exactly what xarray would have
told it. If xarray moves these internals, nothing is changed and the imports simply happen (the
import test of the single-course path says so).

Likewise, ``xarray.namedarray.utils.is_dask_collection`` imports Dask (0.08-0.1 s: ``dask``
brings ``dask.delayed`` and jinja2) to ask ``dask.base.is_dask_collection``, whose first test is
whether the object has a ``__dask_graph__`` attribute; a NumPy array has none. The wrapper asks
that first and calls xarray's function only for objects that have one, so its answers are the same.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import Any

__all__ = ["PROBED", "import_xarray", "quiet_duck_array_probes"]

#: xarray's duck-array libraries, with the module that must be imported before one of their
#: arrays can exist (Dask's array class lives in ``dask.array``)
PROBED: dict[str, str] = {
    "dask": "dask.array",
    "pint": "pint",
    "cupy": "cupy",
    "sparse": "sparse",
    "cubed": "cubed",
}

_LOCK = threading.Lock()
_INSTALLED: list[bool] = []


def import_xarray() -> ModuleType:
    """``import xarray``, with :func:`quiet_duck_array_probes` in place."""
    import xarray

    quiet_duck_array_probes()
    return xarray


def quiet_duck_array_probes() -> bool:
    """Answer xarray's duck-array probes without importing libraries that are not yet imported
    (see the module docstring). Idempotent; returns whether the cache entries are in place."""
    if _INSTALLED:
        return _INSTALLED[0]
    with _LOCK:
        if not _INSTALLED:
            _INSTALLED.append(_install())
    return _INSTALLED[0]


def _install() -> bool:
    try:
        from xarray.namedarray import pycompat
    except ImportError:  # pragma: no cover - an xarray without namedarray
        return False
    found_cache = getattr(pycompat, "_cached_duck_array_modules", None)
    found_base = getattr(pycompat, "DuckArrayModule", None)
    if not isinstance(found_cache, dict) or not isinstance(found_base, type):
        return False  # pragma: no cover - xarray moved its probe: it runs as it is
    cache: dict[str, Any] = found_cache
    base: type[Any] = found_base

    class NotYetImported(base):
        """xarray's probe of ``name``, deferred until ``name``'s arrays can exist."""

        def __init__(self, name: str, marker: str) -> None:  # no import here
            self._name = name
            self._marker = marker

        def _real(self) -> Any:
            # xarray's own probe, which replaces this entry in its cache
            real = cache.get(self._name)
            if real is self or real is None:
                real = base(self._name)
                cache[self._name] = real
            return real

        @property
        def type(self) -> tuple[type[Any], ...]:
            if self._marker not in sys.modules:
                return ()  # no array of the library can exist yet
            return self._real().type

        @property
        def module(self) -> ModuleType | None:
            return self._real().module

        @property
        def version(self) -> Any:
            return self._real().version

        @property
        def available(self) -> bool:
            return bool(self._real().available)

    for name, marker in PROBED.items():
        if name not in cache and marker not in sys.modules:
            cache[name] = NotYetImported(name, marker)
    _quiet_dask_collection_probe()
    return True


def _quiet_dask_collection_probe() -> None:
    """Wrap ``xarray.namedarray.utils.is_dask_collection`` (the global that ``is_duck_dask_array``
    calls) so that an object without ``__dask_graph__`` is answered without importing Dask: that
    is ``dask.base.is_dask_collection``'s own first test, so the answers are unchanged."""
    from xarray.namedarray import utils

    original = getattr(utils, "is_dask_collection", None)
    if original is None or getattr(original, "_microneedling", False):
        return  # pragma: no cover - xarray moved it, or already wrapped

    def is_dask_collection(x: object) -> bool:
        if not hasattr(x, "__dask_graph__"):
            return False
        return bool(original(x))

    is_dask_collection._microneedling = True  # type: ignore[attr-defined]
    utils.is_dask_collection = is_dask_collection  # type: ignore[assignment]

"""Freshness of numba's on-disk cache across source files.

numba keys a cached function on the hash of its own source file only. The integrator and the ODE
registry call functions of other files (the healing model's right-hand side and Jacobian), so an
edit there would silently run stale cached machine code. :func:`bind_cache_to_sources` mixes a hash
of every source file the compiled code depends on into each dispatcher's cache key. This module
reads the package's own Python source files for that hash; it reads no data.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["bind_cache_to_sources", "jitted_in", "source_files", "source_stamp"]


def _package_dependency_files(module: types.ModuleType, seen: set[str]) -> None:
    """Add the source file of ``module`` and of the package modules it references (recursively)."""
    path = getattr(module, "__file__", None)
    if path is None or path in seen:
        return
    seen.add(path)
    for value in vars(module).values():
        if isinstance(value, types.ModuleType):
            dep = value
        else:
            modname = getattr(value, "__module__", None) or getattr(
                getattr(value, "py_func", None), "__module__", None
            )
            if not isinstance(modname, str):
                continue
            dep = sys.modules.get(modname)  # type: ignore[assignment]
        if dep is not None and dep.__name__.startswith("microneedling."):
            _package_dependency_files(dep, seen)


def source_files(module: types.ModuleType) -> list[str]:
    """Source files whose content the compiled code of ``module`` depends on: its own file and
    those of the package modules it references, recursively (the registry: itself, healing, ...)."""
    seen: set[str] = set()
    _package_dependency_files(module, seen)
    return sorted(seen)


def source_stamp(files: Iterable[str]) -> bytes:
    """SHA-256 over the contents of ``files`` (order-independent in the set of paths)."""
    h = hashlib.sha256()
    for f in sorted(set(files)):
        h.update(f.encode())
        h.update(Path(f).read_bytes())
    return h.digest()


def bind_cache_to_sources(dispatchers: Iterable[Any], files: Iterable[str]) -> int:
    """Make each numba dispatcher's on-disk cache stale whenever any of ``files`` changes.

    numba keys a cached function on the hash of its own source file only; this mixes the hash of
    ``files`` (the files of every function it calls) into that key. It touches a private numba
    attribute, so it degrades to numba's default behaviour if that attribute is not there.
    Returns the number of dispatchers re-stamped.
    """
    stamp = source_stamp(files)
    done = 0
    for d in dispatchers:
        cache_file = getattr(getattr(d, "_cache", None), "_cache_file", None)
        old = getattr(cache_file, "_source_stamp", None)
        if old is None:
            continue
        new = hashlib.sha256(repr(old).encode() + stamp).digest()
        cache_file._source_stamp = new  # type: ignore[union-attr]
        done += 1
    return done


def jitted_in(module_name: str, namespace: dict[str, Any]) -> list[Any]:
    """The numba dispatchers defined (not merely imported) in a module namespace."""
    return [
        v
        for v in namespace.values()
        if inspect.isfunction(getattr(v, "py_func", None)) and v.py_func.__module__ == module_name
    ]

"""xarray without its duck-array probes (microneedling.engine.quiet_xarray).

Each case runs in a fresh interpreter: what is asserted is which libraries a process has imported,
and the answers xarray gives once they have been.
"""

from __future__ import annotations

import pytest

from tests.snippets import run_python

_BUILD_THEN_USE_DASK_AND_PINT = """
import sys
import numpy as np
from microneedling.engine.result import labelled_dataset
from microneedling.engine.quiet_xarray import PROBED

ds = labelled_dataset(
    {"a": (("site", "time"), np.arange(6.0).reshape(2, 3), {"units": "1"}),
     "n": (("site",), np.array([1, 2]), {})},
    {"site": (["cheek", "nose"], {}), "time": (np.array([0.0, 1.0, 2.0]), {"units": "d"})},
    {"title": "t"},
)
_ = ds.sel(site="nose").isel(time=1)["a"].values, ds["a"].sum("time").values
print("built", sorted(m for m in ("dask", "pint", "cupy", "sparse", "cubed") if m in sys.modules))

from xarray.namedarray import pycompat
from xarray.namedarray.utils import is_duck_dask_array
import xarray as xr
import dask
import dask.array as da
import pint

lazy = xr.DataArray(da.ones((4,), chunks=2), dims="x")
print("dask", pycompat.array_type("dask") == (da.Array,), is_duck_dask_array(lazy.data),
      lazy.chunks, float((lazy * 2).sum().compute()))
print("numpy is not dask", is_duck_dask_array(np.ones(2)))
q = pint.UnitRegistry().Quantity(np.array([1.0, 2.0]), "m")
print("pint", pycompat.array_type("pint") == (pint.Quantity,),
      pycompat.to_numpy(q).tolist())
print("versions", str(pycompat.mod_version("dask")) == dask.__version__,
      pycompat._get_cached_duck_array_module("pint").available)
"""


@pytest.mark.slow
def test_a_dataset_is_built_without_dask_or_pint_and_they_work_when_imported_later() -> None:
    """Building and indexing a labelled Dataset imports none of xarray's duck-array libraries;
    a later import of Dask and pint in the same process is recognised as xarray would (array
    types, chunks, versions, conversion to NumPy)."""
    assert run_python(_BUILD_THEN_USE_DASK_AND_PINT) == [
        "built []",
        "dask True True ((2, 2),) 8.0",
        "numpy is not dask False",
        "pint True [1.0, 2.0]",
        "versions True True",
    ]


_DASK_FIRST = """
import dask.array as da
import xarray as xr
from microneedling.engine.quiet_xarray import import_xarray
from xarray.namedarray import pycompat
xr = import_xarray()
print(type(pycompat._get_cached_duck_array_module("dask")).__name__,
      xr.DataArray(da.ones((4,), chunks=2), dims="x").chunks)
"""


@pytest.mark.slow
def test_a_library_imported_before_is_left_to_xarray() -> None:
    """When Dask is already imported, xarray's own probe is kept (nothing is deferred)."""
    assert " ".join(run_python(_DASK_FIRST)).split() == ["DuckArrayModule", "((2,", "2),)"]


def test_the_dask_collection_probe_answers_as_xarrays() -> None:
    """The wrapped ``is_dask_collection`` gives dask's answers: no for NumPy arrays, classes and
    objects without ``__dask_graph__``, dask's own verdict for objects that have one."""
    import numpy as np
    from xarray.namedarray import utils

    from microneedling.engine.quiet_xarray import quiet_duck_array_probes

    assert quiet_duck_array_probes()
    wrapped = utils.is_dask_collection
    assert getattr(wrapped, "_microneedling", False)

    class Graph:
        def __dask_graph__(self) -> dict[str, int]:
            return {"a": 1}

    class NoGraph:
        def __dask_graph__(self) -> None:
            return None

    import dask.array as da
    from dask.base import is_dask_collection

    cases = [np.ones(3), 1.0, "x", Graph, Graph(), NoGraph(), da.ones(2)]
    assert [wrapped(x) for x in cases] == [is_dask_collection(x) for x in cases]
    assert [wrapped(x) for x in cases] == [False, False, False, False, True, False, True]

"""The labelled result is built without xarray's merge (engine.result.labelled_dataset) and is the
same Dataset, and the same NetCDF file, as the public ``xr.Dataset`` constructor makes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest
import xarray as xr

from microneedling.course.model import Course
from microneedling.engine.result import labelled_dataset
from microneedling.engine.simulate import _json_list, _record, _records_json, simulate
from microneedling.io import write_netcdf_atomic
from microneedling.parameters.parameter_set import load_parameters
from microneedling.vocabulary import LAYERS
from tests.paths import EXAMPLES


def _public(ds: xr.Dataset, course: Course) -> xr.Dataset:
    """``ds`` rebuilt the way simulate built its Dataset before labelled_dataset: data variables as
    (dims, array, attrs) tuples and the coordinates as lists, merged by ``xr.Dataset``."""
    data = {k: (v.dims, v.values, dict(v.attrs)) for k, v in ds.data_vars.items()}
    coords = {
        "patient": ["patient-0"],
        "site": [s.name for s in course.sites],
        "layer": list(LAYERS),
        "time": ("time", ds["time"].values, dict(ds["time"].attrs)),
        "session": np.arange(ds.sizes["session"]),
    }
    return xr.Dataset(data_vars=data, coords=coords, attrs=dict(ds.attrs))


def _encoding(v: xr.Variable) -> dict[str, Any]:
    """A variable's encoding without the file it was read from, NaN written as a string."""
    return {k: repr(x) for k, x in v.encoding.items() if k != "source"}


def _same_in_memory(a: xr.Dataset, b: xr.Dataset) -> None:
    xr.testing.assert_identical(a, b)
    assert list(a.variables) == list(b.variables)  # data variables first, then coordinates
    assert list(a.coords) == list(b.coords) and list(a.dims) == list(b.dims)
    assert list(a.attrs) == list(b.attrs)
    for k in b.variables:
        va, vb = a.variables[k], b.variables[k]
        assert type(va) is type(vb) and va.dtype == vb.dtype and va.dims == vb.dims, k
        assert list(va.attrs) == list(vb.attrs) and _encoding(va) == _encoding(vb), k
    assert list(a.xindexes) == list(b.xindexes)
    for k in b.xindexes:
        assert type(a.xindexes[k]) is type(b.xindexes[k])
        assert a.indexes[k].dtype == b.indexes[k].dtype and a.indexes[k].equals(b.indexes[k])


def _netcdf_layout(path: Path) -> dict[str, Any]:
    """Everything of a NetCDF file but its bytes: dimensions, global attributes, and per variable
    its dims, type, attributes (in order), storage, filters and values."""
    with netCDF4.Dataset(path) as nc:
        out: dict[str, Any] = {
            "format": nc.data_model,
            "dims": [(d, len(nc.dimensions[d])) for d in nc.dimensions],
            "attrs": [(k, nc.getncattr(k)) for k in nc.ncattrs()],
        }
        for name, v in nc.variables.items():
            values = np.asarray(v[...])
            out[name] = (
                v.dimensions,
                str(v.dtype),
                [(k, str(v.getncattr(k))) for k in v.ncattrs()],
                v.chunking(),
                v.filters(),
                v.endian(),
                values.tolist() if values.dtype == object else values.tobytes(),
            )
    return out


@pytest.mark.parametrize(
    ("example", "draws"),
    [("acne-scars-rolling-cheek", 0), ("neck-rejuvenation", 4), ("melasma-tranexamic-acid", 3)],
)
def test_result_is_the_dataset_and_file_of_the_public_constructor(
    example: str, draws: int, tmp_path: Path
) -> None:
    course = Course.from_file(EXAMPLES / f"{example}.toml")
    ds = simulate(course, draws=draws, seed=3).dataset
    ref = _public(ds, course)
    _same_in_memory(ds, ref)
    ours = write_netcdf_atomic(ds, tmp_path / "ours.nc")
    theirs = write_netcdf_atomic(ref, tmp_path / "theirs.nc")
    assert _netcdf_layout(ours) == _netcdf_layout(theirs)
    with xr.open_dataset(ours) as a, xr.open_dataset(theirs) as b:
        _same_in_memory(a.load(), b.load())


def _mixed_inputs() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    rng = np.random.default_rng(1)
    data = {
        "f": (("patient", "site", "time"), rng.normal(size=(1, 2, 5)), {"units": "1"}),
        "with_nan": (("patient", "site"), np.array([[np.nan, 2.0]]), {"long_name": "x"}),
        "ints": (("site",), np.array([3, 4]), {}),
        "flags": (("site", "time"), rng.normal(size=(2, 5)) > 0, {"units": "1"}),
        "f32": (("time",), np.arange(5, dtype=np.float32), {}),
        "view": (("site",), rng.normal(size=(2, 3))[:, 1], {}),  # not contiguous
        "listed": (("site",), [1.5, 2.5], {}),  # a list: converted as xarray converts it
    }
    coords = {
        "patient": (["patient-0"], {}),
        "site": (["cheek", "forehead"], {"long_name": "treated site"}),
        "time": (np.linspace(0.0, 4.0, 5), {"units": "d"}),
    }
    return data, coords, {"title": "t", "n": 3}


def test_direct_and_public_constructors_agree_on_every_kind_of_array(tmp_path: Path) -> None:
    data, coords, attrs = _mixed_inputs()
    fast = labelled_dataset(data, coords, attrs)
    slow = labelled_dataset(data, coords, attrs, direct=False)
    _same_in_memory(fast, slow)
    assert fast["ints"].dtype == np.int64 and fast["flags"].dtype == bool
    assert fast["f32"].dtype == np.float32 and fast["site"].dtype.kind == "U"
    a = write_netcdf_atomic(fast, tmp_path / "a.nc")
    b = write_netcdf_atomic(slow, tmp_path / "b.nc")
    assert _netcdf_layout(a) == _netcdf_layout(b)


def test_inconsistent_dimension_sizes_are_refused_on_the_direct_path() -> None:
    data, coords, attrs = _mixed_inputs()
    data["bad"] = (("site",), np.zeros(3), {})  # site has 2 entries
    with pytest.raises(ValueError, match="site"):
        labelled_dataset(data, coords, attrs)


def test_reused_coordinates_are_not_shared_between_results() -> None:
    data, coords, attrs = _mixed_inputs()
    first = labelled_dataset(data, coords, attrs)
    first["site"].attrs["note"] = "edited"
    first["patient"].attrs.clear()
    second = labelled_dataset(data, coords, attrs)
    assert dict(second["site"].attrs) == {"long_name": "treated site"}
    assert "note" not in coords["site"][1]
    with pytest.raises(ValueError, match="read-only"):
        first["site"].values[0] = "neck"
    assert list(second["site"].values) == ["cheek", "forehead"]
    # a long numeric coordinate (a course's output times) is kept too, on its own read-only copy
    times = np.linspace(0.0, 365.0, 300)
    data_t = {"x": (("time",), np.zeros(300), {})}
    kept = labelled_dataset(data_t, {"time": (times, {"units": "d"})}, attrs)
    times[0] = -1.0  # the caller's array changes afterwards: neither dataset follows
    again = labelled_dataset(
        data_t, {"time": (np.linspace(0.0, 365.0, 300), {"units": "d"})}, attrs
    )
    for ds in (kept, again):
        assert ds["time"].values[0] == 0.0 and not np.shares_memory(ds["time"].values, times)
        with pytest.raises(ValueError, match="read-only"):
            ds["time"].values[1] = 5.0
    # an unhashable attribute is fine (not cached)
    odd = labelled_dataset(data, {**coords, "site": (["a", "b"], {"x": [1, 2]})}, attrs)
    assert odd["site"].attrs["x"] == [1, 2]


def test_recorded_parameters_and_sources_are_the_json_of_their_records() -> None:
    ps = load_parameters().recording()
    names = [n for n in ps.names() if n.startswith(("healing.", "observe."))]
    scalar = next(n for n in names if isinstance(ps.parameters[n].value, float))
    assert any(isinstance(ps.parameters[n].value, dict) for n in names)  # tables too
    want = json.dumps([_record(ps, n, {}) for n in names])
    assert _records_json(ps, names, {}) == want
    assert _records_json(ps, names, {}) == want  # the second time from the texts kept
    # an edited set has new numbers: its records say so
    v = ps.parameters[scalar].value
    edited = ps.with_values({scalar: 0.5 * v})
    rec = json.loads(_records_json(edited, names, {}))[names.index(scalar)]
    assert rec["value"] == 0.5 * v and rec["kind"] == "user" and rec["low"] is None
    # a calibrated member carries the posterior's median and interval
    cal = {scalar: {"median": 1.5 * v, "low": v, "high": 2.0 * v}}
    assert _records_json(ps, names, cal) == json.dumps([_record(ps, n, cal) for n in names])
    assert json.loads(_records_json(ps, names, cal))[names.index(scalar)]["kind"] == "calibrated"
    assert _records_json(ps, names, {}) == want  # and the plain records are unchanged

    def source(r: Any) -> dict[str, str]:
        return {"key": r.key, "citation": r.citation, "url": r.url, "note": r.note}

    refs = ps.references(names)
    assert len(refs) > 10
    assert _json_list(refs, source) == json.dumps([source(r) for r in refs])
    assert _json_list(refs[:3], source) == json.dumps([source(r) for r in refs[:3]])
    assert _json_list([], source) == "[]"

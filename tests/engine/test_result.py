"""Result: typed access to what a run recorded about itself, for every writer and reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microneedling.course.model import Course
from microneedling.engine.result import ParameterRecord, Result
from microneedling.engine.simulate import simulate
from microneedling.errors import CourseValidationError
from tests.conftest import COURSE_NAME, COURSE_TOML, SITES, USED_PARAMETERS, WARNINGS
from tests.paths import EXAMPLES


def test_accessors_of_the_synthetic_result(synthetic_result: Result) -> None:
    r = synthetic_result
    assert r.course_name == COURSE_NAME and r.sites == list(SITES)
    assert r.course == Course.from_toml_text(COURSE_TOML)
    assert r.warnings == WARNINGS
    assert r.seed == 12345 and r.n_draws == 32
    assert r.parameter_names == sorted(USED_PARAMETERS)
    assert not r.records_parameters  # names only: no value or source recorded
    assert all(p.value is None for p in r.parameters_used)
    assert r.threshold("erythema") == pytest.approx(0.2) and r.threshold("fibroblasts") is None
    assert r.disclaimer and COURSE_NAME in repr(r)


def test_a_recorded_course_that_fails_validation_is_refused(synthetic_result: Result) -> None:
    synthetic_result.dataset.attrs["course_toml"] = 'name = "x"\n'
    with pytest.raises(CourseValidationError, match=r"result\.course_toml"):
        _ = synthetic_result.course


def test_warnings_of_every_shape(synthetic_result: Result) -> None:
    attrs = synthetic_result.dataset.attrs
    attrs["warnings"] = ""
    assert synthetic_result.warnings == []
    attrs["warnings"] = "plain text, not JSON"
    assert synthetic_result.warnings == ["plain text, not JSON"]
    attrs["warnings"] = json.dumps([{"site": "cheek", "why": "deep"}])
    assert synthetic_result.warnings == ["site: cheek; why: deep"]


def test_a_real_run_records_parameters_with_intervals_and_round_trips(tmp_path: Path) -> None:
    course = Course.from_file(EXAMPLES / "acne-scars-rolling-cheek.toml")
    res = simulate(course, draws=0)
    assert res.course == course and res.seed == course.seed and res.n_draws == 0
    assert res.records_parameters
    by_name = {p.name: p for p in res.parameters_used}
    mu = by_name["healing.mu_I"]
    assert isinstance(mu, ParameterRecord) and mu.units == "1/d" and mu.sources
    assert mu.low is not None and mu.high is not None and mu.low < mu.value < mu.high
    again = Result.from_netcdf(res.to_netcdf(tmp_path / "r.nc"))
    assert again.parameters_used == res.parameters_used and again.course == course
    assert [s.key for s in again.sources()] == [s.key for s in res.sources()]


def _endpoints_by_label(res: Result, times: list[float], layer: str) -> list[dict[str, object]]:
    """The end-point table by its definition: every value looked up by label (patient, site)."""
    import numpy as np

    from microneedling.engine.variables import endpoint_variables

    ds = res.dataset
    t_axis = ds["time"].values
    rows: list[dict[str, object]] = []
    for ep in endpoint_variables():
        if ep.name not in ds:
            continue

        def pick(name: str) -> object:
            if name not in ds:
                return None
            da = ds[name]
            return da.sel(layer=layer) if "layer" in da.dims else da

        da, lo, hi = pick(ep.name), pick(f"{ep.name}_low"), pick(f"{ep.name}_high")
        if ep.kind == "time":
            reads = []
            for t in times:
                i = min(int(np.searchsorted(t_axis, t - 1e-9)), len(t_axis) - 1)
                reads.append((float(t_axis[i]), {"time": i}))
        else:
            reads = [(float("nan"), None)]
        for t, sel in reads:
            arrays = []
            for a in (da, lo, hi):
                if a is not None:
                    a = a.isel(sel) if sel else getattr(a, ep.reduce)("session", skipna=True)
                arrays.append(a)
            for p in ds["patient"].values:
                for s in ds["site"].values:
                    value, low, high = (
                        np.nan if a is None else float(a.sel(patient=p, site=s)) for a in arrays
                    )
                    if value == value:
                        rows.append({"patient": str(p), "site": str(s), "variable": ep.name,
                                     "time_days": t, "value": value, "low": low, "high": high})  # fmt: skip
    return rows


def test_end_points_are_the_values_at_their_labels_whatever_the_order_of_dims() -> None:
    """Two patients (the second with other values), variables stored with their dims in another
    order: each row of the table is the value at its (patient, site) label."""
    import xarray as xr

    course = Course.from_file(EXAMPLES / "acne-scars-rolling-cheek.toml")
    res = simulate(course, draws=3)
    ds = res.dataset
    other = (ds * 1.5).assign_coords(patient=["patient-1"])
    both = xr.concat([ds, other], dim="patient", combine_attrs="override")
    for name in list(both.data_vars)[::2]:  # every other variable: dims reversed
        both[name] = both[name].transpose(*both[name].dims[::-1])
    multi = Result(both)
    for times, layer in (([40.0, 200.0, 1e9], "papillary_dermis"), ([0.0], "reticular_dermis")):
        table = multi.endpoints(times, layer=layer)
        cols = ["patient", "site", "variable", "time_days", "value", "low", "high"]
        got = table[cols].to_dict("records")
        want = _endpoints_by_label(multi, times, layer)
        assert len(got) == len(want) > 0
        for g, w in zip(got, want, strict=True):
            assert g.keys() == w.keys()
            for k in g:
                same = g[k] == w[k] or (g[k] != g[k] and w[k] != w[k])  # NaN == NaN here
                assert same, (k, g, w)
        assert {r["patient"] for r in got} == {"patient-0", "patient-1"}

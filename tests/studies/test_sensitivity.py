"""Sobol sensitivity: SALib wiring (Ishigami, analytic), prior mapping, chunked batched runs,
reproducibility, a structurally irrelevant parameter, and field-named refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import microneedling as mn
from microneedling.errors import InputError
from microneedling.studies.sensitivity import (
    indices_table,
    ishigami,
    ishigami_indices,
    parameter_sets,
    parameter_values,
    runs_needed,
    sobol_analyze,
    sobol_design,
    sobol_indices,
    unit_to_z,
)
from tests.paths import EXAMPLES

Q95 = 1.6448536269514722

# a driver of the scar end point, two healing rates, and one parameter that the scar end point
# cannot depend on (the pores' support share only enters the pore observable)
NAMES = ["observe.scar_tethered_share", "healing.k_1", "healing.mu_I", "observe.pore_support_share"]
SCAR = "scar_depth:reduction@last+90"


@pytest.fixture(scope="module")
def course() -> mn.Course:
    return mn.Course.from_toml(EXAMPLES / "acne-scars-rolling-cheek.toml")


@pytest.fixture(scope="module")
def small(course: mn.Course):  # type: ignore[no-untyped-def]
    return sobol_indices(course, [SCAR, "erythema_days"], names=NAMES, n_base=16, seed=3)


# ------------------------------------------------------------------ SALib wiring
def test_ishigami_indices_through_design_and_analysis() -> None:
    """The design/analysis path reproduces the analytic Ishigami indices (Ishigami & Homma 1990)."""
    u = sobol_design(3, 4096, seed=0)
    assert u.shape == (runs_needed(3, 4096), 3)
    y = ishigami(-np.pi + 2.0 * np.pi * u)
    res = sobol_analyze(y, 3, seed=0)
    s1, st = ishigami_indices()
    np.testing.assert_allclose(s1, [0.3139, 0.4424, 0.0], atol=1e-4)  # the textbook values
    np.testing.assert_allclose(st, [0.5576, 0.4424, 0.2437], atol=1e-4)
    np.testing.assert_allclose(res["S1"], s1, atol=0.03)
    np.testing.assert_allclose(res["ST"], st, atol=0.03)
    assert np.all(res["ST_conf"] < 0.05)


def test_second_order_design_size_and_ishigami_interaction() -> None:
    u = sobol_design(3, 2048, seed=1, second_order=True)
    assert u.shape == (runs_needed(3, 2048, second_order=True), 3) == (2048 * 8, 3)
    res = sobol_analyze(ishigami(-np.pi + 2.0 * np.pi * u), 3, seed=1, second_order=True)
    s1, st = ishigami_indices()
    # x1–x3 is the only interaction: S13 = ST1 − S1_1
    assert abs(res["S2"][0, 2] - (st[0] - s1[0])) < 0.06
    assert abs(res["S2"][0, 1]) < 0.06


def test_non_finite_outputs_give_nan_indices() -> None:
    y = np.ones(runs_needed(2, 8))
    y[3] = np.nan
    res = sobol_analyze(y, 2, seed=0)
    assert np.all(np.isnan(res["S1"])) and np.all(np.isnan(res["ST"]))


# -------------------------------------------------------------- prior mapping
def test_unit_to_parameter_matches_declared_percentiles() -> None:
    ps = mn.load_parameters()
    for name in ("healing.k_1", "observe.scar_width", "skin.sc_thickness"):
        p = ps.parameters[name]
        lo = parameter_values(ps, name, -Q95)
        hi = parameter_values(ps, name, Q95)
        mid = parameter_values(ps, name, 0.0)
        if isinstance(p.value, dict):
            assert isinstance(lo, dict) and isinstance(hi, dict) and isinstance(mid, dict)
            for k in p.value:
                assert lo[k] == pytest.approx(p.low[k], rel=1e-12)  # type: ignore[index]
                assert hi[k] == pytest.approx(p.high[k], rel=1e-12)  # type: ignore[index]
                assert mid[k] == pytest.approx(p.value[k], rel=1e-12)
        else:
            assert lo == pytest.approx(p.low, rel=1e-12)
            assert hi == pytest.approx(p.high, rel=1e-12)
            assert mid == pytest.approx(p.value, rel=1e-12)
    np.testing.assert_allclose(unit_to_z(np.array([0.05, 0.5, 0.95])), [-Q95, 0.0, Q95])
    assert np.all(np.isfinite(unit_to_z(np.array([0.0, 1.0]))))


def test_keyed_parameter_is_one_factor() -> None:
    ps = mn.load_parameters()
    name = "skin.sc_thickness"
    (s,) = parameter_sets(ps, [name], np.array([[0.05]]))
    p = ps.parameters[name]
    assert isinstance(p.low, dict)
    for k, lo in p.low.items():  # every site at its own 5th percentile: one common z
        assert s.value(name, p.units, key=k) == pytest.approx(lo, rel=1e-12)


# ------------------------------------------------------------------ the model
def test_indices_finite_and_reproducible(course: mn.Course, small) -> None:  # type: ignore[no-untyped-def]
    ds = small
    assert ds.attrs["n_runs"] == runs_needed(len(NAMES), 16)
    assert ds.attrs["n_failed"] == 0
    assert list(ds.parameter.values) == NAMES
    for v in ("S1", "ST", "S1_conf", "ST_conf"):
        assert ds[v].dims == ("endpoint", "parameter")
        assert np.all(np.isfinite(ds[v].values)), v
    again = sobol_indices(course, [SCAR, "erythema_days"], names=NAMES, n_base=16, seed=3)
    for v in ("S1", "ST", "S1_conf", "ST_conf"):
        np.testing.assert_array_equal(ds[v].values, again[v].values)
    other = sobol_indices(course, [SCAR], names=NAMES, n_base=16, seed=4)
    assert not np.array_equal(ds.ST.sel(endpoint=ds.endpoint[0]).values, other.ST.values[0])
    assert "not a diagnosis" in ds.attrs["disclaimer"]


def test_irrelevant_parameter_has_zero_total_index(small) -> None:  # type: ignore[no-untyped-def]
    scar = small.sel(endpoint=small.endpoint.values[0])
    assert str(scar.spec.values).startswith("scar_depth:reduction")
    st = scar.ST.sel(parameter="observe.pore_support_share")
    conf = scar.ST_conf.sel(parameter="observe.pore_support_share")
    assert abs(float(st)) <= float(conf) + 1e-12
    # the scar's own tethered share is a real driver: its ST is clearly above its confidence
    fill = scar.sel(parameter="observe.scar_tethered_share")
    assert float(fill.ST) > float(fill.ST_conf) > 0.0
    # erythema days do not depend on the scar geometry or pore observation maps at all
    ery = small.sel(endpoint="erythema_days")
    for p in ("observe.scar_tethered_share", "observe.pore_support_share"):
        assert abs(float(ery.ST.sel(parameter=p))) <= float(ery.ST_conf.sel(parameter=p)) + 1e-12


def test_chunked_executor_gives_identical_numbers(course: mn.Course, small) -> None:  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def mapper(fn, items):  # type: ignore[no-untyped-def]
        calls.append(len(items))
        return [fn(x) for x in reversed(items)][::-1]

    ds = sobol_indices(
        course, [SCAR, "erythema_days"], names=NAMES, n_base=16, seed=3, map_chunks=mapper,
        chunk_size=25,
    )  # fmt: skip
    assert calls == [-(-runs_needed(len(NAMES), 16) // 25)]
    np.testing.assert_allclose(ds.ST.values, small.ST.values, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ds.S1.values, small.S1.values, rtol=1e-9, atol=1e-12)


def test_default_names_are_the_parameters_the_course_uses(course: mn.Course) -> None:
    ds = sobol_indices(course, ["erythema_days"], n_base=2, seed=0)
    names = list(ds.parameter.values)
    assert "observe.scar_tethered_share" in names and "healing.mu_I" in names
    assert "transport.clearance_rate" not in names  # no topical in this course
    assert ds.attrs["n_runs"] == runs_needed(len(names), 2)
    table = indices_table(ds)
    assert len(table) == len(names)
    assert table.ST.is_monotonic_decreasing


# --------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"endpoints": ["scar_depth:nope"]}, "endpoints[0]"),
        ({"endpoints": [SCAR, SCAR]}, "endpoints[1]"),
        ({"endpoints": []}, "endpoints"),
        ({"endpoints": [SCAR, "melanin_index"]}, "endpoints[1]"),  # no hyperpigmentation here
        ({"n_base": 10}, "n_base"),
        ({"n_base": 0}, "n_base"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"names": ["healing.mu_II"]}, "names[0]"),
        ({"names": ["healing.mu_I", "healing.mu_I"]}, "names[1]"),
        ({"names": []}, "names"),
    ],
)
def test_refusals_name_the_field(course: mn.Course, kwargs: dict, field: str) -> None:  # type: ignore[type-arg]
    args = {"endpoints": [SCAR], "names": ["healing.mu_I"], "n_base": 2, **kwargs}
    with pytest.raises(InputError) as err:
        sobol_indices(course, args.pop("endpoints"), **args)
    assert err.value.field == field


def test_parameter_without_interval_refused(course: mn.Course) -> None:
    ps = mn.load_parameters().with_values({"healing.mu_I": 1.0})  # an edit drops the interval
    with pytest.raises(InputError) as err:
        sobol_indices(course, [SCAR], parameters=ps, names=["healing.mu_I"], n_base=2)
    assert err.value.field == "names[0]"


# -------------------------------------------------------------------------- CLI
def _cli(*args: object):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from microneedling.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], prog_name="microneedling")


def test_cli_sensitivity_writes_table_plot_and_netcdf(tmp_path: Path) -> None:
    import pandas as pd
    import xarray as xr

    out = tmp_path / "sens"
    course = EXAMPLES / "acne-scars-rolling-cheek.toml"
    args = ["sensitivity", course, "--out", out, "--n-base", 8, "--seed", 2, "-e", SCAR]
    args += [x for n in NAMES for x in ("--parameter", n)]
    res = _cli(*args)
    assert res.exit_code == 0, res.output
    assert "not a diagnosis" in res.output and "observe.scar_tethered_share" in res.output
    assert sorted(p.name for p in out.iterdir()) == [
        ".microneedling-run", "course.toml", "report.html", "sobol.csv", "sobol.nc", "sobol.png",
    ]  # fmt: skip
    assert (out / "sobol.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Sensitivity report" in html and "not a diagnosis" in html
    assert all(f'data-chart="chart-sobol-{j}"' in html for j in range(1))
    table = pd.read_csv(out / "sobol.csv")
    assert sorted(table.parameter) == sorted(NAMES)
    with xr.open_dataset(out / "sobol.nc") as ds:
        direct = sobol_indices(mn.Course.from_toml(course), [SCAR], names=NAMES, n_base=8, seed=2)
        np.testing.assert_allclose(ds.ST.values, direct.ST.values, rtol=1e-12)
        assert "not a diagnosis" in ds.attrs["disclaimer"]
    again = _cli(*args)  # exists: refused, nothing touched
    assert again.exit_code == 1 and "--overwrite" in again.output


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["-e", "scar_depth@tomorrow"], "endpoints[0]"),
        (["--n-base", "12"], "n_base"),
        (["--workers", "1", "--scheduler", "tcp://127.0.0.1:1"], "scheduler"),
        (["--parameter", "healing.nope"], "names[0]"),
    ],
)
def test_cli_sensitivity_bad_options(tmp_path: Path, extra: list[str], needle: str) -> None:
    out = tmp_path / "x"
    res = _cli("sensitivity", EXAMPLES / "acne-scars-rolling-cheek.toml", "--out", out, *extra)
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_cli_sbml_export(tmp_path: Path) -> None:
    from microneedling.studies.sbml import validation_errors

    out = tmp_path / "model.xml"
    course = EXAMPLES / "enlarged-pores-nose-cheek.toml"
    res = _cli("sbml", course, "--out", out, "--site", "cheek")
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert validation_errors(text) == []
    assert 'id="microneedling_healing_cheek"' in text
    bad = _cli("sbml", course, "--out", tmp_path / "m2.xml", "--site", "elbow")
    assert bad.exit_code == 2 and "site" in bad.output and not (tmp_path / "m2.xml").exists()
    assert _cli("sbml", course, "--out", out).exit_code == 1  # exists, no --overwrite


def test_dask_local_workers_give_the_same_indices(course: mn.Course, small) -> None:  # type: ignore[no-untyped-def]
    """Two local Dask worker processes (the --workers path): same numbers as in process."""
    import functools

    pytest.importorskip("distributed")
    from microneedling.engine.executor import map_chunks

    ds = sobol_indices(
        course, [SCAR, "erythema_days"], names=NAMES, n_base=16, seed=3, chunk_size=48,
        map_chunks=functools.partial(map_chunks, workers=2),
    )  # fmt: skip
    np.testing.assert_allclose(ds.ST.values, small.ST.values, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ds.S1_conf.values, small.S1_conf.values, rtol=1e-9, atol=1e-12)

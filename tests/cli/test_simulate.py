"""The simulate command's own helpers (microneedling.cli.simulate)."""

from __future__ import annotations

import xarray as xr

from microneedling.cli.simulate import _baselines
from microneedling.course.model import Course
from microneedling.engine.result import Result
from microneedling.engine.simulate import simulate
from tests.paths import EXAMPLES


def test_baselines_are_the_first_values_at_their_labels() -> None:
    """Each baseline is the variable at the first time, the first patient, the layer asked for
    and its site's label, whatever the order of the dims (here a second patient, other values,
    and every other variable stored with its dims reversed)."""
    res = simulate(Course.from_file(EXAMPLES / "serum-absorption-study.toml"), draws=0)
    ds = res.dataset
    two = xr.concat(
        [ds, (ds * 3.0).assign_coords(patient=["patient-1"])],
        dim="patient",
        combine_attrs="override",
    )
    for name in list(two.data_vars)[::2]:
        two[name] = two[name].transpose(*two[name].dims[::-1])
    for layer in ("papillary_dermis", "reticular_dermis"):
        got = _baselines(Result(two), layer)
        want = {}
        for name, da in two.data_vars.items():
            if (
                "time" not in da.dims
                or "site" not in da.dims
                or str(name).endswith(("_low", "_high"))
            ):
                continue
            first = da.isel(time=0, patient=0)
            first = first.sel(layer=layer) if "layer" in first.dims else first
            for site in two["site"].values:
                want[(str(site), str(name))] = float(first.sel(site=site))
        assert got.keys() == want.keys() and len(got) > 10
        assert all(got[k] == want[k] or (got[k] != got[k] and want[k] != want[k]) for k in got)


def test_the_long_table_names_every_end_point_on_its_first_row() -> None:
    """On a terminal too narrow for one column per day the table is printed one row per end point
    and day: every end point's label is printed once, on its first row, whether or not it has a
    baseline cell (a change in % has none; before 2026-12-07 such end points lost their label)."""
    import io

    from rich.console import Console

    from microneedling.cli.simulate import _print_endpoints

    res = simulate(Course.from_file(EXAMPLES / "acne-scars-rolling-cheek.toml"), draws=0)
    out = io.StringIO()
    _print_endpoints(res, Console(file=out, width=95, color_system=None))
    text = out.getvalue()
    assert "When" in text  # the long form
    df = res.endpoints()
    labels = [str(x) for x in df["endpoint"].unique()]
    timed = [str(x) for x in df[df["time_days"].notna()]["endpoint"].unique()]
    assert any(df[df["endpoint"] == lab]["units"].iloc[0] == "%" for lab in timed)
    flat = " ".join(text.split())
    for lab in labels:
        assert " ".join(lab.split()[:2]) in flat, lab

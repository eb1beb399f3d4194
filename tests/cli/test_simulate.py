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

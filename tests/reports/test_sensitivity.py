"""The Sobol figure: one panel per end point in words, bars with CIs, the shared footer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from microneedling.reports.figures import FIGURE_FOOTER
from microneedling.reports.sensitivity import endpoint_title, plot_indices, save_indices_png

PARAMS = ["observe.scar_tethered_share", "healing.k_1", "healing.mu_I"]


def _indices(specs: list[str], sites: list[str], units: list[str]) -> xr.Dataset:
    rng = np.random.default_rng(0)
    E, D = len(specs), len(PARAMS)
    labels = [
        s if len(set(sites)) == 1 else f"{s} [{site}]" for s, site in zip(specs, sites, strict=True)
    ]
    data = {
        k: (("endpoint", "parameter"), rng.uniform(0, 1, (E, D)))
        for k in ("S1", "ST", "S1_conf", "ST_conf")
    }
    coords = {
        "endpoint": labels,
        "parameter": PARAMS,
        "spec": ("endpoint", specs),
        "site": ("endpoint", sites),
        "units": ("endpoint", units),
    }
    return xr.Dataset(data, coords=coords, attrs={"n_base": 4, "n_runs": 20})


def test_panels_name_the_end_point_in_words_with_units() -> None:
    ds = _indices(["scar_depth:reduction@last+90", "erythema_days"], ["cheek"] * 2, ["%", "d"])
    fig = plot_indices(ds, top=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "Atrophic scar depth, reduction, 90 d after the last session (%)",
        "Visible redness, all sessions (d)",
    ]
    assert any(FIGURE_FOOTER in t.get_text() for t in fig.texts)
    for ax in fig.axes:
        assert len(ax.get_yticklabels()) == 2  # the top 2 parameters by ST
        assert ax.get_xlabel().startswith("Sobol index")


def test_several_sites_are_named() -> None:
    ds = _indices(["pih_risk", "pih_risk"], ["cheek", "dorsal_hand"], ["1", "1"])
    assert endpoint_title(ds, "pih_risk [dorsal_hand]") == (
        "Post-inflammatory hyperpigmentation risk — dorsal hand"
    )


def test_png_is_written_atomically(tmp_path: Path) -> None:
    ds = _indices(["erythema_days"], ["cheek"], ["d"])
    p = save_indices_png(ds, tmp_path / "sobol.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [x.name for x in tmp_path.iterdir()] == ["sobol.png"]


@pytest.mark.parametrize("top", [1, 3])
def test_top_parameters_by_total_index(top: int) -> None:
    ds = _indices(["erythema_days"], ["cheek"], ["d"])
    (ax,) = plot_indices(ds, top=top).axes
    shown = [t.get_text() for t in ax.get_yticklabels()]
    best = [PARAMS[i] for i in np.argsort(-ds.ST.values[0], kind="stable")[:top][::-1]]
    assert shown == best

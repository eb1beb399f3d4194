"""The sensitivity report: the HTML page (the one shell, one interactive bar chart and one table
per end point, largest total index first) and the Sobol PNG (one panel per end point in words,
bars with CIs, the shared footer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from microneedling.reports.figures import FIGURE_FOOTER
from microneedling.reports.sensitivity import (
    endpoint_title,
    indices_charts,
    plot_indices,
    render_report,
    save_indices_png,
    write_report,
)
from tests.reports.shell import check_charts, check_shell, check_tables

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
    coords["parameter_units"] = ("parameter", ["1", "1/d", "1/d"])
    coords["parameter_note"] = ("parameter", [
        "Share of a scar's depth held by fibrous tethers. Set from histology.",
        "Rate of the first healing stage.", "",
    ])  # fmt: skip
    attrs = {"n_base": 4, "n_runs": 20, "n_factors": 3, "n_failed": 0, "seed": 7,
             "course_name": "Rolling <scars>", "method": "Saltelli/Sobol"}  # fmt: skip
    return xr.Dataset(data, coords=coords, attrs=attrs)


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


def test_the_report_is_one_shell_with_a_chart_and_a_table_per_end_point(tmp_path: Path) -> None:
    ds = _indices(["scar_depth:reduction@last+90", "erythema_days"], ["cheek"] * 2, ["%", "d"])
    warning = "2 first-order indices (S1) are negative"
    path = write_report(tmp_path, ds, top=2, warnings=[warning])
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    text = path.read_text(encoding="utf-8")
    page = check_shell(text, "Sensitivity report")
    check_tables(page, allow=("scar_tethered_share", "k_1", "mu_I"))  # parameters' own names
    assert page.h1 == "Rolling <scars>"  # user text escaped, shown as written
    assert warning in text
    figures = check_charts(text)
    assert set(figures) == {"chart-sobol-0", "chart-sobol-1"}
    assert len(page.tables) == 2
    for j, table in enumerate(page.tables):
        sub = ds.isel(endpoint=j)
        best = [PARAMS[i] for i in np.argsort(-sub.ST.values, kind="stable")[:2]]
        assert [row[0] for row in table.rows] == best  # largest total index first
        assert table.headers[:3] == ["Parameter", "What it is", "Its units"]
        described = dict(
            zip(
                PARAMS,
                [
                    "Share of a scar's depth held by fibrous tethers.",
                    "Rate of the first healing stage.",
                    "–",
                ],
                strict=True,
            )
        )
        assert [row[1] for row in table.rows] == [described[p] for p in best]


def test_chart_bars_are_the_indices_with_their_intervals() -> None:
    ds = _indices(["erythema_days"], ["cheek"], ["d"])
    (chart,) = indices_charts(ds, top=3)
    total, first = chart.figure["data"][:2]
    order = np.argsort(-ds.ST.values[0], kind="stable")[::-1]  # bottom to top
    assert total["y"] == [PARAMS[i] for i in order]
    np.testing.assert_allclose(total["x"], ds.ST.values[0][order], rtol=1e-5)
    np.testing.assert_allclose(first["x"], ds.S1.values[0][order], rtol=1e-5)
    assert "Visible redness" in chart.title and "(d)" in chart.title


def test_a_failed_index_is_shown_as_not_available() -> None:
    ds = _indices(["erythema_days"], ["cheek"], ["d"])
    ds["ST"][0, 1] = np.nan
    ds["S1"][0, 1] = np.nan
    text = render_report(ds)
    assert "n/a" in text
    check_charts(text)  # NaN travels as a gap, the figure stays valid JSON

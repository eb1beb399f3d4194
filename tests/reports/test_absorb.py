"""The absorption report: figures and the page, on a real (small) absorption table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from microneedling.course.model import Course
from microneedling.parameters.parameter_set import load_parameters
from microneedling.reports import absorb as report
from microneedling.reports.figures import FIGURE_FOOTER
from microneedling.reports.format import format_number
from microneedling.studies import absorb
from tests.paths import EXAMPLES
from tests.reports.shell import Page, check_charts, check_shell, check_tables, y_title

PNG = b"\x89PNG\r\n\x1a\n"
NAME = 'Serum <b>"test"</b> & co\x00\x1b[31m red\x1b[0m'


@pytest.fixture(scope="module")
def solved() -> tuple[Any, dict[tuple[Any, ...], absorb.Resolved]]:
    course = Course.from_file(EXAMPLES / "serum-absorption-study.toml")
    return absorb.absorption_table(course, load_parameters(), draws=2, seed=1)


@pytest.fixture(scope="module")
def written(solved: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Path]]:
    table, rvs = solved
    out = tmp_path_factory.mktemp("absorb")
    figures: dict[str, list[Path]] = {}
    for rv in rvs.values():
        c = rv.case
        figures[f"{c.product}: {c.label}"] = [
            report.plot_map(rv, out / "figures" / f"map_{c.stem}.png"),
            report.plot_curves(rv, out / "figures" / f"curves_{c.stem}.png"),
        ]
    path = report.write_report(out, table, rvs, NAME, draws=2, seed=1)
    assert path == out / "report.html"
    return path.read_text(encoding="utf-8"), [p for ps in figures.values() for p in ps]


def test_report_has_the_shell_and_readable_tables(written: tuple[str, list[Path]]) -> None:
    text, pngs = written
    page = check_shell(text, "Absorption report")
    check_tables(page)
    assert page.srcs == []  # no embedded PNG: the report's charts are the interactive ones
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == PNG for p in pngs)  # for print
    amounts, layers, settings = page.tables
    # every amount column says its unit (the dose column had none)
    assert amounts.headers[:3] == ["Session", "Product", "Dose applied (µg/cm²)"]
    assert all(h.endswith("(µg/cm²)") for h in amounts.headers[2:5] + amounts.headers[6:9])
    assert all(h.endswith("(µg/cm²)") for h in layers.headers[1:])
    assert "Channel model vs resolved (%)" in amounts.headers
    (row,) = amounts.rows
    assert row[0] == "cheek, session 1 (day 0)"
    assert row[2] == "500"  # 50 mg/mL x 10 uL/cm^2
    assert "[" in row[3]  # the interval over the draws, below the value
    assert settings.headers[2:5] == [
        "Concentration (mg/mL)",
        "Applied volume (µL/cm²)",
        "Contact time (h)",
    ]
    assert settings.rows[0][5] == "no"  # occluded: yes/no, not False


def test_report_escapes_the_course_name(written: tuple[str, list[Path]]) -> None:
    text, _ = written
    assert '<b>"test"</b>' not in text
    assert Page(text).h1 == 'Serum <b>"test"</b> & co red'


def test_report_without_resolved_cell(solved: Any) -> None:
    table, _ = solved
    keep = [c for c in table.columns if not c.startswith("resolved_") and c != "difference_pct"]
    text = report.render_report(table[keep], [], "plain")
    page = check_shell(text, "Absorption report")
    check_tables(page)
    assert "Absorbed, resolved" not in text
    assert "The resolved unit cell was not run" in text
    figures = check_charts(text)
    assert set(figures) == {"chart-absorbed", "chart-absorbed-layers"}  # no map, no curves
    names = [t["name"] for t in figures["chart-absorbed"]["data"]]
    assert names == ["with channels (engine)", "intact skin (engine)"]


def test_map_labels_are_readable_on_any_colour(
    solved: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layer names on the (yellow-to-black) map sit on a dark box; every figure has the footer."""
    _, rvs = solved
    (rv,) = rvs.values()
    seen: dict[str, Any] = {}
    real = report.save_png

    def spy(fig: Any, path: Path) -> Path:
        seen[path.stem] = fig
        return real(fig, path)

    monkeypatch.setattr(report, "save_png", spy)
    report.plot_map(rv, tmp_path / "map.png")
    report.plot_curves(rv, tmp_path / "curves.png")
    for fig in seen.values():
        assert any(FIGURE_FOOTER in t.get_text() for t in fig.texts)
    labels = [t for ax in seen["map"].axes for t in ax.texts if "dermis" in t.get_text()]
    assert labels and all(t.get_bbox_patch() is not None for t in labels)
    assert all("_" not in t.get_text() for t in labels)
    for ax in seen["map"].axes[:1] + seen["curves"].axes:
        assert "(" in ax.get_ylabel() and ")" in ax.get_ylabel()  # label (units)


def _luminance(rgb: tuple[float, float, float]) -> float:
    """WCAG relative luminance of an sRGB colour (0-255 channels)."""
    lin = [c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4
           for c in rgb]  # fmt: skip
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def test_amount_charts_are_the_tables(solved: Any, written: tuple[str, list[Path]]) -> None:
    """Per session: the engine's amounts with their 10-90% interval over the draws as error bars,
    the resolved cell's beside them, in µg/cm² (log scale: intact skin is orders smaller); per
    entry layer the engine's amounts with their intervals."""
    table, _ = solved
    figures = check_charts(written[0])
    fig = figures["chart-absorbed"]
    by_name = {t["name"]: t for t in fig["data"]}
    (row,) = table.to_dict("records")
    for name, col in (("with channels (engine)", "absorbed_ug_cm2"),
                      ("intact skin (engine)", "intact_ug_cm2")):  # fmt: skip
        bar = by_name[name]
        med = row[f"{col}_median"]
        assert bar["y"] == [pytest.approx(med, rel=1e-5)]
        # error bars from the median over the draws to the interval's ends (it lies inside)
        up, down = max(row[f"{col}_high"] - med, 0.0), max(med - row[f"{col}_low"], 0.0)
        assert bar["error_y"]["array"] == [pytest.approx(up, rel=1e-4, abs=1e-6)]
        assert bar["error_y"]["arrayminus"] == [pytest.approx(down, rel=1e-4, abs=1e-6)]
        assert up + down > 0
    assert by_name["with channels (resolved)"]["y"] == [
        pytest.approx(row["resolved_absorbed_ug_cm2"], rel=1e-5)
    ]
    assert fig["layout"]["yaxis"]["type"] == "log"
    assert y_title(fig) == "Absorbed (µg/cm², log scale)"
    layers = figures["chart-absorbed-layers"]
    (bars,) = layers["data"]
    assert bars["x"] == ["epidermis", "papillary dermis", "reticular dermis"]
    assert bars["y"] == [pytest.approx(row[f"absorbed_{n}_ug_cm2_median"], rel=1e-5)
                         for n in ("epidermis", "papillary_dermis", "reticular_dermis")]  # fmt: skip
    assert y_title(layers) == "Absorbed (µg/cm²)"


def test_concentration_map_is_a_readable_heatmap(
    solved: Any, written: tuple[str, list[Path]]
) -> None:
    """The r-z map: the field mirrored about the channel axis on a log colour scale whose bar
    names the quantity and its units, depth downwards, the layer boundaries and the channel
    outline where the case puts them; layer names in white on dark boxes, with a WCAG contrast
    of at least 4.5 even over the brightest (yellow) colour of the scale."""
    _, rvs = solved
    (rv,) = rvs.values()
    figures = check_charts(written[0])
    maps = sorted(k for k in figures if k.startswith("chart-map-0-"))
    assert len(maps) == 2  # about 30 min and the end of the contact time
    fig = figures[maps[-1]]
    heat, outline = fig["data"]
    conc = rv.with_channel.concentration[-1]
    z = np.array(heat["z"], dtype=float)
    assert z.shape == (conc.shape[0], 2 * conc.shape[1])
    assert np.allclose(z[:, ::-1], z, equal_nan=True)  # mirrored
    top = float(conc.max())
    expect = np.log10(np.maximum(conc, top * 1e-5))
    assert np.allclose(z[:, conc.shape[1] :], expect, rtol=1e-5, atol=1e-5)
    assert heat["colorbar"]["title"]["text"] == "Tissue concentration (mg/mL)"
    # an explicit scale (plotly.js knows no "Magma" by name and would draw its default)
    assert heat["colorscale"][0] == [0, "#000004"] and heat["colorscale"][-1] == [1, "#fcfdbf"]
    ticks = heat["colorbar"]["tickvals"]
    assert len(ticks) >= 2 and all(np.nanmin(z) - 1e-6 <= t <= np.nanmax(z) + 1e-6 for t in ticks)
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("Distance from the channel axis (µm)")
    assert y_title(fig) == "Depth below the surface (µm)"
    assert fig["layout"]["yaxis"]["autorange"] == "reversed"
    c = rv.case
    bounds = np.cumsum((0.0, *c.layers_um))[1:-1]
    assert [s["y0"] for s in fig["layout"]["shapes"]] == pytest.approx(bounds.tolist(), rel=1e-5)
    assert max(outline["y"]) == pytest.approx(c.channel_depth_um, rel=1e-5)
    assert max(outline["x"]) == pytest.approx(c.channel_radius_um, rel=1e-5)
    labels = [a for a in fig["layout"]["annotations"] if a.get("yref") != "paper"]
    assert [a["text"] for a in labels] == ["viable epidermis", "papillary dermis",
                                           "reticular dermis"]  # fmt: skip
    brightest = (252, 253, 191)  # the top of Plotly's Magma scale
    for a in labels:
        assert a["font"]["color"] == "#ffffff"
        r, g, b, alpha = (float(v) for v in a["bgcolor"][5:-1].split(","))
        box = tuple(alpha * v + (1 - alpha) * w for v, w in zip((r, g, b), brightest, strict=True))
        contrast = (1.0 + 0.05) / (_luminance(box) + 0.05)  # type: ignore[arg-type]
        assert contrast >= 4.5, (a["text"], contrast)


def test_cumulative_curves_end_at_the_totals(solved: Any, written: tuple[str, list[Path]]) -> None:
    """The curves chart ends at the resolved totals with and without channels; every per-layer
    curve is non-decreasing in time on a log axis in µg/cm²."""
    _, rvs = solved
    (rv,) = rvs.values()
    figures = check_charts(written[0])
    curves = {t["name"]: t for t in figures["chart-curves-0"]["data"]}
    assert curves["with channels (resolved)"]["y"][-1] == pytest.approx(rv.total_ug_cm2(), 1e-5)
    assert curves["intact skin (resolved)"]["y"][-1] == pytest.approx(
        rv.total_ug_cm2(channel=False), rel=1e-5
    )
    assert curves["with channels (homogenised channel model)"]["y"][-1] == pytest.approx(
        float(rv.homogenised_curve[-1]), rel=1e-5
    )
    assert y_title(figures["chart-curves-0"]) == "Absorbed (µg/cm²)"
    layers = figures["chart-layers-0"]
    assert layers["layout"]["yaxis"]["type"] == "log"
    assert "(µg/cm²" in y_title(layers)
    named = [t for t in layers["data"] if t["name"] in ("papillary dermis", "reticular dermis")]
    assert len(named) == 2


def test_a_value_is_the_median_inside_its_interval_and_the_nominal_is_named(
    solved: Any, written: tuple[str, list[Path]]
) -> None:
    """With few draws the nominal run (at the median parameters) can lie outside the draws'
    10–90% interval ("430 [250–424]"): the table shows the draws' median with the interval, then
    the nominal value named as such; neither number is hidden."""
    table, _ = solved
    (row,) = table.to_dict("records")
    for col in (
        "absorbed_ug_cm2",
        "intact_ug_cm2",
        "enhancement_ratio",
        "absorbed_epidermis_ug_cm2",
    ):
        assert row[f"{col}_low"] <= row[f"{col}_median"] <= row[f"{col}_high"], col
    # a nominal value outside its interval, as the practitioners saw it
    odd = {**row, "absorbed_ug_cm2": 430.0, "absorbed_ug_cm2_low": 250.0,
           "absorbed_ug_cm2_high": 424.0, "absorbed_ug_cm2_median": 330.0}  # fmt: skip
    c = report.banded_cell(odd, "absorbed_ug_cm2")
    assert c["text"] == "330"
    assert c["interval"] == f"[250–424]\n430 {report.AT_MEDIAN}"
    text, _ = written
    amounts = Page(text).tables[0]
    shown = amounts.rows[0][3]
    assert format_number(row["absorbed_ug_cm2_median"]) in shown
    assert format_number(row["absorbed_ug_cm2"]) in shown and report.AT_MEDIAN in shown
    assert "the median over the parameter draws" in text

"""Figures and the HTML report, on the synthetic Result of conftest.py (no physics)."""

from __future__ import annotations

import html
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from microneedling.engine.result import Result
from microneedling.errors import InputError
from microneedling.parameters.parameter_set import ParameterSet
from microneedling.reports import run as report
from microneedling.reports.figures import FIGURE_FOOTER
from microneedling.reports.format import format_interval, format_number
from microneedling.reports.run import (
    plot_variable,
    render_html,
    write_figures,
    write_html_report,
)
from tests.conftest import (
    COURSE_NAME,
    ERYTHEMA_THRESHOLD,
    SESSION_DAYS,
    SITES,
    WARNINGS,
    build_synthetic_dataset,
)
from tests.reports.shell import RAW_FIELD, Page, check_shell, check_tables, without_scripts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


# ----------------------------------------------------------------------------- plot_variable
def test_plot_variable_layered_uses_papillary_with_band_and_sessions(
    synthetic_result: Result,
) -> None:
    ax = plot_variable(synthetic_result, "collagen_change")
    ds = synthetic_result.dataset
    lines = [ln for ln in ax.get_lines() if ln.get_label() in SITES]
    assert [ln.get_label() for ln in lines] == list(SITES)
    for ln, site in zip(lines, SITES, strict=True):
        expected = ds["collagen_change"].isel(patient=0).sel(site=site, layer="papillary_dermis")
        np.testing.assert_allclose(ln.get_ydata(), expected.values)
    vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert sorted(float(ln.get_xdata()[0]) for ln in vlines) == list(SESSION_DAYS)
    assert len(ax.collections) == len(SITES)  # one 10–90 % band per site
    assert "papillary dermis" in ax.get_title()
    assert ax.get_ylabel() == "Collagen I+III change (%)"
    assert ax.get_xlabel() == "Time (d)"


def test_plot_variable_skips_sites_where_not_applicable(synthetic_result: Result) -> None:
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    out = plot_variable(synthetic_result, "scar_depth", ax=ax)
    assert out is ax
    assert [ln.get_label() for ln in ax.get_lines() if ln.get_label() in SITES] == ["cheek"]
    assert ax.get_ylabel() == "Atrophic scar depth (mm)"


def test_plot_variable_per_session_variable(synthetic_result: Result) -> None:
    ax = plot_variable(synthetic_result, "absorbed_amount")
    assert ax.get_xlabel() == "Session day (d)"
    assert ax.get_ylabel() == "Topical absorbed (µg/cm²)"
    # errorbar containers: one per site, x at the session days
    xs = [list(c.lines[0].get_xdata()) for c in ax.containers]
    assert xs == [list(SESSION_DAYS)] * len(SITES)


def test_plot_variable_unknown_variable_names_the_choices(synthetic_result: Result) -> None:
    with pytest.raises(InputError, match=r"variable: got 'collagen'.*collagen_change"):
        plot_variable(synthetic_result, "collagen")


# ----------------------------------------------------------------------------- write_figures
def test_write_figures_set_footer_and_claims_panel(
    synthetic_result: Result, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    real_save = report.save_png

    def spy(fig: Any, path: Path) -> Path:
        seen[path.stem] = fig
        return real_save(fig, path)

    monkeypatch.setattr(report, "save_png", spy)
    paths = write_figures(synthetic_result, tmp_path / "figures")
    assert [p.name for p in paths] == [
        "collagen_elastin.png",
        "claims.png",
        "downtime.png",
        "absorption.png",
    ]
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC
    assert sorted(x.name for x in (tmp_path / "figures").iterdir()) == sorted(p.name for p in paths)
    for stem, fig in seen.items():
        assert any(FIGURE_FOOTER in t.get_text() for t in fig.texts), stem
    # claims: striae_width is all-NaN in the synthetic run, so six panels, none for stretch marks
    titles = [ax.get_title() for ax in seen["claims"].axes if ax.get_visible()]
    assert len(titles) == 6
    assert not any("Stretch" in t for t in titles)
    # downtime: thresholds drawn at the stored values
    ery_ax = seen["downtime"].axes[0]
    thr = [ln for ln in ery_ax.get_lines() if ln.get_label() == "visibility threshold"]
    assert len(thr) == 1 and thr[0].get_ydata()[0] == pytest.approx(ERYTHEMA_THRESHOLD)
    # curves start at the session (x from 0); every session of every site is named by exactly
    # one curve, and no curve of a site lies on top of another
    curves = [ln for ln in ery_ax.get_lines() if "session" in str(ln.get_label())]
    assert all(float(ln.get_xdata()[0]) == pytest.approx(0.0, abs=1.0) for ln in curves)
    for site in SITES:
        mine = [ln for ln in curves if str(ln.get_label()).startswith(f"{site},")]
        named = [int(n) for ln in mine for n in re.findall(r"\d+", str(ln.get_label()))]
        assert sorted(named) == list(range(1, len(SESSION_DAYS) + 1)), named
        for a, b in itertools.combinations(mine, 2):
            ya, yb = a.get_ydata(), b.get_ydata()
            assert len(ya) != len(yb) or not np.allclose(ya, yb, rtol=0.01), (a, b)


def test_downtime_curves_of_identical_sessions_are_drawn_once() -> None:
    """Sessions with the same response are one curve named after all of them; a different session
    gets its own curve (the user saw four identical curves drawn on top of each other)."""
    from microneedling.reports.run import _after_sessions

    t = np.linspace(0.0, 120.0, 121)
    days = [0.0, 28.0, 56.0, 84.0]

    def spikes(amps: list[float]) -> np.ndarray:
        s = [np.where(t >= d, t - d, np.nan) for d in days]
        return sum(np.nan_to_num(a * x * np.exp(-x)) for a, x in zip(amps, s, strict=True))

    same = _after_sessions(t, spikes([1.0] * 4), days, 7.0, tol=0.01)
    assert [ks for ks, _, _ in same] == [[1, 2, 3, 4]]
    x, y = same[0][1], same[0][2]
    assert x[0] == 0.0 and x[-1] == 7.0 and y.max() == pytest.approx(np.exp(-1.0), rel=1e-2)
    other = _after_sessions(t, spikes([1.0, 2.0, 1.0, 1.0]), days, 7.0, tol=0.01)
    assert [ks for ks, _, _ in other] == [[1, 3, 4], [2]]


def test_write_figures_skips_absorption_without_topical(
    synthetic_result: Result, tmp_path: Path
) -> None:
    ds = synthetic_result.dataset
    ds["absorbed_amount"][:] = 0.0
    paths = write_figures(synthetic_result, tmp_path)
    assert "absorption.png" not in [p.name for p in paths]
    assert not (tmp_path / "absorption.png").exists()


def test_figures_and_report_are_deterministic(synthetic_result: Result, tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        figs = write_figures(synthetic_result, tmp_path / name / "figures")
        outs.append((figs, write_html_report(synthetic_result, tmp_path / name, figs)))
    (figs_a, html_a), (figs_b, html_b) = outs
    for fa, fb in zip(figs_a, figs_b, strict=True):
        assert fa.read_bytes() == fb.read_bytes(), fa.name
    assert html_a.read_bytes() == html_b.read_bytes()


# ----------------------------------------------------------------------------- HTML
@pytest.fixture(scope="module")
def report_html(
    param_set: ParameterSet, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, list[Path]]:
    """The report of the synthetic run, written once for the read-only tests below."""
    out = tmp_path_factory.mktemp("report")
    result = Result(build_synthetic_dataset(param_set))
    figs = write_figures(result, out / "figures")
    path = write_html_report(result, out, figs)
    assert path == out / "report.html"
    return path.read_text(encoding="utf-8"), figs


def test_report_has_the_shell(report_html: tuple[str, list[Path]]) -> None:
    text, _ = report_html
    page = check_shell(text, "Simulation report")
    assert page.srcs == []  # no image: the charts are drawn from the data on the page
    # the only external links are the references' own pages (opened on click, never fetched)
    external = sorted(h for h in page.hrefs if not h.startswith("#"))
    assert external == ["https://doi.org/10.5555/alpha", "https://doi.org/10.5555/gamma"]
    # every section is in the table of contents
    for sid in ("summary", "warnings", "endpoints", "downtime", "trajectories", "tissue",
                "references"):  # fmt: skip
        assert f'id="{sid}"' in text and f"#{sid}" in page.hrefs


def test_report_escapes_user_text(report_html: tuple[str, list[Path]]) -> None:
    text, _ = report_html
    assert COURSE_NAME not in text
    assert "<cheek>" not in text
    page = Page(text)
    assert page.h1 == COURSE_NAME  # shown as written, escaped in the source
    assert page.title.startswith(COURSE_NAME)
    assert "tests &lt;1&gt;" in text  # citation text is escaped too


def test_report_drops_control_characters_of_user_text(
    param_set: ParameterSet, tmp_path: Path
) -> None:
    ds = build_synthetic_dataset(param_set)
    ds.attrs["course_name"] = "Bad\x00name \x1b[31mred\x1b[0m\x07"
    ds.attrs["warnings"] = json.dumps(["warn\x00ing \x1b[1mbold\x1b[0m"])
    text = render_html(Result(ds), [])
    check_shell(text, "Simulation report")
    assert Page(text).h1 == "Badname red"
    assert "warning bold" in text


def test_report_tables_read_as_text_for_people(report_html: tuple[str, list[Path]]) -> None:
    text, _ = report_html
    page = Page(text)
    check_tables(page)
    sessions, _ = page.tables
    # the sessions table: units after each label, the capillary flag as yes/no
    assert "Needle length (mm)" in sessions.headers
    assert "Puncture density (/cm²)" in sessions.headers
    col = sessions.headers.index("Reaches capillaries")
    assert {r[col] for r in sessions.rows} == {"yes", "no"}
    # the course cards: field names in words with units, the skin type as a roman numeral
    assert "<dt>Fitzpatrick skin type</dt><dd>III</dd>" in text
    assert "<dt>Age</dt><dd>34 years</dd>" in text
    assert not RAW_FIELD.search(text[text.index('id="summary"') : text.index("<details")])


def test_report_sections_content(
    report_html: tuple[str, list[Path]], synthetic_result: Result
) -> None:
    text, _ = report_html
    ds = synthetic_result.dataset
    page = Page(text)
    sessions, endpoints = page.tables
    # sessions table: one row per site and session
    assert len(sessions.rows) == len(SITES) * len(SESSION_DAYS)
    # end points: one block per site, every row of result.endpoints() with its value, interval
    # and units
    df = synthetic_result.endpoints()
    groups = [r for r in endpoints.rows if len(r) == 1]
    assert groups == [[s] for s in SITES]
    rows = [r for r in endpoints.rows if len(r) > 1]
    assert len(rows) == len(df)
    assert endpoints.headers == [
        "Claim",
        "End point",
        "When",
        "Value",
        "10–90% interval",
        "Units",
        "Published validation",
    ]
    assert {r[6] for r in rows} == {"not recorded"}  # the synthetic run has no applicability flags
    row = df[(df.variable == "collagen_change") & (df.site == "cheek")].iloc[0]
    first = rows[0]
    assert first[3] == format_number(row.value)
    assert first[4] == format_interval(row.low, row.high)
    assert first[5] == "%"
    assert any(r[5] == "µg/cm²" for r in rows)
    # warnings, references, provenance
    assert html.escape(WARNINGS[0], quote=False) in text
    refs = text[text.index('id="references"') : text.index("</main>")]
    assert re.findall(r"\[(zztest_\w+)\]", refs) == [
        "zztest_alpha2001",
        "zztest_beta2010",
        "zztest_gamma2020",
    ]
    prov = text[text.index('id="provenance"') :]
    for key in ("parameter_set_hash", "seed", "created", "microneedling_version"):
        assert html.escape(str(ds.attrs[key])) in prov, key


def _figures(text: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="mn-charts">(.*?)</script>', text, re.S)
    assert m is not None
    return dict(json.loads(m.group(1)))


def test_report_chart_data_matches_dataset(
    report_html: tuple[str, list[Path]], synthetic_result: Result
) -> None:
    text, _ = report_html
    data = _figures(text)
    ds = synthetic_result.dataset
    assert "chart-striae-width" not in data  # all NaN: no chart
    assert without_scripts(text).count('data-chart="') == len(data)
    fig = data["chart-collagen-change"]
    lines = [d for d in fig["data"] if d.get("hovertemplate") and d["x"] != [None]]
    assert [d["name"] for d in lines] == list(SITES)
    np.testing.assert_allclose(lines[0]["x"], ds["time"].values, rtol=1e-4)  # 201: not decimated
    expected = ds["collagen_change"].isel(patient=0).sel(site="cheek", layer="papillary_dermis")
    np.testing.assert_allclose(lines[0]["y"], expected.values, rtol=1e-5, atol=1e-9)
    # the band: the 10th and 90th percentiles, drawn before the line, filled between them
    lo, hi = fig["data"][0], fig["data"][1]
    assert hi["fill"] == "tonexty" and lo["showlegend"] is False
    high = ds["collagen_change_high"].isel(patient=0).sel(site="cheek", layer="papillary_dermis")
    np.testing.assert_allclose(hi["y"], high.values, rtol=1e-5, atol=1e-9)
    # sessions: one dashed line each, and one legend entry for them
    shapes = fig["layout"]["shapes"]
    assert sorted(s["x0"] for s in shapes if s["line"]["dash"] == "dash") == list(SESSION_DAYS)
    assert [d["name"] for d in fig["data"] if d["x"] == [None]] == ["10–90% interval", "session"]
    # the axis title names the quantity and its unit, above the plot (never clipped)
    assert fig["layout"]["annotations"][0]["text"] == "Dermal collagen (I+III) (%)"
    scar = data["chart-scar-depth"]
    assert [d["name"] for d in scar["data"] if d.get("hovertemplate")] == ["cheek"]


def test_every_chart_is_a_valid_plotly_figure(report_html: tuple[str, list[Path]]) -> None:
    import plotly.graph_objects as go

    for cid, fig in _figures(report_html[0]).items():
        go.Figure(fig)  # raises on any property plotly does not know
        assert fig["layout"]["xaxis"]["title"]["text"], cid


def test_downtime_calendar_shows_each_session(
    report_html: tuple[str, list[Path]], synthetic_result: Result
) -> None:
    fig = _figures(report_html[0])["chart-downtime-calendar"]
    red, swollen, down = fig["data"]
    ds = synthetic_result.dataset
    assert len(red["y"]) == len(SITES) * len(SESSION_DAYS)
    assert red["y"][0] == "cheek, session 1 (day 0)"
    expected = ds["erythema_days"].isel(patient=0).sel(site="cheek").values
    np.testing.assert_allclose(red["x"][: len(SESSION_DAYS)], expected, rtol=1e-5)
    assert swollen["name"] == "visible swelling"
    assert down["name"] == "any sign visible (downtime)"
    expected = ds["downtime_days"].isel(patient=0).sel(site="cheek").values
    np.testing.assert_allclose(down["x"][: len(SESSION_DAYS)], expected, rtol=1e-5)


def test_report_decimation_keeps_peaks() -> None:
    from microneedling.reports.charts import decimate

    t = np.linspace(0, 100, 5001)
    y = np.zeros_like(t)
    y[1234] = 5.0  # a one-sample spike must survive
    keep = decimate(t, [y], max_points=200)
    assert len(keep) <= 200 * 2 + 2
    assert 1234 in keep and keep[0] == 0 and keep[-1] == len(t) - 1
    assert np.all(np.diff(keep) > 0)


def test_report_without_warnings_and_figures(synthetic_result: Result) -> None:
    del synthetic_result.dataset.attrs["warnings"]
    text = render_html(synthetic_result, [])
    assert "No warnings were raised" in text
    assert "<img" not in without_scripts(text)
    assert "Static figures written beside" not in text


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_report_script_is_valid_javascript(
    report_html: tuple[str, list[Path]], tmp_path: Path
) -> None:
    text, _ = report_html
    scripts = re.findall(r"<script>(.*?)</script>", text, re.S)
    # the references' print opener, the library, then the drawing script
    assert len(scripts) == 3 and max(scripts, key=len) == scripts[1]
    for k in (0, 2):
        js = tmp_path / f"report{k}.js"
        js.write_text(scripts[k])
        proc = subprocess.run(["node", "--check", str(js)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_endpoint_table_says_where_published_validation_covers_the_course(
    synthetic_result: Result,
) -> None:
    """The run's applicability flags (engine/applicability.py) appear per end point, in words."""
    synthetic_result.dataset.attrs["applicability"] = json.dumps(
        {
            "collagen_change": ["needle length 0.25 mm (validated 1–2 mm)"],
            "elasticity_index": ["no validation row tests this output"],
        }
    )
    _, endpoints = Page(render_html(synthetic_result)).tables
    cells = {(r[1], r[6]) for r in endpoints.rows if len(r) > 1}
    by_variable = {}
    for ep, cell in cells:
        by_variable.setdefault(cell, set()).add(ep)
    assert "outside: needle length 0.25 mm (validated 1–2 mm)" in by_variable
    assert "untested: no validation data" in by_variable
    assert "within the validated settings" in by_variable


def test_a_selection_is_the_value_at_its_labels(synthetic_result: Result) -> None:
    """report._select (positions looked up in the indexes, one isel) gives what a sel per
    dimension gives: by patient position or label, for every site and layer, and every match
    of a label that is not unique."""
    import xarray as xr

    ds = synthetic_result.dataset
    other = ds.assign_coords(patient=["p-1"]) * 2.0
    two = xr.concat([ds.assign_coords(patient=["p-0"]), other], dim="patient")
    doubled = two.isel(site=[0, 0, 1]).assign_coords(site=[SITES[0], SITES[0], SITES[1]])

    def by_sel(da: xr.DataArray, patient: Any, site: Any, layer: Any) -> xr.DataArray:
        da = da.isel(patient=patient) if isinstance(patient, int) else da.sel(patient=patient)
        if site is not None:
            da = da.sel(site=site)
        return da.sel(layer=layer) if layer is not None and "layer" in da.dims else da

    name = next(str(n) for n, v in ds.data_vars.items() if "layer" in v.dims)
    cases = list(itertools.product((0, 1, "p-1"), (None, *SITES), (None, "papillary_dermis")))
    for data in (two, doubled):
        for patient, site, layer in cases:
            got = report._select(data[name], patient, site, layer)
            want = by_sel(data[name], patient, site, layer)
            assert got.identical(want), (patient, site, layer)
    assert report._select(doubled[name], 0, SITES[0], None).sizes["site"] == 2
    with pytest.raises(KeyError):
        report._select(two[name], 0, "no-such-site", None)


def test_references_are_collapsed_with_their_count_and_open_for_print(
    report_html: tuple[str, list[Path]],
) -> None:
    """The reference list (a hundred and more in a real run) is a collapsed ``<details>`` whose
    summary counts it; print opens it (the print style sheet and a ``beforeprint`` handler)."""
    text, _ = report_html
    refs = text[
        text.index('id="references"') : text.index("</section>", text.index('id="references"'))
    ]
    details = re.search(r"<details([^>]*)>\s*<summary>([^<]*)</summary>", refs)
    assert details is not None, "the references sit in a <details>"
    assert "data-print-open" in details.group(1) and " open" not in details.group(1)
    assert details.group(2).startswith("3 references")
    assert refs.index("<details") < refs.index('<ol class="refs">') < refs.index("</details>")
    assert "beforeprint" in refs and "data-print-open" in refs
    css = (Path(report.__file__).parent / "templates" / "report.css").read_text(encoding="utf-8")
    printed = css[css.index("@media print") :]
    assert "details[data-print-open]::details-content" in printed

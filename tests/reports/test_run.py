"""Figures and the HTML report, on the synthetic Result of conftest.py (no physics)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import microneedling
from microneedling.engine.result import Result
from microneedling.errors import InputError
from microneedling.parameters.parameter_set import ParameterSet
from microneedling.reports import run as report
from microneedling.reports.run import (
    FIGURE_FOOTER,
    format_interval,
    format_number,
    plot_variable,
    pretty_units,
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

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


# ----------------------------------------------------------------------------- formatting
@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (1234.6, "1235"),
        (18.4644, "18.5"),
        (0.012345, "0.0123"),
        (0.0, "0"),
        (-2.5, "-2.50"),
        (float("nan"), "—"),
        (1.5e7, "1.50e+07"),
        (3e-6, "3.00e-06"),
    ],
)
def test_format_number(x: float, expected: str) -> None:
    assert format_number(x) == expected


def test_format_interval_and_units() -> None:
    assert format_interval(1.0, 2.5) == "1.00–2.50"
    assert format_interval(float("nan"), 2.0) == ""
    assert format_interval(-13.8, 14.0) == "-13.8 to 14.0"
    assert pretty_units("ug/cm^2") == "µg/cm²"
    assert pretty_units("um") == "µm"
    assert pretty_units("cm^-2") == "cm⁻²"
    assert pretty_units("1") == ""
    assert pretty_units("mm") == "mm"


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
    real_save = report._save

    def spy(fig: Any, path: Path) -> Path:
        seen[path.stem] = fig
        return real_save(fig, path)

    monkeypatch.setattr(report, "_save", spy)
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
    # one curve per site and session, starting at the session (x from 0)
    curves = [ln for ln in ery_ax.get_lines() if "session" in str(ln.get_label())]
    assert len(curves) == len(SITES) * len(SESSION_DAYS)
    assert all(float(ln.get_xdata()[0]) == pytest.approx(0.0, abs=1.0) for ln in curves)


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
class _Checker(HTMLParser):
    """Balanced tags, plus every external reference (src/href/url(...))."""

    VOID = frozenset({"meta", "link", "img", "br", "hr", "input", "col", "area", "base", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("src"):
            self.srcs.append(str(a["src"]))
        if a.get("href"):
            self.hrefs.append(str(a["href"]))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("src"):
            self.srcs.append(str(a["src"]))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
            return
        self.stack.pop()


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


def test_report_disclaimer_top_and_bottom(report_html: tuple[str, list[Path]]) -> None:
    text, _ = report_html
    d = html.escape(microneedling.DISCLAIMER)
    assert text.count(d) == 2
    body = text[text.index("<body>") :]
    assert body.index(d) < body.index("<h1>")  # before anything else
    assert body.rindex(d) > body.index('id="provenance"')  # and after everything


def test_report_escapes_user_text(report_html: tuple[str, list[Path]]) -> None:
    text, _ = report_html
    assert COURSE_NAME not in text
    assert html.escape(COURSE_NAME) in text
    assert "<cheek>" not in text
    assert "tests &lt;1&gt;" in text  # citation text is escaped too


def test_report_is_self_contained_and_well_formed(report_html: tuple[str, list[Path]]) -> None:
    text, figs = report_html
    parser = _Checker()
    parser.feed(text)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    assert len(parser.srcs) == len(figs)
    assert all(s.startswith("data:image/png;base64,") for s in parser.srcs)
    # the only links are the references' own pages (opened on click, never fetched)
    assert sorted(parser.hrefs) == ["https://example.org/alpha", "https://example.org/gamma"]
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert "<script src" not in text


def test_report_sections_content(
    report_html: tuple[str, list[Path]], synthetic_result: Result
) -> None:
    text, _ = report_html
    ds = synthetic_result.dataset
    # patient summary from the course TOML, sessions table one row per site and session
    assert "skin type" in text and "III" in text
    sessions = text[text.index('id="summary"') : text.index('id="warnings"')]
    assert sessions.count("<tr>") == len(SITES) * len(SESSION_DAYS) + 1  # + header
    assert text.count('<tr class="group">') == len(SITES)  # one end-point block per site
    # end points: every row of result.endpoints() with its value, interval and units
    endpoints = text[text.index('id="endpoints"') : text.index('id="trajectories"')]
    df = synthetic_result.endpoints()
    assert endpoints.count("<tr><td>") == len(df)
    row = df[(df.variable == "collagen_change") & (df.site == "cheek")].iloc[0]
    assert format_number(row.value) in endpoints
    assert format_interval(row.low, row.high) in endpoints
    assert "µg/cm²" in endpoints
    # warnings, references, provenance
    assert html.escape(WARNINGS[0]) in text
    refs = text[text.index('id="references"') : text.index('id="provenance"')]
    assert re.findall(r"\[(zztest_\w+)\]", refs) == [
        "zztest_alpha2001",
        "zztest_beta2010",
        "zztest_gamma2020",
    ]
    prov = text[text.index('id="provenance"') :]
    for key in ("parameter_set_hash", "seed", "created", "microneedling_version"):
        assert html.escape(str(ds.attrs[key])) in prov, key


def test_report_chart_data_matches_dataset(
    report_html: tuple[str, list[Path]], synthetic_result: Result
) -> None:
    text, _ = report_html
    m = re.search(r'<script type="application/json" id="mn-chart-data">(.*?)</script>', text, re.S)
    assert m is not None
    data = json.loads(m.group(1))
    ds = synthetic_result.dataset
    assert "chart-striae_width" not in data  # all NaN: no chart
    assert text.count('class="mn-chart"') == len(data)
    c = data["chart-collagen_change"]
    assert [s["name"] for s in c["series"]] == list(SITES)
    t = np.asarray(c["t"])
    np.testing.assert_allclose(t, ds["time"].values, rtol=1e-4)  # 201 points: not decimated
    expected = ds["collagen_change"].isel(patient=0).sel(site="cheek", layer="papillary_dermis")
    np.testing.assert_allclose(c["series"][0]["v"], expected.values, rtol=1e-4, atol=1e-9)
    hi = ds["collagen_change_high"].isel(patient=0).sel(site="cheek", layer="papillary_dermis")
    np.testing.assert_allclose(c["series"][0]["hi"], hi.values, rtol=1e-4, atol=1e-9)
    assert c["units"] == "%"
    scar = data["chart-scar_depth"]
    assert [s["name"] for s in scar["series"]] == ["cheek"]


def test_report_decimation_keeps_peaks() -> None:
    from microneedling.reports.run import _decimate

    t = np.linspace(0, 100, 5001)
    y = np.zeros_like(t)
    y[1234] = 5.0  # a one-sample spike must survive
    keep = _decimate(t, [y], max_points=200)
    assert len(keep) <= 200 * 2 + 2
    assert 1234 in keep and keep[0] == 0 and keep[-1] == len(t) - 1
    assert np.all(np.diff(keep) > 0)


def test_report_without_warnings_and_figures(synthetic_result: Result) -> None:
    del synthetic_result.dataset.attrs["warnings"]
    text = render_html(synthetic_result, [])
    assert "No warnings were raised" in text
    assert "data:image/png" not in text
    assert "Figures were not written" in text


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_report_script_is_valid_javascript(
    report_html: tuple[str, list[Path]], tmp_path: Path
) -> None:
    text, _ = report_html
    scripts = re.findall(r"<script>(.*?)</script>", text, re.S)
    assert len(scripts) == 1
    js = tmp_path / "report.js"
    js.write_text(scripts[0])
    proc = subprocess.run(["node", "--check", str(js)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

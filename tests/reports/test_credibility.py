"""Rendering of the credibility report and the validation tables (reports.credibility): a
self-contained page with every section, every verification check with its measured value, failures
shown as failures, and text tables that list every row."""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path

import pytest

from microneedling.reports.credibility import (
    delivery_table,
    render_html,
    validation_table,
    write_report,
)
from microneedling.reports.format import format_number
from microneedling.studies.credibility.delivery import Prediction, Row
from microneedling.studies.credibility.literature import rows
from microneedling.studies.credibility.report import build_report
from microneedling.studies.credibility.validate import RowResult, Validation
from microneedling.studies.credibility.verification import CHECKS
from tests.reports.shell import Page, chart_figures, check_charts, check_shell, without_scripts


@pytest.fixture(scope="module")
def report() -> dict:
    return build_report(draws=8, seed=0, sobol=False, verification=True, checks=True)


def test_html_is_self_contained_with_every_section(report: dict, tmp_path: Path) -> None:
    page = render_html(report)
    check_shell(page, "Credibility report")  # the one shell: one style, disclaimer twice, ...
    # no external assets (the inlined chart library's own strings are code, not page content)
    assert re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", without_scripts(page)) is None
    for section in (
        "Context of use and credibility",
        "Code verification",
        "Calculation verification",
        "Calibration",
        "leave-one-study-out",
        "Validation",
        "ASME V&amp;V 20",
        "Population: virtual cohorts",
        "Qualitative behaviours",
        "limits",
    ):
        assert section in page, section
    for limit in report["limits"]:
        assert limit in html.unescape(page)
    assert set(check_charts(page)) == {"chart-validation"}  # Plotly, not hand-made SVG
    out = write_report(tmp_path / "cred", report)
    names = sorted(p.name for p in out.iterdir())
    assert names == [".microneedling-run", "credibility.json", "report.html"]
    assert json.loads((out / "credibility.json").read_text()) == report
    assert (out / "report.html").read_text() == page
    assert json.loads((out / "credibility.json").read_text())["validation"]["n_rows"] == len(
        rows("validation")
    )


def test_validation_chart_is_the_validation(report: dict) -> None:
    """One marker per evaluated row, placed at (model − observed) / tolerance, its 80% interval
    as error bars; green rows within tolerance; the axis says what it measures."""
    import plotly.graph_objects as go

    fig = chart_figures(render_html(report))["chart-validation"]
    go.Figure(fig)  # a valid Plotly figure
    val = report["validation"]
    by_name = {t["name"]: t for t in fig["data"]}
    inside, outside = by_name["within tolerance"], by_name.get("outside tolerance")
    assert len(inside["y"]) == val["n_pass"]
    n_out = 0 if outside is None else len(outside["y"])
    assert len(inside["y"]) + n_out == val["n_evaluated"]
    rows_by_key = {r["key"]: r for r in val["rows"]}
    for key, x in zip(inside["y"], inside["x"], strict=True):
        r = rows_by_key[key]
        assert r["status"] == "pass"
        if x is not None and isinstance(r["predicted"], float):
            expect = (r["predicted"] - r["observed"]) / (r["tolerance"] or 1.0)
            # the page holds six significant digits of each number: 1e-3 tolerance
            assert x == pytest.approx(max(-4.0, min(4.0, expect)), rel=1e-3, abs=1e-3)
    assert "tolerance" in fig["layout"]["xaxis"]["title"]["text"]
    assert fig["layout"]["xaxis"]["automargin"] and fig["layout"]["yaxis"]["automargin"]


def test_code_verification_section_shows_every_check_with_its_numbers(report: dict) -> None:
    ver = report["code_verification"]
    assert ver["status"] == "ran"
    assert ver["n_passed"] == len(ver["checks"]) == len(CHECKS)
    page = render_html(report)
    assert f"{len(CHECKS)}/{len(CHECKS)} verification checks passed" in page
    cells = [c for tab in Page(page).tables for r in tab.rows for c in r]
    for c in ver["checks"]:
        assert c["name"] in cells
        assert format_number(c["measured"], 4) in cells
    assert "FAIL" not in cells


def test_a_failed_check_is_shown_as_failed(report: dict) -> None:
    bad = copy.deepcopy(report)
    bad["code_verification"]["checks"][0].update(passed=False, measured=None)
    bad["code_verification"]["n_passed"] -= 1
    page = render_html(bad)
    n = len(CHECKS)
    assert f"{n - 1}/{n} verification checks passed" in page
    row = re.search(
        r'<tr class="highlight">\s*<td>' + re.escape(bad["code_verification"]["checks"][0]["name"]),
        page,
    )
    assert row is not None and "FAIL" in page


def test_every_context_of_use_has_its_verdict_and_goals(report: dict) -> None:
    page = html.unescape(render_html(report))
    uses = report["credibility"]["uses"]
    assert [u["command"] for u in uses] == ["simulate", "plan", "trial", "absorb"]
    for u in uses:
        assert u["verdict"] in page
        assert f"{u['command']}: credibility goals and what this run achieved" in page
        for f in u["factors"]:
            assert f["evidence"] in page
    assert "model risk" in page


@pytest.mark.parametrize(
    ("table", "key", "caption"),
    [
        ("by_family", "family", "Validation per claim family"),
        ("by_assessor", "assessor", "Validation by who assessed the observed number"),
    ],
)
def test_validation_per_group_is_tabled(report: dict, table: str, key: str, caption: str) -> None:
    groups = report["validation"]["summary"][table]
    assert groups and sum(g["rows"] for g in groups) == report["validation"]["n_rows"]
    assert sum(g["evaluated"] for g in groups) == report["validation"]["n_evaluated"]
    page = html.unescape(render_html(report))
    assert caption in page
    cells = [c for tab in Page(render_html(report)).tables for r in tab.rows for c in r]
    for g in groups:
        assert g[key] in cells and f"{g['pass']}/{g['evaluated']}" in cells


def test_a_posterior_fitted_on_another_parameter_set_is_called_stale(report: dict) -> None:
    stale = copy.deepcopy(report)
    cal = stale["calibration"]
    if cal.get("status") != "shipped":
        pytest.skip("no shipped posterior")
    word = "stale until `microneedling calibrate` is re-run"
    cal["fitted_on_parameter_set"] = "0" * 16
    assert word in html.unescape(render_html(stale))
    cal["fitted_on_parameter_set"] = cal["current_parameter_set"]
    assert word not in html.unescape(render_html(stale))


def test_a_calibration_check_of_changed_inputs_is_flagged(report: dict) -> None:
    """The shipped posterior's own check says its inputs are as fitted; a check whose likelihood
    differs from the fit's (rows, protocols or settings changed since) carries a warning."""
    cc = report["validation"]["calibration_check"]
    assert cc["inputs_as_fitted"] is True
    word = "changed since the posterior was fitted"
    assert word not in html.unescape(render_html(report))
    changed = copy.deepcopy(report)
    changed["validation"]["calibration_check"]["inputs_as_fitted"] = False
    assert word in html.unescape(render_html(changed))


def test_studies_scored_by_a_shipped_refit_say_so(report: dict) -> None:
    """The calibration check scores each study of a shipped refit by the refit: the report names
    them, each table row says which estimate it is, and the largest Pareto k is that of the
    studies still estimated by importance sampling."""
    from microneedling.parameters.sampling import load_posterior
    from microneedling.studies.credibility.loso_refit import refits_dir

    cc = report["validation"]["calibration_check"]
    loso = cc["loso"]
    post = load_posterior()
    shipped = {
        load_posterior(p).summary["left_out"][0]: load_posterior(p).version
        for p in refits_dir(post).glob("posterior-*.toml")
    }
    assert len(shipped) >= 2 and loso["refits_refused"] == []
    assert {r["study"]: r["posterior"] for r in loso["refitted"]} == shipped
    # (JSON-clean: an infinite k, possible with the fixture's 8 draws, is the text "inf")
    by_is = [float(s["pareto_k"]) for s in loso["studies"] if s["estimate"] != "refit"]
    assert float(loso["max_pareto_k"]) == max(by_is)
    page = html.unescape(render_html(report))
    assert "Scored by an exact refit without the study instead" in page
    for study, version in shipped.items():
        assert f"{study} ({version})" in page
        assert f"refit ({version}; importance sampling gave elpd" in page


def test_skipped_sections_say_so(report: dict) -> None:
    skipped = dict(report, code_verification={"status": "skipped"})
    page = render_html(skipped)
    assert "Not run: skipped." in page
    assert re.search(r"<h2>Global sensitivity \(Sobol indices\)</h2>\s*<p>Skipped.</p>", page)


def _row_result(key: str, status: str, covered: bool | None, bound: str | None = None) -> RowResult:
    nan = float("nan")
    ev = status != "not evaluated"
    return RowResult(
        key=key, quantity="q", sources=("s",), study="s", family="acne_scars",
        kind="gaussian" if ev else "", evidence="SEEN", units="%", observed=10.0, tolerance=5.0,
        bound=bound, predicted=12.0 if ev else nan, median=12.0 if ev else nan,
        low=8.0 if ev else nan, high=15.0 if ev else nan, low50=10.0 if ev else nan,
        high50=13.0 if ev else nan, band_low=9.0 if ev else nan, band_high=14.0 if ev else nan,
        status=status, covered=covered, covered50=covered, pit=0.25 if ev else nan,
        crps=0.3 if ev else nan, crps_baseline=0.6 if ev else nan,
        interval_score=1.4 if ev else nan, sharpness=1.4 if ev else nan, vv20={},
        comparable="c", assumptions="a",
    )  # fmt: skip


def test_validation_table_lists_every_row_and_the_summary() -> None:
    v = Validation(
        (
            _row_result("row_pass", "pass", True),
            _row_result("row_miss", "miss", False, bound="upper"),
            _row_result("row_ne", "not evaluated", None),
        ),
        draws=8,
        seed=3,
        interval=(10.0, 90.0),
        parameter_set_hash="abc",
    )
    lines = validation_table(v).splitlines()
    assert lines[0].split() == [
        "row", "observed", "tolerance", "model", "10%", "90%", "PIT", "units", "result", "covered",
    ]  # fmt: skip
    assert lines[1].split()[0] == "row_pass" and lines[1].split()[-2:] == ["pass", "yes"]
    assert lines[1].split()[6] == "0.25"  # the PIT
    # a bound reads as a bound, in words a reader knows, never Python's "<="
    assert "≤ 10" in lines[2] and "<=" not in lines[2] and lines[2].split()[-2:] == ["miss", "no"]
    # rows not evaluated are not table lines full of NaN: they are listed with their reason
    assert not any(ln.startswith("row_ne") for ln in lines)
    assert lines[3] == "not evaluated (1 rows), by reason:"
    assert lines[4] == "  - a (1): row_ne"
    assert "nan" not in "\n".join(lines).lower()
    assert lines[-1] == (
        "within tolerance: 1/2 evaluated rows (1 not evaluated); 10-90% interval coverage: 1/2 "
        "= 50% (8 draws, seed 3)"
    )


def test_delivery_table_is_markdown_with_one_line_per_row() -> None:
    row = Row(
        key="r1", source="s", evidence="SEEN", quantity="amount", observed=2.0, units="ug/cm2",
        tolerance_factor=2.0, tolerance_reason="t", molecule="caffeine", skin_model="human",
        needle_length_um=500.0, needle_diameter_um=300.0, density_per_cm2=250.0, occluded=False,
        concentration_mg_per_ml=10.0, film_thickness_um=20.0, time_h=24.0, sc_um=15.0,
        viable_epidermis_um=60.0, dermis_um=1000.0,
    )  # fmt: skip
    ok = Prediction(row, 3.0, 100.0, 60.0)
    miss = Prediction(Row(**{**row.__dict__, "key": "r2", "quantity": "enhancement_ratio"}), 5.0,
                      100.0, 60.0)  # fmt: skip
    lines = delivery_table([ok, miss]).splitlines()
    assert lines[0].startswith("| row | molecule |") and set(lines[1]) == {"|", "-"}
    assert lines[2] == (
        "| r1 | caffeine | 500 µm, 250/cm² | 24 h | 2 µg/cm² | 3 µg/cm² | 1.5 | ×/÷2 | SEEN | pass |"
    )
    assert lines[3].endswith("| MISS |") and "µg" not in lines[3]
    assert all(line.count("|") == 11 for line in lines)


def test_the_sobol_section_draws_each_end_point_as_bars(report: dict) -> None:
    """A report with a Sobol study: one bar chart per end point (largest total index on top) beside
    the table; a report saved before S1_conf was recorded still renders (bars without errors)."""
    with_sobol = copy.deepcopy(report)
    top = [
        {"parameter": "healing.k_1", "ST": 0.61, "ST_conf": 0.08, "S1": 0.52, "S1_conf": 0.07},
        {"parameter": "needles.puncture_force", "ST": 0.22, "ST_conf": 0.05, "S1": 0.18},
    ]
    with_sobol["sensitivity"] = {
        "engine": "sobol", "course": "acne", "n_base": 64, "seed": 0, "n_factors": 12,
        "n_runs": 896,
        "endpoints": {"Collagen at 6 months": {"endpoint": "collagen_change@180", "top": top}},
    }  # fmt: skip
    page = render_html(with_sobol)
    figures = check_charts(page)
    assert set(figures) == {"chart-validation", "chart-credibility-sobol-0"}
    total, first = figures["chart-credibility-sobol-0"]["data"][:2]
    assert total["y"] == ["needles.puncture_force", "healing.k_1"]  # largest drawn on top
    assert total["x"] == [0.22, 0.61] and first["x"] == [0.18, 0.52]
    assert "healing.k_1 has the largest total index" in html.unescape(page)

"""The practitioner's journey in a real browser: sign in, a patient refused for isotretinoin (with
its reason and source), a new two-site patient, plan (the Pareto chart drawn), pick, simulate, the
result's charts, the NetCDF download opened with xarray, the handout and a what-if."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from microneedling.course.model import Course
from microneedling.errors import InputFileError
from tests.web.conftest import Browsing

pytestmark = pytest.mark.slow


def fill_patient(b: Browsing, name: str, isotretinoin: str, second_site: bool) -> None:
    page = b.page
    b.go("/web/patients/new")
    page.get_by_label("Name or reference").fill(name)
    page.get_by_label("Age (years)").fill("28")
    page.get_by_label("Fitzpatrick skin type").select_option("4")
    page.get_by_label("Isotretinoin: months since the last dose").fill(isotretinoin)
    site1 = page.locator("fieldset", has_text="Site 1")
    site1.get_by_label("Concern").select_option("acne_scar")
    site1.get_by_label("Severity").select_option("severe")
    site1.get_by_label("Scar depth (mm)").fill("0.5")
    site1.get_by_label("Number of scars").fill("20")
    if second_site:
        site2 = page.locator("fieldset", has_text="Site 2")
        site2.get_by_label("Site", exact=True).select_option("nose")
        site2.get_by_label("Concern").select_option("pores")
        site2.get_by_label("Severity").select_option("mild")
        site2.get_by_label("Pore diameter (µm)").fill("250")
    b.shot("intake")
    page.get_by_role("button", name="Save and screen").click()
    page.wait_for_url(re.compile(r".*/web/patients/\d+$"))


def test_refusal_for_isotretinoin(signed_in: Any) -> None:
    b = signed_in()
    fill_patient(b, "Refused: isotretinoin 2 months ago", "2", second_site=False)
    stop = b.page.locator("#refusal")
    assert stop.is_visible()
    assert "absolute contraindication" in stop.inner_text().lower()
    finding = b.page.locator("li.finding.absolute")
    assert finding.count() >= 1
    text = finding.first.inner_text()
    assert "Isotretinoin" in text and "2 months ago" in text
    assert "within 6 months" in text  # the washout window of data/parameters/safety.toml
    assert "Sources:" in text and len(text.split("Sources:")[1].strip()) > 10
    # planning stops: no plan form, no course to write
    assert b.page.locator("#plan-button").count() == 0
    b.shot("screening-refused")


def test_plan_pick_simulate_download(signed_in: Any, tmp_path: Path) -> None:
    import xarray as xr

    b = signed_in()
    page = b.page
    fill_patient(b, "Two sites: cheek scars and nose pores", "18", second_site=True)
    assert page.locator("#refusal").count() == 0
    b.shot("screening")
    page.get_by_label("Most sessions").fill("4")
    page.get_by_role("button", name="Plan").click()
    page.wait_for_url(re.compile(r".*/web/runs/\d+$"))
    page.wait_for_selector("#pareto", timeout=60_000)  # the wait page reloads when the job ends
    assert b.charts_drawn() >= 1
    star = page.evaluate(
        "document.querySelector('[data-chart=chart-pareto]').data.some(t => t.name === 'recommended')"
    )
    assert star
    assert "(recommended)" in page.locator("tr.highlight").first.inner_text()
    # plans that differ only in their passes are told apart, and a tiny risk reads as one
    assert "Passes per site" in page.locator("#pareto thead").inner_text()
    assert re.search(r"mm × \d+ passes", page.locator("#recommended .message.ok").inner_text())
    assert not re.search(r"\de-\d", page.locator("#pareto table").inner_text())
    b.shot("plan")
    # a click on a point of the Pareto chart chooses that plan below
    page.evaluate(
        "document.addEventListener('mn-chart-click', e => { window.mnPicked = e.detail.point; })"
    )
    point = (
        page.locator("[data-chart=chart-pareto] .scatterlayer .trace")
        .first.locator(".points path")
        .first
    )
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(200)  # Plotly's hover picks the point under the pointer
    page.mouse.down()
    page.mouse.up()
    page.wait_for_function("() => window.mnPicked !== undefined")
    picked = page.evaluate("window.mnPicked")
    assert page.locator(f"#plan-{picked}").is_checked()
    recommended = page.locator("input[name=index][id^=plan-]").and_(
        page.locator("xpath=//input[following-sibling::label[contains(., '(recommended)')]]")
    )
    recommended.check()
    page.get_by_role("button", name="Use this plan").click()
    page.wait_for_url(re.compile(r".*/web/courses/\d+$"))
    b.shot("course-editor")
    page.get_by_role("button", name="Save and simulate").click()
    page.wait_for_url(re.compile(r".*/web/runs/\d+$"))
    page.wait_for_selector("#endpoints")
    assert "not a diagnosis" in page.locator(".disclaimer").first.inner_text()
    assert b.charts_drawn() >= 3
    # trajectories carry their 10-90% band and the session markers
    traces = page.evaluate(
        "[...document.querySelectorAll('.js-plotly-plot')].map(e => e.data.length)"
    )
    assert max(traces) >= 2
    # every end point has its units (a dimensionless one says what its number is)
    units = page.locator("#endpoints tbody tr:not(.group) td:nth-child(6)").all_inner_texts()
    assert units and all(u.strip() for u in units)
    b.shot("result")
    # the long reference list is collapsed, its count in the summary, and opened for print
    refs = page.locator("#references details")
    assert refs.get_attribute("open") is None
    assert re.match(r"\d+ references?", refs.locator("summary").inner_text())
    assert not page.locator("#references ol.refs").is_visible()
    page.emulate_media(media="print")
    assert page.locator("#references ol.refs").is_visible()
    page.emulate_media(media="screen")
    with page.expect_download() as info:
        page.locator("[data-download='result.nc']").click()
    path = tmp_path / "result.nc"
    info.value.save_as(path)
    with xr.open_dataset(path) as ds:
        assert set(ds["site"].values) == {"cheek", "nose"}
        assert "time" in ds.dims and ds.sizes["time"] > 10
        assert "scar_depth" in ds.data_vars
    run_url = page.url
    page.get_by_role("link", name="Patient handout").click()
    page.wait_for_url(re.compile(r".*/handout$"))
    text = page.locator("main").inner_text()
    assert "Your plan" in text and "visible redness" in text
    # the patient's words: no practitioner's jargon, the range explained, the numbers kept
    for jargon in ("R2-like", "Worst-session", "PIH risk", "10–90%"):
        assert jargon not in text, jargon
    assert "most likely between" in text and "8 in 10 people like you" in text
    assert "not a diagnosis" in page.locator(".disclaimer").first.inner_text()
    b.shot("handout")
    page.emulate_media(media="print")
    assert page.locator("nav.app").is_hidden()
    pdf = page.pdf(format="A4", print_background=True)  # what "Save as PDF" gives
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1  # one page
    page.emulate_media(media="screen")
    # what-if: course B with 3 sessions 28 d apart, both on the same charts
    page.goto(run_url)
    page.get_by_role("link", name="What-if with this course").click()
    page.get_by_label("B: sessions per site").fill("3")
    page.get_by_label("B: interval between sessions (d)").fill("28")
    page.get_by_role("button", name="Compare A and B").click()
    page.wait_for_url(re.compile(r".*/web/whatif\?a=\d+&b=\d+$"))
    assert b.charts_drawn() >= 2
    names = page.evaluate(
        "[...document.querySelectorAll('.js-plotly-plot')].flatMap(e => e.data.map(t => t.name || ''))"
    )
    assert any(n.startswith("A (run") for n in names) and any(n.startswith("B (run") for n in names)
    # the end points of A and B are read at the same point of each course, one row each (A's
    # read-outs were each set against B's last one, in rows that looked alike)
    table = page.locator("#endpoints table")
    assert "When" in table.locator("thead").inner_text()
    rows = [tuple(r.locator("td").all_inner_texts()[:3]) for r in table.locator("tbody tr").all()]
    assert len(rows) == len(set(rows))
    assert any("30 d after the last session" in r[2] and "A: day" in r[2] and "B: day" in r[2]
               for r in rows)  # fmt: skip
    b.shot("whatif")


def test_field_errors_at_the_field(signed_in: Any, server: str) -> None:
    """A needle too long for the cheek: the CLI's message appears under that session's needle
    length as one types, and again after submitting (the course is not saved)."""
    b = signed_in()
    page = b.page
    fill_patient(b, "Field errors", "18", second_site=False)
    page.get_by_role("button", name="Write a course by hand").click()
    page.wait_for_url(re.compile(r".*/web/courses/\d+$"))
    length = page.get_by_label("Session 1: needle length (mm)")
    length.fill("2.9")
    slot = page.locator("[data-error-for='sessions[0].needle_length_mm']")
    page.wait_for_function(
        "() => document.querySelector(\"[data-error-for='sessions[0].needle_length_mm']\")"
        ".textContent.length > 0"
    )
    shown = slot.inner_text()
    # the same message as the command line: validate the same course in process
    data = {
        "name": "x", "horizon_days": 180,
        "patient": {"age_years": 28, "sex": "female", "fitzpatrick": 4},
        "sites": [{"name": "cheek"}],
        "device": {"type": "roller", "needle_count": 192, "needle_diameter_mm": 0.25,
                   "tip_radius_um": 4.0, "tip": "cone", "max_needle_length_mm": 2.0,
                   "drum_diameter_mm": 20.0, "drum_width_mm": 20.0},
        "sessions": [{"day": 0, "site": "cheek", "needle_length_mm": 2.9, "passes": 10}],
    }  # fmt: skip
    with pytest.raises(InputFileError) as exc:
        Course.from_dict(data, source="course")
    expected = [str(p) for p in exc.value.problems if p.field == "sessions[0].needle_length_mm"]
    assert expected and all(m in shown for m in expected)
    assert length.get_attribute("aria-invalid") == "true"
    # other fields carry no error
    assert page.locator("[data-error-for='sessions[0].passes']").inner_text() == ""
    b.shot("field-error")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_load_state()
    assert all(m in page.locator("[data-error-for='sessions[0].needle_length_mm']").inner_text()
               for m in expected)  # fmt: skip
    assert page.locator(".message.error").is_visible()
    # a correct value clears it
    page.get_by_label("Session 1: needle length (mm)").fill("1.0")
    page.wait_for_function(
        "() => document.querySelector(\"[data-error-for='sessions[0].needle_length_mm']\")"
        ".textContent.length === 0"
    )

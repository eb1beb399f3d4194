"""The absorption study and a small virtual trial through the pages, in a real browser: the
absorption tables and the r-z map; the trial's live progress (server-sent events) to its report."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_absorption_study(signed_in: Any) -> None:
    b = signed_in()
    page = b.page
    b.go("/web/absorb")
    page.get_by_label("Molecule").select_option("niacinamide")
    page.get_by_label("Needle length (mm)").fill("0.5")
    page.get_by_label("Uncertainty draws").fill("8")
    b.shot("absorb-form")
    page.get_by_role("button", name="Run the absorption study").click()
    page.wait_for_url(re.compile(r".*/web/runs/\d+$"))
    page.wait_for_selector("#amounts", timeout=90_000)
    # the wait page reloads into the result; Chromium restores a reloaded page's scroll position
    # when its load ends, which would undo the scroll below if it came first (1 run in 4 did)
    page.wait_for_load_state("load")
    table = page.locator("#amounts table")
    head = table.locator("thead").inner_text()
    assert "Absorbed with channels" in head and "µg/cm²" in head and "Enhancement ratio" in head
    cells = table.locator("tbody tr").first.locator("td").all_inner_texts()
    dose, absorbed = float(cells[3]), float(cells[4].split()[0])
    assert 0 < absorbed <= dose  # never more than was applied
    assert float(cells[6].split()[0]) > 1  # channels enhance uptake over intact skin
    # the r-z map is an interactive Plotly heatmap, drawn when it scrolls into view
    plot = page.locator("#maps [data-chart='chart-map-0-0']")
    plot.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => { const d = document.querySelector(\"#maps [data-chart='chart-map-0-0']\"); "
        "return d && d.data && d.data.some(t => t.type === 'heatmap'); }"
    )
    colour_title = page.evaluate(
        "() => document.querySelector(\"[data-chart='chart-map-0-0']\").data"
        ".find(t => t.type === 'heatmap').colorbar.title.text"
    )
    assert "mg/mL" in colour_title
    assert page.locator("#maps img").count() == 0
    assert page.locator("#files a[href$='.png']").count() >= 1  # the PNGs stay, for print
    assert "not a diagnosis" in page.locator(".disclaimer").first.inner_text()
    b.shot("absorb-result")


def test_absorption_field_error(signed_in: Any) -> None:
    b = signed_in()
    page = b.page
    b.go("/web/absorb")
    page.get_by_label("Needle length (mm)").fill("9")
    page.get_by_role("button", name="Run the absorption study").click()
    page.wait_for_load_state()
    err = page.locator("[data-error-for='sessions[0].needle_length_mm']").inner_text()
    assert "sessions[0].needle_length_mm: got 9" in err
    assert page.get_by_label("Needle length (mm)").get_attribute("aria-invalid") == "true"


def test_small_trial_with_live_progress(signed_in: Any) -> None:
    b = signed_in()
    page = b.page
    b.go("/web/trials/new")
    page.get_by_label("Patients per arm").fill("12")
    # the builder offers 8 parameter sets (two patients each at its 20 per arm); 4 for 12
    assert (
        page.get_by_label("Parameter sets (posterior draws; 0: median only)").input_value() == "8"
    )
    page.get_by_label("Parameter sets (posterior draws; 0: median only)").fill("4")
    b.shot("trial-builder")
    page.get_by_role("button", name="Run the trial").click()
    page.wait_for_url(re.compile(r".*/web/runs/\d+$"))
    # the wait page: a progress bar fed by the run's server-sent events, then the report
    seen = page.evaluate("""() => new Promise(resolve => {
        const bar = document.getElementById('run-progress');
        if (!bar) { resolve([]); return; }
        const values = [bar.value];
        new MutationObserver(() => values.push(bar.value))
            .observe(bar, {attributes: true, childList: true});
        setInterval(() => { values.push(bar.value); }, 100);
        window.addEventListener('beforeunload', () => resolve(values));
        setTimeout(() => resolve(values), 60000);
    })""")  # fmt: skip
    page.wait_for_selector("#comparisons", timeout=120_000)
    if seen:  # the job may finish before the page has loaded
        assert max(seen) > 0
        assert seen == sorted(seen)  # progress never goes back
    summary = page.locator("#arms table").inner_text()
    assert "roller 1.5 mm" in summary and "pen 1.0 mm" in summary
    assert "Atrophic scar depth, reduction" in summary  # end points in words
    assert "Over parameter draws (80%)" in summary and "Parameter share" in summary
    comp = page.locator("#comparisons table").inner_text()
    assert "pen 1.0 mm vs roller 1.5 mm" in comp
    assert "Over parameter draws (80%)" in comp and "95% CI given the parameter sets" in comp
    assert "p (Welch t test)" in comp and "p_t" not in comp  # no raw column names
    assert page.locator("#trial-report").count() == 1
    # one histogram per end point, both arms overlaid, the responder threshold on scar depth
    assert b.charts_drawn() == 2
    arms = page.evaluate(
        "document.querySelector('[data-chart=chart-trial-0]').data.map(t => t.name)"
    )
    assert arms[:2] == ["roller 1.5 mm", "pen 1.0 mm"] and "responder threshold" in arms
    # the design in words (no job chunks), the responder rule as written, units in every row
    design = page.locator("#design").inner_text()
    assert "Adults with atrophic acne scars" in design and "Chunks" not in design
    assert "≥ 25%" in summary and ">=" not in summary
    units = page.locator("#arms tbody td:nth-child(6)").all_inner_texts()
    assert units and all(u.strip() for u in units)
    b.shot("trial-result")


def test_credibility_page(signed_in: Any) -> None:
    b = signed_in()
    page = b.page
    b.go("/web/credibility")
    table = page.locator("#validated table")
    assert table.locator("tbody tr").count() > 5
    assert "Needle length" in table.locator("thead").inner_text()
    assert page.locator("#untested li").count() >= 1
    # ranges as settings are written: 6 sessions, not 6.00–6.00
    assert not re.search(r"\b(\d+\.\d+)–\1\b", table.locator("tbody").inner_text())
    b.shot("credibility")
    # the fast delivery validation ends on a page that shows its table (it was a bare link to a
    # Markdown file) and leads back here
    page.get_by_role("button", name="Delivery validation only (fast)").click()
    page.wait_for_url(re.compile(r".*/web/runs/\d+$"))
    page.wait_for_selector("#summary table", timeout=60_000)
    head = page.locator("#summary thead").inner_text()
    assert "predicted" in head and "observed" in head
    assert page.locator("#summary tbody tr").count() >= 1
    assert page.get_by_role("link", name="Back to what the model is validated for").count() == 1
    b.shot("delivery-validation")


def test_cancel_a_running_trial(signed_in: Any) -> None:
    b = signed_in()
    page = b.page
    b.go("/web/trials/new")
    page.get_by_label("Patients per arm").fill("20000")
    page.get_by_role("button", name="Run the trial").click()
    page.wait_for_url(re.compile(r".*/web/runs/\d+$"))
    page.get_by_role("button", name="Cancel this run").click()
    page.wait_for_selector(".message.error", timeout=90_000)  # the wait page reloads at the end
    assert "cancelled" in page.locator(".message.error").inner_text()

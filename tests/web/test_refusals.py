"""A refused form keeps what was typed and says what to correct, in a real browser: the course
editor's device fields, the trial builder's arms and read-out, the what-if form and the intake;
a mistyped address answers a page, not JSON (the practitioner's review of session 34)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from tests.web.test_journey import fill_patient

pytestmark = pytest.mark.slow


def errors_shown(page: Any) -> dict[str, str]:
    return {
        e.get_attribute("data-error-for"): e.inner_text()
        for e in page.locator(".field-error").all()
        if e.inner_text()
    }


def test_course_editor_keeps_the_device_and_says_saved(signed_in: Any) -> None:
    b = signed_in()
    page = b.page
    fill_patient(b, "Editor refusals", "18", second_site=False)
    page.get_by_role("button", name="Write a course by hand").click()
    page.wait_for_url(re.compile(r".*/web/courses/\d+$"))
    # a pen's own fields start from the preset pen (they were empty: required fields to look up)
    page.get_by_label("Device", exact=True).select_option("pen")
    assert page.get_by_label("Needling frequency (Hz)").input_value() == "110.0"
    assert page.get_by_label("Cartridge width (mm)").input_value() == "7.0"
    page.get_by_label("Session 1: pen speed (cm/s), pens only").fill("2")
    page.get_by_label("Session 1: passes").fill("two")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_load_state()
    assert "sessions[0].passes: got 'two'" in errors_shown(page)["sessions[0].passes"]
    # the refused save kept the pen's fields (they came back empty, and the next save failed)
    assert page.get_by_label("Device", exact=True).input_value() == "pen"
    assert page.get_by_label("Needling frequency (Hz)").input_value() == "110.0"
    assert page.get_by_label("Cartridge width (mm)").input_value() == "7.0"
    b.shot("editor-refused")
    page.get_by_label("Session 1: passes").fill("4")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(re.compile(r".*/web/courses/\d+\?saved=1$"))
    assert page.locator("#saved").inner_text() == "Saved."  # "Save" used to say nothing
    assert page.get_by_label("Needling frequency (Hz)").input_value() == "110.0"
    # back to a roller: the pen speed typed for the pen is not a refusal of the roller course
    page.get_by_label("Device", exact=True).select_option("roller")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(re.compile(r".*/web/courses/\d+\?saved=1$"))
    assert errors_shown(page) == {}
    assert page.get_by_label("Session 1: pen speed (cm/s), pens only").input_value() == ""
    # the sessions table fits a desktop page: no column behind a sideways scroll
    wrap = page.locator("#sessions").locator("xpath=ancestor::div[@class='table-wrap']")
    assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth")


def test_trial_builder_shows_every_refusal(signed_in: Any) -> None:
    """Each refused value is named under its input (the builder showed nothing for these and
    replaced an unusable number of sessions by one)."""
    b = signed_in()
    page = b.page
    b.go("/web/trials/new")
    arm2 = page.locator("fieldset", has_text="Arm 2")
    arm2.get_by_label("Needle length (mm)").fill("5")
    arm2.get_by_label("Sessions").fill("x")
    page.get_by_role("button", name="Run the trial").click()
    page.wait_for_load_state()
    assert page.url.endswith("/web/trials/new")  # not started
    shown = errors_shown(page)
    assert "got 5.0; allowed: at most 2.5 mm" in shown["arms[1].needle_length_mm"]
    assert (
        shown["arms[1].sessions"] == "arms[1].sessions: got 'x'; allowed: an integer from 1 to 52"
    )
    assert "2 field(s) to correct" in page.locator(".message.error").first.inner_text()
    assert arm2.get_by_label("Needle length (mm)").input_value() == "5"  # kept as typed
    b.shot("trial-refused")
    arm2.get_by_label("Needle length (mm)").fill("1.0")
    arm2.get_by_label("Sessions").fill("4")
    page.get_by_label("Read out at day (d)").fill("-4")
    page.get_by_role("button", name="Run the trial").click()
    page.wait_for_load_state()
    assert "got -4" in errors_shown(page)["trial.time_points"]
    page.get_by_label("Read out at day (d)").fill("180")
    arm2.get_by_label("Name").fill("roller 1.5 mm")  # the control's name
    page.get_by_role("button", name="Run the trial").click()
    page.wait_for_load_state()
    assert "distinct arm names" in page.locator(".message.error").last.inner_text()


def test_whatif_and_intake_refusals_are_announced_at_the_top(signed_in: Any) -> None:
    b = signed_in()
    page = b.page
    b.go("/web/patients/new")
    page.get_by_label("Name or reference").fill("Intake refusal")
    page.get_by_label("Age (years)").fill("200")
    page.get_by_role("button", name="Save and screen").click()
    page.wait_for_load_state()
    top = page.locator("main .message.error").first
    assert "The patient was not saved" in top.inner_text()
    assert "got 200" in errors_shown(page)["patient.age_years"]
    fill_patient(b, "What-if refusal", "18", second_site=False)
    page.get_by_role("button", name="Write a course by hand").click()
    page.wait_for_url(re.compile(r".*/web/courses/\d+$"))
    page.get_by_label("B: needle length, every session (mm)").fill("3")
    page.get_by_label("B: sessions per site").fill("3")
    page.get_by_role("button", name="Compare A and B").click()
    page.wait_for_load_state()
    # the form is at the bottom of the page: the top says so, with a link to it
    top = page.locator("#whatif-refused")
    assert "Course B was not made" in top.inner_text()
    assert top.locator("a[href='#whatif']").count() == 1
    # one message for B's needle length, not one per session of B
    message = errors_shown(page)["needle_length_mm"]
    assert message.count("got 3.0") == 1 and "at most 2.5 mm" in message


def test_mistyped_addresses_answer_a_page(signed_in: Any) -> None:
    b = signed_in()
    for path, status, words in (("/web/no-such-page", 404, "there is no page at this address"),
                                ("/web/runs/abc", 422, "run_id: got 'abc'"),
                                ("/web/whatif?a=abc&b=1", 422, "a: got 'abc'")):  # fmt: skip
        answer = b.page.request.get(b.base + path)
        assert answer.status == status, path
        assert answer.headers["content-type"].startswith("text/html"), path
        text = html.unescape(answer.text())
        assert words in text and "not a diagnosis" in text and "Back to the patients" in text
    api = b.page.request.get(b.base + "/api/v1/no-such-thing")  # the API keeps its JSON
    assert api.status == 404 and api.headers["content-type"].startswith("application/json")

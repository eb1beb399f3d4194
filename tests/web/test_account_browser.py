"""The account page and the edit and delete pages in a real browser (chromium) against a real
server: a practitioner makes an API token for the Python client and revokes it, adds a colleague,
corrects a patient's intake and deletes the patient after the confirmation step."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import ORG_A, PASSWORD
from tests.web.test_access import UNLABELLED

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_a_token_for_the_python_client_made_and_revoked(signed_in: Any) -> None:
    b = signed_in(ORG_A[0])
    page = b.page
    page.get_by_role("link", name="Account").click()
    page.wait_for_url(re.compile(r".*/web/account$"))
    assert page.locator("#me-email").inner_text() == ORG_A[0]
    assert page.locator("#me-organisation").inner_text() == ORG_A[1]
    page.get_by_label("Name of a new token").fill("browser notebook")
    page.get_by_role("button", name="Make a token").click()
    value = page.get_by_label("Your new token")
    value.wait_for()
    token = value.input_value()
    assert token.startswith("mnt_")
    assert (
        "from microneedling.client import Client" in page.locator("#new-token-example").inner_text()
    )
    b.shot("account-new-token")
    me = httpx.get(f"{b.base}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["user"]["email"] == ORG_A[0]
    b.go("/web/account")
    assert token not in page.content()  # shown once
    row = page.locator("#token-table tr", has_text="browser notebook")
    row.get_by_role("button", name="Revoke the token browser notebook").click()
    page.wait_for_url(re.compile(r".*/web/account\?done=revoked$"))
    assert "refused from now on" in page.locator("#notice").inner_text()
    assert "revoked" in page.locator("#token-table tr", has_text="browser notebook").inner_text()
    gone = httpx.get(f"{b.base}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 401


def test_an_administrator_adds_a_colleague_who_can_sign_in(signed_in: Any) -> None:
    b = signed_in(ORG_A[0])
    page = b.page
    b.go("/web/account")
    page.get_by_label("Their e-mail address").fill("colleague-browser@clinic-a.example")
    page.get_by_label("A first password for them").fill("short")
    page.get_by_role("button", name="Add the user").click()
    assert "The user was not added" in page.locator("#users").inner_text()
    assert "at least 12 characters" in page.locator("#users").inner_text()
    page.get_by_label("A first password for them").fill(PASSWORD)
    page.get_by_label("Role").select_option("member")
    page.get_by_role("button", name="Add the user").click()
    page.wait_for_url(re.compile(r".*/web/account\?done=user-added$"))
    assert "colleague-browser@clinic-a.example" in page.locator("#user-table").inner_text()
    b.shot("account-users")
    colleague = signed_in("colleague-browser@clinic-a.example")
    colleague.go("/web/account")
    assert colleague.page.locator("#me-role").inner_text().startswith("member")
    assert colleague.page.locator("#users").count() == 0


def _patient(base: str) -> int:
    token = httpx.post(f"{base}/api/v1/auth/token",
                       json={"email": ORG_A[0], "password": PASSWORD, "name": "t"}).json()["token"]  # fmt: skip
    patient = tomllib.loads((EXAMPLES / "patients" / "acne-scars-two-sites.toml").read_text())
    patient["name"] = "Patient with a typo"
    r = httpx.post(f"{base}/api/v1/patients", json=patient,
                   headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_a_patient_corrected_then_deleted_after_confirmation(signed_in: Any) -> None:
    b = signed_in(ORG_A[0])
    page = b.page
    pid = _patient(b.base)
    b.go(f"/web/patients/{pid}")
    page.get_by_role("link", name="Edit the intake").click()
    page.wait_for_url(re.compile(rf".*/web/patients/{pid}/edit$"))
    assert page.get_by_label("Fitzpatrick skin type").input_value() == "4"
    page.get_by_label("Name or reference").fill("Patient, typo corrected")
    page.get_by_label("Age (years)").fill("abc")
    page.get_by_role("button", name="Save and screen").click()
    assert "The patient was not saved" in page.locator("main").inner_text()
    page.get_by_label("Age (years)").fill("29")
    page.get_by_role("button", name="Save and screen").click()
    page.wait_for_url(re.compile(rf".*/web/patients/{pid}\?done=patient-saved$"))
    assert page.locator("h1").inner_text() == "Patient, typo corrected"
    assert "The patient was saved" in page.locator("#notice").inner_text()
    page.get_by_role("link", name="Delete the patient").click()
    page.wait_for_url(re.compile(rf".*/web/patients/{pid}/delete$"))
    goes = page.locator("#what-goes").inner_text()
    assert "0 courses" in goes and "0 runs" in goes
    b.shot("delete-patient-confirm")
    page.get_by_role("button", name=re.compile(r"^Delete the patient")).click()
    page.wait_for_url(re.compile(r".*/web/patients\?done=patient-deleted$"))
    assert "The patient was deleted" in page.locator("#notice").inner_text()
    assert "Patient, typo corrected" not in page.locator("main").inner_text()


def test_a_new_token_fits_a_phone(signed_in: Any) -> None:
    """At 375 px the answer with the new token and its Python example scrolls inside its own
    boxes, not the page; every input has a label."""
    b = signed_in(ORG_A[0], width=375)
    page = b.page
    b.go("/web/account")
    page.get_by_label("Name of a new token").fill("phone")
    page.get_by_role("button", name="Make a token").click()
    page.get_by_label("Your new token").wait_for()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, overflow
    assert page.evaluate(UNLABELLED) == []
    b.shot("account-new-token-phone")
    row = page.locator("#token-table tr", has_text="phone")
    row.get_by_role("button", name="Revoke the token phone").click()
    page.wait_for_url(re.compile(r".*/web/account\?done=revoked$"))

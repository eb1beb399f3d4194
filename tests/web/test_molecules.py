"""The pages with an organisation's own molecules (no browser: pages fetched and forms posted with
the session cookie and CSRF token): the product lists offer them to that organisation only, and a
course naming one is edited, compared (what-if) and explained (handout) like any other."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from microneedling.web.app import create_app
from tests.service.helpers import PASSWORD, Org, add_org, settings_for
from tests.user_molecules import COPY, copy_table, serum_course

API = "/api/v1"


def _signed_in(app: Any, org: Org) -> TestClient:
    c = TestClient(app)
    r = c.post("/web/login", data={"email": org.email, "password": PASSWORD},
               follow_redirects=False)  # fmt: skip
    assert r.status_code in (302, 303), r.text
    return c


def _csrf(page: str) -> str:
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, "the page carries its CSRF token"
    return token.group(1)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Org, Org]]:
    app = create_app(settings_for(tmp_path_factory.mktemp("web-molecules"), None))
    a = add_org(app.state.context, "Clinic A", "admin@a-mol.example")
    b = add_org(app.state.context, "Lab B", "admin@b-mol.example")
    with TestClient(app) as c:
        r = c.post(f"{API}/molecules", json={"key": COPY, "molecule": copy_table()}, headers=a.h)
        assert r.status_code == 201, r.text
        yield app, a, b


def _option(page: str, key: str) -> bool:
    return re.search(rf'<option value="{key}"', page) is not None


def test_the_product_lists_offer_the_organisations_molecules(
    site: tuple[Any, Org, Org], tmp_path: Path
) -> None:
    app, a, b = site
    with _signed_in(app, a) as ca, _signed_in(app, b) as cb:
        assert _option(ca.get("/web/absorb").text, COPY)
        assert _option(ca.get("/web/absorb").text, "caffeine")
        assert not _option(cb.get("/web/absorb").text, COPY)
        cid = ca.post(f"{API}/courses", json={"course": serum_course("caffeine")},
                      headers=a.h).json()["id"]  # fmt: skip
        assert _option(ca.get(f"/web/courses/{cid}").text, COPY)


def test_a_course_with_the_organisations_molecule_is_edited_compared_and_explained(
    site: tuple[Any, Org, Org],
) -> None:
    app, a, _ = site
    with _signed_in(app, a) as c:
        r = c.post(f"{API}/courses", json={"course": serum_course(COPY)}, headers=a.h)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        page = c.get(f"/web/courses/{cid}").text
        assert re.search(rf'<option value="{COPY}"[^>]*selected', page), "the saved product"
        token = _csrf(page)
        # the editor's live check and its save, inside the organisation's molecules
        form = _form_of(page) | {"csrf_token": token}
        r = c.post("/web/check/course", data=form)
        assert r.status_code == 200 and r.json() == {"errors": {}}, r.text
        r = c.post(f"/web/courses/{cid}", data=form, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith("saved=1"), r.text
        typo = {**form, "sessions[0].topical.product": "house_cafeine"}
        errors = c.post("/web/check/course", data=typo).json()["errors"]
        assert f"did you mean '{COPY}'?" in " ".join(errors["sessions[0].topical.product"])
        # a what-if: two simulations of courses naming the molecule, then their comparison
        r = c.post(f"/web/courses/{cid}/whatif", data={"csrf_token": token, "sessions": "2"},
                   follow_redirects=False)  # fmt: skip
        assert r.status_code == 303, r.text
        compare = c.get(r.headers["location"])
        assert compare.status_code == 200, compare.text
        # each run's course read back from its stored result, inside the run's molecules
        assert "cheek: 1 session(s), 0.5 mm" in compare.text
        assert "cheek: 2 session(s), 0.5 mm" in compare.text
        run_a = re.search(r"a=(\d+)", r.headers["location"])
        assert run_a is not None
        handout = c.get(f"/web/runs/{run_a.group(1)}/handout")
        assert handout.status_code == 200
        assert "then house caffeine on the skin" in re.sub(r"\s+", " ", handout.text)


def _form_of(page: str) -> dict[str, str]:
    """The editor's fields as the browser would post them (inputs and selected options)."""
    out: dict[str, str] = {}
    for m in re.finditer(r'<input[^>]*name="([^"]+)"[^>]*>', page):
        tag = m.group(0)
        if 'type="checkbox"' in tag and "checked" not in tag:
            continue
        if 'type="submit"' in tag:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        out[m.group(1)] = value.group(1) if value else ""
    for m in re.finditer(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', m.group(2))
        out[m.group(1)] = chosen.group(1) if chosen else ""
    return out

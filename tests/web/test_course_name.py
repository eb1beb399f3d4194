"""A course's name after an edit on the web (no browser: the editor's form posted with the session
cookie): the planner's generated name follows the course (``renamed_plan``, the planner's own
naming); a name a user typed is never changed."""

from __future__ import annotations

import html
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from microneedling.studies.planning.search import plan_name, renamed_plan
from microneedling.web.app import create_app
from microneedling.web.pages import _variant
from tests.service.helpers import Org, add_org, settings_for
from tests.web.test_molecules import _csrf, _signed_in
from tests.web.test_molecules import _form_of as _raw_form

API = "/api/v1"
EXAMPLE = Path(__file__).parents[2] / "examples" / "acne-scars-rolling-cheek.toml"
PATIENT = "Case 1: cheek scars"


def test_the_planners_name_follows_the_schedule() -> None:
    name = plan_name(PATIENT, "pen", 4, 42)
    assert name == "Plan for Case 1: cheek scars: pen, 4 session(s) every 42 d"
    assert renamed_plan(name, "pen", [0, 42, 84, 126, 168]) == plan_name(PATIENT, "pen", 5, 42)
    assert renamed_plan(name, "pen", [0, 42, 42, 84]) == plan_name(PATIENT, "pen", 3, 42)
    assert renamed_plan(name, "pen", [0.0]) == "Plan for Case 1: cheek scars: pen, 1 session(s)"
    assert renamed_plan(name, "pen", [0, 30, 90]).endswith("pen, 3 session(s) (edited)")  # type: ignore[union-attr]
    assert renamed_plan(name, "pen", [0, 42, 84, 126]) == name
    for typed in ("Rolling scars, cheek", "Plan for Anna", "Plan for Anna: pen, four sessions"):
        assert renamed_plan(typed, "pen", [0, 42]) is None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Org]]:
    app = create_app(settings_for(tmp_path_factory.mktemp("web-course-name"), None))
    a = add_org(app.state.context, "Clinic A", "admin@a-name.example")
    with TestClient(app):
        yield app, a


def _form_of(page: str) -> dict[str, str]:
    """The editor's fields as a browser posts them (attribute values unescaped)."""
    return {k: html.unescape(v) for k, v in _raw_form(page).items()}


def _course(name: str) -> dict[str, Any]:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    data["name"] = name
    return data


def _edit_dropping_last_session(app: Any, org: Org, name: str, typed: str | None = None) -> str:
    """Save the course named ``name`` in the editor with its last session removed (and the name
    field set to ``typed`` when given); the stored course's name afterwards."""
    with _signed_in(app, org) as c:
        r = c.post(f"{API}/courses", json={"course": _course(name)}, headers=org.h)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        page = c.get(f"/web/courses/{cid}").text
        form = _form_of(page) | {"csrf_token": _csrf(page)}
        last = max(int(k.split("]")[0].split("[")[1]) for k in form if k.startswith("sessions["))
        form = {k: v for k, v in form.items() if not k.startswith(f"sessions[{last}].")}
        if typed is not None:
            form["name"] = typed
        r = c.post(f"/web/courses/{cid}", data=form, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith("saved=1"), r.text
        stored = c.get(f"{API}/courses/{cid}", headers=org.h).json()
        assert stored["name"] == stored["data"]["name"]  # the record and its course file agree
        return str(stored["name"])


def test_an_edited_planner_course_is_renamed(site: tuple[Any, Org]) -> None:
    app, a = site
    name = plan_name(PATIENT, "roller", 4, 28)  # the example: a roller on days 0, 28, 56, 84
    assert _edit_dropping_last_session(app, a, name) == plan_name(PATIENT, "roller", 3, 28)


def test_a_typed_name_is_never_changed(site: tuple[Any, Org]) -> None:
    app, a = site
    typed = "Rolling scars, cheek: monthly"
    assert _edit_dropping_last_session(app, a, typed) == typed
    # a name typed in the editor with the edit wins over the planner's
    name = plan_name(PATIENT, "roller", 4, 28)
    assert _edit_dropping_last_session(app, a, name, typed="My plan for Case 1") == (
        "My plan for Case 1"
    )


def test_a_what_if_of_a_planner_course_is_named_by_its_own_schedule() -> None:
    name = plan_name(PATIENT, "roller", 4, 28)
    b = _variant(_course(name), None, 2, 42)
    assert b["name"] == f"{plan_name(PATIENT, 'roller', 2, 42)} (what-if)"
    typed = _variant(_course("Rolling scars, cheek"), None, 2, 42)
    assert typed["name"] == "Rolling scars, cheek (what-if)"


def test_a_roman_skin_type_opens_chosen_in_the_editor(site: tuple[Any, Org]) -> None:
    """A course file's ``fitzpatrick = "IV"`` (as the examples write it) is the editor's list's 4:
    with no option chosen a browser would send the first one, type I, on save."""
    app, a = site
    data = _course("Rolling scars, cheek")
    assert data["patient"]["fitzpatrick"] == "IV"
    with _signed_in(app, a) as c:
        cid = c.post(f"{API}/courses", json={"course": data}, headers=a.h).json()["id"]
        assert _form_of(c.get(f"/web/courses/{cid}").text)["patient.fitzpatrick"] == "4"

"""No query reaches another organisation's records: every route with a record id in its path,
called by organisation B (an administrator) with organisation A's ids, answers 404 and changes
nothing; B's lists show none of A's records; a request body that names A's records is refused."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute

from tests.service.helpers import PASSWORD, Service, example, trial_spec

API = "/api/v1"

#: path parameters that name shared, read-only reference data (no organisation owns it)
SHARED = {f"{API}/parameters/{{name}}", f"{API}/sources/{{key}}"}


@pytest.fixture(scope="module")
def a_records(service: Service) -> dict[str, Any]:
    """One record of every kind in organisation A."""
    c, h = service.client, service.a.h
    pid = c.post(
        f"{API}/patients", json=example("patients/acne-scars-two-sites.toml"), headers=h
    ).json()["id"]
    cid = c.post(
        f"{API}/courses",
        json={"course": example("stamp-small-scar.toml"), "patient_id": pid},
        headers=h,
    ).json()["id"]
    run = c.post(f"{API}/runs/simulate", json={"course_id": cid, "draws": 0}, headers=h).json()
    tok = c.post(f"{API}/tokens", json={"name": "a-script"}, headers=h).json()
    user = c.post(
        f"{API}/users",
        json={"email": f"m-{service.kind}@iso.example", "password": PASSWORD},
        headers=h,
    ).json()
    prop = {"source": "lab", "kind": "user"}
    mol = c.post(
        f"{API}/molecules",
        json={
            "key": "a_secret_peptide",
            "molecule": {
                "mw": {"value": 700.0, "units": "g/mol", **prop},
                "log_kow": {"value": 0.5, "units": "1", **prop},
                "d_aq": {"value": 4e-10, "units": "m^2/s", **prop},
                "charge": {"value": 1.0, "units": "1", **prop},
            },
        },
        headers=h,
    ).json()
    pop = example("../src/microneedling/data/populations/acne-scar-adults.toml")
    pop["name"] = "A's private cohort"
    popr = c.post(f"{API}/populations", json={"population": pop}, headers=h).json()
    ids = {
        "patient_id": pid,
        "course_id": cid,
        "run_id": run["id"],
        "token_id": tok["id"],
        "user_id": user["id"],
        "molecule_id": mol["id"],
        "population_id": popr["id"],
        "name": "result.nc",
    }
    assert all(isinstance(v, int) for k, v in ids.items() if k != "name"), ids
    return ids


def _routes(service: Service) -> list[APIRoute]:
    return [r for r in service.app.routes if isinstance(r, APIRoute) and "{" in r.path]


def test_every_record_route_answers_404_to_another_organisation(
    service: Service, a_records: dict[str, Any]
) -> None:
    c = service.client
    called: set[str] = set()
    for route in _routes(service):
        if route.path in SHARED:
            continue
        params = re.findall(r"{(\w+)(?::\w+)?}", route.path)
        path = route.path
        for p in params:
            path = re.sub("{" + p + r"(?::\w+)?}", str(a_records[p]), path)
        for method in sorted(route.methods - {"HEAD"}):
            r = c.request(method, path, headers=service.b.h)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert r.json()["error"].endswith("not found"), r.text
            called.add(route.path)
    assert called == {r.path for r in _routes(service)} - SHARED
    # and A still has everything, unchanged
    h = service.a.h
    for path in (
        f"patients/{a_records['patient_id']}",
        f"courses/{a_records['course_id']}",
        f"runs/{a_records['run_id']}",
        f"populations/{a_records['population_id']}",
    ):
        assert c.get(f"{API}/{path}", headers=h).status_code == 200, path
    run = c.get(f"{API}/runs/{a_records['run_id']}", headers=h).json()
    assert run["status"] == "done" and not run["cancel_requested"]
    tokens = c.get(f"{API}/tokens", headers=h).json()
    assert any(t["id"] == a_records["token_id"] and t["revoked_at"] is None for t in tokens)
    users = c.get(f"{API}/users", headers=h).json()
    assert any(u["id"] == a_records["user_id"] and u["active"] for u in users)


def test_lists_show_only_the_callers_records(service: Service, a_records: dict[str, Any]) -> None:
    c, h = service.client, service.b.h
    for path, key in (
        ("patients", "patient_id"),
        ("courses", "course_id"),
        ("runs", "run_id"),
        ("tokens", "token_id"),
        ("users", "user_id"),
    ):
        ids = {x["id"] for x in c.get(f"{API}/{path}", headers=h).json()}
        assert a_records[key] not in ids, path
    assert all(m["shipped"] for m in c.get(f"{API}/molecules", headers=h).json())
    assert all(p["shipped"] for p in c.get(f"{API}/populations", headers=h).json())
    for e in c.get(f"{API}/audit", headers=h).json():
        assert e["user_id"] in (None, service.b.user_id), e
    runs = c.get(f"{API}/runs", params={"course_id": a_records["course_id"]}, headers=h).json()
    assert runs == []


def test_bodies_naming_another_organisations_records_are_refused(
    service: Service, a_records: dict[str, Any]
) -> None:
    c, h = service.client, service.b.h
    cid, pid = a_records["course_id"], a_records["patient_id"]
    cases = [
        ("runs/simulate", {"course_id": cid, "draws": 0}, "course_id"),
        ("runs/absorb", {"course_id": cid, "draws": 0}, "course_id"),
        ("runs/sensitivity", {"course_id": cid, "n_base": 2}, "course_id"),
        ("runs/plan", {"patient_id": pid}, "patient_id"),
        ("courses", {"course": example("stamp-small-scar.toml"), "patient_id": pid}, "patient_id"),
    ]
    spec = trial_spec()
    spec["arms"][0] = {"name": spec["arms"][0]["name"], "course_id": cid}
    cases.append(("runs/trial", {"trial": spec}, "arms[0].course_id"))
    spec = trial_spec()
    spec["trial"]["population"] = "A's private cohort"
    cases.append(("runs/trial", {"trial": spec}, "trial.population"))
    for path, body, field in cases:
        r = c.post(f"{API}/{path}", json=body, headers=h)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["problems"][0]["field"] == field, (path, r.text)
    # the refusal lists B's own populations only (none), never A's
    assert "a population of your organisation among []" in r.json()["error"]

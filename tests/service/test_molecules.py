"""An organisation's own molecules in its courses and runs: validated and run inside that
organisation's molecules only, kept in the run's request (a queued run does not depend on the
record still existing), and written beside the run's course (``molecules.toml``)."""

from __future__ import annotations

import threading
import tomllib
from typing import Any

import pytest
import sqlalchemy as sa

from microneedling.parameters.molecules import molecules_from_tables
from microneedling.service import jobs
from tests.service.helpers import Org, Service, wait
from tests.user_molecules import COPY, copy_table, serum_course, trial_data

API = "/api/v1"


def _add(service: Service, org: Org, key: str = COPY, base: str = "caffeine") -> int:
    r = service.client.post(
        f"{API}/molecules", json={"key": key, "molecule": copy_table(base)}, headers=org.h
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _remove(service: Service, org: Org, mid: int) -> None:
    assert service.client.delete(f"{API}/molecules/{mid}", headers=org.h).status_code == 204


def _unknown_product(r: Any, value: str = COPY) -> str:
    """The 422 of a course naming a product not in scope; its text (the CLI's wording)."""
    assert r.status_code == 422, r.text
    p = r.json()["problems"][0]
    assert p["field"].endswith("sessions[0].topical.product") and p["value"] == value
    assert p["allowed"].startswith("one of niacinamide, caffeine")
    return str(p["allowed"])


@pytest.fixture
def house(service: Service) -> Any:
    mid = _add(service, service.a)
    yield mid
    service.client.delete(f"{API}/molecules/{mid}", headers=service.a.h)


def test_an_organisation_simulates_its_molecule_and_another_gets_422(
    service: Service, house: int
) -> None:
    c, a, b = service.client, service.a, service.b
    body = {"course": serum_course(COPY), "draws": 0}
    r = c.post(f"{API}/runs/simulate", json=body, headers=a.h)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "done"
    assert run["request"]["molecules"] == {COPY: copy_table()}
    rows = c.get(f"{API}/runs/{run['id']}/endpoints", headers=a.h).json()
    absorbed = [x["value"] for x in rows if x["variable"] == "absorbed_amount"]
    assert absorbed and absorbed[0] > 0
    # the same numbers as the shipped product it copies
    shipped = c.post(
        f"{API}/runs/simulate", json={"course": serum_course("caffeine"), "draws": 0}, headers=a.h
    ).json()
    ref = c.get(f"{API}/runs/{shipped['id']}/endpoints", headers=a.h).json()
    assert [x["value"] for x in rows] == [x["value"] for x in ref]
    # the files made from the stored result on download (the course is validated again)
    toml = c.get(f"{API}/runs/{run['id']}/files/course.toml", headers=a.h)
    assert toml.status_code == 200 and f'product = "{COPY}"' in toml.text
    html = c.get(f"{API}/runs/{run['id']}/files/report.html", headers=a.h)
    assert html.status_code == 200
    mols = c.get(f"{API}/runs/{run['id']}/files/molecules.toml", headers=a.h)
    assert mols.status_code == 200
    assert repr(molecules_from_tables(tomllib.loads(mols.text))) == repr(
        molecules_from_tables({COPY: copy_table()})
    )
    # organisation B: an unknown product, named as the CLI names it; A's molecule not listed
    allowed = _unknown_product(c.post(f"{API}/runs/simulate", json=body, headers=b.h))
    assert COPY not in allowed and "did you mean 'caffeine'?" in allowed
    _unknown_product(c.post(f"{API}/runs/absorb", json=body, headers=b.h))
    _unknown_product(c.post(f"{API}/courses", json={"course": serum_course(COPY)}, headers=b.h))


def test_a_stored_course_names_the_organisations_molecule(service: Service, house: int) -> None:
    c, a, b = service.client, service.a, service.b
    data = serum_course(COPY)
    data["patient"]["history"] = {"active_infection": True}  # a warning, not a refusal
    r = c.post(f"{API}/courses", json={"course": data}, headers=a.h)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    # its warnings: the stored course is validated again, inside the organisation's molecules
    warned = c.get(f"{API}/courses/{cid}", headers=a.h).json()["warnings"]
    assert warned and warned[0].startswith("patient.history.active_infection")
    r = c.post(f"{API}/runs/simulate", json={"course_id": cid, "draws": 0}, headers=a.h)
    assert r.status_code == 201, r.text
    assert set(r.json()["request"]["molecules"]) == {COPY}
    r = c.post(f"{API}/runs/simulate", json={"course_id": cid, "draws": 0}, headers=b.h)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "course_id"
    # a typo lists the organisation's molecules in scope, with did-you-mean
    typo = {"course": serum_course("house_cafeine")}
    r = c.post(f"{API}/runs/simulate", json=typo, headers=a.h)
    allowed = _unknown_product(r, "house_cafeine")
    assert allowed.endswith(f"{COPY}; did you mean '{COPY}'?")
    assert c.delete(f"{API}/courses/{cid}", headers=a.h).status_code == 204


def test_a_stored_course_whose_molecule_was_deleted_is_refused_when_submitted(
    service: Service,
) -> None:
    c, a = service.client, service.a
    mid = _add(service, a, "house_short_lived")
    r = c.post(f"{API}/courses", json={"course": serum_course("house_short_lived")}, headers=a.h)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    _remove(service, a, mid)
    assert c.get(f"{API}/courses/{cid}", headers=a.h).status_code == 200
    # a 422 when submitted, not a failed job later
    queued = {"course_id": cid, "draws": 2, "background": True}
    r = c.post(f"{API}/runs/simulate", json=queued, headers=a.h)
    _unknown_product(r, "house_short_lived")
    r = c.post(f"{API}/runs/absorb", json={"course_id": cid}, headers=a.h)
    _unknown_product(r, "house_short_lived")


def test_a_queued_run_finishes_after_its_molecule_is_deleted(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, a = service.client, service.a
    mid = _add(service, a, "house_gone")
    gate = threading.Event()
    real = jobs.execute

    def held(*args: Any, **kw: Any) -> Any:
        assert gate.wait(60), "the test never opened the gate"
        return real(*args, **kw)

    monkeypatch.setattr(jobs, "execute", held)
    body = {"course": serum_course("house_gone"), "draws": 2, "background": True}
    r = c.post(f"{API}/runs/simulate", json=body, headers=a.h)
    assert r.status_code == 202, r.text
    rid = r.json()["id"]
    _remove(service, a, mid)  # before the run starts executing
    _unknown_product(c.post(f"{API}/runs/simulate", json=body, headers=a.h), "house_gone")
    gate.set()
    run = wait(c, rid, a.h)
    assert run["status"] == "done", run
    assert run["summary"]["draws"] == 2
    toml = c.get(f"{API}/runs/{rid}/files/course.toml", headers=a.h)
    assert toml.status_code == 200 and "house_gone" in toml.text


def test_absorb_and_trial_runs_with_the_organisations_molecule(
    service: Service, house: int
) -> None:
    c, a, b = service.client, service.a, service.b
    r = c.post(
        f"{API}/runs/absorb",
        json={"course": serum_course(COPY), "draws": 0, "resolved": False},
        headers=a.h,
    )
    assert r.status_code == 202, r.text
    run = wait(c, r.json()["id"], a.h)
    assert run["status"] == "done", run
    assert run["summary"]["sessions"][0]["product"] == COPY
    assert "molecules.toml" in {f["name"] for f in run["files"]}
    spec = trial_data(3)
    r = c.post(f"{API}/runs/trial", json={"trial": spec}, headers=a.h)
    assert r.status_code == 202, r.text
    assert set(r.json()["request"]["molecules"]) == {COPY}
    run = wait(c, r.json()["id"], a.h)
    assert run["status"] == "done", run
    assert {"trial.toml", "molecules.toml"} <= {f["name"] for f in run["files"]}
    r = c.post(f"{API}/runs/trial", json={"trial": spec}, headers=b.h)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "arms[1].protocol"
    assert COPY in r.json()["problems"][0]["allowed"]


def test_a_client_cannot_send_molecules_with_a_request(service: Service) -> None:
    body = {"course": serum_course(COPY), "draws": 0, "molecules": {COPY: copy_table()}}
    r = service.client.post(f"{API}/runs/simulate", json=body, headers=service.a.h)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "molecules"


def test_a_list_of_courses_reads_the_organisations_molecules_once(
    service: Service, house: int
) -> None:
    """``GET /courses`` reads the molecules once per request, not once per course naming one (the
    SQL sent to the database is counted), and lists each course as ``GET /courses/{id}`` does."""
    c, a = service.client, service.a
    warned = serum_course(COPY)
    warned["patient"]["history"] = {"active_infection": True}  # a warning, not a refusal
    courses = [serum_course(COPY), warned, serum_course(COPY), serum_course("caffeine")]
    ids = []
    for data in courses:
        r = c.post(f"{API}/courses", json={"course": data}, headers=a.h)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    statements: list[str] = []

    def sent(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(service.ctx.engine, "before_cursor_execute", sent)
    try:
        r = c.get(f"{API}/courses", headers=a.h)
    finally:
        sa.event.remove(service.ctx.engine, "before_cursor_execute", sent)
    assert r.status_code == 200, r.text
    reads = [s for s in statements if "FROM molecules" in s]
    assert len(reads) == 1, f"{len(reads)} reads of the molecules in {len(statements)} statements"
    listed = {x["id"]: x for x in r.json()}
    one = [c.get(f"{API}/courses/{i}", headers=a.h).json() for i in ids]
    assert [listed[i] for i in ids] == one
    assert one[1]["warnings"] and not one[0]["warnings"]
    for i in ids:
        assert c.delete(f"{API}/courses/{i}", headers=a.h).status_code == 204

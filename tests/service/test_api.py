"""The API on SQLite and on PostgreSQL: sign-in, validation in the CLI's words, simulate inline
with the engine's numbers, background runs with progress, cancellation, deletion with files, the
audit log and the reference data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from microneedling.course.model import Course
from microneedling.course.patient import PatientFile
from microneedling.engine.result import Result
from microneedling.engine.simulate import simulate
from microneedling.errors import InputFileError
from microneedling.parameters.parameter_set import load_parameters
from microneedling.service.auth import SESSION_COOKIE
from microneedling.service.db import AuditEvent, FileRecord
from microneedling.service.jobs import work_dir
from tests.service.helpers import PASSWORD, Service, example, trial_spec, wait

API = "/api/v1"


def expected_error(model: type, data: dict, source: str) -> InputFileError:
    with pytest.raises(InputFileError) as info:
        model.from_dict(data, source=source)
    return info.value


def test_health_needs_no_sign_in_and_names_the_database(service: Service) -> None:
    r = service.client.get(f"{API}/health")
    assert r.status_code == 200
    assert r.json()["database"] == service.kind
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"


def test_no_record_without_a_token_or_with_a_wrong_one(service: Service) -> None:
    c = service.client
    for headers in ({}, {"Authorization": "Bearer mnt_nope"}, {"Authorization": "Basic eA=="}):
        r = c.get(f"{API}/patients", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["status"] == 401


def test_browser_session_cookie_csrf_and_logout(service: Service) -> None:
    c = service.client
    r = c.post(f"{API}/auth/login", json={"email": service.a.email, "password": "wrong password!"})
    assert r.status_code == 401
    r = c.post(f"{API}/auth/login", json={"email": service.a.email.upper(), "password": PASSWORD})
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "mn_session=" in cookie
    csrf = r.json()["csrf_token"]
    session = c.cookies.get("mn_session")
    assert session and csrf
    try:
        assert c.get(f"{API}/me").json()["auth"] == "session"
        patient = example("patients/acne-scars-two-sites.toml")
        r = c.post(f"{API}/patients", json=patient)  # no CSRF token: refused
        assert r.status_code == 403 and "CSRF" in r.json()["error"]
        r = c.post(f"{API}/patients", json=patient, headers={"X-CSRF-Token": "0" * 64})
        assert r.status_code == 403
        r = c.post(f"{API}/patients", json=patient, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 201, r.text
        # the token that a session makes works without the cookie
        r = c.post(f"{API}/tokens", json={"name": "notebook"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 201
        token = r.json()["token"]
        assert token.startswith("mnt_")
        r = c.post(f"{API}/auth/logout", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 204
        c.cookies.clear()
        c.cookies.set("mn_session", session)  # the old cookie no longer signs anyone in
        assert c.get(f"{API}/me").status_code == 401
    finally:
        c.cookies.clear()
    h = {"Authorization": f"Bearer {token}"}
    me = c.get(f"{API}/me", headers=h).json()
    assert me["auth"] == "token" and me["user"]["email"] == service.a.email
    tid = next(t for t in c.get(f"{API}/tokens", headers=h).json() if t["name"] == "notebook")["id"]
    assert c.delete(f"{API}/tokens/{tid}", headers=h).status_code == 204
    assert c.get(f"{API}/me", headers=h).status_code == 401
    # the database keeps only the SHA-256 of a token
    with service.ctx.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash FROM api_tokens")).scalars().all()
    assert token not in stored and all(len(s) == 64 for s in stored)


def test_bad_course_and_patient_are_refused_in_the_cli_words(service: Service) -> None:
    c, h = service.client, service.a.h
    bad = example("acne-scars-rolling-cheek.toml")
    bad["sessions"][0]["needle_length_mm"] = 4.0
    bad["sessions"][1]["passes"] = "four"
    r = c.post(f"{API}/courses", json={"course": bad}, headers=h)
    assert r.status_code == 422
    exc = expected_error(Course, bad, "course")
    body = r.json()
    assert body["error"] == exc.one_line()
    assert [p["field"] for p in body["problems"]] == [p.field for p in exc.problems]
    assert body["problems"][0]["value"] == 4.0
    assert body["problems"][0]["allowed"] == exc.problems[0].allowed
    assert body["problems"][0]["message"] == str(exc.problems[0])
    # the same course through the run route
    r = c.post(f"{API}/runs/simulate", json={"course": bad, "draws": 0}, headers=h)
    assert r.status_code == 422 and r.json()["error"] == exc.one_line()
    patient = example("patients/acne-scars-two-sites.toml")
    patient["patient"]["fitzpatrick"] = "VII"
    r = c.post(f"{API}/patients", json=patient, headers=h)
    assert r.status_code == 422
    assert r.json()["error"] == expected_error(PatientFile, patient, "patient").one_line()
    # request options: a named field, never a 500
    r = c.post(f"{API}/runs/simulate", json={"course_id": 1, "draws": -1, "x": 1}, headers=h)
    assert r.status_code == 422
    fields = {p["field"] for p in r.json()["problems"]}
    assert {"draws", "x"} <= fields
    r = c.post(
        f"{API}/runs/simulate",
        content=b"{not json",
        headers={**h, "content-type": "application/json"},
    )
    assert r.status_code == 422
    r = c.get(f"{API}/runs", params={"limit": 0}, headers=h)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "limit"


def test_simulate_inline_gives_the_engine_numbers(service: Service, tmp_path: Path) -> None:
    c, h = service.client, service.a.h
    data = example("acne-scars-rolling-cheek.toml")
    r = c.post(f"{API}/runs/simulate", json={"course": data, "draws": 0}, headers=h)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "done" and run["progress"] == 1.0
    assert run["files"] == []  # made on first download, from the stored result
    names = ["result.nc", "endpoints.csv", "report.html", "course.toml"]
    assert run["downloads"] == [f"{API}/runs/{run['id']}/files/{n}" for n in names]
    expected = simulate(Course.from_dict(data), draws=0)
    nc = c.get(f"{API}/runs/{run['id']}/files/result.nc", headers=h)
    assert nc.status_code == 200 and nc.headers["content-type"] == "application/x-netcdf"
    (tmp_path / "r.nc").write_bytes(nc.content)
    got = Result.from_netcdf(tmp_path / "r.nc")  # NetCDF-4, as the CLI writes it
    assert set(got.dataset.data_vars) == set(expected.dataset.data_vars)
    for name, var in expected.dataset.data_vars.items():
        np.testing.assert_array_equal(got.dataset[name].values, var.values, err_msg=name)
    rows = c.get(f"{API}/runs/{run['id']}/endpoints", headers=h).json()
    table = expected.endpoints()
    assert len(rows) == len(table)
    np.testing.assert_allclose([r["value"] for r in rows], table["value"].to_numpy(), rtol=0)
    assert run["summary"]["warnings"] == list(expected.warnings)
    toml = c.get(f"{API}/runs/{run['id']}/files/course.toml", headers=h).text
    assert Course.from_toml_text(toml) == Course.from_dict(data)
    # the stored result itself is never served
    assert c.get(f"{API}/runs/{run['id']}/files/.result.pickle", headers=h).status_code == 404


def test_background_run_progress_events_and_derived_files(service: Service) -> None:
    c, h = service.client, service.a.h
    data = example("forehead-fine-lines.toml")
    r = c.post(
        f"{API}/runs/simulate", json={"course": data, "draws": 2, "background": True}, headers=h
    )
    assert r.status_code == 202
    rid = r.json()["id"]
    with c.stream("GET", f"{API}/runs/{rid}/events", headers=h) as stream:
        events = [json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:")]
    assert events[-1]["status"] == "done"
    fractions = [e["progress"] for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    run = wait(c, rid, h)
    assert run["status"] == "done" and run["summary"]["draws"] == 2
    assert len(run["downloads"]) == 4 and run["files"] == []
    html = c.get(f"{API}/runs/{rid}/files/report.html", headers=h)
    assert html.status_code == 200 and data["name"] in html.text
    assert "sandbox" in html.headers["content-security-policy"]
    csv = c.get(f"{API}/runs/{rid}/files/endpoints.csv", headers=h).text
    rows = c.get(f"{API}/runs/{rid}/endpoints", headers=h).json()
    assert len(csv.strip().splitlines()) == len(rows) + 1
    # made once, then kept
    names = {f["name"] for f in c.get(f"{API}/runs/{rid}", headers=h).json()["files"]}
    assert {"report.html", "endpoints.csv"} <= names
    assert c.get(f"{API}/runs/{rid}/files/nothing.txt", headers=h).status_code == 404


def test_cancel_a_running_trial_stops_it_and_drops_its_chunks(service: Service) -> None:
    c, h = service.client, service.a.h
    spec = trial_spec(n_per_arm=400, chunk_size=2)
    r = c.post(f"{API}/runs/trial", json={"trial": spec}, headers=h)
    assert r.status_code == 202, r.text
    rid = r.json()["id"]
    end = time.monotonic() + 60
    while c.get(f"{API}/runs/{rid}", headers=h).json()["progress"] <= 0.0:
        assert time.monotonic() < end
        time.sleep(0.05)
    r = c.post(f"{API}/runs/{rid}/cancel", headers=h)
    assert r.status_code == 202 and r.json()["cancel_requested"]
    run = wait(c, rid, h)
    assert run["status"] == "cancelled" and run["progress"] < 1.0 and run["files"] == []
    assert not work_dir(service.ctx.settings, rid).exists()
    assert c.post(f"{API}/runs/{rid}/cancel", headers=h).status_code == 409
    # a queued run is cancelled at once (no job thread takes it: the one thread is busy)


def test_deleting_a_patient_deletes_courses_runs_and_files(service: Service) -> None:
    c, h, store = service.client, service.a.h, service.ctx.store
    pid = c.post(
        f"{API}/patients", json=example("patients/melasma-dark-skin.toml"), headers=h
    ).json()["id"]
    course = example("melasma-tranexamic-acid.toml")
    course["seed"] = 987654  # content unique to this test: its blobs are not shared
    r = c.post(f"{API}/courses", json={"course": course, "patient_id": pid}, headers=h)
    assert r.status_code == 201
    cid = r.json()["id"]
    run = c.post(f"{API}/runs/simulate", json={"course_id": cid, "draws": 0}, headers=h).json()
    assert run["patient_id"] == pid and run["course_id"] == cid
    c.get(f"{API}/runs/{run['id']}/files/endpoints.csv", headers=h)
    with service.ctx.sessions() as db:
        shas = db.scalars(sa.select(FileRecord.sha256).where(FileRecord.run_id == run["id"])).all()
    assert len(shas) == 2 and all(store.exists(s) for s in shas)  # the result and the CSV
    assert c.delete(f"{API}/patients/{pid}", headers=h).status_code == 204
    for path in (f"patients/{pid}", f"courses/{cid}", f"runs/{run['id']}"):
        assert c.get(f"{API}/{path}", headers=h).status_code == 404, path
    assert not any(store.exists(s) for s in shas)
    with service.ctx.sessions() as db:
        left = db.scalar(sa.select(sa.func.count()).where(FileRecord.run_id == run["id"]))
        assert left == 0
        ev = db.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.resource == "patient", AuditEvent.resource_id == str(pid)
            )
        ).all()
    assert [e.action for e in ev] == ["create", "delete"]
    assert all(e.user_id == service.a.user_id for e in ev)


def test_audit_log_users_and_roles(service: Service) -> None:
    c, h = service.client, service.a.h
    email = f"member-{service.kind}@a.example"
    r = c.post(f"{API}/users", json={"email": email, "password": "short"}, headers=h)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "password"
    assert "<hidden>" in r.json()["error"] and "short" not in r.json()["error"]
    r = c.post(f"{API}/users", json={"email": email, "password": PASSWORD}, headers=h)
    assert r.status_code == 201 and r.json()["role"] == "member"
    r = c.post(f"{API}/auth/token", json={"email": email, "password": PASSWORD, "name": "m"})
    mh = {"Authorization": f"Bearer {r.json()['token']}"}
    assert c.get(f"{API}/users", headers=mh).status_code == 403
    assert c.get(f"{API}/audit", headers=mh).status_code == 403
    pid = c.post(
        f"{API}/patients", json=example("patients/acne-scars-two-sites.toml"), headers=mh
    ).json()["id"]
    assert c.get(f"{API}/patients/{pid}", headers=h).status_code == 200  # same organisation
    log = c.get(f"{API}/audit", params={"resource": "patient"}, headers=h).json()
    mine = [(e["action"], e["user_id"]) for e in log if e["resource_id"] == str(pid)]
    member = next(u for u in c.get(f"{API}/users", headers=h).json() if u["email"] == email)
    assert mine == [("view", service.a.user_id), ("create", member["id"])]
    uid = member["id"]
    assert c.delete(f"{API}/users/{uid}", headers=h).status_code == 204
    assert c.get(f"{API}/me", headers=mh).status_code == 401  # tokens revoked with the user


def test_a_user_changes_their_password_through_the_api(service: Service) -> None:
    """POST /me/password: the current password is checked, refusals name the field and never
    echo a password, the old password stops working and the new one works, the user's browser
    sessions end, API tokens stay valid, and the change is in the audit log."""
    c, h = service.client, service.a.h
    email = f"changer-{service.kind}@a.example"
    assert c.post(f"{API}/users", json={"email": email, "password": PASSWORD}, headers=h).is_success
    r = c.post(f"{API}/auth/token", json={"email": email, "password": PASSWORD, "name": "m"})
    mh = {"Authorization": f"Bearer {r.json()['token']}"}
    new = "a much longer new pass phrase"
    for body, field in (
        ({"current_password": "wrong wrong wrong", "new_password": new}, "current_password"),
        ({"current_password": PASSWORD, "new_password": "short"}, "new_password"),
        ({"current_password": PASSWORD, "new_password": PASSWORD}, "new_password"),
        ({"current_password": PASSWORD}, "new_password"),
    ):
        r = c.post(f"{API}/me/password", json=body, headers=mh)
        assert r.status_code == 422 and r.json()["problems"][0]["field"] == field, r.text
        assert PASSWORD not in r.text and "wrong wrong" not in r.text
    login = c.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    c.cookies.clear()  # the session is checked below through its own cookie
    cookie = {"Cookie": f"{SESSION_COOKIE}={login.cookies[SESSION_COOKIE]}"}
    assert c.get(f"{API}/me", headers=cookie).status_code == 200
    r = c.post(
        f"{API}/me/password", json={"current_password": PASSWORD, "new_password": new}, headers=mh
    )
    assert r.status_code == 204, r.text
    assert c.get(f"{API}/me", headers=cookie).status_code == 401  # the browser session ended
    assert c.get(f"{API}/me", headers=mh).status_code == 200  # the token stays
    old = c.post(f"{API}/auth/token", json={"email": email, "password": PASSWORD, "name": "x"})
    assert old.status_code == 401
    assert c.post(
        f"{API}/auth/token", json={"email": email, "password": new, "name": "y"}
    ).is_success
    log = c.get(f"{API}/audit", params={"resource": "user"}, headers=h).json()
    assert any(e["action"] == "update" and e["detail"] == "password changed" for e in log)


def test_reference_data_molecules_and_populations(service: Service) -> None:
    c, h = service.client, service.a.h
    params = c.get(f"{API}/parameters", headers=h).json()
    assert len(params) == len(load_parameters().names())
    r = c.get(f"{API}/parameters", params={"group": "nope"}, headers=h)
    assert r.status_code == 422 and "healing" in r.json()["problems"][0]["allowed"]
    one = c.get(f"{API}/parameters/{params[0]['name']}", headers=h).json()
    assert one == params[0]
    src = c.get(f"{API}/sources", headers=h).json()
    assert c.get(f"{API}/sources/{src[0]['key']}", headers=h).json() == src[0]
    shipped = c.get(f"{API}/molecules", headers=h).json()
    prop = {"units": "g/mol", "source": "our lab", "kind": "user"}
    mol = {
        "mw": {"value": 500.0, **prop},
        "log_kow": {"value": 1.0, **prop, "units": "1"},
        "d_aq": {"value": 5e-10, **prop, "units": "m^2/s"},
        "charge": {"value": 0.0, **prop, "units": "1"},
    }
    r = c.post(
        f"{API}/molecules", json={"key": f"peptide_{service.kind}", "molecule": mol}, headers=h
    )
    assert r.status_code == 201, r.text
    assert r.json()["mw_g_per_mol"] == 500.0 and not r.json()["shipped"]
    assert len(c.get(f"{API}/molecules", headers=h).json()) == len(shipped) + 1
    r = c.post(f"{API}/molecules", json={"key": "niacinamide", "molecule": mol}, headers=h)
    assert r.status_code == 422 and "already in the shipped library" in r.json()["error"]
    assert r.json()["problems"][0]["field"] == "key"
    pop = example("../src/microneedling/data/populations/photoaging-adults.toml")
    pop["name"] = f"our cohort {service.kind}"
    r = c.post(f"{API}/populations", json={"population": pop}, headers=h)
    assert r.status_code == 201, r.text
    names = [p["key"] for p in c.get(f"{API}/populations", headers=h).json()]
    assert "acne-scar-adults" in names and pop["name"] in names
    pop["age"] = {"distribution": "normal", "mean": 10.0, "sd": 1.0}
    pop["name"] = "children"
    r = c.post(f"{API}/populations", json={"population": pop}, headers=h)
    assert r.status_code == 422 and r.json()["problems"][0]["field"].startswith("population.age")

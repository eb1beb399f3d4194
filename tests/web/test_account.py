"""The account page and the pages that edit and delete records (no browser: each form posted as a
browser posts it, with the session cookie and the page's CSRF token): API tokens made on the page
work on the API and stop working once revoked, the password changes, administrators add and
deactivate users, a patient's intake is corrected, and patients, courses and runs are deleted with
their files; another organisation's records are 404s, a form without its CSRF token a 403, and
each change leaves the API's audit line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from microneedling.service.auth import Context
from microneedling.service.db import AuditEvent, FileRecord, Run, session_scope
from microneedling.web.app import create_app
from tests.service.helpers import PASSWORD, Org, add_org, example, settings_for

NEW_PASSWORD = "another long passphrase, 2026"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_TOKEN = re.compile(r'id="new-token-value" value="(mnt_[^"]+)"')


class Env:
    """The web app with organisations A and B (their administrators' API tokens)."""

    def __init__(self, tmp: Path, **settings: Any) -> None:
        self.app = create_app(settings_for(tmp, None, **settings))
        self.ctx: Context = self.app.state.context
        self.a: Org = add_org(self.ctx, "Clinic A", "admin@a.example")
        self.b: Org = add_org(self.ctx, "Clinic B", "admin@b.example")

    def browser(self, email: str, password: str = PASSWORD) -> TestClient:
        """A client signed in through the sign-in page (its cookie jar holds the session)."""
        c = TestClient(self.app)
        r = c.post("/web/login", data={"email": email, "password": password},
                   follow_redirects=False)  # fmt: skip
        assert r.status_code == 303, r.text
        return c

    def api(self, org: Org) -> TestClient:
        return TestClient(self.app, headers=org.h)

    def audit(self, org: Org, action: str, resource: str) -> list[AuditEvent]:
        with session_scope(self.ctx.sessions) as db:
            rows = db.scalars(
                sa.select(AuditEvent).where(
                    AuditEvent.organisation_id == org.id,
                    AuditEvent.action == action,
                    AuditEvent.resource == resource,
                )
            ).all()
            db.expunge_all()
            return list(rows)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("web-account"))
    with TestClient(e.app):  # runs the app's start-up (the job threads) for the module
        yield e


def csrf(c: TestClient, path: str = "/web/account") -> str:
    r = c.get(path)
    assert r.status_code == 200, r.text
    m = _CSRF.search(r.text)
    assert m is not None
    return m.group(1)


def post(c: TestClient, path: str, data: dict[str, str] | None = None, *,
         token: str | None = None) -> httpx.Response:  # fmt: skip
    """A form posted with the session's CSRF token (``token=""``: without one)."""
    form = dict(data or {})
    if token is None:
        token = csrf(c)
    if token:
        form["csrf_token"] = token
    return c.post(path, data=form, follow_redirects=False)


def records(env: Env, org: Org, simulate: bool = True) -> dict[str, int]:
    """A patient with a course (and a finished simulation of it), made through the API."""
    api = env.api(org)
    patient = example("patients/acne-scars-two-sites.toml")
    pid = api.post("/api/v1/patients", json=patient).json()["id"]
    course = example("acne-scars-rolling-cheek.toml")
    r = api.post("/api/v1/courses", json={"course": course, "patient_id": pid})
    assert r.status_code == 201, r.text
    out = {"patient": pid, "course": r.json()["id"]}
    if simulate:
        run = api.post("/api/v1/runs/simulate", json={"course_id": out["course"], "draws": 4})
        assert run.status_code in (200, 201), run.text
        assert run.json()["status"] == "done", run.text
        out["run"] = run.json()["id"]
    return out


# --------------------------------------------------------------------------------- account
def test_the_account_page_says_who_and_is_in_the_navigation(env: Env) -> None:
    c = env.browser(env.a.email)
    page = c.get("/web/patients").text
    assert 'href="/web/account"' in page
    r = c.get("/web/account")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert 'id="me-email">admin@a.example<' in r.text
    assert 'id="me-organisation">Clinic A<' in r.text
    assert 'id="me-role">admin' in r.text
    assert 'id="users"' in r.text  # an administrator sees the organisation's users
    assert "admin@b.example" not in r.text
    anonymous = TestClient(env.app).get("/web/account", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/web/login")


def test_a_token_made_on_the_page_works_until_revoked(env: Env) -> None:
    c = env.browser(env.a.email)
    r = post(c, "/web/account/tokens", {"name": "analysis notebook"})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    m = _TOKEN.search(r.text)
    assert m is not None, r.text
    token = m.group(1)
    assert "it is not shown again" in r.text
    assert f'Client("http://testserver", token="{token}")' in r.text  # how to use it
    me = TestClient(env.app).get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["user"]["email"] == env.a.email
    listed = c.get("/web/account").text
    assert "analysis notebook" in listed
    assert token not in listed  # shown once only
    token_id = int(re.findall(r'data-token="(\d+)"', listed)[0])  # newest first
    assert env.audit(env.a, "create", "token")[-1].resource_id == str(token_id)
    r = post(c, f"/web/account/tokens/{token_id}/revoke")
    assert r.status_code == 303
    assert r.headers["location"] == "/web/account?done=revoked"
    assert "requests that send it are refused" in c.get(r.headers["location"]).text
    refused = TestClient(env.app).get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert [e.resource_id for e in env.audit(env.a, "revoke", "token")] == [str(token_id)]


def test_a_token_name_is_checked_like_the_api(env: Env) -> None:
    c = env.browser(env.a.email)
    r = post(c, "/web/account/tokens", {"name": "x" * 300})
    assert r.status_code == 200
    assert "No token was made" in r.text
    assert 'aria-invalid="true"' in r.text
    assert 'id="new-token"' not in r.text


def test_another_users_or_organisations_token_cannot_be_revoked(env: Env) -> None:
    b = env.browser(env.b.email)
    r = post(b, f"/web/account/tokens/{env.a.token_id}/revoke")
    assert r.status_code == 404
    assert "text/html" in r.headers["content-type"]
    ok = TestClient(env.app).get("/api/v1/me", headers=env.a.h)
    assert ok.status_code == 200  # still valid


def test_forms_without_their_csrf_token_are_refused(env: Env) -> None:
    c = env.browser(env.a.email)
    rec = records(env, env.a, simulate=False)
    for path, form in [
        ("/web/account/tokens", {"name": "x"}),
        ("/web/account/password", {"current_password": PASSWORD}),
        ("/web/account/users", {"email": "x@a.example", "password": "y" * 20}),
        (f"/web/account/tokens/{env.a.token_id}/revoke", {}),
        (f"/web/account/users/{env.a.user_id}/deactivate", {}),
        (f"/web/patients/{rec['patient']}/edit", {"name": "changed"}),
        (f"/web/patients/{rec['patient']}/delete", {}),
        (f"/web/courses/{rec['course']}/delete", {}),
    ]:
        r = post(c, path, form, token="")
        assert r.status_code == 403, path
        assert "CSRF" in r.text
        wrong = post(c, path, form, token="not-the-token")
        assert wrong.status_code == 403, path
    assert env.api(env.a).get(f"/api/v1/patients/{rec['patient']}").status_code == 200


def test_the_password_changes_and_the_old_one_stops_working(env: Env) -> None:
    email = "changes@a.example"
    admin = env.browser(env.a.email)
    assert post(admin, "/web/account/users", {"email": email, "password": PASSWORD,
                                                "role": "member"}).status_code == 303  # fmt: skip
    c = env.browser(email)
    other = env.browser(email)  # a second browser of the same person
    wrong = post(c, "/web/account/password", {"current_password": "not it at all",
                 "new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD})  # fmt: skip
    assert wrong.status_code == 200
    assert "The password was not changed" in wrong.text
    assert "current_password" in wrong.text and "your current password" in wrong.text
    assert PASSWORD not in wrong.text and "not it at all" not in wrong.text
    short = post(c, "/web/account/password", {"current_password": PASSWORD,
                 "new_password": "short", "repeat_password": "short"})  # fmt: skip
    assert "new_password" in short.text and "at least 12 characters" in short.text
    differ = post(c, "/web/account/password", {"current_password": PASSWORD,
                  "new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD + "!"})  # fmt: skip
    assert "repeat_password" in differ.text and "the same new password twice" in differ.text
    ok = post(c, "/web/account/password", {"current_password": PASSWORD,
              "new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD})  # fmt: skip
    assert ok.status_code == 303
    assert ok.headers["location"] == "/web/account?done=password"
    assert "Your password was changed" in c.get(ok.headers["location"]).text  # session goes on
    assert other.get("/web/account", follow_redirects=False).status_code == 303  # signed out
    old = TestClient(env.app).post("/web/login", data={"email": email, "password": PASSWORD},
                                   follow_redirects=False)  # fmt: skip
    assert old.status_code == 401
    env.browser(email, NEW_PASSWORD)
    api = TestClient(env.app).post(
        "/api/v1/auth/token", json={"email": email, "password": NEW_PASSWORD, "name": "t"}
    )
    assert api.status_code == 201
    assert any("password" in e.detail for e in env.audit(env.a, "update", "user"))


def test_wrong_current_passwords_count_as_sign_in_attempts(tmp_path: Path) -> None:
    """The password form checks the current password: each try takes from the account's (and the
    address's) sign-in limit, so a session cannot be used to guess the password."""
    strict = Env(tmp_path, login_per_minute=3)
    with TestClient(strict.app):
        c = strict.browser(strict.a.email)  # one attempt of three
        codes = [
            post(c, "/web/account/password", {"current_password": f"guess number {i}",
                 "new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD}).status_code
            for i in range(3)
        ]  # fmt: skip
    assert codes[:2] == [200, 200] and codes[2] == 429, codes


def test_an_administrator_adds_and_deactivates_users(env: Env) -> None:
    admin = env.browser(env.a.email)
    bad = post(admin, "/web/account/users", {"email": "not an address", "password": "short",
               "role": "member"})  # fmt: skip
    assert bad.status_code == 200
    assert "The user was not added" in bad.text
    assert "not an address" in bad.text  # the value named, and what is allowed
    email = "colleague@a.example"
    r = post(admin, "/web/account/users", {"email": email, "password": PASSWORD,
             "role": "member"})  # fmt: skip
    assert r.status_code == 303
    assert r.headers["location"] == "/web/account?done=user-added"
    dup = post(admin, "/web/account/users", {"email": email, "password": PASSWORD})
    assert "an e-mail address that has no account yet" in dup.text
    member = env.browser(email)
    page = member.get("/web/account").text
    assert 'id="me-role">member' in page
    assert 'id="users"' not in page  # members do not manage users
    assert post(member, "/web/account/users", {"email": "x@a.example", "password": PASSWORD},
                token=csrf(member)).status_code == 403  # fmt: skip
    listing = admin.get("/web/account").text
    uid = int(re.search(r'data-user="(\d+)"><td>colleague@a\.example', listing).group(1))  # type: ignore[union-attr]
    assert post(admin, f"/web/account/users/{uid}/deactivate").status_code == 303
    assert member.get("/web/account", follow_redirects=False).status_code == 303  # session gone
    again = TestClient(env.app).post("/web/login", data={"email": email, "password": PASSWORD},
                                     follow_redirects=False)  # fmt: skip
    assert again.status_code == 401
    b = env.browser(env.b.email)
    assert post(b, f"/web/account/users/{env.a.user_id}/deactivate").status_code == 404
    assert [e.detail for e in env.audit(env.a, "delete", "user")] == [email]
    log = admin.get("/web/account").text
    log = log[log.index('id="audit-table"') :]
    assert f"<td>delete</td><td>user {uid}</td><td>{email}</td>" in log  # newest first
    assert "<td>admin@a.example <small>(browser)</small></td>" in log
    assert 'id="audit"' not in page  # the member's page
    other = b.get("/web/account").text
    assert 'id="audit-table"' in other
    assert "admin@a.example" not in other and email not in other  # B sees B's events only


# ------------------------------------------------------------------------ patients: edit
def test_a_patient_is_corrected_in_the_prefilled_intake(env: Env) -> None:
    c = env.browser(env.a.email)
    rec = records(env, env.a, simulate=False)
    pid = rec["patient"]
    form = c.get(f"/web/patients/{pid}/edit")
    assert form.status_code == 200
    html = form.text
    assert f'action="/web/patients/{pid}/edit"' in html
    assert 'value="Acne scars (cheek) and pores (nose), FST IV"' in html
    assert '<option value="4" selected>IV</option>' in html  # "IV" in the file
    assert 'name="seed:json"' in html  # an answer the form has no input for travels along
    token = _CSRF.search(html).group(1)  # type: ignore[union-attr]
    pairs = _form_pairs(html)
    refused = _post_pairs(c, f"/web/patients/{pid}/edit", pairs, {"patient.age_years": "-3"},
                          token)  # fmt: skip
    assert refused.status_code == 200
    assert "The patient was not saved" in refused.text
    assert "patient.age_years" in refused.text and "-3" in refused.text
    saved = _post_pairs(c, f"/web/patients/{pid}/edit", pairs,
                        {"name": "Typo corrected", "patient.age_years": "29"}, token)  # fmt: skip
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"/web/patients/{pid}?done=patient-saved"
    stored = env.api(env.a).get(f"/api/v1/patients/{pid}").json()
    assert stored["name"] == "Typo corrected"
    assert stored["data"]["patient"]["age_years"] == 29
    assert stored["data"]["patient"]["fitzpatrick"] == 4
    assert stored["data"]["seed"] == 0
    assert stored["data"]["limits"]["max_sessions"] == 4  # kept though not on the form
    assert stored["data"]["sites"][1]["concerns"][0]["diameter_um"] == 250
    assert "The patient was saved" in c.get(saved.headers["location"]).text
    assert [e.resource_id for e in env.audit(env.a, "update", "patient")][-1] == str(pid)


def _form_pairs(html: str) -> list[tuple[str, str]]:
    """What a browser submits from the edit form (text, hidden, checked boxes, selected options)."""
    start = html.index('<form class="stack" method="post" action="/web/patients/')
    body = html[start : html.index("</form>", start)]
    pairs: list[tuple[str, str]] = []
    for m in re.finditer(r"<input\b[^>]*>|<select\b[^>]*>.*?</select>", body, re.S):
        tag = m.group(0)
        name = re.search(r'name="([^"]*)"', tag)
        if name is None:
            continue
        if tag.startswith("<select"):
            chosen = re.search(r'<option value="([^"]*)" selected>', tag) or re.search(
                r'<option value="([^"]*)"', tag
            )
            pairs.append((name.group(1), chosen.group(1) if chosen else ""))
            continue
        kind = re.search(r'type="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if kind and kind.group(1) == "checkbox" and " checked" not in tag:
            continue
        pairs.append((name.group(1), _unescape(value.group(1)) if value else ""))
    return pairs


def _unescape(text: str) -> str:
    return (text.replace("&#34;", '"').replace("&quot;", '"').replace("&#39;", "'")
            .replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))  # fmt: skip


def _post_pairs(c: TestClient, path: str, pairs: list[tuple[str, str]],
                change: dict[str, str], token: str) -> httpx.Response:  # fmt: skip
    out = [(k, change.get(k, v)) for k, v in pairs if k != "csrf_token"]
    out.append(("csrf_token", token))
    body = "&".join(f"{_q(k)}={_q(v)}" for k, v in out)
    return c.post(path, content=body, follow_redirects=False,
                  headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip


def _q(text: str) -> str:
    return httpx.QueryParams({"x": text}).__str__()[2:]


# --------------------------------------------------------------------------------- deleting
def test_deleting_a_patient_asks_first_and_removes_runs_and_files(env: Env) -> None:
    c = env.browser(env.a.email)
    rec = records(env, env.a)
    pid, cid, rid = rec["patient"], rec["course"], rec["run"]
    with session_scope(env.ctx.sessions) as db:
        shas = set(db.scalars(sa.select(FileRecord.sha256).where(FileRecord.run_id == rid)))
    assert shas and all(env.ctx.store.path(s).exists() for s in shas)
    assert f'href="/web/patients/{pid}/delete"' in c.get(f"/web/patients/{pid}").text
    confirm = c.get(f"/web/patients/{pid}/delete")
    assert confirm.status_code == 200
    text = confirm.text
    assert "1 course: “" in text and "1 run " in text and "stored file" in text
    assert "Delete the patient, 1 course and 1 run" in text
    assert env.api(env.a).get(f"/api/v1/patients/{pid}").status_code == 200  # nothing gone yet
    r = post(c, f"/web/patients/{pid}/delete", token=_CSRF.search(text).group(1))  # type: ignore[union-attr]
    assert r.status_code == 303
    assert r.headers["location"] == "/web/patients?done=patient-deleted"
    assert "The patient was deleted" in c.get(r.headers["location"]).text
    api = env.api(env.a)
    assert api.get(f"/api/v1/patients/{pid}").status_code == 404
    assert api.get(f"/api/v1/courses/{cid}").status_code == 404
    assert api.get(f"/api/v1/runs/{rid}").status_code == 404
    with session_scope(env.ctx.sessions) as db:
        assert db.scalar(sa.select(sa.func.count()).where(FileRecord.run_id == rid)) == 0
        assert db.get(Run, rid) is None
    assert not any(env.ctx.store.path(s).exists() for s in shas)
    assert str(pid) in [e.resource_id for e in env.audit(env.a, "delete", "patient")]


def test_deleting_a_course_and_a_run_goes_back_with_a_message(env: Env) -> None:
    c = env.browser(env.a.email)
    rec = records(env, env.a)
    pid, cid, rid = rec["patient"], rec["course"], rec["run"]
    assert f'href="/web/runs/{rid}/delete"' in c.get(f"/web/courses/{cid}").text
    confirm = c.get(f"/web/runs/{rid}/delete").text
    assert f"Delete run {rid}?" in confirm and "stored file" in confirm
    r = post(c, f"/web/runs/{rid}/delete")
    assert r.status_code == 303
    assert r.headers["location"] == f"/web/courses/{cid}?done=run-deleted"
    assert "The run was deleted" in c.get(r.headers["location"]).text
    assert env.api(env.a).get(f"/api/v1/runs/{rid}").status_code == 404
    assert "Delete the course and 0 runs" in c.get(f"/web/courses/{cid}/delete").text
    r = post(c, f"/web/courses/{cid}/delete")
    assert r.status_code == 303
    assert r.headers["location"] == f"/web/patients/{pid}?done=course-deleted"
    assert "The course was deleted" in c.get(r.headers["location"]).text
    assert env.api(env.a).get(f"/api/v1/courses/{cid}").status_code == 404
    assert env.api(env.a).get(f"/api/v1/patients/{pid}").status_code == 200
    assert str(rid) in [e.resource_id for e in env.audit(env.a, "delete", "run")]
    assert str(cid) in [e.resource_id for e in env.audit(env.a, "delete", "course")]


def test_another_organisations_records_are_404_for_edit_and_delete(env: Env) -> None:
    rec = records(env, env.a)
    pid, cid, rid = rec["patient"], rec["course"], rec["run"]
    b = env.browser(env.b.email)
    for path in (f"/web/patients/{pid}/edit", f"/web/patients/{pid}/delete",
                 f"/web/courses/{cid}/delete", f"/web/runs/{rid}/delete"):  # fmt: skip
        got = b.get(path)
        assert got.status_code == 404, path
        assert "text/html" in got.headers["content-type"]
        assert "Acne scars" not in got.text
        sent = post(b, path, {"name": "taken over"})
        assert sent.status_code == 404, path
    api = env.api(env.a)
    assert api.get(f"/api/v1/patients/{pid}").json()["name"].startswith("Acne scars")
    assert api.get(f"/api/v1/courses/{cid}").status_code == 200
    assert api.get(f"/api/v1/runs/{rid}").status_code == 200

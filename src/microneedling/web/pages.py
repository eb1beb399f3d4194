"""The web pages (``/web/...``): sign in, patients, intake and screening, plan, course editor,
result, what-if, absorption study, trial builder, credibility and the patient handout.

Every page is server-rendered (Jinja2, the report shell) from the same data the API answers with:
records reach a page only through :func:`~microneedling.service.auth.owned` and
:func:`~microneedling.service.auth.scoped` (another organisation's record is a 404, as in the
API); forms are validated by the package's models through
:func:`~microneedling.service.runs.prepare` (the API's validation) and runs are started by
:func:`~microneedling.service.api.start_run` (the API's). Forms post with the session's CSRF
token (``csrf_token`` field); our script adds field errors as one types (``POST /web/check/...``)
and follows a job's progress on its server-sent events.
"""

from __future__ import annotations

import copy
import json
import math
import re
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import numpy as np
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from microneedling.about import DISCLAIMER
from microneedling.course.model import Course
from microneedling.course.patient import PatientFile
from microneedling.course.screening import Screening, screen
from microneedling.engine.applicability import AXES, load_domains
from microneedling.engine.variables import by_name, endpoint_variables
from microneedling.errors import InputError, InputFileError
from microneedling.parameters.molecules import shipped_molecules, using_molecules
from microneedling.parameters.parameter_set import load_references
from microneedling.reports import absorb as absorb_report
from microneedling.reports import charts, page
from microneedling.reports import run as run_report
from microneedling.reports import trial as trial_report
from microneedling.reports.format import (
    endpoint_label,
    field_label,
    format_day,
    format_interval,
    format_number,
    format_p,
    format_percent,
    human,
    pretty_units,
    roman,
    units_words,
    yes_no,
)
from microneedling.schema import MISSING
from microneedling.service import audit
from microneedling.service.accounts import (
    authenticate,
    change_password,
    end_sessions,
    start_session,
)
from microneedling.service.api import (
    add_user,
    cancel_run,
    create_token,
    deactivate_user,
    delete_course,
    delete_patient,
    delete_run,
    revoke_token,
    start_run,
)
from microneedling.service.auth import (
    Context,
    Principal,
    app_context,
    authenticate_request,
    clear_session_cookie,
    client_ip,
    limit_sign_in,
    owned,
    require_admin,
    scoped,
    set_session_cookie,
)
from microneedling.service.db import (
    ApiToken,
    AuditEvent,
    BrowserSession,
    CourseRecord,
    FileRecord,
    Organisation,
    PatientRecord,
    Run,
    User,
)
from microneedling.service.errors import ServiceError
from microneedling.service.jobs import TERMINAL
from microneedling.service.runs import (
    RESULT_BLOB,
    organisation_molecules,
    organisation_scope,
    prepare,
    request_molecules,
    result_of,
)
from microneedling.service.security import MIN_PASSWORD, csrf_token, hash_token
from microneedling.studies.planning.search import renamed_plan
from microneedling.studies.trial.population import list_populations, load_population
from microneedling.vocabulary import CONCERN_TYPES, SITES, fitzpatrick_number
from microneedling.web import presets
from microneedling.web.forms import field_errors, flatten, nest
from microneedling.web.render import compress, plotly_url, render_page

__all__ = ["router"]

router = APIRouter(prefix="/web", include_in_schema=False)

_API = "/api/v1"
#: uncertainty draws of a simulation started from a page (answered inline: ≤ the inline limit)
SIMULATE_DRAWS = 32


# ------------------------------------------------------------------------------ basics
class Redirect(Exception):
    """Leave the page for another (sign-in when not signed in)."""

    def __init__(self, url: str) -> None:
        self.url = url


def _db(request: Request) -> Session:
    return app_context(request).sessions()


def _caller(request: Request, db: Session, csrf: str | None = None) -> Principal:
    """The signed-in user, or a redirect to the sign-in page (for a page read)."""
    try:
        return authenticate_request(request, db, csrf)
    except ServiceError as exc:
        if exc.status == 401:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise Redirect("/web/login?next=" + quote(target, safe="")) from None
        raise


def _csrf(request: Request, who: Principal) -> str:
    if who.session_token is None:
        return ""
    return csrf_token(app_context(request).settings.secret_key, who.session_token)


async def _form(request: Request) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The submitted form as ordered pairs and as a dict (last value of each name)."""
    form = await request.form()
    pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    return pairs, dict(pairs)


@asynccontextmanager
async def _posted(request: Request) -> AsyncIterator[tuple[dict[str, str], Session, Principal]]:
    """A submitted form's route: the form (last value of each name), a database session, and the
    signed-in user whose session the form's CSRF token matches (a redirect to the sign-in page
    when signed out)."""
    _, form = await _form(request)
    with _db(request) as db:
        yield form, db, _caller(request, db, form.get("csrf_token"))


def _page(
    request: Request,
    who: Principal | None,
    template: str,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page. A form sent back with its field errors answers 200 (the page is what the browser
    should show; a 4xx would be logged as a failed load in the browser's console)."""
    html = render_page(
        template,
        user=who.email if who else None,
        csrf=_csrf(request, who) if who else "",
        notice=NOTICES.get(request.query_params.get("done", ""), ""),
        **context,
    )
    body, headers = compress(html.encode("utf-8"), request.headers.get("accept-encoding", ""))
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store", **headers})


#: the message a page shows after a form's redirect (``?done=<key>``; never text from the address)
NOTICES = {
    "password": "Your password was changed. Your other browser sessions were signed out.",
    "revoked": "The token was revoked: requests that send it are refused from now on.",
    "user-added": "The user was added. Give them their password in person; they can change it "
    "on their account page.",
    "user-deactivated": "The user was deactivated: their sessions ended and their tokens were "
    "revoked.",
    "patient-saved": "The patient was saved. Courses made before keep the answers they were "
    "made with.",
    "patient-deleted": "The patient was deleted with their courses, runs and stored files.",
    "course-deleted": "The course was deleted with its runs and their stored files.",
    "run-deleted": "The run was deleted with its stored files.",
}


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(target: str | None) -> str:
    """A sign-in's destination: a path of the pages only (never another site)."""
    if target and target.startswith("/web/") and not target.startswith("//"):
        return target
    return "/web/patients"


def error_page(
    request: Request, status: int, message: str, problems: Sequence[str] = ()
) -> Response:
    """The page of an error (a 404 for another organisation's record, a refused request)."""
    if status == 401:
        return _see("/web/login")
    html = render_page(
        "error.html.j2", kind="Error", title=f"{status}: {message}", message=message,
        problems=list(problems),
    )  # fmt: skip
    return HTMLResponse(html, status_code=status)


# ------------------------------------------------------------------------- sign in
@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    return _page(request, None, "login.html.j2", kind="Sign in", title="Sign in",
                 next=_safe_next(next), error="", email="")  # fmt: skip


@router.post("/login")
async def login(request: Request) -> Response:
    _, form = await _form(request)
    email, password = form.get("email", ""), form.get("password", "")
    target = _safe_next(form.get("next"))
    ctx = app_context(request)
    ip = client_ip(request) or "?"
    try:
        limit_sign_in(ctx, request, email)  # the API's limit: per address and per account
    except ServiceError as refused:
        error = refused.message[:1].upper() + refused.message[1:] + "."
        out = _page(request, None, "login.html.j2", status=refused.status, kind="Sign in",
                    title="Sign in", next=target, error=error, email=email)  # fmt: skip
        out.headers.update(refused.headers)
        return out

    def sign_in() -> str | None:
        """The new session's token, or None for a wrong e-mail address or password."""
        with ctx.sessions() as db:
            user = authenticate(db, email, password)
            if user is None:
                return None
            _, token = start_session(db, user, ctx.settings.session_hours)
            who = Principal(user.id, user.organisation_id, user.role, user.email, "session", ip=ip)
            audit.record(db, who, "login", "session", None, "web")
            db.commit()
            return token

    # in a worker thread: the argon2 check takes tens of milliseconds, which on the event loop
    # would hold up every other request of the process
    token = await anyio.to_thread.run_sync(sign_in)
    if token is None:
        return _page(request, None, "login.html.j2", status=401, kind="Sign in",
                     title="Sign in", next=target, error="Wrong e-mail address or password.",
                     email=email)  # fmt: skip
    response = _see(target)
    set_session_cookie(response, token, ctx.settings)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    _, form = await _form(request)
    ctx = app_context(request)
    with ctx.sessions() as db:
        who = _caller(request, db, form.get("csrf_token"))
        if who.session_token:
            db.execute(
                sa.delete(BrowserSession).where(
                    BrowserSession.token_hash == hash_token(who.session_token)
                )
            )
        audit.record(db, who, "logout", "session", None, "web")
        db.commit()
    response = _see("/web/login")
    clear_session_cookie(response, ctx.settings)
    return response


@router.get("")
@router.get("/")
def home() -> Response:
    return _see("/web/patients")


# ------------------------------------------------------------------------- patients
def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _patient_line(rec: PatientRecord) -> dict[str, Any]:
    data = rec.data if isinstance(rec.data, dict) else {}
    person: Any = data.get("patient") if isinstance(data.get("patient"), dict) else {}
    sites = [s.get("name", "?") for s in data.get("sites", []) if isinstance(s, dict)]
    concerns = [
        c.get("type", "?")
        for s in data.get("sites", [])
        if isinstance(s, dict)
        for c in s.get("concerns", [])
        if isinstance(c, dict)
    ]
    return {
        "id": rec.id,
        "name": rec.name,
        "who": f"{person.get('age_years', '?')} y, {person.get('sex', '?')}, Fitzpatrick "
        f"{roman(person.get('fitzpatrick')) if person.get('fitzpatrick') is not None else '?'}",
        "sites": ", ".join(human(s) for s in sites),
        "concerns": ", ".join(sorted({human(c) for c in concerns})),
        "created": rec.created_at.strftime("%Y-%m-%d %H:%M") if rec.created_at else "",
    }


@router.get("/patients")
def patients(request: Request, q: str = "") -> Response:
    with _db(request) as db:
        who = _caller(request, db)
        query = scoped(PatientRecord, who)
        q = q.strip()[:200]
        if q:
            query = query.where(PatientRecord.name.ilike(_like(q), escape="\\"))
        rows = db.scalars(query.order_by(PatientRecord.id.desc()).limit(200)).all()
        lines = [_patient_line(r) for r in rows]
        return _page(request, who, "patients.html.j2", kind="Patients", title="Patients",
                     active="patients", q=q, patients=lines)  # fmt: skip


_SITE_FLAGS = ("active_infection", "active_acne", "eczema_psoriasis_active", "vitiligo_active",
               "gold_threads")  # fmt: skip
_HISTORY_FLAGS = ("herpes_labialis_history", "keloid_history", "hypertrophic_scar_history",
                  "anticoagulants", "bleeding_disorder", "pregnant", "diabetes_uncontrolled",
                  "immunosuppressed")  # fmt: skip
_CONCERN_FIELDS: dict[str, list[tuple[str, str, str]]] = {
    # type -> (field, label, input kind) of the intake form
    "acne_scar": [("scar_type", "Scar type", "select:rolling,boxcar,icepick"),
                  ("depth_mm", "Scar depth (mm)", "number"), ("count", "Number of scars", "int")],
    "wrinkles": [("depth_um", "Wrinkle depth (µm)", "number")],
    "pores": [("diameter_um", "Pore diameter (µm)", "number")],
    "striae": [("width_mm", "Stretch-mark width (mm)", "number"),
               ("stage", "Stage", "select:rubra,alba")],
    "hyperpigmentation": [("kind", "Kind", "select:melasma,pih,lentigo"),
                          ("melanin_index", "Melanin index (Mexameter units)", "number")],
    "photoaging": [],
}  # fmt: skip


def _intake_context(
    values: Mapping[str, Any],
    errors: Mapping[str, list[str]],
    patient: PatientRecord | None = None,
) -> dict[str, Any]:
    """The intake form: a new patient's, or ``patient``'s prefilled (its answers the form has no
    input for travel as hidden JSON fields, :func:`_kept`, so that saving loses none)."""
    editing = {
        "kind": "Patient",
        "title": f"Edit {patient.name}",
        "active": "patients",
        "form_action": f"/web/patients/{patient.id}/edit",
        "patient": {"id": patient.id, "name": patient.name},
        "kept": _kept(values),
    } if patient is not None else {}  # fmt: skip
    return {
        "kind": "New patient",
        "title": "Patient intake",
        "active": "new",
        "form_action": "/web/patients/new",
        "patient": None,
        "kept": [],
        **editing,
        "values": dict(values),
        "errors": dict(errors),
        "sites": SITES,
        "concern_types": [c for c in CONCERN_TYPES if c in _CONCERN_FIELDS],
        "concern_fields": _CONCERN_FIELDS,
        "site_flags": [(f, field_label(f)) for f in _SITE_FLAGS],
        "history_flags": [(f, field_label(f)) for f in _HISTORY_FLAGS],
        "devices": list(presets.DEVICES),
    }


def _intake_names() -> frozenset[str]:
    """Every field path the intake form has an input for (as :func:`flatten` names values)."""
    names = {"name", "patient.age_years", "patient.sex", "patient.fitzpatrick",
             "history.isotretinoin_months_ago", "limits.allowed_devices",
             "limits.allow_above_usual_depth"}  # fmt: skip
    names |= {f"history.{f}" for f in _HISTORY_FLAGS}
    for i in range(2):
        p = f"sites[{i}]"
        names |= {f"{p}.{f}" for f in ("name", "area_cm2", "filler_months_ago",
                                          "radiotherapy_months_ago", *_SITE_FLAGS)}  # fmt: skip
        c = f"{p}.concerns[0]"
        names |= {f"{c}.type", f"{c}.severity"}
        names |= {f"{c}.{f}" for fields in _CONCERN_FIELDS.values() for f, _, _ in fields}
    return frozenset(names)


_INTAKE_NAMES = _intake_names()


def _kept(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A stored patient's answers the intake form shows no input for (a third site, a second
    concern of a site, ...) as hidden ``name:json`` fields: saving the edited form keeps them."""
    return [(f"{k}:json", json.dumps(v)) for k, v in values.items()
            if k and k not in _INTAKE_NAMES and not k.endswith(":json")]  # fmt: skip


_INTAKE_DEFAULTS = {
    "patient.sex": "female",
    "patient.fitzpatrick": 3,
    "sites[0].name": "cheek",
    "sites[0].concerns[0].type": "acne_scar",
    "sites[0].concerns[0].severity": "moderate",
    "sites[1].concerns[0].severity": "moderate",
    "limits.allowed_devices": ["roller", "pen"],
}


@router.get("/patients/new")
def intake_page(request: Request) -> Response:
    with _db(request) as db:
        who = _caller(request, db)
        return _page(request, who, "intake.html.j2", **_intake_context(_INTAKE_DEFAULTS, {}))


def _patient_table(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The intake form as a patient file: a second site left empty is dropped."""
    data = nest(pairs)
    if isinstance(data.get("sites"), list):
        data["sites"] = [
            s for s in data["sites"] if isinstance(s, dict) and s.get("name") not in (None, "")
        ]
    return data


def _intake(
    request: Request,
    who: Principal,
    pairs: list[tuple[str, str]],
    rec: PatientRecord | None = None,
) -> tuple[dict[str, Any], PatientFile] | Response:
    """A submitted intake (a new patient's, or ``rec``'s corrected) as its patient table and the
    validated file; refused, the intake page again with each problem under its input and what
    was typed kept."""
    try:
        data = _patient_table(pairs)
        return data, PatientFile.from_dict(data, source="patient")
    except (InputError, InputFileError) as exc:
        values = flatten(nest(pairs))
        return _page(request, who, "intake.html.j2",
                     **_intake_context(values, field_errors(exc), rec))  # fmt: skip


@router.post("/patients/new")
async def intake(request: Request) -> Response:
    pairs, form = await _form(request)
    with _db(request) as db:
        who = _caller(request, db, form.get("csrf_token"))
        got = _intake(request, who, pairs)
        if isinstance(got, Response):
            return got
        data, pf = got
        rec = PatientRecord(
            organisation_id=who.organisation_id, name=pf.name, data=data, created_by=who.user_id
        )
        db.add(rec)
        db.flush()
        audit.record(db, who, "create", "patient", rec.id, "web")
        db.commit()
        return _see(f"/web/patients/{rec.id}")


@router.post("/check/patient")
async def check_patient(request: Request) -> Response:
    """Field errors of the intake form as one types (JSON: field path → messages)."""
    pairs, form = await _form(request)
    with _db(request) as db:
        _check_caller(request, db, form)
    try:
        PatientFile.from_dict(_patient_table(pairs), source="patient")
    except (InputError, InputFileError) as exc:
        return JSONResponse({"errors": field_errors(exc)})
    return JSONResponse({"errors": {}})


def _check_caller(request: Request, db: Session, form: Mapping[str, str]) -> Principal:
    try:
        return authenticate_request(request, db, form.get("csrf_token"))
    except ServiceError as exc:
        raise ServiceError(exc.status, exc.message) from None


def _findings(scr: Screening) -> list[dict[str, Any]]:
    refs = load_references()
    out = []
    for f in scr.findings:
        rule = f.rule
        sources = []
        for k in rule.sources:
            r = refs.get(k)
            if r is not None:
                url = r.user_url
                sources.append({"citation": r.user_citation,
                                "link": url if url.startswith(("https://", "http://")) else ""})  # fmt: skip
        value = f.value
        if isinstance(value, bool):
            answer = f"{field_label(rule.field)}: {yes_no(value)}"
        elif isinstance(value, int | float) and rule.field.endswith("_months_ago"):
            answer = f"{field_label(rule.field.removesuffix('_months_ago'))}: {value:g} months ago"
        else:
            answer = f"{field_label(rule.field)}: {human(value)}"
        window = (
            f"within {rule.threshold_months:g} months" if rule.test == "within" and
            rule.threshold_months is not None else ""
        )  # fmt: skip
        out.append(
            {
                "absolute": f.absolute,
                "classification": "Absolute contraindication" if f.absolute
                else "Relative contraindication",
                "where": human(f.site) if f.site else "the person",
                "answer": answer,
                "window": window,
                "reason": rule.reason[:1].upper() + rule.reason[1:],
                "judgement": rule.judgement,
                "sources": sources,
                "key": rule.key,
            }
        )  # fmt: skip
    return out


def _runs_of(db: Session, who: Principal, **where: Any) -> list[dict[str, Any]]:
    q = scoped(Run, who)
    for k, v in where.items():
        q = q.where(getattr(Run, k) == v)
    rows = db.scalars(q.order_by(Run.id.desc()).limit(50)).all()
    return [
        {"id": r.id, "kind": r.kind, "status": r.status,
         "created": r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else "",
         "text": (r.summary or {}).get("course", "") if isinstance(r.summary, dict) else ""}
        for r in rows
    ]  # fmt: skip


def _patient_context(
    db: Session, who: Principal, rec: PatientRecord, errors: Mapping[str, list[str]], values: Any
) -> dict[str, Any]:
    pf = PatientFile.from_dict(rec.data, source="patient")
    scr = screen(pf)
    limits = pf.limits
    courses = db.scalars(
        scoped(CourseRecord, who).where(CourseRecord.patient_id == rec.id).order_by(
            CourseRecord.id.desc())
    ).all()  # fmt: skip
    defaults = {
        "max_downtime_days": limits.max_downtime_days_per_session,
        "max_total_downtime_days": limits.max_total_downtime_days,
        "max_sessions": limits.max_sessions,
        "max_pih_risk": limits.max_pih_risk,
        "draws": SIMULATE_DRAWS,
    }
    concerns = [
        {"site": human(s.name), "type": human(c.type), "severity": c.severity}
        for s in pf.sites for c in s.concerns
    ]  # fmt: skip
    return {
        "kind": "Patient",
        "title": rec.name,
        "subtitle": f"{pf.patient.age_years} years, {pf.patient.sex}, Fitzpatrick "
        f"{roman(pf.patient.fitzpatrick)}",
        "active": "patients",
        "patient": {"id": rec.id, "name": rec.name},
        "concerns": concerns,
        "findings": _findings(scr),
        "refused": scr.refused,
        "pih_limit": format_percent(limits.pih_limit()),
        "values": {**defaults, **(values or {})},
        "errors": dict(errors),
        "courses": [{"id": c.id, "name": c.name} for c in courses],
        "runs": _runs_of(db, who, patient_id=rec.id),
    }


@router.get("/patients/{patient_id}")
def patient_page(request: Request, patient_id: int) -> Response:
    with _db(request) as db:
        who = _caller(request, db)
        rec = owned(db, PatientRecord, patient_id, who, "patient")
        audit.record(db, who, "view", "patient", rec.id, "web")
        db.commit()
        return _page(request, who, "patient.html.j2", **_patient_context(db, who, rec, {}, None))


def _number(form: Mapping[str, str], name: str) -> Any:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    return nest([(name, raw)]).get(name)


@router.post("/patients/{patient_id}/plan")
async def plan(request: Request, patient_id: int) -> Response:
    async with _posted(request) as (form, db, who):
        rec = owned(db, PatientRecord, patient_id, who, "patient")
        names = ("max_downtime_days", "max_total_downtime_days", "max_sessions", "max_pih_risk",
                 "draws")  # fmt: skip
        payload: dict[str, Any] = {"patient_id": rec.id, "figures": False}
        for n in names:
            v = _number(form, n)
            if v is not None:
                payload[n] = v
        try:
            prep = prepare("plan", payload, db, who.organisation_id, app_context(request).settings)
        except (InputError, InputFileError) as exc:
            ctx = _patient_context(
                db, who, rec, field_errors(exc), {n: form.get(n, "") for n in names}
            )
            return _page(request, who, "patient.html.j2", **ctx)
        out = await start_run(prep, who, db, app_context(request))
        return _see(f"/web/runs/{out.id}")


# ------------------------------------------------------------------------------ runs
def _run_files(db: Session, run: Run) -> list[str]:
    return list(
        db.scalars(
            sa.select(FileRecord.name).where(FileRecord.run_id == run.id).order_by(FileRecord.name)
        ).all()
    )


def _stored_file(db: Session, ctx: Context, run: Run, name: str) -> bytes | None:
    """The bytes of the run's stored file ``name`` (None if the run has no such file)."""
    rec = db.scalar(
        sa.select(FileRecord).where(FileRecord.run_id == run.id, FileRecord.name == name)
    )
    return None if rec is None else ctx.store.read_bytes(rec.sha256)


def _load_result(db: Session, ctx: Context, run: Run) -> Any:
    data = _stored_file(db, ctx, run, RESULT_BLOB)
    if data is None:
        raise ServiceError(409, f"run {run.id} has no stored result")
    return result_of(data)


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: int) -> Response:
    ctx = app_context(request)
    with _db(request) as db:
        who = _caller(request, db)
        run = owned(db, Run, run_id, who, "run")
        base: dict[str, Any] = {"run": {"id": run.id, "kind": run.kind, "status": run.status,
                        "progress": run.progress, "text": run.progress_text,
                        "patient_id": run.patient_id, "course_id": run.course_id}}  # fmt: skip
        if run.status not in TERMINAL:
            return _page(request, who, "wait.html.j2", kind=f"{run.kind.capitalize()} run",
                         title=f"Run {run.id}: {run.status}", **base)  # fmt: skip
        if run.status != "done":
            err = run.error if isinstance(run.error, dict) else {}
            problems = [
                p.get("message", "") for p in err.get("problems", []) if isinstance(p, dict)
            ]
            return _page(request, who, "failed.html.j2", kind=f"{run.kind.capitalize()} run",
                         title=f"Run {run.id}: {run.status}", message=err.get("error", ""),
                         problems=problems, **base)  # fmt: skip
        audit.record(db, who, "view", "run", run.id, "web")
        db.commit()
        if run.kind == "simulate":
            return _result(request, who, db, ctx, run)
        if run.kind == "plan":
            return _plan_page(request, who, run)
        if run.kind == "absorb":
            return _absorb_page(request, who, db, run)
        if run.kind == "trial":
            return _trial_page(request, who, db, run)
        if run.kind == "validate":
            return _validate_page(request, who, db, run)
        return _page(request, who, "files.html.j2", kind=f"{run.kind.capitalize()} run",
                     title=f"Run {run.id}", files=_run_files(db, run), **base)  # fmt: skip


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: int) -> Response:
    """Cancel a queued or running run (the API's cancel: a running one stops at its next
    chunk)."""
    async with _posted(request) as (_, db, who):
        owned(db, Run, run_id, who, "run")
        cancel_run(run_id, who, db)
        return _see(f"/web/runs/{run_id}")


_DOWNLOADS = (
    ("result.nc", "NetCDF (every output, with units)"),
    ("endpoints.csv", "End points (CSV)"),
    ("report.html", "Report (HTML, opens offline)"),
    ("course.toml", "Course file (TOML)"),
)


def _result(request: Request, who: Principal, db: Session, ctx: Context, run: Run) -> Response:
    result = _load_result(db, ctx, run)
    context = run_report.page_context(result, library_url=_plotly())
    context.update(kind="Result", active="patients",
                   warnings=[readable(w) for w in context.get("warnings", [])])  # fmt: skip
    downloads = [{"href": f"{_API}/runs/{run.id}/files/{n}", "label": label, "name": n}
                 for n, label in _DOWNLOADS]  # fmt: skip
    return _page(request, who, "result.html.j2", run={"id": run.id, "course_id": run.course_id,
                 "patient_id": run.patient_id}, downloads=downloads, **context)  # fmt: skip


_OUTSIDE = re.compile(r"outside validation: ([a-z][a-z0-9_]*):")
_ENDPOINT_TEXT = re.compile(r"\b[a-z][a-z0-9_]*:[a-z_]+(?:@[A-Za-z0-9+.]+)?")


def readable(text: Any) -> str:
    """A warning or an explanation of the library in words for the pages: output names by their
    label (``outside validation: scar_depth:`` → ``outside the validated settings: Atrophic scar
    depth:``) and end points of the grammar in words; parameter names stay (they are looked up)."""
    names = by_name()

    def output(m: re.Match[str]) -> str:
        v = names.get(m.group(1))
        label = (v.label or v.long_name) if v is not None else human(m.group(1))
        return f"outside the validated settings: {label}:"

    def endpoint(m: re.Match[str]) -> str:
        words = endpoint_label(m.group(0))
        return words if words != human(m.group(0)) else m.group(0)

    return _ENDPOINT_TEXT.sub(endpoint, _OUTSIDE.sub(output, str(text)))


def _units_words(units: Any, variable: Any = "") -> str:
    """Units for a table cell: a dimensionless quantity says what its number is."""
    return units_words(units or "", variable)


def _plotly() -> str:
    return plotly_url()


def _plan_words(text: Any) -> str:
    """A plan's one-line summary with its passes named: ``cheek 1.5 mm × 4`` → ``cheek 1.5 mm ×
    4 passes`` (a bare ``× 4`` reads as four sessions)."""
    return re.sub(r"(mm × \d+)\b(?! pass)", r"\1 passes", str(text or ""))


def _small_percent(fraction: Any) -> str:
    """A risk as a percentage, a negligible one as ``< 0.01%`` (not ``1.05e-10%``)."""
    try:
        v = float(fraction)
    except (TypeError, ValueError):
        return "—"
    return "< 0.01%" if 0 < v < 1e-4 else format_percent(v)


def _plan_page(request: Request, who: Principal, run: Run) -> Response:
    s = run.summary or {}
    pareto = [p for p in s.get("pareto", []) if isinstance(p, dict)]
    points = [
        {"index": p["index"], "downtime": p["total_downtime_days"], "score": p["score"],
         "sessions": p["sessions"], "label": _plan_words(p["summary"]),
         "recommended": p["recommended"]}
        for p in pareto
    ]  # fmt: skip
    chart = (
        charts.pareto_chart(
            "chart-pareto",
            f"Pareto set: {len(pareto)} plans of {s.get('n_plans', '?')} that meet the limits",
            points,
            summary="Each point is a plan no other plan beats on improvement, downtime and "
            "number of sessions; the star is the recommended plan. Click a point to choose it "
            "below.",
        )
        if points
        else None
    )
    columns = [
        page.column("Plan", num=True), page.column("Device"), page.column("Sessions", num=True),
        page.column("Interval", "d", num=True), page.column("Needle length per site", "mm"),
        page.column("Passes per site"), page.column("Improvement score", num=True),
        page.column("Total downtime", "d", num=True),
        page.column("Worst session downtime", "d", num=True),
        page.column("Worst-session PIH risk", num=True),
    ]  # fmt: skip
    rows = []
    for p in sorted(pareto, key=lambda p: (not p["recommended"], -p["score"])):
        rows.append({
            "cells": [
                str(p["index"]) + (" (recommended)" if p["recommended"] else ""),
                human(p["device"]) + (f" + {human(p['topical'])}" if p.get("topical") else ""),
                str(p["sessions"]), str(p["interval_days"]),
                ", ".join(f"{human(k)} {v:g}" for k, v in p["lengths_mm"].items()),
                ", ".join(f"{human(k)} {v}" for k, v in (p.get("passes") or {}).items()) or "—",
                format_number(p["score"]), format_number(p["total_downtime_days"]),
                format_number(p["max_session_downtime_days"]), _small_percent(p["max_pih_risk"]),
            ],
            "highlight": bool(p["recommended"]),
        })  # fmt: skip
    preds = []
    for r in s.get("predictions", []):
        if not isinstance(r, dict):
            continue
        units = _units_words(r.get("units"), r.get("endpoint"))
        iv = format_interval(r.get("low"), r.get("high"))
        preds.append([human(r.get("site", "")), endpoint_label(r.get("endpoint", "")),
                      format_number(r.get("value")), iv or "—", units])  # fmt: skip
    pred_table = page.table(
        [page.column("Site"), page.column("End point"), page.column("Value", num=True),
         page.column("10–90% interval", num=True), page.column("Units")],
        preds, label="Predictions of the recommended plan",
    )  # fmt: skip
    return _page(
        request, who, "plan.html.j2", kind="Plan", title=f"Plan for {s.get('patient', '')}",
        active="patients",
        run={"id": run.id, "patient_id": run.patient_id},
        recommended=_plan_words(s.get("recommended", "")),
        explanation=[readable(x) for x in s.get("explanation", [])],
        warnings=[readable(x) for x in s.get("warnings", [])], chart=chart,
        table=page.table(columns, rows, label="Pareto plans"), options=[
            {"index": p["index"], "label": _plan_words(p["summary"]), "recommended": p["recommended"]}
            for p in pareto],
        predictions=pred_table, draws=s.get("draws"),
        **charts.context([chart], library_url=_plotly()),
    )  # fmt: skip


@router.post("/runs/{run_id}/pick")
async def pick(request: Request, run_id: int) -> Response:
    """Keep one plan of a plan run as a course of the patient and open it in the editor."""
    async with _posted(request) as (form, db, who):
        run = owned(db, Run, run_id, who, "run")
        pareto = (run.summary or {}).get("pareto", []) if run.kind == "plan" else []
        try:
            index = int(form.get("index", ""))
            entry = next(p for p in pareto if p.get("index") == index)
        except (ValueError, StopIteration):
            return error_page(request, 422, "choose one of the plans of this run")
        course = Course.from_dict(entry["course"], source="course")
        rec = CourseRecord(organisation_id=who.organisation_id, patient_id=run.patient_id,
                           name=course.name, data=entry["course"], created_by=who.user_id)  # fmt: skip
        db.add(rec)
        db.flush()
        audit.record(db, who, "create", "course", rec.id, f"plan {index} of run {run.id}")
        db.commit()
        return _see(f"/web/courses/{rec.id}")


# --------------------------------------------------------------------------- courses
_DEVICE_FIELDS = {
    "": [("needle_count", "Needles", "int"), ("needle_diameter_mm", "Needle diameter (mm)", "number"),
         ("tip_radius_um", "Tip radius (µm)", "number"), ("tip", "Tip shape", "select:cone,pyramid"),
         ("max_needle_length_mm", "Longest needle setting (mm)", "number")],
    "roller": [("drum_diameter_mm", "Drum diameter (mm)", "number"),
               ("drum_width_mm", "Drum width (mm)", "number")],
    "pen": [("frequency_hz", "Needling frequency (Hz)", "number"),
            ("cartridge_width_mm", "Cartridge width (mm)", "number")],
    "stamp": [("stamp_area_cm2", "Stamp area (cm²)", "number")],
}  # fmt: skip


def _course_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """The editor's inputs from a course table (conditions and history kept as JSON)."""
    d = dict(data)
    values: dict[str, Any] = {}
    for k in ("name", "horizon_days", "seed", "description"):
        if k in d:
            values[k] = d[k]
    person: Any = d.get("patient") if isinstance(d.get("patient"), dict) else {}
    for k in ("age_years", "sex", "fitzpatrick", "photoprotection"):
        if k in person:
            values[f"patient.{k}"] = person[k]
    if isinstance(person.get("fitzpatrick"), str):  # "IV" is the list's 4 (else none is chosen,
        number = fitzpatrick_number(person["fitzpatrick"])  # and a browser sends type I)
        if number is not None:
            values["patient.fitzpatrick"] = number
    if "history" in person:
        values["patient.history:json"] = json.dumps(person["history"])
    if "priming" in person:
        values["patient.priming"] = person["priming"]
    site_list: Any = d.get("sites") if isinstance(d.get("sites"), list | tuple) else []
    for i, s in enumerate(site_list):
        if not isinstance(s, dict):
            continue
        values[f"sites[{i}].name"] = s.get("name", "")
        if "area_cm2" in s:
            values[f"sites[{i}].area_cm2"] = s["area_cm2"]
        values[f"sites[{i}].conditions:json"] = json.dumps(s.get("conditions", []))
    dev: Any = d.get("device") if isinstance(d.get("device"), dict) else {}
    for k, v in dev.items():
        values[f"device.{k}"] = v
    sessions: Any = d.get("sessions") if isinstance(d.get("sessions"), list | tuple) else []
    for i, s in enumerate(sessions):
        if isinstance(s, dict):
            for k, v in flatten(s).items():
                values[f"sessions[{i}].{k}"] = v
    values["_sessions"] = len(sessions)
    values["_sites"] = [s.get("name", "") for s in site_list if isinstance(s, dict)]
    return values


def _course_table(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The editor's form as a course table (a session without a product has no topical)."""
    data = nest(pairs)
    dev = data.get("device")
    if isinstance(dev, dict):
        kind = dev.get("type")
        data["device"] = {k.partition(":")[2] if ":" in k else k: v for k, v in dev.items()
                          if ":" not in k or k.startswith(f"{kind}:")}  # fmt: skip
    pen = isinstance(dev, dict) and dev.get("type") == "pen"
    for s in data.get("sessions", []) if isinstance(data.get("sessions"), list) else []:
        if isinstance(s, dict) and isinstance(s.get("topical"), dict):
            if not s["topical"].get("product"):
                del s["topical"]
        if isinstance(s, dict) and not pen:
            s.pop("pen_speed_cm_s", None)  # the column is for pens only (the device was changed)
    return data


def _products(db: Session, org: int) -> list[str]:
    """The products a form offers: the shipped library, then the organisation's own molecules."""
    shipped = shipped_molecules()
    own = [k for k in organisation_molecules(db, org) if k not in shipped]
    return sorted(shipped) + sorted(own)


def _editor_context(rec: CourseRecord, values: Mapping[str, Any], errors: Mapping[str, list[str]],
                    data: Mapping[str, Any], products: list[str]) -> dict[str, Any]:  # fmt: skip
    v = dict(values)
    if "_sessions" not in v:
        base = _course_values(data)
        v["_sessions"] = base["_sessions"]
        v["_sites"] = base["_sites"]
    # the other device types' fields start from the preset devices: switching the type shows
    # usable values instead of empty required fields
    for kind, fields in _DEVICE_FIELDS.items():
        for f, _, _ in fields:
            if kind:
                v.setdefault(f"device.{f}", presets.DEVICES[kind].get(f))
    return {
        "kind": "Course editor",
        "title": rec.name,
        "active": "patients",
        "course": {"id": rec.id, "patient_id": rec.patient_id},
        "values": v,
        "errors": dict(errors),
        "sites": SITES,
        "device_fields": _DEVICE_FIELDS,
        "products": products,
        "n_sessions": max(int(v.get("_sessions") or 0), 1),
        "site_names": v.get("_sites") or ["cheek"],
        "draws": SIMULATE_DRAWS,
    }


@router.get("/courses/{course_id}")
def course_page(request: Request, course_id: int, saved: int = 0) -> Response:
    with _db(request) as db:
        who = _caller(request, db)
        rec = owned(db, CourseRecord, course_id, who, "course")
        audit.record(db, who, "view", "course", rec.id, "web")
        db.commit()
        ctx = _editor_context(rec, _course_values(rec.data), {}, rec.data,
                              _products(db, who.organisation_id))  # fmt: skip
        ctx["runs"] = _runs_of(db, who, course_id=rec.id)
        ctx["saved"] = bool(saved)
        return _page(request, who, "course.html.j2", **ctx)


_VARIANT_FIELD = re.compile(r"device\.(\w+):(\w+)")


def _form_values(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    sessions: set[int] = set()
    sites: dict[int, str] = {}
    for k, v in pairs:
        values[k] = v
        m = re.match(r"sessions\[(\d+)\]", k)
        if m:
            sessions.add(int(m.group(1)))
        m = re.fullmatch(r"sites\[(\d+)\]\.name", k)
        if m:
            sites[int(m.group(1))] = v
    # rows renumbered as nest() numbers them (removed rows leave no hole)
    order = {old: new for new, old in enumerate(sorted(sessions))}
    renamed: dict[str, Any] = {}
    for k, v in values.items():
        m = re.match(r"sessions\[(\d+)\](.*)", k)
        renamed[f"sessions[{order[int(m.group(1))]}]{m.group(2)}" if m else k] = v
    # a device type's own field (``device.pen:frequency_hz``) is shown under ``device.frequency_hz``
    # (as :func:`_course_values` names it): without this, a refused save emptied those fields
    for k, v in values.items():
        m = _VARIANT_FIELD.fullmatch(k)
        if m:
            renamed[f"device.{m.group(2)}"] = v
    renamed["_sessions"] = len(sessions)
    renamed["_sites"] = [sites[i] for i in sorted(sites)]
    return renamed


@router.post("/courses/{course_id}")
async def save_course(request: Request, course_id: int) -> Response:
    pairs, form = await _form(request)
    ctx = app_context(request)
    with _db(request) as db:
        who = _caller(request, db, form.get("csrf_token"))
        rec = owned(db, CourseRecord, course_id, who, "course")
        try:
            data = _course_table(pairs)
            with organisation_scope(db, who.organisation_id, data):  # its own molecules too
                course = Course.from_dict(data, source="course")
        except (InputError, InputFileError) as exc:
            c = _editor_context(rec, _form_values(pairs), field_errors(exc), rec.data,
                                _products(db, who.organisation_id))  # fmt: skip
            c["runs"] = _runs_of(db, who, course_id=rec.id)
            return _page(request, who, "course.html.j2", **c)
        name = course.name
        if name == rec.name:  # a name left as it was: the planner's is kept describing the course
            days = [float(x.day) for x in course.sessions]
            name = renamed_plan(name, str(course.device.type), days) or name
            data["name"] = name
        rec.data, rec.name = data, name
        audit.record(db, who, "create", "course", rec.id, "edited on the web")
        db.commit()
        if form.get("action") == "simulate":
            prep = prepare("simulate", {"course_id": rec.id, "draws": SIMULATE_DRAWS}, db,
                           who.organisation_id, ctx.settings)  # fmt: skip
            out = await start_run(prep, who, db, ctx)
            return _see(f"/web/runs/{out.id}")
        return _see(f"/web/courses/{rec.id}?saved=1")


@router.post("/check/course")
async def check_course(request: Request) -> Response:
    """Field errors of the course editor as one types (JSON: field path → the CLI's messages)."""
    pairs, form = await _form(request)
    with _db(request) as db:
        who = _check_caller(request, db, form)
        try:
            data = _course_table(pairs)
            with organisation_scope(db, who.organisation_id, data):
                Course.from_dict(data, source="course")
        except (InputError, InputFileError) as exc:
            return JSONResponse({"errors": field_errors(exc)})
    return JSONResponse({"errors": {}})


@router.post("/patients/{patient_id}/courses")
async def new_course(request: Request, patient_id: int) -> Response:
    """A new course for a patient: their person and sites (conditions from their concerns), a
    roller, one session per site at the site's usual depth; opened in the editor."""
    async with _posted(request) as (_, db, who):
        rec = owned(db, PatientRecord, patient_id, who, "patient")
        pf = PatientFile.from_dict(rec.data, source="patient")
        sites = [{"name": str(s.name),
                  "conditions": [c.condition.model_dump(mode="json", exclude_none=True)
                                 for c in s.concerns]} for s in pf.sites]  # fmt: skip
        data = {
            "name": f"Course for {pf.name}",
            "horizon_days": 180,
            "patient": {"age_years": pf.patient.age_years, "sex": pf.patient.sex,
                        "fitzpatrick": pf.patient.fitzpatrick,
                        "history": screen(pf).course_history(pf)},
            "sites": sites,
            "device": dict(presets.DEVICES["roller"]),
            "sessions": [{"day": 0, "site": s["name"], "needle_length_mm": 0.5, "passes": 10}
                         for s in sites],
        }  # fmt: skip
        Course.from_dict(data, source="course")
        crec = CourseRecord(organisation_id=who.organisation_id, patient_id=rec.id,
                            name=data["name"], data=data, created_by=who.user_id)  # fmt: skip
        db.add(crec)
        db.flush()
        audit.record(db, who, "create", "course", crec.id, "web")
        db.commit()
        return _see(f"/web/courses/{crec.id}")


# ---------------------------------------------------------------------------- what-if
def _variant(data: Mapping[str, Any], length: Any, n: Any, every: Any) -> dict[str, Any]:
    """Course B of a what-if: the same course with every session's needle length, the number of
    sessions per site and their interval changed (a blank field keeps course A's)."""
    b = copy.deepcopy(dict(data))
    sessions = [s for s in b.get("sessions", []) if isinstance(s, dict)]
    by_site: dict[str, list[dict[str, Any]]] = {}
    for s in sessions:
        by_site.setdefault(str(s.get("site")), []).append(s)
    out = []
    for rows in by_site.values():
        first = rows[0]
        count = n if isinstance(n, int) else len(rows)
        gap = float(rows[1]["day"]) - float(rows[0]["day"]) if len(rows) > 1 else 28.0
        step = float(every) if every is not None else gap
        for k in range(count):
            s = copy.deepcopy(first)
            s["day"] = float(first.get("day", 0)) + k * step
            if length is not None:
                s["needle_length_mm"] = length
            out.append(s)
    b["sessions"] = sorted(out, key=lambda s: float(s.get("day", 0)))
    if out:
        last = max(float(s.get("day", 0)) for s in out)
        b["horizon_days"] = max(float(b.get("horizon_days", 0)), last + 90)
    name = str(b.get("name", "course"))
    device = b.get("device")
    if isinstance(device, dict) and device.get("type"):  # a planner's name says B's schedule
        days = [float(s.get("day", 0)) for s in out]
        name = renamed_plan(name, str(device.get("type", "")), days) or name
    b["name"] = f"{name} (what-if)"
    return b


@router.post("/courses/{course_id}/whatif")
async def whatif_start(request: Request, course_id: int) -> Response:
    _, form = await _form(request)
    ctx = app_context(request)
    with _db(request) as db:
        who = _caller(request, db, form.get("csrf_token"))
        rec = owned(db, CourseRecord, course_id, who, "course")
        length = _number(form, "needle_length_mm")
        n = _number(form, "sessions")
        every = _number(form, "interval_days")
        errors: dict[str, list[str]] = {}
        if n is not None and (not isinstance(n, int) or not 1 <= n <= 52):
            errors["sessions"] = [str(InputError("sessions", n, "an integer from 1 to 52"))]
        if every is not None and (not isinstance(every, int | float) or not 1 <= every <= 365):
            errors["interval_days"] = [str(InputError("interval_days", every,
                                                      "a number of days from 1 to 365"))]  # fmt: skip
        data_b = _variant(rec.data, length, n, every) if not errors else {}
        if not errors:
            try:
                with organisation_scope(db, who.organisation_id, data_b):
                    course_b = Course.from_dict(data_b, source="course")
            except (InputError, InputFileError) as exc:
                for field, msgs in field_errors(exc).items():
                    key = field.rpartition(".")[2] if field.startswith("sessions[") else field
                    key = {"needle_length_mm": "needle_length_mm"}.get(key, "")
                    for msg in msgs:  # B's sessions share one input: one message, not one each
                        text = re.sub(r"^sessions\[\d+\]\.", "", msg)
                        if text not in errors.get(key, []):
                            errors.setdefault(key, []).append(text)
        if errors:
            c = _editor_context(rec, _course_values(rec.data), {}, rec.data,
                                _products(db, who.organisation_id))  # fmt: skip
            c["runs"] = _runs_of(db, who, course_id=rec.id)
            c["whatif_errors"] = errors
            c["whatif_values"] = {k: form.get(k, "") for k in ("needle_length_mm", "sessions",
                                                               "interval_days")}  # fmt: skip
            return _page(request, who, "course.html.j2", **c)
        brec = CourseRecord(organisation_id=who.organisation_id, patient_id=rec.patient_id,
                            name=course_b.name, data=data_b, created_by=who.user_id)  # fmt: skip
        db.add(brec)
        db.flush()
        audit.record(db, who, "create", "course", brec.id, f"what-if of course {rec.id}")
        db.commit()
        ids = []
        for cid in (rec.id, brec.id):
            prep = prepare("simulate", {"course_id": cid, "draws": SIMULATE_DRAWS}, db,
                           who.organisation_id, ctx.settings)  # fmt: skip
            ids.append((await start_run(prep, who, db, ctx)).id)
        return _see(f"/web/whatif?a={ids[0]}&b={ids[1]}")


@router.get("/whatif")
def whatif(request: Request, a: int | None = None, b: int | None = None) -> Response:
    ctx = app_context(request)
    with _db(request) as db:
        who = _caller(request, db)
        done = db.scalars(
            scoped(Run, who).where(Run.kind == "simulate", Run.status == "done")
            .order_by(Run.id.desc()).limit(100)
        ).all()  # fmt: skip
        options = [{"id": r.id, "label": f"run {r.id}: {(r.summary or {}).get('course', '')}"}
                   for r in done]  # fmt: skip
        if a is None or b is None:
            return _page(request, who, "whatif.html.j2", kind="What-if", title="What-if: two courses",
                         active="whatif", options=options, pair=None, a=a, b=b)  # fmt: skip
        ra, rb = owned(db, Run, a, who, "run"), owned(db, Run, b, who, "run")
        for r in (ra, rb):
            if r.kind != "simulate" or r.status != "done":
                return error_page(request, 409, f"run {r.id} is not a finished simulation")
        res_a, res_b = _load_result(db, ctx, ra), _load_result(db, ctx, rb)
        label_a = f"A (run {ra.id})"
        label_b = f"B (run {rb.id})"
        pair = [(label_a, res_a), (label_b, res_b)]
        names = [v for v in run_report.claim_variables()
                 if v in res_a.dataset and v in res_b.dataset]  # fmt: skip
        chart_list = run_report.trajectory_charts(pair, names, prefix="whatif")
        cal = run_report.downtime_calendar(pair, prefix="whatif")
        every = [*chart_list, cal]
        table = _compare_endpoints(res_a, res_b)
        audit.record(db, who, "view", "run", ra.id, f"what-if with run {rb.id}")
        db.commit()
        return _page(
            request, who, "whatif.html.j2", kind="What-if", title="What-if: two courses",
            active="whatif", options=options, a=a, b=b,
            pair={"a": {"id": ra.id, "label": label_a, "name": res_a.course_name},
                  "b": {"id": rb.id, "label": label_b, "name": res_b.course_name}},
            charts_list=[c for c in every if c is not None], table=table,
            sessions=[_session_words(res_a, ra), _session_words(res_b, rb)],
            **charts.context(every, library_url=_plotly()),
        )  # fmt: skip


def _session_words(result: Any, run: Run) -> str:
    with using_molecules(request_molecules(run.request)):  # the course may name user molecules
        course = result.course
    if course is None:
        return ""
    by_site: dict[str, list[Any]] = {}
    for s in course.sessions:
        by_site.setdefault(str(s.site), []).append(s)
    parts = []
    for site, rows in by_site.items():
        lengths = sorted({float(s.needle_length_mm) for s in rows})
        parts.append(f"{human(site)}: {len(rows)} session(s), "
                     f"{', '.join(f'{x:g}' for x in lengths)} mm")  # fmt: skip
    return "; ".join(parts)


_REDUCE_WORDS = {"sum": "total over sessions", "max": "worst session", "mean": "mean per session"}


def _readouts(result: Any) -> dict[tuple[str, str, str], Any]:
    """A simulation's end-point rows by (site, end point, read-out), the read-out relative to the
    course's last session (``30 d after the last session``, ``end of follow-up``) so that two
    courses with different schedules are compared at the same point of their course."""
    df = result.endpoints()
    ds = result.dataset
    last = float(ds["session_day"].max(skipna=True))
    horizon = float(ds["time"].max())
    times = sorted(result.default_times())
    names = by_name()
    out: dict[tuple[str, str, str], Any] = {}
    for _, r in df.iterrows():
        t = float(r["time_days"])
        if math.isnan(t):
            v = names.get(str(r["variable"]))
            when = _REDUCE_WORDS.get(v.reduce if v is not None else "", "over the course")
        else:
            asked = max([x for x in times if x <= t + 1e-6], default=t)
            when = ("end of follow-up" if asked >= horizon
                    else f"{format_day(asked - last)} d after the last session")  # fmt: skip
        out.setdefault((str(r["site"]), str(r["endpoint"]), when), r)
    return out


def _compare_endpoints(a: Any, b: Any) -> dict[str, Any]:
    """A and B's end points side by side, each read at the same point of its own course."""
    rows_a, rows_b = _readouts(a), _readouts(b)
    rows = []
    for key in [*rows_a, *(k for k in rows_b if k not in rows_a)]:
        ra, rb = rows_a.get(key), rows_b.get(key)
        r: Any = ra if ra is not None else rb
        days = [f"{n}: day {format_day(x['time_days'])}" for n, x in (("A", ra), ("B", rb))
                if x is not None and not math.isnan(float(x["time_days"]))]  # fmt: skip
        rows.append([human(key[0]), endpoint_label(key[1]),
                     page.cell(key[2], interval=", ".join(days)),
                     _value_iv(ra) if ra is not None else "—",
                     _value_iv(rb) if rb is not None else "—",
                     _units_words(r["units"], r["variable"])])  # fmt: skip
    return page.table(
        [page.column("Site"), page.column("End point"), page.column("When"),
         page.column("A", num=True), page.column("B", num=True), page.column("Units")],
        rows, label="End points of A and B",
        caption="Each course read at the same point of its own course (the day of each below "
        "it); a value with its 10–90% interval below it.",
    )  # fmt: skip


def _value_iv(r: Any) -> dict[str, Any]:
    iv = format_interval(r["low"], r["high"])
    return page.cell(format_number(r["value"]), interval=f"[{iv}]" if iv else "")


# -------------------------------------------------------------------------- absorption
def _absorb_context(values: Mapping[str, Any], errors: Mapping[str, list[str]],
                    products: list[str]) -> dict[str, Any]:  # fmt: skip
    return {
        "kind": "Absorption study",
        "title": "Absorption study",
        "active": "absorb",
        "values": {**flatten(presets.ABSORB_COURSE), "draws": 16, **values},
        "errors": dict(errors),
        "products": products,
    }


@router.get("/absorb")
def absorb_page(request: Request) -> Response:
    with _db(request) as db:
        who = _caller(request, db)
        return _page(request, who, "absorb.html.j2",
                     **_absorb_context({}, {}, _products(db, who.organisation_id)))  # fmt: skip


@router.post("/absorb")
async def absorb_start(request: Request) -> Response:
    pairs, form = await _form(request)
    ctx = app_context(request)
    with _db(request) as db:
        who = _caller(request, db, form.get("csrf_token"))
        draws = _number(form, "draws")
        fields = [(k, v) for k, v in pairs if k != "draws"]
        if not any(k == "sessions[0].occlusion" for k, _ in fields):
            fields.append(("sessions[0].occlusion", "false"))
        try:
            _refuse_emptied(fields, flatten(presets.ABSORB_COURSE))
            course = presets.absorb_course(nest(fields))
            course["name"] = _absorb_name(course)
            payload: dict[str, Any] = {"course": course}
            if draws is not None:
                payload["draws"] = draws
            prep = prepare("absorb", payload, db, who.organisation_id, ctx.settings)
        except (InputError, InputFileError) as exc:
            errors = {k.removeprefix("course."): v for k, v in field_errors(exc).items()}
            return _page(request, who, "absorb.html.j2",
                         **_absorb_context(dict(pairs), errors,
                                           _products(db, who.organisation_id)))  # fmt: skip
        out = await start_run(prep, who, db, ctx)
        return _see(f"/web/runs/{out.id}")


def _refuse_emptied(fields: Sequence[tuple[str, str]], preset: Mapping[str, Any]) -> None:
    """Refuse the form's fields left empty that the study's preset fills: the run would use the
    preset's value while the form showed none (``nest`` skips an empty field)."""
    problems = [
        InputError(k, MISSING, f"a value (the study needs it; the form started with {preset[k]})")
        for k, v in fields
        if k in preset and not v.strip()
    ]
    if problems:
        raise InputFileError(problems, source="absorption study")


def _absorb_name(course: Mapping[str, Any]) -> str:
    """The study's name from its settings (shown as the result page's title)."""
    try:
        s = course["sessions"][0]
        t = s["topical"]
        return (f"{human(t['product'])} {t['concentration_mg_ml']:g} mg/mL, "
                f"{s['needle_length_mm']:g} mm needles × {s['passes']} passes")  # fmt: skip
    except (KeyError, IndexError, TypeError, ValueError):
        return "Absorption study"


def _iv(row: Mapping[str, Any], col: str) -> dict[str, Any]:
    """The median over the draws with its 10–90% interval, then the value at the median
    parameters (reports/absorb.py banded_cell)."""
    return absorb_report.banded_cell(row, col, format_number)


def _absorb_page(request: Request, who: Principal, db: Session, run: Run) -> Response:
    s = run.summary or {}
    rows = [r for r in s.get("sessions", []) if isinstance(r, dict)]
    amounts = page.table(
        [page.column("Site"), page.column("Session", num=True), page.column("Product"),
         page.column("Dose applied", "ug/cm^2", num=True),
         page.column("Absorbed with channels", "ug/cm^2", num=True),
         page.column("Absorbed through intact skin", "ug/cm^2", num=True),
         page.column("Enhancement ratio", "× intact skin", num=True),
         page.column("Resolved channel model: absorbed", "ug/cm^2", num=True)],
        [[human(r.get("site")), str(r.get("session")), human(r.get("product")),
          format_number(r.get("dose_ug_cm2")), _iv(r, "absorbed_ug_cm2"), _iv(r, "intact_ug_cm2"),
          _iv(r, "enhancement_ratio"), format_number(r.get("resolved_absorbed_ug_cm2"))]
         for r in rows],
        label="Amounts", caption=absorb_report.BANDS,
    )  # fmt: skip
    layers = page.table(
        [page.column("Site"), page.column("Session", num=True),
         page.column("Epidermis", "ug/cm^2", num=True),
         page.column("Papillary dermis", "ug/cm^2", num=True),
         page.column("Reticular dermis", "ug/cm^2", num=True)],
        [[human(r.get("site")), str(r.get("session")), _iv(r, "absorbed_epidermis_ug_cm2"),
          _iv(r, "absorbed_papillary_dermis_ug_cm2"), _iv(r, "absorbed_reticular_dermis_ug_cm2")]
         for r in rows],
        label="Amount per layer",
    )  # fmt: skip
    settings = [
        ("Needle length", f"{format_number(rows[0].get('needle_length_mm'))} mm"),
        ("Puncture density", f"{format_number(rows[0].get('puncture_density_cm2'))} per cm²"),
        ("Channel depth", f"{format_number(rows[0].get('channel_depth_um'))} µm"),
        ("Film", f"{format_number(rows[0].get('volume_ul_cm2'))} µL/cm² for "
                 f"{format_number(rows[0].get('contact_hours'))} h"),
        ("Occlusion", yes_no(rows[0].get("occluded"))),
    ] if rows else []  # fmt: skip
    files = _run_files(db, run)
    figures = _stored_charts(db, app_context(request), run)
    maps = [c for c in figures if c.id.startswith(("chart-map-", "chart-curves-", "chart-layers-"))]
    amount_charts = [c for c in figures if c not in maps]
    pngs = [{"href": f"{_API}/runs/{run.id}/files/{n}", "name": n} for n in files
            if n.startswith("figures/") and n.endswith(".png")]  # fmt: skip
    return _page(request, who, "absorb_result.html.j2", kind="Absorption study",
                 title=str(s.get("course", "Absorption study")), active="absorb",
                 run={"id": run.id}, amounts=amounts, layers=layers, settings=page.kv(settings),
                 maps=maps, amount_charts=amount_charts, pngs=pngs, draws=s.get("draws"),
                 report=f"{_API}/runs/{run.id}/files/report.html" if "report.html" in files
                 else "", **charts.context(figures, library_url=_plotly()))  # fmt: skip


def _stored_charts(db: Session, ctx: Context, run: Run) -> list[charts.Chart]:
    """The charts a run stored as ``charts.json`` (none if it has no such file: older runs)."""
    data = _stored_file(db, ctx, run, "charts.json")
    return [] if data is None else charts.loads(data.decode("utf-8"))


# ------------------------------------------------------------------------------ trials
def _trial_context(values: Mapping[str, Any], errors: Mapping[str, list[str]]) -> dict[str, Any]:
    defaults = {
        "trial.name": "Roller 1.5 mm vs pen 1.0 mm",
        "trial.population": "acne-scar-adults",
        "trial.n_per_arm": 20,
        "trial.seed": 2026,
        "trial.time_points": 180,
        # 8 sets of >= 2 patients for the 20 per arm (the spec's default, 32, needs 64)
        "trial.parameter_draws": 8,
        "trial.endpoints": ["scar_depth:reduction", "erythema_days"],
        "arms[0].name": "roller 1.5 mm", "arms[0].device": "roller",
        "arms[0].needle_length_mm": 1.5, "arms[0].sessions": 4, "arms[0].interval_days": 28,
        "arms[1].name": "pen 1.0 mm", "arms[1].device": "pen",
        "arms[1].needle_length_mm": 1.0, "arms[1].sessions": 4, "arms[1].interval_days": 28,
    }  # fmt: skip
    return {
        "kind": "Trial builder",
        "title": "Virtual trial",
        "active": "trial",
        "values": {**defaults, **values},
        "errors": dict(errors),
        "populations": [(p, load_population(p).name) for p in list_populations()],
        "endpoint_choices": presets.ENDPOINT_CHOICES,
        "devices": list(presets.DEVICES),
    }


@router.get("/trials/new")
def trial_page(request: Request) -> Response:
    with _db(request) as db:
        who = _caller(request, db)
        return _page(request, who, "trial.html.j2", **_trial_context({}, {}))


_ARM_FIELD = re.compile(r"arms\[(\d+)\]\.protocol\.(?:sessions\[\d+\]\.)?(\w+)")


def _trial_table(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    data = nest(pairs)
    trial = data.get("trial") if isinstance(data.get("trial"), dict) else {}
    tp = trial.get("time_points")
    horizon = int(tp) + 30 if isinstance(tp, int | float) and not isinstance(tp, bool) else 365
    arms = [a for a in data.get("arms", []) if isinstance(a, dict)]
    endpoints = trial.get("endpoints") or []
    trial = {
        **trial,
        "design": "parallel",
        "time_points": [tp] if tp is not None else [],
        "endpoints": [{"name": e, "responder_above": 25.0} if e == "scar_depth:reduction" else e
                      for e in endpoints],
        "control": arms[0].get("name") if arms else None,
    }  # fmt: skip
    return {
        "trial": trial,
        "arms": [
            {"name": a.get("name"), "protocol": presets.arm_protocol(a, horizon)} for a in arms
        ],
    }


_ARM_INNER = re.compile(r"allowed: arm .*?: ((?:sessions\[\d+\]\.)?(\w+): got .*)", re.S)
#: the trial builder's inputs (an error of any other field is shown above the button)
_TRIAL_SLOTS = frozenset(
    [f"trial.{f}" for f in ("name", "population", "n_per_arm", "seed", "time_points",
                            "parameter_draws", "endpoints")]
    + [f"arms[{i}]{f}" for i in range(2)
       for f in ("", ".name", ".device", ".needle_length_mm", ".sessions", ".interval_days")]
)  # fmt: skip


def _trial_field(field: str, message: str = "") -> tuple[str, str]:
    """The builder's input showing a problem of the trial spec's ``field``, and its message (an
    arm's protocol problem is reported on the arm's own input, from the protocol's field on)."""
    field = field.removeprefix("trial.trial.").removeprefix("trial.")
    if field.startswith("time_points"):
        return "trial.time_points", message
    m = _ARM_FIELD.fullmatch(field)
    inner = _ARM_INNER.search(message) if re.fullmatch(r"arms\[\d+\]\.protocol", field) else None
    if m or inner:
        arm = m.group(1) if m else field[5 : field.index("]")]
        key = m.group(2) if m else inner.group(2) if inner else ""
        name = {"passes": "sessions", "day": "interval_days", "type": "device"}.get(key, key)
        if inner:
            message = inner.group(1)
        slot = f"arms[{arm}].{name}"
        return (slot if slot in _TRIAL_SLOTS else f"arms[{arm}]"), message
    if field.startswith("arms["):
        return field, message
    return "trial." + field, message


def _arm_errors(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Problems of the arms' sessions and interval, which the builder turns into a protocol (a
    value it cannot use would otherwise be replaced without a word)."""
    errors: dict[str, list[str]] = {}
    arms = nest(pairs).get("arms", [])
    for i, arm in enumerate(arms if isinstance(arms, list) else []):
        n, every = arm.get("sessions"), arm.get("interval_days")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 52:
            e = InputError(f"arms[{i}].sessions", n if n is not None else MISSING,
                           "an integer from 1 to 52")  # fmt: skip
            errors[e.field] = [str(e)]
        several = isinstance(n, int) and n > 1
        bad = not isinstance(every, int | float) or isinstance(every, bool) or not 1 <= every <= 365
        if bad and (several or every is not None):  # one session needs no interval
            e = InputError(f"arms[{i}].interval_days", every if every is not None else MISSING,
                           "a number of days from 1 to 365")  # fmt: skip
            errors[e.field] = [str(e)]
    return errors


@router.post("/trials/new")
async def trial_start(request: Request) -> Response:
    pairs, form = await _form(request)
    ctx = app_context(request)
    with _db(request) as db:
        who = _caller(request, db, form.get("csrf_token"))
        errors = _arm_errors(pairs)
        try:
            spec = _trial_table(pairs)
            prep = prepare("trial", {"trial": spec}, db, who.organisation_id, ctx.settings)
        except (InputError, InputFileError) as exc:
            found: dict[str, list[str]] = {}
            for k, msgs in field_errors(exc).items():
                for msg in msgs:
                    slot, text = _trial_field(k, msg)
                    found.setdefault(slot if slot in _TRIAL_SLOTS else "", []).append(text)
            for slot, msgs in found.items():
                errors.setdefault(slot, msgs)  # an arm's own check first
        if errors:
            values: dict[str, Any] = {k: v for k, v in pairs}
            values["trial.endpoints"] = [v for k, v in pairs if k == "trial.endpoints:list"]
            return _page(request, who, "trial.html.j2",
                         **_trial_context(values, errors))  # fmt: skip
        out = await start_run(prep, who, db, ctx)
        return _see(f"/web/runs/{out.id}")


_DRAW_COLUMNS = [
    page.column("Over parameter draws (80%)", num=True,
                note="where the mean (or difference) falls across the trial's parameter sets "
                "drawn from the posterior: 10th–90th percentile of the per-set values"),
    page.column("Parameter share", num=True,
                note="share of the variance due to parameter uncertainty, the rest is the "
                "patients' own spread"),
]  # fmt: skip
_DRAW_CAPTION = (
    " Every patient ran under one of the trial's parameter sets drawn from the posterior: "
    "'Over parameter draws' is how far the value moves with the uncertain parameters."
)


def _draw_cells(r: Mapping[str, Any]) -> list[Any]:
    """A row's parameter-uncertainty cells (trials with parameter draws)."""
    iv = format_interval(r.get("epistemic80_low"), r.get("epistemic80_high"))
    share = r.get("epistemic_fraction")
    ok = isinstance(share, int | float) and math.isfinite(share)
    return [iv or "—", format_percent(share) if ok else "—"]


def _trial_page(request: Request, who: Principal, db: Session, run: Run) -> Response:
    s = run.summary or {}
    drawn = bool(s.get("parameter_draws"))
    summary_rows = []
    for r in s.get("summary", []):
        units = _units_words(r.get("units"), r.get("endpoint"))
        ci = format_interval(r.get("ci95_low"), r.get("ci95_high"))
        resp = r.get("responder_rate")
        resp_text = "—"
        if resp is not None and not (isinstance(resp, float) and math.isnan(resp)):
            rci = format_interval(
                _pct(r.get("responder_ci95_low")), _pct(r.get("responder_ci95_high"))
            )
            resp_text = f"{format_percent(resp)}" + (f" [{rci} %]" if rci else "")
        summary_rows.append([endpoint_label(r.get("endpoint")), human(r.get("arm")),
                             _count(r.get("n")),
                             page.cell(format_number(r.get("mean")), interval=f"[{ci}]" if ci else ""),
                             format_number(r.get("median")), units,
                             _rule_words(r.get("responder_rule")), resp_text,
                             *(_draw_cells(r) if drawn else [])])  # fmt: skip
    summary = page.table(
        [page.column("End point"), page.column("Arm"), page.column("Patients", num=True),
         page.column("Mean", num=True), page.column("Median", num=True), page.column("Units"),
         page.column("Responder rule"), page.column("Responders (95% CI)"),
         *(_DRAW_COLUMNS if drawn else [])],
        summary_rows, label="Arms", caption="Below the mean: its 95% confidence interval."
        + (_DRAW_CAPTION if drawn else ""),
    )  # fmt: skip
    comp_rows = []
    for r in s.get("comparisons", []):
        ci = format_interval(r.get("ci95_low"), r.get("ci95_high"))
        comp_rows.append([endpoint_label(r.get("endpoint")),
                          f"{human(r.get('arm'))} vs {human(r.get('control'))}",
                          page.cell(format_number(r.get("difference")), interval=f"[{ci}]" if ci else ""),
                          _units_words(r.get("units"), r.get("endpoint")),
                          format_number(r.get("hedges_g")),
                          format_p(r.get("p_t")), format_p(r.get("p_rank")),
                          *(_draw_cells(r) if drawn else []),
                          *([trial_report.given_sets_cell(r)] if drawn else [])])  # fmt: skip
    comparisons = page.table(
        [page.column("End point"), page.column("Comparison"),
         page.column("Difference", num=True), page.column("Units"),
         page.column("Hedges' g", num=True), page.column("p (Welch t test)", num=True),
         page.column("p (rank test)", num=True), *(_DRAW_COLUMNS if drawn else []),
         *([trial_report.GIVEN_SETS_COLUMN] if drawn else [])],
        comp_rows, label="Comparisons", caption="Below the difference: its 95% confidence interval."
        + (_DRAW_CAPTION if drawn else ""),
    )  # fmt: skip
    files = _run_files(db, run)
    figures = _trial_charts(db, app_context(request), run) if "trial.nc" in files else []
    return _page(request, who, "trial_result.html.j2", kind="Virtual trial",
                 title=str(s.get("trial", "Trial")), active="trial", run={"id": run.id},
                 summary=summary, comparisons=comparisons,
                 facts=page.kv(_trial_facts(s, run.request)),
                 report=f"{_API}/runs/{run.id}/files/report.html" if "report.html" in files else "",
                 files=[{"href": f"{_API}/runs/{run.id}/files/{n}", "name": n}
                        for n in files if not n.startswith(".")],
                 charts_list=figures, **charts.context(figures, library_url=_plotly()))  # fmt: skip


_RULE = re.compile(r"(>=|<=|>|<)\s*([-+]?\d+(?:\.\d*)?)")
_RULE_WORDS = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}


def _rule_words(rule: Any) -> str:
    """A responder rule as one reads it: ``>= 25 %`` → ``≥ 25%``."""
    text = str(rule or "").strip()
    if not text:
        return "—"
    text = _RULE.sub(lambda m: f"{_RULE_WORDS[m.group(1)]} {m.group(2)}", text)
    return re.sub(r"(\d)\s+%", r"\1%", text)


def _trial_facts(s: Mapping[str, Any], request: Any) -> list[tuple[str, Any]]:
    """The design of a finished trial in words (the population and read-out from its request)."""
    spec: Any = request.get("trial") if isinstance(request, dict) else None
    trial: Any = spec.get("trial") if isinstance(spec, dict) else None
    trial = trial if isinstance(trial, dict) else {}
    population = trial.get("population")
    population = population.get("name") if isinstance(population, dict) else population
    days = [format_day(t) for t in trial.get("time_points", []) if isinstance(t, int | float)]
    facts: list[tuple[str, Any]] = [("Design", human(s.get("design", "")))]
    if isinstance(population, str):
        facts.append(("Population", population))
    facts += [("Patients per arm", s.get("n_per_arm")),
              ("Arms", ", ".join(s.get("arms", [])) + " (the first is the control)")]  # fmt: skip
    if days:
        facts.append(("Read out at", "day " + ", ".join(days)))
    if s.get("parameter_source"):
        facts.append(("Parameters", s["parameter_source"]))
    if s.get("parameter_draws_warning"):
        facts.append(("Note", s["parameter_draws_warning"]))
    return facts


def _trial_charts(db: Session, ctx: Context, run: Run) -> list[charts.Chart]:
    """One histogram per end point of the trial's patients (``trial.nc``), arms overlaid, with
    the responder threshold."""
    import xarray as xr

    data = _stored_file(db, ctx, run, "trial.nc")
    if data is None:
        return []
    out: list[charts.Chart] = []
    with tempfile.TemporaryDirectory(prefix="microneedling-web-") as tmp:
        path = Path(tmp) / "trial.nc"
        path.write_bytes(data)
        with xr.open_dataset(path) as ds:
            for j, ep in enumerate(str(e) for e in ds["endpoint"].values):
                units = _units_words(str(ds["endpoint_units"].values[j]), ep)
                rule = str(ds["responder_rule"].values[j]) if "responder_rule" in ds else ""
                m = _RULE.search(rule)
                groups = [(str(a), ds["value"].isel(endpoint=j).sel(arm=a).values)
                          for a in ds["arm"].values]  # fmt: skip
                out.append(charts.histogram_chart(
                    f"chart-trial-{j}", endpoint_label(ep), groups,
                    x_title=f"{endpoint_label(ep)} ({units})" if units else endpoint_label(ep),
                    threshold=float(m.group(2)) if m else None,
                    summary="Distribution over the virtual patients of each arm"
                    + (f"; dotted line: responder threshold ({_rule_words(rule)})." if m else "."),
                ))  # fmt: skip
    return out


def _count(x: Any) -> str:
    return str(int(x)) if isinstance(x, int | float) and math.isfinite(x) else "—"


def _pct(x: Any) -> Any:
    return None if x is None else float(x) * 100


# -------------------------------------------------------------------------- credibility
def _span(low: Any, high: Any) -> str:
    """A validated range as settings are written: ``6``, ``14–42``, ``0.25–1.5`` (not
    ``6.00–6.00``)."""
    try:
        lo, hi = f"{float(low):g}", f"{float(high):g}"
    except (TypeError, ValueError):
        return "—"
    return lo if lo == hi else f"{lo}–{hi}"


@router.get("/credibility")
def credibility(request: Request) -> Response:
    with _db(request) as db:
        who = _caller(request, db)
        vars_ = by_name()
        rows = []
        for name, d in sorted(load_domains().items()):
            v = vars_.get(name)
            cells = [v.label or v.long_name if v is not None else human(name), str(d.studies),
                     str(len(d.rows))]  # fmt: skip
            for axis in AXES:
                val = getattr(d, axis)
                if val is None:
                    cells.append("—")
                elif axis == "fitzpatrick":
                    cells.append(f"{roman(val[0])}–{roman(val[1])}")
                elif isinstance(val[0], str):
                    cells.append(", ".join(human(x) for x in val))
                else:
                    cells.append(_span(val[0], val[1]))
            rows.append(cells)
        table = page.table(
            [page.column("Output"), page.column("Studies", num=True),
             page.column("Validation rows", num=True), page.column("Needle length", "mm"),
             page.column("Devices"), page.column("Sites"), page.column("Fitzpatrick types"),
             page.column("Sessions"), page.column("Interval", "d"),
             page.column("Topical products")],
            rows, label="Validated settings",
            caption="The settings at which published data were compared with the model; "
            "'—': no validation row informs that setting (topical products: none applied).",
        )  # fmt: skip
        domains = load_domains()
        untested = sorted(
            {v.label or v.long_name for v in endpoint_variables() if v.name not in domains}
        )
        runs = _runs_of(db, who, kind="validate")
        return _page(request, who, "credibility.html.j2", kind="Credibility",
                     title="What the model is validated for", active="credibility", table=table,
                     untested=untested, runs=runs)  # fmt: skip


def _markdown_table(text: str) -> dict[str, Any] | None:
    """A Markdown pipe table (the delivery validation's) as a page table, else ``None``."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        return None
    split = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    head, body = split[0], [r for r in split[2:] if len(r) == len(split[0])]
    return page.table([page.column(h) for h in head], body, label="Delivery validation")


def _validate_page(request: Request, who: Principal, db: Session, run: Run) -> Response:
    """A finished validation run: the delivery table, or the credibility report's summary."""
    s = run.summary or {}
    files = _run_files(db, run)
    delivery = _markdown_table(str(s["delivery"])) if s.get("delivery") else None
    covered = s.get("n_covered")
    facts = [("Calibration", s.get("calibration", "—")),
             ("Reproduces the shipped calibration", yes_no(s.get("reproduces_shipped"))),
             ("Validation rows within tolerance",
              f"{s.get('n_pass', '—')} of {s.get('n_evaluated', '—')}"),
             ("Observations inside the 80% predictive interval",
              f"{covered} of {s.get('n_evaluated', '—')}" if covered is not None else "—")]  # fmt: skip
    return _page(request, who, "validate_result.html.j2", kind="Credibility",
                 title="Delivery validation" if delivery else "Credibility report",
                 active="credibility", run={"id": run.id}, delivery=delivery, facts=facts,
                 report=f"{_API}/runs/{run.id}/files/report.html" if "report.html" in files
                 else "", files=[{"href": f"{_API}/runs/{run.id}/files/{n}", "name": n}
                                 for n in files if not n.startswith(".")])  # fmt: skip


@router.post("/credibility")
async def credibility_start(request: Request) -> Response:
    _, form = await _form(request)
    ctx = app_context(request)
    with _db(request) as db:
        who = _caller(request, db, form.get("csrf_token"))
        payload = {"delivery": form.get("delivery") == "true"}
        prep = prepare("validate", payload, db, who.organisation_id, ctx.settings)
        out = await start_run(prep, who, db, ctx)
        return _see(f"/web/runs/{out.id}")


# ------------------------------------------------------------------------------ handout
@router.get("/runs/{run_id}/handout")
def handout(request: Request, run_id: int) -> Response:
    ctx = app_context(request)
    with _db(request) as db:
        who = _caller(request, db)
        run = owned(db, Run, run_id, who, "run")
        if run.kind != "simulate" or run.status != "done":
            return error_page(request, 409, f"run {run.id} is not a finished simulation")
        result = _load_result(db, ctx, run)
        audit.record(db, who, "view", "run", run.id, "handout")
        db.commit()
        return _page(request, who, "handout.html.j2", kind="Patient handout",
                     title=result.course_name or "Your treatment plan", active="patients",
                     run={"id": run.id}, **_handout(result, run))  # fmt: skip


def _site_values(ds: Any, name: str, site: str) -> np.ndarray:
    """A variable of the first patient at one site (the papillary dermis for a layered one)."""
    da = ds[name].sel(site=site)
    if "patient" in da.dims:
        da = da.isel(patient=0)
    if "layer" in da.dims:
        da = da.sel(layer=run_report.DEFAULT_LAYER)
    return np.asarray(da.values, dtype=float)


def _days(values: Sequence[float]) -> str:
    return ", ".join(format_day(d) for d in values)


def _handout(result: Any, run: Run) -> dict[str, Any]:
    """The handout's lines: the plan per site, the expected change of each clinical observable
    from today to the last read-out (with its 10–90% range), redness days per session, PIH."""
    with using_molecules(request_molecules(run.request)):  # the course may name user molecules
        course = result.course
    ds = result.dataset
    plan_lines = []
    if course is not None:
        by_site: dict[str, list[Any]] = {}
        for sess in sorted(course.sessions, key=lambda x: float(x.day)):
            by_site.setdefault(str(sess.site), []).append(sess)
        for site, rows in by_site.items():
            lengths = sorted({float(x.needle_length_mm) for x in rows})
            products = sorted({human(x.topical.product) for x in rows if x.topical is not None})
            extra = f", then {', '.join(products)} on the skin" if products else ""
            word = "session" if len(rows) == 1 else "sessions"
            plan_lines.append(
                f"{human(site).capitalize()}: {len(rows)} {word} (day {_days([x.day for x in rows])}), "
                f"needles {' or '.join(f'{v:g}' for v in lengths)} mm long{extra}."
            )
    expected = []
    claims = set(run_report.claim_variables())
    df = result.endpoints()
    df = df[df["variable"].isin(claims) & df["time_days"].notna()]
    last = df.sort_values("time_days").groupby(["site", "variable"], sort=False).tail(1)
    sites = {str(x): i for i, x in enumerate(ds["site"].values)} if "site" in ds.coords else {}
    last = last.assign(_s=last["site"].map(sites)).sort_values(["_s", "variable"], kind="stable")
    for _, r in last.iterrows():
        site, var = str(r["site"]), str(r["variable"])
        units = pretty_units(r["units"])  # a dimensionless number reads without a unit here
        unit = f" {units}" if units else ""
        now = _site_values(ds, var, site)[0] if var in ds and "time" in ds[var].dims else math.nan
        end, lo, hi = float(r["value"]), float(r["low"]), float(r["high"])
        v = by_name().get(var)
        label = v.plain_label if v is not None else human(var)  # the patient's words
        text = f"{human(site).capitalize()}, {label[:1].lower()}{label[1:]}: "
        if math.isfinite(now) and now != 0:
            change = (end - now) / abs(now)
            text += (f"from {format_number(now)}{unit} now to about {format_number(end)}{unit} by "
                     f"day {format_day(r['time_days'])} ({format_percent(abs(change))} "
                     f"{'less' if change < 0 else 'more'})")  # fmt: skip
        else:
            text += f"about {format_number(end)}{unit} by day {format_day(r['time_days'])}"
        if math.isfinite(lo) and math.isfinite(hi):
            text += f"; most likely between {format_number(lo)} and {format_number(hi)}{unit}"
        expected.append(text + ".")
    downtime = []
    if "erythema_days" in ds and "session_day" in ds and "site" in ds.coords:
        for site in [str(x) for x in ds["site"].values]:
            red = _site_values(ds, "erythema_days", site)
            days = _site_values(ds, "session_day", site)
            ok = np.isfinite(days) & np.isfinite(red)
            if not ok.any():
                continue
            values = red[ok]
            name = human(site).capitalize()
            if float(values.max() - values.min()) < 0.05:
                line = (f"{name}: visible redness for about {format_number(values.mean())} days "
                        f"after each session")  # fmt: skip
            else:
                each = ", ".join(format_number(v) for v in values)
                line = f"{name}: visible redness for about {each} days after sessions 1 to {len(values)}"
            if "downtime_days" in ds:
                down = _site_values(ds, "downtime_days", site)[ok]
                if np.isfinite(down).all() and float((down - values).max()) >= 0.25:
                    line += (f"; some sign (redness, swelling or bruising) for up to "
                             f"{format_number(down.max())} days")  # fmt: skip
            downtime.append(line + ".")
    pih = [f"{k}: {v}." for k, v in run_report.pih_summary(result, patient=True)]
    protection = course.patient.photoprotection if course is not None else "usual"
    return {"plan_lines": plan_lines, "expected": expected, "downtime": downtime, "pih": pih,
            "photoprotection": human(protection), "disclaimer_text": DISCLAIMER}  # fmt: skip


# --------------------------------------------------------------- editing and deleting records
def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def _patient_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """A stored patient file as the intake form's values: its fields by path, the choices of the
    form's lists as the model reads them (``fitzpatrick = "IV"`` is the list's 4)."""
    values = flatten(data)
    try:
        pf = PatientFile.from_dict(dict(data), source="patient")
    except (InputError, InputFileError):  # a stored file the model no longer reads: as stored
        return values
    values["patient.sex"] = _plain(pf.patient.sex)
    values["patient.fitzpatrick"] = _plain(pf.patient.fitzpatrick)
    for i, site in enumerate(pf.sites):
        values[f"sites[{i}].name"] = _plain(site.name)
        for j, concern in enumerate(site.concerns):
            c = f"sites[{i}].concerns[{j}]"
            values[f"{c}.type"] = _plain(concern.type)
            values[f"{c}.severity"] = _plain(concern.severity)
            for f in ("scar_type", "stage", "kind"):
                if f"{c}.{f}" in values:
                    values[f"{c}.{f}"] = _plain(getattr(concern.condition, f, values[f"{c}.{f}"]))
    return values


@router.get("/patients/{patient_id}/edit")
def edit_patient_page(request: Request, patient_id: int) -> Response:
    """The intake form prefilled with a stored patient's answers."""
    with _db(request) as db:
        who = _caller(request, db)
        rec = owned(db, PatientRecord, patient_id, who, "patient")
        values = _patient_values(rec.data if isinstance(rec.data, dict) else {})
        return _page(request, who, "intake.html.j2", **_intake_context(values, {}, rec))


@router.post("/patients/{patient_id}/edit")
async def edit_patient(request: Request, patient_id: int) -> Response:
    """Save a corrected intake (validated as a new patient's; refused forms keep what was typed)."""
    pairs, form = await _form(request)
    with _db(request) as db:
        who = _caller(request, db, form.get("csrf_token"))
        rec = owned(db, PatientRecord, patient_id, who, "patient")
        got = _intake(request, who, pairs, rec)
        if isinstance(got, Response):
            return got
        data, pf = got
        rec.data, rec.name = data, pf.name
        audit.record(db, who, "update", "patient", rec.id, "intake edited on the web")
        db.commit()
        return _see(f"/web/patients/{rec.id}?done=patient-saved")


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _file_count(db: Session, run_ids: Sequence[int]) -> int:
    """The stored files of these runs a user sees (internal blobs, named ``.…``, not counted)."""
    if not run_ids:
        return 0
    return int(
        db.scalar(
            sa.select(sa.func.count(FileRecord.id)).where(
                FileRecord.run_id.in_(run_ids), ~FileRecord.name.startswith(".")
            )
        )
        or 0
    )


def _confirm(request: Request, who: Principal, what: str, question: str, lines: list[str],
             action: str, button: str, back: str) -> Response:  # fmt: skip
    return _page(request, who, "confirm_delete.html.j2", kind=f"Delete {what}", title=question,
                 active="patients", question=question, lines=lines, action=action,
                 button=button, back=back)  # fmt: skip


def _patient_runs(db: Session, who: Principal, rec: PatientRecord) -> list[Run]:
    """The runs that go with a patient: their own and their courses' (as the API deletes)."""
    courses = sa.select(CourseRecord.id).where(CourseRecord.patient_id == rec.id)
    return list(
        db.scalars(
            scoped(Run, who).where(sa.or_(Run.patient_id == rec.id, Run.course_id.in_(courses)))
        ).all()
    )


@router.get("/patients/{patient_id}/delete")
def delete_patient_page(request: Request, patient_id: int) -> Response:
    """The confirmation step: the patient's courses, runs and files that will go."""
    with _db(request) as db:
        who = _caller(request, db)
        rec = owned(db, PatientRecord, patient_id, who, "patient")
        courses = db.scalars(
            scoped(CourseRecord, who).where(CourseRecord.patient_id == rec.id)
        ).all()
        runs = _patient_runs(db, who, rec)
        files = _file_count(db, [r.id for r in runs])
        lines = [
            f"the patient “{rec.name}” and their intake answers",
            _plural(len(courses), "course")
            + (": " + ", ".join(f"“{c.name}”" for c in courses) if courses else ""),
            _plural(len(runs), "run") + " (simulations, plans and studies of the patient or "
            "their courses)",
            _plural(files, "stored file") + " of those runs (results, reports, downloads)",
        ]
        return _confirm(request, who, "patient", f"Delete the patient “{rec.name}”?", lines,
                        f"/web/patients/{rec.id}/delete",
                        f"Delete the patient, {_plural(len(courses), 'course')} and "
                        f"{_plural(len(runs), 'run')}", f"/web/patients/{rec.id}")  # fmt: skip


@router.post("/patients/{patient_id}/delete")
async def delete_patient_now(request: Request, patient_id: int) -> Response:
    """Delete a patient with their courses, runs and files (the API's deletion and audit line)."""
    async with _posted(request) as (_, db, who):
        rec = owned(db, PatientRecord, patient_id, who, "patient")
        delete_patient(rec.id, who, db, app_context(request))
        return _see("/web/patients?done=patient-deleted")


@router.get("/courses/{course_id}/delete")
def delete_course_page(request: Request, course_id: int) -> Response:
    """The confirmation step: the course's runs and files that will go."""
    with _db(request) as db:
        who = _caller(request, db)
        rec = owned(db, CourseRecord, course_id, who, "course")
        runs = db.scalars(scoped(Run, who).where(Run.course_id == rec.id)).all()
        files = _file_count(db, [r.id for r in runs])
        lines = [
            f"the course “{rec.name}” (its sessions, device and topicals)",
            _plural(len(runs), "run") + " of the course (simulations and what-ifs)",
            _plural(files, "stored file") + " of those runs (results, reports, downloads)",
        ]
        return _confirm(request, who, "course", f"Delete the course “{rec.name}”?", lines,
                        f"/web/courses/{rec.id}/delete",
                        f"Delete the course and {_plural(len(runs), 'run')}",
                        f"/web/courses/{rec.id}")  # fmt: skip


@router.post("/courses/{course_id}/delete")
async def delete_course_now(request: Request, course_id: int) -> Response:
    """Delete a course with its runs and files; back to its patient (or the patients list)."""
    async with _posted(request) as (_, db, who):
        rec = owned(db, CourseRecord, course_id, who, "course")
        patient_id = rec.patient_id
        delete_course(rec.id, who, db, app_context(request))
        back = f"/web/patients/{patient_id}" if patient_id is not None else "/web/patients"
        return _see(f"{back}?done=course-deleted")


@router.get("/runs/{run_id}/delete")
def delete_run_page(request: Request, run_id: int) -> Response:
    """The confirmation step: the run and its files."""
    with _db(request) as db:
        who = _caller(request, db)
        run = owned(db, Run, run_id, who, "run")
        files = _file_count(db, [run.id])
        lines = [
            f"run {run.id} ({run.kind}, {run.status})"
            + ("; it is stopped first" if run.status not in TERMINAL else ""),
            _plural(files, "stored file") + " of the run (results, reports, downloads)",
        ]
        return _confirm(request, who, "run", f"Delete run {run.id}?", lines,
                        f"/web/runs/{run.id}/delete", "Delete the run", _run_home(run, run.id))  # fmt: skip


def _run_home(run: Run, back_to: int | None = None) -> str:
    """Where a run belongs: its course, else its patient, else the patients list (``back_to``:
    the run's own page, for a cancelled deletion)."""
    if back_to is not None:
        return f"/web/runs/{back_to}"
    if run.course_id is not None:
        return f"/web/courses/{run.course_id}"
    if run.patient_id is not None:
        return f"/web/patients/{run.patient_id}"
    return "/web/patients"


@router.post("/runs/{run_id}/delete")
async def delete_run_now(request: Request, run_id: int) -> Response:
    """Delete a run and its files (a running one is stopped); back to its course or patient."""
    async with _posted(request) as (_, db, who):
        run = owned(db, Run, run_id, who, "run")
        home = _run_home(run)
        delete_run(run.id, who, db, app_context(request))
        return _see(f"{home}?done=run-deleted")


# ------------------------------------------------------------------------------- account
def _when(t: Any) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t is not None else ""


def _account_context(
    request: Request,
    db: Session,
    who: Principal,
    *,
    form: str = "",
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, list[str]] | None = None,
    new_token: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The account page: the caller, their tokens and (administrators) the organisation's users
    (every query scoped to the caller's organisation; tokens to the caller)."""
    org = db.get(Organisation, who.organisation_id)
    tokens = db.scalars(
        scoped(ApiToken, who).where(ApiToken.user_id == who.user_id).order_by(ApiToken.id.desc())
    ).all()
    users = (
        [{"id": u.id, "email": u.email, "role": u.role, "active": u.active,
          "created": _when(u.created_at), "me": u.id == who.user_id}
         for u in db.scalars(scoped(User, who).order_by(User.id)).all()]
        if who.is_admin else None
    )  # fmt: skip
    events = _audit_lines(db, who) if who.is_admin else None
    return {
        "kind": "Account",
        "title": "Your account",
        "active": "account",
        "me": {
            "email": who.email,
            "role": who.role,
            "organisation": org.name if org is not None else "",
        },
        "tokens": [
            {
                "id": t.id,
                "name": t.name,
                "prefix": t.prefix,
                "created": _when(t.created_at),
                "last_used": _when(t.last_used_at),
                "revoked": _when(t.revoked_at),
            }
            for t in tokens
        ],
        "new_token": dict(new_token) if new_token else None,
        "base_url": str(request.base_url).rstrip("/"),
        "users": users,
        "events": events,
        "min_password": MIN_PASSWORD,
        "form": form,
        "values": {"role": "member", **(values or {})},
        "errors": dict(errors or {}),
    }


#: audit lines the account page shows an administrator (the API's ``GET /audit`` pages further)
AUDIT_LINES = 50


def _audit_lines(db: Session, who: Principal) -> list[dict[str, str]]:
    """The organisation's latest audit events (who by e-mail; a deleted user's id stays)."""
    rows = db.scalars(
        scoped(AuditEvent, who).order_by(AuditEvent.id.desc()).limit(AUDIT_LINES)
    ).all()
    ids = {e.user_id for e in rows if e.user_id is not None}
    found = scoped(User, who).with_only_columns(User.id, User.email).where(User.id.in_(ids))
    emails: dict[int, str] = {uid: mail for uid, mail in db.execute(found).all()} if ids else {}
    return [
        {"at": _when(e.at), "who": emails.get(e.user_id, "") if e.user_id is not None else "",
         "via": "token" if e.token_id is not None else "browser", "action": e.action,
         "record": f"{e.resource} {e.resource_id}" if e.resource_id else e.resource,
         "detail": e.detail, "ip": e.ip or ""}
        for e in rows
    ]  # fmt: skip


@router.get("/account")
def account(request: Request) -> Response:
    with _db(request) as db:
        who = _caller(request, db)
        return _page(request, who, "account.html.j2", **_account_context(request, db, who))


@router.post("/account/password")
async def account_password(request: Request) -> Response:
    """Change the caller's password (current once, new twice; argon2 in a worker thread); the
    caller's other browser sessions end."""
    _, form = await _form(request)
    ctx = app_context(request)

    def change() -> Response:
        with ctx.sessions() as db:
            who = _caller(request, db, form.get("csrf_token"))
            limit_sign_in(ctx, request, who.email)  # the current password is a sign-in attempt
            user = db.get(User, who.user_id)
            assert user is not None
            try:
                change_password(db, user, form.get("current_password", ""),
                                form.get("new_password", ""), form.get("repeat_password", ""))  # fmt: skip
            except InputError as exc:
                db.rollback()
                return _page(request, who, "account.html.j2", **_account_context(
                    request, db, who, form="password", errors=field_errors(exc)))  # fmt: skip
            end_sessions(db, user.id, keep=who.session_token)
            audit.record(db, who, "update", "user", user.id, "password changed on the web")
            db.commit()
            return _see("/web/account?done=password")

    return await anyio.to_thread.run_sync(change)


@router.post("/account/tokens")
async def account_new_token(request: Request) -> Response:
    """Make an API token (the API's): the answer shows it once. Not a redirect: the server keeps
    only the token's hash, so no later page could show it (the answer is not cached)."""
    async with _posted(request) as (form, db, who):
        name = form.get("name", "")
        try:
            made = create_token({"name": name}, who, db)
        except (InputError, InputFileError) as exc:
            db.rollback()
            return _page(request, who, "account.html.j2", **_account_context(
                request, db, who, form="token", values={"name": name},
                errors=field_errors(exc)))  # fmt: skip
        token = str(getattr(made, "token", ""))
        return _page(request, who, "account.html.j2", **_account_context(
            request, db, who, new_token={"name": made.name, "token": token}))  # fmt: skip


@router.post("/account/tokens/{token_id}/revoke")
async def account_revoke_token(request: Request, token_id: int) -> Response:
    """Revoke a token: the caller's own (an administrator: any of the organisation's; another
    user's or organisation's is a 404, as in the API)."""
    async with _posted(request) as (_, db, who):
        revoke_token(token_id, who, db)
        return _see("/web/account?done=revoked")


@router.post("/account/users")
async def account_add_user(request: Request) -> Response:
    """Add a user to the organisation (administrators; the API's checks; argon2 in a thread)."""
    _, form = await _form(request)
    ctx = app_context(request)
    payload = {k: form[k] for k in ("email", "password", "role") if form.get(k)}

    def add() -> Response:
        with ctx.sessions() as db:
            who = require_admin(_caller(request, db, form.get("csrf_token")))
            try:
                add_user(payload, who, db)
            except (InputError, InputFileError) as exc:
                db.rollback()
                return _page(request, who, "account.html.j2", **_account_context(
                    request, db, who, form="user",
                    values={k: payload[k] for k in ("email", "role") if k in payload},
                    errors=field_errors(exc)))  # fmt: skip
            return _see("/web/account?done=user-added")

    return await anyio.to_thread.run_sync(add)


@router.post("/account/users/{user_id}/deactivate")
async def account_deactivate_user(request: Request, user_id: int) -> Response:
    """Deactivate a user of the organisation (administrators; not oneself)."""
    _, form = await _form(request)
    with _db(request) as db:
        who = require_admin(_caller(request, db, form.get("csrf_token")))
        deactivate_user(user_id, who, db)
        return _see("/web/account?done=user-deactivated")

"""The routes of ``/api/v1`` (OpenAPI at ``/docs`` and ``/openapi.json``).

Every route that touches a record reaches it through :func:`~microneedling.service.auth.owned` or
:func:`~microneedling.service.auth.scoped` (the caller's organisation only; another organisation's
record answers 404, like one that does not exist). Bodies are validated by the package's models
(:mod:`microneedling.service.schemas`), errors are the JSON body of
:mod:`microneedling.service.errors`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from microneedling.about import __version__
from microneedling.course.model import Course
from microneedling.course.patient import PatientFile
from microneedling.errors import InputError, InputFileError, ParameterError
from microneedling.io import dumps_toml
from microneedling.parameters.molecules import (
    Molecule,
    MoleculeTableError,
    molecules_from_tables,
    shipped_molecules,
)
from microneedling.parameters.parameter_set import load_parameters, load_references
from microneedling.service import audit
from microneedling.service.accounts import (
    authenticate,
    change_password,
    create_user,
    end_sessions,
    issue_token,
    start_session,
)
from microneedling.service.auth import (
    Context,
    Principal,
    clear_session_cookie,
    client_ip,
    context,
    database,
    limit_sign_in,
    owned,
    principal,
    require_admin,
    scoped,
    set_session_cookie,
)
from microneedling.service.db import (
    ApiToken,
    AuditEvent,
    Base,
    BrowserSession,
    CourseRecord,
    FileRecord,
    MoleculeRecord,
    Organisation,
    PatientRecord,
    PopulationRecord,
    Run,
    User,
    now,
)
from microneedling.service.errors import ServiceError
from microneedling.service.jobs import TERMINAL, work_dir
from microneedling.service.runs import (
    DERIVED,
    RESULT_BLOB,
    Outputs,
    Prepared,
    derive,
    endpoint_records,
    jsonable,
    media_type,
    molecule_reader,
    organisation_scope,
    prepare,
    remove_work,
    result_of,
    simulate_inline,
)
from microneedling.service.schemas import (
    REQUESTS,
    AuditOut,
    CourseIn,
    CourseOut,
    ErrorOut,
    FileOut,
    Health,
    LoginRequest,
    MeOut,
    MoleculeIn,
    MoleculeOut,
    NewToken,
    NewTokenOut,
    NewUser,
    OrganisationOut,
    ParameterOut,
    PasswordChange,
    PasswordTokenRequest,
    PatientOut,
    PopulationIn,
    PopulationOut,
    RunOut,
    SourceOut,
    TokenOut,
    UserOut,
    body,
)
from microneedling.service.security import csrf_token, hash_token
from microneedling.studies.trial.population import Population, list_populations, load_population

__all__ = ["PREFIX", "router", "start_run", "submit_run"]

PREFIX = "/api/v1"

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "Refused by the package"),
        (401, "Not signed in"),
        (403, "Not allowed"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Request too large"),
        (422, "Bad input: each problem names the field, the value and what is allowed"),
        (429, "Too many requests"),
    )
}

router = APIRouter(prefix=PREFIX, responses=_ERRORS)

Db = Annotated[Session, Depends(database)]
Who = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(require_admin)]
Ctx = Annotated[Context, Depends(context)]
Payload = Annotated[dict[str, Any], Body()]
RecordId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]


# ---------------------------------------------------------------------------- helpers
def _user_out(u: User) -> UserOut:
    return UserOut(
        id=u.id,
        email=u.email,
        role=u.role,
        active=u.active,
        organisation_id=u.organisation_id,
        created_at=u.created_at,
    )


def _org_out(o: Organisation) -> OrganisationOut:
    return OrganisationOut(id=o.id, name=o.name, created_at=o.created_at)


def _token_out(t: ApiToken, token: str | None = None) -> TokenOut:
    data = TokenOut(
        id=t.id,
        name=t.name,
        prefix=t.prefix,
        created_at=t.created_at,
        last_used_at=t.last_used_at,
        revoked_at=t.revoked_at,
    )
    return data if token is None else NewTokenOut(**data.model_dump(), token=token)


def _patient_out(p: PatientRecord) -> PatientOut:
    return PatientOut(id=p.id, name=p.name, data=p.data, created_at=p.created_at)


def _course_out(
    c: CourseRecord, db: Session, molecules: Callable[[], dict[str, Molecule]] | None = None
) -> CourseOut:
    """A stored course with its warnings (validated again, inside its organisation's molecules;
    ``molecules``: a :func:`molecule_reader` shared by the courses of one request)."""
    try:
        with organisation_scope(db, c.organisation_id, c.data, molecules):  # its own molecules
            warnings = list(Course.from_dict(c.data, source="course").warnings)
    except (InputError, InputFileError):  # a stored course whose user molecule was deleted
        warnings = []
    return CourseOut(
        id=c.id,
        name=c.name,
        patient_id=c.patient_id,
        data=c.data,
        warnings=warnings,
        created_at=c.created_at,
    )


def _file_url(run_id: int, name: str) -> str:
    return f"{PREFIX}/runs/{run_id}/files/{name}"


def _run_out(run: Run, files: Sequence[FileRecord]) -> RunOut:
    files = [f for f in files if not f.name.startswith(".")]  # internal blobs are never listed
    have = {f.name for f in files}
    later = [n for n in DERIVED.get(run.kind, ()) if n not in have and run.status == "done"]
    return RunOut(
        id=run.id,
        kind=run.kind,
        status=run.status,  # type: ignore[arg-type]
        progress=run.progress,
        progress_text=run.progress_text,
        patient_id=run.patient_id,
        course_id=run.course_id,
        request=run.request,
        summary=run.summary,
        error=run.error,
        cancel_requested=run.cancel_requested,
        attempts=run.attempts,
        files=[
            FileOut(
                name=f.name,
                size=f.size,
                media_type=f.media_type,
                sha256=f.sha256,
                url=_file_url(run.id, f.name),
            )
            for f in sorted(files, key=lambda f: f.name)
        ],
        downloads=[_file_url(run.id, n) for n in later],
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def _files(db: Session, run: Run) -> list[FileRecord]:
    return list(db.scalars(sa.select(FileRecord).where(FileRecord.run_id == run.id)).all())


def _page(limit: int, offset: int) -> tuple[int, int]:
    return limit, offset


Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many records.")]
Offset = Annotated[int, Query(ge=0, le=2**31, description="Skip this many records.")]


def _delete_runs(db: Session, ctx: Context, runs: Sequence[Run]) -> None:
    """Delete runs, their file records and (when nothing else references them) their blobs and work
    directories. The caller commits first what must be gone before the blobs are removed."""
    if not runs:
        return
    ids = [r.id for r in runs]
    shas = set(db.scalars(sa.select(FileRecord.sha256).where(FileRecord.run_id.in_(ids))).all())
    db.execute(sa.delete(FileRecord).where(FileRecord.run_id.in_(ids)))
    db.execute(sa.delete(Run).where(Run.id.in_(ids)))
    db.flush()
    still = set(db.scalars(sa.select(FileRecord.sha256).where(FileRecord.sha256.in_(shas))).all())
    db.commit()
    ctx.store.remove(shas - still)
    for rid in ids:
        remove_work(work_dir(ctx.settings, rid))


# ------------------------------------------------------------------------------ health
@router.get("/health", response_model=Health, tags=["service"])
def health(ctx: Ctx) -> Health:
    """Liveness: the version and the kind of database (no sign-in needed)."""
    return Health(status="ok", version=__version__, database=ctx.settings.database_kind)


# -------------------------------------------------------------------------------- auth
@router.post(
    "/auth/login",
    response_model=MeOut,
    tags=["auth"],
    openapi_extra=body(LoginRequest),
)
def login(payload: Payload, request: Request, response: Response, db: Db, ctx: Ctx) -> MeOut:
    """Sign in a browser: sets the session cookie (HttpOnly, SameSite=Lax) and returns the CSRF
    token that every unsafe request of this session must send (``X-CSRF-Token``)."""
    req = LoginRequest.from_dict(payload, source="login")
    limit_sign_in(ctx, request, req.email)
    user = authenticate(db, req.email, req.password)
    if user is None:
        raise ServiceError(401, "wrong e-mail address or password")
    _, token = start_session(db, user, ctx.settings.session_hours)
    who = Principal(
        user.id, user.organisation_id, user.role, user.email, "session", ip=client_ip(request)
    )
    audit.record(db, who, "login", "session")
    org = db.get(Organisation, user.organisation_id)
    db.commit()
    csrf = set_session_cookie(response, token, ctx.settings)
    assert org is not None
    return MeOut(user=_user_out(user), organisation=_org_out(org), auth="session", csrf_token=csrf)


@router.post("/auth/logout", status_code=204, tags=["auth"])
def logout(request: Request, response: Response, who: Who, db: Db, ctx: Ctx) -> Response:
    """End the browser session (its cookie stops working at once)."""
    if who.via == "session" and who.session_token:
        db.execute(
            sa.delete(BrowserSession).where(
                BrowserSession.token_hash == hash_token(who.session_token)
            )
        )
    audit.record(db, who, "logout", "session")
    db.commit()
    out = Response(status_code=204)
    clear_session_cookie(out, ctx.settings)
    return out


@router.post(
    "/auth/token",
    response_model=NewTokenOut,
    status_code=201,
    tags=["auth"],
    openapi_extra=body(PasswordTokenRequest),
)
def token_with_password(payload: Payload, request: Request, db: Db, ctx: Ctx) -> TokenOut:
    """Create an API token from an e-mail address and password (for scripts and notebooks). The
    token is in the answer only: the server keeps its SHA-256."""
    req = PasswordTokenRequest.from_dict(payload, source="token request")
    limit_sign_in(ctx, request, req.email)
    user = authenticate(db, req.email, req.password)
    if user is None:
        raise ServiceError(401, "wrong e-mail address or password")
    record, token = issue_token(db, user, req.name)
    who = Principal(
        user.id,
        user.organisation_id,
        user.role,
        user.email,
        "token",
        token_id=record.id,
        ip=client_ip(request),
    )
    audit.record(db, who, "create", "token", record.id, req.name)
    db.commit()
    return _token_out(record, token)


@router.get("/me", response_model=MeOut, tags=["auth"])
def me(who: Who, db: Db, ctx: Ctx) -> MeOut:
    """The caller: user, organisation, how they signed in (and the session's CSRF token)."""
    user = db.get(User, who.user_id)
    org = db.get(Organisation, who.organisation_id)
    assert user is not None and org is not None
    csrf = (
        csrf_token(ctx.settings.secret_key, who.session_token)
        if who.via == "session" and who.session_token
        else None
    )
    return MeOut(
        user=_user_out(user),
        organisation=_org_out(org),
        auth=who.via,  # type: ignore[arg-type]
        csrf_token=csrf,
    )


@router.post(
    "/me/password",
    status_code=204,
    tags=["auth"],
    openapi_extra=body(PasswordChange),
)
def change_my_password(payload: Payload, request: Request, who: Who, db: Db, ctx: Ctx) -> Response:
    """Change the caller's password (the current one is checked as at sign-in and counts as a
    sign-in attempt for the rate limit). Every browser session of the user ends but the caller's
    own; API tokens stay valid (revoke them apart)."""
    req = PasswordChange.from_dict(payload, source="password change")
    limit_sign_in(ctx, request, who.email)
    user = db.get(User, who.user_id)
    assert user is not None
    change_password(db, user, req.current_password, req.new_password, req.new_password)
    end_sessions(db, user.id, keep=who.session_token)
    audit.record(db, who, "update", "user", user.id, "password changed")
    db.commit()
    return Response(status_code=204)


@router.get("/organisation", response_model=OrganisationOut, tags=["accounts"])
def organisation(who: Who, db: Db) -> OrganisationOut:
    """The caller's organisation."""
    org = db.get(Organisation, who.organisation_id)
    assert org is not None
    return _org_out(org)


# ------------------------------------------------------------------------------ tokens
@router.get("/tokens", response_model=list[TokenOut], tags=["accounts"])
def list_tokens(who: Who, db: Db) -> list[TokenOut]:
    """The caller's API tokens (never the tokens themselves; revoked ones included)."""
    rows = db.scalars(
        scoped(ApiToken, who).where(ApiToken.user_id == who.user_id).order_by(ApiToken.id)
    ).all()
    return [_token_out(t) for t in rows]


@router.post(
    "/tokens",
    response_model=NewTokenOut,
    status_code=201,
    tags=["accounts"],
    openapi_extra=body(NewToken),
)
def create_token(payload: Payload, who: Who, db: Db) -> TokenOut:
    """A new API token for the caller (shown once)."""
    req = NewToken.from_dict(payload, source="token request")
    user = db.get(User, who.user_id)
    assert user is not None
    record, token = issue_token(db, user, req.name)
    audit.record(db, who, "create", "token", record.id, req.name)
    db.commit()
    return _token_out(record, token)


@router.delete("/tokens/{token_id}", status_code=204, tags=["accounts"])
def revoke_token(token_id: RecordId, who: Who, db: Db) -> Response:
    """Revoke a token: the caller's own, or any of the organisation's for an administrator."""
    tok = owned(db, ApiToken, token_id, who, "token")
    if tok.user_id != who.user_id and not who.is_admin:
        raise ServiceError(404, f"token {token_id}: not found")
    if tok.revoked_at is None:
        tok.revoked_at = now()
        audit.record(db, who, "revoke", "token", tok.id)
        db.commit()
    return Response(status_code=204)


# ------------------------------------------------------------------------------- users
@router.get("/users", response_model=list[UserOut], tags=["accounts"])
def list_users(who: Admin, db: Db) -> list[UserOut]:
    """The organisation's users (administrators only)."""
    return [_user_out(u) for u in db.scalars(scoped(User, who).order_by(User.id)).all()]


@router.post(
    "/users",
    response_model=UserOut,
    status_code=201,
    tags=["accounts"],
    openapi_extra=body(NewUser),
)
def add_user(payload: Payload, who: Admin, db: Db) -> UserOut:
    """Add a user to the organisation (administrators only)."""
    req = NewUser.from_dict(payload, source="user")
    org = db.get(Organisation, who.organisation_id)
    assert org is not None
    user = create_user(db, org, req.email, req.password, req.role)
    audit.record(db, who, "create", "user", user.id, user.email)
    db.commit()
    return _user_out(user)


@router.delete("/users/{user_id}", status_code=204, tags=["accounts"])
def deactivate_user(user_id: RecordId, who: Admin, db: Db) -> Response:
    """Deactivate a user (administrators only): their sessions end and their tokens are revoked;
    the audit log keeps their name."""
    user = owned(db, User, user_id, who, "user")
    if user.id == who.user_id:
        raise InputError("user_id", user_id, "another user than yourself")
    user.active = False
    db.execute(sa.delete(BrowserSession).where(BrowserSession.user_id == user.id))
    db.execute(
        sa.update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    audit.record(db, who, "delete", "user", user.id, user.email)
    db.commit()
    return Response(status_code=204)


# ---------------------------------------------------------------------------- patients
@router.get("/patients", response_model=list[PatientOut], tags=["patients"])
def list_patients(who: Who, db: Db, limit: Limit = 100, offset: Offset = 0) -> list[PatientOut]:
    """The organisation's patients, newest first."""
    rows = db.scalars(
        scoped(PatientRecord, who).order_by(PatientRecord.id.desc()).limit(limit).offset(offset)
    ).all()
    return [_patient_out(p) for p in rows]


@router.post(
    "/patients",
    response_model=PatientOut,
    status_code=201,
    tags=["patients"],
    openapi_extra=body(PatientFile, "A patient file (the planner's format) as JSON."),
)
def add_patient(payload: Payload, who: Who, db: Db) -> PatientOut:
    """Store a patient (validated as a patient file)."""
    pf = PatientFile.from_dict(payload, source="patient")
    rec = PatientRecord(
        organisation_id=who.organisation_id, name=pf.name, data=payload, created_by=who.user_id
    )
    db.add(rec)
    db.flush()
    audit.record(db, who, "create", "patient", rec.id)
    db.commit()
    return _patient_out(rec)


@router.get("/patients/{patient_id}", response_model=PatientOut, tags=["patients"])
def get_patient(patient_id: RecordId, who: Who, db: Db) -> PatientOut:
    """One patient (the view is logged)."""
    rec = owned(db, PatientRecord, patient_id, who, "patient")
    audit.record(db, who, "view", "patient", rec.id)
    db.commit()
    return _patient_out(rec)


@router.delete("/patients/{patient_id}", status_code=204, tags=["patients"])
def delete_patient(patient_id: RecordId, who: Who, db: Db, ctx: Ctx) -> Response:
    """Delete a patient with their courses, runs and files (blobs included)."""
    rec = owned(db, PatientRecord, patient_id, who, "patient")
    courses = sa.select(CourseRecord.id).where(CourseRecord.patient_id == rec.id)
    runs = db.scalars(
        sa.select(Run).where(sa.or_(Run.patient_id == rec.id, Run.course_id.in_(courses)))
    ).all()
    audit.record(db, who, "delete", "patient", rec.id, f"{len(runs)} run(s)")
    _delete_runs(db, ctx, runs)
    db.execute(sa.delete(CourseRecord).where(CourseRecord.patient_id == patient_id))
    db.execute(sa.delete(PatientRecord).where(PatientRecord.id == patient_id))
    db.commit()
    return Response(status_code=204)


# ----------------------------------------------------------------------------- courses
@router.get("/courses", response_model=list[CourseOut], tags=["courses"])
def list_courses(
    who: Who,
    db: Db,
    patient_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[CourseOut]:
    """The organisation's courses (of one patient with ``patient_id``), newest first."""
    q = scoped(CourseRecord, who)
    if patient_id is not None:
        q = q.where(CourseRecord.patient_id == patient_id)
    rows = db.scalars(q.order_by(CourseRecord.id.desc()).limit(limit).offset(offset)).all()
    molecules = molecule_reader(db, who.organisation_id)  # one query for all, if any names one
    return [_course_out(c, db, molecules) for c in rows]


@router.post(
    "/courses",
    response_model=CourseOut,
    status_code=201,
    tags=["courses"],
    openapi_extra=body(CourseIn),
)
def add_course(payload: Payload, who: Who, db: Db) -> CourseOut:
    """Store a course (validated as a course file), optionally under a stored patient. Its
    topicals may name the organisation's own molecules (``POST /molecules``)."""
    req = CourseIn.from_dict(payload, source="course request")
    with organisation_scope(db, who.organisation_id, req.course):
        course = Course.from_dict(req.course, source="course")
    if req.patient_id is not None:
        p = db.get(PatientRecord, req.patient_id)
        if p is None or p.organisation_id != who.organisation_id:
            raise InputError(
                "patient_id", req.patient_id, "the id of a patient of your organisation"
            )
    rec = CourseRecord(
        organisation_id=who.organisation_id,
        patient_id=req.patient_id,
        name=course.name,
        data=dict(req.course),
        created_by=who.user_id,
    )
    db.add(rec)
    db.flush()
    audit.record(db, who, "create", "course", rec.id)
    db.commit()
    return _course_out(rec, db)


@router.get("/courses/{course_id}", response_model=CourseOut, tags=["courses"])
def get_course(course_id: RecordId, who: Who, db: Db) -> CourseOut:
    """One course."""
    rec = owned(db, CourseRecord, course_id, who, "course")
    audit.record(db, who, "view", "course", rec.id)
    db.commit()
    return _course_out(rec, db)


@router.delete("/courses/{course_id}", status_code=204, tags=["courses"])
def delete_course(course_id: RecordId, who: Who, db: Db, ctx: Ctx) -> Response:
    """Delete a course with its runs and their files."""
    rec = owned(db, CourseRecord, course_id, who, "course")
    runs = db.scalars(sa.select(Run).where(Run.course_id == rec.id)).all()
    audit.record(db, who, "delete", "course", rec.id, f"{len(runs)} run(s)")
    _delete_runs(db, ctx, runs)
    db.execute(sa.delete(CourseRecord).where(CourseRecord.id == course_id))
    db.commit()
    return Response(status_code=204)


# -------------------------------------------------------------------------------- runs
def _submit(
    prep: Prepared, who: Principal, db: Session, ctx: Context, response: Response
) -> RunOut:
    run = Run(
        organisation_id=who.organisation_id,
        kind=prep.kind,
        status="queued",
        patient_id=prep.patient_id,
        course_id=prep.course_id,
        request=prep.request,
        progress=0.0,
        progress_text="queued",
        cancel_requested=False,
        attempts=0,
        created_by=who.user_id,
    )
    if prep.inline:
        outputs = simulate_inline(prep.request)
        response.status_code = 201
        return _insert_done(db, ctx, who, run, outputs)
    else:
        db.add(run)
        db.flush()
        audit.record(db, who, "run", prep.kind, run.id)
        db.commit()
        if ctx.jobs is not None:
            ctx.jobs.notify()
        response.status_code = 202
    db.refresh(run)
    return _run_out(run, _files(db, run))


def submit_run(prep: Prepared, who: Principal, db: Session, ctx: Context) -> RunOut:
    """Store and start a run validated by :func:`~microneedling.service.runs.prepare`, in the
    calling thread: an inline simulation is finished in this call, every other run is queued.
    From a route, use :func:`start_run` (off the event loop, within the inline limit)."""
    return _submit(prep, who, db, ctx, Response())


async def start_run(
    prep: Prepared | Callable[[], Prepared],
    who: Principal,
    db: Session,
    ctx: Context,
    response: Response | None = None,
    *,
    kind: str | None = None,
) -> RunOut:
    """Store and start a run from a route (the API's run routes and the web pages): in a worker
    thread, so that an inline simulation does not stall the other requests of the process, and for
    a simulate within the process's ``inline_threads`` (``Context.simulate_limiter``: the
    request waits its turn on the event loop; none is refused). An inline simulation is finished
    in this call (``response.status_code`` 201), every other run is queued (202).

    ``prep``: a request validated by :func:`~microneedling.service.runs.prepare`, or a function
    that validates it, called in the same worker thread (validation stays off the event loop
    too, at no extra thread hop); then ``kind`` names the run kind."""
    if isinstance(prep, Prepared):
        kind = prep.kind
    if kind is None:
        raise TypeError("start_run: kind is required when prep is a function")
    out = response if response is not None else Response()

    def work() -> RunOut:
        prepared = prep if isinstance(prep, Prepared) else prep()
        return _submit(prepared, who, db, ctx, out)

    limiter = ctx.simulate_limiter if kind == "simulate" else None
    return await anyio.to_thread.run_sync(work, limiter=limiter)


_INSERT_RUN = sa.insert(Run).returning(Run.id)
_INSERT_FILE = sa.insert(FileRecord)
_INSERT_EVENT = sa.insert(AuditEvent)


def _insert_done(db: Session, ctx: Context, who: Principal, run: Run, outputs: Outputs) -> RunOut:
    """Store a run finished inline (the hot path of the inline simulate): its files in the file
    store first, then the run, its files' records and the audit event in Core statements on the
    session's connection, and one commit. The ORM's unit of work cost about 1 ms more, and the
    same statements through ``Session.execute`` 0.4 ms more (its bulk-insert path).

    PostgreSQL: the three INSERTs are one statement (:func:`_insert_done_statement`), one round
    trip instead of three. SQLite (no INSERT inside a WITH) runs them one by one, in process. A file
    stored before a failed INSERT stays in the content-addressed store unreferenced, as one whose
    run is deleted does."""
    t = now()
    run.status, run.progress, run.progress_text = "done", 1.0, "done"
    run.worker = ctx.jobs.worker_id if ctx.jobs is not None else None  # the process that ran it
    run.created_at = run.started_at = run.finished_at = t
    run.summary = outputs.summary
    files = []
    for name, content in outputs.files.items():
        put = ctx.store.put_bytes if isinstance(content, bytes) else ctx.store.put_file
        sha, size = put(content)  # type: ignore[arg-type]
        files.append(
            FileRecord(
                organisation_id=run.organisation_id,
                name=name,
                sha256=sha,
                size=size,
                media_type=media_type(name),
                created_at=t,
            )
        )
    values = {c.key: getattr(run, c.key) for c in Run.__table__.columns if c.key != "id"}
    rows = [
        {c.key: getattr(f, c.key) for c in FileRecord.__table__.columns if c.key not in _SET_BY_RUN}
        for f in files
    ]
    event = _run_event(who, run.kind, t)
    conn = db.connection()
    if conn.dialect.name == "postgresql":
        run.id = conn.execute(_insert_done_statement(values, rows, event)).scalar_one()
    else:
        run.id = conn.execute(_INSERT_RUN, values).scalar_one()
        if rows:
            conn.execute(_INSERT_FILE, [{**r, "run_id": run.id} for r in rows])
        conn.execute(_INSERT_EVENT, {**event, "resource_id": str(run.id)})
    db.commit()
    for f in files:
        f.run_id = run.id
    return _run_out(run, files)


_SET_BY_RUN = frozenset({"id", "run_id"})


def _run_event(who: Principal, kind: str, at: dt.datetime) -> dict[str, Any]:
    """The audit event of a run stored inline, but its ``resource_id`` (the run's id)."""
    return {
        "organisation_id": who.organisation_id,
        "user_id": who.user_id,
        "token_id": who.token_id,
        "action": "run",
        "resource": kind,
        "detail": "",
        "ip": who.ip,
        "at": at,
    }


def _insert_done_statement(
    run: Mapping[str, Any], files: Sequence[Mapping[str, Any]], event: Mapping[str, Any]
) -> sa.Select[Any]:
    """One PostgreSQL statement that inserts a run, its files' records and its audit event and
    returns the run's id: data-modifying WITH queries, the files and the event reading the new id
    from the run's (PostgreSQL checks the files' foreign key at the end of the statement, so they
    may reference a run inserted beside them). Every value is a bound parameter: the compiled form
    is cached per number of files."""
    new_run = sa.insert(Run).values(dict(run)).returning(Run.id).cte("new_run")

    def insert(model: type[Base], values: Mapping[str, Any], tail: Any, key: str, name: str) -> Any:
        cols = model.__table__.columns
        picked = [sa.literal(v, cols[k].type) for k, v in values.items()]
        chosen = sa.select(*picked, tail)
        return sa.insert(model).from_select([*values, key], chosen).cte(name)

    ctes = [
        insert(FileRecord, f, new_run.c.id, "run_id", f"new_file_{i}") for i, f in enumerate(files)
    ]
    as_text = sa.cast(new_run.c.id, sa.String)
    ctes.append(insert(AuditEvent, event, as_text, "resource_id", "new_event"))
    return sa.select(new_run.c.id).add_cte(*ctes)


def _run_route(kind: str) -> None:
    model = REQUESTS[kind]

    async def submit(payload: Payload, response: Response, who: Who, db: Db, ctx: Ctx) -> RunOut:
        # A simulate runs inline on at most ``inline_threads`` threads of this process (default
        # 1): more threads only contend for the GIL (measured with 32 clients on 2 workers: p99
        # 1.6 -> 0.5 s on SQLite); the other requests wait on the event loop. Other kinds only
        # queue a job.
        def prepared() -> Prepared:
            return prepare(kind, payload, db, who.organisation_id, ctx.settings)

        return await start_run(prepared, who, db, ctx, response, kind=kind)

    submit.__name__ = f"run_{kind}"
    submit.__doc__ = model.__doc__
    router.add_api_route(
        f"/runs/{kind}",
        submit,
        methods=["POST"],
        response_model=RunOut,
        status_code=202,
        tags=["runs"],
        summary=f"Run {kind}",
        responses={
            201: {"model": RunOut, "description": "Done (answered inline)"},
            202: {"model": RunOut, "description": "Queued (a background job)"},
        },
        openapi_extra=body(model),
    )


for _kind in REQUESTS:
    _run_route(_kind)


RunStatus = Literal["queued", "running", "done", "failed", "cancelled"]
RunKind = Literal["simulate", "plan", "absorb", "trial", "sensitivity", "validate"]


@router.get("/runs", response_model=list[RunOut], tags=["runs"])
def list_runs(
    who: Who,
    db: Db,
    kind: RunKind | None = None,
    status: RunStatus | None = None,
    patient_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    course_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[RunOut]:
    """The organisation's runs, newest first, optionally filtered."""
    q = scoped(Run, who)
    for col, val in (
        (Run.kind, kind),
        (Run.status, status),
        (Run.patient_id, patient_id),
        (Run.course_id, course_id),
    ):
        if val is not None:
            q = q.where(col == val)
    runs = db.scalars(q.order_by(Run.id.desc()).limit(limit).offset(offset)).all()
    files: dict[int, list[FileRecord]] = {r.id: [] for r in runs}
    if runs:
        for f in db.scalars(sa.select(FileRecord).where(FileRecord.run_id.in_(files))).all():
            files[f.run_id].append(f)
    return [_run_out(r, files[r.id]) for r in runs]


@router.get("/runs/{run_id}", response_model=RunOut, tags=["runs"])
def get_run(run_id: RecordId, who: Who, db: Db) -> RunOut:
    """A run: status, progress, summary, error and files (poll this, or follow ``/events``)."""
    run = owned(db, Run, run_id, who, "run")
    return _run_out(run, _files(db, run))


@router.post("/runs/{run_id}/cancel", response_model=RunOut, status_code=202, tags=["runs"])
def cancel_run(run_id: RecordId, who: Who, db: Db) -> RunOut:
    """Cancel a queued or running run (a running one stops at its next chunk)."""
    run = owned(db, Run, run_id, who, "run")
    if run.status in TERMINAL:
        raise ServiceError(
            409, f"run {run_id} is {run.status}; only a queued or running run can be cancelled"
        )
    db.execute(
        sa.update(Run)
        .where(Run.id == run.id, Run.status == "queued")
        .values(status="cancelled", progress_text="cancelled", finished_at=now())
    )
    run.cancel_requested = True
    audit.record(db, who, "cancel", "run", run.id)
    db.commit()
    db.refresh(run)
    return _run_out(run, _files(db, run))


@router.delete("/runs/{run_id}", status_code=204, tags=["runs"])
def delete_run(run_id: RecordId, who: Who, db: Db, ctx: Ctx) -> Response:
    """Delete a run and its files (a running one is stopped)."""
    run = owned(db, Run, run_id, who, "run")
    audit.record(db, who, "delete", "run", run.id)
    _delete_runs(db, ctx, [run])
    return Response(status_code=204)


def _result_blob(db: Session, ctx: Context, run: Run) -> bytes:
    rec = db.scalar(
        sa.select(FileRecord).where(FileRecord.run_id == run.id, FileRecord.name == RESULT_BLOB)
    )
    if rec is None:  # pragma: no cover - every finished simulation stores its result
        raise ServiceError(409, f"run {run.id} has no stored result")
    return ctx.store.read_bytes(rec.sha256)


def _finished(run: Run) -> None:
    if run.status != "done":
        raise ServiceError(409, f"run {run.id} is {run.status}; its results exist once it is done")


@router.get("/runs/{run_id}/endpoints", response_model=list[dict[str, Any]], tags=["runs"])
def run_endpoints(run_id: RecordId, who: Who, db: Db, ctx: Ctx) -> list[dict[str, Any]]:
    """End points of a finished simulation as JSON rows (value, 10–90% interval, units), the same
    table as ``endpoints.csv`` and the CLI."""
    run = owned(db, Run, run_id, who, "run")
    if run.kind != "simulate":
        raise ServiceError(404, f"run {run_id} is a {run.kind} run; its numbers are in 'summary'")
    _finished(run)
    audit.record(db, who, "view", "run", run.id, "endpoints")
    if run.endpoints is None:
        run.endpoints = endpoint_records(result_of(_result_blob(db, ctx, run)))
    db.commit()
    return list(run.endpoints or [])


_SAFE_HEADERS = {
    # a downloaded report is shown in a sandbox: its scripts cannot reach this site or its cookies
    "Content-Security-Policy": "sandbox allow-scripts allow-popups; default-src 'none'; "
    "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


@router.get(
    "/runs/{run_id}/files/{name:path}",
    tags=["runs"],
    response_class=Response,
    responses={200: {"description": "The file", "content": {"application/octet-stream": {}}}},
)
def download(
    run_id: RecordId,
    name: Annotated[str, PathParam(min_length=1, max_length=500)],
    who: Who,
    db: Db,
    ctx: Ctx,
) -> Response:
    """A file of a run (NetCDF, CSV, HTML report, figures, TOML). For a simulation, the CSV and
    the HTML report are made from its stored result on first download, then kept."""
    run = owned(db, Run, run_id, who, "run")
    rec = db.scalar(
        sa.select(FileRecord).where(FileRecord.run_id == run.id, FileRecord.name == name)
    )
    if name.startswith("."):
        rec = None  # internal blobs are never served
    elif rec is None and name in DERIVED.get(run.kind, ()):
        _finished(run)
        data = derive(run.kind, name, _result_blob(db, ctx, run), run.request)
        sha, size = ctx.store.put_bytes(data)
        rec = FileRecord(
            organisation_id=run.organisation_id,
            run_id=run.id,
            name=name,
            sha256=sha,
            size=size,
            media_type=media_type(name),
        )
        db.add(rec)
        try:
            db.commit()
        except IntegrityError:  # made at the same time by another request: keep theirs
            db.rollback()
    if rec is None:
        raise ServiceError(404, f"run {run_id} has no file {name!r}")
    audit.record(db, who, "download", "run", run.id, name)
    db.commit()
    data = ctx.store.read_bytes(rec.sha256)
    filename = Path(name).name.replace('"', "")
    headers = {"Content-Disposition": f'inline; filename="{filename}"', **_SAFE_HEADERS}
    return Response(data, media_type=rec.media_type, headers=headers)


@router.get(
    "/runs/{run_id}/events",
    tags=["runs"],
    response_class=StreamingResponse,
    responses={200: {"description": "Server-sent events", "content": {"text/event-stream": {}}}},
)
async def run_events(
    run_id: RecordId,
    request: Request,
    who: Who,
    ctx: Ctx,
    timeout: Annotated[float, Query(gt=0, le=3600, description="Stop after this many s.")] = 600,
) -> StreamingResponse:
    """Progress as server-sent events: ``progress`` events (status, fraction, text) whenever they
    change, then one ``end`` event when the run is done, failed or cancelled (or at ``timeout``)."""

    def state() -> dict[str, Any] | None:
        with ctx.sessions() as db:
            run = db.get(Run, run_id)
            if run is None or run.organisation_id != who.organisation_id:
                return None
            return {
                "id": run.id,
                "status": run.status,
                "progress": run.progress,
                "text": run.progress_text,
            }

    first = await anyio.to_thread.run_sync(state)
    if first is None:
        raise ServiceError(404, f"run {run_id}: not found")

    async def stream() -> AsyncIterator[str]:
        last: dict[str, Any] | None = None
        end = time.monotonic() + timeout
        current: dict[str, Any] | None = first
        while True:
            if current is None:
                yield f"event: end\ndata: {json.dumps({'id': run_id, 'status': 'deleted'})}\n\n"
                return
            if current != last:
                yield f"event: progress\ndata: {json.dumps(current)}\n\n"
                last = current
            if current["status"] in TERMINAL or time.monotonic() > end:
                yield f"event: end\ndata: {json.dumps(current)}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(ctx.settings.poll_s)
            current = await anyio.to_thread.run_sync(state)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


# ------------------------------------------------------------------- reference data
@router.get("/parameters", response_model=list[ParameterOut], tags=["reference"])
def parameters(
    who: Who, group: Annotated[str | None, Query(max_length=100)] = None
) -> list[ParameterOut]:
    """The model's parameters with value, units, 90% interval, kind and sources (read-only)."""
    ps = load_parameters()
    names = ps.names(group)
    if group is not None and not names:
        groups = sorted({n.split(".", 1)[0] for n in ps.names()})
        raise InputError("group", group, ", ".join(groups))
    records = {r["name"]: r for r in ps.to_records()}
    return [ParameterOut(**jsonable(records[n])) for n in names]


@router.get("/parameters/{name}", response_model=ParameterOut, tags=["reference"])
def parameter(name: Annotated[str, PathParam(max_length=200)], who: Who) -> ParameterOut:
    """One parameter (e.g. ``healing.mu_I``)."""
    ps = load_parameters()
    records = {r["name"]: r for r in ps.to_records()}
    if name not in records:
        raise ServiceError(404, f"parameter {name!r}: not found")
    return ParameterOut(**jsonable(records[name]))


@router.get("/sources", response_model=list[SourceOut], tags=["reference"])
def sources(who: Who) -> list[SourceOut]:
    """The bibliography: every reference a parameter, a molecule or a rule cites."""
    return [
        SourceOut(key=r.key, citation=r.citation, url=r.url or None, note=r.note or None)
        for r in load_references().values()
    ]


@router.get("/sources/{key}", response_model=SourceOut, tags=["reference"])
def source(key: Annotated[str, PathParam(max_length=200)], who: Who) -> SourceOut:
    """One reference."""
    refs = load_references()
    if key not in refs:
        raise ServiceError(404, f"source {key!r}: not found")
    r = refs[key]
    return SourceOut(key=r.key, citation=r.citation, url=r.url or None, note=r.note or None)


def _molecule_out(m: Molecule, rec: MoleculeRecord | None = None) -> MoleculeOut:
    return MoleculeOut(
        key=m.key,
        label=m.label,
        mw_g_per_mol=m.mw_g_per_mol,
        log_kow=None if m.log_kow != m.log_kow else m.log_kow,
        d_aq_m2_s=m.d_aq,
        charge=m.charge,
        sources=list(m.sources),
        shipped=rec is None,
        id=None if rec is None else rec.id,
        data=None if rec is None else rec.data,
    )


def _user_molecule(key: str, table: dict[str, Any]) -> Molecule:
    """Validate one molecule table as the library's reader does (a user table may cite free
    text); a refusal names the field inside the table (``molecule.mw.value``), its value and what
    is allowed, in the library reader's words."""
    try:
        dumps_toml({key: table})  # a run writes it to molecules.toml
    except (TypeError, ValueError) as exc:
        raise InputError("molecule", jsonable(table), f"TOML-compatible values ({exc})") from None
    try:
        return molecules_from_tables({key: table}, source="molecule")[key]
    except MoleculeTableError as exc:
        field = f"molecule.{exc.field}" if exc.field else "molecule"
        raise InputError(field, jsonable(exc.value), exc.allowed) from None
    except ParameterError as exc:  # a shipped identifier
        raise InputError("key", key, f"a new identifier ({exc})") from None


@router.get("/molecules", response_model=list[MoleculeOut], tags=["reference"])
def molecules(who: Who, db: Db) -> list[MoleculeOut]:
    """The shipped molecule library and the organisation's own molecules."""
    out = [_molecule_out(m) for m in shipped_molecules().values()]
    for rec in db.scalars(scoped(MoleculeRecord, who).order_by(MoleculeRecord.id)).all():
        out.append(_molecule_out(_user_molecule(rec.key, rec.data), rec))
    return out


@router.post(
    "/molecules",
    response_model=MoleculeOut,
    status_code=201,
    tags=["reference"],
    openapi_extra=body(MoleculeIn),
)
def add_molecule(payload: Payload, who: Who, db: Db) -> MoleculeOut:
    """Add a molecule to the organisation's library (validated like the library's file; a new
    identifier). The organisation's courses and runs may then name it as a topical product; a run
    keeps the tables of the molecules it names, so deleting one later changes no run."""
    req = MoleculeIn.from_dict(payload, source="molecule request")
    mol = _user_molecule(req.key, dict(req.molecule))
    exists = db.scalar(scoped(MoleculeRecord, who).where(MoleculeRecord.key == req.key))
    if exists is not None:
        raise InputError("key", req.key, "an identifier your organisation has not used yet")
    rec = MoleculeRecord(
        organisation_id=who.organisation_id,
        key=req.key,
        data=dict(req.molecule),
        created_by=who.user_id,
    )
    db.add(rec)
    db.flush()
    audit.record(db, who, "create", "molecule", rec.id, req.key)
    db.commit()
    return _molecule_out(mol, rec)


@router.get("/molecules/{molecule_id}", response_model=MoleculeOut, tags=["reference"])
def get_molecule(molecule_id: RecordId, who: Who, db: Db) -> MoleculeOut:
    """One of the organisation's molecules (by ``id``), with its table as it was added."""
    rec = owned(db, MoleculeRecord, molecule_id, who, "molecule")
    return _molecule_out(_user_molecule(rec.key, rec.data), rec)


@router.delete("/molecules/{molecule_id}", status_code=204, tags=["reference"])
def delete_molecule(molecule_id: RecordId, who: Who, db: Db) -> Response:
    """Remove one of the organisation's molecules."""
    rec = owned(db, MoleculeRecord, molecule_id, who, "molecule")
    audit.record(db, who, "delete", "molecule", rec.id, rec.key)
    db.delete(rec)
    db.commit()
    return Response(status_code=204)


def _population_out(
    pop: Population, key: str, rec: PopulationRecord | None = None
) -> PopulationOut:
    return PopulationOut(
        key=key,
        name=pop.name,
        description=pop.description,
        shipped=rec is None,
        id=None if rec is None else rec.id,
        data=jsonable(dict(pop.raw)),
    )


@router.get("/populations", response_model=list[PopulationOut], tags=["reference"])
def populations(who: Who, db: Db) -> list[PopulationOut]:
    """The population presets and the organisation's own populations (usable by name in a trial)."""
    out = [_population_out(load_population(n), n) for n in list_populations()]
    for rec in db.scalars(scoped(PopulationRecord, who).order_by(PopulationRecord.id)).all():
        out.append(_population_out(Population.from_dict(rec.data), rec.name, rec))
    return out


@router.post(
    "/populations",
    response_model=PopulationOut,
    status_code=201,
    tags=["reference"],
    openapi_extra=body(PopulationIn),
)
def add_population(payload: Payload, who: Who, db: Db) -> PopulationOut:
    """Add a population (validated like a population file) under its ``name``."""
    req = PopulationIn.from_dict(payload, source="population request")
    pop = Population.from_dict(dict(req.population))
    if pop.name in list_populations():
        raise InputError("population.name", pop.name, "a name that is not a preset's")
    exists = db.scalar(scoped(PopulationRecord, who).where(PopulationRecord.name == pop.name))
    if exists is not None:
        raise InputError("population.name", pop.name, "a name your organisation has not used yet")
    rec = PopulationRecord(
        organisation_id=who.organisation_id,
        name=pop.name,
        data=dict(req.population),
        created_by=who.user_id,
    )
    db.add(rec)
    db.flush()
    audit.record(db, who, "create", "population", rec.id, pop.name)
    db.commit()
    return _population_out(pop, pop.name, rec)


@router.get("/populations/{population_id}", response_model=PopulationOut, tags=["reference"])
def get_population(population_id: RecordId, who: Who, db: Db) -> PopulationOut:
    """One of the organisation's populations."""
    rec = owned(db, PopulationRecord, population_id, who, "population")
    return _population_out(Population.from_dict(rec.data), rec.name, rec)


@router.delete("/populations/{population_id}", status_code=204, tags=["reference"])
def delete_population(population_id: RecordId, who: Who, db: Db) -> Response:
    """Remove one of the organisation's populations."""
    rec = owned(db, PopulationRecord, population_id, who, "population")
    audit.record(db, who, "delete", "population", rec.id, rec.name)
    db.delete(rec)
    db.commit()
    return Response(status_code=204)


# ------------------------------------------------------------------------------- audit
@router.get("/audit", response_model=list[AuditOut], tags=["accounts"])
def audit_log(
    who: Admin,
    db: Db,
    resource: Annotated[str | None, Query(max_length=40)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[AuditOut]:
    """The organisation's audit log, newest first (administrators only)."""
    q = scoped(AuditEvent, who)
    if resource is not None:
        q = q.where(AuditEvent.resource == resource)
    rows = db.scalars(q.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)).all()
    return [
        AuditOut(
            id=e.id,
            at=e.at,
            user_id=e.user_id,
            token_id=e.token_id,
            action=e.action,
            resource=e.resource,
            resource_id=e.resource_id,
            detail=e.detail,
            ip=e.ip,
        )
        for e in rows
    ]

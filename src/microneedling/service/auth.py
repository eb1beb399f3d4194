"""Who is calling: an API token (``Authorization: Bearer mnt_…``, for scripts) or a browser session
cookie (HttpOnly, SameSite=Lax; every unsafe request also carries the session's CSRF token); rate
limits per caller; and the two helpers through which every query reaches records of the caller's
organisation only (:func:`owned`, :func:`scoped`)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
import sqlalchemy as sa
from fastapi import Depends, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from microneedling.service.config import Settings
from microneedling.service.db import ApiToken, BrowserSession, User, now
from microneedling.service.errors import ServiceError
from microneedling.service.security import Limiter, csrf_token, csrf_valid, hash_token
from microneedling.service.store import FileStore

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "UNSAFE_METHODS",
    "Context",
    "Principal",
    "app_context",
    "authenticate_request",
    "clear_session_cookie",
    "client_ip",
    "context",
    "database",
    "limit_sign_in",
    "owned",
    "principal",
    "require_admin",
    "scoped",
    "set_session_cookie",
]

SESSION_COOKIE = "mn_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: how often a token's last use is written (a write per request would cost every request)
_LAST_USED_EVERY = dt.timedelta(minutes=1)

M = TypeVar("M")

#: the caller of a token: columns only (no ORM objects; every API request runs it)
_TOKEN_QUERY = (
    sa.select(
        ApiToken.id.label("token_id"),
        ApiToken.revoked_at,
        ApiToken.last_used_at,
        User.id.label("user_id"),
        User.organisation_id,
        User.role,
        User.email,
        User.active,
    )
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == sa.bindparam("h"))
)


@dataclass
class Context:
    """What the routes share: settings, the database, the file store, the limits and the jobs."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: FileStore
    limiter: Limiter
    login_limiter: Limiter
    jobs: Any = None  # microneedling.service.jobs.JobManager
    #: at most ``settings.inline_threads`` threads of this process run a simulate request at once
    #: (set while the app runs; ``None``: anyio's default thread limit)
    simulate_limiter: anyio.CapacityLimiter | None = None


def app_context(request: Request) -> Context:
    ctx: Context = request.app.state.context
    return ctx


# The two dependencies below are coroutines so that FastAPI runs them on the event loop: a plain
# function dependency costs a hop to the thread pool (and a generator two), about 0.3 ms of CPU
# each per request. Neither blocks: a session connects on its first query, in the route's thread.
async def context(request: Request) -> Context:
    """FastAPI dependency: the app's shared state."""
    return app_context(request)


async def database(request: Request) -> AsyncIterator[Session]:
    """FastAPI dependency: a database session for one request; routes commit what they change
    (closing it rolls back anything left)."""
    db = app_context(request).sessions()
    try:
        yield db
    finally:
        db.close()


@dataclass(frozen=True)
class Principal:
    """The caller: a user of an organisation, through a token or a browser session."""

    user_id: int
    organisation_id: int
    role: str
    email: str
    via: str  # "token" | "session"
    token_id: int | None = None
    session_token: str | None = None
    ip: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def limit_sign_in(ctx: Context, request: Request, email: object) -> None:
    """Count a sign-in attempt (the API's and the pages'), refused with a 429 and ``Retry-After``
    unless both the client's address and the account allow it: ``login_limiter`` has a bucket per
    address (many accounts tried from one address) and one per account, the e-mail as sign-in looks
    it up (stripped, lower case; many addresses trying one account). An attempt the address's
    bucket refuses takes nothing from the account's."""
    wait = ctx.login_limiter.hit(f"ip:{client_ip(request) or '?'}")
    if wait <= 0:
        account = email.strip().lower()[:320] if isinstance(email, str) else ""
        wait = ctx.login_limiter.hit(f"email:{account}")
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ServiceError(
            429,
            f"too many sign-in attempts; try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


_bearer = HTTPBearer(auto_error=False, description="An API token: Authorization: Bearer mnt_…")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description=f"A browser session; unsafe methods also need the {CSRF_HEADER} header.",
)


def authenticate_request(
    request: Request, db: Session, csrf: str | None = None, *, limit: bool = True
) -> Principal:
    """The caller of ``request`` (401 if none; 403 for a cookie request without its CSRF token on
    an unsafe method; 429 over the rate limit). ``csrf`` is the token of a submitted form (the web
    pages); the API reads the ``X-CSRF-Token`` header."""
    ctx = app_context(request)
    ip = client_ip(request)
    found: Principal | None = None
    auth = request.headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if auth:
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _unauthorised("the Authorization header must be 'Bearer <token>'")
        # on the session's connection: Session.execute's ORM path cost 0.07 ms more per request
        row = db.connection().execute(_TOKEN_QUERY, {"h": hash_token(credentials.strip())}).first()
        if row is None or row.revoked_at is not None or not row.active:
            raise _unauthorised("unknown or revoked API token")
        t = now()
        last = row.last_used_at
        if last is not None and last.tzinfo is None:  # SQLite forgets the zone
            last = last.replace(tzinfo=dt.UTC)
        if last is None or t - last > _LAST_USED_EVERY:
            db.execute(
                sa.update(ApiToken).where(ApiToken.id == row.token_id).values(last_used_at=t)
            )
            db.commit()
        found = Principal(
            row.user_id,
            row.organisation_id,
            row.role,
            row.email,
            "token",
            token_id=row.token_id,
            ip=ip,
        )
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            srow = db.execute(
                sa.select(BrowserSession, User)
                .join(User, User.id == BrowserSession.user_id)
                .where(BrowserSession.token_hash == hash_token(cookie))
            ).first()
            if srow is not None and srow[0].expires_at > now() and srow[1].active:
                user = srow[1]
                found = Principal(
                    user.id,
                    user.organisation_id,
                    user.role,
                    user.email,
                    "session",
                    session_token=cookie,
                    ip=ip,
                )
        if found is None:
            raise _unauthorised("sign in (session cookie) or send an API token")
        if request.method in UNSAFE_METHODS:
            given = csrf if csrf is not None else request.headers.get(CSRF_HEADER)
            if not csrf_valid(ctx.settings.secret_key, cookie or "", given):
                raise ServiceError(
                    403, f"missing or wrong CSRF token (the {CSRF_HEADER} header or csrf_token)"
                )
    _settle_connection(db)
    if limit:
        key = f"token:{found.token_id}" if found.via == "token" else f"user:{found.user_id}"
        wait = ctx.limiter.hit(key)
        if wait > 0:
            raise ServiceError(
                429,
                f"too many requests; try again in {wait:.1f} s",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
    return found


def _settle_connection(db: Session) -> None:
    """Leave the request's session either holding no pooled connection or holding one it keeps to
    the end, never needing a new one after it has queued (an inline simulate waits for the
    process's simulate limiter). A request that had given its connection back (the commit of the
    once-a-minute ``last_used_at`` UPDATE does) and reached the limiter needed a new one to store
    its result while the 15 requests queued behind it held the whole pool (SQLite's 5 + 10): every
    request of the process stalled for the pool's 30 s timeout (32 clients, 2026-12-06).

    SQLite: the read ends (a commit without a round trip) and the connection goes back, so queued
    requests hold none. PostgreSQL: ending the read and checking out again (a COMMIT, then the
    pool's pre-ping) cost ~0.5-1 ms per request (benchmarks/bench_service.py, interleaved); the
    request keeps its connection instead, taking one again after the UPDATE's commit, so the
    request that runs always has one (requests beyond the pool wait before they queue)."""
    if db.get_bind().dialect.name == "sqlite":
        if db.in_transaction():
            db.commit()
    else:
        db.connection()


def _unauthorised(message: str) -> ServiceError:
    return ServiceError(401, message, headers={"WWW-Authenticate": "Bearer"})


def principal(
    request: Request,
    db: Annotated[Session, Depends(database)],
    _token: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
    _session: Annotated[str | None, Depends(_cookie)] = None,
) -> Principal:
    """FastAPI dependency: the authenticated caller (see :func:`authenticate_request`)."""
    return authenticate_request(request, db)


def require_admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    if not who.is_admin:
        raise ServiceError(403, "only an administrator of the organisation may do this")
    return who


def owned(db: Session, model: type[M], record_id: int, who: Principal, what: str) -> M:
    """The record ``record_id`` of ``model`` if it belongs to the caller's organisation; otherwise
    404 (the same answer as for a record that does not exist: nothing leaks across organisations)."""
    obj = db.get(model, record_id)
    if obj is None or getattr(obj, "organisation_id", None) != who.organisation_id:
        raise ServiceError(404, f"{what} {record_id}: not found")
    return obj


def scoped(model: Any, who: Principal) -> sa.Select[Any]:
    """``SELECT model`` restricted to the caller's organisation."""
    return sa.select(model).where(model.organisation_id == who.organisation_id)


def set_session_cookie(response: Response, token: str, settings: Settings) -> str:
    """Set the session cookie (HttpOnly, SameSite=Lax, Secure when configured); returns the CSRF
    token of the session."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )
    return csrf_token(settings.secret_key, token)


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=settings.secure_cookies
    )

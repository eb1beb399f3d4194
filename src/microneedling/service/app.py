"""The FastAPI application: settings → database (migrated) → file store → jobs → routes.

``create_app(settings)`` is what ``microneedling serve`` runs on uvicorn; the web pages (issue 14)
add their routers to the same app and reuse its context (:class:`~microneedling.service.auth.Context`
on ``app.state.context``), authentication (:func:`~microneedling.service.auth.authenticate_request`,
which takes a form's CSRF token) and the page shell of :mod:`microneedling.reports.page`.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy.orm import sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from microneedling.about import DISCLAIMER, __version__
from microneedling.service.api import router
from microneedling.service.auth import Context
from microneedling.service.config import Settings
from microneedling.service.db import make_engine, migrate
from microneedling.service.errors import error_body, install_handlers
from microneedling.service.jobs import JobManager
from microneedling.service.schemas import COMPONENTS
from microneedling.service.security import rate_limiter
from microneedling.service.store import FileStore

__all__ = ["create_app", "freeze_startup_heap", "make_context"]

log = logging.getLogger("microneedling.service")

_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds nosniff, frame and referrer headers to every response (a plain ASGI middleware: no
    per-request cost beyond the headers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _HEADERS if k not in have]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuses a request body over ``limit`` bytes with a 413 and the JSON error body: at once when
    ``Content-Length`` says so, else as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            error_body(413, f"request body larger than {self.limit} bytes (the server's limit)")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(send)
                    return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(self.limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._refuse(send)


class _TooLarge(StarletteHTTPException):
    """A streamed body passed the limit (an HTTP exception: the routes' body parsing lets it
    through to the JSON error handler)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes (the server's limit)")


def make_context(settings: Settings, *, run_migrations: bool = True) -> Context:
    """The shared state of an app: database engine (migrated), sessions, file store, limits."""
    settings = settings.with_secret()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.url)
    if run_migrations:
        migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    return Context(
        settings=settings,
        engine=engine,
        sessions=sessions,
        store=FileStore(settings.store_dir),
        # a file per limit in the data directory: the processes of a server share their buckets
        limiter=rate_limiter(
            settings.limits_dir / "requests.bin", settings.rate_per_second, settings.rate_burst
        ),
        login_limiter=rate_limiter(
            settings.limits_dir / "sign-in.bin",
            settings.login_per_minute / 60.0,
            settings.login_per_minute,
        ),
    )


def freeze_startup_heap() -> int:
    """Collect, then move every object alive now (the imported libraries, the app, the caches
    filled at start) to the collector's permanent generation (``gc.freeze``); returns how many.

    A server process starts with a heap of several hundred thousand objects that live as long as
    it does. Python's first full (generation 2) collection walks all of them: 195-201 ms in each
    worker process, a few seconds into a load test, during which every request of the process
    waited (32 clients on PostgreSQL, 2026-12-07: p99 404 ms, every request above 300 ms in the
    first 1.2 s; with the heap frozen p99 239 ms and no collection above 10 ms). Later full
    collections walk only what was made after start. Run once per process, as it starts serving
    (the lifespan), after the garbage of start-up is collected, so nothing frozen is garbage."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def create_app(settings: Settings | None = None, *, run_migrations: bool = True) -> FastAPI:
    """The service app. Migrations run here unless the caller ran them (``microneedling serve``
    runs them once before starting several worker processes)."""
    ctx = make_context(settings or Settings.from_env(), run_migrations=run_migrations)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs = JobManager(ctx.settings, ctx.sessions, ctx.store)
        ctx.jobs = jobs
        # made in the server's event loop (an anyio limiter belongs to the loop that first uses it)
        ctx.simulate_limiter = anyio.CapacityLimiter(ctx.settings.inline_threads)
        jobs.start()
        if ctx.settings.freeze_heap:
            freeze_startup_heap()
        try:
            yield
        finally:
            jobs.stop()
            ctx.jobs = None
            ctx.simulate_limiter = None
            ctx.engine.dispose()

    app = FastAPI(
        title="microneedling",
        version=__version__,
        description=(
            "In-silico microneedling as a service: patients, courses and runs (simulate, plan, "
            "absorb, trial, sensitivity, validate) of your organisation, with background jobs. "
            "Sign in with a browser session (cookie + CSRF token) or send an API token "
            "(`Authorization: Bearer mnt_…`). " + DISCLAIMER
        ),
        lifespan=lifespan,
    )
    app.state.context = ctx
    install_handlers(app)
    app.include_router(router)
    app.add_middleware(BodyLimit, limit=ctx.settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(COMPONENTS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app

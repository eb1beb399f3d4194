"""The service app with the web pages: :func:`create_app` adds the pages' router, the static
files (the chart library and our script, cached for a year under versioned names), ``/`` (to the
pages) and HTML errors for the pages' paths (the API keeps its JSON errors) to
:func:`microneedling.service.app.create_app`. ``microneedling serve`` runs
:func:`app_from_env` in each worker process."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from microneedling.errors import InputError, InputFileError, MicroneedlingError
from microneedling.service.app import create_app as create_service_app
from microneedling.service.config import Settings
from microneedling.service.errors import ServiceError
from microneedling.service.server import app_from_env as service_app_from_env
from microneedling.web.forms import field_errors
from microneedling.web.pages import Redirect, error_page, router
from microneedling.web.render import STATIC_CACHE, static_file, static_gzip

__all__ = ["app_from_env", "create_app", "install"]


def _is_page(request: Request) -> bool:
    return request.url.path == "/web" or request.url.path.startswith("/web/")


def install(app: FastAPI) -> FastAPI:
    """Add the pages to a service app (see the module docstring)."""
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/web/patients", status_code=303)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204, headers={"Cache-Control": STATIC_CACHE})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str, request: Request) -> Response:
        found = static_file(name)
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        content, media = found
        headers = {"Cache-Control": STATIC_CACHE, "Vary": "Accept-Encoding"}
        packed = static_gzip(name)
        if packed is not None and "gzip" in request.headers.get("accept-encoding", "").lower():
            return Response(packed, media_type=media,
                            headers={**headers, "Content-Encoding": "gzip"})  # fmt: skip
        return Response(content, media_type=media, headers=headers)

    handlers: dict[Any, Any] = dict(app.exception_handlers)

    def page_aware(kind: type[Exception]) -> None:
        api_handler = handlers.get(kind)

        async def handle(request: Request, exc: Exception) -> Response:
            if _is_page(request):
                if isinstance(exc, ServiceError):
                    return error_page(request, exc.status, exc.message)
                if isinstance(exc, InputError | InputFileError):
                    msgs = [m for ms in field_errors(exc).values() for m in ms]
                    return error_page(request, 422, "the input was refused", msgs)
                return error_page(request, 400, str(exc) or type(exc).__name__)
            assert api_handler is not None
            response: Response = await api_handler(request, exc)
            return response

        app.add_exception_handler(kind, handle)

    for kind in (ServiceError, InputError, InputFileError, MicroneedlingError):
        page_aware(kind)

    def api_error_as_page(kind: type[Exception]) -> None:
        """The API's answer (its JSON error body, its log line for an unexpected error) as an
        error page on a page's path: an unknown address, a malformed one (``/web/runs/abc``) or
        an internal error shows the pages' error page, not JSON."""
        api_handler = handlers[kind]

        async def handle(request: Request, exc: Exception) -> Response:
            response: Response = await api_handler(request, exc)
            if not _is_page(request):
                return response
            body = json.loads(bytes(response.body))
            status = response.status_code
            message = str(body.get("error") or status)
            if status == 404 and message == "Not Found":
                message = "there is no page at this address"
            problems = [str(p.get("message", "")) for p in body.get("problems", [])]
            page = error_page(request, status, message, [p for p in problems if p not in message])
            for name in ("allow", "retry-after"):
                if name in response.headers:
                    page.headers[name] = response.headers[name]
            return page

        app.add_exception_handler(kind, handle)

    for api_kind in (StarletteHTTPException, RequestValidationError, Exception):
        api_error_as_page(api_kind)

    @app.exception_handler(Redirect)
    async def redirect(_: Request, exc: Redirect) -> Response:
        return RedirectResponse(exc.url, status_code=303)

    return app


def create_app(settings: Settings | None = None, *, run_migrations: bool = True) -> FastAPI:
    """The service app with the web pages."""
    return install(create_service_app(settings, run_migrations=run_migrations))


def app_from_env() -> FastAPI:
    """The app of one worker process of ``microneedling serve`` (uvicorn's factory)."""
    return install(service_app_from_env())

"""Every refusal as a JSON body naming the field, the value and what is allowed, in the same words
as the command line (:class:`~microneedling.errors.InputError`,
:class:`~microneedling.errors.InputFileError`), with a 4xx status; an unexpected failure is a 500
with no traceback in the body (it is logged)."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from microneedling.errors import InputError, InputFileError, MicroneedlingError
from microneedling.io import OutputExistsError
from microneedling.schema import MISSING

__all__ = ["ServiceError", "error_body", "install_handlers", "json_value", "problem"]

log = logging.getLogger("microneedling.service")


class ServiceError(Exception):
    """A refusal of the API that is not about an input field (not found, not allowed, too many
    requests, conflict): a status and one line."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_value(value: Any) -> Any:
    """``value`` as JSON: as given when it is JSON already, ``null`` for a missing field, text for
    anything else (NaN and infinities included)."""
    if value is MISSING:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, tuple):
        value = list(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def problem(exc: InputError) -> dict[str, Any]:
    """One problem: ``field``, ``value``, ``allowed`` and the CLI's sentence ``message``."""
    return {
        "field": exc.field,
        "value": json_value(exc.value),
        "allowed": exc.allowed,
        "message": str(exc),
        "missing": exc.value is MISSING,
    }


def error_body(
    status: int,
    message: str,
    problems: list[dict[str, Any]] | None = None,
    source: str | None = None,
) -> dict:
    body: dict[str, Any] = {"status": status, "error": message, "problems": problems or []}
    if source is not None:
        body["source"] = source
    return body


def _respond(
    status: int,
    message: str,
    problems: list[dict[str, Any]] | None = None,
    source: str | None = None,
    **kw: Any,
):
    return JSONResponse(error_body(status, message, problems, source), status_code=status, **kw)


def input_error_response(exc: InputError | InputFileError) -> JSONResponse:
    if isinstance(exc, InputFileError):
        problems = [problem(p) for p in exc.problems]
        return _respond(422, exc.one_line(), problems, source=exc.source)
    return _respond(422, str(exc), [problem(exc)])


def _validation_problem(err: dict[str, Any]) -> dict[str, Any]:
    loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "header")]
    field = ".".join(loc) or "<request>"
    where = str(err.get("loc", ("request",))[0])
    allowed = str(err.get("msg", "a valid value"))
    if err.get("type") == "missing":
        allowed = f"required {where} parameter"
    elif err.get("type") == "json_invalid":
        allowed = "a JSON body"
    return problem(InputError(field, err.get("input", MISSING), allowed))


def install_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into the JSON error body."""

    @app.exception_handler(InputError)
    async def _input(_: Request, exc: InputError) -> JSONResponse:
        return input_error_response(exc)

    @app.exception_handler(InputFileError)
    async def _input_file(_: Request, exc: InputFileError) -> JSONResponse:
        return input_error_response(exc)

    @app.exception_handler(OutputExistsError)
    async def _exists(_: Request, exc: OutputExistsError) -> JSONResponse:
        return _respond(409, str(exc))

    @app.exception_handler(MicroneedlingError)
    async def _refused(_: Request, exc: MicroneedlingError) -> JSONResponse:
        return _respond(400, str(exc) or type(exc).__name__)

    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        return _respond(exc.status, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_validation_problem(dict(e)) for e in exc.errors()]
        first = problems[0]["message"] if problems else "invalid request"
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return _respond(422, f"request: {first}{more}", problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _respond(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _respond(500, "internal error; it was logged on the server")

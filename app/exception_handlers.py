"""Turn infrastructure failures into clear JSON answers instead of 500s."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from app.db.errors import log_database_unavailable
from app.db.pagination import InvalidPageRequest
from app.errors import NotFound, RecordConflict

logger = logging.getLogger("app.errors")

DATABASE_UNAVAILABLE = {"detail": "Database unavailable, try again shortly"}


def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log_database_unavailable(exc, logger)  # the reason, in one line (app/db/errors.py)
    return JSONResponse(DATABASE_UNAVAILABLE, status_code=503, headers={"Retry-After": "5"})


async def dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DBAPIError) and not exc.connection_invalidated:
        raise exc
    return database_unavailable(request, exc)


async def row_vanished(request: Request, exc: Exception) -> Response:
    """The row a request was changing was deleted under it by a concurrent request (the flush
    of an UPDATE matched no row, or a refresh found none): 404, the answer the request would
    have had a moment later. Every service and resource gets this without a try of its own."""
    logger.info("Row deleted under the request: %s", exc)
    return await http_exception_handler(request, NotFound())


async def integrity_conflict(request: Request, exc: Exception) -> Response:
    """A constraint refused a write that no service rule caught (services turn the ones they
    foresee, like a duplicate email, into their own 409): a conflict, never a 500."""
    logger.warning("Integrity error not handled by a service: %s", str(exc).splitlines()[0])
    return await http_exception_handler(request, RecordConflict())


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped: it can always be encoded, even when it echoes a
    lone UTF-16 surrogate that a client sent as `"\\ud800"` (UTF-8 cannot encode that)."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        return text.encode()


# A 1 MiB body can hold ~100k unknown keys, one error each: rendering them all would take seconds
# of the event loop and answer ~8 MiB. The first errors are enough to fix a request, and inputs
# (that the caller already has) are echoed only when small.
MAX_REPORTED_ERRORS = 20
MAX_ECHOED_INPUT = 256


def _lossy_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def json_safe(number: float) -> float | str:
    """JSON has no NaN or Infinity, though Python's parser (so FastAPI's) reads them: an echoed
    non-finite input is named as the client wrote it, as text."""
    if math.isfinite(number):
        return number
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def _reportable(error: dict[str, Any]) -> dict[str, Any]:
    echoed = error.get("input")
    too_big = isinstance(echoed, (dict, list, tuple)) or (
        isinstance(echoed, (str, bytes)) and len(echoed) > MAX_ECHOED_INPUT
    )
    if too_big:
        return {key: value for key, value in error.items() if key != "input"}
    return error


async def request_validation_error(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, bounded in size, and safe for any input: a body that is not UTF-8 (sent
    as text/plain, form data…), a lone surrogate or a `NaN` would otherwise turn it into a 500."""
    assert isinstance(exc, RequestValidationError)
    errors = [_reportable(error) for error in exc.errors()[:MAX_REPORTED_ERRORS]]
    content = {
        "detail": jsonable_encoder(errors, custom_encoder={bytes: _lossy_text, float: json_safe})
    }
    return AsciiJSONResponse(content, status_code=422)


# The methods a route of this API can have (HEAD comes with GET).
ROUTABLE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at this path. The router's 405 names only the methods of
    the first route it matched (one route per method: `GET` alone for `/users/me`); RFC 9110
    wants all of them in `Allow`."""
    allowed = []
    for method in ROUTABLE_METHODS:
        probe = {"type": "http", "path": request.scope["path"], "method": method}
        probe["root_path"] = request.scope.get("root_path", "")
        if any(route.matches(probe)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


async def invalid_page_request(request: Request, exc: Exception) -> JSONResponse:
    """A bad `cursor` (or `cursor` with `offset`), found by `app.db.pagination`: the 422 a
    query parameter's validation gives, naming that parameter."""
    assert isinstance(exc, InvalidPageRequest)
    error = {"type": "value_error", "loc": ("query", exc.parameter), "msg": exc.message}
    return await request_validation_error(request, RequestValidationError([error]))


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own answer, with a complete `Allow` on a 405."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allow = ", ".join(allowed_methods(request))
        exc = HTTPException(405, exc.detail, headers={**(exc.headers or {}), "Allow": allow})
    return await http_exception_handler(request, exc)


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(InvalidPageRequest, invalid_page_request)
    app.add_exception_handler(StaleDataError, row_vanished)
    app.add_exception_handler(ObjectDeletedError, row_vanished)
    # More specific than DBAPIError (below), whose handler lets statement errors through.
    app.add_exception_handler(IntegrityError, integrity_conflict)
    # asyncio.TimeoutError (asyncpg's command_timeout) is the builtin TimeoutError only from 3.11.
    for unavailable in (
        OperationalError,
        InterfaceError,
        PoolTimeoutError,
        OSError,
        TimeoutError,
        asyncio.TimeoutError,
        # SQLAlchemy wraps asyncpg's errors of statements, not those of connecting: a server
        # that is starting up or shutting down, too many connections, a refused login or
        # startup parameter (a pooler) reach here as asyncpg's own exceptions.
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ):
        app.add_exception_handler(unavailable, database_unavailable)
    app.add_exception_handler(DBAPIError, dbapi_error)

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
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.db.errors import log_database_unavailable

logger = logging.getLogger("app.errors")

DATABASE_UNAVAILABLE = {"detail": "Database unavailable, try again shortly"}


def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log_database_unavailable(exc, logger)  # the reason, in one line (app/db/errors.py)
    return JSONResponse(DATABASE_UNAVAILABLE, status_code=503, headers={"Retry-After": "5"})


async def dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DBAPIError) and not exc.connection_invalidated:
        raise exc
    return database_unavailable(request, exc)


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


def _reportable(error: dict[str, Any]) -> dict[str, Any]:
    echoed = error.get("input")
    too_big = isinstance(echoed, (dict, list, tuple)) or (
        isinstance(echoed, (str, bytes)) and len(echoed) > MAX_ECHOED_INPUT
    )
    # NaN and infinities (a `float` field refusing `NaN` or `1e400`) have no JSON form.
    unwritable = isinstance(echoed, float) and not math.isfinite(echoed)
    if too_big or unwritable:
        return {key: value for key, value in error.items() if key != "input"}
    return error


async def request_validation_error(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, bounded in size, and safe for any input: a body that is not UTF-8 (sent
    as text/plain, form data…) or a lone surrogate would otherwise turn it into a 500."""
    assert isinstance(exc, RequestValidationError)
    errors = [_reportable(error) for error in exc.errors()[:MAX_REPORTED_ERRORS]]
    content = {"detail": jsonable_encoder(errors, custom_encoder={bytes: _lossy_text})}
    return AsciiJSONResponse(content, status_code=422)


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, request_validation_error)
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

"""Turn infrastructure failures into clear JSON answers instead of 500s."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

logger = logging.getLogger("app.errors")

DATABASE_UNAVAILABLE = {"detail": "Database unavailable, try again shortly"}


def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    logger.warning("Database unavailable: %s", type(exc).__name__)
    return JSONResponse(DATABASE_UNAVAILABLE, status_code=503, headers={"Retry-After": "5"})


async def dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DBAPIError) and not exc.connection_invalidated:
        raise exc
    return database_unavailable(request, exc)


def install_exception_handlers(app: FastAPI) -> None:
    # asyncio.TimeoutError (asyncpg's command_timeout) is the builtin TimeoutError only from 3.11.
    for unavailable in (
        OperationalError,
        InterfaceError,
        PoolTimeoutError,
        OSError,
        TimeoutError,
        asyncio.TimeoutError,
    ):
        app.add_exception_handler(unavailable, database_unavailable)
    app.add_exception_handler(DBAPIError, dbapi_error)

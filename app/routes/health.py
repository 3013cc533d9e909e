from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from sqlalchemy import text

from app.db.database import Database
from app.db.errors import log_database_unavailable
from app.errors import ServiceUnavailable
from app.schemas.errors import responses

router = APIRouter(tags=["health"])

READINESS_TIMEOUT_SECONDS = 3.0


@router.get("/")
async def hello() -> dict[str, str]:
    """A greeting: the API answers."""
    return {"message": "Hello, world!"}


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (does not touch the database)."""
    return {"status": "ok"}


@router.get("/readyz", responses=responses(503))
async def readyz(request: Request) -> dict[str, str]:
    """The database answers."""
    database: Database = request.app.state.database
    ping = asyncio.ensure_future(_ping(database))
    # Not wait_for(): cancelling a driver that waits on a hung server can take longer than the
    # wait itself (psycopg then tries to cancel the query on that server). An unfinished ping
    # is left to end by itself; the driver's own timeouts bound it.
    done, _ = await asyncio.wait({ping}, timeout=READINESS_TIMEOUT_SECONDS)
    if not done:
        ping.add_done_callback(_discard_result)
        log_database_unavailable(TimeoutError(f"no answer within {READINESS_TIMEOUT_SECONDS} s"))
        raise ServiceUnavailable("Database unavailable", retry_after=5)
    try:
        ping.result()
    except Exception as exc:
        log_database_unavailable(exc)
        raise ServiceUnavailable("Database unavailable", retry_after=5) from exc
    return {"status": "ok", "database": "ok"}


def _discard_result(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


async def _ping(database: Database) -> None:
    async with database.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from sqlalchemy import text

from app.db.session import Database
from app.errors import ServiceUnavailable
from app.schemas.errors import responses

router = APIRouter(tags=["health"])

READINESS_TIMEOUT_SECONDS = 3.0


@router.get("/")
async def hello() -> dict[str, str]:
    return {"message": "Hello, world!"}


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (does not touch the database)."""
    return {"status": "ok"}


@router.get("/readyz", responses=responses(503))
async def readyz(request: Request) -> dict[str, str]:
    """The database answers."""
    database: Database = request.app.state.database
    try:
        await asyncio.wait_for(_ping(database), READINESS_TIMEOUT_SECONDS)
    except Exception as exc:
        raise ServiceUnavailable("Database unavailable", retry_after=5) from exc
    return {"status": "ok", "database": "ok"}


async def _ping(database: Database) -> None:
    async with database.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))

"""Async engine and session factory.

Two ways to get a session, one for each place:
- in a route or dependency: `session: SessionDep` (or `Depends(get_session)`): one session per
  request, closed after the response;
- anywhere else (CLI, scripts, background jobs): `async with open_session() as session: ...`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool, StaticPool

from app.config import Settings, get_settings


def engine_options(settings: Settings) -> dict[str, Any]:
    """create_async_engine() keyword arguments for the configured database."""
    url = settings.database_url
    if url.get_backend_name() == "sqlite":
        options: dict[str, Any] = {"connect_args": {"timeout": 30}}
        if url.database in (None, "", ":memory:"):
            options["poolclass"] = StaticPool
        return options

    connect_args: dict[str, Any] = {}
    statement_timeout_ms = str(int(settings.DATABASE_STATEMENT_TIMEOUT * 1000))
    if url.get_driver_name() == "asyncpg":
        connect_args["timeout"] = settings.DATABASE_CONNECT_TIMEOUT
        connect_args["command_timeout"] = settings.DATABASE_STATEMENT_TIMEOUT + 1
        connect_args["server_settings"] = {
            "application_name": "megapolis-api",
            "statement_timeout": statement_timeout_ms,
        }
        if settings.uses_transaction_pooler:
            # Transaction poolers hand each transaction to any server connection: named prepared
            # statements would collide or vanish, so asyncpg must not cache or name them.
            connect_args["statement_cache_size"] = 0
            connect_args["prepared_statement_cache_size"] = 0
            connect_args["prepared_statement_name_func"] = _unique_statement_name
    elif url.get_driver_name() == "psycopg":
        connect_args["connect_timeout"] = max(1, round(settings.DATABASE_CONNECT_TIMEOUT))
        connect_args["options"] = f"-c statement_timeout={statement_timeout_ms}"
        connect_args["application_name"] = "megapolis-api"
        if settings.uses_transaction_pooler:
            connect_args["prepare_threshold"] = None
    return {
        "connect_args": connect_args,
        "pool_size": settings.DATABASE_POOL_SIZE,
        "max_overflow": settings.DATABASE_MAX_OVERFLOW,
        "pool_timeout": settings.DATABASE_POOL_TIMEOUT,
        "pool_recycle": settings.DATABASE_POOL_RECYCLE,
        "pool_pre_ping": True,
    }


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def strip_app_query(url: URL) -> URL:
    """Drop query parameters that are ours, not the driver's (`pgbouncer=true`)."""
    return url.difference_update_query(["pgbouncer"])


def create_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    options = engine_options(settings)
    if not pooled:
        for key in ("pool_size", "max_overflow", "pool_timeout", "pool_recycle"):
            options.pop(key, None)
        options.setdefault("poolclass", NullPool)
    engine = create_async_engine(strip_app_query(settings.database_url), **options)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Foreign keys on, WAL, and BEGIN IMMEDIATE so concurrent writers queue instead of failing
    with "database is locked" when a reader tries to upgrade its lock."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


class Database:
    """The engine and session factory of one app instance (created in the app's lifespan)."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        self.sessionmaker = create_sessionmaker(self.engine)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: one session per request. Services commit; anything left open is
    rolled back when the session closes."""
    database: Database = request.app.state.database
    async with database.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@asynccontextmanager
async def open_session(settings: Settings | None = None) -> AsyncIterator[AsyncSession]:
    """A session outside a request (CLI, scripts): its own short-lived engine."""
    engine = create_engine(settings or get_settings(), pooled=False)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()

"""Async engine and session factory.

Two ways to get a session, one for each place:
- in a route or dependency: `session: SessionDep` (or `Depends(get_session)`): one session per
  request, closed after the response;
- anywhere else (CLI, scripts, background jobs): `async with open_session() as session: ...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from weakref import WeakSet

import psycopg
from fastapi import Depends, Request
from psycopg.abc import PQGen
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool, StaticPool

from app.config import Settings, get_settings
from app.db.fair_pool import FairAsyncQueuePool
from app.db.ping import install_idle_ping
from app.db.url import connection_arguments

logger = logging.getLogger("app.db")


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
    # A transaction pooler refuses startup parameters it does not track (PgBouncer: "unsupported
    # startup parameter: statement_timeout" / "options"), and could not keep them per client
    # anyway. There the client-side timeouts below bound each statement; a server-side limit
    # belongs to the role (ALTER ROLE ... SET statement_timeout).
    server_timeout = not settings.uses_transaction_pooler
    if url.get_driver_name() == "asyncpg":
        connect_args["timeout"] = settings.DATABASE_CONNECT_TIMEOUT
        connect_args["command_timeout"] = settings.DATABASE_STATEMENT_TIMEOUT + 1
        connect_args["server_settings"] = {"application_name": "megapolis-api"}
        if server_timeout:
            connect_args["server_settings"]["statement_timeout"] = statement_timeout_ms
        if settings.uses_transaction_pooler:
            # Transaction poolers hand each transaction to any server connection: named prepared
            # statements would collide or vanish, so asyncpg must not cache or name them.
            connect_args["statement_cache_size"] = 0
            connect_args["prepared_statement_cache_size"] = 0
            connect_args["prepared_statement_name_func"] = _unique_statement_name
    elif url.get_driver_name() == "psycopg":
        connect_args["connect_timeout"] = max(1, round(settings.DATABASE_CONNECT_TIMEOUT))
        if server_timeout:
            connect_args["options"] = f"-c statement_timeout={statement_timeout_ms}"
        connect_args["application_name"] = "megapolis-api"
        # psycopg has no client-side timeout: bound every wait on the server like asyncpg does.
        connect_args["async_creator_fn"] = functools.partial(
            BoundedAsyncConnection.connect_bounded,
            command_timeout=settings.DATABASE_STATEMENT_TIMEOUT + 1,
        )
        if settings.uses_transaction_pooler:
            connect_args["prepare_threshold"] = None
    return {
        "connect_args": connect_args,
        "pool_size": settings.DATABASE_POOL_SIZE,
        "max_overflow": settings.DATABASE_MAX_OVERFLOW,
        "pool_timeout": settings.DATABASE_POOL_TIMEOUT,
        "pool_recycle": settings.DATABASE_POOL_RECYCLE,
        # 0 → SQLAlchemy's pool_pre_ping (every checkout); else app.db.ping (idle ones only).
        "pool_pre_ping": settings.DATABASE_PING_IDLE_SECONDS == 0,
        "poolclass": FairAsyncQueuePool,
    }


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


class BoundedAsyncConnection(psycopg.AsyncConnection[Any]):
    """A psycopg connection that gives up on a server that stops answering.

    statement_timeout only helps while the server works; when it (or the network, or a pooler
    in front of it) hangs, psycopg would wait forever, and so would the request. Past
    `command_timeout` the socket is shut down, so the pending wait fails like a dropped
    connection would: the connection is then broken and SQLAlchemy discards it. (Cancelling the
    task instead would make psycopg try to cancel the query on the hung server, up to 10 s more.)
    """

    command_timeout: float | None = None

    @classmethod
    async def connect_bounded(
        cls, *args: Any, command_timeout: float, **kwargs: Any
    ) -> BoundedAsyncConnection:
        connection = await cls.connect(*args, **kwargs)
        connection.command_timeout = command_timeout
        return connection

    async def wait(self, gen: PQGen[Any], *args: Any, **kwargs: Any) -> Any:
        if self.command_timeout is None:
            return await super().wait(gen, *args, **kwargs)
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            self._shut_socket_down()

        timer = asyncio.get_running_loop().call_later(self.command_timeout, expire)
        try:
            return await super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if not expired:
                raise
            raise psycopg.OperationalError(
                f"the database did not answer within {self.command_timeout:g} s"
            ) from exc
        finally:
            timer.cancel()

    def _shut_socket_down(self) -> None:
        # Through a duplicate descriptor: shutdown() acts on the socket both share, and closing
        # the duplicate leaves libpq's own descriptor for libpq to close.
        with (
            contextlib.suppress(psycopg.Error, OSError),
            socket.socket(fileno=os.dup(self.pgconn.socket)) as duplicate,
        ):
            duplicate.shutdown(socket.SHUT_RDWR)


def strip_app_query(url: URL) -> URL:
    """Drop query parameters that are ours, not the driver's (`pgbouncer=true`)."""
    return url.difference_update_query(["pgbouncer"])


# Engines whose statements must run inside a transaction (see allows_autocommit).
_transactions_only: WeakSet[Engine] = WeakSet()


def allows_autocommit(engine: AsyncEngine) -> bool:
    """False for asyncpg behind a transaction pooler. SQLAlchemy's asyncpg dialect prepares a
    statement (Parse, Sync) and then runs it (Bind, Execute, Sync): outside a transaction the
    pooler may send the second half to another server connection ("prepared statement ... does
    not exist"). Inside one, it keeps the same server connection until COMMIT/ROLLBACK."""
    return engine.sync_engine not in _transactions_only


def create_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    options = engine_options(settings)
    if not pooled:
        for key in ("pool_size", "max_overflow", "pool_timeout", "pool_recycle"):
            options.pop(key, None)
        if options.get("poolclass") is not StaticPool:  # an in-memory SQLite keeps its one
            options["poolclass"] = NullPool
    # libpq's parameters in the URL (sslmode, sslrootcert, …) moved to where the driver reads them.
    url, options["connect_args"] = connection_arguments(
        strip_app_query(settings.database_url), options["connect_args"]
    )
    engine = create_async_engine(url, **options)
    if settings.uses_transaction_pooler and engine.dialect.driver == "asyncpg":
        _transactions_only.add(engine.sync_engine)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    elif pooled and settings.DATABASE_PING_IDLE_SECONDS > 0:
        install_idle_ping(engine, settings.DATABASE_PING_IDLE_SECONDS)
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
    session = database.sessionmaker()
    try:
        yield session
    finally:
        try:
            await session.close()
        except (SQLAlchemyError, OSError, asyncio.TimeoutError) as exc:
            # The connection died while it was being released (this can run after the response
            # was sent): it is already discarded from the pool; nothing is left to tell anyone.
            logger.warning("Database connection lost while releasing it: %s", type(exc).__name__)


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

"""`create_engine(settings)`: the async engine for the configured database, with the options each
driver needs (timeouts, a transaction pooler, SQLite's locking)."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from app.config import Settings
from app.db.bounded_psycopg import BoundedAsyncConnection
from app.db.fair_pool import FairAsyncQueuePool
from app.db.ping import install_idle_ping


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


def strip_app_query(url: URL) -> URL:
    """Drop query parameters that are ours, not the driver's (`pgbouncer=true`)."""
    return url.difference_update_query(["pgbouncer"])


def create_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    """The engine for `settings.DATABASE_URL`; `pooled=False` for short-lived uses (CLI,
    migrations), which open one connection at a time and keep none."""
    options = engine_options(settings)
    if not pooled:
        for key in ("pool_size", "max_overflow", "pool_timeout", "pool_recycle"):
            options.pop(key, None)
        if options.get("poolclass") is not StaticPool:  # an in-memory SQLite keeps its one
            options["poolclass"] = NullPool
    engine = create_async_engine(strip_app_query(settings.database_url), **options)
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

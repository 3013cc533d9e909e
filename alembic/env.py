"""Async-aware Alembic environment.

The URL comes from the app's settings (DATABASE_URL), unless a caller put a ready `Settings`
in `config.attributes["settings"]` (tests, manage.py). On PostgreSQL the migration runs under
an advisory lock, so replicas that all run `upgrade` at start apply each revision once.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

import app.models  # noqa: F401  (registers every model on Base.metadata)
from app.config import Settings, get_settings
from app.db.base import Base
from app.db.session import create_engine

MIGRATION_LOCK_ID = 7_345_183_201  # any constant; shared by every replica of this app

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def app_settings() -> Settings:
    settings = config.attributes.get("settings")
    return settings if isinstance(settings, Settings) else get_settings()


def configure(connection: Connection | None = None, **kwargs: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds the table
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    url = app_settings().database_url.render_as_string(hide_password=False)
    configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Taken before alembic reads the current revision, held until this transaction
            # commits: replicas that start together queue here, and each then sees what the
            # first one applied. Transaction-scoped, so it also holds through a transaction-mode
            # pooler (a session lock could be released on another server connection).
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


async def run_migrations_online() -> None:
    # No statement timeout: waiting for another replica's migration, or a long data migration,
    # is expected here, unlike in a request.
    settings = app_settings().model_copy(update={"DATABASE_STATEMENT_TIMEOUT": 24 * 3600.0})
    engine = create_engine(settings, pooled=False)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())

"""Migrations: round trip on both databases, and no drift between the models and head."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from app.config import Settings
from app.db.base import Base
from app.db.engine import create_engine
from manage import alembic_config
from tests.conftest import PostgresServer, make_settings


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield make_settings(f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database("megapolis_migrations")
    try:
        yield make_settings(server.url_for(name))
    finally:
        server.drop_database(name)


def run_sync(settings: Settings, fn: Any) -> Any:
    async def inner() -> Any:
        engine = create_engine(settings, pooled=False)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(inner())


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def test_round_trip_and_no_drift(empty_database: Settings) -> None:
    config = alembic_config(empty_database)
    config.attributes["configure_logger"] = False

    command.upgrade(config, "head")
    assert {"users", "alembic_version"} <= run_sync(empty_database, table_names)
    assert run_sync(empty_database, schema_diff) == []

    command.downgrade(config, "base")
    assert "users" not in run_sync(empty_database, table_names)

    command.upgrade(config, "head")
    assert "users" in run_sync(empty_database, table_names)
    assert run_sync(empty_database, schema_diff) == []


def test_migration_constraints_follow_naming_convention(empty_database: Settings) -> None:
    config = alembic_config(empty_database)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")

    def constraints(connection: Connection) -> set[str | None]:
        inspector = inspect(connection)
        names = {c["name"] for c in inspector.get_unique_constraints("users")}
        if connection.dialect.name == "postgresql":
            names.add(inspector.get_pk_constraint("users")["name"])
        return names

    names = run_sync(empty_database, constraints)
    assert {"uq_users_email", "uq_users_supabase_id"} <= names

"""Migrations: round trip on both databases, and no drift between the models and head."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from app.config import Settings
from app.db.base import Base
from app.db.engine import create_engine
from app.fields import canonical_email
from manage import alembic_config
from tests.conftest import PROJECT_ROOT, PostgresServer, make_settings


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


# --- 0004_emails: stored Unicode domains rewritten to IDNA ASCII, collisions reported ---------

EMAILS_BEFORE = {
    1: "boss@аррӏе.com",  # alone: rewritten
    2: "eve@bücher.de",  # 2 and 3: one address; 3 is already in ASCII
    3: "eve@xn--bcher-kva.de",
    4: "x@straße.de",  # IDNA 2008: xn--strae-oqa.de, not strasse.de
    5: "x@bu\u0308cher.de",  # 5 and 6: one address (5's ü decomposed), neither in ASCII
    6: "x@bücher.de",
    7: "ada@example.com",  # ASCII: untouched
    8: "jörg@example.com",  # a non-ASCII local part, an ASCII domain: untouched
    9: "snow@☃.com",  # no IDNA form: kept, reported
}
EMAILS_AFTER = {
    **EMAILS_BEFORE,
    1: "boss@xn--80ak6aa92e.com",
    4: "x@xn--strae-oqa.de",
}


def migration_0004() -> ModuleType:
    [path] = (PROJECT_ROOT / "alembic" / "versions").glob("*_0004_canonical_email_domains.py")
    spec = importlib.util.spec_from_file_location("migration_0004", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migration_writes_the_apps_canonical_form() -> None:
    frozen = migration_0004().canonical_email
    for email in [*EMAILS_BEFORE.values(), "Boss@АРРӀЕ.COM", "a@b\u3002com"]:
        try:
            expected = canonical_email(email)
        except ValueError:
            with pytest.raises(ValueError):
                frozen(email)
            continue
        assert frozen(email) == expected


def test_unicode_domains_become_idna_ascii_and_collisions_are_reported(
    empty_database: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    config = alembic_config(empty_database)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "0003")

    def insert(connection: Connection) -> None:
        for user_id, email in EMAILS_BEFORE.items():
            connection.execute(
                text(
                    "INSERT INTO users (id, email, is_active, is_superuser, security_stamp, "
                    "created_at, updated_at) VALUES (:id, :email, true, false, 's', "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": user_id, "email": email},
            )
        connection.commit()

    def emails(connection: Connection) -> dict[int, str]:
        return dict(connection.execute(text("SELECT id, email FROM users")).tuples().all())

    run_sync(empty_database, insert)
    with caplog.at_level(logging.WARNING, logger="alembic"):
        command.upgrade(config, "head")
    assert run_sync(empty_database, emails) == EMAILS_AFTER
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3, warnings
    assert any(w.startswith("users 2, 3 have one email address") for w in warnings)
    assert any(w.startswith("users 5, 6 have one email address") for w in warnings)
    assert any(w.startswith("user 9: its email's domain has no IDNA ASCII form") for w in warnings)
    assert not any("@" in warning for warning in warnings)  # ids, never addresses

    command.downgrade(config, "0003")  # nothing to undo: the same addresses
    assert run_sync(empty_database, emails) == EMAILS_AFTER

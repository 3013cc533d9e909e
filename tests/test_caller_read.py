"""The caller's read (`app/authentication.py`): on asyncpg it runs on the driver's connection,
outside SQLAlchemy's execution layer. It must give exactly what the ordinary read gives, and a
connection that broke under it must cost the caller nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import inspect, text

from app.authentication import read_caller
from app.db.base import Base
from app.db.database import Database
from app.db.rows import read_by_id
from app.main import create_app
from app.models.post import Post
from app.models.user import User
from tests.conftest import (
    ADMIN_PG_URL,
    AuthHeaders,
    UserFactory,
    asgi_client,
    delete_all_rows,
    make_settings,
)

on_postgresql = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


def column_values(row: Base) -> dict[str, object]:
    return {attr.key: attr.value for attr in inspect(row).attrs}


@on_postgresql
async def test_the_driver_read_gives_what_the_ordinary_read_gives(
    app: FastAPI, make_user: UserFactory
) -> None:
    database: Database = app.state.database
    assert database.reads_on_driver  # asyncpg, no transaction pooler
    user = await make_user("same@example.com", full_name="Ada", supabase_id="sb-1")
    on_driver = await read_caller(database, user.id)
    database.reads_on_driver = False
    try:
        on_engine = await read_caller(database, user.id)
    finally:
        database.reads_on_driver = True
    assert on_driver is not None and on_engine is not None
    assert column_values(on_driver) == column_values(on_engine)
    assert column_values(on_driver)["email"] == "same@example.com"
    assert inspect(on_driver).detached
    assert await read_caller(database, user.id + 1000) is None


async def test_only_asyncpg_reads_on_the_driver(app: FastAPI, backend: str) -> None:
    database: Database = app.state.database
    assert database.reads_on_driver is (backend == "postgresql")


@pytest.fixture
async def one_connection_app(database_url: str) -> AsyncIterator[FastAPI]:
    settings = make_settings(database_url, DATABASE_POOL_SIZE=1, DATABASE_MAX_OVERFLOW=0)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        try:
            yield application
        finally:
            await delete_all_rows(application.state.database)


@on_postgresql
async def test_a_killed_pooled_connection_costs_the_caller_nothing(
    one_connection_app: FastAPI,
    make_user: UserFactory,
    auth: AuthHeaders,
    app_log: pytest.LogCaptureFixture,
) -> None:
    """The pool's only connection is killed by the server (a restart, a failover, an idle
    timeout): the read on it fails, the connection is discarded, and the read is done again on
    a new one, so the caller gets 200, not 503."""
    user = await make_user("killed@example.com")
    headers = auth(user)
    async with asgi_client(one_connection_app) as http:
        assert (await http.get("/auth/me", headers=headers)).status_code == 200
        database: Database = one_connection_app.state.database
        async with database.engine.connect() as connection:  # the pool's one connection
            pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        with psycopg.connect(ADMIN_PG_URL, autocommit=True) as admin:
            killed = admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        assert killed == (True,)
        for _ in range(3):
            answer = await http.get("/auth/me", headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["user"]["email"] == "killed@example.com"
    [retried] = [r.getMessage() for r in app_log.records if "by id failed" in r.getMessage()]
    assert "connection" in retried.split("(", 1)[1], retried


async def test_a_read_by_id_in_a_read_session_gives_what_the_session_gives(
    app: FastAPI, make_user: UserFactory
) -> None:
    """`read_by_id` (app/db/rows.py) in a read session reads outside the ORM (on the driver on
    asyncpg): the same values as `session.get`, detached; in a write session it is
    `session.get` (the object joins the unit of work)."""
    database: Database = app.state.database
    author = await make_user("author@example.com", full_name="Ada")
    async with database.sessionmaker() as session:
        post = await Post.create(session, title="Hello", body="World", author_id=author.id)
        await session.commit()
    for model, id in ((User, author.id), (Post, post.id)):
        async with database.sessionmaker() as session:
            in_session = await read_by_id(session, model, id)
            assert in_session is not None and in_session in session
            expected = column_values(in_session)
        async with database.read_sessionmaker() as session:
            read = await read_by_id(session, model, id)
            assert read is not None and inspect(read).detached
            assert column_values(read) == expected
            assert await read_by_id(session, model, id + 1000) is None

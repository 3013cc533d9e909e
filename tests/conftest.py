"""Test harness: the suite runs against SQLite and PostgreSQL.

- `backend` is a session fixture with two params; every test that uses `client`, `app` or
  `db_settings` runs once per database, except those marked `@one_database` (they never reach
  the database: once, on SQLite, is enough).
- PostgreSQL: a fresh database per run on TEST_POSTGRES_URL (default: the local server), migrated
  with Alembic, dropped at the end. Unreachable → those tests are skipped with the reason, except
  in CI (CI=true), where that is an error.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
from alembic import command
from fastapi import FastAPI
from psycopg import sql

from app.config import Settings
from app.db.base import Base
from app.db.database import Database
from app.main import create_app
from app.models.user import User
from app.security import issue_token
from app.supabase.fake import FakeSupabase
from manage import alembic_config
from tests.hermetic import TEST_SECRET as TEST_SECRET

if TYPE_CHECKING:
    from tests.processes import ManageForks

PROJECT_ROOT = Path(__file__).resolve().parent.parent

ADMIN_PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"

_postgres_skip_reason: list[str] = []
POSTGRES_SKIPPED = ": PostgreSQL half skipped"

# A suite started in the background (`nohup … &`, `&` in a script without job control) inherits
# SIGINT ignored, and so would every process its tests start: a test that stops one with SIGINT
# (Ctrl-C) would wait for nothing. With a handler here, started processes get the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "APP_ENV": "test",
        "CORS_ORIGINS": "http://localhost:3000,http://localhost:5173",
        "RATE_LIMIT_EXCHANGE": "100000/minute",  # tests/test_rate_limit.py sets its own
        "RATE_LIMIT_ADMIN_LOGIN": "100000/minute",  # tests/test_admin.py sets its own
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def migrate(settings: Settings, revision: str = "head") -> None:
    config = alembic_config(settings)
    config.attributes["configure_logger"] = False
    command.upgrade(config, revision)


class PostgresServer:
    """Creates and drops throwaway databases on the test PostgreSQL server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def create_database(self, prefix: str = "megapolis_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def url_for(self, name: str, driver: str = "asyncpg") -> str:
        base = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        user = base.get("user", "postgres")
        password = f":{base['password']}" if base.get("password") else ""
        host = base.get("host", "127.0.0.1")
        port = base.get("port", 5432)
        return f"postgresql+{driver}://{user}{password}@{host}:{port}/{name}"


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite file for one test module: for tests that start a server process."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'megapolis.db'}"
    migrate(make_settings(url))
    return url


@pytest.fixture(scope="module")
def forks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManageForks]:
    """`manage.py` commands of one test module, each a new process forked from one that imported
    manage.py once (tests/processes.py `ManageForks`): for many short commands; the plain
    subprocess tests keep a real cold start covered."""
    from tests.processes import manage_forks  # tests.processes imports this module

    with manage_forks(PROJECT_ROOT, tmp_path_factory.mktemp("forks")) as running:
        yield running


@pytest.fixture
def app_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Records of the `app` loggers (which do not propagate to the root logger caplog watches)."""
    logger = logging.getLogger("app")
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    try:
        with psycopg.connect(ADMIN_PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = f"PostgreSQL at {ADMIN_PG_URL} is not reachable: {cause}"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires the PostgreSQL tests to run")
        pytest.skip(f"{reason}{POSTGRES_SKIPPED}")
    return PostgresServer(ADMIN_PG_URL)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked `minutes` first (in order otherwise): `make test` hands out whole files
    in collection order to its processes, and one that started such a test last would run it
    alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("minutes") is None)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keeps the reason of the first test skipped for want of PostgreSQL, for the banner. From
    the reports, not the fixture: under `make test` (pytest-xdist) the fixture runs in worker
    processes, and only their reports reach the process that writes the summary."""
    if _postgres_skip_reason or not report.skipped or not isinstance(report.longrepr, tuple):
        return
    message = report.longrepr[2].removeprefix("Skipped: ")
    if message.endswith(POSTGRES_SKIPPED):
        _postgres_skip_reason.append(message.removesuffix(POSTGRES_SKIPPED))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _postgres_skip_reason:
        terminalreporter.write_sep("!", "PostgreSQL half of the suite SKIPPED", yellow=True)
        terminalreporter.write_line(_postgres_skip_reason[0])
        if "TEST_POSTGRES_URL" in os.environ:
            hint = "Check TEST_POSTGRES_URL (or unset it to use 127.0.0.1:5432) to run it."
        else:
            hint = "Start PostgreSQL on 127.0.0.1:5432, or set TEST_POSTGRES_URL, to run it."
        terminalreporter.write_line(hint)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


one_database = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
"""`@one_database` on a test that goes through the app but never reaches the database (refused
before it, or answered without it): the same code runs whatever the database, so it runs once,
on SQLite, instead of once per database."""


@pytest.fixture(scope="session")
def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated, empty database for this run."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "megapolis.db"
        url = f"sqlite+aiosqlite:///{path}"
        migrate(make_settings(url))
        yield url
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    url = server.url_for(name)
    try:
        migrate(make_settings(url))
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture(scope="session")
def db_settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
async def app(db_settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(db_settings)
    async with application.router.lifespan_context(application):
        yield application


async def delete_all_rows(database: Database) -> None:
    """Empty every table (children first), whatever tables the models define: each test starts
    from an empty, migrated database."""
    async with database.sessionmaker() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())
        await session.commit()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    await delete_all_rows(app.state.database)


UserFactory = Callable[..., Awaitable[User]]


@pytest.fixture
def make_user(app: FastAPI, client: httpx.AsyncClient) -> UserFactory:
    """Insert a user straight into the database (bypassing the API)."""

    async def factory(
        email: str | None = None,
        *,
        is_superuser: bool = False,
        is_active: bool = True,
        full_name: str | None = None,
        supabase_id: str | None = None,
    ) -> User:
        database: Database = app.state.database
        async with database.sessionmaker() as session:
            user = await User.create(
                session,
                email=email or f"user-{uuid.uuid4().hex[:8]}@example.com",
                is_superuser=is_superuser,
                is_active=is_active,
                full_name=full_name,
                supabase_id=supabase_id,
            )
            await session.commit()
            return user

    return factory


AuthHeaders = Callable[[User], dict[str, str]]


@pytest.fixture
def auth(app: FastAPI) -> AuthHeaders:
    """`auth(user)` → headers carrying a fresh API token for that user."""

    def headers(user: User) -> dict[str, str]:
        issued = issue_token(app.state.settings, user)
        return {"Authorization": f"Bearer {issued.token}"}

    return headers


# --- Supabase: a loopback fake Supabase Auth server, and apps pointed at it (docs/supabase.md) ---


@pytest.fixture(scope="session")
def supabase_fake_server() -> Iterator[FakeSupabase]:
    with FakeSupabase() as fake:
        yield fake


@pytest.fixture
def supabase_fake(supabase_fake_server: FakeSupabase) -> FakeSupabase:
    """The fake Supabase, emptied: no users, no recorded calls, no scripted answers."""
    supabase_fake_server.reset()
    return supabase_fake_server


def supabase_settings(database_url: str, fake: FakeSupabase, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "SUPABASE_URL": fake.url,
        "SUPABASE_SERVICE_ROLE_KEY": fake.service_role_key,
        "SUPABASE_CONNECT_TIMEOUT": 1.0,
        "SUPABASE_READ_TIMEOUT": 2.0,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


SupabaseAppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def supabase_app_factory(database_url: str, supabase_fake: FakeSupabase) -> SupabaseAppFactory:
    """`async with supabase_app_factory(**settings) as app:` an app whose SUPABASE_URL is the
    fake, lifespan running; the users it made are deleted afterwards."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[FastAPI]:
        application = create_app(supabase_settings(database_url, supabase_fake, **overrides))
        async with application.router.lifespan_context(application):
            try:
                yield application
            finally:
                await delete_all_rows(application.state.database)

    return factory


def asgi_client(application: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def supabase_app(supabase_app_factory: SupabaseAppFactory) -> AsyncIterator[FastAPI]:
    async with supabase_app_factory() as application:
        yield application


@pytest.fixture
async def supabase_client(supabase_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `supabase_app`: GET /auth/verify_supabase_token reaches the fake."""
    async with asgi_client(supabase_app) as http:
        yield http

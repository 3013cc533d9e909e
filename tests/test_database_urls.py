"""DATABASE_URL as people paste it: checked when the settings are read, and libpq's parameters
reaching the server with either driver (the local PostgreSQL, without TLS; TLS itself is in
tests/test_postgres_tls.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app.config import ConfigurationError, Settings
from app.db.engine import create_engine
from app.db.errors import describe_database_error, diagnose
from tests.conftest import PROJECT_ROOT, PostgresServer, make_settings

DRIVERS = ("asyncpg", "psycopg")


@pytest.fixture(autouse=True)
def no_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """PGSSLMODE and friends would change what both drivers do."""
    for name in list(os.environ):
        if name.startswith("PG"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+asyncpg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgres+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg_async://u@h/d", "postgresql+psycopg://u@h/d"),
        ("  postgresql://u@h/d  ", "postgresql+asyncpg://u@h/d"),
        # Supabase's poolers (session 5432, transaction 6543), as the dashboard gives them.
        (
            "postgresql://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
            "postgresql+asyncpg://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
        ),
        # Neon's: sslmode and channel_binding (asyncpg cannot bind channels: dropped there).
        (
            "postgresql://u:p@ep-x.eu-central-1.aws.neon.tech/neondb?sslmode=require&channel_binding=require",
            "postgresql+asyncpg://u:p@ep-x.eu-central-1.aws.neon.tech/neondb?channel_binding=require&sslmode=require",
        ),
        (
            "postgres://u:p@db.example.com:25060/defaultdb?sslmode=verify-full&sslrootcert=/ca.crt",
            "postgresql+asyncpg://u:p@db.example.com:25060/defaultdb?sslmode=verify-full&sslrootcert=%2Fca.crt",
        ),
        # libpq: sslrootcert=system implies verify-full.
        (
            "postgresql://u@h/d?sslrootcert=system",
            "postgresql+asyncpg://u@h/d?sslmode=verify-full&sslrootcert=system",
        ),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
        ("sqlite:///data/x.db", f"sqlite+aiosqlite:///{PROJECT_ROOT / 'data' / 'x.db'}"),
        ("sqlite+aiosqlite:////srv/x.db", "sqlite+aiosqlite:////srv/x.db"),
    ],
)
def test_accepted_urls(given: str, expected: str) -> None:
    assert make_settings(given).DATABASE_URL == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("foo", "DATABASE_URL is not a database URL; set it like postgresql://"),
        ("host=db user=app password=x", "looks like a libpq keyword/value string"),
        ("mysql://u:p@h/d", "DATABASE_URL is a mysql URL; this API works with PostgreSQL and"),
        ("mongodb+srv://u:p@h/d", "DATABASE_URL is a mongodb URL"),
        ("postgresql+psycopg2://u@h/d", "asks for the driver 'psycopg2', which this API does not"),
        ("postgresql+pg8000://u@h/d", "asks for the driver 'pg8000'"),
        ("sqlite+pysqlite:///x.db", "set sqlite+aiosqlite:///path.db"),
        ("postgresql://u@h:port/d", "the port in DATABASE_URL is not a number"),
        ("postgresql://u:p@ss@h/d", "percent-encode it as %40"),
        ("postgresql://u@h/d?sslmode=required", "sslmode=required; set one of disable, allow"),
        ("postgresql://u@h/d?sslrootcert=system&sslmode=require", "go with sslmode=verify-full"),
        ("postgresql://u@h/d?connect_timeout=soon", "connect_timeout=soon; set a number"),
        ("postgresql://u@h/d?connection_limit=1", "'connection_limit', which asyncpg does not"),
        ("postgresql+psycopg://u@h/d?connection_limit=1", 'invalid connection option "connection'),
    ],
)
def test_refused_urls_say_what_to_set(given: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        make_settings(given)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)
    assert ":p@" not in str(refused.value)  # never the password


@pytest.fixture(scope="module")
def local_database(postgres_server: PostgresServer) -> Iterator[tuple[PostgresServer, str]]:
    name = postgres_server.create_database("megapolis_urls")
    try:
        yield postgres_server, name
    finally:
        postgres_server.drop_database(name)


async def server_view(settings: Settings, *names: str) -> list[str]:
    """What the server says about this connection: settings by name, then `ssl`."""
    engine = create_engine(settings, pooled=False)
    try:
        async with engine.connect() as connection:
            values = [
                str(await connection.scalar(text(f"SELECT current_setting('{name}')")))
                for name in names
            ]
            tls = await connection.scalar(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            )
            return [*values, str(tls)]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("sslmode", ["disable", "allow", "prefer"])
async def test_sslmodes_that_allow_plain_connections_work_without_tls(
    local_database: tuple[PostgresServer, str], driver: str, sslmode: str
) -> None:
    """Before: asyncpg failed with `connect() got an unexpected keyword argument 'sslmode'`."""
    server, name = local_database
    settings = make_settings(f"{server.url_for(name, driver)}?sslmode={sslmode}")
    assert await server_view(settings) == ["False"]  # the local server has no TLS


@pytest.mark.parametrize("driver", DRIVERS)
async def test_sslmode_require_against_a_server_without_tls_says_so(
    local_database: tuple[PostgresServer, str], driver: str
) -> None:
    server, name = local_database
    settings = make_settings(f"{server.url_for(name, driver)}?sslmode=require")
    with pytest.raises(Exception) as failed:
        await server_view(settings)
    assert diagnose(failed.value).lasting
    assert describe_database_error(failed.value) == (
        "the server does not accept TLS connections, and DATABASE_URL requires TLS; set "
        "sslmode=prefer (or remove sslmode) in DATABASE_URL, or turn ssl on on the server"
    )


@pytest.mark.parametrize("driver", DRIVERS)
async def test_libpq_parameters_reach_the_server(
    local_database: tuple[PostgresServer, str], driver: str
) -> None:
    """application_name and options from the URL win over ours, and the statement timeout of
    DATABASE_STATEMENT_TIMEOUT still applies next to the URL's options."""
    server, name = local_database
    url = (
        f"{server.url_for(name, driver)}?application_name=from-url"
        "&options=-c%20work_mem%3D7MB&connect_timeout=3&sslmode=prefer"
    )
    settings = make_settings(url, DATABASE_STATEMENT_TIMEOUT=4.0)
    view = await server_view(settings, "application_name", "work_mem", "statement_timeout")
    assert view == ["from-url", "7MB", "4s", "False"]


@pytest.mark.parametrize("driver", DRIVERS)
async def test_our_defaults_apply_without_parameters(
    local_database: tuple[PostgresServer, str], driver: str
) -> None:
    server, name = local_database
    settings = make_settings(server.url_for(name, driver), DATABASE_STATEMENT_TIMEOUT=4.0)
    assert await server_view(settings, "application_name", "statement_timeout") == [
        "megapolis-api",
        "4s",
        "False",
    ]


def test_relative_sqlite_path_is_the_projects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = make_settings("sqlite+aiosqlite:///./megapolis.db")
    assert settings.database_url.database == str(PROJECT_ROOT / "megapolis.db")

"""`sslmode` and `sslrootcert` for real, with both drivers: a throwaway PostgreSQL that requires
TLS (tests/postgres_tls.py), reached through the app (/readyz), the CLI (`manage.py upgrade`)
and a served `manage.py run`.

Before the mapping in app/db/url.py, every asyncpg URL with `sslmode` failed with
`connect() got an unexpected keyword argument 'sslmode'`, the server started anyway and /readyz
answered 503 without a word in the log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import text

from app.db.engine import create_engine
from app.main import create_app
from app.security import issue_token
from tests.conftest import IN_CI, make_settings
from tests.postgres_tls import TLSPostgres, find_initdb
from tests.processes import ManageForks, RunningServer, running_server

pytestmark = pytest.mark.processes  # the slow part of the suite: `make test-quick` leaves it out

DRIVERS = ("asyncpg", "psycopg")


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TLSPostgres]:
    initdb = find_initdb()
    if initdb is None:
        reason = "PostgreSQL's initdb is not installed (Debian: apt-get install postgresql)"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires the TLS tests to run")
        pytest.skip(f"{reason}: TLS tests skipped")
    with TLSPostgres.start(initdb) as server:
        yield server


@pytest.fixture(autouse=True)
def no_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """PGSSLMODE, PGSSLROOTCERT… would change what both drivers do."""
    for name in list(os.environ):
        if name.startswith("PG") or name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
            monkeypatch.delenv(name)


async def tls_version(url: str) -> str | None:
    """The TLS version of a session made from DATABASE_URL=url, None when it is not TLS."""
    engine = create_engine(make_settings(url), pooled=False)
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                )
            ).one()
            return str(row.version) if row.ssl else None
    finally:
        await engine.dispose()


async def readyz(url: str) -> httpx.Response:
    app = create_app(make_settings(url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/readyz")


@dataclass(frozen=True)
class Someone:
    id: int = 1
    email: str = "someone@example.com"
    security_stamp: str = "stamp"


async def authenticated_read(url: str) -> httpx.Response:
    """A request whose user is read from the database (503 through the exception handlers)."""
    settings = make_settings(url)
    app = create_app(settings)
    token = issue_token(settings, Someone()).token
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})


# --- what works ------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("mode", ["require", "verify-full"])
async def test_tls_through_the_app_and_the_cli(
    tls_server: TLSPostgres, driver: str, mode: str, forks: ManageForks
) -> None:
    query = {"sslmode": mode}
    if mode == "verify-full":
        query["sslrootcert"] = str(tls_server.ca_file)
    url = tls_server.url(driver, **query)

    assert (await tls_version(url) or "").startswith("TLSv1.")
    assert (await readyz(url)).json() == {"status": "ok", "database": "ok"}
    upgraded = forks.manage("upgrade", database_url=url)
    assert upgraded.returncode == 0, upgraded.stderr


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("mode", ["prefer", "allow", None])
async def test_prefer_and_allow_end_on_tls_when_the_server_requires_it(
    tls_server: TLSPostgres, driver: str, mode: str | None
) -> None:
    """libpq's semantics: `prefer` (and no sslmode) try TLS first; `allow` tries a plain
    connection, is refused by pg_hba.conf, then tries TLS."""
    url = tls_server.url(driver, **({"sslmode": mode} if mode else {}))
    assert await tls_version(url) is not None


@pytest.mark.parametrize("driver", DRIVERS)
async def test_verify_ca_accepts_another_host_name(tls_server: TLSPostgres, driver: str) -> None:
    url = tls_server.url(
        driver, host="127.0.0.2", sslmode="verify-ca", sslrootcert=tls_server.ca_file
    )
    assert await tls_version(url) is not None


@pytest.mark.parametrize("driver", DRIVERS)
async def test_sslrootcert_system_uses_the_system_authorities(
    tls_server: TLSPostgres, driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sslrootcert=system` (libpq 16+): the system's trust store, which OpenSSL takes from
    SSL_CERT_FILE when set; here it holds only the test CA."""
    url = tls_server.url(driver, sslrootcert="system")
    with pytest.raises(Exception, match="certificate verify failed"):
        await tls_version(url)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.ca_file))
    assert await tls_version(url) is not None


@pytest.mark.parametrize("driver", DRIVERS)
async def test_neon_style_url_with_channel_binding(tls_server: TLSPostgres, driver: str) -> None:
    """Neon hands out `?sslmode=require&channel_binding=require`: psycopg binds the channel,
    asyncpg cannot and ignores it (docs/configuration.md, DATABASE_URL)."""
    url = tls_server.url(driver, sslmode="require", channel_binding="require")
    assert await tls_version(url) is not None


# --- what fails, in one line that says what to set ---------------------------------------------


FAILURES = {
    "wrong CA": (
        {"sslmode": "verify-full", "sslrootcert": "WRONG_CA"},
        "127.0.0.1",
        "the server's TLS certificate is not signed by a trusted authority",
        "set sslrootcert=",
    ),
    "wrong host name": (
        {"sslmode": "verify-full", "sslrootcert": "CA"},
        "127.0.0.2",
        "the server's TLS certificate is not valid for this host name",
        "sslmode=verify-ca",
    ),
    "plain connection to a TLS-only server": (
        {"sslmode": "disable"},
        "127.0.0.1",
        "the server accepts only TLS connections from here",
        "add ?sslmode=require",
    ),
}


def failing_url(tls_server: TLSPostgres, driver: str, case: str) -> tuple[str, str, str]:
    query, host, what, fix = FAILURES[case]
    files = {"CA": tls_server.ca_file, "WRONG_CA": tls_server.wrong_ca_file}
    resolved = {key: str(files.get(value, value)) for key, value in query.items()}
    return tls_server.url(driver, host=host, **resolved), what, fix


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("case", list(FAILURES))
async def test_tls_failures_are_one_line_and_logged_behind_the_503(
    tls_server: TLSPostgres,
    driver: str,
    case: str,
    app_log: pytest.LogCaptureFixture,
    forks: ManageForks,
) -> None:
    url, what, fix = failing_url(tls_server, driver, case)

    result = forks.manage("upgrade", database_url=url)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert what in result.stderr and fix in result.stderr, result.stderr

    assert (await readyz(url)).status_code == 503
    assert (await authenticated_read(url)).status_code == 503
    for logger in ("app.db", "app.errors"):  # /readyz's, then the exception handlers'
        reasons = [r.getMessage() for r in app_log.records if r.name == logger]
        assert any(what in reason and fix in reason for reason in reasons), (logger, reasons)


@pytest.mark.parametrize("driver", DRIVERS)
def test_wrong_password_is_one_line(
    tls_server: TLSPostgres, driver: str, forks: ManageForks
) -> None:
    url = tls_server.url(driver, password="not-the-password", sslmode="require")
    for command in (["upgrade"], ["run", "--no-reload"]):
        result = forks.manage(*command, database_url=url)
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert 'password authentication failed for user "megapolis"' in result.stderr
        assert "fix the password in DATABASE_URL" in result.stderr
        assert "not-the-password" not in result.stderr


@pytest.mark.parametrize("driver", DRIVERS)
def test_served_with_sslmode_require(tls_server: TLSPostgres, driver: str) -> None:
    """The original report: `manage.py run` with a provider's `?sslmode=require` URL started,
    and /readyz answered 503 with nothing in the log."""
    url = tls_server.url(driver, sslmode="require")
    with running_server(url, kind=RunningServer) as server:
        ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
        assert ready.status_code == 200, server.text()
    assert "warning" not in server.text() and "Database unavailable" not in server.text()

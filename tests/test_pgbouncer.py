"""Behind a transaction-mode pooler (a real PgBouncer), with DATABASE_POOL_MODE=transaction.

A stock PgBouncer (pool_mode=transaction, two server connections for all clients) is started on
127.0.0.1 in front of a fresh database. The app, on asyncpg and on psycopg, then creates users and
reads them many times over — well past the point where the drivers would prepare statements —
with concurrent requests, so that consecutive transactions of one client land on different
server connections. Everything answers 2xx. A control runs the same load without the pooler
setting and gets asyncpg's prepared-statement errors, so the setting is what makes it work.

PgBouncer missing: skipped locally with the reason, a failure when CI=true (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

import app.db.engine
from app.config import Settings
from app.db.database import open_session
from app.db.engine import engine_options
from app.main import create_app
from app.models.user import User
from app.security import issue_token
from tests.conftest import IN_CI, PostgresServer, make_settings, migrate
from tests.tokens import token_for

pytestmark = pytest.mark.processes  # the slow part of the suite: `make test-quick` leaves it out

ALIAS = "megapolis"
PREPARED_STATEMENTS_OFF = (
    "statement_cache_size",
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
)
SERVER_CONNECTIONS = 2  # few, so that one client's transactions move between them
USERS = 12
READ_ROUNDS = 10  # x (USERS + 2) concurrent reads: 140 reads per run


def find_pgbouncer() -> str | None:
    # Debian installs it in /usr/sbin, which is not on every PATH.
    found = shutil.which("pgbouncer")
    if found:
        return found
    for candidate in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class PgBouncer:
    port: int
    process: subprocess.Popen[str]

    def url(self, driver: str) -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{ALIAS}"


def wait_for_port(port: int, process: subprocess.Popen[str], limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"pgbouncer exited with {process.returncode}:\n{output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"pgbouncer did not listen on 127.0.0.1:{port} within {limit} s")


@pytest.fixture(scope="module")
def pgbouncer_binary() -> str:
    binary = find_pgbouncer()
    if binary is None:
        reason = "pgbouncer is not installed (Debian/Ubuntu: apt-get install pgbouncer)"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires the transaction-pooler tests")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="module")
def pgbouncer(postgres_server: PostgresServer, pgbouncer_binary: str) -> Iterator[PgBouncer]:
    name = postgres_server.create_database("megapolis_pgbouncer")
    direct = make_url(postgres_server.url_for(name))
    # Not pytest's tmp_path: its directories are private to this user, and PgBouncer refuses to
    # run as root, so as root it runs as another user that must read its files.
    config_dir = Path(tempfile.mkdtemp(prefix="megapolis-pgbouncer-"))
    process: subprocess.Popen[str] | None = None
    try:
        migrate(make_settings(direct.render_as_string(False)))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        (config_dir / "userlist.txt").write_text(f'"{direct.username or "postgres"}" ""\n')
        (config_dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{ALIAS} = host={direct.host or '127.0.0.1'} port={direct.port or 5432} "
            f"dbname={name}{f' password={direct.password}' if direct.password else ''}\n"
            "\n[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {config_dir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {SERVER_CONNECTIONS}\n"
            "max_client_conn = 200\n"
        )
        config_dir.chmod(0o755)
        for path in config_dir.iterdir():
            path.chmod(0o644)
        command = [pgbouncer_binary, str(config_dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            command[1:1] = ["-u", "postgres" if _user_exists("postgres") else "nobody"]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        wait_for_port(port, process)
        yield PgBouncer(port, process)
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # immediate shutdown
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(config_dir, ignore_errors=True)
        postgres_server.drop_database(name)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r}"
        self.messages.append(text)


@dataclass
class LoadResult:
    statuses: list[int]
    errors: list[str]
    final_listing: str
    created: int

    @property
    def failures(self) -> list[int]:
        return [status for status in self.statuses if status >= 500]


@asynccontextmanager
async def app_client(url: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(url, DATABASE_POOL_SIZE=10, DATABASE_MAX_OVERFLOW=10, **overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def run_load(url: str, tag: str, **overrides: Any) -> LoadResult:
    """Create users, then read, update and delete them, many requests concurrently."""
    settings = make_settings(url, **overrides)
    async with open_session(settings) as session:  # the CLI's way through the pooler
        admin = await User.create(session, email=f"admin-{tag}@example.com", is_superuser=True)
        await session.commit()
    token = issue_token(settings, admin).token
    headers = {"Authorization": f"Bearer {token}"}
    errors = ErrorRecords()
    logging.getLogger("app").addHandler(errors)
    statuses: list[int] = []
    try:
        async with app_client(url, **overrides) as http:

            async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
                response = await asyncio.wait_for(
                    http.request(method, path, headers=headers, **kwargs), 30
                )
                statuses.append(response.status_code)
                return response

            created = await asyncio.gather(
                *(
                    call("POST", "/api/v1/users/", json={"email": f"u{i}-{tag}@example.com"})
                    for i in range(USERS)
                )
            )
            ids = [r.json()["id"] for r in created if r.status_code == 201]
            for _ in range(READ_ROUNDS):
                await asyncio.gather(
                    call("GET", "/auth/me"),
                    call("GET", "/api/v1/users/", params={"limit": 100}),
                    *(call("GET", f"/api/v1/users/{user_id}") for user_id in ids),
                )
            await asyncio.gather(
                *(
                    call("PATCH", f"/api/v1/users/{user_id}", json={"full_name": "Renamed"})
                    for user_id in ids
                )
            )
            await asyncio.gather(*(call("DELETE", f"/api/v1/users/{i}") for i in ids))
            listed = await call("GET", "/api/v1/users/", params={"limit": 100})
    finally:
        logging.getLogger("app").removeHandler(errors)
    return LoadResult(statuses, errors.messages, listed.text, len(ids))


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_transaction_pooler_under_load(pgbouncer: PgBouncer, driver: str) -> None:
    result = await run_load(pgbouncer.url(driver), f"ok-{driver}", DATABASE_POOL_MODE="transaction")

    expected = USERS + READ_ROUNDS * (USERS + 2) + 2 * USERS + 1
    assert len(result.statuses) == expected
    assert result.failures == [] and result.errors == [], (result.failures, result.errors[:3])
    assert sorted(set(result.statuses)) == [200, 201, 204]
    assert result.created == USERS
    assert all(  # all deleted again
        f'"u{i}-ok-{driver}@example.com"' not in result.final_listing for i in range(USERS)
    )
    assert f'"admin-ok-{driver}@example.com"' in result.final_listing


async def test_with_prepared_statements_asyncpg_breaks(
    pgbouncer: PgBouncer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: the same load, with everything of the pooler setting but the part that turns
    asyncpg's prepared statements off, fails with prepared-statement errors — so the test
    above does need that part."""

    def with_prepared_statements(settings: Settings) -> dict[str, Any]:
        options = engine_options(settings)
        for key in PREPARED_STATEMENTS_OFF:
            options["connect_args"].pop(key)
        return options

    monkeypatch.setattr(app.db.engine, "engine_options", with_prepared_statements)
    result = await run_load(pgbouncer.url("asyncpg"), "control", DATABASE_POOL_MODE="transaction")

    assert result.failures, "no failure: PgBouncer did not mix the transactions' connections"
    assert any("prepared statement" in message for message in result.errors), result.errors[:3]


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_without_the_pooler_setting_pgbouncer_refuses_the_connection(
    pgbouncer: PgBouncer, driver: str
) -> None:
    """Control: in session mode the drivers send statement_timeout when they connect, which a
    stock PgBouncer refuses (the pooler setting leaves it out). The app says 503, not 500."""
    url = pgbouncer.url(driver)
    with pytest.raises(Exception, match="unsupported startup parameter"):
        async with open_session(make_settings(url, DATABASE_POOL_MODE="session")) as session:
            await session.execute(text("SELECT 1"))

    async with app_client(url, DATABASE_POOL_MODE="session") as http:
        for path in ("/readyz", "/api/v1/users/me"):
            token = token_for(make_settings(url), 1, "nobody@example.com")
            response = await http.get(path, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 503, response.text
            assert "unavailable" in response.json()["detail"].lower()


@pytest.mark.parametrize(
    ("url", "mode", "pooled"),
    [
        ("postgresql+asyncpg://u@pooler.supabase.com:6543/postgres", "auto", True),
        ("postgresql+psycopg://u@pooler.supabase.com:6543/postgres", "auto", True),
        ("postgresql+asyncpg://u@h:5432/d?pgbouncer=true", "auto", True),
        ("postgresql+asyncpg://u@h:5432/d", "transaction", True),
        ("postgresql+psycopg://u@h:5432/d", "transaction", True),
        ("postgresql+asyncpg://u@h:5432/d", "auto", False),
        ("postgresql+psycopg://u@h:5432/d", "auto", False),
        ("postgresql+asyncpg://u@h:6543/d", "session", False),
    ],
)
def test_engine_options_for_poolers(url: str, mode: str, pooled: bool) -> None:
    """What the pooler mode changes in the driver's arguments (auto mode: port 6543 or
    `?pgbouncer=true`)."""
    connect_args = engine_options(make_settings(url, DATABASE_POOL_MODE=mode))["connect_args"]
    if "+asyncpg" in url:
        prepared_off = (
            connect_args.get("statement_cache_size") == 0
            and connect_args.get("prepared_statement_cache_size") == 0
            and callable(connect_args.get("prepared_statement_name_func"))
        )
        startup = connect_args["server_settings"]
        assert ("statement_timeout" in startup) is not pooled
    else:
        prepared_off = "prepare_threshold" in connect_args and (
            connect_args["prepare_threshold"] is None
        )
        startup = connect_args
        assert ("options" in startup) is not pooled
    assert prepared_off is pooled
    # Client-side bounds hold either way (a pooler never sees them).
    assert connect_args.get("command_timeout") or connect_args.get("async_creator_fn")

"""The database goes away (refused) or hangs (stalled) under a running server, then comes back.

A real uvicorn server (in a thread, with its own event loop) serves an app whose DATABASE_URL
goes through tests/tcp_proxy.py. While the proxy is cut or stalled, the DB-backed endpoints answer
503 with a `detail` within a bound set by the configured timeouts, `/healthz` and `/` keep
answering 200 at once, and no request hangs; after the proxy is restored the same app instance
serves again by itself, and every pooled connection is returned.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db.database import Database, open_session
from app.main import create_app
from app.models.user import User
from app.security import issue_token
from tests.conftest import PostgresServer, make_settings, migrate
from tests.tcp_proxy import TCPProxy

pytestmark = pytest.mark.processes  # the slow part of the suite: `make test-quick` leaves it out

CONNECT_TIMEOUT = 1.0  # psycopg (libpq) rounds connect_timeout up to 2 s
STATEMENT_TIMEOUT = 1.0  # drivers give up on a silent server after this + 1 s
POOL_TIMEOUT = 1.0
HANG_LIMIT = 15.0  # a request that takes this long is hanging
PING_IDLE = 0.5  # pooled connections idle longer than this are pinged before use
# A request when the database stalls: its first statement, or the ping of a connection that sat
# idle, waits STATEMENT_TIMEOUT + 1; asyncpg then spends up to 2 s trying to close that connection
# politely, and after a failed ping the pool tries a new connection (the connect timeout; libpq's
# is at least 2 s). Plus slack for a loaded machine.
STALLED_BOUND = STATEMENT_TIMEOUT + 1 + 2 + max(CONNECT_TIMEOUT, 2) + 1.5
REFUSED_BOUND = 1.5  # a refused connection fails at once; slack for a loaded machine
FAST = 1.0  # what never touches the database (vs. seconds for what waits on it)
KEEP_ALIVE = 600  # longer than a test: the server never closes an idle client connection

log = logging.getLogger(__name__)

DB_PATHS = ("/readyz", "/auth/me", "/api/v1/users/me", "/api/v1/users/")
DB_FREE_PATHS = ("/healthz", "/")


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 (random port), running `app` with its lifespan."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # The client keeps its connections alive across the whole test, some idle while the stalled
    # requests wait. With uvicorn's 5 s keep-alive timeout the server could close one just as the
    # client reused it (a transport error, not the server's answer): the server keeps them longer
    # than any test runs.
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=KEEP_ALIVE,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        sock.close()


class ErrorRecords(logging.Handler):
    """Collects ERROR records of the `app` loggers (which do not propagate to the root)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Outcome:
    path: str
    status: int
    detail: str | None
    elapsed: float


@dataclass
class Running:
    app: FastAPI
    settings: Settings
    proxy: TCPProxy
    http: httpx.AsyncClient
    headers: dict[str, str]

    async def get(self, path: str) -> Outcome:
        started = time.monotonic()
        # A request that never answers fails the test instead of hanging it.
        response = await asyncio.wait_for(self.http.get(path, headers=self.headers), HANG_LIMIT)
        body = response.json()
        detail = body.get("detail") if isinstance(body, dict) else None
        return Outcome(path, response.status_code, detail, time.monotonic() - started)

    async def get_all(self, paths: tuple[str, ...]) -> list[Outcome]:
        return list(await asyncio.gather(*(self.get(path) for path in paths)))

    def checked_out(self) -> int:
        database: Database = self.app.state.database
        return database.engine.pool.checkedout()  # type: ignore[attr-defined,no-any-return]

    async def idle(self) -> None:
        """Let every pooled connection sit idle long enough to be pinged on its next use."""
        await self.settle()
        await asyncio.sleep(PING_IDLE + 0.1)

    async def settle(self) -> None:
        """Wait until every request has given its connection back (cleanup may run after the
        response was sent)."""
        deadline = time.monotonic() + HANG_LIMIT
        while self.checked_out():
            assert time.monotonic() < deadline, f"{self.checked_out()} connections never returned"
            await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def fault_database(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database("megapolis_faults")
    try:
        migrate(make_settings(postgres_server.url_for(name)))
        yield name
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=["asyncpg", "psycopg"])
async def running(
    request: pytest.FixtureRequest, postgres_server: PostgresServer, fault_database: str
) -> AsyncIterator[Running]:
    driver = str(request.param)
    direct_url = postgres_server.url_for(fault_database, driver)
    async with open_session(make_settings(direct_url)) as session:
        admin = await User.create(
            session, email=f"admin-{driver}-{time.monotonic_ns()}@example.com", is_superuser=True
        )
        await session.commit()

    errors = ErrorRecords()
    app_logger = logging.getLogger("app")
    direct = make_url(direct_url)
    with TCPProxy(
        upstream_port=direct.port or 5432, upstream_host=direct.host or "127.0.0.1"
    ) as proxy:
        proxied_url = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        settings = make_settings(
            proxied_url,
            DATABASE_CONNECT_TIMEOUT=CONNECT_TIMEOUT,
            DATABASE_STATEMENT_TIMEOUT=STATEMENT_TIMEOUT,
            DATABASE_POOL_TIMEOUT=POOL_TIMEOUT,
            DATABASE_PING_IDLE_SECONDS=PING_IDLE,
            LOG_LEVEL="WARNING",
        )
        app = create_app(settings)
        app_logger.addHandler(errors)
        try:
            with serve_in_thread(app) as base_url:
                token = issue_token(settings, admin).token
                async with httpx.AsyncClient(base_url=base_url, timeout=HANG_LIMIT + 5) as http:
                    yield Running(app, settings, proxy, http, {"Authorization": f"Bearer {token}"})
        finally:
            app_logger.removeHandler(errors)
    # Infrastructure failures are expected here, not bugs: nothing may log an unhandled error.
    assert [r.getMessage() for r in errors.records] == []


async def assert_all_ok(running: Running) -> None:
    outcomes = await running.get_all(DB_PATHS + DB_FREE_PATHS)
    assert [(o.path, o.status) for o in outcomes] == [(p, 200) for p in DB_PATHS + DB_FREE_PATHS]


async def assert_unavailable(running: Running, bound: float, *, stalled: bool) -> float:
    """Every DB-backed endpoint answers 503 within `bound`, the others 200 at once (and, when
    the database is stalled, while the DB-backed requests are still waiting on it: the event
    loop is not blocked). Returns the slowest DB-backed answer."""
    db_requests = asyncio.ensure_future(running.get_all(DB_PATHS))
    if stalled:
        await asyncio.sleep(0.2)  # the DB-backed requests are now waiting on the database
    meanwhile = await running.get_all(DB_FREE_PATHS)
    if stalled:
        assert not db_requests.done()
    outcomes = await db_requests
    for outcome in meanwhile:
        assert outcome.status == 200, outcome
        assert outcome.elapsed < FAST, outcome
    for outcome in outcomes:
        assert outcome.status == 503, outcome
        assert outcome.detail and "unavailable" in outcome.detail.lower(), outcome
        assert outcome.elapsed < bound, outcome
    return max(o.elapsed for o in outcomes)


async def assert_recovers(running: Running) -> float:
    """The same app instance serves again by itself: /readyz turns 200 quickly, then all is well
    and no connection is left checked out. Returns the time to the first 200."""
    restored = time.monotonic()
    while (await running.get("/readyz")).status != 200:
        assert time.monotonic() - restored < 5, "not ready 5 s after the database came back"
        await asyncio.sleep(0.05)
    recovered_in = time.monotonic() - restored
    await assert_all_ok(running)
    await running.settle()
    return recovered_in


async def test_database_refusing_connections(running: Running) -> None:
    await assert_all_ok(running)  # the pool now holds live connections...
    await running.settle()
    running.proxy.cut()  # ...which the cut breaks; new ones are refused

    # On the broken pooled connections (used a moment ago, so not pinged), then on new ones.
    slowest = await assert_unavailable(running, REFUSED_BOUND, stalled=False)
    slowest = max(slowest, await assert_unavailable(running, REFUSED_BOUND, stalled=False))
    running.proxy.restore()
    recovered_in = await assert_recovers(running)

    await running.idle()  # pooled connections that sat idle are pinged first: that fails too
    running.proxy.cut()
    slowest = max(slowest, await assert_unavailable(running, REFUSED_BOUND, stalled=False))
    running.proxy.restore()
    recovered_in = max(recovered_in, await assert_recovers(running))
    log.info("refused: 503 within %.2fs, recovered in %.2fs", slowest, recovered_in)


async def test_database_stalling(running: Running) -> None:
    await assert_all_ok(running)
    await running.settle()
    running.proxy.stall()  # every byte held, either way, on old and new connections

    # Pooled connections used a moment ago: the request's first statement waits.
    slowest_statement = await assert_unavailable(running, STALLED_BOUND, stalled=True)
    running.proxy.restore()
    recovered_in = await assert_recovers(running)

    # Pooled connections that sat idle: their ping waits, then a new connection does.
    await running.idle()
    running.proxy.stall()
    slowest_ping = await assert_unavailable(running, STALLED_BOUND, stalled=True)
    running.proxy.restore()
    recovered_in = max(recovered_in, await assert_recovers(running))
    log.info(
        "stalled: 503 within %.2fs (statement) / %.2fs (idle ping), recovered in %.2fs",
        slowest_statement,
        slowest_ping,
        recovered_in,
    )


async def test_readiness_follows_the_database_back_and_forth(running: Running) -> None:
    """Several cuts in a row on the same instance: no state is left behind by a failure."""
    for _ in range(3):
        assert (await running.get("/readyz")).status == 200
        running.proxy.cut()
        down = await running.get("/readyz")
        assert down.status == 503 and down.elapsed < REFUSED_BOUND
        running.proxy.restore()
        await assert_recovers(running)

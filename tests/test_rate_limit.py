"""RATE_LIMIT_EXCHANGE on GET /auth/verify_supabase_token, per client address: over it 429 with
Retry-After, and Supabase is not asked (the fake records every call it gets).

- in one app, with the counters in memory and in a real Redis (`redis-server` started by the
  test on a free port): the 429, Retry-After's value, one count per address (IPv6 per /64),
  other endpoints not limited, the schema;
- Redis trouble: stopped mid-run or stalled (SIGSTOP), the exchange still answers, in a
  bounded time, with one warning rather than one per request, and /readyz is unaffected;
- real `manage.py run` servers: two of them share one limit through Redis; X-Forwarded-For
  counts only when the peer is a trusted proxy (FORWARDED_ALLOW_IPS);
- a malformed setting stops the start with one line.

The limiter does not touch the database, so these tests run on SQLite only.
`redis-server` missing: the Redis tests skip with the reason, or fail with CI=true.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import delete, event

from app.config import Settings
from app.db.database import Database
from app.main import create_app
from app.models.user import User
from app.rate_limit.limiter import CALL_BUDGET, KEY_PREFIX
from app.supabase.fake import FakeSupabase
from tests.conftest import TEST_SECRET, supabase_settings
from tests.processes import ManageForks, RunningServer, running_server
from tests.redis_server import RedisServer, started_redis_server
from tests.supabase_headers import EXCHANGE, bearer

STORAGES = ["memory", pytest.param("redis", marks=pytest.mark.processes)]  # a redis-server each
MINUTE_LIMIT = "3/minute"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with started_redis_server() as server:
        yield server


@pytest.fixture(params=STORAGES)
def storage_settings(request: pytest.FixtureRequest) -> dict[str, str | None]:
    """Settings for each place the counters can live: this process's memory, or Redis."""
    if request.param == "memory":
        return {"REDIS_URL": None}
    server: RedisServer = request.getfixturevalue("redis_server")
    return {"REDIS_URL": server.url}


AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def make_app(sqlite_url: str, supabase_fake: FakeSupabase) -> AppFactory:
    """`async with make_app(RATE_LIMIT_EXCHANGE=..., REDIS_URL=...) as app:` lifespan running,
    Supabase is the fake; the users made are deleted afterwards."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[FastAPI]:
        application = create_app(supabase_settings(sqlite_url, supabase_fake, **overrides))
        async with application.router.lifespan_context(application):
            try:
                yield application
            finally:
                database: Database = application.state.database
                async with database.sessionmaker() as session:
                    await session.execute(delete(User))
                    await session.commit()

    return factory


def asgi_client(application: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client of `application` whose requests come from `address`."""
    transport = httpx.ASGITransport(app=application, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def signed_in(fake: FakeSupabase) -> dict[str, str]:
    """Headers carrying a Supabase token of a new, confirmed user."""
    return bearer(fake.sign_in(fake.create_user(f"u-{uuid.uuid4().hex[:8]}@example.com")))


class RateLimitLog:
    """The records of the `app.rate_limit` logger. The `app` loggers do not propagate to the
    root logger, where caplog listens, so its handler is added to this one; each record once,
    should pytest have put the handler on `app` as well."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def at(self, level: int) -> list[str]:
        records = {
            id(r): r
            for r in self.caplog.records
            if r.name == "app.rate_limit" and r.levelno == level
        }
        return [r.getMessage() for r in records.values()]


@pytest.fixture
def rate_limit_log(caplog: pytest.LogCaptureFixture) -> Iterator[RateLimitLog]:
    logger = logging.getLogger("app.rate_limit")
    logger.addHandler(caplog.handler)
    try:
        yield RateLimitLog(caplog)
    finally:
        logger.removeHandler(caplog.handler)


def assert_refused(response: httpx.Response) -> int:
    """A 429 as documented; returns its Retry-After."""
    assert response.status_code == 429, response.text
    assert response.json() == {"detail": response.json()["detail"]}
    assert "too many requests" in response.json()["detail"].lower()
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


# -- the limit in one app -----------------------------------------------------------------------


async def test_over_the_limit_429_and_supabase_is_not_asked(
    make_app: AppFactory, supabase_fake: FakeSupabase, storage_settings: dict[str, str | None]
) -> None:
    async with (
        make_app(RATE_LIMIT_EXCHANGE=MINUTE_LIMIT, **storage_settings) as app,
        asgi_client(app) as client,
    ):
        checkouts: list[object] = []
        pool = app.state.database.engine.sync_engine.pool
        event.listen(pool, "checkout", lambda *args: checkouts.append(args))
        started = time.monotonic()
        for _ in range(3):
            response = await client.get(EXCHANGE, headers=signed_in(supabase_fake))
            assert response.status_code == 200, response.text
        assert len(supabase_fake.user_calls) == 3
        assert checkouts, "an accepted exchange uses the database"

        checkouts.clear()
        for _ in range(3):
            refused = await client.get(EXCHANGE, headers=signed_in(supabase_fake))
            # The first accepted request leaves the window a minute after it was made.
            assert 60 - (time.monotonic() - started) <= assert_refused(refused) <= 60
            assert refused.headers["x-request-id"]  # the usual headers too
        assert len(supabase_fake.user_calls) == 3, "Supabase was asked for a refused request"
        assert checkouts == [], "a refused request used a database connection"

        # No token at all is refused the same way: the limit comes first.
        assert_refused(await client.get(EXCHANGE))
        cross_origin = await client.get(EXCHANGE, headers={"Origin": "http://localhost:3000"})
        assert_refused(cross_origin)
        assert "retry-after" in cross_origin.headers["access-control-expose-headers"].lower()


async def test_retry_after_is_when_a_request_is_accepted_again(
    make_app: AppFactory, supabase_fake: FakeSupabase, storage_settings: dict[str, str | None]
) -> None:
    window = 4
    async with (
        make_app(RATE_LIMIT_EXCHANGE=f"2/{window} seconds", **storage_settings) as app,
        asgi_client(app) as client,
    ):
        started = time.time()
        for _ in range(2):
            assert (await client.get(EXCHANGE, headers=signed_in(supabase_fake))).status_code == 200
        retry_after = assert_refused(await client.get(EXCHANGE, headers=signed_in(supabase_fake)))
        elapsed = time.time() - started
        # The oldest accepted request leaves the window `window` s after it was made.
        assert window - elapsed <= retry_after <= window
        await asyncio.sleep(retry_after)
        accepted = await client.get(EXCHANGE, headers=signed_in(supabase_fake))
        assert accepted.status_code == 200, accepted.text


async def test_each_client_address_has_its_own_count(
    make_app: AppFactory, supabase_fake: FakeSupabase, storage_settings: dict[str, str | None]
) -> None:
    async with make_app(RATE_LIMIT_EXCHANGE="1/minute", **storage_settings) as app:

        async def status_from(address: str) -> int:
            async with asgi_client(app, address) as client:
                return (await client.get(EXCHANGE, headers=signed_in(supabase_fake))).status_code

        assert await status_from("198.51.100.1") == 200
        assert await status_from("198.51.100.1") == 429
        assert await status_from("198.51.100.2") == 200
        # IPv6 counts per /64: another address of the same network shares the count.
        assert await status_from("2001:db8:1:2::1") == 200
        assert await status_from("2001:db8:1:2:ffff::9") == 429
        assert await status_from("2001:db8:1:3::1") == 200
        # An IPv4-mapped IPv6 address is that IPv4 address.
        assert await status_from("::ffff:198.51.100.2") == 429
        # In-process there is no proxy: a forwarded address is not the client.
        async with asgi_client(app, "198.51.100.1") as client:
            forged = {**signed_in(supabase_fake), "X-Forwarded-For": "203.0.113.9"}
            assert (await client.get(EXCHANGE, headers=forged)).status_code == 429


async def test_other_endpoints_are_not_limited(
    make_app: AppFactory, supabase_fake: FakeSupabase, storage_settings: dict[str, str | None]
) -> None:
    async with (
        make_app(RATE_LIMIT_EXCHANGE="1/minute", **storage_settings) as app,
        asgi_client(app) as client,
    ):
        exchanged = await client.get(EXCHANGE, headers=signed_in(supabase_fake))
        assert exchanged.status_code == 200
        assert_refused(await client.get(EXCHANGE, headers=signed_in(supabase_fake)))
        api = bearer(exchanged.json()["token"])
        for _ in range(5):
            for path, headers in [
                ("/", {}),
                ("/healthz", {}),
                ("/readyz", {}),
                ("/auth/me", api),
                ("/api/v1/users/me", api),
            ]:
                response = await client.get(path, headers=headers)
                assert response.status_code == 200, (path, response.text)
                assert "retry-after" not in response.headers


async def test_the_schema_documents_the_429(make_app: AppFactory) -> None:
    async with make_app() as app, asgi_client(app) as client:
        schema = (await client.get("/openapi.json")).json()
    documented = schema["paths"][EXCHANGE]["get"]["responses"]["429"]
    assert documented["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    assert "Retry-After" in documented["headers"]


# -- where the counters live --------------------------------------------------------------------


@pytest.mark.processes
async def test_with_redis_the_counters_are_in_redis(
    make_app: AppFactory, supabase_fake: FakeSupabase, redis_server: RedisServer
) -> None:
    async with (
        make_app(RATE_LIMIT_EXCHANGE=MINUTE_LIMIT, REDIS_URL=redis_server.url) as app,
        asgi_client(app) as client,
    ):
        assert redis_server.keys() == []
        assert (await client.get(EXCHANGE, headers=signed_in(supabase_fake))).status_code == 200
        [key] = redis_server.keys()
        assert key.startswith(f"{KEY_PREFIX}:") and "/exchange/127.0.0.1/" in key
        with redis_server.client() as redis:
            assert 0 < redis.ttl(key) <= 60  # counters expire with their window
    # A second app on the same Redis (another worker, another replica) continues the count.
    async with (
        make_app(RATE_LIMIT_EXCHANGE=MINUTE_LIMIT, REDIS_URL=redis_server.url) as other,
        asgi_client(other) as client,
    ):
        for _ in range(2):
            assert (await client.get(EXCHANGE, headers=signed_in(supabase_fake))).status_code == 200
        assert_refused(await client.get(EXCHANGE, headers=signed_in(supabase_fake)))


async def test_without_redis_each_process_counts_alone(
    make_app: AppFactory, supabase_fake: FakeSupabase
) -> None:
    """Two apps (as two workers would be) each allow the whole limit: per process."""
    async with (
        make_app(RATE_LIMIT_EXCHANGE=MINUTE_LIMIT, REDIS_URL=None) as first,
        make_app(RATE_LIMIT_EXCHANGE=MINUTE_LIMIT, REDIS_URL=None) as second,
        asgi_client(first) as one,
        asgi_client(second) as two,
    ):
        for client in (one, two):
            for _ in range(3):
                response = await client.get(EXCHANGE, headers=signed_in(supabase_fake))
                assert response.status_code == 200
            assert_refused(await client.get(EXCHANGE, headers=signed_in(supabase_fake)))
        assert len(supabase_fake.user_calls) == 6


# -- Redis in trouble: fail open, bounded, logged once ------------------------------------------


@pytest.mark.processes
async def test_redis_stopped_mid_run_lets_sign_in_through_and_warns_once(
    make_app: AppFactory,
    supabase_fake: FakeSupabase,
    redis_server: RedisServer,
    rate_limit_log: RateLimitLog,
) -> None:
    async with (
        make_app(RATE_LIMIT_EXCHANGE="2/minute", REDIS_URL=redis_server.url) as app,
        asgi_client(app) as client,
    ):
        for _ in range(2):
            assert (await client.get(EXCHANGE, headers=signed_in(supabase_fake))).status_code == 200
        assert_refused(await client.get(EXCHANGE, headers=signed_in(supabase_fake)))

        redis_server.stop()
        for _ in range(6):
            response = await client.get(EXCHANGE, headers=signed_in(supabase_fake))
            assert response.status_code == 200, response.text
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["database"] == "ok"
        [warning] = rate_limit_log.at(logging.WARNING)
        assert "rate-limit storage unavailable" in warning
        assert rate_limit_log.at(logging.INFO) == []

        # Redis back (empty, as after a crash): the limit applies again, and the log says so.
        redis_server.start()
        statuses = [
            (await client.get(EXCHANGE, headers=signed_in(supabase_fake))).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        assert len(rate_limit_log.at(logging.INFO)) == 1
        assert "answers again" in rate_limit_log.at(logging.INFO)[0]
        assert len(rate_limit_log.at(logging.WARNING)) == 1


@pytest.mark.processes
async def test_a_stalled_redis_does_not_stall_sign_in(
    make_app: AppFactory,
    supabase_fake: FakeSupabase,
    redis_server: RedisServer,
    rate_limit_log: RateLimitLog,
) -> None:
    async with (
        make_app(RATE_LIMIT_EXCHANGE=MINUTE_LIMIT, REDIS_URL=redis_server.url) as app,
        asgi_client(app) as client,
    ):
        # A pooled connection exists: the stall hits a connection that is already open.
        assert (await client.get(EXCHANGE, headers=signed_in(supabase_fake))).status_code == 200
        redis_server.stall()
        try:
            for _ in range(3):
                started = time.monotonic()
                # (wait_for: should the bound be gone, fail rather than hang with Redis)
                response = await asyncio.wait_for(
                    client.get(EXCHANGE, headers=signed_in(supabase_fake)), 30
                )
                took = time.monotonic() - started
                assert response.status_code == 200, response.text
                # Bounded by the limiter's budget (plus the exchange's own work on a busy
                # machine); without the bound it would wait as long as Redis hangs.
                assert took < CALL_BUDGET + 4.0, took
            assert (await client.get("/readyz")).status_code == 200
        finally:
            redis_server.resume()
        [warning] = rate_limit_log.at(logging.WARNING)
        assert "rate-limit storage unavailable" in warning


@pytest.mark.processes
async def test_the_app_starts_and_signs_in_while_redis_is_down(
    make_app: AppFactory,
    supabase_fake: FakeSupabase,
    redis_server: RedisServer,
    rate_limit_log: RateLimitLog,
) -> None:
    redis_server.stop()
    async with (
        make_app(RATE_LIMIT_EXCHANGE="1/minute", REDIS_URL=redis_server.url) as app,
        asgi_client(app) as client,
    ):
        for _ in range(3):
            assert (await client.get(EXCHANGE, headers=signed_in(supabase_fake))).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
    assert len(rate_limit_log.at(logging.WARNING)) == 1


# -- real servers -------------------------------------------------------------------------------


def server_env(fake: FakeSupabase, **settings: str) -> dict[str, str]:
    return {
        "SUPABASE_URL": fake.url,
        "SUPABASE_SERVICE_ROLE_KEY": fake.service_role_key,
        **settings,
    }


@pytest.mark.processes
def test_two_servers_share_one_limit_through_redis(
    sqlite_url: str, supabase_fake: FakeSupabase, redis_server: RedisServer
) -> None:
    env = server_env(supabase_fake, REDIS_URL=redis_server.url, RATE_LIMIT_EXCHANGE="4/minute")
    with ExitStack() as stack:
        servers = [
            stack.enter_context(running_server(sqlite_url, kind=RunningServer, env=env))
            for _ in range(2)
        ]
        clients = [stack.enter_context(httpx.Client(base_url=s.base_url)) for s in servers]
        headers = signed_in(supabase_fake)
        statuses = [clients[i % 2].get(EXCHANGE, headers=headers).status_code for i in range(4)]
        assert statuses == [200, 200, 200, 200]
        for client in clients:
            assert_refused(client.get(EXCHANGE, headers=headers))
        assert len(supabase_fake.user_calls) == 4
        for server in servers:
            assert "Traceback" not in server.text()


class ProxiedClients:
    """Clients of one server, connecting from two loopback addresses."""

    def __init__(self, server: RunningServer, stack: ExitStack) -> None:
        self.server = server
        self.stack = stack

    def from_address(self, address: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address)
        return self.stack.enter_context(
            httpx.Client(base_url=self.server.base_url, transport=transport)
        )


@pytest.mark.processes
@pytest.mark.parametrize(
    ("forwarded_allow_ips", "proxy", "direct"),
    [
        (None, "127.0.0.1", "127.0.0.2"),  # Uvicorn's default: trust 127.0.0.1 only
        ("127.0.0.2", "127.0.0.2", "127.0.0.1"),
    ],
)
def test_the_forwarded_address_counts_only_from_a_trusted_proxy(
    sqlite_url: str,
    supabase_fake: FakeSupabase,
    monkeypatch: pytest.MonkeyPatch,
    forwarded_allow_ips: str | None,
    proxy: str,
    direct: str,
) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    env = server_env(supabase_fake, RATE_LIMIT_EXCHANGE="2/minute", REDIS_URL="")  # in memory
    if forwarded_allow_ips is not None:
        env["FORWARDED_ALLOW_IPS"] = forwarded_allow_ips

    def exchange(client: httpx.Client, forwarded_for: str) -> int:
        headers = {**signed_in(supabase_fake), "X-Forwarded-For": forwarded_for}
        return client.get(EXCHANGE, headers=headers).status_code

    with ExitStack() as stack:
        server = stack.enter_context(running_server(sqlite_url, kind=RunningServer, env=env))
        clients = ProxiedClients(server, stack)
        untrusted = clients.from_address(direct)
        trusted = clients.from_address(proxy)

        # From a peer that is not a trusted proxy, X-Forwarded-For is ignored: three claimed
        # clients are one, the peer.
        statuses = [exchange(untrusted, f"203.0.113.{n}") for n in (1, 2, 3)]
        assert statuses == [200, 200, 429]
        # From the trusted proxy, the forwarded address is the client: counted on its own.
        assert [exchange(trusted, "203.0.113.1") for _ in range(3)] == [200, 200, 429]
        assert exchange(trusted, "203.0.113.2") == 200
        assert "Traceback" not in server.text()


# -- settings -----------------------------------------------------------------------------------


@pytest.fixture
def no_rate_limit_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "RATE_LIMIT_EXCHANGE"):
        monkeypatch.delenv(name, raising=False)


def settings(**values: str) -> Settings:
    return Settings(_env_file=None, JWT_SECRET_KEY=TEST_SECRET, **values)  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_rate_limit_environment")
def test_defaults() -> None:
    defaults = settings()
    assert defaults.REDIS_URL is None
    assert defaults.RATE_LIMIT_EXCHANGE == "60/minute"


@pytest.mark.usefixtures("no_rate_limit_environment")
@pytest.mark.parametrize(
    "value",
    [
        "redis://localhost:6379/0",
        "redis://:secret@redis.internal:6380",
        "rediss://user:secret@cache.example.com:6379/2",
        "unix:///run/redis/redis.sock?db=1",
    ],
)
def test_redis_urls_accepted(value: str) -> None:
    assert settings(REDIS_URL=value).REDIS_URL == value


@pytest.mark.usefixtures("no_rate_limit_environment")
@pytest.mark.parametrize("value", ["60/minute", "5 per 10 seconds", "1000/hour", " 10/second "])
def test_rate_limits_accepted(value: str) -> None:
    assert settings(RATE_LIMIT_EXCHANGE=value).RATE_LIMIT_EXCHANGE == value.strip()


@pytest.mark.usefixtures("no_rate_limit_environment")
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REDIS_URL", "localhost:6379", "is not a Redis URL"),
        ("REDIS_URL", "http://localhost:6379", "is not a Redis URL"),
        ("REDIS_URL", "redis://localhost:port/0", "is not a Redis URL"),
        ("REDIS_URL", "redis://localhost:6379/cache", "database number"),
        ("REDIS_URL", "redis:///0", "has no host"),
        ("REDIS_URL", "redis://h/0?socket_timeout=soon", "is not a Redis URL"),
        ("RATE_LIMIT_EXCHANGE", "sixty a minute", "count per period"),
        ("RATE_LIMIT_EXCHANGE", "60/fortnight", "count per period"),
        ("RATE_LIMIT_EXCHANGE", "0/minute", "at least 1"),
        ("RATE_LIMIT_EXCHANGE", "10/second;60/minute", "one limit only"),
    ],
)
def test_malformed_values_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**{name: value})


@pytest.mark.processes
@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("REDIS_URL", "redis://:hunter2@localhost:bad/0", "REDIS_URL"),
        ("RATE_LIMIT_EXCHANGE", "lots", "RATE_LIMIT_EXCHANGE"),
    ],
)
def test_manage_py_run_refuses_a_malformed_setting_in_one_line(
    sqlite_url: str, name: str, value: str, expected: str, forks: ManageForks
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": sqlite_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "APP_ENV": "test",
        name: value,
    }
    result = forks.run("run", "--no-reload", "--port", "1", env=env)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: invalid configuration:") and expected in lines[0]
    assert "hunter2" not in result.stderr + result.stdout

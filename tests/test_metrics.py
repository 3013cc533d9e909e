"""GET /metrics: what it counts and how it labels it, in one process (the ASGI app in the test).

The metrics live in prometheus_client's default registry, shared by every app this test process
makes: each test reads a scrape before and after what it does, and compares.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app.main import create_app
from app.middlewares import RequestContextMiddleware
from app.supabase.fake import USER_PATH, FakeSupabase, Scripted
from tests.conftest import (
    AuthHeaders,
    PostgresServer,
    SupabaseAppFactory,
    UserFactory,
    asgi_client,
    delete_all_rows,
    make_settings,
    one_database,
)
from tests.prometheus import MetricValues

EXCHANGE = "/auth/verify_supabase_token"
REQUESTS = "megapolis_http_requests_total"
DURATIONS = "megapolis_http_request_duration_seconds_count"
EXCHANGES = "megapolis_supabase_exchanges_total"
SUPABASE_CALLS = "megapolis_supabase_request_duration_seconds_count"


def outermost_layer_metrics(application: FastAPI) -> object:
    """The metrics the app's outermost middleware records requests in (None: none)."""
    outermost = application.user_middleware[0]
    assert getattr(outermost.cls, "__name__", "") == RequestContextMiddleware.__name__
    return outermost.kwargs["metrics"]


async def scrape(client: httpx.AsyncClient) -> MetricValues:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return MetricValues(response.text)


async def test_metrics_are_prometheus_text_naming_every_metric(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "megapolis_http_requests",
        "megapolis_http_request_duration_seconds",
        "megapolis_http_requests_in_flight",
        "megapolis_db_pool_connections_in_use",
        "megapolis_db_pool_connections_idle",
        "megapolis_db_pool_waiting",
        "megapolis_supabase_exchanges",
        "megapolis_supabase_request_duration_seconds",
    } <= families
    openmetrics = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")


async def test_the_metrics_are_taken_in_the_outermost_layer(app: FastAPI) -> None:
    """Outside everything, so they count every answer, the other middlewares' included."""
    assert outermost_layer_metrics(app) is not None


async def test_requests_are_counted_by_route_template_never_by_path(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    other = await make_user()
    route = "/api/v1/users/{user_id}"
    before = await scrape(client)
    for user_id in (admin.id, other.id):
        assert (
            await client.get(f"/api/v1/users/{user_id}", headers=auth(admin))
        ).status_code == 200
    assert (await client.get("/api/v1/users/999999", headers=auth(admin))).status_code == 404
    assert (await client.get("/no/such/page/12345")).status_code == 404
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return after.get(name, **labels) - before.get(name, **labels)

    assert delta(REQUESTS, method="GET", route=route, status="200") == 2
    assert delta(REQUESTS, method="GET", route=route, status="404") == 1
    assert delta(DURATIONS, method="GET", route=route) == 3
    assert delta(REQUESTS, method="GET", route="unmatched", status="404") == 1
    routes = after.label_values(REQUESTS, "route")
    assert not {f"/api/v1/users/{admin.id}", "/no/such/page/12345"} & routes, routes


@one_database
async def test_the_docs_have_routes_of_their_own(client: httpx.AsyncClient) -> None:
    """Swagger UI, ReDoc and the schema are the app's own (Starlette) routes: counted under
    their paths, not as unmatched."""
    paths = ["/docs", "/redoc", "/openapi.json"]
    before = await scrape(client)
    for path in paths:
        assert (await client.get(path)).status_code == 200
    after = await scrape(client)
    for path in paths:
        counted = after.get(REQUESTS, method="GET", route=path, status="200")
        assert counted - before.get(REQUESTS, method="GET", route=path, status="200") == 1
    unmatched = after.get(REQUESTS, method="GET", route="unmatched", status="200")
    assert unmatched == before.get(REQUESTS, method="GET", route="unmatched", status="200")
    # Their assets: one series for all of them, not one per file.
    before = await scrape(client)
    for asset in ("swagger-ui.css", "redoc.standalone.js"):
        assert (await client.get(f"/docs/assets/{asset}")).status_code == 200
    after = await scrape(client)
    assets = {"method": "GET", "route": "/docs/assets/{path}", "status": "200"}
    assert after.get(REQUESTS, **assets) - before.get(REQUESTS, **assets) == 2


@one_database
async def test_the_admin_site_is_counted_under_its_mount(client: httpx.AsyncClient) -> None:
    """Its pages are routes of its own app, relative to `/admin`: counted as `/admin/{path}`,
    not under their own templates (its `/` was counted as the API's `GET /`)."""
    before = await scrape(client)
    for path in ("/admin/", "/admin/login"):
        assert (await client.get(path)).status_code in (200, 302)
    after = await scrape(client)
    admin = after.label_values(REQUESTS, "route") - before.label_values(REQUESTS, "route")
    counted = sum(
        after.get(REQUESTS, method="GET", route="/admin/{path}", status=status)
        - before.get(REQUESTS, method="GET", route="/admin/{path}", status=status)
        for status in ("200", "302")
    )
    assert counted == 2, admin
    root = {"method": "GET", "route": "/"}
    assert sum(after.get(REQUESTS, **root, status=s) for s in ("200", "302")) == sum(
        before.get(REQUESTS, **root, status=s) for s in ("200", "302")
    )


async def test_requests_answered_before_routing_still_name_their_route(
    client: httpx.AsyncClient,
) -> None:
    """A CORS preflight and a 413 never reach the router; they count under the route their
    path leads to."""
    before = await scrape(client)
    preflight = await client.options(
        "/auth/me",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200
    too_big = await client.post("/api/v1/posts/", content=b"x" * 2_000_000)
    assert too_big.status_code == 413
    after = await scrape(client)
    labels = {"method": "OPTIONS", "route": "/auth/me", "status": "200"}
    assert after.get(REQUESTS, **labels) - before.get(REQUESTS, **labels) == 1
    labels = {"method": "POST", "route": "/api/v1/posts/", "status": "413"}
    assert after.get(REQUESTS, **labels) - before.get(REQUESTS, **labels) == 1


async def test_a_request_being_served_is_in_flight(client: httpx.AsyncClient) -> None:
    # The scrape itself is the one request in flight while it is answered.
    assert (await scrape(client)).get("megapolis_http_requests_in_flight") == 1


async def test_pool_gauges_read_the_pool_at_scrape_time(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async with app.state.database.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        held = await scrape(client)
    released = await scrape(client)
    assert held.get("megapolis_db_pool_connections_in_use") == 1
    assert released.get("megapolis_db_pool_connections_in_use") == 0
    assert released.get("megapolis_db_pool_connections_idle") >= 1
    assert released.get("megapolis_db_pool_waiting") == 0


async def test_pool_gauges_count_requests_waiting_for_a_connection(
    postgres_server: PostgresServer,
) -> None:
    """PostgreSQL's pool (the first-come-first-served one) counts its waiters. Only the pool is
    used here: no table, so the server's own database will do."""
    database_url = postgres_server.url_for("postgres")
    settings = make_settings(
        database_url, DATABASE_POOL_SIZE=1, DATABASE_MAX_OVERFLOW=0, DATABASE_POOL_TIMEOUT=30
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application), asgi_client(application) as http:
        engine = application.state.database.engine
        async with engine.connect() as holder:
            await holder.execute(text("SELECT 1"))
            waiter = asyncio.ensure_future(engine.connect().start())
            deadline = time.monotonic() + 10
            while engine.pool.waiting() == 0:  # until the waiter reaches the pool's queue
                assert not waiter.done() and time.monotonic() < deadline
                await asyncio.sleep(0.01)
            values = await scrape(http)
        connection = await waiter
        await connection.close()
        after = await scrape(http)
    assert values.get("megapolis_db_pool_waiting") == 1
    assert values.get("megapolis_db_pool_connections_in_use") == 1
    assert after.get("megapolis_db_pool_waiting") == 0


class TestExchangeOutcomes:
    async def exchange(
        self, client: httpx.AsyncClient, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await client.get(EXCHANGE, headers=headers or {})

    async def test_each_outcome_is_counted_once(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("ada@example.com"))
        before = await scrape(supabase_client)
        ok = await self.exchange(supabase_client, {"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        missing = await self.exchange(supabase_client)
        assert missing.status_code == 401
        malformed = await self.exchange(supabase_client, {"Authorization": "Bearer not-a-jwt"})
        assert malformed.status_code == 401
        supabase_fake.script(USER_PATH, Scripted(status=500, body={"message": "down"}))
        down = await self.exchange(supabase_client, {"Authorization": f"Bearer {token}"})
        assert down.status_code == 503
        after = await scrape(supabase_client)

        def delta(outcome: str) -> float:
            return after.get(EXCHANGES, outcome=outcome) - before.get(EXCHANGES, outcome=outcome)

        assert delta("success") == 1
        assert delta("missing_token") == 1
        assert delta("invalid_token") == 1
        assert delta("supabase_unavailable") == 1
        assert (
            sum(
                after.samples[key] - before.samples.get(key, 0)
                for key in after.samples
                if key[0] == EXCHANGES
            )
            == 4
        )
        # Every outcome is there from the start, at 0 if need be.
        assert {"rate_limited", "banned", "link_conflict"} <= before.label_values(
            EXCHANGES, "outcome"
        )

    async def test_supabase_calls_are_timed_by_status(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("ada@example.com"))
        before = await scrape(supabase_client)
        await self.exchange(supabase_client, {"Authorization": f"Bearer {token}"})
        supabase_fake.script(USER_PATH, Scripted(status=500, body={"message": "down"}))
        await self.exchange(supabase_client, {"Authorization": f"Bearer {token}"})
        after = await scrape(supabase_client)
        for status in ("200", "500"):
            labels = {"call": "user", "status": status}
            assert after.get(SUPABASE_CALLS, **labels) - before.get(SUPABASE_CALLS, **labels) == 1

    async def test_rate_limited_exchanges_are_counted(
        self, supabase_app_factory: SupabaseAppFactory
    ) -> None:
        async with (
            supabase_app_factory(RATE_LIMIT_EXCHANGE="1/minute") as application,
            asgi_client(application) as http,
        ):
            before = await scrape(http)
            statuses = [(await self.exchange(http)).status_code for _ in range(2)]
            after = await scrape(http)
        assert statuses == [401, 429]
        for outcome in ("missing_token", "rate_limited"):
            assert (
                after.get(EXCHANGES, outcome=outcome) - before.get(EXCHANGES, outcome=outcome) == 1
            )


async def test_metrics_disabled_removes_the_endpoint_and_the_middleware(
    database_url: str,
) -> None:
    application = create_app(make_settings(database_url, METRICS_ENABLED=False))
    assert outermost_layer_metrics(application) is None
    labels = {"method": "GET", "route": "/", "status": "200"}
    before = REGISTRY.get_sample_value(REQUESTS, labels) or 0
    async with application.router.lifespan_context(application), asgi_client(application) as http:
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/metrics")).status_code == 404
        await delete_all_rows(application.state.database)
    assert (REGISTRY.get_sample_value(REQUESTS, labels) or 0) == before

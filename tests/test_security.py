"""Security properties docs/security.md points to: security headers, errors that leak nothing,
logs that cannot be forged, ids that reveal nothing, payloads that carry only documented fields."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app import api_docs
from app.config import Settings
from app.dependencies import SessionDep
from app.fields import MAX_INT_ID
from app.main import create_app
from app.router import routers_for
from tests.conftest import PROJECT_ROOT, AuthHeaders, UserFactory, make_settings, one_database

API_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cache-control": "no-store",
}
DOCS_PATHS = ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"]


def assert_api_headers(response: httpx.Response) -> None:
    for name, value in API_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name, response.headers)


async def test_every_kind_of_api_answer_carries_the_security_headers(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user()
    answers = [
        await client.get("/"),
        await client.get("/healthz"),
        await client.get("/api/v1/users/me", headers=auth(user)),
        await client.get("/api/v1/users/me"),
        await client.get("/api/v1/users/", headers=auth(user)),
        await client.get("/no/such/path"),
        await client.put("/api/v1/users/me"),
        await client.patch("/api/v1/users/me", headers=auth(user), json={"id": 1}),
        await client.post("/api/v1/users/", headers={"content-length": str(10**9)}),
        await client.get("/", headers={"x-big": "a" * 100_000}),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 401, 403, 404, 405, 422, 413, 431]
    for answer in answers:
        assert_api_headers(answer)
        assert answer.headers["x-request-id"]


@one_database
async def test_docs_keep_working_and_cannot_be_framed(client: httpx.AsyncClient) -> None:
    """Swagger UI and ReDoc run inline scripts: no CSP there, and no `no-store`."""
    for path in DOCS_PATHS:
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" not in response.headers
        assert response.headers.get("cache-control") != "no-store"
    assert "swagger-ui" in (await client.get("/docs")).text


@pytest.fixture
async def app_with_faulty_routes(db_settings: Settings) -> AsyncIterator[FastAPI]:
    """The real app plus two routes that fail the ways a bug would."""
    application = create_app(db_settings)

    async def crash() -> None:
        raise RuntimeError("password=hunter2 in SELECT secret FROM vault")

    async def bad_sql(session: SessionDep) -> None:
        await session.execute(text("SELECT secret_column FROM no_such_table"))

    application.add_api_route("/boom", crash)
    application.add_api_route("/bad-sql", bad_sql)
    async with application.router.lifespan_context(application):
        yield application


async def test_unexpected_errors_leak_no_detail(
    app_with_faulty_routes: FastAPI, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    transport = httpx.ASGITransport(app=app_with_faulty_routes, raise_app_exceptions=False)
    logger = logging.getLogger("app")
    logger.addHandler(caplog.handler)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            crash = await http.get("/boom")
            bad_sql = await http.get("/bad-sql")
    finally:
        logger.removeHandler(caplog.handler)
    assert crash.status_code == 500
    assert crash.json() == {"detail": "Internal server error"}
    assert_api_headers(crash)
    # SQLite reports a missing table as an OperationalError (503, as for a database that is
    # unavailable); PostgreSQL as a ProgrammingError (500).
    assert bad_sql.status_code == {"sqlite": 503, "postgresql": 500}[backend]
    for answer in (crash, bad_sql):
        assert set(answer.json()) == {"detail"}
        for secret in ("hunter2", "SELECT", "secret", "no_such_table", "Traceback"):
            assert secret not in answer.text
    # The details go to the log, with the request id, not to the caller.
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)


@one_database
async def test_log_lines_cannot_be_forged_through_the_path(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("app")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="app.access"):
            await client.get("/x%0d%0aGET%20/admin%20200%201.0ms%20rid=forged%00")
    finally:
        logger.removeHandler(caplog.handler)
    [line] = [r.getMessage() for r in caplog.records if r.name == "app.access"]
    assert "\n" not in line and "\r" not in line and "\x00" not in line
    assert line.startswith("GET /x\\x0d\\x0aGET /admin 200 1.0ms rid=forged\\x00 404 ")


async def test_other_users_ids_reveal_nothing(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    """A regular user gets the same 403, with the same body, for an existing user, a missing
    one and the largest id: permission is checked before the lookup (no enumeration)."""
    user = await make_user()
    other = await make_user()
    answers: dict[str, set[tuple[int, str]]] = {}
    for target in (other.id, other.id + 1000, MAX_INT_ID):
        for method in ("GET", "PATCH", "DELETE"):
            response = await client.request(
                method,
                f"/api/v1/users/{target}",
                headers=auth(user),
                json={"full_name": "x"} if method == "PATCH" else None,
            )
            answers.setdefault(method, set()).add((response.status_code, response.text))
    for method, seen in answers.items():
        assert len(seen) == 1, (method, seen)
        assert next(iter(seen))[0] == 403


async def test_payloads_carry_only_documented_fields(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user(supabase_id="6f1c5a9e-52a4-4c0b-9f4e-1d2b3c4d5e6f")
    record = (await client.get("/api/v1/users/me", headers=auth(user))).json()
    assert set(record) == {
        "id",
        "email",
        "supabase_id",
        "full_name",
        "is_active",
        "is_superuser",
        "created_at",
        "updated_at",
    }
    me = (await client.get("/auth/me", headers=auth(user))).json()
    assert me == {"user": {"id": user.id, "email": user.email}}


@one_database
async def test_cors_never_allows_credentials(client: httpx.AsyncClient) -> None:
    """Tokens travel in headers, never in cookies: browsers must not send cookies cross-site."""
    response = await client.options(
        "/api/v1/users/me",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 200
    assert "access-control-allow-credentials" not in response.headers


@one_database
async def test_every_route_is_in_the_openapi_inventory(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """API9: nothing is served that the schema (which the fuzzing walks) does not list, except
    the documentation itself and the admin site (server-rendered pages under /admin, for
    signed-in superusers: tests/test_admin.py). Routers come from app/router.py (ROUTERS, and
    /metrics)."""
    schema = (await client.get("/openapi.json")).json()
    documented = {
        (path, method.upper()) for path, methods in schema["paths"].items() for method in methods
    }
    served: set[tuple[str, str]] = set()
    routers = routers_for(app.state.settings)
    for router, prefix in routers:
        for route in router.routes:
            assert isinstance(route, APIRoute), route
            assert route.include_in_schema, route.path
            served |= {(prefix + route.path, method) for method in route.methods or ()}
    assert served == documented
    # Every route of the routers is on the app's own list (app/router.py), each once.
    api_routes = [route for route in app.routes if isinstance(route, APIRoute)]
    on_the_app = [(route.path, method) for route in api_routes for method in route.methods or ()]
    assert sorted(on_the_app) == sorted(served)
    top_level = [
        route
        for route in app.routes
        if isinstance(route, Route) and not isinstance(route, APIRoute)
    ]
    assert sorted(route.path for route in top_level) == sorted(DOCS_PATHS)
    # The docs' own assets (app/api_docs.py), and the admin site (tests/test_admin.py).
    mounts = [route for route in app.routes if isinstance(route, Mount)]
    assert [(mount.path, type(mount.app)) for mount in mounts] == [
        (api_docs.ASSETS_PATH, StaticFiles),
        ("/admin", Starlette),
    ]
    assert len(app.routes) == len(top_level) + len(api_routes) + len(mounts)


async def test_a_linked_user_cannot_take_someone_elses_email(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    """The email of a Supabase-linked user is Supabase's to verify. Changing it here to the
    address of someone who has not signed up yet makes that person's first sign-in answer 409
    ("linked to another Supabase user"), and puts an unverified email in the API's tokens."""
    squatter = await make_user(supabase_id="6f1c5a9e-52a4-4c0b-9f4e-1d2b3c4d5e6f")
    response = await client.patch(
        "/api/v1/users/me", headers=auth(squatter), json={"email": "victim@example.com"}
    )
    assert response.status_code == 403


@one_database
async def test_by_default_any_host_is_served(client: httpx.AsyncClient) -> None:
    """Without ALLOWED_HOSTS the app answers any Host (behind a proxy that routes by host)."""
    response = await client.get("/api/v1/users", headers={"host": "evil.example"})
    assert response.status_code == 307


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("api.example.com", 401),
        ("API.example.com:8443", 401),
        ("eu.example.org", 401),
        ("evil.example", 400),
        ("example.org", 400),
        ("api.example.com.evil.example", 400),
    ],
)
@one_database
async def test_allowed_hosts_refuse_forged_hosts(database_url: str, host: str, status: int) -> None:
    settings = make_settings(database_url, ALLOWED_HOSTS="api.example.com, *.example.org")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/api/v1/users/me", headers={"host": host})
            redirect = await http.get("/api/v1/users", headers={"host": host})
    assert response.status_code == status
    if status == 400:
        assert response.json() == {"detail": "Invalid host header"}
        assert redirect.status_code == 400 and "location" not in redirect.headers


def test_every_test_docs_security_md_cites_exists() -> None:
    """docs/security.md proves each claim with `file::test` references: they must not rot."""
    text = (PROJECT_ROOT / "docs" / "security.md").read_text()
    references = set(re.findall(r"`(test_\w+\.py)::([\w:]+)(?:\[[^\]]*\])?`", text))
    assert len(references) > 40
    for filename, qualified in sorted(references):
        source = (PROJECT_ROOT / "tests" / filename).read_text()
        *classes, function = qualified.split("::")
        for name in classes:
            assert re.search(rf"^class {name}\b", source, re.M), f"{filename}::{qualified}"
        assert re.search(rf"^\s*(async )?def {function}\(", source, re.M), (
            f"{filename}::{qualified}"
        )

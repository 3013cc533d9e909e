"""Cross-cutting HTTP behaviour: hello, docs, request ids, access log, CORS, errors, limits."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from app.middlewares.request_context import vary_on_origin
from tests.conftest import AuthHeaders, UserFactory, make_settings, one_database
from tests.tokens import token_for


@one_database
async def test_hello_world(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.json() == {"message": "Hello, world!"}


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"


@one_database
async def test_docs_are_served(client: httpx.AsyncClient) -> None:
    assert "swagger-ui" in (await client.get("/docs")).text
    assert "redoc" in (await client.get("/redoc")).text.lower()
    schema = (await client.get("/openapi.json")).json()
    assert "/api/v1/users/{user_id}" in schema["paths"]
    responses = schema["paths"]["/api/v1/users/"]["post"]["responses"]
    assert {"201", "401", "403", "409", "422"} <= set(responses)


@one_database
async def test_request_id_is_generated_and_echoed(client: httpx.AsyncClient) -> None:
    generated = await client.get("/")
    assert len(generated.headers["x-request-id"]) == 32
    echoed = await client.get("/", headers={"X-Request-ID": "abc-123_x.y"})
    assert echoed.headers["x-request-id"] == "abc-123_x.y"


@pytest.mark.parametrize("bad", [b"has space", b"x" * 129, b"semi;colon", "\u00fcn".encode()])
@one_database
async def test_insane_request_id_is_replaced(client: httpx.AsyncClient, bad: bytes) -> None:
    response = await client.get("/", headers={b"X-Request-ID": bad})
    assert response.headers["x-request-id"].encode() != bad
    assert len(response.headers["x-request-id"]) == 32


@one_database
async def test_errors_carry_request_id_and_nosniff(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/me", headers={"X-Request-ID": "err-1"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "err-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    missing = await client.get("/no/such/path")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    assert "x-request-id" in missing.headers


async def test_one_access_log_line_without_token(
    client: httpx.AsyncClient,
    make_user: UserFactory,
    auth: AuthHeaders,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = await make_user()
    headers = {**auth(user), "X-Request-ID": "log-check-1"}
    token = headers["Authorization"].split()[1]
    logger = logging.getLogger("app")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="app.access"):
            await client.get("/auth/me?token=leak", headers=headers)
    finally:
        logger.removeHandler(caplog.handler)
    lines = [r.getMessage() for r in caplog.records if r.name == "app.access"]
    assert len(lines) == 1
    assert lines[0].startswith("GET /auth/me 200 ")
    assert "rid=log-check-1" in lines[0]
    assert all(token not in r.getMessage() and "leak" not in r.getMessage() for r in caplog.records)


@one_database
async def test_cors_preflight_allows_authorization_and_supabase_header(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options(
        "/auth/verify_supabase_token",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization,sb-abcd-auth-token",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "sb-abcd-auth-token" in allowed


@one_database
async def test_every_answer_varies_on_origin_as_cors_says(client: httpx.AsyncClient) -> None:
    """A request without `Origin` skips the CORS middleware (app/middlewares/request_context.py)
    but its answer still says `Vary: Origin`, as that middleware's would; one with `Origin`
    gets that middleware's answer."""
    plain = await client.get("/")
    assert plain.status_code == 200 and plain.headers.get_list("vary") == ["Origin"]
    assert "access-control-allow-origin" not in plain.headers
    cross = await client.get("/", headers={"Origin": "http://localhost:3000"})
    assert cross.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert cross.headers.get_list("vary") == ["Origin"]
    assert cross.headers["access-control-expose-headers"] == "X-Request-ID, Retry-After"
    foreign = await client.get("/", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in foreign.headers
    assert foreign.headers.get_list("vary") == ["Origin"]
    # An answer that varies already: one Vary header, as CORSMiddleware writes it.
    assert vary_on_origin([(b"vary", b"Accept"), (b"x", b"1")]) == [
        (b"x", b"1"),
        (b"vary", b"Accept, Origin"),
    ]


@one_database
async def test_cors_refuses_unknown_origin(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_oversized_body_is_413(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    body = b'{"email": "a@example.com", "full_name": "' + b"x" * 2_000_000 + b'"}'
    response = await client.post(
        "/api/v1/users/", headers={**auth(admin), "content-type": "application/json"}, content=body
    )
    assert response.status_code == 413
    assert "detail" in response.json()


@one_database
async def test_method_not_allowed_is_json(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/v1/users/me")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


async def test_unreachable_database_answers_503_and_health_stays_up() -> None:
    settings = make_settings(
        "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere", DATABASE_CONNECT_TIMEOUT=1
    )
    from app.main import create_app

    application: FastAPI = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"detail": "Database unavailable"}
            token = token_for(settings, 1, "a@example.com")
            me = await http.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 503
            assert me.json()["detail"].startswith("Database unavailable")
            assert me.headers["retry-after"] == "5"

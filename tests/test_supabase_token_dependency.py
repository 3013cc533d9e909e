"""`SupabaseToken`, the dependency that takes the Supabase token out of a request, used on a
route of its own: it hands the route the token, or answers 401/503 before the route runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.dependencies import SupabaseToken
from app.main import create_app
from app.supabase.fake import FakeSupabase
from tests.conftest import asgi_client, make_settings, migrate, supabase_settings
from tests.supabase_headers import STORAGE_KEY, base64url_json, bearer

PROBE = "/probe"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """No user table is touched: one SQLite database is enough."""
    url = f"sqlite+aiosqlite:///{Path(tmp_path_factory.mktemp('dependency')) / 'probe.db'}"
    migrate(make_settings(url))
    return url


def probe_app(database_url: str, fake: FakeSupabase, **settings: object) -> FastAPI:
    application = create_app(supabase_settings(database_url, fake, **settings))
    calls: list[str] = []
    application.state.probe_calls = calls

    @application.get(PROBE)
    async def probe(token: SupabaseToken) -> dict[str, str]:
        calls.append(token)
        return {"token": token}

    return application


@pytest.fixture
async def app(database_url: str, supabase_fake: FakeSupabase) -> AsyncIterator[FastAPI]:
    application = probe_app(database_url, supabase_fake)
    async with application.router.lifespan_context(application):
        yield application


async def test_hands_the_route_the_token_from_either_header(
    app: FastAPI, supabase_fake: FakeSupabase
) -> None:
    token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
    async with asgi_client(app) as client:
        from_bearer = await client.get(PROBE, headers=bearer(token))
        stored = {STORAGE_KEY: base64url_json(supabase_fake.session(token))}
        from_storage = await client.get(PROBE, headers=stored)
    assert from_bearer.json() == from_storage.json() == {"token": token}
    assert supabase_fake.calls == []  # extracting is not verifying


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, "Bearer"),
        ({"Authorization": "Bearer"}, "Bearer"),
        ({"Authorization": "Bearer not-a-jwt"}, 'Bearer error="invalid_token"'),
        ({STORAGE_KEY: "base64-!!!"}, 'Bearer error="invalid_token"'),
    ],
    ids=["no header", "empty bearer", "not a JWT", "bad storage value"],
)
async def test_answers_401_before_the_route_runs(
    app: FastAPI, headers: dict[str, str], challenge: str
) -> None:
    async with asgi_client(app) as client:
        response = await client.get(PROBE, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == challenge
    assert app.state.probe_calls == []


async def test_answers_503_when_supabase_is_not_configured(
    database_url: str, supabase_fake: FakeSupabase
) -> None:
    application = probe_app(database_url, supabase_fake, SUPABASE_URL=None)
    token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
    async with application.router.lifespan_context(application), asgi_client(application) as c:
        response: httpx.Response = await c.get(PROBE, headers=bearer(token))
    assert response.status_code == 503
    assert response.json() == {"detail": "Supabase is not configured: set SUPABASE_URL"}
    assert application.state.probe_calls == []

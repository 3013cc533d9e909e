"""Which key the API sends to Supabase as `apikey`, on SQLite and PostgreSQL.

`/auth/v1/user` only needs the project's publishable key (the legacy `anon` JWT or the new
`sb_publishable_...`): SUPABASE_PUBLISHABLE_KEY, used when set. SUPABASE_SERVICE_ROLE_KEY (legacy
`service_role` JWT or new `sb_secret_...`) keeps working as the seed documents it. Keys of
either generation are sent as they are; the fake's gateway accepts exactly the project's four."""

from __future__ import annotations

import logging

import httpx
import pytest

from app.supabase.fake import FakeSupabase
from tests.conftest import SupabaseAppFactory, asgi_client, make_settings
from tests.supabase_headers import EXCHANGE, bearer

KEYS = [
    pytest.param("SUPABASE_PUBLISHABLE_KEY", "publishable_key", id="sb_publishable_"),
    pytest.param("SUPABASE_PUBLISHABLE_KEY", "anon_key", id="legacy anon JWT"),
    pytest.param("SUPABASE_SERVICE_ROLE_KEY", "secret_key", id="sb_secret_"),
    pytest.param("SUPABASE_SERVICE_ROLE_KEY", "service_role_key", id="legacy service_role JWT"),
]


@pytest.mark.parametrize(("setting", "key"), KEYS)
async def test_each_key_works_end_to_end(
    supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase, setting: str, key: str
) -> None:
    value = getattr(supabase_fake, key)
    settings = {"SUPABASE_SERVICE_ROLE_KEY": None, setting: value}
    token = supabase_fake.sign_in(supabase_fake.create_user("ada@example.com"))
    async with supabase_app_factory(**settings) as app, asgi_client(app) as client:
        exchanged = await client.get(EXCHANGE, headers=bearer(token))
        assert exchanged.status_code == 200, exchanged.text
        me = await client.get("/auth/me", headers=bearer(exchanged.json()["token"]))
    assert me.json() == {"user": exchanged.json()["user"]}
    assert [call.apikey for call in supabase_fake.user_calls] == [value]


@pytest.mark.parametrize("publishable", ["publishable_key", "anon_key"])
async def test_the_publishable_key_wins_over_the_service_role_key(
    supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase, publishable: str
) -> None:
    settings = {
        "SUPABASE_PUBLISHABLE_KEY": getattr(supabase_fake, publishable),
        "SUPABASE_SERVICE_ROLE_KEY": supabase_fake.secret_key,
    }
    token = supabase_fake.sign_in(supabase_fake.create_user("ada@example.com"))
    async with supabase_app_factory(**settings) as app, asgi_client(app) as client:
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 200
    [call] = supabase_fake.user_calls
    assert call.apikey == getattr(supabase_fake, publishable)
    assert supabase_fake.secret_key not in str(call.headers)


async def test_a_refused_publishable_key_is_reported_not_replaced(
    supabase_app_factory: SupabaseAppFactory,
    supabase_fake: FakeSupabase,
    app_log: pytest.LogCaptureFixture,
) -> None:
    """No quiet fallback to the more powerful key: the configuration is wrong, and says so."""
    settings = {
        "SUPABASE_PUBLISHABLE_KEY": "sb_publishable_not_this_projects",
        "SUPABASE_SERVICE_ROLE_KEY": supabase_fake.service_role_key,
    }
    token = supabase_fake.sign_in(supabase_fake.create_user("ada@example.com"))
    async with supabase_app_factory(**settings) as app, asgi_client(app) as client:
        response = await client.get(EXCHANGE, headers=bearer(token))
    assert response.status_code == 503
    assert "misconfigured" in response.json()["detail"]
    assert [call.apikey for call in supabase_fake.user_calls] == [
        "sb_publishable_not_this_projects"
    ]
    [error] = [r.getMessage() for r in app_log.records if r.levelno == logging.ERROR]
    assert "SUPABASE_PUBLISHABLE_KEY" in error
    assert "sb_publishable_not_this_projects" not in error


async def test_local_verification_asks_with_the_publishable_key(
    supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
) -> None:
    settings = {
        "SUPABASE_JWT_SECRET": supabase_fake.jwt_secret,
        "SUPABASE_SERVICE_ROLE_KEY": None,
        "SUPABASE_PUBLISHABLE_KEY": supabase_fake.publishable_key,
    }
    token = supabase_fake.sign_in(supabase_fake.create_user("ada@example.com"), algorithm="HS256")
    async with supabase_app_factory(**settings) as app, asgi_client(app) as client:
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 200
    assert [call.apikey for call in supabase_fake.user_calls] == [supabase_fake.publishable_key]


@pytest.mark.parametrize("value", ["sb_publishable_ x", "key\r\nX-Injected: 1", "ключ"])
def test_a_publishable_key_that_cannot_be_a_header_is_refused_at_startup(value: str) -> None:
    with pytest.raises(ValueError, match="SUPABASE_PUBLISHABLE_KEY"):
        make_settings("sqlite+aiosqlite://", SUPABASE_PUBLISHABLE_KEY=value)


def test_keys_are_used_as_given() -> None:
    settings = make_settings(
        "sqlite+aiosqlite://",
        SUPABASE_PUBLISHABLE_KEY="  sb_publishable_abc-DEF_123  ",
        SUPABASE_SERVICE_ROLE_KEY="sb_secret_xyz",
    )
    assert settings.supabase_api_key == ("SUPABASE_PUBLISHABLE_KEY", "sb_publishable_abc-DEF_123")
    assert make_settings("sqlite+aiosqlite://").supabase_api_key is None


class TestTheFakesGateway:
    """The fake accepts the keys a real project does, and only those."""

    @pytest.mark.parametrize(
        "key", ["anon_key", "service_role_key", "publishable_key", "secret_key"]
    )
    def test_every_project_key_passes(self, supabase_fake: FakeSupabase, key: str) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        response = httpx.get(
            supabase_fake.url + "/auth/v1/user",
            headers={"apikey": getattr(supabase_fake, key), "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200

    def test_key_formats(self, supabase_fake: FakeSupabase) -> None:
        assert supabase_fake.publishable_key.startswith("sb_publishable_")
        assert supabase_fake.secret_key.startswith("sb_secret_")
        assert supabase_fake.anon_key.count(".") == supabase_fake.service_role_key.count(".") == 2

    @pytest.mark.parametrize(
        "apikey", ["sb_publishable_other", "sb_secret_other", "eyJhbGciOiJIUzI1NiJ9.e30.x"]
    )
    def test_another_projects_key_is_refused(
        self, supabase_fake: FakeSupabase, apikey: str
    ) -> None:
        response = httpx.get(supabase_fake.url + "/auth/v1/user", headers={"apikey": apikey})
        assert response.status_code == 401
        assert response.json()["message"] == "Invalid API key"

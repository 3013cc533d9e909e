"""A user Supabase has banned cannot exchange a token, on SQLite and PostgreSQL, whichever way
Supabase reports the ban: GoTrue since 2026-07 refuses the token (403 `user_banned` → our 401);
earlier versions (and self-hosted ones not yet updated) answer the user with `banned_until` in
the future (→ our 403)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.supabase.fake import USER_PATH, FakeSupabase, Scripted
from app.supabase.fake.users import api_time, utc_now
from tests.conftest import SupabaseAppFactory, asgi_client, one_database
from tests.supabase_headers import EXCHANGE, bearer
from tests.test_supabase_exchange import add_user, rows

BANNED = {"detail": "This Supabase account is banned"}


@pytest.fixture
def older_gotrue(supabase_fake: FakeSupabase) -> FakeSupabase:
    """A Supabase that answers `/auth/v1/user` for banned users, with `banned_until`."""
    supabase_fake.refuses_banned_users = False
    return supabase_fake


async def exchange(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(EXCHANGE, headers=bearer(token))


class TestBannedUntilInTheAnswer:
    async def test_a_new_banned_user_gets_no_account(
        self, supabase_client: httpx.AsyncClient, older_gotrue: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        user = older_gotrue.create_user("banned@example.com")
        older_gotrue.ban_user(user)
        response = await exchange(supabase_client, older_gotrue.sign_in(user))
        assert (response.status_code, response.json()) == (403, BANNED)
        assert await rows(supabase_app) == []

    async def test_a_linked_banned_user_is_refused(
        self, supabase_client: httpx.AsyncClient, older_gotrue: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        user = older_gotrue.create_user("banned@example.com")
        token = older_gotrue.sign_in(user)
        assert (await exchange(supabase_client, token)).status_code == 200
        older_gotrue.ban_user(user)
        response = await exchange(supabase_client, token)
        assert (response.status_code, response.json()) == (403, BANNED)

    async def test_a_banned_user_does_not_link_an_account(
        self, supabase_client: httpx.AsyncClient, older_gotrue: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        await add_user(supabase_app, "banned@example.com")
        user = older_gotrue.create_user("banned@example.com")
        older_gotrue.ban_user(user, until=utc_now() + timedelta(hours=1))
        assert (await exchange(supabase_client, older_gotrue.sign_in(user))).status_code == 403
        [row] = await rows(supabase_app)
        assert row.supabase_id is None

    @pytest.mark.parametrize("change", ["expired", "unbanned"])
    async def test_a_ban_that_ended_does_not_count(
        self, supabase_client: httpx.AsyncClient, older_gotrue: FakeSupabase, change: str
    ) -> None:
        user = older_gotrue.create_user("a@example.com")
        if change == "expired":
            older_gotrue.ban_user(user, until=utc_now() - timedelta(seconds=1))
            assert "banned_until" in user.to_json()
        else:
            older_gotrue.ban_user(user)
            older_gotrue.unban_user(user)
        assert (await exchange(supabase_client, older_gotrue.sign_in(user))).status_code == 200

    @pytest.mark.parametrize(
        "banned_until",
        ["2999-01-01T00:00:00.123456789Z", "2999-01-01T00:00:00+02:00", "2999-01-01T00:00:00.5Z"],
    )
    @one_database
    async def test_every_timestamp_shape(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, banned_until: str
    ) -> None:
        user = supabase_fake.create_user("a@example.com")
        supabase_fake.script(
            USER_PATH, Scripted(200, {**user.to_json(), "banned_until": banned_until})
        )
        response = await exchange(supabase_client, supabase_fake.sign_in(user))
        assert (response.status_code, response.json()) == (403, BANNED)

    @pytest.mark.parametrize(
        ("banned_until", "status"),
        [
            # Beyond the calendar: a ban (403).
            ("9999-12-31T23:59:59-14:00", 403),
            ("10000-01-01T00:00:00Z", 403),
            ("9" * 100 + "-01-01T00:00:00Z", 403),
            # Ended before the calendar began: no ban.
            ("0000-01-01T00:00:00Z", 200),
            ("0001-01-01T00:00:00+14:00", 200),
            # Supabase gave us a user we cannot read: 503, as for any unusable answer.
            ("soon", 503),
            (12, 503),
            ("2999-13-01T00:00:00Z", 503),
        ],
    )
    @one_database
    async def test_a_ban_at_the_calendar_s_edges_or_unreadable(
        self,
        supabase_client: httpx.AsyncClient,
        supabase_fake: FakeSupabase,
        banned_until: object,
        status: int,
    ) -> None:
        user = supabase_fake.create_user("a@example.com")
        supabase_fake.script(
            USER_PATH, Scripted(200, {**user.to_json(), "banned_until": banned_until})
        )
        response = await exchange(supabase_client, supabase_fake.sign_in(user))
        assert response.status_code == status, response.text
        if status == 403:
            assert response.json() == BANNED

    async def test_the_ban_is_read_from_the_answer_not_assumed(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        user = supabase_fake.create_user("a@example.com")
        past = api_time(utc_now() - timedelta(days=1))
        supabase_fake.script(USER_PATH, Scripted(200, {**user.to_json(), "banned_until": past}))
        assert (await exchange(supabase_client, supabase_fake.sign_in(user))).status_code == 200


@one_database
async def test_current_gotrue_refuses_the_token_itself(
    supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
) -> None:
    user = supabase_fake.create_user("banned@example.com")
    token = supabase_fake.sign_in(user)
    supabase_fake.ban_user(user)
    response = await exchange(supabase_client, token)
    assert response.status_code == 401
    assert supabase_fake.user_calls  # Supabase was asked, and said `user_banned`


class TestLocalVerification:
    """Claims carry no ban: a linked user's still-valid token is accepted in local modes until
    it expires (the documented limitation; the webhook revokes the API tokens)."""

    @pytest.fixture
    async def app(
        self, supabase_app_factory: SupabaseAppFactory, older_gotrue: FakeSupabase
    ) -> AsyncIterator[FastAPI]:
        async with supabase_app_factory(SUPABASE_JWT_SECRET=older_gotrue.jwt_secret) as app:
            yield app

    async def test_a_linked_banned_user_is_not_seen(
        self, app: FastAPI, older_gotrue: FakeSupabase
    ) -> None:
        user = older_gotrue.create_user("banned@example.com")
        await add_user(app, "banned@example.com", supabase_id=user.id)
        token = older_gotrue.sign_in(user, algorithm="HS256")
        older_gotrue.ban_user(user)
        async with asgi_client(app) as client:
            assert (await exchange(client, token)).status_code == 200
        assert older_gotrue.calls == []

    async def test_a_first_sign_in_asks_supabase_and_sees_the_ban(
        self, app: FastAPI, older_gotrue: FakeSupabase
    ) -> None:
        user = older_gotrue.create_user("banned@example.com")
        token = older_gotrue.sign_in(user, algorithm="HS256")
        older_gotrue.ban_user(user)
        async with asgi_client(app) as client:
            response = await exchange(client, token)
        assert (response.status_code, response.json()) == (403, BANNED)
        assert len(older_gotrue.user_calls) == 1

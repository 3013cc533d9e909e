"""Who may claim an account through the exchange, on SQLite and PostgreSQL: one winner when many
Supabase identities race for one account, no account for an unconfirmed email, no repair of an
email Supabase hands over with whitespace or control characters."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI

from app.supabase.fake import FakeSupabase
from tests.conftest import SupabaseAppFactory, asgi_client
from tests.supabase_headers import EXCHANGE, bearer
from tests.test_supabase_exchange import add_user, rows

RACERS = 40


class TestLinkingRace:
    @pytest.mark.parametrize("mode", ["remote", "hs256"])
    async def test_forty_identities_with_one_email_link_exactly_one(
        self, supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase, mode: str
    ) -> None:
        """Each racer's Supabase user has the same confirmed email as one existing, unlinked
        account: exactly one is linked and gets a token, every other one gets 409."""
        # Forty concurrent calls to the fake: the tests' short Supabase timeouts are for the
        # outage tests, not for a loaded machine.
        settings: dict[str, object] = {"SUPABASE_CONNECT_TIMEOUT": 5, "SUPABASE_READ_TIMEOUT": 10}
        if mode == "hs256":
            settings["SUPABASE_JWT_SECRET"] = supabase_fake.jwt_secret
        algorithm = "HS256" if mode == "hs256" else "ES256"
        identities = [supabase_fake.create_user("shared@example.com") for _ in range(RACERS)]
        tokens = [supabase_fake.sign_in(user, algorithm=algorithm) for user in identities]
        async with supabase_app_factory(**settings) as app, asgi_client(app) as client:
            existing = await add_user(app, "shared@example.com")
            responses = await asyncio.gather(
                *(client.get(EXCHANGE, headers=bearer(token)) for token in tokens)
            )
            [row] = await rows(app)

        statuses = Counter(response.status_code for response in responses)
        assert statuses == {200: 1, 409: RACERS - 1}, [r.text[:120] for r in responses]
        [winner] = [i for i, r in enumerate(responses) if r.status_code == 200]
        assert responses[winner].json()["user"] == {"id": existing.id, "email": row.email}
        assert row.supabase_id == identities[winner].id
        for response in responses:
            if response.status_code == 409:
                assert "another Supabase user" in response.json()["detail"]

    async def test_the_winner_keeps_the_account(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        await add_user(supabase_app, "shared@example.com")
        first, second = (supabase_fake.create_user("shared@example.com") for _ in range(2))
        won = await supabase_client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(first)))
        lost = await supabase_client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(second)))
        again = await supabase_client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(first)))
        assert (won.status_code, lost.status_code, again.status_code) == (200, 409, 200)
        [row] = await rows(supabase_app)
        assert row.supabase_id == first.id


CONFIRM_FIRST = "Confirm the email in Supabase first"


class TestUnconfirmedEmailCreatesNothing:
    async def test_no_account_for_an_unconfirmed_email(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        squatter = supabase_fake.create_user("victim@corp.com", email_confirmed=False)
        response = await supabase_client.get(
            EXCHANGE, headers=bearer(supabase_fake.sign_in(squatter))
        )
        assert response.status_code == 403
        assert response.json()["detail"].startswith(CONFIRM_FIRST)
        assert await rows(supabase_app) == []

    async def test_the_confirmed_owner_is_not_locked_out(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        squatter = supabase_fake.create_user("victim@corp.com", email_confirmed=False)
        owner = supabase_fake.create_user("victim@corp.com", email_confirmed=True)
        await supabase_client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(squatter)))
        response = await supabase_client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(owner)))
        assert response.status_code == 200, response.text
        [row] = await rows(supabase_app)
        assert (row.email, row.supabase_id) == ("victim@corp.com", owner.id)

    async def test_once_confirmed_the_account_is_created(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        user = supabase_fake.create_user("late@example.com", email_confirmed=False)
        token = supabase_fake.sign_in(user)
        assert (await supabase_client.get(EXCHANGE, headers=bearer(token))).status_code == 403
        supabase_fake.confirm_email(user)
        assert (await supabase_client.get(EXCHANGE, headers=bearer(token))).status_code == 200
        [row] = await rows(supabase_app)
        assert row.supabase_id == user.id

    @pytest.mark.parametrize("mode", ["hs256", "jwks"])
    @pytest.mark.parametrize("confirmed", [True, False], ids=["confirmed", "unconfirmed"])
    async def test_local_verification_asks_supabase_before_creating(
        self,
        supabase_app_factory: SupabaseAppFactory,
        supabase_fake: FakeSupabase,
        mode: str,
        confirmed: bool,
    ) -> None:
        """Claims do not say whether the email is confirmed: `/auth/v1/user` does."""
        user = supabase_fake.create_user("new@example.com", email_confirmed=confirmed)
        if mode == "hs256":
            settings = {"SUPABASE_JWT_SECRET": supabase_fake.jwt_secret}
            token = supabase_fake.sign_in(user, algorithm="HS256")
        else:
            settings = {"SUPABASE_VERIFY_MODE": "jwks"}
            token = supabase_fake.sign_in(user)
        async with supabase_app_factory(**settings) as app, asgi_client(app) as client:
            first = await client.get(EXCHANGE, headers=bearer(token))
            again = await client.get(EXCHANGE, headers=bearer(token))
            created = await rows(app)
        if confirmed:
            assert (first.status_code, again.status_code) == (200, 200)
            assert [row.supabase_id for row in created] == [user.id]
            assert len(supabase_fake.user_calls) == 1  # only the first sign-in asks
        else:
            assert (first.status_code, again.status_code) == (403, 403)
            assert first.json()["detail"].startswith(CONFIRM_FIRST)
            assert created == []
            assert len(supabase_fake.user_calls) == 2

    @pytest.mark.parametrize("account", ["new", "existing"])
    async def test_local_verification_without_a_key_refuses_and_says_what_to_set(
        self, supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase, account: str
    ) -> None:
        settings = {
            "SUPABASE_JWT_SECRET": supabase_fake.jwt_secret,
            "SUPABASE_SERVICE_ROLE_KEY": None,
        }
        user = supabase_fake.create_user("new@example.com", email_confirmed=True)
        token = supabase_fake.sign_in(user, algorithm="HS256")
        async with supabase_app_factory(**settings) as app, asgi_client(app) as client:
            if account == "existing":
                await add_user(app, "new@example.com")
            response = await client.get(EXCHANGE, headers=bearer(token))
            created = await rows(app)
        assert response.status_code == 403
        assert "SUPABASE_PUBLISHABLE_KEY" in response.json()["detail"]
        assert [row.supabase_id for row in created] == ([] if account == "new" else [None])
        assert supabase_fake.calls == []


class TestEmailIsNotRepaired:
    @pytest.mark.parametrize(
        "email",
        [
            "victim@corp.com\n",
            " victim@corp.com",
            "victim@corp.com\t",
            "victim@corp.com\r\n",
            "victim@corp.com\x00",
            "victim@corp.com\u00a0",
            "victim@corp.com\u2028",
            "vic\x1btim@corp.com",
        ],
        ids=repr,
    )
    @pytest.mark.parametrize("mode", ["remote", "hs256"])
    async def test_an_email_with_whitespace_or_control_characters_is_refused(
        self,
        supabase_app_factory: SupabaseAppFactory,
        supabase_fake: FakeSupabase,
        email: str,
        mode: str,
    ) -> None:
        user = supabase_fake.create_user(email, email_confirmed=True)
        if mode == "hs256":
            settings = {"SUPABASE_JWT_SECRET": supabase_fake.jwt_secret}
            token = supabase_fake.sign_in(user, algorithm="HS256")
        else:
            settings = {}
            token = supabase_fake.sign_in(user)
        async with supabase_app_factory(**settings) as app, asgi_client(app) as client:
            await add_user(app, "victim@corp.com")
            response = await client.get(EXCHANGE, headers=bearer(token))
            [row] = await rows(app)
        assert response.status_code == 403, response.text
        assert "whitespace or control characters" in response.json()["detail"]
        assert row.supabase_id is None

    async def test_an_upper_case_email_is_still_lower_cased(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        existing = await add_user(supabase_app, "ada@example.com")
        user = supabase_fake.create_user("ADA@Example.com", email_confirmed=True)
        response = await supabase_client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(user)))
        assert response.json()["user"] == {"id": existing.id, "email": "ada@example.com"}

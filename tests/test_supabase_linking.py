"""Who may claim an account through the exchange, on SQLite and PostgreSQL: one winner when many
Supabase identities race for one account, no account for an unconfirmed email, no repair of an
email Supabase hands over with whitespace or control characters."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import SupabaseAppFactory, asgi_client
from tests.supabase_fake import FakeSupabase
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
        settings = {"SUPABASE_JWT_SECRET": supabase_fake.jwt_secret} if mode == "hs256" else {}
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

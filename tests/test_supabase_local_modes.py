"""Local verification: HS256 with SUPABASE_JWT_SECRET, and SUPABASE_VERIFY_MODE=jwks for
ES256/RS256. What they accept without asking Supabase, what they refuse, what they hand over to
`/auth/v1/user`, and their blind spot (sign-out)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from app.db.database import Database
from app.models.user import User
from app.supabase.fake import JWKS_PATH, FakeSupabase, FakeUser, Scripted
from tests.conftest import SupabaseAppFactory, asgi_client, one_database
from tests.supabase_headers import EXCHANGE, bearer


async def add_user(app: FastAPI, email: str, supabase_id: str | None = None) -> User:
    database: Database = app.state.database
    async with database.sessionmaker() as session:
        user = await User.create(session, email=email, supabase_id=supabase_id)
        await session.commit()
        return user


async def signed_up(app: FastAPI, fake: FakeSupabase, email: str = "a@example.com") -> FakeUser:
    """A Supabase user who signed in here before: linked, so its next exchange has nothing to
    ask Supabase (a first sign-in asks `/auth/v1/user` whether the email is confirmed)."""
    user = fake.create_user(email)
    await add_user(app, email, supabase_id=user.id)
    return user


class TestHS256:
    @pytest.fixture
    async def app(
        self, supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
    ) -> AsyncIterator[FastAPI]:
        async with supabase_app_factory(
            SUPABASE_JWT_SECRET=supabase_fake.jwt_secret
        ) as application:
            yield application

    @pytest.fixture
    async def client(self, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
        async with asgi_client(app) as http:
            yield http

    def token(self, fake: FakeSupabase, **kwargs: Any) -> str:
        return fake.sign_in(fake.create_user("a@example.com"), algorithm="HS256", **kwargs)

    @pytest.mark.parametrize(
        "options",
        [
            pytest.param({}, id="valid"),
            pytest.param({"issued_ahead": 5}, id="iat 5 s ahead"),
            pytest.param({"claims": {"aud": ["authenticated"]}}, id="aud as an array"),
            pytest.param({"expires_in": -10}, id="expired 10 s ago, within the leeway"),
        ],
    )
    async def test_accepted_without_asking_supabase(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        supabase_fake: FakeSupabase,
        options: dict[str, Any],
    ) -> None:
        user = await signed_up(app, supabase_fake)
        sign_in_options = dict(options)  # the parameter's dict is shared by both databases' runs
        if "issued_ahead" in sign_in_options:  # the clock now, not at collection (minutes ago)
            ahead = timedelta(seconds=sign_in_options.pop("issued_ahead"))
            sign_in_options["issued_at"] = datetime.now(timezone.utc) + ahead
        token = supabase_fake.sign_in(user, algorithm="HS256", **sign_in_options)
        response = await client.get(EXCHANGE, headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json()["user"]["email"] == "a@example.com"
        assert supabase_fake.calls == []

    async def test_a_kid_header_does_not_make_it_asymmetric(
        self, app: FastAPI, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        user = await signed_up(app, supabase_fake)
        claims = _claims_of(supabase_fake.sign_in(user, algorithm="HS256"))
        token = supabase_fake.mint(claims, algorithm="HS256", headers={"kid": "legacy-hs"})
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 200
        assert supabase_fake.calls == []

    @pytest.mark.parametrize(
        "options",
        [
            pytest.param({"expires_in": -120}, id="expired"),
            pytest.param({"claims": {"aud": "anon"}}, id="aud anon"),
            pytest.param({"claims": {"aud": None}}, id="no aud"),
            pytest.param({"claims": {"sub": None}}, id="no sub"),
            pytest.param({"claims": {"sub": "not-a-uuid"}}, id="sub not a UUID"),
            pytest.param({"claims": {"role": "anon"}}, id="role anon"),
            pytest.param({"claims": {"role": "service_role"}}, id="role service_role"),
            pytest.param({"claims": {"exp": None}}, id="no exp"),
        ],
    )
    @one_database
    async def test_refused_locally(
        self, client: httpx.AsyncClient, supabase_fake: FakeSupabase, options: dict[str, Any]
    ) -> None:
        response = await client.get(EXCHANGE, headers=bearer(self.token(supabase_fake, **options)))
        assert response.status_code == 401, response.text
        assert supabase_fake.calls == []

    @one_database
    async def test_wrong_secret(
        self, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        user = supabase_fake.create_user("a@example.com")
        claims = _claims_of(supabase_fake.sign_in(user, algorithm="HS256"))
        token = supabase_fake.mint(claims, algorithm="HS256", secret="not-the-project-secret" * 2)
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 401
        assert supabase_fake.calls == []

    @pytest.mark.parametrize("key", ["anon_key", "service_role_key"])
    @one_database
    async def test_the_project_api_keys_are_not_user_tokens(
        self, client: httpx.AsyncClient, supabase_fake: FakeSupabase, key: str
    ) -> None:
        response = await client.get(EXCHANGE, headers=bearer(getattr(supabase_fake, key)))
        assert response.status_code == 401
        assert supabase_fake.calls == []

    @one_database
    async def test_alg_none_is_refused(
        self, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        claims = _claims_of(self.token(supabase_fake))
        token = jwt.encode(claims, "", algorithm="none")
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 401
        assert supabase_fake.calls == []

    async def test_an_es256_token_goes_to_supabase(
        self, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 200
        assert [call.bearer for call in supabase_fake.user_calls] == [token]

    async def test_blind_to_sign_out(
        self, app: FastAPI, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        """The documented trade-off: a revoked session is accepted until the token expires."""
        token = supabase_fake.sign_in(await signed_up(app, supabase_fake), algorithm="HS256")
        supabase_fake.sign_out(token)
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 200

    async def test_linking_asks_supabase_whether_the_email_is_confirmed(
        self, app: FastAPI, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        existing = await add_user(app, "a@example.com")
        response = await client.get(EXCHANGE, headers=bearer(self.token(supabase_fake)))
        assert response.status_code == 200
        assert response.json()["user"]["id"] == existing.id
        assert len(supabase_fake.user_calls) == 1

    async def test_linking_an_unconfirmed_email_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        await add_user(app, "a@example.com")
        user = supabase_fake.create_user("a@example.com", email_confirmed=False)
        token = supabase_fake.sign_in(user, algorithm="HS256")
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 409
        assert len(supabase_fake.user_calls) == 1

    async def test_without_a_key_linking_is_refused(
        self, supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
    ) -> None:
        settings = {
            "SUPABASE_JWT_SECRET": supabase_fake.jwt_secret,
            "SUPABASE_SERVICE_ROLE_KEY": None,
        }
        async with supabase_app_factory(**settings) as app, asgi_client(app) as client:
            await add_user(app, "a@example.com")
            response = await client.get(EXCHANGE, headers=bearer(self.token(supabase_fake)))
        assert response.status_code == 403
        assert "SUPABASE_PUBLISHABLE_KEY" in response.json()["detail"]
        assert supabase_fake.calls == []


def _claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


class TestJWKS:
    @pytest.fixture
    async def app(self, supabase_app_factory: SupabaseAppFactory) -> AsyncIterator[FastAPI]:
        async with supabase_app_factory(SUPABASE_VERIFY_MODE="jwks") as application:
            yield application

    @pytest.fixture
    async def client(self, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
        async with asgi_client(app) as http:
            yield http

    @pytest.fixture
    def clock(self, app: FastAPI) -> list[float]:
        """The JWKS cache's clock, moved by hand: `clock[0] += seconds`."""
        now = [1000.0]
        app.state.supabase.jwks.clock = lambda: now[0]
        return now

    async def test_verified_with_the_published_key_and_cached(
        self, app: FastAPI, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        user = await signed_up(app, supabase_fake)
        for _ in range(3):
            response = await client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(user)))
            assert response.status_code == 200
        assert supabase_fake.user_calls == []
        assert len(supabase_fake.jwks_calls) == 1
        assert supabase_fake.jwks_calls[0].apikey is None

    async def test_the_cache_expires_after_ten_minutes(
        self, client: httpx.AsyncClient, supabase_fake: FakeSupabase, clock: list[float]
    ) -> None:
        user = supabase_fake.create_user("a@example.com")
        await client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(user)))
        clock[0] += 599
        await client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(user)))
        assert len(supabase_fake.jwks_calls) == 1
        clock[0] += 2
        await client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(user)))
        assert len(supabase_fake.jwks_calls) == 2

    async def test_a_rotated_key_is_picked_up_by_one_refetch(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        supabase_fake: FakeSupabase,
        clock: list[float],
    ) -> None:
        user = await signed_up(app, supabase_fake)
        await client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(user)))
        clock[0] += 31
        supabase_fake.rotate_signing_key("k2")
        response = await client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(user)))
        assert response.status_code == 200
        assert len(supabase_fake.jwks_calls) == 2
        assert supabase_fake.user_calls == []

    async def test_unknown_kids_refetch_at_most_every_30_seconds(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        supabase_fake: FakeSupabase,
        clock: list[float],
    ) -> None:
        user = await signed_up(app, supabase_fake)
        await client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(user)))
        claims = _claims_of(supabase_fake.sign_in(user))
        for index in range(3):
            forged = supabase_fake.mint(claims, headers={"kid": f"random-{index}"})
            response = await client.get(EXCHANGE, headers=bearer(forged))
            assert response.status_code == 401  # Supabase, asked instead, refuses it too
        assert len(supabase_fake.jwks_calls) == 1  # no refetch within 30 s of the last fetch
        assert len(supabase_fake.user_calls) == 3
        clock[0] += 31
        forged = supabase_fake.mint(claims, headers={"kid": "random-again"})
        assert (await client.get(EXCHANGE, headers=bearer(forged))).status_code == 401
        assert len(supabase_fake.jwks_calls) == 2

    async def test_an_empty_key_set_falls_back_to_supabase(
        self, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        supabase_fake.published_kids = []
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 200
        assert [call.bearer for call in supabase_fake.user_calls] == [token]

    async def test_an_unreachable_jwks_falls_back_to_supabase(
        self, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        supabase_fake.script(JWKS_PATH, Scripted(500, {"message": "oops"}))
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 200
        assert len(supabase_fake.user_calls) == 1

    async def test_rs256_keys(
        self, app: FastAPI, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        supabase_fake.rotate_signing_key("r1", algorithm="RS256")
        token = supabase_fake.sign_in(await signed_up(app, supabase_fake), algorithm="RS256")
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 200
        assert supabase_fake.user_calls == []

    @one_database
    async def test_the_algorithm_is_the_keys(
        self, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        """An RS256 token naming the ES256 key `k1` is refused, never verified as RS256."""
        supabase_fake.rotate_signing_key("r1", algorithm="RS256", publish=False)
        user = supabase_fake.create_user("a@example.com")
        claims = _claims_of(supabase_fake.sign_in(user))
        token = supabase_fake.mint(claims, algorithm="RS256", kid="r1", headers={"kid": "k1"})
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 401
        assert supabase_fake.user_calls == []

    @pytest.mark.parametrize(
        "options",
        [
            pytest.param({"expires_in": -120}, id="expired"),
            pytest.param({"claims": {"aud": "anon"}}, id="aud anon"),
            pytest.param({"claims": {"role": "anon"}}, id="role anon"),
        ],
    )
    @one_database
    async def test_refused_locally(
        self, client: httpx.AsyncClient, supabase_fake: FakeSupabase, options: dict[str, Any]
    ) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"), **options)
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 401
        assert supabase_fake.user_calls == []

    async def test_hs256_tokens_go_to_supabase_without_a_secret(
        self, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"), algorithm="HS256")
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 200
        assert len(supabase_fake.user_calls) == 1

    async def test_blind_to_sign_out(
        self, app: FastAPI, client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        token = supabase_fake.sign_in(await signed_up(app, supabase_fake))
        supabase_fake.sign_out(token)
        assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 200

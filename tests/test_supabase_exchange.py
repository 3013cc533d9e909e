"""GET /auth/verify_supabase_token against the loopback fake Supabase, on SQLite and PostgreSQL:
the answer, every way of sending the token, and the user behind it (find, link, create, races)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.db.database import Database
from app.models.user import User
from app.security import issue_token
from app.supabase.fake import USER_PATH, FakeSupabase, FakeUser, Scripted
from tests.conftest import SupabaseAppFactory, asgi_client, make_settings, migrate
from tests.processes import RunningServer, running_server
from tests.supabase_headers import (
    EXCHANGE,
    STORAGE_KEY,
    base64url_json,
    bearer,
    chunked,
    percent_encoded_json,
)


async def rows(app: FastAPI) -> list[User]:
    database: Database = app.state.database
    async with database.sessionmaker() as session:
        return list((await session.scalars(select(User).order_by(User.id))).all())


async def add_user(app: FastAPI, email: str, **values: Any) -> User:
    """A user the API already has (created before any Supabase sign-in)."""
    database: Database = app.state.database
    async with database.sessionmaker() as session:
        user = await User.create(session, email=email, **values)
        await session.commit()
        return user


class TestTheAnswer:
    async def test_a_valid_token_gets_an_api_token(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        user = supabase_fake.create_user("Ada@Example.COM", user_metadata={"full_name": "Ada L."})
        token = supabase_fake.sign_in(user)

        response = await supabase_client.get(EXCHANGE, headers=bearer(token))

        assert response.status_code == 200, response.text
        body = response.json()
        assert body.keys() == {"message", "token", "user", "expires_at"}
        assert body["message"] == "Token verified successfully"
        [row] = await rows(supabase_app)
        assert body["user"] == {"id": row.id, "email": "ada@example.com"}
        assert (row.email, row.supabase_id, row.full_name) == ("ada@example.com", user.id, "Ada L.")
        claims = jwt.decode(body["token"], options={"verify_signature": False})
        expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
        assert expires_at.utcoffset() == timedelta(0)
        assert expires_at == datetime.fromtimestamp(claims["exp"], timezone.utc)
        assert claims["sub"] == str(row.id)

    async def test_the_fake_saw_our_key_and_the_token(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        await supabase_client.get(EXCHANGE, headers=bearer(token))
        [call] = supabase_fake.calls
        assert (call.method, call.path) == ("GET", USER_PATH)
        assert call.apikey == supabase_fake.service_role_key
        assert call.headers["authorization"] == f"Bearer {token}"
        assert call.headers["x-supabase-api-version"] == "2024-01-01"

    async def test_the_api_token_works_on_protected_endpoints(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        user = supabase_fake.create_user("a@example.com")
        exchanged = await supabase_client.get(EXCHANGE, headers=bearer(supabase_fake.sign_in(user)))
        api_token = bearer(exchanged.json()["token"])
        me = await supabase_client.get("/auth/me", headers=api_token)
        assert me.status_code == 200
        assert me.json() == {"user": exchanged.json()["user"]}
        record = await supabase_client.get("/api/v1/users/me", headers=api_token)
        assert record.status_code == 200
        assert record.json()["supabase_id"] == user.id

    async def test_no_double_slash_when_supabase_url_ends_with_one(
        self, supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
    ) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        async with (
            supabase_app_factory(SUPABASE_URL=supabase_fake.url + "/") as app,
            asgi_client(app) as client,
        ):
            assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 200
        assert [call.path for call in supabase_fake.calls] == [USER_PATH]


def header_formats() -> list[Any]:
    """(id, headers built from the token and its stored session)."""
    Build = Callable[[str, dict[str, Any]], dict[str, str]]
    formats: list[tuple[str, Build]] = [
        ("Authorization: Bearer", lambda t, s: {"Authorization": f"Bearer {t}"}),
        ("authorization: bearer", lambda t, s: {"authorization": f"bearer {t}"}),
        ("raw token", lambda t, s: {STORAGE_KEY: t}),
        ("session JSON", lambda t, s: {STORAGE_KEY: json.dumps(s)}),
        ("auth-helpers array", lambda t, s: {STORAGE_KEY: json.dumps([t, "r", None, None, None])}),
        ("ssr base64url object", lambda t, s: {STORAGE_KEY: base64url_json(s)}),
        ("ssr base64url array", lambda t, s: {STORAGE_KEY: base64url_json([t, "r"])}),
        ("percent-encoded JSON", lambda t, s: {STORAGE_KEY: percent_encoded_json(s)}),
        ("chunks .0 .1 ...", lambda t, s: chunked(base64url_json(s))),
        ("gotrue-js v1", lambda t, s: {STORAGE_KEY: json.dumps({"currentSession": s})}),
        ("another project's key", lambda t, s: {"sb-other-auth-token": t}),
    ]
    return [pytest.param(build, id=name) for name, build in formats]


@pytest.mark.parametrize("build", header_formats())
async def test_every_header_format_gets_the_same_token_to_supabase(
    supabase_client: httpx.AsyncClient,
    supabase_fake: FakeSupabase,
    build: Callable[[str, dict[str, Any]], dict[str, str]],
) -> None:
    token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
    response = await supabase_client.get(
        EXCHANGE, headers=build(token, supabase_fake.session(token))
    )
    assert response.status_code == 200, response.text
    assert [call.bearer for call in supabase_fake.user_calls] == [token]


async def test_authorization_wins_over_the_storage_header(
    supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
) -> None:
    winner = supabase_fake.sign_in(supabase_fake.create_user("winner@example.com"))
    other = supabase_fake.sign_in(supabase_fake.create_user("other@example.com"))
    headers = {**bearer(winner), STORAGE_KEY: base64url_json(supabase_fake.session(other))}
    response = await supabase_client.get(EXCHANGE, headers=headers)
    assert response.json()["user"]["email"] == "winner@example.com"
    assert [call.bearer for call in supabase_fake.user_calls] == [winner]


BASE64_STORAGE_FORMATS: list[Callable[[dict[str, Any]], dict[str, str]]] = [
    lambda session: {STORAGE_KEY: base64url_json(session)},
    lambda session: {STORAGE_KEY.upper(): base64url_json([session["access_token"], "r"])},
    lambda session: chunked(base64url_json(session), size=500),
]


@pytest.mark.processes
def test_the_base64_storage_header_over_real_http(
    supabase_fake: FakeSupabase, tmp_path: Path
) -> None:
    """A second check of the `base64-` formats (@supabase/ssr), independent of the ASGI one
    above: through `manage.py run` and a real socket, where the HTTP server parses the header
    (name case, a value of a kilobyte or more, the `.0`/`.1` chunks) before the app sees it."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    migrate(make_settings(database_url))
    env = {
        "SUPABASE_URL": supabase_fake.url,
        "SUPABASE_SERVICE_ROLE_KEY": supabase_fake.service_role_key,
    }
    with (
        running_server(database_url, kind=RunningServer, env=env) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        for index, build in enumerate(BASE64_STORAGE_FORMATS):
            user = supabase_fake.create_user(f"real-http-{index}@example.com")
            session = supabase_fake.session(supabase_fake.sign_in(user))
            headers = build(session)
            assert sum(len(value) for value in headers.values()) > 1000
            response = http.get(EXCHANGE, headers=headers)
            assert response.status_code == 200, (index, response.text)
            assert response.json()["user"]["email"] == f"real-http-{index}@example.com"
            assert supabase_fake.user_calls[-1].bearer == session["access_token"]


class TestTheUser:
    async def exchange(self, client: httpx.AsyncClient, fake: FakeSupabase, user: FakeUser) -> Any:
        return await client.get(EXCHANGE, headers=bearer(fake.sign_in(user)))

    async def test_same_supabase_user_same_row(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        user = supabase_fake.create_user("a@example.com")
        first = await self.exchange(supabase_client, supabase_fake, user)
        second = await self.exchange(supabase_client, supabase_fake, user)
        assert first.json()["user"] == second.json()["user"]
        assert len(await rows(supabase_app)) == 1

    async def test_full_name_falls_back_to_the_oauth_name(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        user = supabase_fake.create_user("a@example.com", user_metadata={"name": "Grace H."})
        assert (await self.exchange(supabase_client, supabase_fake, user)).status_code == 200
        [row] = await rows(supabase_app)
        assert row.full_name == "Grace H."

    async def test_a_hostile_full_name_is_stored_safely(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        name = "\x00Eve\n" + "x" * 400
        user = supabase_fake.create_user("a@example.com", user_metadata={"full_name": name})
        assert (await self.exchange(supabase_client, supabase_fake, user)).status_code == 200
        [row] = await rows(supabase_app)
        assert row.full_name == ("Eve" + "x" * 400)[:255]

    async def test_a_confirmed_email_links_the_existing_user(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        existing = await add_user(supabase_app, "ada@example.com", full_name="Kept")
        user = supabase_fake.create_user("Ada@example.com", email_confirmed=True)
        response = await self.exchange(supabase_client, supabase_fake, user)
        assert response.status_code == 200
        assert response.json()["user"] == {"id": existing.id, "email": "ada@example.com"}
        [row] = await rows(supabase_app)
        assert (row.supabase_id, row.full_name) == (user.id, "Kept")

    async def test_an_unconfirmed_email_does_not_link(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        await add_user(supabase_app, "ada@example.com")
        user = supabase_fake.create_user("ada@example.com", email_confirmed=False)
        response = await self.exchange(supabase_client, supabase_fake, user)
        assert response.status_code == 409
        assert "confirm the email in Supabase to link the account" in response.json()["detail"]
        [row] = await rows(supabase_app)
        assert row.supabase_id is None

    async def test_confirmed_at_from_a_phone_is_not_an_email_confirmation(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        await add_user(supabase_app, "ada@example.com")
        user = supabase_fake.create_user(
            "ada@example.com",
            email_confirmed=False,
            phone="15551234567",
            phone_confirmed=True,
            user_metadata={"email_verified": True},
        )
        assert "confirmed_at" in user.to_json()
        assert (await self.exchange(supabase_client, supabase_fake, user)).status_code == 409

    async def test_confirmed_at_alone_creates_no_user_until_the_email_is_confirmed(
        self, supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
    ) -> None:
        """A second check of the rule above, on another path: no account has the email and the
        token is verified locally (HS256), so the API asks `/auth/v1/user`, whose answer carries
        `confirmed_at` (set by the phone) and no `email_confirmed_at`: no user is created."""
        user = supabase_fake.create_user(
            "new@example.com", email_confirmed=False, phone="15551234567", phone_confirmed=True
        )
        answer = user.to_json()
        assert answer["confirmed_at"] and "email_confirmed_at" not in answer
        async with (
            supabase_app_factory(SUPABASE_JWT_SECRET=supabase_fake.jwt_secret) as app,
            asgi_client(app) as client,
        ):
            token = supabase_fake.sign_in(user, algorithm="HS256")
            refused = await client.get(EXCHANGE, headers=bearer(token))
            assert refused.status_code == 403, refused.text
            assert len(supabase_fake.user_calls) == 1  # it asked, and the answer said no
            assert await rows(app) == []
            supabase_fake.confirm_email(user)  # the same account, its email now confirmed
            accepted = await client.get(EXCHANGE, headers=bearer(token))
            assert accepted.status_code == 200, accepted.text
            [row] = await rows(app)
            assert (row.email, row.supabase_id) == ("new@example.com", user.id)

    async def test_an_email_linked_to_another_supabase_user_is_not_relinked(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        linked = "00000000-0000-4000-8000-000000000001"
        await add_user(supabase_app, "ada@example.com", supabase_id=linked)
        user = supabase_fake.create_user("ada@example.com", email_confirmed=True)
        response = await self.exchange(supabase_client, supabase_fake, user)
        assert response.status_code == 409
        assert "another Supabase user" in response.json()["detail"]
        [row] = await rows(supabase_app)
        assert row.supabase_id == linked

    @pytest.mark.parametrize(
        "account",
        [
            pytest.param({"anonymous": True}, id="anonymous"),
            pytest.param({"phone": "15551234567", "phone_confirmed": True}, id="phone-only"),
        ],
    )
    async def test_an_account_without_email_is_refused(
        self,
        supabase_client: httpx.AsyncClient,
        supabase_fake: FakeSupabase,
        supabase_app: FastAPI,
        account: dict[str, Any],
    ) -> None:
        user = supabase_fake.create_user("", **account)
        response = await self.exchange(supabase_client, supabase_fake, user)
        assert response.status_code == 403
        assert response.json()["detail"].startswith("An email address is required")
        assert await rows(supabase_app) == []

    async def test_a_deactivated_user_is_refused(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        user = supabase_fake.create_user("a@example.com")
        await add_user(supabase_app, "a@example.com", supabase_id=user.id, is_active=False)
        response = await self.exchange(supabase_client, supabase_fake, user)
        assert response.status_code == 403
        assert response.json() == {"detail": "This account is deactivated"}

    async def test_a_deactivated_user_is_not_linked(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        await add_user(supabase_app, "a@example.com", is_active=False)
        user = supabase_fake.create_user("a@example.com", email_confirmed=True)
        assert (await self.exchange(supabase_client, supabase_fake, user)).status_code == 403
        [row] = await rows(supabase_app)
        assert row.supabase_id is None

    @pytest.mark.parametrize("mode", ["remote", "hs256"])
    async def test_twenty_concurrent_first_sign_ins_make_one_row(
        self,
        supabase_app_factory: SupabaseAppFactory,
        supabase_fake: FakeSupabase,
        mode: str,
    ) -> None:
        user = supabase_fake.create_user("race@example.com")
        # Every racer asks the fake (in both modes: a first sign-in needs `email_confirmed_at`);
        # the tests' short Supabase timeouts are for the outage tests, not for a loaded machine.
        settings: dict[str, object] = {"SUPABASE_CONNECT_TIMEOUT": 5, "SUPABASE_READ_TIMEOUT": 10}
        if mode == "hs256":
            settings["SUPABASE_JWT_SECRET"] = supabase_fake.jwt_secret
            token = supabase_fake.sign_in(user, algorithm="HS256")
        else:
            token = supabase_fake.sign_in(user)
        async with supabase_app_factory(**settings) as app, asgi_client(app) as client:
            responses = await asyncio.gather(
                *(client.get(EXCHANGE, headers=bearer(token)) for _ in range(20))
            )
            assert [r.status_code for r in responses] == [200] * 20, [
                (r.status_code, r.text[:200]) for r in responses if r.status_code != 200
            ]
            [row] = await rows(app)
        assert {r.json()["user"]["id"] for r in responses} == {row.id}
        assert row.supabase_id == user.id


async def test_a_stalled_supabase_does_not_hold_up_other_requests(
    supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
) -> None:
    supabase_fake.script(USER_PATH, Scripted.stall(10))
    token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
    timeout = 0.5
    async with (
        supabase_app_factory(
            SUPABASE_CONNECT_TIMEOUT=timeout, SUPABASE_READ_TIMEOUT=timeout
        ) as app,
        asgi_client(app) as client,
    ):
        someone = await add_user(app, "someone@example.com")
        api_token = bearer(issue_token(app.state.settings, someone).token)

        async def timed(path: str, headers: dict[str, str]) -> tuple[int, float]:
            started = time.perf_counter()
            response = await client.get(path, headers=headers)
            return response.status_code, time.perf_counter() - started

        async def others() -> list[tuple[int, float]]:
            await asyncio.sleep(0.05)  # the exchange is waiting on Supabase by now
            results = []
            for _ in range(5):
                results.append(await timed("/healthz", {}))
                results.append(await timed("/auth/me", api_token))
            return results

        exchange, meanwhile = await asyncio.gather(timed(EXCHANGE, bearer(token)), others())

    status, elapsed = exchange
    assert status == 503
    assert timeout * 0.8 < elapsed < timeout + 0.5
    assert all(status == 200 for status, _ in meanwhile)
    assert max(duration for _, duration in meanwhile) < 0.25
    assert sum(duration for _, duration in meanwhile) < timeout  # they finished while it waited


class TestOneCanonicalEmail:
    """Contract: `boss@xn--80ak6aa92e.com` and `boss@аррӏе.com` are one address and reach one
    account, whichever way each arrived."""

    @pytest.mark.parametrize(
        ("provisioned", "in_supabase"),
        [
            ("boss@xn--80ak6aa92e.com", "boss@аррӏе.com"),
            ("Boss@АРРӀЕ.com", "boss@xn--80ak6aa92e.com"),
        ],
    )
    async def test_the_pre_provisioned_account_is_reached(
        self,
        supabase_client: httpx.AsyncClient,
        supabase_fake: FakeSupabase,
        supabase_app: FastAPI,
        provisioned: str,
        in_supabase: str,
    ) -> None:
        admin = await add_user(supabase_app, "admin@example.com", is_superuser=True)
        created = await supabase_client.post(
            "/api/v1/users/",
            headers=bearer(issue_token(supabase_app.state.settings, admin).token),
            json={"email": provisioned, "is_superuser": True},
        )
        assert created.status_code == 201, created.text
        assert created.json()["email"] == "boss@xn--80ak6aa92e.com"
        user = supabase_fake.create_user(in_supabase, email_confirmed=True)
        response = await self.exchange(supabase_client, supabase_fake, user)
        assert response.status_code == 200, response.text
        assert response.json()["user"] == {
            "id": created.json()["id"],
            "email": "boss@xn--80ak6aa92e.com",
        }
        assert len(await rows(supabase_app)) == 2  # the admin and the boss, no second account

    async def test_a_new_account_stores_the_canonical_form(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        user = supabase_fake.create_user("Jörg@Bücher.DE", email_confirmed=True)
        assert (await self.exchange(supabase_client, supabase_fake, user)).status_code == 200
        [row] = await rows(supabase_app)
        assert row.email == "jörg@xn--bcher-kva.de"

    async def test_a_domain_with_no_idna_form_is_refused(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, supabase_app: FastAPI
    ) -> None:
        user = supabase_fake.create_user("a@☃.com", email_confirmed=True)
        response = await self.exchange(supabase_client, supabase_fake, user)
        assert response.status_code == 403
        assert "not a valid domain name" in response.json()["detail"]
        assert await rows(supabase_app) == []

    @staticmethod
    async def exchange(
        client: httpx.AsyncClient, fake: FakeSupabase, user: FakeUser
    ) -> httpx.Response:
        return await client.get(EXCHANGE, headers=bearer(fake.sign_in(user)))

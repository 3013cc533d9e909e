"""Token lifecycle (contract: Token lifecycle): a token acts for exactly the account it was issued
to, and only until that account revokes it — sign-out everywhere, a superuser's revocation, the
CLI, deactivation, an email change, deletion (ids reused or not), key rotation, clock skew."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from app.config import ConfigurationError
from app.main import create_app
from app.models.user import User
from app.security import issue_token
from app.supabase.fake import FakeSupabase
from tests.conftest import (
    TEST_SECRET,
    AuthHeaders,
    UserFactory,
    asgi_client,
    make_settings,
    one_database,
)
from tests.processes import ManageForks

OLD_KEY = "the-previous-signing-key-0123456789-abcdef"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def status_of(client: httpx.AsyncClient, token: str) -> tuple[int, int]:
    """(/auth/me, /api/v1/users/me) statuses for a token."""
    me = await client.get("/auth/me", headers=bearer(token))
    users_me = await client.get("/api/v1/users/me", headers=bearer(token))
    if me.status_code == 401:
        assert me.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    return me.status_code, users_me.status_code


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


# --- sign out everywhere ----------------------------------------------------------------------


async def exchange(client: httpx.AsyncClient, supabase_token: str) -> str:
    response = await client.get("/auth/verify_supabase_token", headers=bearer(supabase_token))
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


async def test_logout_revokes_every_token_and_a_new_exchange_works_at_once(
    supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
) -> None:
    supabase_token = supabase_fake.sign_in(supabase_fake.create_user("ada@example.com"))
    phone = await exchange(supabase_client, supabase_token)
    laptop = await exchange(supabase_client, supabase_token)
    assert await status_of(supabase_client, phone) == (200, 200)

    # Sign out and sign in again, back to back, until both happened within the same second
    # (whole-second `iat`s cannot tell the old token from the new one: the design must not need
    # to).
    same_second_seen = False
    for _ in range(20):
        before = phone
        logout = await supabase_client.post("/auth/logout", headers=bearer(before))
        assert logout.status_code == 204, logout.text
        assert logout.content == b""
        phone = await exchange(supabase_client, supabase_token)
        assert await status_of(supabase_client, before) == (401, 401)
        assert await status_of(supabase_client, laptop) == (401, 401)
        assert await status_of(supabase_client, phone) == (200, 200)
        if claims(before)["iat"] == claims(phone)["iat"]:
            same_second_seen = True
            break
    assert same_second_seen, "never signed out and in within one second; rerun on a quieter box"

    # Logging out twice with the same token: the second time it is already revoked.
    assert (await supabase_client.post("/auth/logout", headers=bearer(phone))).status_code == 204
    assert (await supabase_client.post("/auth/logout", headers=bearer(phone))).status_code == 401


@one_database
async def test_logout_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/logout")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_logout_revokes_only_the_callers_tokens(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    ada, bob = await make_user(), await make_user()
    ada_headers, bob_headers = auth(ada), auth(bob)
    assert (await client.post("/auth/logout", headers=ada_headers)).status_code == 204
    assert (await client.get("/auth/me", headers=ada_headers)).status_code == 401
    assert (await client.get("/auth/me", headers=bob_headers)).status_code == 200


# --- a superuser revokes someone's tokens ---------------------------------------------------


async def test_superuser_revokes_a_users_tokens(
    app: FastAPI, client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    target, bystander = await make_user(), await make_user()
    target_headers = auth(target)

    revoked = await client.post(f"/api/v1/users/{target.id}/revoke-tokens", headers=auth(admin))
    assert revoked.status_code == 204, revoked.text
    assert (await client.get("/auth/me", headers=target_headers)).status_code == 401
    assert (await client.get("/auth/me", headers=auth(bystander))).status_code == 200
    assert (await client.get("/auth/me", headers=auth(admin))).status_code == 200
    # A token issued after the revocation (the row's new stamp) works.
    fresh = await client.get("/auth/me", headers=auth(await reload(app, target)))
    assert fresh.status_code == 200


async def reload(app: FastAPI, user: User) -> User:
    async with app.state.database.sessionmaker() as session:
        fresh = await User.get_by_id(session, user.id)
    assert fresh is not None
    return fresh


async def test_revoke_tokens_is_for_superusers_only(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin, member = await make_user(is_superuser=True), await make_user()
    path = f"/api/v1/users/{member.id}/revoke-tokens"
    assert (await client.post(path)).status_code == 401
    # Not even for itself (a user signs out with /auth/logout), nor for anyone else.
    assert (await client.post(path, headers=auth(member))).status_code == 403
    other = f"/api/v1/users/{admin.id}/revoke-tokens"
    assert (await client.post(other, headers=auth(member))).status_code == 403
    assert (await client.get("/auth/me", headers=auth(admin))).status_code == 200
    missing = await client.post("/api/v1/users/2147483000/revoke-tokens", headers=auth(admin))
    assert missing.status_code == 404
    assert missing.json() == {"detail": "User not found"}


# --- the command line ---------------------------------------------------------------------


@pytest.mark.processes
async def test_cli_revokes_tokens(
    client: httpx.AsyncClient,
    make_user: UserFactory,
    auth: AuthHeaders,
    database_url: str,
    forks: ManageForks,
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "APP_ENV": "test",
    }
    user = await make_user("cli-revoke@example.com")
    other = await make_user()
    headers = auth(user)
    assert (await client.get("/auth/me", headers=headers)).status_code == 200

    result = await asyncio.to_thread(forks.run, "revoke-tokens", "CLI-Revoke@example.com", env=env)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == f"revoked every API token of cli-revoke@example.com (id {user.id})"
    )
    assert (await client.get("/auth/me", headers=headers)).status_code == 401
    assert (await client.get("/auth/me", headers=auth(other))).status_code == 200

    unknown = await asyncio.to_thread(forks.run, "revoke-tokens", "nobody@example.com", env=env)
    assert unknown.returncode == 1
    assert unknown.stdout == ""
    assert unknown.stderr.strip().splitlines() == ["error: no user with email 'nobody@example.com'"]


# --- deactivation, email change ---------------------------------------------------------------


async def test_deactivation_revokes_and_reactivation_brings_nothing_back(
    app: FastAPI, client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin, user = await make_user(is_superuser=True), await make_user()
    old = auth(user)
    path = f"/api/v1/users/{user.id}"
    deactivated = await client.patch(path, json={"is_active": False}, headers=auth(admin))
    assert deactivated.status_code == 200
    assert (await client.get("/auth/me", headers=old)).status_code == 401
    reactivated = await client.patch(path, json={"is_active": True}, headers=auth(admin))
    assert reactivated.status_code == 200
    assert (await client.get("/auth/me", headers=old)).status_code == 401
    fresh = auth(await reload(app, user))
    assert (await client.get("/auth/me", headers=fresh)).status_code == 200


async def test_email_change_revokes_other_changes_do_not(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin, user = await make_user(is_superuser=True), await make_user()
    old = auth(user)
    path = f"/api/v1/users/{user.id}"
    renamed = await client.patch(path, json={"full_name": "Ada"}, headers=old)
    assert renamed.status_code == 200
    assert (await client.get("/auth/me", headers=old)).status_code == 200
    # The same email again (in another case) is no change.
    same = await client.patch(path, json={"email": user.email.upper()}, headers=auth(admin))
    assert same.status_code == 200
    assert (await client.get("/auth/me", headers=old)).status_code == 200
    moved = await client.patch(path, json={"email": "moved@example.com"}, headers=auth(admin))
    assert moved.status_code == 200 and moved.json()["email"] == "moved@example.com"
    assert (await client.get("/auth/me", headers=old)).status_code == 401


# --- deleted accounts and reused ids ----------------------------------------------------------


async def test_token_of_a_deleted_user_never_acts_for_the_account_that_reuses_its_id(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, backend: str
) -> None:
    """Found by attacking the API: SQLite gives the highest deleted id to the next row, and a
    token tied only to `sub` then acted as the new account (a superuser here)."""
    admin = await make_user(is_superuser=True)
    leaver = await make_user()
    kept = auth(leaver)
    assert (await client.delete(f"/api/v1/users/{leaver.id}", headers=kept)).status_code == 204

    created = await client.post(
        "/api/v1/users/",
        json={"email": "next@example.com", "is_superuser": True},
        headers=auth(admin),
    )
    assert created.status_code == 201
    if backend == "sqlite":
        assert created.json()["id"] == leaver.id  # the id was reused: the case that broke
    me = await client.get("/auth/me", headers=kept)
    assert me.status_code == 401
    listing = await client.get("/api/v1/users/", headers=kept)
    assert listing.status_code == 401


# --- key rotation ---------------------------------------------------------------------------


@pytest.fixture
async def rotated_app(database_url: str) -> Any:
    settings = make_settings(database_url, JWT_PREVIOUS_SECRET_KEYS=f"{OLD_KEY}, ")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def test_key_rotation_keeps_old_tokens_until_they_expire(
    database_url: str, make_user: UserFactory, rotated_app: FastAPI
) -> None:
    user = await make_user()
    old_settings = make_settings(database_url, JWT_SECRET_KEY=OLD_KEY)
    signed_with_old_key = issue_token(old_settings, user).token
    async with asgi_client(rotated_app) as rotated:
        assert (
            await rotated.get("/auth/me", headers=bearer(signed_with_old_key))
        ).status_code == 200
        # New tokens are signed with the new key only.
        new = issue_token(rotated_app.state.settings, user).token
        jwt.decode(new, TEST_SECRET, algorithms=["HS256"])
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(new, OLD_KEY, algorithms=["HS256"])
        assert (await rotated.get("/auth/me", headers=bearer(new))).status_code == 200
        # An old-key token still expires; and a revocation reaches old-key tokens too.
        expired = jwt.encode(
            {**claims(signed_with_old_key), "exp": int(time.time()) - 1}, OLD_KEY, "HS256"
        )
        assert (await rotated.get("/auth/me", headers=bearer(expired))).status_code == 401


async def test_without_the_previous_key_old_tokens_are_refused(
    client: httpx.AsyncClient, database_url: str, make_user: UserFactory
) -> None:
    user = await make_user()
    old_settings = make_settings(database_url, JWT_SECRET_KEY=OLD_KEY)
    token = issue_token(old_settings, user).token
    response = await client.get("/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token"}


def test_previous_keys_must_be_long_enough() -> None:
    with pytest.raises(ConfigurationError, match="JWT_PREVIOUS_SECRET_KEYS"):
        make_settings("sqlite+aiosqlite://", JWT_PREVIOUS_SECRET_KEYS=f"{OLD_KEY},short")


# --- clock skew and exact expiry --------------------------------------------------------------


def signed(user: User, **times: int) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": str(user.id),
        "email": user.email,
        "stamp": user.security_stamp,
        "iat": now,
        "exp": now + 3600,
    }
    payload.update({name: now + offset for name, offset in times.items()})
    return jwt.encode(payload, TEST_SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("times", "status"),
    [
        ({"iat": 1}, 200),  # a replica whose clock is a second ahead (refused before)
        ({"iat": 25}, 200),
        ({"nbf": 25}, 200),
        ({"iat": 45}, 401),  # beyond the 30 s skew
        ({"nbf": 45}, 401),
        ({"exp": -1}, 401),  # expiry has no leeway
    ],
)
async def test_clock_skew(
    client: httpx.AsyncClient, make_user: UserFactory, times: dict[str, int], status: int
) -> None:
    user = await make_user()
    token = signed(user, **times)  # computed when the test runs, not at collection
    assert (await client.get("/auth/me", headers=bearer(token))).status_code == status


async def test_a_memoized_token_is_refused_once_it_expires(
    client: httpx.AsyncClient, make_user: UserFactory
) -> None:
    """Signature checks are memoized (app/security.py); expiry must still be exact."""
    user = await make_user()
    expires_at = int(time.time()) + 2
    token = signed(user, exp=expires_at - int(time.time()))
    assert (await client.get("/auth/me", headers=bearer(token))).status_code == 200
    assert (await client.get("/auth/me", headers=bearer(token))).status_code == 200  # cached
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.05)
    response = await client.get("/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json() == {"detail": "Token has expired"}


async def test_token_without_a_stamp_is_refused(
    client: httpx.AsyncClient, make_user: UserFactory
) -> None:
    """Tokens issued before stamps existed (or forged without one) are not accepted."""
    user = await make_user()
    now = datetime.now(timezone.utc)
    token = jwt.encode(
        {"sub": str(user.id), "email": user.email, "iat": now, "exp": now + timedelta(hours=1)},
        TEST_SECRET,
        algorithm="HS256",
    )
    assert (await client.get("/auth/me", headers=bearer(token))).status_code == 401

"""The admin site (/admin) on SQLite and PostgreSQL, over ASGI with the fake Supabase: who gets
in (only an active superuser linked to the Supabase user whose password it is), the session
cookie and how it ends, CSRF on every change, the login's rate limit, and every change going
through the services (rules, revocation, cascade) and into the audit log as `superuser`."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from itsdangerous import TimestampSigner
from sqlalchemy import select

from app.admin.authentication import SESSION_COOKIE, session_secret
from app.models.audit_event import AuditEvent
from app.models.post import Post
from app.models.user import User
from app.security import issue_token
from app.supabase.fake import FakeSupabase, FakeUser
from app.supabase.fake.protocol import TOKEN_PATH
from tests.conftest import SupabaseAppFactory

PASSWORD = "correct horse battery"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Site:
    app: FastAPI
    fake: FakeSupabase

    def client(self, scheme: str = "http") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url=f"{scheme}://testserver")

    async def add_user(self, email: str, **values: Any) -> User:
        async with self.app.state.database.sessionmaker() as session:
            user = await User.create(session, email=email, **values)
            await session.commit()
            return user

    async def admin(self, email: str = "boss@example.com") -> tuple[User, FakeUser]:
        """An active superuser linked to a Supabase user with PASSWORD."""
        supabase_user = self.fake.create_user(email, password=PASSWORD)
        user = await self.add_user(email, is_superuser=True, supabase_id=supabase_user.id)
        return user, supabase_user

    async def user(self, user_id: int) -> User | None:
        async with self.app.state.database.sessionmaker() as session:
            user: User | None = await session.get(User, user_id)
            return user

    async def events(self) -> list[tuple[str, int | None, str, int, dict[str, Any]]]:
        async with self.app.state.database.sessionmaker() as session:
            rows = await session.scalars(select(AuditEvent).order_by(AuditEvent.id))
            return [(e.actor, e.actor_id, e.action, e.target_id, e.changes) for e in rows]

    def api_headers(self, user: User) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.app.state.settings, user).token}"}


@pytest.fixture
async def site(
    supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
) -> AsyncIterator[Site]:
    async with supabase_app_factory(SUPABASE_PUBLISHABLE_KEY=supabase_fake.publishable_key) as app:
        yield Site(app, supabase_fake)


async def csrf_of(client: httpx.AsyncClient, path: str = "/admin/login") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    match = CSRF_FIELD.search(page.text) or re.search(
        r'<meta name="csrf-token" content="([^"]+)"', page.text
    )
    assert match is not None, page.text
    return match[1]


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    token = await csrf_of(client)
    form = {"username": email, "password": password, "csrf_token": token}
    return await client.post("/admin/login", data=form)


async def signed_in(client: httpx.AsyncClient) -> bool:
    response = await client.get("/admin/")
    assert response.status_code in (200, 302), response.text
    return response.status_code == 200


# --- who gets in ----------------------------------------------------------------------------


async def test_anonymous_is_sent_to_the_sign_in_page(site: Site) -> None:
    user = await site.add_user("ann@example.com")
    async with site.client() as client:
        for path in (
            "/admin/",
            "/admin/user/list",
            f"/admin/user/details/{user.id}",
            f"/admin/user/edit/{user.id}",
            f"/admin/user/action/revoke-tokens?pks={user.id}",
            "/admin/audit-event/list",
        ):
            response = await client.get(path)
            assert response.status_code == 302, path
            assert response.headers["location"].endswith("/admin/login"), path
        # A change without a session: its CSRF token is right (from the sign-in page), and
        # still nothing happens.
        token = await csrf_of(client)
        form = {"full_name": "Hacked", "is_active": "y", "csrf_token": token}
        edit = await client.post(f"/admin/user/edit/{user.id}", data=form)
        assert edit.status_code == 302
        delete = await client.delete(
            f"/admin/user/delete?pks={user.id}", headers={"X-CSRF-Token": token}
        )
        assert delete.status_code == 302
    assert (await site.user(user.id)) is not None
    assert (await site.user(user.id)).full_name is None  # type: ignore[union-attr]
    assert await site.events() == []


async def test_only_an_active_linked_superuser_gets_a_session(site: Site) -> None:
    await site.admin("boss@example.com")
    ordinary = site.fake.create_user("ann@example.com", password=PASSWORD)
    await site.add_user("ann@example.com", supabase_id=ordinary.id)
    gone = site.fake.create_user("gone@example.com", password=PASSWORD)
    await site.add_user("gone@example.com", is_superuser=True, is_active=False, supabase_id=gone.id)
    site.fake.create_user("unlinked@example.com", password=PASSWORD)
    await site.add_user("unlinked@example.com", is_superuser=True)  # no supabase_id
    site.fake.create_user("nobody@example.com", password=PASSWORD)  # no local account
    async with site.client() as client:
        for email, password, status, message in [
            ("boss@example.com", "wrong password", 400, "Wrong email or password."),
            ("nobody-at-all@example.com", PASSWORD, 400, "Wrong email or password."),
            ("ann@example.com", PASSWORD, 403, "only an active superuser"),
            ("gone@example.com", PASSWORD, 403, "only an active superuser"),
            ("unlinked@example.com", PASSWORD, 403, "only an active superuser"),
            ("nobody@example.com", PASSWORD, 403, "only an active superuser"),
            ("", "", 400, "Enter your email and password."),
        ]:
            response = await sign_in(client, email, password)
            assert response.status_code == status, (email, response.text)
            assert message in response.text, email
            assert 'name="username"' in response.text  # still the sign-in page
            assert not await signed_in(client), email
        assert password_grants(site.fake)[-1]["apikey"] == site.fake.publishable_key

        response = await sign_in(client, "Boss@Example.com")
        assert response.status_code == 302, response.text
        assert response.headers["location"].endswith("/admin/")
        assert await signed_in(client)
    # The password went to Supabase only, and nothing of it into the page or the log of calls'
    # answers: the API kept no Supabase session.
    assert all(call["body"].get("password") for call in password_grants(site.fake))


def password_grants(fake: FakeSupabase) -> list[dict[str, Any]]:
    return [
        {"apikey": call.apikey, "body": json.loads(call.body)}
        for call in fake.calls_to(TOKEN_PATH)
        if "grant_type=password" in call.path
    ]


async def test_the_session_cookie(site: Site, supabase_app_factory: SupabaseAppFactory) -> None:
    await site.admin()
    async with site.client() as client:
        response = await sign_in(client, "boss@example.com")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert "httponly" in attributes
    assert attributes["samesite"].strip().lower() == "samesite=lax"
    assert attributes["path"].strip() == "path=/admin"
    assert int(attributes["max-age"].split("=")[1]) <= 8 * 3600
    assert "secure" not in attributes  # not in production: http://localhost works
    # No secret in the cookie: it is signed, and readable (base64 JSON) by its holder.
    payload = json.loads(base64.b64decode(cookie.split("=", 1)[1].split(".")[0] + "=="))
    assert set(payload) == {"uid", "stamp", "at", "csrf"}
    user = await site.user(payload["uid"])
    assert user is not None and user.security_stamp not in cookie


async def test_secure_cookie_in_production(
    supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
) -> None:
    async with supabase_app_factory(APP_ENV="production", ALLOWED_HOSTS="testserver") as app:
        site = Site(app, supabase_fake)
        await site.admin()
        async with site.client("https") as client:  # a Secure cookie is sent back over https only
            response = await sign_in(client, "boss@example.com")
        assert response.status_code == 302, response.text
        assert "secure" in response.headers["set-cookie"].lower().split("; ")


async def test_the_session_ends_with_the_accounts_tokens(site: Site) -> None:
    admin, _ = await site.admin()
    other, _ = await site.admin("other@example.com")
    async with site.client() as boss, site.client() as second:
        assert (await sign_in(boss, "boss@example.com")).status_code == 302
        assert (await sign_in(second, "other@example.com")).status_code == 302
        assert await signed_in(boss) and await signed_in(second)
        # Signing out of the API everywhere ends the admin session too.
        logout = await boss.post("/auth/logout", headers=site.api_headers(admin))
        assert logout.status_code == 204
        assert not await signed_in(boss)
        # Demoted by another superuser: out at once.
        admin = await site.user(admin.id)  # type: ignore[assignment]
        assert (await sign_in(boss, "boss@example.com")).status_code == 302
        demoted = await second.patch(
            f"/api/v1/users/{admin.id}",
            json={"is_superuser": False},
            headers=site.api_headers(other),
        )
        assert demoted.status_code == 200
        assert not await signed_in(boss)
        assert await signed_in(second)


async def test_the_session_lasts_eight_hours_at_most(site: Site) -> None:
    admin, _ = await site.admin()
    async with site.client() as client:
        assert (await sign_in(client, "boss@example.com")).status_code == 302
        value = client.cookies[SESSION_COOKIE]
        payload = json.loads(base64.b64decode(value.split(".")[0] + "=="))
        signer = TimestampSigner(session_secret(site.app.state.settings))
        for age, works in ((8 * 3600 - 60, True), (8 * 3600 + 1, False)):
            aged = {**payload, "at": int(time.time()) - age}
            forged = signer.sign(base64.b64encode(json.dumps(aged).encode())).decode()
            client.cookies.set(SESSION_COOKIE, forged, path="/admin")
            assert await signed_in(client) is works, age


# --- CSRF -----------------------------------------------------------------------------------


async def test_changes_without_the_csrf_token_are_refused(site: Site) -> None:
    await site.admin()
    ann = await site.add_user("ann@example.com", full_name="Ann")
    async with site.client() as client:
        # The sign-in form itself.
        no_token = {"username": "boss@example.com", "password": PASSWORD}
        assert (await client.post("/admin/login", data=no_token)).status_code == 403
        assert (await sign_in(client, "boss@example.com")).status_code == 302
        token = await csrf_of(client, f"/admin/user/edit/{ann.id}")
        edit = f"/admin/user/edit/{ann.id}"
        form = {"full_name": "Changed"}  # is_active absent: would deactivate
        for sent in ({}, {"csrf_token": "forged"}, {"csrf_token": token[:-1]}):
            response = await client.post(edit, data={**form, **sent})
            assert response.status_code == 403, sent
            assert response.json() == {"detail": "CSRF token missing or invalid"}
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            response = await client.delete(f"/admin/user/delete?pks={ann.id}", headers=headers)
            assert response.status_code == 403
        revoke = await client.post("/admin/user/revoke-tokens", data={"pks": str(ann.id)})
        assert revoke.status_code == 403
        current = await site.user(ann.id)
        assert current is not None and current.is_active and current.full_name == "Ann"
        assert await site.events() == []
        # With the token, the same edit goes through.
        done = await client.post(edit, data={**form, "csrf_token": token})
        assert done.status_code == 302, done.text


async def test_the_login_is_rate_limited(
    supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
) -> None:
    async with supabase_app_factory(RATE_LIMIT_ADMIN_LOGIN="2/minute") as app:
        site = Site(app, supabase_fake)
        await site.admin()
        async with site.client() as client:
            for _ in range(2):
                assert (await sign_in(client, "boss@example.com", "wrong")).status_code == 400
            asked = len(supabase_fake.calls_to(TOKEN_PATH))
            refused = await sign_in(client, "boss@example.com")
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert "Too many sign-in attempts" in refused.text
            assert len(supabase_fake.calls_to(TOKEN_PATH)) == asked  # Supabase not asked
            assert not await signed_in(client)


# --- what a superuser does there --------------------------------------------------------------


async def test_changes_go_through_the_services_and_are_audited(site: Site) -> None:
    admin, _ = await site.admin()
    ann = await site.add_user("ann@example.com", full_name="Ann")
    bob = await site.add_user("bob@example.com")
    async with site.app.state.database.sessionmaker() as session:
        post = await Post.create(session, author_id=bob.id, title="Bob's post", body="")
        kept = await Post.create(session, author_id=ann.id, title="Ann's post", body="")
        await session.commit()
    ann_api = site.api_headers(ann)
    async with site.client() as client:
        assert (await sign_in(client, "boss@example.com")).status_code == 302
        assert (await client.get("/auth/me", headers=ann_api)).status_code == 200

        # Search and filters.
        found = await client.get("/admin/user/list", params={"search": "ann@"})
        assert "ann@example.com" in found.text and "bob@example.com" not in found.text
        admins = await client.get("/admin/user/list", params={"is_superuser": "true"})
        assert "boss@example.com" in admins.text and "ann@example.com" not in admins.text
        titled = await client.get("/admin/post/list", params={"search": "Bob"})
        assert "Bob&#39;s post" in titled.text and "Ann&#39;s post" not in titled.text
        details = await client.get(f"/admin/user/details/{ann.id}")
        assert details.status_code == 200 and ann.security_stamp not in details.text

        # Deactivate (and rename): Ann's token answers 401 at once.
        token = await csrf_of(client, f"/admin/user/edit/{ann.id}")
        form = {"full_name": "Ann B", "csrf_token": token}  # is_active unchecked
        edited = await client.post(f"/admin/user/edit/{ann.id}", data=form)
        assert edited.status_code == 302, edited.text
        assert (await client.get("/auth/me", headers=ann_api)).status_code == 401
        # A rule of the API holds here too: a control character is refused, nothing changes.
        blank = {"full_name": "Ann\x1b[2J", "is_active": "y", "csrf_token": token}
        refused = await client.post(f"/admin/user/edit/{ann.id}", data=blank)
        assert refused.status_code == 400
        assert (await site.user(ann.id)).is_active is False  # type: ignore[union-attr]

        # Revoke tokens: the GET action only asks; the POST form revokes.
        bob_api = site.api_headers(bob)
        asked = await client.get(f"/admin/user/action/revoke-tokens?pks={bob.id}")
        assert asked.status_code == 200 and "bob@example.com" in asked.text
        assert (await client.get("/auth/me", headers=bob_api)).status_code == 200
        confirm = {"pks": str(bob.id), "csrf_token": token}
        assert (await client.post("/admin/user/revoke-tokens", data=confirm)).status_code == 302
        assert (await client.get("/auth/me", headers=bob_api)).status_code == 401

        # Delete a post, then a user with theirs (the cascade).
        headers = {"X-CSRF-Token": token}
        assert (
            await client.delete(f"/admin/post/delete?pks={post.id}", headers=headers)
        ).status_code == 200
        assert (
            await client.delete(f"/admin/user/delete?pks={ann.id}", headers=headers)
        ).status_code == 200
        async with site.app.state.database.sessionmaker() as session:
            assert await session.get(Post, kept.id) is None
        assert await site.user(ann.id) is None

        audit = await client.get("/admin/audit-event/list")
        assert audit.status_code == 200 and "user.deactivate" in audit.text
        # Read only: no edit, no delete.
        event_id = (await site_event_ids(site))[0]
        assert (await client.get(f"/admin/audit-event/edit/{event_id}")).status_code in (403, 404)
        removed = await client.delete(f"/admin/audit-event/delete?pks={event_id}", headers=headers)
        assert removed.status_code in (403, 404, 405)
        cookie = client.cookies[SESSION_COOKIE]
    # Nothing secret in any row: the password, the session, the CSRF token, keys, API tokens.
    rows = json.dumps(await site.events())
    settings = site.app.state.settings
    for secret in (PASSWORD, cookie, token, *site.fake.api_keys, settings.jwt_secret):
        assert secret not in rows
    for headers_used in (ann_api, bob_api):
        assert headers_used["Authorization"].split()[1] not in rows
    by = ("superuser", admin.id)
    assert await site.events() == [
        (*by, "user.deactivate", ann.id, {"is_active": [True, False]}),
        (*by, "user.update", ann.id, {"full_name": ["Ann", "Ann B"]}),
        (*by, "user.revoke_tokens", bob.id, {}),
        (*by, "post.delete", post.id, {"title": ["Bob's post", None], "author_id": [bob.id, None]}),
        (*by, "user.delete", ann.id, {"email": ["ann@example.com", None]}),
    ]


async def site_event_ids(site: Site) -> list[int]:
    async with site.app.state.database.sessionmaker() as session:
        return list((await session.scalars(select(AuditEvent.id))).all())


async def test_admin_pages_get_their_own_security_headers(site: Site) -> None:
    async with site.client() as client:
        page = await client.get("/admin/login")
        api = await client.get("/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    assert api.headers["content-security-policy"].startswith("default-src 'none'")


async def test_a_refused_edit_is_a_form_error_not_a_logged_error(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """A superuser's invalid value is shown on the form (400), and is not an ERROR with a
    traceback in the server's log (SQLAdmin logs every exception of an edit so)."""
    await site.admin()
    ann = await site.add_user("ann@example.com", full_name="Ann")
    async with site.client() as client:
        assert (await sign_in(client, "boss@example.com")).status_code == 302
        token = await csrf_of(client, f"/admin/user/edit/{ann.id}")
        form = {"full_name": "Ann\x1b[2J", "is_active": "y", "csrf_token": token}
        with caplog.at_level(logging.INFO):
            refused = await client.post(f"/admin/user/edit/{ann.id}", data=form)
    assert refused.status_code == 400
    assert "must be a single line without control characters" in refused.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]
    assert (await site.user(ann.id)).full_name == "Ann"  # type: ignore[union-attr]

"""The audit log on SQLite and PostgreSQL: each change to an account or a post by someone other
than its owner is one row, from every path (API, exchange, webhook, CLI; the admin site in
tests/test_admin.py), written with the change or not at all; `GET /api/v1/audit-events/` for
superusers, with its filters and paging; `manage.py audit`; and no secret in any row."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from typer.testing import CliRunner

from app.config import get_settings
from app.db.database import open_session
from app.models.audit_event import AuditEvent
from app.models.post import Post
from app.models.user import User
from app.security import issue_token
from app.services.supabase_sync import SupabaseSync
from app.supabase.admin import SupabaseAdmin
from app.supabase.fake import FakeSupabase
from app.supabase.fake.users import utc_now
from manage import cli
from tests.conftest import (
    TEST_SECRET,
    AuthHeaders,
    SupabaseAppFactory,
    UserFactory,
    asgi_client,
    delete_all_rows,
    make_settings,
)
from tests.supabase_headers import EXCHANGE, bearer

LIST = "/api/v1/audit-events/"
WEBHOOK = "/auth/supabase/webhook"
WEBHOOK_SECRET = "whsec-audit-0123456789abcdef0123456789abcdef"

Event = tuple[str, int | None, str, str, int, dict[str, Any]]


async def all_events(app: FastAPI) -> list[AuditEvent]:
    async with app.state.database.sessionmaker() as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all())


def summary(event: AuditEvent) -> Event:
    return (
        event.actor,
        event.actor_id,
        event.action,
        event.target_type,
        event.target_id,
        event.changes,
    )


async def add_post(app: FastAPI, author: User, title: str = "Hello") -> Post:
    async with app.state.database.sessionmaker() as session:
        post = await Post.create(session, author_id=author.id, title=title, body="text")
        await session.commit()
        return post


async def test_each_change_by_a_superuser_is_one_event(
    app: FastAPI, client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user("boss@example.com", is_superuser=True)
    headers = {**auth(admin), "X-Request-ID": "audit-request-1"}
    created = await client.post(
        "/api/v1/users/", json={"email": "ann@example.com", "full_name": "Ann"}, headers=headers
    )
    assert created.status_code == 201, created.text
    ann = created.json()["id"]
    user_path = f"/api/v1/users/{ann}"
    for change in (
        {"full_name": "Ann B", "email": "ann.b@example.com"},
        {"is_active": False},
        {"is_active": True, "is_superuser": True},
        {"is_superuser": False},
    ):
        response = await client.patch(user_path, json=change, headers=headers)
        assert response.status_code == 200, response.text
    revoked = await client.post(f"{user_path}/revoke-tokens", headers=headers)
    assert revoked.status_code == 204
    author = await make_user("author@example.com")
    post = await add_post(app, author)
    post_path = f"/api/v1/posts/{post.id}"
    assert (await client.patch(post_path, json={"title": "Hi"}, headers=headers)).status_code == 200
    assert (await client.delete(post_path, headers=headers)).status_code == 204
    assert (await client.delete(user_path, headers=headers)).status_code == 204

    events = await all_events(app)
    by = ("superuser", admin.id)
    assert [summary(event) for event in events] == [
        (
            *by,
            "user.create",
            "user",
            ann,
            {
                "email": [None, "ann@example.com"],
                "full_name": [None, "Ann"],
                "is_active": [None, True],
                "is_superuser": [None, False],
            },
        ),
        (
            *by,
            "user.update",
            "user",
            ann,
            {"email": ["ann@example.com", "ann.b@example.com"], "full_name": ["Ann", "Ann B"]},
        ),
        (*by, "user.deactivate", "user", ann, {"is_active": [True, False]}),
        (*by, "user.reactivate", "user", ann, {"is_active": [False, True]}),
        (*by, "user.promote", "user", ann, {"is_superuser": [False, True]}),
        (*by, "user.demote", "user", ann, {"is_superuser": [True, False]}),
        (*by, "user.revoke_tokens", "user", ann, {}),
        (*by, "post.update", "post", post.id, {"title": ["Hello", "Hi"]}),
        (
            *by,
            "post.delete",
            "post",
            post.id,
            {"title": ["Hi", None], "author_id": [author.id, None]},
        ),
        (*by, "user.delete", "user", ann, {"email": ["ann.b@example.com", None]}),
    ]
    assert {event.request_id for event in events} == {"audit-request-1"}
    assert all(event.at.tzinfo is not None for event in events)


async def test_owners_own_changes_and_refused_changes_leave_no_event(
    app: FastAPI, client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    user, other = await make_user("own@example.com"), await make_user("taken@example.com")
    post = await add_post(app, user)
    own = auth(user)
    assert (
        await client.patch("/api/v1/users/me", json={"full_name": "Me"}, headers=own)
    ).status_code == 200
    assert (
        await client.patch(f"/api/v1/posts/{post.id}", json={"title": "Mine"}, headers=own)
    ).status_code == 200
    assert (await client.post("/auth/logout", headers=own)).status_code == 204
    # Refused: another's post (403), a privileged field (403), an email taken (409).
    mallory = auth(other)
    assert (await client.delete(f"/api/v1/posts/{post.id}", headers=mallory)).status_code == 403
    assert (
        await client.patch("/api/v1/users/me", json={"is_superuser": True}, headers=mallory)
    ).status_code == 403
    taken = await client.patch(
        f"/api/v1/users/{user.id}", json={"email": "taken@example.com"}, headers=auth(admin)
    )
    assert taken.status_code == 409
    # A superuser's change to their own account is theirs too.
    assert (
        await client.patch(
            f"/api/v1/users/{admin.id}", json={"full_name": "Boss"}, headers=auth(admin)
        )
    ).status_code == 200
    assert await all_events(app) == []


async def test_the_list_is_for_superusers_and_read_only(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin, user = await make_user(is_superuser=True), await make_user()
    assert (await client.get(LIST)).status_code == 401
    assert (await client.get(LIST, headers=auth(user))).status_code == 403
    assert (await client.get(LIST, headers=auth(admin))).status_code == 200
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = await client.request(method, LIST, json={}, headers=auth(admin))
        assert response.status_code == 405, method
        assert "detail" in response.json()


async def test_filters_and_paging(
    app: FastAPI, client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    async with app.state.database.sessionmaker() as session:
        for i in range(7):
            session.add(
                AuditEvent(
                    actor="superuser" if i % 2 else "webhook",
                    actor_id=admin.id if i % 2 else None,
                    action="user.update" if i < 5 else "post.delete",
                    target_type="user" if i < 5 else "post",
                    target_id=100 + i % 3,
                    changes={"full_name": [None, str(i)]},
                )
            )
        await session.commit()
    headers = auth(admin)

    async def listed(**params: Any) -> dict[str, Any]:
        response = await client.get(LIST, params=params, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def numbers(body: dict[str, Any]) -> list[str]:
        return [item["changes"]["full_name"][1] for item in body["items"]]

    everything = await listed()
    assert numbers(everything) == ["6", "5", "4", "3", "2", "1", "0"]  # newest first
    assert everything["total"] == 7
    assert numbers(await listed(target_type="post")) == ["6", "5"]
    assert numbers(await listed(target_type="user", target_id=100)) == ["3", "0"]
    assert numbers(await listed(actor_id=admin.id)) == ["5", "3", "1"]
    assert numbers(await listed(action="user.update", actor_id=admin.id)) == ["3", "1"]
    first = await listed(limit=3)
    second = await listed(limit=3, offset=3)
    assert (numbers(first), numbers(second), first["total"]) == (
        ["6", "5", "4"],
        ["3", "2", "1"],
        7,
    )
    # The shared keyset paging: next_cursor walks every event once, with the filter kept.
    walked, cursor = [], None
    while True:
        page = await listed(limit=2, actor_id=admin.id, **({"cursor": cursor} if cursor else {}))
        assert page["total"] == 3
        walked += numbers(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == ["5", "3", "1"]
    last_page = await listed(limit=2, target_type="post")
    assert numbers(last_page) == ["6", "5"] and last_page["next_cursor"] is None  # full, last
    with_cursor = await listed(limit=2)
    other_filter = await client.get(
        LIST,
        params={"cursor": with_cursor["next_cursor"], "action": "post.delete"},
        headers=headers,
    )
    assert other_filter.status_code == 422  # a cursor belongs to its list and filter
    assert "cursor" in json.dumps(other_filter.json()["detail"])
    item = everything["items"][0]
    assert set(item) == {
        "id",
        "at",
        "actor_id",
        "actor",
        "action",
        "target_type",
        "target_id",
        "changes",
        "request_id",
    }
    assert set(everything) == {"items", "total", "limit", "offset", "next_cursor"}
    for bad in (
        {"action": "x" * 70},
        {"target_type": "User;--"},
        {"actor_id": 0},
        {"limit": 0},
        {"offset": 10_001},
        {"cursor": "not-a-cursor"},
    ):
        assert (await client.get(LIST, params=bad, headers=headers)).status_code == 422, bad


# --- the exchange, the webhook, and no secret anywhere ------------------------------------------


@pytest.fixture
async def hooked_app(supabase_app_factory: SupabaseAppFactory) -> AsyncIterator[FastAPI]:
    async with supabase_app_factory(SUPABASE_WEBHOOK_SECRET=WEBHOOK_SECRET) as app:
        yield app


async def test_exchange_link_and_webhook_changes_are_audited_and_no_row_holds_a_secret(
    hooked_app: FastAPI, supabase_fake: FakeSupabase
) -> None:
    app = hooked_app
    webhook = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}
    async with app.state.database.sessionmaker() as session:
        local = await User.create(session, email="linked@example.com")
        admin = await User.create(session, email="root@example.com", is_superuser=True)
        await session.commit()
    fake_user = supabase_fake.create_user("linked@example.com", password="secret-password-1")
    secrets: list[str] = [TEST_SECRET, WEBHOOK_SECRET, "secret-password-1", *supabase_fake.api_keys]
    async with asgi_client(app) as client:
        supabase_token = supabase_fake.sign_in(fake_user)
        exchanged = await client.get(EXCHANGE, headers=bearer(supabase_token))
        assert exchanged.status_code == 200, exchanged.text
        api_token = exchanged.json()["token"]
        secrets += [supabase_token, api_token]
        # A superuser's changes through the API, with its own token.
        admin_token = issue_token(app.state.settings, admin).token
        secrets.append(admin_token)
        admin_headers = bearer(admin_token)
        renamed = await client.patch(
            f"/api/v1/users/{local.id}", json={"full_name": "Linked"}, headers=admin_headers
        )
        assert renamed.status_code == 200
        revoked = await client.post(
            f"/api/v1/users/{local.id}/revoke-tokens", headers=admin_headers
        )
        assert revoked.status_code == 204
        for payload in (
            supabase_fake.ban_user(fake_user),
            supabase_fake.change_email(fake_user, "moved@example.com"),
            supabase_fake.delete_user(fake_user),
        ):
            delivered = await client.post(WEBHOOK, json=payload, headers=webhook)
            assert delivered.status_code == 204, delivered.text
        # The same deletion again does nothing, and leaves no second event.
        again = await client.post(WEBHOOK, json=payload, headers=webhook)
        assert again.status_code == 204

    events = await all_events(app)
    banned_until = events[3].changes.get("supabase_banned_until", [None, None])[1]
    assert banned_until is not None and int(banned_until[:4]) > utc_now().year + 50  # "ban"
    assert [summary(event) for event in events] == [
        ("user", local.id, "user.link", "user", local.id, {"supabase_id": [None, fake_user.id]}),
        ("superuser", admin.id, "user.update", "user", local.id, {"full_name": [None, "Linked"]}),
        ("superuser", admin.id, "user.revoke_tokens", "user", local.id, {}),
        (
            "webhook",
            None,
            "user.revoke_tokens",
            "user",
            local.id,
            {"supabase_banned_until": [None, banned_until]},
        ),
        (
            "webhook",
            None,
            "user.update",
            "user",
            local.id,
            {"email": ["linked@example.com", "moved@example.com"]},
        ),
        (
            "webhook",
            None,
            "user.deactivate",
            "user",
            local.id,
            {"is_active": [True, False], "supabase_id": [fake_user.id, None]},
        ),
    ]
    async with app.state.database.sessionmaker() as session:
        stamps = list((await session.scalars(select(User.security_stamp))).all())
    rows = json.dumps(
        [
            {column.key: str(getattr(e, column.key)) for column in AuditEvent.__table__.c}
            for e in events
        ]
    )
    for secret in [*secrets, *stamps]:
        assert secret and secret not in rows
        # Nor a recognisable part of one (a JWT's signature, a key's tail).
        assert secret[-16:] not in rows


async def test_sync_supabase_changes_are_audited_as_sync(
    hooked_app: FastAPI, supabase_fake: FakeSupabase
) -> None:
    """What `manage.py sync-supabase` runs (SupabaseSync.run), in this process."""
    app, fake = hooked_app, supabase_fake
    gone, banned, renamed = (fake.create_user(f"{name}@example.com") for name in "abc")
    async with asgi_client(app) as client:
        for user in (gone, banned, renamed):
            exchanged = await client.get(EXCHANGE, headers=bearer(fake.sign_in(user)))
            assert exchanged.status_code == 200
    ids = {row.email: row.id for row in await users(app)}
    # Changes whose webhook calls were lost.
    fake.delete_user(gone)
    fake.ban_user(banned)
    fake.change_email(renamed, "c2@example.com")

    async def sync(*, dry_run: bool = False) -> None:
        settings = app.state.settings
        supabase = SupabaseAdmin.from_settings(settings)
        try:
            async with open_session(settings) as session:
                await SupabaseSync.run(
                    session,
                    supabase,
                    per_page=50,
                    max_deactivations=10,
                    dry_run=dry_run,
                    echo=lambda _: None,
                    warn=lambda _: None,
                )
        finally:
            await supabase.aclose()

    await sync(dry_run=True)
    assert await all_events(app) == []  # a dry run changes nothing, records nothing
    await sync()
    await sync()  # the second run changes nothing, and records nothing more
    events = await all_events(app)
    assert [summary(event)[:5] for event in events] == [
        ("sync", None, "user.deactivate", "user", ids["a@example.com"]),
        ("sync", None, "user.revoke_tokens", "user", ids["b@example.com"]),
        ("sync", None, "user.update", "user", ids["c@example.com"]),
    ]
    assert events[0].changes == {"is_active": [True, False], "supabase_id": [gone.id, None]}
    assert events[2].changes == {"email": ["c@example.com", "c2@example.com"]}


async def users(app: FastAPI) -> list[User]:
    async with app.state.database.sessionmaker() as session:
        return list((await session.scalars(select(User).order_by(User.id))).all())


# --- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The CLI, run in this process against the test database (its rows deleted afterwards)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("JWT_SECRET_KEY", TEST_SECRET)
    get_settings.cache_clear()
    try:
        yield database_url
    finally:
        get_settings.cache_clear()
        asyncio.run(wipe(database_url))


async def wipe(database_url: str) -> None:
    from app.db.database import Database

    database = Database(make_settings(database_url))
    try:
        await delete_all_rows(database)
    finally:
        await database.dispose()


async def cli_events(database_url: str) -> list[AuditEvent]:
    async with open_session(make_settings(database_url)) as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all())


async def add_plain_user(database_url: str, email: str) -> int:
    async with open_session(make_settings(database_url)) as session:
        user = await User.create(session, email=email)
        await session.commit()
        return user.id


def test_cli_changes_are_audited_and_listed(cli_database: str) -> None:
    runner = CliRunner()
    plain = asyncio.run(add_plain_user(cli_database, "plain@example.com"))
    for args in (
        ["create-superuser", "new@example.com"],
        ["create-superuser", "plain@example.com"],
        ["revoke-tokens", "plain@example.com"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    events = asyncio.run(cli_events(cli_database))
    new = events[0].target_id
    assert [summary(event) for event in events] == [
        (
            "cli",
            None,
            "user.create",
            "user",
            new,
            {
                "email": [None, "new@example.com"],
                "is_active": [None, True],
                "is_superuser": [None, True],
            },
        ),
        ("cli", None, "user.promote", "user", plain, {"is_superuser": [False, True]}),
        ("cli", None, "user.revoke_tokens", "user", plain, {}),
    ]
    assert {event.request_id for event in events} == {None}
    assert TEST_SECRET not in json.dumps([summary(event) for event in events])

    listed = runner.invoke(cli, ["audit", "--email", "PLAIN@example.com"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 2
    assert " cli user.revoke_tokens user:" in lines[0] and f"user:{plain} " in lines[0]
    assert " cli user.promote " in lines[1] and '{"is_superuser": [false, true]}' in lines[1]
    latest = runner.invoke(cli, ["audit", "--limit", "1"])
    assert latest.output.splitlines() == lines[:1]
    unknown = runner.invoke(cli, ["audit", "--email", "nobody@example.com"])
    assert unknown.exit_code == 1
    assert "no user with email" in unknown.output

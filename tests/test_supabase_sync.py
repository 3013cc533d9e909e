"""`manage.py sync-supabase` on SQLite and PostgreSQL: the real command, against the fake Supabase
over real HTTP, repairing what lost webhook calls left undone (users deleted, banned, renamed in
Supabase while no webhook call reached the API)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.models.user import User
from app.supabase.fake import ADMIN_USERS_PATH, FakeSupabase, FakeUser, Scripted
from app.supabase.fake.users import utc_now
from tests.conftest import SupabaseAppFactory, asgi_client, one_database
from tests.processes import ManageForks
from tests.supabase_headers import EXCHANGE, bearer
from tests.test_supabase_exchange import add_user, rows

pytestmark = pytest.mark.processes  # each test runs the command as a process

NOTHING = "deactivated 0, revoked 0, updated 0"
WEBHOOK_SECRET = "whsec-0123456789abcdef0123456789abcdef"
WEBHOOK_AUTH = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}


@dataclass
class Synced:
    app: FastAPI
    client: httpx.AsyncClient
    fake: FakeSupabase
    forks: ManageForks
    database_url: str

    async def sign_in(self, user: FakeUser) -> dict[str, str]:
        """Exchange a Supabase token of `user` (linking or creating its account): the API
        token's headers."""
        response = await self.client.get(EXCHANGE, headers=bearer(self.fake.sign_in(user)))
        assert response.status_code == 200, response.text
        return bearer(response.json()["token"])

    async def works(self, api_token: dict[str, str]) -> bool:
        status = (await self.client.get("/auth/me", headers=api_token)).status_code
        assert status in (200, 401)
        return status == 200

    def sync(self, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        values = {
            "SUPABASE_URL": self.fake.url,
            "SUPABASE_SERVICE_ROLE_KEY": self.fake.service_role_key,
            "SUPABASE_CONNECT_TIMEOUT": "1",
            "SUPABASE_READ_TIMEOUT": "2",
            **settings,
        }
        return self.forks.manage("sync-supabase", *args, database_url=self.database_url, **values)

    def synced(self, *args: str, **settings: str) -> list[str]:
        """The command's output lines; it must succeed."""
        result = self.sync(*args, **settings)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()


@pytest.fixture
async def synced(
    supabase_app_factory: SupabaseAppFactory,
    supabase_fake: FakeSupabase,
    forks: ManageForks,
    database_url: str,
) -> AsyncIterator[Synced]:
    async with (
        supabase_app_factory(SUPABASE_WEBHOOK_SECRET=WEBHOOK_SECRET) as app,
        asgi_client(app) as client,
    ):
        yield Synced(app, client, supabase_fake, forks, database_url)


def summary(checked: int, deactivated: int = 0, revoked: int = 0, updated: int = 0) -> str:
    return (
        f"sync-supabase: checked {checked}, deactivated {deactivated}, revoked {revoked}, "
        f"updated {updated}"
    )


async def test_deleted_banned_and_renamed_users_then_a_second_run_changes_nothing(
    synced: Synced,
) -> None:
    fake = synced.fake
    gone, banned, renamed, calm = (
        fake.create_user(f"{name}@example.com") for name in ("gone", "banned", "renamed", "calm")
    )
    tokens = {user.id: await synced.sign_in(user) for user in (gone, banned, renamed, calm)}
    fake.create_user("never-signed-in@example.com")  # in Supabase, linked to no account
    # What Supabase changes while its webhook calls are lost: the payloads are dropped.
    fake.delete_user(gone)
    fake.ban_user(banned)
    fake.change_email(renamed, "Renamed.Again@Example.com")
    before = {row.supabase_id: row for row in await rows(synced.app)}

    first = synced.synced()
    assert first[-1] == summary(checked=4, deactivated=1, revoked=1, updated=1)
    assert len(first) == 4  # one line a change, then the summary
    for user, what in ((gone, "deactivated"), (banned, "revoked"), (renamed, "updated")):
        [line] = [line for line in first if user.id in line]
        assert f"user {before[user.id].id} " in line and what in line
    assert "@" not in "\n".join(first)  # ids, never emails

    after = {row.id: row for row in await rows(synced.app)}
    deleted = after[before[gone.id].id]
    assert (deleted.is_active, deleted.supabase_id, deleted.email) == (
        False,
        None,
        "gone@example.com",  # the data is kept
    )
    assert after[before[banned.id].id].is_active
    assert after[before[renamed.id].id].email == "renamed.again@example.com"
    assert not await synced.works(tokens[gone.id])
    assert not await synced.works(tokens[banned.id])
    assert not await synced.works(tokens[renamed.id])
    assert await synced.works(tokens[calm.id])
    me = await synced.client.get("/auth/me", headers=await synced.sign_in(renamed))
    assert me.json()["user"]["email"] == "renamed.again@example.com"

    # The second run finds nothing to do, and does nothing (the ban is not applied again).
    second = synced.synced()
    assert second == [summary(checked=4)]
    assert NOTHING in second[-1]
    assert [state(row) for row in await rows(synced.app)] == [state(row) for row in after.values()]


def state(row: User) -> tuple[object, ...]:
    return (row.id, row.email, row.is_active, row.supabase_id, row.security_stamp)


async def test_dry_run_prints_the_changes_and_makes_none(synced: Synced) -> None:
    fake = synced.fake
    gone, banned, renamed = (fake.create_user(f"{name}@example.com") for name in "abc")
    tokens = [await synced.sign_in(user) for user in (gone, banned, renamed)]
    fake.delete_user(gone)
    fake.ban_user(banned)
    fake.change_email(renamed, "c2@example.com")
    before = [state(row) for row in await rows(synced.app)]

    dry = synced.synced("--dry-run")
    assert dry[-1] == summary(checked=2, deactivated=1, revoked=1, updated=1)
    assert all("would be" in line for line in dry[:-1]) and len(dry) == 4
    assert [state(row) for row in await rows(synced.app)] == before
    assert all([await synced.works(token) for token in tokens])
    # ... and the real run then does what the dry run said.
    assert synced.synced()[-1] == dry[-1]


async def test_soft_deleted_users_are_gone_too(synced: Synced) -> None:
    user = synced.fake.create_user("soft@example.com")
    token = await synced.sign_in(user)
    synced.fake.soft_delete_user(user)  # still listed, with `deleted_at`
    assert synced.synced()[-1] == summary(checked=1, deactivated=1)
    [row] = await rows(synced.app)
    assert (row.is_active, row.supabase_id) == (False, None)
    assert not await synced.works(token)


async def test_every_page_is_walked(synced: Synced) -> None:
    users = [synced.fake.create_user(f"u{number}@example.com") for number in range(7)]
    for user in users:
        await synced.sign_in(user)
    for user in users[::3]:  # spread over the pages: newest, middle, oldest
        synced.fake.ban_user(user)
    assert synced.synced("--per-page", "2")[-1] == summary(checked=7, revoked=3)
    pages = [call.path for call in synced.fake.calls_to(ADMIN_USERS_PATH)]
    assert len(pages) == 4  # 2 + 2 + 2 + 1: the short page is the last
    assert all("per_page=2" in page for page in pages)
    assert [f"page={number}" in page for number, page in enumerate(pages, 1)] == [True] * 4
    assert synced.fake.admin_calls == synced.fake.calls_to(ADMIN_USERS_PATH)  # none by id


async def test_an_account_missing_from_the_list_is_asked_for_before_it_is_deactivated(
    synced: Synced,
) -> None:
    """A list paged by offset can skip a user (others deleted during the walk): only a user
    Supabase says it does not have costs its account."""
    alive, gone = synced.fake.create_user("alive@example.com"), synced.fake.create_user("g@x.io")
    alive_token = await synced.sign_in(alive)
    await synced.sign_in(gone)
    synced.fake.delete_user(gone)
    synced.fake.script(ADMIN_USERS_PATH, Scripted(status=200, body={"users": [], "aud": "x"}))
    assert synced.synced()[-1] == summary(checked=1, deactivated=1)
    assert await synced.works(alive_token)
    asked = {call.path.rsplit("/", 1)[1] for call in synced.fake.admin_calls[1:]}
    assert asked == {alive.id, gone.id}


async def test_only_gotrue_saying_user_not_found_makes_a_user_gone(synced: Synced) -> None:
    """A 404 from a gateway (a wrong path, a proxy) says nothing about the user."""
    user = synced.fake.create_user("ada@example.com")
    await synced.sign_in(user)
    synced.fake.script(ADMIN_USERS_PATH, Scripted(status=200, body={"users": [], "aud": "x"}))
    no_route = {"message": "no Route matched with those values"}
    synced.fake.script(f"{ADMIN_USERS_PATH}/{user.id}", Scripted(status=404, body=no_route))
    result = synced.sync()
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: Supabase answered 404 - for user {user.id}; try again later"
    ]
    [row] = await rows(synced.app)
    assert row.is_active and row.supabase_id == user.id


async def test_more_deactivations_than_allowed_change_nothing(synced: Synced) -> None:
    """Every linked user gone at once looks like SUPABASE_URL pointing at another project."""
    users = [synced.fake.create_user(f"{name}@example.com") for name in "abc"]
    for user in users:
        await synced.sign_in(user)
    for user in users[:2]:
        synced.fake.delete_user(user)
    before = [state(row) for row in await rows(synced.app)]
    refused = synced.sync("--max-deactivations", "1")
    assert refused.returncode == 1 and refused.stdout == ""
    [line] = refused.stderr.splitlines()
    assert "2 linked accounts would be deactivated" in line and "nothing was changed" in line
    assert [state(row) for row in await rows(synced.app)] == before
    dry = synced.sync("--max-deactivations", "1", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.splitlines()[-1] == summary(1, deactivated=2)
    assert "2 linked accounts would be deactivated" in dry.stderr
    assert synced.synced("--max-deactivations", "2")[-1] == summary(1, deactivated=2)


async def test_a_ban_is_applied_once_whoever_applies_it(synced: Synced) -> None:
    """The webhook and the sync share the record of the ban applied: what one did, the other
    does not do again; a longer ban is another ban; an ended ban is none."""
    user = synced.fake.create_user("ada@example.com")
    await synced.sign_in(user)
    delivered = await synced.client.post(
        "/auth/supabase/webhook", json=synced.fake.ban_user(user), headers=WEBHOOK_AUTH
    )
    assert delivered.status_code == 204
    [by_webhook] = await rows(synced.app)
    assert synced.synced()[-1] == summary(checked=1)
    [after_sync] = await rows(synced.app)
    assert after_sync.security_stamp == by_webhook.security_stamp
    # A longer ban, whose webhook call was lost: revoked by the sync, once.
    synced.fake.ban_user(user, until=utc_now() + timedelta(days=400 * 365))
    assert synced.synced()[-1] == summary(checked=1, revoked=1)
    assert synced.synced()[-1] == summary(checked=1)
    [longer] = await rows(synced.app)
    assert longer.security_stamp != by_webhook.security_stamp
    # A ban that has ended revokes nothing.
    ended = synced.fake.create_user("ended@example.com")
    token = await synced.sign_in(ended)
    synced.fake.ban_user(ended, until=utc_now() - timedelta(minutes=1))
    assert synced.synced()[-1] == summary(checked=2)
    assert await synced.works(token)


async def test_an_address_another_account_has_is_kept_with_a_warning(synced: Synced) -> None:
    other = await add_user(synced.app, "taken@example.com")
    user = synced.fake.create_user("old@example.com")
    token = await synced.sign_in(user)
    synced.fake.change_email(user, "taken@example.com")
    pending = synced.fake.create_user("pending@example.com")
    await synced.sign_in(pending)
    synced.fake.change_email(pending, "later@example.com", confirm=False)
    for _ in range(2):
        result = synced.sync()
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [summary(checked=2)]
        [warning] = result.stderr.splitlines()
        assert warning.startswith("warning: ") and "keeps its email" in warning
        assert user.id in warning and str(other.id) in warning and "@" not in warning
    assert sorted(row.email for row in await rows(synced.app)) == [
        "old@example.com",
        "pending@example.com",
        "taken@example.com",
    ]
    assert await synced.works(token)


async def test_emails_from_supabase_take_the_canonical_form(synced: Synced) -> None:
    """IDNA ASCII domain, lower-cased: the Unicode spelling of a taken address is that address."""
    other = await add_user(synced.app, "boss@xn--80ak6aa92e.com")
    unicode_user, plain_user = (synced.fake.create_user(f"{n}@example.com") for n in "ab")
    for user in (unicode_user, plain_user):
        await synced.sign_in(user)
    synced.fake.change_email(unicode_user, "Boss@аррӏе.com")  # Cyrillic: the taken address
    synced.fake.change_email(plain_user, "New@Bücher.example")
    result = synced.sync()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == summary(checked=2, updated=1)
    [warning] = result.stderr.splitlines()
    assert unicode_user.id in warning and str(other.id) in warning
    emails = sorted(row.email for row in await rows(synced.app))
    assert emails == ["a@example.com", "boss@xn--80ak6aa92e.com", "new@xn--bcher-kva.example"]


@one_database  # refused before the database is used
class TestRefusals:
    @pytest.mark.parametrize(
        ("settings", "message"),
        [
            ({"SUPABASE_URL": ""}, "SUPABASE_URL is not set"),
            ({"SUPABASE_SERVICE_ROLE_KEY": ""}, "SUPABASE_SERVICE_ROLE_KEY is not set"),
            ({"SUPABASE_SERVICE_ROLE_KEY": "anon"}, "a key with the role 'anon'"),
            ({"SUPABASE_SERVICE_ROLE_KEY": "publishable"}, "holds a publishable key"),
        ],
        ids=["no url", "no key", "anon key", "publishable key"],
    )
    async def test_without_a_key_that_may_list_users(
        self, synced: Synced, settings: dict[str, str], message: str
    ) -> None:
        user = synced.fake.create_user("ada@example.com")
        await synced.sign_in(user)
        synced.fake.delete_user(user)
        keys = {"anon": synced.fake.anon_key, "publishable": synced.fake.publishable_key}
        values = {name: keys.get(value, value) for name, value in settings.items()}
        result = synced.sync(SUPABASE_PUBLISHABLE_KEY=synced.fake.publishable_key, **values)
        assert result.returncode == 1
        assert result.stdout == ""
        [line] = result.stderr.splitlines()
        assert line.startswith("error: ") and message in line
        assert synced.fake.admin_calls == []
        [row] = await rows(synced.app)
        assert row.is_active

    async def test_a_key_supabase_refuses(self, synced: Synced) -> None:
        result = synced.sync(SUPABASE_SERVICE_ROLE_KEY="sb_secret_not-this-project-0123456789")
        assert result.returncode == 1
        [line] = result.stderr.splitlines()
        assert "Supabase refused the key in SUPABASE_SERVICE_ROLE_KEY" in line
        assert "sb_secret_not" not in line

    async def test_supabase_down(self, synced: Synced) -> None:
        user = synced.fake.create_user("ada@example.com")
        await synced.sign_in(user)
        with FakeSupabase() as elsewhere:
            closed = elsewhere.url  # its port, closed once it stops
        result = synced.sync(SUPABASE_URL=closed)
        assert result.returncode == 1
        [line] = result.stderr.splitlines()
        assert line.startswith(f"error: cannot reach Supabase at {closed}")
        [row] = await rows(synced.app)
        assert row.is_active and row.supabase_id == user.id

    async def test_supabase_silent(self, synced: Synced) -> None:
        synced.fake.script(ADMIN_USERS_PATH, Scripted.stall(10))
        result = synced.sync(SUPABASE_READ_TIMEOUT="0.3")
        assert result.returncode == 1
        [line] = result.stderr.splitlines()
        assert line.startswith("error: Supabase at ") and "did not answer in time" in line

    async def test_supabase_failing(self, synced: Synced) -> None:
        synced.fake.script(ADMIN_USERS_PATH, Scripted.gotrue_error(500, "unexpected_failure", "x"))
        result = synced.sync()
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            "error: Supabase answered 500 unexpected_failure for the user list; try again later"
        ]


@one_database
async def test_the_secret_key_goes_only_in_apikey(synced: Synced) -> None:
    user = synced.fake.create_user("ada@example.com")
    await synced.sign_in(user)
    synced.fake.ban_user(user)
    lines = synced.synced(SUPABASE_SERVICE_ROLE_KEY=synced.fake.secret_key)
    assert lines[-1] == summary(checked=1, revoked=1)
    [call] = synced.fake.admin_calls
    assert call.apikey == synced.fake.secret_key
    assert "authorization" not in call.headers
    # The legacy service_role key is a JWT: sent as apikey and as the bearer token.
    synced.fake.calls.clear()
    assert synced.synced()[-1] == summary(checked=1)
    [call] = synced.fake.admin_calls
    assert call.apikey == call.bearer == synced.fake.service_role_key

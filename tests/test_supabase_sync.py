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
from tests.conftest import SupabaseAppFactory, asgi_client
from tests.processes import ManageForks
from tests.supabase_headers import EXCHANGE, bearer
from tests.test_supabase_exchange import add_user, rows

pytestmark = pytest.mark.processes  # each test runs the command as a process

NOTHING = "deactivated 0, revoked 0, updated 0"


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
    async with supabase_app_factory() as app, asgi_client(app) as client:
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

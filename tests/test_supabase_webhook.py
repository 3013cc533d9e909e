"""POST /auth/supabase/webhook on SQLite and PostgreSQL: Supabase's Database Webhook for
`auth.users`, with bodies of the real shape built by the fake Supabase from its own changes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.supabase.fake import FakeSupabase, FakeUser
from app.supabase.fake.users import utc_now
from tests.conftest import SupabaseAppFactory, asgi_client, make_settings, one_database
from tests.supabase_headers import EXCHANGE, bearer
from tests.test_supabase_exchange import add_user, rows

WEBHOOK = "/auth/supabase/webhook"
SECRET = "whsec-0123456789abcdef0123456789abcdef"
AUTHORIZED = {"Authorization": f"Bearer {SECRET}"}
# Timestamps far outside the calendar (contract: "Hostile clients and lost events").
FAR_OUT_TIMESTAMPS = [
    "9999-12-31T23:59:59-14:00",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "294276-12-31T23:59:59+00:00",
    "9" * 100 + "-01-01T00:00:00Z",
    "0044-03-15T00:00:00+00:00 BC",
]


def banned_until(moment: str) -> Any:
    """A change of the event's `record`: this `banned_until`."""
    return lambda payload: {**payload, "record": {**payload["record"], "banned_until": moment}}


@dataclass
class Hooked:
    app: FastAPI
    client: httpx.AsyncClient
    fake: FakeSupabase

    async def post(self, payload: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(WEBHOOK, json=payload, headers=headers or AUTHORIZED)

    async def deliver(self, payload: Any) -> None:
        response = await self.post(payload)
        assert response.status_code == 204, response.text
        assert response.content == b""

    async def sign_in(self, user: FakeUser) -> dict[str, str]:
        """Exchange a Supabase token of `user`: the API token's headers."""
        response = await self.client.get(EXCHANGE, headers=bearer(self.fake.sign_in(user)))
        assert response.status_code == 200, response.text
        return bearer(response.json()["token"])

    async def works(self, api_token: dict[str, str]) -> bool:
        status = (await self.client.get("/auth/me", headers=api_token)).status_code
        assert status in (200, 401)
        return status == 200


@pytest.fixture
async def hooked(
    supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
) -> AsyncIterator[Hooked]:
    async with (
        supabase_app_factory(SUPABASE_WEBHOOK_SECRET=SECRET) as app,
        asgi_client(app) as client,
    ):
        yield Hooked(app, client, supabase_fake)


class TestWhoMayCall:
    @one_database
    async def test_404_without_the_setting(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        payload = supabase_fake.insert_event(supabase_fake.create_user("a@example.com"))
        for body, headers in [
            (json.dumps(payload), AUTHORIZED),
            ("not json", AUTHORIZED),
            (json.dumps(payload), {}),
        ]:
            response = await supabase_client.post(WEBHOOK, content=body, headers=headers)
            assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": ""},
            {"Authorization": "Bearer"},
            {"Authorization": f"Basic {SECRET}"},
            {"Authorization": f"Bearer {SECRET}x"},
            {"Authorization": f"Bearer {SECRET[:-1]}"},
            {"Authorization": "Bearer " + "x" * len(SECRET)},
            {"apikey": SECRET},
            {"Authorization": f"Bearer {SECRET[:-1]}é".encode("latin-1")},
        ],
        ids=[
            "none",
            "empty",
            "no secret",
            "Basic",
            "longer",
            "shorter",
            "same length",
            "in another header",
            "non-ASCII",
        ],
    )
    async def test_401_for_a_missing_or_wrong_secret(
        self, hooked: Hooked, headers: dict[str, Any]
    ) -> None:
        user = hooked.fake.create_user("a@example.com")
        api_token = await hooked.sign_in(user)
        raw = [
            (name.encode(), value if isinstance(value, bytes) else value.encode())
            for name, value in headers.items()
        ]
        response = await hooked.client.post(
            WEBHOOK, content=json.dumps(hooked.fake.delete_user(user)), headers=raw
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert await hooked.works(api_token)

    @one_database
    async def test_the_secret_is_checked_before_the_body(self, hooked: Hooked) -> None:
        """No 422 that would tell a stranger the endpoint is there and what it expects."""
        response = await hooked.client.post(WEBHOOK, content=b"{not json")
        assert response.status_code == 401

    @one_database
    async def test_the_bearer_scheme_is_case_insensitive(self, hooked: Hooked) -> None:
        payload = hooked.fake.insert_event(hooked.fake.create_user("a@example.com"))
        response = await hooked.post(payload, {"Authorization": f"bearer {SECRET}"})
        assert response.status_code == 204

    @pytest.mark.parametrize("secret", ["short", "x" * 31, "white space" * 4])
    def test_a_weak_or_unsendable_secret_is_refused_at_startup(self, secret: str) -> None:
        with pytest.raises(ValueError, match="SUPABASE_WEBHOOK_SECRET"):
            make_settings("sqlite+aiosqlite://", SUPABASE_WEBHOOK_SECRET=secret)


def deep_json(depth: int) -> str:
    return (
        '{"type": "DELETE", "table": "users", "schema": "auth", "record": null, "old_record": '
        + (
            '{"id": "00000000-0000-4000-8000-000000000001", "x": ' * depth
            + "null"
            + "}" * depth
            + "}"
        )
    )


class TestBodiesOfAnotherShape:
    @pytest.mark.parametrize(
        "change",
        [
            pytest.param(lambda p: "not json", id="not JSON"),
            pytest.param(lambda p: [p], id="a list"),
            pytest.param(lambda p: {**p, "type": "TRUNCATE"}, id="TRUNCATE"),
            pytest.param(lambda p: {**p, "table": "profiles"}, id="another table"),
            pytest.param(lambda p: {**p, "schema": "public"}, id="another schema"),
            pytest.param(lambda p: {k: v for k, v in p.items() if k != "type"}, id="no type"),
            pytest.param(lambda p: {**p, "old_record": None}, id="UPDATE without old_record"),
            pytest.param(lambda p: {**p, "type": "DELETE"}, id="DELETE with a record"),
            pytest.param(lambda p: {**p, "type": "INSERT"}, id="INSERT with old_record"),
            pytest.param(
                lambda p: {**p, "record": {**p["record"], "id": "not-a-uuid"}}, id="id not a UUID"
            ),
            pytest.param(
                lambda p: {**p, "record": {k: v for k, v in p["record"].items() if k != "id"}},
                id="no id",
            ),
            pytest.param(
                lambda p: {
                    **p,
                    "record": {**p["record"], "id": "00000000-0000-4000-8000-000000000009"},
                },
                id="two users",
            ),
            pytest.param(
                lambda p: {**p, "record": {**p["record"], "banned_until": "soon"}},
                id="banned_until not a timestamp",
            ),
            pytest.param(
                lambda p: {**p, "record": {**p["record"], "email_confirmed_at": 1700000000}},
                id="timestamp as a number",
            ),
            pytest.param(lambda p: {**p, "record": {**p["record"], "email": 42}}, id="email 42"),
            *(
                pytest.param(
                    lambda p, moment=moment: {
                        **p,
                        "record": {**p["record"], "banned_until": moment},
                    },
                    id=f"banned_until {moment[:30]}",
                )
                for moment in FAR_OUT_TIMESTAMPS
            ),
        ],
    )
    async def test_422_and_nothing_changes(self, hooked: Hooked, change: Any) -> None:
        user = hooked.fake.create_user("a@example.com")
        api_token = await hooked.sign_in(user)
        body = change(hooked.fake.ban_user(user))
        response = await hooked.client.post(
            WEBHOOK,
            content=body if isinstance(body, str) else json.dumps(body),
            headers={**AUTHORIZED, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert "detail" in response.json()
        assert await hooked.works(api_token)

    @one_database
    async def test_deep_nesting_is_no_server_error(self, hooked: Hooked) -> None:
        response = await hooked.client.post(
            WEBHOOK,
            content=deep_json(5000),
            headers={**AUTHORIZED, "Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text  # deeper than the JSON parser goes

    @one_database
    async def test_a_huge_body_is_refused_before_it_is_read(self, hooked: Hooked) -> None:
        padding = "x" * (hooked.app.state.settings.MAX_BODY_BYTES + 1)
        response = await hooked.post({"type": "INSERT", "padding": padding})
        assert response.status_code == 413

    @one_database
    async def test_extra_keys_are_ignored(self, hooked: Hooked) -> None:
        """A trigger of one's own may add keys (e.g. `env`); the shape is still the webhook's."""
        payload = hooked.fake.insert_event(hooked.fake.create_user("a@example.com"))
        await hooked.deliver({**payload, "env": "LOCAL"})


class TestDelete:
    async def test_deactivated_unlinked_revoked_and_kept(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("ada@example.com", user_metadata={"full_name": "Ada"})
        api_token = await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.delete_user(user))

        [row] = await rows(hooked.app)
        assert (row.email, row.full_name) == ("ada@example.com", "Ada")
        assert (row.is_active, row.supabase_id) == (False, None)
        assert not await hooked.works(api_token)

    async def test_soft_delete_counts_as_delete(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("ada@example.com")
        api_token = await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.soft_delete_user(user))
        [row] = await rows(hooked.app)
        assert (row.email, row.is_active, row.supabase_id) == ("ada@example.com", False, None)
        assert not await hooked.works(api_token)

    async def test_replayed_it_does_nothing_more(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("ada@example.com")
        await hooked.sign_in(user)
        payload = hooked.fake.delete_user(user)
        await hooked.deliver(payload)
        [before] = await rows(hooked.app)
        await hooked.deliver(payload)
        [after] = await rows(hooked.app)
        assert (after.security_stamp, after.updated_at) == (
            before.security_stamp,
            before.updated_at,
        )

    async def test_a_new_supabase_user_cannot_take_the_deactivated_account(
        self, hooked: Hooked
    ) -> None:
        user = hooked.fake.create_user("ada@example.com")
        await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.delete_user(user))
        again = hooked.fake.create_user("ada@example.com")
        response = await hooked.client.get(EXCHANGE, headers=bearer(hooked.fake.sign_in(again)))
        assert response.status_code == 403
        [row] = await rows(hooked.app)
        assert row.supabase_id is None


class TestBan:
    async def test_tokens_revoked_account_kept(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("ada@example.com")
        api_token = await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.ban_user(user))
        assert not await hooked.works(api_token)
        [row] = await rows(hooked.app)
        assert (row.is_active, row.supabase_id) == (True, user.id)
        # ... and while banned, the exchange gives no new token (GoTrue refuses the token).
        retry = await hooked.client.get(EXCHANGE, headers=bearer(hooked.fake.sign_in(user)))
        assert retry.status_code == 401

    async def test_once_unbanned_sign_in_works_and_the_unban_revokes_nothing(
        self, hooked: Hooked
    ) -> None:
        user = hooked.fake.create_user("ada@example.com")
        await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.ban_user(user))
        unban = hooked.fake.unban_user(user)
        api_token = await hooked.sign_in(user)
        await hooked.deliver(unban)
        assert await hooked.works(api_token)

    async def test_a_ban_that_already_ended_revokes_nothing(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("ada@example.com")
        api_token = await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.ban_user(user, until=utc_now() - timedelta(minutes=1)))
        assert await hooked.works(api_token)

    async def test_other_updates_of_a_banned_user_revoke_nothing_more(self, hooked: Hooked) -> None:
        """Only the UPDATE that sets the ban revokes: later ones (metadata, a replay's
        neighbours) leave tokens issued since alone."""
        user = hooked.fake.create_user("ada@example.com")
        await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.ban_user(user))
        [row] = await rows(hooked.app)
        await hooked.deliver(hooked.fake.update_metadata(user, theme="dark"))
        [after] = await rows(hooked.app)
        assert after.security_stamp == row.security_stamp

    async def test_a_replayed_ban_revokes_nothing_more(self, hooked: Hooked) -> None:
        """The ban applied is recorded (`users.supabase_banned_until`): the same call again, or
        `manage.py sync-supabase` later, leaves alone the tokens issued since."""
        user = hooked.fake.create_user("ada@example.com")
        await hooked.sign_in(user)
        payload = hooked.fake.ban_user(user)
        await hooked.deliver(payload)
        [row] = await rows(hooked.app)
        assert row.supabase_banned_until == hooked.fake.users[user.id].banned_until
        await hooked.deliver(payload)
        [after] = await rows(hooked.app)
        assert after.security_stamp == row.security_stamp

    async def test_a_longer_ban_revokes_again(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("ada@example.com")
        await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.ban_user(user, until=utc_now() + timedelta(hours=1)))
        [first] = await rows(hooked.app)
        await hooked.deliver(hooked.fake.ban_user(user, until=utc_now() + timedelta(days=30)))
        [second] = await rows(hooked.app)
        assert second.security_stamp != first.security_stamp


class TestEmailConfirmed:
    async def test_the_local_email_follows(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("old@example.com")
        api_token = await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.change_email(user, "New@Example.com"))
        [row] = await rows(hooked.app)
        assert (row.email, row.supabase_id) == ("new@example.com", user.id)
        assert not await hooked.works(api_token)  # tokens carry the old address
        me = await hooked.client.get("/auth/me", headers=await hooked.sign_in(user))
        assert me.json()["user"]["email"] == "new@example.com"

    async def test_replayed_it_does_nothing_more(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("old@example.com")
        await hooked.sign_in(user)
        payload = hooked.fake.change_email(user, "new@example.com")
        await hooked.deliver(payload)
        api_token = await hooked.sign_in(user)
        await hooked.deliver(payload)
        assert await hooked.works(api_token)

    async def test_a_pending_change_does_nothing(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("old@example.com")
        api_token = await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.change_email(user, "new@example.com", confirm=False))
        [row] = await rows(hooked.app)
        assert row.email == "old@example.com"
        assert await hooked.works(api_token)

    async def test_an_address_another_account_has_is_kept_with_a_warning(
        self, hooked: Hooked, app_log: pytest.LogCaptureFixture
    ) -> None:
        other = await add_user(hooked.app, "taken@example.com")
        user = hooked.fake.create_user("old@example.com")
        api_token = await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.change_email(user, "taken@example.com"))
        emails = {row.id: row.email for row in await rows(hooked.app)}
        assert emails[other.id] == "taken@example.com"
        assert sorted(emails.values()) == ["old@example.com", "taken@example.com"]
        assert await hooked.works(api_token)
        [warning] = [r.getMessage() for r in app_log.records if r.levelno == logging.WARNING]
        assert user.id in warning and "keeps its email" in warning
        assert "taken@example.com" not in warning

    async def test_an_address_with_control_characters_is_not_taken(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("old@example.com")
        await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.change_email(user, "new@example.com\n"))
        [row] = await rows(hooked.app)
        assert row.email == "old@example.com"

    async def test_a_unicode_domain_is_stored_as_idna_ascii(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("old@example.com")
        await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.change_email(user, "Boss@АРРӀЕ.com"))
        [row] = await rows(hooked.app)
        assert row.email == "boss@xn--80ak6aa92e.com"

    async def test_the_same_address_in_another_spelling_changes_nothing(
        self, hooked: Hooked
    ) -> None:
        user = hooked.fake.create_user("boss@xn--80ak6aa92e.com")
        api_token = await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.change_email(user, "boss@аррӏе.com"))
        [row] = await rows(hooked.app)
        assert row.email == "boss@xn--80ak6aa92e.com"
        assert await hooked.works(api_token)  # not an email change: nothing revoked

    async def test_a_domain_with_no_idna_form_is_not_taken(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("old@example.com")
        await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.change_email(user, "new@☃.com"))
        [row] = await rows(hooked.app)
        assert row.email == "old@example.com"

    async def test_confirming_the_same_address_changes_nothing(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("ada@example.com")
        api_token = await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.confirm_email(user))
        assert await hooked.works(api_token)


class TestNothingElse:
    async def test_insert_creates_no_account(self, hooked: Hooked) -> None:
        await hooked.deliver(hooked.fake.insert_event(hooked.fake.create_user("a@example.com")))
        assert await rows(hooked.app) == []

    @pytest.mark.parametrize("change", ["delete_user", "ban_user", "confirm_email"])
    async def test_a_supabase_user_linked_to_nobody(self, hooked: Hooked, change: str) -> None:
        await add_user(hooked.app, "ada@example.com")  # same email, but never linked
        user = hooked.fake.create_user("ada@example.com", email_confirmed=False)
        await hooked.deliver(getattr(hooked.fake, change)(user))
        [row] = await rows(hooked.app)
        assert (row.is_active, row.supabase_id, row.email) == (True, None, "ada@example.com")

    async def test_a_metadata_update_changes_nothing(self, hooked: Hooked) -> None:
        user = hooked.fake.create_user("ada@example.com")
        api_token = await hooked.sign_in(user)
        await hooked.deliver(hooked.fake.update_metadata(user, full_name="Ada L."))
        assert await hooked.works(api_token)

    async def test_other_accounts_are_untouched(self, hooked: Hooked) -> None:
        ada = hooked.fake.create_user("ada@example.com")
        grace = hooked.fake.create_user("grace@example.com")
        ada_token, grace_token = await hooked.sign_in(ada), await hooked.sign_in(grace)
        await hooked.deliver(hooked.fake.delete_user(ada))
        assert not await hooked.works(ada_token)
        assert await hooked.works(grace_token)


@one_database
async def test_openapi_documents_it(hooked: Hooked) -> None:
    schema = (await hooked.client.get("/openapi.json")).json()
    operation = schema["paths"][WEBHOOK]["post"]
    assert {"204", "401", "404", "422"} <= operation["responses"].keys()
    assert {"SupabaseWebhookSecret": []} in operation["security"]

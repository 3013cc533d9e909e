"""The fake Supabase answers as Supabase does, so tests built on it mean something."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from app.supabase.fake import (
    ADMIN_USERS_PATH,
    API_VERSION,
    JWKS_PATH,
    LOGOUT_PATH,
    SIGNUP_PATH,
    TOKEN_PATH,
    USER_PATH,
    FakeSupabase,
)


def get_user(fake: FakeSupabase, token: str, **headers: str) -> httpx.Response:
    return httpx.get(
        fake.url + USER_PATH,
        headers={"apikey": fake.anon_key, "Authorization": f"Bearer {token}", **headers},
    )


def test_user_json_has_gotrue_shape(supabase_fake: FakeSupabase) -> None:
    user = supabase_fake.create_user("a@example.com", email_confirmed=False)
    response = get_user(supabase_fake, supabase_fake.sign_in(user))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user.id and body["email"] == "a@example.com"
    assert "email_confirmed_at" not in body and "confirmed_at" not in body  # omitempty


def test_both_error_body_shapes(supabase_fake: FakeSupabase) -> None:
    token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"), expires_in=-1)
    legacy = get_user(supabase_fake, token)
    assert legacy.status_code == 403
    assert legacy.json()["code"] == 403 and legacy.json()["error_code"] == "bad_jwt"
    assert "token is expired" in legacy.json()["msg"]
    current = get_user(supabase_fake, token, **{"X-Supabase-Api-Version": API_VERSION})
    assert current.json().keys() == {"code", "message"} and current.json()["code"] == "bad_jwt"
    assert current.headers["x-supabase-api-version"] == API_VERSION
    assert current.headers["x-sb-error-code"] == "bad_jwt"


def test_gateway_refuses_missing_and_unknown_keys(supabase_fake: FakeSupabase) -> None:
    missing = httpx.get(supabase_fake.url + USER_PATH)
    assert (missing.status_code, missing.json()) == (
        401,
        {"message": "No API key found in request"},
    )
    wrong = httpx.get(supabase_fake.url + USER_PATH, headers={"apikey": "nope"})
    assert wrong.status_code == 401 and wrong.json()["message"] == "Invalid API key"


def test_no_authorization(supabase_fake: FakeSupabase) -> None:
    response = httpx.get(supabase_fake.url + USER_PATH, headers={"apikey": supabase_fake.anon_key})
    assert response.status_code == 401 and response.json()["error_code"] == "no_authorization"


def test_jwks_is_open_and_cacheable(supabase_fake: FakeSupabase) -> None:
    response = httpx.get(supabase_fake.url + JWKS_PATH)
    assert response.headers["cache-control"] == "public, max-age=600"
    [key] = response.json()["keys"]
    assert {key["kty"], key["crv"], key["kid"], key["alg"]} == {"EC", "P-256", "k1", "ES256"}
    assert key["key_ops"] == ["verify"] and "d" not in key


def test_calls_are_recorded(supabase_fake: FakeSupabase) -> None:
    get_user(supabase_fake, "a.b.c")
    [call] = supabase_fake.calls
    assert (call.path, call.apikey, call.bearer) == (USER_PATH, supabase_fake.anon_key, "a.b.c")


AUTH_USERS_COLUMNS = {
    "instance_id", "id", "aud", "role", "email", "encrypted_password", "email_confirmed_at",
    "invited_at", "confirmation_token", "confirmation_sent_at", "recovery_token",
    "recovery_sent_at", "email_change_token_new", "email_change", "email_change_sent_at",
    "last_sign_in_at", "raw_app_meta_data", "raw_user_meta_data", "is_super_admin", "created_at",
    "updated_at", "phone", "phone_confirmed_at", "phone_change", "phone_change_token",
    "phone_change_sent_at", "confirmed_at", "email_change_token_current",
    "email_change_confirm_status", "banned_until", "reauthentication_token",
    "reauthentication_sent_at", "is_sso_user", "deleted_at", "is_anonymous",
}  # fmt: skip
PG_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?\+00:00")


class TestAdminUsers:
    """GoTrue's admin user list and user: for the service-role or secret key only."""

    @staticmethod
    def get(fake: FakeSupabase, path: str = "", **headers: str) -> httpx.Response:
        return httpx.get(fake.url + ADMIN_USERS_PATH + path, headers=headers)

    def test_the_list_pages_newest_first_with_gotrue_headers(
        self, supabase_fake: FakeSupabase
    ) -> None:
        users = [supabase_fake.create_user(f"u{n}@example.com") for n in range(5)]
        key = supabase_fake.service_role_key
        auth = {"apikey": key, "Authorization": f"Bearer {key}"}
        first = self.get(supabase_fake, "?page=1&per_page=2", **auth)
        assert first.status_code == 200
        assert first.json()["aud"] == "authenticated"
        assert [u["id"] for u in first.json()["users"]] == [users[4].id, users[3].id]
        assert first.headers["x-total-count"] == "5"
        assert first.headers["link"] == (
            f'<{ADMIN_USERS_PATH}?page=2&per_page=2>; rel="next", '
            f'<{ADMIN_USERS_PATH}?page=3&per_page=2>; rel="last"'
        )
        last = self.get(supabase_fake, "?page=3&per_page=2", **auth)
        assert [u["id"] for u in last.json()["users"]] == [users[0].id]
        assert 'rel="next"' not in last.headers["link"]
        assert self.get(supabase_fake, "?page=9&per_page=2", **auth).json()["users"] == []
        bad = self.get(supabase_fake, "?page=x", **auth)
        assert (bad.status_code, bad.json()["error_code"]) == (400, "validation_failed")

    def test_soft_deleted_users_are_listed_with_deleted_at(
        self, supabase_fake: FakeSupabase
    ) -> None:
        user = supabase_fake.create_user("a@example.com")
        supabase_fake.soft_delete_user(user)
        listed = self.get(supabase_fake, apikey=supabase_fake.secret_key).json()["users"]
        assert [u["id"] for u in listed] == [user.id] and listed[0]["deleted_at"]

    def test_one_user(self, supabase_fake: FakeSupabase) -> None:
        user = supabase_fake.create_user("a@example.com")
        found = self.get(supabase_fake, f"/{user.id}", apikey=supabase_fake.secret_key)
        assert found.status_code == 200 and found.json()["id"] == user.id
        supabase_fake.delete_user(user)
        gone = self.get(supabase_fake, f"/{user.id}", apikey=supabase_fake.secret_key)
        assert (gone.status_code, gone.json()["error_code"]) == (404, "user_not_found")

    def test_who_may_list(self, supabase_fake: FakeSupabase) -> None:
        fake = supabase_fake
        # The secret key alone: the gateway puts a service-role token in its place.
        assert self.get(fake, apikey=fake.secret_key).status_code == 200
        # A legacy key needs the bearer token GoTrue reads.
        bare = self.get(fake, apikey=fake.service_role_key)
        assert (bare.status_code, bare.json()["error_code"]) == (401, "no_authorization")
        for key in (fake.anon_key, fake.publishable_key):
            headers = {"apikey": key}
            if key.startswith("eyJ"):
                headers["Authorization"] = f"Bearer {key}"
            refused = self.get(fake, **headers)
            assert (refused.status_code, refused.json()["error_code"]) == (403, "not_admin")
        user = fake.create_user("a@example.com")
        as_user = self.get(
            fake,
            apikey=fake.anon_key,
            Authorization=f"Bearer {fake.sign_in(user)}",
        )
        assert (as_user.status_code, as_user.json()["error_code"]) == (403, "not_admin")
        assert self.get(fake).json() == {"message": "No API key found in request"}


class TestWebhookPayloads:
    """Each change returns the body a Database Webhook on `auth.users` posts for it."""

    def test_insert(self, supabase_fake: FakeSupabase) -> None:
        user = supabase_fake.create_user("a@example.com")
        payload = supabase_fake.insert_event(user)
        assert payload.keys() == {"type", "table", "schema", "record", "old_record"}
        assert (payload["type"], payload["table"], payload["schema"]) == ("INSERT", "users", "auth")
        assert payload["old_record"] is None
        record = payload["record"]
        assert record.keys() == AUTH_USERS_COLUMNS
        assert (record["id"], record["email"], record["phone"]) == (user.id, "a@example.com", None)
        assert PG_TIMESTAMP.fullmatch(record["email_confirmed_at"])
        assert record["raw_user_meta_data"]["email"] == "a@example.com"

    def test_ban(self, supabase_fake: FakeSupabase) -> None:
        user = supabase_fake.create_user("a@example.com")
        payload = supabase_fake.ban_user(user)
        assert payload["type"] == "UPDATE"
        assert payload["old_record"]["banned_until"] is None
        assert PG_TIMESTAMP.fullmatch(payload["record"]["banned_until"])
        assert payload["record"]["banned_until"] > payload["record"]["updated_at"]
        assert supabase_fake.unban_user(user)["record"]["banned_until"] is None

    def test_email_change(self, supabase_fake: FakeSupabase) -> None:
        user = supabase_fake.create_user("old@example.com")
        pending = supabase_fake.change_email(user, "new@example.com", confirm=False)
        assert pending["record"]["email"] == "old@example.com"
        assert pending["record"]["email_change"] == "new@example.com"
        confirmed = supabase_fake.confirm_email(user)
        assert confirmed["old_record"]["email"] == "old@example.com"
        assert (confirmed["record"]["email"], confirmed["record"]["email_change"]) == (
            "new@example.com",
            "",
        )
        assert confirmed["record"]["email_confirmed_at"] > confirmed["old_record"]["created_at"]

    def test_delete(self, supabase_fake: FakeSupabase) -> None:
        user = supabase_fake.create_user("a@example.com")
        token = supabase_fake.sign_in(user)
        payload = supabase_fake.delete_user(user)
        assert (payload["type"], payload["record"]) == ("DELETE", None)
        assert payload["old_record"]["id"] == user.id
        assert get_user(supabase_fake, token).json()["error_code"] == "user_not_found"

    def test_soft_delete(self, supabase_fake: FakeSupabase) -> None:
        user = supabase_fake.create_user("a@example.com")
        token = supabase_fake.sign_in(user)
        payload = supabase_fake.soft_delete_user(user)
        assert payload["type"] == "UPDATE"
        assert PG_TIMESTAMP.fullmatch(payload["record"]["deleted_at"])
        assert "@" not in payload["record"]["email"]
        assert get_user(supabase_fake, token).status_code == 403

    def test_payloads_are_json(self, supabase_fake: FakeSupabase) -> None:
        user = supabase_fake.create_user("a@example.com", phone="15551234567")
        assert json.loads(json.dumps(supabase_fake.ban_user(user)))["record"]["phone"]


class TestSignInEndpoints:
    """What supabase-js calls to sign up and sign in (and what `dev-supabase` tells you to)."""

    def post(self, fake: FakeSupabase, path: str, body: object, **headers: str) -> httpx.Response:
        return httpx.post(
            fake.url + path, json=body, headers={"apikey": fake.publishable_key, **headers}
        )

    def test_sign_up_then_sign_in(self, supabase_fake: FakeSupabase) -> None:
        signed_up = self.post(
            supabase_fake, SIGNUP_PATH, {"email": "Ada@Example.com", "password": "secret1"}
        )
        assert signed_up.status_code == 200
        session = signed_up.json()
        assert session.keys() >= {"access_token", "refresh_token", "expires_at", "user"}
        assert session["user"]["email"] == "ada@example.com"
        assert "email_confirmed_at" in session["user"]  # autoconfirm, as the Supabase CLI
        assert get_user(supabase_fake, session["access_token"]).status_code == 200

        signed_in = self.post(
            supabase_fake,
            TOKEN_PATH + "?grant_type=password",
            {"email": "ada@example.com", "password": "secret1"},
        )
        assert signed_in.status_code == 200
        assert signed_in.json()["user"]["id"] == session["user"]["id"]

    def test_refresh_and_logout(self, supabase_fake: FakeSupabase) -> None:
        supabase_fake.create_user("a@example.com", password="secret1")
        session = self.post(
            supabase_fake,
            TOKEN_PATH + "?grant_type=password",
            {"email": "a@example.com", "password": "secret1"},
        ).json()
        refresh = {"refresh_token": session["refresh_token"]}
        refreshed = self.post(supabase_fake, TOKEN_PATH + "?grant_type=refresh_token", refresh)
        assert refreshed.status_code == 200
        reused = self.post(supabase_fake, TOKEN_PATH + "?grant_type=refresh_token", refresh)
        assert reused.json()["error_code"] == "refresh_token_not_found"
        token = refreshed.json()["access_token"]
        logout = self.post(supabase_fake, LOGOUT_PATH, None, Authorization=f"Bearer {token}")
        assert logout.status_code == 204
        assert get_user(supabase_fake, token).json()["error_code"] == "session_not_found"
        assert get_user(supabase_fake, session["access_token"]).status_code == 403

    @pytest.mark.parametrize(
        ("body", "status", "error_code"),
        [
            ({"email": "a@example.com", "password": "wrong-1"}, 400, "invalid_credentials"),
            ({"email": "nobody@example.com", "password": "secret1"}, 400, "invalid_credentials"),
            (
                {"email": "unconfirmed@example.com", "password": "secret1"},
                400,
                "email_not_confirmed",
            ),
            # GoTrue's order: an unconfirmed email is told only with the right password; a ban
            # before the password is checked; no password, no email, a deleted user: as unknown.
            ({"email": "unconfirmed@example.com", "password": "x"}, 400, "invalid_credentials"),
            ({"email": "banned@example.com", "password": "wrong-1"}, 400, "user_banned"),
            ({"email": "a@example.com"}, 400, "invalid_credentials"),
            ({"password": "secret1"}, 400, "invalid_credentials"),
            ({"email": "nopassword@example.com", "password": ""}, 400, "invalid_credentials"),
            ({"email": "deleted@example.com", "password": "secret1"}, 400, "invalid_credentials"),
        ],
    )
    def test_sign_in_refusals(
        self, supabase_fake: FakeSupabase, body: dict[str, str], status: int, error_code: str
    ) -> None:
        supabase_fake.create_user("a@example.com", password="secret1")
        supabase_fake.create_user(
            "unconfirmed@example.com", password="secret1", email_confirmed=False
        )
        supabase_fake.ban_user(supabase_fake.create_user("banned@example.com", password="secret1"))
        supabase_fake.create_user("nopassword@example.com")
        supabase_fake.soft_delete_user(
            supabase_fake.create_user("deleted@example.com", password="secret1")
        )
        response = self.post(supabase_fake, TOKEN_PATH + "?grant_type=password", body)
        assert (response.status_code, response.json()["error_code"]) == (status, error_code)

    @pytest.mark.parametrize(
        ("body", "status", "error_code"),
        [
            ({"email": "a@example.com", "password": "secret1"}, 422, "user_already_exists"),
            ({"email": "b@example.com", "password": "12345"}, 422, "weak_password"),
            ({"email": "not an email", "password": "secret1"}, 400, "validation_failed"),
        ],
    )
    def test_sign_up_refusals(
        self, supabase_fake: FakeSupabase, body: dict[str, str], status: int, error_code: str
    ) -> None:
        supabase_fake.create_user("a@example.com", password="secret1")
        response = self.post(supabase_fake, SIGNUP_PATH, body)
        assert (response.status_code, response.json()["error_code"]) == (status, error_code)

    def test_sign_up_without_autoconfirm_answers_the_user(
        self, supabase_fake: FakeSupabase
    ) -> None:
        supabase_fake.autoconfirm = False
        response = self.post(
            supabase_fake, SIGNUP_PATH, {"email": "b@example.com", "password": "secret1"}
        )
        assert response.status_code == 200
        assert "access_token" not in response.json()
        assert "email_confirmed_at" not in response.json()

    def test_the_gateway_guards_them(self, supabase_fake: FakeSupabase) -> None:
        response = httpx.post(supabase_fake.url + SIGNUP_PATH, json={})
        assert response.json() == {"message": "No API key found in request"}

    def test_cors_for_browsers(self, supabase_fake: FakeSupabase) -> None:
        preflight = httpx.options(
            supabase_fake.url + TOKEN_PATH,
            headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "apikey" in preflight.headers["access-control-allow-headers"]


def test_stable_ids_survive_a_restart() -> None:
    first, second = FakeSupabase(stable_ids=True), FakeSupabase(stable_ids=True)
    assert first.create_user("Ada@example.com").id == second.create_user("ada@example.com").id
    assert FakeSupabase().create_user("a@x.io").id != FakeSupabase().create_user("a@x.io").id

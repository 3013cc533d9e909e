"""The fake Supabase answers as Supabase does, so tests built on it mean something."""

from __future__ import annotations

import httpx

from tests.supabase_fake import API_VERSION, JWKS_PATH, USER_PATH, FakeSupabase


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

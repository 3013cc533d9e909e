"""The fake Supabase's sign-up and sign-in endpoints, as supabase-js calls them:

- `POST /auth/v1/signup` `{"email", "password", "data"?}`: a new user; with `autoconfirm` (the
  Supabase CLI's default, and "Confirm email" off in a project) the email is confirmed at once
  and the answer is a session, else the user JSON (sign-in then answers `email_not_confirmed`);
- `POST /auth/v1/token?grant_type=password` `{"email", "password"}` and
  `?grant_type=refresh_token` `{"refresh_token"}`: a session `{"access_token", "token_type",
  "expires_in", "expires_at", "refresh_token", "user"}`;
- `POST /auth/v1/logout?scope=global|local|others` with the access token: 204.

Errors are GoTrue's (status, `error_code`, message). The gateway's `apikey` check comes first
(app/supabase/fake/server.py).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from app.supabase.fake.protocol import Answer, Json, empty_answer, gotrue_error, json_answer

if TYPE_CHECKING:
    from app.supabase.fake.server import FakeSupabase

MIN_PASSWORD_LENGTH = 6  # GoTrue's default (GOTRUE_PASSWORD_MIN_LENGTH)
INVALID_CREDENTIALS = "Invalid login credentials"


def signup(fake: FakeSupabase, headers: dict[str, str], body: bytes) -> Answer:
    params = _json_object(body)
    if params is None:
        return gotrue_error(headers, 400, "bad_json", "Could not parse request body as JSON")
    email, password = params.get("email"), params.get("password")
    if not isinstance(email, str) or not _looks_like_email(email):
        return gotrue_error(
            headers, 400, "validation_failed", "Unable to validate email address: invalid format"
        )
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        return gotrue_error(
            headers,
            422,
            "weak_password",
            f"Password should be at least {MIN_PASSWORD_LENGTH} characters.",
        )
    if fake.find_user(email) is not None:
        return gotrue_error(headers, 422, "user_already_exists", "User already registered")
    data = params.get("data")
    user = fake.create_user(
        email.lower(),
        email_confirmed=fake.autoconfirm,
        password=password,
        user_metadata=data if isinstance(data, dict) else None,
    )
    if fake.autoconfirm:
        return json_answer(200, fake.new_session(user))
    return json_answer(200, user.to_json())


def token(fake: FakeSupabase, target: str, headers: dict[str, str], body: bytes) -> Answer:
    grant_type = _query(target, "grant_type")
    params = _json_object(body)
    if params is None:
        return gotrue_error(headers, 400, "bad_json", "Could not parse request body as JSON")
    if grant_type == "password":
        return _password_grant(fake, headers, params)
    if grant_type == "refresh_token":
        refresh_token = params.get("refresh_token")
        session = fake.refresh(refresh_token) if isinstance(refresh_token, str) else None
        if session is None:
            return gotrue_error(
                headers,
                400,
                "refresh_token_not_found",
                "Invalid Refresh Token: Refresh Token Not Found",
            )
        return json_answer(200, session)
    return gotrue_error(headers, 400, "validation_failed", "unsupported_grant_type")


def logout(fake: FakeSupabase, target: str, headers: dict[str, str]) -> Answer:
    found = fake.authenticated_user(headers)
    if isinstance(found, Answer):
        return found
    _, session_id = found
    scope = _query(target, "scope") or "global"
    if scope not in ("global", "local", "others"):
        return gotrue_error(headers, 400, "validation_failed", "Unsupported logout scope")
    fake.end_sessions(session_id, scope)
    return empty_answer(204)


def _password_grant(fake: FakeSupabase, headers: dict[str, str], params: Json) -> Answer:
    """GoTrue's checks in its order: no such (or deleted) user, or no password → 400
    `invalid_credentials`; banned → 400 `user_banned` (before the password is checked); wrong
    password → `invalid_credentials`; email not confirmed → 400 `email_not_confirmed`."""
    email, password = params.get("email"), params.get("password")
    user = fake.find_user(email) if isinstance(email, str) and email else None
    if user is None or user.deleted_at is not None or user.password is None:
        return gotrue_error(headers, 400, "invalid_credentials", INVALID_CREDENTIALS)
    if user.banned:
        return gotrue_error(headers, 400, "user_banned", "User is banned")
    if not isinstance(password, str) or user.password != password:
        return gotrue_error(headers, 400, "invalid_credentials", INVALID_CREDENTIALS)
    if user.email_confirmed_at is None:
        return gotrue_error(headers, 400, "email_not_confirmed", "Email not confirmed")
    return json_answer(200, fake.new_session(user))


def _json_object(body: bytes) -> Json | None:
    try:
        value: Any = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _looks_like_email(email: str) -> bool:
    local, at, domain = email.partition("@")
    return bool(local and at and "." in domain) and not any(ch.isspace() for ch in email)


def _query(target: str, name: str) -> str | None:
    values = parse_qs(urlsplit(target).query).get(name)
    return values[0] if values else None

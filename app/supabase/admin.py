"""GoTrue's admin user list, for `manage.py sync-supabase`: every Supabase user as it is now.

- `GET {SUPABASE_URL}/auth/v1/admin/users?page=N&per_page=M` answers `{"users": [...], "aud":
  ...}` (each user the `models.User` JSON `/auth/v1/user` gives, with `deleted_at` for a
  soft-deleted one), newest first, with `X-Total-Count` and a `Link` header; a page shorter than
  `per_page` is the last;
- `GET {SUPABASE_URL}/auth/v1/admin/users/{id}`: one user, or 404 `user_not_found`.

Both need an admin key: the legacy `service_role` key (a JWT, sent as `apikey` and as the bearer
token) or a secret key `sb_secret_...` (sent as `apikey` only: it is not a JWT, and Supabase's
gateway puts a service-role token in its place). The publishable or `anon` key passes the gateway
but GoTrue refuses it (403 `not_admin`), so it is refused here before any call.

Every failure is a `SupabaseAdminError` whose message is one line for the command line; no
message ever holds a key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt

from app.config import Settings
from app.supabase.client import create_http_client
from app.supabase.remote import API_VERSION, error_code, is_gateway_key_refusal, json_body

KEY_SETTING = "SUPABASE_SERVICE_ROLE_KEY"
ADMIN_ROLES = frozenset({"service_role", "supabase_admin"})  # GoTrue's default JWT admin roles
DEFAULT_PER_PAGE = 500
MAX_PER_PAGE = 1000
# A page of hundreds of users may take longer than one small call: a call may last this many
# times the read timeout (the connect timeout on top).
PAGE_READ_TIMEOUTS = 4

Json = dict[str, Any]


class SupabaseAdminError(Exception):
    """The user list cannot be had: the message says why, in one line."""


def admin_key(settings: Settings) -> str:
    """The key that may list users, or SupabaseAdminError saying what to set."""
    if not settings.SUPABASE_URL:
        raise SupabaseAdminError(
            f"SUPABASE_URL is not set: sync-supabase needs it and {KEY_SETTING} (the project's "
            "secret key sb_secret_... or its service_role key)"
        )
    key = settings.SUPABASE_SERVICE_ROLE_KEY
    if not key:
        raise SupabaseAdminError(
            f"{KEY_SETTING} is not set: listing Supabase users needs the project's secret key "
            "(sb_secret_...) or its service_role key; the publishable (anon) key may not"
        )
    if key.startswith("sb_publishable_"):
        raise SupabaseAdminError(not_an_admin_key("a publishable key"))
    if is_jwt(key):
        role = unverified_role(key)
        if role not in ADMIN_ROLES:
            raise SupabaseAdminError(not_an_admin_key(f"a key with the role {role!r}"))
    return key


def not_an_admin_key(what: str) -> str:
    return (
        f"{KEY_SETTING} holds {what}, which may not list users: set the project's secret key "
        "(sb_secret_...) or its service_role key"
    )


def is_jwt(key: str) -> bool:
    return key.startswith("eyJ") and key.count(".") == 2


def unverified_role(key: str) -> str:
    """The `role` claim of a legacy API key (only to refuse the anon key early; Supabase checks
    the signature)."""
    try:
        claims = jwt.decode(key, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "unreadable"
    role = claims.get("role")
    return role if isinstance(role, str) and role.isidentifier() else "unknown"


class SupabaseAdmin:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        key = admin_key(settings)
        self.http = http
        self.base_url = (settings.SUPABASE_URL or "").rstrip("/")
        self.users_url = f"{self.base_url}/auth/v1/admin/users"
        self.headers = {"apikey": key, "X-Supabase-Api-Version": API_VERSION}
        if is_jwt(key):
            self.headers["Authorization"] = f"Bearer {key}"
        self.deadline = (
            settings.SUPABASE_CONNECT_TIMEOUT + PAGE_READ_TIMEOUTS * settings.SUPABASE_READ_TIMEOUT
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SupabaseAdmin:
        admin_key(settings)  # refuse before opening anything
        return cls(settings, create_http_client(settings))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def users(self, per_page: int = DEFAULT_PER_PAGE) -> AsyncIterator[Json]:
        """Every user, page after page, until a page shorter than `per_page` (or one that
        brings no user not seen before: a server ignoring `page` cannot loop us forever)."""
        seen: set[object] = set()
        page = 1
        while True:
            users = await self.page(page, per_page)
            new = [user for user in users if user.get("id") not in seen]
            seen.update(user.get("id") for user in users)
            for user in new:
                yield user
            if len(users) < per_page or not new:
                return
            page += 1

    async def page(self, page: int, per_page: int) -> list[Json]:
        params = {"page": str(page), "per_page": str(per_page)}
        response = await self.get(self.users_url, params=params)
        body = json_body(response)
        if response.status_code != 200:
            raise self.refused(response, body, "the user list")
        users = body.get("users") if isinstance(body, dict) else None
        if not isinstance(users, list) or not all(isinstance(user, dict) for user in users):
            raise SupabaseAdminError(
                f"Supabase answered the user list (page {page}) without a list of users"
            )
        return users

    async def user(self, supabase_id: str) -> Json | None:
        """One user as Supabase has it now; None when it does not exist."""
        response = await self.get(f"{self.users_url}/{supabase_id}")
        body = json_body(response)
        if response.status_code == 404 and error_code(body) == "user_not_found":
            return None  # GoTrue's own 404, not a gateway's "no route": the user is gone
        if response.status_code != 200:
            raise self.refused(response, body, f"user {supabase_id}")
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise SupabaseAdminError(f"Supabase answered user {supabase_id} without a user")
        return body

    async def get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        try:
            return await asyncio.wait_for(
                self.http.get(url, params=params, headers=self.headers), self.deadline
            )
        except (asyncio.TimeoutError, httpx.TimeoutException) as exc:
            raise SupabaseAdminError(
                f"Supabase at {self.base_url} did not answer in time (SUPABASE_CONNECT_TIMEOUT, "
                "SUPABASE_READ_TIMEOUT); try again later"
            ) from exc
        except httpx.HTTPError as exc:
            raise SupabaseAdminError(
                f"cannot reach Supabase at {self.base_url} ({type(exc).__name__}); check "
                "SUPABASE_URL, or try again later"
            ) from exc

    def refused(self, response: httpx.Response, body: object, what: str) -> SupabaseAdminError:
        status = response.status_code
        if status == 401 and is_gateway_key_refusal(body):
            return SupabaseAdminError(
                f"Supabase refused the key in {KEY_SETTING} (401 from its gateway): check it "
                "and SUPABASE_URL"
            )
        if status in (401, 403):
            return SupabaseAdminError(
                f"Supabase refused to list users with the key in {KEY_SETTING} ({status} "
                f"{error_code(body)}): it must be the secret key (sb_secret_...) or the "
                "service_role key"
            )
        return SupabaseAdminError(
            f"Supabase answered {status} {error_code(body)} for {what}; try again later"
        )

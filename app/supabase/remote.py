"""Ask Supabase Auth who a token belongs to (`GET /auth/v1/user`), or whose an email and password
are (`POST /auth/v1/token?grant_type=password`, the admin site's sign-in), and map every answer
to ours.

Supabase's answer → ours:
- 200 with a JSON object that has a string `id` → the user; any other 200 → 503;
- 400/401/403/404 (bad, expired or signed-out token, deleted or banned user) → 401;
- a gateway 401 refusing our `apikey` (a body with `message` but none of GoTrue's `code`,
  `error_code` or `msg`) → 503 and an ERROR log line: our configuration is wrong, not the token;
- 429, 5xx, anything else, a timeout or no connection → 503 with `Retry-After`.

The password grant: 200 → the session's `user` (the session's tokens are dropped at once);
400 (`invalid_credentials`, `email_not_confirmed`, `user_banned`, ...) → `CredentialsRefused`;
the gateway's 401 and everything else as above.

Log lines carry statuses and Supabase's error codes, never a token, a password or a header
value.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable
from typing import Any

import httpx

from app.errors import InvalidSupabaseToken, SupabaseUnavailable
from app.observability.metrics import SUPABASE_REQUEST_DURATION
from app.supabase.identity import SupabaseIdentity, identity_from_user

logger = logging.getLogger("app.supabase")

API_VERSION = "2024-01-01"  # selects GoTrue's `{"code", "message"}` error bodies
RETRY_AFTER_SECONDS = 5
MAX_RETRY_AFTER_SECONDS = 60
TOKEN_REFUSED = frozenset({400, 401, 403, 404})
GOTRUE_ERROR_KEYS = frozenset({"code", "error_code", "msg"})
ERROR_CODE = re.compile(r"[a-z0-9_]{1,64}")


async def get(
    http: httpx.AsyncClient,
    url: str,
    *,
    call: str,
    deadline: float,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """GET within `deadline` seconds in all (`timed`)."""
    return await timed(http.get(url, headers=headers), call=call, deadline=deadline)


async def post(
    http: httpx.AsyncClient,
    url: str,
    *,
    call: str,
    deadline: float,
    headers: dict[str, str],
    json: dict[str, str],
) -> httpx.Response:
    """POST within `deadline` seconds in all (`timed`)."""
    return await timed(http.post(url, headers=headers, json=json), call=call, deadline=deadline)


async def timed(
    request: Awaitable[httpx.Response], *, call: str, deadline: float
) -> httpx.Response:
    """`request`'s answer within `deadline` seconds in all (httpx's timeouts apply per phase, so
    a server that trickles bytes could otherwise hold the request much longer); failures → 503.
    Timed in `megapolis_supabase_request_duration_seconds` under `call` (`user`, `jwks`...)."""
    started = time.perf_counter()
    try:
        response = await asyncio.wait_for(request, deadline)
    except (httpx.HTTPError, asyncio.TimeoutError) as exc:
        SUPABASE_REQUEST_DURATION.labels(call, "error").observe(time.perf_counter() - started)
        logger.warning("Supabase did not answer: %s", type(exc).__name__)
        raise SupabaseUnavailable(retry_after=RETRY_AFTER_SECONDS) from exc
    elapsed = time.perf_counter() - started
    SUPABASE_REQUEST_DURATION.labels(call, str(response.status_code)).observe(elapsed)
    return response


class CredentialsRefused(Exception):
    """Supabase refused the email and password (wrong, unconfirmed email, banned user...).
    The message is GoTrue's error code, for the log."""


async def password_grant(
    http: httpx.AsyncClient,
    auth_url: str,
    email: str,
    password: str,
    *,
    api_key: tuple[str, str] | None,
    deadline: float,
) -> SupabaseIdentity:
    """The Supabase user whose `email` and `password` these are, as `grant_type=password`
    answers (what supabase-js's `signInWithPassword` calls)."""
    headers = {"X-Supabase-Api-Version": API_VERSION}
    if api_key is not None:
        headers["apikey"] = api_key[1]
    response = await post(
        http,
        f"{auth_url}/token?grant_type=password",
        call="password",
        deadline=deadline,
        headers=headers,
        json={"email": email, "password": password},
    )
    status = response.status_code
    body = json_body(response)
    if status == 200:
        user = body.get("user") if isinstance(body, dict) else None
        if isinstance(user, dict):
            try:
                return identity_from_user(user)
            except ValueError:
                pass
        logger.warning("Supabase answered the password grant without a usable user")
        raise SupabaseUnavailable(retry_after=RETRY_AFTER_SECONDS)
    if status == 401 and is_gateway_key_refusal(body):
        name = api_key[0] if api_key is not None else "no key"
        logger.error("Supabase refused our API key (401 from its gateway): check %s", name)
        raise SupabaseUnavailable(
            "Supabase refused this server's credentials; the server is misconfigured",
            retry_after=None,
        )
    if status in (400, 401, 403, 404, 422):
        code = error_code(body)
        logger.info("Supabase refused a password sign-in: %s %s", status, code)
        raise CredentialsRefused(code)
    logger.warning("Supabase answered %s %s", status, error_code(body))
    raise SupabaseUnavailable(retry_after=retry_after(response))


async def fetch_user(
    http: httpx.AsyncClient,
    auth_url: str,
    token: str,
    *,
    api_key: tuple[str, str] | None,
    deadline: float,
) -> dict[str, Any]:
    """The `/auth/v1/user` answer for `token`, or the named HTTP error that answers the caller.
    `api_key`: (the setting it comes from, the key), sent as `apikey` (only the gateway reads
    it; the project's publishable key is enough)."""
    headers = {"Authorization": f"Bearer {token}", "X-Supabase-Api-Version": API_VERSION}
    if api_key is not None:
        headers["apikey"] = api_key[1]
    response = await get(http, f"{auth_url}/user", call="user", deadline=deadline, headers=headers)
    status = response.status_code
    body = json_body(response)
    if status == 200:
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            return body
        logger.warning("Supabase answered 200 without a user object")
        raise SupabaseUnavailable(retry_after=RETRY_AFTER_SECONDS)
    if status == 401 and is_gateway_key_refusal(body):
        if api_key is None:
            logger.error(
                "Supabase refused the call (401 from its gateway): no API key is set; set "
                "SUPABASE_PUBLISHABLE_KEY (or SUPABASE_SERVICE_ROLE_KEY)"
            )
        else:
            logger.error(
                "Supabase refused our API key (401 from its gateway): check %s and SUPABASE_URL",
                api_key[0],
            )
        raise SupabaseUnavailable(
            "Supabase refused this server's credentials; the server is misconfigured",
            retry_after=None,
        )
    if status in TOKEN_REFUSED:
        logger.info("Supabase refused the token: %s %s", status, error_code(body))
        raise InvalidSupabaseToken()
    logger.warning("Supabase answered %s %s", status, error_code(body))
    raise SupabaseUnavailable(retry_after=retry_after(response))


def json_body(response: httpx.Response) -> object:
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def is_gateway_key_refusal(body: object) -> bool:
    """Kong / the hosted gateway: `{"message": "No API key found in request"}`, `{"message":
    "Invalid API key", "hint": ...}`. GoTrue's own bodies always have `code` or `msg`."""
    return (
        isinstance(body, dict)
        and isinstance(body.get("message"), str)
        and not GOTRUE_ERROR_KEYS & body.keys()
    )


def error_code(body: object) -> str:
    """GoTrue's error code (`bad_jwt`, `session_not_found`, ...) for the log, when it has one."""
    if isinstance(body, dict):
        for key in ("error_code", "code"):
            value = body.get(key)
            if isinstance(value, str) and ERROR_CODE.fullmatch(value):
                return value
    return "-"


def retry_after(response: httpx.Response) -> int:
    """Supabase's own `Retry-After` (seconds, within reason), else ours."""
    value = response.headers.get("retry-after", "")
    if value.isascii() and value.isdigit():
        return min(max(int(value), 1), MAX_RETRY_AFTER_SECONDS)
    return RETRY_AFTER_SECONDS

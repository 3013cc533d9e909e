"""What goes over the wire between the API and the fake Supabase: paths, recorded requests,
answers (GoTrue's error bodies in both shapes, the gateway's), and scripted answers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

USER_PATH = "/auth/v1/user"
JWKS_PATH = "/auth/v1/.well-known/jwks.json"
SIGNUP_PATH = "/auth/v1/signup"
TOKEN_PATH = "/auth/v1/token"
LOGOUT_PATH = "/auth/v1/logout"
ADMIN_USERS_PATH = "/auth/v1/admin/users"
API_VERSION = "2024-01-01"
BEARER = re.compile(r"(?i)bearer (\S+)")
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Scripted:
    """A scripted answer for one path, instead of Supabase's own.

    `status=None` answers as Supabase would, after `delay` seconds. With `error_code`, the body is
    a GoTrue error in the shape the request asks for; else `body` as given (a dict or list is sent
    as JSON)."""

    status: int | None = None
    body: bytes | str | Json | list[Any] | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    error_code: str | None = None
    msg: str = ""

    @classmethod
    def stall(cls, seconds: float = 30.0) -> Scripted:
        """Accept the request and say nothing for `seconds` (reset() and stop() cut it short)."""
        return cls(delay=seconds)

    @classmethod
    def gotrue_error(cls, status: int, error_code: str, msg: str) -> Scripted:
        return cls(status=status, error_code=error_code, msg=msg)


@dataclass(frozen=True)
class RecordedCall:
    method: str
    path: str
    """The raw request target, e.g. `/auth/v1/user` (a double slash would show here), with its
    query string if any."""
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes = b""

    @property
    def apikey(self) -> str | None:
        return self.headers.get("apikey")

    @property
    def bearer(self) -> str | None:
        match = BEARER.fullmatch(self.headers.get("authorization", ""))
        return match[1] if match else None


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]


def json_answer(
    status: int, body: Json | list[Any], headers: dict[str, str] | None = None
) -> Answer:
    return Answer(
        status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    )


def empty_answer(status: int) -> Answer:
    return Answer(status, b"", {})


def gotrue_error(headers: dict[str, str], status: int, error_code: str, msg: str) -> Answer:
    """GoTrue's error body: `{"code", "message"}` when the request sends
    `X-Supabase-Api-Version: 2024-01-01` (echoed back), else `{"code": <status>, "error_code",
    "msg"}`; both with the `x-sb-error-code` header."""
    extra = {"x-sb-error-code": error_code}
    if headers.get("x-supabase-api-version") == API_VERSION:
        extra["X-Supabase-Api-Version"] = API_VERSION
        return json_answer(status, {"code": error_code, "message": msg}, extra)
    return json_answer(status, {"code": status, "error_code": error_code, "msg": msg}, extra)


def scripted_answer(scripted: Scripted, headers: dict[str, str]) -> Answer:
    assert scripted.status is not None
    if scripted.error_code is not None:
        return gotrue_error(headers, scripted.status, scripted.error_code, scripted.msg)
    body = scripted.body
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    raw = body.encode() if isinstance(body, str) else (body or b"")
    return Answer(scripted.status, raw, {"Content-Type": scripted.content_type, **scripted.headers})

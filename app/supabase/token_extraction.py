"""Find the Supabase access token in a request's headers. Pure: no I/O, no settings object.

The token comes from `Authorization: Bearer <token>` or, failing that, from the header named after
the key supabase-js stores the session under, `sb-<project-ref>-auth-token`, in any of the formats
its writers use:

- the raw access token;
- the session as JSON (`{"access_token": ...}`, supabase-js v2), or a JSON array whose first item
  is the access token (@supabase/auth-helpers), or `{"currentSession": {...}}` (gotrue-js v1);
- `base64-` + unpadded base64url of that JSON (@supabase/ssr >= 0.4);
- that JSON percent-encoded (what cookie serializers write);
- split over `sb-<ref>-auth-token.0`, `.1`, ... when the value was too long for one cookie.

Whatever the source, the result must look like a JWT (three non-empty base64url segments), so a
header value can never smuggle CR/LF or odd bytes into the request we send to Supabase.
Error messages never contain the header value: it holds the refresh token.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from urllib.parse import unquote, urlparse

# Supabase access tokens are a few kilobytes at most; anything longer is not one.
MAX_TOKEN_LENGTH = 16 * 1024

JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# `-code-verifier` (PKCE) and `-user` keys do not end in `-auth-token`, so they never match.
STORAGE_KEY = re.compile(r"sb-[^.]+-auth-token")
STORAGE_CHUNK = re.compile(r"(sb-[^.]+-auth-token)\.(?:0|[1-9][0-9]*)")
BASE64_PREFIX = "base64-"
PERCENT_ENCODED_JSON_STARTS = ("%7b", "%5b", "%22")  # {, [ and "


class TokenExtractionError(ValueError):
    """No usable token in the headers. The message is safe to show to the caller."""


class TokenMissing(TokenExtractionError):
    def __init__(self) -> None:
        super().__init__(
            "Missing Supabase token: send `Authorization: Bearer <access token>` "
            "or the `sb-<project-ref>-auth-token` header"
        )


class TokenMalformed(TokenExtractionError):
    def __init__(self, what: str = "Malformed Supabase token") -> None:
        super().__init__(what)


def project_ref(supabase_url: str | None) -> str | None:
    """`https://abcd.supabase.co` → `abcd`, as supabase-js derives its storage key."""
    if not supabase_url:
        return None
    hostname = urlparse(supabase_url).hostname
    return hostname.split(".")[0] if hostname else None


def storage_key(ref: str) -> str:
    return f"sb-{ref}-auth-token"


def extract_token(headers: Mapping[str, str], ref: str | None = None) -> str:
    """The access token carried by `headers` (names in any case). `Authorization` wins over the
    storage header; among storage headers the one for `ref` wins, then the first by name."""
    lowered = {name.lower(): value for name, value in headers.items()}
    authorization = lowered.get("authorization")
    if authorization is not None:
        return bearer_token(authorization)
    value = storage_value(lowered, ref)
    if value is None:
        raise TokenMissing()
    return decode_storage_value(value)


def bearer_token(authorization: str) -> str:
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise TokenMalformed("The Authorization header must use the Bearer scheme")
    token = credentials.strip()
    if not token:
        raise TokenMissing()
    return checked_jwt(token)


def storage_value(headers: Mapping[str, str], ref: str | None) -> str | None:
    """The stored session: the whole `sb-…-auth-token` header, or its `.0`, `.1`, … chunks joined.
    `headers` has lower-case names."""
    keys = {name for name in headers if STORAGE_KEY.fullmatch(name)}
    keys.update(match[1] for name in headers if (match := STORAGE_CHUNK.fullmatch(name)))
    if not keys:
        return None
    preferred = storage_key(ref.lower()) if ref else None
    key = preferred if preferred in keys else min(keys)
    if key in headers:
        return headers[key]
    chunks = []
    index = 0
    while (chunk := headers.get(f"{key}.{index}")) is not None:
        chunks.append(chunk)
        index += 1
    return "".join(chunks)


def decode_storage_value(value: str) -> str:
    """The access token inside one stored-session value, in any of the formats above."""
    text = value.strip()
    if not text:
        raise TokenMissing()
    if text[:3].lower() in PERCENT_ENCODED_JSON_STARTS:
        try:
            text = unquote(text, errors="strict").strip()
        except UnicodeDecodeError as exc:
            raise TokenMalformed("Malformed Supabase session: bad percent-encoding") from exc
    if text.startswith(BASE64_PREFIX):
        return token_in_json(base64url_text(text[len(BASE64_PREFIX) :]))
    if text[:1] in ("{", "[", '"'):
        return token_in_json(text)
    return checked_jwt(text)


def base64url_text(encoded: str) -> str:
    """Decode unpadded base64url (whitespace and `=` ignored, as @supabase/ssr's decoder does)."""
    compact = re.sub(r"[\s=]", "", encoded)
    if not BASE64URL.fullmatch(compact):
        raise TokenMalformed("Malformed Supabase session: not base64url")
    try:
        return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise TokenMalformed("Malformed Supabase session: not base64url") from exc


def token_in_json(text: str) -> str:
    """The access token in a stored session: `{"access_token"}`, `{"currentSession": {...}}`,
    `[access_token, refresh_token, ...]`, or a JSON string."""
    try:
        session = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise TokenMalformed("Malformed Supabase session: not JSON") from exc
    if isinstance(session, dict):
        current = session.get("currentSession")
        if "access_token" not in session and isinstance(current, dict):
            session = current
        token = session.get("access_token")
    elif isinstance(session, list):
        token = session[0] if session else None
    else:
        token = session
    if not isinstance(token, str) or not token.strip():
        raise TokenMalformed("Malformed Supabase session: no access token")
    return checked_jwt(token.strip())


def checked_jwt(token: str) -> str:
    """`token` if it is shaped like a JWT: three non-empty base64url segments, ASCII only."""
    if len(token) > MAX_TOKEN_LENGTH or not JWT_SHAPE.fullmatch(token):
        raise TokenMalformed()
    return token

"""Verify a Supabase access token without asking Supabase: HS256 with the project's JWT secret,
or ES256/RS256 with a key from its JWKS. Fast, but blind to sign-out, deletion and bans until
the token expires (see docs/supabase.md)."""

from __future__ import annotations

from typing import Any

import jwt

from app.errors import InvalidSupabaseToken
from app.supabase.identity import InvalidIdentity, SupabaseIdentity, identity_from_claims

AUDIENCE = "authenticated"
ROLE = "authenticated"
# GoTrue uses no leeway; a little absorbs clock skew (PyJWT refuses an `iat` in the future).
LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = ["exp", "iat", "sub"]


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, unverified. A token whose header cannot be read, or names no algorithm,
    is refused at once: Supabase would refuse it too."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidSupabaseToken() from exc
    if not isinstance(header.get("alg"), str):
        raise InvalidSupabaseToken()
    return header


def verify_hs256(token: str, secret: str) -> SupabaseIdentity:
    # GoTrue uses the secret as raw UTF-8 bytes; it is not base64-decoded.
    return verify_claims(token, secret.encode(), "HS256")


def verify_claims(token: str, key: bytes | jwt.PyJWK, algorithm: str) -> SupabaseIdentity:
    """The identity in a token signed with `key` using exactly `algorithm`, issued to a signed-in
    user (so the project's anon and service_role keys, which are JWTs too, are refused)."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=AUDIENCE,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidSupabaseToken("Supabase token has expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidSupabaseToken() from exc
    if claims.get("role") != ROLE:
        raise InvalidSupabaseToken()
    try:
        return identity_from_claims(claims)
    except InvalidIdentity as exc:
        raise InvalidSupabaseToken() from exc

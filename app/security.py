"""The API's own tokens: HS256 JWTs with `sub` (the user's id, as a string), `email`, `iat`,
`exp`, and `stamp` (the user's security stamp when the token was issued).

A token acts for exactly the account it was issued to, and only until that account revokes it:
the caller's row is read on every request anyway (`app/authentication.py`), and the token is
accepted only while its `stamp` is still the row's `security_stamp`. Revoking (sign-out
everywhere, deactivation, an email change) sets a new random stamp, so no clock is compared:
a token issued right after a revocation works at once, and a token of a deleted user can never
match an account that later gets the same id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Protocol

import jwt

from app.config import Settings
from app.fields import MAX_INT_ID

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "exp", "iat", "stamp"]
# Replicas' clocks differ: a token issued by one may look a little early to another. Only `iat`
# and `nbf` get this leeway; expiry is exact (checked on every use, see read_token).
CLOCK_SKEW_SECONDS = 30


class InvalidToken(Exception):
    """The token is not one of ours, or no longer valid. The message is safe to show."""


class TokenSubject(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def security_stamp(self) -> str: ...


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    security_stamp: str
    expires_at: int


def issue_token(settings: Settings, user: TokenSubject) -> IssuedToken:
    """A token for `user`, signed with the current key (`JWT_SECRET_KEY`)."""
    issued_at = datetime.now(timezone.utc).replace(microsecond=0)
    expires_at = issued_at + timedelta(minutes=settings.JWT_EXPIRE_MINUTES)
    payload = {
        "sub": str(user.id),
        "email": user.email,
        "iat": issued_at,
        "exp": expires_at,
        "stamp": user.security_stamp,
    }
    return IssuedToken(jwt.encode(payload, settings.jwt_secret, algorithm=ALGORITHM), expires_at)


def read_token(token: str, keys: tuple[str, ...]) -> TokenClaims:
    """The claims of a valid token, signed with one of `keys` (current key first, then the
    previous ones of a rotation). Only HS256 is accepted, so `none` and RS/ES tokens (algorithm
    confusion) fail like a bad signature."""
    claims = _verify_signature(token, keys)
    if claims.expires_at <= time.time():
        raise InvalidToken("Token has expired")
    return claims


@lru_cache(maxsize=8192)
def _verify_signature(token: str, keys: tuple[str, ...]) -> TokenClaims:
    """The claims of a token whose signature and claims are valid, expiry aside.

    A pure function of its arguments, so it is memoized: a front end sends the same token on
    every request for weeks, and PyJWT's checks cost more than the rest of an authenticated
    read. Expiry is checked by the caller on every use; failures are not cached (exceptions
    never are), and neither is anything about the user: the database is asked every time.
    """
    for key in keys:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": REQUIRED_CLAIMS, "verify_exp": False},
            )
        except jwt.InvalidSignatureError:
            continue  # perhaps signed with a previous key
        except jwt.PyJWTError as exc:
            raise InvalidToken("Invalid token") from exc
        return _checked_claims(claims)
    raise InvalidToken("Invalid token")


def _checked_claims(claims: dict[str, object]) -> TokenClaims:
    subject, stamp, expires_at = claims["sub"], claims["stamp"], claims["exp"]
    if not isinstance(subject, str) or not subject.isascii() or not subject.isdigit():
        raise InvalidToken("Invalid token")
    user_id = int(subject[:12])
    if not 1 <= user_id <= MAX_INT_ID or len(subject) > 12:
        raise InvalidToken("Invalid token")
    if not isinstance(stamp, str) or not isinstance(expires_at, int):
        raise InvalidToken("Invalid token")
    return TokenClaims(user_id=user_id, security_stamp=stamp, expires_at=expires_at)

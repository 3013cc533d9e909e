"""The API's own tokens: HS256 JWTs with `sub` (user id as a string), `email`, `iat` and `exp`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import jwt

from app.config import Settings
from app.db.base import MAX_INT_ID

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "exp", "iat"]


class InvalidToken(Exception):
    """The token is not one of ours, or no longer valid. The message is safe to show."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


def issue_token(settings: Settings, *, user_id: int, email: str) -> IssuedToken:
    issued_at = datetime.now(timezone.utc).replace(microsecond=0)
    expires_at = issued_at + timedelta(minutes=settings.JWT_EXPIRE_MINUTES)
    payload = {"sub": str(user_id), "email": email, "iat": issued_at, "exp": expires_at}
    return IssuedToken(jwt.encode(payload, settings.jwt_secret, algorithm=ALGORITHM), expires_at)


def read_user_id(token: str, secret: str) -> int:
    """The user id of a valid token. Only HS256 is accepted, so `none` and RS/ES tokens
    (algorithm confusion) fail like a bad signature."""
    user_id, expires_at = _verify_signature(token, secret)
    if expires_at <= time.time():
        raise InvalidToken("Token has expired")
    return user_id


@lru_cache(maxsize=8192)
def _verify_signature(token: str, secret: str) -> tuple[int, int]:
    """(user id, exp) of a token whose signature and claims are valid.

    A pure function of its arguments, so it is memoized: a front end sends the same token on
    every request for weeks, and PyJWT's checks cost more than the rest of an authenticated
    read. Expiry is checked by the caller on every use; failures are not cached (exceptions
    never are), and neither is anything about the user: the database is asked every time.
    """
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": REQUIRED_CLAIMS}
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("Token has expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("Invalid token") from exc
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject.isascii() or not subject.isdigit():
        raise InvalidToken("Invalid token")
    user_id = int(subject[:12])
    if not 1 <= user_id <= MAX_INT_ID or len(subject) > 12:
        raise InvalidToken("Invalid token")
    return user_id, int(claims["exp"])

"""Who is calling: the API token checked, then the caller's row read on the request's fast path.

The caller is read on every authenticated request, so this one read skips the ORM session:
`read_detached` (`app/db/rows.py`, the by-id read every resource shares), one SELECT by primary
key outside a transaction (one round trip, not BEGIN + SELECT + ROLLBACK), on asyncpg's own
connection where it may (`Database.reads_on_driver`): ~40 % less CPU than through SQLAlchemy's
execution layer, a quarter or more of an authenticated request (docs/performance.md).

It is used only by the current-user dependency (`app/dependencies.py`). The caller it returns is
detached (read outside any session): read its attributes freely; to change it through the unit
of work, `session.add(user)` first.
"""

from __future__ import annotations

from app.config import Settings
from app.db.database import Database
from app.db.rows import read_detached
from app.errors import NotAuthenticated
from app.models.user import User
from app.security import InvalidToken, TokenClaims, read_token


async def authenticate(database: Database, settings: Settings, token: str) -> User:
    """The active user a valid, unrevoked API token was issued to; 401 for anything else."""
    claims = verify_token(settings, token)
    user = await read_caller(database, claims.user_id)
    if user is None or not user.is_active:
        raise NotAuthenticated("User not found or inactive", error="invalid_token")
    if user.security_stamp != claims.security_stamp:
        raise NotAuthenticated("Token has been revoked", error="invalid_token")
    return user


def verify_token(settings: Settings, token: str) -> TokenClaims:
    """The claims of a well-signed, unexpired API token (no database read); 401 otherwise."""
    try:
        return read_token(token, settings.token_keys)
    except InvalidToken as exc:
        raise NotAuthenticated(str(exc), error="invalid_token") from exc


async def read_caller(database: Database, user_id: int) -> User | None:
    return await read_detached(database, User, user_id)

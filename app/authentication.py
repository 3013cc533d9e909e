"""Who is calling: the API token checked, then the caller's row read on the request's fast path.

The caller is read on every authenticated request, so this one read skips the ORM session: one
SELECT by primary key outside a transaction (one round trip, not BEGIN + SELECT + ROLLBACK),
with a statement built once, run in a single hop into SQLAlchemy's sync layer, and the `User`
built from the row as the ORM's own loader would build it.

On asyncpg (outside a transaction pooler, `Database.reads_on_driver`) it goes one step further:
the connection still comes from the engine's pool (its checks, its size, its metrics), but the
statement runs on asyncpg's connection itself, skipping SQLAlchemy's execution layer (execution
context, cursor adapter, result processing): ~40 % less CPU for the read, a quarter or more of an
authenticated request (docs/performance.md). If the statement fails on a pooled connection
(killed by a restart, a failover, an idle timeout), that connection is discarded and the read
is done once more the ordinary way, which reports a failure as any other query does (and
replaces the pool's other stale connections at once). A failed checkout or a timeout is not
retried: the ordinary way would only fail, or wait, the same again.

It is used only by the current-user dependency (`app/dependencies.py`). Everything else reads
through a session. The caller it returns is detached (read outside any session): read its
attributes freely; to change it, `session.add(user)` first (as `UserService.update_user` does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, Select, bindparam, select
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.orm import class_mapper, make_transient_to_detached
from sqlalchemy.util import await_only, greenlet_spawn

from app.config import Settings
from app.db.database import Database
from app.errors import NotAuthenticated
from app.models.user import User
from app.security import InvalidToken, TokenClaims, read_token

logger = logging.getLogger("app.db")

_USERS = User.__table__
_SELECT_USER_BY_ID: Select[Any] = select(_USERS).where(_USERS.c.id == bindparam("id"))
# The same SELECT as asyncpg is sent it: `... WHERE users.id = $1::INTEGER`.
_SELECT_USER_BY_ID_ASYNCPG = str(
    _SELECT_USER_BY_ID.compile(dialect=asyncpg.dialect())  # type: ignore[no-untyped-call]
)
_ATTRIBUTE_NAMES = tuple(
    class_mapper(User).get_property_by_column(column).key for column in _USERS.c
)


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
    row = await _read_row(database, user_id)
    if row is None:
        return None
    user: User = class_mapper(User).class_manager.new_instance()
    user.__dict__.update(zip(_ATTRIBUTE_NAMES, row, strict=True))
    make_transient_to_detached(user)
    return user


async def _read_row(database: Database, user_id: int) -> Sequence[Any] | None:
    sync_engine = database.autocommit_engine.sync_engine
    # Checkout, query and checkin in one hop to the sync engine, not one each.
    if database.reads_on_driver:
        try:
            return await greenlet_spawn(_row_on_driver, sync_engine, user_id)
        except BrokenConnection as exc:
            cause = exc.__cause__
            logger.warning(
                "Reading the caller failed on a pooled connection (%s: %s); reading it again",
                type(cause).__name__,
                str(cause).partition("\n")[0][:200],
            )
    return await greenlet_spawn(_row_on_engine, sync_engine, user_id)


def _row_on_engine(engine: Engine, user_id: int) -> Sequence[Any] | None:
    with engine.connect() as connection:
        return connection.execute(_SELECT_USER_BY_ID, {"id": user_id}).first()


class BrokenConnection(Exception):
    """The read failed on a connection taken from the pool, which is now discarded."""


def _row_on_driver(engine: Engine, user_id: int) -> Sequence[Any] | None:
    # A failed checkout (the database down) is raised as is: the engine would fail the same way.
    connection = engine.pool.connect()
    try:
        row: Sequence[Any] | None = await_only(
            connection.driver_connection.fetchrow(_SELECT_USER_BY_ID_ASYNCPG, user_id)  # type: ignore[union-attr]
        )
        return row
    except BaseException as exc:
        # As SQLAlchemy does with a connection whose statement failed or was cancelled: its
        # state is unknown, so it is closed rather than handed to the next request.
        connection.invalidate()
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or not isinstance(exc, Exception):
            raise  # a slow database (waiting twice won't help), a cancelled request
        raise BrokenConnection() from exc
    finally:
        connection.close()

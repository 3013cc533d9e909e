"""Pre-ping only the connections that sat idle in the pool.

SQLAlchemy's `pool_pre_ping` checks every connection on every checkout; on asyncpg that is
BEGIN + `;` + ROLLBACK, three round trips before each request's first query (measured: about a
third of the CPU of an authenticated read). A connection that was handed back a moment ago is
almost never dead; the ones that break are those left idle across a database restart, a
failover or a pooler's idle timeout. So: ping a connection on checkout only when it has been
idle longer than `idle_seconds`; a failed ping makes the pool replace it transparently, exactly
as pool_pre_ping would. Connections that die while in use are invalidated by SQLAlchemy (with
the rest of the pool) on the error, so the next checkout reconnects.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine

CHECKED_IN_AT = "megapolis_checked_in_at"


def install_idle_ping(engine: AsyncEngine, idle_seconds: float) -> None:
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    @event.listens_for(sync_engine, "checkin")
    def _remember_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get(CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < idle_seconds:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("idle connection failed its ping") from exc
        if alive is False:
            raise DisconnectionError("idle connection failed its ping")
